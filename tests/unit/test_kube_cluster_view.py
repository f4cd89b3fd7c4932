"""The Kubernetes cluster view's address watches: the egress namespace's Pods and Services.

The informers are real (``webhook.kube.informing.Informer``) over fake list functions, and list
when started instead of running their thread: each test drives the relists by hand.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes import client

from webhook.kube.cluster_view import Cache, SidecarView
from webhook.kube.informing import Informer
from webhook.policy_runtime import PolicyStore

pytestmark = pytest.mark.unit


class Listing:
    """A list call's response (``_preload_content=False``)."""

    def __init__(self, items: list[Mapping[str, Any]]) -> None:
        self.data = json.dumps({"metadata": {"resourceVersion": "7"}, "items": items})


class Objects:
    """A namespaced list call answered from memory, per namespace."""

    def __init__(self) -> None:
        self.items: dict[str, list[Mapping[str, Any]]] = {}

    def __call__(self, namespace: str, **kwargs: Any) -> Listing:
        del kwargs
        return Listing(self.items.get(namespace, []))


class Listed(Informer):
    """An informer that lists once when started (``list_on_start``), no thread, no watch."""

    list_on_start = True

    def start(self) -> Listed:
        if self.list_on_start:
            self.relist()
        return self


class Cluster:
    """Fake Pods and Services, and the informers the view built over them."""

    def __init__(self) -> None:
        self.pods = Objects()
        self.services = Objects()
        self.informers: dict[str, list[Listed]] = {}

    def caches(self, namespace: str) -> list[Cache]:
        made = [
            Listed(self.pods, namespace, name=f"pods-{namespace}"),
            Listed(self.services, namespace, name=f"services-{namespace}"),
        ]
        self.informers[namespace] = made
        return list(made)

    def relist(self, namespace: str) -> None:
        for informer in self.informers[namespace]:
            assert informer.relist()


def pod(name: str, *ips: str, phase: str = "Running") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "podIPs": [{"ip": ip} for ip in ips]}
    if ips:
        status["podIP"] = ips[0]
    return {"metadata": {"name": name, "namespace": "egress"}, "status": status}


def service(name: str, *ips: str) -> dict[str, Any]:
    spec = {"clusterIP": ips[0] if ips else "None", "clusterIPs": list(ips) or ["None"]}
    return {"metadata": {"name": name, "namespace": "egress"}, "spec": spec}


@pytest.fixture
def cluster() -> Cluster:
    cluster = Cluster()
    cluster.pods.items["egress"] = [pod("gw-1", "10.60.0.12", "fd00::12")]
    cluster.services.items["egress"] = [service("istio-egressgateway", "10.96.5.5")]
    return cluster


def view_over(cluster: Cluster) -> SidecarView:
    return SidecarView(client.ApiClient(), addresses=cluster.caches)


def test_a_namespace_first_asked_for_is_watched_and_known_once_listed(cluster: Cluster) -> None:
    view = view_over(cluster)
    assert view.namespace_addresses("egress") is None
    assert set(cluster.informers) == {"egress"}
    assert view.namespace_addresses("egress") == {"10.60.0.12", "fd00::12", "10.96.5.5"}
    # asked again: no second watch
    view.namespace_addresses("egress")
    assert len(cluster.informers["egress"]) == 2


def test_addresses_are_unknown_until_every_watch_of_the_namespace_has_listed(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Listed, "list_on_start", False)
    view = view_over(cluster)
    view.watch_addresses(["egress"])
    assert view.namespace_addresses("egress") is None
    pods, services = cluster.informers["egress"]
    assert pods.relist()
    assert view.namespace_addresses("egress") is None
    before = view.generation
    assert services.relist()
    # the SYNCED event moves the generation too: a decision cached while unknown goes stale
    assert view.generation > before
    assert view.namespace_addresses("egress") == {"10.60.0.12", "fd00::12", "10.96.5.5"}


def test_events_change_the_answer_and_the_generation(cluster: Cluster) -> None:
    view = view_over(cluster)
    view.watch_addresses(["egress"])
    generation = view.generation
    # a gateway pod replaced, a second one scaled up, the Service unchanged
    cluster.pods.items["egress"] = [
        pod("gw-2", "10.60.0.40"),
        pod("gw-3", "10.60.0.41"),
        pod("job", "10.60.0.42", phase="Succeeded"),
    ]
    cluster.relist("egress")
    assert view.generation > generation
    assert view.namespace_addresses("egress") == {"10.60.0.40", "10.60.0.41", "10.96.5.5"}
    cluster.services.items["egress"] = []
    cluster.relist("egress")
    assert view.namespace_addresses("egress") == {"10.60.0.40", "10.60.0.41"}


def test_a_pod_and_a_service_of_one_name_are_kept_apart(cluster: Cluster) -> None:
    cluster.pods.items["egress"] = [pod("gw", "10.60.0.12")]
    cluster.services.items["egress"] = [service("gw", "10.96.5.5")]
    view = view_over(cluster)
    view.watch_addresses(["egress"])
    cluster.services.items["egress"] = []
    cluster.relist("egress")
    assert view.namespace_addresses("egress") == {"10.60.0.12"}


POLICY = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: NAMESPACE}
externalServices:
  - name: payments
    hosts: [api.payments.example]
    ports: [{number: 443, protocol: TLS}]
allow:
  - {name: team-a, from: {namespace: team-a}, to: [payments]}
"""


def test_the_view_follows_the_policys_egress_namespace(cluster: Cluster) -> None:
    store = PolicyStore()
    assert store.update(POLICY.replace("NAMESPACE", "egress"), origin="test").ok
    view = view_over(cluster).follow(store, wait=0.0)
    # the policy in force at start is watched (and listed) before any review
    assert set(cluster.informers) == {"egress"}
    assert view.namespace_addresses("egress") == {"10.60.0.12", "fd00::12", "10.96.5.5"}
    assert store.update(POLICY.replace("NAMESPACE", "gateways"), origin="test").ok
    assert set(cluster.informers) == {"egress", "gateways"}
    assert view.namespace_addresses("gateways") == frozenset()


def test_the_default_caches_list_pods_and_services_of_the_namespace() -> None:
    view = SidecarView(client.ApiClient())
    caches = view._address_caches("egress")
    assert [c.name for c in caches if isinstance(c, Informer)] == [
        "pods-egress",
        "services-egress",
    ]
    assert [c._list.__name__ for c in caches if isinstance(c, Informer)] == [
        "list_namespaced_pod",
        "list_namespaced_service",
    ]

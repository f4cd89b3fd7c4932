"""Pod invariants: the injected proxy is there, and the default-deny Sidecar came first."""

from __future__ import annotations

import copy
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pytest

from tests.unit.builders import judge, update_review
from tests.unit.test_check_pods import BANZAI, deployment, injected_pod
from webhook.admission.decision_cache import DecisionCache
from webhook.core.checks import EmptyView
from webhook.core.checks.injection import WatchedView
from webhook.core.engine import decide
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit


class FakeWatch:
    """A synced (or not) Sidecar watch holding the given Sidecars."""

    def __init__(self, *sidecars: Mapping[str, Any], synced: bool = True) -> None:
        self._sidecars = list(sidecars)
        self.synced = synced

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        return [s for s in self._sidecars if s["metadata"]["namespace"] == namespace]

    def namespace_addresses(self, namespace: str) -> Collection[str] | None:
        del namespace
        return frozenset() if self.synced else None


def sidecar(
    namespace: str = "test-app", mode: str | None = "REGISTRY_ONLY", selector: bool = False
) -> dict[str, Any]:
    spec: dict[str, Any] = {"egress": [{"hosts": ["./*"]}]}
    if mode is not None:
        spec["outboundTrafficPolicy"] = {"mode": mode}
    if selector:
        spec["workloadSelector"] = {"labels": {"k8s-app": "app-a"}}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "egress-guard-default", "namespace": namespace},
        "spec": spec,
    }


READY = FakeWatch(sidecar())


def uninjected_pod() -> dict[str, Any]:
    pod = injected_pod()
    pod["metadata"]["annotations"].pop("sidecar.istio.io/status")
    pod["spec"]["containers"] = [c for c in pod["spec"]["containers"] if c["name"] != "istio-proxy"]
    pod["spec"]["initContainers"] = [
        c for c in pod["spec"]["initContainers"] if c["name"] != "istio-init"
    ]
    return pod


def native_sidecar_pod() -> dict[str, Any]:
    pod = injected_pod()
    proxy = next(c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy")
    pod["spec"]["containers"].remove(proxy)
    pod["spec"]["initContainers"].append({**proxy, "restartPolicy": "Always"})
    pod["metadata"]["annotations"]["sidecar.istio.io/status"] = json.dumps(
        {"initContainers": ["istio-init", "istio-proxy"], "containers": None}
    )
    return pod


def test_the_fake_watch_is_a_watched_view() -> None:
    assert isinstance(READY, WatchedView)
    assert not isinstance(EmptyView(), WatchedView)


def test_injected_pod_is_allowed() -> None:
    assert judge(injected_pod(), BANZAI, view=READY).allowed


def test_pod_injected_as_native_sidecar_is_allowed() -> None:
    assert judge(native_sidecar_pod(), BANZAI, view=READY).allowed


def test_pod_that_never_got_a_sidecar_is_denied() -> None:
    # e.g. istio.io/rev names a revision no injector serves: nothing opted out, nothing injected
    decision = judge(uninjected_pod(), BANZAI, view=READY)
    assert not decision.allowed
    assert [v.field for v in decision.violations] == ["spec.containers"]
    assert "injector did not run" in decision.reason


def test_hand_written_proxy_without_injector_status_is_denied() -> None:
    pod = injected_pod()
    pod["metadata"]["annotations"].pop("sidecar.istio.io/status")
    decision = judge(pod, BANZAI, view=READY)
    assert not decision.allowed
    assert "not added by Istio's injector" in decision.reason


def test_status_annotation_not_naming_the_proxy_is_denied() -> None:
    pod = injected_pod()
    pod["metadata"]["annotations"]["sidecar.istio.io/status"] = json.dumps({"containers": []})
    assert not judge(pod, BANZAI, view=READY).allowed


def test_proxy_as_a_plain_init_container_is_denied() -> None:
    # an init container that exits is no sidecar: it must keep running (restartPolicy Always)
    pod = native_sidecar_pod()
    proxy = next(c for c in pod["spec"]["initContainers"] if c["name"] == "istio-proxy")
    del proxy["restartPolicy"]
    assert not judge(pod, BANZAI, view=READY).allowed


def test_pod_templates_are_not_held_to_injection() -> None:
    # injection happens when the Pod is created, never in the template
    assert judge(deployment(), BANZAI, view=FakeWatch()).allowed


def test_pod_update_is_not_held_to_the_invariants() -> None:
    old = uninjected_pod()
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["team"] = "a"
    assert decide(update_review(old, new), BANZAI, view=FakeWatch()).allowed


def test_uninjected_pod_in_an_excluded_namespace_is_allowed() -> None:
    pod = uninjected_pod()
    pod["metadata"]["namespace"] = "kube-system"
    assert judge(pod, BANZAI, view=READY).allowed


def test_pod_before_the_default_deny_sidecar_is_denied_with_a_retry() -> None:
    decision = judge(injected_pod(), BANZAI, view=FakeWatch(sidecar(namespace="other")))
    assert not decision.allowed
    assert "no default-deny Sidecar yet" in decision.reason
    assert "retry" in decision.reason


def test_pod_while_the_sidecar_watch_is_not_synced_is_denied() -> None:
    assert not judge(injected_pod(), BANZAI, view=FakeWatch(sidecar(), synced=False)).allowed


@pytest.mark.parametrize(
    "existing",
    [sidecar(mode=None), sidecar(mode="ALLOW_ANY"), sidecar(selector=True)],
    ids=["no-mode", "allow-any", "selector-only"],
)
def test_sidecars_that_are_no_default_deny_do_not_count(existing: dict[str, Any]) -> None:
    assert not judge(injected_pod(), BANZAI, view=FakeWatch(existing)).allowed


def test_offline_views_skip_the_sidecar_first_invariant() -> None:
    # `check` and unit tests have no watch: they cannot tell that a Sidecar does not exist
    assert judge(injected_pod(), BANZAI, view=EmptyView()).allowed


class GenerationWatch(FakeWatch):
    """A watch whose generation changes on every change, as the informer-fed view's does."""

    generation = 0

    def add(self, obj: Mapping[str, Any]) -> None:
        self._sidecars.append(obj)
        self.generation += 1


def test_the_decision_cache_keeps_the_sidecar_first_invariant() -> None:
    watch = GenerationWatch()
    cache = DecisionCache(watch, size=16)
    review = review_of_manifest(injected_pod())
    assert not cache.decide(review, BANZAI)[0].allowed
    watch.add(sidecar())
    decision, hit = cache.decide(review, BANZAI)
    assert decision.allowed, decision.reason
    assert hit is False

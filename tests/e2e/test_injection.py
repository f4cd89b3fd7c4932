"""Pods made the way a real cluster makes them: Istio's own injector, then egress-guard.

The harness serves ``tools/istio-inject`` (Istio's injection webhook with istiod's
chart-rendered template) and registers it with istiod's MutatingWebhookConfiguration. A Pod
created in an enforced namespace that selects the injector gets Istio's real proxy and passes
egress-guard's injected-proxy invariant; a Pod the injector never sees (a revision nobody
serves, an explicit opt-out) reaches the validating webhook without a proxy and is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.harness import ControlPlane, Injector, Kubectl, Webhook, create_namespace
from tests.e2e.scenarios import Outcome, apply, assert_admitted, assert_denied, run, wait_for
from tests.istio_module import istio_module_dir
from tests.manifests import pod as bare_pod

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

STATUS = "sidecar.istio.io/status"


@pytest.fixture(scope="module")
def cluster(webhook: Webhook | None, injector: Injector | None, kubectl: Kubectl) -> Kubectl:
    """The session cluster with egress-guard and Istio's injector both registered."""
    if webhook is None or injector is None:
        pytest.skip("existing cluster: injection is istiod's, registration the chart's")
    return kubectl


def default_sidecar(namespace: str) -> dict[str, Any]:
    """A namespace-wide REGISTRY_ONLY Sidecar, as the controller would create it."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {
            "egress": [{"hosts": ["./*", "istio-system/*"]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    }


@pytest.fixture
def enforced(cluster: Kubectl, new_namespace: Callable[..., str]) -> Callable[..., str]:
    """Factory: an enforced namespace with ``labels`` whose default-deny Sidecar exists."""

    def make(labels: Mapping[str, str]) -> str:
        namespace = new_namespace("e2e-inject", labels=dict(labels))
        assert_admitted(apply(cluster, default_sidecar(namespace)))
        return namespace

    return make


def create(kubectl: Kubectl, manifest: Mapping[str, Any]) -> Outcome:
    return run(kubectl, "create", "-f", "-", input=json.dumps(manifest))


def stored_pod(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    result = kubectl("get", "pod", name, "-n", namespace, "-o", "json")
    assert result.returncode == 0, result.stderr
    pod: dict[str, Any] = json.loads(result.stdout)
    return pod


def assert_istio_injected(pod: Mapping[str, Any]) -> None:
    """The Pod carries what Istio's injector adds, not a look-alike."""
    spec = pod["spec"]
    proxies = [c for c in spec["containers"] if c["name"] == "istio-proxy"]
    assert len(proxies) == 1, [c["name"] for c in spec["containers"]]
    proxy = proxies[0]
    assert "proxyv2" in proxy["image"], proxy["image"]
    assert proxy["args"][:2] == ["proxy", "sidecar"], proxy["args"]
    assert proxy["securityContext"]["runAsUser"] == 1337
    assert "istio-init" in [c["name"] for c in spec.get("initContainers", [])]
    status = json.loads(pod["metadata"]["annotations"][STATUS])
    assert "istio-proxy" in status["containers"], status
    assert pod["metadata"]["labels"]["security.istio.io/tlsMode"] == "istio"


@pytest.mark.parametrize(
    "labels",
    [{"istio-injection": "enabled"}, {"istio.io/rev": "default"}],
    ids=["istio-injection", "istio.io-rev"],
)
def test_pod_gets_istios_proxy_and_is_admitted(
    cluster: Kubectl, enforced: Callable[..., str], labels: Mapping[str, str]
) -> None:
    namespace = enforced(labels)
    assert_admitted(create(cluster, bare_pod(namespace)))
    assert_istio_injected(stored_pod(cluster, namespace, "app"))


def test_pod_of_a_sample_deployment_template_gets_istios_proxy_and_is_admitted(
    cluster: Kubectl, enforced: Callable[..., str]
) -> None:
    """httpbin from Istio's samples, its Pod created from the template as a ReplicaSet would."""
    namespace = enforced({"istio-injection": "enabled"})
    text = (istio_module_dir() / "samples" / "httpbin" / "httpbin.yaml").read_text()
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    for obj in objects:
        obj.setdefault("metadata", {})["namespace"] = namespace
    assert_admitted(apply(cluster, objects))
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    template = deployment["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**template["metadata"], "name": "httpbin-0", "namespace": namespace},
        "spec": template["spec"],
    }
    assert_admitted(create(cluster, pod))
    stored = stored_pod(cluster, namespace, "httpbin-0")
    assert_istio_injected(stored)
    assert stored["spec"]["containers"][0]["name"] == "httpbin"


def test_pod_naming_a_revision_no_injector_serves_is_refused(
    cluster: Kubectl, enforced: Callable[..., str]
) -> None:
    namespace = enforced({"istio.io/rev": "canary"})
    assert_denied(create(cluster, bare_pod(namespace)), "injector did not run")


def test_pod_opting_out_of_injection_is_refused(
    cluster: Kubectl, enforced: Callable[..., str]
) -> None:
    namespace = enforced({"istio-injection": "enabled"})
    pod = bare_pod(namespace, labels={"sidecar.istio.io/inject": "false"})
    assert_denied(create(cluster, pod), "injector did not run")


def test_a_new_namespace_labelled_by_egress_guard_gets_its_pods_injected(
    cluster: Kubectl, enforced: Callable[..., str]
) -> None:
    """No label written by the user: egress-guard's mutation enables injection, Istio injects."""
    namespace = enforced({})
    labels = json.loads(cluster("get", "namespace", namespace, "-o", "json").stdout)
    assert labels["metadata"]["labels"].get("istio-injection") == "enabled"
    assert_admitted(create(cluster, bare_pod(namespace)))
    assert_istio_injected(stored_pod(cluster, namespace, "app"))


def test_a_hand_written_proxy_is_refused_before_istios_injector(
    cluster: Kubectl, enforced: Callable[..., str]
) -> None:
    """A look-alike proxy with a forged status annotation never reaches the injector.

    With a status naming ``istio-proxy`` Istio's injector injects again and its template wins;
    with a status naming anything else it merges the Pod's own ``istio-proxy`` over its
    template and writes a status naming it.  egress-guard's mutating webhook, called first,
    refuses the Pod as its author wrote it, in either case.
    """
    namespace = enforced({"istio-injection": "enabled"})
    for named in (["istio-proxy"], ["decoy"]):
        forged = bare_pod(namespace)
        forged["metadata"]["annotations"] = {
            STATUS: json.dumps({"initContainers": [], "containers": named})
        }
        forged["spec"]["containers"].append(
            {"name": "istio-proxy", "image": "docker.io/library/busybox:1.36", "command": ["sleep"]}
        )
        assert_denied(create(cluster, forged), "before injection")
    assert_admitted(create(cluster, bare_pod(namespace)))
    assert_istio_injected(stored_pod(cluster, namespace, "app"))


def test_annotation_text_that_rewrites_the_injected_proxy_is_refused(
    cluster: Kubectl, enforced: Callable[..., str]
) -> None:
    """Istio's injector writes a log level into its template unescaped: a second line becomes a
    command of istio-proxy.  The Pod that comes back from Istio's own injector is refused for
    the annotation and for the command the injector really wrote."""
    namespace = enforced({"istio-injection": "enabled"})
    forged = bare_pod(namespace)
    forged["metadata"]["annotations"] = {
        "sidecar.istio.io/logLevel": "info\n    command:\n    - sh\n    - -c\n    - sleep 1"
    }
    assert_denied(
        create(cluster, forged),
        "annotations[sidecar.istio.io/logLevel]",
        # the injected proxy is the second container: the injector took the command
        "spec.containers[1].command",
    )
    assert_admitted(create(cluster, bare_pod(namespace)))


def test_a_tenant_sidecar_started_before_capture_is_refused(
    cluster: Kubectl, enforced: Callable[..., str]
) -> None:
    """Without native sidecars for the proxy, Istio's injector runs istio-init after the pod's
    own init containers: a restartable one keeps connections it opened before capture."""
    namespace = enforced({"istio-injection": "enabled"})
    tunnel = bare_pod(namespace)
    tunnel["metadata"]["annotations"] = {"sidecar.istio.io/nativeSidecar": "false"}
    tunnel["spec"]["initContainers"] = [
        {
            "name": "tunnel",
            "image": tunnel["spec"]["containers"][0]["image"],
            "restartPolicy": "Always",
        }
    ]
    assert_denied(create(cluster, tunnel), "spec.initContainers[0].restartPolicy")


def test_a_container_mounting_the_proxys_bootstrap_volume_is_refused(
    cluster: Kubectl, enforced: Callable[..., str]
) -> None:
    """The app names ``istio-envoy``, a volume only Istio's injector adds: the API server's own
    validation, which runs before validating webhooks, finds it after injection, so the
    refusal comes from egress-guard, for the mount."""
    namespace = enforced({"istio-injection": "enabled"})
    peek = bare_pod(namespace)
    peek["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}
    ]
    assert_denied(create(cluster, peek), "spec.containers[0].volumeMounts[0].name")


def test_native_sidecar_injection_is_admitted(
    throwaway_control_plane: ControlPlane, tmp_path: Path
) -> None:
    """Istio injecting the proxy as a native sidecar (an init container that keeps running)."""
    plane = throwaway_control_plane
    webhook = Webhook(plane, tmp_path / "webhook")
    webhook.start()
    injector = Injector(plane, tmp_path / "injector", native_sidecars=True)
    try:
        injector.start()
        kubectl = plane.kubectl
        namespace = create_namespace(kubectl, "e2e-native")
        assert_admitted(apply(kubectl, default_sidecar(namespace)))
        # the webhook's Sidecar watch sees it within moments
        wait_for(
            lambda: create(kubectl, bare_pod(namespace)).admitted, 10.0, "the Pod to be admitted"
        )
        pod = stored_pod(kubectl, namespace, "app")
        assert [c["name"] for c in pod["spec"]["containers"]] == ["app"]
        (proxy,) = [c for c in pod["spec"]["initContainers"] if c["name"] == "istio-proxy"]
        assert proxy["restartPolicy"] == "Always"
        assert "proxyv2" in proxy["image"]
        status = json.loads(pod["metadata"]["annotations"][STATUS])
        assert "istio-proxy" in status["initContainers"], status
    finally:
        injector.stop()
        webhook.stop()


def test_a_revision_is_served_by_its_own_injector(
    throwaway_control_plane: ControlPlane, tmp_path: Path
) -> None:
    """A canary injector registered as istiod-canary: its namespaces get a proxy, others none."""
    plane = throwaway_control_plane
    webhook = Webhook(plane, tmp_path / "webhook")
    webhook.start()
    injector = Injector(plane, tmp_path / "injector", revision="canary")
    try:
        injector.start()
        kubectl = plane.kubectl
        served = create_namespace(kubectl, "e2e-canary", labels={"istio.io/rev": "canary"})
        unserved = create_namespace(kubectl, "e2e-stable", labels={"istio.io/rev": "stable"})
        for namespace in (served, unserved):
            assert_admitted(apply(kubectl, default_sidecar(namespace)))
        wait_for(lambda: create(kubectl, bare_pod(served)).admitted, 10.0, "the Pod to be admitted")
        pod = stored_pod(kubectl, served, "app")
        assert_istio_injected(pod)
        assert json.loads(pod["metadata"]["annotations"][STATUS])["revision"] == "canary"
        assert_denied(create(kubectl, bare_pod(unserved)), "injector did not run")
    finally:
        injector.stop()
        webhook.stop()

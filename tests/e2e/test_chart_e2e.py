"""The chart installed by helm into a real kube-apiserver.

No kubelet runs, so the chart's pods never start; everything else is real: the objects are
admitted and stored, the webhook configurations are registered with failurePolicy Fail, and
``lookup`` sees the previous release's Secret on upgrade. To prove the chart's service accounts
and policy are enough, the last test runs ``egress-guard serve`` and ``egress-guard controller``
on loopback with tokens of the chart's own service accounts and points the chart's webhook
registrations at that server.

Every test has a control plane of its own (``throwaway_control_plane``): a registration pointing
at a Service nobody serves would fail every gated request of other tests.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.e2e.harness import (
    LOOPBACK,
    ControlPlane,
    Kubectl,
    ManagedProcess,
    ServiceAccount,
    egress_guard_command,
    free_port,
    issue_cert,
    new_ca,
    service_account_kubeconfig,
    wait_for_admission_sync,
)
from webhook.core.desired import DEFAULT_SIDECAR

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHART = Path(__file__).resolve().parents[2] / "charts" / "egress-guard"
RELEASE = "egress-guard"
NAMESPACE = "guard-system"
CONTROLLER_USER = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-controller"
KINDS = ("validatingwebhookconfiguration", "mutatingwebhookconfiguration")

Helm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def helm(throwaway_control_plane: ControlPlane, tmp_path: Path) -> Helm:
    """``helm(*args, check=True)`` against the throwaway control plane."""
    plane = throwaway_control_plane
    env = {
        **os.environ,
        "KUBECONFIG": str(plane.kubeconfig),
        "HELM_CACHE_HOME": str(tmp_path / "helm-cache"),
        "HELM_CONFIG_HOME": str(tmp_path / "helm-config"),
        "HELM_DATA_HOME": str(tmp_path / "helm-data"),
    }

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(plane.tools.helm), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
            check=False,
        )
        if check:
            assert result.returncode == 0, result.stderr
        return result

    return run


@pytest.fixture
def kubectl(throwaway_control_plane: ControlPlane) -> Kubectl:
    """kubectl for the throwaway control plane."""
    return throwaway_control_plane.kubectl


def _install(helm: Helm, *values: str, verb: str = "install") -> None:
    helm(verb, RELEASE, str(CHART), f"--namespace={NAMESPACE}", "--create-namespace", *values)


def _secret(kubectl: Kubectl) -> dict[str, bytes]:
    data = kubectl.json("get", "secret", f"{RELEASE}-tls", "-n", NAMESPACE)["data"]
    return {key: base64.b64decode(value) for key, value in data.items()}


def _ca_bundles(kubectl: Kubectl) -> list[list[x509.Certificate]]:
    bundles = []
    for kind in KINDS:
        # the validating configuration also holds the policy ConfigMap's webhook: same bundle
        hooks = kubectl.json("get", kind, RELEASE)["webhooks"]
        [bundle] = {hook["clientConfig"]["caBundle"] for hook in hooks}
        bundles.append(x509.load_pem_x509_certificates(base64.b64decode(bundle)))
    return bundles


def _ca(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def _wait(what: str, condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.3)


def test_install_registers_fail_closed_webhooks_sparing_the_release_namespace(
    helm: Helm, kubectl: Kubectl
) -> None:
    _install(helm)
    for kind, name in [
        ("deployment", RELEASE),
        ("deployment", f"{RELEASE}-controller"),
        ("service", RELEASE),
        ("configmap", f"{RELEASE}-policy"),
        ("poddisruptionbudget", RELEASE),
        ("serviceaccount", f"{RELEASE}-controller"),
        ("role", f"{RELEASE}-webhook"),
    ]:
        kubectl("get", kind, name, "-n", NAMESPACE, check=True)
    secret = _secret(kubectl)
    assert _ca_bundles(kubectl) == [[_ca(secret["ca.crt"])]] * 2
    wait_for_admission_sync(kubectl)
    # nobody serves the webhook: gated requests fail, the release namespace stays repairable
    refused = kubectl("create", "namespace", "tenant")
    assert refused.returncode != 0 and "mutate.egress-guard.dev" in refused.stderr
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "repair", "namespace": NAMESPACE},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    kubectl("create", "-f", "-", input=json.dumps(pod), check=True)
    helm("uninstall", RELEASE, f"--namespace={NAMESPACE}")
    for kind in KINDS:
        assert kubectl("get", kind, RELEASE).returncode != 0
    wait_for_admission_sync(kubectl)
    kubectl("create", "namespace", "tenant", check=True)


def test_upgrade_keeps_the_certificate_and_rotation_keeps_the_old_ca_trusted(
    helm: Helm, kubectl: Kubectl
) -> None:
    _install(helm)
    first = _secret(kubectl)
    _install(helm, "--set=webhook.logLevel=debug", verb="upgrade")
    assert _secret(kubectl) == first
    assert _ca_bundles(kubectl) == [[_ca(first["ca.crt"])]] * 2
    _install(helm, "--set=certs.helm.rotation=second", verb="upgrade")
    rotated = _secret(kubectl)
    assert rotated["tls.crt"] != first["tls.crt"] and rotated["ca.crt"] != first["ca.crt"]
    assert rotated["previous-ca.crt"] == first["ca.crt"]
    _ca(rotated["tls.crt"]).verify_directly_issued_by(_ca(rotated["ca.crt"]))
    assert _ca_bundles(kubectl) == [[_ca(rotated["ca.crt"]), _ca(first["ca.crt"])]] * 2
    # the next plain upgrade keeps the rotated pair
    _install(helm, "--set=certs.helm.rotation=second", verb="upgrade")
    assert _secret(kubectl) == rotated


def test_service_account_permissions_are_those_of_the_roles(helm: Helm, kubectl: Kubectl) -> None:
    _install(helm)
    webhook = f"system:serviceaccount:{NAMESPACE}:{RELEASE}"

    def can(user: str, *args: str) -> bool:
        return kubectl("auth", "can-i", f"--as={user}", *args).stdout.strip() == "yes"

    assert can(webhook, "watch", "sidecars.networking.istio.io", "--all-namespaces")
    assert can(webhook, "watch", "configmaps", "-n", NAMESPACE)
    assert not can(webhook, "watch", "configmaps", "-n", "kube-system")
    assert not can(webhook, "create", "serviceentries.networking.istio.io", "-n", "tenant")
    assert can(CONTROLLER_USER, "create", "serviceentries.networking.istio.io", "-n", "tenant")
    assert can(CONTROLLER_USER, "update", "leases.coordination.k8s.io", "-n", NAMESPACE)
    assert not can(CONTROLLER_USER, "update", "leases.coordination.k8s.io", "-n", "kube-system")
    for user in (webhook, CONTROLLER_USER):
        assert not can(user, "get", "secrets", "-n", NAMESPACE)
        assert not can(user, "create", "pods", "-n", "tenant")


# --- the chart's accounts and policy, running for real ---------------------------------------


def _token_kubeconfig(plane: ControlPlane, account: str, path: Path) -> Path:
    return service_account_kubeconfig(
        plane, ServiceAccount(NAMESPACE, account), path, duration="1h"
    )


@pytest.fixture
def processes() -> Iterator[list[ManagedProcess]]:
    """Processes a test starts; stopped at its end."""
    started: list[ManagedProcess] = []
    yield started
    for process in reversed(started):
        process.stop()


def _ready(port: int, cafile: Path) -> bool:
    context = ssl.create_default_context(cafile=str(cafile))
    connection = http.client.HTTPSConnection(LOOPBACK, port, timeout=2, context=context)
    try:
        connection.request("GET", "/readyz")
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _get(port: int, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode()
    except OSError:
        return 0, ""
    finally:
        connection.close()


def test_chart_accounts_and_policy_run_the_webhook_and_controller(
    helm: Helm,
    kubectl: Kubectl,
    throwaway_control_plane: ControlPlane,
    processes: list[ManagedProcess],
    tmp_path: Path,
) -> None:
    plane = throwaway_control_plane
    _install(helm)
    command = egress_guard_command()
    # the webhook, as the chart's webhook service account, on loopback with a CA of our own
    ca = new_ca("chart-e2e-ca")
    ca.write(tmp_path / "ca.crt", tmp_path / "ca.key")
    issue_cert(
        ca, "webhook", dns_names=("localhost",), ip_addresses=(LOOPBACK,), server=True
    ).write(tmp_path / "tls.crt", tmp_path / "tls.key")
    port = free_port()
    serve = ManagedProcess(
        name="chart-webhook",
        argv=[
            *command,
            "serve",
            f"--bind={LOOPBACK}:{port}",
            f"--cert-file={tmp_path / 'tls.crt'}",
            f"--key-file={tmp_path / 'tls.key'}",
            f"--policy-configmap={NAMESPACE}/{RELEASE}-policy",
            f"--kubeconfig={_token_kubeconfig(plane, RELEASE, tmp_path / 'webhook.kubeconfig')}",
        ],
        log_path=tmp_path / "webhook.log",
    )
    processes.append(serve)
    serve.start()
    # /readyz says 200 only once the policy ConfigMap was read: the Role is enough
    _wait("the webhook to load the chart's policy", lambda: _ready(port, tmp_path / "ca.crt"))
    # the chart's registrations, pointed at that server
    bundle = base64.b64encode(ca.cert_pem).decode()
    for kind, path in zip(KINDS, ("/validate", "/mutate"), strict=True):
        patch = [
            {
                "op": "replace",
                "path": "/webhooks/0/clientConfig",
                "value": {"url": f"https://{LOOPBACK}:{port}{path}", "caBundle": bundle},
            }
        ]
        kubectl("patch", kind, RELEASE, "--type=json", "-p", json.dumps(patch), check=True)
    wait_for_admission_sync(kubectl)
    for namespace in ("test-app", "external"):
        kubectl("create", "namespace", namespace, check=True)
    controller_kubeconfig = _token_kubeconfig(
        plane, f"{RELEASE}-controller", tmp_path / "controller.kubeconfig"
    )
    probe_port = free_port()
    controller = ManagedProcess(
        name="chart-controller",
        argv=[
            *command,
            "controller",
            f"--kubeconfig={controller_kubeconfig}",
            f"--policy-configmap={NAMESPACE}/{RELEASE}-policy",
            f"--lease-namespace={NAMESPACE}",
            f"--lease-name={RELEASE}-controller",
            # the chart binds 0.0.0.0:9090 in the pod; loopback here
            f"--metrics-bind={LOOPBACK}:{probe_port}",
        ],
        log_path=tmp_path / "controller.log",
    )
    processes.append(controller)
    controller.start()

    # the controller's writes pass the webhook because the chart listed it in controller.users
    def default_sidecar() -> bool:
        return kubectl("get", "sidecar", DEFAULT_SIDECAR, "-n", "test-app").returncode == 0

    _wait("the controller's default Sidecar", default_sidecar)
    managed = kubectl.json("get", "serviceentries", "-n", "external")["items"]
    assert managed, controller.log_tail()
    # the chart's probes: every cache of the controller synced with the chart's RBAC
    _wait("the controller's /readyz", lambda: _get(probe_port, "/readyz")[0] == 200)
    assert _get(probe_port, "/healthz")[0] == 200
    status, metrics = _get(probe_port, "/metrics")
    assert status == 200 and "egress_guard_controller_leader 1.0" in metrics
    # anyone else, with the RBAC to do it, is refused by the webhook
    kubectl(
        "create",
        "rolebinding",
        "mallory-edit",
        "--clusterrole=cluster-admin",
        "--user=mallory",
        "-n",
        "test-app",
        check=True,
    )
    tamper = kubectl("delete", "sidecar", DEFAULT_SIDECAR, "-n", "test-app", "--as=mallory")
    assert tamper.returncode != 0 and "owned by egress-guard" in tamper.stderr
    entry = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "exfil", "namespace": "test-app"},
        "spec": {
            "hosts": ["evil.example"],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }
    refused = kubectl("create", "-f", "-", "--as=mallory", input=json.dumps(entry))
    assert refused.returncode != 0 and "denied the request" in refused.stderr
    assert serve.alive() and controller.alive()

"""Smoke tests of the e2e harness itself: the control plane, its CRDs, kubectl, the CLI.

Why: when an admission e2e test fails, it must be clear whether egress-guard or the
harness is broken. These run against control planes in which our webhook is not
serving, so they pass whatever state the webhook package is in.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import (
    EXCLUDED_NAMESPACES,
    LOOPBACK,
    REPO_ROOT,
    ControlPlane,
    ManagedProcess,
    Tools,
    create_namespace,
    wait_for_admission_sync,
    webhook_configurations,
)

pytestmark = pytest.mark.e2e

CRDS = (
    "serviceentries.networking.istio.io",
    "sidecars.networking.istio.io",
    "virtualservices.networking.istio.io",
    "gateways.networking.istio.io",
    "destinationrules.networking.istio.io",
    "authorizationpolicies.security.istio.io",
    "telemetries.telemetry.istio.io",
    # Gateway API (standard channel)
    "gateways.gateway.networking.k8s.io",
    "httproutes.gateway.networking.k8s.io",
    "tlsroutes.gateway.networking.k8s.io",
)

# Nothing listens on port 1: a webhook registered there fails every call it gets, which
# shows exactly which requests the registration routes to the webhook.
UNREACHABLE_WEBHOOK = f"https://{LOOPBACK}:1"


def pinned_kubernetes_version() -> str:
    for line in (REPO_ROOT / "tools" / "versions.env").read_text().splitlines():
        if line.startswith("KUBERNETES_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("KUBERNETES_VERSION missing from tools/versions.env")


def service_entry(name: str, namespace: str, host: str) -> str:
    return json.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "hosts": [host],
                "location": "MESH_EXTERNAL",
                "resolution": "DNS",
                "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            },
        }
    )


def test_api_server_is_ready_and_pinned(bare_control_plane: ControlPlane) -> None:
    assert bare_control_plane.readyz()
    version = bare_control_plane.kubectl.json("version")
    assert version["serverVersion"]["gitVersion"] == pinned_kubernetes_version()
    assert version["clientVersion"]["gitVersion"] == pinned_kubernetes_version()


def test_rbac_is_enforced(bare_control_plane: ControlPlane) -> None:
    kubectl = bare_control_plane.kubectl
    result = kubectl("auth", "can-i", "list", "secrets", "--as=system:serviceaccount:x:y")
    assert result.stdout.strip() == "no"
    assert kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"


@pytest.mark.parametrize("crd", CRDS)
def test_crd_is_established(bare_control_plane: ControlPlane, crd: str) -> None:
    item = bare_control_plane.kubectl.json("get", "customresourcedefinition", crd)
    conditions = {c["type"]: c["status"] for c in item["status"]["conditions"]}
    assert conditions["Established"] == "True"


def test_service_entry_can_be_created_without_webhook(bare_control_plane: ControlPlane) -> None:
    kubectl = bare_control_plane.kubectl
    namespace = create_namespace(kubectl, "e2e-service-entry")
    created = kubectl("create", "-f", "-", input=service_entry("httpbin", namespace, "httpbin.org"))
    assert created.returncode == 0, created.stderr
    stored = kubectl.json("get", "serviceentries.networking.istio.io", "httpbin", "-n", namespace)
    assert stored["spec"]["hosts"] == ["httpbin.org"]


def test_server_side_apply(bare_control_plane: ControlPlane) -> None:
    kubectl = bare_control_plane.kubectl
    namespace = create_namespace(kubectl, "e2e-ssa")

    def apply(value: str) -> subprocess.CompletedProcess[str]:
        manifest = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "applied", "namespace": namespace},
            "data": {"key": value},
        }
        return kubectl(
            "apply", "--server-side", "--field-manager=e2e-test", "-f", "-",
            input=json.dumps(manifest),
        )  # fmt: skip

    assert apply("one").returncode == 0
    second = apply("two")
    assert second.returncode == 0, second.stderr
    stored = kubectl.json("get", "configmap", "applied", "-n", namespace, "--show-managed-fields")
    assert stored["data"] == {"key": "two"}
    managers = {entry["manager"] for entry in stored["metadata"]["managedFields"]}
    assert "e2e-test" in managers


def test_webhook_configurations_are_valid(bare_control_plane: ControlPlane) -> None:
    configurations = webhook_configurations(UNREACHABLE_WEBHOOK, b"not-a-ca", gateway_api=True)
    result = bare_control_plane.kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": configurations}),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_registration_routes_the_right_requests(throwaway_control_plane: ControlPlane) -> None:
    """Registered at a dead endpoint, the webhooks make exactly their requests fail."""
    kubectl = throwaway_control_plane.kubectl
    tenant = create_namespace(kubectl, "e2e-tenant")
    # Excluded namespaces must exist before registration: they are gated on creation
    # only by the API server's own view of their name label.
    for excluded in ("istio-system", "egress-guard"):
        kubectl("create", "namespace", excluded, check=True)
    kubectl.apply(webhook_configurations(UNREACHABLE_WEBHOOK, b"", gateway_api=True))
    wait_for_admission_sync(kubectl)

    # Namespaces are cluster-scoped: the selector matches the namespace itself.
    new_namespace = kubectl("create", "namespace", "e2e-gated")
    assert new_namespace.returncode != 0
    assert 'failed calling webhook "mutate.egress-guard.dev"' in new_namespace.stderr

    gated = kubectl("create", "-f", "-", input=service_entry("se", tenant, "example.com"))
    assert gated.returncode != 0
    assert 'failed calling webhook "validate.egress-guard.dev"' in gated.stderr

    route = json.dumps(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "route", "namespace": tenant},
            "spec": {"parentRefs": [{"name": "gateway"}], "hostnames": ["example.com"]},
        }
    )
    gated_route = kubectl("create", "-f", "-", input=route)
    assert 'failed calling webhook "validate.egress-guard.dev"' in gated_route.stderr

    for excluded in EXCLUDED_NAMESPACES:
        allowed = kubectl("create", "-f", "-", input=service_entry("se", excluded, "a.example"))
        assert allowed.returncode == 0, f"{excluded}: {allowed.stderr}"

    # Resources outside the rules are never sent to the webhook.
    configmap = kubectl("create", "configmap", "plain", f"--namespace={tenant}")
    assert configmap.returncode == 0, configmap.stderr


def test_cli_down_stops_exactly_what_up_started(e2e_tools: Tools, tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "tests.e2e.harness", f"--dir={tmp_path}"]

    def run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*cli, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            check=False,
        )

    up = run("up", "--no-webhook", timeout=600)
    assert up.returncode == 0, up.stderr
    state = json.loads((tmp_path / "state.json").read_text())
    processes = [ManagedProcess.from_state(p) for p in state["processes"]]
    try:
        assert [p.name for p in processes] == ["etcd", "kube-apiserver"]
        assert all(p.alive() for p in processes)
        assert (tmp_path / "kubeconfig").is_file()
        status = run("status", timeout=60)
        assert status.returncode == 0, status.stdout
        again = run("up", timeout=60)
        assert again.returncode != 0
        assert "already up" in again.stderr
    finally:
        down = run("down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert not any(p.alive() for p in processes)
    assert not (tmp_path / "kubeconfig").exists()
    assert (tmp_path / "logs" / "kube-apiserver.log").is_file()

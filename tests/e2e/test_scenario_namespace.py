"""A new namespace, as a developer creates it, comes out guarded: injection on, default Sidecar.

Why: the allow list only holds for pods that get a proxy and a Sidecar that closes the registry.
The mutating webhook labels every new namespace ``istio-injection=enabled`` at admission; the
controller (``egress-guard controller``) then writes the namespace's default Sidecar
(``REGISTRY_ONLY``), which itself passes the validating webhook on the way in.

The controller runs as a subprocess of this module against the session cluster and its policy
ConfigMap, limited by ``--namespace-selector`` to namespaces carrying this test's label, so it
never writes into namespaces other tests own.  The namespace is therefore created with
``kubectl create -f`` of a Namespace carrying that label (still a CREATE the webhooks see).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.harness import (
    POLICY_CONFIGMAP,
    WEBHOOK_NAMESPACE,
    Kubectl,
    Webhook,
    egress_guard_command,
    unique_name,
)
from tests.e2e.scenarios import apply, assert_admitted, assert_denied, ensure_namespace, run
from webhook.core.desired import DEFAULT_SIDECAR

pytestmark = pytest.mark.e2e

SELECTOR_KEY = "egress-guard.dev/e2e-scenario"
SIDECAR_TIMEOUT_S = 15.0


@pytest.fixture
def guarded(webhook: Webhook | None, kubectl: Kubectl) -> Kubectl:
    if webhook is None:
        pytest.skip("existing cluster: the webhook is the chart's, its mutations are not ours")
    return kubectl


def test_kubectl_create_namespace_gets_the_injection_label(guarded: Kubectl) -> None:
    name = unique_name("fresh")
    assert_admitted(run(guarded, "create", "namespace", name))
    labels = guarded.json("get", "namespace", name)["metadata"]["labels"]
    assert labels.get("istio-injection") == "enabled", labels


@pytest.mark.parametrize(
    "labels",
    [
        {"istio-injection": "disabled"},
        {"istio.io/dataplane-mode": "ambient"},
    ],
    ids=["injection-disabled", "ambient"],
)
def test_new_namespace_opting_out_of_the_sidecar_is_refused(
    labels: dict[str, str], guarded: Kubectl
) -> None:
    name = unique_name("opt-out")
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": labels},
    }
    assert_denied(apply(guarded, namespace), f"Namespace {name}", next(iter(labels)))
    assert guarded("get", "namespace", name).returncode != 0


@pytest.fixture
def controller(
    controller_kubeconfig: Path, guarded: Kubectl, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``egress-guard controller`` on the session policy, limited to one label value."""
    tag = secrets.token_hex(4)
    ensure_namespace(guarded, WEBHOOK_NAMESPACE)
    log_path = tmp_path / "controller.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                *egress_guard_command(),
                "controller",
                f"--kubeconfig={controller_kubeconfig}",
                f"--policy-configmap={WEBHOOK_NAMESPACE}/{POLICY_CONFIGMAP}",
                f"--lease-namespace={WEBHOOK_NAMESPACE}",
                f"--lease-name=scenario-{tag}",
                f"--identity=scenario-{tag}",
                f"--namespace-selector={SELECTOR_KEY}={tag}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # measure from a leading controller, not from a Python process still importing
        deadline = time.monotonic() + SIDECAR_TIMEOUT_S
        while _lease_holder(guarded, f"scenario-{tag}") != f"scenario-{tag}":
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "the controller never took its lease"
            time.sleep(0.1)
        yield tag, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(f"--- controller log ---\n{log_path.read_text(errors='replace')[-4000:]}")


def _lease_holder(kubectl: Kubectl, lease: str) -> str:
    result = kubectl(
        "get", "lease", lease, "-n", WEBHOOK_NAMESPACE, "-o", "jsonpath={.spec.holderIdentity}"
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def _sidecar(kubectl: Kubectl, namespace: str) -> dict[str, Any] | None:
    result = kubectl(
        "get", "sidecars.networking.istio.io", DEFAULT_SIDECAR, "-n", namespace, "-o", "yaml"
    )
    if result.returncode != 0:
        return None
    found: dict[str, Any] = yaml.safe_load(result.stdout)
    return found


def test_new_namespace_gets_the_default_deny_sidecar_from_the_controller(
    controller: tuple[str, subprocess.Popen[bytes]], guarded: Kubectl
) -> None:
    tag, process = controller
    name = unique_name("fresh-guarded")
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {SELECTOR_KEY: tag}},
    }
    assert_admitted(run(guarded, "create", "-f", "-", input=json.dumps(namespace)))
    created = time.monotonic()
    sidecar = _sidecar(guarded, name)
    while sidecar is None:
        assert process.poll() is None, "the controller exited"
        assert time.monotonic() - created < SIDECAR_TIMEOUT_S, "no default Sidecar appeared"
        time.sleep(0.1)
        sidecar = _sidecar(guarded, name)
    print(
        f"[measure] kubectl create namespace -> default Sidecar: {time.monotonic() - created:.2f}s"
    )

    labels = guarded.json("get", "namespace", name)["metadata"]["labels"]
    assert labels.get("istio-injection") == "enabled", labels
    assert sidecar["spec"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    assert "workloadSelector" not in sidecar["spec"]
    (listener,) = sidecar["spec"]["egress"]
    assert "./*" in listener["hosts"]
    # the namespace is named by no allow rule: nothing outside the mesh may be imported
    assert not [h for h in listener["hosts"] if h.startswith("external/")], listener["hosts"]
    print(f"default Sidecar hosts: {listener['hosts']}")

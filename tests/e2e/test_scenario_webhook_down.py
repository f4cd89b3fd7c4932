"""With egress-guard down, nothing it guards gets in: failurePolicy Fail, seen through kubectl.

Why: an allow list that fails open is an allow list an attacker only has to wait out (or help
along).  Each test runs a control plane of its own with a real ``egress-guard serve`` (file
policy, the Banzai demo), proves the object would be admitted while the webhook is up, then
takes the webhook away, dead (connection refused) or wedged (accepts, never answers), and
checks that the same apply, its server dry-run, a namespace creation and a deletion are all
refused by the API server's "failed calling webhook", and nothing is stored.  The webhook's own
namespace stays writable, so the policy can still be repaired.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    POLICY_CONFIGMAP,
    POLICY_KEY,
    WEBHOOK_NAMESPACE,
    ControlPlane,
    Kubectl,
    Webhook,
    unique_name,
)
from tests.e2e.scenarios import (
    BANZAI_POLICY,
    DEFAULT_DENY_SIDECAR,
    Outcome,
    apply,
    assert_admitted,
    documents,
    ensure_namespace,
    run,
)

pytestmark = pytest.mark.e2e

SIDECAR = documents(
    f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {DEFAULT_DENY_SIDECAR}, namespace: test-app}}
spec:
  egress: [{{hosts: ["./*"]}}]
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
"""
)[0]
GOOGLE = documents(
    """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: google-external, namespace: external}
spec:
  hosts: [google.com, www.google.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"""
)[0]


@pytest.fixture
def guarded_plane(throwaway_control_plane: ControlPlane, tmp_path: Path) -> Iterator[Webhook]:
    """A plane of its own with egress-guard registered (failurePolicy Fail) and the Banzai
    namespaces; a Sidecar is already there to try deleting."""
    hook = Webhook(throwaway_control_plane, tmp_path / "webhook", policy_file=BANZAI_POLICY)
    hook.start()
    try:
        kubectl = throwaway_control_plane.kubectl
        for name in ("test-app", "external"):
            ensure_namespace(kubectl, name)
        yield hook
    finally:
        hook.stop()


def _assert_refused_by_failed_call(outcome: Outcome) -> None:
    assert not outcome.admitted, f"{outcome.command} was admitted while the webhook was down"
    assert "failed calling webhook" in outcome.errors, outcome.errors
    assert "egress-guard.dev" in outcome.errors, outcome.errors


def _attempts(kubectl: Kubectl) -> list[Outcome]:
    return [
        apply(kubectl, GOOGLE, dry_run=True),
        apply(kubectl, GOOGLE),
        run(kubectl, "create", "namespace", unique_name("while-down")),
        run(kubectl, "delete", "serviceentry", "httpbin-external", "-n", "external"),
    ]


def _seed(kubectl: Kubectl) -> None:
    httpbin = dict(GOOGLE, metadata={"name": "httpbin-external", "namespace": "external"})
    httpbin["spec"] = dict(GOOGLE["spec"], hosts=["httpbin.org"])
    # the control: with the webhook up, these go through
    assert_admitted(apply(kubectl, [SIDECAR, httpbin]))
    assert_admitted(apply(kubectl, GOOGLE, dry_run=True))


def _nothing_changed(kubectl: Kubectl) -> None:
    assert kubectl("get", "serviceentry", "google-external", "-n", "external").returncode != 0
    assert kubectl("get", "serviceentry", "httpbin-external", "-n", "external").returncode == 0


def test_apply_is_refused_while_the_webhook_is_dead(guarded_plane: Webhook) -> None:
    kubectl = guarded_plane.plane.kubectl
    _seed(kubectl)
    assert guarded_plane.process is not None
    guarded_plane.process.stop()  # registration stays: the webhook crashed, nobody unregistered

    for outcome in _attempts(kubectl):
        _assert_refused_by_failed_call(outcome)
        assert "connection refused" in outcome.errors, outcome.errors
    _nothing_changed(kubectl)

    # the repair path: the webhook's own namespace is not gated, so its policy can be fixed
    policy = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": POLICY_CONFIGMAP, "namespace": WEBHOOK_NAMESPACE},
        "data": {POLICY_KEY: BANZAI_POLICY.read_text()},
    }
    assert_admitted(apply(kubectl, policy))


def test_apply_is_refused_while_the_webhook_hangs(guarded_plane: Webhook) -> None:
    kubectl = guarded_plane.plane.kubectl
    _seed(kubectl)
    assert guarded_plane.process is not None and guarded_plane.process.pid is not None
    group = guarded_plane.process.pid
    # the kernel still accepts connections for a stopped gunicorn: the API server waits for
    # timeoutSeconds (10 s) and then refuses; one attempt is enough to show it (and costs 10 s)
    os.killpg(group, signal.SIGSTOP)
    try:
        outcome = apply(kubectl, GOOGLE)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGCONT)
    _assert_refused_by_failed_call(outcome)
    assert "timeout" in outcome.errors.lower() or "deadline" in outcome.errors.lower()
    _nothing_changed(kubectl)

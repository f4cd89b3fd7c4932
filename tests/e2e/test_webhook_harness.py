"""Smoke tests of running our own webhook under the harness.

Why: they prove the wiring (TLS with our CA bundle, URL registration, namespace
selector, unregistration on stop) independently of what the policy decides, so a
failing admission test elsewhere can rule the harness out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import (
    POLICY_MANIFEST,
    WEBHOOK_CONFIGURATION_NAME,
    ControlPlane,
    Kubectl,
    Webhook,
    unique_name,
)

pytestmark = pytest.mark.e2e


def _assert_reaches_webhook(kubectl: Kubectl, log: Path) -> None:
    name = unique_name("e2e-reaches-webhook")
    result = kubectl("create", "namespace", name)
    # Whatever the policy decides, the request must have been reviewed by egress-guard,
    # and a refusal must come from one of its webhooks (not from a failed call).
    assert name in log.read_text(errors="replace")
    if result.returncode != 0:
        assert "admission webhook" in result.stderr, result.stderr
        assert "egress-guard.dev" in result.stderr, result.stderr
        assert "failed calling webhook" not in result.stderr, result.stderr


def test_file_policy_webhook_reviews_requests(
    throwaway_control_plane: ControlPlane, tmp_path: Path
) -> None:
    plane = throwaway_control_plane
    hook = Webhook(plane, tmp_path / "webhook", policy_file=POLICY_MANIFEST)
    hook.start()
    try:
        _assert_reaches_webhook(plane.kubectl, plane.logs_dir / "egress-guard.log")
    finally:
        hook.stop()
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        gone = plane.kubectl("get", kind, WEBHOOK_CONFIGURATION_NAME)
        assert gone.returncode != 0, f"{kind} left registered after stop"
    assert hook.process is not None
    assert not hook.process.alive()


def test_session_webhook_reviews_requests(webhook: Webhook | None, kubectl: Kubectl) -> None:
    if webhook is None:
        pytest.skip("existing cluster: the webhook is the chart's")
    _assert_reaches_webhook(kubectl, webhook.plane.logs_dir / "egress-guard.log")

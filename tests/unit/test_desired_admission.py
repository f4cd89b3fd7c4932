"""Every generated object must pass the validating webhook's checks on its own merits.

The controller's identity skips the checks, but a GitOps pipeline applying ``egress-guard
render`` output does not; and an object the checks would deny hints at a generator bug.  The
managed-label protection applies to everyone but the controller, so it is stripped here.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from webhook.core.desired import desired_state
from webhook.core.engine import decide
from webhook.core.policy import MANAGED_LABEL, Policy
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BANZAI = parse_policy((ROOT / "policies" / "banzai-demo.yaml").read_text())
FIREWALL = parse_policy((ROOT / "policies" / "istio-egress-firewall.yaml").read_text())


def _unmanaged(manifest: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(manifest)
    out["metadata"]["labels"].pop(MANAGED_LABEL)
    return out


def _cases(policy: Policy, namespaces: list[str]) -> list[Any]:
    return [
        pytest.param(
            policy, m, id=f"{m['kind']}-{m['metadata']['namespace']}-{m['metadata']['name']}"
        )
        for m in desired_state(policy, namespaces)
    ]


@pytest.mark.parametrize(
    ("policy", "manifest"),
    _cases(BANZAI, ["test-app", "external"])
    + _cases(FIREWALL, ["team-a", "team-b", "other", "istio-egress"]),
)
def test_generated_object_passes_the_webhook_for_a_normal_user(
    policy: Policy, manifest: dict[str, Any]
) -> None:
    # the egress namespace is the security team's: there, a GitOps pipeline applies as the team
    team = dataclasses.replace(policy, security_team_users=frozenset({"gitops"}))
    egress = manifest["metadata"]["namespace"] == policy.egress_namespace
    user = "gitops" if egress else "jane@example.com"
    review = review_of_manifest(_unmanaged(manifest), username=user)
    decision = decide(review, team)
    assert decision.allowed, decision.reason


@pytest.mark.parametrize(
    ("policy", "manifest"),
    [
        case
        for case in _cases(BANZAI, ["external"]) + _cases(FIREWALL, ["istio-egress"])
        if case.values[1]["metadata"]["namespace"] == case.values[0].egress_namespace
    ],
)
def test_generated_egress_namespace_object_is_refused_to_a_tenant(
    policy: Policy, manifest: dict[str, Any]
) -> None:
    team = dataclasses.replace(policy, security_team_users=frozenset({"gitops"}))
    review = review_of_manifest(_unmanaged(manifest), username="jane@example.com")
    decision = decide(review, team)
    assert not decision.allowed
    assert "holds the egress gateways" in decision.reason


def test_managed_objects_are_refused_to_a_normal_user() -> None:
    manifest = desired_state(BANZAI, ["test-app"])[0]
    decision = decide(review_of_manifest(manifest, username="jane@example.com"), BANZAI)
    assert not decision.allowed
    assert MANAGED_LABEL in decision.reason

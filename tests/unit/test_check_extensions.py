"""EnvoyFilter, WasmPlugin, TrafficExtension: raw proxy programming is denied (trap 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.core.engine import decide
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Operation, review_of_manifest

pytestmark = pytest.mark.unit

POLICIES = Path(__file__).resolve().parents[2] / "policies"
KINDS = [
    ("networking.istio.io/v1alpha3", "EnvoyFilter"),
    ("extensions.istio.io/v1alpha1", "WasmPlugin"),
    ("extensions.istio.io/v1alpha1", "TrafficExtension"),
]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy((POLICIES / "istio-egress-firewall.yaml").read_text())


def manifest(api_version: str, kind: str, namespace: str) -> dict[str, object]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": namespace},
        "spec": {},
    }


@pytest.mark.parametrize(("api_version", "kind"), KINDS)
@pytest.mark.parametrize("namespace", ["team-a", "istio-egress"])
def test_extensions_are_denied_outside_excluded_namespaces(
    api_version: str, kind: str, namespace: str, policy: Policy
) -> None:
    decision = decide(review_of_manifest(manifest(api_version, kind, namespace)), policy)
    assert not decision.allowed
    assert kind in decision.reason and "platform team" in decision.reason


@pytest.mark.parametrize(("api_version", "kind"), KINDS)
def test_extensions_in_excluded_namespaces_are_left_alone(
    api_version: str, kind: str, policy: Policy
) -> None:
    decision = decide(review_of_manifest(manifest(api_version, kind, "istio-system")), policy)
    assert decision.allowed


@pytest.mark.parametrize(("api_version", "kind"), KINDS)
def test_deleting_an_extension_is_allowed(api_version: str, kind: str, policy: Policy) -> None:
    operation: Operation = "DELETE"
    review = review_of_manifest(manifest(api_version, kind, "team-a"), operation=operation)
    assert decide(review, policy).allowed

"""The cheap exits: one answer for decide, mutate and the decision cache."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from webhook.admission.decision_cache import DecisionCache
from webhook.core.checks import EmptyView
from webhook.core.engine import decide
from webhook.core.exemptions import exemption
from webhook.core.mutations import mutate
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Review, review_of_manifest

pytestmark = pytest.mark.unit

POLICY = parse_policy(
    """
egress: {namespace: external}
excludedNamespaces: [kube-system]
controller: {users: ["system:serviceaccount:egress-guard:controller"]}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {from: {namespace: team-a}, to: [api]}
"""
)


def sidecar(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "open", "namespace": namespace},
        "spec": {},
    }


def review(namespace: str = "team-a", **changes: Any) -> Review:
    return dataclasses.replace(review_of_manifest(sidecar(namespace)), **changes)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"operation": "CONNECT"}, "CONNECT"),
        ({"sub_resource": "status"}, "subresources"),
        ({"namespace": "kube-system"}, "namespace kube-system is excluded"),
        ({"username": "system:serviceaccount:egress-guard:controller"}, "own controller"),
    ],
)
def test_exempt_reviews_are_allowed_unpatched_and_not_cached(
    changes: dict[str, Any], reason: str
) -> None:
    exempt = review(**changes)
    why = exemption(exempt, POLICY)
    assert why is not None and reason in why
    decision = decide(exempt, POLICY)
    assert decision.allowed and decision.reason == why
    assert mutate(exempt, POLICY).patch == ()
    assert not DecisionCache(EmptyView()).worth_caching(exempt, POLICY)


def test_a_judged_review_is_denied_patched_and_cached() -> None:
    judged = review()
    assert exemption(judged, POLICY) is None
    assert not decide(judged, POLICY).allowed
    assert mutate(judged, POLICY).patch
    assert DecisionCache(EmptyView()).worth_caching(judged, POLICY)


def test_ephemeral_containers_are_judged_although_a_subresource() -> None:
    pod = dataclasses.replace(
        review_of_manifest(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team-a"}}
        ),
        operation="UPDATE",
        sub_resource="ephemeralcontainers",
    )
    assert exemption(pod, POLICY) is None

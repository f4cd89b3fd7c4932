"""Every consumer honours exceptions through ``Policy.at`` and nothing else.

Kyverno's expiring exceptions showed how easily an expired grant stays honoured by one code path
but not another.  Here each consumer of the core is run on the same policy at an instant where
the exception is live and at its expiry instant: they must all agree, and those that take ``now``
must get the grant from ``Policy.at``.  A static check keeps a second path from appearing.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from webhook.admission.decision_cache import DecisionCache
from webhook.core.audit import audit
from webhook.core.checks import EmptyView
from webhook.core.desired import generate
from webhook.core.engine import decide
from webhook.core.policy import Policy
from webhook.core.policy_admission import SecurityTeam, check_policy_configmap
from webhook.core.policy_diff import diff_policies
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Review, review_of_manifest

pytestmark = pytest.mark.unit

LIVE = datetime(2026, 12, 1, tzinfo=UTC)
EXPIRY = datetime(2026, 12, 3, tzinfo=UTC)
WEBHOOK = Path(__file__).resolve().parents[2] / "webhook"

BASE = """
egress: {namespace: egress}
externalServices:
  - {name: github, hosts: [api.github.com], ports: [{number: 443, protocol: TLS}]}
allow: []
"""
POLICY = (
    BASE
    + """
exceptions:
  - {name: ci, namespaces: [team-b], services: [github], owner: alice, ticket: SEC-1,
     expires: "2026-12-03T00:00:00Z"}
"""
)
ENTRY = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "ServiceEntry",
    "metadata": {"name": "gh", "namespace": "team-b"},
    "spec": {
        "hosts": ["api.github.com"],
        "exportTo": ["."],
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        "resolution": "DNS",
    },
}


class _Objects:
    def objects(self) -> Iterable[Mapping[str, Any]]:
        return [ENTRY]


def _admission(policy: Policy, now: datetime) -> bool:
    # the webhook adapter resolves the policy once per request with the time it read
    return decide(review_of_manifest(ENTRY), policy.at(now)).allowed


def _routes_team_b(manifests: Iterable[Mapping[str, Any]]) -> bool:
    return any(
        m["kind"] == "VirtualService" and m["metadata"]["namespace"] == "team-b" for m in manifests
    )


def _reconciler(policy: Policy, now: datetime) -> bool:
    return _routes_team_b(generate(policy.at(now), ["team-b", "egress"]).manifests)


def _audit(policy: Policy, now: datetime) -> bool:
    return audit([ENTRY], policy, now=now).clean


def _diff(policy: Policy, now: datetime) -> bool:
    return bool(diff_policies(parse_policy(BASE), policy, now=now).added)


def _configmap_apply(policy: Policy, now: datetime) -> bool:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "p", "namespace": "egress-guard"},
        "data": {"policy.yaml": POLICY},
    }
    del policy  # the proposed policy is the ConfigMap's text, the same document
    review = Review("u", "", "v1", "ConfigMap", "CREATE", "egress-guard", "p", configmap)
    decision = check_policy_configmap(
        review, current=None, cluster=_Objects(), now=now, security_team=SecurityTeam()
    )
    # a first policy warns about every object it leaves in breach
    return not any("in breach" in w for w in decision.warnings)


CONSUMERS: dict[str, Callable[[Policy, datetime], bool]] = {
    "admission": _admission,
    "reconciler plan": _reconciler,
    "audit": _audit,
    "policy diff": _diff,
    "configmap apply": _configmap_apply,
}


@pytest.mark.parametrize("consumer", sorted(CONSUMERS))
def test_every_consumer_grants_while_live_and_stops_at_expiry(
    consumer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[datetime] = []
    original = Policy.at

    def spy(self: Policy, now: datetime) -> Policy:
        calls.append(now)
        return original(self, now)

    monkeypatch.setattr(Policy, "at", spy)
    policy = parse_policy(POLICY)
    assert CONSUMERS[consumer](policy, LIVE) is True
    assert LIVE in calls
    calls.clear()
    assert CONSUMERS[consumer](policy, EXPIRY) is False
    assert EXPIRY in calls


def test_an_unresolved_policy_grants_no_exception_anywhere() -> None:
    policy = parse_policy(POLICY)
    assert not decide(review_of_manifest(ENTRY), policy).allowed
    assert not _routes_team_b(generate(policy, ["team-b", "egress"]).manifests)
    assert _routes_team_b(generate(policy.at(LIVE), ["team-b", "egress"]).manifests)


def test_only_the_policy_model_turns_exceptions_into_rules() -> None:
    """No module but ``core/policy.py`` calls ``PolicyException.rules()``: one path."""
    offenders = []
    for path in WEBHOOK.rglob("*.py"):
        if path == WEBHOOK / "core" / "policy.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "rules"
                and not node.args
            ):
                offenders.append(f"{path.relative_to(WEBHOOK)}:{node.lineno}")
    assert offenders == []


def test_the_decision_cache_never_serves_a_grant_past_its_expiry() -> None:
    """Resolving before the cache is enough: the resolved revision changes with the live set."""
    cache = DecisionCache(EmptyView(), size=16)
    policy = parse_policy(POLICY)
    review = review_of_manifest(ENTRY)
    live, _ = cache.decide(review, policy.at(LIVE))
    again, hit = cache.decide(review, policy.at(LIVE))
    assert live.allowed and again.allowed and hit is True
    expired, hit = cache.decide(review, policy.at(EXPIRY))
    assert not expired.allowed
    assert hit is False

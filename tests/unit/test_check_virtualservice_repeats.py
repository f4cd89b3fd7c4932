"""The VirtualService check remembers answers within one decision (hosts, clients, gateways):
a remembered answer must still be reported at every route that repeats it, and must never be
reused for a route whose clients or hosts differ."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.builders import assert_denied_at, judge
from tests.unit.test_check_virtualservices import ML_GW, PARTNER_GW, PAYMENTS_GW, POLICY, to, vs
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY.format(mode="enforce"))


def fields(manifest: dict[str, Any], policy: Policy) -> list[str]:
    return [v.field for v in judge(manifest, policy).violations]


def test_a_repeated_forbidden_destination_is_reported_at_every_route(policy: Policy) -> None:
    manifest = vs(hosts=["api.payments.example"], http=[to("evil.example.com") for _ in range(5)])
    assert fields(manifest, policy) == [
        f"spec.http[{i}].route[0].destination.host" for i in range(5)
    ]


def test_a_repeated_invalid_host_is_reported_at_every_occurrence(policy: Policy) -> None:
    route = {
        "route": [{"destination": {"host": "bad host"}}, {"destination": {"host": "bad host"}}]
    }
    decision = judge(vs(hosts=["api.payments.example"], http=[route, route]), policy)
    assert [v.field for v in decision.violations] == [
        f"spec.http[{i}].route[{j}].destination.host" for i in range(2) for j in range(2)
    ]
    assert all("is not a valid host" in v.message for v in decision.violations)


def test_a_repeated_gateway_problem_is_reported_at_every_route(policy: Policy) -> None:
    # no rule lets team-b reach payments, whose gateway every route names
    manifest = vs(namespace="team-b", http=[to(PAYMENTS_GW) for _ in range(3)])
    decision = judge(manifest, policy)
    assert [v.field for v in decision.violations] == [
        f"spec.http[{i}].route[0].destination.host" for i in range(3)
    ]
    assert len({v.message for v in decision.violations}) == 1
    assert "may not reach" in decision.reason


def test_clients_allowed_on_one_route_do_not_vouch_for_another(policy: Policy) -> None:
    trainer = to(ML_GW, match=[{"sourceLabels": {"app": "trainer"}}])
    anyone = to(ML_GW, match=[{"sourceLabels": {"app": "web"}}])
    for http, denied in (([trainer, anyone], 1), ([anyone, trainer], 0)):
        decision = judge(vs(hosts=["ml.example.net"], http=http), policy)
        assert [v.field for v in decision.violations] == [
            f"spec.http[{denied}].route[0].destination.host"
        ]
        assert "app=web" in decision.reason


def test_label_order_does_not_change_who_a_route_serves(policy: Policy) -> None:
    first = to(ML_GW, match=[{"sourceLabels": {"app": "trainer", "tier": "gpu"}}])
    second = to(ML_GW, match=[{"sourceLabels": {"tier": "gpu", "app": "trainer"}}])
    assert judge(vs(hosts=["ml.example.net"], http=[first, second]), policy).allowed


def test_a_rewrite_on_one_route_is_judged_on_that_route_only(policy: Policy) -> None:
    # both routes use the partner gateway; only the second rewrites to a host it does not carry
    plain = to(PARTNER_GW)
    rewritten = to(PARTNER_GW, rewrite={"authority": "api.payments.example"})
    decision = judge(vs(hosts=["eu.partner.example"], http=[plain, rewritten, plain]), policy)
    assert [v.field for v in decision.violations] == ["spec.http[1].route[0].destination.host"]
    assert_denied_at(
        decision, "spec.http[1].route[0].destination.host", "does not carry 'api.payments.example'"
    )


def test_the_same_destination_under_other_clients_is_judged_again(policy: Policy) -> None:
    # one memoized answer per (gateway, hosts, clients): the payments gateway is fine for the
    # namespace, and stays fine when a later route narrows to labelled clients
    routes = [
        to(PAYMENTS_GW),
        to(PAYMENTS_GW, match=[{"sourceLabels": {"app": "trainer"}}]),
        to(PAYMENTS_GW, match=[{"sourceNamespace": "team-b"}]),
    ]
    decision = judge(vs(hosts=["api.payments.example"], http=routes), policy)
    assert [v.field for v in decision.violations] == ["spec.http[2].route[0].destination.host"]
    assert "team-b" in decision.reason

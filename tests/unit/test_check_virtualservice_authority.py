"""VirtualService authority rewrites: the ``headers`` form, and where a rewrite is judged at all.

Istio turns a request header ``host`` or ``:authority`` set or added on a route (or on one of
its destinations) into the same Host rewrite as ``rewrite.authority``.  A rewrite changes where
traffic goes only where the Host header picks the upstream: an egress gateway, a host outside the
cluster; towards a tenant's own Services it only changes the Host header they receive.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.builders import assert_denied_at, judge
from tests.unit.test_check_virtualservices import PARTNER_GW, PAYMENTS_GW, POLICY, to, vs
from webhook.core.checks.common import CLASSES_FROM
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY.format(mode="enforce"))


def set_host(name: str, value: str, operation: str = "set") -> dict[str, Any]:
    """A ``headers`` field setting request header ``name`` to ``value``."""
    return {"request": {operation: {name: value}}}


def to_with_entry_headers(host: str, headers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An http route to ``host`` whose route entry carries ``headers``."""
    return {"route": [{"destination": {"host": host}, "headers": headers}], **extra}


# --- the headers form of an authority rewrite ------------------------------------------------

HEADER_DENIED: dict[str, tuple[dict[str, Any], str, str]] = {
    "route headers set Host": (
        vs(
            hosts=["api.payments.example"],
            exportTo=["."],
            http=[to(PAYMENTS_GW, headers=set_host("Host", "pastebin.com"))],
        ),
        "spec.http[0].headers.request.set[Host]",
        "pastebin.com",
    ),
    "route headers add :authority": (
        vs(
            hosts=["api.payments.example"],
            exportTo=["."],
            http=[to(PAYMENTS_GW, headers=set_host(":authority", "pastebin.com:443", "add"))],
        ),
        "spec.http[0].headers.request.add[:authority]",
        "pastebin.com",
    ),
    "header name in any case": (
        vs(
            hosts=["api.payments.example"],
            exportTo=["."],
            http=[to(PAYMENTS_GW, headers=set_host("HoSt", "pastebin.com"))],
        ),
        "spec.http[0].headers.request.set[HoSt]",
        "pastebin.com",
    ),
    "destination headers set :Authority": (
        vs(
            hosts=["api.payments.example"],
            exportTo=["."],
            http=[to_with_entry_headers(PAYMENTS_GW, set_host(":Authority", "pastebin.com"))],
        ),
        "spec.http[0].route[0].headers.request.set[:Authority]",
        "pastebin.com",
    ),
    "header rewrite to a host the gateway does not carry": (
        vs(
            hosts=["eu.partner.example"],
            exportTo=["."],
            http=[to(PARTNER_GW, headers=set_host("host", "api.payments.example"))],
        ),
        "spec.http[0].route[0].destination.host",
        "does not carry 'api.payments.example'",
    ),
    "header value of the wrong type": (
        vs(
            hosts=["api.payments.example"],
            exportTo=["."],
            http=[to(PAYMENTS_GW, headers={"request": {"set": {"host": 7}}})],
        ),
        "spec.http[0].headers.request.set[host]",
        "string",
    ),
    "request operations of the wrong shape": (
        vs(
            hosts=["api.payments.example"],
            exportTo=["."],
            http=[to(PAYMENTS_GW, headers={"request": {"set": ["host", "pastebin.com"]}})],
        ),
        "spec.http[0].headers.request.set",
        "object",
    ),
}


@pytest.mark.parametrize(
    ("manifest", "field", "words"), HEADER_DENIED.values(), ids=HEADER_DENIED.keys()
)
def test_authority_header_is_judged_as_a_rewrite(
    manifest: dict[str, Any], field: str, words: str, policy: Policy
) -> None:
    assert_denied_at(judge(manifest, policy), field, words)


HEADER_ALLOWED: dict[str, dict[str, Any]] = {
    "Host header to a host the same gateway carries": vs(
        hosts=["eu.partner.example"],
        exportTo=["."],
        http=[to(PARTNER_GW, headers=set_host("Host", "us.partner.example"))],
    ),
    "other request headers and response headers": vs(
        hosts=["api.payments.example"],
        exportTo=["."],
        http=[
            to(
                PAYMENTS_GW,
                headers={
                    "request": {"set": {"x-team": "a"}, "remove": ["host"]},
                    "response": {"set": {"host": "pastebin.com"}},
                },
            )
        ],
    ),
    "an empty authority header rewrites nothing": vs(
        hosts=["api.payments.example"],
        exportTo=["."],
        http=[to(PAYMENTS_GW, headers=set_host("host", ""))],
    ),
}


@pytest.mark.parametrize("manifest", HEADER_ALLOWED.values(), ids=HEADER_ALLOWED.keys())
def test_headers_that_rewrite_no_authority_elsewhere_are_allowed(
    manifest: dict[str, Any], policy: Policy
) -> None:
    decision = judge(manifest, policy)
    assert decision.allowed, decision.reason


def test_authority_header_in_the_egress_namespace_is_judged(policy: Policy) -> None:
    manifest = vs(
        namespace="egress",
        hosts=["api.payments.example"],
        http=[to(PAYMENTS_GW, headers=set_host("Host", "pastebin.com"))],
    )
    assert_denied_at(
        judge(manifest, policy), "spec.http[0].headers.request.set[Host]", "pastebin.com"
    )


def _long_list(rule: dict[str, Any], at: int) -> dict[str, Any]:
    """A VirtualService of many plain rules to the payments gateway, ``rule`` at ``at``."""
    rules: list[dict[str, Any]] = [to(PAYMENTS_GW) for _ in range(CLASSES_FROM * 2)]
    rules[at] = rule
    return vs(hosts=["api.payments.example"], exportTo=["."], http=rules)


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        (
            to(PAYMENTS_GW, headers=set_host("Host", "pastebin.com")),
            "headers.request.set[Host]",
        ),
        (
            to_with_entry_headers(PAYMENTS_GW, set_host(":authority", "pastebin.com", "add")),
            "route[0].headers.request.add[:authority]",
        ),
    ],
    ids=["route headers", "destination headers"],
)
def test_authority_header_deep_in_a_long_rule_list_is_found(
    rule: dict[str, Any], field: str, policy: Policy
) -> None:
    at = CLASSES_FROM + 3
    decision = judge(_long_list(rule, at), policy)
    assert_denied_at(decision, f"spec.http[{at}].{field}", "pastebin.com")


def test_authority_header_among_long_route_entries_is_found(policy: Policy) -> None:
    entries: list[dict[str, Any]] = [
        {"destination": {"host": PAYMENTS_GW}, "weight": 1} for _ in range(CLASSES_FROM * 2)
    ]
    entries[-1]["headers"] = set_host("host", "pastebin.com")
    manifest = vs(hosts=["api.payments.example"], exportTo=["."], http=[{"route": entries}])
    field = f"spec.http[0].route[{len(entries) - 1}].headers.request.set[host]"
    assert_denied_at(judge(manifest, policy), field, "pastebin.com")


def test_plain_headers_in_a_long_rule_list_are_allowed(policy: Policy) -> None:
    rules = [to(PAYMENTS_GW, headers=set_host("x-team", "a")) for _ in range(CLASSES_FROM * 2)]
    decision = judge(vs(hosts=["api.payments.example"], exportTo=["."], http=rules), policy)
    assert decision.allowed, decision.reason


# --- where a rewrite is judged ---------------------------------------------------------------

REWRITE = {"rewrite": {"authority": "legacy.example.com"}}
HEADER_REWRITE = {"headers": set_host("Host", "legacy.example.com")}

IN_CLUSTER: dict[str, dict[str, Any]] = {
    "ingress route to the tenant's Service": vs(
        hosts=["shop.team-a.example"],
        gateways=["istio-system/public-gateway"],
        http=[
            {
                "match": [{"uri": {"prefix": "/legacy"}}],
                "rewrite": {"uri": "/", "authority": "legacy.internal.example.com"},
                "route": [{"destination": {"host": "legacy-app", "port": {"number": 8080}}}],
            }
        ],
    ),
    "mesh route to the tenant's Service": vs(
        hosts=["legacy-app"], http=[to("legacy-app", **REWRITE)]
    ),
    "mesh route, Host header": vs(hosts=["legacy-app"], http=[to("legacy-app", **HEADER_REWRITE)]),
    "mesh route, destination's Host header": vs(
        hosts=["legacy-app"],
        http=[to_with_entry_headers("legacy-app", set_host(":authority", "legacy.example.com"))],
    ),
    "mirrored to another in-cluster Service": vs(
        hosts=["legacy-app"],
        http=[to("legacy-app", mirror={"host": "shadow.team-b.svc.cluster.local"}, **REWRITE)],
    ),
}


@pytest.mark.parametrize("manifest", IN_CLUSTER.values(), ids=IN_CLUSTER.keys())
def test_rewrite_towards_in_cluster_services_is_allowed(
    manifest: dict[str, Any], policy: Policy
) -> None:
    decision = judge(manifest, policy)
    assert decision.allowed, decision.reason


def _leaving(route: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return vs(hosts=["legacy-app"], exportTo=["."], http=[route], **spec)


HOST_PICKS: dict[str, tuple[dict[str, Any], str]] = {
    "a Service of the egress namespace": (
        _leaving(to("relay.egress.svc.cluster.local", **REWRITE)),
        "spec.http[0].rewrite.authority",
    ),
    "a wildcard destination (an entry resolved per request)": (
        _leaving(to("*.team-a.svc.cluster.local", **REWRITE)),
        "spec.http[0].rewrite.authority",
    ),
    "mirrored to an egress gateway": (
        _leaving(to("legacy-app", mirror={"host": PAYMENTS_GW}, **REWRITE)),
        "spec.http[0].rewrite.authority",
    ),
    "mirrored to an egress gateway, Host header": (
        _leaving(
            to("legacy-app", mirrors=[{"destination": {"host": PAYMENTS_GW}}], **HEADER_REWRITE)
        ),
        "spec.http[0].headers.request.set[Host]",
    ),
    "one destination of several to an egress gateway": (
        _leaving(
            {
                "route": [
                    {"destination": {"host": "legacy-app"}, "weight": 90},
                    {"destination": {"host": PAYMENTS_GW}, "weight": 10},
                ],
                **REWRITE,
            }
        ),
        "spec.http[0].rewrite.authority",
    ),
    "a delegate, whose destinations are not seen": (
        _leaving({"delegate": {"name": "legacy-routes"}, **REWRITE}),
        "spec.http[0].rewrite.authority",
    ),
}


@pytest.mark.parametrize(("manifest", "field"), HOST_PICKS.values(), ids=HOST_PICKS.keys())
def test_rewrite_is_judged_where_the_host_may_pick_the_upstream(
    manifest: dict[str, Any], field: str, policy: Policy
) -> None:
    assert_denied_at(judge(manifest, policy), field, "legacy.example.com")


def test_long_rule_lists_tell_rules_apart_by_where_the_host_picks(policy: Policy) -> None:
    # the same rewrite, towards Services of the same shape of name: judged only for the one
    # in the egress namespace, however the rules are grouped
    rules = [to(f"svc-{i}.team-{i}.svc.cluster.local", **REWRITE) for i in range(CLASSES_FROM * 2)]
    at = CLASSES_FROM + 1
    rules[at] = to("relay.egress.svc.cluster.local", **REWRITE)
    decision = judge(vs(hosts=["legacy-app"], exportTo=["."], http=rules), policy)
    assert [v.field for v in decision.violations] == [f"spec.http[{at}].rewrite.authority"]
    rules[at] = to(f"svc-{at}.team-{at}.svc.cluster.local", **REWRITE)
    decision = judge(vs(hosts=["legacy-app"], exportTo=["."], http=rules), policy)
    assert decision.allowed, decision.reason


# --- messages --------------------------------------------------------------------------------


def test_hijack_of_the_tenants_own_public_name_points_at_export_to(policy: Policy) -> None:
    manifest = vs(
        hosts=["bookinfo.team-a.example"],
        gateways=["bookinfo-gateway", "mesh"],
        http=[to("productpage")],
    )
    decision = judge(manifest, policy)
    assert not decision.allowed
    (message,) = [v.message for v in decision.violations]
    assert message.endswith("set exportTo: ['.']"), message
    assert "egress gateway" not in message.split(";")[-1], message


def test_hijack_of_an_external_host_names_its_gateway_once(policy: Policy) -> None:
    decision = judge(vs(hosts=["api.payments.example"], http=[to("proxy")]), policy)
    (message,) = [v.message for v in decision.violations]
    assert f"route it to {PAYMENTS_GW} or set exportTo: ['.']" in message, message
    assert "the egress gateway the egress gateway" not in message


def test_gateway_leg_straight_out_is_described_as_the_gateways(policy: Policy) -> None:
    manifest = vs(
        hosts=["api.payments.example"],
        gateways=["mesh", "istio-egressgateway"],
        exportTo=["."],
        http=[
            to(PAYMENTS_GW, match=[{"gateways": ["mesh"]}]),
            to("api.payments.example", match=[{"gateways": ["istio-egressgateway"]}]),
        ],
    )
    decision = judge(manifest, policy)
    (violation,) = decision.violations
    assert violation.field == "spec.http[1].route[0].destination.host"
    assert "route on gateway team-a/istio-egressgateway" in violation.message
    assert "workloads of namespace" not in violation.message
    assert PAYMENTS_GW in violation.message

"""VirtualService checks: every route, mirror, authority and delegate leads to an allowed place."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.builders import assert_denied_at, judge
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

POLICY = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
mode: {mode}
egress: {{namespace: egress, gateway: {{mode: dedicated}}}}
externalServices:
  - name: payments
    hosts: [api.payments.example]
    ports: [{{number: 443, protocol: TLS}}]
  - name: partner
    hosts: ["*.partner.example"]
    ports: [{{number: 443, protocol: TLS}}]
  - name: ml
    hosts: [ml.example.net]
    ports: [{{number: 443, protocol: TLS}}]
allow:
  - {{name: team-a, from: {{namespace: team-a}}, to: [payments, partner]}}
  - {{name: team-a-ml, from: {{namespace: team-a, workloadLabels: {{app: trainer}}}}, to: [ml]}}
"""

PAYMENTS_GW = "egress-payments.egress.svc.cluster.local"
PARTNER_GW = "egress-partner.egress.svc.cluster.local"
ML_GW = "egress-ml.egress.svc.cluster.local"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY.format(mode="enforce"))


def vs(namespace: str = "team-a", version: str = "v1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "VirtualService",
        "metadata": {"name": "vs", "namespace": namespace},
        "spec": spec,
    }


def to(host: str, **extra: Any) -> dict[str, Any]:
    """An http route to ``host``."""
    return {"route": [{"destination": {"host": host}}], **extra}


ALLOWED = {
    "leg 1 to the gateway carrying the host": vs(
        hosts=["api.payments.example"], http=[to(PAYMENTS_GW)]
    ),
    "tls route with SNI to the gateway": vs(
        hosts=["api.payments.example"],
        tls=[
            {
                "match": [{"port": 443, "sniHosts": ["api.payments.example"]}],
                "route": [{"destination": {"host": PAYMENTS_GW, "port": {"number": 443}}}],
            }
        ],
    ),
    "tcp route to the gateway": vs(hosts=["api.payments.example"], tcp=[to(PAYMENTS_GW)]),
    "host under the allowed wildcard": vs(hosts=["eu.partner.example"], http=[to(PARTNER_GW)]),
    "the allowed wildcard itself": vs(hosts=["*.partner.example"], http=[to(PARTNER_GW)]),
    "labelled source reaching its labelled service": vs(
        hosts=["ml.example.net"],
        http=[to(ML_GW, match=[{"sourceLabels": {"app": "trainer"}}])],
    ),
    "rewriting the authority to a host the same gateway carries": vs(
        hosts=["eu.partner.example"],
        http=[to(PARTNER_GW, rewrite={"authority": "us.partner.example:443"})],
    ),
    "internal short names expanded in the VS namespace": vs(
        hosts=["reviews"], http=[to("reviews-v2"), to("ratings", mirror={"host": "shadow"})]
    ),
    "private VS steering its own external traffic to its own proxy": vs(
        hosts=["api.payments.example"],
        exportTo=["."],
        http=[to("proxy.team-a.svc.cluster.local", mirror={"host": "audit"})],
    ),
    "exported to its own namespace by name": vs(
        hosts=["api.payments.example"], exportTo=["team-a"], http=[to("proxy")]
    ),
    "bound to the tenant's own ingress gateway": vs(
        hosts=["shop.team-a.example"],
        gateways=["team-a/ingress"],
        http=[to("web.team-a.svc.cluster.local")],
    ),
    "ingress VS for every host on the tenant's own gateway": vs(
        hosts=["*"], gateways=["ingress"], http=[to("web")]
    ),
    "delegate in the same namespace": vs(
        hosts=["web.team-a.svc.cluster.local"],
        http=[{"delegate": {"name": "web-routes"}}],
    ),
    "delegate without hosts routing to a gateway the namespace may use": vs(
        http=[to(PAYMENTS_GW)],
    ),
}


@pytest.mark.parametrize("manifest", ALLOWED.values(), ids=ALLOWED.keys())
@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_tenant_virtual_service_allowed(
    manifest: dict[str, Any], version: str, policy: Policy
) -> None:
    decision = judge({**manifest, "apiVersion": f"networking.istio.io/{version}"}, policy)
    assert decision.allowed, decision.reason


DENIED: dict[str, tuple[dict[str, Any], str, str]] = {
    "mesh route straight to the external host": (
        vs(hosts=["api.payments.example"], http=[to("api.payments.example")]),
        "spec.http[0].route[0].destination.host",
        PAYMENTS_GW,
    ),
    "route to a host outside the policy": (
        vs(hosts=["api.payments.example"], exportTo=["."], http=[to("pastebin.com")]),
        "spec.http[0].route[0].destination.host",
        "not an external service",
    ),
    "mirror to an outside host": (
        vs(
            hosts=["api.payments.example"],
            http=[to(PAYMENTS_GW, mirror={"host": "collector.attacker.example"})],
        ),
        "spec.http[0].mirror.host",
        "collector.attacker.example",
    ),
    "mirrors to an outside host": (
        vs(
            hosts=["api.payments.example"],
            http=[to(PAYMENTS_GW, mirrors=[{"destination": {"host": "x.attacker.example"}}])],
        ),
        "spec.http[0].mirrors[0].destination.host",
        "x.attacker.example",
    ),
    "dotted name is not expanded (trap 5)": (
        vs(hosts=["api.payments.example"], http=[to("egress-payments.egress")]),
        "spec.http[0].route[0].destination.host",
        "egress-payments.egress",
    ),
    "gateway that does not carry the host": (
        vs(hosts=["api.payments.example"], http=[to(PARTNER_GW)]),
        "spec.http[0].route[0].destination.host",
        "does not carry",
    ),
    "gateway whose service the source may not reach": (
        vs(hosts=["ml.example.net"], http=[to(ML_GW, match=[{"sourceLabels": {"app": "web"}}])]),
        "spec.http[0].route[0].destination.host",
        "{app=web}",
    ),
    "one of two matches lacks the labels": (
        vs(
            hosts=["ml.example.net"],
            http=[
                to(
                    ML_GW,
                    match=[{"sourceLabels": {"app": "trainer"}}, {"sourceLabels": {"app": "web"}}],
                )
            ],
        ),
        "spec.http[0].route[0].destination.host",
        "ml.example.net",
    ),
    "source namespace that may reach nothing": (
        vs(
            hosts=["api.payments.example"],
            http=[to(PAYMENTS_GW, match=[{"sourceNamespace": "team-b"}])],
        ),
        "spec.http[0].route[0].destination.host",
        "team-b",
    ),
    "host no workload of the namespace may reach": (
        vs(hosts=["pastebin.com"], exportTo=["."], http=[to("proxy")]),
        "spec.hosts[0]",
        "pastebin.com",
    ),
    "apex of an allowed wildcard": (
        vs(hosts=["partner.example"], http=[to(PARTNER_GW)]),
        "spec.hosts[0]",
        "partner.example",
    ),
    "IP host": (vs(hosts=["203.0.113.5"], http=[to("proxy")]), "spec.hosts[0]", "IP"),
    "star host": (vs(hosts=["*"], http=[to("proxy")]), "spec.hosts[0]", "over-broad"),
    "wildcard over a public suffix": (
        vs(hosts=["*.com"], http=[to("proxy")]),
        "spec.hosts[0]",
        "over-broad",
    ),
    "IP destination outside the cluster": (
        vs(hosts=["web"], http=[to("203.0.113.5")]),
        "spec.http[0].route[0].destination.host",
        "203.0.113.5",
    ),
    "bound to the egress gateway": (
        vs(
            hosts=["api.payments.example"],
            gateways=["egress/egress-payments"],
            http=[to("api.payments.example")],
        ),
        "spec.gateways[0]",
        "egress namespace",
    ),
    "bound to the egress gateway with the legacy name.namespace form": (
        vs(
            hosts=["api.payments.example"],
            gateways=["egress-payments.egress.svc.cluster.local"],
            http=[to(PAYMENTS_GW)],
        ),
        "spec.gateways[0]",
        "egress namespace",
    ),
    "egress gateway named in a route match": (
        vs(
            hosts=["api.payments.example"],
            gateways=["mesh"],
            http=[to(PAYMENTS_GW, match=[{"gateways": ["mesh", "egress/egress-payments"]}])],
        ),
        "spec.http[0].match[0].gateways[1]",
        "egress namespace",
    ),
    "exported VS hijacks other tenants' traffic (trap 7)": (
        vs(hosts=["api.payments.example"], http=[to("proxy.team-a.svc.cluster.local")]),
        "spec.http[0].route[0].destination.host",
        "exportTo",
    ),
    "VS exported to another tenant hijacks its traffic": (
        vs(hosts=["api.payments.example"], exportTo=[".", "team-b"], http=[to("proxy")]),
        "spec.http[0].route[0].destination.host",
        "other namespaces",
    ),
    "exported VS mirrors other tenants' traffic to an internal sink": (
        vs(hosts=["api.payments.example"], http=[to(PAYMENTS_GW, mirror={"host": "sink"})]),
        "spec.http[0].mirror.host",
        "other namespaces",
    ),
    "exported VS delegates its external routes": (
        vs(hosts=["api.payments.example"], http=[{"delegate": {"name": "more"}}]),
        "spec.http[0].delegate",
        "exportTo",
    ),
    "delegate to another namespace": (
        vs(hosts=["web"], http=[{"delegate": {"name": "x", "namespace": "team-b"}}]),
        "spec.http[0].delegate",
        "team-b",
    ),
    "rewrite to a host outside the allow list": (
        vs(
            hosts=["api.payments.example"],
            http=[to(PAYMENTS_GW, rewrite={"authority": "pastebin.com"})],
        ),
        "spec.http[0].rewrite.authority",
        "pastebin.com",
    ),
    "rewrite to a host the gateway does not carry": (
        vs(
            hosts=["eu.partner.example"],
            http=[to(PARTNER_GW, rewrite={"authority": "api.payments.example"})],
        ),
        "spec.http[0].route[0].destination.host",
        "does not carry 'api.payments.example'",
    ),
    "tcp route straight out": (
        vs(hosts=["api.payments.example"], tcp=[to("api.payments.example")]),
        "spec.tcp[0].route[0].destination.host",
        "egress gateway",
    ),
    "tenant gateway route straight out": (
        vs(
            hosts=["shop.team-a.example"],
            gateways=["ingress"],
            exportTo=["."],
            http=[to("api.payments.example")],
        ),
        "spec.http[0].route[0].destination.host",
        "outside the mesh",
    ),
}


@pytest.mark.parametrize(("manifest", "field", "words"), DENIED.values(), ids=DENIED.keys())
def test_tenant_virtual_service_denied(
    manifest: dict[str, Any], field: str, words: str, policy: Policy
) -> None:
    decision = judge(manifest, policy)
    assert_denied_at(decision, field, words)


def test_labelled_denial_names_source_and_what_it_may_reach(policy: Policy) -> None:
    manifest = vs(
        hosts=["ml.example.net"], http=[to(ML_GW, match=[{"sourceLabels": {"app": "web"}}])]
    )
    message = judge(manifest, policy).violations[0].message
    assert "ml.example.net" in message
    assert "{app=web}" in message and "team-a" in message
    assert "payments (api.payments.example)" in message


def test_private_vs_may_route_its_own_external_traffic_internally(policy: Policy) -> None:
    exported = vs(hosts=["api.payments.example"], http=[to("proxy")])
    assert not judge(exported, policy).allowed
    assert judge({**exported, "spec": {**exported["spec"], "exportTo": ["."]}}, policy).allowed


def test_deleting_a_virtual_service_is_allowed(policy: Policy) -> None:
    manifest = vs(hosts=["api.payments.example"], http=[to("api.payments.example")])
    assert judge(manifest, policy, "DELETE").allowed


def test_audit_mode_admits_with_warnings() -> None:
    audit = parse_policy(POLICY.format(mode="audit"))
    decision = judge(vs(hosts=["api.payments.example"], http=[to("api.payments.example")]), audit)
    assert decision.allowed and decision.audited
    assert decision.warnings


@pytest.mark.parametrize(
    "spec",
    [
        {"hosts": "api.payments.example"},
        {"hosts": ["web"], "http": {"route": []}},
        {"hosts": ["web"], "http": [{"route": [{"destination": "proxy"}]}]},
        {"hosts": ["web"], "http": [{"route": [{"destination": {"host": 5}}]}]},
        {"hosts": ["web"], "gateways": "mesh"},
        {"hosts": ["web"], "http": [to("x", match=[{"sourceLabels": ["app"]}])]},
    ],
)
def test_malformed_virtual_service_is_denied_with_a_field(
    spec: dict[str, Any], policy: Policy
) -> None:
    decision = judge(vs(**spec), policy)
    assert not decision.allowed
    assert all(v.field for v in decision.violations), decision.reason
    assert "malformed" not in decision.reason


# --- the egress namespace -------------------------------------------------------------------

TWO_LEGS = vs(
    namespace="egress",
    hosts=["api.payments.example"],
    gateways=["mesh", "egress/egress-payments"],
    tls=[
        {
            "match": [{"gateways": ["mesh"], "port": 443, "sniHosts": ["api.payments.example"]}],
            "route": [{"destination": {"host": PAYMENTS_GW, "port": {"number": 443}}}],
        },
        {
            "match": [
                {
                    "gateways": ["egress/egress-payments"],
                    "port": 443,
                    "sniHosts": ["api.payments.example"],
                }
            ],
            "route": [{"destination": {"host": "api.payments.example", "port": {"number": 443}}}],
        },
    ],
)


def test_egress_namespace_two_leg_route_is_allowed(policy: Policy) -> None:
    decision = judge(TWO_LEGS, policy)
    assert decision.allowed, decision.reason


def test_egress_namespace_gateway_only_route_is_allowed(policy: Policy) -> None:
    manifest = vs(
        namespace="egress",
        hosts=["eu.partner.example"],
        gateways=["egress-partner"],
        http=[to("eu.partner.example")],
    )
    assert judge(manifest, policy).allowed


EGRESS_DENIED: dict[str, tuple[dict[str, Any], str]] = {
    "a gateway that is not the policy's": (
        vs(
            namespace="egress",
            hosts=["api.payments.example"],
            gateways=["egress/rogue"],
            http=[to("api.payments.example")],
        ),
        "spec.gateways[0]",
    ),
    "mesh traffic straight out": (
        vs(namespace="egress", hosts=["api.payments.example"], http=[to("api.payments.example")]),
        "spec.http[0].route[0].destination.host",
    ),
    "a route that applies to both mesh and gateway": (
        vs(
            namespace="egress",
            hosts=["api.payments.example"],
            gateways=["mesh", "egress/egress-payments"],
            http=[to("api.payments.example")],
        ),
        "spec.http[0].route[0].destination.host",
    ),
    "a gateway forwarding to another service": (
        vs(
            namespace="egress",
            hosts=["api.payments.example"],
            gateways=["egress/egress-payments"],
            http=[to("ml.example.net")],
        ),
        "spec.http[0].route[0].destination.host",
    ),
    "a host outside the policy": (
        vs(
            namespace="egress",
            hosts=["pastebin.com"],
            gateways=["egress/egress-payments"],
            http=[to("api.payments.example")],
        ),
        "spec.hosts[0]",
    ),
    "a mesh route to a gateway not carrying the host": (
        vs(namespace="egress", hosts=["api.payments.example"], http=[to(ML_GW)]),
        "spec.http[0].route[0].destination.host",
    ),
    "a delegate": (
        vs(
            namespace="egress",
            hosts=["api.payments.example"],
            gateways=["egress-payments"],
            http=[{"delegate": {"name": "x"}}],
        ),
        "spec.http[0].delegate",
    ),
}


@pytest.mark.parametrize(("manifest", "field"), EGRESS_DENIED.values(), ids=EGRESS_DENIED.keys())
def test_egress_namespace_virtual_service_denied(
    manifest: dict[str, Any], field: str, policy: Policy
) -> None:
    decision = judge(manifest, policy)
    assert not decision.allowed
    assert field in {v.field for v in decision.violations}, decision.reason

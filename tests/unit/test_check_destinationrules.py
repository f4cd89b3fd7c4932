"""DestinationRule checks: tunnels are second destinations, the egress gateway keeps mesh mTLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.builders import assert_denied_at, judge
from webhook.core.engine import decide
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

POLICY = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: egress}
internalNetworks: [10.0.0.0/8]
externalServices:
  - name: payments
    hosts: [api.payments.example]
    ports: [{number: 443, protocol: TLS}]
    addresses: [198.51.100.0/24]
  - name: ml
    hosts: [ml.example.net]
    ports: [{number: 443, protocol: TLS}]
allow:
  - {name: team-a, from: {namespace: team-a}, to: [payments]}
  - {name: team-a-ml, from: {namespace: team-a, workloadLabels: {app: trainer}}, to: [ml]}
"""
GATEWAY = "istio-egressgateway.egress.svc.cluster.local"
POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY)


def dr(namespace: str = "team-a", version: str = "v1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "DestinationRule",
        "metadata": {"name": "dr", "namespace": namespace},
        "spec": spec,
    }


def tunnel(target: str) -> dict[str, Any]:
    return {"tunnel": {"protocol": "CONNECT", "targetHost": target, "targetPort": 443}}


ALLOWED = {
    "TLS origination towards an external host": dr(
        host="api.payments.example", trafficPolicy={"tls": {"mode": "SIMPLE"}}
    ),
    "mesh mTLS with SNI towards the egress gateway": dr(
        host=GATEWAY,
        trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL", "sni": "api.payments.example"}},
    ),
    "egress gateway rule without tls (auto mTLS)": dr(
        host=GATEWAY, trafficPolicy={"connectionPool": {"tcp": {"maxConnections": 10}}}
    ),
    "tunnel to a host allowed directly": dr(
        host="proxy", trafficPolicy=tunnel("api.payments.example")
    ),
    "tunnel to an allowed address": dr(host="proxy", trafficPolicy=tunnel("198.51.100.9")),
    "tunnel to a cluster service": dr(
        host="proxy", trafficPolicy=tunnel("db.team-a.svc.cluster.local")
    ),
    "workload selector kept in its namespace": dr(
        host="web", workloadSelector={"matchLabels": {"app": "web"}}, exportTo=["."]
    ),
    # istiod keeps a rule with a workloadSelector private whatever exportTo says
    "workload selector, exportTo omitted": dr(
        host="web", workloadSelector={"matchLabels": {"app": "web"}}
    ),
    "workload selector, exportTo empty": dr(
        host="web", workloadSelector={"matchLabels": {"app": "web"}}, exportTo=[]
    ),
    "workload selector exported to its own namespace by name": dr(
        host="web", workloadSelector={"matchLabels": {"app": "web"}}, exportTo=["team-a"]
    ),
}


@pytest.mark.parametrize("manifest", ALLOWED.values(), ids=ALLOWED.keys())
@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_destination_rule_allowed(manifest: dict[str, Any], version: str, policy: Policy) -> None:
    decision = judge({**manifest, "apiVersion": f"networking.istio.io/{version}"}, policy)
    assert decision.allowed, decision.reason


DENIED: dict[str, tuple[dict[str, Any], str, str]] = {
    "tunnel to a host outside the policy": (
        dr(host="proxy", trafficPolicy=tunnel("exfil.attacker.example")),
        "spec.trafficPolicy.tunnel.targetHost",
        "exfil.attacker.example",
    ),
    "tunnel to a host only labelled workloads may reach": (
        dr(host="proxy", trafficPolicy=tunnel("ml.example.net")),
        "spec.trafficPolicy.tunnel.targetHost",
        "namespace team-a",
    ),
    "tunnel to an Internet address": (
        dr(host="proxy", trafficPolicy=tunnel("203.0.113.4")),
        "spec.trafficPolicy.tunnel.targetHost",
        "203.0.113.4",
    ),
    "tunnel in a subset": (
        dr(host="proxy", subsets=[{"name": "v1", "trafficPolicy": tunnel("x.attacker.example")}]),
        "spec.subsets[0].trafficPolicy.tunnel.targetHost",
        "x.attacker.example",
    ),
    "tunnel in port level settings": (
        dr(
            host="proxy",
            trafficPolicy={
                "portLevelSettings": [{"port": {"number": 443}, **tunnel("x.attacker.example")}]
            },
        ),
        "spec.trafficPolicy.portLevelSettings[0].tunnel.targetHost",
        "x.attacker.example",
    ),
    "plain text towards the egress gateway": (
        dr(host=GATEWAY, trafficPolicy={"tls": {"mode": "DISABLE"}}),
        "spec.trafficPolicy.tls.mode",
        "identity",
    ),
    "own TLS towards the egress gateway": (
        dr(host=GATEWAY, trafficPolicy={"tls": {"mode": "SIMPLE"}}),
        "spec.trafficPolicy.tls.mode",
        GATEWAY,
    ),
    "per-port plain text towards the egress gateway": (
        dr(
            host=GATEWAY,
            trafficPolicy={
                "portLevelSettings": [{"port": {"number": 443}, "tls": {"mode": "DISABLE"}}]
            },
        ),
        "spec.trafficPolicy.portLevelSettings[0].tls.mode",
        "ISTIO_MUTUAL",
    ),
    "wildcard over the egress namespace strips mTLS": (
        dr(host="*.egress.svc.cluster.local", trafficPolicy={"tls": {"mode": "DISABLE"}}),
        "spec.trafficPolicy.tls.mode",
        "ISTIO_MUTUAL",
    ),
    "SNI towards the gateway naming a host the namespace may not reach": (
        dr(host=GATEWAY, trafficPolicy={"tls": {"mode": "ISTIO_MUTUAL", "sni": "pastebin.com"}}),
        "spec.trafficPolicy.tls.sni",
        "pastebin.com",
    ),
    "workload selector exported everywhere": (
        dr(host="web", workloadSelector={"matchLabels": {"app": "web"}}, exportTo=["*"]),
        "spec.exportTo",
        "private to its namespace",
    ),
    "workload selector exported to another namespace": (
        dr(host="web", workloadSelector={"matchLabels": {"app": "web"}}, exportTo=[".", "team-b"]),
        "spec.exportTo",
        "set exportTo: ['.']",
    ),
}


@pytest.mark.parametrize(("manifest", "field", "words"), DENIED.values(), ids=DENIED.keys())
def test_destination_rule_denied(
    manifest: dict[str, Any], field: str, words: str, policy: Policy
) -> None:
    decision = judge(manifest, policy)
    assert_denied_at(decision, field, words)


def test_egress_namespace_rule_for_a_policy_host_is_allowed(policy: Policy) -> None:
    manifest = dr(
        namespace="egress",
        host="api.payments.example",
        trafficPolicy={"portLevelSettings": [{"port": {"number": 443}, "tls": {"mode": "SIMPLE"}}]},
    )
    assert judge(manifest, policy).allowed


@pytest.mark.parametrize(
    "manifest",
    [
        dr(namespace="egress", host="pastebin.com"),
        dr(
            namespace="egress",
            host="api.payments.example",
            trafficPolicy=tunnel("api.payments.example"),
        ),
        dr(namespace="egress", host=GATEWAY, trafficPolicy={"tls": {"mode": "DISABLE"}}),
    ],
    ids=["host outside the policy", "tunnel", "gateway without mesh mTLS"],
)
def test_egress_namespace_rule_denied(manifest: dict[str, Any], policy: Policy) -> None:
    assert not judge(manifest, policy).allowed


def test_deleting_a_destination_rule_is_allowed(policy: Policy) -> None:
    manifest = dr(host=GATEWAY, trafficPolicy={"tls": {"mode": "DISABLE"}})
    assert judge(manifest, policy, "DELETE").allowed


@pytest.mark.parametrize(
    "spec",
    [{"host": 3}, {"host": "x", "trafficPolicy": []}, {"host": "x", "subsets": [1]}],
)
def test_malformed_destination_rule_is_denied_with_a_field(
    spec: dict[str, Any], policy: Policy
) -> None:
    decision = judge(dr(**spec), policy)
    assert not decision.allowed
    assert all(v.field for v in decision.violations), decision.reason


def test_wildcard_tls_passthrough_to_the_gateway_is_allowed_only_in_the_egress_namespace() -> None:
    # a wildcard TLS host has no fixed SNI for the mTLS hop, so the sidecar sends the app's TLS
    # unwrapped to a PASSTHROUGH server; only the security team's namespace may say so
    firewall = parse_policy((POLICIES / "istio-egress-firewall.yaml").read_text())
    banzai = parse_policy((POLICIES / "banzai-demo.yaml").read_text())
    gateway = "istio-egressgateway.istio-egress.svc.cluster.local"

    def dr(namespace: str) -> dict[str, Any]:
        return {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "gw", "namespace": namespace},
            "spec": {
                "host": gateway,
                "subsets": [{"name": "foo", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}],
            },
        }

    assert decide(review_of_manifest(dr("istio-egress")), firewall).allowed
    denied = decide(review_of_manifest(dr("team-a")), firewall)
    assert not denied.allowed
    assert "DISABLE" in denied.reason
    # with no wildcard TLS service on the gateway, DISABLE is refused even there
    banzai_gw = "egress-httpbin.external.svc.cluster.local"
    banzai_dr = dr("external")
    banzai_dr["spec"]["host"] = banzai_gw
    assert not decide(review_of_manifest(banzai_dr), banzai).allowed


def test_a_namespace_wide_mtls_off_rule_is_told_to_narrow_its_host(policy: Policy) -> None:
    # Istio's own "mTLS off" rule (host '*.local') covers the egress gateway by accident
    denied = decide(
        review_of_manifest(dr(host="*.local", trafficPolicy={"tls": {"mode": "DISABLE"}})),
        policy,
    )
    assert not denied.allowed
    assert "narrow spec.host '*.local' to your own services" in denied.reason
    assert "'*.team-a.svc.cluster.local'" in denied.reason
    # and the narrowed rule it suggests passes
    narrowed = dr(host="*.team-a.svc.cluster.local", trafficPolicy={"tls": {"mode": "DISABLE"}})
    assert decide(review_of_manifest(narrowed), policy).allowed
    # the gateway named exactly gets no such hint: its rule is about the gateway
    exact = decide(
        review_of_manifest(dr(host=GATEWAY, trafficPolicy={"tls": {"mode": "DISABLE"}})), policy
    )
    assert "narrow spec.host" not in exact.reason

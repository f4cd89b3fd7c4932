"""The Istio blog's egress-firewall requirements as admission decisions.

Under ``policies/istio-egress-firewall.yaml`` every namespace may reach ``service1.foo.com``,
team-a ``*.foo.com`` and team-b ``*.bar.com``, all through one shared egress gateway in
``istio-egress``.  These scenarios check the per-cluster and per-source requirements (3 and 4)
and the tamper-proofing one (5) at ``kubectl apply`` time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from webhook.core.decisions import Decision
from webhook.core.engine import decide
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

POLICIES = Path(__file__).resolve().parents[2] / "policies"
GATEWAY = "istio-egressgateway.istio-egress.svc.cluster.local"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy((POLICIES / "istio-egress-firewall.yaml").read_text())


def sidecar(namespace: str, *hosts: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {
            "egress": [{"hosts": ["./*", *hosts]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    }


def leg_one(namespace: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "to-egress", "namespace": namespace},
        "spec": {
            "hosts": [host],
            "tls": [
                {
                    "match": [{"port": 443, "sniHosts": [host]}],
                    "route": [{"destination": {"host": GATEWAY, "port": {"number": 443}}}],
                }
            ],
        },
    }


def judge(manifest: dict[str, Any], policy: Policy) -> Decision:
    return decide(review_of_manifest(manifest), policy)


@pytest.mark.parametrize(
    ("namespace", "imports", "allowed"),
    [
        ("team-a", ["istio-egress/*.foo.com"], True),
        ("team-a", ["istio-egress/service1.foo.com"], True),
        ("team-a", ["*/*.foo.com"], True),
        ("team-a", ["istio-egress/service1.bar.com"], False),
        ("team-a", ["istio-egress/*.bar.com"], False),
        ("team-a", ["istio-egress/*"], False),
        ("team-a", ["*/*"], False),
        ("team-b", ["istio-egress/*.bar.com"], True),
        ("team-b", ["istio-egress/*.foo.com"], False),
        ("team-b", ["istio-egress/service1.foo.com"], True),
        ("team-c", ["*/service1.foo.com"], True),
        # imports nothing today (no entry has exactly this host), denied by defense in depth
        ("team-c", ["*/service2.foo.com"], False),
        ("team-c", ["istio-egress/*.foo.com"], False),
    ],
)
def test_sidecar_imports_follow_per_cluster_and_per_source_policies(
    namespace: str, imports: list[str], allowed: bool, policy: Policy
) -> None:
    decision = judge(sidecar(namespace, *imports), policy)
    assert decision.allowed is allowed, decision.reason


def test_team_a_denied_service1_bar_com_is_told_what_it_may_reach(policy: Policy) -> None:
    decision = judge(sidecar("team-a", "istio-egress/service1.bar.com"), policy)
    (violation,) = decision.violations
    assert violation.field == "spec.egress[0].hosts[1]"
    assert "service1.bar.com" in violation.message
    assert "namespace team-a" in violation.message
    assert "foo-com (*.foo.com)" in violation.message
    assert "service1-foo (service1.foo.com)" in violation.message


def test_team_c_service2_denial_names_the_cluster_wide_allowance(policy: Policy) -> None:
    decision = judge(sidecar("team-c", "*/service2.foo.com"), policy)
    assert "service2.foo.com" in decision.reason
    assert "service1-foo (service1.foo.com)" in decision.reason


@pytest.mark.parametrize(
    ("namespace", "host", "allowed"),
    [
        ("team-a", "service1.foo.com", True),
        ("team-a", "www.foo.com", True),
        ("team-a", "service1.bar.com", False),
        ("team-b", "service1.bar.com", True),
        ("team-c", "service1.foo.com", True),
        ("team-c", "service2.foo.com", False),
    ],
)
def test_routing_to_the_shared_egress_gateway(
    namespace: str, host: str, allowed: bool, policy: Policy
) -> None:
    assert judge(leg_one(namespace, host), policy).allowed is allowed


def test_tls_with_sni_entry_for_the_cluster_wide_host_may_be_exported(policy: Policy) -> None:
    # requirement 3: every namespace may reach service1.foo.com, so even a '*'-exported tenant
    # entry opens nothing new
    manifest = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "s1", "namespace": "team-c"},
        "spec": {
            "hosts": ["service1.foo.com"],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }
    assert judge(manifest, policy).allowed


@pytest.mark.parametrize(
    ("hosts", "resolution"),
    [(["*.foo.com"], "NONE"), (["*.foo.com"], "DYNAMIC_DNS"), (["service1.bar.com"], "DNS")],
)
def test_tenant_entries_beyond_the_cluster_wide_host_are_denied_when_exported(
    hosts: list[str], resolution: str, policy: Policy
) -> None:
    manifest = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "wide", "namespace": "team-a"},
        "spec": {
            "hosts": hosts,
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": resolution,
        },
    }
    assert not judge(manifest, policy).allowed


def test_private_wildcard_entry_for_the_allowed_wildcard_is_accepted(policy: Policy) -> None:
    # trap 3: a wildcard trusts the client's SNI, acceptable only because team-a may reach
    # every host under *.foo.com anyway
    manifest = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "foo", "namespace": "team-a"},
        "spec": {
            "hosts": ["*.foo.com"],
            "exportTo": ["."],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "NONE",
        },
    }
    assert judge(manifest, policy).allowed


@pytest.mark.parametrize(
    "manifest",
    [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Sidecar",
            "metadata": {"name": "escape", "namespace": "team-a"},
            "spec": {
                "workloadSelector": {"labels": {"app": "compromised"}},
                "outboundTrafficPolicy": {"mode": "ALLOW_ANY"},
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "second-listener", "namespace": "team-a"},
            "spec": {
                "selector": {"istio": "egressgateway"},
                "servers": [
                    {
                        "port": {"number": 443, "name": "tls", "protocol": "TLS"},
                        "hosts": ["*"],
                        "tls": {"mode": "PASSTHROUGH"},
                    }
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "strip-identity", "namespace": "team-a"},
            "spec": {"host": GATEWAY, "trafficPolicy": {"tls": {"mode": "DISABLE"}}},
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "bypass", "namespace": "team-a"},
            "spec": {
                "hosts": ["service1.foo.com"],
                "tls": [
                    {
                        "match": [{"port": 443, "sniHosts": ["service1.foo.com"]}],
                        "route": [{"destination": {"host": "service1.foo.com"}}],
                    }
                ],
            },
        },
    ],
    ids=["sidecar ALLOW_ANY", "gateway on egress pods", "DR strips mTLS", "VS bypasses gateway"],
)
def test_tampering_with_the_egress_path_is_denied(manifest: dict[str, Any], policy: Policy) -> None:
    assert not judge(manifest, policy).allowed

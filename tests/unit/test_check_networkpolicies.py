"""Tenant NetworkPolicies may not cancel the generated one with a wide egress rule."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.builders import assert_denied_at, judge
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

DOC = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: istio-egress}
networkPolicies: true
internalNetworks: [10.0.0.0/8]
externalServices:
  - name: api
    hosts: [api.example.com]
    ports: [{number: 443, protocol: TLS}]
allow:
  - {from: {namespace: team-a}, to: [api]}
"""
POLICY = parse_policy(DOC)
WITHOUT_GENERATED = parse_policy(DOC.replace("networkPolicies: true", "networkPolicies: false"))


def netpol(spec: dict[str, Any], namespace: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "tenant", "namespace": namespace},
        "spec": {"podSelector": {}, **spec},
    }


def test_egress_rule_without_peers_is_denied() -> None:
    manifest = netpol({"policyTypes": ["Egress"], "egress": [{}]})
    assert_denied_at(judge(manifest, POLICY), "spec.egress[0].to", "every destination")


def test_egress_rule_with_only_ports_is_denied() -> None:
    manifest = netpol({"egress": [{"ports": [{"protocol": "UDP", "port": 53}]}]})
    assert_denied_at(judge(manifest, POLICY), "spec.egress[0].to", "every destination")


def test_ip_block_to_the_internet_is_denied() -> None:
    manifest = netpol({"egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]})
    assert_denied_at(
        judge(manifest, POLICY), "spec.egress[0].to[0].ipBlock.cidr", "outside the cluster"
    )


def test_ip_block_to_one_outside_address_is_denied() -> None:
    manifest = netpol({"egress": [{"to": [{"ipBlock": {"cidr": "203.0.113.7/32"}}]}]})
    assert not judge(manifest, POLICY).allowed


def test_ip_block_inside_internal_networks_is_allowed() -> None:
    manifest = netpol({"egress": [{"to": [{"ipBlock": {"cidr": "10.96.0.0/12"}}]}]})
    assert judge(manifest, POLICY).allowed


def test_egress_to_pods_namespaces_and_dns_is_allowed() -> None:
    dns = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    gateways = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "istio-egress"}}
    }
    manifest = netpol(
        {
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [dns], "ports": [{"protocol": "UDP", "port": 53}]},
                {"to": [gateways, {"podSelector": {}}]},
            ],
        }
    )
    assert judge(manifest, POLICY).allowed


def test_ingress_only_policy_is_allowed() -> None:
    manifest = netpol({"policyTypes": ["Ingress"], "ingress": [{}]})
    assert judge(manifest, POLICY).allowed


def test_ingress_only_by_omission_is_allowed() -> None:
    # policyTypes omitted and no egress section: the policy governs ingress only
    assert judge(netpol({"ingress": [{}]}), POLICY).allowed


def test_deny_all_egress_is_allowed() -> None:
    assert judge(netpol({"policyTypes": ["Egress"]}), POLICY).allowed


def test_wide_egress_is_denied_without_generated_policies_too() -> None:
    # a platform's own default-deny egress NetworkPolicy adds up with tenant ones the same way
    manifest = netpol({"policyTypes": ["Egress"], "egress": [{}]})
    assert not judge(manifest, WITHOUT_GENERATED).allowed


def test_deleting_a_tenant_network_policy_is_allowed() -> None:
    manifest = netpol({"egress": [{}]})
    assert judge(manifest, POLICY, operation="DELETE").allowed


def test_excluded_namespaces_are_left_alone() -> None:
    manifest = netpol({"egress": [{}]}, namespace="kube-system")
    assert judge(manifest, POLICY).allowed

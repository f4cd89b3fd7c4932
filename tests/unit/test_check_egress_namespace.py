"""The egress namespace is the security team's: every other author is refused there."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from webhook.core.engine import decide
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Review, review_of_manifest

pytestmark = pytest.mark.unit

DOC = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress:
  namespace: istio-egress
  gateway: {name: istio-egressgateway, selector: {istio: egressgateway}}
controller: {users: ["system:serviceaccount:egress-guard:egress-guard"]}
externalServices:
  - name: api
    hosts: [api.example.com]
    ports: [{number: 443, protocol: TLS}]
allow:
  - {from: {namespace: team-a}, to: [api]}
"""
TEAM = "securityTeam: {users: [sec-alice], groups: [security]}\n"
POLICY = parse_policy(DOC + TEAM)
NO_TEAM = parse_policy(DOC)


def obj(api_version: str, kind: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "istio-egress"},
        "spec": spec or {},
    }


AUTHZ = obj("security.istio.io/v1", "AuthorizationPolicy", {"action": "ALLOW", "rules": [{}]})
TELEMETRY = obj("telemetry.istio.io/v1", "Telemetry", {"accessLogging": [{"disabled": True}]})
PROXY_CONFIG = obj("networking.istio.io/v1beta1", "ProxyConfig", {"concurrency": 2})
LOAD_BALANCER = obj(
    "v1", "Service", {"type": "LoadBalancer", "selector": {"istio": "egressgateway"}}
)
GATEWAY_LABELLED = obj(
    "apps/v1",
    "Deployment",
    {
        "selector": {"matchLabels": {"istio": "egressgateway"}},
        "template": {
            "metadata": {"labels": {"istio": "egressgateway"}},
            "spec": {"containers": [{"name": "shell", "image": "curlimages/curl"}]},
        },
    },
)
SERVICE_ENTRY = obj(
    "networking.istio.io/v1",
    "ServiceEntry",
    {
        "hosts": ["api.example.com"],
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        "resolution": "DNS",
    },
)


def review(manifest: dict[str, Any], username: str, groups: tuple[str, ...] = ()) -> Review:
    return dataclasses.replace(review_of_manifest(manifest, username=username), groups=groups)


@pytest.mark.parametrize(
    "manifest",
    [AUTHZ, TELEMETRY, PROXY_CONFIG, LOAD_BALANCER, GATEWAY_LABELLED, SERVICE_ENTRY],
    ids=["authorizationpolicy", "telemetry", "proxyconfig", "loadbalancer", "deployment", "se"],
)
def test_tenant_writes_in_the_egress_namespace_are_denied(manifest: dict[str, Any]) -> None:
    decision = decide(review(manifest, "mallory"), POLICY)
    assert not decision.allowed
    assert "holds the egress gateways" in decision.reason


@pytest.mark.parametrize("manifest", [AUTHZ, TELEMETRY, SERVICE_ENTRY], ids=["authz", "tel", "se"])
def test_security_team_user_goes_on_to_the_kind_check(manifest: dict[str, Any]) -> None:
    assert decide(review(manifest, "sec-alice"), POLICY).allowed


def test_security_team_group_member_goes_on_to_the_kind_check() -> None:
    assert decide(review(AUTHZ, "sec-bob", ("security",)), POLICY).allowed


def test_security_team_writes_still_meet_the_kind_checks() -> None:
    entry = obj("networking.istio.io/v1", "ServiceEntry", {"hosts": ["evil.example.org"]})
    assert not decide(review(entry, "sec-alice"), POLICY).allowed


def test_kubernetes_controllers_create_the_gateway_pods() -> None:
    pod = obj("v1", "Pod", {"containers": [{"name": "app", "image": "x"}]})
    user = "system:serviceaccount:kube-system:replicaset-controller"
    decision = decide(review(pod, user), POLICY)
    # the gate lets the controller through; the pod then meets its own checks
    assert "holds the egress gateways" not in decision.reason


def test_cluster_administrators_go_on_to_the_kind_check() -> None:
    assert decide(review(AUTHZ, "admin", ("system:masters",)), POLICY).allowed


def test_the_controller_writes_there() -> None:
    user = "system:serviceaccount:egress-guard:egress-guard"
    assert decide(review(TELEMETRY, user), POLICY).allowed


@pytest.mark.parametrize("manifest", [AUTHZ, TELEMETRY, PROXY_CONFIG], ids=["authz", "tel", "pc"])
def test_without_a_team_kinds_with_no_egress_rules_are_denied(manifest: dict[str, Any]) -> None:
    decision = decide(review(manifest, "mallory"), NO_TEAM)
    assert not decision.allowed
    assert "securityTeam" in decision.reason


def test_without_a_team_egress_rules_still_judge_service_entries() -> None:
    assert not NO_TEAM.has_security_team
    assert decide(review(SERVICE_ENTRY, "mallory"), NO_TEAM).allowed


def test_tenant_namespaces_are_not_fenced() -> None:
    authz = dict(AUTHZ, metadata={"name": "x", "namespace": "team-a"})
    assert decide(review(authz, "mallory"), POLICY).allowed


def test_the_policy_schema_takes_the_security_team() -> None:
    assert POLICY.security_team_users == frozenset({"sec-alice"})
    assert POLICY.security_team_groups == frozenset({"security"})

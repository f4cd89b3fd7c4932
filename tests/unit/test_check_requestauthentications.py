"""RequestAuthentication: the key set URLs istiod fetches name the cluster or allowed hosts."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.builders import assert_denied_at, judge
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

POLICY = parse_policy(
    """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: egress}
internalNetworks: [10.0.0.0/8]
externalServices:
  - name: idp
    hosts: [login.example.com, "*.auth0.com"]
    ports: [{number: 443, protocol: TLS}]
  - name: github
    hosts: [api.github.com]
    ports: [{number: 443, protocol: TLS}]
allow:
  - {name: idp, from: {namespace: shop}, to: [idp]}
  # labels narrow it: the fetch carries no labels
  - {name: github, from: {namespace: shop, workloadLabels: {app: ci}}, to: [github]}
"""
)


def request_authentication(*rules: dict[str, Any], namespace: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "jwt", "namespace": namespace},
        "spec": {"jwtRules": list(rules)},
    }


@pytest.mark.parametrize(
    "rule",
    [
        {"issuer": "https://login.example.com", "jwksUri": "https://login.example.com/keys"},
        {"issuer": "x", "jwksUri": "https://tenant.eu.auth0.com/.well-known/jwks.json"},
        {"issuer": "x", "jwksUri": "HTTPS://LOGIN.EXAMPLE.COM:443/keys?v=1"},
        # discovery at an allowed issuer
        {"issuer": "https://login.example.com/realms/shop"},
        # a Service of a platform namespace the guardrail excludes
        {"issuer": "x", "jwksUri": "http://keycloak.istio-system.svc.cluster.local:8080/certs"},
        {"issuer": "http://idp.kube-system.svc.cluster.local"},
        # inline keys and no URI: nothing is fetched; an issuer that is no URL is not fetched
        {"issuer": "https://evil.example", "jwks": '{"keys": []}'},
        {"issuer": "testing@secure.istio.io"},
    ],
)
def test_key_sets_fetched_from_allowed_places_pass(rule: dict[str, Any]) -> None:
    decision = judge(request_authentication(rule), POLICY)
    assert decision.allowed, decision.reason


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        # the URL carries what the tenant writes into it, to any host
        (
            {"issuer": "x", "jwksUri": "https://evil.example/k?d=c2VjcmV0"},
            "spec.jwtRules[0].jwksUri",
            "evil.example:443",
        ),
        ({"issuer": "https://evil.example/data"}, "spec.jwtRules[0].issuer", "evil.example"),
        # in the Envoy fetch modes the URI is fetched beside inline keys too
        (
            {"issuer": "x", "jwks": '{"keys": []}', "jwksUri": "https://evil.example/"},
            "spec.jwtRules[0].jwksUri",
            "evil.example",
        ),
        # allowed host, port the service does not list
        (
            {"issuer": "x", "jwksUri": "https://login.example.com:8443/keys"},
            "spec.jwtRules[0].jwksUri",
            "login.example.com:8443",
        ),
        # allowed only to labelled workloads: the fetch has no labels
        (
            {"issuer": "x", "jwksUri": "https://api.github.com/keys"},
            "spec.jwtRules[0].jwksUri",
            "every workload",
        ),
        ({"issuer": "x", "jwksUri": "http://93.184.216.34/k"}, "spec.jwtRules[0].jwksUri", "93."),
        # a tenant's Service (or pod address) could answer with a redirect to any host, or a
        # discovery document naming one: istiod follows both
        (
            {"issuer": "x", "jwksUri": "http://keys.shop.svc.cluster.local/jwks?d=1"},
            "spec.jwtRules[0].jwksUri",
            "redirects",
        ),
        (
            {"issuer": "http://disco.shop.svc.cluster.local"},
            "spec.jwtRules[0].issuer",
            "discovery documents",
        ),
        (
            {"issuer": "x", "jwksUri": "http://10.1.2.3:8080/certs"},
            "spec.jwtRules[0].jwksUri",
            "pod",
        ),
        (
            {"issuer": "x", "jwksUri": "http://svc.cluster.local/k"},
            "spec.jwtRules[0].jwksUri",
            "redirects",
        ),
        # pod-DNS names spell any address
        (
            {"issuer": "x", "jwksUri": "http://93-184-216-34.shop.pod.cluster.local/k"},
            "spec.jwtRules[0].jwksUri",
            "pod.cluster.local",
        ),
        # what a URL parser might read otherwise is refused, not guessed at
        (
            {"issuer": "x", "jwksUri": "https://login.example.com@evil.example/k"},
            "spec.jwtRules[0].jwksUri",
            "cannot tell",
        ),
        (
            {"issuer": "x", "jwksUri": "https://login.example.com\\@evil.example/"},
            "spec.jwtRules[0].jwksUri",
            "cannot tell",
        ),
        ({"issuer": "x", "jwksUri": " https://evil.example/"}, "spec.jwtRules[0].jwksUri", "tell"),
        ({"issuer": "x", "jwksUri": "ftp://evil.example/"}, "spec.jwtRules[0].jwksUri", "tell"),
        ({"issuer": "x", "jwksUri": "https://-bad-.example/"}, "spec.jwtRules[0].jwksUri", "valid"),
    ],
)
def test_key_sets_fetched_from_elsewhere_are_denied(
    rule: dict[str, Any], field: str, words: str
) -> None:
    assert_denied_at(judge(request_authentication(rule), POLICY), field, words)


def test_each_rule_is_judged() -> None:
    good = {"issuer": "x", "jwksUri": "https://login.example.com/keys"}
    bad = {"issuer": "y", "jwksUri": "https://evil.example/keys"}
    decision = judge(request_authentication(good, bad, good, bad), POLICY)
    assert [v.field for v in decision.violations] == [
        "spec.jwtRules[1].jwksUri",
        "spec.jwtRules[3].jwksUri",
    ]


def test_another_namespace_without_the_rule_is_denied() -> None:
    rule = {"issuer": "x", "jwksUri": "https://login.example.com/keys"}
    assert not judge(request_authentication(rule, namespace="team-b"), POLICY).allowed


def test_deleting_is_allowed() -> None:
    manifest = request_authentication({"issuer": "x", "jwksUri": "https://evil.example/"})
    assert judge(manifest, POLICY, operation="DELETE").allowed

"""Gateway checks: tenants may not program egress gateway pods (trap 11)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.builders import judge
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

POLICIES = Path(__file__).resolve().parents[2] / "policies"
PASSTHROUGH = [
    {
        "port": {"number": 443, "name": "tls", "protocol": "TLS"},
        "hosts": ["*"],
        "tls": {"mode": "PASSTHROUGH"},
    }
]


@pytest.fixture(scope="module")
def shared() -> Policy:
    return parse_policy((POLICIES / "istio-egress-firewall.yaml").read_text())


@pytest.fixture(scope="module")
def dedicated() -> Policy:
    return parse_policy((POLICIES / "banzai-demo.yaml").read_text())


def gateway(
    selector: dict[str, str] | None,
    *,
    namespace: str = "team-a",
    servers: list[dict[str, Any]] | None = None,
    version: str = "v1",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"servers": servers if servers is not None else PASSTHROUGH}
    if selector is not None:
        spec["selector"] = selector
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": namespace},
        "spec": spec,
    }


@pytest.mark.parametrize(
    ("selector", "allowed"),
    [
        ({"istio": "ingressgateway"}, True),
        ({"istio": "ingressgateway", "team": "a"}, True),
        ({"istio": "egressgateway"}, False),
        ({"istio": "egressgateway", "extra": "label"}, False),
        ({"app": "my-ingress"}, False),  # no key in common: egress pods may carry it too
        (None, False),
        ({}, False),
    ],
)
@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_tenant_gateway_must_not_select_the_shared_egress_gateway(
    selector: dict[str, str] | None, allowed: bool, version: str, shared: Policy
) -> None:
    decision = judge(gateway(selector, version=version), shared)
    assert decision.allowed is allowed, decision.reason


@pytest.mark.parametrize(
    ("selector", "allowed"),
    [
        ({"gateway-name": "egress-httpbin"}, False),
        ({"gateway-type": "egress"}, False),
        ({"gateway-name": "my-ingress", "gateway-type": "ingress"}, True),
        ({"gateway-type": "ingress"}, True),
    ],
)
def test_tenant_gateway_must_not_select_any_dedicated_egress_gateway(
    selector: dict[str, str], allowed: bool, dedicated: Policy
) -> None:
    decision = judge(gateway(selector, namespace="test-app"), dedicated)
    assert decision.allowed is allowed, decision.reason


def test_overlap_denial_names_the_egress_gateway(shared: Policy) -> None:
    decision = judge(gateway({"istio": "egressgateway"}), shared)
    message = decision.violations[0].message
    assert "istio-egress/istio-egressgateway" in message
    assert "{istio=egressgateway}" in message


def test_missing_selector_denial_explains_it_binds_every_gateway(shared: Policy) -> None:
    assert "every gateway" in judge(gateway(None), shared).reason


def test_auto_passthrough_is_denied_even_on_an_ingress_gateway(shared: Policy) -> None:
    servers = [
        {
            "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
            "hosts": ["*.local"],
            "tls": {"mode": "AUTO_PASSTHROUGH"},
        }
    ]
    decision = judge(gateway({"istio": "ingressgateway"}, servers=servers), shared)
    assert not decision.allowed
    assert decision.violations[0].field == "spec.servers[0].tls.mode"


def test_egress_namespace_gateway_for_a_policy_gateway_is_allowed(dedicated: Policy) -> None:
    manifest = gateway(
        {"gateway-name": "egress-httpbin", "gateway-type": "egress"}, namespace="external"
    )
    assert judge(manifest, dedicated).allowed


@pytest.mark.parametrize(
    "selector",
    [{"gateway-name": "egress-httpbin"}, {"app": "rogue"}, None],
    ids=["subset of a policy selector", "other pods", "no selector"],
)
def test_egress_namespace_gateway_must_equal_a_policy_selector(
    selector: dict[str, str] | None, dedicated: Policy
) -> None:
    assert not judge(gateway(selector, namespace="external"), dedicated).allowed


def test_egress_namespace_gateway_with_auto_passthrough_is_denied(dedicated: Policy) -> None:
    servers = [
        {
            "port": {"number": 443, "name": "tls", "protocol": "TLS"},
            "hosts": ["*"],
            "tls": {"mode": "AUTO_PASSTHROUGH"},
        }
    ]
    manifest = gateway(
        {"gateway-name": "egress-httpbin", "gateway-type": "egress"},
        namespace="external",
        servers=servers,
    )
    assert not judge(manifest, dedicated).allowed


def test_deleting_a_gateway_is_allowed(shared: Policy) -> None:
    assert judge(gateway(None), shared, "DELETE").allowed


@pytest.mark.parametrize("selector", [["istio"], {"istio": 1}, "istio=ingressgateway"])
def test_malformed_selector_is_denied_with_a_field(selector: Any, shared: Policy) -> None:
    decision = judge(gateway(selector), shared)
    assert not decision.allowed
    assert decision.violations[0].field == "spec.selector"


def test_overlap_with_several_egress_gateways_is_one_violation(dedicated: Policy) -> None:
    # banzai-demo runs a gateway per service: the same fix is named once, with every gateway
    decision = judge(gateway({"app": "istio-ingressgateway"}, namespace="test-app"), dedicated)
    (violation,) = decision.violations
    assert violation.field == "spec.selector"
    assert "egress gateways" in violation.message
    assert violation.message.count("can match") == 1
    assert all(gw.ref in violation.message for gw in dedicated.gateways)


def test_a_gateway_on_the_egress_gateway_is_told_what_egress_guard_does_instead(
    dedicated: Policy,
) -> None:
    # Istio's egress-gateway task has the tenant program the gateway; egress-guard does it
    selector = {"gateway-name": "egress-httpbin", "gateway-type": "egress"}
    denied = judge(gateway(selector, namespace="test-app"), dedicated)
    assert not denied.allowed
    assert "egress-guard programs the egress gateways from the egress policy" in denied.reason
    assert "calls from namespace test-app to what the policy lets its workloads reach" in (
        denied.reason
    )
    assert "httpbin (httpbin.org, www.httpbin.org)" in denied.reason
    # a namespace the policy lets reach nothing is sent to the security team
    other = judge(gateway(selector, namespace="other"), dedicated)
    assert "lets namespace other reach no external service: ask the security team" in (other.reason)

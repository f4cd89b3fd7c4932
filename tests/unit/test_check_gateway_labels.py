"""Classic ingress Gateways: a selector contradicting the egress gateways' known labels passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.builders import judge
from tests.unit.test_check_gateways import gateway
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

POLICIES = Path(__file__).resolve().parents[2] / "policies"
BANZAI_TEXT = (POLICIES / "banzai-demo.yaml").read_text()
BANZAI = parse_policy(BANZAI_TEXT)
WITHOUT_LABELS = parse_policy(
    BANZAI_TEXT.replace("      gatewayLabels:\n        istio: egress-{service}\n", "")
)


def test_the_seed_policy_names_the_gateway_pods_istio_label() -> None:
    httpbin = BANZAI.services["httpbin"].gateway
    assert httpbin.pod_labels == {"istio": "egress-httpbin"}
    assert httpbin.known_labels["gateway-type"] == "egress"
    assert not WITHOUT_LABELS.services["httpbin"].gateway.pod_labels


def test_classic_ingress_gateway_is_allowed_when_the_labels_contradict() -> None:
    decision = judge(gateway({"istio": "ingressgateway"}, namespace="test-app"), BANZAI)
    assert decision.allowed, decision.reason


def test_classic_ingress_gateway_is_denied_without_known_labels() -> None:
    # nothing says egress gateway pods do not also carry istio: ingressgateway
    decision = judge(gateway({"istio": "ingressgateway"}, namespace="test-app"), WITHOUT_LABELS)
    assert not decision.allowed
    assert "gatewayLabels" in decision.reason


def test_selector_agreeing_with_the_known_labels_is_denied() -> None:
    selector = {"istio": "egress-httpbin"}
    assert not judge(gateway(selector, namespace="test-app"), BANZAI).allowed


def test_selector_on_other_keys_only_is_denied() -> None:
    selector = {"gateway-type": "egress", "app": "x"}
    assert not judge(gateway(selector, namespace="test-app"), BANZAI).allowed

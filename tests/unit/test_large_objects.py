"""Objects with thousands of offending entries: short denials, and checks that stop in time."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.bench.worst_case import service_entry_endpoints, sidecar_imports, virtual_service_routes
from tests.unit.builders import judge
from webhook.admission.responses import review_response
from webhook.core.checks import EmptyView
from webhook.core.decisions import MAX_LISTED_VIOLATIONS, STOP_AFTER_VIOLATIONS
from webhook.core.engine import decide
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Review, review_of_manifest

pytestmark = pytest.mark.unit

POLICY = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
mode: {mode}
egress: {{namespace: egress}}
externalServices:
  - name: payments
    hosts: [api.payments.example]
    ports: [{{number: 443, protocol: TLS}}]
allow:
  - {{name: all, from: {{namespace: test-app}}, to: [payments]}}
"""


def policy(mode: str = "enforce") -> Policy:
    return parse_policy(POLICY.format(mode=mode))


def listed(reason: str) -> int:
    """How many violations a reason spells out (each names its field)."""
    return reason.count("spec.")


@pytest.mark.parametrize(
    "manifest",
    [service_entry_endpoints(40), sidecar_imports(40), virtual_service_routes(40)],
    ids=["serviceentry-endpoints", "sidecar-imports", "virtualservice-routes"],
)
def test_denial_names_ten_violations_then_counts_the_rest(manifest: dict[str, Any]) -> None:
    decision = judge(manifest, policy())

    assert not decision.allowed
    total = len(decision.violations)
    assert total > MAX_LISTED_VIOLATIONS
    assert listed(decision.reason) == MAX_LISTED_VIOLATIONS
    assert decision.reason.endswith(f"; and {total - MAX_LISTED_VIOLATIONS} more")


def test_a_denial_with_few_violations_lists_them_all() -> None:
    # its host and its three endpoints are all outside the allow list
    decision = judge(service_entry_endpoints(3), policy())

    assert len(decision.violations) == 4
    assert "more" not in decision.reason
    for violation in decision.violations:
        assert str(violation) in decision.reason


def test_check_stops_reading_once_the_denial_is_certain() -> None:
    endpoints = 9000
    decision = judge(service_entry_endpoints(endpoints), policy())

    assert not decision.allowed
    assert len(decision.violations) == STOP_AFTER_VIOLATIONS
    more = STOP_AFTER_VIOLATIONS - MAX_LISTED_VIOLATIONS
    assert decision.reason.endswith(f"; and at least {more} more (checking stopped)")
    # the kubectl message and the decision log line are a few KB, not megabytes
    assert len(decision.reason) < 4096
    body = review_response("u", allowed=False, message=decision.reason)
    assert len(body) < 4096


def test_audit_mode_warns_about_ten_violations_and_the_count() -> None:
    decision = judge(service_entry_endpoints(40), policy("audit"))

    assert decision.allowed and decision.audited
    more = len(decision.violations) - MAX_LISTED_VIOLATIONS
    assert more > 0
    assert len(decision.warnings) == MAX_LISTED_VIOLATIONS + 1
    assert decision.warnings[-1].endswith(f"and {more} more")


def _tenant_gateway_binding_the_egress_gateway(count: int) -> dict[str, Any]:
    """A Gateway API Gateway asking ``count`` times for the egress gateway's Service name."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "bind", "namespace": "test-app"},
        "spec": {
            "gatewayClassName": "istio-remote",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            "addresses": [{"type": "Hostname", "value": "gw.egress.svc"}] * count,
        },
    }


def _service_status_by_a_tenant(count: int) -> Review:
    """A tenant's Service status update reporting ``count`` load balancer addresses."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "lb", "namespace": "test-app"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        "status": {
            "loadBalancer": {
                "ingress": [{"ip": f"10.9.{i // 256}.{i % 256}"} for i in range(count)]
            }
        },
    }
    review = review_of_manifest(service, operation="UPDATE", username="alice")
    return dataclasses.replace(review, sub_resource="status")


def test_gateway_and_service_status_checks_stop_at_the_violation_limit() -> None:
    # one violation per address or ingress entry: the checks stop reading at the limit
    for decision in (
        judge(_tenant_gateway_binding_the_egress_gateway(5000), policy()),
        decide(_service_status_by_a_tenant(5000), policy(), view=EmptyView()),
    ):
        assert not decision.allowed
        assert len(decision.violations) == STOP_AFTER_VIOLATIONS
        assert len(decision.reason) < 4096

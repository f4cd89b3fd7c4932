"""WorkloadEntry/WorkloadGroup checks: the address is where traffic really goes (trap 1)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.builders import judge
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy

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


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY)


def workload(
    address: Any, *, kind: str = "WorkloadEntry", namespace: str = "team-a"
) -> dict[str, Any]:
    body: dict[str, Any] = {"labels": {"app": "vm"}}
    if address is not None:
        body["address"] = address
    spec = {"template": body} if kind == "WorkloadGroup" else body
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": "w", "namespace": namespace},
        "spec": spec,
    }


@pytest.mark.parametrize("kind", ["WorkloadEntry", "WorkloadGroup"])
@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        (None, True),
        ("10.4.5.6", True),
        ("vm.team-a.svc.cluster.local", True),
        ("unix:///var/run/vm.sock", True),
        # allowed destinations, but dialled on any port the selecting Service names
        ("api.payments.example", False),
        ("198.51.100.10", False),
        ("203.0.113.10", False),
        ("exfil.attacker.example", False),
        ("ml.example.net", False),  # only labelled workloads may reach it, and this bypasses
        ("*.payments.example", False),
        ("0.0.0.0/0", False),
    ],
)
def test_workload_address_must_be_internal_or_allowed_directly(
    kind: str, address: str | None, allowed: bool, policy: Policy
) -> None:
    decision = judge(workload(address, kind=kind), policy)
    assert decision.allowed is allowed, decision.reason


def test_denial_points_at_the_template_address_of_a_group(policy: Policy) -> None:
    decision = judge(workload("203.0.113.10", kind="WorkloadGroup"), policy)
    assert decision.violations[0].field == "spec.template.address"
    assert "203.0.113.10" in decision.violations[0].message
    assert "team-a" in decision.violations[0].message


def test_workload_entries_in_the_egress_namespace_are_denied(policy: Policy) -> None:
    assert not judge(workload("api.payments.example", namespace="egress"), policy).allowed


def test_deleting_a_workload_entry_is_allowed(policy: Policy) -> None:
    assert judge(workload("203.0.113.10"), policy, "DELETE").allowed


def test_malformed_address_is_denied_with_a_field(policy: Policy) -> None:
    decision = judge(workload(["1.2.3.4"]), policy)
    assert not decision.allowed
    assert decision.violations[0].field == "spec.address"

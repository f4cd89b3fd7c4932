"""The admission surface derives from the code: every checked or generated kind is intercepted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import webhook.core.checks.registered  # noqa: F401  (fills the registry)
from webhook.admission.registration import (
    GATEWAY_API_GROUP,
    admission_rules,
    chart_rules,
    mutated_targets,
    rules,
    validated_targets,
)
from webhook.core.checks import INTERCEPTIONS, REGISTRY, WRITES, plural
from webhook.core.desired import desired_state
from webhook.core.managed import MANAGED_KINDS, Kind
from webhook.core.mutations import MUTATED
from webhook.core.policy_parsing import parse_policy
from webhook.kube import rbac

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHART_RULES = ROOT / "charts" / "egress-guard" / "files" / "admission-rules.json"


def _intercepted(kind_rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(group, resource, operation) triples the rules match."""
    found: set[tuple[str, str, str]] = set()
    for rule in kind_rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for operation in rule["operations"]:
                    found.add((group, resource, operation))
    return found


VALIDATED = _intercepted(admission_rules(gateway_api=True)["validating"])
MUTATING = _intercepted(admission_rules(gateway_api=True)["mutating"])


@pytest.mark.parametrize("key", sorted(REGISTRY), ids=lambda k: f"{k[0] or 'core'}/{k[1]}")
def test_every_checked_kind_is_intercepted_for_its_operations(key: tuple[str, str]) -> None:
    interception = INTERCEPTIONS[key]
    for resource in interception.resources:
        for operation in interception.operations:
            assert (key[0], resource, operation) in VALIDATED


@pytest.mark.parametrize("kind", MANAGED_KINDS, ids=lambda k: k.kind)
def test_every_generated_kind_is_intercepted_for_every_write(kind: Kind) -> None:
    for operation in WRITES:
        assert (kind.group, kind.plural, operation) in VALIDATED


def test_every_kind_the_generator_produces_is_a_managed_kind() -> None:
    document = (ROOT / "policies" / "banzai-demo.yaml").read_text()
    policy = parse_policy(
        document.replace("mode: enforce", "mode: enforce\n    networkPolicies: true")
    )
    assert policy.network_policies
    produced = {(m["apiVersion"], m["kind"]) for m in desired_state(policy, ["test-app"])}
    managed = {(k.api_version, k.kind) for k in MANAGED_KINDS}
    assert produced <= managed
    assert ("networking.k8s.io/v1", "NetworkPolicy") in produced


@pytest.mark.parametrize("key", sorted(MUTATED), ids=lambda k: f"{k[0] or 'core'}/{k[1]}")
def test_every_mutated_kind_reaches_the_mutating_webhook(key: tuple[str, str]) -> None:
    resource = INTERCEPTIONS[key].resources[0]
    for operation in MUTATED[key]:
        assert (key[0], resource, operation) in MUTATING


@pytest.mark.parametrize(
    ("resource", "operation"),
    [
        ("pods/exec", "CONNECT"),
        ("pods/attach", "CONNECT"),
        ("pods/ephemeralcontainers", "UPDATE"),
        ("networkpolicies", "CREATE"),
        ("services", "UPDATE"),
    ],
)
def test_the_bypass_resources_are_intercepted(resource: str, operation: str) -> None:
    group = "networking.k8s.io" if resource == "networkpolicies" else ""
    assert (group, resource, operation) in VALIDATED


def test_proxy_configs_and_telemetry_are_intercepted() -> None:
    assert ("networking.istio.io", "proxyconfigs", "CREATE") in VALIDATED
    assert ("telemetry.istio.io", "telemetries", "DELETE") in VALIDATED


def test_port_forward_and_status_writes_are_not_intercepted() -> None:
    resources = {resource for _, resource, _ in VALIDATED}
    assert "pods/portforward" not in resources
    assert "pods/status" not in resources


def test_rules_never_mix_groups_or_connect_with_writes() -> None:
    for rule in admission_rules(gateway_api=True)["validating"]:
        assert len(rule["apiGroups"]) == 1
        operations = set(rule["operations"])
        assert operations == {"CONNECT"} or "CONNECT" not in operations


def test_gateway_api_rules_are_only_there_when_asked_for() -> None:
    without = admission_rules(gateway_api=False)["validating"]
    assert all(GATEWAY_API_GROUP not in r["apiGroups"] for r in without)
    assert (GATEWAY_API_GROUP, "httproutes", "CREATE") in VALIDATED


def test_rules_match_exactly_the_derived_targets() -> None:
    derived = {(t.group, t.resource, op) for t in validated_targets() for op in t.operations}
    assert derived == _intercepted(rules(validated_targets()))
    assert _intercepted(rules(mutated_targets())) == MUTATING


def test_the_chart_ships_the_rbac_rules_of_the_code() -> None:
    # regenerate with: python -m webhook.kube.rbac > <chart>/files/rbac-rules.json
    shipped = ROOT / "charts" / "egress-guard" / "files" / "rbac-rules.json"
    assert json.loads(shipped.read_text()) == rbac.chart_rules()


def test_the_chart_ships_the_derived_rules() -> None:
    # regenerate with: python -m webhook.admission.registration > <chart>/files/admission-rules.json
    assert json.loads(CHART_RULES.read_text()) == chart_rules()


@pytest.mark.parametrize(
    ("kind", "resource"),
    [
        ("NetworkPolicy", "networkpolicies"),
        ("Endpoints", "endpoints"),
        ("Gateway", "gateways"),
        ("Telemetry", "telemetries"),
        ("WorkloadEntry", "workloadentries"),
        ("ProxyConfig", "proxyconfigs"),
        ("HTTPRoute", "httproutes"),
        ("Namespace", "namespaces"),
        ("ServiceEntry", "serviceentries"),
    ],
)
def test_plural_names_are_kubernetes_resource_names(kind: str, resource: str) -> None:
    assert plural(kind) == resource


def test_managed_kinds_carry_the_plural_of_their_kind() -> None:
    for kind in MANAGED_KINDS:
        assert kind.plural == plural(kind.kind)


def test_the_harness_registers_nothing_the_code_does_not_derive() -> None:
    from tests.e2e.harness import admission_rules as harness_rules

    for gateway_api in (True, False):
        harness = harness_rules(gateway_api=gateway_api)
        derived = admission_rules(gateway_api=gateway_api)
        for hook in ("validating", "mutating"):
            assert _intercepted(harness[hook]) <= _intercepted(derived[hook])


def test_the_harness_registers_exactly_the_derived_rules() -> None:
    from tests.e2e.harness import admission_rules as harness_rules

    for gateway_api in (True, False):
        assert harness_rules(gateway_api=gateway_api) == admission_rules(gateway_api=gateway_api)

"""ServiceEntries whose connections all stay in the cluster's networks: an on-premises database
behind an internal address, VMs selected by WorkloadEntries.  Their hosts only name internal
destinations, so they pass under any name, for their own namespace; seen beyond it they may
not take the names other namespaces reach the outside by."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.builders import assert_denied_at, judge
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

BANZAI = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "policies" / "banzai-demo.yaml").read_text()
)["data"]["policy.yaml"]
POLICY = parse_policy(BANZAI + "internalNetworks: [10.0.0.0/8, 'fd00::/8']\n")


def entry(
    hosts: list[str],
    endpoints: list[str] | None = None,
    *,
    export: list[str] | None = None,
    resolution: str = "STATIC",
    **spec: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hosts": hosts,
        "ports": [{"number": 5432, "name": "tcp-pg", "protocol": "TCP"}],
        "resolution": resolution,
        **spec,
    }
    if endpoints is not None:
        body["endpoints"] = [{"address": a} for a in endpoints]
    if export is not None:
        body["exportTo"] = export
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "db", "namespace": "test-app"},
        "spec": body,
    }


@pytest.mark.parametrize("export", [["."], None, ["*"]])
def test_an_on_premises_database_behind_internal_addresses_passes(
    export: list[str] | None,
) -> None:
    decision = judge(entry(["db.corp.internal"], ["10.20.0.5", "10.20.0.6"], export=export), POLICY)
    assert decision.allowed, decision.reason


def test_vms_selected_by_workload_entries_pass() -> None:
    # Istio's reference example: MESH_INTERNAL, endpoints from WorkloadEntries and pods
    manifest = entry(
        ["details.bookinfo.com"],
        location="MESH_INTERNAL",
        workloadSelector={"labels": {"app": "details-legacy"}},
    )
    decision = judge(manifest, POLICY)
    assert decision.allowed, decision.reason


@pytest.mark.parametrize("host", ["github.com", "www.github.com", "*.github.com", "*"])
def test_a_name_of_the_policy_seen_beyond_the_namespace_is_denied(host: str) -> None:
    decision = judge(entry([host], ["10.20.0.5"]), POLICY)
    assert_denied_at(decision, "spec.hosts[0]", "exportTo: ['.']")


def test_a_name_of_the_policy_for_the_namespace_alone_passes() -> None:
    # its own pods' traffic for github.com goes to the internal address: nothing leaves
    decision = judge(entry(["github.com"], ["10.20.0.5"], export=["."]), POLICY)
    assert decision.allowed, decision.reason


def test_virtual_addresses_seen_beyond_the_namespace_are_denied() -> None:
    decision = judge(entry(["db.corp.internal"], ["10.20.0.5"], addresses=["240.0.0.9"]), POLICY)
    assert_denied_at(decision, "spec.addresses[0]", "exportTo: ['.']")


@pytest.mark.parametrize(
    ("endpoints", "field"),
    [
        (["10.20.0.5", "203.0.113.7"], "spec.endpoints[1].address"),
        (["10.20.0.5", "evil.example.com"], "spec.endpoints[1].address"),
        ([*(f"10.20.{i // 250}.{i % 250}" for i in range(3000)), "203.0.113.7"], None),
    ],
)
def test_one_endpoint_outside_judges_the_entry_by_its_name(
    endpoints: list[str], field: str | None
) -> None:
    decision = judge(entry(["db.corp.internal"], endpoints, export=["."]), POLICY)
    assert not decision.allowed
    fields = [v.field for v in decision.violations]
    assert "spec.hosts[0]" in fields
    if field is not None:
        assert field in fields


def test_thousands_of_internal_endpoints_pass() -> None:
    endpoints = [f"10.20.{i // 250}.{i % 250}" for i in range(3000)]
    decision = judge(entry(["db.corp.internal"], endpoints, export=["."]), POLICY)
    assert decision.allowed, decision.reason


@pytest.mark.parametrize("resolution", ["DNS", "NONE"])
def test_a_selector_without_static_resolution_is_judged_by_name(resolution: str) -> None:
    # DNS resolves the host itself; NONE passes the original destination through
    manifest = entry(
        ["details.bookinfo.com"], resolution=resolution, workloadSelector={"labels": {"app": "x"}}
    )
    assert_denied_at(judge(manifest, POLICY), "spec.hosts[0]", "details.bookinfo.com")


def test_an_egress_gateway_name_stays_the_platforms() -> None:
    decision = judge(
        entry(["egress-github.external.svc.cluster.local", "x.corp"], ["10.20.0.5"], export=["."]),
        POLICY,
    )
    assert not decision.allowed

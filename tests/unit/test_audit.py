"""Audit: existing objects judged with the admission ``decide`` on the policy in force."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.manifests import static_service_entry
from webhook.core.audit import AUDIT_USER, audit, audit_json, audit_table, exit_code, rule_of
from webhook.core.policy_parsing import parse_policy
from webhook.core.reports import MAX_RESULTS, ReportFlavour, build_reports, summarize

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EXPIRY = datetime(2026, 12, 3, 0, 0, tzinfo=UTC)

POLICY = """
egress: {namespace: egress}
controller: {users: [system:serviceaccount:egress-guard:controller]}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
  - {name: github, hosts: [api.github.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: team-a, from: {namespace: team-a}, to: [api]}
exceptions:
  - name: ci
    namespaces: [team-b]
    services: [github]
    owner: alice
    ticket: SEC-1
    expires: 2026-12-03T00:00:00Z
"""


def entry(namespace: str, host: str, name: str = "se", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", **meta},
        "spec": {
            "hosts": [host],
            "exportTo": ["."],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }


def test_allowed_objects_give_no_finding_and_breaches_are_located() -> None:
    policy = parse_policy(POLICY)
    result = audit(
        [entry("team-a", "api.example.com", "ok"), entry("team-a", "api.github.com", "bad")],
        policy,
        now=T0,
    )
    assert result.judged == 2
    assert [(f.namespace, f.kind, f.name, f.field) for f in result.findings] == [
        ("team-a", "ServiceEntry", "bad", "spec.hosts[0]")
    ]
    assert result.findings[0].rule == "spec.hosts"
    assert "api.github.com" in result.findings[0].message
    assert not result.clean


def test_ungoverned_managed_and_excluded_objects_are_not_findings() -> None:
    policy = parse_policy(POLICY)
    managed = entry("team-a", "api.github.com", "gen", labels={"egress-guard.io/managed": "true"})
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    system = entry("kube-system", "api.github.com", "sys")
    result = audit([managed, config_map, system], policy, now=T0)
    assert result.clean
    assert result.skipped == 2
    assert result.judged == 1


def test_an_object_relying_on_an_exception_is_flagged_once_it_expires() -> None:
    policy = parse_policy(POLICY)
    relying = entry("team-b", "api.github.com", "ci")
    assert audit([relying], policy, now=T0).clean
    after = audit([relying], policy, now=EXPIRY)
    assert [f.name for f in after.findings] == ["ci"]
    assert after.findings[0].expired_exceptions == ("ci",)
    assert "expired exception ci" in after.findings[0].describe()


def test_audit_mode_policies_still_report_breaches() -> None:
    policy = parse_policy("mode: audit\n" + POLICY)
    result = audit([entry("team-a", "api.github.com")], policy, now=T0)
    assert len(result.findings) == 1


def test_the_audit_identity_is_never_a_controller_identity() -> None:
    assert AUDIT_USER not in parse_policy(POLICY).controller_users


@pytest.mark.parametrize(
    ("field", "rule"),
    [
        ("spec.hosts[3]", "spec.hosts"),
        ("spec.http[0].route[2].destination.host", "spec.http.route.destination.host"),
        (
            "metadata.annotations[sidecar.istio.io/inject]",
            "metadata.annotations[sidecar.istio.io/inject]",
        ),
        ("", "object"),
    ],
)
def test_rule_is_the_field_path_without_indices(field: str, rule: str) -> None:
    assert rule_of(field) == rule


def test_reports_one_per_namespace_with_results_summary_and_object_refs() -> None:
    policy = parse_policy(POLICY)
    objects = [
        entry("team-a", "api.github.com", "bad"),
        entry("team-a", "api.example.com", "ok"),
        entry("team-c", "api.github.com", "other"),
    ]
    result = audit(objects, policy, now=T0)
    reports = build_reports(result, flavour=ReportFlavour.OPENREPORTS, now=T0)
    assert sorted(reports) == ["team-a", "team-c"]
    team_a = reports["team-a"]
    assert team_a["apiVersion"] == "openreports.io/v1alpha1"
    assert team_a["kind"] == "Report"
    assert team_a["source"] == "egress-guard"
    assert team_a["summary"] == {"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 0}
    (only,) = team_a["results"]
    assert only["policy"] == "egress-guard"
    assert only["rule"] == "spec.hosts"
    assert only["result"] == "fail"
    assert only["timestamp"] == {"seconds": int(T0.timestamp()), "nanos": 0}
    assert only["resources"] == [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "name": "bad",
            "namespace": "team-a",
            "uid": "uid-bad",
        }
    ]


def test_policy_report_flavour_has_no_report_level_source() -> None:
    result = audit([entry("team-a", "api.github.com")], parse_policy(POLICY), now=T0)
    report = build_reports(result, flavour=ReportFlavour.WGPOLICY, now=T0)["team-a"]
    assert report["apiVersion"] == "wgpolicyk8s.io/v1alpha2"
    assert report["kind"] == "PolicyReport"
    assert "source" not in report
    assert report["results"][0]["source"] == "egress-guard"


def test_fixed_namespaces_get_no_report() -> None:
    result = audit([entry("team-a", "api.example.com")], parse_policy(POLICY), now=T0)
    assert build_reports(result, flavour=ReportFlavour.OPENREPORTS, now=T0) == {}


def test_reports_past_the_bound_aggregate_by_rule_and_stay_small() -> None:
    policy = parse_policy(POLICY)
    many = [entry("team-a", "api.github.com", f"se-{i}") for i in range(MAX_RESULTS * 10)]
    result = audit(many, policy, now=T0)
    report = build_reports(result, flavour=ReportFlavour.OPENREPORTS, now=T0)["team-a"]
    (aggregate,) = report["results"]
    assert aggregate["properties"] == {"aggregated": "true", "count": str(MAX_RESULTS * 10)}
    assert len(aggregate["resources"]) == 10
    assert report["summary"]["fail"] == MAX_RESULTS * 10
    assert len(json.dumps(report)) < 8 * 1024
    totals = summarize({"team-a": report})
    assert (totals.failures, totals.results, totals.aggregated_namespaces) == (2000, 1, 1)


def test_at_the_bound_every_object_is_listed() -> None:
    many = [entry("team-a", "api.github.com", f"se-{i}") for i in range(MAX_RESULTS)]
    result = audit(many, parse_policy(POLICY), now=T0)
    report = build_reports(result, flavour=ReportFlavour.OPENREPORTS, now=T0)["team-a"]
    assert len(report["results"]) == MAX_RESULTS


def test_expired_exception_is_named_in_the_report() -> None:
    result = audit([entry("team-b", "api.github.com")], parse_policy(POLICY), now=EXPIRY)
    report = build_reports(result, flavour=ReportFlavour.OPENREPORTS, now=EXPIRY)["team-b"]
    assert report["results"][0]["properties"]["expiredExceptions"] == "ci"


def test_namespace_objects_are_reported_in_their_own_namespace() -> None:
    policy = parse_policy(POLICY)
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a", "labels": {"istio-injection": "disabled"}},
    }
    result = audit([ns], policy, now=T0)
    assert [f.field for f in result.findings] == ["metadata.labels[istio-injection]"]
    reports = build_reports(result, flavour=ReportFlavour.OPENREPORTS, now=T0)
    assert list(reports) == ["team-a"]
    assert reports["team-a"]["results"][0]["resources"][0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "name": "team-a",
    }


def test_audit_table_json_and_exit_code_for_ci() -> None:
    policy = parse_policy(POLICY)
    clean = audit([entry("team-a", "api.example.com")], policy, now=T0)
    assert exit_code(clean) == 0
    assert audit_table(clean).startswith("no object in breach: 1 judged, 0 skipped")
    dirty = audit([entry("team-a", "api.github.com", "bad")], policy, now=T0)
    assert exit_code(dirty) == 1
    lines = audit_table(dirty).splitlines()
    assert lines[0].split() == ["NAMESPACE", "KIND", "NAME", "RULE", "MESSAGE"]
    assert lines[1].startswith("team-a     ServiceEntry  bad   spec.hosts  ServiceEntry team-a/bad")
    assert lines[-1].startswith("1 object(s) in breach, 1 finding(s); 1 judged, 0 skipped")
    data = audit_json(dirty)
    assert data["objectsInBreach"] == 1
    assert data["findings"][0]["field"] == "spec.hosts[0]"
    assert data["findings"][0]["kind"] == "ServiceEntry"


ALIAS_POLICY = """
egress: {namespace: egress}
internalNetworks: [10.0.0.0/8]
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: team-a, from: {namespace: team-a}, to: [api]}
"""


def static_entry(address: str) -> dict[str, Any]:
    """A tenant entry sending to one in-cluster address, as admitted while it was free."""
    return static_service_entry("legacy", "team-a", address)


def pod(namespace: str, ip: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"pod-{ip}", "namespace": namespace},
        "spec": {"containers": [{"name": "proxy", "image": "istio/proxyv2"}]},
        "status": {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def alias_findings(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    result = audit(objects, parse_policy(ALIAS_POLICY), now=T0)
    return [(f.name, f.field) for f in result.findings if f.kind == "ServiceEntry"]


def test_an_address_a_gateway_pod_took_after_admission_is_found_by_the_audit() -> None:
    tenant = static_entry("10.60.0.12")
    # admitted while no pod of the egress namespace held the address
    assert alias_findings([tenant, pod("egress", "10.60.0.13")]) == []
    # the gateway pod restarted at the address the tenant named: the entry now reaches it
    found = alias_findings([tenant, pod("egress", "10.60.0.12")])
    assert found == [("legacy", "spec.endpoints[0].address")]
    message = audit([tenant, pod("egress", "10.60.0.12")], parse_policy(ALIAS_POLICY), now=T0)
    assert any("egress gateway" in f.message for f in message.findings)


def test_the_audit_view_counts_only_the_egress_namespaces_live_addresses() -> None:
    tenant = static_entry("10.60.0.12")
    # a tenant pod at the address, or a gateway pod that has finished, is no alias
    assert alias_findings([tenant, pod("team-b", "10.60.0.12")]) == []
    assert alias_findings([tenant, pod("egress", "10.60.0.12", phase="Succeeded")]) == []
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "gateway", "namespace": "egress"},
        "spec": {"clusterIP": "10.60.0.12", "clusterIPs": ["10.60.0.12"]},
    }
    assert alias_findings([tenant, service]) == [("legacy", "spec.endpoints[0].address")]

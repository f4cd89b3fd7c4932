"""The background audit pass over in-memory fakes: reports, removal, gauge, rate-limited Events."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import webhook.core.engine  # noqa: F401  (fills the registry)
from webhook.core.audit import ObjectRef
from webhook.core.checks import INTERCEPTIONS
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy
from webhook.core.reports import ReportFlavour
from webhook.kube.auditing import AuditLoop, AuditMetrics, Auditor, EventLimiter
from webhook.kube.rbac import audit_cluster_rules

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
POLICY = """
egress: {namespace: egress}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
  - {name: github, hosts: [api.github.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: team-a, from: {namespace: team-a}, to: [api]}
exceptions:
  - {name: ci, namespaces: [team-b], services: [github], owner: alice, ticket: SEC-1,
     expires: "2026-12-01T13:00:00Z"}
"""


def entry(namespace: str, name: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [host],
            "exportTo": ["."],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }


class Objects:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def objects(self) -> Iterable[Mapping[str, Any]]:
        return list(self.items)


class Reports:
    def __init__(self) -> None:
        self.stored: dict[str, Mapping[str, Any]] = {}
        self.deleted: list[str] = []

    def namespaces(self) -> set[str]:
        return set(self.stored)

    def apply(self, report: Mapping[str, Any]) -> None:
        self.stored[report["metadata"]["namespace"]] = report

    def delete(self, namespace: str) -> None:
        self.deleted.append(namespace)
        self.stored.pop(namespace, None)


class Events:
    def __init__(self) -> None:
        self.posted: list[tuple[ObjectRef, str, str]] = []

    def warn(self, ref: ObjectRef, reason: str, message: str) -> None:
        self.posted.append((ref, reason, message))


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


def make(items: list[dict[str, Any]], policy: Policy | None = None) -> tuple[Auditor, Clock]:
    clock = Clock()
    loaded = policy or parse_policy(POLICY)
    auditor = Auditor(
        objects=Objects(items),
        policy=lambda: loaded,
        metrics=AuditMetrics(CollectorRegistry()),
        reports=Reports(),
        flavour=ReportFlavour.OPENREPORTS,
        events=Events(),
        limiter=EventLimiter(dt.timedelta(hours=1)),
        clock=clock,
    )
    return auditor, clock


def gauge(auditor: Auditor, namespace: str, rule: str = "spec.hosts") -> float | None:
    return auditor.metrics.registry.get_sample_value(
        "egress_guard_audit_violations",
        {"namespace": namespace, "kind": "ServiceEntry", "rule": rule},
    )


def test_a_pass_writes_reports_sets_the_gauge_and_warns() -> None:
    items = [entry("team-a", "bad", "api.github.com"), entry("team-a", "ok", "api.example.com")]
    auditor, _ = make(items)
    result = auditor.run_once()
    assert result is not None and len(result.findings) == 1
    reports = auditor.reports
    assert isinstance(reports, Reports)
    assert list(reports.stored) == ["team-a"]
    assert reports.stored["team-a"]["kind"] == "Report"
    assert gauge(auditor, "team-a") == 1
    events = auditor.events
    assert isinstance(events, Events)
    assert [(r.name, reason) for r, reason, _ in events.posted] == [
        ("bad", "EgressPolicyViolation")
    ]


def test_fixing_the_object_removes_its_report_and_its_series() -> None:
    items = [entry("team-a", "bad", "api.github.com")]
    auditor, _ = make(items)
    auditor.run_once()
    items[0] = entry("team-a", "bad", "api.example.com")
    auditor.objects = Objects(items)
    auditor.run_once()
    reports = auditor.reports
    assert isinstance(reports, Reports)
    assert reports.stored == {}
    assert reports.deleted == ["team-a"]
    assert gauge(auditor, "team-a") is None


def test_events_are_rate_limited_per_object_and_rule() -> None:
    auditor, clock = make([entry("team-a", "bad", "api.github.com")])
    events = auditor.events
    assert isinstance(events, Events)
    auditor.run_once()
    clock.now += dt.timedelta(minutes=30)
    auditor.run_once()
    assert len(events.posted) == 1
    clock.now += dt.timedelta(minutes=31)
    auditor.run_once()
    assert len(events.posted) == 2


def test_an_exception_expiring_flags_the_object_relying_on_it() -> None:
    auditor, clock = make([entry("team-b", "ci", "api.github.com")])
    first = auditor.run_once()
    assert first is not None and first.clean
    clock.now = dt.datetime(2026, 12, 1, 13, tzinfo=dt.UTC)
    after = auditor.run_once()
    assert after is not None
    assert [f.expired_exceptions for f in after.findings] == [("ci",)]
    assert gauge(auditor, "team-b") == 1


def test_a_report_api_served_later_is_discovered_before_a_pass() -> None:
    auditor, _ = make([entry("team-a", "bad", "api.github.com")])
    auditor.reports, auditor.flavour = None, None
    store = Reports()
    served: list[tuple[ReportFlavour, Reports] | None] = [None]
    asked: list[int] = []

    def discover() -> tuple[ReportFlavour, Reports] | None:
        asked.append(1)
        return served[0]

    auditor.discover = discover
    auditor.run_once()
    assert gauge(auditor, "team-a") == 1 and not store.stored
    served[0] = (ReportFlavour.WGPOLICY, store)
    auditor.run_once()
    assert store.stored["team-a"]["kind"] == "PolicyReport"
    auditor.run_once()
    assert len(asked) == 2  # not asked again once found


def test_no_policy_no_pass() -> None:
    auditor, _ = make([])
    auditor.policy = lambda: None
    assert auditor.run_once() is None


def test_the_loop_wakes_at_the_next_exception_expiry() -> None:
    auditor, clock = make([])
    loop = AuditLoop(auditor, interval=dt.timedelta(minutes=10))
    clock.now = dt.datetime(2026, 12, 1, 12, 55, tzinfo=dt.UTC)
    assert loop.next_wait() == 300.0
    clock.now = T0
    assert loop.next_wait() == 600.0
    clock.now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    assert loop.next_wait() == 600.0


def test_the_loop_runs_a_pass_when_started_and_when_triggered() -> None:
    auditor, _ = make([entry("team-a", "bad", "api.github.com")])
    loop = AuditLoop(auditor, interval=dt.timedelta(hours=1)).start()
    try:
        deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
        runs = auditor.metrics.registry
        while (
            runs.get_sample_value("egress_guard_audit_runs_total", {"result": "success"}) or 0
        ) < 1:
            assert dt.datetime.now(dt.UTC) < deadline
            loop._wake.wait(0.01)
        loop.trigger()
        while (
            runs.get_sample_value("egress_guard_audit_runs_total", {"result": "success"}) or 0
        ) < 2:
            assert dt.datetime.now(dt.UTC) < deadline
            loop._stop.wait(0.01)
    finally:
        loop.stop()


@pytest.mark.parametrize("leader", [True, False])
def test_only_the_leader_audits(leader: bool) -> None:
    auditor, _ = make([entry("team-a", "bad", "api.github.com")])
    asked = threading.Event()

    def is_leader() -> bool:
        asked.set()
        return leader

    loop = AuditLoop(auditor, interval=dt.timedelta(hours=1), is_leader=is_leader).start()
    assert asked.wait(5)
    loop.stop()  # joins: a pass started after the leadership check has finished
    reports = auditor.reports
    assert isinstance(reports, Reports)
    assert bool(reports.stored) is leader


def test_audit_rules_read_every_governed_kind_and_write_both_report_kinds() -> None:
    rules = audit_cluster_rules()
    readable = {
        (group, resource)
        for rule in rules
        if "list" in rule["verbs"] and "watch" in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for interception in INTERCEPTIONS.values():
        for resource in interception.resources:
            # a CONNECT subresource (pods/exec) is no resource of its own to list
            assert ("/" in resource) != ((interception.group, resource) in readable), resource
    assert not any("options" in resource for _, resource in readable)
    assert ("", "endpoints") in readable
    assert ("networking.istio.io", "serviceentries") in readable
    assert ("networking.istio.io", "gateways") in readable
    writable = {
        (rule["apiGroups"][0], rule["resources"][0]) for rule in rules if "patch" in rule["verbs"]
    }
    assert writable == {("openreports.io", "reports"), ("wgpolicyk8s.io", "policyreports")}

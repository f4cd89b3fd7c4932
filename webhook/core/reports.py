"""Audit findings as standard policy reports, one per namespace, bounded in size.

policy-reporter and similar UIs read OpenReports (``openreports.io/v1alpha1`` ``Report``) and its
predecessor ``wgpolicyk8s.io/v1alpha2`` ``PolicyReport``; both carry the same result shape
(``policy``, ``rule``, ``result``, ``message``, ``resources``, ``properties``, ``timestamp``,
``severity``, ``category``, ``scored``, ``source``) and a ``summary`` of pass/fail/warn/error/skip.
One report per namespace with findings; a namespace whose objects are all clean gets none, so the
writer deletes what it wrote before and fixed violations disappear.

A report is one etcd object (1.5 MiB at most by default), and a broken policy edit can put
every object of a namespace in breach: past ``max_results`` results a report lists one result
per rule with the count and the first few objects instead of one per object, and messages are
cut, so its size has a bound whatever the number of violations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from webhook.core.audit import POLICY_NAME, AuditResult, Finding, ObjectRef

REPORT_NAME = "egress-guard"
SOURCE = "egress-guard"
CATEGORY = "egress"
SEVERITY = "high"
MAX_RESULTS = 200
MAX_MESSAGE = 512
# objects named in one aggregated result
MAX_RESOURCES = 10
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"


class ReportFlavour(StrEnum):
    """Which report API the cluster has: OpenReports, or the older wg-policy one."""

    OPENREPORTS = "openreports.io/v1alpha1"
    WGPOLICY = "wgpolicyk8s.io/v1alpha2"

    @property
    def kind(self) -> str:
        """The namespaced report kind of this API."""
        return "Report" if self is ReportFlavour.OPENREPORTS else "PolicyReport"


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """Counts over every namespace, for logs and the CLI."""

    namespaces: int
    results: int
    failures: int
    aggregated_namespaces: int


def report_namespace(finding: Finding) -> str:
    """Where a finding is reported: its namespace, or the Namespace object's own name."""
    return finding.namespace or finding.name


def build_reports(
    result: AuditResult,
    *,
    flavour: ReportFlavour,
    now: datetime,
    max_results: int = MAX_RESULTS,
) -> dict[str, dict[str, Any]]:
    """A report manifest per namespace with findings, keyed by namespace."""
    by_ns: dict[str, list[Finding]] = {}
    for finding in result.findings:
        by_ns.setdefault(report_namespace(finding), []).append(finding)
    judged = result.judged_by_namespace
    return {
        ns: _report(
            ns, findings, flavour=flavour, now=now, max_results=max_results, judged=judged.get(ns)
        )
        for ns, findings in sorted(by_ns.items())
    }


def summarize(reports: Mapping[str, Mapping[str, Any]]) -> ReportSummary:
    """How many reports, results and failures, and how many reports were aggregated."""
    results = sum(len(r.get("results", ())) for r in reports.values())
    failures = sum(int(r["summary"]["fail"]) for r in reports.values())
    aggregated = sum(
        1
        for r in reports.values()
        if any(x.get("properties", {}).get("aggregated") == "true" for x in r.get("results", ()))
    )
    return ReportSummary(len(reports), results, failures, aggregated)


def _grouped(findings: Iterable[Finding]) -> dict[tuple[ObjectRef, str], list[Finding]]:
    """Findings per (object, rule): one report result each, as Kyverno writes them."""
    grouped: dict[tuple[ObjectRef, str], list[Finding]] = {}
    for finding in findings:
        grouped.setdefault((finding.ref, finding.rule), []).append(finding)
    return grouped


def _report(
    namespace: str,
    findings: list[Finding],
    *,
    flavour: ReportFlavour,
    now: datetime,
    max_results: int,
    judged: int | None,
) -> dict[str, Any]:
    grouped = _grouped(findings)
    stamp = {"seconds": int(now.timestamp()), "nanos": 0}
    if len(grouped) <= max_results:
        results = [_result(ref, rule, group, stamp) for (ref, rule), group in grouped.items()]
    else:
        results = _aggregated(grouped, stamp)[:max_results]
    breaching = {ref for ref, _ in grouped}
    report: dict[str, Any] = {
        "apiVersion": flavour.value,
        "kind": flavour.kind,
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: SOURCE},
        },
        "summary": {
            "pass": max(0, judged - len(breaching)) if judged is not None else 0,
            "fail": len(grouped),
            "warn": 0,
            "error": 0,
            "skip": 0,
        },
        "results": results,
    }
    if flavour is ReportFlavour.OPENREPORTS:
        report["source"] = SOURCE
    return report


def _cut(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def _resource(ref: ObjectRef) -> dict[str, str]:
    out = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name}
    if ref.namespace:
        out["namespace"] = ref.namespace
    if ref.uid:
        out["uid"] = ref.uid
    return out


def _base(rule: str, message: str, stamp: Mapping[str, int]) -> dict[str, Any]:
    return {
        "source": SOURCE,
        "policy": POLICY_NAME,
        "rule": rule,
        "category": CATEGORY,
        "severity": SEVERITY,
        "result": "fail",
        "scored": True,
        "message": _cut(message),
        "timestamp": dict(stamp),
    }


def _result(
    ref: ObjectRef, rule: str, findings: list[Finding], stamp: Mapping[str, int]
) -> dict[str, Any]:
    message = "; ".join(f.describe() for f in findings)
    out = _base(rule, message, stamp)
    out["resources"] = [_resource(ref)]
    properties = {"fields": _cut(", ".join(f.field for f in findings if f.field))}
    expired = sorted({e for f in findings for e in f.expired_exceptions})
    if expired:
        properties["expiredExceptions"] = ", ".join(expired)
    out["properties"] = {k: v for k, v in properties.items() if v}
    return out


def _aggregated(
    grouped: Mapping[tuple[ObjectRef, str], list[Finding]], stamp: Mapping[str, int]
) -> list[dict[str, Any]]:
    by_rule: dict[str, list[ObjectRef]] = {}
    example: dict[str, str] = {}
    for (ref, rule), findings in grouped.items():
        by_rule.setdefault(rule, []).append(ref)
        example.setdefault(rule, findings[0].describe())
    results = []
    for rule, refs in sorted(by_rule.items()):
        message = (
            f"{len(refs)} objects breach the egress policy at {rule} (too many to list one by "
            f"one); for example {example[rule]}"
        )
        out = _base(rule, message, stamp)
        out["resources"] = [_resource(r) for r in refs[:MAX_RESOURCES]]
        out["properties"] = {"aggregated": "true", "count": str(len(refs))}
        results.append(out)
    return results

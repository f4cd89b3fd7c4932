"""The Grafana dashboard shipped with the chart only queries metrics the code exports."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "egress-guard" / "dashboards" / "egress-guard.json"
DEFINING = [
    ROOT / "webhook" / "admission" / "metrics.py",
    *(ROOT / "webhook" / "kube").glob("*.py"),
]
# what prometheus-client exposes for each kind of metric
SUFFIXES = {
    "Counter": ("_total",),
    "CounterMetricFamily": ("_total",),
    "Gauge": ("",),
    "GaugeMetricFamily": ("",),
    "Histogram": ("_bucket", "_count", "_sum"),
    "Summary": ("_count", "_sum"),
}
METRIC = re.compile(r"\begress_guard_[a-z0-9_]+\b")


def exported() -> dict[str, str]:
    """Every series name the code exports, mapped to the metric that defines it."""
    names: dict[str, str] = {}
    for path in DEFINING:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            ctor = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            first = node.args[0]
            if ctor in SUFFIXES and isinstance(first, ast.Constant):
                for suffix in SUFFIXES[ctor]:
                    names[f"{first.value}{suffix}"] = str(first.value)
    return names


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", ()))
    return [p for p in found if p.get("type") != "row"]


def test_the_code_defines_the_metrics_the_dashboard_is_about() -> None:
    names = exported()
    for base in (
        "egress_guard_admission_requests_total",
        "egress_guard_audit_violations",
        "egress_guard_exception_expiry_timestamp_seconds",
        "egress_guard_admission_duration_seconds_bucket",
    ):
        assert base in names


def test_every_panel_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    names = exported()
    for panel in panels(dashboard):
        exprs = [t["expr"] for t in panel["targets"]]
        assert exprs, panel["title"]
        for expr in exprs:
            used = METRIC.findall(expr)
            assert used, f"{panel['title']}: {expr}"
            unknown = [m for m in used if m not in names]
            assert unknown == [], f"{panel['title']} queries {unknown}"


def test_panels_cover_what_the_security_team_watches() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        names
        for p in panels(dashboard)
        for t in p["targets"]
        for names in METRIC.findall(t["expr"])
    }
    assert {
        "egress_guard_admission_requests_total",
        "egress_guard_admission_duration_seconds_bucket",
        "egress_guard_policy_info",
        "egress_guard_policy_reloads_total",
        "egress_guard_audit_violations",
        "egress_guard_exception_expiry_timestamp_seconds",
    } <= queried


def test_panel_ids_are_unique_and_use_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_the_sidecar_configmap_is_off_by_default_and_labelled_for_the_sidecar() -> None:
    values = yaml.safe_load((ROOT / "charts" / "egress-guard" / "values.yaml").read_text())
    grafana = values["metrics"]["grafanaDashboard"]
    assert grafana["enabled"] is False
    assert grafana["labels"] == {"grafana_dashboard": "1"}
    template = (
        ROOT / "charts" / "egress-guard" / "templates" / "grafana-dashboard.yaml"
    ).read_text()
    assert '.Files.Get "dashboards/egress-guard.json"' in template
    assert template.startswith("{{- if .Values.metrics.grafanaDashboard.enabled }}")

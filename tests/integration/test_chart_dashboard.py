"""The chart's Grafana dashboard ConfigMap, rendered by the pinned helm."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.harness import build_tools

pytestmark = pytest.mark.integration

CHART = Path(__file__).resolve().parents[2] / "charts" / "egress-guard"


def rendered(*extra: str) -> list[dict[str, Any]]:
    helm = build_tools(stream_progress=False).helm
    result = subprocess.run(
        [str(helm), "template", "eg", str(CHART), "--namespace", "egress-guard", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def dashboards(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o for o in objects if o["kind"] == "ConfigMap" and "egress-guard.json" in o.get("data", {})
    ]


def test_no_dashboard_configmap_by_default() -> None:
    assert dashboards(rendered()) == []


def test_the_sidecar_configmap_carries_the_shipped_dashboard() -> None:
    (configmap,) = dashboards(
        rendered(
            "--set",
            "metrics.grafanaDashboard.enabled=true",
            "--set",
            "metrics.grafanaDashboard.namespace=monitoring",
            "--set",
            "metrics.grafanaDashboard.annotations.grafana_folder=Security",
        )
    )
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Security"}
    shipped = json.loads((CHART / "dashboards" / "egress-guard.json").read_text())
    assert json.loads(configmap["data"]["egress-guard.json"]) == shipped

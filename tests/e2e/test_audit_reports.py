"""The audit's Kubernetes half against a real kube-apiserver: list, report, delete, warn.

A control plane without the webhook lets a breaching ServiceEntry exist, as one admitted under an
older, wider policy would.  The report CRD installed here is a structural schema spelled from
the OpenReports ``v1alpha1`` Go types (``ReportResult``, ``ReportSummary``); the API server prunes
every field a structural schema does not name, so a report read back equal to the one written
proves the writer uses the CRD's field names.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from typing import Any

import pytest
import yaml
from kubernetes import client
from prometheus_client import CollectorRegistry

from tests.e2e.harness import ControlPlane
from tests.manifests import pod, static_service_entry
from webhook.core.policy_parsing import parse_policy
from webhook.core.reports import ReportFlavour
from webhook.kube.audit_listing import ListedObjects, governed_resources
from webhook.kube.audit_reporting import ApiEventSink, ApiReportStore, detect_flavour
from webhook.kube.auditing import AuditMetrics, Auditor, EventLimiter
from webhook.kube.client import load_api_client
from webhook.kube.rbac import audit_cluster_rules

pytestmark = pytest.mark.e2e

_STRING = {"type": "string"}
_REF = {
    "type": "object",
    "properties": {
        k: _STRING
        for k in ("apiVersion", "kind", "name", "namespace", "uid", "resourceVersion", "fieldPath")
    },
}
_RESULT = {
    "type": "object",
    "required": ["policy"],
    "properties": {
        "source": _STRING,
        "policy": _STRING,
        "rule": _STRING,
        "category": _STRING,
        "severity": {"type": "string", "enum": ["critical", "high", "low", "medium", "info"]},
        "timestamp": {
            "type": "object",
            "properties": {"seconds": {"type": "integer"}, "nanos": {"type": "integer"}},
        },
        "result": {"type": "string", "enum": ["pass", "fail", "warn", "error", "skip"]},
        "scored": {"type": "boolean"},
        "resources": {"type": "array", "items": _REF},
        "message": _STRING,
        "properties": {"type": "object", "additionalProperties": _STRING},
    },
}
_SUMMARY = {
    "type": "object",
    "properties": {k: {"type": "integer"} for k in ("pass", "fail", "warn", "error", "skip")},
}
REPORT_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "reports.openreports.io"},
    "spec": {
        "group": "openreports.io",
        "scope": "Namespaced",
        "names": {
            "kind": "Report",
            "plural": "reports",
            "singular": "report",
            "listKind": "ReportList",
        },
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "apiVersion": _STRING,
                            "kind": _STRING,
                            "metadata": {"type": "object"},
                            "source": _STRING,
                            "scope": _REF,
                            "summary": _SUMMARY,
                            "results": {"type": "array", "items": _RESULT},
                        },
                    }
                },
            }
        ],
    },
}

POLICY = """
egress: {namespace: egress}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: everyone, from: {namespace: "*"}, to: [api]}
"""


def service_entry(namespace: str, host: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "outside", "namespace": namespace},
        "spec": {
            "hosts": [host],
            "exportTo": ["."],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }


def test_audit_pass_writes_the_report_warns_and_removes_it_once_fixed(
    bare_control_plane: ControlPlane,
) -> None:
    kubectl = bare_control_plane.kubectl
    kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(REPORT_CRD), check=True)
    bare_control_plane.wait_for_crds(["reports.openreports.io"])
    namespace = f"audit-{secrets.token_hex(3)}"
    kubectl("create", "namespace", namespace, check=True)
    kubectl("label", "namespace", namespace, "istio-injection=enabled", check=True)
    bad = service_entry(namespace, "evil.example.net")
    kubectl("apply", "-f", "-", input=yaml.safe_dump(bad), check=True)

    api = load_api_client(str(bare_control_plane.kubeconfig))
    # discovery may lag the CRD becoming Established by a moment
    deadline = time.monotonic() + 10
    while detect_flavour(api) is not ReportFlavour.OPENREPORTS:
        assert time.monotonic() < deadline, "the Report API is never served"
        time.sleep(0.2)
    served = governed_resources(api)
    kinds = {(r.group, r.kind) for r in served}
    assert {
        ("networking.istio.io", "ServiceEntry"),
        ("", "Namespace"),
        ("apps", "Deployment"),
    } <= kinds

    granted = {
        (g, p)
        for rule in audit_cluster_rules()
        for g in rule["apiGroups"]
        for p in rule["resources"]
    }
    assert {(r.group, r.plural) for r in served} <= granted

    policy = parse_policy(POLICY)
    metrics = AuditMetrics(CollectorRegistry())
    auditor = Auditor(
        objects=ListedObjects(api),
        policy=lambda: policy,
        metrics=metrics,
        reports=ApiReportStore(api, ReportFlavour.OPENREPORTS),
        flavour=ReportFlavour.OPENREPORTS,
        events=ApiEventSink(api),
        limiter=EventLimiter(),
        clock=lambda: dt.datetime.now(dt.UTC),
    )
    result = auditor.run_once()
    assert result is not None
    mine = [f for f in result.findings if f.namespace == namespace]
    assert [(f.kind, f.name, f.field) for f in mine] == [
        ("ServiceEntry", "outside", "spec.hosts[0]")
    ]

    custom = client.CustomObjectsApi(api)
    stored = custom.get_namespaced_custom_object(
        "openreports.io", "v1alpha1", namespace, "reports", "egress-guard"
    )
    assert stored["summary"]["fail"] == 1
    (written,) = stored["results"]
    # nothing pruned: every field the writer sets is one the CRD schema names
    assert set(written) == {
        "source",
        "policy",
        "rule",
        "category",
        "severity",
        "timestamp",
        "result",
        "scored",
        "resources",
        "message",
        "properties",
    }
    assert written["resources"][0]["name"] == "outside"
    assert stored["source"] == "egress-guard"
    gauge = metrics.registry.get_sample_value(
        "egress_guard_audit_violations",
        {"namespace": namespace, "kind": "ServiceEntry", "rule": "spec.hosts"},
    )
    assert gauge == 1

    events = client.CoreV1Api(api).list_namespaced_event(namespace).items
    assert [(e.reason, e.type, e.involved_object.name) for e in events] == [
        ("EgressPolicyViolation", "Warning", "outside")
    ]

    fixed = service_entry(namespace, "api.example.com")
    kubectl("apply", "-f", "-", input=yaml.safe_dump(fixed), check=True)
    result = auditor.run_once()
    assert result is not None
    assert not [f for f in result.findings if f.namespace == namespace]
    gone = kubectl("get", "reports.openreports.io", "-n", namespace, "-o", "name")
    assert gone.stdout.strip() == ""


def test_audit_finds_an_entry_whose_address_a_gateway_pod_took_later(
    bare_control_plane: ControlPlane,
) -> None:
    """A tenant entry admitted at a free in-cluster address reaches the egress gateway once a
    gateway pod holds that address: the audit reads the pod's address from its own listing."""
    kubectl = bare_control_plane.kubectl
    suffix = secrets.token_hex(3)
    tenant, egress = f"tenant-{suffix}", f"egress-{suffix}"
    for namespace in (tenant, egress):
        kubectl("create", "namespace", namespace, check=True)
    address = f"10.{int(suffix[:2], 16)}.{int(suffix[2:4], 16)}.{int(suffix[4:], 16)}"
    entry = static_service_entry("legacy", tenant, address)
    kubectl("apply", "-f", "-", input=yaml.safe_dump(entry), check=True)
    policy = parse_policy(
        f"""
egress: {{namespace: {egress}}}
internalNetworks: [10.0.0.0/8]
externalServices:
  - {{name: api, hosts: [api.example.com], ports: [{{number: 443, protocol: TLS}}]}}
allow:
  - {{name: everyone, from: {{namespace: "*"}}, to: [api]}}
"""
    )
    api = load_api_client(str(bare_control_plane.kubeconfig))
    auditor = Auditor(
        objects=ListedObjects(api),
        policy=lambda: policy,
        metrics=AuditMetrics(CollectorRegistry()),
        clock=lambda: dt.datetime.now(dt.UTC),
    )

    def tenant_findings() -> list[tuple[str, str]]:
        result = auditor.run_once()
        assert result is not None
        return [(f.name, f.field) for f in result.findings if f.namespace == tenant]

    assert tenant_findings() == []
    gateway = pod(egress, "gateway")
    kubectl("create", "-f", "-", input=yaml.safe_dump(gateway), check=True)
    # what the kubelet reports once the pod runs (the harness has no kubelet)
    running = {"status": {"phase": "Running", "podIP": address, "podIPs": [{"ip": address}]}}
    kubectl(
        "patch", "pod", "gateway", "-n", egress, "--subresource=status", "--type=merge",
        "-p", json.dumps(running), check=True,
    )  # fmt: skip
    assert tenant_findings() == [("legacy", "spec.endpoints[0].address")]

"""Where the audit's results go in a cluster: the report CRD and Warning Events.

The audit pass writes through ``ReportStore`` and ``EventSink``; these are their Kubernetes
implementations, kept apart so the pass itself reads without the API's plumbing.  The report
API is discovered, not assumed: OpenReports when served, else the wg-policy PolicyReport.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client

from webhook.core.audit import ObjectRef
from webhook.core.reports import MANAGED_BY_LABEL, REPORT_NAME, SOURCE, ReportFlavour
from webhook.kube.auditing import ReportStore, utc_now
from webhook.kube.client import FIELD_MANAGER, is_status

REPORT_SELECTOR = f"{MANAGED_BY_LABEL}={SOURCE}"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"


def detect_flavour(api_client: client.ApiClient) -> ReportFlavour | None:
    """The report API the cluster serves: OpenReports first, else wg-policy, else none."""
    groups = client.ApisApi(api_client).get_api_versions().groups or []
    served = {(g.name, v.version) for g in groups for v in (g.versions or [])}
    for flavour in (ReportFlavour.OPENREPORTS, ReportFlavour.WGPOLICY):
        group, _, version = flavour.value.partition("/")
        if (group, version) in served:
            return flavour
    return None


def _coords(flavour: ReportFlavour) -> tuple[str, str, str]:
    group, _, version = flavour.value.partition("/")
    plural = "reports" if flavour is ReportFlavour.OPENREPORTS else "policyreports"
    return group, version, plural


def discover_reports(api_client: client.ApiClient) -> tuple[ReportFlavour, ReportStore] | None:
    """The report API the cluster serves now and a store writing to it, or None."""
    flavour = detect_flavour(api_client)
    return (flavour, ApiReportStore(api_client, flavour)) if flavour is not None else None


class ApiReportStore:
    """``ReportStore`` over the report CRD, with server-side apply as egress-guard."""

    def __init__(self, api_client: client.ApiClient, flavour: ReportFlavour) -> None:
        self.api = client.CustomObjectsApi(api_client)
        self.group, self.version, self.plural = _coords(flavour)

    def namespaces(self) -> set[str]:
        """Namespaces with an ``egress-guard`` report carrying our managed-by label."""
        listed: Mapping[str, Any] = cast(
            Mapping[str, Any],
            self.api.list_cluster_custom_object(
                self.group, self.version, self.plural, label_selector=REPORT_SELECTOR
            ),
        )
        return {
            str(item["metadata"]["namespace"])
            for item in listed.get("items", ())
            if item["metadata"].get("name") == REPORT_NAME
        }

    def apply(self, report: Mapping[str, Any]) -> None:
        """Server-side apply the whole report (results replace the previous list)."""
        self.api.patch_namespaced_custom_object(
            self.group,
            self.version,
            str(report["metadata"]["namespace"]),
            self.plural,
            REPORT_NAME,
            body=dict(report),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_CONTENT_TYPE,
        )

    def delete(self, namespace: str) -> None:
        """Delete the namespace's report; gone already is fine."""
        try:
            self.api.delete_namespaced_custom_object(
                self.group, self.version, namespace, self.plural, REPORT_NAME
            )
        except client.ApiException as exc:
            if not is_status(exc, 404):
                raise


class ApiEventSink:
    """``EventSink`` posting core/v1 Events (what ``kubectl describe`` shows)."""

    def __init__(self, api_client: client.ApiClient, *, component: str = "egress-guard-audit"):
        self.api = client.CoreV1Api(api_client)
        self.component = component

    def warn(self, ref: ObjectRef, reason: str, message: str) -> None:
        """Post a Warning Event about ``ref`` in its namespace (``default`` if cluster-scoped)."""
        stamp = utc_now().isoformat()
        namespace = ref.namespace or "default"
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{ref.name}.", "namespace": namespace},
            "involvedObject": {
                "apiVersion": ref.api_version,
                "kind": ref.kind,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning",
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        self.api.create_namespaced_event(namespace, body)

"""The Kubernetes permissions the Reconciler and the webhook server need, written down once.

The Helm chart writes its ClusterRoles and Roles by hand; ``tests/integration/test_chart.py``
renders the chart and fails unless each of them equals these lists, so a new generated kind
cannot be forgotten in the chart.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import webhook.core.checks.registered  # noqa: F401  (fills the registry)
from webhook.core.checks import INTERCEPTIONS
from webhook.kube.client import MANAGED_KINDS

WRITE_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]


def controller_cluster_rules() -> list[dict[str, Any]]:
    """Cluster-wide rules: the generated kinds, namespaces, events, and the audit's."""
    groups: dict[str, list[str]] = {}
    for kind in MANAGED_KINDS:
        groups.setdefault(kind.group, []).append(kind.plural)
    rules: list[dict[str, Any]] = [
        {"apiGroups": [group], "resources": sorted(plurals), "verbs": list(WRITE_VERBS)}
        for group, plurals in sorted(groups.items())
    ]
    rules.append(
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}
    )
    rules.append({"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]})
    rules.append({"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]})
    return rules + audit_cluster_rules()


def controller_namespace_rules() -> list[dict[str, Any]]:
    """Rules in the Reconciler's own namespace: the policy ConfigMap and the leader Lease."""
    return [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "list", "watch", "create", "update", "patch"],
        },
    ]


def webhook_cluster_rules() -> list[dict[str, Any]]:
    """What the webhook server reads: Sidecars for its ambiguity checks, and every governed
    kind, to tell which existing objects an edit of the policy ConfigMap leaves in breach."""
    return [
        {
            "apiGroups": ["networking.istio.io"],
            "resources": ["sidecars"],
            "verbs": ["get", "list", "watch"],
        },
        *governed_read_rules(),
    ]


def webhook_namespace_rules() -> list[dict[str, Any]]:
    """Rules in the webhook's own namespace: watch the policy ConfigMap, report its rejection."""
    return [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]


def governed_read_rules() -> list[dict[str, Any]]:
    """Read every kind a check governs (what the audit and the policy-edit check list).

    Only whole resources: a CONNECT subresource such as ``pods/exec`` has nothing to list.
    """
    groups: dict[str, set[str]] = {}
    for interception in INTERCEPTIONS.values():
        for resource in interception.resources:
            if "/" not in resource:
                groups.setdefault(interception.group, set()).add(resource)
    return [
        {"apiGroups": [group], "resources": sorted(plurals), "verbs": ["get", "list", "watch"]}
        for group, plurals in sorted(groups.items())
    ]


def audit_cluster_rules() -> list[dict[str, Any]]:
    """What the background audit needs: read every governed kind, write the report kinds."""
    rules = governed_read_rules()
    rules.append(
        {
            "apiGroups": ["openreports.io"],
            "resources": ["reports"],
            "verbs": ["get", "list", "create", "patch", "delete"],
        }
    )
    rules.append(
        {
            "apiGroups": ["wgpolicyk8s.io"],
            "resources": ["policyreports"],
            "verbs": ["get", "list", "create", "patch", "delete"],
        }
    )
    return rules


def chart_rules() -> dict[str, list[dict[str, Any]]]:
    """Every role's rules, as the chart ships them in ``files/rbac-rules.json``."""
    return {
        "webhookCluster": webhook_cluster_rules(),
        "webhookNamespace": webhook_namespace_rules(),
        "controllerCluster": controller_cluster_rules(),
        "controllerNamespace": controller_namespace_rules(),
    }


if __name__ == "__main__":
    json.dump(chart_rules(), sys.stdout, indent=2)
    sys.stdout.write("\n")

"""The service accounts egress-guard's components run as, holding exactly the chart's RBAC.

The webhook and the controller never run as admin in the e2e tests: each gets a TokenRequest
token of its own ServiceAccount, bound to the rules ``webhook.kube.rbac`` lists (the chart
renders the same lists, and a chart test compares them). So a verb the code needs but the
chart lacks fails here first, not in a customer's cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from tests.e2e.harness.common import POLICY_KEY, WEBHOOK_NAMESPACE, HarnessError
from tests.e2e.harness.control_plane import ControlPlane
from tests.e2e.harness.kubectl import Kubectl, kubeconfig_document, write_kubeconfig
from webhook.kube import rbac

Rules = list[dict[str, Any]]
RBAC_API: Final = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class ServiceAccount:
    """A ServiceAccount and the user and groups the API server authenticates it as."""

    namespace: str
    name: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"

    @property
    def groups(self) -> tuple[str, ...]:
        return (
            "system:serviceaccounts",
            f"system:serviceaccounts:{self.namespace}",
            "system:authenticated",
        )


# The chart's names: the webhook runs as FULLNAME, the controller as FULLNAME-controller.
WEBHOOK_ACCOUNT: Final = ServiceAccount(WEBHOOK_NAMESPACE, "egress-guard")
CONTROLLER_ACCOUNT: Final = ServiceAccount(WEBHOOK_NAMESPACE, "egress-guard-controller")


@dataclass(frozen=True)
class Grant:
    """What one account may do: rules cluster-wide and rules in its own namespace."""

    account: ServiceAccount
    role: str
    cluster_rules: Rules
    namespace_rules: Rules

    def objects(self) -> list[dict[str, Any]]:
        """The ServiceAccount, its ClusterRole and Role, and their bindings."""
        account = self.account
        subject = {"kind": "ServiceAccount", "name": account.name, "namespace": account.namespace}
        ref = {"apiGroup": RBAC_API, "name": self.role}
        meta = {"name": self.role}
        namespaced = {"name": self.role, "namespace": account.namespace}
        return [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account.name, "namespace": account.namespace},
            },
            {
                "apiVersion": f"{RBAC_API}/v1",
                "kind": "ClusterRole",
                "metadata": meta,
                "rules": self.cluster_rules,
            },
            {
                "apiVersion": f"{RBAC_API}/v1",
                "kind": "ClusterRoleBinding",
                "metadata": meta,
                "roleRef": {**ref, "kind": "ClusterRole"},
                "subjects": [subject],
            },
            {
                "apiVersion": f"{RBAC_API}/v1",
                "kind": "Role",
                "metadata": namespaced,
                "rules": self.namespace_rules,
            },
            {
                "apiVersion": f"{RBAC_API}/v1",
                "kind": "RoleBinding",
                "metadata": namespaced,
                "roleRef": {**ref, "kind": "Role"},
                "subjects": [subject],
            },
        ]


def webhook_grant() -> Grant:
    """The webhook's account with the chart's webhook rules."""
    return Grant(
        WEBHOOK_ACCOUNT,
        "egress-guard-webhook",
        rbac.webhook_cluster_rules(),
        rbac.webhook_namespace_rules(),
    )


def controller_grant() -> Grant:
    """The controller's account with the chart's controller rules."""
    return Grant(
        CONTROLLER_ACCOUNT,
        "egress-guard-controller",
        rbac.controller_cluster_rules(),
        rbac.controller_namespace_rules(),
    )


def grant(kubectl: Kubectl, grants: Sequence[Grant]) -> None:
    """Creates the accounts' namespaces, the accounts, their roles and bindings."""
    namespaces = sorted({g.account.namespace for g in grants})
    kubectl.apply(
        [
            *(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
                for name in namespaces
            ),
            *(obj for g in grants for obj in g.objects()),
        ]
    )


def without(rules: Rules, verb: str, group: str, resource: str) -> Rules:
    """``rules`` with one verb on one resource taken away (the other grants stay)."""
    if not any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for rule in rules
    ):
        raise ValueError(f"no rule grants {verb} on {resource}.{group}")
    result: Rules = []
    for rule in rules:
        if group not in rule["apiGroups"] or resource not in rule["resources"]:
            result.append(rule)
            continue
        others = [r for r in rule["resources"] if r != resource]
        if others:
            result.append({**rule, "resources": others})
        verbs = [v for v in rule["verbs"] if v != verb]
        if verbs:
            result.append({**rule, "resources": [resource], "verbs": verbs})
    return result


def service_account_kubeconfig(
    plane: ControlPlane, account: ServiceAccount, path: Path, *, duration: str = "24h"
) -> Path:
    """A kubeconfig holding a TokenRequest token of ``account``: the API server sees the
    account itself, with its groups, exactly as in a pod."""
    # TokenRequest needs no controller: the API server signs the token itself.
    token = plane.kubectl(
        "create",
        "token",
        account.name,
        f"--namespace={account.namespace}",
        f"--duration={duration}",
        check=True,
    ).stdout.strip()
    if plane.ca is None:
        raise HarnessError("the control plane is not started")
    config = kubeconfig_document(
        plane.server_url, plane.ca.cert_pem, {"token": token}, name=account.name
    )
    return write_kubeconfig(path, config)


def with_controller_user(
    manifest: Mapping[str, Any], account: ServiceAccount = CONTROLLER_ACCOUNT
) -> dict[str, Any]:
    """The policy ConfigMap ``manifest`` with ``account`` in ``controller.users``.

    The chart does the same: without it the webhook would refuse the controller's own writes
    to the objects it manages, since only a cluster admin may touch those otherwise.
    """
    data = dict(manifest.get("data") or {})
    document = yaml.safe_load(data.get(POLICY_KEY) or "") or {}
    controller = document.setdefault("controller", {})
    users = list(controller.get("users") or [])
    if account.user not in users:
        controller["users"] = [*users, account.user]
    data[POLICY_KEY] = yaml.safe_dump(document, sort_keys=False)
    return {**manifest, "data": data}

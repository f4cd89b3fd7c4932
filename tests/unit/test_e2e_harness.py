"""The e2e harness' pure parts: RBAC grants, the controller in the policy, the audit log reader.

Why: the RBAC e2e tests are only as good as these helpers. A ``without`` that took nothing away,
or an audit reader that dropped forbidden calls, would make them pass whatever the chart says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.harness import (
    CONTROLLER_ACCOUNT,
    POLICY_KEY,
    POLICY_MANIFEST,
    WEBHOOK_ACCOUNT,
    audited_calls,
    controller_grant,
    policy_manifest,
    webhook_grant,
    with_controller_user,
    without,
)
from webhook.core.policy_parsing import parse_policy
from webhook.kube import rbac

pytestmark = pytest.mark.unit


def _pairs(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_without_takes_exactly_one_verb_on_one_resource() -> None:
    rules = rbac.controller_cluster_rules()
    reduced = without(rules, "create", "networking.istio.io", "sidecars")
    assert _pairs(rules) - _pairs(reduced) == {("networking.istio.io", "sidecars", "create")}
    assert _pairs(reduced) < _pairs(rules)


def test_without_the_last_verb_drops_the_resource() -> None:
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]
    assert without(rules, "get", "", "configmaps") == []


@pytest.mark.parametrize(
    ("verb", "group", "resource"),
    [("delete", "", "namespaces"), ("get", "apps", "namespaces"), ("get", "", "secrets")],
)
def test_without_a_verb_never_granted_is_an_error(verb: str, group: str, resource: str) -> None:
    with pytest.raises(ValueError, match="no rule grants"):
        without(rbac.controller_cluster_rules(), verb, group, resource)


def test_grants_are_the_rules_of_rbac_py_bound_to_the_chart_accounts() -> None:
    for grant, account, cluster, local in [
        (
            webhook_grant(),
            WEBHOOK_ACCOUNT,
            rbac.webhook_cluster_rules(),
            rbac.webhook_namespace_rules(),
        ),
        (
            controller_grant(),
            CONTROLLER_ACCOUNT,
            rbac.controller_cluster_rules(),
            rbac.controller_namespace_rules(),
        ),
    ]:
        by_kind = {obj["kind"]: obj for obj in grant.objects()}
        assert by_kind["ClusterRole"]["rules"] == cluster
        assert by_kind["Role"]["rules"] == local
        assert by_kind["Role"]["metadata"]["namespace"] == account.namespace
        for binding in ("ClusterRoleBinding", "RoleBinding"):
            assert by_kind[binding]["subjects"] == [
                {"kind": "ServiceAccount", "name": account.name, "namespace": account.namespace}
            ]
    assert CONTROLLER_ACCOUNT.user == "system:serviceaccount:egress-guard:egress-guard-controller"


def test_the_harness_policy_names_the_controller_account_once() -> None:
    manifest = policy_manifest(POLICY_MANIFEST)
    again = with_controller_user(manifest)
    assert again == manifest
    policy = parse_policy(manifest["data"][POLICY_KEY])
    assert policy.controller_users == {CONTROLLER_ACCOUNT.user}
    original = yaml.safe_load(yaml.safe_load(POLICY_MANIFEST.read_text())["data"][POLICY_KEY])
    document = yaml.safe_load(manifest["data"][POLICY_KEY])
    assert document.pop("controller") == {"users": [CONTROLLER_ACCOUNT.user]}
    assert document == original


def test_controller_users_already_listed_are_kept() -> None:
    manifest = {"data": {POLICY_KEY: yaml.safe_dump({"controller": {"users": ["ops"]}})}}
    document = yaml.safe_load(with_controller_user(manifest)["data"][POLICY_KEY])
    assert document["controller"]["users"] == ["ops", CONTROLLER_ACCOUNT.user]


def _event(audit_id: str, stage: str, verb: str, code: int, **extra: Any) -> str:
    event: dict[str, Any] = {
        "auditID": audit_id,
        "stage": stage,
        "verb": verb,
        "user": {"username": CONTROLLER_ACCOUNT.user},
        "objectRef": {"resource": "sidecars", "apiGroup": "networking.istio.io"},
        "responseStatus": {"code": code},
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }
    event.update(extra)
    return json.dumps(event)


def test_audited_calls_count_a_watch_once_and_keep_every_refusal(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    lines = [
        _event("w", "ResponseStarted", "watch", 200),
        _event("w", "ResponseComplete", "watch", 200),
        _event(
            "denied",
            "ResponseComplete",
            "list",
            403,
            annotations={"authorization.k8s.io/decision": "forbid"},
        ),
        # server-side apply creating: the filter allowed "patch", the handler refused "create"
        _event("apply", "ResponseComplete", "patch", 403),
        _event("discovery", "ResponseComplete", "get", 200, objectRef=None),
        _event(
            "other",
            "ResponseComplete",
            "get",
            200,
            user={"username": WEBHOOK_ACCOUNT.user},
        ),
        '{"auditID": "half-writ',
    ]
    log.write_text("\n".join(lines) + "\n")
    calls = audited_calls(log, users=[CONTROLLER_ACCOUNT.user])
    assert [(c.verb, c.code, c.forbidden) for c in calls] == [
        ("watch", 200, False),
        ("list", 403, True),
        ("patch", 403, True),
    ]
    assert {c.user for c in audited_calls(log)} == {CONTROLLER_ACCOUNT.user, WEBHOOK_ACCOUNT.user}
    assert audited_calls(tmp_path / "missing.log") == []


def test_an_impersonated_call_is_the_impersonated_users(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_text(
        _event(
            "i",
            "ResponseComplete",
            "get",
            200,
            user={"username": "admin"},
            impersonatedUser={"username": WEBHOOK_ACCOUNT.user},
        )
    )
    (call,) = audited_calls(log)
    assert call.user == WEBHOOK_ACCOUNT.user

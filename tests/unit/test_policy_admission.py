"""The policy ConfigMap at apply: invalid refused with paths, stranding warned, delete reserved."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from webhook.core.decisions import Decision
from webhook.core.policy_admission import (
    PolicyConfigMap,
    SecurityTeam,
    check_policy_configmap,
    registration,
)
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Review

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REF = PolicyConfigMap("egress-guard", "egress-policy")
TEAM = SecurityTeam(users=frozenset({"alice"}), groups=frozenset({"security"}))

OLD = """
egress: {namespace: egress}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
  - {name: github, hosts: [api.github.com, github.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: team-a, from: {namespace: team-a}, to: [api, github]}
"""
NARROWED = OLD.replace("to: [api, github]", "to: [api]")


class Objects:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def objects(self) -> Iterable[Mapping[str, Any]]:
        return self.items


def entry(name: str, host: str, namespace: str = "team-a") -> dict[str, Any]:
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


def review(operation: str, text: str | None, *, user: str = "bob") -> Review:
    obj = None
    if text is not None:
        obj = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": REF.name, "namespace": REF.namespace},
            "data": {"policy.yaml": text},
        }
    return Review(
        uid="u",
        group="",
        version="v1",
        kind="ConfigMap",
        operation=operation,  # type: ignore[arg-type]
        namespace=REF.namespace,
        name=REF.name,
        object=obj if operation != "DELETE" else None,
        old_object=obj if operation != "CREATE" else None,
        username=user,
    )


def check(
    rv: Review, objects: Sequence[dict[str, Any]] = (), current: str | None = OLD
) -> Decision:
    return check_policy_configmap(
        rv,
        current=parse_policy(current) if current else None,
        cluster=Objects(list(objects)),
        now=T0,
        security_team=TEAM,
    )


def test_invalid_policy_is_denied_with_every_problem_and_its_path() -> None:
    broken = OLD.replace("to: [api, github]", "to: [api, gitlab, nope]")
    decision = check(review("UPDATE", broken))
    assert not decision.allowed
    assert [v.field for v in decision.violations] == [
        "data[policy.yaml]/allow/0/to/1",
        "data[policy.yaml]/allow/0/to/2",
    ]
    assert "gitlab" in decision.reason and "nope" in decision.reason


def test_a_configmap_without_the_policy_key_is_denied() -> None:
    rv = review("CREATE", "")
    decision = check(rv)
    assert not decision.allowed
    assert decision.violations[0].field == "data[policy.yaml]"


def test_an_overlong_exception_is_refused_at_apply() -> None:
    text = (
        OLD
        + """
maxExceptionDays: 7
exceptions:
  - {name: ci, namespaces: [team-b], services: [api], owner: a, ticket: T-1,
     expires: "2027-01-01T00:00:00Z"}
"""
    )
    decision = check(review("UPDATE", text))
    assert [v.field for v in decision.violations] == ["data[policy.yaml]/exceptions/0/expires"]


def test_valid_edit_stranding_objects_is_admitted_with_warnings() -> None:
    objects = [entry(f"gh-{i}", "api.github.com") for i in range(7)] + [
        entry("ok", "api.example.com")
    ]
    decision = check(review("UPDATE", NARROWED), objects)
    assert decision.allowed
    assert decision.warnings[0] == (
        "egress-guard: this policy leaves 7 existing object(s) in breach: "
        "ServiceEntry team-a/gh-0, ServiceEntry team-a/gh-1, ServiceEntry team-a/gh-2, "
        "ServiceEntry team-a/gh-3, ServiceEntry team-a/gh-4 and 2 more"
    )
    assert decision.warnings[1] == "egress-guard: team-a loses access to api.github.com, github.com"
    assert len(decision.warnings) == 2


def test_objects_already_in_breach_are_not_blamed_on_the_edit() -> None:
    decision = check(review("UPDATE", OLD), [entry("old", "evil.example.org")])
    assert decision.allowed
    assert decision.warnings == ()


def test_first_policy_warns_about_every_breaching_object() -> None:
    decision = check(review("CREATE", NARROWED), [entry("gh", "api.github.com")], current=None)
    assert decision.allowed
    assert decision.warnings == (
        "egress-guard: this policy leaves 1 existing object(s) in breach: ServiceEntry team-a/gh",
    )


def test_exceptions_close_to_expiry_and_expired_ones_are_warned() -> None:
    text = (
        OLD
        + """
exceptions:
  - {name: soon, namespaces: [team-b], services: [api], owner: carol, ticket: T-1,
     expires: "2026-12-05T00:00:00Z"}
  - {name: later, namespaces: [team-b], services: [api], owner: carol, ticket: T-2,
     expires: "2027-02-01T00:00:00Z"}
  - {name: over, namespaces: [team-b], services: [api], owner: carol, ticket: T-3,
     expires: "2026-11-01T00:00:00Z"}
"""
    )
    decision = check(review("UPDATE", text))
    assert decision.allowed
    assert decision.warnings == (
        "egress-guard: exception soon (owner carol, ticket T-1, expires "
        "2026-12-05T00:00:00+00:00) ends within 7 days",
        "egress-guard: exception over ended at 2026-11-01T00:00:00+00:00 and grants nothing; "
        "remove it",
    )


@pytest.mark.parametrize(
    ("user", "groups", "allowed"),
    [("alice", (), True), ("mallory", ("security",), True), ("bob", ("dev",), False)],
)
def test_delete_is_reserved_to_the_security_team(
    user: str, groups: tuple[str, ...], allowed: bool
) -> None:
    rv = replace(review("DELETE", OLD, user=user), groups=groups)
    assert check(rv).allowed is allowed


def test_registration_sends_only_the_policy_configmap() -> None:
    hook = registration(REF)
    assert hook["rules"][0]["resources"] == ["configmaps"]
    assert hook["timeoutSeconds"] == 15
    assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE", "DELETE"]
    assert hook["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "egress-guard"}
    }
    assert hook["matchConditions"][0]["expression"] == (
        "request.namespace == 'egress-guard' && request.name == 'egress-policy'"
    )


def test_without_delete_guard_deletions_are_not_sent() -> None:
    hook = registration(REF, guard_delete=False)
    assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
    assert [c["name"] for c in hook["matchConditions"]] == ["egress-policy-configmap-only"]


def test_deletions_by_the_namespace_controller_are_neither_sent_nor_refused() -> None:
    [_, condition] = registration(REF)["matchConditions"]
    for user in (
        "system:serviceaccount:kube-system:namespace-controller",
        "system:kube-controller-manager",
    ):
        assert f"'{user}'" in condition["expression"]
        assert check(replace(review("DELETE", OLD, user=user), groups=())).allowed


@pytest.mark.parametrize("name", ["x' || true || '", "UPPER", ""])
def test_names_that_could_escape_the_cel_expression_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="is not a ConfigMap namespace/name"):
        PolicyConfigMap("egress-guard", name)


def test_matches_only_the_named_configmap() -> None:
    assert REF.matches(review("UPDATE", OLD))
    other = replace(review("UPDATE", OLD), name="other")
    assert not REF.matches(other)

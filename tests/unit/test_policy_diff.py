"""Policy diff: grants added and removed as source → service/host:port, objects changed."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from webhook.core.errors import PolicyError
from webhook.core.policy_diff import diff_policies, policy_diff_text, summary_of_removed
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

OLD = """
egress: {namespace: egress}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
  - {name: github, hosts: [api.github.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: team-a, from: {namespace: team-a}, to: [api, github]}
"""

NEW = (
    OLD.replace("to: [api, github]", "to: [api]")
    + """
  - {name: team-b, from: {namespace: team-b}, to: [github]}
"""
)


def test_identical_policies_differ_in_nothing() -> None:
    assert policy_diff_text(OLD, OLD, now=T0).startswith("no change")


def test_narrowing_and_widening_show_as_grants_and_objects() -> None:
    result = diff_policies(parse_policy(OLD), parse_policy(NEW), now=T0)
    assert [g.describe() for g in result.added] == ["team-b → github/api.github.com:443"]
    assert [g.describe() for g in result.removed] == ["team-a → github/api.github.com:443"]
    changes = {(o.change, o.kind, o.namespace, o.name) for o in result.objects}
    assert ("removed", "VirtualService", "team-a", "egress-guard-github") in changes
    assert ("added", "VirtualService", "team-b", "egress-guard-github") in changes
    assert ("changed", "Sidecar", "team-a", "egress-guard-default") in changes
    # every enforced namespace has a default-deny Sidecar: team-b's now imports github
    assert ("changed", "Sidecar", "team-b", "egress-guard-default") in changes
    assert (
        "changed",
        "AuthorizationPolicy",
        "egress",
        "egress-guard-istio-egressgateway",
    ) in changes
    assert len(changes) == 5
    assert result.namespaces == ("egress", "team-a", "team-b")
    assert summary_of_removed(result.removed) == {"team-a": ("api.github.com",)}


def test_only_the_revision_stamp_differing_is_no_change() -> None:
    reordered = OLD.replace("allow:", "mode: enforce\nallow:")
    result = diff_policies(parse_policy(OLD), parse_policy(reordered), now=T0)
    assert parse_policy(OLD).revision != parse_policy(reordered).revision
    assert result.empty


def test_table_and_json_forms() -> None:
    table = policy_diff_text(OLD, NEW, now=T0)
    assert "+  team-b  github/api.github.com:443  team-b" in table
    assert "-  team-a  github/api.github.com:443  team-a" in table
    assert "GENERATED OBJECTS (namespaces: egress, team-a, team-b)" in table
    data = json.loads(policy_diff_text(OLD, NEW, now=T0, output="json"))
    assert data["grants"]["added"] == [
        {
            "source": "team-b",
            "service": "github",
            "host": "api.github.com",
            "port": 443,
            "protocol": "TLS",
            "via": "team-b",
        }
    ]
    assert {
        "change": "added",
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "namespace": "team-b",
        "name": "egress-guard-github",
    } in data["objects"]


def test_namespaces_can_be_given() -> None:
    result = diff_policies(parse_policy(OLD), parse_policy(NEW), now=T0, namespaces=["team-a"])
    assert {o.namespace for o in result.objects} == {"team-a"}


def test_an_exception_counts_only_while_live() -> None:
    with_exception = (
        OLD
        + """
exceptions:
  - {name: ci, namespaces: [team-c], services: [api], owner: a, ticket: T-1,
     expires: "2026-12-02T00:00:00Z"}
"""
    )
    live = diff_policies(parse_policy(OLD), parse_policy(with_exception), now=T0)
    assert [(g.describe(), g.via) for g in live.added] == [
        ("team-c → api/api.example.com:443", "exception:ci:team-c")
    ]
    later = datetime(2026, 12, 2, tzinfo=UTC)
    gone = diff_policies(parse_policy(OLD), parse_policy(with_exception), now=later)
    assert not gone.added
    assert all(o.namespace != "team-c" or o.change == "added" for o in gone.objects)


def test_an_invalid_new_policy_raises_with_its_problems() -> None:
    with pytest.raises(PolicyError) as info:
        policy_diff_text(OLD, NEW.replace("to: [github]", "to: [gitlab]"), now=T0)
    assert info.value.problems[0].path == "/allow/1/to/0"

"""Policy exceptions: parsed with owner, ticket and expiry, folded in only by ``Policy.at``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from webhook.core.errors import PolicyError
from webhook.core.policy import Workloads, effective_policy
from webhook.core.policy_exceptions import parse_instant
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

POLICY = """
egress: {namespace: egress}
maxExceptionDays: 30
externalServices:
  - name: api
    hosts: [api.example.com]
    ports: [{number: 443, protocol: TLS}]
  - name: github
    hosts: ["*.github.com"]
    ports: [{number: 443, protocol: TLS}]
allow:
  - from: {namespace: team-a}
    to: [api]
exceptions:
  - name: ci-github
    namespaces: [team-b, team-c]
    hosts: [api.github.com]
    owner: alice
    ticket: SEC-1
    expires: 2026-12-08T12:00:00Z
    reason: migration
  - name: late-api
    namespaces: [team-b]
    services: [api]
    owner: bob
    ticket: SEC-2
    expires: "2026-12-20T00:00:00+01:00"
"""


def problems_of(text: str, now: datetime | None = T0) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, now=now)
    return [str(p) for p in info.value.problems]


def test_exception_is_parsed_with_owner_ticket_expiry_and_resolved_hosts() -> None:
    policy = parse_policy(POLICY, now=T0)
    ci = policy.exceptions[0]
    assert (ci.name, ci.owner, ci.ticket, ci.reason) == ("ci-github", "alice", "SEC-1", "migration")
    assert ci.expires == datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    assert ci.services == ("github",)
    assert ci.hosts == ("api.github.com",)
    assert [s.namespace for s in ci.sources] == ["team-b", "team-c"]
    assert policy.exceptions[1].expires == datetime(2026, 12, 19, 23, 0, tzinfo=UTC)
    assert policy.max_exception_days == 30


def test_unresolved_policy_grants_no_exception() -> None:
    policy = parse_policy(POLICY, now=T0)
    assert policy.allowed_for(Workloads("team-b")) == frozenset()


def test_live_exception_is_granted_and_stops_at_the_expiry_instant() -> None:
    policy = parse_policy(POLICY, now=T0)
    expiry = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    assert policy.at(T0).allowed_for(Workloads("team-c")) == {"github"}
    assert policy.at(expiry - timedelta(microseconds=1)).allowed_directly("team-c") == {"github"}
    assert policy.at(expiry).allowed_for(Workloads("team-c")) == frozenset()
    assert policy.at(expiry).allowed_for(Workloads("team-b")) == {"api"}


def test_resolving_a_resolved_policy_drops_what_expired_since() -> None:
    policy = parse_policy(POLICY, now=T0)
    later = T0 + timedelta(days=10)
    assert policy.at(T0).at(later).allowed_for(Workloads("team-c")) == frozenset()
    assert policy.at(T0).at(later).rules == policy.at(later).rules


def test_effective_revision_changes_with_the_live_set_only() -> None:
    policy = parse_policy(POLICY, now=T0)
    assert policy.at(T0).revision != policy.revision
    assert policy.at(T0).revision == policy.at(T0 + timedelta(days=1)).revision
    assert policy.at(T0 + timedelta(days=60)).revision == policy.revision
    assert effective_policy(policy, T0) is policy.at(T0)


def test_resolution_shares_the_compiled_host_index() -> None:
    policy = parse_policy(POLICY, now=T0)
    resolved = policy.at(T0)
    assert resolved.services_covering("api.github.com") == {"github"}
    assert resolved.gateways == policy.gateways


def test_next_expiry_and_expiring_soon() -> None:
    policy = parse_policy(POLICY, now=T0)
    assert policy.next_expiry(T0) == datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    assert policy.next_expiry(T0 + timedelta(days=8)) == datetime(2026, 12, 19, 23, tzinfo=UTC)
    assert policy.next_expiry(T0 + timedelta(days=30)) is None
    assert [e.name for e in policy.expiring_within(T0)] == ["ci-github"]
    assert [e.name for e in policy.expiring_within(T0 + timedelta(days=13))] == ["late-api"]
    assert [e.name for e in policy.expired(T0 + timedelta(days=8))] == ["ci-github"]


def test_max_exception_days_is_measured_from_the_validation_instant() -> None:
    assert problems_of(POLICY, now=T0 - timedelta(days=40)) == [
        "/exceptions/0/expires: 'ci-github' runs until 2026-12-08T12:00:00+00:00, past the "
        "30-day limit (maxExceptionDays) ending 2026-11-21T12:00:00+00:00",
        "/exceptions/1/expires: 'late-api' runs until 2026-12-19T23:00:00+00:00, past the "
        "30-day limit (maxExceptionDays) ending 2026-11-21T12:00:00+00:00",
    ]
    # without an instant (offline lint) the length cannot be judged, so it is not
    assert parse_policy(POLICY).exceptions


def test_an_already_expired_exception_still_validates_so_reloads_keep_working() -> None:
    policy = parse_policy(POLICY, now=T0 + timedelta(days=365))
    assert len(policy.expired(T0 + timedelta(days=365))) == 2


@pytest.mark.parametrize(
    ("expires", "message"),
    [
        ("2026-12-08", "a date alone is not an instant"),
        ("2026-12-08T12:00:00", "needs an offset"),
        ("next tuesday", "is not an RFC 3339 instant"),
        ("2026-W49-2T12:00:00Z", "expected YYYY-MM-DDTHH:MM:SS"),
        ("2026-12-08T12Z", "expected YYYY-MM-DDTHH:MM:SS"),
    ],
)
def test_expires_must_be_an_instant_with_an_offset(expires: str, message: str) -> None:
    text = POLICY.replace("2026-12-08T12:00:00Z", expires)
    found = problems_of(text)
    assert len(found) == 1
    assert found[0].startswith("/exceptions/0/expires: ")
    assert message in found[0]


def test_exception_hosts_and_services_must_be_described() -> None:
    text = POLICY.replace("[api.github.com]", "[api.gitlab.com]").replace(
        "services: [api]", "services: [nope]"
    )
    assert problems_of(text) == [
        "/exceptions/0/hosts/0: no external service covers 'api.gitlab.com': describe it under "
        "externalServices (ports, protocol, gateway) before granting it",
        "/exceptions/1/services/0: unknown external service 'nope' (defined: api, github)",
    ]


def test_exception_needs_owner_ticket_expiry_and_a_destination() -> None:
    text = """
egress: {namespace: egress}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
exceptions:
  - {name: x, namespaces: [team-a]}
"""
    found = problems_of(text)
    assert any("'owner' is a required property" in p for p in found)
    assert any("'ticket' is a required property" in p for p in found)
    assert any("'expires' is a required property" in p for p in found)
    assert len(found) == 3


def test_exception_without_services_or_hosts_grants_nothing_and_is_refused() -> None:
    text = POLICY.replace("    services: [api]\n", "")
    assert problems_of(text) == [
        "/exceptions/1: exception 'late-api' grants nothing: list services or hosts"
    ]


def test_duplicate_exception_names_are_refused() -> None:
    text = POLICY.replace("name: late-api", "name: ci-github")
    assert problems_of(text) == ["/exceptions/1/name: duplicate exception name 'ci-github'"]


def test_parse_instant_normalizes_to_utc() -> None:
    assert parse_instant("2026-12-01T13:00:00+01:00") == T0
    assert parse_instant("2026-12-01t12:00:00.000z") == T0


def test_a_policy_without_exceptions_resolves_to_itself() -> None:
    policy = parse_policy(POLICY.split("exceptions:")[0])
    assert policy.at(T0) is policy

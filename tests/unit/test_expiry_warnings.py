"""Objects admitted only thanks to an exception ending within 7 days get a kubectl warning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from webhook.core.expiry_warnings import expiring_grant_warnings
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

EXPIRY = datetime(2026, 12, 5, tzinfo=UTC)
POLICY = parse_policy("""
egress: {namespace: egress}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
  - {name: github, hosts: [api.github.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: team-b, from: {namespace: team-b}, to: [api]}
exceptions:
  - {name: ci, namespaces: [team-b], services: [github], owner: alice, ticket: SEC-1,
     expires: "2026-12-05T00:00:00Z"}
""")


def entry(host: str, namespace: str = "team-b") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "se", "namespace": namespace},
        "spec": {
            "hosts": [host],
            "exportTo": ["."],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }


def warnings(host: str, now: datetime, namespace: str = "team-b") -> tuple[str, ...]:
    return expiring_grant_warnings(review_of_manifest(entry(host, namespace)), POLICY, now=now)


def test_an_object_relying_on_an_exception_ending_soon_is_warned() -> None:
    assert warnings("api.github.com", EXPIRY - timedelta(days=2)) == (
        "egress-guard: ServiceEntry team-b/se is allowed only by exception ci (owner alice, "
        "ticket SEC-1, expires 2026-12-05T00:00:00+00:00); it will breach the egress policy "
        "once that ends",
    )


def test_no_warning_far_from_expiry_or_for_objects_that_do_not_need_it() -> None:
    assert warnings("api.github.com", EXPIRY - timedelta(days=8)) == ()
    assert warnings("api.example.com", EXPIRY - timedelta(days=2)) == ()
    assert warnings("api.github.com", EXPIRY - timedelta(days=2), namespace="team-c") == ()


def test_no_warning_once_it_has_ended_the_decision_itself_denies() -> None:
    assert warnings("api.github.com", EXPIRY) == ()

"""The exception expiry gauge: one sample per declared exception, from the policy in force."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import generate_latest

from webhook.admission.metrics import Metrics
from webhook.policy_runtime import PolicyStore

pytestmark = pytest.mark.unit

POLICY = """
egress: {namespace: egress}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
exceptions:
  - {name: ci, namespaces: [team-b], services: [api], owner: alice, ticket: SEC-1,
     expires: "2026-12-03T00:00:00Z"}
"""


def test_expiry_gauge_follows_the_loaded_policy() -> None:
    metrics = Metrics()
    store = PolicyStore()
    metrics.watch(store)
    before = generate_latest(metrics.registry).decode()
    assert "egress_guard_exception_expiry_timestamp_seconds{" not in before
    assert store.update(POLICY, origin="test").ok
    text = generate_latest(metrics.registry).decode()
    stamp = datetime(2026, 12, 3, tzinfo=UTC).timestamp()
    (line,) = [x for x in text.splitlines() if x.startswith("egress_guard_exception_expiry")]
    labels, value = line.rsplit(" ", 1)
    assert labels == (
        'egress_guard_exception_expiry_timestamp_seconds{exception="ci",owner="alice",'
        'ticket="SEC-1"}'
    )
    assert float(value) == stamp

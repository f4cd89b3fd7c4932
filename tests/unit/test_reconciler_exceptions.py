"""The Reconciler's day-two wiring: exceptions planned at ``now``, a pass at each expiry, audit.

In-memory collaborators and a clock handed in: an exception's routing is applied while it is
live and pruned by the pass at its expiry instant, and every new policy revision starts an audit.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.unit.kube_fakes import (
    FakeElector,
    FakePolicySource,
    FakeWriter,
    MemoryInformer,
    managed_informers,
    namespace,
)
from webhook.core.desired import generate
from webhook.core.policy_parsing import parse_policy
from webhook.kube.client import kind_of
from webhook.kube.reconciler import EXPIRY_MARGIN, Reconciler
from webhook.policy_runtime import PolicyStore

pytestmark = pytest.mark.unit

EXPIRES = datetime(2026, 12, 3, tzinfo=UTC)
POLICY = """
egress: {namespace: external}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: a, from: {namespace: a}, to: [api]}
exceptions:
  - {name: b-api, namespaces: [b], services: [api], owner: alice, ticket: SEC-2,
     expires: "2026-12-03T00:00:00Z"}
"""
NAMESPACES = [namespace("a"), namespace("b"), namespace("external")]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class FakeAudit:
    """Counts what the Reconciler asks of its audit loop."""

    def __init__(self) -> None:
        self.triggers = 0
        self.started = 0
        self.stopped = 0

    def trigger(self) -> None:
        self.triggers += 1

    def start(self) -> FakeAudit:
        self.started += 1
        return self

    def stop(self, timeout: float = 5.0) -> None:
        del timeout
        self.stopped += 1


def build(
    clock: Clock,
    managed: dict[Any, MemoryInformer] | None = None,
    *,
    audit: FakeAudit | None = None,
    resync: float = 60.0,
) -> tuple[Reconciler, FakeWriter, FakePolicySource]:
    store = PolicyStore()
    source = FakePolicySource(POLICY)
    writer = FakeWriter()
    reconciler = Reconciler(
        store=store,
        policy_source=source,
        namespaces=MemoryInformer(NAMESPACES),
        managed=managed if managed is not None else managed_informers(),
        elector=FakeElector(),
        writer=writer,
        identity="test",
        clock=clock,
        resync=resync,
        audit=audit,  # type: ignore[arg-type]
    )
    return reconciler, writer, source


def _in_b(keys: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [k for k in keys if k[1] == "b"]


def test_a_live_exception_gets_routing_and_its_expiry_pass_prunes_it() -> None:
    clock = Clock(EXPIRES - timedelta(hours=1))
    reconciler, writer, source = build(clock)
    source.start(reconciler.store)
    reconciler.sync()
    assert any(kind == "VirtualService" for kind, _, _ in _in_b(writer.applied))

    # the cluster now holds what was applied: at the expiry instant it must go
    live = generate(parse_policy(POLICY).at(clock.now), ["a", "b", "external"]).manifests
    managed = managed_informers(list(live))
    clock.now = EXPIRES
    reconciler, writer, source = build(clock, managed)
    source.start(reconciler.store)
    reconciler.sync()
    pruned = _in_b(writer.deleted)
    assert any(kind == "VirtualService" for kind, _, _ in pruned)
    # only the default-deny Sidecar stays, its egress hosts narrowed
    assert {kind_of(m).kind for m in live if m["metadata"]["namespace"] == "b"} - {
        k for k, _, _ in pruned
    } == {"Sidecar"}


def test_the_next_pass_is_due_at_the_expiry_instant_not_the_next_resync() -> None:
    clock = Clock(EXPIRES - timedelta(seconds=5))
    reconciler, _, source = build(clock)
    assert reconciler.next_wait() == 60.0  # no policy yet
    source.start(reconciler.store)
    assert reconciler.next_wait() == pytest.approx(5 + EXPIRY_MARGIN)
    clock.now = EXPIRES - timedelta(hours=2)
    assert reconciler.next_wait() == 60.0
    clock.now = EXPIRES
    assert reconciler.next_wait() == 60.0  # nothing left to expire


def test_each_accepted_policy_triggers_an_audit_and_run_starts_and_stops_it() -> None:
    audit = FakeAudit()
    reconciler, _, _ = build(Clock(EXPIRES - timedelta(days=1)), audit=audit)
    stop = threading.Event()
    thread = threading.Thread(target=reconciler.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not audit.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reconciler.store.current is not None
        assert audit.started == 1
        assert audit.triggers == 1
        assert not reconciler.store.update("egress: 3\n", origin="test").ok
        assert audit.triggers == 1  # a rejected policy changes nothing to audit
    finally:
        stop.set()
        thread.join(10)
    assert audit.stopped == 1

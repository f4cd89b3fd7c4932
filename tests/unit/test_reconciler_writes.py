"""One reconcile pass's writes: applied, failed, pruned, skipped namespaces, lease lost mid-pass.

The Reconciler is handed in-memory collaborators (caches, elector, writer, policy source) and is
driven through its public ``sync`` and ``run``; nothing talks to an API server (that is
``tests/e2e/test_reconciler.py``).
"""

from __future__ import annotations

import threading
import time
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
from webhook.core.desired import MANAGED_BY, MANAGED_BY_LABEL
from webhook.core.policy import MANAGED_LABEL
from webhook.kube.client import kind_of
from webhook.kube.reconciler import Reconciler
from webhook.policy_runtime import PolicyStore

pytestmark = pytest.mark.unit

POLICY = """
egress: {namespace: external}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: a, from: {namespace: a}, to: [api]}
  - {name: b, from: {namespace: b}, to: [api]}
  - {name: gone, from: {namespace: gone}, to: [api]}
"""
NAMESPACES = [namespace("a"), namespace("b"), namespace("gone", terminating=True)]


def orphan(namespace: str, name: str) -> dict[str, Any]:
    """A managed Sidecar the policy no longer asks for."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_LABEL: "true", MANAGED_BY_LABEL: MANAGED_BY},
        },
        "spec": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
    }


def build(
    writer: FakeWriter,
    elector: FakeElector | None = None,
    *,
    managed: dict[Any, MemoryInformer] | None = None,
    policy: str = POLICY,
) -> Reconciler:
    store = PolicyStore()
    source = FakePolicySource(policy)
    reconciler = Reconciler(
        store=store,
        policy_source=source,
        namespaces=MemoryInformer(NAMESPACES),
        managed=managed if managed is not None else managed_informers(),
        elector=elector or FakeElector(),
        writer=writer,
        identity="test",
    )
    source.start(store)
    return reconciler


def test_every_wanted_object_in_a_live_namespace_is_applied_and_counted() -> None:
    writer = FakeWriter()
    reconciler = build(writer)
    result = reconciler.sync()
    # a terminating namespace refuses new objects: nothing is written there
    assert {ns for _, ns, _ in writer.applied} == {"a", "b"}
    assert ("Sidecar", "a", "egress-guard-default") in writer.applied
    assert ("VirtualService", "b", "egress-guard-api") in writer.applied
    assert len(result.applied) == len(writer.applied)
    assert not result.failed and not result.deleted and not result.skipped
    sidecar_writes = reconciler.metrics.registry.get_sample_value(
        "egress_guard_controller_writes_total", {"kind": "Sidecar", "action": "apply"}
    )
    assert sidecar_writes == 2


def test_a_failed_write_is_recorded_and_the_pass_goes_on() -> None:
    writer = FakeWriter(broken=frozenset({("a", "egress-guard-default")}))
    result = build(writer).sync()
    assert result.failed == ["Sidecar a/egress-guard-default"]
    assert "Sidecar b/egress-guard-default" in result.applied
    assert ("Sidecar", "a", "egress-guard-default") not in writer.applied


def test_a_replica_that_loses_the_lease_stops_before_the_next_write() -> None:
    writer = FakeWriter()
    # one check when the pass starts, one before the first write, then the lease is gone
    result = build(writer, FakeElector(checks=2)).sync()
    assert len(writer.applied) == 1
    assert result.skipped
    assert len(result.applied) == 1


def test_a_replica_that_does_not_lead_writes_nothing() -> None:
    writer = FakeWriter()
    result = build(writer, FakeElector(checks=0)).sync()
    assert result.skipped and writer.applied == []


def test_a_managed_object_no_longer_wanted_is_pruned() -> None:
    writer = FakeWriter()
    managed = managed_informers([orphan("a", "egress-guard-old")])
    result = build(writer, managed=managed).sync()
    assert writer.deleted == [("Sidecar", "a", "egress-guard-old")]
    assert result.deleted == ["Sidecar a/egress-guard-old"]


def test_a_kind_whose_cache_is_not_synced_is_never_pruned() -> None:
    writer = FakeWriter()
    managed = managed_informers([orphan("a", "egress-guard-old")], synced=False)
    build(writer, managed=managed).sync()
    assert writer.deleted == []


def test_without_a_policy_nothing_is_written() -> None:
    writer = FakeWriter()
    result = build(writer, policy="egress: {namespace: [broken").sync()
    assert result.skipped and writer.applied == []


def test_the_run_loop_reconciles_on_start_and_stops_its_collaborators() -> None:
    writer = FakeWriter()
    namespaces = MemoryInformer(NAMESPACES)
    managed = managed_informers()
    store = PolicyStore()
    reconciler = Reconciler(
        store=store,
        policy_source=FakePolicySource(POLICY),
        namespaces=namespaces,
        managed=managed,
        elector=FakeElector(),
        writer=writer,
        identity="test",
    )
    stop = threading.Event()
    loop = threading.Thread(target=reconciler.run, args=(stop,), daemon=True)
    loop.start()
    deadline = time.monotonic() + 5
    while reconciler.last_result is None:
        assert time.monotonic() < deadline, "no reconcile pass"
        time.sleep(0.01)
    assert namespaces.started and all(m.started for m in managed.values())
    assert store.ready
    stop.set()
    loop.join(5)
    assert not loop.is_alive()
    assert not namespaces.started
    assert ("Sidecar", "a", "egress-guard-default") in writer.applied


def test_a_cache_event_asks_for_another_pass() -> None:
    writer = FakeWriter()
    managed = managed_informers()
    reconciler = build(writer, managed=managed)
    stop = threading.Event()
    loop = threading.Thread(target=reconciler.run, args=(stop,), daemon=True)
    loop.start()
    try:
        deadline = time.monotonic() + 5
        while not writer.applied:
            assert time.monotonic() < deadline, "no first pass"
            time.sleep(0.01)
        first = len(writer.applied)
        # a stray managed object appears: its watch event triggers a pass that prunes it
        stray = orphan("a", "egress-guard-stray")
        managed[kind_of(stray)].put(stray)
        while not writer.deleted:
            assert time.monotonic() < deadline, "the event did not trigger a pass"
            time.sleep(0.01)
        assert len(writer.applied) >= first
    finally:
        stop.set()
        loop.join(5)

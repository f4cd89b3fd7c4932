"""One reconcile pass's writes: applied, failed, skipped namespaces, leadership lost mid-pass.

The Reconciler is built on a client it never calls; a fake writer stands for the API and a fake
elector for the Lease.  Nothing is watched, so no cache is synced and nothing is pruned here
(pruning is covered against a real API server in ``tests/e2e/test_reconciler.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes import client

from webhook.core.desired import NamespaceInfo
from webhook.kube.reconciler import Reconciler

pytestmark = pytest.mark.unit


class FakeWriter:
    """Stores what it is given; refuses the names in ``broken``."""

    def __init__(self, broken: frozenset[str] = frozenset()) -> None:
        self.broken = broken
        self.applied: list[str] = []

    def apply(self, manifest: Mapping[str, Any]) -> Mapping[str, Any]:
        name = manifest["metadata"]["name"]
        if name in self.broken:
            raise RuntimeError(f"the API refused {name}")
        self.applied.append(name)
        return manifest

    def replace(self, manifest: Mapping[str, Any], resource_version: str) -> Mapping[str, Any]:
        raise AssertionError("an apply that stores the manifest needs no replace")

    def delete(self, manifest: Mapping[str, Any]) -> None:
        raise AssertionError("nothing is synced, so nothing may be pruned")


class FakeElector:
    """Leads for the first ``writes`` leadership checks."""

    def __init__(self, writes: int = 1000) -> None:
        self.left = writes

    def is_leader(self) -> bool:
        self.left -= 1
        return self.left >= 0


def sidecar(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
    }


def reconciler(writer: FakeWriter, elector: FakeElector) -> Reconciler:
    controller = Reconciler(
        client.ApiClient(client.Configuration()),
        policy_namespace="egress-guard",
        policy_name="egress-guard-policy",
        lease_namespace="egress-guard",
        identity="test",
        writer=writer,
    )
    controller.elector = elector  # type: ignore[assignment]
    return controller


NAMESPACES = [NamespaceInfo("a", False), NamespaceInfo("b", False), NamespaceInfo("gone", True)]


def test_every_wanted_object_in_a_live_namespace_is_applied_and_counted() -> None:
    writer = FakeWriter()
    controller = reconciler(writer, FakeElector())
    desired = [sidecar("a", "one"), sidecar("b", "two"), sidecar("gone", "three")]
    result = controller._converge(desired, NAMESPACES)
    # a terminating namespace refuses new objects: it is skipped, not failed
    assert writer.applied == ["one", "two"]
    assert result.applied == ["Sidecar a/one", "Sidecar b/two"]
    assert not result.failed and not result.deleted and not result.skipped
    writes = controller.metrics.registry.get_sample_value(
        "egress_guard_controller_writes_total", {"kind": "Sidecar", "action": "apply"}
    )
    assert writes == 2


def test_a_failed_write_is_recorded_and_the_pass_goes_on() -> None:
    writer = FakeWriter(broken=frozenset({"one"}))
    controller = reconciler(writer, FakeElector())
    result = controller._converge([sidecar("a", "one"), sidecar("b", "two")], NAMESPACES)
    assert result.failed == ["Sidecar a/one"]
    assert result.applied == ["Sidecar b/two"]
    assert writer.applied == ["two"]


def test_a_replica_that_loses_the_lease_stops_before_the_next_write() -> None:
    writer = FakeWriter()
    controller = reconciler(writer, FakeElector(writes=1))
    desired = [sidecar("a", "one"), sidecar("a", "two"), sidecar("b", "three")]
    result = controller._converge(desired, NAMESPACES)
    assert writer.applied == ["one"]
    assert result.skipped
    assert result.applied == ["Sidecar a/one"]

"""What the Reconciler is built from: the seams it is handed, and the metrics it keeps.

Each collaborator is a small Protocol, so ``new_reconciler`` hands in informers, a Lease elector
and the ConfigMap source while tests hand in caches held in memory, and nothing is patched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from webhook.policy_runtime import PolicySource


class Metrics:
    """The Reconciler's Prometheus metrics, in a registry of its own (tests build many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.syncs = Counter(
            "egress_guard_controller_syncs", "Reconcile passes", ["result"], registry=r
        )
        self.writes = Counter(
            "egress_guard_controller_writes", "Objects written", ["kind", "action"], registry=r
        )
        self.policy_loads = Counter(
            "egress_guard_controller_policy_loads", "Policy updates seen", ["result"], registry=r
        )
        self.leader = Gauge(
            "egress_guard_controller_leader", "1 while this replica holds the lease", registry=r
        )
        self.policy_source_up = Gauge(
            "egress_guard_controller_policy_source_up",
            "1 while the policy ConfigMap can be read, 0 while it cannot (last good policy kept)",
            registry=r,
        )
        self.managed = Gauge(
            "egress_guard_controller_desired_objects", "Objects the policy asks for", registry=r
        )
        self.duration = Histogram(
            "egress_guard_controller_sync_seconds", "Time of one reconcile pass", registry=r
        )


class Watch(Protocol):
    """A cache of one kind of object kept current by a watch (``Informer``, or one in memory)."""

    @property
    def synced(self) -> bool:
        """True once the first list is loaded."""
        ...

    @property
    def failed(self) -> bool:
        """True when the watch ended without being asked to stop."""
        ...

    def items(self) -> list[Mapping[str, Any]]:
        """A snapshot of the cached objects."""
        ...

    def add_handler(self, handler: Callable[[str, Mapping[str, Any]], None]) -> None:
        """Call ``handler(event type, object)`` on every change."""
        ...

    def start(self) -> object:
        """Start listing and watching."""
        ...

    def stop(self) -> None:
        """Stop watching."""
        ...


class WatchedPolicySource(PolicySource, Protocol):
    """A policy source whose watch the probes can see (``ConfigMapPolicySource``)."""

    @property
    def synced(self) -> bool:
        """True once the source has been read."""
        ...

    @property
    def failed(self) -> bool:
        """True when the source's watch ended without being asked to stop."""
        ...


class Elector(Protocol):
    """Leader election: only the holder writes (``LeaseElector``)."""

    @property
    def failed(self) -> bool:
        """True when the election loop ended without being asked to stop."""
        ...

    def is_leader(self) -> bool:
        """Whether writing is safe right now."""
        ...

    def subscribe(
        self,
        *,
        on_started: Callable[[], None] | None = None,
        on_stopped: Callable[[], None] | None = None,
    ) -> None:
        """Be told when leadership starts and stops."""
        ...

    def start(self) -> object:
        """Start competing for the lease."""
        ...

    def stop(self, *, release: bool = True) -> None:
        """Stop competing, handing the lease back when ``release``."""
        ...

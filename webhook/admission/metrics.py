"""Prometheus metrics of the webhook, on a registry of their own per app.

A registry per app (not the global default) lets tests build many apps in one process.  The
service runs one worker process with threads, so one in-process registry sees every request and
prometheus-client's multiprocess mode is not needed.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from webhook.policy_runtime import PolicyStore, ReloadResult

# the decision is microseconds; transport dominates, so the interesting range is 0.1-50 ms
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class _PolicyCollector(Collector):
    """Reads the policy in force at scrape time, so the gauge can never go stale."""

    def __init__(self, store: PolicyStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """The policy info and loaded gauges."""
        info = GaugeMetricFamily(
            "egress_guard_policy_info",
            "The egress policy in force (value 1), by revision, origin and mode.",
            labels=["revision", "origin", "mode"],
        )
        loaded = GaugeMetricFamily(
            "egress_guard_policy_loaded", "1 when a good egress policy is loaded, else 0."
        )
        stamp = GaugeMetricFamily(
            "egress_guard_policy_loaded_timestamp_seconds",
            "When the policy in force was swapped in (Unix time).",
        )
        source_up = GaugeMetricFamily(
            "egress_guard_policy_source_up",
            "1 while the policy source (file, ConfigMap) delivers, 0 while it cannot be read; "
            "the last good policy stays in force meanwhile.",
        )
        source_up.add_metric([], 1 if self.store.source_up else 0)
        current = self.store.current
        if current is not None:
            info.add_metric([current.revision, current.origin, current.policy.mode.value], 1)
            stamp.add_metric([], current.loaded_at)
        loaded.add_metric([], 1 if current is not None else 0)
        yield info
        yield loaded
        yield stamp
        yield source_up


class _ExceptionCollector(Collector):
    """When each policy exception ends, read from the policy in force at scrape time.

    Every declared exception is exported, expired ones too (a past timestamp says "remove it");
    dashboards and alerts pick those ending within 7 days with ``metric - time() < 7 * 86400``.
    """

    def __init__(self, store: PolicyStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """One sample per exception, valued at its expiry instant (Unix time)."""
        expiry = GaugeMetricFamily(
            "egress_guard_exception_expiry_timestamp_seconds",
            "When each egress policy exception stops granting access (Unix time).",
            labels=["exception", "owner", "ticket"],
        )
        current = self.store.current
        if current is not None:
            for exc in current.policy.exceptions:
                expiry.add_metric([exc.name, exc.owner, exc.ticket], exc.expires.timestamp())
        yield expiry


class Metrics:
    """The webhook's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "egress_guard_admission_requests",
            "Admission reviews answered, by endpoint, kind, operation and decision.",
            ["endpoint", "kind", "operation", "decision"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "egress_guard_admission_duration_seconds",
            "Time to answer an admission review, body read to response built.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.bad_requests = Counter(
            "egress_guard_admission_bad_requests",
            "Requests refused before any decision (malformed, too large, wrong type).",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "egress_guard_policy_reloads",
            "Policy updates, by result (success or failure).",
            ["result"],
            registry=self.registry,
        )
        self.cert_reloads = Counter(
            "egress_guard_certificate_reloads",
            "Serving certificate reloads, by result (success or failure).",
            ["result"],
            registry=self.registry,
        )
        self.decision_cache = Counter(
            "egress_guard_decision_cache",
            "Decision cache lookups, by result (hit or miss); reviews not worth caching are "
            "not counted.",
            ["result"],
            registry=self.registry,
        )
        # touch the label sets so every series exists from the first scrape
        for result in ("success", "failure"):
            self.reloads.labels(result)
            self.cert_reloads.labels(result)
        for result in ("hit", "miss"):
            self.decision_cache.labels(result)

    def watch(self, store: PolicyStore) -> None:
        """Export the store's policy gauges and count its reloads."""
        self.registry.register(_PolicyCollector(store))
        self.registry.register(_ExceptionCollector(store))
        store.subscribe(self.policy_reloaded)

    def policy_reloaded(self, result: ReloadResult) -> None:
        """Count one policy update."""
        self.reloads.labels("success" if result.ok else "failure").inc()

    def decision_cache_lookup(self, hit: bool) -> None:
        """Count one decision cache lookup."""
        self.decision_cache.labels("hit" if hit else "miss").inc()

    def certificate_reloaded(self, ok: bool, error: str) -> None:
        """Count one certificate reload."""
        del error
        self.cert_reloads.labels("success" if ok else "failure").inc()

"""Prometheus metrics of the webhook, on a registry of their own per app.

A registry per app (not the global default) lets tests build many apps in one process.  With one
worker process (the default) the counters live in that registry and nothing else is involved.
With several, a scrape is answered by whichever worker takes the connection, so every worker
must report the sum over all of them: the counters and histograms are then kept in
prometheus-client's multiprocess mode, in files of a directory private to the server
(``create_shared_dir``, made by the master before it forks), and each worker's registry reads
them all with the library's ``MultiProcessCollector``.  The files of a worker that exited stay,
so the totals never go down.  The policy gauges are computed at scrape time from the answering
worker's own policy store and exported once, not once per worker.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from webhook.policy_runtime import PolicyStore, ReloadResult

# the decision is microseconds; transport dominates, so the interesting range is 0.1-50 ms
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)

# prometheus-client's documented switch to multiprocess mode: where every process keeps its files
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def create_shared_dir() -> Path:
    """A new, empty directory only this user can read, for the workers' metric files.

    Fresh at every start, so files of an earlier run never count; under ``TMPDIR`` (``/tmp``,
    the chart's writable emptyDir, by default).
    """
    return Path(tempfile.mkdtemp(prefix="egress-guard-metrics-"))


def remove_shared_dir(directory: Path) -> None:
    """Remove the directory and every worker's files (the server is exiting)."""
    shutil.rmtree(directory, ignore_errors=True)


def worker_exited(directory: Path, pid: int) -> None:
    """The library's bookkeeping for a worker that exited.

    It drops only the files of "live" gauges, which count running processes alone; the exited
    worker's counters and histograms stay in the totals, so they never go down.
    """
    mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def keep_values_in(directory: Path) -> None:
    """Make every metric value this process creates from now on live in ``directory``.

    prometheus-client picks its value class once, when ``prometheus_client.values`` is imported,
    from the ``PROMETHEUS_MULTIPROC_DIR`` environment variable (its documented switch, meant to
    be set before the program starts).  Here the directory only exists once the master has
    created it, long after the import, so the worker sets that same variable (where the
    multiprocess values also look for their files) and has the library make its own choice
    again.  Metrics read ``values.ValueClass`` whenever they create a value (every new label set
    too), so every metric built in this process afterwards writes to the shared files.  This
    does not depend on what was imported first, and a one-worker server never comes here.
    """
    os.environ[MULTIPROC_DIR_ENV] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


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
    """The webhook's metrics; ``registry`` is what ``/metrics`` exports.

    With ``shared_dir`` (several workers), this process's metric values are kept in that
    directory's files from then on (``keep_values_in``), and ``registry`` exports the sum over
    every worker's files, and the policy gauges once.
    """

    def __init__(self, shared_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry()
        # the shared files hold each metric once per worker; registered here as well, they
        # would be exported a second time with this worker's values alone
        own = self.registry if shared_dir is None else None
        if shared_dir is not None:
            keep_values_in(shared_dir)
            MultiProcessCollector(self.registry, path=str(shared_dir))  # type: ignore[no-untyped-call]
        self.requests = Counter(
            "egress_guard_admission_requests",
            "Admission reviews answered, by endpoint, kind, operation and decision.",
            ["endpoint", "kind", "operation", "decision"],
            registry=own,
        )
        self.latency = Histogram(
            "egress_guard_admission_duration_seconds",
            "Time to answer an admission review, body read to response built.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.bad_requests = Counter(
            "egress_guard_admission_bad_requests",
            "Requests refused before any decision (malformed, too large, wrong type).",
            ["endpoint", "status"],
            registry=own,
        )
        self.reloads = Counter(
            "egress_guard_policy_reloads",
            "Policy updates, by result (success or failure).",
            ["result"],
            registry=own,
        )
        self.cert_reloads = Counter(
            "egress_guard_certificate_reloads",
            "Serving certificate reloads, by result (success or failure).",
            ["result"],
            registry=own,
        )
        self.decision_cache = Counter(
            "egress_guard_decision_cache",
            "Decision cache lookups, by result (hit or miss); reviews not worth caching are "
            "not counted.",
            ["result"],
            registry=own,
        )
        # touch the label sets so every series exists from the first scrape
        for result in ("success", "failure"):
            self.reloads.labels(result)
            self.cert_reloads.labels(result)
        # kept: labels() takes a lock and builds a key, and a lookup is counted on every review
        self._cache_hits = self.decision_cache.labels("hit")
        self._cache_misses = self.decision_cache.labels("miss")

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
        (self._cache_hits if hit else self._cache_misses).inc()

    def certificate_reloaded(self, ok: bool, error: str) -> None:
        """Count one certificate reload."""
        del error
        self.cert_reloads.labels("success" if ok else "failure").inc()

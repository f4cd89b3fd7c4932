"""The background audit: judge every governed object, write reports, count, and warn the owners.

The controller's leader runs one pass on every new policy revision, at each exception's expiry
instant, and periodically (10 minutes by default).  A pass reads the objects (informer caches in
the controller, one paginated list per kind in ``egress-guard audit``), runs the core ``audit`` on
the policy ``at(now)``, writes one report per namespace with server-side apply, deletes the
reports of namespaces that became clean, sets ``egress_guard_audit_violations`` and posts at
most one Warning Event per object and rule per ``event_interval``.

Every collaborator is handed in (a ``Protocol`` each), so the unit tests run a pass with
in-memory fakes; the Kubernetes implementations are in ``audit_reporting`` (reports and Events)
and ``audit_listing`` (the governed objects).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes import client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from webhook.core.audit import AuditResult, Finding, ObjectRef, audit
from webhook.core.policy import Policy
from webhook.core.reports import (
    MAX_RESULTS,
    ReportFlavour,
    build_reports,
)

logger = logging.getLogger(__name__)

AUDIT_INTERVAL = dt.timedelta(minutes=10)
EVENT_INTERVAL = dt.timedelta(hours=1)
EVENT_REASON = "EgressPolicyViolation"

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The wall clock, in UTC: the instant exceptions are judged at."""
    return dt.datetime.now(dt.UTC)


class ObjectSource(Protocol):
    """The governed objects that exist now."""

    def objects(self) -> Iterable[Mapping[str, Any]]:
        """Every governed object, as the API returns it (apiVersion and kind set)."""
        ...


class ReportStore(Protocol):
    """Where reports go (one per namespace, named ``egress-guard``)."""

    def namespaces(self) -> set[str]:
        """Namespaces holding a report egress-guard wrote."""
        ...

    def apply(self, report: Mapping[str, Any]) -> None:
        """Create or update one report."""
        ...

    def delete(self, namespace: str) -> None:
        """Remove the report of ``namespace``; absent is fine."""
        ...


class EventSink(Protocol):
    """Where Warning Events on offending objects go."""

    def warn(self, ref: ObjectRef, reason: str, message: str) -> None:
        """Post one Warning Event about ``ref``."""
        ...


class AuditMetrics:
    """The audit's metrics, on the controller's registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.violations = Gauge(
            "egress_guard_audit_violations",
            "Existing objects in breach of the policy in force, by namespace, kind and rule.",
            ["namespace", "kind", "rule"],
            registry=r,
        )
        self.runs = Counter(
            "egress_guard_audit_runs", "Audit passes, by result.", ["result"], registry=r
        )
        self.duration = Histogram(
            "egress_guard_audit_duration_seconds", "Time of one audit pass.", registry=r
        )
        self.judged = Gauge(
            "egress_guard_audit_objects", "Objects judged by the last audit pass.", registry=r
        )
        self._series: set[tuple[str, str, str]] = set()
        for result in ("success", "failure"):
            self.runs.labels(result)

    def record(self, result: AuditResult) -> None:
        """Set the gauge to this pass's counts and drop the series that went to zero."""
        counts: dict[tuple[str, str, str], int] = {}
        seen: set[tuple[ObjectRef, str]] = set()
        for finding in result.findings:
            # one object breaching one rule at several fields counts once
            if (finding.ref, finding.rule) in seen:
                continue
            seen.add((finding.ref, finding.rule))
            key = (finding.namespace or finding.name, finding.kind, finding.rule)
            counts[key] = counts.get(key, 0) + 1
        for key, count in counts.items():
            self.violations.labels(*key).set(count)
        for stale in self._series - counts.keys():
            self.violations.remove(*stale)
        self._series = set(counts)
        self.judged.set(result.judged)


class EventLimiter:
    """At most one Event per object and rule per ``interval``; forgets what got fixed."""

    def __init__(self, interval: dt.timedelta = EVENT_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[tuple[ObjectRef, str], dt.datetime] = {}

    def due(self, findings: Iterable[Finding], now: dt.datetime) -> list[Finding]:
        """The findings to post an Event for now, one per object and rule."""
        current: dict[tuple[ObjectRef, str], Finding] = {}
        for finding in findings:
            current.setdefault((finding.ref, finding.rule), finding)
        for key in self._last.keys() - current.keys():
            del self._last[key]
        due = []
        for key, finding in current.items():
            last = self._last.get(key)
            if last is None or now - last >= self.interval:
                self._last[key] = now
                due.append(finding)
        return due


@dataclass(slots=True)
class Auditor:
    """One audit pass at a time over injected collaborators."""

    objects: ObjectSource
    policy: Callable[[], Policy | None]
    metrics: AuditMetrics
    reports: ReportStore | None = None
    flavour: ReportFlavour | None = None
    events: EventSink | None = None
    limiter: EventLimiter | None = None
    clock: Clock = utc_now
    max_results: int = MAX_RESULTS
    # asked before each pass while no report API is known: a CRD installed later is picked up
    discover: Callable[[], tuple[ReportFlavour, ReportStore] | None] | None = None

    def run_once(self) -> AuditResult | None:
        """Audit, report, count and warn; None when no policy is loaded yet."""
        policy = self.policy()
        if policy is None:
            return None
        if self.flavour is None and self.discover is not None:
            found = self.discover()
            if found is not None:
                self.flavour, self.reports = found
        started = time.monotonic()
        now = self.clock()
        try:
            result = audit(list(self.objects.objects()), policy, now=now)
            self._write_reports(result, now)
        except Exception:
            self.metrics.runs.labels("failure").inc()
            raise
        self.metrics.record(result)
        self._post_events(result, now)
        self.metrics.runs.labels("success").inc()
        self.metrics.duration.observe(time.monotonic() - started)
        logger.info(
            "audit pass",
            extra={
                "fields": {
                    "revision": result.revision,
                    "judged": result.judged,
                    "findings": len(result.findings),
                    "objects_in_breach": len(result.objects_in_breach),
                }
            },
        )
        return result

    def _write_reports(self, result: AuditResult, now: dt.datetime) -> None:
        if self.reports is None or self.flavour is None:
            return
        reports = build_reports(result, flavour=self.flavour, now=now, max_results=self.max_results)
        existing = self.reports.namespaces()
        for report in reports.values():
            self.reports.apply(report)
        for namespace in sorted(existing - reports.keys()):
            self.reports.delete(namespace)

    def _post_events(self, result: AuditResult, now: dt.datetime) -> None:
        if self.events is None or self.limiter is None:
            return
        for finding in self.limiter.due(result.findings, now):
            try:
                self.events.warn(finding.ref, EVENT_REASON, finding.describe())
            except client.ApiException as exc:
                # an Event is a courtesy: a refused one must not fail the pass
                logger.warning("audit event not posted: %s", exc.reason)


class AuditLoop:
    """Runs ``auditor`` on a thread: now, on ``trigger()``, every ``interval``, at expiries."""

    def __init__(
        self,
        auditor: Auditor,
        *,
        interval: dt.timedelta = AUDIT_INTERVAL,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.auditor = auditor
        self.interval = interval
        self.is_leader = is_leader
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def trigger(self) -> None:
        """Run a pass soon (a new policy revision arrived)."""
        self._wake.set()

    def next_wait(self) -> float:
        """Seconds until the next pass: the interval, or sooner at an exception's expiry."""
        wait = self.interval
        policy = self.auditor.policy()
        if policy is not None:
            now = self.auditor.clock()
            expiry = policy.next_expiry(now)
            if expiry is not None:
                wait = min(wait, expiry - now)
        return max(wait.total_seconds(), 0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.is_leader():
                try:
                    self.auditor.run_once()
                except Exception:
                    logger.exception("audit pass failed")
            self._wake.wait(self.next_wait())
            self._wake.clear()

    def start(self) -> AuditLoop:
        """Start the thread."""
        self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the current pass."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

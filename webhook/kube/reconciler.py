"""The Reconciler: keeps the cluster equal to ``desired_state(policy, namespaces)``.

sample-controller's shape: informers (the policy ConfigMap, Namespaces, and every managed kind
selected by the managed label) mark the state dirty; one worker computes the desired objects
(pure, ``webhook.core.desired``), compares them with the informer caches, applies what differs
and deletes managed objects nobody wants any more.  A managed object someone deletes comes
back on the watch event that reports it, typically well under a second.

The plan is made on ``policy.at(now)``: the exceptions live at that instant grant routing, and a
pass is scheduled at the next exception's expiry instant so the routing it added is pruned then,
not at the next resync.  The leader also runs the background audit (``AuditLoop``), once on
every new policy revision and periodically; ``reconciler_wiring`` builds both from an API client.

Only the Lease holder writes, and it re-checks leadership before every write.  A policy that
does not validate never reaches the worker: the store keeps the last good one and the watch
records an Event on the ConfigMap.  Failed writes are retried with backoff; an object in a
namespace that is gone or terminating is skipped until the namespace informer says otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from webhook.core.desired import NamespaceInfo, generate
from webhook.core.policy import Policy
from webhook.kube.applying import Writer, converge, plan_changes
from webhook.kube.auditing import (
    AuditLoop,
    Clock,
    utc_now,
)
from webhook.kube.client import Kind, kind_of
from webhook.kube.collaborators import Elector, Metrics, Watch, WatchedPolicySource
from webhook.kube.probing import Heartbeat, ProbeResult, liveness, readiness
from webhook.policy_runtime import PolicyStore, ReloadResult

logger = logging.getLogger(__name__)

APPLIED_BY_ANNOTATION = "egress-guard.io/applied-by"
RESYNC_SECONDS = 60.0
MAX_BACKOFF = 30.0
# /healthz fails after this many resync periods without a turn of the reconcile loop (it turns
# every quarter second while idle), and never sooner than a backoff wait could last twice
STALE_RESYNCS = 3
EXPIRY_MARGIN = 0.01


@dataclass(slots=True)
class SyncResult:
    """What one reconcile pass did."""

    applied: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: bool = False


def _label(manifest: Mapping[str, Any]) -> str:
    meta = manifest.get("metadata") or {}
    return f"{manifest.get('kind')} {meta.get('namespace')}/{meta.get('name')}"


def namespace_infos(namespaces: Sequence[Mapping[str, Any]]) -> list[NamespaceInfo]:
    """Namespace objects as the generator needs them."""
    infos = []
    for ns in namespaces:
        meta = ns.get("metadata") or {}
        phase = (ns.get("status") or {}).get("phase")
        terminating = bool(meta.get("deletionTimestamp")) or phase == "Terminating"
        infos.append(NamespaceInfo(str(meta.get("name")), terminating))
    return infos


def with_identity(manifest: Mapping[str, Any], identity: str) -> dict[str, Any]:
    """The manifest annotated with the replica that wrote it (who acted, for operators)."""
    out = dict(manifest)
    meta = dict(out["metadata"])
    meta["annotations"] = {**(meta.get("annotations") or {}), APPLIED_BY_ANNOTATION: identity}
    out["metadata"] = meta
    return out


class Reconciler:
    """Keeps the managed objects equal to the policy's; ``run`` blocks until ``stop`` is set.

    Its collaborators come in built (sample-controller's ``NewController``): the policy store and
    the source feeding it, the Namespace and managed-kind caches, the elector and the writer.
    ``new_reconciler`` wires the real ones; tests hand in caches held in memory.
    """

    def __init__(
        self,
        *,
        store: PolicyStore,
        policy_source: WatchedPolicySource,
        namespaces: Watch,
        managed: Mapping[Kind, Watch],
        elector: Elector,
        writer: Writer,
        identity: str,
        metrics: Metrics | None = None,
        resync: float = RESYNC_SECONDS,
        stale_after: float | None = None,
        heartbeat: Heartbeat | None = None,
        audit: AuditLoop | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.identity = identity
        self.audit = audit
        self.clock = clock
        self.metrics = metrics or Metrics()
        self.resync = resync
        self.stale_after = stale_after or max(STALE_RESYNCS * resync, 2 * MAX_BACKOFF)
        self.heartbeat = heartbeat or Heartbeat()
        self.store = store
        self.policy_source = policy_source
        self.namespaces = namespaces
        self.managed = dict(managed)
        self.elector = elector
        self.writer = writer
        self._dirty = threading.Event()
        self._warned_revision = ""
        self.last_result: SyncResult | None = None
        store.subscribe(self._on_policy)
        namespaces.add_handler(self._changed)
        for informer in self.managed.values():
            informer.add_handler(self._changed)
        elector.subscribe(
            on_started=self._on_leading, on_stopped=lambda: self.metrics.leader.set(0)
        )

    # --- triggers -------------------------------------------------------------------------

    def trigger(self) -> None:
        """Ask the worker for a reconcile pass (coalesced)."""
        self._dirty.set()

    def _changed(self, kind: str, obj: Mapping[str, Any]) -> None:
        del kind, obj
        self.trigger()

    def _on_leading(self) -> None:
        self.metrics.leader.set(1)
        self.trigger()

    def _on_policy(self, result: ReloadResult) -> None:
        self.metrics.policy_loads.labels("ok" if result.ok else "rejected").inc()
        self.metrics.policy_source_up.set(1 if self.store.source_up else 0)
        if result.ok:
            self.trigger()
            if self.audit is not None:
                self.audit.trigger()

    # --- running --------------------------------------------------------------------------

    def start_watches(self) -> None:
        """Start the informers and the policy source."""
        self.policy_source.start(self.store)
        self.namespaces.start()
        for informer in self.managed.values():
            informer.start()

    def run(self, stop: threading.Event) -> None:
        """Watch, elect and reconcile until ``stop`` is set; release the lease on the way out."""
        self.start_watches()
        self.elector.start()
        if self.audit is not None:
            self.audit.start()
        backoff = 0.0
        try:
            while not stop.is_set():
                self._wait_for_work(stop)
                if stop.is_set():
                    break
                self._dirty.clear()
                result = self.sync()
                if result.failed:
                    # back off, then retry even without a new event
                    backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF)
                    stop.wait(backoff)
                    self._dirty.set()
                else:
                    backoff = 0.0
        finally:
            if self.audit is not None:
                self.audit.stop()
            self.elector.stop(release=True)
            self.policy_source.stop()
            self.namespaces.stop()
            for informer in self.managed.values():
                informer.stop()

    def _wait_for_work(self, stop: threading.Event) -> None:
        # short slices so a stop request is seen quickly; the resync deadline bounds the wait,
        # and so does the next exception expiry, whose routing must go at that instant
        deadline = time.monotonic() + self.next_wait()
        self.heartbeat.beat()
        while not stop.is_set() and not self._dirty.wait(0.25):
            self.heartbeat.beat()
            if time.monotonic() >= deadline:
                return

    def next_wait(self) -> float:
        """Seconds until the next pass is due: the resync period, or sooner at an expiry."""
        policy = self.current_policy()
        expiry = policy.next_expiry(self.clock()) if policy is not None else None
        if expiry is None:
            return self.resync
        # a hair past the instant, so the pass judges the exception as ended
        until = (expiry - self.clock()).total_seconds() + EXPIRY_MARGIN
        return max(min(self.resync, until), 0.0)

    # --- probes ---------------------------------------------------------------------------

    def _watches(self) -> dict[str, Watch | WatchedPolicySource]:
        return {
            "policy": self.policy_source,
            "namespaces": self.namespaces,
            **{kind.plural: informer for kind, informer in self.managed.items()},
        }

    def liveness(self) -> ProbeResult:
        """/healthz: the reconcile loop turns and no watch or election thread died."""
        dead = [name for name, informer in self._watches().items() if informer.failed]
        if self.elector.failed:
            dead.append("leader-election")
        return liveness(heartbeat_age=self.heartbeat.age(), stale_after=self.stale_after, dead=dead)

    def readiness(self) -> ProbeResult:
        """/readyz: every cache has loaded its first list (the policy may still be missing)."""
        unsynced = [name for name, informer in self._watches().items() if not informer.synced]
        policy = self.current_policy()
        return readiness(
            unsynced=unsynced,
            leader=self.elector.is_leader(),
            policy_revision=policy.revision if policy is not None else None,
        )

    def current_policy(self) -> Policy | None:
        """The last good policy, if any."""
        loaded = self.store.current
        return loaded.policy if loaded is not None else None

    def sync(self) -> SyncResult:
        """One reconcile pass: apply what differs, delete what is no longer desired."""
        policy = self.current_policy()
        if policy is None or not self.elector.is_leader() or not self.namespaces.synced:
            return SyncResult(skipped=True)
        started = time.monotonic()
        infos = namespace_infos(self.namespaces.items())
        policy = policy.at(self.clock())
        wanted = generate(policy, infos)
        if policy.revision != self._warned_revision:
            self._warned_revision = policy.revision
            for warning in wanted.warnings:
                logger.warning("policy warning", extra={"fields": {"warning": warning}})
        desired = [with_identity(m, self.identity) for m in wanted.manifests]
        self.metrics.managed.set(len(desired))
        result = self._converge(desired, infos)
        self.metrics.duration.observe(time.monotonic() - started)
        self.metrics.syncs.labels("error" if result.failed else "ok").inc()
        if result.applied or result.deleted or result.failed:
            logger.info(
                "reconciled",
                extra={
                    "fields": {
                        "revision": policy.revision,
                        "identity": self.identity,
                        "applied": result.applied,
                        "deleted": result.deleted,
                        "failed": result.failed,
                        "seconds": round(time.monotonic() - started, 3),
                    }
                },
            )
        self.last_result = result
        return result

    def _converge(self, desired: list[dict[str, Any]], infos: list[NamespaceInfo]) -> SyncResult:
        result = SyncResult()
        writable = {n.name for n in infos if not n.terminating}
        # prune only kinds whose cache is complete: an unsynced cache would look empty
        actual = [obj for inf in self.managed.values() if inf.synced for obj in inf.items()]
        synced_kinds = {k.kind for k, inf in self.managed.items() if inf.synced}
        known = {n.name for n in infos}
        actual = [obj for obj in actual if (obj.get("metadata") or {}).get("namespace") in known]
        to_apply, to_delete = plan_changes(desired, actual)
        for manifest in to_apply:
            if not self._still_leading(result):
                return result
            if (manifest.get("metadata") or {}).get("namespace") not in writable:
                continue
            self._write(result, manifest, "apply", partial(converge, self.writer, manifest))
        for obj in to_delete:
            if not self._still_leading(result):
                return result
            if kind_of(obj).kind not in synced_kinds:
                continue
            self._write(result, obj, "delete", partial(self.writer.delete, obj))
        return result

    def _still_leading(self, result: SyncResult) -> bool:
        """Checked before every write: a replica that lost the lease stops mid-pass."""
        self.heartbeat.beat()  # progress: only a write that hangs stalls the loop
        if self.elector.is_leader():
            return True
        result.skipped = True
        return False

    def _write(
        self, result: SyncResult, obj: Mapping[str, Any], action: str, write: Callable[[], Any]
    ) -> None:
        """One write; a failure is recorded and logged, and the pass goes on with the rest."""
        try:
            write()
        except Exception as exc:
            result.failed.append(_label(obj))
            logger.warning(
                f"{action} failed",
                extra={"fields": {"object": _label(obj), "error": repr(exc)[:300]}},
            )
            return
        (result.applied if action == "apply" else result.deleted).append(_label(obj))
        self.metrics.writes.labels(obj["kind"], action).inc()

"""Leader election on a coordination.k8s.io/v1 Lease, so several Reconciler replicas can run.

Why not ``kubernetes.leaderelection``: it uses the library's global client, cannot be stopped or
asked "am I still leader?", and never releases the lease on shutdown.  This is the client-go
algorithm, small: the holder renews every ``renew_period``; a candidate takes the lease only
when the holder has not renewed for ``lease_duration`` *as measured on the candidate's own
clock* (so clock skew between replicas does not matter); every write carries the Lease's
resourceVersion, so two candidates racing for it cannot both win.  A leader that cannot renew
within ``renew_deadline`` stops acting before any other replica may take over.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from kubernetes import client

from webhook.kube.client import is_status

logger = logging.getLogger(__name__)

LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RENEW_PERIOD = 5.0
RETRY_PERIOD = 2.0


def _now() -> dt.datetime:
    stamp = dt.datetime.now(dt.UTC)
    # MicroTime needs the fraction; isoformat() drops it when it is exactly zero
    return stamp if stamp.microsecond else stamp.replace(microsecond=1)


class LeaseElector:
    """Competes for one Lease; ``is_leader`` says whether acting is safe right now."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = LEASE_DURATION,
        renew_deadline: float = RENEW_DEADLINE,
        renew_period: float = RENEW_PERIOD,
        retry_period: float = RETRY_PERIOD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not renew_period < renew_deadline < lease_duration:
            raise ValueError("need renew_period < renew_deadline < lease_duration")
        self.api = client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.renew_period = renew_period
        self.retry_period = retry_period
        self._on_started: list[Callable[[], None]] = []
        self._on_stopped: list[Callable[[], None]] = []
        self._clock = clock
        self._observed: tuple[str, str] | None = None
        self._observed_at = 0.0
        self._renewed_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.transitions = 0

    def subscribe(
        self,
        *,
        on_started: Callable[[], None] | None = None,
        on_stopped: Callable[[], None] | None = None,
    ) -> None:
        """Call ``on_started`` when this replica starts leading, ``on_stopped`` when it stops."""
        if on_started is not None:
            self._on_started.append(on_started)
        if on_stopped is not None:
            self._on_stopped.append(on_stopped)

    def is_leader(self) -> bool:
        """True while this replica holds the lease and renewed it within the renew deadline."""
        renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.renew_deadline

    @property
    def failed(self) -> bool:
        """True when the election thread ended without being asked to stop."""
        thread = self._thread
        return thread is not None and not thread.is_alive() and not self._stop.is_set()

    def start(self) -> LeaseElector:
        """Run the election loop in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name="leader-election", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, release: bool = True) -> None:
        """Stop competing; hand the lease back at once if held (unless ``release`` is False)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.retry_period + 5)
        if release and self.is_leader():
            self._release()
        self._lose()

    def run(self) -> None:
        """Acquire or renew until stopped."""
        while not self._stop.is_set():
            try:
                ok = self.try_acquire_or_renew()
            except Exception as exc:  # API down: keep trying; is_leader() expires by itself
                logger.warning("lease update failed", extra={"fields": {"error": repr(exc)[:300]}})
                ok = False
            if ok and self._renewed_at is not None:
                self._stop.wait(self.renew_period)
                continue
            if not self.is_leader():
                self._lose()
            self._stop.wait(self.retry_period)

    def try_acquire_or_renew(self) -> bool:
        """One round of the algorithm; True when this replica holds the lease afterwards."""
        now = self._clock()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except client.ApiException as exc:
            if not is_status(exc, 404):
                raise
            return self._create()
        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity or ""
        record = (holder, str(spec.renew_time))
        if record != self._observed:
            self._observed = record
            self._observed_at = now
        duration = float(spec.lease_duration_seconds or self.lease_duration)
        if holder and holder != self.identity and now - self._observed_at < duration:
            if self._renewed_at is not None:
                self._lose()
            return False
        stamp = _now()
        if holder != self.identity:
            spec.acquire_time = stamp
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = int(self.lease_duration)
        spec.renew_time = stamp
        lease.spec = spec
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except client.ApiException as exc:
            if is_status(exc, 409):  # someone else wrote first: they win this round
                return False
            raise
        self._won(now)
        return True

    def _create(self) -> bool:
        stamp = _now()
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=int(self.lease_duration),
                acquire_time=stamp,
                renew_time=stamp,
                lease_transitions=0,
            ),
        )
        now = self._clock()
        try:
            self.api.create_namespaced_lease(self.namespace, body)
        except client.ApiException as exc:
            if is_status(exc, 409):
                return False
            raise
        self._won(now)
        return True

    def _won(self, at: float) -> None:
        first = self._renewed_at is None
        self._renewed_at = at
        if first:
            self.transitions += 1
            logger.info("became leader", extra={"fields": {"identity": self.identity}})
            for callback in self._on_started:
                callback()

    def _lose(self) -> None:
        if self._renewed_at is None:
            return
        self._renewed_at = None
        logger.info("stopped leading", extra={"fields": {"identity": self.identity}})
        for callback in self._on_stopped:
            callback()

    def _release(self) -> None:
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = _now()
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except client.ApiException as exc:
            logger.warning("lease release failed", extra={"fields": {"error": repr(exc)[:300]}})

    def holder(self) -> str:
        """The identity currently written in the Lease ('' when free or absent)."""
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except client.ApiException as exc:
            if is_status(exc, 404):
                return ""
            raise
        return str((lease.spec and lease.spec.holder_identity) or "")

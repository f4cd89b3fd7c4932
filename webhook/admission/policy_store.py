"""The policy the webhook decides with, and the sources that feed it new versions.

A policy edit is compiled by the source's thread, never on a request: requests read one
reference (``PolicyStore.current``) and a finished compile replaces it in one assignment, so a
review is decided wholly by the old policy or wholly by the new one.  A broken edit never
replaces the last good policy; it is logged and counted, and ``/readyz`` stays green as long as
some good policy is loaded.

Sources are pluggable through ``PolicySource``: anything that, once started, hands YAML text to
the store's ``update``.  This module has the file source (mtime polling, for ``--policy FILE``
and mounted ConfigMaps) and a fixed-text source (the embedded default policy); the ConfigMap
watch lives in ``webhook.kube`` and is adapted by ``ConfigMapPolicySource``.
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

from webhook.core.errors import PolicyError
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy

logger = logging.getLogger(__name__)

EMBEDDED_POLICY = "banzai-demo.yaml"


def embedded_policy_text(name: str = EMBEDDED_POLICY) -> str:
    """The text of a policy shipped inside the package (``webhook/data``)."""
    return resources.files("webhook").joinpath("data", name).read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class LoadedPolicy:
    """A compiled policy with where it came from and when it was swapped in."""

    policy: Policy
    origin: str
    loaded_at: float

    @property
    def revision(self) -> str:
        """The policy's content hash."""
        return self.policy.revision


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What happened to one policy update."""

    ok: bool
    origin: str
    # the revision in force after the update (the old one when the update failed)
    revision: str
    changed: bool = False
    problems: tuple[str, ...] = ()


class PolicySink(Protocol):
    """Where a source sends what it reads: new policy text, or a failure to read it."""

    def update(self, text: str | bytes, *, origin: str) -> ReloadResult:
        """Compile ``text`` and swap it in, or keep the last good policy."""
        ...

    def fail(self, origin: str, problem: str) -> ReloadResult:
        """Record that the source could not be read; the policy in force stays."""
        ...


class PolicySource(Protocol):
    """Something that produces policy text: a file, a ConfigMap, a fixed document."""

    def start(self, sink: PolicySink) -> None:
        """Deliver the current policy to ``sink`` now, then every change until ``stop``."""
        ...

    def stop(self) -> None:
        """Stop watching; idempotent."""
        ...


Compiler = Callable[[str | bytes, str], Policy]


def _compile(text: str | bytes, origin: str) -> Policy:
    return parse_policy(text, name=origin)


class PolicyStore:
    """Holds the current compiled policy; ``update`` compiles and swaps, keeping the last good."""

    def __init__(
        self,
        *,
        compiler: Compiler = _compile,
        listeners: tuple[Callable[[ReloadResult], None], ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._compiler = compiler
        self._listeners = list(listeners)
        self._clock = clock
        self._lock = threading.Lock()
        self._current: LoadedPolicy | None = None
        self.last_result: ReloadResult | None = None
        # whether the source last delivered text (good or not) rather than a failure to read it
        self.source_up = False

    @property
    def current(self) -> LoadedPolicy | None:
        """The policy in force, or None if no good policy was ever loaded."""
        return self._current

    @property
    def ready(self) -> bool:
        """True once a good policy is loaded."""
        return self._current is not None

    def subscribe(self, listener: Callable[[ReloadResult], None]) -> None:
        """Call ``listener`` after every update attempt (metrics, logs)."""
        self._listeners.append(listener)

    def update(self, text: str | bytes, *, origin: str) -> ReloadResult:
        """Compile ``text``; swap it in if good, else keep the last good policy."""
        # one compile at a time: two sources racing must not swap in an older policy last
        with self._lock:
            before = self._current
            old_revision = before.revision if before else ""
            try:
                policy = self._compiler(text, origin)
            except PolicyError as exc:
                result = ReloadResult(
                    False, origin, old_revision, problems=tuple(str(p) for p in exc.problems)
                )
            else:
                changed = before is None or policy.revision != old_revision
                if changed or before is None or before.origin != origin:
                    self._current = LoadedPolicy(policy, origin, self._clock())
                result = ReloadResult(True, origin, policy.revision, changed=changed)
            self.last_result = result
            was_up, self.source_up = self.source_up, True
        if not was_up and before is not None:
            logger.warning("policy source available again", extra={"fields": {"origin": origin}})
        self._log(result)
        for listener in self._listeners:
            listener(result)
        return result

    def fail(self, origin: str, problem: str) -> ReloadResult:
        """Record a source-side failure (unreadable file, API error) without touching the policy."""
        current = self._current
        result = ReloadResult(
            False, origin, current.revision if current else "", problems=(problem,)
        )
        self.last_result = result
        self.source_up = False
        logger.error(
            "policy source unavailable; keeping the last good policy"
            if current
            else "policy source unavailable; no good policy loaded, denying every governed request",
            extra={"fields": {"origin": origin, "revision": result.revision, "problem": problem}},
        )
        for listener in self._listeners:
            listener(result)
        return result

    @staticmethod
    def _log(result: ReloadResult) -> None:
        fields = {"origin": result.origin, "revision": result.revision}
        if result.ok:
            if result.changed:
                logger.info("policy loaded", extra={"fields": fields})
            return
        logger.error(
            "policy rejected; keeping the last good policy"
            if result.revision
            else "policy rejected; no good policy loaded, denying every governed request",
            extra={"fields": {**fields, "problems": list(result.problems)}},
        )


class StaticPolicySource:
    """A fixed policy text, delivered once (the embedded default policy, tests)."""

    def __init__(self, text: str, *, origin: str) -> None:
        self.text = text
        self.origin = origin

    def start(self, sink: PolicySink) -> None:
        """Deliver the text."""
        sink.update(self.text, origin=self.origin)

    def stop(self) -> None:
        """Nothing to stop."""


def _file_stamp(path: Path) -> tuple[int, int, int]:
    st = path.stat()  # follows the ..data symlink Kubernetes swaps when a ConfigMap changes
    return (st.st_mtime_ns, st.st_ino, st.st_size)


class FilePolicySource:
    """A policy file polled for changes (also a ConfigMap mounted as a volume).

    Polling the metadata every ``interval`` seconds is a stat call; it works on every filesystem
    and for the symlink swaps of Kubernetes volumes, where inotify on the file itself misses the
    change.
    """

    def __init__(self, path: Path, *, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self.origin = f"file:{path}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stamp: tuple[int, int, int] | None = None

    def poll(self, sink: PolicySink) -> bool:
        """Deliver the file if it changed since the last poll; True when it was delivered."""
        try:
            stamp = _file_stamp(self.path)
            if stamp == self._stamp:
                return False
            text = self.path.read_bytes()
        except OSError as exc:
            if self._stamp != (-1, -1, -1):
                # report a vanished or unreadable file once, not every interval
                self._stamp = (-1, -1, -1)
                sink.fail(self.origin, f"cannot read the policy file: {exc}")
            return False
        self._stamp = stamp
        sink.update(text, origin=self.origin)
        return True

    def start(self, sink: PolicySink) -> None:
        """Load the file now, then poll it from a daemon thread."""
        self.poll(sink)
        self._thread = threading.Thread(
            target=self._run, args=(sink,), name="policy-file-watch", daemon=True
        )
        self._thread.start()

    def _run(self, sink: PolicySink) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll(sink)
            except Exception:  # the watcher must outlive any surprise; the next poll retries
                logger.exception("policy file poll failed")

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)


class SourceUnavailableError(RuntimeError):
    """A policy source cannot be used in this installation (e.g. the Kubernetes adapter)."""


WatchFunction = Callable[..., None]


def _configmap_watcher() -> WatchFunction:
    try:
        module = importlib.import_module("webhook.kube.policy_watch")
    except ImportError as exc:
        raise SourceUnavailableError(
            "--policy-configmap needs webhook.kube.policy_watch, which is not available "
            f"in this build ({exc}); use --policy FILE with the ConfigMap mounted as a volume"
        ) from exc
    watch = getattr(module, "watch_policy_configmap", None)
    if not callable(watch):
        raise SourceUnavailableError(
            "webhook.kube.policy_watch has no watch_policy_configmap(); "
            "use --policy FILE with the ConfigMap mounted as a volume"
        )
    return watch  # type: ignore[no-any-return]


class ConfigMapPolicySource:
    """The policy ConfigMap watched through the Kubernetes API (``webhook.kube``).

    Expects ``webhook.kube.policy_watch.watch_policy_configmap(namespace, name, *, kubeconfig,
    sink, stop)`` that blocks until the ``stop`` event is set, calling
    ``sink.update(text, origin=...)`` with the ConfigMap's data (the whole manifest or its
    ``policy.yaml``: ``parse_policy`` takes both) at start and on every change, and
    ``sink.fail(origin, problem)`` when the ConfigMap is missing or the API is unreachable.
    """

    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        kubeconfig: Path | None = None,
        initial_timeout: float = 30.0,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.kubeconfig = kubeconfig
        self.initial_timeout = initial_timeout
        self.origin = f"configmap:{namespace}/{name}"
        self._watch = _configmap_watcher()  # fail at construction, before serving
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, sink: PolicySink) -> None:
        """Start the watch thread and wait (bounded) for the first delivery."""
        first = threading.Event()

        class _FirstDelivery:
            """Passes everything on and notes that the watch has said something."""

            def update(self, text: str | bytes, *, origin: str) -> ReloadResult:
                try:
                    return sink.update(text, origin=origin)
                finally:
                    first.set()

            def fail(self, origin: str, problem: str) -> ReloadResult:
                try:
                    return sink.fail(origin, problem)
                finally:
                    first.set()

        def run() -> None:
            try:
                self._watch(
                    self.namespace,
                    self.name,
                    kubeconfig=str(self.kubeconfig) if self.kubeconfig else None,
                    sink=_FirstDelivery(),
                    stop=self._stop,
                )
            except Exception as exc:
                sink.fail(self.origin, f"the ConfigMap watch ended: {exc!r}")
                logger.exception("policy ConfigMap watch ended")
            finally:
                first.set()

        self._thread = threading.Thread(target=run, name="policy-configmap-watch", daemon=True)
        self._thread.start()
        # not fatal: the service answers with /readyz failing until a policy arrives
        first.wait(self.initial_timeout)

    def stop(self) -> None:
        """Ask the watch to end."""
        self._stop.set()

"""Where policy text comes from: a small protocol, a fixed text, and a polled file.

A source, once started, hands every new version of the policy text to a ``PolicySink`` (the
store) until it is stopped.  The ConfigMap watch implements the same protocol in
``webhook.kube.policy_watch``; the CLI picks a source and hands it in.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Protocol

from webhook.policy_runtime.store import PolicySink

logger = logging.getLogger(__name__)


class PolicySource(Protocol):
    """Something that produces policy text: a file, a ConfigMap, a fixed document."""

    def start(self, sink: PolicySink) -> None:
        """Deliver the current policy to ``sink`` now, then every change until ``stop``."""
        ...

    def stop(self) -> None:
        """Stop watching; idempotent."""
        ...


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

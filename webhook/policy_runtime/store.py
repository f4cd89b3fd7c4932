"""The compiled policy in force, swapped atomically, with the last good one kept.

A policy edit is compiled by the source's thread, never on a request: requests read one
reference (``PolicyStore.current``) and a finished compile replaces it in one assignment, so a
review is decided wholly by the old policy or wholly by the new one.  A broken edit never
replaces the last good policy; it is logged and counted, and readiness stays green as long as
some good policy is loaded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from webhook.core.errors import PolicyError
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy

logger = logging.getLogger(__name__)


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

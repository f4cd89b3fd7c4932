"""The compiled policy in force, swapped atomically, with the last good one kept.

A policy edit is compiled by the source's thread, never on a request: requests read one
reference (``PolicyStore.current``) and a finished compile replaces it in one assignment, so a
review is decided wholly by the old policy or wholly by the new one.  A broken edit never
replaces the last good policy; it is logged and counted, and readiness stays green as long as
some good policy is loaded.

A policy edit is compiled twice in one worker: first by the ConfigMap admission webhook, which
validates the proposed text before the API server stores it, then by the ConfigMap watch once
the write lands.  At 100,000 hosts each compile takes about 0.4 s, so the store keeps the last
few compiled policies by the digest of their text (``compile_proposed`` fills it, ``update``
reads it) and the watch swaps in what the webhook already built.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import logging
import threading
import time
from collections import OrderedDict
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


def text_digest(text: str | bytes) -> str:
    """The SHA-256 of a policy text (str as UTF-8): same text, same compiled policy."""
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


class CompiledPolicies:
    """The last ``size`` policies compiled in this process, by the digest of their text.

    Small on purpose: it only bridges the admission webhook's compile of an edit and the watch's
    delivery of the same edit a few milliseconds later.  One entry is enough for that, and it
    is either the policy in force (no extra memory) or one proposed edit (about 30 MiB of
    worker memory at 100,000 hosts), never a history.
    """

    def __init__(self, size: int = 1) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._policies: OrderedDict[str, Policy] = OrderedDict()
        self.hits = 0

    def get(self, digest: str) -> Policy | None:
        """The policy compiled from the text with ``digest``, if still remembered."""
        with self._lock:
            policy = self._policies.get(digest)
            if policy is not None:
                self._policies.move_to_end(digest)
                self.hits += 1
            return policy

    def put(self, digest: str, policy: Policy) -> None:
        """Remember ``policy`` as compiled from the text with ``digest``."""
        if self.size <= 0:
            return
        with self._lock:
            self._policies[digest] = policy
            self._policies.move_to_end(digest)
            while len(self._policies) > self.size:
                self._policies.popitem(last=False)


class PolicyStore:
    """Holds the current compiled policy; ``update`` compiles and swaps, keeping the last good."""

    def __init__(
        self,
        *,
        compiler: Compiler = _compile,
        listeners: tuple[Callable[[ReloadResult], None], ...] = (),
        clock: Callable[[], float] = time.time,
        compiled: CompiledPolicies | None = None,
    ) -> None:
        self._compiler = compiler
        self.compiled = compiled if compiled is not None else CompiledPolicies()
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
                policy = self._compiled(text, origin)
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

    def _compiled(self, text: str | bytes, origin: str) -> Policy:
        digest = text_digest(text)
        known = self.compiled.get(digest)
        if known is None:
            policy = self._compiler(text, origin)
            self.compiled.put(digest, policy)
            return policy
        if known.name == origin:
            return known
        # same text, named after where it came from; indexes are shared, not rebuilt
        renamed = copy.copy(known)
        object.__setattr__(renamed, "name", origin)
        return renamed

    def compile_proposed(self, text: str | bytes, name: str, now: dt.datetime) -> Policy:
        """Compile a proposed policy as the admission webhook validates it, and remember it.

        Always compiled (with ``now``: exception lengths are checked, which ``update`` does not
        do), so a remembered policy passed at least the checks ``update`` makes.
        """
        policy = parse_policy(text, name=name, now=now)
        self.compiled.put(text_digest(text), policy)
        return policy

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

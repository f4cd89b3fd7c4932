"""A bounded cache of validation decisions for reviews the webhook has already answered.

GitOps controllers (Argo CD's server-side diff dry-runs, Flux) and ``kubectl apply`` retries send
the same object again and again; a VirtualService with a dozen routes costs far more to decide
than to hash, so identical reviews are answered from an LRU of ``Decision`` values.

The key holds everything a decision reads (``webhook.core.engine.decide`` and its checks): the
policy revision (a content hash, so a policy swap simply stops old entries from matching and the
LRU evicts them), operation, group, version, kind, namespace, name, subresource, user, groups, and
a 128-bit BLAKE2b digest of the object and of the old object.  Left out, because no check reads
them: the review's uid and ``dryRun`` (the caller builds each response, with its own uid, from the
cached decision), and the bookkeeping the API server writes into ``metadata`` (``uid``,
``creationTimestamp``, ``resourceVersion``, ``generation``, ``managedFields``, ``selfLink``).  A
CREATE is validated after the API server has stamped a fresh uid and timestamp on the object, so
without that a dry-run create and the create that follows, or two retries, would never match;
and ``managedFields`` is often most of an object's bytes.  ``tests/unit/test_decision_cache.py``
fails if code under ``webhook/core`` starts reading any of those fields.

Which reviews are worth a digest is the caller's choice (``admits``).  The server admits
``likely_repeated`` ones: UPDATEs and dry-runs (GitOps diffs, apply retries, controllers
resubmitting) and VirtualServices, whose decision costs far more than their digest.  A plain
CREATE is almost always a new object, as the API server stamps a fresh uid on it, so hashing it
costs more than the cache ever gives back (measured in tests/bench/bench_service.py).  The
review handler also leaves out bodies of a mebibyte or more: their digest costs milliseconds each
time, and such objects are rarely sent twice.

Decisions that read the cluster view (the Sidecar check asks which Sidecars already exist, the
endpoint checks which addresses the egress namespace holds) are tied to the view's
``generation``, which the informer-fed view bumps on every event: such an entry is a hit only
while the generation is the one read *before* deciding, so a Sidecar or gateway pod created or
deleted meanwhile can never be answered from a stale entry.  A view without a generation makes
those decisions uncacheable.  Whether a decision read the view is recorded per call rather than
inferred from its kind, so a future check that consults the view is covered without a list to
keep in sync; every view method must be overridden in ``_Recording`` for that (its
``__getattr__`` would forward a new one unrecorded).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cachetools import LRUCache

from webhook.core.checks import REGISTRY, ClusterView, EmptyView
from webhook.core.decisions import Decision
from webhook.core.engine import decide
from webhook.core.exemptions import exemption
from webhook.core.policy import Policy
from webhook.core.reviews import Review
from webhook.settings import DEFAULT_DECISION_CACHE_SIZE

DIGEST_BYTES = 16
# written by the API server, read by no check (see the module docstring)
IGNORED_METADATA = frozenset(
    ("uid", "creationTimestamp", "resourceVersion", "generation", "managedFields", "selfLink")
)

Key = tuple[Any, ...]
Decider = Callable[..., Decision]
OnLookup = Callable[[bool], None]


def digest(obj: Mapping[str, Any] | None) -> bytes:
    """128-bit BLAKE2b of an object's JSON without the API server's bookkeeping; empty for None.

    No key sorting: the decoded mapping keeps the order the API server wrote, which is stable for
    a stored object, and an order change can only cost a miss, never a wrong hit (the JSON text
    still determines the value exactly).  Sorting would cost a third more per review (measured).
    Meant for values decoded from JSON: orjson would write a NaN or infinity as ``null``.
    """
    if obj is None:
        return b""
    meta = obj.get("metadata")
    if isinstance(meta, Mapping) and not IGNORED_METADATA.isdisjoint(meta):
        # same key order, so the stripped object of a resubmission is byte-identical
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k not in IGNORED_METADATA}}
    return hashlib.blake2b(orjson.dumps(obj), digest_size=DIGEST_BYTES).digest()


def cache_key(review: Review, revision: str) -> Key:
    """Everything the decision on ``review`` under policy ``revision`` depends on."""
    return (
        revision,
        review.operation,
        review.group,
        review.version,
        review.kind,
        review.namespace,
        review.name,
        review.sub_resource,
        review.username,
        review.groups,
        digest(review.object),
        digest(review.old_object),
    )


# kinds whose decision costs many times their digest even when seen once (measured)
COSTLY_KINDS = frozenset({("networking.istio.io", "VirtualService")})


def likely_repeated(review: Review) -> bool:
    """Reviews that tend to come again unchanged, or that cost far more to decide than to hash."""
    return (
        review.operation == "UPDATE"
        or review.dry_run
        or (review.group, review.kind) in COSTLY_KINDS
    )


def every_review(review: Review) -> bool:
    """Admit every review to the cache."""
    del review
    return True


def view_generation(view: ClusterView) -> int | None:
    """The view's change counter; 0 for a view that never changes; None when it has none."""
    if isinstance(view, EmptyView):
        return 0
    generation = getattr(view, "generation", None)
    # bool is an int, but a flag is no counter
    return generation if type(generation) is int else None


class _Recording:
    """A ``ClusterView`` that notes whether a decision consulted it."""

    __slots__ = ("consulted", "view")

    def __init__(self, view: ClusterView) -> None:
        self.view = view
        self.consulted = False

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        """The wrapped view's Sidecars, noting the read."""
        self.consulted = True
        return self.view.sidecars(namespace)

    def namespace_addresses(self, namespace: str) -> Collection[str] | None:
        """The wrapped view's addresses of ``namespace``, noting the read."""
        self.consulted = True
        return self.view.namespace_addresses(namespace)

    def __getattr__(self, name: str) -> Any:
        # checks ask what kind of view they read (a watch that is synced, say): answer as the
        # wrapped view would, so the recording changes nothing but the bookkeeping
        return getattr(self.view, name)


@dataclass(frozen=True, slots=True)
class _Entry:
    decision: Decision
    # the view generation the decision was made at; None when it never read the view
    generation: int | None


class DecisionCache:
    """Thread-safe LRU of decisions; ``size`` 0 turns it into a plain call to ``decide``."""

    def __init__(
        self,
        view: ClusterView,
        *,
        size: int = DEFAULT_DECISION_CACHE_SIZE,
        on_lookup: OnLookup | None = None,
        decider: Decider = decide,
        admits: Callable[[Review], bool] = every_review,
    ) -> None:
        if size < 0:
            raise ValueError("the decision cache size must be 0 (off) or more")
        self.view = view
        self.size = size
        self._decide = decider
        self._on_lookup = on_lookup
        self._admits = admits
        self._entries: LRUCache[Key, _Entry] = LRUCache(maxsize=max(size, 1))
        # LRUCache reorders itself on every read, so reads need the lock too
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def worth_caching(self, review: Review, policy: Policy) -> bool:
        """False for reviews the engine answers before any check (cheaper than their key)."""
        # a hint only: guessing wrong costs a hash or a miss, never a wrong answer
        return (
            self.size > 0
            and self._admits(review)
            # a policy built without a revision cannot tell itself from another one
            and bool(policy.revision)
            and (review.group, review.kind) in REGISTRY
            and exemption(review, policy) is None
        )

    def decide(
        self, review: Review, policy: Policy, *, cacheable: bool = True
    ) -> tuple[Decision, bool | None]:
        """The decision on ``review`` and whether it was a hit (None: not cacheable).

        ``cacheable`` False (the caller knows the review is too large to be worth its digest)
        decides it uncached.
        """
        if not cacheable or not self.worth_caching(review, policy):
            return self._decide(review, policy, view=self.view), None
        try:
            key = cache_key(review, policy.revision)
        except orjson.JSONEncodeError:
            # not JSON (an integer past 64 bits from YAML, say): decide it, uncached
            return self._decide(review, policy, view=self.view), None
        # read before deciding: an event landing mid-decision must make the entry stale
        generation = view_generation(self.view)
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry.generation in (None, generation):
            self._count(hit=True)
            return entry.decision, True
        self._count(hit=False)
        recording = _Recording(self.view)
        decision = self._decide(review, policy, view=recording)
        if not recording.consulted:
            stored = _Entry(decision, None)
        elif generation is not None:
            stored = _Entry(decision, generation)
        else:
            return decision, False
        with self._lock:
            self._entries[key] = stored
        return decision, False

    def _count(self, *, hit: bool) -> None:
        if self._on_lookup is not None:
            self._on_lookup(hit)

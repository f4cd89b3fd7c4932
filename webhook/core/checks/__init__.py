"""The per-kind checks, registered by (API group, kind).

Each check is a pure function ``(review, policy, view) -> iterable of Violation``; the engine picks
the one registered for the review's kind.  Importing this package registers nothing: each check
module registers itself when imported, and ``webhook.core.checks.registered`` (which the engine
imports) imports them all, so the registry is complete wherever ``decide`` can be called.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from webhook.core.decisions import Violation
from webhook.core.policy import Policy
from webhook.core.reviews import Review


class ClusterView(Protocol):
    """What some checks need to know about objects already in the cluster.

    Istio picks one Sidecar per workload by age and selector, so whether a new Sidecar is
    ambiguous depends on the others; the Kubernetes adapter answers from an informer cache, the
    CLI from the manifests it was given.
    """

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        """Sidecar objects currently in ``namespace``."""
        ...


class EmptyView:
    """A cluster with nothing in it (offline checks, unit tests)."""

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        """No Sidecars anywhere."""
        del namespace
        return ()


Check = Callable[[Review, Policy, ClusterView], Iterable[Violation]]
REGISTRY: dict[tuple[str, str], Check] = {}


def checks(group: str, *kinds: str) -> Callable[[Check], Check]:
    """Register a check for the given API group and kinds."""

    def register(func: Check) -> Check:
        for kind in kinds:
            REGISTRY[(group, kind)] = func
        return func

    return register

"""The per-kind checks, registered by (API group, kind).

Each check is a pure function ``(review, policy, view) -> iterable of Violation``; the engine picks
the one registered for the review's kind.  Importing this package registers nothing: each check
module registers itself when imported, and ``webhook.core.checks.registered`` (which the engine
imports) imports them all, so the registry is complete wherever ``decide`` can be called.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from webhook.core.decisions import Violation
from webhook.core.policy import Policy
from webhook.core.reviews import Review


class ClusterView(Protocol):
    """What some checks need to know about objects already in the cluster.

    Istio picks one Sidecar per workload by age and selector, so whether a new Sidecar is
    ambiguous depends on the others; and a tenant destination at an address of the egress
    namespace reaches an egress gateway past the routes that guard it.  The Kubernetes adapter
    answers from informer caches, the CLI from the manifests it was given.
    """

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        """Sidecar objects currently in ``namespace``."""
        ...

    def namespace_addresses(self, namespace: str) -> Collection[str] | None:
        """The IP addresses the Pods (``status.podIPs``) and Services (``spec.clusterIPs``) of
        ``namespace`` hold now; None when the view cannot tell (it does not watch them, or its
        watch has not listed them yet)."""
        ...


class EmptyView:
    """A cluster with nothing in it (offline checks, unit tests)."""

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        """No Sidecars anywhere."""
        del namespace
        return ()

    def namespace_addresses(self, namespace: str) -> Collection[str] | None:
        """Unknown: nothing is watched."""
        del namespace
        return None


Check = Callable[[Review, Policy, ClusterView], Iterable[Violation]]
REGISTRY: dict[tuple[str, str], Check] = {}
WRITES: tuple[str, ...] = ("CREATE", "UPDATE", "DELETE")


@dataclass(frozen=True, slots=True)
class Interception:
    """What the API server must send for one checked kind: resources and operations.

    ``resources`` are REST names, ``pods/exec`` for a subresource; the admission registration
    is derived from these, so a check cannot exist without its kind reaching the webhook.
    """

    group: str
    kind: str
    resources: tuple[str, ...]
    operations: tuple[str, ...]


INTERCEPTIONS: dict[tuple[str, str], Interception] = {}


def checks(
    group: str,
    *kinds: str,
    resource: str | None = None,
    subresources: tuple[str, ...] = (),
    operations: tuple[str, ...] = WRITES,
) -> Callable[[Check], Check]:
    """Register a check for the given API group and kinds.

    ``resource`` names the REST resource when it is not the kind's plural (``pods/exec`` for
    ``PodExecOptions``); ``subresources`` are judged under the same check.
    """

    def register(func: Check) -> Check:
        for kind in kinds:
            REGISTRY[(group, kind)] = func
            base = resource or plural(kind)
            INTERCEPTIONS[(group, kind)] = Interception(
                group,
                kind,
                (base, *(f"{base}/{sub}" for sub in subresources)),
                operations,
            )
        return func

    return register


# kinds whose REST name is not the regular plural of the kind
_IRREGULAR_PLURALS = {"Endpoints": "endpoints"}


def plural(kind: str) -> str:
    """The REST resource name of a kind, as Kubernetes' own pluralizer writes it."""
    if kind in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[kind]
    name = kind.lower()
    if name.endswith("y") and name[-2:-1] not in tuple("aeiou"):
        return name[:-1] + "ies"
    if name.endswith(("s", "x", "z", "ch", "sh")):
        return name + "es"
    return name + "s"

"""A ``ClusterView`` read off a set of objects: the manifests ``check`` is given, or everything an
audit pass lists.

An audit judges objects admitted long ago against the cluster as it is now.  A tenant
ServiceEntry endpoint or WorkloadEntry admitted at a free address becomes an alias of the egress
gateway once a gateway pod or Service takes that address, and only a view of the egress
namespace's current Pods and Services tells.  The same listing feeds the Sidecar checks, so two
selector-less Sidecars of one namespace are reported too.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.core.checks.egress_addresses import object_addresses
from webhook.core.reviews import Review

ISTIO_NETWORKING = "networking.istio.io"


@dataclass(frozen=True, slots=True)
class ListedView:
    """The Sidecars of each namespace and the addresses its Pods and Services hold, among the
    objects listed."""

    by_namespace: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    addresses: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        """Sidecars among the objects, in ``namespace``."""
        return self.by_namespace.get(namespace, ())

    def namespace_addresses(self, namespace: str) -> Collection[str] | None:
        """Addresses of the Pods and Services among the objects, in ``namespace``; unknown (the
        rule is skipped) when the objects hold none of them."""
        return self.addresses.get(namespace)


def listed_view(reviews: Iterable[Review]) -> ListedView:
    """The view the objects of ``reviews`` describe; objects being deleted are not in it."""
    sidecars: dict[str, list[Mapping[str, Any]]] = {}
    addresses: dict[str, set[str]] = {}
    for review in reviews:
        obj = review.object
        if obj is None or review.operation == "DELETE":
            continue
        if review.kind == "Sidecar" and review.group == ISTIO_NETWORKING:
            sidecars.setdefault(review.namespace, []).append(obj)
        elif review.kind in ("Pod", "Service") and not review.group:
            addresses.setdefault(review.namespace, set()).update(object_addresses(obj))
    return ListedView(sidecars, {ns: frozenset(found) for ns, found in addresses.items()})

"""CEL ``matchConditions`` that let the API server skip UPDATEs no check could judge differently.

Most admission traffic in a live cluster is UPDATEs that cannot change egress: scaling, rollout
bookkeeping, controllers' annotations on ReplicaSets, finalizers, status-like metadata.  The
validating webhook sees such an UPDATE only to allow it (or to repeat a verdict the unchanged
object already had), at the price of a TLS round trip.  A matchCondition costs the API server
about 0.1 ms and answers "do not call" for them.

What each check reads is listed here, per kind, as paths from the object's root (``READS``); the
engine adds ``metadata.labels`` for every kind (the managed-object label).  An UPDATE is sent to
the webhook when any of those paths differs between ``object`` and ``oldObject`` (presence
included); every other operation, and every kind without a read set, is always sent.
``tests/unit/test_match_conditions.py`` proves the read sets against the real engine: any change
outside them leaves ``decide`` unchanged, and the CEL says "call" exactly when a read path
changed.

The registration (what the webhooks intercept) calls ``match_conditions(kinds)`` for the kinds a
webhook covers; the API server allows at most 64 conditions per webhook, and this is one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

import webhook.core.checks.registered  # noqa: F401  (fills the registry)
from webhook.core.checks import REGISTRY
from webhook.core.checks.services import CONTROL_PLANE_USERS
from webhook.core.policy import MANAGED_LABEL

Path = tuple[str, ...]
Kind = tuple[str, str]  # (API group, kind)

MANAGED_LABELS: Path = ("metadata", "labels")
# pod templates: a Deployment's replicas, revision annotations and status never reach a check
TEMPLATE_READS: tuple[Path, ...] = (("spec", "template"), MANAGED_LABELS)
CRONJOB_READS: tuple[Path, ...] = (("spec", "jobTemplate"), MANAGED_LABELS)
POD_READS: tuple[Path, ...] = (("spec",), MANAGED_LABELS, ("metadata", "annotations"))
NAMESPACE_READS: tuple[Path, ...] = (MANAGED_LABELS,)
# Istio and Gateway API objects: the spec, plus annotations for the checks that read them
SPEC_READS: tuple[Path, ...] = (("spec",), MANAGED_LABELS, ("metadata", "annotations"))
# a Service's status (load balancer addresses) is judged through services/status
SERVICE_READS: tuple[Path, ...] = (*SPEC_READS, ("status",))
ENDPOINTS_READS: tuple[Path, ...] = (("subsets",), MANAGED_LABELS)
ENDPOINT_SLICE_READS: tuple[Path, ...] = (
    ("addressType",),
    ("endpoints",),
    ("ports",),
    MANAGED_LABELS,
)

READS: Mapping[Kind, tuple[Path, ...]] = {
    **{
        kind: TEMPLATE_READS
        for kind in (
            ("apps", "Deployment"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("apps", "ReplicaSet"),
            ("", "ReplicationController"),
            ("batch", "Job"),
        )
    },
    ("batch", "CronJob"): CRONJOB_READS,
    ("", "Pod"): POD_READS,
    ("", "Namespace"): NAMESPACE_READS,
    ("", "Service"): SERVICE_READS,
    ("", "Endpoints"): ENDPOINTS_READS,
    ("discovery.k8s.io", "EndpointSlice"): ENDPOINT_SLICE_READS,
    **{
        ("networking.istio.io", kind): SPEC_READS
        for kind in (
            "ServiceEntry",
            "Sidecar",
            "VirtualService",
            "DestinationRule",
            "Gateway",
            "EnvoyFilter",
            "WorkloadEntry",
            "WorkloadGroup",
        )
    },
    **{("extensions.istio.io", kind): SPEC_READS for kind in ("WasmPlugin", "TrafficExtension")},
    **{
        ("gateway.networking.k8s.io", kind): SPEC_READS
        for kind in (
            "Gateway",
            "ListenerSet",
            "HTTPRoute",
            "GRPCRoute",
            "TCPRoute",
            "TLSRoute",
            "UDPRoute",
        )
    },
    ("gateway.networking.x-k8s.io", "XListenerSet"): SPEC_READS,
}

# kinds whose check answers nothing for these users, whatever the operation
SKIPPED_USERS: Mapping[Kind, frozenset[str]] = {
    ("", "Endpoints"): CONTROL_PLANE_USERS,
    ("discovery.k8s.io", "EndpointSlice"): CONTROL_PLANE_USERS,
}

CONDITION_NAME = "egress-guard-reads-changed"


class MatchCondition(TypedDict):
    """One ``matchConditions`` entry of a webhook registration."""

    name: str
    expression: str


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _present(root: str, path: Path) -> str:
    # has() on each level: selecting an absent field is an error in CEL, and an error in a
    # condition makes the API server apply the failure policy
    return " && ".join(f"has({root}.{'.'.join(path[: i + 1])})" for i in range(len(path)))


def changed(path: Path) -> str:
    """CEL: ``path`` differs between object and oldObject (appearing or vanishing counts)."""
    new, old = _present("object", path), _present("oldObject", path)
    a, b = "object." + ".".join(path), "oldObject." + ".".join(path)
    # values of different types (a map and null, say) are compared by type first: not every CEL
    # runtime defines == across types
    differs = f"(type({a}) != type({b}) || {a} != {b})"
    return f"(({new}) != ({old}) || (({new}) && {differs}))"


def _kind_key(kind: Kind) -> str:
    return f"{kind[0]}/{kind[1]}"


def expression(kinds: Iterable[Kind]) -> str:
    """The CEL of the one condition for a webhook covering ``kinds``: true means "call it"."""
    by_reads: dict[tuple[Path, ...], list[str]] = {}
    users: dict[frozenset[str], list[str]] = {}
    for kind in sorted(set(kinds)):
        reads = READS.get(kind)
        if reads is not None:
            by_reads.setdefault(reads, []).append(_kind_key(kind))
        skipped = SKIPPED_USERS.get(kind)
        if skipped:
            users.setdefault(skipped, []).append(_kind_key(kind))
    key = "(request.kind.group + '/' + request.kind.kind)"
    # paths every covered kind reads are tested once, ahead of the per-kind ones
    common = set.intersection(*(set(r) for r in by_reads)) if by_reads else set()
    # a kind without a read set is always called on UPDATE
    update = "true"
    for reads, members in reversed(list(by_reads.items())):
        names = ", ".join(_quote(m) for m in members)
        own = [path for path in reads if path not in common]
        test = " || ".join(changed(path) for path in own) or "false"
        update = f"({key} in [{names}] ? ({test}) : {update})"
    shared = [changed(path) for path in sorted(common)]
    # a generated object is the controller's alone: every UPDATE of one is judged, bookkeeping
    # (finalizers, owner references) included
    managed = (
        f"(has(oldObject.metadata.labels) && {_quote(MANAGED_LABEL)} in oldObject.metadata.labels)"
    )
    call = " || ".join(["request.operation != 'UPDATE'", managed, *shared, update])
    for skipped, members in users.items():
        names = ", ".join(_quote(m) for m in members)
        people = ", ".join(_quote(u) for u in sorted(skipped))
        call = f"!({key} in [{names}] && request.userInfo.username in [{people}]) && ({call})"
    return call


def governed_kinds() -> list[Kind]:
    """Every (group, kind) a check is registered for."""
    return sorted(REGISTRY)


def match_conditions(kinds: Iterable[Kind] | None = None) -> list[MatchCondition]:
    """The ``matchConditions`` of a validating webhook that intercepts ``kinds`` (default: all)."""
    covered = governed_kinds() if kinds is None else kinds
    return [{"name": CONDITION_NAME, "expression": expression(covered)}]


def read_paths(kind: Kind) -> tuple[Path, ...] | None:
    """What the checks of ``kind`` read, None when it is not known (always called)."""
    return READS.get(kind)


def reads_changed(kind: Kind, new: Any, old: Any) -> bool:
    """Python twin of ``changed`` over the read set, for tests and tools."""
    reads = READS.get(kind)
    if reads is None:
        return True
    labels = _get(old, MANAGED_LABELS)
    if isinstance(labels, Mapping) and MANAGED_LABEL in labels:
        return True
    return any(_get(new, path) != _get(old, path) for path in reads)


_ABSENT = object()


def _get(obj: Any, path: Path) -> Any:
    for key in path:
        if not isinstance(obj, Mapping) or key not in obj:
            return _ABSENT
        obj = obj[key]
    return obj

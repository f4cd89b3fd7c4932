"""Invariants a Pod must meet when it is created in an enforced namespace.

Listing the ways a pod can miss its sidecar (an ``istio.io/rev`` no injector serves, webhook
ordering, an injector outage with ``failurePolicy: Ignore``...) never ends.  Validating webhooks
run after every mutating webhook, injection included, so the result can be checked instead of
the causes: the Pod must carry the injected proxy, as a container or as a native sidecar init
container, together with the injector's ``sidecar.istio.io/status`` annotation naming it.

The proxy enforces the allow list only once it has its Sidecar resource: a pod started before
the namespace's default-deny Sidecar exists runs under the mesh default (``ALLOW_ANY`` unless
MeshConfig says otherwise) until the next push.  A webhook that watches Sidecars can refuse such
Pods; the controller creating them retries with backoff, so users never see the wait.  Views
that do not watch the cluster (offline ``check``, unit tests) cannot tell and skip that
invariant.

Pod templates are left alone: injection happens when the Pod is created.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice, repeat
from typing import Any, Protocol, runtime_checkable

from webhook.core.checks import ClusterView
from webhook.core.checks.common import Reader, many
from webhook.core.checks.istiod_gateways import gateway_name
from webhook.core.decisions import Violation
from webhook.core.reviews import Review

PROXY = "istio-proxy"
STATUS = "sidecar.istio.io/status"
REGISTRY_ONLY = "REGISTRY_ONLY"
# names the injector gives its containers (enable-core-dump only with the enableCoreDump option)
INJECTED_CONTAINERS = frozenset({PROXY, "istio-init", "istio-validation", "enable-core-dump"})


@runtime_checkable
class WatchedView(Protocol):
    """A cluster view fed by a watch, which can tell that a Sidecar does not exist."""

    @property
    def synced(self) -> bool:
        """True once the cache holds a full list."""
        ...

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        """Sidecar objects currently in ``namespace``."""
        ...


def pod_invariants(review: Review, view: ClusterView) -> list[Violation]:
    """Violations of the injected-proxy and Sidecar-first invariants by a Pod CREATE."""
    if review.kind != "Pod" or review.operation != "CREATE" or review.sub_resource:
        return []
    obj = review.object
    if not isinstance(obj, Mapping) or is_istiod_gateway_pod(obj):
        # a gateway proxy routes on its own config and is never captured: nothing to inject
        return []
    found = []
    missing = missing_proxy(obj)
    if missing:
        found.append(Violation("spec.containers", missing))
    if isinstance(view, WatchedView):
        waiting = sidecar_missing(view, review.namespace)
        if waiting:
            found.append(Violation("", waiting))
    return found


def missing_proxy(pod: Mapping[str, Any]) -> str | None:
    """Why a Pod does not carry the injected proxy; None when it does."""
    reader = Reader()
    spec = reader.mapping(pod.get("spec"), "spec")
    meta = reader.mapping(pod.get("metadata"), "metadata")
    annotations = reader.labels(meta.get("annotations"), "metadata.annotations") or {}
    inits = spec.get("initContainers")
    as_container = PROXY in container_names(spec.get("containers"))
    # a native sidecar: an init container that keeps running (Kubernetes 1.29+)
    as_native = PROXY in container_names(inits) and any(
        c.get("name") == PROXY and c.get("restartPolicy") == "Always"
        for _, c in reader.mappings(inits, "")
    )
    if not (as_container or as_native):
        return (
            f"the pod carries no {PROXY!r} container, so its traffic meets no proxy and the "
            "egress allow list does not apply; Istio's injector did not run for it (check the "
            "namespace's istio-injection or istio.io/rev label names a served revision), "
            "then recreate the pod"
        )
    injected = status_names(annotations.get(STATUS))
    if PROXY not in injected:
        return (
            f"the {PROXY!r} container was not added by Istio's injector (no {STATUS} "
            "annotation naming it), so nothing sets up the iptables capture that hands the "
            "pod's traffic to it; let the injector add the proxy"
        )
    return None


def is_istiod_gateway_pod(pod: Mapping[str, Any]) -> bool:
    """A Pod of a Gateway API Gateway deployed by istiod: its labels, and the proxy alone.

    istiod renders these with injection off and the ``istio-proxy`` container written out, so
    no injector status names it.  Only istiod and Kubernetes' controllers may write objects
    carrying those labels (``istiod_gateways.authorship_violations``), and the Gateway's own
    fields that reach the Deployment are judged (``gatewayapi.check_gateway``).
    """
    meta = pod.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    spec = pod.get("spec")
    return (
        isinstance(labels, Mapping)
        and gateway_name(labels) is not None
        and isinstance(spec, Mapping)
        and proxy_alone(spec)
    )


def proxy_alone(spec: Mapping[str, Any]) -> bool:
    """The pod runs the proxy alone: one container, ``istio-proxy``, and injected init ones."""
    # two names tell that it is not alone, however many containers there are
    alone = list(islice(container_names(spec.get("containers")), 2)) == [PROXY]
    return alone and all(
        map(INJECTED_CONTAINERS.__contains__, container_names(spec.get("initContainers")))
    )


def container_names(value: Any) -> Iterable[Any]:
    """The ``name`` of each object of a container list (none when it is not a list).

    A long list of objects only is read in C: a pod can carry tens of thousands of containers.
    """
    if type(value) is list and many(value) and set(map(type, value)) == {dict}:
        return map(dict.get, value, repeat("name"))
    return (container.get("name") for _, container in Reader().mappings(value, ""))


def status_names(
    raw: str | None, keys: tuple[str, ...] = ("containers", "initContainers")
) -> frozenset[str]:
    """Names the injector's status annotation lists under ``keys`` (empty when unreadable):
    its containers by default, or its ``volumes``."""
    if not raw:
        return frozenset()
    try:
        status = json.loads(raw)
    except ValueError:
        return frozenset()
    if not isinstance(status, Mapping):
        return frozenset()
    names: set[str] = set()
    for key in keys:
        value = status.get(key)
        if isinstance(value, list):
            names.update(v for v in value if isinstance(v, str))
    return frozenset(names)


def sidecar_missing(view: WatchedView, namespace: str) -> str | None:
    """Why a Pod must wait for the namespace's default-deny Sidecar; None when it exists."""
    # read the Sidecars first, also when not synced: a cached decision is then tied to the
    # view's state and goes stale with it
    sidecars = view.sidecars(namespace)
    if view.synced and any(is_default_deny(s) for s in sidecars):
        return None
    return (
        f"namespace {namespace} has no default-deny Sidecar yet (egress-guard's controller "
        "creates it within a second of the namespace); a pod started now would run under the "
        "mesh default, which may let all traffic out: retry shortly (controllers retry on "
        "their own)"
    )


def is_default_deny(sidecar: Mapping[str, Any]) -> bool:
    """A namespace-wide Sidecar (no selector) that keeps ``REGISTRY_ONLY``."""
    spec = sidecar.get("spec")
    if not isinstance(spec, Mapping) or spec.get("workloadSelector"):
        return False
    policy = spec.get("outboundTrafficPolicy")
    mode = policy.get("mode") if isinstance(policy, Mapping) else None
    return mode == REGISTRY_ONLY

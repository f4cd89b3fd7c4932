"""The Istio and Kubernetes objects an egress policy stands for, computed without a cluster.

The Banzai post wished for a tool that takes the applications, the external services and the
allowed connections and creates every Istio resource; this module is the pure half of that wish.
``generate`` turns a checked ``Policy`` and the namespaces that exist into fully formed manifests
(plus warnings about what Istio cannot express), in a deterministic order, so the Reconciler,
``egress-guard render`` and the tests all see the same truth.

What is generated, and why (see docs/istio-semantics.md for the Istio facts relied on):

In every enforced namespace N:
- Sidecar ``egress-guard-default`` (no selector): REGISTRY_ONLY, importing ``./*``,
  ``istio-system/*`` and the hosts (plus egress-gateway Services) of every service N may reach
  whatever the workload labels.  Nothing merges in Istio, so:
- one Sidecar per distinct workload-label set of the rules, importing every service a pod with
  those labels may reach (rules whose labels are a subset count too).  Label sets that can match
  one pod without one containing the other also get a Sidecar for their union, so the pod that
  carries both gets both.  Istio then picks the *oldest* matching selector Sidecar, so the list
  orders more specific Sidecars first and the Reconciler creates them in that order.
- VirtualService ``egress-guard-<service>`` per allowed service (exportTo ``.``): leg 1 of the
  two-leg egress pattern, sidecar -> egress gateway, over Istio mTLS.  Rules narrowed by workload
  labels add ``sourceLabels`` so only those pods get the route even though ``./*`` imports the
  VirtualService into every Sidecar of the namespace.
- optionally NetworkPolicy ``egress-guard-egress``: egress only to DNS, istiod, the egress
  gateways and the namespace itself (the answer to "what if the sidecar is bypassed").

In the egress namespace E, per external service S:
- ServiceEntry ``egress-guard-<S>`` (exact hosts, ``resolution: DNS``; with NONE the gateway
  would forward to its own address), ``egress-guard-<S>-wildcard`` for wildcard hosts
  (``DYNAMIC_DNS``, Istio 1.30+), one per host when plain TCP ports and several hosts meet
  (Istio rejects that combination), and ``egress-guard-<S>-origination`` (and ``-wildcard``)
  exported to E only for a TLS origination port that the application may not use itself.  These
  repeat the service's ports: Istio does not merge same-host entries whose exportTo differs, and
  the gateway keeps the namespace-private one.
- VirtualService ``egress-guard-<S>-gateway-<i>`` per host: leg 2, gateway -> the host.
- DestinationRule ``egress-guard-<S>-tls-<i>`` per host when the gateway originates TLS.

Per egress gateway G: Gateway ``<G>`` (the name ``Policy`` routes refer to) with each service's
``ISTIO_MUTUAL`` servers (the gateway terminates the mesh mTLS and so learns the client's
identity), one per host on TLS ports because the gateway tells hosts apart by the SNI of that
mTLS hop; wildcard TLS hosts use ``PASSTHROUGH``, since no fixed SNI can stand for them.
DestinationRule ``egress-guard-<G>`` (one subset per service host that
sets the mTLS SNI), AuthorizationPolicy ``egress-guard-<G>`` (ALLOW: only the allowed sources'
identities, per SNI) and Telemetry ``egress-guard-<G>`` (access logs on the gateway).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.desired.egress import egress_namespace_objects, service_warnings
from webhook.core.desired.manifests import (
    DEFAULT_SIDECAR,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    NETWORK_POLICY,
    NETWORKING,
    PREFIX,
    REVISION_ANNOTATION,
    SECURITY,
    TELEMETRY,
    Manifest,
)
from webhook.core.desired.tenants import tenant_namespace_objects
from webhook.core.policy import MANAGED_LABEL, Policy

__all__ = [
    "DEFAULT_SIDECAR",
    "KIND_ORDER",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "NETWORK_POLICY",
    "PREFIX",
    "REVISION_ANNOTATION",
    "DesiredObjects",
    "Manifest",
    "NamespaceInfo",
    "desired_state",
    "enforced_namespaces",
    "generate",
    "object_key",
]

# apply order: what others refer to first; Sidecars before the routes that need their imports
KIND_ORDER: tuple[tuple[str, str], ...] = (
    (NETWORKING, "ServiceEntry"),
    (NETWORKING, "DestinationRule"),
    (NETWORKING, "Gateway"),
    (NETWORKING, "VirtualService"),
    (SECURITY, "AuthorizationPolicy"),
    (TELEMETRY, "Telemetry"),
    (NETWORKING, "Sidecar"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
)


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    """A namespace as the generator needs it: its name, and whether it is being deleted."""

    name: str
    # the API server refuses new objects in a terminating namespace
    terminating: bool = False


@dataclass(frozen=True, slots=True)
class DesiredObjects:
    """The desired objects, in apply order, and what the policy asks that Istio cannot do."""

    manifests: tuple[Manifest, ...]
    warnings: tuple[str, ...] = ()


def desired_state(policy: Policy, namespaces: Iterable[NamespaceInfo | str]) -> list[Manifest]:
    """Every object the Reconciler keeps for ``policy`` given the namespaces that exist."""
    return list(generate(policy, namespaces).manifests)


def generate(policy: Policy, namespaces: Iterable[NamespaceInfo | str]) -> DesiredObjects:
    """Desired manifests in apply order, plus warnings about what cannot be expressed."""
    infos = sorted(
        {(ns if isinstance(ns, NamespaceInfo) else NamespaceInfo(ns)) for ns in namespaces},
        key=lambda n: n.name,
    )
    present = {n.name for n in infos if not n.terminating}
    warnings: list[str] = list(service_warnings(policy))
    manifests: list[Manifest] = []
    if policy.egress_namespace in present:
        manifests.extend(egress_namespace_objects(policy))
    for name in sorted(present):
        if policy.is_excluded(name) or policy.is_egress_namespace(name):
            continue
        objects, notes = tenant_namespace_objects(policy, name)
        manifests.extend(objects)
        warnings.extend(notes)
    stamped = [_stamp(m, policy) for m in manifests]
    return DesiredObjects(tuple(sorted(stamped, key=_order_key)), tuple(warnings))


def enforced_namespaces(policy: Policy, namespaces: Iterable[str]) -> list[str]:
    """The namespaces that get a default-deny Sidecar: not excluded, not the egress namespace."""
    return sorted(
        n
        for n in set(namespaces)
        if not policy.is_excluded(n) and not policy.is_egress_namespace(n)
    )


def object_key(manifest: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """``(apiVersion, kind, namespace, name)``: how the Reconciler matches desired to actual."""
    meta = manifest.get("metadata") or {}
    return (
        str(manifest.get("apiVersion", "")),
        str(manifest.get("kind", "")),
        str(meta.get("namespace", "")),
        str(meta.get("name", "")),
    )


def _order_key(manifest: Manifest) -> tuple[int, str, int, str]:
    api_kind = (manifest["apiVersion"], manifest["kind"])
    rank = KIND_ORDER.index(api_kind) if api_kind in KIND_ORDER else len(KIND_ORDER)
    meta = manifest["metadata"]
    # Istio gives a pod the *oldest* selector Sidecar matching it: create the most specific first
    selector = (manifest.get("spec") or {}).get("workloadSelector") or {}
    specificity = -len(selector.get("labels") or {}) if manifest["kind"] == "Sidecar" else 0
    return rank, meta["namespace"], specificity, meta["name"]


def _stamp(manifest: Manifest, policy: Policy) -> Manifest:
    meta = manifest["metadata"]
    labels = {MANAGED_LABEL: "true", MANAGED_BY_LABEL: MANAGED_BY, **meta.pop("labels", {})}
    meta["labels"] = dict(sorted(labels.items()))
    meta["annotations"] = {REVISION_ANNOTATION: policy.revision}
    return manifest

"""The objects of each enforced tenant namespace: leg 1, from the sidecar to the egress gateway.

A default-deny Sidecar for the namespace and one per distinct workload-label set of the rules
(with their unions, since Istio merges no Sidecars), a VirtualService per allowed service sending
its traffic to the egress gateway over mTLS (``sourceLabels`` when rules are narrowed by labels),
and optionally a NetworkPolicy for the case where the sidecar is bypassed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from webhook.core.checks.common import selectors_may_overlap
from webhook.core.desired.manifests import (
    DEFAULT_SIDECAR,
    MESH_NAMESPACE,
    NETWORK_POLICY,
    NETWORKING,
    Manifest,
    Names,
    meta,
    port_kind,
    tcp_host,
)
from webhook.core.naming import gateway_subset, tenant_route_name
from webhook.core.policy import REGISTRY_ONLY, AllowRule, ExternalService, Policy, Port, Workloads

# above this many distinct label sets in one namespace the union closure is skipped (warned)
MAX_LABEL_SETS = 64

LabelSet = frozenset[tuple[str, str]]


def _label_sets(rules: Sequence[AllowRule]) -> list[LabelSet]:
    return sorted(
        {frozenset(r.source.workload_labels.items()) for r in rules if r.source.workload_labels},
        key=lambda s: (len(s), sorted(s)),
    )


def _union_closure(sets: list[LabelSet]) -> tuple[list[LabelSet], list[str]]:
    closed = set(sets)
    if len(sets) > MAX_LABEL_SETS:
        return sets, [f"{len(sets)} workload label sets: overlapping ones are not combined"]
    frontier = list(closed)
    while frontier:
        added = []
        for a in frontier:
            for b in list(closed):
                u = a | b
                if (
                    u not in closed
                    and selectors_may_overlap(dict(a), dict(b))
                    and len(closed) < MAX_LABEL_SETS * 4
                ):
                    closed.add(u)
                    added.append(u)
        frontier = added
    return sorted(closed, key=lambda s: (len(s), sorted(s))), []


def tenant_namespace_objects(policy: Policy, namespace: str) -> tuple[list[Manifest], list[str]]:
    """The objects of one enforced namespace, and warnings about label sets not combined."""
    rules = policy.rules_for_namespace(namespace)
    names = Names({DEFAULT_SIDECAR})
    objects: list[Manifest] = [
        _sidecar(policy, namespace, DEFAULT_SIDECAR, None),
    ]
    base_sets = _label_sets(rules)
    label_sets, notes = _union_closure(base_sets)
    for labels in label_sets:
        owners = [r.name for r in rules if frozenset(r.source.workload_labels.items()) == labels]
        if not owners:
            # a synthesized union: named after the rules whose labels it joins
            owners = [
                r.name
                for r in rules
                if r.source.workload_labels
                and frozenset(r.source.workload_labels.items()) <= labels
            ]
        name = names.take(*dict.fromkeys(owners))
        objects.append(_sidecar(policy, namespace, name, dict(sorted(labels))))
    notes = [f"namespace {namespace}: {n}" for n in notes]
    allowed = policy.allowed_for_some(namespace)
    for svc_name in sorted(allowed):
        objects.append(_tenant_route(policy, namespace, policy.services[svc_name], rules))
    if policy.network_policies:
        objects.append(_network_policy(policy, namespace, allowed))
    return objects, notes


def _imports(policy: Policy, services: Iterable[str]) -> list[str]:
    egress_ns = policy.egress_namespace
    hosts: list[str] = []
    gateways: list[str] = []
    for name in sorted(services):
        svc = policy.services[name]
        hosts.extend(f"{egress_ns}/{h}" for h in svc.hosts)
        gateways.append(f"{svc.gateway.namespace}/{svc.gateway.fqdn}")
    return list(dict.fromkeys(hosts + sorted(set(gateways))))


def _sidecar(
    policy: Policy, namespace: str, name: str, selector: Mapping[str, str] | None
) -> Manifest:
    services = policy.allowed_for(Workloads(namespace, selector))
    base = ["./*"]
    if policy.egress_namespace != MESH_NAMESPACE:
        # istio-system/* would import every external ServiceEntry if it were the egress namespace
        base.append(f"{MESH_NAMESPACE}/*")
    spec: dict[str, Any] = {}
    if selector:
        spec["workloadSelector"] = {"labels": dict(selector)}
    spec["egress"] = [{"hosts": base + _imports(policy, services)}]
    spec["outboundTrafficPolicy"] = {"mode": REGISTRY_ONLY}
    return {
        "apiVersion": NETWORKING,
        "kind": "Sidecar",
        "metadata": meta(name, namespace),
        "spec": spec,
    }


def _source_label_sets(rules: Sequence[AllowRule], service: str) -> list[dict[str, str]] | None:
    """Minimal label sets of the rules allowing ``service``; None when some rule has none."""
    sets = [frozenset(r.source.workload_labels.items()) for r in rules if service in r.services]
    if any(not s for s in sets):
        return None
    minimal = {s for s in sets if not any(o < s for o in sets)}
    return [dict(sorted(s)) for s in sorted(minimal, key=lambda s: (len(s), sorted(s)))]


def _tenant_route(
    policy: Policy, namespace: str, svc: ExternalService, rules: Sequence[AllowRule]
) -> Manifest:
    sources = _source_label_sets(rules, svc.name)
    gateway = svc.gateway.fqdn

    def matches(base: dict[str, Any]) -> list[dict[str, Any]]:
        if sources is None:
            return [base]
        # fresh dicts: shared ones would come out of yaml.safe_dump as anchors and aliases
        return [{**base, "sourceLabels": dict(labels)} for labels in sources]

    first = gateway_subset(svc, 0)
    http, tls, tcp = [], [], []
    for port in svc.ports:
        kind = port_kind(port)
        if kind == "http":
            http.append(_multi_route(matches({"port": port.number}), gateway, port, first))
        elif kind == "tls":
            for i, host in enumerate(svc.hosts):
                found = matches({"port": port.number, "sniHosts": [host]})
                tls.append(_multi_route(found, gateway, port, gateway_subset(svc, i)))
        elif tcp_host(svc) is not None:
            tcp.append(_multi_route(matches({"port": port.number}), gateway, port, first))
    spec: dict[str, Any] = {"hosts": list(svc.hosts), "exportTo": ["."]}
    for key, routes in (("http", http), ("tls", tls), ("tcp", tcp)):
        if routes:
            spec[key] = routes
    return {
        "apiVersion": NETWORKING,
        "kind": "VirtualService",
        "metadata": meta(tenant_route_name(svc.name), namespace, svc.name),
        "spec": spec,
    }


def _multi_route(
    matches: list[dict[str, Any]], gateway: str, port: Port, subset: str
) -> dict[str, Any]:
    destination = {"host": gateway, "subset": subset, "port": {"number": port.number}}
    return {"match": matches, "route": [{"destination": destination}]}


def _network_policy(policy: Policy, namespace: str, allowed: Iterable[str]) -> Manifest:
    egress: list[dict[str, Any]] = [
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                    },
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }
            ],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
        {
            "to": [
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": MESH_NAMESPACE}
                    },
                    "podSelector": {"matchLabels": {"app": "istiod"}},
                }
            ],
            # xDS and certificates over mTLS
            "ports": [{"protocol": "TCP", "port": 15012}],
        },
    ]
    selectors: dict[str, Mapping[str, str]] = {}
    for name in sorted(allowed):
        gw = policy.services[name].gateway
        selectors.setdefault(repr(sorted(gw.selector.items())), gw.selector)
    for _, selector in sorted(selectors.items()):
        egress.append(
            {
                "to": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": policy.egress_namespace}
                        },
                        "podSelector": {"matchLabels": dict(selector)},
                    }
                ]
            }
        )
    egress.append({"to": [{"podSelector": {}}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta(NETWORK_POLICY, namespace),
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": egress},
    }

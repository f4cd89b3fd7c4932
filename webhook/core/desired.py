"""The Istio and Kubernetes objects an egress policy stands for, computed without a cluster.

The Banzai post wished for a tool that takes the applications, the external services and the
allowed connections and creates every Istio resource; this module is the pure half of that wish.
``plan`` turns a checked ``Policy`` and the namespaces that exist into fully formed manifests
(plus warnings about what Istio cannot express), in a deterministic order, so the controller,
``egress-guard render`` and the tests all see the same truth.

What is generated, and why (see ISTIO-SEMANTICS.md for the Istio facts relied on):

In every enforced namespace N:
- Sidecar ``egress-guard-default`` (no selector): REGISTRY_ONLY, importing ``./*``,
  ``istio-system/*`` and the hosts (plus egress-gateway Services) of every service N may reach
  whatever the workload labels.  Nothing merges in Istio, so:
- one Sidecar per distinct workload-label set of the rules, importing every service a pod with
  those labels may reach (rules whose labels are a subset count too).  Label sets that can match
  one pod without one containing the other also get a Sidecar for their union, so the pod that
  carries both gets both.  Istio then picks the *oldest* matching selector Sidecar, so the list
  orders more specific Sidecars first and the controller creates them in that order.
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
  (Istio rejects that combination), and ``egress-guard-<S>-origination`` exported to E only for a
  TLS origination port that the application may not use itself.
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

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.core.hosts import is_wildcard, wildcard_suffix
from webhook.core.policy import (
    MANAGED_LABEL,
    SERVICE_LABEL,
    WILDCARD_NAMESPACE,
    AllowRule,
    ExternalService,
    Gateway,
    Policy,
    Port,
    Workloads,
)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "egress-guard"
REVISION_ANNOTATION = "egress-guard.io/policy-revision"
DEFAULT_SIDECAR = "egress-guard-default"
NETWORK_POLICY = "egress-guard-egress"
PREFIX = "egress-guard-"
MESH_NAMESPACE = "istio-system"
MAX_NAME = 63
# above this many distinct label sets in one namespace the union closure is skipped (warned)
MAX_LABEL_SETS = 64

NETWORKING = "networking.istio.io/v1"
SECURITY = "security.istio.io/v1"
TELEMETRY = "telemetry.istio.io/v1"

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC"})
TLS_PROTOCOLS = frozenset({"TLS", "HTTPS"})

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

Manifest = dict[str, Any]
LabelSet = frozenset[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    """A namespace as the generator needs it: its name, and whether it is being deleted."""

    name: str
    # the API server refuses new objects in a terminating namespace
    terminating: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """The desired objects, in apply order, and what the policy asks that Istio cannot do."""

    manifests: tuple[Manifest, ...]
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class _Names:
    """Hands out object names that are valid DNS labels and unique within one namespace."""

    used: set[str] = field(default_factory=set)

    def take(self, *parts: str) -> str:
        raw = PREFIX + "-".join(parts)
        name = _dns_label(raw)
        if name != raw or name in self.used or len(name) > MAX_NAME:
            digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
            name = name[: MAX_NAME - 9].rstrip("-") + "-" + digest
        self.used.add(name)
        return name


def _dns_label(text: str) -> str:
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def desired_state(policy: Policy, namespaces: Iterable[NamespaceInfo | str]) -> list[Manifest]:
    """Every object the controller keeps for ``policy`` given the namespaces that exist."""
    return list(plan(policy, namespaces).manifests)


def plan(policy: Policy, namespaces: Iterable[NamespaceInfo | str]) -> Plan:
    """Desired manifests in apply order, plus warnings about what cannot be expressed."""
    infos = sorted(
        {(ns if isinstance(ns, NamespaceInfo) else NamespaceInfo(ns)) for ns in namespaces},
        key=lambda n: n.name,
    )
    present = {n.name for n in infos if not n.terminating}
    warnings: list[str] = list(_service_warnings(policy))
    manifests: list[Manifest] = []
    if policy.egress_namespace in present:
        manifests.extend(_egress_namespace_objects(policy))
    for name in sorted(present):
        if policy.is_excluded(name) or policy.is_egress_namespace(name):
            continue
        objects, notes = _tenant_namespace_objects(policy, name)
        manifests.extend(objects)
        warnings.extend(notes)
    stamped = [_stamp(m, policy) for m in manifests]
    return Plan(tuple(sorted(stamped, key=_order_key)), tuple(warnings))


def enforced_namespaces(policy: Policy, namespaces: Iterable[str]) -> list[str]:
    """The namespaces that get a default-deny Sidecar: not excluded, not the egress namespace."""
    return sorted(
        n
        for n in set(namespaces)
        if not policy.is_excluded(n) and not policy.is_egress_namespace(n)
    )


def object_key(manifest: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """``(apiVersion, kind, namespace, name)``: how the controller matches desired to actual."""
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


def _meta(name: str, namespace: str, service: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if service is not None:
        meta["labels"] = {SERVICE_LABEL: service}
    return meta


# --- hosts and ports -----------------------------------------------------------------------


def _kind_of(port: Port) -> str:
    if port.protocol in HTTP_PROTOCOLS:
        return "http"
    if port.protocol in TLS_PROTOCOLS:
        return "tls"
    return "tcp"


def _http_sni(host: str) -> str:
    """The SNI a sidecar puts on the mTLS hop for a host: a wildcard needs a concrete name."""
    return f"egress-guard.{wildcard_suffix(host)}" if is_wildcard(host) else host


def gateway_subset(service: ExternalService, index: int) -> str:
    """The egress gateway DestinationRule subset for host ``index`` of ``service``.

    The subset sets the SNI of the sidecar->gateway mTLS hop, which is what the gateway routes
    and authorizes on, so routes naming it are judged by the service it stands for.
    """
    return _dns_label(f"{service.name}-{index}")


_subset = gateway_subset


def _service_warnings(policy: Policy) -> Iterable[str]:
    for svc in policy.services.values():
        wild = [h for h in svc.hosts if is_wildcard(h)]
        tcp = [p for p in svc.ports if _kind_of(p) == "tcp"]
        if wild and tcp:
            yield (
                f"service {svc.name}: plain TCP ports cannot serve wildcard hosts "
                f"({', '.join(wild)}); those ports are routed for exact hosts only"
            )
        if tcp and len(svc.hosts) > 1:
            yield (
                f"service {svc.name}: a plain TCP port carries no host name, so TCP traffic is "
                f"always sent to {svc.hosts[0]}"
            )
        if wild and any(_kind_of(p) == "tls" for p in svc.ports):
            yield (
                f"service {svc.name}: wildcard TLS hosts pass through the gateway unterminated; "
                "the gateway checks their SNI but cannot see the client identity"
            )
        if wild and policy.istio_version < (1, 30):
            yield (
                f"service {svc.name}: wildcard hosts need DYNAMIC_DNS ServiceEntries "
                f"(Istio 1.30+), the policy says Istio {policy.istio_version[0]}."
                f"{policy.istio_version[1]}"
            )
        origin = svc.tls_origination_port
        if origin is not None and (p := svc.port(origin)) is not None and p.is_tls:
            yield (
                f"service {svc.name}: TLS origination port {origin} is also a TLS port; "
                "the application's own TLS on it would be wrapped twice"
            )


# --- the egress namespace --------------------------------------------------------------------


def _egress_namespace_objects(policy: Policy) -> Iterable[Manifest]:
    egress_ns = policy.egress_namespace
    for svc in policy.services.values():
        yield from _service_entries(svc, egress_ns)
        yield from _gateway_routes(svc, egress_ns)
        yield from _origination_rules(svc, egress_ns)
    for gateway in policy.gateways:
        services = [policy.services[s] for s in policy.services_on_gateway(gateway.fqdn)]
        yield _gateway(gateway, services)
        yield _gateway_destination_rule(gateway, services)
        yield _authorization_policy(policy, gateway, services)
        yield _telemetry(gateway)


def _se_ports(ports: Iterable[Port], *, dynamic: bool) -> list[dict[str, Any]]:
    out = []
    for port in ports:
        protocol = port.protocol
        if dynamic:
            if _kind_of(port) == "tcp":
                continue
            # DYNAMIC_DNS takes HTTP, TLS, GRPC and HTTP2 ports only
            protocol = "TLS" if protocol == "HTTPS" else protocol
        out.append({"number": port.number, "name": port.name, "protocol": protocol})
    return out


def _service_entry(
    name: str, namespace: str, svc: ExternalService, hosts: Sequence[str], **spec: Any
) -> Manifest:
    return {
        "apiVersion": NETWORKING,
        "kind": "ServiceEntry",
        "metadata": _meta(name, namespace, svc.name),
        "spec": {"hosts": list(hosts), "location": "MESH_EXTERNAL", **spec},
    }


def _service_entries(svc: ExternalService, egress_ns: str) -> Iterable[Manifest]:
    exact = [h for h in svc.hosts if not is_wildcard(h)]
    wild = [h for h in svc.hosts if is_wildcard(h)]
    ports = _se_ports(svc.ports, dynamic=False)
    base = f"{PREFIX}{svc.name}"
    has_tcp = any(_kind_of(p) == "tcp" for p in svc.ports)
    if exact:
        # Istio rejects several hosts on a plain TCP port unless resolution is NONE
        groups = [[h] for h in exact] if has_tcp and len(exact) > 1 else [exact]
        for i, hosts in enumerate(groups):
            name = base if len(groups) == 1 else f"{base}-{i}"
            yield _service_entry(
                name, egress_ns, svc, hosts, ports=ports, resolution="DNS", exportTo=["*"]
            )
    dynamic_ports = _se_ports(svc.ports, dynamic=True)
    if wild and dynamic_ports:
        yield _service_entry(
            f"{base}-wildcard",
            egress_ns,
            svc,
            wild,
            ports=dynamic_ports,
            resolution="DYNAMIC_DNS",
            exportTo=["*"],
        )
    origin = svc.tls_origination_port
    if origin is not None and svc.port(origin) is None:
        # only the gateway may use the origination port: exported to the egress namespace alone,
        # so no sidecar gets a direct route to it that would skip the gateway
        port = {"number": origin, "name": f"https-{origin}", "protocol": "HTTPS"}
        if exact:
            yield _service_entry(
                f"{base}-origination",
                egress_ns,
                svc,
                exact,
                ports=[port],
                resolution="DNS",
                exportTo=["."],
            )
        if wild:
            port["protocol"] = "TLS"
            yield _service_entry(
                f"{base}-origination-wildcard",
                egress_ns,
                svc,
                wild,
                ports=[port],
                resolution="DYNAMIC_DNS",
                exportTo=["."],
            )


def _gateway(gateway: Gateway, services: Sequence[ExternalService]) -> Manifest:
    """One Istio Gateway per egress gateway, named like it (``Gateway.ref`` is what routes bind)."""
    servers: list[dict[str, Any]] = []
    for svc in services:
        servers.extend(_servers(svc))
    return {
        "apiVersion": NETWORKING,
        "kind": "Gateway",
        "metadata": _meta(gateway.name, gateway.namespace),
        "spec": {"selector": dict(gateway.selector), "servers": servers},
    }


def _servers(svc: ExternalService) -> Iterable[dict[str, Any]]:
    for port in svc.ports:
        kind = _kind_of(port)
        # port names are unique per Gateway, which may carry several services
        name = f"{svc.name}-{port.name}"
        if kind == "http":
            # HTTP inside mTLS: the gateway terminates it and routes on the Host header
            yield {
                "port": {"number": port.number, "name": name, "protocol": "HTTPS"},
                "hosts": [f"./{h}" for h in svc.hosts],
                "tls": {"mode": "ISTIO_MUTUAL"},
            }
        elif kind == "tls":
            # one server per host: after terminating mTLS the gateway has only the hop's SNI
            for i, host in enumerate(svc.hosts):
                mode = "PASSTHROUGH" if is_wildcard(host) else "ISTIO_MUTUAL"
                yield {
                    "port": {"number": port.number, "name": f"{name}-{i}", "protocol": "TLS"},
                    "hosts": [f"./{host}"],
                    "tls": {"mode": mode},
                }
        elif (tcp_host := _tcp_host(svc)) is not None:
            yield {
                "port": {"number": port.number, "name": name, "protocol": "TLS"},
                "hosts": [f"./{tcp_host}"],
                "tls": {"mode": "ISTIO_MUTUAL"},
            }


def _tcp_host(svc: ExternalService) -> str | None:
    return next((h for h in svc.hosts if not is_wildcard(h)), None)


def _gateway_routes(svc: ExternalService, egress_ns: str) -> Iterable[Manifest]:
    origin = svc.tls_origination_port
    for i, host in enumerate(svc.hosts):
        http, tls, tcp = [], [], []
        for port in svc.ports:
            kind = _kind_of(port)
            if kind == "http":
                target = origin if origin is not None else port.number
                http.append(_route({"port": port.number}, host, target))
            elif kind == "tls" and is_wildcard(host):
                tls.append(_route({"port": port.number, "sniHosts": [host]}, host, port.number))
            elif kind == "tls" or (kind == "tcp" and host == _tcp_host(svc)):
                tcp.append(_route({"port": port.number}, host, port.number))
        spec: dict[str, Any] = {
            "hosts": [host],
            "gateways": [svc.gateway.ref],
            "exportTo": ["."],
        }
        for key, routes in (("http", http), ("tls", tls), ("tcp", tcp)):
            if routes:
                spec[key] = routes
        if len(spec) == 3:
            continue
        yield {
            "apiVersion": NETWORKING,
            "kind": "VirtualService",
            "metadata": _meta(f"{PREFIX}{svc.name}-gateway-{i}", egress_ns, svc.name),
            "spec": spec,
        }


def _route(
    match: dict[str, Any], host: str, port: int, subset: str | None = None
) -> dict[str, Any]:
    destination: dict[str, Any] = {"host": host, "port": {"number": port}}
    if subset is not None:
        destination["subset"] = subset
    return {"match": [match], "route": [{"destination": destination}]}


def _origination_rules(svc: ExternalService, egress_ns: str) -> Iterable[Manifest]:
    origin = svc.tls_origination_port
    if origin is None:
        return
    for i, host in enumerate(svc.hosts):
        tls: dict[str, Any] = {"mode": "SIMPLE"}
        if not is_wildcard(host):
            tls["sni"] = host
        yield {
            "apiVersion": NETWORKING,
            "kind": "DestinationRule",
            "metadata": _meta(f"{PREFIX}{svc.name}-tls-{i}", egress_ns, svc.name),
            "spec": {
                "host": host,
                "exportTo": ["."],
                "trafficPolicy": {"portLevelSettings": [{"port": {"number": origin}, "tls": tls}]},
            },
        }


def _gateway_destination_rule(gateway: Gateway, services: Sequence[ExternalService]) -> Manifest:
    subsets = []
    for svc in services:
        for i, host in enumerate(svc.hosts):
            settings = []
            for port in svc.ports:
                kind = _kind_of(port)
                tls: dict[str, str]
                if kind == "tls" and is_wildcard(host):
                    # the gateway passes these through on the application's own SNI
                    tls = {"mode": "DISABLE"}
                else:
                    sni = _http_sni(host) if kind == "http" else host
                    tls = {"mode": "ISTIO_MUTUAL", "sni": sni}
                settings.append({"port": {"number": port.number}, "tls": tls})
            subsets.append(
                {"name": _subset(svc, i), "trafficPolicy": {"portLevelSettings": settings}}
            )
    return {
        "apiVersion": NETWORKING,
        "kind": "DestinationRule",
        "metadata": _meta(f"{PREFIX}{gateway.name}", gateway.namespace),
        "spec": {"host": gateway.fqdn, "exportTo": ["*"], "subsets": subsets},
    }


def _source_clause(policy: Policy, rule: AllowRule) -> dict[str, Any]:
    src = rule.source
    td = policy.trust_domain
    if src.service_account is not None:
        if src.namespace == WILDCARD_NAMESPACE:
            # principals take one leading or trailing '*', so "any namespace" is a suffix match
            return {"principals": [f"*/sa/{src.service_account}"]}
        return {"principals": [f"{td}/ns/{src.namespace}/sa/{src.service_account}"]}
    if src.namespace == WILDCARD_NAMESPACE:
        # any authenticated mesh workload
        return {"principals": ["*"]}
    return {"namespaces": [src.namespace]}


def _snis(svc: ExternalService) -> list[str]:
    """SNI values of the mTLS hops to the gateway for ``svc`` (wildcards match by suffix)."""
    return sorted(set(svc.hosts))


def _authorization_policy(
    policy: Policy, gateway: Gateway, services: Sequence[ExternalService]
) -> Manifest:
    names = {s.name for s in services}
    rules: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(rule: dict[str, Any]) -> None:
        key = repr(rule)
        if key not in seen:
            seen.add(key)
            rules.append(rule)

    for allow_rule in policy.rules:
        for name in allow_rule.services:
            if name not in names:
                continue
            svc = policy.services[name]
            rule: dict[str, Any] = {
                "from": [{"source": _source_clause(policy, allow_rule)}],
                "when": [{"key": "connection.sni", "values": _snis(svc)}],
            }
            if all(_kind_of(p) == "http" for p in svc.ports):
                # HTTP-only: the Host header can be checked too (hosts is HTTP-only in AuthZ);
                # an exact host misses host:port, a wildcard cannot carry a port pattern
                hosts = [v for h in svc.hosts for v in ((h,) if is_wildcard(h) else (h, f"{h}:*"))]
                rule["to"] = [{"operation": {"hosts": hosts}}]
            add(rule)
    for svc in services:
        wild = [h for h in svc.hosts if is_wildcard(h)]
        if wild and any(_kind_of(p) == "tls" for p in svc.ports) and _has_source(policy, svc):
            # passthrough: no identity to check, so admit only identity-less connections whose
            # SNI is one of the wildcard hosts; mTLS connections must match a rule above
            add(
                {
                    "from": [{"source": {"notPrincipals": ["*"]}}],
                    "when": [{"key": "connection.sni", "values": wild}],
                }
            )
    return {
        "apiVersion": SECURITY,
        "kind": "AuthorizationPolicy",
        "metadata": _meta(f"{PREFIX}{gateway.name}", gateway.namespace),
        "spec": {
            "selector": {"matchLabels": dict(gateway.selector)},
            "action": "ALLOW",
            "rules": rules,
        },
    }


def _has_source(policy: Policy, svc: ExternalService) -> bool:
    return any(svc.name in r.services for r in policy.rules)


def _telemetry(gateway: Gateway) -> Manifest:
    return {
        "apiVersion": TELEMETRY,
        "kind": "Telemetry",
        "metadata": _meta(f"{PREFIX}{gateway.name}", gateway.namespace),
        "spec": {
            "selector": {"matchLabels": dict(gateway.selector)},
            # the default format logs the SNI (requested_server_name); the source principal
            # needs a MeshConfig provider with %DOWNSTREAM_PEER_URI_SAN% (see README)
            "accessLogging": [{"providers": [{"name": "envoy"}]}],
        },
    }


# --- tenant namespaces -----------------------------------------------------------------------


def _label_sets(rules: Sequence[AllowRule]) -> list[LabelSet]:
    return sorted(
        {frozenset(r.source.workload_labels.items()) for r in rules if r.source.workload_labels},
        key=lambda s: (len(s), sorted(s)),
    )


def _compatible(a: LabelSet, b: LabelSet) -> bool:
    """Whether one pod can carry both label sets (no key with two values)."""
    da, db = dict(a), dict(b)
    return all(db.get(k, v) == v for k, v in da.items())


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
                if u not in closed and _compatible(a, b) and len(closed) < MAX_LABEL_SETS * 4:
                    closed.add(u)
                    added.append(u)
        frontier = added
    return sorted(closed, key=lambda s: (len(s), sorted(s))), []


def _tenant_namespace_objects(policy: Policy, namespace: str) -> tuple[list[Manifest], list[str]]:
    rules = policy.rules_for_namespace(namespace)
    names = _Names({DEFAULT_SIDECAR})
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
    spec["outboundTrafficPolicy"] = {"mode": "REGISTRY_ONLY"}
    return {
        "apiVersion": NETWORKING,
        "kind": "Sidecar",
        "metadata": _meta(name, namespace),
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

    first = _subset(svc, 0)
    http, tls, tcp = [], [], []
    for port in svc.ports:
        kind = _kind_of(port)
        if kind == "http":
            http.append(_multi_route(matches({"port": port.number}), gateway, port, first))
        elif kind == "tls":
            for i, host in enumerate(svc.hosts):
                found = matches({"port": port.number, "sniHosts": [host]})
                tls.append(_multi_route(found, gateway, port, _subset(svc, i)))
        elif _tcp_host(svc) is not None:
            tcp.append(_multi_route(matches({"port": port.number}), gateway, port, first))
    spec: dict[str, Any] = {"hosts": list(svc.hosts), "exportTo": ["."]}
    for key, routes in (("http", http), ("tls", tls), ("tcp", tcp)):
        if routes:
            spec[key] = routes
    return {
        "apiVersion": NETWORKING,
        "kind": "VirtualService",
        "metadata": _meta(f"{PREFIX}{svc.name}", namespace, svc.name),
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
        "metadata": _meta(NETWORK_POLICY, namespace),
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": egress},
    }

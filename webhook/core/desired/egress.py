"""The egress namespace's objects: leg 2 of the two-leg pattern, gateway to the outside world.

Per external service: its ServiceEntries (exact hosts with DNS resolution, wildcard hosts with
DYNAMIC_DNS, a TLS origination entry only the gateway sees), a VirtualService per host from the
gateway to the host, and a DestinationRule per host when the gateway originates TLS.  Per egress
gateway: its Gateway, its DestinationRule (the mTLS SNI subsets), its AuthorizationPolicy
(``authorization``) and its Telemetry.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from webhook.core.desired.authorization import authorization_policy
from webhook.core.desired.manifests import (
    NETWORKING,
    PREFIX,
    TELEMETRY,
    Manifest,
    http_sni,
    meta,
    port_kind,
    tcp_host,
)
from webhook.core.hosts import is_wildcard
from webhook.core.naming import gateway_subset
from webhook.core.policy import ExternalService, Gateway, Policy, Port


def service_warnings(policy: Policy) -> Iterable[str]:
    """What the policy asks of its services that Istio cannot express exactly."""
    for svc in policy.services.values():
        wild = [h for h in svc.hosts if is_wildcard(h)]
        tcp = [p for p in svc.ports if port_kind(p) == "tcp"]
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
        if wild and any(port_kind(p) == "tls" for p in svc.ports):
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


def egress_namespace_objects(policy: Policy) -> Iterable[Manifest]:
    """Every object of the egress namespace, service by service, then gateway by gateway."""
    egress_ns = policy.egress_namespace
    for svc in policy.services.values():
        yield from _service_entries(svc, egress_ns)
        yield from _gateway_routes(svc, egress_ns)
        yield from _origination_rules(svc, egress_ns)
    for gateway in policy.gateways:
        services = [policy.services[s] for s in policy.services_on_gateway(gateway.fqdn)]
        yield _gateway(gateway, services)
        yield _gateway_destination_rule(gateway, services)
        yield authorization_policy(policy, gateway, services)
        yield _telemetry(gateway)


def _se_ports(ports: Iterable[Port], *, dynamic: bool) -> list[dict[str, Any]]:
    out = []
    for port in ports:
        protocol = port.protocol
        if dynamic:
            if port_kind(port) == "tcp":
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
        "metadata": meta(name, namespace, svc.name),
        "spec": {"hosts": list(hosts), "location": "MESH_EXTERNAL", **spec},
    }


def _service_entries(svc: ExternalService, egress_ns: str) -> Iterable[Manifest]:
    yield from _service_entry_set(svc, egress_ns, suffix="", extra=None, export_to="*")
    origin = svc.tls_origination_port
    if origin is not None and svc.port(origin) is None:
        # Only the gateway may use the origination port: these entries are exported to the
        # egress namespace alone, so no sidecar gets a direct route to it that would skip the
        # gateway.  They share their hosts with the entries above, and Istio merges same-host
        # entries only when exportTo is equal, so each proxy keeps one entry per host: the
        # gateway lists namespace-private services before exported ones and keeps these, which
        # therefore carry every port of the service too.
        extra = Port(number=origin, protocol="HTTPS")
        yield from _service_entry_set(
            svc, egress_ns, suffix="-origination", extra=extra, export_to="."
        )


def _service_entry_set(
    svc: ExternalService, egress_ns: str, *, suffix: str, extra: Port | None, export_to: str
) -> Iterable[Manifest]:
    exact = [h for h in svc.hosts if not is_wildcard(h)]
    wild = [h for h in svc.hosts if is_wildcard(h)]
    all_ports = [*svc.ports, *([extra] if extra is not None else [])]
    base = f"{PREFIX}{svc.name}{suffix}"
    has_tcp = any(port_kind(p) == "tcp" for p in svc.ports)
    if exact:
        ports = _se_ports(all_ports, dynamic=False)
        # Istio rejects several hosts on a plain TCP port unless resolution is NONE
        groups = [[h] for h in exact] if has_tcp and len(exact) > 1 else [exact]
        for i, hosts in enumerate(groups):
            name = base if len(groups) == 1 else f"{base}-{i}"
            yield _service_entry(
                name, egress_ns, svc, hosts, ports=ports, resolution="DNS", exportTo=[export_to]
            )
    dynamic_ports = _se_ports(all_ports, dynamic=True)
    if wild and dynamic_ports:
        yield _service_entry(
            f"{base}-wildcard",
            egress_ns,
            svc,
            wild,
            ports=dynamic_ports,
            resolution="DYNAMIC_DNS",
            exportTo=[export_to],
        )


def _gateway(gateway: Gateway, services: Sequence[ExternalService]) -> Manifest:
    """One Istio Gateway per egress gateway, named like it (``Gateway.ref`` is what routes bind)."""
    servers: list[dict[str, Any]] = []
    for svc in services:
        servers.extend(_servers(svc))
    return {
        "apiVersion": NETWORKING,
        "kind": "Gateway",
        "metadata": meta(gateway.name, gateway.namespace),
        "spec": {"selector": dict(gateway.selector), "servers": servers},
    }


def _servers(svc: ExternalService) -> Iterable[dict[str, Any]]:
    for port in svc.ports:
        kind = port_kind(port)
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
        elif (exact := tcp_host(svc)) is not None:
            yield {
                "port": {"number": port.number, "name": name, "protocol": "TLS"},
                "hosts": [f"./{exact}"],
                "tls": {"mode": "ISTIO_MUTUAL"},
            }


def _gateway_routes(svc: ExternalService, egress_ns: str) -> Iterable[Manifest]:
    origin = svc.tls_origination_port
    for i, host in enumerate(svc.hosts):
        http, tls, tcp = [], [], []
        for port in svc.ports:
            kind = port_kind(port)
            if kind == "http":
                target = origin if origin is not None else port.number
                http.append(_route({"port": port.number}, host, target))
            elif kind == "tls" and is_wildcard(host):
                tls.append(_route({"port": port.number, "sniHosts": [host]}, host, port.number))
            elif kind == "tls" or (kind == "tcp" and host == tcp_host(svc)):
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
            "metadata": meta(f"{PREFIX}{svc.name}-gateway-{i}", egress_ns, svc.name),
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
            "metadata": meta(f"{PREFIX}{svc.name}-tls-{i}", egress_ns, svc.name),
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
                kind = port_kind(port)
                tls: dict[str, str]
                if kind == "tls" and is_wildcard(host):
                    # the gateway passes these through on the application's own SNI
                    tls = {"mode": "DISABLE"}
                else:
                    sni = http_sni(host) if kind == "http" else host
                    tls = {"mode": "ISTIO_MUTUAL", "sni": sni}
                settings.append({"port": {"number": port.number}, "tls": tls})
            subsets.append(
                {"name": gateway_subset(svc, i), "trafficPolicy": {"portLevelSettings": settings}}
            )
    return {
        "apiVersion": NETWORKING,
        "kind": "DestinationRule",
        "metadata": meta(f"{PREFIX}{gateway.name}", gateway.namespace),
        "spec": {"host": gateway.fqdn, "exportTo": ["*"], "subsets": subsets},
    }


def _telemetry(gateway: Gateway) -> Manifest:
    return {
        "apiVersion": TELEMETRY,
        "kind": "Telemetry",
        "metadata": meta(f"{PREFIX}{gateway.name}", gateway.namespace),
        "spec": {
            "selector": {"matchLabels": dict(gateway.selector)},
            # the default format logs the SNI (requested_server_name); the source principal
            # needs a MeshConfig provider with %DOWNSTREAM_PEER_URI_SAN%
            # (docs/istio-semantics.md#egress-gateway, docs/operations.md)
            "accessLogging": [{"providers": [{"name": "envoy"}]}],
        },
    }

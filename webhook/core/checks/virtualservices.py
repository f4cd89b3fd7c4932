"""VirtualService: routing, which decides where a proxy sends traffic for a host.

A VirtualService grants nothing by itself (the Sidecar import and the gateway decide what can be
reached), but it can *steer*: send traffic for an external host straight out instead of through
the egress gateway, mirror it to another destination, hand it to a gateway that carries another
service, or, exported to every namespace, hijack other tenants' calls (trap 7).  So every
destination of every route is checked: ``route``, ``mirror(s)``, ``redirect``/``rewrite``
authorities and ``delegate`` (ISTIO-SEMANTICS §3).

In the egress namespace VirtualServices are the security team's two-leg routes: from sidecars
(``mesh``) to a policy egress gateway, and from that gateway to the services it carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import Any

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import (
    MESH,
    Reader,
    egress_fqdns,
    gateway_ref,
    overbroad,
    policy_gateway,
    split_authority,
    visibility,
)
from webhook.core.decisions import Violation
from webhook.core.hosts import is_ip
from webhook.core.policy import Policy, Workloads
from webhook.core.reviews import Review

_ROUTE_KINDS = ("http", "tls", "tcp")


@dataclass(frozen=True, slots=True)
class _Source:
    """Client workloads a mesh route applies to (``sourceNamespace`` / ``sourceLabels``)."""

    namespace: str
    labels: Mapping[str, str] | None


@dataclass(frozen=True, slots=True)
class _Route:
    """One http/tls/tcp rule reduced to what matters for egress."""

    path: str
    gateways: frozenset[str]
    sources: tuple[_Source, ...]
    destinations: tuple[tuple[str, str], ...]
    redirects: tuple[tuple[str, str], ...]
    rewrites: tuple[tuple[str, str], ...]
    delegate: tuple[str, str] | None

    @property
    def mesh(self) -> bool:
        """True when the rule programs sidecars (not only gateways)."""
        return MESH in self.gateways


@checks("networking.istio.io", "VirtualService")
def check_virtual_service(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """Every route of a VirtualService must lead to an allowed place by an allowed path."""
    del view
    if review.operation == "DELETE":
        return ()
    reader = Reader()
    namespace = review.namespace
    spec = reader.spec(review.object)
    hosts = _hosts(reader, policy, spec, namespace)
    top = reader.strings(spec.get("gateways"), "spec.gateways")
    top_refs = tuple(ref for _, ref in top) or (MESH,)
    routes, gateway_entries = _routes(reader, policy, spec, namespace, top_refs)
    gateway_entries = top + gateway_entries
    if policy.is_egress_namespace(namespace):
        _check_egress_namespace(reader, policy, namespace, hosts, routes, gateway_entries)
    else:
        exported = visibility(reader, spec.get("exportTo"), namespace).beyond(namespace)
        _check_tenant(reader, policy, namespace, hosts, routes, gateway_entries, top_refs, exported)
    return reader.violations


def _hosts(
    reader: Reader, policy: Policy, spec: Mapping[str, Any], namespace: str
) -> list[tuple[str, str]]:
    hosts = []
    for path, raw in reader.strings(spec.get("hosts"), "spec.hosts"):
        host = reader.host(
            raw, path, expand_in=namespace, cluster_domain=policy.cluster_domain, allow_ip=True
        )
        if host is not None:
            hosts.append((path, host))
    return hosts


def _routes(
    reader: Reader,
    policy: Policy,
    spec: Mapping[str, Any],
    namespace: str,
    top_refs: tuple[str, ...],
) -> tuple[list[_Route], list[tuple[str, str]]]:
    domain = policy.cluster_domain
    routes: list[_Route] = []
    gateway_entries: list[tuple[str, str]] = []
    for kind in _ROUTE_KINDS:
        for rpath, item in reader.mappings(spec.get(kind), f"spec.{kind}"):
            gateways: set[str] = set()
            sources: list[_Source] = []
            matches = reader.mappings(item.get("match"), f"{rpath}.match")
            if not matches:
                gateways.update(top_refs)
                sources.append(_Source(namespace, None))
            for mpath, match in matches:
                own = reader.strings(match.get("gateways"), f"{mpath}.gateways")
                gateway_entries.extend(own)
                refs = tuple(ref for _, ref in own) or top_refs
                gateways.update(refs)
                if MESH in refs:
                    sns = reader.string(match.get("sourceNamespace"), f"{mpath}.sourceNamespace")
                    labels = reader.labels(match.get("sourceLabels"), f"{mpath}.sourceLabels")
                    sources.append(_Source(sns or namespace, labels or None))
            destinations: list[tuple[str, str]] = []
            for hpath, value in _destination_hosts(reader, item.get("route"), f"{rpath}.route"):
                _add_host(reader, destinations, value, hpath, namespace, domain)
            redirects: list[tuple[str, str]] = []
            rewrites: list[tuple[str, str]] = []
            delegate = None
            if kind == "http":
                mirror = reader.mapping(item.get("mirror"), f"{rpath}.mirror")
                mirrors = chain(
                    [(f"{rpath}.mirror.host", mirror.get("host"))],
                    _destination_hosts(reader, item.get("mirrors"), f"{rpath}.mirrors"),
                )
                for hpath, value in mirrors:
                    _add_host(reader, destinations, value, hpath, namespace, domain)
                for field_name, found in (("redirect", redirects), ("rewrite", rewrites)):
                    part = reader.mapping(item.get(field_name), f"{rpath}.{field_name}")
                    path = f"{rpath}.{field_name}.authority"
                    authority = reader.string(part.get("authority"), path)
                    if authority:
                        _add_host(
                            reader, found, split_authority(authority), path, namespace, domain
                        )
                target = reader.mapping(item.get("delegate"), f"{rpath}.delegate")
                if target:
                    dns = reader.string(target.get("namespace"), f"{rpath}.delegate.namespace")
                    delegate = (f"{rpath}.delegate", dns or namespace)
            routes.append(
                _Route(
                    path=rpath,
                    gateways=frozenset(gateways),
                    sources=tuple(sources),
                    destinations=tuple(destinations),
                    redirects=tuple(redirects),
                    rewrites=tuple(rewrites),
                    delegate=delegate,
                )
            )
    return routes, gateway_entries


def _destination_hosts(reader: Reader, items: Any, path: str) -> Iterator[tuple[str, Any]]:
    """``(path, raw host)`` of each entry's ``destination``: ``route`` and ``mirrors`` alike."""
    # lazily, so each entry's problems are reported in document order with its host's
    for epath, entry in reader.mappings(items, path):
        target = reader.mapping(entry.get("destination"), f"{epath}.destination")
        yield f"{epath}.destination.host", target.get("host")


def _add_host(
    reader: Reader, found: list[tuple[str, str]], value: Any, path: str, namespace: str, domain: str
) -> None:
    host = reader.string(value, path)
    if host:
        checked = reader.host(host, path, expand_in=namespace, cluster_domain=domain, allow_ip=True)
        if checked is not None:
            found.append((path, checked))


# --- tenants ------------------------------------------------------------------------------------


def _check_tenant(
    reader: Reader,
    policy: Policy,
    namespace: str,
    hosts: list[tuple[str, str]],
    routes: list[_Route],
    gateway_entries: list[tuple[str, str]],
    top_refs: tuple[str, ...],
    exported: bool,
) -> None:
    for path, ref in gateway_entries:
        target = gateway_ref(ref, namespace)
        if target is not None and policy.is_egress_namespace(target[0]):
            reader.add(
                path,
                f"{ref!r} is a gateway in the egress namespace {policy.egress_namespace}; tenants "
                "must not program the egress gateways (their routes come from the policy)",
            )
    some = policy.allowed_for_some(namespace)
    external: list[str] = []
    # hosts only steer sidecars when some rule applies to the mesh; a VirtualService bound to
    # the tenant's own (ingress) gateways names the hosts that gateway receives, not egress
    mesh_bound = MESH in top_refs or any(route.mesh for route in routes)
    for path, host in hosts if mesh_bound else ():
        if is_ip(host):
            reader.add(path, f"{host!r} is an IP address; name the external host instead")
        elif overbroad(host):
            reader.add(path, f"{host!r} is over-broad: it would capture traffic for every host")
        elif not policy.is_internal(host):
            if policy.services_covering(host) & some:
                external.append(host)
            else:
                reader.add(
                    path,
                    f"{host!r} is not an external service any workload of namespace {namespace} "
                    f"may reach; allowed: {policy.describe_allowed(some)}",
                )
    for route in routes:
        _check_tenant_route(reader, policy, namespace, route, external, exported)


def _route_allowed(policy: Policy, namespace: str, route: _Route) -> tuple[frozenset[str], str]:
    """Services every client of the route may reach, and who those clients are."""
    if not route.mesh:
        return policy.allowed_for_some(namespace), f"workloads of namespace {namespace}"
    allowed: frozenset[str] | None = None
    who: list[str] = []
    for source in route.sources:
        if source.labels:
            found = policy.allowed_for(Workloads(source.namespace, source.labels))
            who.append(Workloads(source.namespace, source.labels).describe())
        else:
            found = policy.allowed_for_some(source.namespace)
            who.append(f"workloads of namespace {source.namespace}")
        allowed = found if allowed is None else allowed & found
    return allowed or frozenset(), " and ".join(sorted(set(who))) or f"namespace {namespace}"


def _check_tenant_route(
    reader: Reader,
    policy: Policy,
    namespace: str,
    route: _Route,
    external: list[str],
    exported: bool,
) -> None:
    allowed, source = _route_allowed(policy, namespace, route)
    may = policy.describe_allowed(allowed)
    hijack = exported and bool(external) and route.mesh
    route_hosts = list(external)
    for path, host in route.redirects + route.rewrites:
        if is_ip(host) or policy.is_internal(host):
            continue
        if not policy.services_covering(host) & allowed:
            reader.add(
                path,
                f"{host!r} is not an external service {source} may reach; allowed: {may}",
            )
        elif (path, host) in route.rewrites:
            # the rewritten Host header is what the egress gateway routes on
            route_hosts.append(host)
    for path, host in route.destinations:
        if policy.services_on_gateway(host):
            _check_gateway_destination(reader, policy, path, host, route_hosts, allowed, source)
        elif is_ip(host) and not policy.is_internal_address(host):
            reader.add(path, f"{host!r} is an IP address outside the cluster; name a service")
        elif policy.is_internal(host) or is_ip(host):
            if hijack:
                reader.add(path, _hijack(policy, host, external))
        else:
            covering = policy.services_covering(host)
            if covering:
                message = (
                    f"{host!r} is outside the mesh: traffic from {source} to it must go through "
                    f"the egress gateway; route to {egress_fqdns(policy, covering)} instead"
                )
            else:
                message = (
                    f"{host!r} is outside the mesh and not an external service of the policy; "
                    f"{source} may reach {may}"
                )
            reader.add(path, message)
    if route.delegate is not None:
        path, target_ns = route.delegate
        if target_ns != namespace:
            reader.add(
                path,
                f"delegating to a VirtualService in namespace {target_ns} splices routes this "
                f"check cannot see; delegate only within namespace {namespace}",
            )
        elif hijack:
            reader.add(
                path,
                "this VirtualService is visible to other namespaces and delegates its routes for "
                f"{', '.join(external)}; set exportTo: ['.'] or route to the egress gateway here",
            )


def _hijack(policy: Policy, host: str, external: list[str]) -> str:
    covering = frozenset().union(*(policy.services_covering(h) for h in external))
    return (
        f"this VirtualService is visible to other namespaces (exportTo omitted or not '.'), so it "
        f"would steer their traffic for {', '.join(external)} to {host!r}; route it to the egress "
        f"gateway {egress_fqdns(policy, covering)} or set exportTo: ['.']"
    )


def _check_gateway_destination(
    reader: Reader,
    policy: Policy,
    path: str,
    fqdn: str,
    route_hosts: list[str],
    allowed: frozenset[str],
    source: str,
) -> None:
    carried = policy.services_on_gateway(fqdn)
    if not route_hosts:
        if not frozenset(carried) & allowed:
            reader.add(
                path,
                f"{fqdn} is the egress gateway of {policy.describe_allowed(carried)}, which "
                f"{source} may not reach; allowed: {policy.describe_allowed(allowed)}",
            )
        return
    for host in route_hosts:
        carriers = frozenset(s for s in carried if policy.service_hosts_covering(s, host))
        if not carriers:
            covering = policy.services_covering(host)
            reader.add(
                path,
                f"the egress gateway {fqdn} does not carry {host!r} (it carries "
                f"{policy.describe_allowed(carried)}); route {host!r} to "
                f"{egress_fqdns(policy, covering)}",
            )
        elif not carriers & allowed:
            reader.add(
                path,
                f"{host!r} through {fqdn} is not allowed for {source}; they may reach "
                f"{policy.describe_allowed(allowed)}",
            )


# --- the egress namespace -----------------------------------------------------------------------


def _check_egress_namespace(
    reader: Reader,
    policy: Policy,
    namespace: str,
    hosts: list[tuple[str, str]],
    routes: list[_Route],
    gateway_entries: list[tuple[str, str]],
) -> None:
    known = policy.describe_allowed(policy.services)
    for path, ref in gateway_entries:
        target = gateway_ref(ref, namespace)
        if target is not None and policy_gateway(policy, target) is None:
            refs = ", ".join(sorted(gw.ref for gw in policy.gateways))
            reader.add(
                path,
                f"{ref!r} is not an egress gateway of the policy (gateways: {refs}, or mesh)",
            )
    route_hosts: list[str] = []
    for path, host in hosts:
        if is_ip(host) or not policy.services_covering(host):
            reader.add(path, f"{host!r} is not an external service of the policy: {known}")
        else:
            route_hosts.append(host)
    everything = frozenset(policy.services)
    for route in routes:
        contexts = [
            gateway
            for ref in route.gateways
            if (target := gateway_ref(ref, namespace)) is not None
            and (gateway := policy_gateway(policy, target)) is not None
        ]
        for path, host in route.destinations + route.rewrites + route.redirects:
            if (path, host) not in route.destinations:
                if not policy.services_covering(host):
                    reader.add(path, f"{host!r} is not an external service of the policy: {known}")
                continue
            if route.mesh:
                if policy.services_on_gateway(host):
                    _check_gateway_destination(
                        reader, policy, path, host, route_hosts, everything, "the mesh"
                    )
                else:
                    reader.add(
                        path,
                        f"mesh traffic must go to a policy egress gateway, not {host!r} "
                        "(leg 1 of the egress route)",
                    )
            for gateway in contexts:
                carried = policy.services_on_gateway(gateway.fqdn)
                if not any(policy.service_hosts_covering(s, host) for s in carried):
                    reader.add(
                        path,
                        f"the egress gateway {gateway.ref} may only forward to "
                        f"{policy.describe_allowed(carried)}, not {host!r} (leg 2 of the "
                        "egress route)",
                    )
        if route.delegate is not None:
            reader.add(route.delegate[0], "egress routes must not be delegated")

"""ServiceEntry: the object that adds an outside destination to the mesh registry.

A tenant ServiceEntry is a *direct* path: the sidecar sends traffic to the entry's hosts, endpoints
or addresses without going through the egress gateway, so the gateway's identity check never sees
it.  It is therefore judged against the rules that need no identity (``Policy.allowed_directly``),
for every namespace the entry is visible to (``exportTo``).  The real destination is what the proxy
connects to: endpoints, addresses, and with ``resolution: NONE`` whatever IP the client dialled
(docs/istio-semantics.md#trap-1, trap 2).  None of those may be an address the egress
namespace's Pods and Services hold (``egress_addresses``): that is the egress gateway itself.

In the egress namespace ServiceEntries belong to the security team and may only describe the
policy's own external services.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, count, repeat
from operator import contains
from typing import Any, cast

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import (
    UNIX_PREFIX,
    Kept,
    Reader,
    ReadHosts,
    Visibility,
    address_class,
    address_problem,
    allowed_directly_for,
    destination_problem,
    egress_fqdns,
    egress_namespace_destination,
    gateways_covered_by,
    is_object,
    judge_addresses,
    judge_hosts,
    many,
    names_egress_namespace,
    overbroad,
    read_hosts,
    read_kept,
    visibility,
)
from webhook.core.checks.egress_addresses import EgressAddresses, egress_addresses
from webhook.core.decisions import STOP_AFTER_VIOLATIONS, Violation
from webhook.core.hosts import is_ip, is_wildcard, normalize
from webhook.core.policy import Policy
from webhook.core.reviews import Review

RESOLUTIONS = frozenset({"NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"})
# ports the proxy routes on Host/SNI; anything else (TCP, MONGO, no protocol) is matched by port
_L7_PROTOCOLS = frozenset({"HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "TLS"})


@dataclass(frozen=True, slots=True)
class _Port:
    path: str
    number: int
    protocol: str
    # where the proxy connects on the endpoint (``targetPort``), when it differs
    target: int | None = None


@dataclass(frozen=True, slots=True)
class _Listed:
    """String values of a list field and their paths (written from ``template`` when None).

    A long list of plain values gets no paths up front: only values reported need one.
    """

    values: list[str]
    # the path of the item at list index i: ``template.format(i)``
    template: str
    paths: list[str] | None = None
    # where each value was listed, when items that gave none were dropped
    kept: Kept[str] | None = None

    @classmethod
    def of(cls, pairs: Sequence[tuple[str, str]], template: str) -> _Listed:
        """From ``(path, value)`` pairs."""
        return cls([v for _, v in pairs], template, [p for p, _ in pairs])

    def path(self, index: int) -> str:
        """The path of ``values[index]``."""
        if self.paths is not None:
            return self.paths[index]
        return self.template.format(index if self.kept is None else self.kept.index(index))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """``(path, value)`` of every value."""
        return ((self.path(i), v) for i, v in enumerate(self.values))

    def __bool__(self) -> bool:
        return bool(self.values)


_ADDRESS = "spec.addresses[{}]"
_ENDPOINT = "spec.endpoints[{}].address"


def _plain_strings(raw: Any) -> list[str] | None:
    """``raw`` when it is a long list of strings only (no path to record for any of them)."""
    if type(raw) is list and many(raw) and set(map(type, raw)) == {str}:
        return cast("list[str]", raw)
    return None


def _plain_endpoints(raw: Any) -> list[str] | None:
    """Every address when ``raw`` is a list of objects each with a non-empty string address."""
    if not isinstance(raw, list):
        return None
    # type passes in C: a ServiceEntry can list 60k endpoints
    if raw and set(map(type, raw)) != {dict}:
        return None
    addresses = list(map(dict.get, raw, repeat("address")))
    if addresses and (set(map(type, addresses)) != {str} or not all(addresses)):
        return None
    return cast("list[str]", addresses)


def _with_ports(raw: list[Any], *, objects: bool) -> Iterable[int]:
    """The index of each object of a list of endpoints that sets ``ports`` (``objects``: the
    items are known to be objects)."""
    if objects or set(map(type, raw)) <= {dict}:
        # tested in C: a ServiceEntry can list 60k endpoints
        return compress(count(), map(contains, raw, repeat("ports")))
    return (i for i, e in enumerate(raw) if isinstance(e, Mapping) and "ports" in e)


def _read_endpoints(reader: Reader, raw: list[Any]) -> _Listed:
    """The endpoint addresses of a list of endpoints ``_plain_endpoints`` cannot read whole,
    each item's violations recorded."""

    def read_one(index: int) -> str | None:
        item = raw[index]
        if not is_object(item):
            return None
        return reader.string(item.get("address"), f"spec.endpoints[{index}].address") or None

    reader.non_objects(raw, "spec.endpoints")

    kept = read_kept(raw, _plain_endpoints, read_one)
    return _Listed(kept.values, _ENDPOINT, kept=kept if kept.shifts else None)


@dataclass(frozen=True, slots=True)
class _Entry:
    """The parts of a ServiceEntry spec that decide where traffic goes."""

    hosts: ReadHosts
    ports: tuple[_Port, ...]
    addresses: _Listed
    endpoints: _Listed
    resolution: str
    # (path, port) of every ``endpoints[].ports`` value: the port actually dialled there
    endpoint_ports: tuple[tuple[str, int], ...] = ()
    # endpoints taken from the namespace's pods and WorkloadEntries (judged on their own)
    selects_workloads: bool = False


@checks("networking.istio.io", "ServiceEntry")
def check_service_entry(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """A ServiceEntry may only add destinations its viewers are allowed to reach directly."""
    if review.operation == "DELETE":
        # removing a registry entry never opens a path
        return ()
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    spec = reader.spec(review.object)
    entry = _read(reader, spec)
    if policy.is_egress_namespace(review.namespace):
        _check_egress_namespace(reader, policy, entry)
    else:
        visible = visibility(reader, spec.get("exportTo"), review.namespace)
        held = egress_addresses(policy, view, review.namespace) if _dials_ips(entry) else None
        _check_tenant(reader, policy, entry, review.namespace, visible, held)
    _check_resolution(reader, policy, entry)
    return reader.violations


def _read(reader: Reader, spec: Mapping[str, Any]) -> _Entry:
    hosts = read_hosts(reader, spec.get("hosts"), "spec.hosts")
    ports = []
    for path, item in reader.mappings(spec.get("ports"), "spec.ports"):
        number = reader.integer(item.get("number"), f"{path}.number")
        protocol = reader.string(item.get("protocol"), f"{path}.protocol") or ""
        target = item.get("targetPort")
        target = reader.integer(target, f"{path}.targetPort") if target is not None else None
        if number is not None:
            ports.append(_Port(path, number, protocol.upper(), target))
    endpoints: _Listed | list[tuple[str, str]]
    endpoint_ports = []
    items: list[tuple[str, Mapping[str, Any]]]
    raw_endpoints = spec.get("endpoints")
    if type(raw_endpoints) is list:
        fast = _plain_endpoints(raw_endpoints)
        endpoints = (
            _Listed(fast, _ENDPOINT) if fast is not None else _read_endpoints(reader, raw_endpoints)
        )
        with_ports = _with_ports(raw_endpoints, objects=fast is not None)
        items = [(f"spec.endpoints[{i}]", raw_endpoints[i]) for i in with_ports]
    else:
        endpoints = []
        items = []
        for path, item in reader.mappings(raw_endpoints, "spec.endpoints"):
            address = reader.string(item.get("address"), f"{path}.address")
            if address:
                endpoints.append((f"{path}.address", address))
            if "ports" in item:
                items.append((path, item))
    for path, item in items:
        for key, value in reader.mapping(item.get("ports"), f"{path}.ports").items():
            number = reader.integer(value, f"{path}.ports.{key}")
            if number is not None:
                endpoint_ports.append((f"{path}.ports.{key}", number))
    raw_addresses = spec.get("addresses")
    plain = _plain_strings(raw_addresses)
    if plain is not None:
        addresses = _Listed(plain, _ADDRESS)
    else:
        addresses = _Listed.of(reader.strings(raw_addresses, "spec.addresses"), _ADDRESS)
    resolution = reader.string(spec.get("resolution"), "spec.resolution") or "NONE"
    if resolution not in RESOLUTIONS:
        reader.add("spec.resolution", f"unknown resolution {resolution!r}")
    selector = reader.mapping(spec.get("workloadSelector"), "spec.workloadSelector")
    return _Entry(
        hosts=hosts,
        ports=tuple(ports),
        addresses=addresses,
        endpoints=endpoints if isinstance(endpoints, _Listed) else _Listed.of(endpoints, _ENDPOINT),
        resolution=resolution,
        endpoint_ports=tuple(endpoint_ports),
        selects_workloads=bool(selector.get("labels")),
    )


def _dials_ips(entry: _Entry) -> bool:
    """Whether the entry may send traffic to an address it lists: its endpoints, and with
    resolution NONE its ``addresses``, which the proxy then passes to the original destination
    (with STATIC or DNS they are only the virtual IPs it captures, and traffic goes to the
    endpoints)."""
    return bool(entry.endpoints) or (entry.resolution == "NONE" and bool(entry.addresses))


def _check_tenant(
    reader: Reader,
    policy: Policy,
    entry: _Entry,
    namespace: str,
    visible: Visibility,
    held: EgressAddresses | None,
) -> None:
    if _in_pod(entry):
        _check_in_pod(reader, policy, entry, visible.beyond(namespace))
        return
    if (
        entry.resolution == "STATIC"
        and any(not policy.is_internal(host) for host in entry.hosts.names)
        and _in_cluster(policy, entry, held)
    ):
        _check_in_cluster(reader, policy, entry, visible.beyond(namespace))
        return
    allowed = allowed_directly_for(policy, visible)
    source = visible.describe()
    # resolved by DNS, the host itself is where the proxy connects; on a port not matched by
    # name the app's own bytes (its ClientHello) arrive there as they are.  The Banzai post's
    # HTTP entry for a name of the egress namespace stays: the gateway wants mTLS on it
    opaque = (
        entry.resolution in ("DNS", "DNS_ROUND_ROBIN")
        and not entry.endpoints.values
        and any(port.protocol.upper() not in _L7_PROTOCOLS for port in entry.ports)
    )

    def judge(reader: Reader, index: int, host: str) -> None:
        path = entry.hosts.path(index)
        captured = () if host == "*" else gateways_covered_by(policy, host)
        if captured:
            # a tenant entry for the egress gateways' own names could capture the egress path
            reader.add(
                path,
                f"{host!r} covers the egress gateway {captured[0].fqdn}; only the platform team "
                "may define entries for it",
            )
            return
        if policy.is_internal(host):
            if opaque and names_egress_namespace(policy, host):
                reader.add(path, egress_namespace_destination(host))
            # the name is the cluster's; where it leads is judged through endpoints/addresses
            return
        if overbroad(host):
            reader.add(
                path,
                f"{host!r} is over-broad: it would let {source} reach every host under it; "
                f"allowed directly: {policy.describe_allowed(allowed)}",
            )
            return
        granted = policy.services_covering(host) & allowed
        if not granted:
            reader.add(path, _denial(policy, host, namespace, source, allowed))
            return
        _check_ports(reader, policy, entry.ports, granted, host=host)

    judge_hosts(reader, policy, entry.hosts.names, judge, entry.hosts.joined)

    # with resolution NONE the addresses are where traffic goes, else only virtual IPs
    held_at = held if entry.resolution == "NONE" else None

    def judge_address(reader: Reader, index: int, address: str) -> None:
        # the egress gateway itself first: the most telling reason for such an address
        problem = held_at.problem(address) if held_at is not None else None
        problem = problem or address_problem(policy, normalize(address), allowed, source)
        if problem:
            reader.add(entry.addresses.path(index), problem)

    at_cuts = held_at.cuts if held_at is not None else frozenset()
    judge_addresses(reader, policy, entry.addresses.values, judge_address, at_cuts)

    def judge_endpoint(reader: Reader, index: int, address: str) -> None:
        path = entry.endpoints.path(index)
        problem = held.problem(address) if held is not None else None
        if problem:
            reader.add(path, problem)
        else:
            destination_problem(policy, reader, address, path, allowed, source)

    cuts = held.cuts if held is not None else frozenset()
    judge_addresses(reader, policy, entry.endpoints.values, judge_endpoint, cuts)
    _check_target_ports(reader, policy, entry, allowed)


_DIGITS_AND_DOTS = b"0123456789."


def _in_pod(entry: _Entry) -> bool:
    """Whether every connection the entry makes goes to the calling pod itself: STATIC, every
    endpoint a loopback address (how a pod reaches a helper beside it, such as a local ext-authz
    server).  Its hosts then only name that helper for the pod's own proxy."""
    values = entry.endpoints.values
    if entry.resolution != "STATIC" or not values:
        return False
    # in passes of C (the list may hold 100k endpoints): each value is "::1" or "127." and
    # digits and dots, which is a loopback address or none at all (Istio and Envoy refuse it);
    # other spellings of a loopback address are judged as any address
    first = values[0]
    if first != "::1" and not first.startswith("127."):
        return False
    ipv6 = values.count("::1")
    if ipv6 + sum(map(str.startswith, values, repeat("127."))) != len(values):
        return False
    marks = "\n".join(values).encode().translate(None, _DIGITS_AND_DOTS)
    return marks.count(b":") == 2 * ipv6 and len(marks) == len(values) - 1 + 2 * ipv6


class _Outside(Exception):
    """An endpoint of the entry lies outside the cluster's networks."""


def _in_cluster(policy: Policy, entry: _Entry, held: EgressAddresses | None) -> bool:
    """Whether every connection the entry makes stays in the cluster's networks: STATIC, and its
    endpoints all addresses of ``internalNetworks`` (an on-premises database, a VM) that no
    egress gateway holds, or no endpoints and a workload selector (the namespace's own pods and
    WorkloadEntries, whose addresses are judged on their own).  Its hosts then only name
    those destinations; which host a client asked for no longer decides where it goes."""
    if entry.resolution != "STATIC":
        return False
    values = entry.endpoints.values
    if not values:
        return entry.selects_workloads
    if entry.selects_workloads:
        return False

    def probe(reader: Reader, index: int, value: str) -> None:
        del reader, index
        if value.startswith(UNIX_PREFIX):
            return
        address = normalize(value)
        if not is_ip(address) or not policy.is_internal_address(address):
            raise _Outside
        if held is not None and held.problem(value):
            raise _Outside

    cuts = held.cuts if held is not None else frozenset()
    try:
        judge_addresses(Reader(), policy, values, probe, cuts)
    except _Outside:
        return False
    return True


def _names_a_gateway(reader: Reader, policy: Policy, entry: _Entry, index: int, host: str) -> bool:
    """The egress gateways' names stay the platform's, whatever an entry's endpoints are."""
    captured = () if host == "*" else gateways_covered_by(policy, host)
    if captured:
        reader.add(
            entry.hosts.path(index),
            f"{host!r} covers the egress gateway {captured[0].fqdn}; only the platform team "
            "may define entries for it",
        )
    return bool(captured)


def _check_in_cluster(reader: Reader, policy: Policy, entry: _Entry, beyond: bool) -> None:
    """An entry whose connections all stay in the cluster's networks (``_in_cluster``) may
    give them an outside name.  The egress gateways' names stay the platform's; seen ``beyond``
    its namespace, a name the policy allows (or under which it allows some) or a virtual
    address would take other namespaces' egress for it to these endpoints."""

    def judge(reader: Reader, index: int, host: str) -> None:
        if _names_a_gateway(reader, policy, entry, index, host):
            return
        if beyond and (
            host == "*" or policy.services_covering(host) or policy.services_imported_by(host)
        ):
            reader.add(
                entry.hosts.path(index),
                f"{host!r} names an external service of the egress policy, and this entry, seen "
                "beyond its namespace, would send other namespaces' traffic for it to "
                "addresses of the cluster; add exportTo: ['.']",
            )

    judge_hosts(reader, policy, entry.hosts.names, judge, entry.hosts.joined)
    if beyond and entry.addresses:
        reader.add(
            entry.addresses.path(0),
            "virtual addresses of an entry seen beyond its namespace capture other namespaces' "
            "traffic to them; add exportTo: ['.']",
        )


def _check_in_pod(reader: Reader, policy: Policy, entry: _Entry, beyond: bool) -> None:
    """An entry whose endpoints are the pod's own loopback reaches nothing outside.  The egress
    gateways' names stay the platform's; and seen ``beyond`` its namespace, it may not take a
    name of the cluster or of the policy, which other namespaces' pods would then send to
    their own loopback instead."""

    def judge(reader: Reader, index: int, host: str) -> None:
        if _names_a_gateway(reader, policy, entry, index, host):
            return
        if beyond and (host == "*" or policy.is_internal(host) or policy.services_covering(host)):
            reader.add(
                entry.hosts.path(index),
                f"{host!r} is a name other namespaces use, and this entry, seen beyond its "
                "namespace, would send their traffic for it to their own loopback; add "
                "exportTo: ['.']",
            )

    judge_hosts(reader, policy, entry.hosts.names, judge, entry.hosts.joined)
    if beyond and entry.addresses:
        reader.add(
            entry.addresses.path(0),
            "virtual addresses of an entry seen beyond its namespace capture other namespaces' "
            "traffic to them and send it to their own loopback; add exportTo: ['.']",
        )


def _outside_services(policy: Policy, entry: _Entry, allowed: frozenset[str]) -> frozenset[str]:
    """Allowed external services the entry's traffic really goes to (endpoints, else hosts)."""
    if entry.resolution == "NONE":
        # the original destination port is kept: target ports play no part
        return frozenset()
    found: set[str] = set()
    if entry.endpoints:
        classes: set[str] = set()
        by_block = many(entry.endpoints.values)
        for address in entry.endpoints.values:
            key = address_class(policy, address) if by_block else None
            if key is not None:
                if key in classes:
                    continue
                classes.add(key)
            target = normalize(address)
            if address.startswith(UNIX_PREFIX) or policy.is_internal(target):
                continue
            if is_ip(target):
                found.update(s for s in allowed if policy.address_allowed(target, (s,)))
            else:
                found.update(policy.services_covering(target) & allowed)
        return frozenset(found)
    seen: set[str] = set()
    by_class = many(entry.hosts.names)
    for host in entry.hosts.names:
        key = policy.host_class(host) if by_class else None
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        if not policy.is_internal(host):
            found.update(policy.services_covering(host) & allowed)
    return frozenset(found)


def _check_target_ports(
    reader: Reader, policy: Policy, entry: _Entry, allowed: frozenset[str]
) -> None:
    """The port dialled outside (``targetPort``, endpoint ports) must be an allowed port too."""
    dialled = [(f"{p.path}.targetPort", p.target) for p in entry.ports if p.target is not None]
    if not dialled and not entry.endpoint_ports:
        return
    outside = _outside_services(policy, entry, allowed)
    if not outside:
        return
    numbers = frozenset().union(*(policy.services[s].port_numbers for s in outside))
    for path, number in [*dialled, *entry.endpoint_ports]:
        if number is not None and number not in numbers:
            reader.add(
                path,
                f"the proxy would connect to port {number} of "
                f"{policy.describe_allowed(outside)}, which is not one of its ports "
                f"({', '.join(map(str, sorted(numbers)))})",
            )


def _check_ports(
    reader: Reader,
    policy: Policy,
    ports: Iterable[_Port],
    granted: frozenset[str],
    *,
    host: str | None = None,
) -> None:
    """Every port must be a port of a ``granted`` service (the one a tenant ``host`` names)."""
    numbers = frozenset().union(*(policy.services[s].port_numbers for s in granted))
    listed = ", ".join(map(str, sorted(numbers)))
    for port in ports:
        if port.number in numbers:
            continue
        if host is None:
            detail = f"(ports: {listed or 'none'})"
        else:
            detail = f"for {host!r} (allowed ports: {listed})"
        reader.add(
            f"{port.path}.number",
            f"port {port.number} is not a port of {policy.describe_allowed(granted)} {detail}",
        )


def _denial(policy: Policy, host: str, namespace: str, source: str, allowed: frozenset[str]) -> str:
    covering = policy.services_covering(host)
    if covering & policy.allowed_directly(namespace):
        # the host (or wildcard) is the namespace's own to reach: only the audience is wrong
        return (
            f"{host!r} is allowed to namespace {namespace}, but this ServiceEntry is visible to "
            f"{source}, which would all reach it directly, past the egress gateway; set "
            "exportTo: ['.']"
        )
    if covering & policy.allowed_for_some(namespace):
        return (
            f"{host!r} is allowed only to some workloads or service accounts of {namespace}; a "
            "ServiceEntry in a tenant namespace bypasses the egress gateway's identity check, so "
            "only rules without workloadLabels or serviceAccount count. Use a Sidecar import and "
            f"route through the egress gateway {egress_fqdns(policy, covering)} instead"
        )
    if is_wildcard(host):
        head = (
            f"the wildcard {host!r} is over-broad: no policy wildcard allowed to {source} "
            "covers it, and a wildcard entry trusts the Host/SNI the client chooses"
        )
    else:
        head = f"{host!r} is not an external service allowed to {source}"
    return f"{head}; allowed directly: {policy.describe_allowed(allowed)}"


def _check_egress_namespace(reader: Reader, policy: Policy, entry: _Entry) -> None:
    known = policy.describe_allowed(policy.services)
    services: set[str] = set()
    for path, host in entry.hosts:
        covering = policy.services_covering(host)
        if not covering:
            reader.add(
                path,
                f"{host!r} is not an external service of the policy; the egress namespace only "
                f"holds the policy's services: {known}",
            )
        services.update(covering)
    granted = frozenset(services)
    if not granted:
        return
    _check_ports(reader, policy, entry.ports, granted)

    def judge_address(reader: Reader, index: int, address: str) -> None:
        if not policy.address_allowed(normalize(address), granted):
            reader.add(
                entry.addresses.path(index),
                f"{address!r} is not an address of {policy.describe_allowed(granted)}",
            )

    judge_addresses(reader, policy, entry.addresses.values, judge_address)
    for path, address in entry.endpoints:
        target = normalize(address)
        if address.startswith(UNIX_PREFIX):
            ok = False
        elif is_ip(target):
            ok = policy.address_allowed(target, granted)
        else:
            ok = bool(policy.services_covering(target) & granted) and not is_wildcard(target)
        if not ok:
            reader.add(
                path,
                f"endpoint {address!r} is not a host or address of "
                f"{policy.describe_allowed(granted)}: not an external service of the policy",
            )


def _check_resolution(reader: Reader, policy: Policy, entry: _Entry) -> None:
    if entry.resolution != "NONE" or entry.addresses:
        return
    for port in entry.ports:
        if port.protocol not in _L7_PROTOCOLS:
            # without addresses a TCP port is matched by port alone, any destination IP
            # (docs/istio-semantics.md#trap-2)
            reader.add(
                port.path,
                f"resolution NONE (the default) with {port.protocol or 'unnamed-protocol'} port "
                f"{port.number} and no addresses opens port {port.number} to every IP address; "
                "use TLS with SNI, or resolution DNS",
            )
    if not any(p.protocol in _L7_PROTOCOLS for p in entry.ports):
        return
    is_internal = policy.is_internal
    for index, host in enumerate(entry.hosts.names):
        if is_internal(host):
            # NONE trusts the Host/SNI and connects to whatever IP the client dialled, so a
            # cluster name with NONE lets a pod reach any Internet address by presenting that
            # name (docs/istio-semantics.md#trap-3)
            reader.add(
                entry.hosts.path(index),
                f"{host!r} with resolution NONE (the default) and no addresses lets a client reach "
                "any IP address by sending this name as Host/SNI; use resolution DNS or STATIC, "
                "or declare addresses",
            )

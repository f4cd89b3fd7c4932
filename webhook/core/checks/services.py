"""Services, Endpoints and EndpointSlices: registry entries that reach outside without Istio CRDs.

Istio puts every Kubernetes Service in the mesh registry (docs/istio-semantics.md#trap-13).  An
``ExternalName`` Service becomes a DNS service whose real destination is the external name, and a
selector-less Service with hand-written Endpoints sends traffic to whatever addresses they list;
either opens a direct path (no egress gateway, no identity check) that ``REGISTRY_ONLY`` happily
allows.  So they are held to the bar of direct paths: ``allowed_directly`` for the namespace, and,
since Services are exported to every namespace unless ``networking.istio.io/exportTo`` says
otherwise, for every namespace that can see them.  One at an address of the egress namespace
reaches the egress gateway past its routes (``egress_addresses``).

Endpoints written by the control plane mirror pods and Services, so only other writers are
checked, recognised by username (a ``managed-by`` label is writable by anyone).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, compress, count, pairwise, product, repeat
from operator import floordiv, itemgetter
from typing import Any, cast

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import (
    CLASSES_FROM,
    AddressClasses,
    Block,
    ChunkedKeys,
    Pathed,
    Reader,
    address_keys,
    address_problem,
    allowed_directly_for,
    egress_namespace_destination,
    exact_host_keys,
    is_object,
    judge_addresses,
    judge_classes,
    judge_read_hosts,
    many,
    names_egress_namespace,
    read_hosts,
    visibility,
)
from webhook.core.checks.egress_addresses import EgressAddresses, egress_addresses
from webhook.core.checks.egress_namespace import PLATFORM_USER_PREFIX, PLATFORM_USERS
from webhook.core.decisions import STOP_AFTER_VIOLATIONS, EnoughViolations, Violation
from webhook.core.hosts import address_range, all_valid_joined, is_ip, normalize
from webhook.core.policy import Policy
from webhook.core.reviews import Review

EXPORT_TO = "networking.istio.io/exportTo"
EXPOSING_TYPES = frozenset({"LoadBalancer", "NodePort"})
CONTROL_PLANE_USERS = frozenset(
    {
        "system:kube-controller-manager",
        "system:serviceaccount:kube-system:endpoint-controller",
        "system:serviceaccount:kube-system:endpointslice-controller",
        "system:serviceaccount:kube-system:endpointslicemirroring-controller",
    }
)


@checks("", "Service", subresources=("status",))
def check_service(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """An ExternalName Service may only name an allowed external host (or a cluster name)."""
    if review.operation == "DELETE":
        return ()
    if review.sub_resource == "status":
        return _status_violations(review)
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    spec = reader.spec(review.object)
    _check_external_ips(reader, spec)
    if policy.is_egress_namespace(review.namespace) and spec.get("type") in EXPOSING_TYPES:
        reader.add(
            "spec.type",
            f"a {spec.get('type')} Service in the egress namespace would expose the egress "
            "gateways outside the cluster, an open proxy to the allowed services; keep them "
            "ClusterIP",
        )
    if spec.get("type") != "ExternalName":
        return reader.violations
    raw = reader.string(spec.get("externalName"), "spec.externalName")
    if not raw or not raw.strip():
        if not reader.violations:
            reader.add("spec.externalName", "an ExternalName Service needs an externalName")
        return reader.violations
    namespace = review.namespace
    meta = reader.mapping((review.object or {}).get("metadata"), "metadata")
    annotations = reader.labels(meta.get("annotations"), "metadata.annotations") or {}
    export = annotations.get(EXPORT_TO)
    visible = visibility(
        reader,
        None if export is None else [e.strip() for e in export.split(",") if e.strip()],
        namespace,
        f"metadata.annotations[{EXPORT_TO}]",
        f"the {EXPORT_TO} annotation",
    )
    allowed = policy.allowed_directly(namespace) & allowed_directly_for(policy, visible)
    audience = namespace if not visible.beyond(namespace) else visible.describe()
    name = normalize(raw)
    if is_ip(name):
        held = egress_addresses(policy, view, namespace)
        problem = held.problem(name) if held is not None else None
        problem = problem or address_problem(policy, name, allowed, audience)
        if problem:
            reader.add("spec.externalName", problem)
        return reader.violations
    target = reader.host(raw, "spec.externalName")
    if target is None:
        return reader.violations
    if policy.is_internal(target):
        # the security team's own aliases for the gateways live in the egress namespace
        if not policy.is_egress_namespace(namespace) and names_egress_namespace(policy, target):
            reader.add("spec.externalName", egress_namespace_destination(target))
        return reader.violations
    covering = policy.services_covering(target) & allowed
    if not covering and policy.services_covering(target) & policy.allowed_directly(namespace):
        # the namespace may reach it directly: only the audience is wrong
        reader.add(
            "spec.externalName",
            f"{target!r} is allowed to namespace {namespace}, but this ExternalName Service "
            f"is visible to {audience}, which would all reach it directly, past the egress "
            f'gateway; add the annotation {EXPORT_TO}: "."',
        )
        return reader.violations
    if not covering:
        reader.add(
            "spec.externalName",
            f"an ExternalName Service sends mesh traffic for it straight to {target!r}, "
            f"bypassing the egress gateway; {target!r} is not an external service that "
            f"{audience} may reach directly (allowed: {policy.describe_allowed(allowed)}); "
            "ask for it in the egress policy, or call the host itself so it goes through the "
            "egress gateway",
        )
        return reader.violations
    _check_ports(reader, policy, spec, covering, target)
    return reader.violations


def _status_violations(review: Review) -> list[Violation]:
    """Only the platform's controllers report load balancer addresses (CVE-2020-8554).

    kube-proxy captures cluster traffic to ``status.loadBalancer.ingress[].ip`` like
    ``externalIPs``; tenants rarely hold ``services/status``, but a role that grants it must not
    let them capture other workloads' traffic.
    """
    if review.username.startswith(PLATFORM_USER_PREFIX) or review.username in PLATFORM_USERS:
        return []
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    status = reader.mapping((review.object or {}).get("status"), "status")
    balancer = reader.mapping(status.get("loadBalancer"), "status.loadBalancer")
    path = "status.loadBalancer.ingress"
    for where, ingress in reader.mappings(balancer.get("ingress"), path):
        if ingress.get("ip") is not None:
            reader.add(
                f"{where}.ip",
                "kube-proxy captures cluster traffic to a load balancer address like to "
                "externalIPs (CVE-2020-8554); only the platform's controllers may set it",
            )
    return reader.violations


def _check_external_ips(reader: Reader, spec: Mapping[str, Any]) -> None:
    """No ``externalIPs``: kube-proxy hands the Service traffic meant for them (CVE-2020-8554)."""
    for where, address in reader.strings(spec.get("externalIPs"), "spec.externalIPs"):
        reader.add(
            where,
            f"kube-proxy captures cluster traffic to {address!r} for this Service "
            "(CVE-2020-8554), so it can intercept other workloads' traffic to that address and "
            "answer for it; remove externalIPs (a LoadBalancer Service gets its address from "
            "the platform)",
        )


def _check_ports(
    reader: Reader, policy: Policy, spec: Mapping[str, Any], covering: frozenset[str], host: str
) -> None:
    """The Service's ports must be ports the allow list opens for that host."""
    ports = frozenset().union(*(policy.services[s].port_numbers for s in covering))
    for where, port in reader.mappings(spec.get("ports"), "spec.ports"):
        number = reader.integer(port.get("port"), f"{where}.port")
        if number is not None and number not in ports:
            reader.add(
                f"{where}.port",
                f"{host!r} is allowed on ports {', '.join(map(str, sorted(ports)))} only; port "
                f"{number} would open another direct path out",
            )


def _endpoint_audience(policy: Policy) -> tuple[frozenset[str], str]:
    """What hand-written endpoints may name, and who that is, for messages.

    The Service an endpoint belongs to decides who sees it (its ``networking.istio.io/exportTo``
    annotation, every namespace when omitted), and an Endpoints or EndpointSlice object cannot
    show that Service; either can change without the other.  So an external address there must
    be allowed directly to every namespace: any Sidecar importing the Service (``team-a/*``)
    reaches it.  A ServiceEntry with ``exportTo`` says who sees it and is judged for exactly them.
    """
    return policy.allowed_everywhere(), "every namespace"


# why a hand-written endpoint is judged for every namespace, and what to write instead
_AUDIENCE_HINT = (
    "; its Service may be seen and imported by any namespace, which the endpoint cannot show "
    "(declare a ServiceEntry with exportTo to limit who sees the destination)"
)


@checks("", "Endpoints")
def check_endpoints(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """Hand-written Endpoints may only list internal or directly allowed addresses."""
    if review.operation == "DELETE" or review.username in CONTROL_PLANE_USERS:
        return ()
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    if review.object is None:
        reader.add("", "the request carries no object to check")
        return reader.violations
    allowed, source = _endpoint_audience(policy)
    held = _held(review, policy, view)
    cuts = held.cuts if held is not None else frozenset()
    subsets = review.object.get("subsets")
    # each subset's addresses are dialled on that subset's ports
    reached = _Reached(policy, allowed)

    def judge_subset(reader: Reader, where: str, subset: Mapping[str, Any]) -> None:
        ports = subset.get("ports")
        # the allowed external services the subset's addresses are, when its ports need them
        track = reached if reached.needed(ports) else None
        for key in ("addresses", "notReadyAddresses"):
            items = subset.get(key)
            at = f"{where}.{key}"
            ips = _plain_ips(items)
            if ips is not None:

                def judge(
                    reader: Reader, index: int, ip: str, at: str = at, track: Any = track
                ) -> None:
                    where = f"{at}[{index}].ip"
                    _check_address(reader, policy, ip, where, allowed, source, held, track)

                judge_addresses(reader, policy, ips, judge, cuts)
                continue
            keys = _ip_chunks(policy, items, cuts)
            if keys is not None:

                def judge_item(
                    reader: Reader, index: int, at: str = at, items: Any = items, track: Any = track
                ) -> None:
                    address = items[index]
                    if is_object(address):
                        where = f"{at}[{index}]"
                        _read_address(reader, policy, address, where, allowed, source, held, track)

                reader.non_objects(cast("list[Any]", items), at)
                judge_classes(reader, keys, judge_item)
                continue
            for where_item, address in reader.mappings(items, at):
                _read_address(reader, policy, address, where_item, allowed, source, held, track)
        if track is not None:
            _check_endpoint_ports(reader, track, ports, f"{where}.ports")

    listed = reader.mappings(subsets, "subsets")
    for number, (where, subset) in enumerate(listed):
        if number == CLASSES_FROM and isinstance(listed, Pathed) and not reader.violations:
            # a long list breaking nothing so far: the rest as one list, where it may
            context = _Context(policy, allowed, source, held, cuts)
            rest = _subsets_whole(context, cast("list[Any]", subsets), number, judge_subset)
            if rest is not None:
                return rest
        judge_subset(reader, where, subset)
    return reader.violations


_SUBSET_KEYS = ("addresses", "notReadyAddresses")


@dataclass(frozen=True, slots=True)
class _Context:
    """What judging one hand-written endpoint address needs."""

    policy: Policy
    allowed: frozenset[str]
    source: str
    held: EgressAddresses | None
    cuts: frozenset[Block]


def _subsets_whole(
    context: _Context,
    subsets: list[dict[str, Any]],
    first: int,
    judge_subset: Callable[[Reader, str, Mapping[str, Any]], None],
) -> list[Violation] | None:
    """The violations of the subsets from ``first`` on (all objects) as judging them one by
    one with ``judge_subset`` finds them, or None where their addresses are not all plain.

    An Endpoints object can spread 50k addresses over as many subsets; judged one by one, no
    two addresses ever share a class.  So the addresses are judged as one list, in the order
    the subsets list them.  A subset's ports only matter for addresses inside an allowed
    service's ``addresses``: where none is, or every port of every subset is a port of all
    the services found, the addresses decide alone.  Otherwise only the subsets that can break
    a rule (an address violation, or a port some service of its addresses does not open) are
    judged one by one: the others would add nothing.
    """
    policy, allowed = context.policy, context.allowed
    rest = subsets[first:]
    lists: list[Any] = []
    for key in _SUBSET_KEYS:
        lists.append(list(map(dict.get, rest, repeat(key), repeat(_EMPTY))))
        if not set(map(type, lists[-1])) <= {list}:
            return None
    # each subset's addresses, then its notReadyAddresses, as the subset-by-subset pass reads them
    groups = list(chain.from_iterable(zip(*lists, strict=True)))
    ips = _plain_ips(list(chain.from_iterable(groups)))
    if ips is None:
        return None
    reached = _Reached(policy, allowed)

    def judge(reader: Reader, index: int, ip: str) -> None:
        # located once the pass is over: only a violation needs its subset
        where = f"{_AT}{index}"
        _check_address(reader, policy, ip, where, allowed, context.source, context.held, reached)

    # the classes are kept: placing the addresses of allowed services reads them again
    keys = address_keys(AddressClasses(policy, context.cuts), ips)
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    stopped = False
    try:
        judge_classes(reader, keys, lambda reader, index: judge(reader, index, ips[index]))
    except EnoughViolations:
        stopped = True
    starts = list(accumulate(map(len, groups), initial=0))
    # what the port rule reads, needed only once an address of an allowed service is found
    ports = _ports_keys(list(map(dict.get, rest, repeat("ports")))) if reached.services else []
    distinct = set(ports)
    if not reached.services or (not stopped and _ports_open(reached, distinct)):
        found = [_located(v, starts, first) for v in reader.violations]
        if stopped:
            raise EnoughViolations(found)
        return found
    suspects = {
        (bisect_right(starts, int(v.field[len(_AT) :])) - 1) // len(_SUBSET_KEYS)
        for v in reader.violations
        if v.field.startswith(_AT)
    }
    suspects |= _port_suspects(context, ports, distinct, ips, keys, starts)
    out = Reader(limit=STOP_AFTER_VIOLATIONS)
    for number in sorted(suspects):
        judge_subset(out, f"subsets[{first + number}]", rest[number])
    return out.violations


def _located(violation: Violation, starts: Sequence[int], first: int) -> Violation:
    """``violation`` at its subset's field, when ``_subsets_whole`` judged it by index."""
    if not violation.field.startswith(_AT):
        return violation
    index = int(violation.field[len(_AT) :])
    group = bisect_right(starts, index) - 1
    subset, key = divmod(group, len(_SUBSET_KEYS))
    field = f"subsets[{first + subset}].{_SUBSET_KEYS[key]}[{index - starts[group]}].ip"
    return Violation(field, violation.message)


def _port_suspects(
    context: _Context,
    ports: list[_Ports],
    distinct: set[_Ports],
    ips: list[str],
    keys: list[str | None],
    starts: list[int],
) -> set[int]:
    """The subsets (indexes of ``subsets``) listing an address of an allowed service with a
    port that service does not open, or ports of an unusual shape; more is harmless.

    Addresses of one ``AddressClasses`` class lie in the same services; each distinct pair of
    ports list and class is checked once.
    """
    classes = list(map(_class_of, keys, ips))
    probe = _Reached(context.policy, context.allowed)
    serving = {
        key: services
        for key, ip in dict(zip(classes, ips, strict=True)).items()
        if (services := probe.services_of(ip))
    }
    if not serving:
        return set()
    if len(distinct) * len(serving) <= _PAIRS_AT_ONCE:
        # a few ports lists and classes: every pair checked, before any address is placed
        bad = _bad_pairs(probe, serving, product(distinct, serving))
        if not bad:
            return set()
    at = list(compress(count(), map(serving.__contains__, classes)))
    at_classes = list(map(classes.__getitem__, at))
    subsets = len(ports)
    if starts[0::2] == list(range(subsets + 1)) and starts[1::2] == list(range(1, subsets + 1)):
        # one address per subset, none of them not ready: the address's index is its subset's
        owners = at
    else:
        lengths = [b - a for a, b in pairwise(starts)]
        group_of = list(chain.from_iterable(map(repeat, count(), lengths)))
        owners = list(map(floordiv, map(group_of.__getitem__, at), repeat(len(_SUBSET_KEYS))))
    owner_ports = list(map(ports.__getitem__, owners))
    if len(distinct) * len(serving) > _PAIRS_AT_ONCE:
        bad = _bad_pairs(probe, serving, set(zip(owner_ports, at_classes, strict=True)))
    return set(compress(owners, map(bad.__contains__, zip(owner_ports, at_classes, strict=True))))


# pairs of ports list and address class checked without placing the addresses first
_PAIRS_AT_ONCE = 4096


def _bad_pairs(
    probe: _Reached,
    serving: Mapping[str, frozenset[str]],
    pairs: Iterable[tuple[_Ports, str]],
) -> set[tuple[_Ports, str]]:
    """The pairs of (ports, address class) where a port is not one the class's services open,
    or the ports are of an unusual shape."""
    return {
        (key, cls)
        for key, cls in pairs
        if key is None or not _numbers(key) <= probe.numbers(serving[cls])
    }


# what the port rule reads of a subset's ports: its port number, when it lists one port, or
# the numbers of its ports; None for ports that are not a list of objects
_Ports = int | tuple[Any, ...] | None


def _ports_keys(lists: list[Any]) -> list[_Ports]:
    """Each subset's ``_Ports``, read in C when every subset lists one port object with an
    integer number (what the API server stores) or lists of objects."""
    if set(map(type, lists)) == {list}:
        if set(map(len, lists)) == {1}:
            only = list(map(itemgetter(0), lists))
            if set(map(type, only)) == {dict}:
                numbers = list(map(dict.get, only, repeat("port")))
                if set(map(type, numbers)) == {int}:
                    return numbers
        if set(map(type, chain.from_iterable(lists))) <= {dict}:
            return list(map(tuple, map(map, repeat(dict.get), lists, repeat(repeat("port")))))
    return list(map(_ports_key, lists))


def _ports_key(ports: Any) -> _Ports:
    """``_ports_keys`` for one subset."""
    if ports is None:
        return ()
    if type(ports) is not list or set(map(type, ports)) - {dict}:
        return None
    return tuple(p.get("port") for p in ports)


def _numbers(key: int | tuple[Any, ...]) -> frozenset[Any]:
    """The port numbers of a ``_Ports`` (non-integers are not read by the port rule, and
    make a subset a suspect, which costs only time)."""
    return frozenset((key,)) if type(key) is int else frozenset(key)  # type: ignore[arg-type]


# the field of an address judged in ``_subsets_whole`` until it is located
_AT = "\0"
_EMPTY: list[Any] = []


def _ports_open(reached: _Reached, distinct: set[_Ports]) -> bool:
    """Whether every port number of the subsets (``distinct``, their ``_ports_keys``) is a
    port of all the services ``reached`` found (an unusual ports list answers no)."""
    common = frozenset.intersection(*map(reached.numbers, reached.services))
    return all(key is not None and _numbers(key) <= common for key in distinct)


def _class_of(key: str | None, ip: str) -> str:
    """The class of an address: its ``AddressClasses`` key, or its own text (judged alone)."""
    return "\1" + ip if key is None else key


class _Reached:
    """The allowed external services each address of a group of hand-written endpoints is (an
    EndpointSlice, an Endpoints subset): Envoy dials every address on every port of the group,
    so each port must be a port of the services of each address.

    Memoized by address and by set of services: an Endpoints object can spread a few addresses
    over 40k subsets, each judged on its own.
    """

    __slots__ = (
        "_addressed",
        "_at",
        "_common",
        "_internal",
        "_last",
        "_numbers",
        "allowed",
        "policy",
        "services",
    )

    def __init__(self, policy: Policy, allowed: frozenset[str]) -> None:
        self.policy = policy
        self.allowed = allowed
        # the distinct sets of services the group's addresses are
        self.services: set[frozenset[str]] = set()
        self._at: dict[str, frozenset[str]] = {}
        self._numbers: dict[frozenset[str], frozenset[int]] = {}
        # ports every allowed service opens: a group naming only these needs no tracking
        numbers = [policy.services[s].port_numbers for s in allowed]
        self._common: frozenset[int] = frozenset.intersection(*numbers) if numbers else frozenset()
        self._last: tuple[Any, bool] = (None, False)
        self._addressed = tuple(
            (s, _ranges(policy.services[s].addresses))
            for s in sorted(allowed)
            if policy.services[s].addresses
        )
        self._internal = _ranges(policy.internal_networks)

    def needed(self, ports: Any) -> bool:
        """Whether ``ports`` can break the rule: some allowed service exists and a port is not
        one they all open (or the list is not the usual list of objects)."""
        if not self.allowed or ports is None:
            return False
        if ports == self._last[0]:
            # subsets usually repeat one ports list: compared in C
            return self._last[1]
        common = self._common
        needed = not (
            type(ports) is list and all(type(p) is dict and p.get("port") in common for p in ports)
        )
        self._last = (ports, needed)
        return needed

    def address(self, address: str) -> None:
        """An address judged allowed (internal, or inside allowed services' addresses)."""
        if not self._addressed:
            # no allowed service is reached by address: an address can only be internal
            return
        found = self.services_of(address)
        if found:
            self.services.add(found)

    def services_of(self, address: str) -> frozenset[str]:
        """The allowed services whose addresses hold ``address`` (none when it is internal)."""
        if not self._addressed:
            return _NONE
        found = self._at.get(address)
        if found is None:
            found = self._services_at(address)
            self._at[address] = found
        return found

    def _services_at(self, address: str) -> frozenset[str]:
        """The allowed services whose addresses hold ``address``; none when it is internal.
        Read once into integers and compared with the ranges read at construction."""
        net = address_range(address)
        if net is None:
            return _NONE
        version, first, last = net
        found = [
            s
            for s, ranges in self._addressed
            for v, lo, hi in ranges
            if v == version and lo <= first and last <= hi
        ]
        if not found:
            return _NONE
        for v, lo, hi in self._internal:
            if v == version and lo <= first and last <= hi:
                return _NONE
        return frozenset(found)

    def numbers(self, services: frozenset[str]) -> frozenset[int]:
        """The port numbers of ``services``."""
        numbers = self._numbers.get(services)
        if numbers is None:
            numbers = frozenset().union(*(self.policy.services[s].port_numbers for s in services))
            self._numbers[services] = numbers
        return numbers


_NONE: frozenset[str] = frozenset()


def _ranges(networks: Iterable[str]) -> tuple[tuple[int, int, int], ...]:
    """``address_range`` of each network that reads as one."""
    return tuple(r for r in map(address_range, networks) if r is not None)


def _check_endpoint_ports(reader: Reader, reached: _Reached, ports: Any, path: str) -> None:
    """Hand-written endpoints at an allowed external address are dialled on their own ports
    (Envoy connects to the endpoint's port, not the Service's), every address of the group on
    every port of it: each port must be a port of the allowed services of each address, or the
    address is reached on a port its service does not open.  Clears ``reached`` for the next
    group."""
    if not reached.services or ports is None:
        return
    groups = sorted(reached.services, key=sorted)
    reached.services.clear()
    listed = list(reader.mappings(ports, path))
    numbers_of = [(p.get("port"), where) for where, p in listed]
    for services in groups:
        numbers = reached.numbers(services)
        for number, where in numbers_of:
            if isinstance(number, int) and not isinstance(number, bool) and number not in numbers:
                reader.add(
                    f"{where}.port",
                    f"the proxy would connect to port {number} of "
                    f"{reached.policy.describe_allowed(services)}, which is not one of its ports "
                    f"({', '.join(map(str, sorted(numbers)))})",
                )


def _read_address(
    reader: Reader,
    policy: Policy,
    address: Mapping[str, Any],
    path: str,
    allowed: frozenset[str],
    source: str,
    held: EgressAddresses | None,
    reached: _Reached | None = None,
) -> None:
    """Read and check one ``addresses[]`` item of an Endpoints subset."""
    ip = reader.string(address.get("ip"), f"{path}.ip")
    if ip is None:
        reader.add(f"{path}.ip", "every endpoint address needs an ip")
        return
    _check_address(reader, policy, ip, f"{path}.ip", allowed, source, held, reached)


def _plain_ips(items: Any) -> list[str] | None:
    """The ``ip`` of every address when ``items`` is a list of objects each with a string ip."""
    if not isinstance(items, list):
        return None
    if not items:
        return []
    # type passes in C: an Endpoints can list 138k addresses
    if set(map(type, items)) != {dict}:
        return None
    ips = list(map(dict.get, items, repeat("ip")))
    return cast("list[str]", ips) if set(map(type, ips)) == {str} else None


def _ip_chunks(policy: Policy, items: Any, cuts: frozenset[Block]) -> ChunkedKeys | None:
    """Class keys of a long list of addresses ``_plain_ips`` cannot read whole, a chunk at a
    time: an odd address (a null ip, a number) is judged alone, not the whole list item by
    item.  None: a short list, or no list."""
    if type(items) is not list or not many(items):
        return None
    classes = AddressClasses(policy, cuts)

    def keys_of(chunk: Sequence[Any]) -> list[str | None] | None:
        ips = _plain_ips(chunk)
        return None if ips is None else address_keys(classes, ips)

    return ChunkedKeys(items, keys_of)


@checks("discovery.k8s.io", "EndpointSlice")
def check_endpoint_slice(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """Hand-written EndpointSlices may only list internal or directly allowed destinations."""
    if review.operation == "DELETE" or review.username in CONTROL_PLANE_USERS:
        return ()
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    obj = review.object
    if obj is None:
        reader.add("", "the request carries no object to check")
        return reader.violations
    # the allowed external services the slice's addresses are, whose ports it may name
    reached = _Reached(policy, _endpoint_audience(policy)[0])
    track = reached if reached.needed(obj.get("ports")) else None
    _judge_slice_addresses(reader, review, policy, view, track)
    if track is not None:
        _check_endpoint_ports(reader, track, obj.get("ports"), "ports")
    return reader.violations


def _judge_slice_addresses(
    reader: Reader, review: Review, policy: Policy, view: ClusterView, reached: _Reached | None
) -> None:
    """Judge every address of an EndpointSlice, collecting the allowed services they reach."""
    obj = cast("Mapping[str, Any]", review.object)
    allowed, source = _endpoint_audience(policy)
    # the security team's own aliases for the gateways live in the egress namespace
    tenant = not policy.is_egress_namespace(review.namespace)
    fqdn = obj.get("addressType") == "FQDN"
    held = None if fqdn else _held(review, policy, view)
    cuts = held.cuts if held is not None else frozenset()
    flat = _flat_addresses(obj.get("endpoints"))
    if flat is not None:
        # one address per endpoint is what controllers write: judged by class, in C where it can
        paths, values = flat
        if fqdn and many(values):
            # each name is judged right after it is read: its violation comes among the
            # judgements', in the endpoints' order
            hosts = read_hosts(reader, values, "endpoints", template=_ONE_ADDRESS, defer=True)

            def judge_name(reader: Reader, index: int, name: str) -> None:
                _check_name(
                    reader,
                    policy,
                    name,
                    hosts.path(index),
                    allowed,
                    source,
                    tenant=tenant,
                    reached=reached,
                )

            judge_read_hosts(reader, policy, hosts, judge_name)
            return
        if not fqdn:

            def judge_ip(reader: Reader, index: int, address: str) -> None:
                _check_address(
                    reader, policy, address, paths[index], allowed, source, held, reached
                )

            judge_addresses(reader, policy, values, judge_ip, cuts)
            return
    endpoints = obj.get("endpoints")
    keys = _endpoint_chunks(policy, endpoints, fqdn=fqdn, cuts=cuts)
    if keys is not None:
        listed = cast("list[Any]", endpoints)

        def judge_endpoint(reader: Reader, index: int) -> None:
            endpoint = listed[index]
            if is_object(endpoint):
                where = f"endpoints[{index}]"
                _read_endpoint(
                    reader,
                    policy,
                    endpoint,
                    where,
                    allowed,
                    source,
                    held,
                    fqdn=fqdn,
                    tenant=tenant,
                    reached=reached,
                )

        reader.non_objects(listed, "endpoints")
        judge_classes(reader, keys, judge_endpoint)
        return
    for where, endpoint in reader.mappings(endpoints, "endpoints"):
        _read_endpoint(
            reader,
            policy,
            endpoint,
            where,
            allowed,
            source,
            held,
            fqdn=fqdn,
            tenant=tenant,
            reached=reached,
        )


def _read_endpoint(
    reader: Reader,
    policy: Policy,
    endpoint: Mapping[str, Any],
    where: str,
    allowed: frozenset[str],
    source: str,
    held: EgressAddresses | None,
    *,
    fqdn: bool,
    tenant: bool,
    reached: _Reached | None = None,
) -> None:
    """Read and check the addresses of one ``endpoints[]`` item of an EndpointSlice."""
    for at, address in reader.strings(endpoint.get("addresses"), f"{where}.addresses"):
        if fqdn:
            _check_name(
                reader, policy, address, at, allowed, source, tenant=tenant, reached=reached
            )
        else:
            _check_address(reader, policy, address, at, allowed, source, held, reached)


def _endpoint_chunks(
    policy: Policy, endpoints: Any, *, fqdn: bool, cuts: frozenset[Block]
) -> ChunkedKeys | None:
    """Class keys of a long list of endpoints ``_flat_addresses`` cannot read whole, a chunk
    at a time: an odd endpoint (no address, two, a null) is judged alone, not the whole list
    endpoint by endpoint.  None: a short list, or no list."""
    if type(endpoints) is not list or not many(endpoints):
        return None
    classes = AddressClasses(policy, cuts)

    def keys_of(chunk: Sequence[Any]) -> list[str] | list[str | None] | None:
        flat = _flat_addresses(chunk)
        if flat is None:
            return None
        values = flat[1]
        if not fqdn:
            return address_keys(classes, values)
        # a name whose class is clean is skipped: only valid, normalized names may be
        joined = "\n".join(values)
        if not all_valid_joined(joined, len(values)):
            return None
        return exact_host_keys(policy, values, joined)

    return ChunkedKeys(endpoints, keys_of)


_ONE_ADDRESS = "endpoints[{}].addresses[0]"


class _Paths:
    """``endpoints[i].addresses[0]``, written when a violation needs it."""

    __slots__ = ()

    def __getitem__(self, index: int) -> str:
        return _ONE_ADDRESS.format(index)


def _flat_addresses(endpoints: Any) -> tuple[_Paths, list[str]] | None:
    """Paths and values when every endpoint is an object with exactly one string address."""
    if not isinstance(endpoints, list):
        return None
    if not endpoints:
        return _Paths(), []
    # type passes in C: an EndpointSlice can list 100k endpoints
    if set(map(type, endpoints)) != {dict}:
        return None
    lists: list[Any] = list(map(dict.get, endpoints, repeat("addresses")))
    if set(map(type, lists)) != {list} or set(map(len, lists)) != {1}:
        return None
    values = list(map(itemgetter(0), lists))
    return (_Paths(), values) if set(map(type, values)) == {str} else None


def _check_address(
    reader: Reader,
    policy: Policy,
    address: str,
    path: str,
    allowed: frozenset[str],
    source: str,
    held: EgressAddresses | None,
    reached: _Reached | None = None,
) -> None:
    """Judge one endpoint address; an allowed external one adds the services it reaches to
    ``reached`` (their ports are the only ones the endpoint may be dialled on)."""
    # the egress gateway itself first: the most telling reason for such an address
    problem = held.problem(address) if held is not None else None
    if problem:
        reader.add(path, problem)
        return
    address = address.strip()
    problem = address_problem(policy, address, allowed, source)
    if problem:
        reader.add(
            path,
            f"{problem}; a hand-written endpoint sends mesh traffic straight there, bypassing "
            "the egress gateway (declare cluster ranges in the policy's internalNetworks)"
            + _AUDIENCE_HINT,
        )
    elif reached is not None:
        # called once per class of addresses: the services whose ranges hold it are the class's
        reached.address(address)


def _held(review: Review, policy: Policy, view: ClusterView) -> EgressAddresses | None:
    """The egress namespace's addresses a tenant's endpoints may not list (None: no rule)."""
    return egress_addresses(policy, view, review.namespace)


def _check_name(
    reader: Reader,
    policy: Policy,
    name: str,
    path: str,
    allowed: frozenset[str],
    source: str,
    *,
    tenant: bool,
    reached: _Reached | None = None,
) -> None:
    host = reader.host(name, path)
    if host is None:
        return
    if policy.is_internal(host):
        if tenant and names_egress_namespace(policy, host):
            reader.add(path, egress_namespace_destination(host))
        return
    covering = policy.services_covering(host) & allowed
    if reached is not None and covering and not host.startswith("*."):
        reached.services.add(frozenset(covering))
    if host.startswith("*.") or not covering:
        reader.add(
            path,
            f"a hand-written endpoint sends mesh traffic straight to {host!r}, bypassing the "
            f"egress gateway; it is not an external service {source} may reach directly "
            f"(allowed: {policy.describe_allowed(allowed)})" + _AUDIENCE_HINT,
        )

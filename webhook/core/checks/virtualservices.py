"""VirtualService: routing, which decides where a proxy sends traffic for a host.

A VirtualService grants nothing by itself (the Sidecar import and the gateway decide what can be
reached), but it can *steer*: send traffic for an external host straight out instead of through the
egress gateway, mirror it to another destination, hand it to a gateway that carries another service,
or, exported to every namespace, hijack other tenants' calls
(docs/istio-semantics.md#virtualservice-exportto, trap 7).  So every destination of every route is
checked: ``route``, ``mirror(s)``, ``redirect``/``rewrite`` authorities (and the ``host`` or
``:authority`` request headers that rewrite it too) and ``delegate``
(docs/istio-semantics.md#virtualservice-destinations).  A rewrite is judged where the Host picks
the upstream (docs/istio-semantics.md#virtualservice-authority).

In the egress namespace VirtualServices are the security team's two-leg routes: from sidecars
(``mesh``) to a policy egress gateway, and from that gateway to the services it carries.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from itertools import chain, compress, repeat
from operator import is_, is_not, itemgetter, not_, or_
from types import NoneType
from typing import Any, NamedTuple, cast, overload

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import (
    CLASS_SAMPLE,
    MESH,
    OWN_TEXT,
    AddressClasses,
    Reader,
    ReadHosts,
    Visibility,
    egress_fqdns,
    gateway_ref,
    gateway_subset_problem,
    is_object,
    judge_classes,
    many,
    nearest_known,
    overbroad,
    passthrough_subset_problem,
    policy_gateway,
    read_hosts,
    repeated_texts,
    rule_representatives,
    split_authority,
    visibility,
)
from webhook.core.decisions import STOP_AFTER_VIOLATIONS, Violation
from webhook.core.hosts import (
    LABEL,
    MAX_HOST_LENGTH,
    VALID_NAME,
    AddressRanges,
    address_ranges,
    all_valid_names,
    is_ip,
    normalize,
)
from webhook.core.naming import tenant_route_name
from webhook.core.policy import Policy, Workloads
from webhook.core.reviews import Review

_ROUTE_KINDS = ("http", "tls", "tcp")
_HTTP_EXTRAS = frozenset(("mirror", "mirrors", "redirect", "rewrite", "delegate"))
# request headers Istio turns into a rewrite of the authority, as ``rewrite.authority`` is
# (compared case-folded: a superset of the ASCII case-insensitive match Istio makes)
_AUTHORITY_HEADERS = frozenset(("host", ":authority"))
_HEADER_OPERATIONS = ("set", "add")


# _Source and _Route are NamedTuples rather than frozen dataclasses: one of each is built per
# route on the admission path, and a frozen dataclass's __init__ costs several times more


class _Source(NamedTuple):
    """Client workloads a mesh route applies to (``sourceNamespace`` / ``sourceLabels``)."""

    namespace: str
    # label items in document order (hashable, so equal sources share one policy lookup)
    labels: tuple[tuple[str, str], ...] = ()


class _Targets(Sequence[tuple[str, str]]):
    """``(path, host)`` of each destination of a rule, in order; the paths of a long list read
    in passes of C (``_plain_destinations``) are written only when read: a tcp rule can list
    80k destinations, and writing a path each cost more than judging them."""

    __slots__ = ("_count", "_parts", "_starts")

    def __init__(self) -> None:
        # each part: the hosts, and their paths or the template of their paths
        self._parts: list[tuple[list[str], list[str] | str]] = []
        self._starts: list[int] = []
        self._count = 0

    def append(self, pair: tuple[str, str]) -> None:
        """Add one destination and its path."""
        if not self._parts or isinstance(self._parts[-1][1], str):
            self._starts.append(self._count)
            self._parts.append(([], []))
        hosts, paths = self._parts[-1]
        hosts.append(pair[1])
        cast("list[str]", paths).append(pair[0])
        self._count += 1

    def extend(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Add destinations and their paths."""
        for pair in pairs:
            self.append(pair)

    def add_listed(self, hosts: list[str], template: str) -> None:
        """Add ``hosts``, the path of the n-th being ``template.format(n)``."""
        self._starts.append(self._count)
        self._parts.append((hosts, template))
        self._count += len(hosts)

    def hosts(self) -> list[str]:
        """The hosts alone, no path written."""
        if len(self._parts) == 1:
            return self._parts[0][0]
        return list(chain.from_iterable(hosts for hosts, _ in self._parts))

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> tuple[str, str]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, str]]: ...

    def __getitem__(self, index: int | slice) -> tuple[str, str] | Sequence[tuple[str, str]]:
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        at = bisect_right(self._starts, index) - 1
        hosts, paths = self._parts[at]
        offset = index - self._starts[at]
        path = paths.format(offset) if isinstance(paths, str) else paths[offset]
        return path, hosts[offset]

    def __eq__(self, other: object) -> bool:
        # as the tuple of pairs it stands for
        if isinstance(other, _Targets | tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for hosts, paths in self._parts:
            if isinstance(paths, str):
                yield from zip(map(paths.format, range(len(hosts))), hosts, strict=True)
            else:
                yield from zip(paths, hosts, strict=True)


# destinations as they are gathered: a list, or a _Targets once a long list is among them
_Found = list[tuple[str, str]] | _Targets


def _hosts_of(destinations: Sequence[tuple[str, str]]) -> list[str]:
    """The hosts of ``(path, host)`` pairs, no path written for ``_Targets``."""
    if isinstance(destinations, _Targets):
        return destinations.hosts()
    return list(map(itemgetter(1), destinations))


class _Route(NamedTuple):
    """One http/tls/tcp rule reduced to what matters for egress."""

    gateways: frozenset[str]
    sources: tuple[_Source, ...]
    destinations: Sequence[tuple[str, str]]
    redirects: tuple[tuple[str, str], ...]
    rewrites: tuple[tuple[str, str], ...]
    delegate: tuple[str, str] | None
    # (path, gateway host, subset) of destinations naming a subset
    subsets: tuple[tuple[str, str, str], ...] = ()
    # the SNIs a tls rule matches; None when the rule does not pin every match to SNIs
    sni_hosts: tuple[str, ...] | None = None

    @property
    def mesh(self) -> bool:
        """True when the rule programs sidecars (not only gateways)."""
        return MESH in self.gateways


@lru_cache(maxsize=1024)
def _short_name_suffix(namespace: str, domain: str) -> str | None:
    """``.<namespace>.svc.<domain>`` when a valid label plus it is a valid name: short names are
    then expanded without the general path (a route list can name 18k services)."""
    suffix = f".{namespace}.svc.{normalize(domain)}"
    return suffix if VALID_NAME.fullmatch("a" + suffix) is not None else None


class _Memo:
    """Answers that one decision needs again and again, computed once.

    Generated VirtualServices repeat the same client labels, destination host and gateway over
    dozens of routes; each distinct one is looked up once per decision.
    """

    __slots__ = (
        "_allowed",
        "_gateways",
        "_hosts",
        "_sources",
        "domain",
        "namespace",
        "policy",
        "ranges",
        "short_suffix",
        "viewers",
    )

    def __init__(self, policy: Policy, namespace: str) -> None:
        self.policy = policy
        self.namespace = namespace
        self.domain = policy.cluster_domain
        self._hosts: dict[str, str] = {}
        self._sources: dict[_Source, tuple[frozenset[str], str]] = {}
        self._allowed: dict[tuple[bool, tuple[_Source, ...]], tuple[frozenset[str], str]] = {}
        self._gateways: dict[
            tuple[str, tuple[str, ...], frozenset[str], str, str | None], tuple[str, ...]
        ] = {}
        # services every other namespace that sees the VirtualService may reach (None: private)
        self.viewers: frozenset[str] | None = None
        self.short_suffix = _short_name_suffix(namespace, self.domain)
        # a list of destination addresses and the ranges it was read as, to class it by
        self.ranges: tuple[list[str], AddressRanges] | None = None

    def host(self, reader: Reader, value: str, path: str) -> str | None:
        """``reader.host`` for a route destination, remembered when valid."""
        checked = self._hosts.get(value)
        if (
            checked is None
            and self.short_suffix is not None
            # a dotted name is never a short one: most hosts skip the regex
            and "." not in value
            and LABEL.fullmatch(value)
        ):
            checked = value + self.short_suffix
            if len(checked) <= MAX_HOST_LENGTH:
                self._hosts[value] = checked
                return checked
            checked = None
        if checked is None:
            # invalid hosts are not remembered: each occurrence is reported at its own path
            checked = reader.host(
                value, path, expand_in=self.namespace, cluster_domain=self.domain, allow_ip=True
            )
            if checked is not None:
                self._hosts[value] = checked
        return checked

    def route_allowed(self, route: _Route) -> tuple[frozenset[str], str]:
        """Services every client of the route may reach, and who those clients are."""
        key = (route.mesh, route.sources)
        found = self._allowed.get(key)
        if found is None:
            found = self._allowed[key] = self._route_allowed(route)
        return found

    def _route_allowed(self, route: _Route) -> tuple[frozenset[str], str]:
        namespace = self.namespace
        if not route.mesh:
            return self.policy.allowed_for_some(namespace), f"workloads of namespace {namespace}"
        allowed: frozenset[str] | None = None
        who: list[str] = []
        for source in route.sources:
            found, described = self._source_allowed(source)
            who.append(described)
            allowed = found if allowed is None else allowed & found
        return allowed or frozenset(), " and ".join(sorted(set(who))) or f"namespace {namespace}"

    def _source_allowed(self, source: _Source) -> tuple[frozenset[str], str]:
        found = self._sources.get(source)
        if found is None:
            # no sourceLabels: the route steers every workload of the namespace, so only what
            # all of them may reach counts (the gateway authorizes label rules by namespace)
            workloads = Workloads(source.namespace, dict(source.labels) or None)
            found = self.policy.allowed_for(workloads), workloads.describe()
            self._sources[source] = found
        return found

    def gateway_problems(
        self,
        fqdn: str,
        route_hosts: tuple[str, ...],
        allowed: frozenset[str],
        source: str,
        namespace: str | None = None,
        more: tuple[str, ...] = (),
    ) -> tuple[str, ...]:
        """``_gateway_problems`` of ``route_hosts + more``, once per distinct question.

        ``more`` are a route's own rewritten hosts.  ``_gateway_problems`` asks of each host
        of a non-empty list on its own, so they are looked up one by one after the shared
        hosts: keyed with them, a rewrite of its own in each of 12k rules asked about the
        VirtualService's 12k hosts again for each rule.
        """
        key = (fqdn, route_hosts, allowed, source, namespace)
        found = self._gateways.get(key)
        if found is None:
            found = self._gateways[key] = _gateway_problems(
                self.policy, fqdn, route_hosts, allowed, source, namespace
            )
        if not more:
            return found
        # an empty list has problems of its own (the gateway's services), a longer one not
        problems = list(found) if route_hosts else []
        for host in more:
            problems.extend(self.gateway_problems(fqdn, (host,), allowed, source, namespace))
        return tuple(problems)


@checks("networking.istio.io", "VirtualService")
def check_virtual_service(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """Every route of a VirtualService must lead to an allowed place by an allowed path."""
    del view
    if review.operation == "DELETE":
        return ()
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    namespace = review.namespace
    memo = _Memo(policy, namespace)
    spec = reader.spec(review.object)
    hosts = _hosts(reader, policy, spec, namespace)
    top, refs = _gateway_refs(reader, spec.get("gateways"), "spec.gateways")
    top_refs = refs or (MESH,)
    routes, gateway_entries = _routes(reader, memo, spec, top_refs)
    gateway_entries[:0] = top
    if policy.is_egress_namespace(namespace):
        _check_egress_namespace(reader, memo, hosts, routes, gateway_entries)
    else:
        visible = visibility(reader, spec.get("exportTo"), namespace)
        exported = visible.beyond(namespace)
        if exported:
            memo.viewers = _viewers_allowed(policy, visible)
        _check_tenant(reader, memo, hosts, routes, gateway_entries, top_refs, exported)
    return reader.violations


def _hosts(reader: Reader, policy: Policy, spec: Mapping[str, Any], namespace: str) -> ReadHosts:
    return read_hosts(
        reader,
        spec.get("hosts"),
        "spec.hosts",
        expand_in=namespace,
        cluster_domain=policy.cluster_domain,
        allow_ip=True,
    )


# Field paths are built only where a value is kept for a later message (a destination, a
# gateway reference) or when a value has the wrong shape: a route that is fine costs no strings.


def _objects(
    reader: Reader, value: Any, prefix: str, name: str = ""
) -> list[tuple[int, Mapping[str, Any]]]:
    """``(i, item)`` for each object of the list at ``prefix + name``, as ``Reader.mappings``."""
    if value is None:
        return []
    if type(value) is list and _all_of(value, dict):
        return list(enumerate(value))
    # some shape is wrong (or an object is not a dict): let the reader report it, in its words
    # and order
    reader.mappings(value, prefix + name)
    if not isinstance(value, list | tuple):
        return []
    return [(i, item) for i, item in enumerate(value) if is_object(item)]


class _Objects(NamedTuple):
    """The objects of a list and their indexes in it: a pair per item would cost more than
    the list itself, a rule list holds 60k."""

    indices: Sequence[int]
    items: list[Mapping[str, Any]]


_NO_OBJECTS = _Objects((), [])


def _object_columns(reader: Reader, value: Any, prefix: str) -> _Objects:
    """``_objects`` as two columns; a list of objects alone is kept as it is."""
    if value is None:
        return _NO_OBJECTS
    if type(value) is list and _all_of(value, dict):
        return _Objects(range(len(value)), value)
    found = _objects(reader, value, prefix)
    return _Objects(list(map(itemgetter(0), found)), list(map(itemgetter(1), found)))


def _object(reader: Reader, value: Any, prefix: str, name: str) -> Mapping[str, Any]:
    """``value`` if it is an object, as ``Reader.mapping``."""
    if value is None or is_object(value):
        return value or {}
    return reader.mapping(value, prefix + name)


def _string(reader: Reader, value: Any, prefix: str, name: str) -> str | None:
    """``value`` if it is a string, as ``Reader.string``."""
    if value is None or isinstance(value, str):
        return value
    return reader.string(value, prefix + name)


# the rules of a VirtualService in order: each read as a ``_Route``, or a long list as ``_Rules``
_Routes = list["_Route | _Rules"]
# gateway references in document order: (path, ref), or a long list's, read from it on demand
_GatewayEntries = list["tuple[str, str] | _Rules | _Refs"]


def _routes(
    reader: Reader, memo: _Memo, spec: Mapping[str, Any], top_refs: tuple[str, ...]
) -> tuple[_Routes, _GatewayEntries]:
    top = frozenset(top_refs)
    routes: _Routes = []
    gateway_entries: _GatewayEntries = []
    fast: _ManyRoutes | None = None
    for kind in _ROUTE_KINDS:
        value = spec.get(kind)
        if value is None:
            continue
        base = f"spec.{kind}"
        objects = _object_columns(reader, value, base)
        if many(objects.items):
            if fast is None:
                fast = _ManyRoutes(memo, top)
            fast.read(reader, kind, objects, base, routes, gateway_entries)
            continue
        entries: _GatewayEntries = []
        for i, item in zip(*objects, strict=True):
            routes.append(_route(reader, memo, kind, item, f"{base}[{i}]", top, entries))
        gateway_entries.extend(entries)
    return routes, gateway_entries


def _each_route(routes: _Routes) -> Iterator[_Route]:
    """Every rule's ``_Route``, long lists' built one by one."""
    for route in routes:
        if isinstance(route, _Rules):
            yield from map(route.route, range(len(route.parts)))
        else:
            yield route


def _each_entry(gateway_entries: _GatewayEntries) -> Iterator[tuple[str, str]]:
    """Every ``(path, ref)`` gateway reference, long lists' with their paths built."""
    for entry in gateway_entries:
        if isinstance(entry, _Rules | _Refs):
            yield from entry.gateway_entries()
        else:
            yield entry


class _Refs:
    """A long list of gateway references, all strings, read from one field: each reference's
    path is built only when it is reported."""

    __slots__ = ("base", "refs")

    def __init__(self, base: str, refs: list[str]) -> None:
        self.base = base
        self.refs = refs

    def gateway_entries(self) -> Iterator[tuple[str, str]]:
        """``(path, ref)`` of every reference, in order."""
        return zip(
            map("{}[{}]".format, repeat(self.base), range(len(self.refs))), self.refs, strict=True
        )


class _MatchRefs(_Refs):
    """The gateway lists of a long match list, as one entry: each reference's path is built
    only when it is reported."""

    __slots__ = ("own",)

    def __init__(self, rpath: str, own: list[tuple[int, list[str]]]) -> None:
        super().__init__(rpath, list(chain.from_iterable(map(itemgetter(1), own))))
        # (j, refs) of each match with a list of its own
        self.own = own

    def gateway_entries(self) -> Iterator[tuple[str, str]]:
        """``(path, ref)`` of every reference, in order."""
        return _own_entries(self.base, self.own)


def _gateway_refs(reader: Reader, value: Any, path: str) -> tuple[_GatewayEntries, tuple[str, ...]]:
    """A ``gateways`` field's entries and references; a long list of strings is one ``_Refs``."""
    if type(value) is list and many(value) and set(map(type, value)) == {str}:
        return [_Refs(path, value)], tuple(value)
    entries = reader.strings(value, path)
    return list(entries), tuple(ref for _, ref in entries)


def _route(
    reader: Reader,
    memo: _Memo,
    kind: str,
    item: Mapping[str, Any],
    rpath: str,
    top: frozenset[str],
    gateway_entries: _GatewayEntries,
) -> _Route:
    """One rule read the general way: every shape problem reported, in the rule's order."""
    gateways, sources = _clients(
        reader, item.get("match"), rpath, memo.namespace, top, gateway_entries
    )
    subsets: list[tuple[str, str, str]] = []
    entries = item.get("route")
    # an everyday rule's few destinations are a list; a long list read in C keeps its paths
    # unwritten (_Targets)
    destinations: _Found
    plain = _plain_destinations(memo, entries, rpath, subsets)
    if plain is None:
        destinations = []
        _destinations(reader, memo, destinations, entries, rpath, ".route", subsets)
    else:
        destinations = _Targets()
        destinations.add_listed(*plain)
    redirects: list[tuple[str, str]] = []
    rewrites: list[tuple[str, str]] = []
    delegate = None
    # only http rules mirror, redirect, rewrite or delegate, and most do none of it
    if kind == "http" and not _HTTP_EXTRAS.isdisjoint(item):
        delegate, destinations = _http_extras(
            reader, memo, item, rpath, destinations, redirects, rewrites, subsets
        )
    if kind == "http":
        _header_authorities(reader, memo, item, entries, rpath, rewrites)
    return _Route(
        gateways,
        sources,
        destinations if isinstance(destinations, _Targets) else tuple(destinations),
        tuple(redirects),
        tuple(rewrites),
        delegate,
        tuple(subsets),
        _sni_hosts(item.get("match")) if kind == "tls" and subsets else None,
    )


# match fields that pick clients; a match with none of them applies to the rule's gateways
_CLIENT_FIELDS = frozenset(("gateways", "sourceNamespace", "sourceLabels"))


class _Unusual(Exception):
    """A rule of a shape ``_ManyRoutes`` leaves to ``_route`` (raised before any side effect)."""


# a destination's field within its rule and its subset, if any
_Name = tuple[str, str | None]
# where a rule's j-th route or mirrors entry names its destination, for the usual few entries,
# with no subset: one tuple shared by every rule
_ROUTE_NAMES = tuple((f".route[{j}].destination", None) for j in range(256))
_MIRRORS_NAMES = tuple((f".mirrors[{j}].destination", None) for j in range(256))
_MIRROR_NAME: _Name = (".mirror", None)


def _target(
    raws: list[str], names: list[_Name], target: Any, plain: _Name, subsets: list[bool]
) -> None:
    """Gather the host of a ``destination`` (or ``mirror``) named ``plain[0]``."""
    if type(target) is not dict:
        raise _Unusual
    value = target.get("host")
    if value is None:
        return
    subset = target.get("subset")
    if type(value) is not str or (subset is not None and type(subset) is not str):
        raise _Unusual
    if value:
        raws.append(value)
        if subset:
            subsets.append(True)
            names.append((plain[0], subset))
        else:
            names.append(plain)


def _entries(
    raws: list[str],
    names: list[_Name],
    value: Any,
    known: tuple[_Name, ...],
    name: str,
    subsets: list[bool],
) -> None:
    """Gather the destination hosts of the entries of a ``route`` or ``mirrors`` list."""
    if type(value) is not list:
        raise _Unusual
    for j, entry in enumerate(value):
        if type(entry) is not dict:
            raise _Unusual
        target = entry.get("destination")
        if target is not None:
            plain = known[j] if j < len(known) else (f"{name}[{j}].destination", None)
            _target(raws, names, target, plain, subsets)


def _all_of(values: list[Any], kind: type) -> bool:
    """Whether every value is exactly of type ``kind`` (true of none)."""
    return set(map(type, values)) <= {kind}


def _authority(part: Any) -> str | None:
    """The host of a redirect or rewrite authority ("" or None: none to check)."""
    if part is None:
        return None
    if type(part) is not dict:
        raise _Unusual
    authority = part.get("authority")
    if authority is None:
        return None
    if type(authority) is not str:
        raise _Unusual
    return split_authority(authority) if authority else None


# what a rule of the usual shape holds, gathered before anything is reported: its clients (None:
# no match names any, then the rule's count of matches says its sources), the (name, subset) of
# each destination, the redirect host, the field of each authority rewrite within the rule
# (``.rewrite.authority``, then the authority headers in ``_header_authorities``'s order), and
# the delegate's namespace; the hosts of the destinations, redirect and rewrites follow one
# another in that order in the list's hosts
# the gateways and sources of a rule whose matches name some, and its own gateway lists
_Clients = tuple[frozenset[str], tuple[_Source, ...], list[tuple[int, list[str]]]]
_Gathered = tuple[
    _Clients | None,
    int,
    list[_Name],
    str | None,
    tuple[str, ...],
    str | None,
]
# the rewrite of a rule that has none, and of one rewriting ``rewrite.authority`` alone
_NO_REWRITES: tuple[str, ...] = ()
_REWRITE_AUTHORITY = (".rewrite.authority",)


class _ManyRoutes:
    """Long rule lists read in one loop, without the general path's layers of calls.

    A 3 MiB VirtualService holds 10k-20k rules.  A rule whose every part has the expected
    shape (objects where objects belong, strings where strings do) is gathered first, with no
    side effect; the hosts of all such rules are then validated together in a few passes of C
    (``all_valid_names``).  When all are valid the list is kept as gathered (``_Rules``): no
    ``_Route`` and no field path is built until a rule is judged on its own.  Otherwise a
    second loop builds each rule's ``_Route`` in the order ``_route`` follows, checking hosts
    one by one.  Either way the ``_Route`` and any violation are the ones ``_route`` gives
    (``tests/unit/test_class_fast_paths.py`` holds them equal).  A rule of another shape is
    read by ``_route`` in its turn.
    """

    __slots__ = ("_default", "_sources", "memo", "mesh_top", "subset_flags", "top")

    def __init__(self, memo: _Memo, top: frozenset[str]) -> None:
        self.memo = memo
        self.top = top
        self.mesh_top = MESH in top
        self._default = _Source(memo.namespace)
        # the sources of a rule with n matches that name no clients, by n (0: no match list)
        self._sources: dict[int, tuple[_Source, ...]] = {}
        # one entry per subset the last read gathered (a list: appended to where found)
        self.subset_flags: list[bool] = []

    def sources(self, count: int) -> tuple[_Source, ...]:
        """What ``_clients`` gives a rule of ``count`` matches that name no clients."""
        found = self._sources.get(count)
        if found is None:
            if count == 0:
                found = (self._default,)  # no match list: the whole namespace, as one source
            elif self.mesh_top:
                found = (self._default,) * count
            else:
                found = ()
            self._sources[count] = found
        return found

    def read(
        self,
        reader: Reader,
        kind: str,
        objects: _Objects,
        base: str,
        routes: _Routes,
        gateway_entries: _GatewayEntries,
    ) -> None:
        """Append the rules of ``objects`` (the list at ``base``), as one ``_Rules``."""
        self.subset_flags.clear()
        items = objects.items
        found = self._plain_rules(kind, objects)
        if found is not None:
            columns, raws = found
        else:
            raws = []
            gather = self._gather
            starts: list[int] = []
            parts: list[_Gathered | None] = []
            for item in items:
                starts.append(len(raws))
                parts.append(gather(kind, item, raws))
            columns = _Columns(objects.indices, parts, starts)
        valid = self._valid_hosts(raws)
        if valid is None:
            # some host is invalid (or unusual): every rule built in order, each host checked
            entries: _GatewayEntries = []
            for route in self._read_each(reader, kind, base, items, columns, raws, entries):
                routes.append(route)
            gateway_entries.extend(entries)
            return
        rules = _Rules(self, kind, base, columns, *valid, items)
        memo, top, done = self.memo, self.top, rules.done
        # plain rules are all of the usual shape: no rule to look for
        odd = None if columns.plain else map(is_, columns.parts, repeat(None))
        for pos in () if odd is None else compress(range(len(items)), odd):
            # a rule of another shape, read the general way in its turn
            entries = []
            rpath = f"{base}[{columns.indices[pos]}]"
            route = _route(reader, memo, kind, items[pos], rpath, top, entries)
            done[pos] = (route, entries)
        rules.summarize()
        routes.append(rules)
        gateway_entries.append(rules)

    def _read_each(
        self,
        reader: Reader,
        kind: str,
        base: str,
        items: list[Mapping[str, Any]],
        columns: _Columns,
        raws: list[str],
        gateway_entries: _GatewayEntries,
    ) -> Iterator[_Route]:
        """Every rule's ``_Route`` in order, hosts checked one by one (some is invalid)."""
        memo, top, host = self.memo, self.top, self.memo.host
        k = 0
        for pos, (i, parts) in enumerate(zip(columns.indices, columns.parts, strict=True)):
            rpath = f"{base}[{i}]"
            if parts is None:
                yield _route(reader, memo, kind, items[pos], rpath, top, gateway_entries)
                continue
            clients, count, targets, redirect, rewrite, delegate = parts
            if clients is None:
                gateways = top
                sources = self.sources(count)
            else:
                gateways, sources, own = clients
                gateway_entries.extend(_own_entries(rpath, own))
            destinations: list[tuple[str, str]] = []
            subsets: list[tuple[str, str, str]] = []
            for name, subset in targets:
                path = f"{rpath}{name}.host"
                checked = host(reader, raws[k], path)
                k += 1
                if checked is not None:
                    destinations.append((path, checked))
                    if subset is not None:
                        subsets.append((f"{rpath}{name}.subset", checked, subset))
            redirects: tuple[tuple[str, str], ...] = ()
            rewrites: list[tuple[str, str]] = []
            if redirect:
                path = f"{rpath}.redirect.authority"
                checked = host(reader, raws[k], path)
                k += 1
                if checked is not None:
                    redirects = ((path, checked),)
            for name in rewrite:
                path = f"{rpath}{name}"
                checked = host(reader, raws[k], path)
                k += 1
                if checked is not None:
                    rewrites.append((path, checked))
            yield _Route(
                gateways,
                sources,
                tuple(destinations),
                redirects,
                tuple(rewrites),
                None if delegate is None else (f"{rpath}.delegate", delegate),
                tuple(subsets),
                _sni_hosts(items[pos].get("match")) if kind == "tls" and subsets else None,
            )

    def _plain_rules(self, kind: str, objects: _Objects) -> tuple[_Columns, list[str]] | None:
        """What ``_gather`` gives for a list of rules all of one plain shape, found in passes
        of C: one route entry to one destination host (a string subset allowed), and for http
        rules the same extras in each (one mirror, one mirrors entry, a delegate, no redirect)
        and the same authority rewrites (``rewrite.authority``, headers setting the same
        authority headers: ``_rewrite_columns``); matches that name no clients, or one match
        per rule naming its own gateways.  None unless every rule is such a rule."""
        rules: list[Any] = objects.items
        first = rules[0] if rules else {}
        if (
            type(first) is not dict
            or "route" not in first
            or (kind == "http" and "redirect" in first)
        ):
            # not even the first rule is plain: no need to look at the others
            return None
        if not _all_of(rules, dict):
            return None
        # only http rules mirror, redirect, rewrite or delegate: other rules' fields go unread
        extras = _HTTP_EXTRAS.intersection(chain.from_iterable(rules)) if kind == "http" else ()
        if "redirect" in extras:
            return None
        found = self._match_clients(rules)
        if found is None:
            return None
        counts, clients = found
        routes: list[Any] = list(map(dict.get, rules, repeat("route")))
        if not _all_of(routes, list) or set(map(len, routes)) != {1}:
            return None
        entries: list[Any] = list(map(itemgetter(0), routes))
        if not _all_of(entries, dict):
            return None
        rewrites: tuple[str, ...] = _NO_REWRITES
        rewritten: list[list[str]] = []
        if kind == "http":
            # every rule's rewrites of the same fields, or some rule read the slow way
            found_rewrites = _rewrite_columns(rules, entries, "rewrite" in extras)
            if found_rewrites is None:
                return None
            rewrites, rewritten = found_rewrites
        targets: list[Any] = list(map(dict.get, entries, repeat("destination")))
        hosts = _plain_targets(targets)
        if hosts is None:
            return None
        columns, more, delegates = self._extras(rules, extras)
        if columns is None:
            return None
        named: list[Any] = list(map(dict.get, targets, repeat("subset")))
        subsets = any(named)
        if subsets:
            # each subset gathered as _gather gathers it (any other type is a rule of another
            # shape to it); a falsy subset of any type is no subset to the general path
            if not set(map(type, named)) <= {NoneType, str}:
                return None
            self.subset_flags.append(True)
        plain = 0
        parts: list[_Gathered | None]
        if clients is None and delegates is None and not more and not rewrites:
            plain = len(set(counts))
            parts = _plain_parts(counts, named, subsets)
        else:
            # a rule's names depend on its subset only: a list per subset
            lists = {subset: [_route_name(subset), *more] for subset in set(named)}
            parts = list(
                zip(
                    repeat(None) if clients is None else clients,
                    counts,
                    map(lists.__getitem__, named),
                    repeat(None),
                    repeat(rewrites),
                    repeat(None) if delegates is None else delegates,
                    strict=False,
                )
            )
        if not more and not rewrites:
            # one host per rule: rule n's is the n-th
            return _Columns(objects.indices, parts, range(len(hosts)), plain), hosts
        # each rule's hosts in _gather's order: destination, mirrors, rewrites
        width = 1 + len(more) + len(rewrites)
        raws: list[str] = list(chain.from_iterable(zip(hosts, *columns, *rewritten, strict=True)))
        return _Columns(objects.indices, parts, range(0, len(raws), width)), raws

    def _match_clients(
        self, rules: list[dict[str, Any]]
    ) -> tuple[Sequence[int], list[_Clients] | None] | None:
        """Each rule's count of matches (0: no match list), and its clients when some match
        names clients (None: no match does), found in passes of C; None when a rule then has
        other than one match, or some match list is of an unusual shape."""
        matches: list[Any] = list(map(dict.get, rules, repeat("match")))
        absent = matches.count(None)
        if absent == len(matches):
            # tcp rules match on nothing more often than not
            return [0] * len(matches), None
        lists = [match for match in matches if match is not None] if absent else matches
        if not _all_of(lists, list):
            return None
        each = list(chain.from_iterable(lists))
        if not _all_of(each, dict):
            return None
        if _CLIENT_FIELDS.isdisjoint(chain.from_iterable(each)):
            if not absent:
                return list(map(len, matches)), None
            return [0 if match is None else len(match) for match in matches], None
        # one match per rule: one naming no clients gets what _clients gives it too
        if absent or set(map(len, matches)) != {1}:
            return None
        clients = self._own_gateways(each)
        return None if clients is None else ([1] * len(matches), clients)

    def _own_gateways(self, matches: list[dict[str, Any]]) -> list[_Clients] | None:
        """What ``_clients`` gives each rule of a single match naming its own gateways (or
        none), sources left to the namespace, found in passes of C (lists that repeat: each
        distinct one read once).  None: some match is of another shape."""
        owns: list[Any] = list(map(dict.get, matches, repeat("gateways")))
        if not set(map(type, owns)) <= {NoneType, list}:
            return None
        if not _all_of(list(chain.from_iterable(filter(None, owns))), str):
            return None
        for field_name in ("sourceNamespace", "sourceLabels"):
            if list(map(dict.get, matches, repeat(field_name))).count(None) != len(matches):
                return None
        top, default = self.top, self._default
        sample = owns[:CLASS_SAMPLE]
        if all(owns) and len(set(map(tuple, sample))) * 2 > len(sample):
            # distinct lists (a gateway per rule): each rule's clients built in C
            named: list[frozenset[str]] = list(map(frozenset, owns))
            mesh = map(frozenset.__contains__, named, repeat(MESH))
            sources = map({True: (default,), False: ()}.__getitem__, mesh)
            refs = map(list, zip(zip(repeat(0), owns, strict=False)))
            return list(zip(named, sources, refs, strict=True))
        keys = list(map(tuple, [own or () for own in owns]))
        found: dict[tuple[str, ...], _Clients] = {}
        for key in dict.fromkeys(keys):
            gateways = frozenset(key) if key else top
            own_refs = [(0, list(key))] if key else []
            found[key] = (gateways, (default,) if MESH in gateways else (), own_refs)
        return list(map(found.__getitem__, keys))

    def _extras(
        self, rules: list[dict[str, Any]], extras: Collection[str]
    ) -> tuple[list[list[str]] | None, list[_Name], list[str] | None]:
        """The hosts of each rule's mirror and single mirrors entry, as columns (None: some
        rule has them otherwise), their names, and each rule's delegate namespace (None: no
        rule delegates)."""
        columns: list[list[str]] = []
        more: list[_Name] = []
        delegates = None
        if "mirror" in extras:
            hosts = _plain_targets(list(map(dict.get, rules, repeat("mirror"))), subsets=False)
            if hosts is None:
                return None, more, None
            columns.append(hosts)
            more.append(_MIRROR_NAME)
        if "mirrors" in extras:
            lists: list[Any] = list(map(dict.get, rules, repeat("mirrors")))
            if not _all_of(lists, list) or set(map(len, lists)) != {1}:
                return None, more, None
            entries: list[Any] = list(map(itemgetter(0), lists))
            if not _all_of(entries, dict):
                return None, more, None
            hosts = _plain_targets(
                list(map(dict.get, entries, repeat("destination"))), subsets=False
            )
            if hosts is None:
                return None, more, None
            columns.append(hosts)
            more.append(_MIRRORS_NAMES[0])
        if "delegate" in extras:
            targets: list[Any] = list(map(dict.get, rules, repeat("delegate")))
            if not _all_of(targets, dict) or not all(targets):
                return None, more, None
            spaces: list[Any] = list(map(dict.get, targets, repeat("namespace")))
            if not set(map(type, spaces)) <= {NoneType, str}:
                return None, more, None
            if not all(spaces):
                # no namespace: the VirtualService's own
                spaces = [space or self.memo.namespace for space in spaces]
            delegates = spaces
        return columns, more, delegates

    def _valid_hosts(self, raws: list[str]) -> tuple[list[str], list[_Split] | None] | None:
        return _valid_hosts(self.memo, raws)

    def _gather(self, kind: str, item: Any, raws: list[str]) -> _Gathered | None:
        """The parts of a rule of the usual shape, its hosts added to ``raws``; None otherwise."""
        if type(item) is not dict:
            return None
        start = len(raws)
        try:
            clients = None
            matches = item.get("match")
            if matches is None:
                count = 0
            elif type(matches) is list:
                count = len(matches)
                plain = True
                for match in matches:
                    if type(match) is not dict:
                        raise _Unusual
                    if plain and not _CLIENT_FIELDS.isdisjoint(match):
                        plain = False
                if not plain:
                    clients = self._clients(matches)
            else:
                raise _Unusual
            names: list[_Name] = []
            entries = route_entries = item.get("route")
            if entries is not None and _plain_route(raws, names, entries):
                entries = None
            if entries is not None:
                # _entries inlined: most rules have a route and nothing else to gather
                if type(entries) is not list:
                    raise _Unusual
                for j, entry in enumerate(entries):
                    if type(entry) is not dict:
                        raise _Unusual
                    target = entry.get("destination")
                    if target is None:
                        continue
                    if type(target) is not dict:
                        raise _Unusual
                    value = target.get("host")
                    if value is None:
                        continue
                    subset = target.get("subset")
                    if type(value) is not str or (subset is not None and type(subset) is not str):
                        raise _Unusual
                    if not value:
                        continue
                    raws.append(value)
                    if subset:
                        self.subset_flags.append(True)
                    if j >= len(_ROUTE_NAMES):
                        names.append((f".route[{j}].destination", subset or None))
                    elif subset:
                        names.append((_ROUTE_NAMES[j][0], subset))
                    else:
                        names.append(_ROUTE_NAMES[j])
            redirect = rewrite = delegate = None
            headers: tuple[list[str], list[str]] | None = None
            if kind == "http" and (
                ("headers" in item and not _plain_headers(item["headers"]))
                or (route_entries and not _plain_entry_headers(route_entries))
            ):
                # authority headers: rewrites, gathered after rewrite.authority
                headers = ([], [])
                _header_rewrites(item.get("headers"), "", *headers)
                for j, value in _entry_headers(route_entries):
                    _header_rewrites(value, f".route[{j}]", *headers)
            if kind == "http" and not _HTTP_EXTRAS.isdisjoint(item):
                target = item.get("mirror")
                if target is not None:
                    _target(raws, names, target, _MIRROR_NAME, self.subset_flags)
                entries = item.get("mirrors")
                if entries is not None:
                    _entries(raws, names, entries, _MIRRORS_NAMES, ".mirrors", self.subset_flags)
                part = item.get("redirect")
                redirect = None if part is None else _authority(part)
                part = item.get("rewrite")
                rewrite = None if part is None else _authority(part)
                target = item.get("delegate")
                if target is not None:
                    if type(target) is not dict:
                        raise _Unusual
                    if target:
                        delegate = target.get("namespace")
                        if delegate is not None and type(delegate) is not str:
                            raise _Unusual
                        delegate = delegate or self.memo.namespace
        except _Unusual:
            del raws[start:]
            return None
        if redirect:
            raws.append(redirect)
        rewrites = _NO_REWRITES
        if rewrite:
            raws.append(rewrite)
            rewrites = _REWRITE_AUTHORITY
        if headers is not None and headers[0]:
            raws.extend(headers[1])
            rewrites = (*rewrites, *headers[0])
        return clients, count, names, redirect, rewrites, delegate

    def _clients(
        self, matches: list[dict[str, Any]]
    ) -> tuple[frozenset[str], tuple[_Source, ...], list[tuple[int, list[str]]]]:
        """What ``_clients`` gives for matches that name gateways or clients, and the own
        gateway lists to enter; raises ``_Unusual`` where ``_clients`` would report."""
        top = self.top
        found = _plain_clients(matches, top, self.memo.namespace)
        if found is not None:
            return found
        if len(matches) == 1:
            # the usual single match, without the sets the general loop merges matches with
            match = matches[0]
            own = match.get("gateways")
            if own is None or (type(own) is list and not own):
                gateways, own_refs = top, []
            elif type(own) is list:
                for ref in own:
                    if type(ref) is not str:
                        raise _Unusual
                gateways, own_refs = frozenset(own), [(0, own)]
            else:
                raise _Unusual
            return gateways, (self._source(match),) if MESH in gateways else (), own_refs
        uses_top = False
        gateways_named: set[str] = set()
        sources: list[_Source] = []
        own_refs = []
        for j, match in enumerate(matches):
            refs: Collection[str] = top
            own = match.get("gateways")
            if own is not None:
                if type(own) is not list:
                    raise _Unusual
                for ref in own:
                    if type(ref) is not str:
                        raise _Unusual
                if own:
                    own_refs.append((j, own))
                    refs = own
            if refs is top:
                uses_top = True
            else:
                gateways_named.update(refs)
            if MESH in refs:
                sources.append(self._source(match))
        if not gateways_named:
            return top, tuple(sources), own_refs
        if uses_top:
            gateways_named |= top
        return frozenset(gateways_named), tuple(sources), own_refs

    def _source(self, match: dict[str, Any]) -> _Source:
        """The clients a match picks in the mesh; raises ``_Unusual`` where ``_clients``
        would report."""
        namespace = match.get("sourceNamespace")
        labels = match.get("sourceLabels")
        if namespace is None and labels is None:
            return self._default
        if namespace is not None and type(namespace) is not str:
            raise _Unusual
        items = () if labels is None else _label_items(labels)
        if items is None:
            raise _Unusual
        return _Source(namespace or self.memo.namespace, items)


def _plain_parts(counts: Sequence[int], named: list[Any], subsets: bool) -> list[_Gathered | None]:
    """The parts ``_gather`` gives plain rules of these counts of matches and subsets."""
    shared: dict[Any, _Gathered]
    if not subsets:
        # a rule's parts depend on its count of matches only: a tuple per count, shared
        shared = {
            count: (None, count, [_ROUTE_NAMES[0]], None, _NO_REWRITES, None)
            for count in set(counts)
        }
        return list(map(shared.__getitem__, counts))
    if all(named):
        # a subset in every rule, likely each its own: a tuple per rule, built in C
        names = map(list, zip(zip(repeat(_ROUTE_NAMES[0][0]), named)))
        return list(
            zip(repeat(None), counts, names, repeat(None), repeat(_NO_REWRITES), repeat(None))
        )
    keys = list(zip(counts, named, strict=True))
    shared = {
        (count, subset): (None, count, [_route_name(subset)], None, _NO_REWRITES, None)
        for count, subset in set(keys)
    }
    return list(map(shared.__getitem__, keys))


def _route_name(subset: str | None) -> _Name:
    """The name ``_gather`` gives a rule's first route destination with ``subset``."""
    return (_ROUTE_NAMES[0][0], subset) if subset else _ROUTE_NAMES[0]


def _plain_targets(targets: list[Any], subsets: bool = True) -> list[str] | None:
    """The host of each destination when each is an object naming a host (``_gather``
    gathers one from each), with no subset unless ``subsets``; None otherwise."""
    if not _all_of(targets, dict):
        return None
    hosts: list[Any] = list(map(dict.get, targets, repeat("host")))
    if not _all_of(hosts, str) or "" in hosts:
        return None
    if not subsets and any(map(dict.get, targets, repeat("subset"))):
        return None
    return hosts


def _rewrite_columns(
    rules: list[dict[str, Any]], entries: list[dict[str, Any]], rewrite: bool
) -> tuple[tuple[str, ...], list[list[str]]] | None:
    """The authority rewrites of plain http rules (each with one route entry, ``entries``)
    when every rule rewrites the same fields (``rewrite.authority``: ``rewrite`` when some rule
    has the field; authority headers), found in passes of C: the fields within a rule, in
    ``_gather``'s order, and the rewritten hosts of each field, rule by rule.  ((), []): no
    rule rewrites; None: the rules differ, or some field is of another shape (``_gather``
    reads such a rule on its own).

    Generated routes can each rewrite the authority to the service they stand for: gathered
    one by one, 14k such rules cost more than the rest of the decision."""
    names: list[str] = []
    columns: list[list[str]] = []
    if rewrite:
        parts: list[Any] = list(map(dict.get, rules, repeat("rewrite")))
        if not _all_of(parts, dict):
            return None
        authorities: list[Any] = list(map(dict.get, parts, repeat("authority")))
        if authorities.count(None) != len(authorities):
            hosts = _authority_hosts(authorities)
            if hosts is None:
                return None
            names.append(_REWRITE_AUTHORITY[0])
            columns.append(hosts)
    for values, prefix in ((rules, ""), (entries, ".route[0]")):
        flags = list(map(dict.__contains__, values, repeat("headers")))
        if True not in flags:
            continue
        if False not in flags:
            found = _header_columns(list(map(itemgetter("headers"), values)), prefix)
            if found is not None:
                names.extend(found[0])
                columns.extend(found[1])
                continue
        if not _plain_entry_headers(values):
            # authority headers in some rules only, or of other shapes
            return None
    return tuple(names), columns


def _authority_hosts(authorities: list[Any]) -> list[str] | None:
    """``split_authority`` of each authority when all are strings naming a host; else None."""
    if not _all_of(authorities, str) or "" in authorities:
        return None
    joined = "".join(authorities)
    if ":" not in joined and "[" not in joined:
        # no port and no address in brackets: each authority is its host
        return authorities
    hosts = list(map(split_authority, authorities))
    return None if "" in hosts else hosts


def _header_columns(values: list[Any], prefix: str) -> tuple[list[str], list[list[str]]] | None:
    """``_header_rewrites`` of the ``headers`` field of each of many rules or route entries
    (``prefix``: their field within a rule) when every field sets the same headers in the
    same order, in passes of C: the fields of the authority headers, and their hosts rule by
    rule; None otherwise."""
    if not _all_of(values, dict):
        return None
    requests: list[Any] = list(map(dict.get, values, repeat("request")))
    if not _all_of(requests, dict):
        return None
    names: list[str] = []
    columns: list[list[str]] = []
    for operation in _HEADER_OPERATIONS:
        found: list[Any] = list(map(dict.get, requests, repeat(operation)))
        if found.count(None) == len(found):
            continue
        if not _all_of(found, dict):
            return None
        # the header names each sets, in order: one tuple for all, or rules of other shapes
        shapes = set(map(tuple, found))
        if len(shapes) != 1:
            return None
        for key in shapes.pop():
            if type(key) is not str:
                return None
            if key.casefold() not in _AUTHORITY_HEADERS:
                continue
            hosts = _authority_hosts(list(map(itemgetter(key), found)))
            if hosts is None:
                return None
            names.append(f"{prefix}.headers.request.{operation}[{key}]")
            columns.append(hosts)
    return names, columns


def _valid_hosts(memo: _Memo, raws: list[str]) -> tuple[list[str], list[_Split] | None] | None:
    """What ``_Memo.host`` gives for each of ``raws`` when all are valid, names (dotted)
    taken as they are and short names expanded, and each of ``raws`` split at its first
    dot (None when they repeat a few texts: then a host's text is its key, ``_class_keys``);
    None: check them one by one."""
    distinct = repeated_texts(raws) if many(raws) else None
    if distinct is None:
        return _valid_texts(memo, raws)
    # each text checked once: 60k rules can name a handful of hosts
    valid = _valid_texts(memo, distinct)
    if valid is None:
        return None
    if valid[0] is distinct:
        return raws, None
    expanded = dict(zip(distinct, valid[0], strict=True))
    return list(map(expanded.__getitem__, raws)), None


def _valid_texts(memo: _Memo, raws: list[str]) -> tuple[list[str], list[_Split]] | None:
    """``_valid_hosts``, every host split."""
    if not raws:
        return raws, []
    if not all_valid_names(raws):
        read = _names_and_ipv6(raws)
        if read is None:
            return None
        hosts, found = read
        if found is not None:
            # addresses alone: classed later by the same ranges, and split at no dot
            memo.ranges = (hosts, found)
            return hosts, list(zip(hosts, repeat(""), repeat("")))
        return hosts, list(map(str.partition, hosts, repeat(".")))
    # one pass over the hosts (scattered in memory: each pass costs) finds the dots and
    # the parent domains the tenant check keys hosts by
    split = list(map(str.partition, raws, repeat(".")))
    if "" not in map(itemgetter(1), split):
        return raws, split
    suffix = memo.short_suffix
    # all_valid_names leaves no label, so no short name, longer than 63 characters
    if suffix is None or 63 + len(suffix) > MAX_HOST_LENGTH:
        return None
    expanded = [raw if dot else raw + suffix for raw, (_, dot, _) in zip(raws, split, strict=True)]
    return expanded, split


# from this many route entries on, a rule's are read column by column (_plain_route)
_ROUTE_COLUMNS_FROM = 8
_NO_SUBSET = frozenset((type(None), str))


def _destination_columns(entries: list[Any]) -> tuple[list[Any], list[str]] | None:
    """The ``destination`` of every entry of a route-like list and its ``host``, when each entry
    is an object whose destination is an object naming a non-empty host string; else None."""
    if not _all_of(entries, dict):
        return None
    targets: list[Any] = list(map(dict.get, entries, repeat("destination")))
    if not _all_of(targets, dict):
        return None
    hosts: list[Any] = list(map(dict.get, targets, repeat("host")))
    if not _all_of(hosts, str) or "" in hosts:
        return None
    return targets, hosts


def _plain_route(raws: list[str], names: list[_Name], entries: Any) -> bool:
    """Gather a long route whose every entry names a destination host and no subset, in passes
    of C (``_gather`` reads entries one by one: rules of 50 destinations, 80k in all, took
    it 50 ms); False, gathering nothing, for any other route."""
    if type(entries) is not list or not _ROUTE_COLUMNS_FROM <= len(entries) <= len(_ROUTE_NAMES):
        return False
    columns = _destination_columns(entries)
    if columns is None:
        return False
    targets, hosts = columns
    # no subset: absent, null or "" (a subset of another type makes the rule unusual)
    subsets: list[Any] = list(map(dict.get, targets, repeat("subset")))
    if any(subsets) or not set(map(type, subsets)) <= _NO_SUBSET:
        return False
    raws.extend(hosts)
    names.extend(_ROUTE_NAMES[: len(entries)])
    return True


def _hex_colon_addresses(values: list[str]) -> AddressRanges | None:
    """``address_ranges`` of the values when every one is a plain IPv6 address (no CIDR) it
    reads; else None."""
    found = address_ranges(values)
    # the same list for starts and ends: no value is a range
    return found if found is not None and found[1] is found[2] else None


def _names_and_ipv6(raws: list[str]) -> tuple[list[str], AddressRanges | None] | None:
    """``_Memo.host`` of each of ``raws`` when each is a valid dotted name or an IPv6 address
    of hex digits and colons (``address_ranges``; valid as written, lower-cased as
    ``Reader.host`` gives it), and when all are addresses the ranges they were read as;
    None otherwise.  Without it each IPv6 destination is parsed by ``ipaddress`` on its own."""
    # all addresses, most likely: checked whole, lower-cased in one pass over their text
    found = _hex_colon_addresses(raws) if ":" in raws[0] and ":" in raws[-1] else None
    if found is not None:
        joined = "\n".join(raws)
        lowered = joined.lower()
        # mostly written in lower case already: the same strings, none made anew
        return (raws if lowered == joined else lowered.split("\n")), found
    six = [":" in raw for raw in raws]
    if _hex_colon_addresses(list(compress(raws, six))) is None:
        return None
    names = list(compress(raws, map(not_, six)))
    if names and (
        not all_valid_names(names)
        or "" in map(itemgetter(1), map(str.partition, names, repeat(".")))
    ):
        return None
    hosts = [raw.lower() if address else raw for raw, address in zip(raws, six, strict=True)]
    return hosts, None


def _plain_destinations(
    memo: _Memo,
    value: Any,
    rpath: str,
    subsets: list[tuple[str, str, str]],
    name: str = ".route",
) -> tuple[list[str], str] | None:
    """What ``_destinations`` gives a long ``route`` or ``mirrors`` list (``name``) whose every
    entry names a valid host, found in passes of C, as the hosts and the template of their
    paths (``_Targets.add_listed``), the subsets of egress gateways added to ``subsets``;
    None: read it entry by entry.

    One tcp rule can spread its traffic over 80k destinations, and an http rule mirror it to
    as many: per entry the general path pays several calls, here each pass is one call over
    them all.  A subset of any other host is left out: only a gateway's subsets are judged (the
    SNI they pick), the others change no verdict, and a tls route can name one for each of 40k
    destinations.
    """
    if type(value) is not list or not many(value):
        return None
    columns = _destination_columns(value)
    if columns is None:
        return None
    targets, raws = columns
    hosts = raws
    # a few texts repeated: each looked at once
    texts = repeated_texts(raws) or raws
    if not all(map(str.__contains__, texts, repeat("."))):
        # short names to expand (finding the dots alone costs less than splitting each host)
        valid = _valid_hosts(memo, raws)
        if valid is None:
            return None
        hosts = valid[0]
    elif not all_valid_names(texts):
        return None
    named: list[Any] = list(map(dict.get, targets, repeat("subset")))
    if any(named):
        _gateway_subsets(memo.policy, hosts, named, f"{rpath}{name}", subsets)
    # rpath is built here from field names and indexes: no braces to escape
    return hosts, f"{rpath}{name}[{{}}].destination.host"


def _gateway_fqdns(policy: Policy) -> frozenset[str]:
    """The hosts ``Policy.services_on_gateway`` answers for: the egress gateways."""
    return frozenset(gateway.fqdn for gateway in policy.gateways)


def _gateway_subsets(
    policy: Policy,
    hosts: list[str],
    named: list[Any],
    base: str,
    subsets: list[tuple[str, str, str]],
) -> None:
    """Add the ``(path, host, subset)`` of each entry of the list at ``base`` to an egress
    gateway naming a subset, as ``_add_destination`` would (a subset not a string, or empty,
    is none)."""
    fqdns = _gateway_fqdns(policy)
    if fqdns.isdisjoint(hosts):
        return
    for j in compress(range(len(hosts)), map(fqdns.__contains__, hosts)):
        subset = named[j]
        if isinstance(subset, str) and subset:
            subsets.append((f"{base}[{j}].destination.subset", hosts[j], subset))


class _Columns(NamedTuple):
    """The rules of a long list as gathered, column by column (a tuple per rule costs)."""

    # each rule's index in the list
    indices: Sequence[int]
    # its parts; None: of another shape
    parts: list[_Gathered | None]
    # where its hosts start in the list's hosts
    starts: Sequence[int]
    # when every rule is plain (``_ManyRoutes._plain_rules``), how many counts of matches
    # they have; 0: gathered rule by rule
    plain: int = 0


def _own_entries(rpath: str, own: list[tuple[int, list[str]]]) -> Iterator[tuple[str, str]]:
    """``(path, ref)`` of the gateways a rule's matches name, as ``_clients`` enters them."""
    for j, refs in own:
        where = f"{rpath}.match[{j}].gateways"
        for n, ref in enumerate(refs):
            yield f"{where}[{n}]", ref


class _Rules:
    """A long rule list whose hosts are all valid, as ``_ManyRoutes`` gathered it.

    Building a ``_Route`` per rule, with a field path per destination, costs more than judging
    most rules: a rule's ``_Route`` is built only when the rule is judged on its own
    (``route``), and the paths of its gateway references only when one is reported.  Rules of
    another shape were read by ``_route`` in their turn and are kept as read (``done``).
    """

    __slots__ = (
        "_keys",
        "_split",
        "base",
        "checked",
        "delegates",
        "done",
        "indices",
        "items",
        "kind",
        "mesh",
        "parts",
        "plain",
        "reader",
        "redirects",
        "refs",
        "rewrites",
        "starts",
        "subsets",
    )

    def __init__(
        self,
        reader: _ManyRoutes,
        kind: str,
        base: str,
        columns: _Columns,
        checked: list[str],
        split: list[_Split] | None,
        items: list[Mapping[str, Any]],
    ) -> None:
        self.reader = reader
        # the rules as written: a tls rule's SNI matches are read only when it is judged
        self.items = items
        self.kind = kind
        self.base = base
        self.indices, self.parts, self.starts, self.plain = columns
        # what _Memo.host gives for each host gathered, in order
        self.checked = checked
        # each host as gathered split at its first dot
        self._split = split
        self.done: dict[int, tuple[_Route, _GatewayEntries]] = {}
        # whether some rule programs sidecars, names gateways, delegates or redirects
        self.mesh = False
        # the gateways the rules' matches name, in order (repeats kept: hashing costs)
        self.refs: list[str] = []
        self.delegates = False
        self.redirects = False
        self.rewrites = False
        self.subsets = bool(reader.subset_flags)
        self._keys: list[Hashable] | None = None

    def summarize(self) -> None:
        """What the checks ask of the list as a whole, found in a few passes."""
        if self.plain:
            # no clients, gateways, delegates, redirects or rewrites: only the top gateways
            self.mesh = self.reader.mesh_top
            return
        usual = [parts for parts in self.parts if parts is not None]
        clients = [found for found in map(itemgetter(0), usual) if found is not None]
        refs = self.refs
        # the refs of each (j, refs) of each rule's own gateway lists
        own = chain.from_iterable(map(itemgetter(2), clients))
        refs.extend(chain.from_iterable(map(itemgetter(1), own)))
        for _, entries in self.done.values():
            refs.extend(map(itemgetter(1), _each_entry(entries)))
        self.mesh = (
            (self.reader.mesh_top and len(clients) < len(usual))
            or any(map(frozenset.__contains__, map(itemgetter(0), clients), repeat(MESH)))
            or any(route.mesh for route, _ in self.done.values())
        )
        self.delegates = any(map(itemgetter(5), usual)) or any(
            route.delegate is not None for route, _ in self.done.values()
        )
        self.redirects = any(map(itemgetter(3), usual))
        self.rewrites = any(map(itemgetter(4), usual))

    def route(self, pos: int) -> _Route:
        """The ``_Route`` of the rule at ``pos``, as ``_route`` reads it."""
        i, parts, k = self.indices[pos], self.parts[pos], self.starts[pos]
        if parts is None:
            return self.done[pos][0]
        clients, count, targets, redirect, rewrite, delegate = parts
        checked = self.checked
        rpath = f"{self.base}[{i}]"
        if clients is None:
            gateways = self.reader.top
            sources = self.reader.sources(count)
        else:
            gateways, sources, _ = clients
        destinations: list[tuple[str, str]] = []
        subsets: list[tuple[str, str, str]] = []
        for name, subset in targets:
            host = checked[k]
            k += 1
            destinations.append((f"{rpath}{name}.host", host))
            if subset is not None:
                subsets.append((f"{rpath}{name}.subset", host, subset))
        redirects: tuple[tuple[str, str], ...] = ()
        if redirect:
            redirects = ((f"{rpath}.redirect.authority", checked[k]),)
            k += 1
        rewrites = tuple(
            zip(map(rpath.__add__, rewrite), checked[k : k + len(rewrite)], strict=True)
        )
        return _Route(
            gateways,
            sources,
            tuple(destinations),
            redirects,
            rewrites,
            None if delegate is None else (f"{rpath}.delegate", delegate),
            tuple(subsets),
            _sni_hosts(self.items[pos].get("match")) if self.kind == "tls" and subsets else None,
        )

    def gateway_entries(self) -> Iterator[tuple[str, str]]:
        """``(path, ref)`` of every gateway the rules' matches name, in order."""
        done = self.done
        for pos, (i, parts) in enumerate(zip(self.indices, self.parts, strict=True)):
            if parts is None:
                yield from _each_entry(done[pos][1])
            elif parts[0] is not None and parts[0][2]:
                yield from _own_entries(f"{self.base}[{i}]", parts[0][2])

    def host_keys(self, policy: Policy) -> list[Hashable]:
        """A key per gathered host: hosts of a key get the same verdicts from the tenant check.

        ``_class_keys`` (names by ``Policy.host_class``, addresses by ``AddressClasses``);
        a gateway subset with its host, subset and SNIs, and a rewrite as a rewrite: of its
        host's class where the Host picks the upstream (the tenant check asks of it what it
        asks of a destination's host: internal, covered, carried by a gateway), else of none,
        as nothing is asked of it.
        """
        if self._keys is not None:
            return self._keys
        checked = self.checked
        suffix = self.reader.memo.short_suffix
        # a short name expanded is a name of the namespace's Service zone
        short = None if suffix is None else suffix[1:]
        ranges = self.reader.memo.ranges
        known = ranges[1] if ranges is not None and ranges[0] is checked else None
        keys = _class_keys(policy, checked, self._split, short, known)
        # only a gateway's subsets are judged: with no gateway among the hosts, none counts
        subsets = self.subsets and not _gateway_fqdns(policy).isdisjoint(checked)
        each = subsets or self.rewrites
        if self.rewrites and not subsets and isinstance(self.starts, range):
            # rules of one shape (_plain_rules): each role at the same offset in every rule
            self._rewrite_keys(policy, keys, self.starts.step)
            each = False
        for pos, (parts, k) in enumerate(zip(self.parts, self.starts, strict=True) if each else ()):
            if parts is None:
                continue
            targets, redirect, rewrite = parts[2], parts[3], parts[4]
            first = k
            for _, subset in targets:
                # only a gateway's subsets (and then a tls rule's SNIs) are judged: a subset of
                # another host leaves its class's verdict alone
                if subset is not None and policy.services_on_gateway(checked[k]):
                    sni = _sni_hosts(self.items[pos].get("match")) if self.kind == "tls" else None
                    keys[k] = (checked[k], subset, sni)
                k += 1
            if rewrite:
                # whether the rewrite is judged at all depends on the rule's destinations
                # (_host_picks_upstream): rules of a key must agree on it too
                picks = parts[5] is not None or _leaves_services(policy, checked[first:k])
                k += bool(redirect)
                for at in range(k, k + len(rewrite)):
                    keys[at] = ("rewrite", keys[at], True) if picks else _UNPICKED
        self._keys = keys
        return keys

    def _rewrite_keys(self, policy: Policy, keys: list[Hashable], width: int) -> None:
        """``host_keys``'s keys of the rewrites of rules of one shape, ``width`` hosts each,
        in passes of C: one by one, 14k rules each rewriting the authority cost a few calls
        each."""
        checked = self.checked
        _, _, targets, redirect, rewrite, _ = cast("_Gathered", self.parts[0])
        # as _host_picks_upstream: a delegate, or a destination that may leave the services
        delegates = map(itemgetter(5), cast("list[_Gathered]", self.parts))
        picks: list[bool] = list(map(is_not, delegates, repeat(None)))
        for offset in range(len(targets)):
            picks = list(map(or_, picks, _leaving(policy, checked[offset::width])))
        start = len(targets) + bool(redirect)
        for offset in range(start, start + len(rewrite)):
            classes = keys[offset::width]
            if True not in picks:
                # no rule's Host picks its upstream (all to the namespace's services)
                keys[offset::width] = [_UNPICKED] * len(picks)
            elif False not in picks:
                # a key per class, shared: rules of a class then compare as the same object
                wrapped = {key: ("rewrite", key, True) for key in set(classes)}
                keys[offset::width] = list(map(wrapped.__getitem__, classes))
            else:
                keys[offset::width] = [
                    ("rewrite", key if picked else None, picked)
                    for key, picked in zip(classes, picks, strict=True)
                ]

    def rule_keys(self, policy: Policy) -> list[Hashable] | None:
        """A key per rule when all rules are alike (the same clients, kind of delegate and
        number of hosts in each place), found in passes of C: then rules of a key get the same
        verdict from the tenant check.  None when the rules differ in any of that."""
        if self.plain:
            # one host per rule, nothing else: alike when their matches are as many
            return self.host_keys(policy) if self.plain == 1 else None
        if self.done:
            return None
        parts = cast("list[_Gathered]", self.parts)
        clients = list(map(itemgetter(0), parts))
        unnamed = clients.count(None)
        if unnamed == len(clients):
            if len(set(map(itemgetter(1), parts))) != 1:
                return None
        elif unnamed:
            return None
        else:
            # the same sources, the same mesh: a rule has a source per match for the mesh
            found = cast("list[_Clients]", clients)
            if len(set(map(itemgetter(1), found))) != 1:
                return None
        # no delegate, one within the namespace, one out of it: a rule's kind of delegate
        namespace = self.reader.memo.namespace
        delegates = set(map(itemgetter(5), parts))
        kinds = (None in delegates) + (namespace in delegates)
        if len(delegates) > kinds:
            kinds += 1
        if kinds != 1:
            return None
        if isinstance(self.starts, range):
            # rules of one shape (_plain_rules): as many hosts in each place in every rule
            _, _, names, redirect, rewrite, _ = parts[0]
            width = len(names) + bool(redirect) + len(rewrite)
        else:
            targets = set(map(len, map(itemgetter(2), parts)))
            redirects = set(map(bool, map(itemgetter(3), parts)))
            rewrites = set(map(len, map(itemgetter(4), parts)))
            if len(targets) != 1 or len(redirects) != 1 or len(rewrites) != 1:
                return None
            width = targets.pop() + redirects.pop() + rewrites.pop()
        keys = self.host_keys(policy)
        if len(keys) != width * len(parts):
            return None
        if width == 0:
            return [()] * len(parts)
        if width == 1:
            # a host per rule: its key is the rule's
            return keys
        # a place whose key is the same in every rule tells no two rules apart (every rule to
        # the egress gateway, or rewrites where the Host picks no upstream): left out
        columns = [keys[offset::width] for offset in range(width)]
        varying = [column for column in columns if column.count(column[0]) != len(column)]
        if len(varying) == 1:
            return varying[0]
        return list(zip(*varying, strict=True)) if varying else [()] * len(parts)


# a host split at its first dot (str.partition)
_Split = tuple[str, str, str]


def _parent_keys(
    policy: Policy,
    hosts: list[str],
    split: list[_Split] | None = None,
    short: str | None = None,
    joined: str | None = None,
    *,
    listed: bool = False,
) -> list[Hashable] | None:
    """``Policy.host_class`` of each host less its leading dot, found in passes of C; None
    unless every host is a name with a parent domain that is its class (no IP, no wildcard, no
    name the policy lists by itself).  ``split``: the hosts as written partitioned at their
    first dot, ``short`` the parent domain of those without a dot (expanded short names);
    ``joined``: the hosts joined by newlines, when the caller has it; ``listed``: the names
    the policy lists get their parent too (the caller keys them apart)."""
    if split is None and joined is not None:
        parent = _shared_parent(hosts, joined)
        if parent is not None and policy.own_names.isdisjoint(hosts):
            return [parent] * len(hosts)
    if split is None:
        split = list(map(str.partition, hosts, repeat(".")))
    keys: list[Hashable] = list(map(itemgetter(2), split))
    if short is not None and "" in keys:
        keys = [key or short for key in keys]
    distinct = cast("set[str]", set(keys))
    # a name without a dot has no parent; one ending in a digit may be an IP
    if "" in distinct or "*" in "".join(distinct):
        return None
    if any(map(str.isdigit, "".join(map(itemgetter(-1), distinct)))):
        return None
    if "*" in "".join(map(itemgetter(0), split)):
        return None
    if not listed and not policy.own_names.isdisjoint(hosts):
        return None
    if len(distinct) > 1 and policy.known_domains.isdisjoint(hosts):
        if len(distinct) * 2 <= len(keys):
            # a few domains (destinations and their rewrites): each looked up once
            domains = list(distinct)
            nearer: dict[Hashable, Hashable] = dict(
                zip(domains, nearest_known(policy, domains), strict=True)
            )
            return list(map(nearer.__getitem__, keys))
        # hosts under thousands of domains: classed by the nearest domain the policy knows
        return list(nearest_known(policy, cast("list[str]", keys)))
    return keys


def _shared_parent(hosts: list[str], joined: str) -> str | None:
    """The parent domain of every host when all are one label under the same name that ends
    in a letter and no host holds a wildcard: what ``_parent_keys`` finds by splitting each
    host, read from their joined text (a VirtualService can list 150k hosts of one domain)."""
    parent = hosts[0].partition(".")[2] if hosts else ""
    if not parent or parent[-1].isdigit() or "*" in joined:
        return None
    tail = "." + parent
    # every line ends with the tail, and holds no dot before it: each host is label + tail
    ends = joined.count(tail + "\n") + joined.endswith(tail)
    if ends != len(hosts) or joined.count(".") != len(hosts) * tail.count("."):
        return None
    return parent


def _repeated(hosts: list[str]) -> list[str] | None:
    """The hosts themselves as their keys when they repeat a few texts (a verdict on a host
    depends on its text alone); None otherwise."""
    return None if repeated_texts(hosts) is None else hosts


def _class_keys(
    policy: Policy,
    hosts: list[str],
    split: list[_Split] | None,
    short: str | None,
    known: AddressRanges | None = None,
) -> list[Hashable]:
    """A key per host, never None: hosts of a key get the same verdicts from the tenant check.

    Addresses by ``AddressClasses`` (the tenant check asks of one only the policy ranges it
    lies in: no gateway is an address), so a rule list to 60k addresses of a few blocks is
    judged a few times; names by ``Policy.host_class`` (``_parent_keys`` when it can: ``split``
    and ``short`` are its arguments); anything else by its own text.  Hosts not split
    repeat a few texts (``_valid_hosts``): each is its own key, judged once.
    """
    if split is None:
        # a copy: host_keys writes the keys of rewrites and subsets into it
        return list(hosts)
    classes = AddressClasses(policy)
    # addresses of one cluster network first: told from names by the first and last alone
    wide = classes.one_wide(hosts)
    if wide is not None:
        return [wide] * len(hosts)
    # then addresses anywhere (IPv6 ones too), by the policy ranges they lie in
    found = classes.interval_keys(hosts, known)
    if found is not None:
        return list(found)
    own = policy.own_names.intersection(hosts)
    keys = _parent_keys(policy, hosts, split, short, listed=True)
    if keys is not None and own:
        # the egress gateway (or a name the policy lists) among names of a few parents, as
        # when every rule routes to the gateway and rewrites the authority: the listed names
        # keyed by their own text, the others by their parent
        alone: dict[str, Hashable] = {host: OWN_TEXT + host for host in own}
        return list(map(alone.get, hosts, keys))
    if keys is not None:
        return keys
    distinct = {host: _host_key(policy, classes, host) for host in set(hosts)}
    return list(map(distinct.__getitem__, hosts))


def _host_key(policy: Policy, classes: AddressClasses, host: str) -> Hashable:
    """``Policy.host_class`` of a name (all start with a dot), ``AddressClasses.key`` of an
    address; a value judged alone: itself, marked when it ends in a digit (a name such as
    ``10.1`` would otherwise share the key of the addresses of its block)."""
    if host[-1:].isdigit():
        return classes.key(host) or OWN_TEXT + host
    key = policy.host_class(host)
    return host if key is None else key


def _sni_hosts(matches: Any) -> tuple[str, ...] | None:
    """Every ``sniHosts`` entry of a tls rule; None if some match (or the rule) has none."""
    if not isinstance(matches, list) or not matches:
        return None
    lists = _sni_lists(matches)
    if lists is not None and _all_of(lists, list):
        return _distinct_sni_hosts(lists) if all(lists) else None
    found: list[str] = []
    for match in matches:
        names = match.get("sniHosts") if isinstance(match, Mapping) else None
        if not isinstance(names, list) or not names:
            return None
        found.extend(normalize(n) for n in names if isinstance(n, str))
    return tuple(found)


def _sni_lists(matches: list[Any]) -> list[Any] | None:
    """The ``sniHosts`` of each match of a long list of objects; None: read match by match."""
    if type(matches) is not list or not many(matches) or not _all_of(matches, dict):
        return None
    return list(map(dict.get, matches, repeat("sniHosts")))


def _distinct_sni_hosts(lists: list[list[Any]]) -> tuple[str, ...]:
    """``_sni_hosts`` of a long match list, each distinct name once (the SNIs are only asked
    whether all lie under a host), found in passes of C: one rule can hold 70k matches."""
    names = list(chain.from_iterable(lists))
    strings = dict.fromkeys(compress(names, map(isinstance, names, repeat(str))))
    lowered = list(map(str.lower, map(str.strip, strings)))
    if any(map(str.endswith, lowered, repeat("."))):
        # some absolute name: normalize drops its trailing dot
        lowered = list(map(normalize, strings))
    return tuple(dict.fromkeys(lowered))


def _http_extras(
    reader: Reader,
    memo: _Memo,
    item: Mapping[str, Any],
    rpath: str,
    destinations: _Found,
    redirects: list[tuple[str, str]],
    rewrites: list[tuple[str, str]],
    subsets: list[tuple[str, str, str]],
) -> tuple[tuple[str, str] | None, _Found]:
    """Add an http rule's mirrors, redirect and rewrite authorities: its delegate, if any,
    and its destinations (a ``_Targets`` once a long mirrors list is among them)."""
    mirror = item.get("mirror")
    if mirror is not None:
        mirror = _object(reader, mirror, rpath, ".mirror")
        # a mirror is a destination like the route's own, subset included
        _add_destination(reader, memo, destinations, subsets, mirror, rpath, ".mirror")
    mirrors = item.get("mirrors")
    if mirrors is not None:
        # mirrors are judged as the route's destinations are, after them
        plain = _plain_destinations(memo, mirrors, rpath, subsets, ".mirrors")
        if plain is None:
            _destinations(reader, memo, destinations, mirrors, rpath, ".mirrors", subsets)
        else:
            if not isinstance(destinations, _Targets):
                listed = _Targets()
                listed.extend(destinations)
                destinations = listed
            destinations.add_listed(*plain)
    for field_name, found in (("redirect", redirects), ("rewrite", rewrites)):
        part = item.get(field_name)
        if part is None:
            continue
        authority = _object(reader, part, rpath, f".{field_name}").get("authority")
        if authority is None:
            continue
        path = f"{rpath}.{field_name}.authority"
        authority = reader.string(authority, path)
        if authority:
            _add_host(reader, memo, found, split_authority(authority), path)
    target = item.get("delegate")
    if target is not None:
        target = _object(reader, target, rpath, ".delegate")
        if target:
            dns = _string(reader, target.get("namespace"), rpath, ".delegate.namespace")
            return (f"{rpath}.delegate", dns or memo.namespace), destinations
    return None, destinations


def _header_authorities(
    reader: Reader,
    memo: _Memo,
    item: Mapping[str, Any],
    entries: Any,
    rpath: str,
    rewrites: list[tuple[str, str]],
) -> None:
    """Add the authorities an http rule's ``headers`` and its ``route[].headers`` set: Istio
    turns a request header ``host`` or ``:authority`` (``set`` or ``add``) into the same Host
    rewrite as ``rewrite.authority`` (docs/istio-semantics.md#virtualservice-destinations)."""
    headers = item.get("headers")
    if headers is not None:
        _headers_authorities(reader, memo, headers, rpath, rewrites)
    for j, value in _entry_headers(entries):
        _headers_authorities(reader, memo, value, f"{rpath}.route[{j}]", rewrites)


def _entry_headers(entries: Any) -> list[tuple[int, Any]]:
    """``(j, headers)`` of each route entry with a ``headers`` field (in a pass of C for a
    list of objects; shape problems of the entries are the destinations' to report)."""
    if type(entries) is not list:
        return []
    if _all_of(entries, dict):
        flags = list(map(dict.__contains__, entries, repeat("headers")))
        if True not in flags:
            return []
        return [(j, entries[j]["headers"]) for j in compress(range(len(entries)), flags)]
    return [
        (j, entry["headers"])
        for j, entry in enumerate(entries)
        if is_object(entry) and "headers" in entry
    ]


def _headers_authorities(
    reader: Reader, memo: _Memo, value: Any, prefix: str, rewrites: list[tuple[str, str]]
) -> None:
    """Add the authority headers of one ``headers`` field at ``prefix``."""
    request = _object(
        reader,
        _object(reader, value, prefix, ".headers").get("request"),
        prefix,
        ".headers.request",
    )
    for operation in _HEADER_OPERATIONS:
        name = f".headers.request.{operation}"
        for key, raw in _object(reader, request.get(operation), prefix, name).items():
            if isinstance(key, str) and key.casefold() in _AUTHORITY_HEADERS:
                path = f"{prefix}{name}[{key}]"
                authority = reader.string(raw, path)
                if authority:
                    _add_host(reader, memo, rewrites, split_authority(authority), path)


def _header_rewrites(value: Any, prefix: str, names: list[str], hosts: list[str]) -> None:
    """Gather the authorities one ``headers`` field sets, as ``_headers_authorities`` finds
    them: each one's field within the rule (``prefix``: the route entry's, or "") and host.
    Raises ``_Unusual`` where ``_headers_authorities`` would report a shape."""
    if value is None:
        return
    if type(value) is not dict:
        raise _Unusual
    request = value.get("request")
    if request is None:
        return
    if type(request) is not dict:
        raise _Unusual
    for operation in _HEADER_OPERATIONS:
        values = request.get(operation)
        if values is None:
            continue
        if type(values) is not dict:
            raise _Unusual
        for key, raw in values.items():
            if type(key) is not str:
                raise _Unusual
            if key.casefold() not in _AUTHORITY_HEADERS:
                continue
            if type(raw) is not str:
                raise _Unusual
            host = split_authority(raw) if raw else None
            if host:
                names.append(f"{prefix}.headers.request.{operation}[{key}]")
                hosts.append(host)


def _plain_headers(value: Any) -> bool:
    """Whether a ``headers`` field is of the usual shape and sets no authority: the fast paths
    leave such a field unread (``_header_authorities`` finds nothing in it either)."""
    if value is None:
        return True
    if type(value) is not dict:
        return False
    request = value.get("request")
    if request is None:
        return True
    if type(request) is not dict:
        return False
    for operation in _HEADER_OPERATIONS:
        values = request.get(operation)
        if values is None:
            continue
        if type(values) is not dict:
            return False
        for key in values:
            if type(key) is not str or key.casefold() in _AUTHORITY_HEADERS:
                return False
    return True


def _plain_entry_headers(entries: list[Any]) -> bool:
    """Whether no entry of a list of objects carries a ``headers`` field but a plain one."""
    flags = list(map(dict.__contains__, entries, repeat("headers")))
    if True not in flags:
        return True
    return all(map(_plain_headers, map(dict.get, compress(entries, flags), repeat("headers"))))


def _clients(
    reader: Reader,
    value: Any,
    rpath: str,
    namespace: str,
    top: frozenset[str],
    gateway_entries: _GatewayEntries,
) -> tuple[frozenset[str], tuple[_Source, ...]]:
    """The gateways a rule applies to and, for the mesh, which client workloads it steers."""
    found = _plain_clients(value, top, namespace)
    if found is not None:
        if found[2]:
            gateway_entries.append(_MatchRefs(rpath, found[2]))
        return found[0], found[1]
    matches = _objects(reader, value, rpath, ".match")
    if not matches:
        return top, (_Source(namespace),)
    # most rules name no gateways of their own: then the top-level set is shared, not rebuilt
    uses_top = False
    gateways: set[str] = set()
    sources: list[_Source] = []
    for j, match in matches:
        refs: Collection[str] = top
        own = match.get("gateways")
        if own is not None:
            entries, own_refs = _gateway_refs(reader, own, f"{rpath}.match[{j}].gateways")
            gateway_entries.extend(entries)
            refs = own_refs or top
        if refs is top:
            uses_top = True
        else:
            gateways.update(refs)
        if MESH in refs:
            sns = match.get("sourceNamespace")
            if sns is not None and not isinstance(sns, str):
                sns = reader.string(sns, f"{rpath}.match[{j}].sourceNamespace")
            labels = match.get("sourceLabels")
            items = () if labels is None else _label_items(labels)
            if items is None:
                labels = reader.labels(labels, f"{rpath}.match[{j}].sourceLabels")
                items = tuple(labels.items()) if labels else ()
            sources.append(_Source(sns or namespace, items))
    if not gateways:
        return top, tuple(sources)
    return frozenset(gateways | top if uses_top else gateways), tuple(sources)


def _plain_clients(value: Any, top: frozenset[str], namespace: str) -> _Clients | None:
    """What ``_clients`` gives a long match list whose every match it reads without a report
    (``gateways`` a list of strings, and for the mesh ``sourceNamespace`` a string and
    ``sourceLabels`` a map of strings, where present), and the own gateway lists to enter,
    found in passes of C; None: read it match by match.

    One rule can hold 50k matches.  Each distinct source is kept once: sources are only ever
    intersected and described as a set (``_Memo.route_allowed``), so their multiplicity and
    order change no verdict, while a source per match costs a lookup per match.
    """
    if type(value) is not list or not value or not many(value) or not _all_of(value, dict):
        return None
    owns: list[Any] = list(map(dict.get, value, repeat("gateways")))
    if not set(map(type, owns)) <= {NoneType, list}:
        return None
    # a match with a gateway list of its own applies to it, any other to the rule's gateways
    named = list(map(bool, owns))
    lists: list[list[Any]] = list(compress(owns, named))
    refs = list(chain.from_iterable(lists))
    if not _all_of(refs, str):
        return None
    mesh = list(compress(compress(value, named), map(list.__contains__, lists, repeat(MESH))))
    uses_top = len(lists) < len(value)
    if uses_top and MESH in top:
        mesh.extend(compress(value, map(not_, named)))
    sources = _plain_sources(mesh, namespace)
    if sources is None:
        return None
    own: list[tuple[int, list[str]]] = list(compress(enumerate(owns), named))
    if not refs:
        return top, sources, own
    return frozenset(refs).union(top) if uses_top else frozenset(refs), sources, own


# what an absent ``sourceLabels`` reads as (never written to)
_NO_LABELS: dict[str, str] = {}


def _plain_sources(matches: list[dict[str, Any]], namespace: str) -> tuple[_Source, ...] | None:
    """The distinct sources of mesh matches, first seen first; None when some match's
    ``sourceNamespace`` or ``sourceLabels`` is of a shape ``_clients`` reports."""
    names: list[Any] = list(map(dict.get, matches, repeat("sourceNamespace")))
    if not set(map(type, names)) <= {NoneType, str}:
        return None
    labels: list[Any] = list(map(dict.get, matches, repeat("sourceLabels"), repeat(_NO_LABELS)))
    kinds = set(map(type, labels))
    if NoneType in kinds:
        # written out as null: read as absent
        labels = [found or _NO_LABELS for found in labels]
        kinds.discard(NoneType)
    if not kinds <= {dict}:
        return None
    keys = list(chain.from_iterable(labels))
    if not _all_of(keys, str) or not _all_of(
        list(chain.from_iterable(map(dict.values, labels))), str
    ):
        return None
    distinct = dict.fromkeys(zip(names, map(tuple, map(dict.items, labels)), strict=True))
    return tuple(dict.fromkeys(_Source(name or namespace, items) for name, items in distinct))


def _label_items(value: Any) -> tuple[tuple[str, str], ...] | None:
    """A label map's items; None when it is not a map of strings (``Reader.labels`` says why)."""
    if type(value) is not dict:
        return None
    for key, label in value.items():
        if type(key) is not str or type(label) is not str:
            return None
    return tuple(value.items())


def _destinations(
    reader: Reader,
    memo: _Memo,
    found: _Found,
    items: Any,
    rpath: str,
    name: str,
    subsets: list[tuple[str, str, str]] | None = None,
) -> None:
    """Add the ``destination.host`` of each entry of ``route`` or ``mirrors`` (and subsets)."""
    for j, entry in _objects(reader, items, rpath, name):
        target = entry.get("destination")
        if target is None:
            continue
        if not is_object(target):
            reader.mapping(target, f"{rpath}{name}[{j}].destination")
            continue
        _add_destination(reader, memo, found, subsets, target, rpath, f"{name}[{j}].destination")


def _add_destination(
    reader: Reader,
    memo: _Memo,
    found: _Found,
    subsets: list[tuple[str, str, str]] | None,
    target: Mapping[str, Any],
    prefix: str,
    name: str,
) -> None:
    """Add a Destination's host, and its subset: the subset picks the SNI towards a gateway."""
    before = len(found)
    _add_host(reader, memo, found, target.get("host"), prefix, f"{name}.host")
    subset = target.get("subset")
    if subsets is not None and isinstance(subset, str) and subset and len(found) > before:
        subsets.append((f"{prefix}{name}.subset", found[-1][1], subset))


def _add_host(
    reader: Reader,
    memo: _Memo,
    found: _Found,
    value: Any,
    prefix: str,
    name: str = "",
) -> None:
    if value is None:
        return
    path = prefix + name
    host = value if type(value) is str else reader.string(value, path)
    if host:
        checked = memo.host(reader, host, path)
        if checked is not None:
            found.append((path, checked))


# --- tenants ------------------------------------------------------------------------------------


def _check_tenant(
    reader: Reader,
    memo: _Memo,
    hosts: ReadHosts,
    routes: _Routes,
    gateway_entries: _GatewayEntries,
    top_refs: tuple[str, ...],
    exported: bool,
) -> None:
    policy, namespace = memo.policy, memo.namespace
    # rules can name thousands of gateways, most of them the same few: each judged once
    fine: set[str] = set()

    def tenant_gateway(ref: str) -> bool:
        """Whether a tenant may name the gateway ``ref`` (not one of the egress namespace)."""
        if ref in fine:
            return True
        target = gateway_ref(ref, namespace)
        if target is None or not policy.is_egress_namespace(target[0]):
            fine.add(ref)
            return True
        return False

    egress = policy.egress_namespace
    for entry in gateway_entries:
        entries: Iterable[tuple[str, str]]
        if isinstance(entry, _Rules | _Refs):
            joined = "\n".join(entry.refs)
            # a bare name is a gateway of the VirtualService's own namespace, and a reference
            # to one of the egress namespace names that namespace
            if (
                ("/" not in joined and "." not in joined)
                or egress not in joined
                or all(map(tenant_gateway, set(entry.refs)))
            ):
                continue
            entries = entry.gateway_entries()
        else:
            entries = (entry,)
        for path, ref in entries:
            if not tenant_gateway(ref):
                reader.add(
                    path,
                    f"{ref!r} is a gateway in the egress namespace {policy.egress_namespace}; "
                    "tenants must not program the egress gateways (their routes come from the "
                    "policy)",
                )
    some = policy.allowed_for_some(namespace)
    external: list[str] = []
    # hosts only steer sidecars when some rule applies to the mesh; a VirtualService bound to
    # the tenant's own (ingress) gateways names the hosts that gateway receives, not egress
    mesh_bound = MESH in top_refs or any(route.mesh for route in routes)
    public_name = mesh_bound and _serves_own_public_name(policy, top_refs, routes)

    def judge(path: str, host: str, into: Reader = reader) -> bool:
        """Report a wrong host; True for a steered (external) one."""
        if is_ip(host):
            into.add(path, f"{host!r} is an IP address; name the external host instead")
        elif overbroad(host):
            into.add(path, f"{host!r} is over-broad: it would capture traffic for every host")
        elif not policy.is_internal(host):
            if policy.services_covering(host) & some or public_name:
                # steered hosts: a VirtualService seen beyond the namespace hijacks them
                return True
            into.add(
                path,
                f"{host!r} is not an external service any workload of namespace {namespace} "
                f"may reach; allowed: {policy.describe_allowed(some)}",
            )
        return False

    # names of one Policy.host_class get one verdict (IPs, which end in a digit, stay apart):
    # a VirtualService can list 18k hosts under a few domains
    classes = many(hosts.names)
    pending = iter(hosts) if mesh_bound else ()
    names = hosts.names if mesh_bound and classes else []
    keys: list[Hashable] | list[str] | None = None
    if names:
        keys = _repeated(names) or _parent_keys(policy, names, joined=hosts.joined)
    if keys is not None:
        # one host per class judged first, aside: when none is wrong, that is every verdict
        steered_by: dict[Hashable, bool] = {}
        for key, host in dict(zip(keys, names, strict=True)).items():
            scratch = Reader()
            steered_by[key] = judge("", host, scratch)
            if scratch.violations:
                break
        else:
            external = list(compress(names, map(steered_by.__getitem__, keys)))
            pending = ()
    verdicts: dict[Hashable, bool] = {}
    violations = reader.violations
    # the keys found above, else each host's class (or its own text) as it is read
    known_keys: Iterator[Hashable] = iter(keys) if keys is not None and pending else iter(())
    for path, host in pending:
        key = next(known_keys, None)
        if key is None and classes:
            found = None if host[-1:].isdigit() else policy.host_class(host)
            # a name judged alone, or an IP: the same text gets the same verdict
            key = OWN_TEXT + host if found is None else found
        steered = verdicts.get(key) if key is not None else None
        if steered is None:
            before = len(violations)
            steered = judge(path, host)
            if key is not None and len(violations) == before:
                verdicts[key] = steered
        if steered:
            external.append(host)
    hosts_steered = tuple(external)
    for route in routes:
        if isinstance(route, _Rules):
            _check_tenant_rules(reader, memo, route, hosts_steered, exported)
        else:
            _check_tenant_route(reader, memo, route, hosts_steered, exported)


def _check_tenant_rules(
    reader: Reader, memo: _Memo, rules: _Rules, external: tuple[str, ...], exported: bool
) -> None:
    """``_check_tenant_route`` for each rule of a long list, once per distinct question.

    Two rules with the same clients, the same kind of delegate, and hosts of the same keys
    (``_Rules.host_keys``) in the same places get the same verdict: a rule is judged on its
    own unless a rule of its key was found clean.  Generated lists repeat a handful of rule
    shapes over thousands of services.
    """
    namespace = memo.namespace
    alike = rules.rule_keys(memo.policy)
    if alike is not None:
        judge_classes(
            reader,
            alike,
            lambda into, pos: _check_tenant_route(into, memo, rules.route(pos), external, exported),
        )
        return
    keys = rules.host_keys(memo.policy)
    done = rules.done
    violations = reader.violations
    clean: set[Hashable] = set()
    for pos, (parts, k) in enumerate(zip(rules.parts, rules.starts, strict=True)):
        if parts is None:
            _check_tenant_route(reader, memo, done[pos][0], external, exported)
            continue
        clients, count, targets, redirect, rewrite, delegate = parts
        end = k + len(targets) + (1 if redirect else 0) + len(rewrite)
        key = (
            count if clients is None else (MESH in clients[0], clients[1]),
            None if delegate is None else delegate == namespace,
            len(targets),
            tuple(keys[k:end]),
        )
        if key in clean:
            continue
        before = len(violations)
        _check_tenant_route(reader, memo, rules.route(pos), external, exported)
        if len(violations) == before:
            clean.add(key)


def _serves_own_public_name(policy: Policy, top_refs: tuple[str, ...], routes: _Routes) -> bool:
    """An app's public name, served by its ingress gateway and answered in-cluster for the mesh.

    Bound to ``mesh`` and to a tenant gateway, with every route, mirror and rewrite staying in
    the cluster: sidecars calling the name reach the app itself, nothing leaves.  Redirects are
    answered to the client, whose next request meets its own sidecar; a rewrite counts only
    where the Host picks the upstream (``_host_picks_upstream``).
    """
    if top_refs.count(MESH) == len(top_refs):
        return False
    for route in routes:
        hosts: Iterable[str]
        if isinstance(route, _Rules):
            if route.delegates:
                return False
            hosts = _served_hosts(policy, route)
        else:
            if route.delegate is not None:
                return False
            hosts = _hosts_of(route.destinations)
            if route.rewrites and _host_picks_upstream(policy, route):
                hosts = chain(hosts, map(itemgetter(1), route.rewrites))
        for host in hosts:
            if policy.services_on_gateway(host):
                return False
            inside = policy.is_internal_address(host) if is_ip(host) else policy.is_internal(host)
            if not inside:
                return False
    return True


def _served_hosts(policy: Policy, rules: _Rules) -> Iterable[str]:
    """One host per key of a long list's destinations and rewrites (redirects, and rewrites
    where the Host picks no upstream, left out): whether it is a gateway or in the cluster is
    the same for every host of a key."""
    for route, _ in rules.done.values():
        yield from _hosts_of(route.destinations)
        if route.rewrites and _host_picks_upstream(policy, route):
            yield from map(itemgetter(1), route.rewrites)
    checked, keys = rules.checked, rules.host_keys(policy)
    if rules.redirects or rules.rewrites:
        skipped: set[int] = set()
        for parts, k in zip(rules.parts, rules.starts, strict=True):
            if parts is None:
                continue
            at = k + len(parts[2])
            if parts[3]:
                skipped.add(at)
                at += 1
            # a rewrite's key says whether its Host picks the upstream (_Rules.host_keys)
            if parts[4] and not cast("tuple[str, Hashable, bool]", keys[at])[2]:
                skipped.update(range(at, at + len(parts[4])))
        picked = {keys[k]: checked[k] for k in range(len(checked)) if k not in skipped}
    else:
        picked = dict(zip(keys, checked, strict=True))
    yield from picked.values()


def _leaves_services(policy: Policy, hosts: Iterable[str]) -> bool:
    """Whether some of ``hosts`` is not surely a Service of a tenant, where the Host header
    decides nothing about the upstream.

    A destination's cluster is the one of its exact name.  A cluster name (``svc.<domain>``),
    written without a wildcard and outside the egress namespaces, is a Kubernetes Service (its
    pods), an ExternalName alias (the cluster of a name the Services check judged) or a
    ServiceEntry of that exact name, which connects to endpoints or the dialled address:
    none of them routes on the Host header.  Everything else may: an egress gateway routes on
    it, a wildcard entry resolved per request (``DYNAMIC_DNS``) connects to it, and an address
    or an external name is judged as leaving the cluster.
    """
    zones = policy.egress_zones
    is_internal, on_gateway = policy.is_internal, policy.services_on_gateway
    for host in hosts:
        if not is_internal(host) or "*" in host or host.endswith(zones) or on_gateway(host):
            return True
    return False


# the key of a rewrite where the Host picks no upstream: nothing is asked of its host
_UNPICKED = ("rewrite", None, False)


def _leaving(policy: Policy, hosts: list[str]) -> list[bool]:
    """``_leaves_services`` of each host on its own, in passes over them all."""
    distinct = repeated_texts(hosts) if many(hosts) else None
    if distinct is not None:
        # a few texts repeated (every rule to the egress gateway): each looked at once
        found = dict(zip(distinct, _leaving(policy, distinct), strict=True))
        return list(map(found.__getitem__, hosts))
    if _tenant_services(policy, hosts):
        return [False] * len(hosts)
    zones = policy.egress_zones
    return list(
        map(
            any,
            zip(
                map(not_, map(policy.is_internal, hosts)),
                map(str.__contains__, hosts, repeat("*")),
                map(str.endswith, hosts, repeat(zones)),
                map(policy.services_on_gateway, hosts),
                strict=True,
            ),
        )
    )


def _tenant_services(policy: Policy, hosts: list[str]) -> bool:
    """Whether ``_leaves_services`` is false of every host, read from their joined text: each
    ends in the Service zone and none in an egress zone, no wildcard, no gateway."""
    lines = "\n".join(hosts) + "\n"
    # a line per host, each ending with the zone (valid names hold no newline of their own)
    if lines.count("\n") != len(hosts) or "*" in lines:
        return False
    if lines.count(f".{policy.service_zone}\n") != len(hosts):
        return False
    if any(map(lines.__contains__, map("{}\n".format, policy.egress_zones))):
        return False
    return _gateway_fqdns(policy).isdisjoint(hosts)


def _host_picks_upstream(policy: Policy, route: _Route) -> bool:
    """Whether an authority rewrite on ``route`` can change where its traffic goes: a
    destination (mirrors included) may leave the cluster or reach an egress gateway, or the
    route delegates to destinations this check does not see.  Otherwise the rewrite only
    changes the Host header a tenant's Service receives."""
    return route.delegate is not None or _leaves_services(policy, _hosts_of(route.destinations))


def _generated_route_hint(policy: Policy, host: str, services: frozenset[str], source: str) -> str:
    """What to do instead of a mesh route straight out to a host its sources may reach.

    The generator already writes, in every namespace some rule allows a service, a
    VirtualService sending the service's hosts to the egress gateway (``desired/tenants.py``).
    Sidecars keep one VirtualService per host, the oldest
    (docs/istio-semantics.md#virtualservice-exportto), which is that one: the developer's own
    route for the host is not needed, and a timeout or retry added in a second one would not
    apply."""
    routes = ", ".join(tenant_route_name(s) for s in sorted(services))
    return (
        f"{host!r} is outside the mesh: traffic from {source} to it must go through the egress "
        f"gateway, and egress-guard's VirtualService {routes} in this namespace already sends "
        f"it there: call {host} with no route of your own (sidecars use the oldest "
        f"VirtualService of a host, that one, so timeouts and retries for it belong in the "
        f"application), or route to {egress_fqdns(policy, services)} with that "
        f"VirtualService's subset and port"
    )


def _check_tenant_route(
    reader: Reader,
    memo: _Memo,
    route: _Route,
    external: tuple[str, ...],
    exported: bool,
) -> None:
    policy, namespace = memo.policy, memo.namespace
    allowed, source = memo.route_allowed(route)
    hijack = exported and bool(external) and route.mesh
    # the rewritten hosts the gateway routes on, after the steered ones
    rewritten: list[str] = []
    # a redirect is answered to the client, whose next request meets its own sidecar: only
    # rewrites change where this proxy sends traffic, and only where the Host picks the upstream
    rewrites = route.rewrites if route.rewrites and _host_picks_upstream(policy, route) else ()
    for path, host in rewrites:
        if is_ip(host) or policy.is_internal(host):
            continue
        if not policy.services_covering(host) & allowed:
            reader.add(
                path,
                f"{host!r} is not an external service {source} may reach; allowed: "
                f"{policy.describe_allowed(allowed)}",
            )
        else:
            # the rewritten Host header is what the egress gateway routes on
            rewritten.append(host)
    more = tuple(rewritten)

    def judge(into: Reader, path: str, host: str) -> None:
        if policy.services_on_gateway(host):
            problems = memo.gateway_problems(host, external, allowed, source, namespace, more)
            for message in problems:
                into.add(path, message)
        elif is_ip(host) and not policy.is_internal_address(host):
            into.add(path, f"{host!r} is an IP address outside the cluster; name a service")
        elif policy.is_internal(host) or is_ip(host):
            if hijack:
                into.add(path, _hijack(policy, host, external))
        else:
            covering = policy.services_covering(host)
            if covering and not route.mesh:
                # a gateway's leg: the traffic is the gateway's, whoever sent it there
                on = _gateway_names(route, namespace)
                message = (
                    f"{host!r} is outside the mesh: this route on {on} would send traffic "
                    f"straight out to it; route to {egress_fqdns(policy, covering)} instead"
                )
                mine = covering & policy.allowed_for_some(namespace)
                if mine:
                    # Istio's egress-gateway task writes this leg: the generator already did
                    routes = ", ".join(tenant_route_name(s) for s in sorted(mine))
                    message += (
                        f" (calls from namespace {namespace} already go through the egress "
                        f"gateway, by egress-guard's VirtualService {routes}: no route of yours "
                        "on an egress gateway is needed)"
                    )
            elif covering & allowed:
                message = _generated_route_hint(policy, host, covering & allowed, source)
            elif covering:
                message = (
                    f"{host!r} is outside the mesh: traffic from {source} to it must go through "
                    f"the egress gateway; route to {egress_fqdns(policy, covering)} instead"
                )
            else:
                message = (
                    f"{host!r} is outside the mesh and not an external service of the policy; "
                    f"{source} may reach {policy.describe_allowed(allowed)}"
                )
            into.add(path, message)

    destinations = route.destinations
    if many(destinations):
        # a rule can list 80k destinations among a few classes: each class judged once
        keys = _destination_keys(policy, _hosts_of(destinations))
        judge_classes(reader, keys, lambda into, i: judge(into, *destinations[i]))
    else:
        for path, host in destinations:
            judge(reader, path, host)
    subset_allowed, subset_source = allowed, source
    if memo.viewers is not None and route.mesh:
        # other namespaces' sidecars that import this VirtualService take its subsets too
        subset_allowed = allowed & memo.viewers
        subset_source = f"{source} and the other namespaces that can see this VirtualService"
    for path, host, subset in route.subsets:
        problem = gateway_subset_problem(
            policy, host, subset, subset_allowed, subset_source
        ) or passthrough_subset_problem(policy, host, subset, route.sni_hosts)
        if problem:
            reader.add(path, problem)
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


def _destination_keys(policy: Policy, hosts: list[str]) -> Sequence[Hashable]:
    """A key per destination host of one rule: hosts of a key get the same verdicts from the
    tenant check (None: judged alone).  Names by ``Policy.host_class`` (in passes of C when
    ``_parent_keys`` can), addresses by ``AddressClasses``."""
    # a few texts repeated: a destination's verdict depends on its text alone
    repeated = _repeated(hosts)
    if repeated is not None:
        return repeated
    classes = AddressClasses(policy)
    # addresses of one block first: they are told from names by the first and last alone
    wide = classes.one_wide(hosts)
    if wide is not None:
        return [wide] * len(hosts)
    # then addresses anywhere (IPv6 ones too), by the policy ranges they lie in
    placed = classes.interval_keys(hosts)
    if placed is not None:
        return placed
    own = policy.own_names.intersection(hosts)
    if not own:
        keys = _parent_keys(policy, hosts)
    else:
        # the rule's own service or its mirror, listed by the policy, among thousands of
        # other names: those judged alone (as host_class has it), the others by parent
        alone = list(map(own.__contains__, hosts))
        keys = _parent_keys(policy, list(compress(hosts, map(not_, alone))))
        if keys is not None:
            positions = list(compress(range(len(hosts)), alone))
            if len(positions) * 16 > len(hosts):
                found = iter(keys)
                return [None if lone else next(found) for lone in alone]
            for i in positions:
                keys.insert(i, None)
    if keys is not None:
        return keys
    return [classes.key(host) if host[-1:].isdigit() else policy.host_class(host) for host in hosts]


def _viewers_allowed(policy: Policy, visible: Visibility) -> frozenset[str]:
    """Services every workload of every namespace that sees an object may reach."""
    if visible.everywhere:
        # a namespace no rule names gets exactly the "*" rules
        return policy.allowed_for(Workloads(""))
    allowed: frozenset[str] | None = None
    for ns in rule_representatives(policy, visible.namespaces):
        found = policy.allowed_for(Workloads(ns))
        allowed = found if allowed is None else allowed & found
    return allowed or frozenset()


def _gateway_names(route: _Route, namespace: str) -> str:
    """The gateways a route applies to, as ``namespace/name``."""
    named = sorted(
        {f"{ref[0]}/{ref[1]}" for ref in map(gateway_ref, route.gateways, repeat(namespace)) if ref}
    )
    return ("gateway " if len(named) == 1 else "gateways ") + ", ".join(named)


def _hijack(policy: Policy, host: str, external: tuple[str, ...]) -> str:
    covering = frozenset().union(*(policy.services_covering(h) for h in external))
    # for the tenant's own public name (no service of the policy) no gateway is the answer
    fix = (
        f"route it to {egress_fqdns(policy, covering)} or set exportTo: ['.']"
        if covering
        else "set exportTo: ['.']"
    )
    return (
        f"this VirtualService is visible to other namespaces (exportTo omitted or not '.'), so it "
        f"would steer their traffic for {', '.join(external)} to {host!r}; {fix}"
    )


def _gateway_problems(
    policy: Policy,
    fqdn: str,
    route_hosts: tuple[str, ...],
    allowed: frozenset[str],
    source: str,
    namespace: str | None = None,
) -> tuple[str, ...]:
    """Why routing ``route_hosts`` from ``source`` (of ``namespace``) to the egress gateway
    ``fqdn`` is wrong."""
    carried = policy.services_on_gateway(fqdn)
    if not route_hosts:
        if frozenset(carried) & allowed:
            return ()
        return (
            f"{fqdn} is the egress gateway of {policy.describe_allowed(carried)}, which "
            f"{source} may not reach; allowed: {policy.describe_allowed(allowed)}",
        )
    # hosts of a class are carried by the same gateways' services (_destination_keys): each
    # class asked once, and when every one is carried and allowed no host is looked at again
    # (a VirtualService of 12k hosts routed to the gateway)
    keys: Sequence[Hashable] = (
        _destination_keys(policy, list(route_hosts))
        if many(route_hosts)
        else [None] * len(route_hosts)
    )
    firsts = dict(zip(keys, route_hosts, strict=True))
    found = {
        key: frozenset(s for s in carried if policy.service_hosts_covering(s, host))
        for key, host in firsts.items()
        if key is not None
    }
    if None not in firsts and all(map(allowed.__and__, found.values())):
        return ()
    problems: list[str] = []
    for key, host in zip(keys, route_hosts, strict=True):
        carriers = None if key is None else found[key]
        if carriers is None:
            carriers = frozenset(s for s in carried if policy.service_hosts_covering(s, host))
        if not carriers:
            covering = policy.services_covering(host)
            problems.append(
                f"the egress gateway {fqdn} does not carry {host!r} (it carries "
                f"{policy.describe_allowed(carried)}); route {host!r} to "
                f"{egress_fqdns(policy, covering)}"
            )
        elif not carriers & allowed:
            problems.append(
                f"{host!r} through {fqdn} is not allowed for {source}; they may reach "
                f"{policy.describe_allowed(allowed)}{_labelled_hint(policy, namespace, carriers)}"
            )
    return tuple(problems)


def _labelled_hint(policy: Policy, namespace: str | None, services: frozenset[str]) -> str:
    """How a route could be narrowed to the workloads of ``namespace`` a label rule allows."""
    if namespace is None:
        return ""
    labelled = sorted(
        {
            ", ".join(f"{k}: {v}" for k, v in sorted(rule.source.workload_labels.items()))
            for rule in policy.rules_for_namespace(namespace)
            if not services.isdisjoint(rule.services) and rule.source.workload_labels
        }
    )
    if not labelled:
        return ""
    return (
        f" (workloads labelled {' or '.join('{' + each + '}' for each in labelled)} may: give the "
        "route's match sourceLabels with those labels)"
    )


# --- the egress namespace -----------------------------------------------------------------------


def _check_egress_namespace(
    reader: Reader,
    memo: _Memo,
    hosts: ReadHosts,
    routes: _Routes,
    gateway_entries: _GatewayEntries,
) -> None:
    policy, namespace = memo.policy, memo.namespace
    known = policy.describe_allowed(policy.services)
    for path, ref in _each_entry(gateway_entries):
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
    steered = tuple(route_hosts)
    for route in _each_route(routes):
        # sorted: a set's order changes with the hash seed, and replicas should say the same
        contexts = [
            gateway
            for ref in sorted(route.gateways)
            if (target := gateway_ref(ref, namespace)) is not None
            and (gateway := policy_gateway(policy, target)) is not None
        ]
        own = len(route.destinations)
        for index, (path, host) in enumerate(
            chain(route.destinations, route.rewrites, route.redirects)
        ):
            if index >= own:
                # a rewrite or redirect authority: only where it leads is asked
                if not policy.services_covering(host):
                    reader.add(path, f"{host!r} is not an external service of the policy: {known}")
                continue
            if route.mesh:
                if policy.services_on_gateway(host):
                    for message in memo.gateway_problems(host, steered, everything, "the mesh"):
                        reader.add(path, message)
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

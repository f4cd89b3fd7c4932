"""VirtualService: routing, which decides where a proxy sends traffic for a host.

A VirtualService grants nothing by itself (the Sidecar import and the gateway decide what can be
reached), but it can *steer*: send traffic for an external host straight out instead of through the
egress gateway, mirror it to another destination, hand it to a gateway that carries another service,
or, exported to every namespace, hijack other tenants' calls
(docs/istio-semantics.md#virtualservice-exportto, trap 7).  So every destination of every route is
checked: ``route``, ``mirror(s)``, ``redirect``/``rewrite`` authorities and ``delegate``
(docs/istio-semantics.md#virtualservice-destinations).

In the egress namespace VirtualServices are the security team's two-leg routes: from sidecars
(``mesh``) to a policy egress gateway, and from that gateway to the services it carries.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from functools import lru_cache
from itertools import repeat
from typing import Any, NamedTuple

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import (
    MESH,
    Reader,
    Visibility,
    egress_fqdns,
    gateway_ref,
    gateway_subset_problem,
    many,
    overbroad,
    passthrough_subset_problem,
    policy_gateway,
    split_authority,
    visibility,
)
from webhook.core.decisions import STOP_AFTER_VIOLATIONS, Violation
from webhook.core.hosts import (
    LABEL,
    MAX_HOST_LENGTH,
    VALID_NAME,
    all_valid_names,
    is_ip,
    normalize,
)
from webhook.core.policy import Policy, Workloads
from webhook.core.reviews import Review

_ROUTE_KINDS = ("http", "tls", "tcp")
_HTTP_EXTRAS = frozenset(("mirror", "mirrors", "redirect", "rewrite", "delegate"))


# _Source and _Route are NamedTuples rather than frozen dataclasses: one of each is built per
# route on the admission path, and a frozen dataclass's __init__ costs several times more


class _Source(NamedTuple):
    """Client workloads a mesh route applies to (``sourceNamespace`` / ``sourceLabels``)."""

    namespace: str
    # label items in document order (hashable, so equal sources share one policy lookup)
    labels: tuple[tuple[str, str], ...] = ()


class _Route(NamedTuple):
    """One http/tls/tcp rule reduced to what matters for egress."""

    gateways: frozenset[str]
    sources: tuple[_Source, ...]
    destinations: tuple[tuple[str, str], ...]
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
        self._gateways: dict[tuple[str, tuple[str, ...], frozenset[str], str], tuple[str, ...]] = {}
        # services every other namespace that sees the VirtualService may reach (None: private)
        self.viewers: frozenset[str] | None = None
        self.short_suffix = _short_name_suffix(namespace, self.domain)

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
        self, fqdn: str, route_hosts: tuple[str, ...], allowed: frozenset[str], source: str
    ) -> tuple[str, ...]:
        """``_gateway_problems``, once per distinct question."""
        key = (fqdn, route_hosts, allowed, source)
        found = self._gateways.get(key)
        if found is None:
            found = self._gateways[key] = _gateway_problems(
                self.policy, fqdn, route_hosts, allowed, source
            )
        return found


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
    top = reader.strings(spec.get("gateways"), "spec.gateways")
    top_refs = tuple(ref for _, ref in top) or (MESH,)
    routes, gateway_entries = _routes(reader, memo, spec, top_refs)
    gateway_entries = top + gateway_entries
    if policy.is_egress_namespace(namespace):
        _check_egress_namespace(reader, memo, hosts, routes, gateway_entries)
    else:
        visible = visibility(reader, spec.get("exportTo"), namespace)
        exported = visible.beyond(namespace)
        if exported:
            memo.viewers = _viewers_allowed(policy, visible)
        _check_tenant(reader, memo, hosts, routes, gateway_entries, top_refs, exported)
    return reader.violations


def _hosts(
    reader: Reader, policy: Policy, spec: Mapping[str, Any], namespace: str
) -> list[tuple[str, str]]:
    raw_hosts = spec.get("hosts")
    if (
        type(raw_hosts) is list
        and many(raw_hosts)
        and all_valid_names(raw_hosts)
        and all(map(str.__contains__, raw_hosts, repeat(".")))
    ):
        # valid, normalized and none a short name to expand: what reader.host would return,
        # found in a few passes of C instead of one regex call per host
        return reader.strings(raw_hosts, "spec.hosts")
    hosts = []
    for path, raw in reader.strings(raw_hosts, "spec.hosts"):
        host = reader.host(
            raw, path, expand_in=namespace, cluster_domain=policy.cluster_domain, allow_ip=True
        )
        if host is not None:
            hosts.append((path, host))
    return hosts


# Field paths are built only where a value is kept for a later message (a destination, a
# gateway reference) or when a value has the wrong shape: a route that is fine costs no strings.


def _is_object(value: Any) -> bool:
    # exact dicts are what JSON gives; the ABC check is the slow path for other mappings
    return type(value) is dict or isinstance(value, Mapping)


def _objects(
    reader: Reader, value: Any, prefix: str, name: str = ""
) -> list[tuple[int, Mapping[str, Any]]]:
    """``(i, item)`` for each object of the list at ``prefix + name``, as ``Reader.mappings``."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        for item in value:
            if type(item) is not dict and not isinstance(item, Mapping):
                break
        else:
            return list(enumerate(value))
    # some shape is wrong: let the reader report it, in its words and order
    reader.mappings(value, prefix + name)
    if not isinstance(value, list | tuple):
        return []
    return [(i, item) for i, item in enumerate(value) if _is_object(item)]


def _object(reader: Reader, value: Any, prefix: str, name: str) -> Mapping[str, Any]:
    """``value`` if it is an object, as ``Reader.mapping``."""
    if value is None or _is_object(value):
        return value or {}
    return reader.mapping(value, prefix + name)


def _string(reader: Reader, value: Any, prefix: str, name: str) -> str | None:
    """``value`` if it is a string, as ``Reader.string``."""
    if value is None or isinstance(value, str):
        return value
    return reader.string(value, prefix + name)


def _routes(
    reader: Reader, memo: _Memo, spec: Mapping[str, Any], top_refs: tuple[str, ...]
) -> tuple[list[_Route], list[tuple[str, str]]]:
    top = frozenset(top_refs)
    routes: list[_Route] = []
    gateway_entries: list[tuple[str, str]] = []
    fast: _ManyRoutes | None = None
    for kind in _ROUTE_KINDS:
        base = f"spec.{kind}"
        items = _objects(reader, spec.get(kind), base)
        if many(items):
            if fast is None:
                fast = _ManyRoutes(memo, top)
            fast.read(reader, kind, items, base, routes, gateway_entries)
            continue
        for i, item in items:
            routes.append(_route(reader, memo, kind, item, f"{base}[{i}]", top, gateway_entries))
    return routes, gateway_entries


def _route(
    reader: Reader,
    memo: _Memo,
    kind: str,
    item: Mapping[str, Any],
    rpath: str,
    top: frozenset[str],
    gateway_entries: list[tuple[str, str]],
) -> _Route:
    """One rule read the general way: every shape problem reported, in the rule's order."""
    gateways, sources = _clients(
        reader, item.get("match"), rpath, memo.namespace, top, gateway_entries
    )
    destinations: list[tuple[str, str]] = []
    subsets: list[tuple[str, str, str]] = []
    _destinations(reader, memo, destinations, item.get("route"), rpath, ".route", subsets)
    redirects: list[tuple[str, str]] = []
    rewrites: list[tuple[str, str]] = []
    delegate = None
    # only http rules mirror, redirect, rewrite or delegate, and most do none of it
    if kind == "http" and not _HTTP_EXTRAS.isdisjoint(item):
        delegate = _http_extras(
            reader, memo, item, rpath, destinations, redirects, rewrites, subsets
        )
    return _Route(
        gateways,
        sources,
        tuple(destinations),
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


# where a rule's j-th route or mirrors entry names its destination, for the usual few entries
_ROUTE_NAMES = tuple(f".route[{j}].destination" for j in range(8))
_MIRRORS_NAMES = tuple(f".mirrors[{j}].destination" for j in range(8))


def _entries(targets: list[tuple[str, Any]], value: Any, names: tuple[str, ...], name: str) -> None:
    """Gather the ``destination`` of each entry of a ``route`` or ``mirrors`` list."""
    if type(value) is not list:
        raise _Unusual
    for j, entry in enumerate(value):
        if type(entry) is not dict:
            raise _Unusual
        target = entry.get("destination")
        if target is not None:
            targets.append((names[j] if j < len(names) else f"{name}[{j}].destination", target))


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
# each destination, the redirect and rewrite hosts, and the delegate's namespace
_Gathered = tuple[
    tuple[frozenset[str], tuple[_Source, ...], list[tuple[int, list[str]]]] | None,
    int,
    list[tuple[str, str | None]],
    str | None,
    str | None,
    str | None,
]


class _ManyRoutes:
    """Long rule lists read in two loops, without the general path's layers of calls.

    A 3 MiB VirtualService holds 10k-20k rules.  A rule whose every part has the expected
    shape (objects where objects belong, strings where strings do) is gathered first, with no
    side effect; the hosts of all such rules are then validated together in a few passes of C
    (``all_valid_names``), and a second loop builds each rule's ``_Route`` in the order ``_route``
    follows, checking hosts one by one only when the list holds an invalid or unusual one.  So
    the ``_Route`` and any violation are the ones ``_route`` gives
    (``tests/unit/test_class_fast_paths.py`` holds them equal).  A rule of another shape, and
    every tls rule (whose subsets may need its SNI matches), is read by ``_route`` in its turn.
    """

    __slots__ = ("_default", "_sources", "memo", "mesh_top", "top")

    def __init__(self, memo: _Memo, top: frozenset[str]) -> None:
        self.memo = memo
        self.top = top
        self.mesh_top = MESH in top
        self._default = _Source(memo.namespace)
        # the sources of a rule with n matches that name no clients, by n (0: no match list)
        self._sources: dict[int, tuple[_Source, ...]] = {}

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
        items: list[tuple[int, Mapping[str, Any]]],
        base: str,
        routes: list[_Route],
        gateway_entries: list[tuple[str, str]],
    ) -> None:
        """Append the ``_Route`` of each rule of ``items`` (the list at ``base``)."""
        raws: list[str] = []
        gathered = [(i, item, self._gather(kind, item, raws)) for i, item in items]
        valid = self._valid_hosts(raws)
        memo, top, host = self.memo, self.top, self.memo.host
        append = routes.append
        k = 0
        for i, item, parts in gathered:
            rpath = f"{base}[{i}]"
            if parts is None:
                append(_route(reader, memo, kind, item, rpath, top, gateway_entries))
                continue
            clients, count, targets, redirect, rewrite, delegate = parts
            if clients is None:
                gateways = top
                sources = self.sources(count)
            else:
                gateways, sources, own = clients
                for j, refs in own:
                    where = f"{rpath}.match[{j}].gateways"
                    gateway_entries.extend((f"{where}[{n}]", ref) for n, ref in enumerate(refs))
            destinations: list[tuple[str, str]] = []
            subsets: list[tuple[str, str, str]] = []
            for name, subset in targets:
                path = f"{rpath}{name}.host"
                checked = valid[k] if valid is not None else host(reader, raws[k], path)
                k += 1
                if checked is not None:
                    destinations.append((path, checked))
                    if subset is not None:
                        subsets.append((f"{rpath}{name}.subset", checked, subset))
            redirects: tuple[tuple[str, str], ...] = ()
            rewrites: tuple[tuple[str, str], ...] = ()
            if redirect:
                path = f"{rpath}.redirect.authority"
                checked = valid[k] if valid is not None else host(reader, raws[k], path)
                k += 1
                if checked is not None:
                    redirects = ((path, checked),)
            if rewrite:
                path = f"{rpath}.rewrite.authority"
                checked = valid[k] if valid is not None else host(reader, raws[k], path)
                k += 1
                if checked is not None:
                    rewrites = ((path, checked),)
            append(
                _Route(
                    gateways,
                    sources,
                    tuple(destinations),
                    redirects,
                    rewrites,
                    None if delegate is None else (f"{rpath}.delegate", delegate),
                    tuple(subsets),
                    None,
                )
            )

    def _valid_hosts(self, raws: list[str]) -> list[str] | None:
        """What ``_Memo.host`` gives for each of ``raws`` when all are valid, names (dotted)
        taken as they are and short names expanded; None: check them one by one."""
        if not raws or not all_valid_names(raws):
            return None
        if all(map(str.__contains__, raws, repeat("."))):
            return raws
        suffix = self.memo.short_suffix
        # all_valid_names leaves no label, so no short name, longer than 63 characters
        if suffix is None or 63 + len(suffix) > MAX_HOST_LENGTH:
            return None
        return [raw if "." in raw else raw + suffix for raw in raws]

    def _gather(self, kind: str, item: Any, raws: list[str]) -> _Gathered | None:
        """The parts of a rule of the usual shape, its hosts added to ``raws``; None otherwise."""
        if kind == "tls" or type(item) is not dict:
            return None
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
                    plain = plain and _CLIENT_FIELDS.isdisjoint(match)
                if not plain:
                    clients = self._clients(matches)
            else:
                raise _Unusual
            targets: list[tuple[str, Any]] = []
            entries = item.get("route")
            if entries is not None:
                _entries(targets, entries, _ROUTE_NAMES, ".route")
            redirect = rewrite = delegate = None
            if kind == "http" and not _HTTP_EXTRAS.isdisjoint(item):
                target = item.get("mirror")
                if target is not None:
                    targets.append((".mirror", target))
                entries = item.get("mirrors")
                if entries is not None:
                    _entries(targets, entries, _MIRRORS_NAMES, ".mirrors")
                redirect = _authority(item.get("redirect"))
                rewrite = _authority(item.get("rewrite"))
                target = item.get("delegate")
                if target is not None:
                    if type(target) is not dict:
                        raise _Unusual
                    if target:
                        delegate = target.get("namespace")
                        if delegate is not None and type(delegate) is not str:
                            raise _Unusual
                        delegate = delegate or self.memo.namespace
            hosts: list[str] = []
            names: list[tuple[str, str | None]] = []
            for name, target in targets:
                if type(target) is not dict:
                    raise _Unusual
                value = target.get("host")
                if value is None:
                    continue
                subset = target.get("subset")
                if type(value) is not str or (subset is not None and type(subset) is not str):
                    raise _Unusual
                if value:
                    hosts.append(value)
                    names.append((name, subset or None))
        except _Unusual:
            return None
        if redirect:
            hosts.append(redirect)
        if rewrite:
            hosts.append(rewrite)
        raws.extend(hosts)
        return clients, count, names, redirect, rewrite, delegate

    def _clients(
        self, matches: list[dict[str, Any]]
    ) -> tuple[frozenset[str], tuple[_Source, ...], list[tuple[int, list[str]]]]:
        """What ``_clients`` gives for matches that name gateways or clients, and the own
        gateway lists to enter; raises ``_Unusual`` where ``_clients`` would report."""
        top = self.top
        uses_top = False
        gateways: set[str] = set()
        sources: list[_Source] = []
        own_refs: list[tuple[int, list[str]]] = []
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
                gateways.update(refs)
            if MESH in refs:
                namespace = match.get("sourceNamespace")
                if namespace is not None and type(namespace) is not str:
                    raise _Unusual
                labels = match.get("sourceLabels")
                items = () if labels is None else _label_items(labels)
                if items is None:
                    raise _Unusual
                sources.append(_Source(namespace or self.memo.namespace, items))
        if not gateways:
            return top, tuple(sources), own_refs
        return frozenset(gateways | top if uses_top else gateways), tuple(sources), own_refs


def _sni_hosts(matches: Any) -> tuple[str, ...] | None:
    """Every ``sniHosts`` entry of a tls rule; None if some match (or the rule) has none."""
    if not isinstance(matches, list) or not matches:
        return None
    found: list[str] = []
    for match in matches:
        names = match.get("sniHosts") if isinstance(match, Mapping) else None
        if not isinstance(names, list) or not names:
            return None
        found.extend(normalize(n) for n in names if isinstance(n, str))
    return tuple(found)


def _http_extras(
    reader: Reader,
    memo: _Memo,
    item: Mapping[str, Any],
    rpath: str,
    destinations: list[tuple[str, str]],
    redirects: list[tuple[str, str]],
    rewrites: list[tuple[str, str]],
    subsets: list[tuple[str, str, str]],
) -> tuple[str, str] | None:
    """Add an http rule's mirrors, redirect and rewrite authorities; its delegate, if any."""
    mirror = item.get("mirror")
    if mirror is not None:
        mirror = _object(reader, mirror, rpath, ".mirror")
        # a mirror is a destination like the route's own, subset included
        _add_destination(reader, memo, destinations, subsets, mirror, rpath, ".mirror")
    mirrors = item.get("mirrors")
    if mirrors is not None:
        _destinations(reader, memo, destinations, mirrors, rpath, ".mirrors", subsets)
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
            return f"{rpath}.delegate", dns or memo.namespace
    return None


def _clients(
    reader: Reader,
    value: Any,
    rpath: str,
    namespace: str,
    top: frozenset[str],
    gateway_entries: list[tuple[str, str]],
) -> tuple[frozenset[str], tuple[_Source, ...]]:
    """The gateways a rule applies to and, for the mesh, which client workloads it steers."""
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
            entries = reader.strings(own, f"{rpath}.match[{j}].gateways")
            gateway_entries.extend(entries)
            refs = tuple(ref for _, ref in entries) or top
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
    found: list[tuple[str, str]],
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
        if not _is_object(target):
            reader.mapping(target, f"{rpath}{name}[{j}].destination")
            continue
        _add_destination(reader, memo, found, subsets, target, rpath, f"{name}[{j}].destination")


def _add_destination(
    reader: Reader,
    memo: _Memo,
    found: list[tuple[str, str]],
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
    found: list[tuple[str, str]],
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
    hosts: list[tuple[str, str]],
    routes: list[_Route],
    gateway_entries: list[tuple[str, str]],
    top_refs: tuple[str, ...],
    exported: bool,
) -> None:
    policy, namespace = memo.policy, memo.namespace
    # rules can name thousands of gateways, most of them the same few: each judged once
    fine: set[str] = set()
    for path, ref in gateway_entries:
        if ref in fine:
            continue
        target = gateway_ref(ref, namespace)
        if target is None or not policy.is_egress_namespace(target[0]):
            fine.add(ref)
        else:
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
    public_name = mesh_bound and _serves_own_public_name(policy, top_refs, routes)

    def judge(path: str, host: str) -> bool:
        """Report a wrong host; True for a steered (external) one."""
        if is_ip(host):
            reader.add(path, f"{host!r} is an IP address; name the external host instead")
        elif overbroad(host):
            reader.add(path, f"{host!r} is over-broad: it would capture traffic for every host")
        elif not policy.is_internal(host):
            if policy.services_covering(host) & some or public_name:
                # steered hosts: a VirtualService seen beyond the namespace hijacks them
                return True
            reader.add(
                path,
                f"{host!r} is not an external service any workload of namespace {namespace} "
                f"may reach; allowed: {policy.describe_allowed(some)}",
            )
        return False

    # names of one Policy.host_class get one verdict (IPs, which end in a digit, stay apart):
    # a VirtualService can list 18k hosts under a few domains
    verdicts: dict[str, bool] = {}
    violations = reader.violations
    classes = many(hosts)
    for path, host in hosts if mesh_bound else ():
        key = None if not classes or host[-1:].isdigit() else policy.host_class(host)
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
        _check_tenant_route(reader, memo, route, hosts_steered, exported)


def _serves_own_public_name(
    policy: Policy, top_refs: tuple[str, ...], routes: list[_Route]
) -> bool:
    """An app's public name, served by its ingress gateway and answered in-cluster for the mesh.

    Bound to ``mesh`` and to a tenant gateway, with every route, mirror and rewrite staying in
    the cluster: sidecars calling the name reach the app itself, nothing leaves.  Redirects are
    answered to the client, whose next request meets its own sidecar.
    """
    if not any(ref != MESH for ref in top_refs):
        return False
    for route in routes:
        if route.delegate is not None:
            return False
        for _, host in route.destinations + route.rewrites:
            if policy.services_on_gateway(host):
                return False
            inside = policy.is_internal_address(host) if is_ip(host) else policy.is_internal(host)
            if not inside:
                return False
    return True


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
    route_hosts = external
    # a redirect is answered to the client, whose next request meets its own sidecar: only
    # rewrites change where this proxy sends traffic
    for path, host in route.rewrites:
        if is_ip(host) or policy.is_internal(host):
            continue
        if not policy.services_covering(host) & allowed:
            reader.add(
                path,
                f"{host!r} is not an external service {source} may reach; allowed: "
                f"{policy.describe_allowed(allowed)}",
            )
        elif (path, host) in route.rewrites:
            # the rewritten Host header is what the egress gateway routes on
            route_hosts += (host,)
    for path, host in route.destinations:
        if policy.services_on_gateway(host):
            for message in memo.gateway_problems(host, route_hosts, allowed, source):
                reader.add(path, message)
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
                    f"{source} may reach {policy.describe_allowed(allowed)}"
                )
            reader.add(path, message)
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


def _viewers_allowed(policy: Policy, visible: Visibility) -> frozenset[str]:
    """Services every workload of every namespace that sees an object may reach."""
    if visible.everywhere:
        # a namespace no rule names gets exactly the "*" rules
        return policy.allowed_for(Workloads(""))
    allowed: frozenset[str] | None = None
    for ns in visible.namespaces:
        found = policy.allowed_for(Workloads(ns))
        allowed = found if allowed is None else allowed & found
    return allowed or frozenset()


def _hijack(policy: Policy, host: str, external: tuple[str, ...]) -> str:
    covering = frozenset().union(*(policy.services_covering(h) for h in external))
    return (
        f"this VirtualService is visible to other namespaces (exportTo omitted or not '.'), so it "
        f"would steer their traffic for {', '.join(external)} to {host!r}; route it to the egress "
        f"gateway {egress_fqdns(policy, covering)} or set exportTo: ['.']"
    )


def _gateway_problems(
    policy: Policy, fqdn: str, route_hosts: tuple[str, ...], allowed: frozenset[str], source: str
) -> tuple[str, ...]:
    """Why routing ``route_hosts`` from ``source`` to the egress gateway ``fqdn`` is wrong."""
    carried = policy.services_on_gateway(fqdn)
    if not route_hosts:
        if frozenset(carried) & allowed:
            return ()
        return (
            f"{fqdn} is the egress gateway of {policy.describe_allowed(carried)}, which "
            f"{source} may not reach; allowed: {policy.describe_allowed(allowed)}",
        )
    problems: list[str] = []
    for host in route_hosts:
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
                f"{policy.describe_allowed(allowed)}"
            )
    return tuple(problems)


# --- the egress namespace -----------------------------------------------------------------------


def _check_egress_namespace(
    reader: Reader,
    memo: _Memo,
    hosts: list[tuple[str, str]],
    routes: list[_Route],
    gateway_entries: list[tuple[str, str]],
) -> None:
    policy, namespace = memo.policy, memo.namespace
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
        # sorted: a set's order changes with the hash seed, and replicas should say the same
        contexts = [
            gateway
            for ref in sorted(route.gateways)
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
                    for message in memo.gateway_problems(
                        host, tuple(route_hosts), everything, "the mesh"
                    ):
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

"""The per-class fast paths of the list checks agree with judging every item on its own.

ServiceEntry hosts and endpoints, Sidecar imports, VirtualService hosts, NetworkPolicy peers,
Endpoints, EndpointSlices, TLSRoute hostnames and DestinationRule tunnels judge one item per
class (``Policy.host_class``, ``AddressClasses``) and validate names in bulk
(``all_valid_names``); exportTo lists are read in C and asked about once per namespace some
rule names plus once for all the others.  Here random objects mixing
names the policy knows, names under its domains, cluster names, wildcards, IPs in split and
unsplit blocks and malformed entries are decided twice, with the fast paths and with every one
of them switched off, and the decisions must be identical, violation for violation.  The last
tests count host lookups: a list under a few domains costs a few lookups whatever its length.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.unit.builders import judge
from webhook.core.checks import (
    ClusterView,
    common,
    destinationrules,
    gatewayapi,
    networkpolicies,
    serviceentries,
    services,
    sidecars,
    virtualservices,
)
from webhook.core.checks.common import CLASSES_FROM
from webhook.core.decisions import STOP_AFTER_VIOLATIONS, Decision
from webhook.core.hosts import (
    MAX_HOST_LENGTH,
    VALID_NAME,
    address_range,
    address_ranges,
    all_valid_names,
    is_service_name,
    normalize,
)
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

POLICY = parse_policy(
    """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: egress}
internalNetworks: [10.0.0.0/8, 192.168.1.128/25, "fd00::/8"]
externalServices:
  - name: payments
    hosts: [api.payments.example]
    ports: [{number: 443, protocol: TLS}]
    addresses: [198.51.100.0/24, 203.0.113.7/32, "2001:db8:1::/48", "2001:db8::5/128"]
  - name: wide
    hosts: ["*.example.com", "*.a.example.org"]
    ports: [{number: 443, protocol: TLS}]
    addresses: [172.16.0.0/12]
  - name: labelled
    hosts: [ml.example.net]
    ports: [{number: 443, protocol: TLS}]
allow:
  - {name: tenants, from: {namespace: test-app}, to: [payments, wide]}
  - name: ml
    from: {namespace: test-app, workloadLabels: {app: trainer}}
    to: [labelled]
"""
)

PARENTS = [
    "example.com",
    "b.example.com",
    "example.org",
    "a.example.org",
    "payments.example",
    "example.net",
    "test-app.svc.cluster.local",
    "egress.svc.cluster.local",
    "svc.cluster.local",
    "cluster.local",
    "com",
    "github.io",
]
KNOWN = [
    "api.payments.example",
    "ml.example.net",
    "svc.cluster.local",
    "example.com",
    "a.example.org",
    *(gw.fqdn for gw in POLICY.gateways),
]

labels = st.sampled_from(["a", "b", "api", "x-1", "www", "c"])
names = st.one_of(
    st.builds(lambda label, parent: f"{label}.{parent}", labels, st.sampled_from(PARENTS)),
    # a domain the policy does not know between the name and the nearest one it does
    st.builds(
        lambda label, middle, parent: f"{label}.{middle}.{parent}",
        labels,
        labels,
        st.sampled_from(PARENTS),
    ),
    st.builds(lambda parent: f"*.{parent}", st.sampled_from(PARENTS)),
    st.sampled_from([*KNOWN, "*", "API.Example.com", "a.example.com.", "a..b", "-a.com", "db"]),
)
# valid names under the policy's domains and others, never one the policy lists by itself
dotted = st.builds(lambda label, parent: f"{label}.{parent}", labels, st.sampled_from(PARENTS))
octets = st.integers(0, 255)
addresses = st.one_of(
    st.builds(
        lambda a, b, c, d: f"{a}.{b}.{c}.{d}",
        st.sampled_from([10, 172, 192, 198, 203, 8]),
        st.sampled_from([0, 1, 16, 51, 168]),
        st.sampled_from([0, 1, 100, 113]),
        octets,
    ),
    st.builds(lambda d, n: f"192.168.1.{d}/{n}", octets, st.integers(24, 32)),
    st.builds(
        lambda a, b, c, n: f"{a}.{b}.{c}.0/{n}",
        st.sampled_from([10, 172, 192, 198, 203]),
        st.sampled_from([0, 16, 51, 168]),
        st.sampled_from([0, 1, 100]),
        st.integers(8, 32),
    ),
    st.sampled_from(
        ["10.0.0.0/8", "0.0.0.0/0", "2001:db8::1", "01.2.3.4", "1.2.3", "x.example.com"]
    ),
    # IPv6: inside, at and beside the bounds of the policy's ranges, other spellings, odd ones
    st.builds(
        lambda a, b: f"2001:db8:{a:x}::{b:x}",
        st.sampled_from([0, 1, 2, 0xFFFF]),
        st.sampled_from([0, 1, 4, 5, 6, 0xFFFF]),
    ),
    st.builds(lambda b: f"fd00::{b:x}", st.integers(0, 0xFFFF)),
    st.builds(lambda b: f"fe00::{b:x}", st.integers(0, 3)),
    st.sampled_from(
        [
            "2001:DB8::5",
            "2001:0db8:0000::0005",
            "2001:db8:0:0:0:0:0:5",
            "2001:db8:1:ffff:ffff:ffff:ffff:ffff",
            "2001:db8:2::",
            "::ffff:a00:1",
            "::ffff:10.0.0.1",
            "::",
            "::1",
            "2001:db8::zz",
            "2001:db8:::1",
            "1::2::3",
            "fe80::1%eth0",
            "2001:db8:1::/64",
            "::/0",
        ]
    ),
)


def _each_rule(
    self: virtualservices._ManyRoutes,
    reader: common.Reader,
    kind: str,
    objects: Any,
    base: str,
    routes: list[Any],
    gateway_entries: list[tuple[str, str]],
) -> None:
    """Every rule of a long list read the general way, as short lists are."""
    for i, item in zip(*objects, strict=True):
        rule = virtualservices._route(
            reader, self.memo, kind, item, f"{base}[{i}]", self.top, gateway_entries
        )
        routes.append(rule)


def _refs_one_by_one(
    reader: common.Reader, value: Any, path: str
) -> tuple[list[Any], tuple[str, ...]]:
    """A ``gateways`` field read reference by reference, each with its path."""
    entries = reader.strings(value, path)
    return list(entries), tuple(ref for _, ref in entries)


class _EachHost:
    """``ReadHosts`` as reading each entry gives it: the path of every name kept, written."""

    def __init__(
        self, names: list[str], indexes: list[int], template: str, invalid: list[Any]
    ) -> None:
        self.names = names
        self.indexes = indexes
        self.template = template
        self.joined = None
        self.invalid = invalid

    def index(self, kept: int) -> int:
        return self.indexes[kept]

    def path(self, kept: int) -> str:
        return self.template.format(self.indexes[kept])

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter([(self.path(k), name) for k, name in enumerate(self.names)])

    def __bool__(self) -> bool:
        return bool(self.names)


def _read_each_host(
    reader: common.Reader,
    value: Any,
    path: str,
    *,
    template: str | None = None,
    defer: bool = False,
    **options: Any,
) -> _EachHost:
    """``read_hosts`` the plain way: ``Reader.strings``, then ``Reader.host`` of each entry."""
    template = path + "[{}]" if template is None else template
    # every entry no string is recorded first, at its own index
    entries = reader.strings(value, path)
    each = common.Reader() if defer else reader
    names: list[str] = []
    indexes: list[int] = []
    invalid: list[Any] = []
    strings = [(i, v) for i, v in enumerate(value) if isinstance(v, str)] if entries else []
    for i, raw in strings:
        host = each.host(raw, template.format(i), **options)
        if host is None:
            invalid.append((i, each.violations[-1]))
        else:
            names.append(host)
            indexes.append(i)
    return _EachHost(names, indexes, template, invalid if defer else [])


def _judge_each_host(
    reader: common.Reader, policy: Policy, hosts: _EachHost, judge: common.Judge
) -> None:
    """``judge_read_hosts`` the plain way: each entry read, then judged, in list order."""
    del policy
    pending = list(hosts.invalid)
    for kept, name in enumerate(hosts.names):
        while pending and pending[0][0] < hosts.indexes[kept]:
            reader.add(pending[0][1].field, pending[0][1].message)
            pending.pop(0)
        judge(reader, kept, name)
    for _, violation in pending:
        reader.add(violation.field, violation.message)


def _read_each_item(items: Any, plain: Any, read_one: Callable[[int], Any]) -> common.Kept[Any]:
    """``read_kept`` the plain way: every item read on its own."""
    del plain
    values = []
    indexes = []
    for index in range(len(items)):
        value = read_one(index)
        if value is not None:
            values.append(value)
            indexes.append(index)
    shifts = common._Shifts()
    for kept, index in enumerate(indexes):
        while shifts.index(kept) < index:
            shifts.drop(kept)
    return common.Kept(values, shifts)


@contextmanager
def per_item() -> Iterator[None]:
    """Every fast path off: each item judged on its own, as before they existed."""
    patch = pytest.MonkeyPatch()
    for module in (serviceentries, services, gatewayapi, virtualservices):
        patch.setattr(module, "read_hosts", _read_each_host)
    for module in (services, gatewayapi):
        patch.setattr(module, "judge_read_hosts", _judge_each_host)
    patch.setattr(gatewayapi, "_none_names_namespace", lambda addresses, namespace: False)
    patch.setattr(gatewayapi, "_nothing_to_report", lambda namespace, addresses: None)
    patch.setattr(gatewayapi, "_plain_backends", lambda rules: None)
    patch.setattr(services, "_ip_chunks", lambda policy, items, cuts: None)
    patch.setattr(services, "_subsets_whole", lambda context, subsets, first, judge: None)
    patch.setattr(services, "_endpoint_chunks", lambda policy, endpoints, fqdn, cuts: None)
    patch.setattr(serviceentries, "read_kept", _read_each_item)
    patch.setattr(serviceentries, "_plain_endpoints", lambda raw: None)
    patch.setattr(networkpolicies, "_peer_classes", lambda classes, peers: [None] * len(peers))
    patch.setattr(sidecars, "import_classes", lambda policy, hosts: None)
    patch.setattr(sidecars, "_split_classes", lambda policy, hosts, joined: None)
    patch.setattr(sidecars, "listener_keys", lambda listeners: None)
    patch.setattr(sidecars, "CLASSED_CHUNK", 1 << 60)
    patch.setattr(common, "CLASSED_CHUNK", 1 << 60)
    patch.setattr(sidecars, "stop_on_breaking_start", lambda reader, judge, count: None)
    patch.setattr(networkpolicies, "stop_on_breaking_start", lambda reader, judge, count: None)
    patch.setattr(destinationrules, "subset_keys", lambda subsets: None)
    patch.setattr(destinationrules, "subset_classes", lambda policy, subsets, gateways: None)
    patch.setattr(
        destinationrules, "chunked_subset_classes", lambda policy, subsets, gateways: None
    )
    patch.setattr(common, "_exact_host_keys", lambda policy, hosts, joined=None: None)
    patch.setattr(common, "_counted_host_classes", lambda policy, hosts, joined: None)
    patch.setattr(Policy, "host_class", lambda self, host, wildcards=False: None)
    patch.setattr(common.AddressClasses, "key", lambda self, value: None)
    patch.setattr(common.AddressClasses, "keys", lambda self, values: [None] * len(values))
    patch.setattr(common.AddressClasses, "one_wide", lambda self, values: None)
    patch.setattr(common.AddressClasses, "interval_keys", lambda self, values: None)
    patch.setattr(common, "repeated_address_keys", lambda classes, values: None)
    patch.setattr(serviceentries, "_plain_strings", lambda raw: None)
    patch.setattr(destinationrules, "_target_class", lambda policy, target: None)
    patch.setattr(virtualservices._ManyRoutes, "read", _each_rule)
    patch.setattr(virtualservices, "_gateway_refs", _refs_one_by_one)
    patch.setattr(virtualservices, "_plain_clients", lambda value, top, namespace: None)
    patch.setattr(virtualservices, "_sni_lists", lambda matches: None)
    patch.setattr(virtualservices, "_repeated", lambda hosts: None)
    patch.setattr(virtualservices, "_shared_parent", lambda hosts, joined: None)
    patch.setattr(virtualservices, "repeated_texts", lambda values: None)
    patch.setattr(
        virtualservices,
        "_plain_destinations",
        lambda memo, value, rpath, subsets, name=".route": None,
    )
    patch.setattr(virtualservices, "_destination_keys", lambda policy, hosts: [None] * len(hosts))
    patch.setattr(common, "listed_strings", lambda reader, value, path: None)
    patch.setattr(common, "rule_representatives", lambda policy, namespaces: namespaces)
    patch.setattr(virtualservices, "rule_representatives", lambda policy, namespaces: namespaces)
    patch.setattr(
        common.Visibility,
        "beyond",
        lambda self, namespace: self.everywhere or bool(self.namespaces - {namespace}),
    )
    try:
        yield
    finally:
        patch.undo()


@contextmanager
def classes_at_every_size() -> Iterator[None]:
    """The fast paths taken for lists of any length, not only long ones."""
    patch = pytest.MonkeyPatch()
    patch.setattr(common, "CLASSES_FROM", 0)
    try:
        yield
    finally:
        patch.undo()


def both(manifest: dict[str, Any], view: ClusterView | None = None) -> tuple[Decision, Decision]:
    with classes_at_every_size():
        fast = judge(manifest, POLICY, view=view)
    with per_item():
        slow = judge(manifest, POLICY, view=view)
    return fast, slow


def assert_same(manifest: dict[str, Any], view: ClusterView | None = None) -> None:
    fast, slow = both(manifest, view)
    assert fast.violations == slow.violations
    assert (fast.allowed, fast.reason) == (slow.allowed, slow.reason)
    # and as deployed: short lists item by item, long ones by class
    default = judge(manifest, POLICY, view=view)
    assert default.violations == slow.violations
    assert (default.allowed, default.reason) == (slow.allowed, slow.reason)


def assert_same_virtual_service(
    spec: dict[str, Any], gateways: list[str] | None, export: Any
) -> None:
    """``assert_same`` on a VirtualService of ``spec``, in a tenant and in the egress namespace."""
    if gateways is not None:
        spec["gateways"] = gateways
    if export is not None:
        spec["exportTo"] = export
    for namespace in ("test-app", "egress"):
        assert_same(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "vs", "namespace": namespace},
                "spec": spec,
            }
        )


def import_entries(
    spaces: st.SearchStrategy[str], names: st.SearchStrategy[str], most: int
) -> st.SearchStrategy[list[str]]:
    """Lists of Sidecar imports ``namespace/name``."""
    return st.lists(
        st.builds(lambda ns, name: f"{ns}/{name}", spaces, names), min_size=1, max_size=most
    )


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# gateway references: the mesh, the own namespace's, other tenants', the egress namespace's
GATEWAY_REFS = st.sampled_from(
    [
        "mesh",
        "gw",
        "gw-1",
        "./gw",
        "test-app/gw",
        "other/gw",
        "egress/egress-payments",
        "egress/gw",
        "egress-x/gw",
        "gw.egress.svc.cluster.local",
        "gw.egress",
        "gw.other.svc.cluster.local",
        "x.egressy",
    ]
)


@FAST
@given(
    top=st.lists(GATEWAY_REFS, min_size=1, max_size=60),
    own=st.one_of(st.none(), st.lists(GATEWAY_REFS, min_size=1, max_size=60)),
    odd=st.sampled_from([None, 7, "", ["mesh"]]),
)
def test_long_gateway_lists(top: list[Any], own: list[Any] | None, odd: Any) -> None:
    # long lists of references, top-level and in a match: read as one entry each, their paths
    # built only when one is reported
    if odd is not None:
        top = [*top, odd]
    http: dict[str, Any] = {
        "route": [{"destination": {"host": "api.payments.example"}}],
    }
    if own is not None:
        http["match"] = [{"gateways": own}]
    spec: dict[str, Any] = {"hosts": ["api.payments.example"], "http": [http]}
    with classes_at_every_size():
        assert_same_virtual_service(spec, top, None)


@pytest.mark.parametrize(
    "top",
    [
        ["mesh"] * 5000,
        [f"gw-{i}" for i in range(5000)],
        [*(f"gw-{i}" for i in range(5000)), "egress/egress-payments"],
        [*(f"other/gw-{i}" for i in range(5000)), "gw.egress.svc.cluster.local", "mesh"],
        [f"egress/gw-{i}" for i in range(5000)],
    ],
)
def test_thousands_of_gateway_references(top: list[str]) -> None:
    spec: dict[str, Any] = {
        "hosts": ["api.payments.example"],
        "http": [
            {
                "match": [{"gateways": top[::-1]}],
                "route": [{"destination": {"host": "api.payments.example"}}],
            }
        ],
    }
    assert_same_virtual_service(spec, top, None)


@pytest.mark.parametrize(
    "hosts",
    [
        # a name the policy lists by itself, an IP, a name under a known domain: repeated
        ["api.payments.example"] * 3000,
        ["10.1.2.3"] * 3000,
        [("api.payments.example", "10.1.2.3", "h.example.com")[i % 3] for i in range(3000)],
        # one wrong host after thousands of copies of a good one
        [*(["api.payments.example"] * 3000), "evil.example.org"],
        [*(["h.example.com"] * 3000), "203.0.113.9", "evil.example.org"],
        # unique wildcards next to one the policy lists, one wrong host last
        ["*.example.com", *(f"*.x{i}.example.com" for i in range(3000)), "evil.example.org"],
    ],
)
def test_thousands_of_virtual_service_hosts_repeating(hosts: list[str]) -> None:
    spec: dict[str, Any] = {
        "hosts": hosts,
        "http": [{"route": [{"destination": {"host": "api.payments.example"}}]}],
    }
    assert_same_virtual_service(spec, None, ["."])


@pytest.mark.parametrize(
    "cycle",
    [
        ["api.payments.example", "h.example.com", "10.1.2.3"],
        ["api.payments.example", "evil.example.org", "203.0.113.9", "h.example.com"],
        ["ml.example.net", "egress-payments.egress.svc.cluster.local"],
    ],
)
def test_destinations_cycling_a_few_hosts_are_judged_once_per_text(cycle: list[str]) -> None:
    destinations = [{"destination": {"host": cycle[i % len(cycle)]}} for i in range(3000)]
    spec: dict[str, Any] = {
        "hosts": ["api.payments.example"],
        "http": [{"route": destinations[:40], "mirrors": destinations}],
        "tcp": [{"route": destinations}],
    }
    assert_same_virtual_service(spec, None, ["."])


def meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": "test-app"}


def sidecar(spec: dict[str, Any], selector: dict[str, str] | None) -> dict[str, Any]:
    """A tenant Sidecar with ``spec``, selecting workloads by ``selector`` when given."""
    if selector:
        spec = {**spec, "workloadSelector": {"labels": selector}}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": meta("sc"),
        "spec": spec,
    }


@FAST
@example(hosts=["a.example.com", "example.com"], endpoints=[], ports=False, resolution="DNS")
@given(
    hosts=st.lists(names, min_size=1, max_size=30),
    endpoints=st.lists(addresses, max_size=20),
    ports=st.booleans(),
    resolution=st.sampled_from(["DNS", "STATIC", "NONE"]),
)
def test_service_entries(
    hosts: list[str], endpoints: list[str], ports: bool, resolution: str
) -> None:
    assert_same(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": meta("se"),
            "spec": {
                "hosts": hosts,
                "exportTo": ["."],
                "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                "resolution": resolution,
                "endpoints": [
                    {"address": a, **({"ports": {"tls": 8443}} if ports and i % 3 else {})}
                    for i, a in enumerate(endpoints)
                ],
            },
        }
    )


@FAST
@given(
    entries=import_entries(
        st.sampled_from(["*", ".", "egress", "~", "~other", "team-b"]), names, 30
    ),
    selector=st.sampled_from([None, {"app": "trainer"}]),
    listeners=st.integers(1, 3),
)
def test_sidecar_imports(
    entries: list[str], selector: dict[str, str] | None, listeners: int
) -> None:
    spec: dict[str, Any] = {
        "egress": [{"hosts": entries[i::listeners]} for i in range(listeners)],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    }
    assert_same(sidecar(spec, selector))


# entries of a few classes, and the odd ones that must send a long list down the plain path
IMPORT_SPACES = [".", "*", "egress", "~", "~other", "team-b", "a.b", ""]
ODD_IMPORTS = [
    "a.example.com",
    "egress/a/b.example.com",
    "./*",
    "*/*",
    "~/*",
    "egress/",
    "*/*.com",
    "*/*.github.io",
    "egress/api.payments.example",
    "*/*.a.example.org",
    "egress/example.com",
    "*/*.*.example.com",
    "egress/API.example.com",
    "egress/db",
    f"*/*.{'x' * 63}.example.com",
    f"*/*.{'x' * 64}.example.com",
    f"./{'x' * 63}.example.net",
    "./a..example.com",
    "./a-.example.com",
    "./-a.example.com",
    "egress/a.example.com.",
    "egress/\x00.example.com",
    "e\x00gress/a.example.com",
    "egress/a.example.com\negress/b.example.com",
]
IMPORT_PARENTS = ["example.com", "b.example.com", "example.edu", "example.net", "com"]


@st.composite
def classed_imports(draw: st.DrawFn) -> list[str]:
    """Entries of a few namespace parts and parents (mostly ones no policy name is under)."""
    spaces = draw(st.lists(st.sampled_from(IMPORT_SPACES), min_size=1, max_size=3, unique=True))
    parents = draw(st.lists(st.sampled_from(IMPORT_PARENTS), min_size=1, max_size=2, unique=True))
    entry = st.builds(
        lambda ns, wild, label, parent: f"{ns}/{'*.' if wild else ''}{label}.{parent}",
        st.sampled_from(spaces),
        st.booleans(),
        st.sampled_from(["a", "b", "x-1", "w2", "h_3"]),
        st.sampled_from(parents),
    )
    return draw(st.lists(entry, min_size=1, max_size=120))


@FAST
@given(
    entries=classed_imports(),
    odd=st.lists(st.tuples(st.integers(0, 119), st.sampled_from(ODD_IMPORTS)), max_size=6),
    repeated=st.sampled_from([None, "egress/example.com", "./a.example.com", "*/*.example.com"]),
    sample=st.sampled_from([1, 3, 256]),
    chunk=st.sampled_from([1, 5, 4096]),
    size=st.sampled_from([7, 16, 40, 1 << 30]),
    selector=st.sampled_from([None, {"app": "trainer"}]),
)
def test_sidecar_imports_by_counting(
    entries: list[str],
    odd: list[tuple[int, str]],
    repeated: str | None,
    sample: int,
    chunk: int,
    size: int,
    selector: dict[str, str] | None,
) -> None:
    # long lists of a few classes: classes read from the first entries (however few), keys
    # built in chunks, the list classed a chunk of ``size`` at a time, odd entries anywhere,
    # chunks of one entry repeated (keyed by its text) next to chunks keyed by class
    if repeated is not None:
        entries[len(entries) // 2 : len(entries) // 2] = [repeated] * 14
    for at, entry in odd:
        entries.insert(at, entry)
    spec: dict[str, Any] = {
        "egress": [{"hosts": entries}],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sidecars, "CLASS_SAMPLE", sample)
        patch.setattr(common, "KEYS_CHUNK", chunk)
        patch.setattr(sidecars, "CLASSED_CHUNK", size)
        patch.setattr(common, "CLASSED_CHUNK", size)
        assert_same(sidecar(spec, selector))


@pytest.mark.parametrize("at", [0, 4999, 9999])
@pytest.mark.parametrize(
    "odd", ["./-bad-.example.com", "egress/h.evil.test", "egress/github.io", "./h.evil.test"]
)
def test_one_odd_import_deep_in_a_long_list(at: int, odd: str) -> None:
    # an entry no class of the others holds, anywhere in 10,000: judged with its own chunk
    entries = [f"./h{i}.example.com" if i % 2 else f"*/*.w{i}.example.com" for i in range(10_000)]
    entries[at] = odd
    spec: dict[str, Any] = {"egress": [{"hosts": entries}]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sidecars, "CLASSED_CHUNK", 1024)
        patch.setattr(common, "CLASSED_CHUNK", 1024)
        assert_same(sidecar(spec, None))


def test_entries_keyed_by_their_text_never_meet_a_class_of_another_chunk() -> None:
    # an allowed name repeated (one chunk keyed by the entries' text) and names under it in
    # the next chunk (keyed by the class of that name): the two keys differ, so the wrong
    # imports of the second chunk are still reported
    entries = ["egress/api.payments.example"] * 64
    entries += [f"egress/h{i}.api.payments.example" for i in range(64)]
    decision = judge(sidecar({"egress": [{"hosts": entries}]}, None), POLICY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sidecars, "CLASSED_CHUNK", 64)
        patch.setattr(common, "CLASSED_CHUNK", 64)
        chunked = judge(sidecar({"egress": [{"hosts": entries}]}, None), POLICY)
    assert chunked.violations == decision.violations
    assert any(v.field.endswith("hosts[64]") for v in decision.violations)


@pytest.mark.parametrize("wrong_at", [None, 0, 2500, 5999])
def test_cover_pairs_no_entry_has_leave_the_chunk_unread(wrong_at: int | None) -> None:
    # the tenant's own names and the egress namespace's: the cover pairs the egress
    # namespace with the own names' class too (a wrong pair no entry has); an egress entry of
    # that class, when there is one, is still found and reported at its place
    entries = [
        (f"./x{i}.a.example.edu", f"*/*.x{i}.example.com", f"egress/h{i}.example.com")[i % 3]
        for i in range(6000)
    ]
    if wrong_at is not None:
        entries[wrong_at] = f"egress/y{wrong_at}.a.example.edu"
    spec: dict[str, Any] = {"egress": [{"hosts": entries}]}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sidecars, "CLASSED_CHUNK", 1000)
        patch.setattr(common, "CLASSED_CHUNK", 1000)
        assert_same(sidecar(spec, None))
        chunk = entries[:1000]
        found = sidecars.import_classes(POLICY, chunk)
        assert found is not None and isinstance(found[1], sidecars.Cover)
        # the egress namespace's pair with the root class (example.edu is no known domain)
        assert "egress/" in found[1]
        held = sidecars._holders(POLICY, found[1], {"egress/"})
        if wrong_at is not None and wrong_at < 1000:
            assert held == [i for i, e in enumerate(chunk) if e.startswith("egress/")]
        else:
            assert held == []


def test_sidecar_import_classes_counted() -> None:
    # the counting path is taken for a long list whose classes all show early, and not when a
    # class first shows after the sample, or when an entry is odd
    pairs = [(".", ""), ("*", "*.")]
    entries = [f"{ns}/{w}h{i}.example.edu" for i in range(600) for ns, w in pairs]
    found = sidecars.import_classes(POLICY, entries)
    assert found is not None and found[1] is not None and len(found[1]) == 2
    assert list(found[0]) == sidecars._import_keys(entries)
    late = [*entries, "egress/z.example.edu"]
    found = sidecars.import_classes(POLICY, late)
    # classed from the split text instead, its keys built only when read
    assert found is not None and found[1] is not None
    keys = sidecars._checked_keys(POLICY, late)
    assert keys is not None and list(found[0]) == keys
    assert_classes_of(late, keys, found[1])
    for entry in ODD_IMPORTS:
        odd = [*entries, entry]
        assert sidecars._sampled_classes(POLICY, odd, "\n".join(odd)) is None


def assert_classes_of(
    entries: list[str], keys: list[str], found: dict[Hashable, int] | sidecars.Cover
) -> None:
    """``found`` as ``import_classes`` promises it: each class's first entry, in order, or a
    cover holding every entry's class, each covering entry of its own class."""
    if isinstance(found, sidecars.Cover):
        assert set(keys) <= set(found)
        for key, entry in found.items():
            assert sidecars._checked_keys(POLICY, [entry]) == [key]
    else:
        assert list(found) == list(dict.fromkeys(keys))
        assert all(keys[index] == key for key, index in found.items())


# names under many parents of a few known domains, and names that are or sit under known ones
SPLIT_NAMES = st.one_of(
    st.builds(
        lambda w, label, up: f"{w}{label}.{up}",
        st.sampled_from(["", "*."]),
        st.sampled_from(["h", "egress", "x.y"]),
        st.builds(
            lambda i, domain: f"p{i}.{domain}",
            st.integers(0, 9),
            # and under top-level labels the policy does not know (the root class)
            st.sampled_from(
                ["example.com", "example.org", "ml.example.net", "cluster.local", "io", "dev"]
            ),
        ),
    ),
    st.sampled_from(
        ["a.example.org", "b.a.example.org", "*.a.example.org", "example.com", "x.com", "egress"]
    ),
)


@FAST
@given(
    entries=import_entries(
        st.sampled_from(["*", ".", "egress", "a.example.com", "team-a"]), SPLIT_NAMES, 40
    ),
    picks=st.lists(st.integers(0, 10**6), max_size=4),
)
def test_cover_holders_agree_with_the_definition(entries: list[str], picks: list[int]) -> None:
    # the entries a cover holds for some of its keys: every entry of the keys' namespace parts
    # when one entry of them has one of the keys, else none
    found = sidecars.import_classes(POLICY, entries)
    text = sidecars._wildcards_moved("\n".join(entries), len(entries))
    if found is None or text is None or not isinstance(found[1], sidecars.Cover):
        cover = sidecars.covering_classes(POLICY, entries, text) if text else None
    else:
        cover = found[1]
    if cover is None:
        return
    cover.text, cover.entries = text, entries
    keys = _checked_keys_of(entries)
    cover_keys = sorted(cover)
    wrong = {cover_keys[i % len(cover_keys)] for i in picks}
    spaces = {
        k.partition("/")[0] + ("*" if k.partition("/")[2].startswith("*.") else "") for k in wrong
    }
    expected = (
        [i for i, k in enumerate(keys) if _space_of(entries[i]) in spaces]
        if any(k in wrong for k in keys)
        else []
    )
    assert sidecars._holders(POLICY, cover, wrong) == expected


def _checked_keys_of(entries: list[str]) -> list[str]:
    keys = sidecars._checked_keys(POLICY, entries)
    assert keys is not None
    return keys


def _space_of(entry: str) -> str:
    """An entry's namespace part, "*" appended for a wildcard name (as in a key)."""
    space, _, name = entry.partition("/")
    return space + ("*" if name.startswith("*.") else "")


@FAST
@given(
    entries=import_entries(
        st.sampled_from(["*", ".", "egress", "a.example.com", "p1.example.com"]), SPLIT_NAMES, 40
    ),
    sample=st.sampled_from([1, 3, 256]),
)
def test_sidecar_import_classes_split_random(entries: list[str], sample: int) -> None:
    # classes read from the split text (counted from a sample, or from every name) are those
    # of every key, in the order they first appear
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sidecars, "CLASS_SAMPLE", sample)
        firsts = sidecars._split_classes(POLICY, entries, "\n".join(entries))
    keys = sidecars._checked_keys(POLICY, entries)
    if firsts is not None:
        assert keys is not None
        assert_classes_of(entries, keys, firsts)
    spec: dict[str, Any] = {
        "egress": [{"hosts": entries}],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    }
    assert_same(sidecar(spec, None))


@pytest.mark.parametrize(
    "entries",
    [
        [f"*/h.p{i}.example.com" if i % 2 else f"*/*.w.q{i}.example.org" for i in range(600)],
        [f"./h.p{i}.example.com" if i % 3 else f"egress/*.w{i}.example.edu" for i in range(600)],
        [*(f"*/h.p{i}.example.com" for i in range(600)), "*/a.b.c", "x/*.q.r.s"],
        [*(f"*/h.p{i}.example.com" for i in range(600)), "*/a/b.c"],
        [*(f"*/h.p{i}.example.com" for i in range(600)), "*/com"],
        [*(f"*/h.p{i}.example.com" for i in range(600)), "*/*.example.com"],
    ],
)
def test_sidecar_import_classes_split(entries: list[str]) -> None:
    # under many parents: the classes read from the split text are those of every key
    firsts = sidecars._split_classes(POLICY, entries, "\n".join(entries))
    keys = sidecars._checked_keys(POLICY, entries)
    if firsts is not None:
        assert keys is not None
        assert (
            list(common.ChunkedKeys(entries, lambda c: sidecars._checked_keys(POLICY, c))) == keys
        )
        assert_classes_of(entries, keys, firsts)
    spec: dict[str, Any] = {
        "egress": [{"hosts": entries}],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    }
    for selector in (None, {"app": "trainer"}):
        assert_same(sidecar(spec, selector))


_TOPS = ("com", "org", "net", "io", "dev")


def assert_covered(
    entries: list[str], sample: int = sidecars.CLASS_SAMPLE
) -> sidecars.Cover | None:
    """The cover of ``entries``, checked against every entry's key when there is one."""
    text = sidecars._wildcards_moved("\n".join(entries), len(entries))
    assert text is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sidecars, "CLASS_SAMPLE", sample)
        cover = sidecars.covering_classes(POLICY, entries, text)
    if cover is not None:
        keys = sidecars._checked_keys(POLICY, entries)
        assert keys is not None
        # every entry's class is covered, and each covering entry is of its own class
        assert set(keys) <= set(cover)
        for key, entry in cover.items():
            assert sidecars._checked_keys(POLICY, [entry]) == [key]
    return cover


@FAST
@given(
    entries=import_entries(
        st.sampled_from(["*", ".", "egress", "a.example.com", "~", "~other"]), SPLIT_NAMES, 40
    ),
    sample=st.sampled_from([1, 3, 256]),
)
def test_sidecar_import_cover_random(entries: list[str], sample: int) -> None:
    assert_covered(entries, sample)
    spec: dict[str, Any] = {
        "egress": [{"hosts": entries}],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sidecars, "CLASS_SAMPLE", sample)
        assert_same(sidecar(spec, None))


@pytest.mark.parametrize(
    ("entries", "covered"),
    [
        # known and unknown top-level labels, half of them wildcards: pairs not all sampled
        (
            [
                f"*/h.p{i}.{_TOPS[i % 4]}" if i % 2 else f"*/*.q{i}.{_TOPS[i % 4]}"
                for i in range(900)
            ],
            True,
        ),
        # two namespace parts, the root class under both; the root class only
        ([f"{('*', '.')[i % 2]}/h.p{i}.{_TOPS[i % 5]}" for i in range(900)], True),
        ([f"*/h.p{i}.{('io', 'dev')[i % 2]}" for i in range(600)], True),
        # clean: imports from the own namespace and exclusions are checked elsewhere
        ([f"{('.', '~', '~other')[i % 3]}/h.p{i}.{_TOPS[i % 5]}" for i in range(900)], True),
        # clean but for one entry far down
        (
            [*(f"./h.p{i}.{_TOPS[i % 5]}" for i in range(900)), "*/h.q.io"],
            False,
        ),
        ([*(f"./h.p{i}.{_TOPS[i % 5]}" for i in range(900)), "./h.q.io", "*/x.p1.io"], False),
        # past the sample: a name under a known top-level label no sampled name is under
        ([*(f"./h.p{i}.{('com', 'io')[i % 2]}" for i in range(600)), "./h.q.net"], False),
        ([*(f"./h.p{i}.{('com', 'io')[i % 2]}" for i in range(600)), "*/*.q.local"], False),
        # past the sample: under a known domain below a class
        ([*(f"./h.p{i}.{_TOPS[i % 5]}" for i in range(600)), "*/h.a.example.org"], False),
        ([*(f"./h.p{i}.{_TOPS[i % 5]}" for i in range(600)), "*/h.ml.example.net"], False),
        # past the sample: a name without a dot, and one that is invalid
        ([*(f"./h.p{i}.{_TOPS[i % 5]}" for i in range(600)), "./localhost"], False),
        ([*(f"./h.p{i}.{_TOPS[i % 5]}" for i in range(600)), "./h..io"], False),
        # past the sample: another namespace part
        ([*(f"./h.p{i}.{_TOPS[i % 5]}" for i in range(600)), "egress/h.q.io"], False),
        ([*(f"./h.p{i}.{_TOPS[i % 5]}" for i in range(600)), "./*.q.io"], False),
        # past the sample: a wildcard over a wildcard
        ([*(f"*/*.h.p{i}.{_TOPS[i % 5]}" for i in range(600)), "*/*.*.io"], False),
    ],
)
def test_sidecar_import_cover(entries: list[str], covered: bool) -> None:
    # the pairs of sampled namespace parts and classes cover every entry, checked in passes
    # of C (the root class is what is left once the names under known top-level labels are
    # counted); a list with an entry outside them is split, or keyed entry by entry
    assert (assert_covered(entries) is not None) == covered
    text = sidecars._wildcards_moved("\n".join(entries), len(entries))
    assert text is not None
    split = sidecars._split_classes(POLICY, entries, text)
    if split is not None:
        keys = sidecars._checked_keys(POLICY, entries)
        assert keys is not None
        assert_classes_of(entries, keys, split)
    spec: dict[str, Any] = {
        "egress": [{"hosts": entries}],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    }
    for selector in (None, {"app": "trainer"}):
        assert_same(sidecar(spec, selector))


def test_a_clean_cover_reads_no_entry_key(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [f"{('.', '~')[i % 2]}/h.p{i}.{_TOPS[i % 5]}" for i in range(3000)]
    monkeypatch.setattr(sidecars, "_checked_keys", lambda policy, hosts: pytest.fail("keyed"))
    spec: dict[str, Any] = {
        "egress": [{"hosts": entries}],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    }
    assert judge(sidecar(spec, None), POLICY).allowed


@pytest.mark.parametrize(
    "entries",
    [
        # more violations than the stop, of one class and of entries repeated
        [f"*/*.w{i}.example.net" if i % 2 else f"./h{i}.example.com" for i in range(2600)],
        ["*/github.io", "./*", "egress/*.example.org"] * 700,
        ["./*"] * 3000 + ["egress/github.io"],
        [*(f"egress/h{i}.example.com" for i in range(3000)), "egress/a.b.example.org"],
        [*(f"egress/h{i}.example.com" for i in range(3000)), "egress/api.payments.example"],
    ],
)
def test_sidecar_long_imports(entries: list[str]) -> None:
    spec: dict[str, Any] = {
        "egress": [{"hosts": entries}],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
    }
    for selector in (None, {"app": "trainer"}):
        assert_same(sidecar(spec, selector))


@FAST
@given(hosts=st.lists(st.one_of(names, addresses), min_size=1, max_size=30))
def test_virtual_service_hosts(hosts: list[str]) -> None:
    assert_same(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": meta("vs"),
            "spec": {
                "hosts": hosts,
                "exportTo": ["."],
                "http": [{"route": [{"destination": {"host": "reviews"}}]}],
            },
        }
    )


@FAST
# an internal address and a CIDR of its /16 reaching past 10.0.0.0/8: not one class
@example(cidrs=["10.1.2.3", "10.1.2.0/7"])
@given(cidrs=st.lists(st.one_of(addresses, st.just(None)), min_size=1, max_size=30))
def test_network_policy_peers(cidrs: list[str | None]) -> None:
    peers = [{"podSelector": {}} if c is None else {"ipBlock": {"cidr": c}} for c in cidrs]
    assert_same(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("np"),
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": peers}]},
        }
    )


@FAST
@example(ips=["172.16.1.1", "172.16.0.0/8", "10.1.2.3", "10.1.2.0/7"])
@given(ips=st.lists(addresses, min_size=1, max_size=30))
def test_endpoints(ips: list[str]) -> None:
    assert_same(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": meta("ep"),
            "subsets": [{"addresses": [{"ip": ip} for ip in ips]}],
        }
    )


# hand-written endpoints are judged for every namespace: two services allowed everywhere,
# reached by address, that open different ports (443 is common to both)
SUBSETS_POLICY = parse_policy(
    """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: egress}
internalNetworks: [10.0.0.0/8]
externalServices:
  - name: payments
    hosts: [api.payments.example]
    ports: [{number: 443, protocol: TLS}]
    addresses: [198.51.100.0/24, 203.0.113.7/32]
  - name: db
    hosts: [db.partner.example]
    ports: [{number: 443, protocol: TLS}, {number: 5432, protocol: TCP}]
    addresses: [203.0.113.0/24]
allow:
  - {name: everyone, from: {namespace: "*"}, to: [payments, db]}
"""
)
subset_ips = st.one_of(
    st.builds(
        lambda block, d: f"{block}.{d}",
        st.sampled_from(["10.1.2", "10.200.0", "198.51.100", "203.0.113", "203.0.113"]),
        st.sampled_from([1, 7, 9, 200]),
    ),
    st.sampled_from(["203.0.113.7", "10.1.2.0/24", "fd00::1"]),
)
# now and then an address no rule allows, or no address at all
subset_ips = st.one_of(
    subset_ips, subset_ips, subset_ips, st.sampled_from(["8.8.8.8", "010.1.2.3"])
)
subset_ports = st.one_of(
    st.lists(
        st.builds(lambda n: {"port": n}, st.sampled_from([443, 5432, 8080])),
        max_size=2,
    ),
    st.sampled_from([None, [{"port": "https"}], [{"name": "tls"}], [{"port": True}], "443"]),
)
subset = st.builds(
    lambda ready, not_ready, ports: {
        k: v
        for k, v in (
            ("addresses", [{"ip": ip} for ip in ready]),
            ("notReadyAddresses", None if not_ready is None else [{"ip": ip} for ip in not_ready]),
            ("ports", ports),
        )
        if v is not None
    },
    st.lists(subset_ips, max_size=2),
    st.none() | st.lists(subset_ips, max_size=2),
    subset_ports,
)


# subsets that break nothing: the long-list path starts after the first ``CLASSES_FROM`` of them
clean_subset = st.builds(
    lambda d, ports: {"addresses": [{"ip": f"10.9.0.{d}"}], "ports": ports},
    octets,
    st.sampled_from([[{"port": 443}], [{"port": 8080}], []]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(
    head=[{"addresses": [{"ip": "10.9.0.1"}], "ports": [{"port": 443}]}] * CLASSES_FROM,
    tail=[
        {"addresses": [{"ip": "203.0.113.1"}], "ports": [{"port": 5432}]},
        {"addresses": [{"ip": "198.51.100.1"}], "ports": [{"port": 5432}]},
    ],
)
# a port "number" of no hashable type next to an address of an allowed service (malformed
# either way)
@example(
    head=[{"addresses": [{"ip": "10.9.0.1"}], "ports": [{"port": 443}]}] * CLASSES_FROM,
    tail=[{"addresses": [{"ip": "203.0.113.1"}], "ports": [{"port": [443]}, {"port": 8080}]}],
)
# more violations than a denial reads (the pass stops; the decision says so)
@example(
    head=[{"addresses": [{"ip": "10.9.0.1"}], "ports": [{"port": 443}]}] * CLASSES_FROM,
    tail=[{"addresses": [{"ip": f"8.8.{i}.8"} for i in range(3)]}] * (STOP_AFTER_VIOLATIONS // 2),
)
@given(
    head=st.lists(clean_subset, min_size=CLASSES_FROM, max_size=CLASSES_FROM),
    tail=st.lists(subset, min_size=1, max_size=40),
)
def test_endpoints_of_many_subsets(head: list[dict[str, Any]], tail: list[dict[str, Any]]) -> None:
    """Many subsets judged as one list of addresses, with the subsets that may break the port
    rule judged one by one, decide as judging every subset one by one."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta("ep"),
        "subsets": head + tail,
    }
    default = judge(manifest, SUBSETS_POLICY)
    with per_item():
        slow = judge(manifest, SUBSETS_POLICY)
    assert default.violations == slow.violations
    assert (default.allowed, default.reason) == (slow.allowed, slow.reason)


# values of one /8 or /16 block (split by the policy or not), some of them odd
in_one_wide = st.builds(
    lambda wide, rest: f"{wide}.{rest}",
    st.one_of(
        st.sampled_from(["10.1", "172.16", "192.168", "198.51", "203.0"]),
        st.builds(lambda b: f"10.{b}", octets),
        st.builds(lambda b: f"172.{b}", octets),
    ),
    st.one_of(
        st.builds(lambda c, d: f"{c}.{d}", octets, octets),
        st.builds(lambda c, d, n: f"{c}.{d}/{n}", octets, octets, st.integers(0, 40)),
        st.sampled_from(["1.01", "256.1", "1.256", "1", "1.2.3", "1.2\n10.1.2.3", "1.2 ", ""]),
    ),
)


@FAST
@example(values=["10.1.2.3", "10.1.2.4\n10.1.2.5"])
@example(values=["203.0.1.1", "203.0.1.1/24", "203.0.1.0/33"])
@example(values=["10.0.1.1", "10.200.1.0/24", "10.3.1.01"])
@example(values=["172.15.1.1", "172.16.1.1"])
@given(
    values=st.lists(
        st.one_of(in_one_wide, in_one_wide, in_one_wide, addresses), min_size=1, max_size=30
    )
)
def test_address_keys_of_a_list(values: list[str]) -> None:
    # a whole list's keys join only classes (an unsplit /8), and decide Endpoints and
    # NetworkPolicies alike
    keys = common.AddressClasses(POLICY).keys(values)
    each = [common.AddressClasses(POLICY).key(v) for v in values]
    # a list classes at least what single values class: wider CIDRs and IPv6 addresses are
    # classed in lists only (by where they lie among the policy's range bounds)
    assert all(k is not None for k, own in zip(keys, each, strict=True) if own is not None)
    key_of: dict[str, str | None] = {}
    for key, own in zip(keys, each, strict=True):
        if own is not None:
            assert key_of.setdefault(own, key) == key
    assert_same(
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": meta("ep"),
            "subsets": [{"addresses": [{"ip": v} for v in values]}],
        }
    )
    peers = [{"ipBlock": {"cidr": v}} for v in values]
    assert_same(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": meta("np"),
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": peers}]},
        }
    )


@FAST
@given(values=st.lists(st.one_of(names, addresses), min_size=1, max_size=30), fqdn=st.booleans())
def test_endpoint_slices(values: list[str], fqdn: bool) -> None:
    assert_same(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": meta("es"),
            "addressType": "FQDN" if fqdn else "IPv4",
            "endpoints": [{"addresses": [v]} for v in values],
        }
    )


class EgressAddressView:
    """The egress namespace's pods and Services hold a few addresses, inside the blocks the
    generated values fall in (so a class they share must be split around them)."""

    HELD = frozenset(
        {"10.1.100.7", "10.0.1.9", "192.168.1.200", "172.16.0.4", "2001:db8::1", "fd00::7"}
    )

    def sidecars(self, namespace: str) -> list[Any]:
        del namespace
        return []

    def namespace_addresses(self, namespace: str) -> frozenset[str] | None:
        return self.HELD if namespace == "egress" else None


HELD_VIEW = EgressAddressView()
near_held = st.one_of(
    st.sampled_from(sorted(EgressAddressView.HELD)),
    st.builds(lambda d: f"10.1.100.{d}", octets),
    st.builds(lambda d, n: f"10.1.100.{d}/{n}", octets, st.integers(24, 32)),
    st.builds(lambda c, d: f"10.1.{c}.{d}", octets, octets),
    st.builds(lambda d: f"10.0.1.{d}", octets),
    st.builds(lambda d: f"fd00::{d:x}", st.integers(0, 9)),
    st.builds(lambda d: f"2001:db8::{d:x}", st.integers(0, 2)),
    # 10.1.100.7 as an IPv4-mapped IPv6 address, and its neighbour
    st.sampled_from(["::ffff:a01:6407", "::ffff:a01:6408", "FD00::7", "fd00:0::7"]),
)


@FAST
@example(values=["10.1.100.6", "10.1.100.7"], resolution="STATIC")
@example(values=["10.1.100.6", "10.1.100.0/29"], resolution="NONE")
@given(
    values=st.lists(st.one_of(near_held, near_held, addresses), min_size=1, max_size=40),
    resolution=st.sampled_from(["STATIC", "NONE"]),
)
def test_lists_near_egress_addresses(values: list[str], resolution: str) -> None:
    # the blocks holding an egress address are split around it: a value of the same class
    # judged clean never lets the egress address itself through
    spec: dict[str, Any] = {
        "hosts": ["legacy.test-app.svc.cluster.local"],
        "exportTo": ["."],
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        "resolution": resolution,
    }
    if resolution == "NONE":
        spec["addresses"] = values
    else:
        spec["endpoints"] = [{"address": v} for v in values]
    se = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": meta("se"),
        "spec": spec,
    }
    assert_same(se, HELD_VIEW)
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta("ep"),
        "subsets": [{"addresses": [{"ip": v} for v in values]}],
    }
    assert_same(endpoints, HELD_VIEW)
    slices = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta("es"),
        "addressType": "IPv4",
        "endpoints": [{"addresses": [v]} for v in values],
    }
    assert_same(slices, HELD_VIEW)


def test_egress_addresses_split_their_blocks() -> None:
    classes = common.AddressClasses(
        POLICY, frozenset(common.blocks_of(10 << 24 | 1 << 16 | 100 << 8 | 7))
    )
    assert classes.key("10.1.100.7") == "=10.1.100.7"
    assert classes.key("10.1.100.6") == "=10.1.100.6"
    assert classes.key("10.1.99.6") == "10.1.99"
    assert classes.key("10.2.99.6") == "10.2"
    assert classes.one_wide(["10.1.1.1", "10.1.2.2"]) is None
    assert common.AddressClasses(POLICY).key("10.1.100.6") == "10.1"


@settings(max_examples=1000, deadline=None)
@example(hosts=["a.example.com", "c.d.example.com"])
@example(hosts=["a.example.com\nb.example.com", "c.example.com"])
@given(
    hosts=st.lists(
        st.one_of(
            st.builds(lambda label: f"{label}.example.com", st.text("ab.\n", max_size=3)),
            st.text("ab.\n", max_size=6),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_one_parent_by_counting(hosts: list[str]) -> None:
    parents = {h.partition(".")[2] for h in hosts}
    found = common._one_parent(hosts, "\n".join(hosts))
    if found is not None:
        assert parents == {found}
    elif len(parents) == 1 and "" not in parents and "\n" not in "".join(hosts):
        raise AssertionError(f"{hosts} all lie under {parents}")


@FAST
@given(firsts=st.lists(labels, min_size=1, max_size=30), parent=st.sampled_from(PARENTS))
def test_endpoint_slice_names_of_one_domain(firsts: list[str], parent: str) -> None:
    assert_same(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": meta("es"),
            "addressType": "FQDN",
            "endpoints": [{"addresses": [f"{first}.{parent}"]} for first in firsts],
        }
    )


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.text(alphabet="ab0_-.*\nA é/", max_size=12), max_size=4))
def test_bulk_name_validation_agrees_with_the_regex(values: list[str]) -> None:
    expected = bool(values) and all(
        len(v) <= MAX_HOST_LENGTH and VALID_NAME.fullmatch(v) for v in values
    )
    if all_valid_names(values):
        assert expected
    elif expected:
        # the bulk check leaves long labels to the regex, and nothing else
        assert max(map(len, values)) > 63


@given(st.one_of(names, st.text(alphabet="*.svcluster-ab", max_size=24)))
def test_is_internal_agrees_with_the_zone_test(host: str) -> None:
    assert POLICY.is_internal(host) == is_service_name(host, POLICY.cluster_domain)


def counted_lookups(monkeypatch: pytest.MonkeyPatch, manifest: dict[str, Any]) -> int:
    calls = 0
    real = Policy.services_covering

    def counting(self: Policy, host: str) -> frozenset[str]:
        nonlocal calls
        calls += 1
        return real(self, host)

    monkeypatch.setattr(Policy, "services_covering", counting)
    judge(manifest, POLICY)
    monkeypatch.setattr(Policy, "services_covering", real)
    return calls


@pytest.mark.parametrize("n", [100, 10_000])
def test_many_hosts_under_few_domains_cost_few_lookups(
    monkeypatch: pytest.MonkeyPatch, n: int
) -> None:
    # three domains the policy allows: every host clean, so one lookup per domain
    domains = ["example.com", "b.example.com", "a.example.org"]
    hosts = [f"h{i}.{domains[i % 3]}" for i in range(n)]
    entry = _service_entry(hosts)
    sidecar = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": meta("sc"),
        "spec": {
            "egress": [{"hosts": [f"*/{h}" for h in hosts]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    }

    assert counted_lookups(monkeypatch, entry) <= 3
    assert counted_lookups(monkeypatch, sidecar) <= 3


@FAST
@given(hostnames=st.lists(names, min_size=1, max_size=30))
def test_tls_route_hostnames(hostnames: list[str]) -> None:
    assert_same(
        {
            "apiVersion": "gateway.networking.k8s.io/v1alpha2",
            "kind": "TLSRoute",
            "metadata": meta("rt"),
            "spec": {
                "parentRefs": [{"kind": "Service", "group": "", "name": "reviews"}],
                "hostnames": hostnames,
                "rules": [{"backendRefs": [{"name": "reviews", "port": 9080}]}],
            },
        }
    )


@FAST
@given(
    plain=st.lists(dotted, min_size=1, max_size=4),
    odd=st.lists(st.tuples(st.integers(0, 150), names), max_size=6),
    size=st.sampled_from([7, 16, 40]),
    kind=st.sampled_from(["ServiceEntry", "TLSRoute"]),
)
def test_host_lists_classed_chunk_by_chunk(
    plain: list[str], odd: list[tuple[int, str]], size: int, kind: str
) -> None:
    # a long host list classed a chunk at a time: hosts of a few classes, odd ones anywhere
    # (names the policy knows, other classes, wildcards, IPs, invalid names)
    hosts = [f"h{i}.{plain[i % len(plain)]}" for i in range(150)]
    for at, host in odd:
        hosts.insert(at, host)
    manifest = tls_service_entry("chunked", hosts)
    if kind == "TLSRoute":
        manifest = {
            "apiVersion": "gateway.networking.k8s.io/v1alpha2",
            "kind": "TLSRoute",
            "metadata": meta("rt"),
            "spec": {
                "parentRefs": [{"kind": "Service", "group": "", "name": "reviews"}],
                "hostnames": hosts,
                "rules": [{"backendRefs": [{"name": "reviews", "port": 9080}]}],
            },
        }
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common, "CLASSED_CHUNK", size)
        assert_same(manifest)


@pytest.mark.parametrize("at", [0, 7000, 19999])
@pytest.mark.parametrize("odd", ["h.evil.test", "api.payments.example", "-bad-.example.com"])
def test_one_odd_host_deep_in_a_long_list(at: int, odd: str) -> None:
    # a host no class of the others holds, anywhere in 20,000: judged with its own chunk
    hosts = [f"h.p{i}.example.com" for i in range(20_000)]
    hosts[at] = odd
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common, "CLASSED_CHUNK", 4096)
        assert_same(tls_service_entry("one-odd", hosts))


# Gateway addresses: hosts in and out of the egress namespace in every spelling, IPs, odd values
_GATEWAY_ADDRESS_VALUES = st.one_of(
    names,
    addresses,
    st.sampled_from(
        ["gw.egress", "GW.Egress.svc", " gw.egress.svc.cluster.local. ", "a.egress-x", "egress"]
    ),
    # the namespace as a label elsewhere, or followed by what only sometimes makes it one
    st.sampled_from(
        [
            "x1.egress.external.svc",
            "egress.example.com",
            "a.egress.",
            "a.egress..",
            ".egress",
            "a.egress .svc",
            "\ta.egress\u3000",
            "a.egress.svcx",
            "a.egress.svc.",
            "x\na.egress",
            "a\n.egress",
            "a.egress\n.svc",
            "a.b.egress",
        ]
    ),
    st.none(),
    st.integers(),
)


@FAST
@given(
    st.lists(
        st.fixed_dictionaries(
            {"value": _GATEWAY_ADDRESS_VALUES},
            optional={"type": st.sampled_from(["IPAddress", "Hostname", "NamedAddress"])},
        ),
        min_size=1,
        max_size=40,
    )
)
def test_gateway_addresses(addresses: list[dict[str, Any]]) -> None:
    assert_same(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": meta("gw"),
            "spec": {
                "gatewayClassName": "istio-remote",
                "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                "addresses": addresses,
            },
        }
    )


@FAST
@given(targets=st.lists(st.one_of(names, addresses), min_size=1, max_size=20))
def test_destination_rule_tunnels(targets: list[str]) -> None:
    assert_same(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": meta("dr"),
            "spec": {
                "host": "svc.example.com",
                "subsets": [
                    {"name": f"s{i}", "trafficPolicy": {"tunnel": {"targetHost": t}}}
                    for i, t in enumerate(targets)
                ],
            },
        }
    )


LISTENER_HOSTS = [
    ["./*", "istio-system/*"],
    ["egress/api.payments.example"],
    ["egress/*.example.com", "*/a.example.org"],
    ["egress/github.io", "./x"],
    ["team-b/*-0"],
    [],
    ["./*", 7],
    None,
]


@FAST
@given(
    picks=st.lists(st.integers(0, len(LISTENER_HOSTS)), min_size=1, max_size=40),
    selector=st.sampled_from([None, {"app": "trainer"}]),
)
def test_sidecar_repeated_listeners(picks: list[int], selector: dict[str, str] | None) -> None:
    # listeners drawn from a few host lists (some malformed, one not even an object)
    egress: list[Any] = [
        {"hosts": list(LISTENER_HOSTS[p]), "port": {"number": 443}}
        if p < len(LISTENER_HOSTS) and LISTENER_HOSTS[p] is not None
        else ("not a listener" if p == len(LISTENER_HOSTS) else {"port": {"number": 80}})
        for p in picks
    ]
    spec: dict[str, Any] = {"egress": egress, "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}
    assert_same(sidecar(spec, selector))


# listeners of their own hosts each, and the odd ones that must send a long list elsewhere
ODD_LISTENERS: list[Any] = [
    {"hosts": ["./*-0", "istio-system/*-0"]},
    {"hosts": ["egress/github.io"]},
    {"hosts": ["./*", 7]},
    {"hosts": []},
    {"hosts": "./*"},
    {"port": {"number": 80}},
    "not a listener",
    {"hosts": [*ODD_IMPORTS[:3]]},
]


@st.composite
def unique_listeners(draw: st.DrawFn) -> list[Any]:
    """Listeners each importing hosts of its own (a few classes), odd listeners anywhere."""
    count = draw(st.integers(1, 60))
    width = draw(st.integers(1, 3))
    spaces = draw(st.lists(st.sampled_from(IMPORT_SPACES), min_size=1, max_size=2, unique=True))
    wild = draw(st.booleans())
    listeners: list[Any] = [
        {
            "hosts": [
                f"{spaces[(i + j) % len(spaces)]}/{'*.' if wild else ''}h{i}-{j}.example.com"
                for j in range(width)
            ],
            "port": {"number": 443},
        }
        for i in range(count)
    ]
    odd = draw(st.lists(st.tuples(st.integers(0, count), st.sampled_from(ODD_LISTENERS))))
    for at, listener in odd:
        listeners.insert(at, listener)
    return listeners


@FAST
@given(
    listeners=unique_listeners(),
    chunk=st.sampled_from([1, 4, 4096]),
    alone=st.sampled_from([1, 3, 32]),
    selector=st.sampled_from([None, {"app": "trainer"}]),
)
def test_sidecar_unique_listeners(
    listeners: list[Any], chunk: int, alone: int, selector: dict[str, str] | None
) -> None:
    # many listeners of distinct hosts: read in C, their hosts judged as one list keyed in
    # chunks around the entries that cannot be keyed; odd listeners and entries anywhere
    spec: dict[str, Any] = {"egress": listeners, "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common, "KEYS_CHUNK", chunk)
        patch.setattr(common, "KEYS_ALONE", alone)
        patch.setattr(sidecars, "KEYS_ALONE", alone)
        assert_same(sidecar(spec, selector))


def _listeners(hosts: list[list[str]]) -> list[dict[str, Any]]:
    return [{"hosts": h, "port": {"number": 443}} for h in hosts]


@pytest.mark.parametrize(
    "listeners",
    [
        # breaking the policy from the first listener, beyond the stop
        _listeners([[f"./*-{i}", f"istio-system/*-{i}"] for i in range(3000)]),
        # the same after a clean listener, and after clean ones not quite at the stop
        _listeners([["./*"], *([f"./*-{i}"] for i in range(3000))]),
        _listeners([*([f"./*-{i}"] for i in range(STOP_AFTER_VIOLATIONS - 2)), ["./*"]] * 30),
        # one bad host, one wrong-typed host, one listener breaking the policy, deep in a list
        # of clean ones
        _listeners([*([f"./*.h{i}.example.com"] for i in range(9000)), ["./*-bad"]]),
        [*_listeners([[f"./h{i}.example.com"] for i in range(9000)]), {"hosts": ["./a.com", 7]}],
        _listeners([*([f"egress/h{i}.example.com"] for i in range(9000)), ["egress/github.io"]]),
        # clean listeners with violations in between, more of them than the stop
        _listeners(
            [[f"./h{i}.example.com"] if i % 50 else [f"egress/h{i}.github.io"] for i in range(9000)]
        ),
        # listeners without hosts, or with none, amid clean ones
        [
            *_listeners([[f"./h{i}.example.com"] for i in range(2000)]),
            {"port": {"number": 80}},
            {"hosts": []},
            *_listeners([[f"*/*.h{i}.example.com"] for i in range(2000)]),
        ],
        # a listener that is no object, and one without hosts, after many clean ones
        [*_listeners([[f"./h{i}.example.com"] for i in range(3000)]), "x", {"port": 80}],
    ],
)
def test_sidecar_many_listeners(listeners: list[Any]) -> None:
    spec: dict[str, Any] = {"egress": listeners, "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}
    for selector in (None, {"app": "trainer"}):
        assert_same(sidecar(spec, selector))


SUBSET_POLICIES: list[Any] = [
    None,
    {"tls": {}},
    {"tls": {"mode": "SIMPLE", "sni": "github.com"}},
    {"tls": {"mode": "ISTIO_MUTUAL", "sni": "api.payments.example"}},
    {"tunnel": {"targetHost": "a.example.com"}},
    {"tunnel": {"targetHost": "db"}},
    {"portLevelSettings": [{"tls": {"mode": "DISABLE"}}, "x"]},
    "not an object",
    {"tls": []},
]


@FAST
@given(
    picks=st.lists(st.integers(0, len(SUBSET_POLICIES)), min_size=1, max_size=40),
    host=st.sampled_from(["svc.example.com", *(gw.fqdn for gw in POLICY.gateways)]),
    namespace=st.sampled_from(["test-app", "egress"]),
)
def test_destination_rule_repeated_subsets(picks: list[int], host: str, namespace: str) -> None:
    subsets: list[Any] = [
        {"name": f"s{i}", "trafficPolicy": SUBSET_POLICIES[p]}
        if p < len(SUBSET_POLICIES)
        else "not a subset"
        for i, p in enumerate(picks)
    ]
    assert_same(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "dr", "namespace": namespace},
            "spec": {
                "host": host,
                "trafficPolicy": {"tls": {"sni": "x.example.com"}},
                "subsets": subsets,
            },
        }
    )


@FAST
@given(
    subsets=st.lists(
        st.tuples(
            st.one_of(dotted, names),
            st.one_of(st.none(), dotted, names),
            st.sampled_from([None, "SIMPLE", "DISABLE"]),
        ),
        min_size=1,
        max_size=40,
    ),
    host=st.sampled_from(["svc.example.com", *(gw.fqdn for gw in POLICY.gateways)]),
    namespace=st.sampled_from(["test-app", "egress"]),
    ports=st.sampled_from([None, [{"tls": {"mode": "DISABLE"}}]]),
)
@example(
    subsets=[(f"t{i}.{PARENTS[i % 2 * 11]}", None, None) for i in range(3)],
    host="svc.example.com",
    namespace="test-app",
    ports=None,
)
@example(
    subsets=[(f"t{i}.example.com", f"t{i}.{PARENTS[i % 2 * 11]}", "SIMPLE") for i in range(3)],
    host=POLICY.gateways[0].fqdn,
    namespace="test-app",
    ports=None,
)
def test_destination_rule_subset_classes(
    subsets: list[tuple[str, str | None, str | None]],
    host: str,
    namespace: str,
    ports: list[Any] | None,
) -> None:
    # one tunnel target and SNI per subset, as a rule with a subset per destination has
    def traffic(target: str, sni: str | None, mode: str | None) -> dict[str, Any]:
        tls = {k: v for k, v in (("sni", sni), ("mode", mode)) if v is not None}
        found: dict[str, Any] = {"tunnel": {"targetHost": target, "targetPort": 443}, "tls": tls}
        if ports is not None:
            found["portLevelSettings"] = ports
        return found

    assert_same(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "dr", "namespace": namespace},
            "spec": {
                "host": host,
                "subsets": [
                    {"name": f"s{i}", "trafficPolicy": traffic(*subset)}
                    for i, subset in enumerate(subsets)
                ],
            },
        }
    )


_ODD_TUNNELS: list[Any] = [
    None,
    7,
    "",
    "-bad-.example.com",
    "8.8.8.8",
    "evil.test",
    "api.payments.example",
    {"host": "x"},
]


@FAST
@given(
    odd=st.lists(
        st.tuples(
            st.integers(0, 200),
            st.sampled_from(_ODD_TUNNELS),
            st.sampled_from(["target", "no tunnel", "tunnel not an object", "policy"]),
        ),
        max_size=8,
    ),
    host=st.sampled_from(["svc.example.com", *(gw.fqdn for gw in POLICY.gateways)]),
    namespace=st.sampled_from(["test-app", "egress"]),
    chunk=st.sampled_from([40, 64, 4096]),
)
def test_destination_rule_subsets_classed_around_odd_ones(
    odd: list[tuple[int, Any, str]], host: str, namespace: str, chunk: int
) -> None:
    # subsets of a few classes, with odd ones anywhere: a null, numeric, invalid or disallowed
    # tunnel target, a subset without a tunnel, a tunnel or trafficPolicy of another type
    subsets: list[dict[str, Any]] = [
        {
            "name": f"s{i}",
            "trafficPolicy": {
                "tunnel": {"targetHost": f"t{i}.example.com", "targetPort": 443},
                "tls": {"mode": "SIMPLE", "sni": f"t{i}.example.com"},
            },
        }
        for i in range(200)
    ]
    for at, value, how in odd:
        subset: dict[str, Any] = {"name": f"odd{at}", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}
        if how == "target":
            subset["trafficPolicy"]["tunnel"] = {"targetHost": value, "targetPort": 443}
        elif how == "tunnel not an object":
            subset["trafficPolicy"]["tunnel"] = value
        elif how == "policy":
            subset["trafficPolicy"] = value
        subsets.insert(at, subset)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common, "KEYS_CHUNK", chunk)
        assert_same(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": {"name": "dr", "namespace": namespace},
                "spec": {"host": host, "subsets": subsets},
            }
        )


def test_chunks_of_subsets_keyed_by_other_parts_never_share_a_key() -> None:
    # a chunk whose subsets all have port settings and one whose subsets have none: their keys
    # are made of other parts, so none is taken for the other's
    plain = {"tunnel": {"targetHost": "t.example.com", "targetPort": 443}}
    ported = {**plain, "portLevelSettings": [{"port": {"number": 1}}]}
    first = destinationrules._signed_subset_classes(POLICY, False, [{"trafficPolicy": plain}] * 40)
    second = destinationrules._signed_subset_classes(
        POLICY, False, [{"trafficPolicy": ported}] * 40
    )
    assert first is not None and second is not None
    assert set(first).isdisjoint(second)


def test_repeated_elements_keep_the_violation_stop() -> None:
    # more listeners and subsets breaking the policy than the stop: those up to it are reported
    sidecar = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": meta("sc"),
        "spec": {
            "egress": [{"hosts": ["team-b/*-0"]}, {"hosts": ["./*"]}] * 1200,
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    }
    rule = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "dr", "namespace": "egress"},
        "spec": {
            "host": POLICY.gateways[0].fqdn,
            "subsets": [{"name": "a", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}] * 1500,
        },
    }
    for manifest in (sidecar, rule):
        fast, slow = both(manifest)
        assert len(slow.violations) == STOP_AFTER_VIOLATIONS
        assert fast.violations == slow.violations
        assert judge(manifest, POLICY).violations == slow.violations


destination_hosts = st.one_of(
    st.sampled_from(["reviews", "reviews.other", "db.test-app.svc.cluster.local", "", "Bad_Host!"]),
    st.sampled_from([gw.fqdn for gw in POLICY.gateways]),
    names,
    addresses,
    st.integers(0, 3),
    st.none(),
)
destinations = st.one_of(
    st.fixed_dictionaries(
        {"host": destination_hosts},
        optional={
            "subset": st.sampled_from(["v1", "wide-0", "labelled-0", "", 7]),
            "port": st.just({"number": 443}),
        },
    ),
    st.just("not-an-object"),
    st.none(),
)
# request headers: host and :authority (any case) set or added rewrite the authority as
# rewrite.authority does; other headers, other operations and odd shapes change nothing or are
# reported
header_values = st.dictionaries(
    st.sampled_from(["Host", "host", ":authority", "HOST", "x-team"]),
    st.sampled_from(
        ["api.payments.example", "reviews:8080", "x.example.net", "", ":80", "[2001:db8::1]:443", 7]
    ),
    max_size=2,
)
header_fields = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "request": st.one_of(
                st.fixed_dictionaries(
                    {},
                    optional={
                        "set": header_values,
                        "add": header_values,
                        "remove": st.just(["host"]),
                    },
                ),
                st.sampled_from(["x", None, {"set": ["host"]}]),
            ),
            "response": st.just({"set": {"host": "x.example.net"}}),
        },
    ),
    st.sampled_from(["x", None]),
)
route_entries = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "destination": destinations,
            "weight": st.just(50),
            "headers": header_fields,
        },
    ),
    st.just(3),
)
matches = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "uri": st.just({"prefix": "/p"}),
            "gateways": st.sampled_from(
                [["mesh"], ["tenant-gw"], ["egress/istio-egressgateway"], "mesh"]
            ),
            "sourceNamespace": st.sampled_from(["test-app", "other", 5]),
            "sourceLabels": st.sampled_from([{"app": "trainer"}, {"app": 1}, "x"]),
            "sniHosts": st.just(["api.payments.example"]),
        },
    ),
    st.just("not-a-match"),
)
authorities = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "authority": st.sampled_from(
                ["api.payments.example", "reviews:8080", "[2001:db8::1]:443", ":80", "", "Bad!", 9]
            ),
            "uri": st.just("/x"),
        },
    ),
    st.just("x"),
)
rules = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "match": st.one_of(st.lists(matches, max_size=3), st.just("x"), st.none()),
            "route": st.one_of(st.lists(route_entries, max_size=3), st.just({"x": 1}), st.none()),
            "mirror": st.one_of(destinations, st.just({"host": "api.payments.example"})),
            "mirrors": st.one_of(st.lists(route_entries, max_size=2), st.just("x")),
            "redirect": authorities,
            "rewrite": authorities,
            "headers": header_fields,
            "delegate": st.one_of(
                st.fixed_dictionaries(
                    {"name": st.just("d")},
                    optional={"namespace": st.sampled_from(["test-app", "other", "", 3])},
                ),
                st.just({}),
                st.just("x"),
            ),
            "timeout": st.just("5s"),
        },
    ),
    st.just("not-a-rule"),
)


GATEWAY = POLICY.gateways[0].fqdn


def _to(host: str, **match: Any) -> dict[str, Any]:
    return {
        "match": [{"uri": {"prefix": "/"}, **match}],
        "route": [{"destination": {"host": host}}],
    }


@FAST
@example(
    http=[_to("reviews", gateways=["egress/istio-egressgateway"])],
    tcp=[],
    tls=[],
    gateways=None,
    export=None,
)
@example(
    http=[_to(GATEWAY, sourceLabels={"app": "trainer"}), _to(GATEWAY)],
    tcp=[],
    tls=[],
    gateways=None,
    export=["."],
)
@example(
    http=[{"route": [{"destination": {"host": GATEWAY, "subset": "wide-0"}}]}],
    tcp=[_to(GATEWAY, sourceNamespace="other")],
    tls=[],
    gateways=["mesh", "tenant-gw"],
    export=["."],
)
@given(
    http=st.lists(rules, max_size=8),
    tcp=st.lists(rules, max_size=3),
    tls=st.lists(rules, max_size=3),
    gateways=st.sampled_from([None, ["mesh"], ["tenant-gw"], ["mesh", "tenant-gw"]]),
    export=st.sampled_from([["."], None]),
)
def test_virtual_service_plain_rules(
    http: list[Any], tcp: list[Any], tls: list[Any], gateways: list[str] | None, export: Any
) -> None:
    hosts = ["api.payments.example", "ml.example.net", "reviews"]
    spec: dict[str, Any] = {"hosts": hosts, "http": http}
    if tcp:
        spec["tcp"] = tcp
    if tls:
        spec["tls"] = tls
    assert_same_virtual_service(spec, gateways, export)


# a pool of rules of the usual shapes (and a few odd ones), repeated into lists around the
# length from which long rule lists are read in one loop
usual_rules = st.fixed_dictionaries(
    {
        "route": st.lists(
            st.fixed_dictionaries(
                {"destination": destinations}, optional={"headers": header_fields}
            ),
            max_size=2,
        )
    },
    optional={
        "match": st.lists(
            st.fixed_dictionaries(
                {"uri": st.just({"prefix": "/"})},
                optional={"gateways": st.sampled_from([["mesh"], ["tenant-gw"], []])},
            ),
            max_size=2,
        ),
        "mirror": destinations,
        "mirrors": st.lists(st.fixed_dictionaries({"destination": destinations}), max_size=2),
        "redirect": authorities,
        "rewrite": authorities,
        "headers": header_fields,
        "delegate": st.sampled_from([{"name": "d"}, {"name": "d", "namespace": "other"}]),
    },
)


@FAST
@given(
    pool=st.lists(st.one_of(usual_rules, rules), min_size=1, max_size=6),
    picks=st.lists(st.integers(0, 5), min_size=common.CLASSES_FROM - 4, max_size=40),
    kind=st.sampled_from(["http", "tcp", "tls"]),
    gateways=st.sampled_from([None, ["mesh"], ["mesh", "tenant-gw"]]),
    export=st.sampled_from([["."], None]),
)
def test_virtual_service_many_rules(
    pool: list[Any], picks: list[int], kind: str, gateways: list[str] | None, export: Any
) -> None:
    spec: dict[str, Any] = {
        "hosts": ["api.payments.example", "reviews"],
        kind: [pool[pick % len(pool)] for pick in picks],
    }
    assert_same_virtual_service(spec, gateways, export)


# the ways a rule rewrites its authority: rewrite.authority, the host or :authority request
# header on the rule or on its route entry, and two of them at once
REWRITE_FORMS = ["rewrite", "Host", ":authority", "entry", "both"]

# rules generated alike over many services, as tools write them: one destination (or more, a
# mirror, a delegate, its own match gateways, an authority rewrite) per rule, each host unique
# under a few domains
alike_parts = st.fixed_dictionaries(
    {
        "hosts": st.sampled_from(
            ["short", "cluster", "external", "mixed", "gateway", "gateways", "ips"]
        ),
        "subset": st.booleans(),
        "mirror": st.booleans(),
        "second": st.booleans(),
        "gateways": st.sampled_from([None, "mesh", "unique", "egress", "tenant-gw"]),
        "source": st.sampled_from([None, "other", "labels", "some labels"]),
        "delegate": st.sampled_from([None, "test-app", "other", "some"]),
        "redirect": st.booleans(),
        "rewrite": st.sampled_from(
            [None, "reviews", "api.payments.example", "each", "each-port", "some", "others"]
        ),
        "rewrite_as": st.sampled_from(REWRITE_FORMS),
    }
)
odd_rules = st.one_of(
    st.builds(_to, st.sampled_from(["x.example.net", "1.2.3.4", "Bad_Host!", "a.example.org", ""])),
    st.builds(
        lambda extra: {**_to("reviews"), **extra},
        st.sampled_from(
            [
                {"mirror": {"host": "x.example.net"}},
                {"rewrite": {"authority": "x.example.net"}},
                {"delegate": {"name": "d", "namespace": "other"}},
                # authority headers are rewrites too; other headers change nothing
                {"headers": {"request": {"set": {"Host": "x.example.net"}}}},
                {"headers": {"request": {"add": {":authority": "reviews"}}}},
                {"headers": {"request": {"set": {"x-team": "a"}}}},
                {"headers": {"request": {"set": ["host"]}}},
            ]
        ),
    ),
    st.builds(
        lambda host, subset: {"route": [{"destination": {"host": host, "subset": subset}}]},
        st.sampled_from([GATEWAY, "reviews"]),
        st.sampled_from(["wide-0", "v1"]),
    ),
    st.builds(lambda host: _to(host, gateways=["egress/istio-egressgateway"]), st.just("db")),
    st.builds(lambda host: {**_to(host), "delegate": {"name": "d", "namespace": "x"}}, names),
    rules,
)


ALIKE_FINE: dict[str, Any] = {
    "hosts": "short",
    "subset": False,
    "mirror": False,
    "second": False,
    "gateways": None,
    "source": None,
    "delegate": None,
    "redirect": False,
    "rewrite": None,
    "rewrite_as": "rewrite",
}


def rewrite_authority(i: int, rule: dict[str, Any], authority: str, form: str) -> None:
    """Have ``rule`` rewrite its authority to ``authority`` in ``form`` (``REWRITE_FORMS``)."""
    if form in ("rewrite", "both"):
        rule["rewrite"] = {"authority": authority}
    if form == "Host":
        rule["headers"] = {"request": {"set": {"Host": authority, "x-id": str(i)}}}
    elif form == ":authority":
        rule["headers"] = {"request": {"add": {":authority": authority}, "remove": ["x-id"]}}
    elif form in ("entry", "both"):
        # the entry's own header after the rule's rewrite: another host of another class
        host = authority if form == "entry" else f"e-{i}.b.example.com"
        rule["route"][0]["headers"] = {"request": {"set": {"host": host}}}


def alike_rule(i: int, parts: dict[str, Any]) -> dict[str, Any]:
    """The ``i``-th rule of a generated list."""
    hosts = {
        "short": f"svc-{i}",
        "cluster": f"svc-{i}.test-app.svc.cluster.local",
        "external": f"api-{i}.example.com",
        "mixed": f"svc-{i}" if i % 3 else f"api-{i}.example.com",
        "gateway": GATEWAY,
        "gateways": POLICY.gateways[i % len(POLICY.gateways)].fqdn,
        # an internal and an external address whose names share the part after the first dot
        "ips": f"10.{i % 7}.0.1" if i % 5 else f"8.{i % 7}.0.1",
    }
    host = hosts[parts["hosts"]]
    match: dict[str, Any] = {"uri": {"prefix": f"/p{i}"}}
    gateways = parts["gateways"]
    if gateways is not None:
        match["gateways"] = {
            "mesh": ["mesh"],
            "unique": [f"gw-{i}"],
            "egress": ["egress/istio-egressgateway"] if i % 50 == 7 else ["mesh"],
            "tenant-gw": ["tenant-gw", "mesh"],
        }[gateways]
    if parts["source"] == "other":
        match["sourceNamespace"] = "other"
    elif parts["source"] == "labels" or (parts["source"] == "some labels" and i % 4 == 1):
        match["sourceLabels"] = {"app": "trainer"}
    elif parts["source"] == "some labels":
        # every rule names its clients, not all the same ones
        match["sourceNamespace"] = "test-app"
    rule: dict[str, Any] = {"match": [match], "route": [{"destination": {"host": host}}]}
    if parts["subset"]:
        rule["route"][0]["destination"]["subset"] = ["wide-0", "labelled-0", "v1"][i % 3]
    if parts["second"]:
        rule["route"].append({"destination": {"host": f"db-{i}"}, "weight": 10})
    if parts["mirror"]:
        rule["mirror"] = {"host": f"shadow-{i}.b.example.com"}
    delegate = parts["delegate"]
    if delegate == "some":
        # none, within the namespace, out of it
        delegate = [None, "test-app", "other"][i % 3] if i % 5 else None
    if delegate is not None:
        rule["delegate"] = {"name": f"d-{i}", "namespace": delegate}
    if parts["redirect"]:
        rule["redirect"] = {"authority": f"r-{i}.example.org:443"}
    authority = {
        # a name of its own under a domain the policy allows, with a port, under a domain it
        # does not know (judged: a violation where the Host picks the upstream), or mixed, the
        # first rules fine (a class found clean early must not stand for a later bad one)
        "each": f"r-{i}.example.com",
        "each-port": f"r-{i}.a.example.org:8443",
        "others": f"r-{i}.example.edu",
        "some": (
            f"r-{i}.example.com" if i % 7 != 3 else ["x.example.net", "10.0.0.1", "reviews"][i % 3]
        ),
    }.get(parts["rewrite"], parts["rewrite"])
    if authority is not None:
        rewrite_authority(i, rule, authority, parts["rewrite_as"])
    return rule


@FAST
@example(
    parts={**ALIKE_FINE, "hosts": "gateway", "source": "some labels"},
    count=40,
    odd=[],
    kind="http",
    hosts=["ml.example.net"],
    gateways=None,
    export=None,
)
@example(
    parts={**ALIKE_FINE, "redirect": True},
    count=40,
    odd=[],
    kind="http",
    hosts=["app.io"],
    gateways=["mesh", "tenant-gw"],
    export=None,
)
@example(
    parts={**ALIKE_FINE, "delegate": "some"},
    count=40,
    odd=[],
    kind="http",
    hosts=["reviews"],
    gateways=None,
    export=None,
)
@example(
    parts=ALIKE_FINE,
    count=40,
    odd=[(5, _to(""))],
    kind="http",
    hosts=["reviews"],
    gateways=None,
    export=None,
)
@example(
    parts=ALIKE_FINE,
    count=40,
    odd=[(9, {**_to("reviews"), "mirror": {"host": "x.example.net"}})],
    kind="http",
    hosts=["reviews"],
    gateways=None,
    export=None,
)
@example(
    parts={**ALIKE_FINE, "hosts": "gateway"},
    count=40,
    odd=[
        (7, {**_to(GATEWAY), "headers": {"request": {"set": {"Host": "x.example.net"}}}}),
        (20, {**_to("reviews"), "headers": {"request": {"set": {"x-team": "a"}}}}),
    ],
    kind="http",
    hosts=["api.payments.example"],
    gateways=None,
    export=["."],
)
@example(
    # rewrites judged (to the gateway), a few of them to a service not allowed: rules of
    # another class, after rules found clean
    parts={**ALIKE_FINE, "hosts": "gateway", "rewrite": "some", "rewrite_as": "Host"},
    count=40,
    odd=[],
    kind="http",
    hosts=["reviews"],
    gateways=None,
    export=None,
)
@example(
    parts={**ALIKE_FINE, "hosts": "mixed", "rewrite": "others", "rewrite_as": "both"},
    count=40,
    odd=[(9, {**_to("reviews"), "headers": {"request": {"set": {"Host": "x.example.net"}}}})],
    kind="http",
    hosts=["reviews"],
    gateways=None,
    export=None,
)
@given(
    parts=alike_parts,
    count=st.integers(common.CLASSES_FROM, 90),
    odd=st.lists(st.tuples(st.integers(0, 89), odd_rules), max_size=3),
    kind=st.sampled_from(["http", "tcp"]),
    # the last: an app's public name, fine when its routes all stay in the cluster
    hosts=st.sampled_from([["api.payments.example", "reviews"], ["ml.example.net"], ["app.io"]]),
    gateways=st.sampled_from([None, ["mesh"], ["mesh", "tenant-gw"], ["tenant-gw"]]),
    export=st.sampled_from([["."], None]),
)
def test_virtual_service_alike_rules(
    parts: dict[str, Any],
    count: int,
    odd: list[tuple[int, Any]],
    kind: str,
    hosts: list[str],
    gateways: list[str] | None,
    export: Any,
) -> None:
    # alike rules are judged once per key, the rest skipped: an odd rule anywhere among them
    # (another host class, an invalid host, a subset, an egress gateway) keeps its violations
    # in their place
    rule_list = [alike_rule(i, parts) for i in range(count)]
    for at, rule in odd:
        rule_list.insert(at % (count + 1), rule)
    spec: dict[str, Any] = {"hosts": hosts, kind: rule_list}
    assert_same_virtual_service(spec, gateways, export)


def test_virtual_service_one_bad_rule_among_thousands() -> None:
    # 3,000 rules alike, all fine but one: its violation is the only one, at its own path
    rule_list = [alike_rule(i, ALIKE_FINE) for i in range(3000)]
    rule_list[1717]["route"][0]["destination"]["host"] = "x.example.net"
    spec = {"hosts": [f"svc-{i}.example.com" for i in range(3000)], "http": rule_list}
    manifest = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta("vs"),
        "spec": {**spec, "exportTo": ["."]},
    }
    fast, slow = both(manifest)
    assert fast.violations == slow.violations
    assert [v.field for v in fast.violations] == ["spec.http[1717].route[0].destination.host"]
    assert judge(manifest, POLICY).violations == slow.violations


def test_virtual_service_alike_rules_keep_the_violation_stop() -> None:
    # every rule delegates out of the namespace and routes out of the mesh: those up to the stop
    # violations are reported, in order
    parts = {**ALIKE_FINE, "hosts": "mixed", "delegate": "other", "gateways": "unique"}
    rule_list = [alike_rule(i, parts) for i in range(2500)]
    manifest = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta("vs"),
        "spec": {"hosts": ["reviews"], "http": rule_list},
    }
    fast, slow = both(manifest)
    assert len(slow.violations) == STOP_AFTER_VIOLATIONS
    assert fast.violations == slow.violations
    assert judge(manifest, POLICY).violations == slow.violations


@pytest.mark.parametrize("form", REWRITE_FORMS)
@pytest.mark.parametrize(
    ("destination", "rewrite", "odd_host"),
    [
        (GATEWAY, "each", None),
        ("svc", "others", None),
        # a host the namespace's workloads may not reach through the gateway, deep in the list
        (GATEWAY, "each", "ml.example.net"),
    ],
)
def test_virtual_service_thousands_of_rules_each_rewriting_the_authority(
    monkeypatch: pytest.MonkeyPatch,
    form: str,
    destination: str,
    rewrite: str,
    odd_host: str | None,
) -> None:
    # every rule to the egress gateway, rewriting the authority to a name of its own: the
    # gateway carries each rewritten name, and each is asked of on its own, not with the
    # VirtualService's hosts again for every rule (n rules of n hosts asked n * n times);
    # to in-cluster services no rewrite is judged, whatever it names
    n = 2000
    parts = {**ALIKE_FINE, "hosts": "short", "rewrite": rewrite, "rewrite_as": form}
    rule_list = [alike_rule(i, parts) for i in range(n)]
    for rule in rule_list:
        if destination != "svc":
            rule["route"][0]["destination"]["host"] = destination
    manifest = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta("vs"),
        "spec": {
            "hosts": [f"svc-{i}.example.com" for i in range(n)],
            "exportTo": ["."],
            "http": rule_list,
        },
    }
    if odd_host is not None:
        manifest["spec"]["hosts"][1234] = odd_host
    asked = 0
    real = virtualservices._gateway_problems

    def counting(
        policy: Policy, fqdn: str, route_hosts: tuple[str, ...], *args: Any
    ) -> tuple[str, ...]:
        nonlocal asked
        asked += len(route_hosts)
        return real(policy, fqdn, route_hosts, *args)

    monkeypatch.setattr(virtualservices, "_gateway_problems", counting)
    fast, slow = both(manifest)
    assert fast.violations == slow.violations
    assert judge(manifest, POLICY).violations == slow.violations
    assert bool(slow.violations) == (odd_host is not None)
    # the hosts once and each rewrite once (twice in the "both" form), per way of deciding
    assert asked <= 3 * 3 * n


def tls_service_entry(name: str, hosts: list[str]) -> dict[str, Any]:
    """A ServiceEntry of ``hosts`` on port 443, TLS."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": meta(name),
        "spec": {"hosts": hosts, "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]},
    }


@pytest.mark.parametrize("bad_at", [None, 0, 1717, 2999])
def test_thousands_of_hosts_under_as_many_domains_are_classed_by_the_nearest_known_one(
    bad_at: int | None,
) -> None:
    """h.p1.example.com, h.p2.example.net...: every parent is new, the nearest known domain is
    one of a few, so a few judgements stand for thousands."""
    parents = ["example.com", "example.net", "a.example.org", "svc.cluster.local", "example"]
    hosts = [f"h.p{i}.{parents[i % len(parents)]}" for i in range(3000)]
    if bad_at is not None:
        hosts[bad_at] = "ml.example.net"  # known: judged alone, and not allowed here
    manifest = tls_service_entry("many-domains", hosts)
    assert_same(manifest)
    # the hosts under example.net and example are not allowed: each one named
    assert "spec.hosts[1]" in {v.field for v in judge(manifest, POLICY).violations}


def test_nearest_known_finds_the_closest_domain_the_policy_knows() -> None:
    domains = ["p1.example.com", "q.p1.example.com", "x.y.z.example.net", "example.com", "io"]
    assert common.nearest_known(POLICY, domains) == [
        "example.com",
        "example.com",
        "example.net",
        "example.com",
        "",
    ]
    assert "example.net" in POLICY.known_domains  # above ml.example.net
    assert "p1.example.com" not in POLICY.known_domains


def nearest_by_definition(policy: Policy, domain: str) -> str:
    """The nearest of ``domain`` and the domains above it in ``known_domains``, one at a time."""
    while domain not in policy.known_domains:
        domain = domain.partition(".")[2]
    return domain


_LABELS = st.sampled_from(["com", "net", "example", "ml", "svc", "cluster", "local", "p1", "x"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(_LABELS, min_size=1, max_size=6).map(".".join), max_size=40),
    st.integers(0, 3),
    st.integers(0, 4),
    st.sampled_from(["", "com", "example.net", "cluster.local"]),
)
def test_nearest_known_agrees_with_its_definition(
    names: list[str], repeats: int, depth: int, under: str
) -> None:
    # repeated names shrink a level up (answered from the bottom), distinct labels near the top
    # do not (walked down from the top), a shared ending takes the steps over the text
    domains = names * (repeats + 1) + [
        ".".join([*(["a"] * depth), f"p{i}", under]).strip(".") for i in range(70)
    ]
    assert common.nearest_known(POLICY, domains) == [
        nearest_by_definition(POLICY, domain) for domain in domains
    ]


@pytest.mark.parametrize("depth", [0, 2, 9])
def test_hosts_kept_distinct_near_the_top_are_walked_down(depth: int) -> None:
    """h.a.b.p1.com, h.a.b.p2.com...: distinct for as many levels as they have labels from the
    bottom, one known label from the top."""
    prefix = "a." * depth
    hosts = [f"h.{prefix}p{i}.{'com' if i % 3 else 'example.net'}" for i in range(2000)]
    parents = [host.partition(".")[2] for host in hosts]
    assert common.nearest_known(POLICY, parents) == [
        nearest_by_definition(POLICY, parent) for parent in parents
    ]
    assert_same(tls_service_entry("deep-names", hosts))


@pytest.mark.parametrize(
    "hosts",
    [
        # one name the policy knows, repeated: judged once, not once per copy
        ["ml.example.net"] * 3000,
        ["api.payments.example"] * 3000,
        # known names between others, in turn
        [
            ("ml.example.net", "h.p1.example.net", "api.payments.example")[i % 3]
            for i in range(3000)
        ],
        [*(f"h.p{i}.example.net" for i in range(2000)), *(["ml.example.net"] * 1000)],
    ],
)
def test_known_names_repeated_are_judged_once(hosts: list[str]) -> None:
    keys = common._exact_host_keys(POLICY, hosts)
    assert keys is not None
    # each distinct known name its own class, never a domain's
    known = {host for host in hosts if host in POLICY.known_domains}
    assert {key for key, host in zip(keys, hosts, strict=True) if host in known} == {
        common.OWN_TEXT + host for host in known
    }
    assert not known & set(keys)
    assert_same(tls_service_entry("known-repeated", hosts))


def test_items_judged_alone_are_never_skipped_in_order() -> None:
    judged: list[int] = []

    def judge(reader: common.Reader, index: int) -> None:
        judged.append(index)
        if index == 4:
            reader.add(f"x[{index}]", "wrong")

    reader = common.Reader()
    common.judge_in_order(reader, [None, None, "a", "a", "b", "b", None], judge, set())
    # None each time, a clean class once, a class with a violation each time
    assert judged == [0, 1, 2, 4, 5, 6]
    assert [v.field for v in reader.violations] == ["x[4]"]


def test_chunked_keys_judge_alone_what_cannot_be_classed() -> None:
    # a chunk its key function cannot class is judged item by item, never skipped
    keys = common.ChunkedKeys(["a", "b", "c"], lambda chunk: None)
    assert list(keys) == [None, None, None]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(common, "KEYS_CHUNK", 2)
        mixed = common.ChunkedKeys(["a", "b", "c"], lambda c: None if "c" in c else list(c))
        assert list(mixed) == ["a", "b", None]


@pytest.mark.parametrize(
    ("hosts", "counted"),
    [
        ([f"h.p{i}.{_TOPS[i % 5]}" for i in range(900)], True),
        ([f"h.a.p{i}.{('example.com', 'io', 'example')[i % 3]}" for i in range(900)], True),
        # past the sample: a known name, a name of another class, one without a dot
        ([*(f"h.p{i}.{_TOPS[i % 5]}" for i in range(600)), "ml.example.net"], False),
        ([*(f"h.p{i}.{('com', 'io')[i % 2]}" for i in range(600)), "h.q.net"], False),
        ([*(f"h.p{i}.{_TOPS[i % 5]}" for i in range(600)), "localhost"], False),
        ([*(f"h.p{i}.{_TOPS[i % 5]}" for i in range(600)), "*.q.io"], False),
        ([*(f"h.p{i}.{_TOPS[i % 5]}" for i in range(600)), "h.q\n.io"], False),
    ],
)
def test_host_classes_counted_from_the_first_hosts(hosts: list[str], counted: bool) -> None:
    firsts = common._counted_host_classes(POLICY, hosts, "\n".join(hosts))
    assert (firsts is not None) == counted
    if firsts is not None:
        keys = common._exact_host_keys(POLICY, hosts)
        assert keys is not None
        assert firsts == common.first_indexes(keys)
    if "\n" not in "".join(hosts):
        assert_same(tls_service_entry("counted", hosts))


def policy_knowing(hosts: list[str]) -> Policy:
    """A policy whose one external service lists ``hosts``."""
    listed = ", ".join(f'"{host}"' for host in dict.fromkeys(hosts))
    return parse_policy(
        f"""
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {{namespace: egress}}
externalServices:
  - name: listed
    hosts: [{listed}]
    ports: [{{number: 443, protocol: TLS}}]
allow:
  - {{name: tenants, from: {{namespace: test-app}}, to: [listed]}}
"""
    )


# labels enough for a domain to have more known children than are searched in the text
_MANY = [f"t{i}" for i in range(24)]
_WALK_LABELS = st.sampled_from(["com", "org", "a", "b", "x", *_MANY[:6]])
_ENDINGS = ["com", "a.com", "t1.com", "org"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(_WALK_LABELS, min_size=2, max_size=5).map(".".join), min_size=1, max_size=12),
    st.booleans(),
    st.lists(st.lists(_WALK_LABELS, min_size=1, max_size=6).map(".".join), max_size=30),
    st.integers(0, 3),
)
def test_walking_down_agrees_with_the_definition_on_any_tree(
    known: list[str], many_children: bool, names: list[str], depth: int
) -> None:
    # many children under "com" and at the top: the walk looks each name up instead of
    # searching the text; names apart near the top are walked down, not up
    extra = [f"svc.{label}.com" for label in _MANY] + [f"svc.{label}" for label in _MANY]
    policy = policy_knowing(known + (extra if many_children else []))
    apart = [
        ".".join(["h", *(["a"] * depth), f"p{i}", _ENDINGS[i % len(_ENDINGS)]]) for i in range(80)
    ]
    # the children of "com" one after another: more domains reached than are walked one by one
    spread = [f"q.{_MANY[i % len(_MANY)]}.com" for i in range(60)]
    domains = names + apart + spread
    # and names none of which is under a known child of "com", known or not
    unknown = [f"h.a.p{i}.com" for i in range(80)]
    # names at different domains sharing their next label there: one search per domain
    shared = [f"h{i}.a.{('com', 'org', 'x.com')[i % 3]}" for i in range(90)]
    for listed in (domains, unknown, shared, [*shared, "a.com"]):
        assert common.nearest_known(policy, listed) == [
            nearest_by_definition(policy, domain) for domain in listed
        ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(_WALK_LABELS, min_size=2, max_size=4).map(".".join), min_size=1, max_size=8),
    st.lists(st.lists(_WALK_LABELS, min_size=2, max_size=5).map(".".join), min_size=1, max_size=40),
    st.integers(1, 40),
)
def test_counted_classes_agree_with_the_definition(
    known: list[str], names: list[str], sample: int
) -> None:
    # classes counted from the first names, nested ones included ("a.com" below "com"): when
    # counting says they hold every name, each name's class is one of them and no name is
    # one the policy knows itself
    policy = policy_knowing(known)
    found = common.counted_classes(policy, names[:sample], "\n".join(names), len(names))
    if found is None:
        return
    for name in names:
        assert name not in policy.known_domains
        assert nearest_by_definition(policy, name.partition(".")[2]) in found
    for domain, index in found.items():
        assert nearest_by_definition(policy, names[index].partition(".")[2]) == domain


def test_nested_classes_are_counted() -> None:
    # names under "com" and under "example.com" below it: two classes, counted
    policy = policy_knowing(["*.example.com", "api.github.com"])
    names = [f"x{i}.{('a.com', 'example.com')[i % 2]}" for i in range(100)]
    assert common.counted_classes(policy, names[:4], "\n".join(names), 100) == {
        "com": 0,
        "example.com": 1,
    }
    # a name under a known domain below "com" that is no class of the sample: not counted
    odd = [*names, "x.github.com"]
    assert common.counted_classes(policy, names[:4], "\n".join(odd), 101) is None
    # a name the policy knows itself, next to its class
    odd = [*names, "example.com"]
    assert common.counted_classes(policy, names[:4], "\n".join(odd), 101) is None


# top-level labels ending alike: the answers by a name's last characters must tell them apart
_ALIKE = st.sampled_from(["io", "bio", "o", "com", "xcom", "m", "a"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(_ALIKE, min_size=2, max_size=3).map(".".join), min_size=1, max_size=8),
    st.lists(st.lists(_ALIKE, min_size=1, max_size=4).map(".".join), max_size=20),
    st.lists(_ALIKE, min_size=1, max_size=4),
)
def test_names_under_top_level_labels_ending_alike(
    known: list[str], names: list[str], tops: list[str]
) -> None:
    policy = policy_knowing(known)
    listed = names + [f"h.p{i}.{tops[i % len(tops)]}" for i in range(70)]
    assert common._walked_down(policy.known_tree, listed) == [
        nearest_by_definition(policy, name) for name in listed
    ]


def test_answers_by_label_read_the_last_characters_only_when_they_tell_labels_apart() -> None:
    rests = ["h.p1.io", "h.bio", "x.o", "a.b.xcom", "a.com"]
    answers = {"io": "io", "bio": "", "o": "o", "xcom": "", "com": "com"}
    assert common._answered_by_label(rests, answers, at_labels=0) == ["io", "", "o", "", "com"]
    # "com" and "xcom" end alike in their last four characters when "io" is the shortest
    shared = {"io": "io", "xcom": "", "acom": "x"}
    assert common._answered_by_label(["a.xcom", "b.acom", "c.io"], shared, at_labels=0) == [
        "",
        "x",
        "io",
    ]
    # a rest that is a bare label: read by its label
    assert common._answered_by_label(["io", "h.bio"], {"io": "io", "bio": ""}, at_labels=1) == [
        "io",
        "",
    ]


def test_names_holding_a_newline_are_looked_up_one_by_one() -> None:
    # the text searches join names by newlines: a name holding one must not split in two
    domains = [f"h\n.p{i}.example.com" for i in range(40)] + ["x.example.net\nexample.com"]
    assert common.nearest_known(POLICY, domains) == [
        nearest_by_definition(POLICY, domain) for domain in domains
    ]


def test_names_under_one_known_domain_without_children_stop_there() -> None:
    names = [f"h.p{i}.ml.example.net" for i in range(50)]
    assert "ml.example.net" in POLICY.known_domains
    assert common._walked_down(POLICY.known_tree, names) == ["ml.example.net"] * 50


@pytest.mark.parametrize(
    ("known", "names"),
    [
        # the name that is a child itself answers the child; those under it, the domain below
        (["x.com", "y.org"], ["com", *(f"h{i}.x.com" for i in range(50)), "h.y.org"]),
        # the domain a step below has children of its own: the walk goes on past it
        (["a.x.com", "a.y.org"], [f"h{i}.a.{('x.com', 'y.org')[i % 2]}" for i in range(80)]),
    ],
)
def test_the_first_step_settles_only_what_it_can(known: list[str], names: list[str]) -> None:
    policy = policy_knowing(known)
    assert common._walked_down(policy.known_tree, names) == [
        nearest_by_definition(policy, name) for name in names
    ]


def test_names_sharing_an_unknown_label_stop_above_it() -> None:
    # every name ends with "zz.com": they stop at "com", even though a label further down
    # ("github") names a child of "com"
    policy = policy_knowing(["api.github.com"])
    names = [f"h{i}.github.zz.com" for i in range(40)]
    assert common._walked_down(policy.known_tree, names) == ["com"] * 40
    assert common.nearest_known(policy, names) == ["com"] * 40


@given(st.lists(st.text(alphabet=st.sampled_from("a.\n\u00e9\u2028"), max_size=6), max_size=8))
def test_all_dotted_reads_the_text_as_each_name_would(names: list[str]) -> None:
    names = [name.replace("\n", "") for name in names]
    text = "".join(f"{name}\n" for name in names)
    assert common.all_dotted(text) == all("." in name for name in names)


# hosts a long route list spreads over: valid names and addresses of every class (gateways,
# internal, external allowed or not, short names), which the list is read in passes of C for
plain_destination_hosts = st.one_of(
    st.sampled_from(["reviews", "reviews.other", "db.test-app.svc.cluster.local"]),
    st.sampled_from([gw.fqdn for gw in POLICY.gateways]),
    names.filter(lambda name: name == name.lower() and not name.endswith(".") and ".." not in name),
    st.builds(lambda c, d: f"10.1.{c}.{d}", st.integers(0, 3), octets),
    addresses,
)


@FAST
@given(
    pool=st.lists(plain_destination_hosts, min_size=1, max_size=6),
    picks=st.lists(st.integers(0, 5), min_size=common.CLASSES_FROM - 4, max_size=60),
    odd=st.one_of(st.none(), st.tuples(st.integers(0, 60), route_entries)),
    kind=st.sampled_from(["http", "tcp", "tls"]),
    gateways=st.sampled_from([None, ["mesh"], ["mesh", "tenant-gw"]]),
    export=st.sampled_from([["."], None]),
)
def test_virtual_service_long_route_list(
    pool: list[str],
    picks: list[int],
    odd: tuple[int, Any] | None,
    kind: str,
    gateways: list[str] | None,
    export: Any,
) -> None:
    """One rule spreading its traffic over many destinations, all plain or one of any shape."""
    entries: list[Any] = [
        {"destination": {"host": pool[pick % len(pool)]}, "weight": 1} for pick in picks
    ]
    if odd is not None:
        entries.insert(odd[0] % (len(entries) + 1), odd[1])
    spec: dict[str, Any] = {
        "hosts": ["api.payments.example", "reviews"],
        kind: [{"route": entries}, {"route": entries[:3]}],
    }
    assert_same_virtual_service(spec, gateways, export)


# names the policy lists by itself (its services, its gateways), which a long list of
# destinations holds among names classed by their parent domain
own_destination_hosts = st.sampled_from(["api.payments.example", "ml.example.net", GATEWAY])


@FAST
@example(
    # a clean gateway and a wrong external name, each once among many others
    pool=[GATEWAY, "api.payments.example", "x.example.com", "a.b.example.com"],
    picks=[0] + [2, 3] * 20 + [1],
    route=[],
    odd=None,
    gateways=["mesh"],
    export=["."],
)
@example(
    pool=["api.payments.example", "x.example.com", "a.b.example.com"],
    picks=[1, 2] * 20 + [0],
    route=["api.payments.example"],
    odd=None,
    gateways=["mesh"],
    export=None,
)
@given(
    pool=st.lists(
        st.one_of(plain_destination_hosts, own_destination_hosts), min_size=1, max_size=6
    ),
    picks=st.lists(st.integers(0, 5), min_size=common.CLASSES_FROM - 4, max_size=60),
    route=st.lists(st.one_of(plain_destination_hosts, own_destination_hosts), max_size=3),
    odd=st.one_of(st.none(), st.tuples(st.integers(0, 60), route_entries)),
    gateways=st.sampled_from([None, ["mesh"], ["mesh", "tenant-gw"]]),
    export=st.sampled_from([["."], None]),
)
def test_virtual_service_long_mirrors_list(
    pool: list[str],
    picks: list[int],
    route: list[str],
    odd: tuple[int, Any] | None,
    gateways: list[str] | None,
    export: Any,
) -> None:
    """One http rule mirroring its traffic to many destinations, all plain or one of any shape,
    after its own route and mirror."""
    entries: list[Any] = [{"destination": {"host": pool[pick % len(pool)]}} for pick in picks]
    if odd is not None:
        entries.insert(odd[0] % (len(entries) + 1), odd[1])
    rule: dict[str, Any] = {
        "route": [{"destination": {"host": host}} for host in route],
        "mirrors": entries,
    }
    if route:
        rule["mirror"] = {"host": route[0]}
    spec: dict[str, Any] = {
        "hosts": ["api.payments.example", "reviews"],
        "http": [rule, {"mirrors": entries[:3]}],
    }
    assert_same_virtual_service(spec, gateways, export)


tls_rules = st.builds(
    lambda sni, host, subset: {
        "match": [{"port": 443, "sniHosts": sni}],
        "route": [{"destination": {"host": host, "subset": subset}}],
    },
    st.lists(
        st.sampled_from(["api.payments.example", "x.example.com", "a.wide.example"]), max_size=2
    ),
    st.one_of(st.just(GATEWAY), plain_destination_hosts),
    st.sampled_from(["v1", "wide-0", "labelled-0", ""]),
)


@FAST
@example(
    pool=[
        {
            "match": [{"port": 443, "sniHosts": ["x.example.com"]}],
            "route": [{"destination": {"host": GATEWAY, "subset": "v1"}}],
        },
        {
            "match": [{"port": 443, "sniHosts": ["api.payments.example"]}],
            "route": [{"destination": {"host": GATEWAY, "subset": "wide-0"}}],
        },
    ],
    picks=[0] * 20 + [1] * 20,
    gateways=["mesh"],
    export=["."],
)
@given(
    pool=st.lists(tls_rules, min_size=1, max_size=6),
    picks=st.lists(st.integers(0, 5), min_size=common.CLASSES_FROM - 4, max_size=40),
    gateways=st.sampled_from([None, ["mesh"], ["mesh", "tenant-gw"]]),
    export=st.sampled_from([["."], None]),
)
def test_virtual_service_many_tls_rules_with_subsets(
    pool: list[Any], picks: list[int], gateways: list[str] | None, export: Any
) -> None:
    """Long tls rule lists: a subset counts (with the rule's SNIs) only towards a gateway."""
    spec: dict[str, Any] = {
        "hosts": ["api.payments.example", "reviews"],
        "tls": [pool[pick % len(pool)] for pick in picks],
    }
    assert_same_virtual_service(spec, gateways, export)


# rules on "*" (namespace-wide and narrowed), a namespace-wide rule, one narrowed to a service
# account and one to labels: namespaces the rules name answer unlike those they do not
EXPORT_POLICY = parse_policy(
    """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: egress}
externalServices:
  - name: payments
    hosts: [api.payments.example]
    ports: [{number: 443, protocol: TLS}]
    addresses: [198.51.100.0/24]
  - name: wide
    hosts: ["*.example.com"]
    ports: [{number: 443, protocol: TLS}]
  - name: labelled
    hosts: [ml.example.net]
    ports: [{number: 443, protocol: TLS}]
allow:
  - {name: everyone, from: {namespace: "*"}, to: [wide]}
  - {name: trainers, from: {namespace: "*", workloadLabels: {app: trainer}}, to: [labelled]}
  - {name: tenants, from: {namespace: test-app}, to: [payments, wide]}
  - {name: batch, from: {namespace: team-b, serviceAccount: batch}, to: [payments]}
  - {name: ml, from: {namespace: team-c}, to: [payments, labelled]}
  - {name: ml-b, from: {namespace: team-d, workloadLabels: {app: trainer}}, to: [payments]}
"""
)
RULE_NAMESPACES = ["test-app", "team-b", "team-c", "team-d"]
export_names = st.one_of(
    st.sampled_from([".", "~", "*", "egress", "Bad_Name", "", "a.b", *RULE_NAMESPACES]),
    st.builds("ns-{}".format, st.integers(0, 40)),
)
export_entries = st.one_of(export_names, st.sampled_from([1, None, True, 2.5, {"a": "b"}, ["x"]]))
# long lists mostly of names no rule names, with the rest scattered among them
export_lists = st.one_of(
    st.lists(export_entries, max_size=30),
    st.builds(
        lambda count, extra, at: [
            *map("team-{}".format, range(at)),
            *extra,
            *map("team-{}".format, range(at, count)),
        ],
        st.integers(0, 400),
        st.lists(export_entries, max_size=8),
        st.integers(0, 400),
    ),
)
exports = st.one_of(export_lists, st.sampled_from(["test-app", {"a": "b"}, 3]))


def assert_same_export(manifest: dict[str, Any]) -> None:
    """The default decision on ``manifest`` is the one read entry by entry, under both policies."""
    for policy in (POLICY, EXPORT_POLICY):
        default = judge(manifest, policy)
        with per_item():
            slow = judge(manifest, policy)
        assert default.violations == slow.violations
        assert (default.allowed, default.reason) == (slow.allowed, slow.reason)


def export_objects(export: Any, namespace: str) -> Iterator[dict[str, Any]]:
    """A VirtualService, ServiceEntry and DestinationRule in ``namespace``, exported as told."""
    fqdn = EXPORT_POLICY.gateways[0].fqdn
    yield {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "vs", "namespace": namespace},
        "spec": {
            "hosts": ["api.payments.example", "a.example.com", "ml.example.net"],
            "exportTo": export,
            "http": [
                {"route": [{"destination": {"host": fqdn, "subset": subset}}]}
                for subset in ("payments-0", "wide-0", "labelled-0")
            ],
        },
    }
    yield {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "se", "namespace": namespace},
        "spec": {
            "hosts": ["api.payments.example", "a.example.com", "ml.example.net"],
            "addresses": ["198.51.100.7"],
            "exportTo": export,
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }
    yield {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "dr", "namespace": namespace},
        "spec": {
            "host": "api.payments.example",
            "exportTo": export,
            "workloadSelector": {"matchLabels": {"app": "trainer"}},
        },
    }


@FAST
@example(export=["team-c", "ns-1"], namespace="test-app")
@example(export=["team-b", "team-c"], namespace="test-app")
@example(export=[1, ".", None, "team-c"], namespace="team-c")
@given(export=exports, namespace=st.sampled_from(["test-app", "team-c", "ns-1", "egress"]))
def test_export_lists(export: Any, namespace: str) -> None:
    for manifest in export_objects(export, namespace):
        assert_same_export(manifest)


@FAST
@given(
    export=st.lists(export_names, max_size=30),
    namespace=st.sampled_from(["test-app", "team-c", "ns-1"]),
)
def test_service_export_annotation(export: list[str], namespace: str) -> None:
    names = [name for name in export if "," not in name]
    assert_same_export(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "svc",
                "namespace": namespace,
                "annotations": {services.EXPORT_TO: ",".join(names)},
            },
            "spec": {"type": "ExternalName", "externalName": "api.payments.example"},
        }
    )


def test_a_long_export_list_asks_the_policy_a_few_times(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    allowed_for = Policy.allowed_for
    monkeypatch.setattr(
        Policy, "allowed_for", lambda self, w: asked.append(w.namespace) or allowed_for(self, w)
    )
    export = [f"team-{i}" for i in range(5000)] + RULE_NAMESPACES
    vs = next(export_objects(export, "test-app"))
    assert not judge(vs, EXPORT_POLICY).allowed
    assert len(asked) <= len(RULE_NAMESPACES) + 2


# ServiceEntry addresses: internal, allowed and other IPs and CIDRs in split and unsplit blocks,
# odd spellings and values that are no string
address_entries = st.one_of(
    addresses,
    st.sampled_from(
        [" 10.0.0.1", "10.0.0.1.", "198.51.100.7\n", "203.0.113.7/32", "198.51.100.7", 1, None]
    ),
)
# long lists: one value repeated, a few cycled, many distinct, each with odd ones scattered in
address_lists = st.one_of(
    st.lists(address_entries, max_size=30),
    st.builds(lambda value, n: [value] * n, address_entries, st.integers(32, 300)),
    st.builds(
        lambda values, n: values * n,
        st.lists(address_entries, min_size=1, max_size=7),
        st.integers(5, 60),
    ),
    st.builds(
        lambda head, count: [f"{head}.{i >> 8}.{i & 255}" for i in range(count)],
        st.sampled_from(["10.1", "198.51", "203.0", "172.16", "8.8", "192.168"]),
        st.integers(32, 600),
    ),
)


@FAST
@example(addresses=["10.0.0.1"] * 40 + ["8.8.8.8"] * 40, namespace="test-app")
@example(addresses=["198.51.100.7", "198.51.101.7"] * 20, namespace="egress")
@example(addresses=["x.example.com"] * 30 + [1] + ["10.0.0.1."] * 30, namespace="test-app")
@given(
    addresses=st.builds(
        lambda values, odd, at: [*values[:at], *odd, *values[at:]],
        address_lists,
        st.lists(address_entries, max_size=3),
        st.integers(0, 600),
    ),
    namespace=st.sampled_from(["test-app", "egress"]),
)
def test_service_entry_addresses(addresses: list[Any], namespace: str) -> None:
    assert_same(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "se", "namespace": namespace},
            "spec": {
                "hosts": ["api.payments.example"],
                "addresses": addresses,
                "exportTo": ["."],
                "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                "resolution": "STATIC",
                "endpoints": [{"address": a} for a in addresses if isinstance(a, str)],
            },
        }
    )


def test_a_long_export_list_names_the_first_namespaces_in_a_short_message() -> None:
    export = [f"ns-{i:05}" for i in reversed(range(20_000))]
    entry = list(export_objects(export, "test-app"))[1]
    entry["spec"]["hosts"] = ["api.github.com"]
    decision = judge(entry, EXPORT_POLICY)
    assert not decision.allowed
    named = ", ".join(f"ns-{i:05}" for i in range(10))
    assert f"namespaces {named} and 19990 more" in decision.reason
    assert len(decision.reason) < 4096
    assert all(len(v.message) < 1024 for v in decision.violations)


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (2, "namespaces ns-00, ns-01"),
        (10, "namespaces " + ", ".join(f"ns-{i:02}" for i in range(10))),
        (12, "namespaces " + ", ".join(f"ns-{i:02}" for i in range(10)) + " and 2 more"),
    ],
)
def test_visibility_names_the_first_ten_namespaces_sorted(count: int, text: str) -> None:
    names = frozenset(f"ns-{i:02}" for i in reversed(range(count)))
    assert common.Visibility(False, names, explicit=True).describe() == text


# matches picking gateways (the egress namespace's among them), clients and SNIs, and odd ones
match_entries = st.one_of(
    st.fixed_dictionaries(
        {"port": st.just(443)},
        optional={
            "gateways": st.one_of(
                st.lists(GATEWAY_REFS, max_size=3), st.sampled_from([None, "mesh", ["mesh", 7]])
            ),
            "sourceNamespace": st.sampled_from([None, "", "test-app", "other", 5]),
            "sourceLabels": st.sampled_from(
                [
                    None,
                    {},
                    {"app": "trainer"},
                    {"app": "other"},
                    {"app": "trainer", "tier": "x"},
                    {"tier": "x", "app": "trainer"},
                    {"app": 1},
                    ["app"],
                    "app=trainer",
                ]
            ),
            "sniHosts": st.sampled_from(
                [
                    None,
                    [],
                    ["api.payments.example"],
                    ["X.Example.COM."],
                    [" a.example.com ", "b.example.com"],
                    [7, "x.example.com"],
                    ["ml.example.net", "."],
                    "x.example.com",
                ]
            ),
        },
    ),
    st.sampled_from(["not-a-match", 3, None]),
)


@FAST
@example(
    pool=[{"port": 443, "gateways": ["mesh"], "sourceLabels": {"app": "trainer"}}],
    picks=[0] * 40,
    kind="http",
    destination=("ml.example.net", ""),
    rules=1,
    gateways=None,
)
@example(
    pool=[{"port": 443, "sniHosts": ["x.example.com"]}, {"port": 443, "sniHosts": ["a.b.c"]}],
    picks=[0] * 39 + [1],
    kind="tls",
    destination=(GATEWAY, "wide-0"),
    rules=1,
    gateways=["mesh"],
)
@example(
    pool=[{"gateways": ["tenant-gw"]}, {"gateways": ["mesh"], "sourceLabels": {"app": "trainer"}}],
    picks=[0] * 39 + [1],
    kind="http",
    destination=("ml.example.net", ""),
    rules=1,
    gateways=["mesh"],
)
@example(
    pool=[{"sniHosts": [" a.example.com "]}, {"sniHosts": []}, {"sourceLabels": {1: "x"}}],
    picks=[0] * 40,
    kind="tls",
    destination=(GATEWAY, "wide-0"),
    rules=1,
    gateways=["mesh"],
)
@example(
    pool=[{"sniHosts": ["a.example.com"]}, {"sniHosts": []}],
    picks=[0] * 39 + [1],
    kind="tls",
    destination=(GATEWAY, "wide-0"),
    rules=1,
    gateways=["mesh"],
)
@example(
    pool=[{"sourceLabels": {"app": "trainer"}}, {"sourceLabels": {1: "trainer"}}],
    picks=[0] * 39 + [1],
    kind="http",
    destination=("ml.example.net", ""),
    rules=1,
    gateways=["mesh"],
)
@given(
    pool=st.lists(match_entries, min_size=1, max_size=6),
    picks=st.lists(st.integers(0, 5), min_size=common.CLASSES_FROM - 4, max_size=50),
    kind=st.sampled_from(["http", "tcp", "tls"]),
    destination=st.tuples(
        st.sampled_from([GATEWAY, "api.payments.example", "ml.example.net", "reviews"]),
        st.sampled_from(["", "v1", "wide-0", "labelled-0"]),
    ),
    rules=st.sampled_from([1, 2, common.CLASSES_FROM]),
    gateways=st.sampled_from([None, ["mesh"], ["tenant-gw"], ["mesh", "egress/gw"]]),
)
def test_virtual_service_long_match_lists(
    pool: list[Any],
    picks: list[int],
    kind: str,
    destination: tuple[str, str],
    rules: int,
    gateways: list[str] | None,
) -> None:
    """A rule's long match list: its gateways, clients and SNIs read in passes of C, each
    distinct client once, decide as match by match; in one rule and in a long rule list."""
    host, subset = destination
    rule = {
        "match": [pool[pick % len(pool)] for pick in picks],
        "route": [{"destination": {"host": host, "subset": subset}}],
    }
    spec: dict[str, Any] = {
        "hosts": ["api.payments.example", "ml.example.net", "reviews"],
        kind: [rule] * rules,
    }
    assert_same_virtual_service(spec, gateways, ["."])


@pytest.mark.parametrize(
    "match",
    [
        lambda i: {"port": 80, "gateways": ["mesh"], "authority": {"exact": "a"}},
        lambda i: {"port": 80, "gateways": [f"mesh-{i}"], "authority": {"exact": f"a-{i}"}},
        lambda i: {"gateways": ["mesh", "egress/gw"][i % 2 :], "sourceNamespace": f"ns-{i % 7}"},
        lambda i: {"sourceLabels": {"app": "trainer", "i": str(i % 3)}, "sniHosts": [f"x{i}.b.c"]},
    ],
)
def test_thousands_of_matches(match: Any) -> None:
    for kind in ("http", "tls"):
        spec: dict[str, Any] = {
            "hosts": ["api.payments.example"],
            kind: [
                {
                    "match": [match(i) for i in range(5000)],
                    "route": [{"destination": {"host": GATEWAY, "subset": "wide-0"}}],
                }
            ],
        }
        assert_same_virtual_service(spec, ["mesh", "tenant-gw"], None)


# /16 blocks of every kind of range: internal and unsplit (10.1), split by an internal /25
# (192.168.1.128/25 in 192.168), a service's addresses (198.51.100.0/24, 203.0.113.7/32, inside
# 172.16.0.0/12) and public space
ADDRESS_BLOCKS = ["10.1", "192.168", "198.51", "203.0", "172.16", "8.8"]
# IPv6: internal (fd00::/8), around 2001:db8::5/128 and inside 2001:db8:1::/48, public space
ADDRESS_BLOCKS_V6 = ["fd00", "2001:db8", "2001:db8:1", "2001:db9"]
# texts a tcp rule can route to besides addresses: names, a name that reads like an address
# block, short names, a gateway, CIDRs, an IPv6 address
ODD_TCP_HOSTS = [
    "10.1",
    "10.1.2",
    "reviews",
    "x.example.net",
    "api.payments.example",
    GATEWAY,
    "10.1.2.0/24",
    "192.168.1.128/25",
    "198.51.100.0/24",
    "8.8.8.0/24",
    "2001:db8::1",
]


def _plain_to(host: str) -> dict[str, Any]:
    """A rule of one destination and no match: keyed like the address rules around it."""
    return {"route": [{"destination": {"host": host}}]}


def _address(block: str, i: int) -> str:
    """The ``i``-th address of ``block`` (``a.b``, or an IPv6 prefix), each distinct up to
    65,536."""
    if ":" in block:
        return f"{block}::{i:x}"
    return f"{block}.{(i >> 8) & 255}.{i & 255}"


# where to start counting addresses: anywhere, or around the /24 192.168.1.128/25 splits
# (the 256th to the 511th address of a block)
address_starts = st.one_of(st.integers(0, 65_535), st.integers(200, 511))


@FAST
@example(
    blocks=["192.168"],
    count=400,
    cycle=0,
    start=384,
    odd=[],
    kind="tcp",
    subset=None,
    gateways=None,
    export=["."],
)
@example(
    blocks=["10.1"],
    count=60,
    cycle=0,
    start=0,
    odd=[(30, _plain_to("10.1"))],
    kind="tcp",
    subset=None,
    gateways=["mesh"],
    export=["."],
)
@given(
    blocks=st.one_of(
        st.lists(st.sampled_from(ADDRESS_BLOCKS), min_size=1, max_size=3),
        st.lists(st.sampled_from(ADDRESS_BLOCKS_V6), min_size=1, max_size=3),
    ),
    count=st.integers(common.CLASSES_FROM, 300),
    # 0: every address unique, else cycling through that many
    cycle=st.sampled_from([0, 1, 3, 7]),
    start=address_starts,
    odd=st.lists(
        st.tuples(
            st.integers(0, 300),
            st.one_of(
                st.builds(_plain_to, st.sampled_from(ODD_TCP_HOSTS)),
                st.builds(_to, st.sampled_from(ODD_TCP_HOSTS)),
                odd_rules,
            ),
        ),
        max_size=3,
    ),
    kind=st.sampled_from(["tcp", "tls"]),
    subset=st.sampled_from([None, "v1", "wide-0", [], {"a": 1}]),
    gateways=st.sampled_from([None, ["mesh"], ["mesh", "tenant-gw"], ["tenant-gw"]]),
    export=st.sampled_from([["."], None]),
)
def test_virtual_service_rules_to_thousands_of_addresses(
    blocks: list[str],
    count: int,
    cycle: int,
    start: int,
    odd: list[tuple[int, Any]],
    kind: str,
    subset: Any,
    gateways: list[str] | None,
    export: Any,
) -> None:
    """A rule per address, unique or cycling, over blocks inside and outside the policy
    ranges: addresses of a class get one verdict, an odd rule anywhere keeps its own."""
    rule_list: list[Any] = []
    for i in range(count):
        n = start + (i % cycle if cycle else i)
        destination: dict[str, Any] = {"host": _address(blocks[i % len(blocks)], n)}
        if subset is not None:
            destination["subset"] = subset
        rule_list.append({"route": [{"destination": destination}]})
    for at, rule in odd:
        rule_list.insert(at % (count + 1), rule)
    spec: dict[str, Any] = {"hosts": ["api.payments.example", "reviews"], kind: rule_list}
    assert_same_virtual_service(spec, gateways, export)


@FAST
@given(
    hosts=st.lists(
        st.one_of(
            st.builds(_address, st.sampled_from(ADDRESS_BLOCKS), address_starts),
            st.builds(_address, st.sampled_from(ADDRESS_BLOCKS_V6), st.integers(0, 9)),
            st.sampled_from(ODD_TCP_HOSTS),
            plain_destination_hosts,
        ),
        min_size=common.CLASSES_FROM,
        max_size=120,
    ),
    kind=st.sampled_from(["tcp", "tls"]),
    gateways=st.sampled_from([None, ["mesh"], ["mesh", "tenant-gw"]]),
    export=st.sampled_from([["."], None]),
)
def test_virtual_service_rules_to_addresses_and_names(
    hosts: list[str], kind: str, gateways: list[str] | None, export: Any
) -> None:
    """A rule per host, addresses of every class mixed with names, CIDRs and gateways."""
    spec: dict[str, Any] = {
        "hosts": ["api.payments.example", "reviews"],
        kind: [{"route": [{"destination": {"host": host}}]} for host in hosts],
    }
    assert_same_virtual_service(spec, gateways, export)


@FAST
@given(
    pool=st.lists(plain_destination_hosts, min_size=1, max_size=6),
    picks=st.lists(
        st.tuples(
            st.integers(0, 5),
            st.sampled_from([None, "v1", "wide-0", "labelled-0", "", 7, [], {"a": 1}]),
        ),
        min_size=common.CLASSES_FROM - 4,
        max_size=60,
    ),
    sni=st.sampled_from([None, ["api.payments.example"], ["x.example.com"]]),
    kind=st.sampled_from(["tcp", "tls"]),
    gateways=st.sampled_from([None, ["mesh"], ["mesh", "tenant-gw"]]),
    export=st.sampled_from([["."], None]),
)
def test_virtual_service_long_route_list_with_subsets(
    pool: list[str],
    picks: list[tuple[int, Any]],
    sni: list[str] | None,
    kind: str,
    gateways: list[str] | None,
    export: Any,
) -> None:
    """One rule over many destinations naming subsets: only a gateway's are judged."""
    entries: list[Any] = []
    for pick, subset in picks:
        destination: dict[str, Any] = {"host": pool[pick % len(pool)]}
        if subset is not None:
            destination["subset"] = subset
        entries.append({"destination": destination, "weight": 1})
    rule: dict[str, Any] = {"route": entries}
    if sni is not None:
        rule["match"] = [{"port": 443, "sniHosts": sni}]
    spec: dict[str, Any] = {"hosts": ["api.payments.example", "reviews"], kind: [rule]}
    assert_same_virtual_service(spec, gateways, export)


@pytest.mark.parametrize("bad", ["bad_host.example.com", "a..example.com", "reviews", "8.8.8.8"])
@pytest.mark.parametrize("field", ["route", "mirrors"])
def test_virtual_service_long_destination_list_repeating_a_few_hosts(bad: str, field: str) -> None:
    # one rule spreading over 3,000 destinations of two services, then one more host (invalid,
    # a short name to expand, an address): each text looked at once, the last one too
    services = ["db.test-app.svc.cluster.local", "cache.test-app.svc.cluster.local"]
    hosts = [services[i % 2] for i in range(3000)] + [bad]
    entries = [{"destination": {"host": host}} for host in hosts]
    rule: dict[str, Any] = {"route": entries}
    if field == "mirrors":
        rule = {"route": [{"destination": {"host": "reviews"}}], "mirrors": entries}
    manifest = plain_rules_manifest("http", [rule])
    fast, slow = both(manifest)
    assert fast.violations == slow.violations
    assert judge(manifest, POLICY).violations == slow.violations


# rules read in passes of C but of another shape to them, hidden among plain ones: a bad or
# empty host, a subset of the wrong type, a gateway subset, clients, a second destination
odd_plain_rules = st.one_of(
    st.builds(_to, st.sampled_from(["Bad_Host!", "", "x.example.net", "8.8.8.8", "reviews"])),
    st.builds(
        lambda subset: {"route": [{"destination": {"host": GATEWAY, "subset": subset}}]},
        st.sampled_from([7, [], {"a": 1}, "", "wide-0", "labelled-0"]),
    ),
    st.just(_to("reviews", sourceNamespace="other")),
    st.just({"match": "x", "route": [{"destination": {"host": "reviews"}}]}),
    st.just({"route": [{"destination": {"host": "reviews"}}, {"destination": {"host": "db"}}]}),
    st.just({"route": [{"destination": {"host": 7}}]}),
)
sni_matches = st.sampled_from(
    [None, ["api.payments.example"], ["x.example.com"], ["a.wide.example"], []]
)


def plain_rule(host: Any, subset: Any, sni: list[str] | None) -> dict[str, Any]:
    """A rule with one destination, and the SNIs it matches if any."""
    destination: dict[str, Any] = {"host": host}
    if subset is not None:
        destination["subset"] = subset
    rule: dict[str, Any] = {"route": [{"destination": destination}]}
    if sni is not None:
        rule["match"] = [{"port": 443, "sniHosts": sni}]
    return rule


@FAST
@example(
    pool=[(GATEWAY, "v1", ["api.payments.example"]), ("reviews", None, None)],
    count=60,
    odd=[(59, plain_rule(GATEWAY, "labelled-0", ["x.example.com"]))],
    kind="tls",
    gateways=["mesh"],
    export=["."],
)
@example(
    pool=[("10.1.2.3", None, None), ("reviews", "", None)],
    count=60,
    odd=[(60, _to("Bad_Host!"))],
    kind="tcp",
    gateways=None,
    export=None,
)
@given(
    pool=st.lists(
        st.tuples(
            plain_destination_hosts,
            st.sampled_from([None, "v1", "wide-0", "labelled-0", ""]),
            sni_matches,
        ),
        min_size=1,
        max_size=4,
    ),
    count=st.integers(common.CLASSES_FROM, 120),
    odd=st.lists(st.tuples(st.integers(0, 120), odd_plain_rules), max_size=2),
    kind=st.sampled_from(["tcp", "tls", "http"]),
    gateways=st.sampled_from([None, ["mesh"], ["mesh", "tenant-gw"], ["tenant-gw"]]),
    export=st.sampled_from([["."], None]),
)
def test_virtual_service_plain_rules_repeating_a_few_hosts(
    pool: list[tuple[str, str | None, list[str] | None]],
    count: int,
    odd: list[tuple[int, Any]],
    kind: str,
    gateways: list[str] | None,
    export: Any,
) -> None:
    """Plain rules cycling through a few hosts, subsets and SNIs, as generated lists do: each
    host text checked once; an odd rule anywhere keeps its own verdict at its own path."""
    rule_list = [plain_rule(*pool[i % len(pool)]) for i in range(count)]
    for at, rule in odd:
        rule_list.insert(at % (count + 1), rule)
    spec: dict[str, Any] = {"hosts": ["api.payments.example", "reviews"], kind: rule_list}
    assert_same_virtual_service(spec, gateways, export)


def plain_rules_manifest(kind: str, rule_list: list[Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta("vs"),
        "spec": {"hosts": ["api.payments.example"], "exportTo": ["."], kind: rule_list},
    }


@pytest.mark.parametrize(
    ("odd", "field"),
    [
        # a subset whose services do not cover the rule's SNI, after thousands of clean ones
        (plain_rule(GATEWAY, "wide-0", ["api.payments.example"]), "subset"),
        (plain_rule(GATEWAY, "labelled-0", ["x.example.com"]), "subset"),
        (plain_rule("Bad_Host!", "v1", ["x.example.com"]), "host"),
        (plain_rule("8.8.8.8", None, None), "host"),
        # of a shape read rule by rule, yet clean: no violation at all
        (plain_rule(GATEWAY, 7, ["x.example.com"]), None),
        (plain_rule(GATEWAY, {"a": 1}, ["api.payments.example"]), None),
    ],
)
def test_virtual_service_plain_tls_rule_wrong_after_thousands(odd: Any, field: str | None) -> None:
    # 3,000 tls rules to the gateway cycling two clean subset and SNI pairs, and the last odd
    rule_list = [
        plain_rule(GATEWAY, "v1", ["api.payments.example"])
        if i % 2
        else plain_rule(GATEWAY, "wide-0", ["x.example.com"])
        for i in range(3000)
    ]
    rule_list.append(odd)
    manifest = plain_rules_manifest("tls", rule_list)
    fast, slow = both(manifest)
    assert fast.violations == slow.violations
    expected = [] if field is None else [f"spec.tls[3000].route[0].destination.{field}"]
    assert [v.field for v in slow.violations] == expected
    assert judge(manifest, POLICY).violations == slow.violations


@pytest.mark.parametrize("last", [GATEWAY, "reviews"])
def test_virtual_service_plain_tls_rules_each_with_its_own_subset(last: str) -> None:
    # 3,000 tls rules, each to its own service with its own subset (none judged: no gateway
    # among them), then one naming a subset of the gateway its SNI does not pass
    rule_list = [plain_rule(f"svc-{i}", f"s-{i}", [f"svc-{i}.example.com"]) for i in range(3000)]
    rule_list.append(plain_rule(last, "labelled-0", ["x.example.com"]))
    manifest = plain_rules_manifest("tls", rule_list)
    fast, slow = both(manifest)
    assert fast.violations == slow.violations
    expected = ["spec.tls[3000].route[0].destination.subset"] if last == GATEWAY else []
    assert [v.field for v in slow.violations] == expected
    assert judge(manifest, POLICY).violations == slow.violations


@pytest.mark.parametrize("kind", ["tcp", "tls"])
def test_virtual_service_plain_rules_keep_the_violation_stop(kind: str) -> None:
    # repeated rules each wrong (a gateway subset for the wrong SNI, an address out of the
    # cluster) mixed with clean ones: those up to the stop are reported, in order
    pool = [
        plain_rule(GATEWAY, "labelled-0", ["x.example.com"]),
        plain_rule("reviews", "v1", None),
        plain_rule("8.8.8.8", None, ["api.payments.example"]),
    ]
    manifest = plain_rules_manifest(kind, [pool[i % 3] for i in range(5000)])
    fast, slow = both(manifest)
    assert len(slow.violations) == STOP_AFTER_VIOLATIONS
    assert fast.violations == slow.violations
    assert fast.reason == slow.reason
    default = judge(manifest, POLICY)
    assert (default.violations, default.reason) == (slow.violations, slow.reason)


# http rules of one shape, as generated lists hold them: a route, and in every rule the same
# extras (a mirror, a mirrors entry, a delegate) and a match naming its own gateways
uniform_parts = st.fixed_dictionaries(
    {
        "hosts": st.lists(plain_destination_hosts, min_size=1, max_size=3),
        "mirrors": st.lists(plain_destination_hosts, min_size=1, max_size=3),
        "subset": st.sampled_from([None, "v1", "wide-0", "", 7]),
        "mirror": st.booleans(),
        "mirrors_entry": st.booleans(),
        "delegate": st.sampled_from([None, "test-app", "other", "", "none"]),
        "gateways": st.sampled_from(
            [
                None,
                [["mesh"]],
                [["mesh"], ["mesh", "tenant-gw"], []],
                [["tenant-gw"]],
                [["mesh"], ["egress/istio-egressgateway"]],
                [None, ["mesh"]],
                "unique",
                "unique egress",
            ]
        ),
    }
)
# what makes a rule of another shape among them
odd_uniform_rules = st.one_of(
    odd_plain_rules,
    st.sampled_from(
        [
            {**_to("reviews"), "mirror": {"host": "x.example.net", "subset": "v1"}},
            {**_to("reviews"), "mirror": {"host": 7}},
            {**_to("reviews"), "mirrors": []},
            {**_to("reviews"), "delegate": {}},
            {**_to("reviews"), "delegate": {"name": "d", "namespace": 3}},
            {**_to("reviews"), "redirect": {"authority": "x.example.net"}},
            {**_to("reviews"), "rewrite": {"authority": "x.example.net"}},
            {"match": [{"gateways": ["mesh"]}, {"gateways": ["tenant-gw"]}], **_to("reviews")},
            {"match": [{"gateways": ["mesh"], "sourceNamespace": "other"}], **_to("reviews")},
            {"match": [{"gateways": "mesh"}], **_to("reviews")},
            {"match": [{"gateways": [7]}], **_to("reviews")},
        ]
    ),
)


def uniform_rule(i: int, parts: dict[str, Any]) -> dict[str, Any]:
    """The ``i``-th rule of a list of one shape, its hosts cycling through ``parts``'."""
    hosts, mirrors = parts["hosts"], parts["mirrors"]
    rule = plain_rule(hosts[i % len(hosts)], parts["subset"], None)
    if parts["mirror"]:
        rule["mirror"] = {"host": mirrors[i % len(mirrors)]}
    if parts["mirrors_entry"]:
        rule["mirrors"] = [{"destination": {"host": mirrors[-1 - i % len(mirrors)]}}]
    delegate = parts["delegate"]
    if delegate is not None:
        rule["delegate"] = (
            {"name": "d"} if delegate == "none" else {"name": "d", "namespace": delegate}
        )
    gateways = parts["gateways"]
    if gateways in ("unique", "unique egress"):
        # a list of its own per rule, with the mesh or not (now and then one of the egress
        # namespace)
        own = [f"gw-{i}", "mesh"] if i % 3 else [f"gw-{i}"]
        if gateways == "unique egress" and i % 23 == 7:
            own = [f"egress/gw-{i}"]
        rule["match"] = [{"gateways": own}]
    elif gateways is not None:
        own = gateways[i % len(gateways)]
        rule["match"] = [{"uri": {"prefix": "/"}} if own is None else {"gateways": own}]
    return rule


@FAST
@example(
    parts={
        "hosts": ["reviews"],
        "mirrors": ["x.example.net", "reviews"],
        "subset": None,
        "mirror": True,
        "mirrors_entry": True,
        "delegate": "other",
        "gateways": [["mesh"], ["egress/istio-egressgateway"]],
    },
    count=40,
    odd=[],
    gateways=None,
    export=None,
)
@example(
    parts={
        "hosts": ["x.example.net"],
        "mirrors": ["reviews"],
        "subset": None,
        "mirror": False,
        "mirrors_entry": False,
        "delegate": None,
        "gateways": "unique",
    },
    count=40,
    odd=[],
    gateways=None,
    export=None,
)
@given(
    parts=uniform_parts,
    count=st.integers(common.CLASSES_FROM, 90),
    odd=st.lists(st.tuples(st.integers(0, 90), odd_uniform_rules), max_size=2),
    gateways=st.sampled_from([None, ["mesh"], ["mesh", "tenant-gw"], ["tenant-gw"]]),
    export=st.sampled_from([["."], None]),
)
def test_virtual_service_http_rules_of_one_shape(
    parts: dict[str, Any],
    count: int,
    odd: list[tuple[int, Any]],
    gateways: list[str] | None,
    export: Any,
) -> None:
    """http rules alike in shape (mirrors, delegate, own gateways) are read in passes of C: an
    odd rule anywhere keeps its own verdict at its own path."""
    rule_list = [uniform_rule(i, parts) for i in range(count)]
    for at, rule in odd:
        rule_list.insert(at % (count + 1), rule)
    spec: dict[str, Any] = {"hosts": ["api.payments.example", "reviews"], "http": rule_list}
    assert_same_virtual_service(spec, gateways, export)


@pytest.mark.parametrize("gateways", [[["mesh"], ["mesh", "tenant-gw"]], "unique"])
@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda rule: rule["mirror"].update(host="x.example.net"), "mirror.host"),
        (
            lambda rule: rule["mirrors"][0]["destination"].update(host="Bad_Host!"),
            "mirrors[0].destination.host",
        ),
        (lambda rule: rule["delegate"].update(namespace="other"), "delegate"),
        # read the general way: a subset towards the gateway, a rewrite
        (lambda rule: rule["mirror"].update(host=GATEWAY, subset="labelled-0"), "mirror.subset"),
        (lambda rule: rule.update(rewrite={"authority": "x.example.net"}), "rewrite.authority"),
        (lambda rule: rule["match"][0].update(gateways=["egress/gw"]), "match[0].gateways[0]"),
    ],
)
def test_virtual_service_http_rule_of_one_shape_wrong_after_thousands(
    change: Callable[[dict[str, Any]], None], field: str, gateways: Any
) -> None:
    # 3,000 clean http rules with a mirror, a mirrors entry, a delegate within the namespace
    # and their own gateways; the last one changed: its violation alone, at its own path
    parts = {
        "hosts": ["reviews", "db"],
        "mirrors": ["shadow"],
        "subset": None,
        "mirror": True,
        "mirrors_entry": True,
        "delegate": "test-app",
        "gateways": gateways,
    }
    rule_list = [uniform_rule(i, parts) for i in range(3000)]
    change(rule_list[-1])
    manifest = plain_rules_manifest("http", rule_list)
    fast, slow = both(manifest)
    assert fast.violations == slow.violations
    assert [v.field for v in slow.violations] == [f"spec.http[2999].{field}"]
    assert judge(manifest, POLICY).violations == slow.violations


def test_virtual_service_http_rules_of_one_shape_keep_the_violation_stop() -> None:
    # every rule mirrors out of the mesh and delegates out of the namespace: those up to the
    # stop are reported, in order
    parts = {
        "hosts": ["reviews"],
        "mirrors": ["x.example.net", "y.example.org"],
        "subset": None,
        "mirror": True,
        "mirrors_entry": True,
        "delegate": "other",
        "gateways": [["mesh"]],
    }
    manifest = plain_rules_manifest("http", [uniform_rule(i, parts) for i in range(3000)])
    fast, slow = both(manifest)
    assert len(slow.violations) == STOP_AFTER_VIOLATIONS
    assert (fast.violations, fast.reason) == (slow.violations, slow.reason)
    default = judge(manifest, POLICY)
    assert (default.violations, default.reason) == (slow.violations, slow.reason)


def test_rules_to_thousands_of_addresses_of_one_network_are_judged_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 5,000 rules, each to its own pod address: one judgement for the internal network, and
    # one for the public address among them, reported at its own path
    rule_list = [_to(_address("10.1", i)) for i in range(5000)]
    rule_list[4321] = _to("8.8.8.8")
    manifest = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta("vs"),
        "spec": {"hosts": ["reviews"], "exportTo": ["."], "tcp": rule_list},
    }
    judged = 0
    route = virtualservices._check_tenant_route

    def counted(*args: Any) -> None:
        nonlocal judged
        judged += 1
        route(*args)

    monkeypatch.setattr(virtualservices, "_check_tenant_route", counted)
    decision = judge(manifest, POLICY)
    assert [v.field for v in decision.violations] == ["spec.tcp[4321].route[0].destination.host"]
    assert judged <= 4


# one label under one parent, each host its own: the shape the shared-parent path reads
_ODD_HOSTS = [
    "*.example.com",  # a wildcard among plain names
    "a.b.example.com",  # one label deeper
    "api.payments.example",  # a name the policy lists by itself
    "x.example.org",  # another parent
    "example.com",  # the parent itself
    "x.example.com.",  # a trailing dot (invalid)
    "x.1.2.3",  # a parent ending in a digit
    "db",  # a short name
]


@FAST
@given(
    parent=st.sampled_from(PARENTS),
    odd=st.one_of(st.none(), st.sampled_from(_ODD_HOSTS), names),
    at=st.integers(0, 2999),
)
def test_hosts_of_one_parent_read_from_their_joined_text(
    parent: str, odd: str | None, at: int
) -> None:
    hosts = [f"h{i}.{parent}" for i in range(3000)]
    if odd is not None:
        hosts[at] = odd
    joined = "\n".join(hosts)
    assert virtualservices._parent_keys(POLICY, hosts, joined=joined) == (
        virtualservices._parent_keys(POLICY, hosts)
    )
    assert_same_virtual_service({"hosts": hosts, "tcp": [_to("10.1.2.3")]}, None, None)


@pytest.mark.parametrize("parent", ["example.com", "1.2.3", "example.com.", "x"])
def test_shared_parent_is_read_only_from_names_of_one_label_under_it(parent: str) -> None:
    hosts = [f"h{i}.{parent}" for i in range(100)]
    joined = "\n".join(hosts)
    found = virtualservices._shared_parent(hosts, joined)
    # a parent ending in a digit may be an address: never a class
    assert found == (None if parent[-1].isdigit() else parent)
    # a host one label deeper, or under another parent, anywhere: not one parent
    for odd in (f"a.b.{parent}", f"h.{parent}x", f"h{parent}"):
        for at in (0, 50, 99):
            changed = [*hosts[:at], odd, *hosts[at + 1 :]]
            assert virtualservices._shared_parent(changed, "\n".join(changed)) is None


# --- long host lists with odd entries, read a run at a time -----------------------------------

# entries a long plain host list can hide: invalid names, names that normalize (upper case,
# absolute, padded), short names and addresses a VirtualService keeps, entries of other types,
# and valid names the policy does not allow
_ODD_ENTRIES: list[Any] = [
    "-bad-.example.com",
    "a..b.example.com",
    "",
    "*.*.example.com",
    "x" * 300 + ".com",
    "UPPER.Example.com",
    "a.example.com.",
    " a.example.org ",
    "API.PAYMENTS.EXAMPLE.",
    "a.example.com..",
    "h.evil.test",
    "db",
    "2001:db8::1",
    "*",
    "a.example.com\nb.example.com",
    7,
    None,
    True,
    {"a": 1},
    ["x.example.com"],
]
odd_entries = st.sampled_from(_ODD_ENTRIES)


@st.composite
def lists_with_odd_entries(draw: st.DrawFn, most: int = 120) -> list[Any]:
    """A list of valid names with odd entries anywhere: none, one, or many."""
    hosts: list[Any] = draw(st.lists(dotted, min_size=1, max_size=most))
    for at, entry in draw(st.lists(st.tuples(st.integers(0, most), odd_entries), max_size=40)):
        hosts.insert(min(at, len(hosts)), entry)
    return hosts


@contextmanager
def runs_of(size: int, alone: int) -> Iterator[None]:
    """Host lists tested ``size`` entries at a time, down to ``alone`` read one by one."""
    patch = pytest.MonkeyPatch()
    patch.setattr(common, "HOSTS_RUN", size)
    patch.setattr(common, "HOSTS_ALONE", alone)
    try:
        yield
    finally:
        patch.undo()


RUNS = st.sampled_from([(2, 1), (4, 1), (8, 2), (16, 4), (64, 16), (2048, 16)])


def _service_entry(hosts: list[Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": meta("se"),
        "spec": {
            "hosts": hosts,
            "exportTo": ["."],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }


def _virtual_service(hosts: list[Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": meta("vs"),
        "spec": {
            "hosts": hosts,
            "exportTo": ["."],
            "http": [{"route": [{"destination": {"host": "reviews"}}]}],
        },
    }


def _tls_route(hosts: list[Any]) -> dict[str, Any]:
    # a mesh TLSRoute: its hostnames are judged (an HTTPRoute's reach no sidecar)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "TLSRoute",
        "metadata": meta("rt"),
        "spec": {
            "parentRefs": [{"kind": "Service", "group": "", "name": "reviews"}],
            "hostnames": hosts,
            "rules": [{"backendRefs": [{"name": "reviews", "port": 9080}]}],
        },
    }


def _endpoint_slice(hosts: list[Any]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": meta("es"),
        "addressType": "FQDN",
        "endpoints": [{"addresses": [h]} for h in hosts],
    }


HOST_LISTS = [_service_entry, _virtual_service, _tls_route, _endpoint_slice]


@FAST
@example(hosts=["a.example.com", "-bad-.example.com", "b.example.com"], runs=(2, 1))
@example(hosts=[*(["a.b.example.com"] * 9), "UPPER.Example.com", 7], runs=(4, 1))
@given(hosts=lists_with_odd_entries(), runs=RUNS)
def test_host_lists_with_odd_entries(hosts: list[Any], runs: tuple[int, int]) -> None:
    with runs_of(*runs):
        for build in HOST_LISTS:
            assert_same(build(hosts))


@FAST
@given(hosts=lists_with_odd_entries(), runs=RUNS, namespace=st.sampled_from(["test-app", "egress"]))
def test_host_lists_with_odd_entries_in_the_egress_namespace(
    hosts: list[Any], runs: tuple[int, int], namespace: str
) -> None:
    with runs_of(*runs):
        for build in (_service_entry, _virtual_service):
            manifest = build(hosts)
            manifest["metadata"]["namespace"] = namespace
            assert_same(manifest)


def _spread(entry: Any, every: int, count: int = 3000) -> list[Any]:
    return [entry if i % every == every - 1 else f"h{i}.p{i % 7}.example.com" for i in range(count)]


@pytest.mark.parametrize(
    "hosts",
    [
        # more odd entries than the violation limit, spread thinly, and everywhere
        _spread("-bad-.example.com", 13),
        _spread("-bad-.example.com", 1),
        _spread(7, 11),
        _spread("h.evil.test", 17),
        # odd entries that only normalize or expand: no violation, all kept
        _spread("UPPER.Example.com", 3),
        _spread(" a.example.org.", 29),
        _spread("db", 5),
        _spread("2001:db8::1", 2),
        # one odd entry first, in the middle, last
        *(
            [*(f"h{i}.p{i % 7}.example.com" for i in range(at)), odd]
            + [f"g{i}.example.org" for i in range(5000 - at)]
            for at in (0, 2500, 5000)
            for odd in ("a..b.example.com", "UPPER.Example.com", None, "h.evil.test")
        ),
    ],
)
def test_long_host_lists_with_odd_entries(hosts: list[Any]) -> None:
    for build in HOST_LISTS:
        assert_same(build(hosts))
    with runs_of(64, 4):
        assert_same(_service_entry(hosts))


@FAST
@given(
    kept=st.lists(st.booleans(), max_size=60),
)
def test_kept_entries_map_back_to_their_indexes(kept: list[bool]) -> None:
    shifts = common._Shifts()
    indexes = []
    for index, keep in enumerate(kept):
        if keep:
            indexes.append(index)
        else:
            shifts.drop(len(indexes))
    assert [shifts.index(k) for k in range(len(indexes))] == indexes
    assert list(shifts.indexes(len(indexes))) == indexes
    assert bool(shifts) == (not all(kept))


def test_destination_paths_written_when_read_are_the_listed_ones() -> None:
    targets = virtualservices._Targets()
    targets.append(("spec.tcp[0].route[0].destination.host", "a.example.com"))
    targets.add_listed(
        ["b.example.com", "c.example.com"], "spec.tcp[0].mirrors[{}].destination.host"
    )
    targets.append(("spec.tcp[0].mirror.host", "d.example.com"))
    pairs = [
        ("spec.tcp[0].route[0].destination.host", "a.example.com"),
        ("spec.tcp[0].mirrors[0].destination.host", "b.example.com"),
        ("spec.tcp[0].mirrors[1].destination.host", "c.example.com"),
        ("spec.tcp[0].mirror.host", "d.example.com"),
    ]
    assert list(targets) == pairs
    assert [targets[i] for i in range(-4, 4)] == pairs + pairs
    assert targets.hosts() == [host for _, host in pairs]
    assert len(targets) == 4 and targets == tuple(pairs) and hash(targets) == hash(tuple(pairs))
    with pytest.raises(IndexError):
        targets[4]


def test_paths_of_a_long_list_of_strings_are_written_when_read() -> None:
    values = [f"10.0.0.{i}" for i in range(40)]
    pathed = common.Reader().strings(values, "endpoints[0].addresses")
    pairs = [(f"endpoints[0].addresses[{i}]", value) for i, value in enumerate(values)]
    assert isinstance(pathed, common.Pathed)
    assert list(pathed) == pairs and list(pathed) == pairs  # read again, the same
    assert [pathed[i] for i in (0, 39, -1, -40)] == [pairs[0], pairs[39], pairs[39], pairs[0]]
    assert list(pathed[3:5]) == pairs[3:5] and len(pathed) == 40


# --- long lists of objects with odd items, read a run at a time -------------------------------


@contextmanager
def item_runs_of(size: int, alone: int) -> Iterator[None]:
    """Lists of objects tried ``size`` items at a time, halved down to ``alone`` items."""
    patch = pytest.MonkeyPatch()
    patch.setattr(common, "ITEMS_RUN", size)
    patch.setattr(common, "ITEMS_ALONE", alone)
    patch.setattr(common, "KEYS_CHUNK", size)
    patch.setattr(common, "KEYS_ALONE", alone)
    try:
        yield
    finally:
        patch.undo()


# items no class pass reads: of another type, without the field, the field null or of another
# type, or a shape the fast path does not take (two addresses, none)
_ODD_OBJECTS: list[Any] = [None, 7, "x", True, ["a"], {}]
_ODD_FIELDS: list[Any] = [None, 7, True, ["10.1.2.3"], {"a": 1}, ""]


def _items(field: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(lambda value: {field: value}, values)


def _endpoints(items: list[Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta("ep"),
        "subsets": [{"addresses": items, "notReadyAddresses": items[::-1]}],
    }


def _endpoint_slice(fqdn: bool) -> Callable[[list[Any]], dict[str, Any]]:
    def build(items: list[Any]) -> dict[str, Any]:
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": meta("es"),
            "addressType": "FQDN" if fqdn else "IPv4",
            "endpoints": items,
        }

    return build


def _service_entry_endpoints(items: list[Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": meta("se"),
        "spec": {
            "hosts": ["db.example.com"],
            "exportTo": ["."],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "STATIC",
            "endpoints": items,
        },
    }


def _network_policy(items: list[Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta("np"),
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": items}]},
    }


def _gateway_addresses(items: list[Any]) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": meta("gw"),
        "spec": {
            "gatewayClassName": "istio-remote",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            "addresses": items,
        },
    }


# the object, its plain items (a few values, so classes repeat), its odd items
_in_block = st.builds(lambda c, d: f"10.1.{c}.{d}", st.integers(0, 3), octets)
_OBJECT_LISTS: dict[str, tuple[Callable[[list[Any]], dict[str, Any]], Any, Any]] = {
    "Endpoints": (
        _endpoints,
        _items("ip", st.one_of(_in_block, addresses)),
        st.one_of(st.sampled_from(_ODD_OBJECTS), _items("ip", st.sampled_from(_ODD_FIELDS))),
    ),
    "EndpointSlice FQDN": (
        _endpoint_slice(fqdn=True),
        st.builds(lambda name: {"addresses": [name]}, st.one_of(dotted, names)),
        st.one_of(
            st.sampled_from(_ODD_OBJECTS),
            _items("addresses", st.sampled_from([*_ODD_FIELDS, [], ["a.example.com", "db"]])),
            st.builds(lambda name: {"addresses": [name]}, st.sampled_from(_ODD_ENTRIES)),
        ),
    ),
    "EndpointSlice IPv4": (
        _endpoint_slice(fqdn=False),
        st.builds(lambda ip: {"addresses": [ip]}, st.one_of(_in_block, addresses)),
        st.one_of(
            st.sampled_from(_ODD_OBJECTS),
            _items("addresses", st.sampled_from([*_ODD_FIELDS, [], ["10.1.2.3", "8.8.8.8"]])),
        ),
    ),
    "ServiceEntry endpoints": (
        _service_entry_endpoints,
        st.one_of(
            _items("address", st.one_of(_in_block, addresses, dotted)),
            st.builds(
                lambda a, port: {"address": a, "ports": {"tls": port}},
                _in_block,
                st.sampled_from([443, 8443]),
            ),
        ),
        st.one_of(
            st.sampled_from([*_ODD_OBJECTS, {"ports": {"tls": 9443}}, {"ports": 7}]),
            _items("address", st.sampled_from(_ODD_FIELDS)),
        ),
    ),
    "NetworkPolicy peers": (
        _network_policy,
        st.one_of(
            st.builds(lambda c: {"ipBlock": {"cidr": c}}, st.one_of(_in_block, addresses)),
            st.just({"podSelector": {}}),
        ),
        st.one_of(
            st.sampled_from([*_ODD_OBJECTS, {"ipBlock": 7}, {"ipBlock": {}}]),
            st.builds(lambda c: {"ipBlock": {"cidr": c}}, st.sampled_from(_ODD_FIELDS)),
            st.builds(
                lambda c: {"ipBlock": {"cidr": c}}, st.sampled_from([" 10.1.2.3", "8.8.8.8"])
            ),
        ),
    ),
    "Gateway API addresses": (
        _gateway_addresses,
        st.builds(lambda name: {"type": "Hostname", "value": name}, dotted),
        st.one_of(
            st.sampled_from(_ODD_OBJECTS),
            _items("value", st.sampled_from(_ODD_FIELDS)),
            st.builds(
                lambda name, kind: {"type": kind, "value": name},
                st.sampled_from(["gw.egress.svc", "GW.Egress", "egress-payments.egress.svc"]),
                st.sampled_from(["Hostname", "IPAddress", "NamedAddress"]),
            ),
        ),
    ),
}


@st.composite
def lists_with_odd_items(draw: st.DrawFn, plain: Any, odd: Any, most: int = 80) -> list[Any]:
    """A list of plain items with odd ones anywhere: none, one, a few, or more than the
    violation limit."""
    items: list[Any] = draw(st.lists(plain, min_size=1, max_size=most))
    many_odd = draw(st.sampled_from([0, 1, 3, 12, STOP_AFTER_VIOLATIONS + 5]))
    for _ in range(many_odd):
        at = draw(st.integers(0, len(items)))
        items.insert(at, draw(odd))
    return items


ITEM_RUNS = st.sampled_from([(2, 1), (4, 1), (8, 2), (16, 4), (64, 16), (4096, 32)])


@pytest.mark.parametrize("kind", list(_OBJECT_LISTS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), runs=ITEM_RUNS)
def test_object_lists_with_odd_items(kind: str, data: st.DataObject, runs: tuple[int, int]) -> None:
    # odd items anywhere among plain ones: the plain runs read in passes, the odd items alone,
    # the violations (their texts, paths, order and the stop) those of reading each item
    build, plain, odd = _OBJECT_LISTS[kind]
    items = data.draw(lists_with_odd_items(plain, odd))
    with item_runs_of(*runs):
        assert_same(build(items))


def _one_odd(count: int, at: int, odd: Any, plain: Callable[[int], Any]) -> list[Any]:
    items = [plain(i) for i in range(count)]
    items[at] = odd
    return items


_THOUSANDS: list[tuple[Callable[[list[Any]], dict[str, Any]], Callable[[int], Any]]] = [
    (_endpoints, lambda i: {"ip": f"10.1.{i // 256 % 256}.{i % 256}"}),
    (_endpoints, lambda i: {"ip": f"198.51.{i // 256 % 256}.{i % 256}"}),
    (_endpoint_slice(fqdn=True), lambda i: {"addresses": [f"e{i}.example.com"]}),
    (_endpoint_slice(fqdn=False), lambda i: {"addresses": [f"10.1.{i // 256 % 256}.{i % 256}"]}),
    (_service_entry_endpoints, lambda i: {"address": f"198.51.100.{i % 256}"}),
    (_network_policy, lambda i: {"ipBlock": {"cidr": f"10.{i // 256 % 256}.{i % 256}.0/24"}}),
    (_gateway_addresses, lambda i: {"type": "Hostname", "value": f"gw{i}.example.com"}),
]


@pytest.mark.parametrize(("build", "plain"), _THOUSANDS)
@pytest.mark.parametrize("at", [0, 2500, 4999])
@pytest.mark.parametrize("odd", [None, 7, {}, "x"])
def test_one_odd_item_among_thousands(
    build: Callable[[list[Any]], dict[str, Any]], plain: Callable[[int], Any], at: int, odd: Any
) -> None:
    assert_same(build(_one_odd(5000, at, odd, plain)))


@pytest.mark.parametrize(("build", "plain"), _THOUSANDS)
@pytest.mark.parametrize("every", [1, 2, 7, 61])
def test_odd_items_spread_thinly_and_everywhere(
    build: Callable[[list[Any]], dict[str, Any]], plain: Callable[[int], Any], every: int
) -> None:
    # more odd items than the violation limit, or one in every few
    items = [None if i % every == every - 1 else plain(i) for i in range(3000)]
    assert_same(build(items))


def test_read_in_runs_covers_every_item_once_in_order() -> None:
    items = [0, 1, None, 3, 4, 5, None, None, 8, 9, 10]

    def read(start: int, end: int) -> list[int] | None:
        piece = items[start:end]
        return None if None in piece else piece

    pieces = list(common.read_in_runs(len(items), read, run=4, alone=1))
    assert [(start, end) for start, end, _ in pieces] == [
        (0, 2),
        (2, 3),
        (3, 4),
        (4, 6),
        (6, 7),
        (7, 8),
        (8, 11),
    ]
    # half of the second run was left to read alone: the third is left whole, untried
    assert [found for _, _, found in pieces] == [[0, 1], None, [3], [4, 5], None, None, None]
    # one odd item: the rest read in passes, the next run tried again
    items[6:8] = [6, 7]
    sparse = list(common.read_in_runs(len(items), read, run=8, alone=1))
    assert sparse == [
        (0, 2, [0, 1]),
        (2, 3, None),
        (3, 4, [3]),
        (4, 8, [4, 5, 6, 7]),
        (8, 11, [8, 9, 10]),
    ]


def _parsed(text: str) -> int | None:
    try:
        return int(ipaddress.IPv6Address(text))
    except ValueError:
        return None


hextets = st.text(alphabet="0123456789abcdefABCDEF", max_size=5)


@settings(max_examples=3000, deadline=None)
@example(text="1:2:3:4:5:6:7::")
@example(text="::1:2:3:4:5:6:7:8")
@example(text="00001::")
@example(text="10.1.2.3/08")
@example(text="10.1.2.3/0")
@example(text="::/0")
@given(
    text=st.builds(
        lambda address, prefix: address + prefix,
        st.one_of(
            st.text(alphabet="0123456789abcdefABCDEF:", min_size=2, max_size=39),
            st.lists(hextets, min_size=1, max_size=10).map(":".join),
            st.lists(st.integers(0, 300).map(str), min_size=3, max_size=5).map(".".join),
            st.sampled_from(["01.2.3.4", "1.2.3.04", "0.0.0.0", "255.255.255.255"]),
        ),
        st.one_of(
            st.just(""),
            st.integers(0, 140).map(lambda n: f"/{n}"),
            st.sampled_from(["/", "/08", "/0032", "/ 8", "/+8", "/255.0.0.0", "/-1"]),
        ),
    )
)
def test_address_ranges_read_what_address_range_reads(text: str) -> None:
    """Address lists are keyed from inet_pton (C) and judged with ipaddress: on the texts the
    first reads (dotted quads, hex digits and colons, a decimal prefix length) both read the
    same range, and the first reads nothing the second refuses."""
    found = address_ranges([text])
    if found is not None:
        version, (first,), (last,) = found
        assert address_range(text) == (version, first, last)
    elif ":" in text and "/" not in text:
        # every IPv6 address of hex digits and colons is read
        assert address_range(text) is None


def test_address_ranges_read_plain_addresses_and_cidrs_of_one_version_only() -> None:
    assert address_ranges(["::1", "::ffff:10.0.0.1"]) is None
    assert address_ranges(["fe80::1%eth0"]) is None
    assert address_ranges(["::1", "10.0.0.1"]) is None
    assert address_ranges(["::1\n::2"]) is None
    assert address_ranges(["10.0.0.0/"]) is None
    assert address_ranges(["10.0.0.0/255.0.0.0"]) is None
    assert address_ranges(["2001:DB8::5", "2001:db8::/32"]) == (
        6,
        [0x20010DB8 << 96 | 5, 0x20010DB8 << 96],
        [0x20010DB8 << 96 | 5, (0x20010DB8 + 1 << 96) - 1],
    )
    assert address_ranges(["10.1.2.3/8", "10.0.0.1"]) == (
        4,
        [10 << 24, 10 << 24 | 1],
        [(11 << 24) - 1, 10 << 24 | 1],
    )


def test_v6_classes_part_at_range_bounds_and_cut_addresses() -> None:
    held = 0x20010DB8 << 96 | 0x1234
    classes = common.AddressClasses(POLICY, frozenset({(128, held)}))
    values = [
        "2001:db8::4",
        "2001:db8::5",
        "2001:db8::6",
        "2001:db8::1233",
        "2001:db8::1234",
        "2001:db8::1235",
        "2001:db8:1::1",
        "2001:db8:1:ffff::9",
        "2001:db8:2::",
        "fd00::1",
        "fdff:ffff::1",
    ]
    a, b, c, c2, d, e, f, f2, g, h, h2 = classes.keys(values)
    # range bounds (::5/128, the /48, fd00::/8) and the cut address part the classes
    assert len({a, b, c, d, e, f, g, h}) == 8
    assert (c, f, h) == (c2, f2, h2)
    assert None not in (a, b, c, d, e, f, g, h)


fan_out_entries = st.one_of(
    st.builds(lambda host: {"destination": {"host": host}}, plain_destination_hosts),
    st.builds(
        lambda host: {"destination": {"host": host}},
        st.builds(_address, st.sampled_from(ADDRESS_BLOCKS_V6), st.integers(0, 9)),
    ),
    st.builds(
        lambda host, subset: {"destination": {"host": host, "subset": subset}},
        plain_destination_hosts,
        st.sampled_from([None, "", "v1", "wide-0", 7, []]),
    ),
    st.sampled_from(
        [{}, {"destination": None}, {"destination": {"host": ""}}, {"weight": 5}, None, 3]
    ),
)


_FAN_OUT = [{"destination": {"host": f"10.1.0.{i}"}} for i in range(7)]


@FAST
@example(
    rules=[[*_FAN_OUT, {"destination": {"host": GATEWAY, "subset": []}}]] * 32,
    kind="tcp",
    gateways=None,
    export=["."],
)
@example(
    rules=[[*_FAN_OUT, {"destination": {"host": ""}}]] * 32,
    kind="tcp",
    gateways=None,
    export=["."],
)
@given(
    rules=st.lists(
        st.lists(fan_out_entries, min_size=6, max_size=12),
        min_size=common.CLASSES_FROM,
        max_size=common.CLASSES_FROM + 4,
    ),
    kind=st.sampled_from(["tcp", "tls", "http"]),
    gateways=st.sampled_from([None, ["mesh"], ["mesh", "tenant-gw"]]),
    export=st.sampled_from([["."], None]),
)
def test_virtual_service_rules_fanning_out_to_many_destinations(
    rules: list[list[Any]], kind: str, gateways: list[str] | None, export: Any
) -> None:
    """Rules of 6 to 12 route entries (read column by column from 8 on), some odd, in a list
    long enough to be read as columns."""
    spec: dict[str, Any] = {
        "hosts": ["api.payments.example", "reviews"],
        kind: [{"route": entries} for entries in rules],
    }
    assert_same_virtual_service(spec, gateways, export)


# --- IPv4 and IPv6 listed in turn ---------------------------------------------------------------


@FAST
@example(values=["10.1.2.3", "fd00::1", "10.1.2.0/24", "fd00::/64"])
@example(values=["10.1.2.3", "fd00:12345::1", "10.1.2.4"])
@example(values=["10.1.2.03", "fd00::1"])
@given(values=st.lists(addresses, min_size=1, max_size=30))
def test_values_bulk_keys_class_alike_are_judged_alike(values: list[str]) -> None:
    bulk = common.AddressClasses(POLICY).bulk_keys(values)
    if bulk is None:
        return
    verdicts: dict[str | None, bool] = {}
    for value, key in zip(values, bulk, strict=True):
        alone = judge(_network_policy([value]), POLICY).allowed
        assert verdicts.setdefault(key, alone) == alone, (key, value)
    peers = _network_policy(values)
    with classes_at_every_size():
        assert judge(peers, POLICY).allowed == all(verdicts.values())


def _families_in_turn(count: int, odd_at: set[int]) -> list[str]:
    """IPv4 /24s and IPv6 /64s in turn, all internal; an unparsable IPv6 CIDR at ``odd_at``."""
    return [
        f"fd00:{i:x}12345::/64"
        if i in odd_at
        else (f"10.{i >> 8 & 255}.{i & 255}.0/24" if i % 2 else f"fd00:{i:x}::/64")
        for i in range(count)
    ]


def _network_policy(cidrs: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta("np"),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": c}} for c in cidrs]}],
        },
    }


@pytest.mark.parametrize("odd_at", [set(), {1601}, {2, 3}, set(range(400, 2000, 2))])
def test_families_in_turn_with_odd_cidrs_deep_are_keyed_a_run_at_a_time(
    odd_at: set[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    cidrs = _families_in_turn(2000, odd_at)
    with item_runs_of(64, 4):
        assert_same(_network_policy(cidrs))
        parsed: list[str] = []
        own_key = common.AddressClasses.key

        def counted(self: common.AddressClasses, value: str) -> str | None:
            parsed.append(value)
            return own_key(self, value)

        monkeypatch.setattr(common.AddressClasses, "key", counted)
        decision = judge(_network_policy(cidrs), POLICY)
    assert decision.allowed == (not odd_at)
    # the runs without an odd value are keyed in passes over both families: no value is
    # parsed alone but near an odd one, and the judging stops at the violation limit
    # without keying the runs after it
    assert len(parsed) <= 64 * min(len(odd_at), 2) + 2 * STOP_AFTER_VIOLATIONS


# --- route backends ----------------------------------------------------------------------------

_backends = st.one_of(
    st.just({"name": "reviews", "port": 9080}),
    st.just({"name": "reviews", "kind": "Service", "group": "core"}),
    st.just({"name": "db.example.com", "kind": "ServiceEntry", "group": "networking.istio.io"}),
    st.just({"name": "pool", "kind": "InferencePool", "group": "inference.networking.k8s.io"}),
    st.sampled_from(["api.example.com", "evil.example.org", "10.1.2.3", "", "Bad Name"]).map(
        lambda name: {"name": name, "kind": "Hostname", "group": "networking.istio.io"}
    ),
    st.just({"name": "x", "kind": "Service", "group": "apps"}),
    st.just({"name": "x", "kind": ["Service"]}),
    st.just({"name": "x", "filters": [{"requestMirror": {"backendRef": {"name": "m"}}}]}),
    st.just({"name": "x", "filters": {}}),
    st.sampled_from([None, 7, "x"]),
)
_rules = st.one_of(
    st.lists(_backends, max_size=3).map(lambda refs: {"backendRefs": refs}),
    st.just({}),
    st.just({"backendRefs": None}),
    st.just({"backendRefs": {"name": "x"}}),
    st.just({"filters": [{"requestMirror": {"backendRef": {"name": "m", "kind": "Hostname"}}}]}),
    st.just({"filters": []}),
    st.sampled_from([None, 7]),
)


@FAST
@given(
    rules=st.lists(_rules, min_size=1, max_size=40), kind=st.sampled_from(["UDPRoute", "HTTPRoute"])
)
def test_route_backends(rules: list[Any], kind: str) -> None:
    assert_same(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": kind,
            "metadata": meta("rt"),
            "spec": {"parentRefs": [{"name": "gw"}], "rules": rules},
        }
    )


@pytest.mark.parametrize("count", [40, 5000])
def test_plain_route_backends_are_judged_alike_at_any_count(count: int) -> None:
    rules = [
        {
            "backendRefs": [
                {"name": f"svc-{i}", "port": 53},
                {"name": "evil.example.org", "kind": "Hostname", "group": "networking.istio.io"},
            ]
            if i % 97 == 5
            else [{"name": f"svc-{i}", "port": 53}]
        }
        for i in range(count)
    ]
    manifest = {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "UDPRoute",
        "metadata": meta("rt"),
        "spec": {"parentRefs": [{"name": "gw"}], "rules": rules},
    }
    assert gatewayapi._plain_backends(rules) is not None
    fast, slow = both(manifest)
    assert fast.violations == slow.violations
    assert fast.violations and fast.violations[0].field.startswith("spec.rules[5].backendRefs[1]")


@FAST
@example(value="a.egress")
@example(value=" A.EGRESS.SVC. ")
@example(value="\u3000a.egress\u3000")
@given(
    value=st.lists(
        st.sampled_from(
            ["a", "egress", "EGRESS", "svc", "x", ".", "..", " ", "\t", "\n", "\u3000"]
        ),
        max_size=8,
    ).map("".join)
)
def test_addresses_proven_clean_hold_no_host_of_the_namespace(value: str) -> None:
    # the proof may send a clean list to be read value by value, never pass a namespace host
    in_namespace = gatewayapi._in_namespace(normalize(value), "egress")
    proven = gatewayapi._nothing_to_report("egress", [{"value": value, "type": "Hostname"}])
    assert not (in_namespace and proven is not None)

"""Host names as Istio sees them, and a trie that answers "who covers this host" in O(labels).

Every decision in egress-guard comes down to comparing a host written by a tenant (in a
ServiceEntry, a Sidecar import, a VirtualService) with the hosts of the allow list.  The rules are
Istio's (``pkg/config/host/name.go``): ``*.foo.com`` covers ``a.foo.com`` and ``a.b.foo.com`` but
never the apex ``foo.com``, and a bare ``*`` covers everything.  Names are compared
case-insensitively and a trailing dot (absolute form) is ignored.

The index answers by suffix, so a lookup costs the number of labels in the queried host, whatever
the size of the allow list.
"""

from __future__ import annotations

import ipaddress
import operator
import re

# inet_pton only: a pure text-to-bytes function (no socket is opened), the one IPv6 parser in C
import socket
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import repeat
from operator import itemgetter
from typing import Any, Generic, TypeVar, cast

from webhook.core.errors import InvalidHostError

_IP_CHARS = re.compile(r"^[0-9a-fA-F:./]+$")
LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_LABEL_BODY = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
# one regex for the common, valid case; per-label diagnostics only when it fails.  A match is
# also already normalized (lower case, no surrounding space, no trailing dot)
VALID_NAME = re.compile(rf"^(?:\*\.)?{_LABEL_BODY}(?:\.{_LABEL_BODY})*$")
MAX_HOST_LENGTH = 253

T = TypeVar("T")


def normalize(host: str) -> str:
    """Lower-case a host and drop the trailing dot of the absolute form."""
    host = host.strip().lower()
    if host.endswith(".") and host != ".":
        host = host[:-1]
    return host


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def plain_ipv4(text: str) -> int | None:
    """A dotted-quad IPv4 address as an integer, or None for anything else.

    ``ipaddress`` costs about 10 µs per address, which a ServiceEntry with tens of thousands of
    endpoints pays for each; this accepts exactly the dotted quads ``ipaddress`` accepts
    (no leading zeros) and leaves every other form to it.
    """
    if _DOTTED_QUAD.fullmatch(text) is None:
        return None
    a, b, c, d = text.split(".")
    return int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)


@lru_cache(maxsize=4096)
def address_range(text: str) -> tuple[int, int, int] | None:
    """``(IP version, first, last address as integers)`` of an IP/CIDR; None if it is neither.

    Cached: one endpoint is looked up against the internal networks and every allowed service,
    and ``ipaddress`` parsing (not the comparison) is what an object with thousands of
    endpoints spends its time on.
    """
    plain = plain_ipv4(text)
    if plain is not None:
        return 4, plain, plain
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return net.version, int(net.network_address), int(net.broadcast_address)


# lines of hex digits and colons: IPv6 addresses that inet_pton and ipaddress read alike (no
# embedded IPv4, zone or prefix length; tests/unit/test_class_fast_paths.py holds it)
_HEX_COLON_LINES = re.compile(r"(?:[0-9a-fA-F:]{2,39}\n)*")
# lines of digits and dots: inet_pton reads as an IPv4 address exactly the dotted quads
# ipaddress reads (no leading zeros, octets to 255; the same test holds it)
_DOTTED_LINES = re.compile(r"(?:[0-9.]{7,15}\n)*")
# the same with a prefix length each
_CIDR_LINES = {
    6: re.compile(r"(?:[0-9a-fA-F:]{2,39}/[0-9]{1,3}\n)*"),
    4: re.compile(r"(?:[0-9.]{7,15}/[0-9]{1,3}\n)*"),
}
# prefix lengths as ipaddress reads them after a '/': decimal digits (leading zeros allowed)
_PREFIX_LINES = re.compile(r"(?:[0-9]{0,3}\n)*")
_FAMILIES = {4: socket.AF_INET, 6: socket.AF_INET6}
_WIDTH = {4: 32, 6: 128}
# by prefix length: the network mask, and the host bits
_NETMASKS = {v: [(1 << w) - (1 << (w - p)) for p in range(w + 1)] for v, w in _WIDTH.items()}
_HOSTMASKS = {v: [(1 << (w - p)) - 1 for p in range(w + 1)] for v, w in _WIDTH.items()}


# (IP version, first addresses, last addresses) of a list of addresses or CIDRs
AddressRanges = tuple[int, list[int], list[int]]


def address_ranges(values: Sequence[str]) -> AddressRanges | None:
    """``(IP version, first addresses, last addresses)`` of addresses or CIDRs (a decimal prefix
    length after ``/``) that are all IPv4 dotted quads or all IPv6 of hex digits and colons, as
    ``address_range`` reads each; None when a value is anything else.

    Read in passes of C (``inet_pton``, masks from tables): ``ipaddress`` costs about 10 µs per
    value, and a ServiceEntry or NetworkPolicy can list 100k of them.
    """
    if not values:
        return None
    version = 6 if ":" in values[0] else 4
    lines = _HEX_COLON_LINES if version == 6 else _DOTTED_LINES
    joined = "\n".join(values)
    # a value holding a newline would pass for two
    if joined.count("\n") != len(values) - 1:
        return None
    if "/" not in joined:
        # addresses alone, the common list: each its own first and last
        if lines.fullmatch(joined + "\n") is None:
            return None
        numbers = _numbers(version, values)
        return None if numbers is None else (version, numbers, numbers)
    if joined.count("/") == len(values):
        # a prefix length on each value (or a value with two: no CIDR), read whole; this also
        # turns away a list of the other version at its first value, not after splitting all
        if _CIDR_LINES[version].fullmatch(joined + "\n") is None:
            return None
        # CIDRs alone, each with a prefix length: split in one pass over the joined text
        pieces = joined.replace("/", "\n").split("\n")
        return _cidr_ranges(version, pieces[0::2], pieces[1::2])
    parts = list(map(str.partition, values, repeat("/")))
    addresses = list(map(itemgetter(0), parts))
    prefixes = list(map(itemgetter(2), parts))
    if not all_lines(lines, addresses) or not all_lines(_PREFIX_LINES, prefixes):
        return None
    width = _WIDTH[version]
    # "a/" is no CIDR; "a" is one of the full length
    slashed = list(map(itemgetter(1), parts))
    if any(map(operator.and_, map(bool, slashed), map(operator.not_, prefixes))):
        return None
    full = cast("list[str]", list(map({"": str(width)}.get, prefixes, prefixes)))
    return _cidr_ranges(version, addresses, full)


def _cidr_ranges(
    version: int, addresses: Sequence[str], prefixes: Sequence[str]
) -> tuple[int, list[int], list[int]] | None:
    """``address_ranges`` of checked address and prefix length texts."""
    width = _WIDTH[version]
    numbers = _numbers(version, addresses)
    if numbers is None:
        return None
    if len(set(prefixes)) == 1:
        # one prefix length, as a list of /64s mostly is: one mask for all
        length = int(prefixes[0])
        if length > width:
            return None
        firsts = list(map(operator.and_, numbers, repeat(_NETMASKS[version][length])))
        return version, firsts, list(map(operator.or_, firsts, repeat(_HOSTMASKS[version][length])))
    lengths = list(map(int, prefixes))
    if max(lengths) > width:
        return None
    firsts = list(map(operator.and_, numbers, map(_NETMASKS[version].__getitem__, lengths)))
    lasts = list(map(operator.or_, firsts, map(_HOSTMASKS[version].__getitem__, lengths)))
    return version, firsts, lasts


def _numbers(version: int, addresses: Sequence[str]) -> list[int] | None:
    try:
        # the family repeated rather than bound by partial: a third less per address
        packed = map(socket.inet_pton, repeat(_FAMILIES[version]), addresses)
        return list(map(int.from_bytes, packed))
    except OSError:
        return None


def all_lines(lines: re.Pattern[str], values: Sequence[str]) -> bool:
    """Whether every value, on a line of its own, matches ``lines``."""
    joined = "\n".join(values)
    # a value holding a newline would pass for two
    return joined.count("\n") == len(values) - 1 and lines.fullmatch(joined + "\n") is not None


def is_ip(host: str) -> bool:
    """True for an IPv4/IPv6 address or CIDR."""
    # most hosts are names: skip the exception-raising parse on the admission path
    return bool(_IP_CHARS.match(host)) and address_range(host) is not None


def is_wildcard(host: str) -> bool:
    """True for ``*`` and ``*.suffix`` forms."""
    return host == "*" or host.startswith("*.")


def wildcard_suffix(host: str) -> str:
    """``*.foo.com`` -> ``foo.com``; ``*`` -> ``""``."""
    return "" if host == "*" else host[2:]


def check_dns_name(host: str, *, allow_wildcard: bool = True, require_dot: bool = False) -> str:
    """Normalize and validate a DNS name (optionally ``*.``-prefixed); raise InvalidHostError."""
    name = normalize(host)
    if not name:
        raise InvalidHostError(host, "empty host")
    if name == "*":
        if not allow_wildcard:
            raise InvalidHostError(host, "a bare '*' is not allowed here")
        return name
    body = name
    if name.startswith("*."):
        if not allow_wildcard:
            raise InvalidHostError(host, "wildcards are not allowed here")
        body = name[2:]
    if len(name) <= MAX_HOST_LENGTH and VALID_NAME.match(name):
        if require_dot and "." not in body and not name.startswith("*."):
            raise InvalidHostError(host, "must be a fully qualified name (contain a dot)")
        return name
    if len(name) > MAX_HOST_LENGTH:
        raise InvalidHostError(host, f"longer than {MAX_HOST_LENGTH} characters")
    labels = body.split(".")
    for label in labels:
        if "*" in label:
            raise InvalidHostError(host, "'*' is only allowed as the whole left-most label")
        if not LABEL.match(label):
            raise InvalidHostError(host, f"invalid DNS label {label!r}")
    if require_dot and len(labels) < 2 and not name.startswith("*."):
        raise InvalidHostError(host, "must be a fully qualified name (contain a dot)")
    return name


def covers(pattern: str, host: str) -> bool:
    """Whether ``pattern`` covers ``host``, both normalized.

    A wildcard host is covered only by a pattern whose suffix it lies under: ``*.foo.com`` covers
    ``*.a.foo.com`` and ``*.foo.com``, but ``a.foo.com`` never covers ``*.foo.com``.
    """
    if pattern == "*":
        return True
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    suffix = pattern[1:]  # ".foo.com"
    if host.startswith("*."):
        return host[1:].endswith(suffix) or host[1:] == suffix
    return host.endswith(suffix) and len(host) > len(suffix)


def is_cluster_internal(host: str, cluster_domain: str) -> bool:
    """True for names served by the cluster's DNS zone (``*.svc.cluster.local`` and below).

    Both arguments are normalized.  Wildcards count as internal only when the whole wildcard
    lies inside the zone.
    """
    if host == "*":
        return False
    name = host[2:] if host.startswith("*.") else host
    return name == cluster_domain or (
        name.endswith(cluster_domain) and name[-len(cluster_domain) - 1] == "."
    )


def is_service_name(host: str, cluster_domain: str) -> bool:
    """True for names in the cluster's Service zone, ``svc.<domain>`` and below (normalized).

    Only Services and their endpoints resolve there.  The rest of the cluster domain is not
    internal: pod records (``a-b-c-d.<ns>.pod.<domain>``, and ``*.pod.<domain>``) resolve to
    whatever address the name spells, outside ones included.
    """
    return is_cluster_internal(host, f"svc.{cluster_domain}")


def expand_short_name(host: str, namespace: str, cluster_domain: str) -> str:
    """Expand a VirtualService/DestinationRule short name the way istiod does.

    A name without a dot becomes ``name.<namespace>.svc.<domain>``; names with any dot, wildcards
    and IPs are taken as they are (trap: ``reviews.other`` is *not* expanded).
    """
    if host == "*" or "." in host or host.startswith("*") or is_ip(host):
        return host
    return f"{host}.{namespace}.svc.{normalize(cluster_domain)}"


class HostTrie(Generic[T]):
    """Maps host patterns to values; lookups cost O(labels of the query).

    ``covering(host)`` answers the allow-list question (which patterns cover a host), and
    ``under(pattern)`` the Sidecar-import question (which registered hosts a pattern imports).

    It is a trie over reversed labels flattened into dictionaries keyed by suffix: walking the
    labels of a host is one dictionary probe per suffix, and flat dictionaries build several
    times faster than linked nodes (a 100k-host policy compiles in a fraction of the time).
    """

    __slots__ = (
        "_below",
        "_covers",
        "_everything",
        "_exact",
        "_frozen",
        "_star",
        "_star_set",
        "_wild",
        "_wild_depths",
        "_wild_least",
        "_wild_sets",
    )

    def __init__(self) -> None:
        self._exact: dict[str, list[T]] = {}
        # "*.foo.com" stored under "foo.com": covers every name strictly below it
        self._wild: dict[str, list[T]] = {}
        self._star: list[T] = []
        # the dot counts of the wildcards' suffixes, filled by freeze()
        self._wild_depths: frozenset[int] = frozenset()
        # the fewest dots of a wildcard's suffix: shorter suffixes are never probed
        self._wild_least = 0
        # suffix -> values of every pattern strictly below it, filled by freeze()
        self._below: dict[str, frozenset[T]] = {}
        self._everything: frozenset[T] = frozenset()
        # filled by freeze(): the answers of ``covering`` as ready sets, so a lookup that finds
        # one exact name and no wildcard builds nothing; equal sets are shared (a service's
        # hosts all map to one), and the lists they were built from are dropped
        self._covers: dict[str, frozenset[T]] = {}
        self._wild_sets: dict[str, frozenset[T]] = {}
        self._star_set: frozenset[T] = frozenset()
        self._frozen = False

    def add(self, pattern: str, value: T) -> None:
        """Register a normalized host pattern (``*``, ``*.suffix`` or an exact name)."""
        if self._frozen:
            raise RuntimeError("HostTrie is frozen")
        if pattern == "*":
            self._star.append(value)
        elif pattern.startswith("*."):
            self._wild.setdefault(pattern[2:], []).append(value)
        else:
            self._exact.setdefault(pattern, []).append(value)

    def freeze(self) -> HostTrie[T]:
        """Precompute, for every suffix, what lies below it, so ``under()`` is O(labels) too.

        Each pattern is filed once under its nearest suffix (an exact name under its parent,
        ``*.x`` under ``x``), then every suffix hands its set to its parent, deepest first: the
        work is one step per pattern plus one merge per distinct suffix, instead of one set
        update per pattern and ancestor.
        """
        below: dict[str, set[T]] = {}
        for name, values in self._exact.items():
            dot = name.find(".")
            if dot >= 0:
                parent = name[dot + 1 :]
                bucket = below.get(parent)
                if bucket is None:
                    below[parent] = set(values)
                else:
                    bucket.update(values)
        for name, values in self._wild.items():
            bucket = below.get(name)
            if bucket is None:
                below[name] = set(values)
            else:
                bucket.update(values)
        by_depth: dict[int, list[str]] = {}
        for suffix in below:
            by_depth.setdefault(suffix.count("."), []).append(suffix)
        for depth in range(max(by_depth, default=0), 0, -1):
            for suffix in by_depth.get(depth, ()):
                parent = suffix[suffix.find(".") + 1 :]
                bucket = below.get(parent)
                if bucket is None:
                    below[parent] = set(below[suffix])
                    by_depth.setdefault(depth - 1, []).append(parent)
                else:
                    bucket.update(below[suffix])
        self._below = {k: frozenset(v) for k, v in below.items()}
        everything: set[T] = set(self._star)
        for values in self._exact.values():
            everything.update(values)
        for values in self._wild.values():
            everything.update(values)
        self._everything = frozenset(everything)
        self._wild_depths = frozenset(name.count(".") for name in self._wild)
        self._wild_least = min(self._wild_depths, default=0)
        self._covers = _as_shared_sets(self._exact)
        self._exact = {}
        self._wild_sets = {name: frozenset(values) for name, values in self._wild.items()}
        self._star_set = frozenset(self._star)
        self._frozen = True
        return self

    def exact_names(self) -> Iterable[str]:
        """Every exact (non-wildcard) pattern."""
        return self._covers.keys() if self._frozen else self._exact.keys()

    def suffixes(self) -> Iterable[str]:
        """Every suffix a lookup answers differently from its parent: wildcard and import keys."""
        return (*self._wild, *self._below)

    def covering(self, host: str) -> frozenset[T]:
        """Values whose pattern covers ``host`` (exact or wildcard host, normalized).

        Only on a frozen trie (``build`` freezes): it reads the sets ``freeze`` precomputes, and
        most lookups (one exact name, or none, and no wildcard) return one of them as it is.
        """
        if not self._frozen:
            raise RuntimeError("HostTrie.covering needs a frozen trie")
        star = self._star_set
        if host == "*":
            return star
        if host[:2] == "*.":
            # "*.a.foo.com" is covered by "*.a.foo.com" and "*.foo.com", never by "a.foo.com"
            suffix = host[2:]
            found = star
        else:
            exact = self._covers.get(host)
            if exact is None:
                found = star
            elif star:
                found = exact | star
            else:
                found = exact
            dot = host.find(".")
            suffix = host[dot + 1 :] if dot >= 0 else ""
        wild, depths = self._wild_sets, self._wild_depths
        # only suffixes with as many dots as some wildcard's are probed: in a big policy most
        # probes would miss, each a cache miss in a dictionary of tens of thousands of keys;
        # and the walk ends below the shallowest wildcard (none: no walk)
        depth = suffix.count(".")
        least = self._wild_least if wild else len(suffix)
        while suffix and depth >= least:
            if depth in depths:
                values = wild.get(suffix)
                if values is not None:
                    found = found | values
            dot = suffix.find(".")
            suffix = suffix[dot + 1 :] if dot >= 0 else ""
            depth -= 1
        return found

    def under(self, pattern: str) -> frozenset[T]:
        """Values registered at hosts that ``pattern`` imports (Sidecar semantics).

        ``*`` imports everything; ``*.foo.com`` imports every host strictly below ``foo.com``
        (including ``*.foo.com`` and ``*.a.foo.com``); an exact name imports only itself.
        """
        if pattern == "*":
            return self._everything
        if pattern.startswith("*."):
            return self._below.get(pattern[2:], frozenset())
        return self._covers.get(pattern, frozenset())

    @classmethod
    def build(cls, items: Iterable[tuple[str, T]]) -> HostTrie[T]:
        """Build and freeze a trie from (pattern, value) pairs."""
        trie: HostTrie[T] = cls()
        exact, wild, star = trie._exact, trie._wild, trie._star
        # add() inlined: a policy compile files 100k patterns here
        for pattern, value in items:
            if pattern[:2] == "*.":
                table, key = wild, pattern[2:]
            elif pattern == "*":
                star.append(value)
                continue
            else:
                table, key = exact, pattern
            values = table.get(key)
            if values is None:
                table[key] = [value]
            else:
                values.append(value)
        return trie.freeze()


def _as_shared_sets(table: dict[str, list[T]]) -> dict[str, frozenset[T]]:
    """``table`` with every list turned into a set, in place (a 100k-name policy would hold a
    second dictionary and 100k sets at once); a name of one value, nearly every name, gets the
    one set of that value."""
    singles: dict[T, frozenset[T]] = {}
    sets = cast(dict[str, Any], table)
    for name, values in table.items():
        if len(values) == 1:
            value = values[0]
            found = singles.get(value)
            if found is None:
                found = singles[value] = frozenset(values)
            sets[name] = found
        else:
            sets[name] = frozenset(values)
    return cast(dict[str, frozenset[T]], sets)


_NAME_BYTES = b"abcdefghijklmnopqrstuvwxyz0123456789_-.*\n"
_NEWLINE_TO_DOT = bytes.maketrans(b"\n", b".")
_MAX_LABEL_LENGTH = 63
# label characters as 'a': a label too long shows as a run of 'a's
_LABEL_TO_A = bytes.maketrans(b"bcdefghijklmnopqrstuvwxyz0123456789_-", b"a" * 37)
# everything but the newline as 'a': a host too long shows as a run of 'a's
_HOST_TO_A = bytes.maketrans(bytes(range(10)) + bytes(range(11, 256)), b"a" * 255)


def all_valid_names(values: Sequence[object]) -> bool:
    """Whether every value is a host ``VALID_NAME`` accepts, at most ``MAX_HOST_LENGTH`` long.

    The same answer as matching each value (``tests/unit/test_hosts.py`` checks it on random
    strings), in a few passes of C over the values joined by newlines instead of one regex call
    per host: a Sidecar or ServiceEntry can list 100k hosts.  False only means "look at each".
    """
    # not checked per value: the join raises TypeError for a non-string
    strings = cast("Sequence[str]", values)
    try:
        joined = "\n".join(strings)
    except TypeError:
        return False
    return all_valid_joined(joined, len(strings))


def all_valid_joined(joined: str, count: int, longest: int = MAX_HOST_LENGTH) -> bool:
    """``all_valid_names`` of ``count`` strings already joined by newlines, none over ``longest``.

    Lengths are read from the text (runs of label characters, runs between newlines), so the
    caller needs no list of the names.
    """
    if not joined or not joined.isascii():
        return False
    data = joined.encode()
    if data.translate(None, _NAME_BYTES) or data.count(b"\n") != count - 1:
        return False
    if b"a" * (_MAX_LABEL_LENGTH + 1) in data.translate(_LABEL_TO_A):
        return False
    if len(data) > longest and b"a" * (longest + 1) in data.translate(_HOST_TO_A):
        return False
    # hosts joined by dots: an empty label, or one starting or ending with '-', shows as a pair
    flat = data.translate(_NEWLINE_TO_DOT)
    if flat[:1] in b".-" or flat[-1:] in b".-" or b".." in flat:
        return False
    # most lists hold no '-' at all: one scan instead of two searches for frequent pairs
    if b"-" in flat and (b".-" in flat or b"-." in flat):
        return False
    # '*' only as a whole left-most label: "*." at the start of a host
    stars = joined.count("*")
    return stars == 0 or stars == joined.count("\n*.") + joined.startswith("*.")

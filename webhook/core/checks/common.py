"""Reading and judging helpers shared by the Istio checks.

Kubernetes JSON arrives untyped, and a tenant may send anything that passes the CRD schema (or,
on an old API server, anything at all).  Every check needs the same defensive reads and the same
few judgements: who can see an object through ``exportTo``, whether two label selectors can pick
the same pod, whether a destination (host, IP, endpoint) is an allowed external service.  Keeping
them here gives one wording per problem and one place to fix a semantic mistake.
"""

from __future__ import annotations

import heapq
import random
import re
from bisect import bisect_right
from collections import deque
from collections.abc import (
    Callable,
    Collection,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Sized,
)
from dataclasses import dataclass, field
from functools import lru_cache, partial
from itertools import chain, compress, count, repeat
from operator import add, eq, itemgetter, not_, truth
from typing import Any, Generic, NamedTuple, TypeVar, cast, overload

from webhook.core.decisions import MAX_LISTED_VIOLATIONS, EnoughViolations, Violation
from webhook.core.errors import InvalidHostError
from webhook.core.external_services import Gateway
from webhook.core.hosts import (
    MAX_HOST_LENGTH,
    VALID_NAME,
    AddressRanges,
    address_range,
    address_ranges,
    all_lines,
    all_valid_joined,
    all_valid_names,
    check_dns_name,
    covers,
    expand_short_name,
    is_ip,
    is_wildcard,
    normalize,
    plain_ipv4,
)
from webhook.core.naming import gateway_subset
from webhook.core.policy import MANAGED_LABEL, KnownTree, Policy
from webhook.core.policy_parsing import is_overbroad

MESH = "mesh"
UNIX_PREFIX = "unix://"
DATAPLANE_MODE = "istio.io/dataplane-mode"


def ambient_mode(labels: Mapping[str, str]) -> str | None:
    """The ``istio.io/dataplane-mode`` label when it enrols workloads in ambient, else None.

    Only ``none`` (the opt-out) keeps them on sidecars; any other value counts as ambient, so a
    mode a newer Istio adds cannot slip past a namespace or pod check.
    """
    mode = labels.get(DATAPLANE_MODE)
    return mode if mode is not None and mode != "none" else None


def type_name(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return "null" if value is None else type(value).__name__


_Item = TypeVar("_Item")


class Pathed(Sequence[tuple[str, _Item]]):
    """``(path[i], item)`` for each item of a list, each path written only when read: a check
    that stops at the violation limit leaves the paths of the rest of a long list unwritten."""

    __slots__ = ("_items", "_path")

    def __init__(self, items: list[_Item], path: str) -> None:
        self._items = items
        self._path = path

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> tuple[str, _Item]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, _Item]]: ...

    def __getitem__(self, index: int | slice) -> tuple[str, _Item] | Sequence[tuple[str, _Item]]:
        if isinstance(index, slice):
            return list(self)[index]
        item = self._items[index]
        return f"{self._path}[{index % len(self._items)}]", item

    def __iter__(self) -> Iterator[tuple[str, _Item]]:
        paths = map("{}[{}]".format, repeat(self._path), range(len(self._items)))
        return zip(paths, self._items, strict=True)


def is_object(value: Any) -> bool:
    """Whether a decoded JSON value is an object."""
    # decoded JSON objects are dicts: the exact type test spares the ABC check
    return type(value) is dict or isinstance(value, Mapping)


@dataclass(slots=True)
class Reader:
    """Reads fields of an untyped object and records a violation for each wrong shape.

    Reads never raise: a wrong type yields an empty value plus a violation, so a check can carry
    on and report every problem of the object at once.
    """

    violations: list[Violation] = field(default_factory=list)
    # None: read everything (checks that compare old and new violations need them all)
    limit: int | None = None

    def add(self, path: str, message: str) -> None:
        """Record a violation at ``path``; raise EnoughViolations once ``limit`` are found."""
        self.violations.append(Violation(path, message))
        if self.limit is not None and len(self.violations) >= self.limit:
            raise EnoughViolations(self.violations)

    def spec(self, obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
        """The ``spec`` of an object (empty when absent)."""
        if obj is None:
            self.add("", "the request carries no object to check")
            return {}
        return self.mapping(obj.get("spec"), "spec")

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        """``value`` if it is an object; ``{}`` if absent or (with a violation) of another type."""
        # decoded JSON objects are dicts: the exact type test spares the ABC check
        if type(value) is dict or isinstance(value, Mapping):
            return value
        if value is None:
            return {}
        self.add(path, f"must be an object, got {type_name(value)}")
        return {}

    def sequence(self, value: Any, path: str) -> Sequence[Any]:
        """``value`` if it is a list; ``()`` if absent or (with a violation) of another type."""
        if value is None:
            return ()
        if isinstance(value, list | tuple):
            return value
        self.add(path, f"must be a list, got {type_name(value)}")
        return ()

    def mappings(self, value: Any, path: str) -> Sequence[tuple[str, Mapping[str, Any]]]:
        """``(path[i], item)`` for each object of a list, recording non-objects."""
        if value is None:
            return []
        if type(value) is list and many(value) and set(map(type, value)) == {dict}:
            # a long list of objects: each path written in C when it is read
            return Pathed(value, path)
        found: list[tuple[str, Mapping[str, Any]]] = []
        for i, item in enumerate(self.sequence(value, path)):
            where = f"{path}[{i}]"
            if is_object(item):
                found.append((where, item))
            else:
                self.add(where, f"must be an object, got {type_name(item)}")
        return found

    def non_objects(self, items: list[Any], path: str) -> None:
        """Record what ``mappings`` records for each item of a list that is no object, all
        before any object is read, as ``mappings`` does; found in passes of C."""
        if set(map(type, items)) == {dict}:
            return
        for index in compress(count(), map(not_, map(is_object, items))):
            self.add(f"{path}[{index}]", f"must be an object, got {type_name(items[index])}")

    def string(self, value: Any, path: str) -> str | None:
        """``value`` if it is a string; None if absent or (with a violation) of another type."""
        if value is None:
            return None
        if isinstance(value, str):
            return value
        self.add(path, f"must be a string, got {type_name(value)}")
        return None

    def strings(self, value: Any, path: str) -> Sequence[tuple[str, str]]:
        """``(path[i], item)`` for each string of a list, recording non-strings."""
        if value is None:
            return []
        if type(value) is list and many(value) and set(map(type, value)) == {str}:
            return Pathed(value, path)
        found: list[tuple[str, str]] = []
        for i, item in enumerate(self.sequence(value, path)):
            where = f"{path}[{i}]"
            if type(item) is str or isinstance(item, str):
                found.append((where, item))
            else:
                self.add(where, f"must be a string, got {type_name(item)}")
        return found

    def integer(self, value: Any, path: str) -> int | None:
        """``value`` if it is an integer; None if absent or (with a violation) of another type."""
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        self.add(path, f"must be an integer, got {type_name(value)}")
        return None

    def labels(self, value: Any, path: str) -> dict[str, str] | None:
        """A label map (string to string); None if absent or malformed (with a violation)."""
        if value is None:
            return None
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            self.add(path, "must be a map of label names to string values")
            return None
        return dict(value)

    def host(
        self,
        value: str,
        path: str,
        *,
        expand_in: str | None = None,
        cluster_domain: str = "cluster.local",
        allow_ip: bool = False,
    ) -> str | None:
        """A normalized host (short names expanded in ``expand_in``); None if invalid."""
        if (
            len(value) <= MAX_HOST_LENGTH
            and (expand_in is None or "." in value)
            and VALID_NAME.fullmatch(value)
        ):
            # already normalized, valid, and not a short name: objects can list 100k of these
            return value
        host = normalize(value)
        if allow_ip and is_ip(host):
            return host
        if expand_in is not None:
            host = expand_short_name(host, expand_in, cluster_domain)
        try:
            return check_dns_name(host)
        except InvalidHostError as exc:
            self.add(path, f"{value!r} is not a valid host: {exc.why}")
            return None


Judge = Callable[[Reader, int, str], None]

# below this many items a list is judged item by item: the class passes (keys built in C, one
# scratch judgement per class) cost more than they save on the few hosts of an everyday object
CLASSES_FROM = 32


def many(items: Sized) -> bool:
    """Whether a list is long enough for the per-class fast paths to pay."""
    return len(items) >= CLASSES_FROM


def judge_hosts(
    reader: Reader, policy: Policy, hosts: Sequence[str], judge: Judge, joined: str | None = None
) -> None:
    """``judge(reader, index, host)`` for each normalized exact or wildcard host, once per class.

    ``judge`` must decide from the host questions ``Policy.host_class`` promises alike within a
    class, reading the host's own text only for its messages: then a host whose class produced
    no violation would produce none either.  Objects list thousands of hosts under a few
    domains; each domain is judged once, and when all are clean the rest is passes of C.
    Thousands of hosts under as many domains (``h.p1.example.com``, ``h.p2.example.com``...)
    are classed by the nearest domain above them the policy knows (``nearest_known``).
    ``joined``: the hosts joined by newlines, when the caller has it.
    """
    if not many(hosts):
        for index, host in enumerate(hosts):
            judge(reader, index, host)
        return
    if len(hosts) > CLASSED_CHUNK:
        judge_in_chunks(
            reader,
            len(hosts),
            partial(_host_chunk, policy, hosts, judge),
            lambda reader, index: judge(reader, index, hosts[index]),
        )
        return
    if joined is None:
        joined = "\n".join(hosts)
    firsts = _counted_host_classes(policy, hosts, joined)
    if firsts is not None:
        # classes counted, none known: keys built chunk by chunk only if some host has to be
        # judged in order
        chunked = ChunkedKeys(hosts, lambda chunk: _exact_host_keys(policy, chunk))
        judge_classes(
            reader, chunked, lambda reader, index: judge(reader, index, hosts[index]), firsts
        )
        return
    keys = _exact_host_keys(policy, hosts, joined)
    if keys is not None:
        judge_classes(reader, keys, lambda reader, index: judge(reader, index, hosts[index]))
        return
    judge_keyed(reader, hosts, policy.host_class, judge)


def _host_chunk(
    policy: Policy, hosts: Sequence[str], judge: Judge, start: int, stop: int
) -> ChunkJudgement:
    """The classes of ``hosts[start:stop]`` as ``judge_hosts`` finds them for a whole list."""
    chunk = hosts[start:stop]
    joined = "\n".join(chunk)

    def aside(index: int) -> Aside:
        return lambda reader: judge(reader, start + index, chunk[index])

    firsts = _counted_host_classes(policy, chunk, joined)
    if firsts is not None:
        keys = ChunkedKeys(chunk, partial(_exact_host_keys, policy))
        return ChunkJudgement(keys, {key: aside(index) for key, index in firsts.items()})
    exact = _exact_host_keys(policy, chunk, joined)
    if exact is not None:
        found = first_indexes(exact)
        return ChunkJudgement(exact, {key: aside(index) for key, index in found.items()})
    # keyed by Policy.host_class as the ordered pass goes (None: alone), apart from the keys
    # above; a chunk breaking the policy stops at the violation limit without keying the rest
    classed = (None if key is None else (_HOST_CLASS, key) for key in map(policy.host_class, chunk))
    return ChunkJudgement(classed, {None: aside(0)})


# marks a key of Policy.host_class, which other chunks' keys never meet
_HOST_CLASS = "host_class"
# long lists are classed this many items at a time: an item that no class of the first
# items holds costs the classes of its own chunk, not of the whole list, and a list breaking
# the policy stops at the violation limit before the chunks after are classed (classing
# chunks of this size costs about what classing the whole list does)
CLASSED_CHUNK = 16384
# judges an item of a class on the reader it is given
Aside = Callable[["Reader"], None]


class ChunkJudgement(NamedTuple):
    """How ``judge_in_chunks`` judges one chunk of a list.

    ``keys``: the chunk's class keys in order (None: the item is judged alone).  ``asides``:
    each key mapped to a judgement of an item of its class (one of the chunk's, or one made
    up), given a reader; every key of the chunk is one of them, though not every one need be
    an item's (None among them: some item is judged alone).  ``narrowed``: given the keys
    found wrong, the keys and the chunk positions of the only items that can have them.
    """

    keys: Iterable[Hashable]
    asides: Mapping[Hashable, Aside]
    narrowed: Callable[[set[Hashable]], tuple[Iterable[Hashable], list[int]]] | None = None


def judge_in_chunks(
    reader: Reader,
    count: int,
    chunk: Callable[[int, int], ChunkJudgement],
    judge: Callable[[Reader, int], None],
) -> None:
    """``judge(reader, i)`` for each of ``count`` items, skipping those of a class found
    clean, the list classed ``CLASSED_CHUNK`` items at a time (``chunk(start, stop)``), in
    order.

    Each chunk's classes are judged aside, unless an earlier chunk's judged them; a chunk with
    a class found wrong, or with items judged alone, is then judged in order (its items that
    can be wrong, when it can tell), the clean classes skipped.  Violations keep the object's
    order, and a list breaking the policy stops at the violation limit without classing the
    chunks after.
    """
    clean: set[Hashable] = set()
    wrong: set[Hashable] = set()
    for start in range(0, count, CLASSED_CHUNK):
        found = chunk(start, min(count, start + CLASSED_CHUNK))
        for key, aside in found.asides.items():
            if key is None or key in clean or key in wrong:
                continue
            scratch = Reader()
            aside(scratch)
            (wrong if scratch.violations else clean).add(key)
        bad = wrong.intersection(found.asides)
        alone = None in found.asides
        if not bad and not alone:
            continue
        keys, at = found.keys, None
        if not alone and found.narrowed is not None:
            keys, at = found.narrowed(bad)
        judge_in_order(reader, keys, partial(_placed, judge, start, at), clean)


def _placed(
    judge: Callable[[Reader, int], None],
    start: int,
    at: list[int] | None,
    reader: Reader,
    index: int,
) -> None:
    """``judge`` of the item at ``index`` of a chunk starting at ``start``, or of the chunk's
    items at ``at``."""
    judge(reader, start + (index if at is None else at[index]))


def _counted_host_classes(
    policy: Policy, hosts: Sequence[str], joined: str
) -> dict[Hashable, int] | None:
    """The classes ``_exact_host_keys`` gives a list of exact names, each mapped to its first
    host, when they all show in the first hosts (``counted_classes``); None: key each host.

    ``joined``: the hosts joined by newlines."""
    count = len(hosts)
    if "*" in joined or joined.count("\n") != count - 1:
        return None
    found = counted_classes(policy, hosts[:CLASS_SAMPLE], joined, count)
    return None if found is None else cast("dict[Hashable, int]", found)


# a list's classes are read from this many first names when every class shows there
CLASS_SAMPLE = 256
# keys are built this many items at a time while the items are judged in order
KEYS_CHUNK = 4096
# a chunk of at most this many items that cannot be keyed is judged item by item
KEYS_ALONE = 32
# classes, namespace parts and known domains each searched for in a pass over a text
COUNTED_AT_MOST = 16


# a run more than 1/_DENSE_SHARE of which was left to read item by item has odd items
# everywhere: the next run is left whole straight away, sparing the halvings' passes
_DENSE_SHARE = 4

_Read = TypeVar("_Read")


def read_in_runs(
    count: int, read: Callable[[int, int], _Read | None], *, run: int, alone: int
) -> Iterator[tuple[int, int, _Read | None]]:
    """The pieces of a list of ``count`` items, in order: ``(start, end, found)`` for each
    piece ``read(start, end)`` could read in passes of C (``found``, its answer), and
    ``(start, end, None)`` for each piece of items to read one by one.

    The list is tried ``run`` items at a time, and a run that fails is halved down to pieces
    of at most ``alone`` items: one odd item among thousands (a null, a number, a missing
    field) costs a few passes over its run and a few items read alone, not the whole list.
    A run mostly left to read alone has odd items everywhere: the next one is left whole.
    Lazy: a caller that stops early (the violation limit) reads no further run.
    """
    dense = False
    for start in range(0, count, run):
        end = min(start + run, count)
        if dense:
            # and the next run tried in passes again
            dense = False
            yield start, end, None
            continue
        left = 0
        for piece in _halved(start, end, read, alone):
            if piece[2] is None:
                left += piece[1] - piece[0]
            yield piece
        dense = left * _DENSE_SHARE > end - start


def _halved(
    start: int, end: int, read: Callable[[int, int], _Read | None], alone: int
) -> Iterator[tuple[int, int, _Read | None]]:
    """``read_in_runs`` of one run."""
    found = read(start, end)
    if found is not None or end - start <= alone:
        yield start, end, found
        return
    middle = (start + end) // 2
    yield from _halved(start, middle, read, alone)
    yield from _halved(middle, end, read, alone)


class ChunkedKeys(Collection[Hashable]):
    """The class keys of a list, built chunk by chunk as they are read: a list whose classes
    are all clean never has its per-entry keys built at all.

    ``keys_of`` gives a chunk's keys, the same for an item whichever chunk holds it; None (it
    cannot class them: an odd item among them) splits the chunk in halves (``read_in_runs``),
    down to a few items judged alone, so an odd item deep in a long list costs a few items'
    judgements and no item is skipped unjudged."""

    __slots__ = ("_items", "_keys_of")

    def __init__(
        self,
        items: Sequence[Any],
        keys_of: Callable[[Sequence[Any]], Iterable[Hashable] | None],
    ) -> None:
        self._items = items
        self._keys_of = keys_of

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def spans_chunks(count: int) -> bool:
        """Whether a list of ``count`` items is keyed in more than one chunk."""
        return count > KEYS_CHUNK

    def __iter__(self) -> Iterator[Hashable]:
        return chain.from_iterable(self.chunks())

    def chunks(self) -> Iterator[list[Hashable]]:
        """The keys, a piece of the list at a time (None for each item judged alone)."""
        items, keys_of = self._items, self._keys_of
        pieces = read_in_runs(
            len(items),
            lambda start, end: keys_of(items[start:end]),
            run=KEYS_CHUNK,
            alone=KEYS_ALONE,
        )
        for start, end, keys in pieces:
            yield [None] * (end - start) if keys is None else list(keys)

    def __contains__(self, key: object) -> bool:
        return any(k == key for k in self)


def counted_classes(
    policy: Policy, sampled: Sequence[str], joined_names: str, count: int
) -> dict[str, int] | None:
    """Each class (``nearest_known`` of the parent) of the names ``sampled`` from the start of
    a list mapped to the index of its first one, when counting shows every one of the
    ``count`` names of ``joined_names`` (the list's valid names, joined by newlines) is in one
    of them: then those are the list's classes, and those indexes their first names.

    A name is in the class of a known domain when it ends with it, and neither is nor ends
    with any known domain below it; a class may lie right below another (``example.com``
    below ``com``), whose names then exclude its own.  The root class ("", no known domain
    above the name) is what is left: a dotted name whose top-level label the policy does not
    know.
    """
    parents = [name.partition(".")[2] for name in sampled]
    if "" in parents:
        return None
    classes: dict[str, int] = {}
    for index, domain in enumerate(nearest_known(policy, parents)):
        classes.setdefault(domain, index)
    known = {domain for domain in classes if domain}
    if len(classes) > COUNTED_AT_MOST:
        return None
    # known is closed under the parent: a name at or under a known domain below a class is at
    # or under one right below it, which is a class itself (nested) or holds no name (so a
    # class further down, with a known domain in between, holds none either)
    below = [k for k in policy.known_domains if k.partition(".")[2] in known]
    nested = [k for k in below if k in known]
    # every name between newlines: "\nk\n" finds a name that is k, ".k\n" one ending with ".k"
    # (no match of either starts at the first newline or ends at a name's own end)
    text = "\n" + joined_names + "\n"
    if len(below) > COUNTED_AT_MOST or any(
        f"\n{k}\n" in text or (k not in known and f".{k}\n" in text) for k in below
    ):
        # a name the policy knows, or one under a known domain that is no class
        return None
    # a name under a nested class ends with its parent class too, and is counted once, in
    # the nested one
    counted = sum(text.count(f".{domain}\n") for domain in known)
    counted -= sum(text.count(f".{domain}\n") for domain in nested)
    if "" not in classes:
        return classes if counted == count else None
    # the known top-level labels: the root's children in the tree of known domains
    tops = list(policy.known_tree)
    # (a name that is a known top-level label itself goes uncounted here, but it is no dotted
    # name, which the last test refuses)
    if len(tops) > COUNTED_AT_MOST or counted != sum(text.count(f".{top}\n") for top in tops):
        return None
    # the rest are under top-level labels the policy does not know, and dotted
    return classes if all_dotted(text[1:]) else None


def classes_of_unknown_names(
    policy: Policy, names: list[str], joined: str | None = None
) -> list[str] | None:
    """``nearest_known`` of each name's parent, for dotted names none of which the policy
    knows (the caller has checked); None when a name has no dot.  ``joined``: the names
    joined by newlines, when the caller has it."""
    return cast("list[str] | None", _parent_classes(policy, names, joined))


def _parent_classes(
    policy: Policy, names: Sequence[str], joined: str | None = None
) -> list[str | None] | None:
    """For each name, the nearest domain above it the policy knows, or None for a name the
    policy knows itself (judged alone); None when a name has no dot.  ``joined``: the names
    joined by newlines, when the caller has it.

    Names whose parents do not repeat much are walked down from the top without building
    their parents: the walk stops at the first label the policy does not know, so on a name
    the policy does not know it stops above the name.
    """
    known = policy.known_domains
    if _shrinks_a_level_up(names):
        parents = list(map(itemgetter(2), map(str.partition, names, repeat("."))))
        if "" in parents:
            return None
        keys: list[str | None] = list(nearest_known(policy, parents))
        # known is closed under the parent: a known name has a known parent
        if known.isdisjoint(parents) or known.isdisjoint(names):
            return keys
        return [None if name in known else key for name, key in zip(names, keys, strict=True)]
    text = ("\n".join(names) if joined is None else joined) + "\n"
    if not all_dotted(text):
        return None
    keys = list(_walked_down(policy.known_tree, list(names), text))
    if any(map(eq, keys, names)):
        return [None if key == name else key for key, name in zip(keys, names, strict=True)]
    return keys


# every byte but the dot and the newline
_NOT_DOT_OR_NEWLINE = bytes(b for b in range(256) if b not in b".\n")


def all_dotted(text: str) -> bool:
    """Whether every line of ``text`` (names, each followed by a newline) holds a dot: with
    all else deleted, a line without one shows as a newline after a newline, or first."""
    marks = text.encode("utf-8", "surrogatepass").translate(None, _NOT_DOT_OR_NEWLINE)
    return not marks.startswith(b"\n") and b"\n\n" not in marks


# marks a name's own text as its key: no domain, and no class of Policy.host_class, starts
# with it
OWN_TEXT = "="


def exact_host_keys(policy: Policy, names: Sequence[str], joined: str) -> list[str] | None:
    """``judge_hosts``'s class keys of valid, normalized names (``all_valid_joined`` of
    ``joined``, the names joined by newlines); None: class them one by one.  A chunk's keys
    for ``ChunkedKeys``: the same for a name whichever chunk holds it."""
    return _exact_host_keys(policy, names, joined)


def _exact_host_keys(
    policy: Policy, hosts: Sequence[str], joined: str | None = None
) -> list[str] | None:
    """Class keys of a list of exact (not wildcard) dotted names; None: class them one by one.

    A name the policy knows (``Policy.known_domains``) is a class of its own: its answers can
    differ from any other name's, but the same name listed again gets the same ones, so its
    key is its own text, marked.  ``joined``: the hosts joined by newlines, when the caller
    has it.
    """
    joined = "\n".join(hosts) if joined is None else joined
    if not hosts or "*" in joined:
        return None
    parent = _one_parent(hosts, joined)
    if parent is None:
        found = _parent_classes(policy, hosts, joined)
        if found is None or None not in found:
            return cast("list[str] | None", found)
        return [
            OWN_TEXT + host if key is None else key for host, key in zip(hosts, found, strict=True)
        ]
    known = policy.known_domains
    key = nearest_known(policy, [parent])[0]
    if parent not in known or known.isdisjoint(hosts):
        return [key] * len(hosts)
    return [OWN_TEXT + host if host in known else key for host in hosts]


def nearest_known(policy: Policy, domains: list[str]) -> list[str]:
    """For each of ``domains``, the nearest of itself and the domains above it that the policy
    knows (``Policy.known_domains``); "" when there is none.

    Two names whose parents map to the same domain get the same answer to every host question
    (``Policy.host_class`` lists them), unless a name is itself known: the policy knows nothing
    at or below the domains in between, so covering wildcards, imports, the Service zone and
    the gateways are all decided at that domain or above it.

    In passes of C, a level at a time from the bottom while that shrinks the list (thousands
    of ``p1.example.com``, ``p2.example.com``... are one ``example.com`` a level up), and
    otherwise from the top-level label down the policy's tree of known domains, which stops
    each name at its first unknown label: names kept distinct by a label near the top
    (``h.a.b.c.p1.com``, ``h.a.b.c.p2.com``...) would stay distinct for as many levels as
    they have labels from the bottom, but take two steps from the top.
    """
    known = policy.known_domains
    # none known (the usual case for thousands of names): one pass, no list of answers
    none = known.isdisjoint(domains)
    hits = [] if none else list(map(known.__contains__, domains))
    if not domains or (not none and all(hits)):
        return domains
    if not _shrinks_a_level_up(domains):
        return _walked_down(policy.known_tree, domains)
    ups = list(map(itemgetter(2), map(str.partition, domains, repeat("."))))
    distinct = list(dict.fromkeys(ups))
    nearer = nearest_known(policy, distinct)
    if nearer is distinct and none:
        # every domain a level up is known: no lookup to map them
        return ups
    above = dict(zip(distinct, nearer, strict=True))
    answers = list(map(above.__getitem__, ups))
    if not none:
        # a known domain is its own answer
        deque(
            map(answers.__setitem__, compress(range(len(domains)), hits), compress(domains, hits)),
            maxlen=0,
        )
    return answers


# names sampled to guess whether a list of names shrinks a level up
_SAMPLED = 64


def _shrinks_a_level_up(domains: Sequence[str]) -> bool:
    """Whether the parents of ``domains`` look like at most a quarter as many distinct names:
    then answering the parents costs less than walking the names down from the top.

    Guessed from a random sample: the order of the names is the tenant's, so a fixed sample
    could be made to mislead at every level.  Either answer gives the same result; a wrong
    one only costs a level's passes.
    """
    sample = list(domains) if len(domains) <= _SAMPLED else random.sample(domains, _SAMPLED)
    return len({domain.partition(".")[2] for domain in sample}) * 4 <= len(sample)


def _walked_down(tree: KnownTree, domains: list[str], text: str = "") -> list[str]:
    """``nearest_known`` of each of ``domains``, walked down ``tree`` (``Policy.known_tree``)
    from its top-level label; a name stops at its first label the tree does not hold, at a
    domain without known children, or when it has no label left.

    While every name is at the same domain and ends with the same label, a step is a few
    passes over their text; otherwise each name's next label is looked up under the domain
    it has reached.
    """
    answers = [""] * len(domains)
    domain, children, rests = "", tree, domains
    # every name joined by newlines, each followed by one
    text = text or "\n".join(domains) + "\n"
    # names holding a newline would be split by a search of the text
    searchable = text.count("\n") == len(domains)
    rests_text = text
    while searchable and children:
        shared = _shared_step(rests, rests_text)
        rests_text = ""
        if shared is None:
            break
        label, rests = shared
        node = children.get(label)
        if node is None:
            # every name's next label is one the policy does not know here
            return [domain] * len(domains)
        domain, children = node
    if not children:
        return [domain] * len(domains)
    if searchable:
        resolved = _resolved_by_label(text, domain, children, rests)
        if resolved is not None:
            return resolved
    where: Sequence[int] = range(len(domains))
    reached: list[tuple[str, KnownTree]] = [(domain, children)] * len(domains)
    # labels walked that are still at the end of rests: cut only when a lookup needs them
    behind = 0
    while True:
        nodes = None
        if behind and searchable:
            nodes = _shared_labels(text, domains, where, reached)
        if nodes is None:
            for _ in range(behind):
                rests = list(map(itemgetter(0), map(str.rpartition, rests, repeat("."))))
            behind = 0
            labels = map(itemgetter(2), map(str.rpartition, rests, repeat(".")))
            nodes = list(map(dict.get, map(itemgetter(1), reached), labels))
        behind += 1
        if not any(nodes):
            # the usual last step: every name stops here
            _fill(answers, where, map(itemgetter(0), reached))
            return answers
        if all(nodes):
            reached = cast("list[tuple[str, KnownTree]]", nodes)
        else:
            found = list(map(truth, nodes))
            stopped = list(map(not_, found))
            _fill(answers, compress(where, stopped), compress(map(itemgetter(0), reached), stopped))
            reached = list(filter(None, nodes))
            where = list(compress(where, found))
            rests = list(compress(rests, found))
        # at a domain without known children a name stops: no label to look up
        leaves = list(map(not_, map(itemgetter(1), reached)))
        if any(leaves):
            _fill(answers, compress(where, leaves), compress(map(itemgetter(0), reached), leaves))
            going = list(map(not_, leaves))
            if not any(going):
                return answers
            reached = list(compress(reached, going))
            where = list(compress(where, going))
            rests = list(compress(rests, going))


# at most this many labels, children or domains reached are searched for in the names' text
# in one step of a walk; with more, the walk looks each name up instead
_SHARED_AT_MOST = 8


def _resolved_by_label(
    text: str, domain: str, children: KnownTree, rests: list[str]
) -> list[str] | None:
    """``_walked_down``'s answers when the names at ``domain`` (``rests`` left of it) come under
    a few labels each of which settles their answer within a step; else None.

    Names under a label the domain's children lack stop at the domain, those under a child
    without children at the child; under any other child, when every such name has the same
    label next and that label leads nowhere or to a domain without children, that is their
    answer.  The labels come from a random sample and are proven by counting lines of
    ``text`` (every name joined by newlines): one label per name is read only once every
    answer is known, instead of a step of lookups per name and level.
    """
    sample = rests if len(rests) <= _SAMPLED else random.sample(rests, _SAMPLED)
    firsts = {name.rpartition(".")[2]: name for name in sample}
    if len(firsts) > _SHARED_AT_MOST:
        return None
    suffix = f".{domain}" if domain else ""
    lines = ""
    answers = {}
    total = 0
    ats = 0
    for label, name in firsts.items():
        # the names whose next label this is: those with more labels, and the one without
        under = text.count(f".{label}{suffix}\n")
        lines = lines or "\n" + text
        at = lines.count(f"\n{label}{suffix}\n")
        total += under + at
        ats += at
        node = children.get(label)
        if node is None or not node[1]:
            answers[label] = domain if node is None else node[0]
            continue
        after = name.rpartition(".")[0].rpartition(".")[2]
        if not after or text.count(f".{after}.{label}{suffix}\n") != under:
            if _may_be_under(lines, f"{label}{suffix}", node[1]):
                return None
            # none of these names is or is under a known child: they stop at this child
            answers[label] = node[0]
            continue
        if at:
            # a name that is the child itself answers the child, the others maybe not
            return None
        child, grandchildren = node
        below = grandchildren.get(after)
        if below is not None and below[1]:
            return None
        answers[label] = child if below is None else below[0]
    if total != len(rests):
        return None
    return _answered_by_label(rests, answers, at_labels=ats)


def _answered_by_label(rests: list[str], answers: dict[str, str], *, at_labels: int) -> list[str]:
    """The answer of each of ``rests`` by its last label, every one a key of ``answers``.

    When no rest is a bare label, each ends with "." and one of the labels, so the shortest
    such ending's length of last characters tells the labels apart, if it does at all: a
    slice per name instead of a split.
    """
    if not at_labels:
        width = min(map(len, answers)) + 1
        by_end = {f".{label}"[-width:]: answer for label, answer in answers.items()}
        if len(by_end) == len(answers):
            return list(map(by_end.__getitem__, map(itemgetter(slice(-width, None)), rests)))
    labels = map(itemgetter(2), map(str.rpartition, rests, repeat(".")))
    return list(map(answers.__getitem__, labels))


def _may_be_under(lines: str, domain: str, children: KnownTree) -> bool:
    """Whether a line of ``lines`` may be, or end with, one of ``children`` of ``domain``:
    searched for each child, and assumed when they are too many to search for."""
    if len(children) > _SHARED_AT_MOST:
        return True
    return any(
        f".{label}.{domain}\n" in lines or f"\n{label}.{domain}\n" in lines for label in children
    )


def _shared_labels(
    text: str, domains: list[str], where: Sequence[int], reached: list[tuple[str, KnownTree]]
) -> list[tuple[str, KnownTree] | None] | None:
    """The next step of ``_walked_down`` when, at each domain reached, every name has the
    same next label: the node each name reaches (None: it stops there); else None.

    ``text`` is every name of ``domains`` joined by newlines, ``where`` the names still
    walked.  A name at a domain ends with it, so the lines ending with the first such name's
    next label and the domain are the names at that domain with that label; the counts add
    up to the names left only if every name has its domain's label.  A search per domain
    instead of a lookup per name.
    """
    # a known domain is one node of the tree: the domains tell the nodes apart
    at = list(map(itemgetter(0), reached))
    firsts = first_indexes(at)
    if len(firsts) > _SHARED_AT_MOST:
        return None
    steps = {}
    total = 0
    for domain, index in firsts.items():
        label = domains[where[index]].removesuffix(f".{domain}").rpartition(".")[2]
        total += text.count(f".{label}.{domain}\n")
        steps[domain] = reached[index][1].get(label)
    if total != len(reached):
        return None
    return list(map(steps.__getitem__, at))


def _shared_step(names: list[str], text: str = "") -> tuple[str, list[str]] | None:
    """The last label of ``names`` and the names without it, when every name has at least two
    labels and all share the last one; found in passes over the names' text (``text``, if
    given: the names joined by newlines, each followed by one).  No name holds a newline."""
    label = names[0].rpartition(".")[2]
    ending = f".{label}\n"
    text = text or "\n".join(names) + "\n"
    if text.count(ending) != len(names):
        return None
    return label, text[: -len(ending)].replace(ending, "\n").split("\n")


def _fill(answers: list[str], where: Iterable[int], domains: Iterable[str]) -> None:
    """``answers[i] = domain`` for each ``i`` of ``where`` and the next of ``domains``."""
    deque(map(answers.__setitem__, where, domains), maxlen=0)


_DIGITS = frozenset("0123456789")


def name_classes(policy: Policy, names: Sequence[object]) -> list[str] | None:
    """``Policy.host_class`` of each of a list of names, built in C; None: look at each.

    Only when every name is a valid, dotted, exact name the policy does not list by itself and
    none ends in a digit (so none reads as an IPv4 address): the class is then the parent
    domain.  An object can name 17k hosts, one per element.
    """
    if not all_valid_names(names):
        return None
    hosts = cast("Sequence[str]", names)
    if "*" in "".join(hosts) or not policy.own_names.isdisjoint(hosts):
        return None
    if not _DIGITS.isdisjoint("".join(map(itemgetter(-1), hosts))):
        return None
    parents = list(map(itemgetter(2), map(str.partition, hosts, repeat("."))))
    # a name without a dot is its own class
    return None if "" in parents else parents


def _one_parent(hosts: Sequence[str], joined: str) -> str | None:
    """The parent domain of every host when each is one label under the first one's parent.

    Counted over ``joined`` (the hosts joined by newlines) instead of splitting each host.
    """
    parent = hosts[0].partition(".")[2]
    count = len(hosts)
    if (
        not parent
        or joined.count("\n") != count - 1
        or (joined + "\n").count(f".{parent}\n") != count
        or joined.count(".") != count * (parent.count(".") + 1)
    ):
        return None
    return parent


_Key = TypeVar("_Key", bound=Hashable)
# at most this many classes are found by searching the keys for each
_SEARCHED_CLASSES = 64


def first_indexes(keys: Sequence[_Key]) -> dict[_Key, int]:
    """Each distinct key mapped to the index of one of its items, in the order the keys first
    appear.  Thousands of keys are usually a few classes: then one pass collects them and a
    search per class finds its first item, instead of a dictionary entry written per item."""
    distinct = dict.fromkeys(keys)
    if len(distinct) > _SEARCHED_CLASSES:
        return dict(zip(keys, range(len(keys)), strict=True))
    firsts = {}
    start = 0
    for key in distinct:
        # classes come in the order they first appear: each search starts at the last find,
        # so all of them read the list once
        start = keys.index(key, start)
        firsts[key] = start
    return firsts


def judge_classes(
    reader: Reader,
    keys: Collection[Hashable],
    judge: Callable[[Reader, int], None],
    firsts: Mapping[Hashable, int] | None = None,
) -> None:
    """``judge(reader, i)`` for each item ``i``, skipping items of a class found clean.

    ``keys`` yields the class of each item in order (None: it is judged alone); ``judge`` must
    give every item of a class the same verdict, violation or none.  One item per class is
    judged first on a scratch reader; when all are clean nothing else runs, otherwise the items
    are judged in order (violations keep the object's order), the clean classes skipped.
    ``firsts``, every class (None included) mapped to one of its items in the order the
    classes first appear, spares reading every key when the caller knows them otherwise.
    ``ChunkedKeys`` without ``firsts`` are judged in order straight away, keyed as the pass
    goes: a list breaking the policy stops at the violation limit without keying the rest.
    """
    if not many(keys):
        for index in range(len(keys)):
            judge(reader, index)
        return
    if firsts is None and isinstance(keys, ChunkedKeys):
        judge_in_order(reader, keys, judge, set())
        return
    if firsts is None:
        firsts = first_indexes(keys if isinstance(keys, list) else list(keys))
    alone = None in firsts
    clean = set()
    for key, index in firsts.items():
        if key is None:
            continue
        scratch = Reader()
        judge(scratch, index)
        if scratch.violations:
            # a violation to report: the ordered pass below, which stops at the reader's limit
            break
        clean.add(key)
    if not alone and len(clean) == len(firsts):
        return
    judge_in_order(reader, keys, judge, clean)


def judge_in_order(
    reader: Reader,
    keys: Iterable[Hashable],
    judge: Callable[[Reader, int], None],
    clean: set[Hashable],
) -> None:
    """``judge(reader, i)`` for each item in order but those of a class in ``clean``, which
    grows with each class found clean (None: the item is judged alone, never skipped)."""
    if not isinstance(keys, ChunkedKeys):
        _judge_run(reader, keys, judge, clean, 0)
        return
    start = 0
    for chunk in keys.chunks():
        # once its classes are found clean, a chunk is passed over in C
        if not clean.issuperset(chunk):
            _judge_run(reader, chunk, judge, clean, start)
        start += len(chunk)


def _judge_run(
    reader: Reader,
    keys: Iterable[Hashable],
    judge: Callable[[Reader, int], None],
    clean: set[Hashable],
    start: int,
) -> None:
    """``judge_in_order`` of a run of items, the first at ``start``."""
    violations = reader.violations
    for index, key in enumerate(keys, start):
        if key in clean:
            continue
        before = len(violations)
        judge(reader, index)
        if key is not None and len(violations) == before:
            clean.add(key)


def stop_on_breaking_start(
    reader: Reader, judge: Callable[[Reader, int], None], count: int
) -> None:
    """Raise ``EnoughViolations`` when the first of ``count`` items, judged in order while each
    breaks the policy, reach the reader's violation limit, with their violations recorded.

    A list breaking the policy from its start is answered by its first items, as judging each
    in order would answer it; the passes of C that class the whole list would cost more than
    that.  The first clean item ends the trial: its violations are dropped, and the caller
    judges the list from the start.
    """
    if reader.limit is None:
        return
    trial = Reader(limit=reader.limit - len(reader.violations))
    try:
        for index in range(count):
            before = len(trial.violations)
            judge(trial, index)
            if len(trial.violations) == before:
                return
    except EnoughViolations:
        for violation in trial.violations:
            # the last one raises
            reader.add(violation.field, violation.message)


_OCTETS = frozenset(str(i) for i in range(256))
# the class keys of ``AddressClasses.interval_keys``, by IP version
_INTERVAL_KEYS = {4: "4/{}/{}".format, 6: "6/{}/{}".format}


def judge_addresses(
    reader: Reader,
    policy: Policy,
    values: Sequence[str],
    judge: Judge,
    cuts: frozenset[Block] = frozenset(),
) -> None:
    """``judge(reader, index, value)`` for each endpoint-like value, once per ``AddressClasses``
    class, and once per value repeated.

    ``judge`` must decide an IPv4 address or CIDR from the policy ranges it lies in, and any
    value from its text alone (using the text only in messages); ``cuts``, blocks holding
    addresses it also tells apart (``AddressClasses``).
    """
    if not many(values):
        for index, value in enumerate(values):
            judge(reader, index, value)
        return
    classes = AddressClasses(policy, cuts)
    keys = repeated_address_keys(classes, values)
    if keys is None:
        wide = classes.one_wide(values)
        if wide is None:
            # keyed a chunk at a time as the ordered pass goes: a list breaking the policy
            # stops at the violation limit without keying the rest
            chunked = ChunkedKeys(values, partial(address_keys, classes))
            judge_classes(
                reader, chunked, lambda reader, index: judge(reader, index, values[index])
            )
            return
        keys = [wide] * len(values)
    judge_classes(reader, keys, lambda reader, index: judge(reader, index, values[index]))


def repeated_texts(values: Sequence[str]) -> list[str] | None:
    """The distinct values, first seen first, when the list repeats a few texts (at most half
    of its values distinct, and of its first ``CLASS_SAMPLE``); else None.

    Where a verdict depends on a value's text alone, each distinct text is then checked once
    and the list mapped in C.  The first values show most lists of distinct texts, before
    every value is hashed.
    """
    sample = values[:CLASS_SAMPLE]
    if len(set(sample)) * 2 > len(sample):
        return None
    distinct = list(dict.fromkeys(values))
    return None if len(distinct) * 2 > len(values) else distinct


def address_keys(classes: AddressClasses, values: Sequence[str]) -> list[str | None]:
    """A class key for each value as ``judge_addresses`` classes them (None: judged alone),
    for a chunk of ``ChunkedKeys``."""
    keys = repeated_address_keys(classes, values)
    return classes.keys(values) if keys is None else list(keys)


def repeated_address_keys(classes: AddressClasses, values: Sequence[str]) -> list[str] | None:
    """A class key for each value when they repeat a few texts (``repeated_texts``); else None.

    Each distinct value is keyed once (``AddressClasses.keys``; one it cannot class by its own
    text, marked) and the list mapped in C: a value listed 200k times is judged once, where
    keying each item would cost a call per item.  With mostly distinct values the keys are
    better built a chunk at a time as the judging goes, which stops at the violation limit;
    the first values tell that without hashing them all.
    """
    distinct = repeated_texts(values)
    if distinct is None:
        return None
    found = classes.keys(distinct)
    keyed = {
        value: OWN_TEXT + value if key is None else key
        for value, key in zip(distinct, found, strict=True)
    }
    return list(map(keyed.__getitem__, values))


def judge_keyed(
    reader: Reader, values: Sequence[str], key: Callable[[str], str | None], judge: Judge
) -> None:
    """``judge(reader, index, value)`` for each value in order, skipping a value whose class
    (``key``; None: judged alone) was already judged clean."""
    clean: set[str] = set()
    violations = reader.violations
    for index, value in enumerate(values):
        found = key(value)
        if found is not None and found in clean:
            continue
        before = len(violations)
        judge(reader, index, value)
        if found is not None and len(violations) == before:
            clean.add(found)


# --- lists read a run at a time ---------------------------------------------------------------

# a list an odd item keeps from being read whole is read this many items at a time
ITEMS_RUN = 2048
# ... and a failing run halved down to this many items, read one by one
ITEMS_ALONE = 16

_Value = TypeVar("_Value")


@dataclass(frozen=True, slots=True)
class Kept(Generic[_Value]):
    """The values a list's items gave (``read_kept``), and where each was listed: the value
    kept at ``k`` is item ``k`` unless items that gave none were dropped (``shifts``)."""

    values: list[_Value]
    shifts: _Shifts | None = None

    def index(self, kept: int) -> int:
        """The list index of ``values[kept]``."""
        return kept if self.shifts is None else self.shifts.index(kept)


def read_kept(
    items: Sequence[Any],
    plain: Callable[[Sequence[Any]], list[_Value] | None],
    read_one: Callable[[int], _Value | None],
) -> Kept[_Value]:
    """The value of each item of a list, as ``read_one(index)`` reads it (recording the item's
    violations; None: it gives no value, and is dropped).

    ``plain(items)`` gives the values of items that all read without a violation, in passes
    of C; None when one of them is odd.  For a list it cannot read whole: it is tried a run at
    a time (``read_in_runs``), and the items of a piece ``plain`` cannot read are read one by
    one, so a tenant hiding one odd item among 100k costs a few passes, not 100k reads.
    """
    values: list[_Value] = []
    shifts = _Shifts()
    pieces = read_in_runs(
        len(items), lambda start, end: plain(items[start:end]), run=ITEMS_RUN, alone=ITEMS_ALONE
    )
    for start, end, found in pieces:
        if found is not None:
            values += found
            continue
        for index in range(start, end):
            value = read_one(index)
            if value is None:
                shifts.drop(len(values))
            else:
                values.append(value)
    return Kept(values, shifts or None)


# --- host lists read a run at a time ----------------------------------------------------------

# a long host list that fails the whole-list test is tested this many entries at a time
HOSTS_RUN = 2048
# a failing run of at most this many entries is read entry by entry
HOSTS_ALONE = 16
# what ``normalize`` strips around a name that is plain ASCII (a newline would split it)
_PADDING = re.compile(r"[ \t\r\v\f]*\n[ \t\r\v\f]*")


class _Shifts:
    """The list index of each entry kept from a list some entries were dropped from: the
    entry kept at position ``k`` was listed at ``k`` plus the drops before it, stored once
    per run of drops."""

    __slots__ = ("_shifts", "_starts")

    def __init__(self) -> None:
        # the kept positions where the shift grows, and the shift from there on
        self._starts = [0]
        self._shifts = [0]

    def drop(self, kept: int) -> None:
        """An entry dropped after ``kept`` entries were kept."""
        if self._starts[-1] == kept:
            self._shifts[-1] += 1
        else:
            self._starts.append(kept)
            self._shifts.append(self._shifts[-1] + 1)

    def __bool__(self) -> bool:
        """Whether any entry was dropped."""
        return self._shifts[-1] > 0

    def index(self, kept: int) -> int:
        """The list index of the entry kept at ``kept``."""
        return kept + self._shifts[bisect_right(self._starts, kept) - 1]

    def indexes(self, count: int) -> Iterator[int]:
        """The list index of each of ``count`` kept entries, a range per run between drops."""
        ends = [*self._starts[1:], count]
        return chain.from_iterable(
            map(range, map(add, self._starts, self._shifts), map(add, ends, self._shifts))
        )


@dataclass(frozen=True, slots=True)
class ReadHosts:
    """The valid hosts of a list field, normalized (``read_hosts``), and where each was listed.

    ``names[k]`` is the list's entry ``k`` unless entries were dropped (``shifts``); a path is
    written only when asked for.
    """

    names: list[str]
    # the path of the entry at list index i: template.format(i)
    template: str
    shifts: _Shifts | None = None
    # the names joined by newlines, when the whole list was read in one pass
    joined: str | None = None
    # (list index, violation) of each name found invalid, when deferred (``judge_read_hosts``)
    invalid: tuple[tuple[int, Violation], ...] = ()

    def index(self, kept: int) -> int:
        """The list index of ``names[kept]``."""
        return kept if self.shifts is None else self.shifts.index(kept)

    def path(self, kept: int) -> str:
        """The path of ``names[kept]``."""
        return self.template.format(self.index(kept))

    def paths(self) -> Iterator[str]:
        """The path of each name, in order."""
        count = len(self.names)
        indexes = range(count) if self.shifts is None else self.shifts.indexes(count)
        return map(self.template.format, indexes)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """``(path, name)`` of each name."""
        return zip(self.paths(), self.names, strict=True)

    def __bool__(self) -> bool:
        return bool(self.names)


def read_hosts(
    reader: Reader,
    value: Any,
    path: str,
    *,
    template: str | None = None,
    expand_in: str | None = None,
    cluster_domain: str = "cluster.local",
    allow_ip: bool = False,
    defer: bool = False,
) -> ReadHosts:
    """``Reader.host`` of each string of the list ``value`` (read as ``Reader.strings``), the
    valid names kept: the names, violations and order that reading each entry gives.

    A long list is tested in passes of C (``all_valid_joined``), the whole list first, then a
    run of entries at a time, each also tried lower-cased and trimmed, as ``normalize`` would;
    a run that fails is halved down to a few entries read one by one.  A tenant can hide one
    invalid name among 200k: that costs a few passes over a run, not a regex per entry.
    ``template``: the path of the entry at index i is ``template.format(i)`` (``path[i]`` when
    None).  ``expand_in``: short names are expanded, so a name without a dot is read on its own.
    ``defer``: the invalid names' violations are left in ``ReadHosts.invalid`` for a caller
    that records them among its own in list order; reading stops once they are as many as the
    reader still takes, since no later entry can be reported then.
    """
    template = path + "[{}]" if template is None else template
    listed = reader.sequence(value, path)
    items = listed if type(listed) is list else list(listed)
    if not items:
        return ReadHosts([], template)
    if not many(items) and not defer and set(map(type, items)) == {str}:
        # an everyday object's few hosts: read one by one, with no run's machinery
        host = reader.host
        names: list[str] = []
        shifts = _Shifts()
        for index, raw in enumerate(items):
            checked = host(
                raw,
                template.format(index),
                expand_in=expand_in,
                cluster_domain=cluster_domain,
                allow_ip=allow_ip,
            )
            if checked is None:
                shifts.drop(len(names))
            else:
                names.append(checked)
        return ReadHosts(names, template, shifts or None)
    dotted = expand_in is not None
    if many(items):
        joined = _joined_names(items)
        if joined is not None and _valid_run(joined, len(items), dotted=dotted):
            # the usual list: one pass, and no run's overhead
            return ReadHosts(cast("list[str]", items), template, joined=joined)
    if set(map(type, items)) != {str}:
        # Reader.strings records every entry that is no string before any name is read
        is_string = map(issubclass, map(type, items), repeat(str))
        for index in compress(count(), map(not_, is_string)):
            reader.add(template.format(index), f"must be a string, got {type_name(items[index])}")
    into = Reader(limit=_left(reader)) if defer else reader
    runs = _HostRuns(
        items,
        template,
        partial(into.host, expand_in=expand_in, cluster_domain=cluster_domain, allow_ip=allow_ip),
        dotted=dotted,
    )
    try:
        runs.read_all()
    except EnoughViolations:
        if not defer:
            raise
    invalid = tuple(zip(runs.invalid, into.violations, strict=True)) if defer else ()
    return ReadHosts(
        runs.names(), template, runs.shifts or None, joined=runs.joined(), invalid=invalid
    )


def _left(reader: Reader) -> int | None:
    """How many more violations ``reader`` takes before it stops the check."""
    return None if reader.limit is None else reader.limit - len(reader.violations)


def _joined_names(items: Sequence[Any]) -> str | None:
    """``items`` joined by newlines; None when one is no string."""
    try:
        return "\n".join(items)
    except TypeError:
        return None


def _valid_run(joined: str, count: int, *, dotted: bool) -> bool:
    """Whether ``count`` names joined by newlines are all valid (and dotted, if asked)."""
    return all_valid_joined(joined, count) and (not dotted or all_dotted(joined + "\n"))


def _normalized_run(joined: str) -> str:
    """``normalize`` of each of the names of ``joined``, as far as passes of C can tell: lower
    case, ASCII spaces trimmed, one trailing dot dropped.  Names this leaves invalid are read
    one by one, so any other difference from ``normalize`` only costs time."""
    text = "\n" + joined.lower() + "\n"
    if any(space in text for space in " \t\r\v\f"):
        text = _PADDING.sub("\n", text)
    return text.replace(".\n", "\n")[1:-1]


class _HostRuns:
    """``read_hosts`` of a list, a run of entries at a time."""

    __slots__ = (
        "_host",
        "_items",
        "_kept",
        "_read",
        "_template",
        "_texts",
        "dotted",
        "invalid",
        "shifts",
    )

    def __init__(
        self,
        items: Sequence[Any],
        template: str,
        host: Callable[[str, str], str | None],
        *,
        dotted: bool,
    ) -> None:
        self._items = items
        self._template = template
        self._host = host
        self.dotted = dotted
        # the names kept; None while they are the entries read so far, as listed
        self._kept: list[str] | None = None
        self._read = 0
        self.shifts = _Shifts()
        # the list index of each name found invalid
        self.invalid: list[int] = []
        # the names of each run joined by newlines, until one is read entry by entry
        self._texts: list[str] | None = []

    def joined(self) -> str | None:
        """The names joined by newlines, when every run was read in passes."""
        return None if self._texts is None else "\n".join(self._texts)

    def names(self) -> list[str]:
        """The names kept so far."""
        if self._kept is None:
            items = self._items
            self._kept = cast(
                "list[str]", items if self._read == len(items) else items[: self._read]
            )
        return self._kept

    def read_all(self) -> None:
        """Read every entry, a run at a time."""
        count = len(self._items)
        if not many(self._items):
            self._texts = None
            self._each(0, count)
            return
        for start, end, read in read_in_runs(count, self._run, run=HOSTS_RUN, alone=HOSTS_ALONE):
            if read is None:
                self._each(start, end)

    def _run(self, start: int, end: int) -> bool | None:
        """Read entries ``start`` to ``end`` in passes if they are all valid names; None: not
        read."""
        chunk = self._items[start:end]
        joined = _joined_names(chunk)
        if joined is None:
            return None
        size = end - start
        if _valid_run(joined, size, dotted=self.dotted):
            if self._kept is not None:
                self._kept += chunk
            self._read = end
            self._joined_run(joined)
            return True
        normalized = _normalized_run(joined)
        if normalized != joined and _valid_run(normalized, size, dotted=self.dotted):
            self.names().extend(normalized.split("\n"))
            self._read = end
            self._joined_run(normalized)
            return True
        return None

    def _joined_run(self, text: str) -> None:
        if self._texts is not None:
            self._texts.append(text)

    def _each(self, start: int, end: int) -> None:
        """Read entries ``start`` to ``end`` one by one, as ``Reader.host`` reads them."""
        self._texts = None
        items, template = self._items, self._template
        for index in range(start, end):
            item = items[index]
            try:
                host = self._host(item, template.format(index)) if isinstance(item, str) else None
            except EnoughViolations:
                self.invalid.append(index)
                raise
            if host is None:
                kept = self.names()
                self._read = index + 1
                if isinstance(item, str):
                    # recorded by the host reader: the last violation
                    self.invalid.append(index)
                self.shifts.drop(len(kept))
                continue
            if host != item or self._kept is not None:
                self.names().append(host)
            self._read = index + 1


def judge_read_hosts(reader: Reader, policy: Policy, hosts: ReadHosts, judge: Judge) -> None:
    """``judge_hosts`` of the names ``read_hosts`` kept, with the violations of the names it
    found invalid (deferred) recorded among the judgements' in list order, as reading and
    judging each entry in turn records them."""
    if not hosts.invalid:
        judge_hosts(reader, policy, hosts.names, judge, hosts.joined)
        return
    pending = deque(hosts.invalid)

    def record_before(index: int | None) -> None:
        while pending and (index is None or pending[0][0] < index):
            violation = pending.popleft()[1]
            reader.add(violation.field, violation.message)

    def in_order(into: Reader, kept: int, host: str) -> None:
        # judgements aside (one per class) record nothing of the object's
        if into is reader:
            record_before(hosts.index(kept))
        judge(into, kept, host)

    judge_hosts(reader, policy, hosts.names, in_order, hosts.joined)
    record_before(None)


# last parts of addresses and CIDRs that stay inside their /24: "7", "7/24" ... "7/32"
_IN_BLOCK = _OCTETS | frozenset(f"{i}/{n}" for i in range(256) for n in range(24, 33))


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"


def _lines(octets: str) -> re.Pattern[str]:
    """Lines of ``_IN_BLOCK`` values whose octets match ``octets``, each ending in a newline.

    Possessive: a line once matched is never taken back (four times faster on 138k lines).
    """
    return re.compile(rf"(?:{octets}(?:/(?:2[4-9]|3[0-2]))?+\n)*+")


@lru_cache(maxsize=64)
def _in_wide(wide: str) -> re.Pattern[str]:
    """``_lines`` of /16 block ``wide`` (``a.b``)."""
    return _lines(rf"{re.escape(wide)}\.{_OCTET}\.{_OCTET}")


@lru_cache(maxsize=64)
def _in_head(head: str) -> re.Pattern[str]:
    """``_lines`` of /8 block ``head`` (``a``)."""
    return _lines(rf"{re.escape(head)}\.{_OCTET}\.{_OCTET}\.{_OCTET}")


# an IPv4 block: (prefix length 8, 16 or 24, the address >> 32 - prefix length); a cut IPv6
# address is the block (128, the address)
Block = tuple[int, int]


def blocks_of(address: int) -> tuple[Block, Block, Block]:
    """The /8, /16 and /24 blocks holding IPv4 address ``address``."""
    return (8, address >> 24), (16, address >> 16), (24, address >> 8)


class AddressClasses:
    """Keys of IPv4 addresses and CIDRs the policy judges alike, for one object's values.

    A dotted quad, or a /24 to /32 inside one /24 block, lies inside exactly the policy ranges
    (internal networks, service addresses) that contain its whole /16 block when no range
    starts or ends inside that block (``Policy.splits_block``), and its key is ``a.b``; else
    those containing its /24 when none ends inside that, key ``a.b.c``.  In a list, IPv6
    addresses written in hex digits and colons are keyed by the interval between policy range
    bounds they lie in (``_v6_keys``).  Other values (names, wider CIDRs, odd spellings) get
    None and are judged alone.

    ``cuts`` are blocks holding single addresses the judgement also tells apart (the egress
    namespace's, ``webhook.core.checks.egress_addresses``): a block holding one is split like
    one a policy range ends inside, and each value of such a /24 is its own class (its text),
    so a long list of them is still judged once per distinct value.
    """

    __slots__ = ("_bounds", "_cuts", "_narrow", "_policy", "_wide")

    def __init__(self, policy: Policy, cuts: frozenset[Block] = frozenset()) -> None:
        self._policy = policy
        self._cuts = cuts
        # "a.b" -> its /16 unsplit?  None: not two canonical octets
        self._wide: dict[str, bool | None] = {}
        # "a.b.c" of a split /16 -> its /24 unsplit?
        self._narrow: dict[str, bool] = {}
        # by IP version, where interval classes part (``interval_keys``), read once
        self._bounds: dict[int, tuple[int, ...]] = {}

    def key(self, value: str) -> str | None:
        """The class of ``value``, or None."""
        block, _, last = value.rpartition(".")
        if last not in _IN_BLOCK:
            return None
        key = self._block_key(block)
        if key is None and self._cuts and self._holds(block):
            return OWN_TEXT + value
        return key

    def _holds(self, block: str) -> bool:
        """Whether the /24 ``block`` (``a.b.c``) holds one of the cut addresses."""
        number = plain_ipv4(block + ".0")
        return number is not None and (24, number >> 8) in self._cuts

    def _split(self, block: int, bits: int) -> bool:
        return self._policy.splits_block(block, bits) or (bits, block) in self._cuts

    def keys(self, values: Sequence[str]) -> list[str | None]:
        """A key for each value, the same for values ``key`` gives the same (or ``one_wide``).

        Addresses of one unsplit /8 or /16 block (pods of one cluster network) are recognized
        by one regular expression over them all, in C; other plain addresses and CIDRs of one
        IP version are keyed by where they lie among the policy's range bounds, in C too
        (``interval_keys``); IPv4 and IPv6 ones listed in turn, each version apart; what is
        left (odd spellings among them) a piece at a time.  An Endpoints can list 138k
        addresses.
        """
        found = self._run_keys(values)
        if found is not None:
            return found
        if not many(values):
            return list(map(self.key, values))
        found = self._by_family(values)
        if found is not None:
            return found
        # one odd value among thousands of one block: the others still keyed a piece at a time
        keys: list[str | None] = []
        pieces = read_in_runs(
            len(values),
            lambda start, end: self.bulk_keys(values[start:end]),
            run=KEYS_CHUNK,
            alone=KEYS_ALONE,
        )
        for start, end, run in pieces:
            keys += map(self.key, values[start:end]) if run is None else run
        return keys

    def bulk_keys(self, values: Sequence[str]) -> list[str | None] | None:
        """``keys`` when they can all be read in passes of C (one version, or IPv4 and IPv6
        listed in turn), else None: the caller reads the list in pieces."""
        found = self._run_keys(values)
        return found if found is not None else self._by_family(values, bulk=True)

    def _run_keys(self, values: Sequence[str]) -> list[str | None] | None:
        """The keys of a run of values of one IP version read in passes of C, or None."""
        wide = self.one_wide(values)
        if wide is not None:
            return [wide] * len(values)
        return self.interval_keys(values)

    def _by_family(self, values: Sequence[str], *, bulk: bool = False) -> list[str | None] | None:
        """``keys`` of IPv4 and IPv6 addresses listed in turn: each family keyed apart, then
        put back in order; None when not both families are there, or the IPv6 values (with
        ``bulk``, the IPv4 ones too) are not all plain addresses.  Without it every IPv6 value
        among IPv4 ones is parsed alone."""
        six = [":" in value for value in values]
        if all(six) or not any(six):
            return None
        v6 = self.interval_keys(list(compress(values, six)))
        if v6 is None:
            return None
        fours = list(compress(values, map(not_, six)))
        v4 = self._run_keys(fours) if bulk else self.keys(fours)
        if v4 is None:
            return None
        ordered, fourth = iter(v6), iter(v4)
        return [next(ordered) if is_v6 else next(fourth) for is_v6 in six]

    def interval_keys(
        self, values: Sequence[str], known: AddressRanges | None = None
    ) -> list[str | None] | None:
        """Keys of addresses or CIDRs of one IP version (``address_ranges``): where the first and
        the last address of each lie among the bounds of the policy's ranges
        (``Policy.address_bounds``) and the cut addresses (each an interval of its own); None
        unless every value is a plain address or CIDR of one version.  ``known``: what
        ``address_ranges`` gave for these values already (a caller that validated them).

        Values keyed alike lie inside the same ranges, contain the same cut addresses and
        cover everything or not alike, so they are judged alike.  Parsed (``inet_pton``) and
        placed (``bisect``) in C: 100k endpoints or ipBlocks anywhere are a handful of classes
        instead of 100k parses by ``ipaddress``.
        """
        found = address_ranges(values) if known is None else known
        if found is None:
            return None
        version, firsts, lasts = found
        place = partial(bisect_right, self._interval_bounds(version))
        key = _INTERVAL_KEYS[version]
        lowest, highest = place(min(firsts)), place(max(lasts))
        if lowest == highest:
            # all in one interval, as a list inside one allowed range is (each value's first
            # address is at most its last): none placed nor keyed one by one
            return [key(lowest, lowest)] * len(firsts)
        starts = list(map(place, firsts))
        # addresses alone are placed once each
        ends = starts if firsts is lasts else list(map(place, lasts))
        return list(map(key, starts, ends))

    def _interval_bounds(self, version: int) -> tuple[int, ...]:
        bounds = self._bounds.get(version)
        if bounds is None:
            # a cut address a is the interval [a, a + 1)
            bits = 32 if version == 4 else 128
            cut = [a for at, a in self._cuts if at == bits]
            policy = self._policy.address_bounds(version)
            bounds = self._bounds[version] = tuple(sorted({*policy, *cut, *(a + 1 for a in cut)}))
        return bounds

    def one_wide(self, values: Sequence[str]) -> str | None:
        """A key for every value when all lie in the unsplit /8 or /16 block of the first.

        A /8 no policy range starts or ends inside is judged alike too (its key ``a``), though
        ``key`` tells its /16 blocks apart.  None: the values are keyed one by one.
        """
        if not values:
            return None
        first, last = values[0], values[-1]
        head = first.partition(".")[0]
        if head in _OCTETS and last.startswith(head + ".") and not self._split(int(head), 8):
            return head if all_lines(_in_head(head), values) else None
        wide = first.rpartition(".")[0].rpartition(".")[0]
        if not last.startswith(wide + ".") or self._block_key(wide + ".0") != wide:
            return None
        return wide if all_lines(_in_wide(wide), values) else None

    def _block_key(self, block: str) -> str | None:
        """The class of the values whose last part (one in ``_IN_BLOCK``) follows ``block``."""
        wide, _, third = block.rpartition(".")
        if third not in _OCTETS:
            return None
        unsplit = self._wide.get(wide, False)
        if unsplit is False and wide not in self._wide:
            number = plain_ipv4(wide + ".0.0")
            unsplit = None if number is None else not self._split(number >> 16, 16)
            self._wide[wide] = unsplit
        if unsplit:
            return wide
        if unsplit is None:
            return None
        narrow = self._narrow.get(block)
        if narrow is None:
            number = plain_ipv4(block + ".0")
            narrow = number is not None and not self._split(number >> 8, 24)
            self._narrow[block] = narrow
        return block if narrow else None


def address_class(policy: Policy, value: str) -> str | None:
    """``AddressClasses(policy).key(value)`` for a single value."""
    return AddressClasses(policy).key(value)


# --- visibility (exportTo) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visibility:
    """The namespaces an object is visible to through ``exportTo``."""

    everywhere: bool
    namespaces: frozenset[str]
    explicit: bool
    # what sets it, for messages: the field, or the annotation of a Kubernetes Service
    field: str = "exportTo"

    def describe(self) -> str:
        """``every namespace (exportTo omitted)``, ``namespace team-a``... for messages."""
        if self.everywhere:
            return "every namespace" + (
                "" if self.explicit else f" ({self.field} omitted means '*')"
            )
        if len(self.namespaces) == 1:
            return f"namespace {next(iter(self.namespaces))}"
        # named as a denial lists violations: the first few, so that a message stays a few KB
        # however many namespaces exportTo lists (and they are not all sorted to find them)
        named = heapq.nsmallest(MAX_LISTED_VIOLATIONS, self.namespaces)
        more = len(self.namespaces) - len(named)
        return "namespaces " + ", ".join(named) + (f" and {more} more" if more else "")

    def beyond(self, namespace: str) -> bool:
        """True when namespaces other than ``namespace`` can see the object."""
        # counted, not a set difference: exportTo may list hundreds of thousands of names
        return self.everywhere or len(self.namespaces) > (namespace in self.namespaces)


def visibility(
    reader: Reader,
    value: Any,
    namespace: str,
    path: str = "spec.exportTo",
    field: str = "exportTo",
) -> Visibility:
    """Who sees an object: omitted or ``*`` = everyone, ``.``/``~`` = own namespace, else names.
    ``field`` names what sets it in messages."""
    if value is None:
        # omitted is the mesh default, which is "*" unless MeshConfig says otherwise
        # (docs/istio-semantics.md#trap-6)
        return Visibility(True, frozenset(), explicit=False, field=field)
    names = listed_strings(reader, value, path)
    if names is None:
        names = frozenset(entry for _, entry in reader.strings(value, path))
    if not names:
        return Visibility(True, frozenset(), explicit=False, field=field)
    if "*" in names:
        return Visibility(True, frozenset(), explicit=True, field=field)
    if "." in names or "~" in names:
        names = (names - {".", "~"}) | {namespace}
    return Visibility(False, names, explicit=True, field=field)


def listed_strings(reader: Reader, value: Any, path: str) -> frozenset[str] | None:
    """The strings of a list, its other items recorded as ``Reader.strings`` does.

    Passes of C: an object may list hundreds of thousands of namespaces, and only an item
    that is no string gets a path written.  None when ``value`` is no list.
    """
    if type(value) is not list:
        return None
    try:
        # distinct values first: a list repeating a few names is typed in a few steps
        distinct = frozenset(value)
    except TypeError:
        pass
    else:
        if set(map(type, distinct)) <= {str}:
            return distinct
    is_string = list(map(issubclass, map(type, value), repeat(str)))
    for index in compress(count(), map(not_, is_string)):
        reader.add(f"{path}[{index}]", f"must be a string, got {type_name(value[index])}")
    return frozenset(compress(value, is_string))


def rule_representatives(policy: Policy, namespaces: frozenset[str]) -> Iterable[str]:
    """The namespaces some rule names, and one of the rest (each gets only the ``*`` rules).

    Every question about a namespace's rules then has as many answers as there are
    namespaces returned: an exportTo of 100k names no rule names is asked about once.
    """
    named = namespaces & policy.rule_namespaces
    if len(named) == len(namespaces):
        return named
    # found among the first len(named) + 1 names
    other = next(ns for ns in namespaces if ns not in named)
    return (*named, other)


def allowed_directly_for(policy: Policy, visible: Visibility) -> frozenset[str]:
    """Services every namespace that can see an object may reach directly (no label, no SA)."""
    if visible.everywhere:
        return policy.allowed_everywhere()
    allowed: frozenset[str] | None = None
    for ns in rule_representatives(policy, visible.namespaces):
        direct = policy.allowed_directly(ns)
        allowed = direct if allowed is None else allowed & direct
    return allowed or frozenset()


# --- selectors and labels ---------------------------------------------------------------------


def egress_gateway_selecting(policy: Policy, labels: Mapping[str, Any]) -> Gateway | None:
    """The egress gateway whose selector pods with ``labels`` satisfy (the egress namespace's
    Gateway for it selects them, in any namespace); None when there is none."""
    for gateway in policy.gateways:
        if gateway.selector and all(labels.get(k) == v for k, v in gateway.selector.items()):
            return gateway
    return None


def selectors_may_overlap(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Whether one pod could carry both selectors: no key demands two different values."""
    return all(b[k] == v for k, v in a.items() if k in b)


def labels_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """``metadata.labels`` of an object, empty when absent or malformed."""
    meta = obj.get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    """``metadata.name`` of an object, empty when absent."""
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) else ""


def is_managed(obj: Mapping[str, Any] | None) -> bool:
    """True for objects egress-guard's Reconciler generated and owns (False for no object)."""
    return isinstance(obj, Mapping) and labels_of(obj).get(MANAGED_LABEL) == "true"


def format_labels(labels: Mapping[str, str]) -> str:
    """``{a=b,c=d}`` for messages."""
    return "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


# --- hosts, gateways and addresses ------------------------------------------------------------


def gateway_ref(ref: str, namespace: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of a VirtualService ``gateways`` entry; None for ``mesh``.

    Forms: ``ns/name``, ``name`` (the VirtualService's namespace) and the legacy ``name.ns...``.
    """
    if ref == MESH:
        return None
    if "/" in ref:
        ns, _, name = ref.partition("/")
        return (namespace if ns in (".", "") else ns), name
    if "." in ref:
        name, _, rest = ref.partition(".")
        return rest.split(".", 1)[0], name
    return namespace, ref


def policy_gateway(policy: Policy, ref: tuple[str, str]) -> Gateway | None:
    """The policy egress gateway a ``(namespace, name)`` reference names, if any."""
    for gateway in policy.gateways:
        if (gateway.namespace, gateway.name) == ref:
            return gateway
    return None


def gateways_covered_by(policy: Policy, host: str) -> tuple[Gateway, ...]:
    """Policy egress gateways whose Service FQDN ``host`` (possibly a wildcard) covers."""
    return tuple(gw for gw in policy.gateways if covers(host, gw.fqdn))


def names_egress_namespace(policy: Policy, host: str) -> bool:
    """Whether a normalized cluster name is a Service of the egress namespace (or below one).

    The egress gateways forward a wildcard TLS service on its SNI alone (``PASSTHROUGH``: no
    identity reaches them), so which workloads may use one is decided by the sidecars' generated
    routes only.  A tenant entry whose destination is the gateway's name hands the app's own
    ClientHello to the gateway past those routes; the gateways' names are internal, so
    ``is_internal`` alone would let it through.
    """
    zone = f".svc.{policy.cluster_domain}"
    namespaces = {policy.egress_namespace, *(gw.namespace for gw in policy.gateways)}
    return any(host.endswith(f".{namespace}{zone}") for namespace in namespaces)


def egress_namespace_destination(name: str) -> str:
    """Why a tenant entry may not send traffic to a name of the egress namespace."""
    return (
        f"{name!r} is in the egress namespace: traffic sent there directly skips the routes "
        "that decide which workloads may use each egress gateway (a wildcard TLS service "
        "passes the gateway on its SNI alone); call the external host itself and the "
        "generated routes take it to the gateway"
    )


def egress_fqdns(policy: Policy, services: Iterable[str]) -> str:
    """The egress gateway FQDNs of ``services``, for "route through ..." hints."""
    fqdns = sorted({policy.services[s].gateway.fqdn for s in services if s in policy.services})
    return ", ".join(fqdns) if fqdns else "the egress gateway of the service"


def split_authority(authority: str) -> str:
    """The host of a ``host[:port]`` authority (IPv6 in brackets kept as the bare address)."""
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    host, sep, port = authority.rpartition(":")
    return host if sep and port.isdigit() else authority


def overbroad(host: str) -> bool:
    """``*`` or a wildcard over a public suffix."""
    return host == "*" or is_overbroad(host)


def address_problem(
    policy: Policy, address: str, allowed: frozenset[str], source: str
) -> str | None:
    """Why an IP/CIDR destination is not allowed for ``source``; None when it is."""
    net = address_range(address)
    if net is None:
        return f"{address!r} is not an IP address or CIDR"
    version, first, last = net
    if first == 0 and last == (1 << (32 if version == 4 else 128)) - 1:
        return f"{address!r} covers every address on the Internet"
    if policy.is_internal_address(address) or policy.address_allowed(address, allowed):
        return None
    return (
        f"{address!r} lies outside the addresses of the external services allowed to {source}; "
        f"allowed: {policy.describe_allowed(allowed)}" + _addresses_hint(policy, allowed)
    )


def _addresses_hint(policy: Policy, allowed: frozenset[str]) -> str:
    ranges = sorted({a for s in allowed for a in policy.services[s].addresses})
    return f" (their addresses: {', '.join(ranges)})" if ranges else " (none declares addresses)"


def destination_problem(
    policy: Policy, reader: Reader, value: str, path: str, allowed: frozenset[str], source: str
) -> None:
    """Record why an endpoint-like destination (IP, DNS name, unix socket) is not allowed."""
    if value.startswith(UNIX_PREFIX):
        # a socket on the pod itself: nothing leaves the node
        return
    host = normalize(value)
    if is_ip(host):
        problem = address_problem(policy, host, allowed, source)
        if problem:
            reader.add(path, problem)
        return
    name = reader.host(value, path)
    if name is None:
        return
    if policy.is_internal(name):
        if names_egress_namespace(policy, name):
            reader.add(path, egress_namespace_destination(name))
        return
    if overbroad(name) or name.startswith("*."):
        reader.add(path, f"{name!r} is a wildcard; a destination must be one host")
        return
    if not policy.services_covering(name) & allowed:
        reader.add(
            path,
            f"traffic would go to {name!r}, which is not an external service allowed to {source}; "
            f"allowed: {policy.describe_allowed(allowed)}",
        )


def gateway_subset_services(policy: Policy, fqdn: str, subset: str) -> frozenset[str]:
    """Services whose traffic an egress gateway subset carries (empty: not a policy subset).

    The generated gateway DestinationRule gives each service host a subset that sets the SNI
    of the sidecar->gateway hop; the gateway routes and authorizes on that SNI, so choosing a
    subset chooses the external host, whatever host the route itself matched.
    """
    found = set()
    for name in policy.services_on_gateway(fqdn):
        service = policy.services[name]
        if any(gateway_subset(service, i) == subset for i in range(len(service.hosts))):
            found.add(name)
    return frozenset(found)


def gateway_subset_problem(
    policy: Policy, fqdn: str, subset: str, allowed: frozenset[str], source: str
) -> str | None:
    """Why routing ``source`` to subset ``subset`` of egress gateway ``fqdn`` is wrong, if it is."""
    carried = gateway_subset_services(policy, fqdn, subset)
    if not carried or carried & allowed:
        return None
    return (
        f"subset {subset!r} of the egress gateway {fqdn} sends traffic to "
        f"{policy.describe_allowed(carried)}, which {source} may not reach; allowed: "
        f"{policy.describe_allowed(allowed)}"
    )


def passthrough_subset_problem(
    policy: Policy, fqdn: str, subset: str, sni_hosts: tuple[str, ...] | None
) -> str | None:
    """Why a route to a PASSTHROUGH subset of egress gateway ``fqdn`` lets the app pick the host.

    A wildcard TLS host's subset adds no mTLS: the app's own ClientHello reaches the gateway,
    whose PASSTHROUGH servers route on its SNI to *any* wildcard TLS host the gateway carries.
    Only a tls rule whose every match pins the SNI under the subset's wildcard keeps the app
    to that service; a tcp rule, or a tls rule matching other names, does not.
    """
    for name in policy.services_on_gateway(fqdn):
        service = policy.services[name]
        if not any(p.is_tls for p in service.ports):
            continue
        for i, host in enumerate(service.hosts):
            if not is_wildcard(host) or gateway_subset(service, i) != subset:
                continue
            if sni_hosts is not None and all(covers(host, sni) for sni in sni_hosts):
                return None
            return (
                f"subset {subset!r} of the egress gateway {fqdn} passes the application's own "
                "TLS through, and the gateway routes it on the application's SNI to any "
                f"wildcard host it carries; use a tls rule whose sniHosts lie under {host!r}"
            )
    return None

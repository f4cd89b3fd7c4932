"""Sidecar: the object that decides what a workload's proxy imports and what happens to the rest.

A Sidecar is the config-time half of the allow list: ``REGISTRY_ONLY`` drops traffic to hosts
the proxy does not know, and ``egress[].hosts`` chooses which registry entries it knows.  So a
Sidecar may only import the external services its workloads are allowed to reach, must keep
``REGISTRY_ONLY``, and must not create ambiguity: Istio applies exactly one Sidecar per workload
(the oldest matching one) and merges nothing (docs/istio-semantics.md#sidecar-precedence, trap 8).
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import (
    Callable,
    Collection,
    Hashable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from functools import partial
from itertools import accumulate, chain, compress, repeat
from operator import add, itemgetter
from typing import Any, cast

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import (
    CLASS_SAMPLE,
    CLASSED_CHUNK,
    COUNTED_AT_MOST,
    KEYS_ALONE,
    OWN_TEXT,
    Aside,
    ChunkedKeys,
    ChunkJudgement,
    Reader,
    classes_of_unknown_names,
    counted_classes,
    first_indexes,
    format_labels,
    is_managed,
    judge_classes,
    judge_in_chunks,
    judge_in_order,
    many,
    name_of,
    nearest_known,
    selectors_may_overlap,
    stop_on_breaking_start,
)
from webhook.core.decisions import STOP_AFTER_VIOLATIONS, Violation
from webhook.core.errors import InvalidHostError
from webhook.core.hosts import MAX_HOST_LENGTH, all_valid_joined, all_valid_names, check_dns_name
from webhook.core.policy import REGISTRY_ONLY, Policy, Workloads
from webhook.core.reviews import Review

SUBTRACTING_VERSION = (1, 31)


@checks("networking.istio.io", "Sidecar")
def check_sidecar(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """A Sidecar keeps REGISTRY_ONLY, imports only allowed services and is the only one in force."""
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    namespace = review.namespace
    if review.operation == "DELETE":
        _check_delete(reader, review, view)
        return reader.violations
    if policy.is_egress_namespace(namespace):
        reader.add(
            "",
            f"Sidecars in the egress namespace {namespace} are managed by egress-guard; ask the "
            "platform team",
        )
        return reader.violations
    spec = reader.spec(review.object)
    selector = selector_of(reader, spec)
    workloads = Workloads(namespace, selector)
    allowed = policy.allowed_for(workloads)
    _check_outbound(reader, spec)
    _check_imports(reader, policy, spec, workloads, allowed)
    _check_unique(reader, review, view, selector)
    return reader.violations


def selector_of(reader: Reader, spec: Mapping[str, Any]) -> dict[str, str] | None:
    """The Sidecar's ``workloadSelector.labels``; None (whole namespace) when absent or empty."""
    ws = reader.mapping(spec.get("workloadSelector"), "spec.workloadSelector")
    labels = reader.labels(ws.get("labels"), "spec.workloadSelector.labels")
    return labels or None


def _check_delete(reader: Reader, review: Review, view: ClusterView) -> None:
    old = review.old_object
    if old is None:
        return
    spec = old.get("spec")
    if selector_of(Reader(), spec if isinstance(spec, Mapping) else {}) is not None:
        # pods fall back to the namespace Sidecar, which was checked on its own
        return
    others = [
        name_of(s)
        for s in view.sidecars(review.namespace)
        if name_of(s) != review.name and _selector_of_object(s) is None
    ]
    if others:
        return
    reader.add(
        "",
        f"deleting the selector-less Sidecar of namespace {review.namespace} reopens every "
        "workload there to the mesh default (ALLOW_ANY and an implicit */* import); replace it "
        "with kubectl apply instead of deleting it",
    )


def _selector_of_object(obj: Mapping[str, Any]) -> dict[str, str] | None:
    spec = obj.get("spec")
    return selector_of(Reader(), spec if isinstance(spec, Mapping) else {})


def _check_outbound(reader: Reader, spec: Mapping[str, Any]) -> None:
    path = "spec.outboundTrafficPolicy"
    outbound = reader.mapping(spec.get("outboundTrafficPolicy"), path)
    mode = reader.string(outbound.get("mode"), f"{path}.mode")
    if mode is None:
        reader.add(
            f"{path}.mode",
            "missing: the proxy falls back to the mesh default ALLOW_ANY, which passes traffic "
            "to any destination; set mode: REGISTRY_ONLY",
        )
    elif mode != REGISTRY_ONLY:
        reader.add(
            f"{path}.mode",
            f"{mode!r} lets traffic reach destinations outside the registry; only REGISTRY_ONLY "
            "is allowed",
        )
    if outbound.get("egressProxy") is not None:
        reader.add(
            f"{path}.egressProxy",
            "an egress proxy receives all unknown traffic, bypassing the allow list; remove it",
        )


def _check_imports(
    reader: Reader,
    policy: Policy,
    spec: Mapping[str, Any],
    workloads: Workloads,
    allowed: frozenset[str],
) -> None:
    source = workloads.describe()
    may = policy.describe_allowed(allowed)
    raw = spec.get("egress")
    if raw is None or raw == []:
        # docs/istio-semantics.md#trap-8: no egress section means one listener importing */*
        extra = frozenset(policy.services) - allowed
        if extra:
            reader.add(
                "spec.egress",
                f"missing: Istio then imports */* (every service exported to {source}), "
                f"including {policy.describe_allowed(extra)}; allowed for {source}: {may}. "
                f"List the hosts, e.g. './*' and '{policy.egress_namespace}/<host>'",
            )
        return
    if type(raw) is list and many(raw) and set(map(type, raw)) == {dict}:
        # a long list of listener objects: their hosts read in C, each path written only when
        # one of its hosts is judged
        hosts: list[Any] = list(map(dict.get, raw, repeat("hosts")))
        _check_listeners(reader, policy, hosts, "spec.egress[{}]".format, allowed, source, may)
        return
    read = [(p, listener.get("hosts")) for p, listener in reader.mappings(raw, "spec.egress")]
    paths = [p for p, _ in read]
    _check_listeners(reader, policy, [h for _, h in read], paths.__getitem__, allowed, source, may)


def _check_listeners(
    reader: Reader,
    policy: Policy,
    hosts: list[Any],
    path_of: Callable[[int], str],
    allowed: frozenset[str],
    source: str,
    may: str,
) -> None:
    """The ``hosts`` of each egress listener (``path_of`` its index gives its path), judged as
    ``_check_listener`` judges them one listener after the other.

    A long list is answered by its first listeners when they break the policy from the start;
    else judged once per distinct hosts list when those repeat, else as one list of hosts
    (``import_classes``), and when some listener's hosts are no list of strings, as runs of
    listeners around it.
    """

    def judge_listener(reader: Reader, index: int) -> None:
        _check_listener(reader, policy, path_of(index), hosts[index], seen, allowed, source, may)

    seen: set[str] = set()
    if not many(hosts) and not many(range(sum(len(h) for h in hosts if type(h) is list))):
        # an everyday Sidecar's few listeners and hosts: judged one after the other
        for index in range(len(hosts)):
            judge_listener(reader, index)
        return
    if many(hosts):
        stop_on_breaking_start(reader, judge_listener, len(hosts))
    distinct = listener_keys(hosts) if many(hosts) else None
    if distinct is not None:
        # a listener's verdict depends on its hosts alone: each distinct list is judged once
        judge_classes(reader, distinct, judge_listener)
        return
    count = len(hosts)
    if _judged_as_one_list(reader, policy, hosts, 0, count, path_of, allowed, source, may):
        return
    runs = _listener_runs(hosts, 0, count) if many(hosts) else [(0, count, False)]
    for start, stop, plain in runs:
        if not plain or not _judged_as_one_list(
            reader, policy, hosts, start, stop, path_of, allowed, source, may
        ):
            for index in range(start, stop):
                judge_listener(reader, index)


def _judged_as_one_list(
    reader: Reader,
    policy: Policy,
    hosts: list[Any],
    start: int,
    stop: int,
    path_of: Callable[[int], str],
    allowed: frozenset[str],
    source: str,
    may: str,
) -> bool:
    """Whether the listeners from ``start`` to ``stop`` were judged by one pass of classes
    over all their hosts as one list; False: they are to be judged one by one."""
    run = hosts[start:stop] if start or stop < len(hosts) else hosts
    if not run or set(map(type, run)) != {list} or not all(run):
        return False
    entries = run[0] if len(run) == 1 else list(chain.from_iterable(run))
    long = len(entries) > CLASSED_CHUNK and set(map(type, entries)) == {str}
    classes = None if long or not many(entries) else import_classes(policy, entries)
    if classes is None and not long:
        return False
    starts = list(accumulate(map(len, run), initial=0))

    def judge(reader: Reader, index: int) -> None:
        at = bisect_right(starts, index) - 1
        path = f"{path_of(start + at)}.hosts[{index - starts[at]}]"
        _check_import(reader, policy, path, entries[index], allowed, source, may)

    if classes is None:
        chunk = partial(_import_chunk, policy, entries, allowed, source, may)
        judge_in_chunks(reader, len(entries), chunk, judge)
        return True
    keys, firsts = classes
    if isinstance(firsts, Cover):
        _judge_covered(reader, keys, judge, firsts, policy, allowed, source, may)
    else:
        judge_classes(reader, keys, judge, firsts)
    return True


def _listener_runs(hosts: list[Any], start: int, stop: int) -> Iterator[tuple[int, int, bool]]:
    """The listeners from ``start`` to ``stop`` in runs ``(start, stop, plain)``: a plain run's
    hosts are all non-empty lists of strings; the others are a few listeners, each to be judged
    on its own.  Halved down to those few around each odd listener, read in C: one listener
    without hosts deep in a long list leaves the rest judged by classes."""
    run = hosts[start:stop]
    if (
        set(map(type, run)) == {list}
        and all(run)
        and set(map(type, chain.from_iterable(run))) == {str}
    ):
        yield start, stop, True
    elif stop - start <= KEYS_ALONE:
        yield start, stop, False
    else:
        middle = (start + stop) // 2
        yield from _listener_runs(hosts, start, middle)
        yield from _listener_runs(hosts, middle, stop)


# the key of an entry keyed by its own text, apart from every class key (a string)
_OwnText = tuple[str, str]


def _import_chunk(
    policy: Policy,
    entries: list[str],
    allowed: frozenset[str],
    source: str,
    may: str,
    start: int,
    stop: int,
) -> ChunkJudgement:
    """The classes of ``entries[start:stop]`` (strings) as ``import_classes`` finds them."""
    chunk = entries[start:stop]

    def aside(entry: str) -> Aside:
        return lambda reader: _check_import(reader, policy, "", entry, allowed, source, may)

    found = import_classes(policy, chunk)
    if found is None:
        # not strings after all: every entry judged alone
        return ChunkJudgement([None] * len(chunk), {None: aside("")})
    keys, firsts = found
    if isinstance(firsts, Cover):
        cover = firsts
        return ChunkJudgement(
            keys,
            {key: aside(entry) for key, entry in cover.items()},
            lambda wrong: _held(policy, cover, wrong),
        )
    if firsts is not None:
        return ChunkJudgement(keys, {key: aside(chunk[index]) for key, index in firsts.items()})
    if keys is chunk:
        # entries keyed by their own text: apart from the class keys of other chunks
        own: list[_OwnText] = list(zip(repeat(OWN_TEXT, len(chunk)), chunk, strict=True))
        return ChunkJudgement(own, {key: aside(key[1]) for key in dict.fromkeys(own)})
    # keyed entry by entry, those no class holds judged alone (None)
    listed: list[Hashable] = list(keys)
    found_firsts = first_indexes(listed)
    return ChunkJudgement(listed, {key: aside(chunk[i]) for key, i in found_firsts.items()})


def _held(
    policy: Policy, cover: Cover, wrong: set[Hashable]
) -> tuple[Iterable[Hashable], list[int]]:
    """The keys and positions of the entries ``cover`` holds that may have a ``wrong`` key."""
    at = _holders(policy, cover, wrong)
    return ChunkedKeys(list(map(cover.entries.__getitem__, at)), partial(_checked_keys, policy)), at


def _holders(policy: Policy, cover: Cover, keys: Iterable[Hashable]) -> list[int]:
    """The indexes of the entries ``cover`` holds that may have one of its ``keys``: those of
    the keys' namespace parts, none when no such entry has one of the keys' classes.  A cover
    pairs each namespace part with each class, so a wrong pair may be one no entry has (an
    egress-namespace part next to a class only the tenant's own imports use).  Classes are
    counted (``counted_classes``) or ``nearest_known`` of the names' parents, as the cover's.

    Only the names of the keys' namespace parts are read out of the text (one search each);
    the whole text is split only when one of them may be held.
    """
    wanted: dict[str, set[str]] = {}
    for key in cast("Iterable[str]", keys):
        space, _, rest = key.partition("/")
        if rest.startswith("*."):
            space, rest = space + _WILD, rest[2:]
        wanted.setdefault(space, set()).add(rest)
    # every line is "space/name" without another '/' or newline (``_wildcards_moved``)
    lines = "\n" + cover.text
    held = False
    for space, classes in wanted.items():
        own: list[str] = re.findall("\n" + re.escape(space) + "/([^\n]*)", lines)
        if not own:
            continue
        present = counted_classes(policy, own[:CLASS_SAMPLE], "\n".join(own), len(own))
        if present is None:
            parents = list(map(itemgetter(2), map(str.partition, own, repeat("."))))
            held = not classes.isdisjoint(nearest_known(policy, parents))
        else:
            held = not classes.isdisjoint(present)
        if held:
            break
    if not held:
        return []
    spaces = cover.text.replace("/", "\n").split("\n")[0::2]
    return list(compress(range(len(spaces)), map(wanted.__contains__, spaces)))


def _judge_covered(
    reader: Reader,
    keys: Iterable[Hashable],
    judge: Callable[[Reader, int], None],
    cover: Cover,
    policy: Policy,
    allowed: frozenset[str],
    source: str,
    may: str,
) -> None:
    """Each class of ``cover`` judged by its entry; when one is not clean, the entries judged
    in order (violations keep the object's order), the classes found clean skipped."""
    clean: set[Hashable] = set()
    for covered, entry in cover.items():
        scratch = Reader()
        _check_import(scratch, policy, "", entry, allowed, source, may)
        if not scratch.violations:
            clean.add(covered)
    if len(clean) == len(cover):
        return
    judge_in_order(reader, keys, judge, clean)


def listener_keys(hosts: list[Any]) -> list[tuple[Any, ...]] | None:
    """Each egress listener's ``hosts`` as a tuple, the key of its verdict; None: read each.

    Only when every listener's ``hosts`` is a list of hashable values, and at most half of the
    lists are distinct (else the per-host classes do better).
    """
    if set(map(type, hosts)) != {list}:
        return None
    try:
        keys = list(map(tuple, hosts))
        distinct = len(set(keys))
    except TypeError:
        return None
    return keys if distinct * 2 <= len(keys) else None


def _check_listener(
    reader: Reader,
    policy: Policy,
    lpath: str,
    raw_hosts: Any,
    clean: set[str],
    allowed: frozenset[str],
    source: str,
    may: str,
) -> None:
    hosts = reader.strings(raw_hosts, f"{lpath}.hosts")
    if not hosts:
        reader.add(f"{lpath}.hosts", "an egress listener needs at least one host")
    # the verdict on an entry depends on its text alone: a repeated one is judged once
    for path, entry in hosts:
        if entry in clean:
            continue
        before = len(reader.violations)
        _check_import(reader, policy, path, entry, allowed, source, may)
        if len(reader.violations) == before:
            clean.add(entry)


# moves a wildcard's "*." before the '/' (same length); only for texts holding no NUL
_WILD = "\x00\x00"
_NOT_SEPARATORS = bytes(b for b in range(256) if b not in b"/\n")


def import_classes(policy: Policy, hosts: Any) -> ImportClasses | None:
    """Classes of ``egress[].hosts`` entries ``_check_import`` judges alike; None (a list
    holding other than strings): read each.

    Returns the keys and, when known without reading every key, each class's index (see
    ``judge_classes``).  A verdict depends on an entry's text alone, so a list that repeats a
    few entries is keyed by the entries.  Otherwise only a list of ``namespace/name`` entries
    with valid, dotted names is classed: entries of one namespace part whose names share
    ``Policy.host_class`` (wildcards too: imports ask no public-suffix question) share a
    verdict.  A Sidecar can import 100k hosts: when every class shows in the first entries,
    the list is checked against those classes by counting in the joined text
    (``_sampled_classes``) and keys are built only if some entry has to be judged.  Otherwise,
    when the first entries' namespace parts and classes hold every entry, counted the same way,
    their pairs are a ``Cover`` judged pair by pair (``covering_classes``); only then is the
    text split into an entry's parts each (``_split_classes``).  Failing all of these (an
    entry no class holds, say), the entries are keyed a chunk at a time as they are judged in
    order, an entry that cannot be keyed judged alone (``ChunkedKeys``).
    """
    if not isinstance(hosts, list) or not hosts:
        return None
    try:
        joined = "\n".join(hosts)
    except TypeError:
        return None
    sample = hosts[:CLASS_SAMPLE]
    if len(set(sample)) * 2 <= len(sample):
        return hosts, None
    text = _wildcards_moved(joined, len(hosts))
    firsts = None if text is None else _sampled_classes(policy, hosts, text)
    if firsts is not None:
        return ChunkedKeys(hosts, _import_keys), firsts
    cover = None if text is None else covering_classes(policy, hosts, text)
    if cover is not None:
        cover.text, cover.entries = cast("str", text), hosts
        # each condition of _checked_keys holds entry by entry, so on every chunk too
        return ChunkedKeys(hosts, lambda chunk: _checked_keys(policy, chunk)), cover
    split = None if text is None else _split_classes(policy, hosts, text)
    if isinstance(split, Cover):
        split.text, split.entries = cast("str", text), hosts
    if split is not None:
        # each condition of _checked_keys holds entry by entry, so on every chunk too
        return ChunkedKeys(hosts, lambda chunk: _checked_keys(policy, chunk)), split
    # keyed chunk by chunk as the entries are judged in order: an entry that cannot be keyed
    # (deep in the list, say) is judged alone, the others keyed around it
    return ChunkedKeys(hosts, lambda chunk: _checked_keys(policy, chunk)), None


def _wildcards_moved(joined: str, count: int) -> str | None:
    """``joined`` (``count`` entries) with each "/*." written as a marker before the "/", when
    every entry holds exactly one "/" and the text is plain ASCII without NUL; else None."""
    if not joined.isascii() or "\x00" in joined:
        return None
    text = joined.replace("/*.", _WILD + "/")
    # every entry holds exactly one '/' (and no newline) when the separators alternate
    if text.encode().translate(None, _NOT_SEPARATORS) != b"/\n" * (count - 1) + b"/":
        return None
    return text


def _sampled_classes(policy: Policy, hosts: list[str], text: str) -> dict[Hashable, int] | None:
    """Each class's index in the first entries, when the counts show no entry outside them.

    ``text`` is the entries' joined text with the wildcards moved (``_wildcards_moved``).  Each
    entry is ``ns/label.parent`` or ``ns/*.label.parent`` with valid names: with the
    wildcard prefix moved before the '/', the lines of the joined text that start with a
    sampled namespace part, those that end with a sampled parent, and the dots, add up to the
    whole list only if every line is one of the sampled classes.  None: build every key.
    """
    count = len(hosts)
    sample = hosts[:CLASS_SAMPLE]
    pairs = set()
    for entry in sample:
        ns, _, name = entry.partition("/")
        if name.startswith("*."):
            ns, name = ns + _WILD, name[2:]
        pairs.add((ns, name.partition(".")[2]))
    spaces = {ns for ns, _ in pairs}
    parents = {parent for _, parent in pairs}
    if len(pairs) != len(spaces) * len(parents) or len(pairs) > 16 or "" in parents:
        return None
    if not policy.own_parents.isdisjoint(parents) or any(
        a != b and a.endswith("." + b) for a in parents for b in parents
    ):
        # an own name may be among them, or a line could end with two sampled parents
        return None
    names = text
    found_spaces = 0
    dots = 0
    for ns in spaces:
        found = text.count(f"\n{ns}/") + text.startswith(f"{ns}/")
        found_spaces += found
        dots += found * ns.count(".")
        names = names.replace(f"\n{ns}/", "\n")
        if names.startswith(f"{ns}/"):
            names = names[len(ns) + 1 :]
    found_parents = 0
    for parent in parents:
        found = text.count(f".{parent}\n") + text.endswith(f".{parent}")
        found_parents += found
        dots += found * (parent.count(".") + 1)
    if found_spaces != count or found_parents != count or text.count(".") != dots:
        return None
    # the names, "*." moved out: valid ones hold no '*' (and wildcards had two more characters)
    if "*" in names or not all_valid_joined(names, count, MAX_HOST_LENGTH - 2):
        return None
    keys = _import_keys(sample)
    return dict(zip(keys, range(len(keys)), strict=True))


# pairs of namespace parts and classes judged one by one when a list's classes are known
_COVERED_AT_MOST = 256


class Cover(dict[str, str]):
    """Class keys mapped to an entry of each class (one of the list's, or one made of a sampled
    namespace part and a sampled name): every entry of the list has one of these keys, though
    not every key need be an entry's.  When each of them is judged clean, so is the list.
    ``text``: the entries' joined text with the wildcards moved (``_wildcards_moved``), and
    ``entries`` the entries themselves."""

    __slots__ = ("entries", "text")

    def __init__(self) -> None:
        super().__init__()
        self.text = ""
        self.entries: list[str] = []


ImportClasses = tuple[Collection[Hashable], dict[Hashable, int] | Cover | None]


def covering_classes(policy: Policy, hosts: list[str], text: str) -> Cover | None:
    """A ``Cover`` of the classes of ``_checked_keys``, read from ``text`` (the entries' joined
    text with the wildcards moved, ``_wildcards_moved``) in passes of C; None: key each entry.

    Each entry's namespace part (wildcard moved in) is one of the first entries', each name is
    valid and its class (``nearest_known`` of its parent) is one of the first names' classes:
    so each entry's key is one of the pairs of a sampled namespace part and a sampled class,
    though which pair is not read.  Those pairs are few, and a made-up entry of a pair gets the
    verdict of every entry of that pair.  No per-entry string is built: the names' text is the
    entries' with the namespace parts removed, and a class is counted as names ending with it.
    """
    count = len(hosts)
    spaces: dict[str, None] = {}
    names: dict[str, None] = {}
    for entry in hosts[:CLASS_SAMPLE]:
        ns, _, name = entry.partition("/")
        if name.startswith("*."):
            ns, name = ns + _WILD, name[2:]
        spaces[ns] = None
        names[name] = None
    if len(spaces) > COUNTED_AT_MOST:
        # a pass over the text each
        return None
    # the sampled namespace parts removed from the lines' starts leave the names; a line of
    # another namespace part keeps its '/', which no valid name holds
    joined_names = text
    for ns in spaces:
        joined_names = joined_names.replace(f"\n{ns}/", "\n")
        if joined_names.startswith(f"{ns}/"):
            joined_names = joined_names[len(ns) + 1 :]
    # the names, "*." moved out: valid ones hold no '*' (and wildcards had two more characters)
    if "*" in joined_names or not all_valid_joined(joined_names, count, MAX_HOST_LENGTH - 2):
        return None
    sampled = list(names)
    classes = counted_classes(policy, sampled, joined_names, count)
    if classes is None:
        return None
    cover = Cover()
    for ns in spaces:
        for domain, index in classes.items():
            cover[_class_key(ns, domain)] = _entry(ns, sampled[index])
    return cover


def _entry(space: str, name: str) -> str:
    """The entry of a namespace part (wildcard moved in) and a name (``*.`` dropped)."""
    return (space[: -len(_WILD)] + "/*." if space.endswith(_WILD) else space + "/") + name


def _split_classes(
    policy: Policy, hosts: list[str], text: str
) -> dict[Hashable, int] | Cover | None:
    """Each class of ``_checked_keys`` mapped to one of its entries, or a ``Cover`` of the
    pairs of the namespace parts and the classes when they are few, read from ``text``, the
    entries' joined text with the wildcards moved (``_wildcards_moved``).

    Only when ``_checked_keys`` would class every entry by ``nearest_known``: with the wildcard
    prefix moved before the '/', one split of the text gives each entry's namespace part and
    its name; no key string is built for the entries.  None: build every key.
    """
    count = len(hosts)
    parts = text.replace("/", "\n").split("\n")
    spaces = parts[0::2]
    names = parts[1::2]
    # the names, "*." moved out: valid ones hold no '*' (and wildcards had two more characters)
    joined_names = "\n".join(names)
    if "*" in joined_names or not all_valid_joined(joined_names, count, MAX_HOST_LENGTH - 2):
        return None
    distinct = [spaces[0]] if spaces.count(spaces[0]) == count else list(dict.fromkeys(spaces))
    # the classes counted from the first names when that shows they are all; else each name's
    class_firsts = counted_classes(policy, names[:CLASS_SAMPLE], joined_names, count)
    classes = None
    if class_firsts is None:
        # own names and own suffixes (with "*." dropped) are known domains: this clears them
        if not policy.known_domains.isdisjoint(names):
            return None
        classes = classes_of_unknown_names(policy, names, joined_names)
        if classes is None:
            return None
        class_firsts = first_indexes(classes)
    if len(distinct) * len(class_firsts) <= _COVERED_AT_MOST:
        # every entry's pair is one of these: each judged by a made-up entry, no pair read
        cover = Cover()
        for ns in distinct:
            for cls, index in class_firsts.items():
                cover[_class_key(ns, cls)] = _entry(ns, names[index])
        return cover
    if classes is None:
        classes = classes_of_unknown_names(policy, names, joined_names)
        if classes is None:
            return None
    firsts = dict(zip(zip(spaces, classes, strict=True), range(count), strict=True))
    return {_class_key(ns, cls): index for (ns, cls), index in firsts.items()}


def _class_key(space: str, domain: str) -> str:
    """The key ``_checked_keys`` builds for a namespace part (wildcard moved in) and a class."""
    return (space[: -len(_WILD)] + "/*." if space.endswith(_WILD) else space + "/") + domain


def _checked_keys(policy: Policy, hosts: Sequence[str]) -> list[str] | None:
    """``_import_keys`` of every entry, when all are ``namespace/name`` with valid, dotted names."""
    try:
        names = list(map(itemgetter(2), map(str.partition, hosts, repeat("/"))))
    except TypeError:
        return None
    # valid names hold no '/' and are never empty: each entry had exactly one '/'
    if not all_valid_names(names) or not policy.own_names.isdisjoint(names):
        return None
    stripped = list(map(str.removeprefix, names, repeat("*.")))
    if not policy.own_suffixes.isdisjoint(stripped):
        return None
    parents = list(map(itemgetter(2), map(str.partition, stripped, repeat("."))))
    if "" in parents:
        # a name without a dot (require_dot), or a wildcard over a top-level domain
        return None
    if policy.known_domains.isdisjoint(stripped):
        # no name and no wildcard base is a domain the policy knows, so each is judged at the
        # nearest known domain above it: thousands of parents (h.p1.example.com,
        # h.p2.example.com...) are a few classes
        parents = nearest_known(policy, parents)
    return list(map(add, map(str.removesuffix, hosts, stripped), parents))


def _import_keys(hosts: Sequence[str]) -> list[str]:
    """ "ns/" or "ns/*." (the namespace part and whether it is a wildcard), then the parent.

    Only for entries ``_checked_keys`` accepts; the keys are built in C.
    """
    stripped = list(
        map(
            str.removeprefix,
            map(itemgetter(2), map(str.partition, hosts, repeat("/"))),
            repeat("*."),
        )
    )
    parents = map(itemgetter(2), map(str.partition, stripped, repeat(".")))
    return list(map(add, map(str.removesuffix, hosts, stripped), parents))


def _check_import(
    reader: Reader,
    policy: Policy,
    path: str,
    entry: str,
    allowed: frozenset[str],
    source: str,
    may: str,
) -> None:
    if entry.count("/") != 1:
        reader.add(path, f"{entry!r} must be 'namespace/dnsName' with exactly one '/'")
        return
    ns_part, _, raw = entry.partition("/")
    try:
        dns = "*" if raw == "*" else check_dns_name(raw, require_dot=True)
    except InvalidHostError as exc:
        reader.add(path, f"{entry!r}: {exc.why}")
        return
    if ns_part.startswith("~") and ns_part != "~":
        if policy.istio_version < SUBTRACTING_VERSION:
            # "~ns" subtracts only from 1.31; older validation rejects it
            # (docs/istio-semantics.md#trap-10)
            reader.add(
                path,
                f"{entry!r}: a '~namespace' exclusion needs Istio 1.31 or later; the mesh runs "
                f"{'.'.join(map(str, policy.istio_version))}, which rejects it",
            )
        return
    if ns_part == "~":
        # "no namespace" (1.30) or "exclude from every namespace" (1.31): never imports
        return
    if ns_part not in ("*", policy.egress_namespace):
        # '.', the own namespace, other tenants: their ServiceEntries are checked on their own
        return
    imported = policy.services_imported_by(dns)
    extra = imported - allowed
    if extra:
        reader.add(
            path,
            f"{entry!r} would import {policy.describe_allowed(extra)}, which {source} may not "
            f"reach; allowed for {source}: {may}",
        )
        return
    if dns != "*" and not policy.is_internal(dns) and not policy.services_covering(dns) & allowed:
        # defense in depth: imports nothing today but would import any future entry for it
        domain = policy.cluster_domain
        in_cluster_domain = dns.removeprefix("*.") == domain or dns.endswith(f".{domain}")
        hint = (
            f" (only names under svc.{domain} are the cluster's Services, other names under "
            f"{domain} such as pod records resolve to any address the name spells: import "
            f"'{ns_part}/*.svc.{domain}' for the Services)"
            if in_cluster_domain
            else ""
        )
        reader.add(
            path,
            f"{entry!r} names {dns!r}, which is not an external service {source} may "
            f"reach{hint}; allowed for {source}: {may}",
        )


def _check_unique(
    reader: Reader, review: Review, view: ClusterView, selector: dict[str, str] | None
) -> None:
    for other in view.sidecars(review.namespace):
        other_name = name_of(other)
        if other_name == review.name:
            continue
        other_selector = _selector_of_object(other)
        if selector is None and other_selector is None:
            reader.add(
                "spec.workloadSelector",
                f"namespace {review.namespace} already has the selector-less Sidecar "
                f"{other_name!r}; Istio applies only the oldest one, so this one would be "
                "ignored or would replace it. Use a workloadSelector for specific workloads",
            )
        elif (
            selector is not None
            and other_selector is not None
            and is_managed(other)
            and selectors_may_overlap(selector, other_selector)
        ):
            reader.add(
                "spec.workloadSelector.labels",
                f"selector {format_labels(selector)} can select the same pods as the managed "
                f"Sidecar {other_name!r} {format_labels(other_selector)}; Istio applies only one "
                "Sidecar per pod and merges nothing, so ask for the egress change in the policy",
            )

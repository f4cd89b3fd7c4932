"""A random search for the objects that take longest to answer, up to the API server's 3 MiB.

Starts from the review fuzzer's plausible object of every governed kind
(``tests.unit.fuzz_reviews.SEEDS``), picks one of its lists at random (containers, hosts,
endpoints, routes, peers, subsets...) and grows it to the size asked for with copies of its
first element, made unique (``unique``: each string gets its own index, dotted quads their own
address, names their own first label), repeated verbatim (``repeat``: what a memo loves most)
or cycling through a few values (``cycle``).  Each object is answered by the webhook's review
handler under the banzai-demo policy and one allowing the worst-case objects, and the slowest
answers are printed with their size and CPU milliseconds per KiB.  Not a test: run it as
``python -m tests.bench.slowest_objects [--trials N] [--mib M] [--seed S] [--only TEXT]``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import random
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tests.bench.worst_case import (
    MIB,
    ReviewHandler,
    default_policies,
    quiet_logs,
    review_body,
    review_handler,
    time_answer,
)
from tests.unit.fuzz_reviews import SEEDS
from webhook.admission.server import GC_THRESHOLD

MODES = ("unique", "repeat", "cycle")
_QUAD = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}")
Path = tuple[Any, ...]


@dataclass(frozen=True)
class Found:
    """One object answered: what it was, how big, how long."""

    kind: str
    path: str
    mode: str
    policy: str
    count: int
    size: int
    ms: float

    @property
    def ms_per_kib(self) -> float:
        """CPU milliseconds per KiB of review."""
        return self.ms / (self.size / 1024)


def list_paths(value: Any, path: Path = ()) -> Iterator[Path]:
    """The path of every non-empty list inside ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from list_paths(item, (*path, key))
    elif isinstance(value, list):
        if value:
            yield path
        for i, item in enumerate(value):
            yield from list_paths(item, (*path, i))


def variant(value: Any, index: int) -> Any:
    """``value`` with every string made unique to ``index`` in a shape-keeping way."""
    if isinstance(value, dict):
        return {k: variant(v, index) for k, v in value.items()}
    if isinstance(value, list):
        return [variant(v, index) for v in value]
    if not isinstance(value, str) or not value:
        return value
    if _QUAD.fullmatch(value):
        head = value.rsplit(".", 2)[0]
        return f"{head}.{(index >> 8) & 255}.{index & 255}"
    if "/" in value:
        ns, _, name = value.partition("/")
        return f"{ns}/{variant(name, index)}"
    if value.startswith("*."):
        return f"*.x{index}.{value[2:]}"
    if "." in value:
        return f"x{index}.{value}"
    return f"{value}-{index}"


def element(template: Any, index: int, mode: str) -> Any:
    """The ``index``-th element grown from ``template`` in ``mode``."""
    if mode == "repeat":
        return copy.deepcopy(template)
    return variant(template, index % 7 if mode == "cycle" else index)


def grown(seed: dict[str, Any], path: Path, mode: str, count: int) -> dict[str, Any]:
    """``seed`` with the list at ``path`` grown to ``count`` elements."""
    manifest = copy.deepcopy(seed)
    holder: Any = manifest
    for key in path[:-1]:
        holder = holder[key]
    template = holder[path[-1]][0]
    holder[path[-1]] = [element(template, i, mode) for i in range(count)]
    return manifest


def sized(build: Callable[[int], dict[str, Any]], target_bytes: int) -> tuple[int, bytes]:
    """The largest count (and its review body) that fits in ``target_bytes``."""
    per_item = max(1.0, (len(review_body(build(64))) - len(review_body(build(1)))) / 63)
    count = max(1, int(target_bytes / per_item))
    body = review_body(build(count))
    while count > 1 and len(body) > target_bytes:
        count = int(count * 0.97)
        body = review_body(build(count))
    return count, body


def search(
    trials: int,
    target_bytes: int,
    rng: random.Random,
    policies: dict[str, str],
    only: Sequence[str] = (),
) -> list[Found]:
    """Answer ``trials`` random grown objects under every policy; all results.

    With ``only``, the draws are the same but an object is built and answered only when its
    ``kind path mode`` (``Job spec.template.spec.initContainers repeat``) contains one of
    those strings: a run can be repeated for just the objects it is about.
    """
    gc.set_threshold(*GC_THRESHOLD)
    quiet_logs()
    handlers: dict[str, ReviewHandler] = {n: review_handler(t) for n, t in policies.items()}
    candidates = [
        (kind, seed, path) for (_, kind), seed in sorted(SEEDS.items()) for path in list_paths(seed)
    ]
    found = []
    for _ in range(trials):
        kind, seed, path = rng.choice(candidates)
        mode = rng.choice(MODES)
        where = ".".join(str(p) for p in path)
        if only and not any(o.lower() in f"{kind} {where} {mode}".lower() for o in only):
            continue

        def build(
            n: int, seed: dict[str, Any] = seed, path: Path = path, mode: str = mode
        ) -> dict[str, Any]:
            return grown(seed, path, mode, n)

        count, body = sized(build, target_bytes)
        manifest = build(count)
        for name, handler in handlers.items():
            ms = time_answer(handler, manifest, repeat=2)[0]
            found.append(Found(kind, where, mode, name, count, len(body), ms))
    return found


def table(found: Sequence[Found], top: int) -> list[str]:
    """Markdown rows of the ``top`` slowest answers."""
    lines = [
        "| kind | grown list | elements | policy | n | review JSON | answer ms | ms per KiB |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for f in sorted(found, key=lambda f: f.ms, reverse=True)[:top]:
        lines.append(
            f"| {f.kind} | {f.path} | {f.mode} | {f.policy} | {f.count:,} "
            f"| {f.size / MIB:.2f} MiB | {f.ms:.1f} | {f.ms_per_kib:.4f} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Print the slowest objects found."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=60, help="objects to build and answer")
    parser.add_argument("--mib", type=float, default=3.0, help="review size to grow to")
    parser.add_argument("--seed", type=int, default=1, help="random seed (a run repeats)")
    parser.add_argument("--top", type=int, default=12, help="rows to print")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="answer only the draws whose 'kind path mode' contains this (repeatable)",
    )
    args = parser.parse_args(argv)
    found = search(
        args.trials,
        int(args.mib * MIB),
        random.Random(args.seed),
        default_policies(),
        args.only,
    )
    print("\n".join(table(found, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

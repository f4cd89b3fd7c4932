"""Benchmark results kept as data, and the README's performance section rendered from them.

Each benchmark run with ``--save`` (as ``make bench`` and ``make bench-cluster`` run them) writes
its summary to ``tests/bench/results/NAME.json``, stamped with the machine, the time, the load
average and the command.  ``python -m tests.bench.results`` renders the README's performance
section from those files and writes it between the section's markers; ``--check`` only says
whether the README is current, which a unit test asks, so the section can never drift from the
measurements it quotes.  docs/performance.md keeps the full tables.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

RESULTS_DIR = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN = "<!-- performance: rendered by `python -m tests.bench.results` from tests/bench/results -->"
END = "<!-- end of performance -->"


def machine() -> str:
    """The machine, as the section and the result files name it."""
    return (
        f"{os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}"
    )


def save(name: str, data: Mapping[str, Any], *, module: str, argv: Sequence[str]) -> Path:
    """Write one benchmark's summary with what it ran on; returns the file."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    stamped = {
        "command": f"python -m {module} {shlex.join(argv)}".strip(),
        "machine": machine(),
        "date": datetime.date.today().isoformat(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        **data,
    }
    path.write_bytes(orjson.dumps(stamped, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def load(name: str, directory: Path = RESULTS_DIR) -> dict[str, Any] | None:
    """One benchmark's saved summary, or None when it was never saved."""
    path = directory / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _cpu(got: Mapping[str, Any]) -> str:
    """Server CPU per review of both servers, when the run measured it."""
    if not got.get("cpu_us") or not got.get("ceiling_cpu_us"):
        return ""
    return (
        f"; server CPU per review {got['cpu_us']:.0f} µs against {got['ceiling_cpu_us']:.0f} "
        f"({got['ceiling_cpu_us'] / got['cpu_us']:.2f}x)"
    )


def _service_rows(service: Mapping[str, Any]) -> list[str]:
    rows = []
    for layout, got in service.get("layouts", {}).items():
        ratio, p99 = got["ratio"], got["p99_ratio"]
        rows.append(
            f"| unique reviews, {layout}: ≥ 0.9x the do-nothing server, "
            f"p99 ≤ 1.25x | {ratio:.2f}x ({got['ratio_min']:.2f}-{got['ratio_max']:.2f} over "
            f"{got['rounds']} rounds), p99 {p99:.2f}x, connections {' '.join(got['splits'])}"
            + _cpu(got)
            + f" | {_met(ratio >= 0.9 and p99 <= 1.25)} |"
        )
    rows += _service_floor_rows(service)
    lookups = service.get("lookup_us", {})
    if lookups:
        worst = max(lookups.values())
        sizes = sorted(int(k) for k in lookups)
        rows.append(
            f"| host lookup ≤ 1 µs, {sizes[0]:,} to {sizes[-1]:,} hosts "
            f"| {min(lookups.values()):.2f}-{worst:.2f} µs | {_met(worst <= 1.0)} |"
        )
    compiles = service.get("compile_ms", {})
    limits = {"10000": 50.0, "100000": 500.0}
    shown = [(k, compiles[k], limits[k]) for k in limits if k in compiles]
    if shown:
        rows.append(
            "| policy compile, parse included: ≤ 50 ms at 10,000 hosts, ≤ 500 ms at 100,000 | "
            + ", ".join(f"{ms:.0f} ms at {int(k):,}" for k, ms, _ in shown)
            + f" | {_met(all(ms <= limit for _, ms, limit in shown))} |"
        )
    worst_cases = service.get("worst_case", [])
    if worst_cases:
        slowest = max(worst_cases, key=lambda c: c["ms"])
        rows.append(
            "| any object up to 3 MiB decided in ≤ 100 ms (the fixed worst-case table; the random "
            "search's finds are in docs/performance.md) "
            f"| slowest: {slowest['object']} "
            f"({slowest['mib']:.2f} MiB, {slowest['verdict']}) {slowest['ms']:.0f} ms"
            + (
                f", its decoded review freed after the answer in {slowest['freed_ms']:.0f} ms more"
                if "freed_ms" in slowest
                else ""
            )
            + f" | {_met(slowest['ms'] <= 100)} |"
        )
    rss = service.get("rss_mib", {})
    if "10000" in rss:
        rows.append(
            "| worker RSS ≤ 64 MiB at 10,000 hosts | "
            + ", ".join(f"{mib:.0f} MiB at {int(k):,}" for k, mib in rss.items())
            + f" | {_met(rss['10000'] <= 64)} |"
        )
    return rows


def _service_floor_rows(service: Mapping[str, Any]) -> list[str]:
    """egress-guard against the stack floor, when the run measured it (older results did not)."""
    cells = [
        f"{layout}: {got['floor_ratio']:.2f}x ({got['floor_ratio_min']:.2f}-"
        f"{got['floor_ratio_max']:.2f}), p99 {got['floor_p99_ratio']:.2f}x"
        for layout, got in service.get("layouts", {}).items()
        if "floor_ratio" in got
    ]
    if not cells:
        return []
    return [
        "| unique reviews against the stack floor, a do-nothing plain WSGI callable (no "
        f"flask): for information, not a target | {'; '.join(cells)} | — |"
    ]


def _cluster_floor_rows(cluster: Mapping[str, Any]) -> list[str]:
    """The in-cluster counterpart of ``_service_floor_rows``."""
    cells = []
    for phase, got in cluster.get("phases", {}).items():
        # a ratio is missing when the floor added no measurable cost in any round
        shown = [
            f"{label} {got[key]['median']:.2f}x"
            for key, label in (
                ("floor_p50_ratio", "medians"),
                ("floor_call_ratio", "API server call"),
            )
            if key in got
        ]
        if shown:
            cells.append(f"{phase}: {', '.join(shown)}")
    if not cells:
        return []
    return [
        "| in the cluster, added cost against a do-nothing plain WSGI webhook (no flask): for "
        f"information, not a target | {'; '.join(cells)} | — |"
    ]


def _cluster_rows(cluster: Mapping[str, Any]) -> list[str]:
    rows = []
    for phase, got in cluster.get("phases", {}).items():
        p50, call = got["p50_ratio"], got["call_ratio"]
        rows.append(
            f"| in the cluster, {phase}: added cost ≤ 1.1x the do-nothing webhook's "
            f"| medians {p50['median']:.2f}x ({p50['min']:.2f}-{p50['max']:.2f}), API server "
            f"call {call['median']:.2f}x ({call['min']:.2f}-{call['max']:.2f}); "
            f"{cluster['rounds']} rounds | {_met(p50['median'] <= 1.1 and call['median'] <= 1.1)} |"
        )
    return rows + _cluster_floor_rows(cluster)


def _edit_rows(edits: Mapping[str, Any]) -> list[str]:
    sizes = edits.get("sizes", {})
    shown = {k: v for k, v in sizes.items() if int(k) in (10_000, 100_000)}
    if not shown:
        return []
    cells = []
    ok = True
    for hosts, got in shown.items():
        if got.get("median_ms") is None:
            cells.append(f"{int(hosts):,} hosts: {got.get('note', 'not measured')}")
            ok = False
        else:
            cells.append(f"{got['median_ms']:.0f} ms at {int(hosts):,} hosts")
            ok = ok and got["median_ms"] <= 1000
    return [
        "| ConfigMap edit → enforcement ≤ 1 s, 10,000 and 100,000 hosts "
        f"| {', '.join(cells)} | {_met(ok)} |"
    ]


def _match_rows(match: Mapping[str, Any]) -> list[str]:
    scale = match.get("phases", {}).get("scale")
    if not scale:
        return []
    return [
        f"| UPDATEs that cannot change egress never sent (matchConditions) "
        f"| {scale['operations']} scale patches: {scale['without']} reviews → {scale['with']} "
        f"| {_met(scale['with'] == 0)} |"
    ]


SECTIONS: tuple[tuple[str, Callable[[Mapping[str, Any]], list[str]]], ...] = (
    ("service", _service_rows),
    ("cluster", _cluster_rows),
    ("policy_edit", _edit_rows),
    ("match_conditions", _match_rows),
)


def section(directory: Path = RESULTS_DIR) -> str:
    """The README's performance section, markers included."""
    rows: list[str] = []
    sources = []
    machines = []
    for name, render in SECTIONS:
        data = load(name, directory)
        if data is None:
            continue
        rows += render(data)
        machines.append(str(data["machine"]))
        sources.append(
            f"`{data['command']}` ({data['date']}, load average "
            f"{' '.join(f'{x:.2f}' for x in data['load_average'])} at the end)"
        )
    lines = [
        BEGIN,
        "Targets and the latest measured figures, each the median of rotating rounds run side by "
        "side with a baseline; the full tables and how each was taken are in "
        "[docs/performance.md](docs/performance.md).",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *rows,
        "",
        f"Machine: {', '.join(sorted(set(machines))) or machine()}. Made by "
        f"`make bench` and `make bench-cluster`: {'; '.join(sources)}.",
        END,
    ]
    return "\n".join(lines)


def with_section(readme: str, rendered: str) -> str:
    """``readme`` with the text between the markers replaced by ``rendered``."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no performance markers ({BEGIN!r} ... {END!r})")
    return readme[:start] + rendered + readme[end + len(END) :]


def main(argv: Sequence[str] | None = None) -> int:
    """Write the README's performance section, or with ``--check`` say whether it is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="exit 1 when the README is stale")
    parser.add_argument("--readme", type=Path, default=README)
    args = parser.parse_args(argv)
    current = args.readme.read_text(encoding="utf-8")
    updated = with_section(current, section())
    if args.check:
        if updated != current:
            print("README performance section is stale: python -m tests.bench.results")
            return 1
        return 0
    args.readme.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

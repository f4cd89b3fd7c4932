from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.bench import results

pytestmark = pytest.mark.unit


WORST_CASE_ROW = (
    "any object up to 3 MiB decided in ≤ 100 ms (the fixed worst-case table; the random "
    "search's finds are in docs/performance.md)"
)


def test_the_readme_performance_section_is_rendered_from_the_saved_results() -> None:
    readme = results.README.read_text(encoding="utf-8")
    assert results.with_section(readme, results.section()) == readme, (
        "run: python -m tests.bench.results"
    )


def write(directory: Path, name: str, data: dict[str, object]) -> None:
    stamped = {
        "command": f"python -m tests.bench.{name}",
        "machine": "2 CPUs, CPython 3.11.7, x86_64",
        "date": "2026-12-01",
        "load_average": [0.1, 0.2, 0.3],
        **data,
    }
    (directory / f"{name}.json").write_bytes(orjson.dumps(stamped))


def test_each_target_says_met_or_not_from_the_figures(tmp_path: Path) -> None:
    layout = {
        "rounds": 3,
        "ratio_min": 0.8,
        "ratio_max": 1.0,
        "guard_rate": 1.0,
        "ceiling_rate": 1.0,
        "splits": ["4/4"],
        "ceiling_splits": ["4/4"],
    }
    write(
        tmp_path,
        "service",
        {
            "layouts": {
                "1x8": {**layout, "ratio": 0.95, "p99_ratio": 1.1},
                "2x4": {**layout, "ratio": 0.85, "p99_ratio": 1.1},
            },
            "lookup_us": {"100": 0.5, "100000": 0.9},
            "compile_ms": {"10000": 30.0, "100000": 600.0},
            "worst_case": [
                {"object": "Pod", "policy": "p", "mib": 3.0, "ms": 40.0, "verdict": "deny"}
            ],
            "rss_mib": {"10000": 50.0},
        },
    )
    rows = {
        line.split("|")[1].strip(): line.split("|")[-2].strip()
        for line in results.section(tmp_path).splitlines()
        if line.startswith("| ") and not line.startswith("| target")
    }
    assert rows["unique reviews, 1x8: ≥ 0.9x the do-nothing server, p99 ≤ 1.25x"] == "met"
    assert rows["unique reviews, 2x4: ≥ 0.9x the do-nothing server, p99 ≤ 1.25x"] != "met"
    assert rows["host lookup ≤ 1 µs, 100 to 100,000 hosts"] == "met"
    compile_row = "policy compile, parse included: ≤ 50 ms at 10,000 hosts, ≤ 500 ms at 100,000"
    assert rows[compile_row] != "met"
    assert rows[WORST_CASE_ROW] == "met"
    assert rows["worker RSS ≤ 64 MiB at 10,000 hosts"] == "met"


def test_a_readme_without_the_markers_is_an_error() -> None:
    with pytest.raises(ValueError, match="markers"):
        results.with_section("# README\n", "section")


def test_worst_cases_are_kept_in_the_shape_the_section_reads(tmp_path: Path) -> None:
    from tests.bench import worst_case

    case = worst_case.Case(
        "Sidecar importing n hosts", "p", 10, 3 * 2**20, 42.0, 20.0, 30.0, 5.0, "allow", 0
    )
    kept = worst_case.summary([case])
    write(tmp_path, "service", {"worst_case": kept})
    assert (
        "Sidecar importing n hosts (3.00 MiB, allow) 42 ms, its decoded review freed after the "
        "answer in 5 ms more | met"
    ) in results.section(tmp_path)


def test_the_stack_floor_is_shown_as_information_once_measured(tmp_path: Path) -> None:
    layout = {
        "rounds": 3,
        "ratio": 0.95,
        "ratio_min": 0.9,
        "ratio_max": 1.0,
        "p99_ratio": 1.1,
        "splits": ["8"],
    }
    floor = {"floor_ratio": 0.8, "floor_ratio_min": 0.7, "floor_ratio_max": 0.85}
    spread = {"median": 0.9, "min": 0.8, "max": 1.0}
    phase = {"p50_ratio": spread, "call_ratio": spread}
    write(tmp_path, "service", {"layouts": {"1x8": layout}})
    write(tmp_path, "cluster", {"rounds": 3, "phases": {"1 connection": phase}})
    assert "plain WSGI" not in results.section(tmp_path), "older results lack the floor"

    write(tmp_path, "service", {"layouts": {"1x8": {**layout, **floor, "floor_p99_ratio": 1.3}}})
    floor_phase = {"floor_p50_ratio": {**spread, "median": 1.6}, "floor_call_ratio": spread}
    write(tmp_path, "cluster", {"rounds": 3, "phases": {"1 connection": {**phase, **floor_phase}}})
    rows = [line for line in results.section(tmp_path).splitlines() if "plain WSGI" in line]
    assert len(rows) == 2
    assert "1x8: 0.80x (0.70-0.85), p99 1.30x | — |" in rows[0]
    assert "1 connection: medians 1.60x, API server call 0.90x | — |" in rows[1]

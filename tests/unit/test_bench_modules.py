"""The benchmark scripts are not run by the suite, so their imports are: a module they use that
moved or was renamed fails here instead of at the next ``make bench``."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize(
    "module", sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "__init__")
)
def test_every_benchmark_script_imports(module: str) -> None:
    importlib.import_module(f"tests.bench.{module}")

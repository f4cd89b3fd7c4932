"""Deterministic fuzz runs: draw tenant attempts with a seed, judge them world by world.

Hypothesis draws the attempts (so the strategies stay the usual composable ones) during its
generate phase only, with a fixed seed and no example database, and the attempts are then judged
in batches: one validation and one or two simulations per batch instead of one per object.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests.meshfuzz.differential import Oracle, Tally, run_batch
from tests.meshfuzz.tenants import tenant_objects
from tests.meshfuzz.worlds import World, worlds

DEFAULT_SEED = 20261201
BATCH = 25


@dataclass(frozen=True, slots=True)
class Run:
    """A finished fuzz run: its tally and how long it took."""

    tally: Tally
    seconds: float
    seed: int

    def summary(self) -> str:
        """The line ``make fuzz-mesh`` prints."""
        rate = self.tally.tried / self.seconds if self.seconds else 0.0
        return (
            f"seed {self.seed}: {self.tally.summary()}; {self.seconds:.1f} s, {rate:.1f} objects/s"
        )


def draw_attempts(
    world_list: Sequence[World], seed: int, examples: int
) -> list[tuple[int, list[dict[str, Any]]]]:
    """``examples`` attempts ``(world index, objects)``, the same for the same seed."""
    strategy = st.integers(0, len(world_list) - 1).flatmap(
        lambda i: tenant_objects(world_list[i]).map(lambda objects: (i, objects))
    )
    found: list[tuple[int, list[dict[str, Any]]]] = []

    @settings(
        max_examples=examples,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis_seed(seed)
    @given(strategy)
    def collect(attempt: tuple[int, list[dict[str, Any]]]) -> None:
        found.append(attempt)

    collect()
    return found


def fuzz(oracle: Oracle, *, seed: int = DEFAULT_SEED, examples: int = 200) -> Run:
    """Draw ``examples`` attempts over every world and judge them against the oracle."""
    world_list = worlds()
    start = time.monotonic()
    attempts = draw_attempts(world_list, seed, examples)
    tally = Tally()
    for index, world in enumerate(world_list):
        mine = [objects for i, objects in attempts if i == index]
        for first in range(0, len(mine), BATCH):
            tally.add(run_batch(world, oracle, mine[first : first + BATCH]))
    return Run(tally, time.monotonic() - start, seed)

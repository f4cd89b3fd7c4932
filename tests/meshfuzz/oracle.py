"""The oracle as the differential fuzzer uses it: one callable, request dict in, answer out."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from tests import meshsim

OracleCall = Callable[[Mapping[str, Any]], Mapping[str, Any]]


def calling(process: meshsim.Oracle) -> OracleCall:
    """One request, one answer, on a running oracle process."""

    def ask(request: Mapping[str, Any]) -> Mapping[str, Any]:
        return process.requests([request])[0]

    return ask


@contextmanager
def start_oracle() -> Iterator[OracleCall]:
    """Build (or find) the oracle, run it for the duration of the block."""
    with meshsim.Oracle(meshsim.build_oracle()) as process:
        yield calling(process)

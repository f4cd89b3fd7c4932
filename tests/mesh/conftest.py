"""The ``mesh_oracle`` fixture: one oracle process per test session, built on first use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.meshsim import Oracle, close_shared_oracle, shared_oracle


@pytest.fixture(scope="session")
def mesh_oracle() -> Iterator[Oracle]:
    """The running oracle; a missing Go toolchain or a failed build fails the test, never skips."""
    yield shared_oracle()
    close_shared_oracle()

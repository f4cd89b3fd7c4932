"""The oracle fixture: the session's shared meshsim process, built on first use."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.meshfuzz.differential import Oracle
from tests.meshfuzz.oracle import calling
from tests.meshsim import close_shared_oracle, shared_oracle


@pytest.fixture(scope="session")
def oracle() -> Iterator[Oracle]:
    """Requests to the oracle; a missing toolchain or failed build fails the test, never skips."""
    yield calling(shared_oracle())
    close_shared_oracle()

"""The oracle fixture: one meshsim process for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.meshfuzz.differential import Oracle
from tests.meshfuzz.oracle import start_oracle


@pytest.fixture(scope="session")
def oracle() -> Iterator[Oracle]:
    with start_oracle() as process:
        yield process

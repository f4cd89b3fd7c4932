"""The oracle fixture: one meshsim process for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mesh.differential import Oracle
from tests.mesh.oracle import start_oracle


@pytest.fixture(scope="session")
def oracle() -> Iterator[Oracle]:
    with start_oracle() as process:
        yield process

"""The handler's memory is bounded: once the decision cache is full, answering ever more distinct
reviews allocates nothing that stays (Python's own heap, traced; the soak measures RSS)."""

from __future__ import annotations

import gc
import logging
import tracemalloc
from collections.abc import Iterator

import pytest
from werkzeug.test import Client

from tests.bench.soak import policy_with_hosts, review_bodies
from tests.unit.served_app import served_app

pytestmark = pytest.mark.unit

CACHE_SIZE = 128
DISTINCT = 4 * CACHE_SIZE
# a few arenas' worth of slack for interned strings and free lists, far below one cache's worth
SLACK_BYTES = 64 * 1024


@pytest.fixture
def quiet() -> Iterator[None]:
    logger = logging.getLogger("webhook")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def traced_after(client: Client, bodies: list[bytes]) -> int:
    for body in bodies:
        answer = client.post("/validate", data=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.usefixtures("quiet")
def test_distinct_reviews_past_the_cache_size_leave_nothing_behind() -> None:
    app, _ = served_app(policy_with_hosts(100), cache_size=CACHE_SIZE)
    client = Client(app)
    bodies = review_bodies(DISTINCT)
    traced_after(client, bodies)  # the cache fills and starts evicting
    tracemalloc.start()
    try:
        first = traced_after(client, bodies)
        second = traced_after(client, bodies)
        third = traced_after(client, bodies)
    finally:
        tracemalloc.stop()
    assert second - first < SLACK_BYTES, (first, second, third)
    assert third - first < SLACK_BYTES, (first, second, third)


@pytest.mark.usefixtures("quiet")
def test_the_decision_cache_is_what_holds_memory_and_it_is_bounded() -> None:
    # the same load with a cache twice as large keeps more: what the first test measures is the
    # cache at its bound, not a heap too coarse to see anything
    sizes = {}
    for size in (CACHE_SIZE, 2 * CACHE_SIZE):
        app, _ = served_app(policy_with_hosts(100), cache_size=size)
        client = Client(app)
        bodies = review_bodies(DISTINCT)
        tracemalloc.start()
        try:
            sizes[size] = traced_after(client, bodies)
        finally:
            tracemalloc.stop()
        del app, client
    assert sizes[2 * CACHE_SIZE] - sizes[CACHE_SIZE] > SLACK_BYTES, sizes

from __future__ import annotations

import pytest
from gunicorn.workers.gthread import ThreadWorker

from webhook.admission.worker import (
    ACCEPT_PAUSE_MAX,
    ACCEPT_PAUSE_PER_CONNECTION,
    FairThreadWorker,
    accept_pause,
    fair_worker,
)

pytestmark = pytest.mark.unit


def test_a_single_worker_never_steps_back_from_the_socket() -> None:
    assert accept_pause(0, 1) == 0.0
    assert accept_pause(500, 1) == 0.0


def test_the_pause_grows_with_the_connections_a_worker_holds() -> None:
    assert accept_pause(0, 2) == 0.0
    assert accept_pause(1, 2) == pytest.approx(ACCEPT_PAUSE_PER_CONNECTION)
    assert accept_pause(3, 4) == pytest.approx(3 * ACCEPT_PAUSE_PER_CONNECTION)
    assert accept_pause(2, 2) > accept_pause(1, 2)


def test_the_pause_is_capped_so_a_connection_never_waits_long() -> None:
    assert accept_pause(10_000, 2) == ACCEPT_PAUSE_MAX


def test_the_worker_class_carries_the_connection_lifetime() -> None:
    worker = fair_worker(7.5)
    assert issubclass(worker, FairThreadWorker)
    assert issubclass(worker, ThreadWorker)
    assert worker.connection_lifetime == 7.5
    assert FairThreadWorker.connection_lifetime > 0


@pytest.mark.parametrize(
    ("timeout", "clock", "beats"),
    [
        # once a second against a long timeout: at 0.0, 1.0 and 2.5
        (15.0, [0.0, 0.1, 0.5, 0.99, 1.0, 1.2, 2.5, 2.6], 3),
        # a short timeout still gets a heartbeat per quarter of it: at 0.0, 0.26 and 0.52
        (1.0, [0.0, 0.2, 0.26, 0.4, 0.52], 3),
    ],
)
def test_the_worker_tells_the_arbiter_it_is_alive_at_most_once_a_second(
    monkeypatch: pytest.MonkeyPatch, timeout: float, clock: list[float], beats: int
) -> None:
    sent: list[int] = []
    monkeypatch.setattr(ThreadWorker, "notify", lambda self: sent.append(1))
    ticks = iter(clock)
    monkeypatch.setattr("webhook.admission.worker.time.monotonic", lambda: next(ticks))
    worker = FairThreadWorker.__new__(FairThreadWorker)
    worker._next_notify = 0.0
    worker.timeout = timeout
    for _ in clock:
        worker.notify()
    assert len(sent) == beats

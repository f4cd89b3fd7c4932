"""Keep-alive connections opened together end up spread evenly over the worker processes.

The API server keeps its webhook connections for minutes, so a worker that wins most of the
accept race in a burst keeps that share of the load for good.  Here eight clients connect at the
same instant to a 2-worker service, each sends a review and keeps its connection; the workers
must hold 4 and 4, or 3 and 5 at worst.  Without the worker class's accept pause the same burst
landed 4/4 in about a third of the runs and as badly as 0/8.

When a worker dies its clients reconnect while the replacement starts, so the survivor holds
them all; connections are recycled after their lifetime, and the split must heal.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.integration.service import Service, admission_review, running_service, service_entry
from webhook.tls import generate_files

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLIENTS = 8
BURSTS = 3


def review() -> bytes:
    return orjson.dumps(
        admission_review(service_entry(["api.github.com"], namespace="app-a"), kind="ServiceEntry")
    )


def burst(svc: Service) -> list[http.client.HTTPSConnection]:
    """``CLIENTS`` connections opened at one instant, each answered once and kept open."""
    start = threading.Barrier(CLIENTS)
    connections: list[http.client.HTTPSConnection] = []
    failures: list[BaseException] = []
    body = review()

    def client() -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", svc.port, context=svc.ssl_context())
        connections.append(conn)
        try:
            start.wait(10)
            conn.request("POST", "/validate", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures, failures
    return connections


def settled(svc: Service, total: int) -> list[int]:
    """The per-worker counts once the server side has seen ``total`` established connections."""
    deadline = time.monotonic() + 5
    counts = svc.connections_per_worker()
    while sum(counts) != total and time.monotonic() < deadline:
        time.sleep(0.05)
        counts = svc.connections_per_worker()
    return counts


def two_workers(tmp_path: Path, *extra: str) -> contextlib.AbstractContextManager[Service]:
    """The real service with 2 workers of 4 threads, and ``extra`` options."""
    files = generate_files(tmp_path, ["127.0.0.1"])
    return running_service(
        tmp_path,
        cert_file=files.cert_file,
        key_file=files.key_file,
        ca_file=files.ca_file,
        extra_args=("--workers", "2", "--threads", "4", *extra),
    )


def test_connections_opened_together_spread_evenly_over_two_workers(tmp_path: Path) -> None:
    with two_workers(tmp_path) as svc:
        # a worker takes connections once it has loaded the app: wait until both have held one
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            connections = burst(svc)
            ready = settled(svc, CLIENTS)
            for conn in connections:
                conn.close()
            settled(svc, 0)
            if len(ready) == 2 and ready[0] > 0:
                break
            time.sleep(0.2)
        splits = []
        for _ in range(BURSTS):
            connections = burst(svc)
            splits.append(settled(svc, CLIENTS))
            for conn in connections:
                conn.close()
            settled(svc, 0)
        assert all(split in ([4, 4], [3, 5]) for split in splits), splits


def busy_clients(svc: Service, stop: threading.Event) -> list[threading.Thread]:
    """``CLIENTS`` clients sending reviews back to back, reconnecting whenever they must."""
    body = review()

    def client() -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", svc.port, context=svc.ssl_context())
        while not stop.is_set():
            try:
                conn.request("POST", "/validate", body, {"Content-Type": "application/json"})
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                # the connection's worker was killed: reconnect on the next request
                conn.close()
            time.sleep(0.01)
        conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    return threads


def even_split_within(svc: Service, seconds: float) -> list[int]:
    """The first per-worker split with every client connected and at most 3/5, or the last."""
    deadline = time.monotonic() + seconds
    counts = svc.connections_per_worker()
    while time.monotonic() < deadline:
        counts = svc.connections_per_worker()
        if len(counts) == 2 and sum(counts) == CLIENTS and counts[0] >= 3:
            break
        time.sleep(0.05)
    return counts


def test_the_split_heals_after_a_worker_is_killed(tmp_path: Path) -> None:
    with two_workers(tmp_path, "--connection-lifetime", "1") as svc:
        stop = threading.Event()
        threads = busy_clients(svc, stop)
        try:
            time.sleep(1)
            victim = svc.worker_pids()[0]
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
            # the clients of the killed worker are back at once, on the survivor
            time.sleep(0.3)
            after_kill = svc.connections_per_worker()
            healed = even_split_within(svc, 15)
        finally:
            stop.set()
            for thread in threads:
                thread.join(5)
        assert victim not in svc.worker_pids()
        assert len(healed) == 2 and healed[0] >= 3, (after_kill, healed)

"""``/metrics`` of a 2-worker service: every scrape counts what every worker answered.

A scrape is answered by whichever worker takes its connection, so each worker must report the
sum over all of them, those that have exited included: otherwise the totals jump between the
workers' own counts and Prometheus reads every jump down as a counter reset.  Which worker
served a batch of reviews is read from the connections each worker holds while the batch's
keep-alive connections are still open.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.service import Service, admission_review, running_service, service_entry
from webhook.tls import generate_files

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLIENTS = 8
REVIEWS_PER_CLIENT = 5
SCRAPES = 8
# two label sets of the requests counter: allowed and denied
HOSTS = ("api.github.com", "api.evil.io")


@contextlib.contextmanager
def two_workers(tmp_path: Path) -> Iterator[Service]:
    """The real service with 2 workers of 4 threads."""
    files = generate_files(tmp_path, ["127.0.0.1"])
    with running_service(
        tmp_path,
        cert_file=files.cert_file,
        key_file=files.key_file,
        ca_file=files.ca_file,
        extra_args=("--workers", "2", "--threads", "4"),
    ) as svc:
        yield svc


def connect(svc: Service) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection("127.0.0.1", svc.port, context=svc.ssl_context(), timeout=10)


def reviews_over_keep_alive(svc: Service) -> list[int]:
    """``CLIENTS`` connections opened together, ``REVIEWS_PER_CLIENT`` reviews on each.

    Returns how many of the connections each worker held, fewest first.
    """
    start = threading.Barrier(CLIENTS)
    connections = [connect(svc) for _ in range(CLIENTS)]
    failures: list[BaseException] = []

    def client(n: int) -> None:
        conn = connections[n]
        try:
            start.wait(10)
            for i in range(REVIEWS_PER_CLIENT):
                obj = service_entry([HOSTS[(n + i) % 2]], namespace="app-a")
                body = orjson.dumps(admission_review(obj, kind="ServiceEntry"))
                conn.request("POST", "/validate", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                assert response.status == 200
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert not failures, failures
        split = svc.connections_per_worker()
    finally:
        for conn in connections:
            conn.close()
    return split


def reviews_answered_by_both_workers(svc: Service) -> int:
    """Send batches until one is answered by both workers; how many reviews were sent."""
    sent = 0
    deadline = time.monotonic() + 20
    while True:
        split = reviews_over_keep_alive(svc)
        sent += CLIENTS * REVIEWS_PER_CLIENT
        # a worker takes connections only once it has loaded the app
        if len(split) == 2 and split[0] > 0:
            return sent
        assert time.monotonic() < deadline, f"one worker answered every batch: {split}"
        time.sleep(0.2)


def scrape(svc: Service) -> str:
    """``/metrics`` on a fresh connection, answered by whichever worker takes it."""
    conn = connect(svc)
    try:
        conn.request("GET", "/metrics", headers={"Connection": "close"})
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        conn.close()


def totals(text: str) -> tuple[float, float, int]:
    """Reviews counted, reviews timed, and how many policy info series the scrape holds."""
    requests = timed = 0.0
    info = 0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "egress_guard_admission_requests_total":
                requests += sample.value
            elif sample.name == "egress_guard_admission_duration_seconds_count":
                timed += sample.value
            elif sample.name == "egress_guard_policy_info":
                info += 1
    return requests, timed, info


def test_every_scrape_sums_every_worker_and_keeps_a_killed_workers_counts(
    tmp_path: Path,
) -> None:
    with two_workers(tmp_path) as svc:
        sent = reviews_answered_by_both_workers(svc)
        for _ in range(SCRAPES):
            text = scrape(svc)
            assert totals(text) == (sent, sent, 1), text
            assert text.count("# HELP egress_guard_policy_info ") == 1

        victim = svc.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        # answered by the survivor while gunicorn replaces the victim
        assert totals(scrape(svc)) == (sent, sent, 1)
        deadline = time.monotonic() + 15
        while victim in svc.worker_pids() or len(svc.worker_pids()) != 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            time.sleep(0.1)

        sent += reviews_answered_by_both_workers(svc)
        for _ in range(SCRAPES):
            assert totals(scrape(svc)) == (sent, sent, 1)

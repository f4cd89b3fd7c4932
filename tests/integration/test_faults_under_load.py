"""Faults injected while the real service (gunicorn, TLS, loopback) answers steady load.

The load is paced at about 70% of the capacity measured at the start of each test, on keep-alive
connections as the API server keeps them.  Each test names what may fail under its fault and
asserts that nothing else does:

- a worker killed with SIGKILL: at most the requests in flight on it, and a new worker answers
  within a second;
- the serving certificate rotated five times: nothing, not one handshake;
- the policy swapped ten times a second: nothing, and every answer names a revision that was in
  force at some point and carries exactly that revision's verdict (no torn reads);
- a burst of ten times the capacity for five seconds: every answer within the registration's
  ``timeoutSeconds`` (10 s), or a fast refusal.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.integration.load import Load, LoadReport, capacity
from tests.integration.service import (
    Service,
    admission_review,
    child_pids,
    running_service,
    service_entry,
)
from webhook.core.policy_parsing import parse_policy
from webhook.tls import CertificateFiles, KeyPair, generate_files, issue_serving_cert, write_pair

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

POLICY = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
mode: enforce
egress: {{namespace: external}}
externalServices:
  - name: partner
    hosts: [{host}]
    ports: [{{number: 443, protocol: TLS}}]
allow:
  - name: team-a
    from: {{namespace: team-a}}
    to: [partner]
"""
ALLOWED_HOST = "httpbin.org"
# the webhook registration's timeoutSeconds (the chart's default)
TIMEOUT_SECONDS = 10.0
LOAD_SHARE = 0.7


def bodies() -> list[bytes]:
    """ServiceEntries for the one host policy A allows and policy B does not; distinct objects,
    so the decision cache does not answer them all."""
    return [
        orjson.dumps(
            admission_review(
                service_entry([ALLOWED_HOST], namespace="team-a", name=f"se-{i}", kilobytes=1),
                kind="ServiceEntry",
            )
        )
        for i in range(64)
    ]


def allowed(payload: bytes) -> bool | None:
    response = orjson.loads(payload).get("response") or {}
    value = response.get("allowed")
    return value if isinstance(value, bool) else None


def write_atomically(path: Path, text: str) -> None:
    # as the kubelet swaps a mounted ConfigMap: the reader sees the old file or the new one
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@pytest.fixture
def service_files(tmp_path: Path) -> CertificateFiles:
    files = generate_files(tmp_path, ["127.0.0.1", "localhost"])
    (tmp_path / "policy.yaml").write_text(POLICY.format(host=ALLOWED_HOST))
    return files


@pytest.fixture
def serve(tmp_path: Path, service_files: CertificateFiles) -> Callable[..., Any]:
    def start(*extra: str) -> Any:
        return running_service(
            tmp_path,
            cert_file=service_files.cert_file,
            key_file=service_files.key_file,
            ca_file=service_files.ca_file,
            policy_file=tmp_path / "policy.yaml",
            extra_args=extra,
        )

    return start


def paced(svc: Service, **kw: Any) -> Load:
    """A load at ``LOAD_SHARE`` of the service's measured capacity."""
    measured = capacity(svc, bodies())
    return Load(svc, bodies(), rate=measured * LOAD_SHARE, verdict=allowed, **kw)


def alive(pid: int) -> bool:
    """Whether ``pid`` exists: a killed worker is gone once gunicorn has reaped it, which is
    after its last thread exited and its sockets closed (the group leader alone turns zombie
    earlier, while other threads still hold the connections)."""
    return Path(f"/proc/{pid}").exists()


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.01) -> float:
    """Seconds until ``condition`` held; fails the test after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail(f"not within {timeout} s")
        time.sleep(step)
    return time.monotonic() - started


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_worker_costs_at_most_its_in_flight_requests(
    serve: Callable[..., Any], workers: int
) -> None:
    with serve("--workers", str(workers)) as svc:
        wait_until(lambda: len(child_pids(svc.process.pid)) == workers, 10)
        load = paced(svc)
        with load.running() as report:
            time.sleep(2)
            victim = min(child_pids(svc.process.pid))
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            # its connections close when the kernel has torn it down, a little after the signal
            wait_until(lambda: not alive(victim), 5, step=0.001)
            dead_at = time.monotonic()
            wait_until(lambda: len(child_pids(svc.process.pid) - {victim}) == workers, 5)
            replaced = time.monotonic() - killed_at
            time.sleep(3)
        in_flight = [
            o for o in report.outcomes if o.sent <= dead_at and o.sent + o.seconds >= killed_at
        ]
        failures = report.failures
        print(
            f"workers={workers} dead after {(dead_at - killed_at) * 1000:.1f} ms, replaced in "
            f"{replaced:.3f} s, {len(failures)} failed of {len(in_flight)} in flight; "
            + report.summary()
        )
        assert replaced < 1.0, f"the worker was replaced after {replaced:.2f} s"
        assert all(o.sent <= dead_at for o in failures), [o.detail for o in failures]
        assert len(failures) <= len(in_flight), report.summary()
        # the replacement answers: requests sent a second after the kill all succeed
        after = [o for o in report.outcomes if o.sent > killed_at + 1.0]
        assert after and all(o.ok for o in after), report.summary()
        assert svc.process.poll() is None


def served_serial(svc: Service) -> int:
    import socket

    ctx = svc.ssl_context()
    with (
        socket.create_connection(("127.0.0.1", svc.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def test_certificate_rotated_five_times_under_load_fails_nothing(
    serve: Callable[..., Any], service_files: CertificateFiles, tmp_path: Path
) -> None:
    ca_key = serialization.load_pem_private_key((tmp_path / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(service_files.ca_file.read_bytes())
    ca = KeyPair(ca_cert, ca_key)  # type: ignore[arg-type]
    with serve() as svc:
        # a new connection every 20 requests: handshakes happen all through the rotations
        load = paced(svc, requests_per_connection=20)
        serials = []
        with load.running() as report:
            for _ in range(5):
                rotated = issue_serving_cert(ca, ["127.0.0.1", "localhost"])
                write_pair(rotated, service_files.cert_file, service_files.key_file)
                serial = rotated.certificate.serial_number
                wait_until(lambda s=serial: served_serial(svc) == s, 10, step=0.1)
                serials.append(serial)
                time.sleep(0.5)
        print(f"5 rotations; {report.summary()}")
        assert len(set(serials)) == 5
        assert not report.failures, report.summary()
        handshakes = len(report.outcomes) // 20
        assert handshakes > 50, "the load must keep opening connections"


def test_policy_swapped_ten_times_a_second_never_tears(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    policy_file = tmp_path / "policy.yaml"
    texts = {
        True: POLICY.format(host=ALLOWED_HOST),
        False: POLICY.format(host="api.partner.example"),
    }
    origin = f"file:{policy_file}"
    verdict_of = {parse_policy(text, name=origin).revision: ok for ok, text in texts.items()}
    assert len(verdict_of) == 2
    with serve("--policy-poll-interval", "0.02") as svc:
        load = paced(svc)
        swaps = 0
        with load.running() as report:
            started = time.monotonic()
            while swaps < 60:
                swaps += 1
                write_atomically(policy_file, texts[swaps % 2 == 0])
                # ten a second on a fixed schedule, however long the write took
                time.sleep(max(0.0, started + swaps * 0.1 - time.monotonic()))
        print(f"{swaps} swaps; {report.summary()}")
        assert not report.failures, report.summary()
        seen = {o.revision for o in report.outcomes}
        assert seen <= set(verdict_of), f"revisions never in force: {seen - set(verdict_of)}"
        assert seen == set(verdict_of), "both policies must have answered"
        torn = [o for o in report.outcomes if o.allowed is not verdict_of[o.revision]]
        assert not torn, f"{len(torn)} answers disagree with the revision they name"


# the API server's default --max-requests-inflight: as many webhook calls as it makes at once
BURST_CONNECTIONS = 400


def burst_report(svc: Service, rate: float, seconds: float) -> LoadReport:
    # each connection sends its next request when the last is answered or its turn comes,
    # whichever is later: the offered load is what 400 clients at once can push
    load = Load(
        svc, bodies(), rate=rate, connections=BURST_CONNECTIONS, timeout=TIMEOUT_SECONDS + 5
    )
    return load.run_for(seconds)


def test_a_burst_of_ten_times_capacity_is_answered_in_time_or_refused_fast(
    serve: Callable[..., Any],
) -> None:
    with serve() as svc:
        measured = capacity(svc, bodies())
        report = burst_report(svc, measured * 10, 5)
        print(f"capacity {measured:.0f}/s, burst offered {measured * 10:.0f}/s; {report.summary()}")
        slow = [o for o in report.outcomes if o.ok and o.seconds > TIMEOUT_SECONDS]
        assert not slow, f"{len(slow)} answers took longer than {TIMEOUT_SECONDS} s"
        unanswered = [o for o in report.failures if o.error != "refused"]
        assert not unanswered, report.summary()
        refused_slowly = [o for o in report.failures if o.seconds > 1.0]
        assert not refused_slowly, report.summary()
        # and it is still serving afterwards
        after = Load(svc, bodies(), rate=measured * LOAD_SHARE, verdict=allowed).run_for(2)
        assert not after.failures, after.summary()

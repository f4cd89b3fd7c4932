"""The controller's probe server on a real loopback socket, as the kubelet and Prometheus see it."""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Gauge

from webhook.kube.probing import ProbeResult, ProbeServer, probe_app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LOOPBACK = "127.0.0.1"


class SwitchableProbes:
    """Liveness and readiness the test flips while the server runs."""

    def __init__(self) -> None:
        self.alive = True
        self.ready = False

    def liveness(self) -> ProbeResult:
        return ProbeResult(self.alive, {"status": "ok" if self.alive else "stalled"})

    def readiness(self) -> ProbeResult:
        return ProbeResult(self.ready, {"status": "ready" if self.ready else "waiting"})


@pytest.fixture
def probes() -> SwitchableProbes:
    """The answers the server gives."""
    return SwitchableProbes()


@pytest.fixture
def server(probes: SwitchableProbes) -> Iterator[ProbeServer]:
    """A probe server on an ephemeral loopback port."""
    registry = CollectorRegistry()
    Gauge("egress_guard_controller_leader", "leader", registry=registry).set(1)
    running = ProbeServer(LOOPBACK, 0, probe_app(probes, registry)).start()
    yield running
    running.stop()


def get(connection: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    """One GET on a (possibly reused) connection."""
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, response.read()


def test_probes_follow_the_controllers_state(server: ProbeServer, probes: SwitchableProbes) -> None:
    connection = http.client.HTTPConnection(LOOPBACK, server.port, timeout=5)
    assert get(connection, "/healthz")[0] == 200
    status, body = get(connection, "/readyz")
    assert (status, json.loads(body)) == (503, {"status": "waiting"})
    probes.ready, probes.alive = True, False
    assert get(connection, "/readyz")[0] == 200
    assert get(connection, "/healthz")[0] == 503
    status, body = get(connection, "/metrics")
    assert status == 200 and b"egress_guard_controller_leader 1.0" in body
    connection.close()


def test_a_keep_alive_client_never_waits_on_nagle(server: ProbeServer) -> None:
    # an HTTP/1.1 client asks for keep-alive; the server answers and closes, so a small
    # response never sits behind a delayed ACK (40 ms each on Linux)
    connection = http.client.HTTPConnection(LOOPBACK, server.port, timeout=5)
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
        timings.append(time.perf_counter() - started)
        assert response.status == 200
        assert response.will_close
    connection.close()
    assert statistics.median(timings) < 0.03, timings


def test_stop_releases_the_port(probes: SwitchableProbes) -> None:
    running = ProbeServer(LOOPBACK, 0, probe_app(probes, CollectorRegistry())).start()
    port = running.port
    running.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((LOOPBACK, port), timeout=2)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_an_ipv6_address_gets_an_ipv6_socket(probes: SwitchableProbes) -> None:
    running = ProbeServer("::1", 0, probe_app(probes, CollectorRegistry())).start()
    try:
        connection = http.client.HTTPConnection("::1", running.port, timeout=5)
        assert get(connection, "/healthz")[0] == 200
        connection.close()
    finally:
        running.stop()

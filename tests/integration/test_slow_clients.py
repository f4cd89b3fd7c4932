"""Clients that stop sending halfway through a request cannot hold the webhook's threads.

gthread reads a request in one of its 8 threads; before the socket deadline, 8 connections that
sent headers and part of a body held every thread for ever, and nobody else got so much as a TLS
handshake, which with ``failurePolicy: Fail`` blocks every write in the cluster.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.integration.service import Service, admission_review, running_service, service_entry
from webhook.tls import generate_files

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

THREADS = 8
# the API server's default timeoutSeconds for a webhook call
TIMEOUT_SECONDS = 10.0
PARTIAL = (
    b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 4096\r\n\r\n{"apiVersion":'
)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    certs = generate_files(tmp_path / "certs", ["127.0.0.1"])
    with running_service(
        tmp_path, cert_file=certs.cert_file, key_file=certs.key_file, ca_file=certs.ca_file
    ) as svc:
        yield svc


def stalled(svc: Service, count: int) -> list[ssl.SSLSocket]:
    """``count`` connections that sent headers and the start of a body, then went quiet."""
    out = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", svc.port), timeout=30)
        tls = svc.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1")
        tls.sendall(PARTIAL)
        out.append(tls)
    return out


def test_stalled_requests_on_every_thread_do_not_block_a_review(service: Service) -> None:
    held = stalled(service, THREADS)
    try:
        time.sleep(0.2)
        body = orjson.dumps(
            admission_review(
                service_entry(["httpbin.org"], namespace="test-app"), kind="ServiceEntry"
            )
        )
        started = time.monotonic()
        conn = http.client.HTTPSConnection(
            "127.0.0.1", service.port, context=service.ssl_context(), timeout=30
        )
        conn.request("POST", "/validate", body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        answer.read()
        took = time.monotonic() - started
        conn.close()
        print(f"answered in {took:.1f} s with {THREADS} stalled requests")
        assert answer.status == 200
        assert took < TIMEOUT_SECONDS, f"answered after {took:.1f} s"
        # each stalled client was told why, not left hanging
        for tls in held:
            assert tls.recv(64).startswith(b"HTTP/1.1 408")
    finally:
        for tls in held:
            with contextlib.suppress(OSError):
                tls.close()
    log = "\n".join(service.log_lines())
    assert "the request body did not arrive in time" in log

"""The Reconciler's HTTP endpoints: ``/metrics`` for Prometheus, ``/healthz`` and ``/readyz``.

The webhook answers these on its HTTPS port; the Reconciler serves no API, so it gets a small
plain-HTTP server of its own that the kubelet can probe and Prometheus can scrape.  Liveness is a
heartbeat: the reconcile loop beats on every turn, so a loop stuck in a hung API call (the client
has no request timeout) or a watch thread that died turns ``/healthz`` into 503 and the kubelet
restarts the pod.  Readiness only says the caches have synced: a replica without a policy or
without the lease is still "ready", so its metrics stay scrapable exactly when they matter.

The server is wsgiref's, which answers HTTP/1.0 and closes every connection, so a keep-alive
client never meets Nagle's algorithm waiting on a delayed ACK; TCP_NODELAY is set anyway.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe's answer: healthy or not, and a JSON body saying why."""

    ok: bool
    detail: Mapping[str, Any] = field(default_factory=dict)


class Probes(Protocol):
    """What the endpoints ask (``Reconciler`` fits)."""

    def liveness(self) -> ProbeResult:
        """Whether the process should be left running."""
        ...

    def readiness(self) -> ProbeResult:
        """Whether the process is ready."""
        ...


class Heartbeat:
    """When a loop last showed it was alive; creation counts, so a loop that never starts ages."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        """The loop is alive now."""
        self._last = self._clock()

    def age(self) -> float:
        """Seconds since the last beat."""
        return self._clock() - self._last


def liveness(*, heartbeat_age: float, stale_after: float, dead: Sequence[str]) -> ProbeResult:
    """Alive while the loop beat within ``stale_after`` seconds and no background thread died."""
    age = round(heartbeat_age, 3)
    if dead:
        return ProbeResult(False, {"status": "thread died", "dead": sorted(dead)})
    if heartbeat_age > stale_after:
        detail = {"status": "reconcile loop stalled", "seconds_since_heartbeat": age}
        return ProbeResult(False, {**detail, "stale_after_seconds": stale_after})
    return ProbeResult(True, {"status": "ok", "seconds_since_heartbeat": age})


def readiness(*, unsynced: Sequence[str], **facts: Any) -> ProbeResult:
    """Ready once no cache is waiting for its first list; ``facts`` go into the body as is."""
    if unsynced:
        return ProbeResult(False, {"status": "caches not synced", "unsynced": sorted(unsynced)})
    return ProbeResult(True, {"status": "ready", **facts})


def _json(status: str, detail: Mapping[str, Any], start_response: StartResponse) -> list[bytes]:
    body = json.dumps(detail, sort_keys=True).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def probe_app(probes: Probes, registry: CollectorRegistry) -> WSGIApplication:
    """``/metrics`` from ``registry``, ``/healthz`` and ``/readyz`` from ``probes``."""
    metrics = make_wsgi_app(registry)
    answers: dict[str, Callable[[], ProbeResult]] = {
        "/healthz": probes.liveness,
        "/readyz": probes.readiness,
    }

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _json("405 Method Not Allowed", {"status": "GET only"}, start_response)
        if path == "/metrics":
            exposition: Iterable[bytes] = metrics(environ, start_response)
            return exposition
        probe = answers.get(path)
        if probe is None:
            return _json("404 Not Found", {"status": "not found"}, start_response)
        result = probe()
        status = "200 OK" if result.ok else "503 Service Unavailable"
        return _json(status, result.detail, start_response)

    return app


class _QuietHandler(WSGIRequestHandler):
    """No access log: the kubelet probes every few seconds and Prometheus scrapes too."""

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing."""


class _Server(ThreadingWSGIServer):
    """One thread per request (a slow scrape never delays a probe), no Nagle delay."""

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept, then turn Nagle off on the connection."""
        conn, address = super().get_request()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, address


class ProbeServer:
    """The endpoints of ``probe_app`` served over HTTP on a daemon thread."""

    def __init__(self, host: str, port: int, app: WSGIApplication) -> None:
        # the family of the address asked for: "::" needs an IPv6 socket
        [(family, *_), *_] = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        server_class = type("ProbeHTTPServer", (_Server,), {"address_family": family})
        self._server: WSGIServer = make_server(
            host, port, app, server_class, handler_class=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="probe-server", daemon=True
        )

    @property
    def port(self) -> int:
        """The port bound (the one the OS chose when asked for 0)."""
        return int(self._server.server_address[1])

    def start(self) -> ProbeServer:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

"""A bounded HTTPS load generator for the fault and soak tests: paced clients, every outcome kept.

Each client thread holds one keep-alive TLS connection, as the API server does, and sends its
share of the target rate on a fixed schedule (open loop: a slow answer does not lower the offered
load).  Like Go's HTTP client, a connection the server closed while idle is noticed before it is
reused (it is readable: EOF or reset), so only requests actually sent to a server that then went
away count as failures.  ``requests_per_connection`` closes connections on purpose, so every
client also does fresh TLS handshakes (certificate rotation).
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from tests.integration.service import Service

REVISION_HEADER = "X-Egress-Guard-Policy-Revision"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One request: when it was sent, how long it took, and what came back (or what broke)."""

    sent: float  # time.monotonic()
    seconds: float
    status: int = 0
    revision: str = ""
    allowed: bool | None = None
    # "" on an answer; else refused, handshake, timeout or disconnected
    error: str = ""
    detail: str = ""

    @property
    def ok(self) -> bool:
        """A 200 answer."""
        return self.status == 200 and not self.error


@dataclass
class LoadReport:
    """Every outcome of a run."""

    outcomes: list[Outcome] = field(default_factory=list)
    started: float = 0.0
    stopped: float = 0.0

    @property
    def failures(self) -> list[Outcome]:
        """Requests without a 200 answer."""
        return [o for o in self.outcomes if not o.ok]

    def rate(self) -> float:
        """Answers per second over the run."""
        span = max(self.stopped - self.started, 1e-9)
        return sum(o.ok for o in self.outcomes) / span

    def percentile(self, q: float) -> float:
        """Latency percentile (0-100) of the answered requests, in seconds."""
        times = sorted(o.seconds for o in self.outcomes if o.ok)
        if not times:
            return 0.0
        return times[min(len(times) - 1, int(len(times) * q / 100))]

    def summary(self) -> str:
        """One line for logs and assertion messages."""
        kinds: dict[str, int] = {}
        for o in self.failures:
            kinds[o.error or str(o.status)] = kinds.get(o.error or str(o.status), 0) + 1
        return (
            f"{len(self.outcomes)} requests, {self.rate():.0f}/s answered, "
            f"p50 {self.percentile(50) * 1000:.1f} ms, p99 {self.percentile(99) * 1000:.1f} ms, "
            f"max {max((o.seconds for o in self.outcomes), default=0) * 1000:.0f} ms, "
            f"failures {kinds}"
        )


def _closed_by_peer(sock: socket.socket | None) -> bool:
    # an idle keep-alive socket is readable only if the server closed or reset it
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _Client:
    """One keep-alive connection's worth of paced requests."""

    def __init__(self, load: Load, index: int) -> None:
        self.load = load
        self.index = index
        self.conn: http.client.HTTPSConnection | None = None
        self.used = 0

    def connection(self) -> http.client.HTTPSConnection:
        conn = self.conn
        limit = self.load.requests_per_connection
        if conn is not None and (_closed_by_peer(conn.sock) or (limit and self.used >= limit)):
            conn.close()
            conn = None
        if conn is None:
            conn = http.client.HTTPSConnection(
                "127.0.0.1",
                self.load.service.port,
                context=self.load.context,
                timeout=self.load.timeout,
            )
            conn.connect()
            self.used = 0
        self.conn = conn
        return conn

    def send(self, body: bytes) -> Outcome:
        sent = time.monotonic()
        try:
            conn = self.connection()
            self.used += 1
            conn.request(
                "POST", "/validate", body=body, headers={"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            payload = response.read()
            outcome = Outcome(
                sent,
                time.monotonic() - sent,
                status=response.status,
                revision=response.getheader(REVISION_HEADER) or "",
                allowed=self.load.verdict(payload) if response.status == 200 else None,
            )
            if response.will_close:
                self.drop()
            return outcome
        except ConnectionRefusedError as exc:
            error, detail = "refused", repr(exc)
        except ssl.SSLError as exc:
            error, detail = "handshake", repr(exc)
        except TimeoutError as exc:
            error, detail = "timeout", repr(exc)
        except (OSError, http.client.HTTPException) as exc:
            error, detail = "disconnected", repr(exc)
        self.drop()
        return Outcome(sent, time.monotonic() - sent, error=error, detail=detail[:200])

    def drop(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(OSError):
                self.conn.close()
        self.conn = None

    def run(self, report: LoadReport, stop: threading.Event) -> None:
        load = self.load
        interval = load.connections / load.rate
        # spread the clients' first requests over one interval
        next_at = time.monotonic() + interval * self.index / load.connections
        i = self.index
        while not stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            next_at += interval
            outcome = self.send(load.bodies[i % len(load.bodies)])
            i += load.connections
            with load.lock:
                report.outcomes.append(outcome)
        self.drop()


@dataclass
class Load:
    """``rate`` requests per second over ``connections`` keep-alive connections to ``service``."""

    service: Service
    bodies: Sequence[bytes]
    rate: float
    connections: int = 8
    timeout: float = 10.0
    requests_per_connection: int = 0  # 0: keep each connection as long as the server does
    verdict: Callable[[bytes], bool | None] = lambda payload: None
    context: ssl.SSLContext = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.context = self.service.ssl_context()

    @contextlib.contextmanager
    def running(self) -> Iterator[LoadReport]:
        """Run the load for the duration of the ``with`` block; the report fills as it goes."""
        report = LoadReport(started=time.monotonic())
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=_Client(self, i).run, args=(report, stop), name=f"load-{i}", daemon=True
            )
            for i in range(self.connections)
        ]
        for thread in threads:
            thread.start()
        try:
            yield report
        finally:
            stop.set()
            for thread in threads:
                thread.join(self.timeout + 5)
            report.stopped = time.monotonic()

    def run_for(self, seconds: float) -> LoadReport:
        """Run the load for ``seconds``."""
        with self.running() as report:
            time.sleep(seconds)
        return report


def capacity(service: Service, bodies: Sequence[bytes], *, seconds: float = 3.0) -> float:
    """Answers per second the service sustains with 8 clients sending back to back."""
    load = Load(service, bodies, rate=1e9, connections=8)
    report = load.run_for(seconds)
    assert not report.failures, report.summary()
    return report.rate()

"""The gunicorn worker class the webhook runs: gthread, with fair accepts and request deadlines.

Fair accepts.  Every worker process waits on the one listening socket the master opened, and
whichever worker wakes first takes a new connection.  The API server (and any benchmark client)
keeps its connections alive for minutes, so whatever split the first few accepts produce is the
split for good: on 2 workers, 8 connections landed 4/4, 2/6, 1/7 or 0/8 from one run to the next,
and with 0/8 a 2-worker server is a 1-worker server.  After each accept a worker here stops
listening for ``ACCEPT_PAUSE_PER_CONNECTION`` times the connections it holds: a worker with fewer
connections is back first and takes the next one, so connections spread evenly without the
workers sharing any state.  The pause is capped (``ACCEPT_PAUSE_MAX``), so when the other workers
are busy or gone a connection waits that long at most; a single-worker server never pauses.
gunicorn's ``reuse_port`` would give every worker a listening socket of its own instead, but the
kernel then spreads connections by a hash of their addresses (no better than the race) and refuses
the connections queued on a worker that dies.

Recycled connections.  An even split at connect time does not last: when a worker dies, its
clients reconnect while the replacement is still starting, and the survivor keeps them.  So on a
server with several workers a connection older than its lifetime (``connection_lifetime``, with
jitter so connections opened together do not all close together) is answered with
``Connection: close`` on its next request; the client reconnects and the accept pause puts the
new connection on the worker with the fewest.  Clients (Go's HTTP client in the API server
among them) do not reuse a connection answered that way, so no request is lost.

Request deadlines.  gthread makes a connection's socket blocking with no timeout and wraps it in
TLS (``conn.init()``) before reading each request, in one of its few threads.  As many clients as
threads sending a partial request would hold every thread, and a webhook with
``failurePolicy: Fail`` would block the cluster's writes until they let go; so every read and
write of a request gets a deadline right after that call.
"""

from __future__ import annotations

import random
import time
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

# the longest silence while a request arrives: the API server writes a review in one go and
# gives up after its timeoutSeconds (10 s by default).  A client cut off holds its thread this
# long plus gthread's bounded drain of the unread body (5 s), instead of for ever
READ_TIMEOUT_SECONDS = 2.0
# long enough for the other workers to reach accept() first: on a 2-core machine at load
# average 8, 1 ms per connection already split 8 connections 4/4 in every run (without the pause:
# 4/4 in a third of the runs, down to 0/8); the cap bounds what a new connection can wait
ACCEPT_PAUSE_PER_CONNECTION = 0.002
ACCEPT_PAUSE_MAX = 0.050
# a connection lives between half and all of its lifetime
LIFETIME_JITTER = 0.5
# gthread tells the arbiter it is alive (a file timestamp update, one system call) on every turn
# of its event loop, that is for nearly every request; once a second is plenty against a
# timeout of tens of seconds
NOTIFY_INTERVAL_SECONDS = 1.0


def accept_pause(connections: int, workers: int) -> float:
    """Seconds a worker holding ``connections`` stays away from the listening socket."""
    if workers <= 1:
        return 0.0
    return min(ACCEPT_PAUSE_MAX, connections * ACCEPT_PAUSE_PER_CONNECTION)


class FairThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no type hints
    """gthread taking its share of new connections, with a deadline on every request's I/O."""

    # seconds a keep-alive connection is reused when there are several workers; 0: for ever
    connection_lifetime = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._accept_resumes_at = 0.0
        # connections accepted and not yet closed.  gthread's own ``nr_conns`` cannot serve: it
        # is decremented twice when closing a connection fails, and drifts below zero when
        # clients drop their connections
        self.open_connections = 0
        self._next_notify = 0.0

    def notify(self) -> None:
        """Tell the arbiter we are alive, at most once per ``NOTIFY_INTERVAL_SECONDS``."""
        now = time.monotonic()
        if now >= self._next_notify:
            # a quarter of the timeout at most, so a short timeout is still met
            self._next_notify = now + min(NOTIFY_INTERVAL_SECONDS, self.timeout / 4)
            super().notify()

    def accept(self, listener: Any) -> None:
        """Accept one connection, then step back from the socket for a while."""
        held = self.open_connections
        super().accept(listener)
        pause = accept_pause(self.open_connections, self.cfg.workers)
        if self.open_connections > held and pause > 0:
            self._accept_resumes_at = time.monotonic() + pause
            self.set_accept_enabled(False)

    def enqueue_req(self, conn: Any) -> None:
        """Count a connection the first time it is queued, until gthread closes it."""
        if not getattr(conn, "counted_open", False):
            conn.counted_open = True
            self.open_connections += 1
            conn.recycle_at = None
            if self.cfg.workers > 1 and self.connection_lifetime > 0:
                share = random.uniform(1 - LIFETIME_JITTER, 1)  # not a secret
                conn.recycle_at = time.monotonic() + share * self.connection_lifetime
            close = conn.close

            def close_once(graceful: bool = False) -> None:
                if conn.counted_open:
                    conn.counted_open = False
                    self.open_connections -= 1
                close(graceful=graceful)

            conn.close = close_once
        super().enqueue_req(conn)

    def set_accept_enabled(self, enabled: bool) -> None:
        """Keep the socket unwatched until the pause is over (the run loop asks every turn)."""
        if enabled and self._accept_resumes_at > time.monotonic():
            return
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout: float) -> None:
        """Wake up when the pause ends, not only on the next event or after a second."""
        if self._accept_resumes_at:
            left = self._accept_resumes_at - time.monotonic()
            if left > 0:
                timeout = min(timeout, left)
            else:
                self._accept_resumes_at = 0.0
                if self.alive and self.nr_conns < self.worker_connections:  # as run() asks
                    self.set_accept_enabled(True)
        super().wait_for_and_dispatch_events(timeout)

    def handle_request(self, req: Any, conn: Any) -> Any:
        """Serve a request; past its connection's lifetime, answer it with Connection: close."""
        recycle_at = getattr(conn, "recycle_at", None)
        if recycle_at is not None and time.monotonic() >= recycle_at:
            req.must_close = True
        return super().handle_request(req, conn)

    def handle(self, conn: Any) -> Any:
        """Serve one request, its socket reads and writes bounded by ``READ_TIMEOUT_SECONDS``."""
        init = conn.init
        if not getattr(init, "with_deadline", False):

            def init_with_deadline() -> None:
                init()
                conn.sock.settimeout(READ_TIMEOUT_SECONDS)

            init_with_deadline.with_deadline = True  # type: ignore[attr-defined]
            conn.init = init_with_deadline
        return super().handle(conn)


def fair_worker(connection_lifetime: float) -> type[FairThreadWorker]:
    """``FairThreadWorker`` recycling connections after ``connection_lifetime`` seconds."""
    return type(
        "FairThreadWorker", (FairThreadWorker,), {"connection_lifetime": connection_lifetime}
    )

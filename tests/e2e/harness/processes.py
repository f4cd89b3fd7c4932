"""Child processes the harness starts and stops exactly, and the probes it waits on.

Every child runs in its own process group, so stopping it signals exactly its tree (gunicorn
workers included) and never a process the harness did not start. A pid is remembered with the
kernel's start time, so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness.common import LOOPBACK, READY_TIMEOUT_S, STOP_TIMEOUT_S, HarnessError


def free_port() -> int:
    """A currently free loopback port. Racy by nature; callers retry on EADDRINUSE."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _proc_start_time(pid: int) -> int | None:
    """The kernel start time of ``pid`` (to tell our process from a recycled pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces/parens; fields after it are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[19])


def _set_parent_death_signal() -> None:
    # Runs in the child between fork and exec: if the test process dies (kill -9, crash)
    # the kernel kills the child, so an aborted pytest run leaves no stray apiserver
    # behind. SIGKILL, not SIGTERM: etcd gets the signal at the same moment, and a
    # kube-apiserver shutting down gracefully without etcd hangs for minutes.
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)


@dataclass
class ManagedProcess:
    """A child process in its own process group with its own log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    # Detached processes outlive the Python process (``harness up``); attached ones
    # (pytest fixtures) die with it.
    detach: bool = False
    pid: int | None = None
    start_time: int | None = None
    # Where this run's output starts in the (appended) log file.
    log_offset: int = 0
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.log_offset = log.tell()
            log.write(f"\n=== {dt.datetime.now(dt.UTC).isoformat()} {self.argv}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                # Own session = own process group: stop() signals exactly this tree.
                start_new_session=True,
                preexec_fn=None if self.detach else _set_parent_death_signal,
            )
        self.pid = self._popen.pid
        self.start_time = _proc_start_time(self.pid)

    def exit_code(self) -> int | None:
        """None while running; the exit code (or -signal) once it has exited."""
        if self._popen is not None:
            return self._popen.poll()
        if self.pid is None or _proc_start_time(self.pid) != self.start_time:
            return -1
        return None

    def alive(self) -> bool:
        return self.pid is not None and self.exit_code() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self.log_offset)
                text = log.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def failure(self, what: str) -> HarnessError:
        return HarnessError(
            f"{self.name} {what} (exit code {self.exit_code()}); log {self.log_path}:\n"
            f"{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout``; never touches others."""
        if self.pid is None:
            return
        pid = self.pid
        if self._popen is None and _proc_start_time(pid) != self.start_time:
            return  # Gone already, and the pid may now belong to someone else.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if self._popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=timeout)
        # Children left in the group (gunicorn workers) after the leader exited.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    def to_state(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "start_time": self.start_time,
            "log": str(self.log_path),
            "argv": self.argv,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ManagedProcess:
        return cls(
            name=state["name"],
            argv=list(state["argv"]),
            log_path=Path(state["log"]),
            detach=True,
            pid=state["pid"],
            start_time=state["start_time"],
        )


def wait_until(
    what: str,
    probe: Callable[[], bool],
    *,
    process: ManagedProcess | None = None,
    timeout: float = READY_TIMEOUT_S,
    interval: float = 0.1,
) -> None:
    """Polls ``probe`` until true; fails early with the log when ``process`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if probe():
            return
        if process is not None and not process.alive():
            raise process.failure(f"exited while waiting for {what}")
        if time.monotonic() > deadline:
            if process is not None:
                raise process.failure(f"not ready: {what} after {timeout:.0f}s")
            raise HarnessError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def address_in_use(process: ManagedProcess) -> bool:
    """Whether ``process`` died of a port collision (worth a retry on another port)."""
    # Go servers say "bind: address already in use", gunicorn "Connection in use".
    tail = process.log_tail(60).lower()
    return "address already in use" in tail or "connection in use" in tail


def http_ok(url: str) -> bool:
    """Whether a plain-HTTP GET of ``url`` answers 200 right now."""
    host_port = url.removeprefix("http://").split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    path = "/" + url.removeprefix("http://").split("/", 1)[1]
    connection = http.client.HTTPConnection(host, int(port), timeout=2)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def https_status(host: str, port: int, path: str, context: ssl.SSLContext) -> int | None:
    """The status of an HTTPS GET, or None when nothing answers."""
    connection = http.client.HTTPSConnection(host, port, timeout=2, context=context)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()

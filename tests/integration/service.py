"""Start the real ``egress-guard serve`` (gunicorn, TLS) on loopback, and build AdmissionReviews.

Shared by the integration tests and the benchmark: the service runs as a subprocess exactly as a
user or the e2e harness starts it, so what is measured and tested is what ships.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT = 30.0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    """A running ``egress-guard serve`` process."""

    process: subprocess.Popen[bytes]
    port: int
    ca_file: Path
    log_file: Path
    url: str = field(init=False)

    def __post_init__(self) -> None:
        self.url = f"https://127.0.0.1:{self.port}"

    def log_lines(self) -> list[str]:
        """What the service has logged so far."""
        return self.log_file.read_text(errors="replace").splitlines()

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting the service's CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def worker_pids(self) -> list[int]:
        """gunicorn's worker processes: the children of the service's master, sorted."""
        return sorted(child_pids(self.process.pid))

    def connections_per_worker(self) -> list[int]:
        """How many established client connections each worker holds, fewest first."""
        established = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # state 01 is ESTABLISHED; field 9 is the socket's inode
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == self.port:
                    established.add(fields[9])
        return sorted(len(_socket_inodes(pid) & established) for pid in self.worker_pids())

    def cpu_seconds(self) -> float:
        """CPU time (user and system) the master and its live workers have used so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in (self.process.pid, *self.worker_pids()):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime and stime are the 14th and 15th fields, the 12th and 13th after the name
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def context_switches(self) -> int:
        """Context switches (voluntary and not) of every thread of the live workers so far."""
        total = 0
        for pid in self.worker_pids():
            try:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
            except OSError:
                continue
            for task in tasks:
                try:
                    status = (task / "status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if "ctxt_switches:" in line:
                        total += int(line.split()[1])
        return total

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Stop the service; kill it if it does not exit in time.  Returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return int(self.process.returncode)


def child_pids(pid: int) -> set[int]:
    """The PIDs whose parent is ``pid``."""
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: fields resume after ")"
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.add(int(entry.name))
    return children


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def _healthy(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return tls.recv(64).startswith(b"HTTP/1.1 200")
    except (OSError, ssl.SSLError):
        return False


@contextlib.contextmanager
def running_service(
    work_dir: Path,
    *,
    cert_file: Path | None,
    key_file: Path | None,
    ca_file: Path,
    policy_file: Path | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    command: Sequence[str] = (sys.executable, "-m", "webhook.cli", "serve"),
) -> Iterator[Service]:
    """Start ``egress-guard serve`` (or ``command``) on a free port, wait for /healthz, stop it."""
    port = free_port()
    log_file = work_dir / f"serve-{port}.log"
    args = [
        *command,
        "--bind",
        f"127.0.0.1:{port}",
        *(["--cert-file", str(cert_file)] if cert_file else []),
        *(["--key-file", str(key_file)] if key_file else []),
        *(["--policy", str(policy_file)] if policy_file else []),
        *extra_args,
    ]
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    service = Service(process, port, ca_file, log_file)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        # the CA may be written by the service itself (development certificates)
        while not (ca_file.exists() and _healthy(port, service.ssl_context())):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "egress-guard serve did not become healthy:\n" + "\n".join(service.log_lines())
                )
            time.sleep(0.1)
        yield service
    finally:
        service.stop()


# --- AdmissionReviews --------------------------------------------------------------------------


def admission_review(
    obj: Mapping[str, Any] | None,
    *,
    kind: str,
    group: str = "networking.istio.io",
    version: str = "v1",
    namespace: str = "",
    name: str = "",
    operation: str = "CREATE",
    uid: str | None = None,
    dry_run: bool = False,
    old: Mapping[str, Any] | None = None,
    username: str = "alice@example.com",
) -> dict[str, Any]:
    """An AdmissionReview v1 request as the API server sends it."""
    meta = (obj or old or {}).get("metadata", {})
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": kind.lower()},
            "name": name or meta.get("name", ""),
            "namespace": namespace or meta.get("namespace", ""),
            "operation": operation,
            "userInfo": {
                "username": username,
                "uid": "0b7c3c55-1f0e-4a38-9d8c-2f0a8e8f6d4c",
                "groups": ["system:authenticated", "developers"],
            },
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def _padding(kilobytes: int) -> dict[str, Any]:
    """Realistic bulk: ``kubectl apply`` annotations and managedFields entries."""
    fields = {f"f:field-{i}": {} for i in range(kilobytes * 24)}
    return {
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": "x" * (kilobytes * 300),
            "team.example.com/owner": "payments-platform",
        },
        "managedFields": [
            {
                "apiVersion": "networking.istio.io/v1",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {}}, "f:spec": fields},
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "time": "2026-11-23T10:00:00Z",
            }
        ],
    }


def _meta(name: str, namespace: str, kilobytes: int) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "uid": str(uuid.uuid4()),
        "resourceVersion": "48213",
        "generation": 1,
        "creationTimestamp": "2026-11-23T10:00:00Z",
        "labels": {
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/part-of": "checkout",
            "app.kubernetes.io/managed-by": "helm",
            "helm.sh/chart": "checkout-4.2.1",
        },
        **_padding(kilobytes),
    }


def service_entry(
    hosts: Sequence[str],
    *,
    namespace: str = "test-app",
    name: str = "external-api",
    export_to: Sequence[str] | None = (".",),
    kilobytes: int = 2,
) -> dict[str, Any]:
    """A tenant ServiceEntry for ``hosts`` on TLS 443."""
    spec: dict[str, Any] = {
        "hosts": list(hosts),
        "location": "MESH_EXTERNAL",
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        "resolution": "DNS",
    }
    if export_to is not None:
        spec["exportTo"] = list(export_to)
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": _meta(name, namespace, kilobytes),
        "spec": spec,
    }


def sidecar(
    namespace: str = "test-app", *, hosts: Sequence[str] = ("./*", "istio-system/*"), kb: int = 3
) -> dict[str, Any]:
    """A namespace Sidecar with REGISTRY_ONLY."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": _meta("default", namespace, kb),
        "spec": {
            "egress": [{"hosts": list(hosts)}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    }


def virtual_service(
    host: str, *, namespace: str = "test-app", destination: str | None = None, kb: int = 5
) -> dict[str, Any]:
    """A mesh VirtualService routing ``host`` (TLS by SNI) to ``destination``."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": _meta("route-" + host.replace(".", "-"), namespace, kb),
        "spec": {
            "hosts": [host],
            "exportTo": ["."],
            "tls": [
                {
                    "match": [{"port": 443, "sniHosts": [host]}],
                    "route": [
                        {"destination": {"host": destination or host, "port": {"number": 443}}}
                    ],
                }
            ],
        },
    }


def namespace_object(name: str, *, kb: int = 2) -> dict[str, Any]:
    """A Namespace as ``kubectl create namespace`` sends it, padded."""
    meta = _meta(name, "", kb)
    del meta["namespace"]
    meta["labels"] = {"kubernetes.io/metadata.name": name, "istio-injection": "enabled"}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta, "spec": {}}

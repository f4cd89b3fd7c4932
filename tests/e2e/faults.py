"""Fault injection on a harness control plane: stop and restart its API server, and run our
webhook and controller against it as separate processes with probes and metrics to read.

Built on the harness' public pieces (``ControlPlane.apiserver`` is a ``ManagedProcess`` that can
be stopped and started again with the same arguments, so the API server comes back on the same
port with the same etcd data, as a restarted static pod does).
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.harness import ControlPlane
from tests.integration.service import Service, free_port, running_service
from webhook.tls import generate_files

POLICY_NAMESPACE = "egress-guard"
SELECTOR_KEY = "egress-guard.io/e2e-faults"


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 30.0) -> float:
    """Seconds until ``condition`` held; AssertionError naming ``what`` after ``timeout``."""
    started = time.monotonic()
    while True:
        with contextlib.suppress(OSError, ValueError):
            if condition():
                return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def stop_apiserver(plane: ControlPlane) -> None:
    """Stop the API server (etcd keeps running, as when a control-plane node restarts)."""
    assert plane.apiserver is not None
    plane.apiserver.stop()
    assert not plane.apiserver.alive()


def start_apiserver(plane: ControlPlane, timeout: float = 60.0) -> float:
    """Start the API server again on its port; seconds until its /readyz answers 200."""
    assert plane.apiserver is not None
    started = time.monotonic()
    plane.apiserver.start()
    wait_for("kube-apiserver /readyz", plane.readyz, timeout)
    return time.monotonic() - started


def metric(text: str, name: str) -> float | None:
    """The value of an unlabelled sample ``name`` in Prometheus text, if present."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


@dataclass
class Controller:
    """An ``egress-guard controller`` process with its plain-HTTP probes."""

    process: subprocess.Popen[bytes]
    port: int
    log_file: Path

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str) -> float | None:
        return metric(self.get("/metrics")[1], name)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


@contextlib.contextmanager
def running_controller(
    plane: ControlPlane, work: Path, *, configmap: str, tag: str
) -> Iterator[Controller]:
    """``egress-guard controller`` for the namespaces labelled with ``tag``."""
    port = free_port()
    log_file = work / f"controller-{tag}.log"
    binary = Path(sys.executable).with_name("egress-guard")
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                str(binary),
                "controller",
                f"--kubeconfig={plane.kubeconfig}",
                f"--policy-configmap={POLICY_NAMESPACE}/{configmap}",
                f"--lease-namespace={POLICY_NAMESPACE}",
                f"--lease-name=lease-{tag}",
                f"--identity=faults-{tag}",
                f"--namespace-selector={SELECTOR_KEY}={tag}",
                # quick lease timings: the outage below outlasts them on purpose
                "--lease-duration=6",
                "--renew-deadline=4",
                "--renew-period=1",
                "--resync=30",
                f"--metrics-bind=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    controller = Controller(process, port, log_file)
    try:
        wait_for("the controller's /healthz", lambda: controller.get("/healthz")[0] == 200)
        yield controller
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def running_webhook(plane: ControlPlane, work: Path, *, configmap: str) -> Iterator[Service]:
    """``egress-guard serve --policy-configmap`` (not registered: tests post reviews to it)."""
    certs = generate_files(work / "webhook-certs", ["127.0.0.1"])
    with running_service(
        work,
        cert_file=certs.cert_file,
        key_file=certs.key_file,
        ca_file=certs.ca_file,
        extra_args=(
            f"--policy-configmap={POLICY_NAMESPACE}/{configmap}",
            f"--kubeconfig={plane.kubeconfig}",
        ),
    ) as svc:
        yield svc


def https_get(svc: Service, path: str) -> tuple[int, str]:
    """GET ``path`` from the webhook."""
    ctx: ssl.SSLContext = svc.ssl_context()
    request = urllib.request.Request(svc.url + path)
    try:
        with urllib.request.urlopen(request, timeout=5, context=ctx) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def https_post(svc: Service, path: str, body: bytes) -> tuple[int, str]:
    """POST a JSON ``body`` to the webhook."""
    request = urllib.request.Request(
        svc.url + path, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5, context=svc.ssl_context()) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()

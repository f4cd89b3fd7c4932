"""A real Kubernetes control plane (etcd + kube-apiserver) on loopback for the e2e tests.

Why: an admission webhook is only proven by a real kube-apiserver calling it, with real TLS,
real webhook configurations and real kubectl error messages. A kind cluster needs a container
runtime and images, which CI does not have; a bare etcd + kube-apiserver built from pinned Go
modules (``tools/build.sh``) starts in seconds and needs nothing but Go. No controller-manager,
scheduler or kubelet runs: objects are stored and admitted, never reconciled (Pods stay
Pending, namespace deletion never finishes), which is exactly what admission tests need.

The API server audits every request made by a service account (``logs/audit.log``), so tests
can see which calls egress-guard's components make and whether RBAC allowed them.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.client
import json
import shutil
import ssl
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from tests.e2e.harness.common import FIELD_MANAGER, LOOPBACK, PORT_ATTEMPTS, HarnessError, say
from tests.e2e.harness.kubectl import Kubectl, kubeconfig_document, write_kubeconfig
from tests.e2e.harness.pki import CertKey, issue_cert, new_ca, new_signing_key
from tests.e2e.harness.processes import (
    ManagedProcess,
    address_in_use,
    free_port,
    http_ok,
    https_status,
    wait_until,
)
from tests.e2e.harness.tools import Tools

# Service IPs are only allocated, never routed (no kube-proxy); the range just has to be valid.
SERVICE_CLUSTER_IP_RANGE: Final = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"

# Service accounts only: the tests' own admin traffic (and the benchmark's) stays unaudited,
# so auditing costs nothing where it is not read.
AUDIT_POLICY: Final = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        {"level": "None"},
    ],
}


class ControlPlane:
    """etcd + kube-apiserver on loopback with real TLS, RBAC, the Istio and Gateway API CRDs.

    ``workdir`` holds pki/, etcd data, logs/ and the admin ``kubeconfig``.
    """

    def __init__(self, workdir: Path, tools: Tools, *, detach: bool = False) -> None:
        self.workdir = workdir
        self.tools = tools
        self.detach = detach
        self.pki_dir = workdir / "pki"
        self.logs_dir = workdir / "logs"
        self.kubeconfig = workdir / "kubeconfig"
        self.audit_log = self.logs_dir / "audit.log"
        self.etcd: ManagedProcess | None = None
        self.apiserver: ManagedProcess | None = None
        self.secure_port: int | None = None
        self.etcd_url: str | None = None
        self.ca: CertKey | None = None
        self.admin: CertKey | None = None

    @property
    def server_url(self) -> str:
        if self.secure_port is None:
            raise HarnessError("the control plane is not started")
        return f"https://{LOOPBACK}:{self.secure_port}"

    @property
    def kubectl(self) -> Kubectl:
        return Kubectl(self.tools.kubectl, self.kubeconfig, self.workdir / "kube-cache")

    def processes(self) -> list[ManagedProcess]:
        return [p for p in (self.etcd, self.apiserver) if p is not None]

    def start(self) -> None:
        """Starts everything; on any failure stops what was started and raises."""
        started = time.monotonic()
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            steps: list[str] = []
            shutil.rmtree(self.workdir / "kube-cache", ignore_errors=True)
            for step, run in (
                ("pki", self._write_pki),
                ("etcd", self._start_etcd),
                ("kube-apiserver", self._start_apiserver),
                ("crds", self._install_crds),
            ):
                step_started = time.monotonic()
                run()
                steps.append(f"{step} {time.monotonic() - step_started:.1f}s")
        except BaseException:
            self.stop()
            raise
        say(
            f"control plane ready at {self.server_url} in {time.monotonic() - started:.1f}s "
            f"({', '.join(steps)}; kubeconfig {self.kubeconfig})"
        )

    def stop(self) -> None:
        for process in reversed(self.processes()):
            process.stop()

    def readyz(self) -> bool:
        """Whether the API server answers /readyz with 200 right now."""
        return self._readyz()

    def api_get(self, path: str) -> tuple[int | None, Any]:
        """GET ``path`` from the API server as admin: (status or None, parsed JSON or None).
        Much cheaper than a kubectl process for polling."""
        connection = http.client.HTTPSConnection(
            LOOPBACK, self.secure_port or 0, timeout=5, context=self._ssl_context()
        )
        try:
            connection.request("GET", path, headers={"Accept": "application/json"})
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            return None, None
        finally:
            connection.close()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, None

    def wait_for_crds(self, names: Sequence[str], *, timeout: float = 60.0) -> None:
        """Waits until every named CRD is Established (its API is served)."""
        wanted = set(names)

        def established() -> bool:
            status, body = self.api_get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
            if status != 200 or not isinstance(body, dict):
                return False
            done = {
                item["metadata"]["name"]
                for item in body.get("items", [])
                if any(
                    c.get("type") == "Established" and c.get("status") == "True"
                    for c in (item.get("status") or {}).get("conditions") or []
                )
            }
            return wanted <= done

        wait_until(f"CRDs {sorted(wanted)} to be established", established, timeout=timeout)

    def to_state(self) -> dict[str, Any]:
        return {
            "server": self.server_url,
            "kubeconfig": str(self.kubeconfig),
            "tools": str(self.tools.dir),
            "processes": [p.to_state() for p in self.processes()],
        }

    # -- internals ---------------------------------------------------------------------

    def _write_pki(self) -> None:
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        ca = new_ca("egress-guard-e2e-ca")
        ca.write(self.pki_dir / "ca.crt", self.pki_dir / "ca.key")
        issue_cert(
            ca,
            "kube-apiserver",
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ip_addresses=(LOOPBACK, "10.0.0.1"),
            server=True,
        ).write(self.pki_dir / "apiserver.crt", self.pki_dir / "apiserver.key")
        # system:masters is bound to cluster-admin by the RBAC bootstrap policy.
        admin = issue_cert(
            ca, "egress-guard-e2e-admin", organizations=("system:masters",), client=True
        )
        admin.write(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        new_signing_key().write(self.pki_dir / "sa.pub", self.pki_dir / "sa.key")
        self.ca = ca
        self.admin = admin

    def _start_etcd(self) -> None:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            client_port, peer_port = free_port(), free_port()
            data_dir = self.workdir / "etcd"
            shutil.rmtree(data_dir, ignore_errors=True)
            client_url = f"http://{LOOPBACK}:{client_port}"
            peer_url = f"http://{LOOPBACK}:{peer_port}"
            self.etcd = ManagedProcess(
                name="etcd",
                argv=[
                    str(self.tools.etcd),
                    "--name=e2e",
                    f"--data-dir={data_dir}",
                    f"--listen-client-urls={client_url}",
                    f"--advertise-client-urls={client_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=e2e={peer_url}",
                    # Throwaway data: fsync only costs time on a test machine.
                    "--unsafe-no-fsync",
                    # A single member elects itself after one election timeout (default
                    # 1 s); there are no peers whose heartbeats could be missed.
                    "--heartbeat-interval=20",
                    "--election-timeout=200",
                    "--log-level=warn",
                ],
                log_path=self.logs_dir / "etcd.log",
                detach=self.detach,
            )
            self.etcd.start()
            try:
                wait_until(
                    "etcd /health",
                    functools.partial(http_ok, f"{client_url}/health"),
                    process=self.etcd,
                    timeout=30,
                )
            except HarnessError:
                if attempt < PORT_ATTEMPTS and address_in_use(self.etcd):
                    say("etcd port collision, retrying with other ports")
                    self.etcd.stop()
                    continue
                raise
            self.etcd_url = client_url
            return

    def _start_apiserver(self) -> None:
        pki = self.pki_dir
        audit_policy = pki / "audit-policy.json"
        audit_policy.write_text(json.dumps(AUDIT_POLICY))
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            self.secure_port = port
            self.apiserver = ManagedProcess(
                name="kube-apiserver",
                argv=[
                    str(self.tools.kube_apiserver),
                    f"--etcd-servers={self.etcd_url}",
                    f"--bind-address={LOOPBACK}",
                    f"--advertise-address={LOOPBACK}",
                    f"--secure-port={port}",
                    f"--cert-dir={pki}",
                    f"--tls-cert-file={pki / 'apiserver.crt'}",
                    f"--tls-private-key-file={pki / 'apiserver.key'}",
                    f"--client-ca-file={pki / 'ca.crt'}",
                    f"--service-account-key-file={pki / 'sa.pub'}",
                    f"--service-account-signing-key-file={pki / 'sa.key'}",
                    f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                    f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                    "--authorization-mode=Node,RBAC",
                    # No controller-manager runs: nothing would create the ServiceAccount
                    # tokens the ServiceAccount admission plugin waits for, and nothing
                    # maintains the kubernetes Service endpoints.
                    "--disable-admission-plugins=ServiceAccount",
                    "--endpoint-reconciler-type=none",
                    "--allow-privileged=true",
                    "--profiling=false",
                    f"--audit-policy-file={audit_policy}",
                    f"--audit-log-path={self.audit_log}",
                    # Written as the request completes: a test reads it right after.
                    "--audit-log-mode=blocking",
                    "--v=1",
                ],
                log_path=self.logs_dir / "kube-apiserver.log",
                detach=self.detach,
            )
            self.apiserver.start()
            try:
                wait_until("kube-apiserver /readyz", self._readyz, process=self.apiserver)
            except HarnessError:
                if attempt < PORT_ATTEMPTS and address_in_use(self.apiserver):
                    say("kube-apiserver port collision, retrying with another port")
                    self.apiserver.stop()
                    continue
                raise
            break
        if self.ca is None or self.admin is None:
            raise HarnessError("the control plane PKI was not written")
        admin = self.admin
        config = kubeconfig_document(
            self.server_url,
            self.ca.cert_pem,
            {
                "client-certificate-data": base64.b64encode(admin.cert_pem).decode(),
                "client-key-data": base64.b64encode(admin.key_pem).decode(),
            },
        )
        write_kubeconfig(self.kubeconfig, config)

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        context.load_cert_chain(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        return context

    def _readyz(self) -> bool:
        if self.secure_port is None:
            return False
        return https_status(LOOPBACK, self.secure_port, "/readyz", self._ssl_context()) == 200

    def _install_crds(self) -> None:
        # Istio's, and the Gateway API's (egress-guard also gates gateway routes).
        files = (self.tools.istio_crds, self.tools.gateway_api_crds)
        applied = self.kubectl(
            "apply",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "-o",
            "name",
            *(f"--filename={f}" for f in files),
            check=True,
        )
        names = [line.split("/", 1)[1] for line in applied.stdout.split() if "/" in line]
        if not names:
            raise HarnessError(f"no CRDs applied from {files}")
        self.wait_for_crds(names)


@contextlib.contextmanager
def running_control_plane(workdir: Path, tools: Tools) -> Iterator[ControlPlane]:
    """A started control plane, stopped on exit."""
    plane = ControlPlane(workdir, tools)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()

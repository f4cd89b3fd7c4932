#!/usr/bin/env python3
"""A real Kubernetes control plane (etcd + kube-apiserver) for egress-guard's e2e tests.

Why this exists: an admission webhook is only proven by a real kube-apiserver calling it,
with real TLS, real webhook configurations and real kubectl error messages. A kind
cluster needs a container runtime and images, which CI does not have; a bare etcd +
kube-apiserver built from pinned Go modules (``tools/build.sh``) starts in seconds and
needs nothing but Go. No controller-manager, scheduler or kubelet runs: objects are
stored and admitted, never reconciled (Pods stay Pending, namespace deletion never
finishes), which is exactly what admission tests need.

The module is both the library behind the pytest fixtures (``tests/e2e/conftest.py``)
and a CLI for humans (``make e2e-up`` / ``make e2e-down``)::

    tests/e2e/cluster.py up [--no-webhook] [--dir .e2e]
    tests/e2e/cluster.py status
    tests/e2e/cluster.py down

Everything listens on 127.0.0.1 only, on free ports chosen at start.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import datetime as dt
import functools
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from webhook import tls

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
TOOLS_BUILD_SCRIPT: Final = REPO_ROOT / "tools" / "build.sh"
DEFAULT_STATE_DIR: Final = REPO_ROOT / ".e2e"
LOOPBACK: Final = "127.0.0.1"

# Where the webhook lives and where it reads its policy from; the chart uses the same.
WEBHOOK_NAMESPACE: Final = "egress-guard"
WEBHOOK_SERVICE_ACCOUNT: Final = "egress-guard"
POLICY_CONFIGMAP: Final = "egress-guard-policy"
POLICY_KEY: Final = "policy.yaml"
POLICY_MANIFEST: Final = REPO_ROOT / "policies" / "banzai-demo.yaml"
WEBHOOK_CONFIGURATION_NAME: Final = "egress-guard"
FIELD_MANAGER: Final = "egress-guard-e2e"

# Namespaces the webhook must never gate: the control plane's own, Istio's, and the
# webhook's (else a down webhook could not be repaired: failurePolicy is Fail).
EXCLUDED_NAMESPACES: Final = (
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "istio-system",
    WEBHOOK_NAMESPACE,
)

# Service IPs are only allocated, never routed (no kube-proxy); the range just has to be valid.
SERVICE_CLUSTER_IP_RANGE: Final = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER: Final = "https://kubernetes.default.svc.cluster.local"

READY_TIMEOUT_S: Final = 90.0
STOP_TIMEOUT_S: Final = 15.0
KUBECTL_TIMEOUT_S: Final = 120.0
TOOLS_BUILD_TIMEOUT_S: Final = 45 * 60.0
PORT_ATTEMPTS: Final = 3


class HarnessError(RuntimeError):
    """The control plane or the webhook could not be started, reached or stopped."""


EXISTING_CLUSTER_ENV: Final = "EGRESS_GUARD_E2E_EXISTING"


def existing_cluster_kubeconfig() -> Path | None:
    """The kubeconfig of a cluster the e2e tests should use instead of starting one:
    ``KUBECONFIG`` when ``EGRESS_GUARD_E2E_EXISTING=1``, else None."""
    if os.environ.get(EXISTING_CLUSTER_ENV) != "1":
        return None
    value = os.environ.get("KUBECONFIG", "")
    if not value or not Path(value).is_file():
        raise HarnessError(f"{EXISTING_CLUSTER_ENV}=1 needs KUBECONFIG to name an existing file")
    return Path(value)


def _stderr(message: str) -> None:
    print(f"[e2e] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Admission rules: the ONE place listing what egress-guard's webhooks intercept.
# --------------------------------------------------------------------------------------

ALL_OPERATIONS: Final = ("CREATE", "UPDATE", "DELETE")

# (API group, resources, operations) the validating webhook sees. Anything that can
# open an egress path (Istio networking/security/extension objects) or that carries
# workloads and their network identity is validated; deletes too, because removing a
# Sidecar or an AuthorizationPolicy can widen egress as much as creating a ServiceEntry.
VALIDATED_RESOURCES: Final[tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]] = (
    (
        "networking.istio.io",
        (
            "serviceentries",
            "sidecars",
            "virtualservices",
            "destinationrules",
            "gateways",
            "workloadentries",
            "workloadgroups",
            "envoyfilters",
        ),
        ALL_OPERATIONS,
    ),
    ("security.istio.io", ("authorizationpolicies",), ALL_OPERATIONS),
    ("extensions.istio.io", ("wasmplugins", "trafficextensions"), ALL_OPERATIONS),
    (
        "",
        (
            "namespaces",
            "services",
            "endpoints",
            "pods",
            # kubectl debug adds containers through this subresource
            "pods/ephemeralcontainers",
            "replicationcontrollers",
        ),
        ALL_OPERATIONS,
    ),
    ("discovery.k8s.io", ("endpointslices",), ALL_OPERATIONS),
    ("apps", ("deployments", "statefulsets", "daemonsets", "replicasets"), ALL_OPERATIONS),
    ("batch", ("jobs", "cronjobs"), ALL_OPERATIONS),
)

# Only registered when the Gateway API CRDs are installed in the cluster.
GATEWAY_API_RESOURCES: Final = (
    "gateway.networking.k8s.io",
    ("httproutes", "grpcroutes", "tlsroutes", "tcproutes", "udproutes", "gateways"),
    ALL_OPERATIONS,
)

# The mutating webhook defaults new namespaces and completes Sidecars.
MUTATED_RESOURCES: Final[tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]] = (
    ("", ("namespaces",), ("CREATE",)),
    ("networking.istio.io", ("sidecars",), ("CREATE", "UPDATE")),
)


def _rules(
    entries: Sequence[tuple[str, tuple[str, ...], tuple[str, ...]]],
) -> list[dict[str, Any]]:
    # One rule per group: a rule is the cartesian product of its groups and resources,
    # so mixing groups in one rule would match resources that do not exist in them.
    return [
        {
            "apiGroups": [group],
            "apiVersions": ["*"],
            "operations": list(operations),
            "resources": list(resources),
            "scope": "*",
        }
        for group, resources, operations in entries
    ]


def admission_rules(*, gateway_api: bool) -> dict[str, list[dict[str, Any]]]:
    """Rules of the validating and the mutating webhook, keyed "validating"/"mutating"."""
    validated = list(VALIDATED_RESOURCES)
    if gateway_api:
        validated.append(GATEWAY_API_RESOURCES)
    return {"validating": _rules(validated), "mutating": _rules(MUTATED_RESOURCES)}


def webhook_configurations(
    base_url: str, ca_bundle_pem: bytes, *, gateway_api: bool
) -> list[dict[str, Any]]:
    """ValidatingWebhookConfiguration + MutatingWebhookConfiguration reaching ``base_url``."""
    rules = admission_rules(gateway_api=gateway_api)
    common: dict[str, Any] = {
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "matchPolicy": "Equivalent",
        "timeoutSeconds": 10,
        # kubernetes.io/metadata.name is set by the API server and immutable, so it
        # cannot be forged to opt out. For Namespace objects (cluster-scoped) the
        # selector is evaluated against the namespace itself, and NotIn also matches
        # when the label is absent, so `kubectl create ns foo` reaches the webhook.
        "namespaceSelector": {
            "matchExpressions": [
                {
                    "key": "kubernetes.io/metadata.name",
                    "operator": "NotIn",
                    "values": list(EXCLUDED_NAMESPACES),
                }
            ]
        },
    }
    ca_bundle = base64.b64encode(ca_bundle_pem).decode()
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": WEBHOOK_CONFIGURATION_NAME},
            "webhooks": [
                {
                    "name": "validate.egress-guard.dev",
                    "clientConfig": {"url": f"{base_url}/validate", "caBundle": ca_bundle},
                    "rules": rules["validating"],
                    **common,
                }
            ],
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": WEBHOOK_CONFIGURATION_NAME},
            "webhooks": [
                {
                    "name": "mutate.egress-guard.dev",
                    "clientConfig": {"url": f"{base_url}/mutate", "caBundle": ca_bundle},
                    "rules": rules["mutating"],
                    "reinvocationPolicy": "Never",
                    **common,
                }
            ],
        },
    ]


# RBAC of the webhook's ServiceAccount in the harness: what a policy-watching webhook
# and its reconciler need. The chart owns the production RBAC; keep the two in step.
WEBHOOK_CLUSTER_ROLE_RULES: Final[list[dict[str, Any]]] = [
    {
        "apiGroups": [""],
        "resources": ["configmaps", "namespaces"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": [""],
        "resources": ["services", "endpoints", "pods"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "list", "watch", "create", "update", "patch"],
    },
    {
        "apiGroups": [
            "networking.istio.io",
            "security.istio.io",
            "extensions.istio.io",
            "telemetry.istio.io",
        ],
        "resources": ["*"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": ["*"],
        "verbs": ["get", "list", "watch"],
    },
]


# --------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    """The directory ``tools/build.sh`` filled with pinned binaries and CRDs."""

    dir: Path

    @property
    def etcd(self) -> Path:
        return self.dir / "etcd"

    @property
    def kube_apiserver(self) -> Path:
        return self.dir / "kube-apiserver"

    @property
    def kubectl(self) -> Path:
        return self.dir / "kubectl"

    @property
    def helm(self) -> Path:
        return self.dir / "helm"

    @property
    def istio_crds(self) -> Path:
        return self.dir / "istio-crds.yaml"

    @property
    def gateway_api_crds(self) -> Path:
        return self.dir / "gateway-api-crds.yaml"


def build_tools(*, stream_progress: bool = True) -> Tools:
    """Builds (or finds cached) pinned tools; cold ~5 min on 2 cores, warm < 1 s."""
    if not TOOLS_BUILD_SCRIPT.is_file():
        raise HarnessError(f"{TOOLS_BUILD_SCRIPT} is missing")
    try:
        # stderr carries the build progress: pass it through so a cold build is not silent.
        result = subprocess.run(
            ["bash", str(TOOLS_BUILD_SCRIPT)],
            stdout=subprocess.PIPE,
            stderr=None if stream_progress else subprocess.PIPE,
            text=True,
            timeout=TOOLS_BUILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(
            f"tools/build.sh did not finish in {TOOLS_BUILD_TIMEOUT_S:.0f}s"
        ) from exc
    if result.returncode != 0:
        raise HarnessError(
            f"tools/build.sh failed (exit {result.returncode}): {result.stderr or ''}"
        )
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise HarnessError("tools/build.sh printed no tools directory")
    tools = Tools(Path(lines[-1]))
    for path in (
        tools.etcd,
        tools.kube_apiserver,
        tools.kubectl,
        tools.istio_crds,
        tools.gateway_api_crds,
    ):
        if not path.is_file():
            raise HarnessError(f"tools/build.sh did not produce {path}")
    return tools


# --------------------------------------------------------------------------------------
# PKI
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertKey:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    def write(self, cert_path: Path, key_path: Path) -> None:
        cert_path.write_bytes(self.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(self.key_pem)


def _pem(pair: tls.KeyPair) -> CertKey:
    return CertKey(pair.cert_pem(), pair.key_pem())


def new_ca(common_name: str) -> CertKey:
    """A self-signed CA (ECDSA P-256: fast to generate, accepted everywhere here)."""
    return _pem(tls.generate_ca(common_name, days=365))


def issue_cert(
    ca: CertKey,
    common_name: str,
    *,
    organizations: Sequence[str] = (),
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    server: bool = False,
    client: bool = False,
) -> CertKey:
    """A leaf certificate signed by ``ca`` for TLS serving and/or client authentication."""
    try:
        signer = tls.KeyPair.from_pem(ca.cert_pem, ca.key_pem)
    except ValueError as exc:
        raise HarnessError(f"the harness CA is unusable: {exc}") from exc
    pair = tls.issue_cert(
        signer,
        common_name,
        organizations=organizations,
        hosts=[*dns_names, *ip_addresses],
        server=server,
        client=client,
    )
    return _pem(pair)


def new_signing_key() -> CertKey:
    """Service-account token signing key pair; ``cert_pem`` holds the public key."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return CertKey(public, private)


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


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
    # Detached processes outlive the Python process (``cluster.py up``); attached ones
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


def _wait_until(
    what: str,
    probe: Callable[[], bool],
    *,
    process: ManagedProcess | None = None,
    timeout: float = READY_TIMEOUT_S,
    interval: float = 0.1,
) -> None:
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


def _address_in_use(process: ManagedProcess) -> bool:
    # Go servers say "bind: address already in use", gunicorn "Connection in use".
    tail = process.log_tail(60).lower()
    return "address already in use" in tail or "connection in use" in tail


# --------------------------------------------------------------------------------------
# kubectl
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kubectl:
    """Runs kubectl against one cluster; returns the CompletedProcess (stderr included)."""

    binary: Path
    kubeconfig: Path
    # kubectl caches API discovery per host:port under ~/.kube/cache for hours; a new
    # cluster on a recycled port would be served the previous one's resource list.
    cache_dir: Path | None = None

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        check: bool = False,
        timeout: float = KUBECTL_TIMEOUT_S,
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}"]
        if self.cache_dir is not None:
            argv.append(f"--cache-dir={self.cache_dir}")
        argv += args
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        try:
            result = subprocess.run(
                argv,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"kubectl {' '.join(args)} timed out after {timeout:.0f}s") from exc
        if check and result.returncode != 0:
            raise HarnessError(
                f"kubectl {' '.join(args)} failed (exit {result.returncode}):\n"
                f"{result.stderr.strip()}"
            )
        return result

    def json(self, *args: str) -> Any:
        """``kubectl ... -o json`` parsed; raises on failure."""
        return json.loads(self(*args, "-o", "json", check=True).stdout)

    def apply(
        self, objects: Mapping[str, Any] | Sequence[Mapping[str, Any]], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Server-side apply of one object or a list of objects."""
        items = [objects] if isinstance(objects, Mapping) else list(objects)
        manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        return self(
            "apply",
            "--server-side",
            f"--field-manager={FIELD_MANAGER}",
            "-f",
            "-",
            input=manifest,
            check=check,
        )


_NOT_DNS: Final = re.compile(r"[^a-z0-9-]+")


def unique_name(base: str, *, max_length: int = 63) -> str:
    """A DNS-1123 label from ``base`` plus a random suffix. Namespaces are never reused:
    without a controller-manager a deleted namespace stays Terminating forever."""
    suffix = secrets.token_hex(3)
    slug = _NOT_DNS.sub("-", base.lower()).strip("-") or "e2e"
    slug = slug[: max_length - len(suffix) - 1].rstrip("-")
    return f"{slug}-{suffix}"


def create_namespace(
    kubectl: Kubectl, base: str, *, labels: Mapping[str, str] | None = None
) -> str:
    """Creates a uniquely named namespace with ``kubectl create`` (a CREATE the webhook
    sees, unlike server-side apply of an existing object) and returns its name."""
    name = unique_name(base)
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": dict(labels or {})},
    }
    kubectl("create", "-f", "-", input=json.dumps(manifest), check=True)
    return name


def _kubeconfig(
    server: str, ca_pem: bytes, user: Mapping[str, str], *, name: str = "egress-guard-e2e"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ],
        "users": [{"name": name, "user": dict(user)}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
    }


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(text)


# --------------------------------------------------------------------------------------
# Control plane
# --------------------------------------------------------------------------------------


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
        _stderr(
            f"control plane ready at {self.server_url} in {time.monotonic() - started:.1f}s "
            f"({', '.join(steps)}; kubeconfig {self.kubeconfig})"
        )

    def stop(self) -> None:
        for process in reversed(self.processes()):
            process.stop()

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
                _wait_until(
                    "etcd /health",
                    functools.partial(_http_ok, f"{client_url}/health"),
                    process=self.etcd,
                    timeout=30,
                )
            except HarnessError:
                if attempt < PORT_ATTEMPTS and _address_in_use(self.etcd):
                    _stderr("etcd port collision, retrying with other ports")
                    self.etcd.stop()
                    continue
                raise
            self.etcd_url = client_url
            return

    def _start_apiserver(self) -> None:
        pki = self.pki_dir
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
                    "--v=1",
                ],
                log_path=self.logs_dir / "kube-apiserver.log",
                detach=self.detach,
            )
            self.apiserver.start()
            try:
                _wait_until("kube-apiserver /readyz", self._readyz, process=self.apiserver)
            except HarnessError:
                if attempt < PORT_ATTEMPTS and _address_in_use(self.apiserver):
                    _stderr("kube-apiserver port collision, retrying with another port")
                    self.apiserver.stop()
                    continue
                raise
            break
        if self.ca is None or self.admin is None:
            raise HarnessError("the control plane PKI was not written")
        admin = self.admin
        config = _kubeconfig(
            self.server_url,
            self.ca.cert_pem,
            {
                "client-certificate-data": base64.b64encode(admin.cert_pem).decode(),
                "client-key-data": base64.b64encode(admin.key_pem).decode(),
            },
        )
        _write_private(self.kubeconfig, yaml.safe_dump(config, sort_keys=False))

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        context.load_cert_chain(self.pki_dir / "admin.crt", self.pki_dir / "admin.key")
        return context

    def _readyz(self) -> bool:
        if self.secure_port is None:
            return False
        return _https_status(LOOPBACK, self.secure_port, "/readyz", self._ssl_context()) == 200

    def readyz(self) -> bool:
        """Whether the API server answers /readyz with 200 right now."""
        return self._readyz()

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

        _wait_until(f"CRDs {sorted(wanted)} to be established", established, timeout=timeout)

    def to_state(self) -> dict[str, Any]:
        return {
            "server": self.server_url,
            "kubeconfig": str(self.kubeconfig),
            "tools": str(self.tools.dir),
            "processes": [p.to_state() for p in self.processes()],
        }


def _http_ok(url: str) -> bool:
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


def _https_status(host: str, port: int, path: str, context: ssl.SSLContext) -> int | None:
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


# --------------------------------------------------------------------------------------
# Our webhook
# --------------------------------------------------------------------------------------


def egress_guard_command() -> list[str]:
    """How to run the ``egress-guard`` CLI of this checkout (venv script, else PATH)."""
    beside_python = Path(sys.executable).parent / "egress-guard"
    if beside_python.is_file():
        return [str(beside_python)]
    found = shutil.which("egress-guard")
    if found:
        return [found]
    raise HarnessError(
        "the egress-guard CLI is not installed; run `pip install -e .` in the project venv"
    )


class Webhook:
    """egress-guard's own ``serve`` (gunicorn over TLS) on loopback, registered in a cluster.

    ``policy_file`` selects file-based policy; by default the policy is read from the
    ``egress-guard/egress-guard-policy`` ConfigMap, applied from ``policies/`` if present.
    ``identity`` is "serviceaccount" (a TokenRequest token of egress-guard/egress-guard
    with the harness RBAC) or "admin" (the admin client certificate).
    """

    def __init__(
        self,
        plane: ControlPlane,
        workdir: Path,
        *,
        policy_file: Path | None = None,
        policy_manifest: Path | None = POLICY_MANIFEST,
        identity: str = "serviceaccount",
        command: Sequence[str] | None = None,
        detach: bool = False,
    ) -> None:
        if identity not in ("serviceaccount", "admin"):
            raise ValueError(f"unknown webhook identity {identity!r}")
        self.plane = plane
        self.workdir = workdir
        self.policy_file = policy_file
        self.policy_manifest = policy_manifest
        self.identity = identity
        self.command = list(command) if command is not None else None
        self.detach = detach
        self.port: int | None = None
        self.process: ManagedProcess | None = None
        self.ca: CertKey | None = None
        self.kubeconfig = workdir / "webhook-kubeconfig"

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise HarnessError("the webhook is not started")
        return f"https://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        started = time.monotonic()
        command = self.command if self.command is not None else egress_guard_command()
        try:
            self._prepare_cluster()
            self._write_identity()
            self._write_pki()
            self._start_server(command)
            self.register()
        except BaseException:
            self.stop()
            raise
        _stderr(f"webhook ready at {self.base_url} in {time.monotonic() - started:.1f}s")

    def stop(self) -> None:
        # Unregister first: with failurePolicy Fail, registered configurations pointing at a
        # dead server would reject every matching request in the (still running) cluster.
        if self.plane.apiserver is not None and self.plane.apiserver.alive():
            self.unregister()
        if self.process is not None:
            self.process.stop()

    def register(self) -> None:
        """Applies the webhook configurations and waits until the API server uses them."""
        if self.ca is None:
            raise HarnessError("the webhook has no CA yet")
        kubectl = self.plane.kubectl
        gateway_api = kubectl("get", "crd", "httproutes.gateway.networking.k8s.io").returncode == 0
        kubectl.apply(
            webhook_configurations(self.base_url, self.ca.cert_pem, gateway_api=gateway_api)
        )
        wait_for_admission_sync(kubectl)

    def unregister(self) -> None:
        for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            self.plane.kubectl("delete", kind, WEBHOOK_CONFIGURATION_NAME, "--ignore-not-found")

    # -- internals ---------------------------------------------------------------------

    def _prepare_cluster(self) -> None:
        kubectl = self.plane.kubectl
        kubectl.apply(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": WEBHOOK_NAMESPACE}},
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": WEBHOOK_SERVICE_ACCOUNT, "namespace": WEBHOOK_NAMESPACE},
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": "egress-guard"},
                    "rules": WEBHOOK_CLUSTER_ROLE_RULES,
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "egress-guard"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "egress-guard",
                    },
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "name": WEBHOOK_SERVICE_ACCOUNT,
                            "namespace": WEBHOOK_NAMESPACE,
                        }
                    ],
                },
            ]
        )
        if self.policy_file is None and self.policy_manifest is not None:
            if self.policy_manifest.is_file():
                kubectl(
                    "apply",
                    "--server-side",
                    f"--field-manager={FIELD_MANAGER}",
                    "-f",
                    str(self.policy_manifest),
                    check=True,
                )
            else:
                _stderr(f"{self.policy_manifest} does not exist; no policy ConfigMap applied")

    def _write_identity(self) -> None:
        plane = self.plane
        if self.identity == "admin":
            shutil.copyfile(plane.kubeconfig, self.kubeconfig)
            return
        # TokenRequest needs no controller: the API server signs the token itself.
        token = plane.kubectl(
            "create",
            "token",
            WEBHOOK_SERVICE_ACCOUNT,
            f"--namespace={WEBHOOK_NAMESPACE}",
            "--duration=24h",
            check=True,
        ).stdout.strip()
        if plane.ca is None:
            raise HarnessError("the control plane is not started")
        config = _kubeconfig(
            plane.server_url, plane.ca.cert_pem, {"token": token}, name="egress-guard-webhook"
        )
        _write_private(self.kubeconfig, yaml.safe_dump(config, sort_keys=False))

    def _write_pki(self) -> None:
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        # Its own CA, like a real deployment where caBundle is not the cluster CA.
        self.ca = new_ca("egress-guard-e2e-webhook-ca")
        self.ca.write(pki / "webhook-ca.crt", pki / "webhook-ca.key")
        issue_cert(
            self.ca,
            "egress-guard-webhook",
            dns_names=("localhost",),
            ip_addresses=(LOOPBACK,),
            server=True,
        ).write(pki / "webhook.crt", pki / "webhook.key")

    def _server_argv(self, command: Sequence[str], port: int) -> list[str]:
        pki = self.workdir / "pki"
        argv = [
            *command,
            "serve",
            f"--bind={LOOPBACK}:{port}",
            f"--cert-file={pki / 'webhook.crt'}",
            f"--key-file={pki / 'webhook.key'}",
        ]
        if self.policy_file is not None:
            argv.append(f"--policy={self.policy_file.resolve()}")
        else:
            argv.append(f"--policy-configmap={WEBHOOK_NAMESPACE}/{POLICY_CONFIGMAP}")
            # Only the ConfigMap source talks to the cluster.
            argv.append(f"--kubeconfig={self.kubeconfig}")
        return argv

    def _start_server(self, command: Sequence[str]) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = free_port()
            self.process = ManagedProcess(
                name="egress-guard",
                argv=self._server_argv(command, self.port),
                log_path=self.plane.logs_dir / "egress-guard.log",
                env=env,
                detach=self.detach,
            )
            self.process.start()
            try:
                _wait_until("egress-guard to serve TLS", self._ready, process=self.process)
            except HarnessError:
                if attempt < PORT_ATTEMPTS and _address_in_use(self.process):
                    _stderr("webhook port collision, retrying with another port")
                    self.process.stop()
                    continue
                raise
            return

    def _ready(self) -> bool:
        if self.port is None or self.ca is None:
            return False
        context = ssl.create_default_context(cafile=str(self.workdir / "pki" / "webhook-ca.crt"))
        # A readiness endpoint, if the service has one, must say 200 (policy loaded);
        # a service without one is up as soon as it answers HTTPS at all.
        status = _https_status(LOOPBACK, self.port, "/readyz", context)
        if status == 404:
            status = _https_status(LOOPBACK, self.port, "/healthz", context)
            return status is not None and (status == 200 or status == 404)
        return status == 200

    def to_state(self) -> dict[str, Any]:
        return {
            "url": self.base_url,
            "processes": [self.process.to_state()] if self.process else [],
        }


SYNC_PROBE_LABEL: Final = "egress-guard.dev/e2e-admission-sync-probe"


def wait_for_admission_sync(kubectl: Kubectl, *, timeout: float = 30.0) -> None:
    """Blocks until the API server's admission plugins see the configurations applied so far.

    Webhook configurations reach the admission chain through an informer, i.e. some time
    after they were created. A probe configuration is registered last, pointing at a port
    where nothing listens and selecting only objects with a probe label; once a dry-run
    create of such an object fails in that webhook, the informer has delivered the probe,
    and with it everything applied before it.
    """
    name = f"egress-guard-e2e-sync-{secrets.token_hex(4)}"
    probe_config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": "sync-probe.egress-guard.dev",
                # Port 1 on loopback: connection refused at once.
                "clientConfig": {"url": f"https://{LOOPBACK}:1/sync-probe"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["configmaps"],
                        "scope": "Namespaced",
                    }
                ],
                "objectSelector": {"matchLabels": {SYNC_PROBE_LABEL: name}},
                "failurePolicy": "Fail",
                "sideEffects": "None",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 2,
            }
        ],
    }
    probe_object = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": "kube-system",
                "labels": {SYNC_PROBE_LABEL: name},
            },
        }
    )
    kubectl.apply(probe_config)
    try:

        def probe_rejected() -> bool:
            result = kubectl("create", "--dry-run=server", "-f", "-", input=probe_object)
            return result.returncode != 0 and "sync-probe.egress-guard.dev" in result.stderr

        _wait_until("webhook configurations to take effect", probe_rejected, timeout=timeout)
    finally:
        kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found")


# --------------------------------------------------------------------------------------
# CLI: up / status / down, with a state file so `down` stops exactly what `up` started
# --------------------------------------------------------------------------------------


def _state_path(state_dir: Path) -> Path:
    return state_dir / "state.json"


def _load_processes(state_dir: Path) -> list[ManagedProcess]:
    path = _state_path(state_dir)
    if not path.is_file():
        return []
    state = json.loads(path.read_text())
    return [ManagedProcess.from_state(p) for p in state.get("processes", [])]


def _remove_generated(state_dir: Path) -> None:
    for name in ("etcd", "pki", "kube-cache", "kubeconfig", "webhook-kubeconfig", "state.json"):
        target = state_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def cmd_up(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    running = [p for p in _load_processes(state_dir) if p.alive()]
    if running:
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in running)
        raise HarnessError(f"already up in {state_dir}: {names}; run `make e2e-down` first")
    # Fresh data for every `up`; logs are kept (appended) for debugging.
    _remove_generated(state_dir)
    started = time.monotonic()
    tools = build_tools()
    plane = ControlPlane(state_dir, tools, detach=True)
    plane.start()
    webhook: Webhook | None = None
    if args.webhook:
        webhook = Webhook(
            plane,
            state_dir,
            policy_file=args.policy,
            identity=args.identity,
            detach=True,
        )
        try:
            webhook.start()
        except BaseException:
            plane.stop()
            raise
    processes = plane.processes() + ([webhook.process] if webhook and webhook.process else [])
    state = {
        **plane.to_state(),
        "processes": [p.to_state() for p in processes],
        "webhook": webhook.base_url if webhook else None,
    }
    _state_path(state_dir).write_text(json.dumps(state, indent=2) + "\n")
    _stderr(f"up in {time.monotonic() - started:.1f}s; logs in {plane.logs_dir}")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    print(f"export PATH={tools.dir}:$PATH")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    processes = _load_processes(state_dir)
    if not processes:
        _stderr(f"nothing to stop ({_state_path(state_dir)} not found)")
        return 0
    # Reverse start order: webhook, kube-apiserver, etcd.
    for process in reversed(processes):
        if process.alive():
            _stderr(f"stopping {process.name} (pid {process.pid})")
            process.stop()
    _state_path(state_dir).unlink(missing_ok=True)
    # The data and credentials of a stopped cluster are useless; logs stay for debugging.
    _remove_generated(state_dir)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state_dir: Path = args.dir
    path = _state_path(state_dir)
    if not path.is_file():
        print("down")
        return 1
    state = json.loads(path.read_text())
    healthy = True
    for process in _load_processes(state_dir):
        alive = process.alive()
        healthy &= alive
        print(f"{process.name:15} pid {process.pid:<8} {'running' if alive else 'DEAD'}")
    print(f"server          {state['server']}")
    print(f"kubeconfig      {state['kubeconfig']}")
    if state.get("webhook"):
        print(f"webhook         {state['webhook']}")
    return 0 if healthy else 1


def cmd_tools(_: argparse.Namespace) -> int:
    print(build_tools().dir)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_STATE_DIR, help="state, data and logs (.e2e/)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start etcd + kube-apiserver (+ the webhook)")
    up.add_argument("--no-webhook", dest="webhook", action="store_false", help="control plane only")
    up.add_argument("--policy", type=Path, help="serve this policy file instead of the ConfigMap")
    up.add_argument(
        "--identity",
        choices=("serviceaccount", "admin"),
        default="serviceaccount",
        help="credentials the webhook uses to read the cluster",
    )
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=cmd_down)
    sub.add_parser("status", help="show what is running").set_defaults(func=cmd_status)
    sub.add_parser("tools", help="build the pinned tools, print their dir").set_defaults(
        func=cmd_tools
    )
    args = parser.parse_args(argv)
    args.dir = args.dir.resolve()
    try:
        return int(args.func(args))
    except HarnessError as exc:
        _stderr(f"error: {exc}")
        return 1


@contextlib.contextmanager
def running_control_plane(workdir: Path, tools: Tools) -> Iterator[ControlPlane]:
    """A started control plane, stopped on exit."""
    plane = ControlPlane(workdir, tools)
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


if __name__ == "__main__":
    sys.exit(main())

"""egress-guard's own ``serve`` on loopback, registered as the webhooks of a control plane.

The server is the product's CLI (gunicorn over TLS), reading its policy from the ConfigMap the
chart would create and talking to the API server as the chart's webhook ServiceAccount. The
controller's account is granted at the same time, so tests can start controllers as it.
"""

from __future__ import annotations

import os
import shutil
import ssl
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.harness.accounts import (
    WEBHOOK_ACCOUNT,
    controller_grant,
    grant,
    service_account_kubeconfig,
    webhook_grant,
    with_controller_user,
)
from tests.e2e.harness.common import (
    LOOPBACK,
    POLICY_CONFIGMAP,
    POLICY_MANIFEST,
    PORT_ATTEMPTS,
    WEBHOOK_NAMESPACE,
    HarnessError,
    say,
)
from tests.e2e.harness.control_plane import ControlPlane
from tests.e2e.harness.pki import CertKey, issue_cert, new_ca
from tests.e2e.harness.processes import (
    ManagedProcess,
    address_in_use,
    free_port,
    https_status,
    wait_until,
)
from tests.e2e.harness.webhooks import (
    WEBHOOK_CONFIGURATION_NAME,
    wait_for_admission_sync,
    webhook_configurations,
)

IDENTITIES = ("serviceaccount", "admin")


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


def policy_manifest(path: Path) -> dict[str, Any]:
    """The policy ConfigMap in ``path``, with the controller's account among its users."""
    manifest = yaml.safe_load(path.read_text())
    if not isinstance(manifest, dict):
        raise HarnessError(f"{path} holds no ConfigMap")
    return with_controller_user(manifest)


class Webhook:
    """egress-guard's own ``serve`` (gunicorn over TLS) on loopback, registered in a cluster.

    ``policy_file`` selects file-based policy; by default the policy is read from the
    ``egress-guard/egress-guard-policy`` ConfigMap, applied from ``policies/`` if present.
    ``identity`` is "serviceaccount" (a TokenRequest token of the chart's webhook account,
    with the chart's RBAC) or "admin" (the admin client certificate).
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
        if identity not in IDENTITIES:
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
        say(f"webhook ready at {self.base_url} in {time.monotonic() - started:.1f}s")

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

    def to_state(self) -> dict[str, Any]:
        return {
            "url": self.base_url,
            "processes": [self.process.to_state()] if self.process else [],
        }

    # -- internals ---------------------------------------------------------------------

    def _prepare_cluster(self) -> None:
        kubectl = self.plane.kubectl
        grant(kubectl, [webhook_grant(), controller_grant()])
        if self.policy_file is None and self.policy_manifest is not None:
            if self.policy_manifest.is_file():
                kubectl.apply(policy_manifest(self.policy_manifest))
            else:
                say(f"{self.policy_manifest} does not exist; no policy ConfigMap applied")

    def _write_identity(self) -> None:
        if self.identity == "admin":
            shutil.copyfile(self.plane.kubeconfig, self.kubeconfig)
            return
        service_account_kubeconfig(self.plane, WEBHOOK_ACCOUNT, self.kubeconfig)

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
                wait_until("egress-guard to serve TLS", self._ready, process=self.process)
            except HarnessError:
                if attempt < PORT_ATTEMPTS and address_in_use(self.process):
                    say("webhook port collision, retrying with another port")
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
        status = https_status(LOOPBACK, self.port, "/readyz", context)
        if status == 404:
            status = https_status(LOOPBACK, self.port, "/healthz", context)
            return status is not None and (status == 200 or status == 404)
        return status == 200

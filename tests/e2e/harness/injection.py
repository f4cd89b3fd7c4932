"""Istio's own sidecar injection, served on loopback and registered as istiod registers it.

Pods in a real cluster get their proxy from istiod's injection webhook. ``tools/istio-inject``
is that webhook (``pkg/kube/inject`` of the pinned ``istio.io/istio``), configured with the
template, values and mesh config the istio-discovery chart renders. Its
MutatingWebhookConfiguration is the chart's too (``-print-webhook``): same name, webhooks,
namespace and object selectors (``istio-injection``, ``istio.io/rev``,
``sidecar.istio.io/inject``); only the client config points at the loopback server instead
of the istiod Service. Validating webhooks run after every mutating one, so egress-guard
always judges the Pod the injector produced.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
from pathlib import Path
from typing import Any, Final

from tests.e2e.harness.common import LOOPBACK, PORT_ATTEMPTS, HarnessError, say
from tests.e2e.harness.control_plane import ControlPlane
from tests.e2e.harness.pki import CertKey, issue_cert, new_ca
from tests.e2e.harness.processes import (
    ManagedProcess,
    address_in_use,
    free_port,
    https_status,
    wait_until,
)
from tests.e2e.harness.webhooks import wait_for_admission_sync
from tests.istio_module import istio_module_dir

# The revision istiod serves when installed without one; namespaces labelled
# ``istio.io/rev`` with any other value get no injector.
DEFAULT_REVISION: Final = "default"
PRINT_TIMEOUT_S: Final = 120.0


def injector_webhook_configuration(
    binary: Path, base_url: str, ca_bundle_pem: bytes, *, revision: str = DEFAULT_REVISION
) -> dict[str, Any]:
    """istiod's MutatingWebhookConfiguration for ``revision``, pointed at ``base_url``."""
    try:
        done = subprocess.run(
            [
                str(binary),
                f"-module={istio_module_dir()}",
                f"-revision={revision}",
                "-print-webhook",
            ],
            capture_output=True,
            text=True,
            timeout=PRINT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(f"{binary} -print-webhook did not run: {exc}") from exc
    if done.returncode != 0:
        raise HarnessError(f"{binary} -print-webhook failed: {done.stderr[-2000:]}")
    configuration: dict[str, Any] = json.loads(done.stdout)
    ca_bundle = base64.b64encode(ca_bundle_pem).decode()
    for hook in configuration["webhooks"]:
        path = hook["clientConfig"]["service"].get("path", "/inject")
        hook["clientConfig"] = {"url": f"{base_url}{path}", "caBundle": ca_bundle}
    return configuration


class Injector:
    """``tools/istio-inject`` on loopback, registered in a control plane like istiod."""

    def __init__(
        self,
        plane: ControlPlane,
        workdir: Path,
        *,
        revision: str = DEFAULT_REVISION,
        native_sidecars: bool = False,
        detach: bool = False,
    ) -> None:
        self.plane = plane
        self.workdir = workdir
        self.revision = revision
        # The proxy as a classic container, or as a native sidecar (an init container that
        # keeps running). Chosen explicitly: Istio's "auto" would ask the API server for the
        # nodes' kubelet versions, and the harness runs no kubelet.
        self.native_sidecars = native_sidecars
        self.detach = detach
        self.port: int | None = None
        self.process: ManagedProcess | None = None
        self.ca: CertKey | None = None
        self.configuration_name: str | None = None

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise HarnessError("the injector is not started")
        return f"https://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        try:
            self._write_pki()
            self._start_server()
            self.register()
        except BaseException:
            self.stop()
            raise
        say(f"Istio injector (revision {self.revision}) ready at {self.base_url}")

    def stop(self) -> None:
        # Unregister first: failurePolicy Fail would reject every selected Pod otherwise.
        if self.plane.apiserver is not None and self.plane.apiserver.alive():
            self.unregister()
        if self.process is not None:
            self.process.stop()

    def register(self) -> None:
        if self.ca is None:
            raise HarnessError("the injector has no CA yet")
        configuration = injector_webhook_configuration(
            self.plane.tools.istio_inject, self.base_url, self.ca.cert_pem, revision=self.revision
        )
        self.configuration_name = configuration["metadata"]["name"]
        self.plane.kubectl.apply([configuration])
        wait_for_admission_sync(self.plane.kubectl)

    def unregister(self) -> None:
        if self.configuration_name is not None:
            self.plane.kubectl(
                "delete",
                "mutatingwebhookconfiguration",
                self.configuration_name,
                "--ignore-not-found",
            )

    # -- internals ---------------------------------------------------------------------

    def _pki_dir(self) -> Path:
        return self.workdir / "pki"

    def _write_pki(self) -> None:
        pki = self._pki_dir()
        pki.mkdir(parents=True, exist_ok=True)
        self.ca = new_ca("istio-inject-e2e-ca")
        self.ca.write(pki / "ca.crt", pki / "ca.key")
        issue_cert(
            self.ca, "istiod", dns_names=("localhost",), ip_addresses=(LOOPBACK,), server=True
        ).write(pki / "tls.crt", pki / "tls.key")

    def _start_server(self) -> None:
        pki = self._pki_dir()
        binary = self.plane.tools.istio_inject
        if not binary.is_file():
            raise HarnessError(f"{binary} is missing; run `make tools`")
        module = istio_module_dir()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = free_port()
            self.process = ManagedProcess(
                name="istio-inject",
                argv=[
                    str(binary),
                    f"-module={module}",
                    f"-listen={LOOPBACK}:{self.port}",
                    f"-cert={pki / 'tls.crt'}",
                    f"-key={pki / 'tls.key'}",
                    f"-revision={self.revision}",
                ],
                log_path=self.plane.logs_dir / f"istio-inject-{self.revision}.log",
                env={
                    **os.environ,
                    "ENABLE_NATIVE_SIDECARS": "true" if self.native_sidecars else "false",
                },
                detach=self.detach,
            )
            self.process.start()
            try:
                wait_until("the Istio injector to serve TLS", self._ready, process=self.process)
            except HarnessError:
                if attempt < PORT_ATTEMPTS and address_in_use(self.process):
                    self.process.stop()
                    continue
                raise
            return

    def _ready(self) -> bool:
        if self.port is None:
            return False
        context = ssl.create_default_context(cafile=str(self._pki_dir() / "ca.crt"))
        return https_status(LOOPBACK, self.port, "/healthz", context) == 200

"""ConfigMap edit to enforcement on a real API server, at several allow-list sizes.

A benchmark, not a test: ``python -m tests.bench.bench_policy_edit`` (or ``make bench-cluster``)
prints a markdown table.  One harness control plane and ``egress-guard serve`` watching the policy
ConfigMap.  Per size: the ConfigMap is written with N hosts that do not include a probe host, the
webhook is seen refusing a ServiceEntry for the probe (server-side dry-run), then the ConfigMap is
replaced by one that also allows the probe, and the time from the API server's answer to that
write until the first dry-run the webhook admits is the edit-to-enforcement latency (dry-runs
every 20 ms).  The policy text is JSON under the ``policy.yaml`` key (JSON is YAML; the parser
reads JSON text with orjson).  A ConfigMap holds at most 1 MiB of data, so sizes whose policy does
not fit are reported as such instead of being sent.
"""

from __future__ import annotations

import argparse
import base64
import functools
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from tests.bench.bench_cluster import Api, _api_args, _https_ready, _wait
from tests.bench.bench_service import policy_document
from tests.e2e.harness import (
    LOOPBACK,
    REPO_ROOT,
    ControlPlane,
    HarnessError,
    ManagedProcess,
    build_tools,
    egress_guard_command,
    free_port,
    issue_cert,
    new_ca,
    wait_for_admission_sync,
)

NAMESPACE = "team-0"
POLICY_NAMESPACE = "egress-guard"
POLICY_NAME = "egress-guard-policy"
PROBE = "probe.allowed-later.example.com"
CONFIGMAP_LIMIT = 1024 * 1024


def policy_text(hosts: int, *, with_probe: bool) -> str:
    """JSON policy text with ``hosts`` hosts; ``team-0`` may reach the probe when told."""
    document = policy_document(hosts)
    document["egress"] = {"namespace": "egress"}
    if with_probe:
        document["externalServices"].append(
            {"name": "probe", "hosts": [PROBE], "ports": [{"number": 443, "protocol": "TLS"}]}
        )
        document["allow"].append(
            {"name": "probe", "from": {"namespace": NAMESPACE}, "to": ["probe"]}
        )
    return orjson.dumps(document).decode()


def configmap(text: str) -> dict[str, Any]:
    """The policy ConfigMap."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": POLICY_NAME, "namespace": POLICY_NAMESPACE},
        "data": {"policy.yaml": text},
    }


def probe_entry() -> bytes:
    """A ServiceEntry for the probe host, visible to its own namespace only."""
    return orjson.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "probe", "namespace": NAMESPACE},
            "spec": {
                "hosts": [PROBE],
                "exportTo": ["."],
                "location": "MESH_EXTERNAL",
                "resolution": "DNS",
                "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            },
        }
    )


def admitted(api: Api) -> bool:
    """Whether a dry-run create of the probe ServiceEntry is admitted."""
    connection = api.connection()
    try:
        connection.request(
            "POST",
            f"/apis/networking.istio.io/v1/namespaces/{NAMESPACE}/serviceentries?dryRun=All",
            probe_entry(),
            {"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        response.read()
        return response.status == 201
    finally:
        connection.close()


def put_configmap(api: Api, text: str) -> None:
    """Replace the policy ConfigMap (create it the first time)."""
    body = orjson.dumps(configmap(text))
    connection = api.connection()
    try:
        base = f"/api/v1/namespaces/{POLICY_NAMESPACE}/configmaps"
        headers = {"Content-Type": "application/json"}
        connection.request("PUT", f"{base}/{POLICY_NAME}", body, headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status == 404:
            connection.request("POST", base, body, headers)
            response = connection.getresponse()
            answer = response.read()
        if response.status not in (200, 201):
            raise HarnessError(f"writing the policy ConfigMap: {response.status} {answer[:300]!r}")
    finally:
        connection.close()


def registration(url: str, ca_pem: bytes) -> dict[str, Any]:
    """egress-guard's validating webhook for ServiceEntries in the probe's namespace."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "bench-policy-edit"},
        "webhooks": [
            {
                "name": "validate.policy-edit.bench.dev",
                "clientConfig": {
                    "url": f"{url}/validate",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
                "rules": [
                    {
                        "apiGroups": ["networking.istio.io"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["serviceentries"],
                    }
                ],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
            }
        ],
    }


def run(sizes: Sequence[int], repeats: int) -> str:
    """Measure every size; return the markdown report."""
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="egress-guard-bench-edit-") as tmp_name:
        tmp = Path(tmp_name)
        plane = ControlPlane(tmp / "plane", build_tools())
        server: ManagedProcess | None = None
        try:
            plane.start()
            kubectl = plane.kubectl
            for namespace in (NAMESPACE, POLICY_NAMESPACE):
                kubectl("create", "namespace", namespace, check=True)
            api = Api(*_api_args(plane))
            put_configmap(api, policy_text(100, with_probe=False))
            pki = tmp / "webhook-pki"
            pki.mkdir()
            ca = new_ca("bench-edit-ca")
            issue_cert(ca, "bench", ip_addresses=(LOOPBACK,), server=True).write(
                pki / "tls.crt", pki / "tls.key"
            )
            ca.write(pki / "ca.crt", pki / "ca.key")
            port = free_port()
            server = ManagedProcess(
                name="egress-guard",
                argv=[
                    *egress_guard_command(),
                    "serve",
                    f"--cert-file={pki / 'tls.crt'}",
                    f"--key-file={pki / 'tls.key'}",
                    f"--policy-configmap={POLICY_NAMESPACE}/{POLICY_NAME}",
                    f"--kubeconfig={plane.kubeconfig}",
                    "--no-cluster-view",
                    f"--bind={LOOPBACK}:{port}",
                ],
                log_path=plane.logs_dir / "bench-edit-egress-guard.log",
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            )
            server.start()
            _wait("egress-guard", functools.partial(_https_ready, port, pki / "ca.crt", "/readyz"))
            kubectl.apply(registration(f"https://{LOOPBACK}:{port}", ca.cert_pem))
            wait_for_admission_sync(kubectl)
            for size in sizes:
                before, after = (policy_text(size, with_probe=p) for p in (False, True))
                if len(after.encode()) > CONFIGMAP_LIMIT:
                    rows.append(
                        f"| {size:,} | {len(after.encode()) / 1024 / 1024:.2f} MiB | does not fit "
                        "in a ConfigMap (1 MiB of data at most) | — | — |"
                    )
                    continue
                seconds = []
                for _ in range(repeats):
                    put_configmap(api, before)
                    _wait("the probe to be refused", lambda: not admitted(api), timeout=120)
                    put_configmap(api, after)
                    written = time.perf_counter()
                    while not admitted(api):
                        if time.perf_counter() - written > 120:
                            raise HarnessError(f"the {size}-host policy never took effect")
                        time.sleep(0.02)
                    seconds.append(time.perf_counter() - written)
                rows.append(
                    f"| {size:,} | {len(after.encode()) / 1024:.0f} KiB | "
                    f"{1000 * statistics.median(seconds):.0f} | "
                    f"{1000 * min(seconds):.0f}-{1000 * max(seconds):.0f} | {repeats} |"
                )
        finally:
            if server is not None:
                server.stop()
            plane.stop()
    return "\n".join(
        [
            "| hosts | policy text | edit to enforcement, median ms | range ms | edits |",
            "|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"- Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
            f"- Command: `python -m tests.bench.bench_policy_edit {shlex.join(sys.argv[1:])}`",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the sizes and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100,10000,30000,100000")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(run([int(s) for s in args.sizes.split(",")], args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""ConfigMap edit to enforcement on a real API server, at several allow-list sizes.

A benchmark, not a test: ``python -m tests.bench.bench_policy_edit`` (or ``make bench-cluster``)
prints a markdown table.  One harness control plane and ``egress-guard serve`` watching the policy
ConfigMap, registered both for tenant ServiceEntries and for edits of the policy ConfigMap (so the
write's answer includes the webhook's validation of the proposed policy).  Per size: the ConfigMap
is written with N realistic hosts (``tests.bench.hostnames``) that do not include a probe host, the
webhook is seen refusing a ServiceEntry for the probe (server-side dry-run), then the ConfigMap is
replaced by one that also allows the probe.  Reported: the write's round trip, and the time until
the first dry-run the webhook admits (dry-runs every 20 ms), counted from the start of the write
and from its answer.  The policy is JSON under ``data[policy.json]`` while that fits in a
ConfigMap (1 MiB), else gzipped under ``binaryData[policy.json.gz]``.
"""

from __future__ import annotations

import argparse
import base64
import gzip
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

from tests.bench import results
from tests.bench.bench_cluster import Api, ServingPki, _api_args, start_server
from tests.bench.hostnames import realistic_policy
from tests.e2e.harness import (
    LOOPBACK,
    ControlPlane,
    HarnessError,
    ManagedProcess,
    build_tools,
    egress_guard_command,
    wait_for_admission_sync,
    wait_until,
)
from webhook.core.policy_admission import PolicyConfigMap
from webhook.core.policy_admission import registration as policy_registration

NAMESPACE = "team-0"
POLICY_NAMESPACE = "egress-guard"
POLICY_NAME = "egress-guard-policy"
PROBE = "probe.allowed-later.example.com"
CONFIGMAP_LIMIT = 1024 * 1024
# below the limit with room for the object's other fields
PLAIN_LIMIT = 1000 * 1024
MIB = 1024 * 1024


def policy_text(hosts: int, *, with_probe: bool) -> str:
    """JSON policy text with ``hosts`` hosts; ``team-0`` may reach the probe when told."""
    document = realistic_policy(hosts)
    document["egress"] = {"namespace": "egress"}
    if with_probe:
        document["externalServices"].append(
            {"name": "probe", "hosts": [PROBE], "ports": [{"number": 443, "protocol": "TLS"}]}
        )
        document["allow"].append(
            {"name": "probe", "from": {"namespace": NAMESPACE}, "to": ["probe"]}
        )
    return orjson.dumps(document).decode()


def stored(text: str) -> tuple[str, bytes]:
    """The ConfigMap key for ``text`` and the bytes stored under it (gzip once too large)."""
    raw = text.encode()
    if len(raw) <= PLAIN_LIMIT:
        return "data[policy.json]", raw
    return "binaryData[policy.json.gz]", gzip.compress(raw, 9)


def configmap(text: str) -> dict[str, Any]:
    """The policy ConfigMap, the policy under the key ``stored`` picks."""
    key, payload = stored(text)
    if key.startswith("data"):
        content: dict[str, Any] = {"data": {"policy.json": text}}
    else:
        content = {"binaryData": {"policy.json.gz": base64.b64encode(payload).decode()}}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": POLICY_NAME, "namespace": POLICY_NAMESPACE},
        **content,
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


def put_configmap(api: Api, text: str | bytes) -> None:
    """Replace the policy ConfigMap (create it the first time); bytes are a ready request body."""
    body = text if isinstance(text, bytes) else orjson.dumps(configmap(text))
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
    """egress-guard's validating webhooks: ServiceEntries in the probe's namespace, and edits of
    the policy ConfigMap, as the chart registers them."""
    client_config = {"url": f"{url}/validate", "caBundle": base64.b64encode(ca_pem).decode()}
    policy_edits = {
        **policy_registration(PolicyConfigMap(POLICY_NAMESPACE, POLICY_NAME), guard_delete=False),
        "clientConfig": client_config,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
    }
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "bench-policy-edit"},
        "webhooks": [
            policy_edits,
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
            },
        ],
    }


def run(sizes: Sequence[int], repeats: int) -> tuple[str, dict[str, Any]]:
    """Measure every size; return the markdown report and the summary kept as results."""
    rows: list[str] = []
    summary: dict[str, dict[str, Any]] = {}
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
            pki = ServingPki.create(tmp / "webhook-pki", "bench")
            server, port = start_server(
                plane,
                pki,
                "egress-guard",
                [
                    *egress_guard_command(),
                    "serve",
                    *pki.tls_args(),
                    f"--policy-configmap={POLICY_NAMESPACE}/{POLICY_NAME}",
                    f"--kubeconfig={plane.kubeconfig}",
                    "--no-cluster-view",
                ],
                ready_path="/readyz",
            )
            kubectl.apply(registration(f"https://{LOOPBACK}:{port}", pki.ca.cert_pem))
            wait_for_admission_sync(kubectl)
            for size in sizes:
                before, after = (policy_text(size, with_probe=p) for p in (False, True))
                key, payload = stored(after)
                bodies = [orjson.dumps(configmap(t)) for t in (before, after)]
                sizes_cell = (
                    f"{len(after.encode()) / MIB:.2f} MiB | {key} | {len(payload) / MIB:.2f} MiB"
                    f" | {len(bodies[1]) / MIB:.2f} MiB"
                )
                if len(payload) > CONFIGMAP_LIMIT:
                    rows.append(
                        f"| {size:,} | {sizes_cell} | does not fit in a ConfigMap | — | — | — |"
                    )
                    summary[str(size)] = {"key": key, "note": "does not fit in a ConfigMap"}
                    continue
                applies, from_start, from_answer = [], [], []
                for _ in range(repeats):
                    put_configmap(api, bodies[0])
                    wait_until("the probe to be refused", lambda: not admitted(api), timeout=120)
                    started = time.perf_counter()
                    put_configmap(api, bodies[1])
                    answered = time.perf_counter()
                    while not admitted(api):
                        if time.perf_counter() - started > 120:
                            raise HarnessError(f"the {size}-host policy never took effect")
                        time.sleep(0.02)
                    done = time.perf_counter()
                    applies.append(answered - started)
                    from_start.append(done - started)
                    from_answer.append(done - answered)
                rows.append(
                    f"| {size:,} | {sizes_cell} | {_spread(applies)} | {_spread(from_start)} | "
                    f"{_spread(from_answer)} |"
                )
                summary[str(size)] = {
                    "key": key,
                    "stored_bytes": len(payload),
                    "median_ms": 1000 * statistics.median(from_start),
                    "min_ms": 1000 * min(from_start),
                    "max_ms": 1000 * max(from_start),
                }
        finally:
            if server is not None:
                server.stop()
            plane.stop()
    report = "\n".join(
        [
            f"Median (range) of {repeats} edits, ms.",
            "",
            "| hosts | policy JSON | key | stored | request body | write answered "
            "(webhook validation included) | enforced, from the write's start | "
            "enforced, from its answer |",
            "|---:|---:|---|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"- Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
            f"- Command: `python -m tests.bench.bench_policy_edit {shlex.join(sys.argv[1:])}`",
        ]
    )
    return report, {"sizes": summary}


def _spread(seconds: Sequence[float]) -> str:
    """``median (min-max)`` in ms."""
    ms = [1000 * s for s in seconds]
    return f"{statistics.median(ms):.0f} ({min(ms):.0f}-{max(ms):.0f})"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the sizes and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100,10000,30000,100000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--save", action="store_true", help="keep the summary in tests/bench/")
    argv_used = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv_used)
    report, summary = run([int(s) for s in args.sizes.split(",")], args.repeats)
    print(report)
    if args.save:
        results.save("policy_edit", summary, module="tests.bench.bench_policy_edit", argv=argv_used)
    return 0


if __name__ == "__main__":
    sys.exit(main())

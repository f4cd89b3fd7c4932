"""What ``matchConditions`` save on a real API server: webhook calls for scaling and rollouts.

A benchmark, not a test: ``python -m tests.bench.bench_match_conditions`` (or ``make
bench-cluster``) prints a markdown table.  One harness control plane (etcd + kube-apiserver), one
``egress-guard serve``, and two registrations of it for Deployments, each selecting its own
namespace: ``without`` has no matchConditions, ``with`` carries
``webhook.admission.match_conditions.match_conditions`` for every kind egress-guard checks (so
the API server compiles and runs the full expression, not a Deployment-only excerpt).  In each
namespace the same Deployment then gets N scale operations (merge patches of ``spec.replicas``,
what ``kubectl scale`` and an HPA write) and M rollouts (a new pod-template annotation, what
``kubectl rollout restart`` writes), alternating between the namespaces.  Reported: the API
server's webhook calls (``apiserver_admission_webhook_admission_duration_seconds_count``) and
its mean time in them, and the client's latency per patch.  The harness runs no
controller-manager, so the ReplicaSet and Pod writes a real rollout adds are not part of it.
"""

from __future__ import annotations

import argparse
import base64
import functools
import http.client
import os
import shlex
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.bench import results as saved
from tests.bench.bench_cluster import (
    EGRESS_GUARD_POLICY,
    WEBHOOK_METRIC,
    Api,
    ServingPki,
    _api_args,
    scrape,
    start_server,
)
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
from webhook.admission.match_conditions import match_conditions

SETUPS = ("without", "with")
NAMESPACES = {s: f"mc-{s}" for s in SETUPS}
WEBHOOKS = {s: f"validate.{s}.match-conditions.bench.dev" for s in SETUPS}


def registration(setup: str, url: str, ca_pem: bytes) -> dict[str, Any]:
    """A validating webhook for Deployments in the setup's namespace."""
    webhook: dict[str, Any] = {
        "name": WEBHOOKS[setup],
        "clientConfig": {"url": f"{url}/validate", "caBundle": base64.b64encode(ca_pem).decode()},
        "rules": [
            {
                "apiGroups": ["apps"],
                "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["deployments"],
                "scope": "Namespaced",
            }
        ],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACES[setup]}},
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 10,
    }
    if setup == "with":
        webhook["matchConditions"] = match_conditions()
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": f"bench-mc-{setup}"},
        "webhooks": [webhook],
    }


def deployment(namespace: str, *, host_network: bool = False) -> dict[str, Any]:
    """A small Deployment; ``host_network`` makes egress-guard refuse it."""
    spec: dict[str, Any] = {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    if host_network:
        spec["hostNetwork"] = True
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace, "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec},
        },
    }


def _request(api: Api, method: str, path: str, body: Any, content_type: str) -> int:
    connection = api.connection()
    try:
        connection.request(method, path, orjson.dumps(body), {"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _refuses(api: Api, namespace: str) -> bool:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments?dryRun=All"
    bad = deployment(namespace, host_network=True)
    return _request(api, "POST", path, bad, "application/json") != 201


def reviews_answered(port: int, ca_file: Path) -> float:
    """egress-guard's own count of the reviews it answered (its /metrics)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    connection = http.client.HTTPSConnection(LOOPBACK, port, timeout=10, context=context)
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "egress_guard_admission_requests"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def patch_many(api: Api, namespace: str, patches: Sequence[dict[str, Any]]) -> list[float]:
    """Merge-patch the Deployment once per entry over one keep-alive connection; latencies."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/web"
    connection = api.connection()
    latencies = []
    try:
        for patch in patches:
            started = time.perf_counter()
            connection.request(
                "PATCH", path, orjson.dumps(patch), {"Content-Type": "application/merge-patch+json"}
            )
            response = connection.getresponse()
            body = response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                raise HarnessError(f"patch {namespace} failed: {response.status} {body[:300]!r}")
    finally:
        connection.close()
    return latencies


def run(scales: int, rollouts: int) -> tuple[str, dict[str, Any]]:
    """Start everything, patch, and return the markdown report and the summary kept as results."""
    with tempfile.TemporaryDirectory(prefix="egress-guard-bench-mc-") as tmp_name:
        tmp = Path(tmp_name)
        plane = ControlPlane(tmp / "plane", build_tools())
        server: ManagedProcess | None = None
        try:
            plane.start()
            kubectl = plane.kubectl
            pki = ServingPki.create(tmp / "webhook-pki", "bench")
            policy = tmp / "policy.yaml"
            policy.write_text(yaml.safe_dump(EGRESS_GUARD_POLICY))
            server, port = start_server(
                plane,
                pki,
                "egress-guard",
                [*egress_guard_command(), "serve", *pki.tls_args(), f"--policy={policy}"],
            )
            for setup in SETUPS:
                kubectl("create", "namespace", NAMESPACES[setup], check=True)
                kubectl.apply(registration(setup, f"https://{LOOPBACK}:{port}", pki.ca.cert_pem))
            wait_for_admission_sync(kubectl)
            api = Api(*_api_args(plane))
            for setup in SETUPS:
                namespace = NAMESPACES[setup]
                wait_until(
                    f"{setup} to refuse", functools.partial(_refuses, api, namespace), timeout=60
                )
                path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
                status = _request(api, "POST", path, deployment(namespace), "application/json")
                if status != 201:
                    raise HarnessError(f"creating the Deployment in {namespace}: {status}")
            results: dict[str, dict[str, tuple[float, float, list[float], float]]] = {}
            phases = {
                "scale": [{"spec": {"replicas": 2 + i % 5}} for i in range(scales)],
                "rollout": [
                    {
                        "spec": {
                            "template": {
                                "metadata": {"annotations": {"bench/restartedAt": f"r{i}"}}
                            }
                        }
                    }
                    for i in range(rollouts)
                ],
            }
            for phase, patches in phases.items():
                results[phase] = {}
                # alternate in chunks so drifting background load hits both setups alike
                chunks = [patches[i : i + 10] for i in range(0, len(patches), 10)]
                totals: dict[str, list[Any]] = {s: [0.0, 0.0, [], 0.0] for s in SETUPS}
                for k, chunk in enumerate(chunks):
                    order = SETUPS if k % 2 == 0 else SETUPS[::-1]
                    for setup in order:
                        before = scrape(plane)
                        answered = reviews_answered(port, pki.ca_file)
                        latencies = patch_many(api, NAMESPACES[setup], chunk)
                        after = scrape(plane)
                        totals[setup][3] += reviews_answered(port, pki.ca_file) - answered
                        key = f"{WEBHOOK_METRIC}:{WEBHOOKS[setup]}"
                        start, end = before.get(key, (0.0, 0.0)), after.get(key, (0.0, 0.0))
                        totals[setup][0] += end[0] - start[0]
                        totals[setup][1] += end[1] - start[1]
                        totals[setup][2].extend(latencies)
                for setup in SETUPS:
                    seconds, calls, latencies, answered = totals[setup]
                    results[phase][setup] = (seconds, calls, latencies, answered)
        finally:
            if server is not None:
                server.stop()
            plane.stop()
    counts = {"scale": scales, "rollout": rollouts}
    summary = {
        phase: {
            "operations": counts[phase],
            **{setup: int(by_setup[setup][1]) for setup in by_setup},
        }
        for phase, by_setup in results.items()
    }
    return report(results, scales=scales, rollouts=rollouts), {"phases": summary}


def report(
    results: dict[str, dict[str, tuple[float, float, list[float], float]]],
    *,
    scales: int,
    rollouts: int,
) -> str:
    """The markdown table."""
    counts = {"scale": scales, "rollout": rollouts}
    lines = [
        "| operations | matchConditions | reviews egress-guard answered | API server webhook "
        "calls | API server time in the webhook, total ms | client p50 ms per patch "
        "| client mean ms per patch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for phase, by_setup in results.items():
        for setup, (seconds, calls, latencies, answered) in by_setup.items():
            lines.append(
                f"| {counts[phase]} {phase} patches | {setup} | {answered:.0f} | {calls:.0f} | "
                f"{seconds * 1000:.1f} | {1000 * statistics.median(latencies):.2f} | "
                f"{1000 * statistics.fmean(latencies):.2f} |"
            )
    lines += [
        "",
        f"- Load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        f"- Command: `python -m tests.bench.bench_match_conditions {shlex.join(sys.argv[1:])}`",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the counts and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scales", type=int, default=100)
    parser.add_argument("--rollouts", type=int, default=20)
    parser.add_argument("--save", action="store_true", help="keep the summary in tests/bench/")
    argv_used = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv_used)
    report_text, summary = run(args.scales, args.rollouts)
    print(report_text)
    if args.save:
        saved.save(
            "match_conditions", summary, module="tests.bench.bench_match_conditions", argv=argv_used
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

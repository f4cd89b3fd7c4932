"""What egress-guard costs a ``kubectl apply`` on a real API server, next to what users would
pick instead.  A benchmark, not a test: run ``make bench-cluster`` (or
``python -m tests.bench.bench_cluster --creates 500``); it prints a markdown table.

One harness control plane (etcd + kube-apiserver, ``tests/e2e/harness/``), a namespace
per configuration, so configurations never stack (each admission hook selects only its own
namespace):

- ``none``: no admission hook for ServiceEntries;
- ``cel``: an in-tree ValidatingAdmissionPolicy (CEL) checking every host against an allow list
  kept in a ConfigMap param, what a user would write instead for a plain host list;
- ``null``: a do-nothing flask webhook (parse the review, echo its uid, allow) under exactly
  egress-guard's gunicorn settings (``WebhookServer``: gthread, 8 threads, keep-alive 120 s, TLS),
  the baseline of the target;
- ``bare``: the same do-nothing webhook as a plain WSGI callable, no flask, under the same
  settings: the stack floor, for information (egress-guard's review routes bypass flask too);
- ``egress-guard``: the real ``egress-guard serve`` with its defaults (a decision log line per
  review included), deciding against a policy that allows the host.

N ServiceEntry creates per configuration go to the API server over raw HTTPS with keep-alive,
first over one connection, then from 8 concurrent client processes (processes, so the client's
GIL does not set the pace).  To keep background load from favouring one configuration, the N
creates are split into rounds and the configurations take turns, in a rotating order.  Reported
per create: p50, p99 and mean latency as the client sees it, throughput, and the API server's own
``apiserver_admission_webhook_admission_duration_seconds`` (webhooks) and
``apiserver_validating_admission_policy_check_duration_seconds`` (CEL) means.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import multiprocessing
import os
import shlex
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.types import WSGIApplication

import orjson
import yaml
from flask import Flask, Response, request
from prometheus_client.parser import text_string_to_metric_families

from tests.bench import results
from tests.bench.null_server import plain_review_app
from tests.e2e.harness import (
    LOOPBACK,
    REPO_ROOT,
    CertKey,
    ControlPlane,
    HarnessError,
    ManagedProcess,
    build_tools,
    egress_guard_command,
    free_port,
    issue_cert,
    new_ca,
    wait_for_admission_sync,
    wait_until,
)
from tests.e2e.harness.processes import https_status

CONFIGS = ("none", "cel", "null", "bare", "egress-guard")
NAMESPACES = {c: f"bench-{c}" for c in CONFIGS}
CLIENTS = 8
HOSTS = ("api.example.com", "billing.example.com", "status.example.org")
DENIED_HOST = "exfiltrate.example.net"
WEBHOOK_NAMES = {
    "null": "validate.null.bench.dev",
    "bare": "validate.bare.bench.dev",
    "egress-guard": "validate.egress-guard.dev",
}
VAP_NAME = "bench-egress-hosts"
WEBHOOK_METRIC = "apiserver_admission_webhook_admission_duration_seconds"
PLUGIN_METRIC = "apiserver_admission_controller_admission_duration_seconds"
VAP_PLUGIN = "ValidatingAdmissionPolicy"

EGRESS_GUARD_POLICY = {
    "apiVersion": "egress-guard.dev/v1alpha1",
    "kind": "EgressPolicy",
    "mode": "enforce",
    "egress": {
        "namespace": "bench-egress",
        "gateway": {
            "mode": "shared",
            "name": "istio-egressgateway",
            "selector": {"istio": "egressgateway"},
        },
    },
    "externalServices": [
        {"name": "apis", "hosts": list(HOSTS), "ports": [{"number": 443, "protocol": "TLS"}]}
    ],
    "allow": [{"name": "everyone", "from": {"namespace": "*"}, "to": ["apis"]}],
}


# --- the do-nothing webhook ------------------------------------------------------------------


def allowed(body: bytes) -> bytes:
    """The answer allowing the review in ``body``: its uid echoed (the API server checks it)."""
    uid = orjson.loads(body)["request"]["uid"]
    return orjson.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True},
        }
    )


def null_app(*_: object) -> Flask:
    """A flask app that allows every review: read, parse, echo the uid, nothing else."""
    app = Flask("bench-null")

    def review() -> Response:
        return Response(allowed(request.get_data(cache=False)), mimetype="application/json")

    app.add_url_rule("/validate", "validate", review, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", lambda: Response(b"{}", mimetype="application/json"))
    return app


def bare_app(*_: object) -> WSGIApplication:
    """``null_app`` as a plain WSGI callable, no flask, as ``WebhookServer`` builds its app."""
    return plain_review_app(allowed)


def serve_null(bind: str, cert_file: Path, key_file: Path, *, bare: bool = False) -> None:
    """Serve ``null_app`` (or ``bare_app``) under egress-guard's own gunicorn runner and default
    settings."""
    from webhook.admission.server import AppFactory, WebhookServer
    from webhook.policy_runtime import StaticPolicySource, embedded_policy_text
    from webhook.settings import Settings

    settings = Settings(bind=bind, cert_file=cert_file, key_file=key_file, log_level="warning")
    factory: AppFactory = bare_app if bare else null_app
    WebhookServer(
        settings,
        source_factory=lambda _: StaticPolicySource(embedded_policy_text(), origin="bench"),
        app_factory=factory,
    ).run()


# --- talking to the API server ---------------------------------------------------------------


@dataclass(frozen=True)
class Api:
    """How to reach the API server as admin (picklable, for the client processes)."""

    port: int
    ca_file: str
    cert_file: str
    key_file: str

    def connection(self) -> http.client.HTTPSConnection:
        context = ssl.create_default_context(cafile=self.ca_file)
        context.load_cert_chain(self.cert_file, self.key_file)
        return http.client.HTTPSConnection(LOOPBACK, self.port, timeout=30, context=context)


def service_entry(namespace: str, name: str, host: str = HOSTS[0]) -> bytes:
    """A ServiceEntry of realistic size, as JSON."""
    return orjson.dumps(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {"app.kubernetes.io/name": "bench", "team": "payments"},
            },
            "spec": {
                "hosts": [host],
                "location": "MESH_EXTERNAL",
                "resolution": "DNS",
                "exportTo": ["."],
                "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            },
        }
    )


def _create(
    connection: http.client.HTTPSConnection, namespace: str, body: bytes, dry_run: bool = False
) -> tuple[int, bytes]:
    path = f"/apis/networking.istio.io/v1/namespaces/{namespace}/serviceentries"
    if dry_run:
        path += "?dryRun=All"
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.read()


def create_many(api: Api, namespace: str, names: Sequence[str], start_at: float = 0.0) -> Timing:
    """Creates one ServiceEntry per name over one keep-alive connection; times each create."""
    connection = api.connection()
    try:
        # the TLS handshake belongs to no create
        status, body = _create(connection, namespace, service_entry(namespace, "x"), dry_run=True)
        if status != 201:
            raise HarnessError(f"warm-up create in {namespace} failed: {status} {body[:300]!r}")
        if start_at:
            time.sleep(max(0.0, start_at - time.time()))
        latencies: list[float] = []
        began = time.perf_counter()
        for name in names:
            payload = service_entry(namespace, name)
            t0 = time.perf_counter()
            status, body = _create(connection, namespace, payload)
            latencies.append(time.perf_counter() - t0)
            if status != 201:
                raise HarnessError(f"create {namespace}/{name} failed: {status} {body[:300]!r}")
        return Timing(latencies, began, time.perf_counter())
    finally:
        connection.close()


def _create_many_star(args: tuple[Api, str, list[str], float]) -> Timing:
    return create_many(*args)


@dataclass
class Timing:
    """Latencies of a batch of creates, and when the batch ran (perf_counter seconds)."""

    latencies: list[float]
    began: float
    ended: float


@dataclass
class Totals:
    """Everything measured for one configuration in one phase."""

    latencies: list[float] = field(default_factory=list)
    busy_seconds: float = 0.0
    # the API server's own timings of this configuration's creates: (seconds, calls)
    webhook: tuple[float, float] = (0.0, 0.0)
    plugin: tuple[float, float] = (0.0, 0.0)

    def add(
        self,
        timings: Sequence[Timing],
        before: dict[str, tuple[float, float]],
        after: dict[str, tuple[float, float]],
        webhook_name: str,
    ) -> None:
        """One chunk of creates, with the metric scrapes taken around it."""
        for t in timings:
            self.latencies.extend(t.latencies)
        self.busy_seconds += max(t.ended for t in timings) - min(t.began for t in timings)
        self.webhook = _plus(self.webhook, before, after, f"{WEBHOOK_METRIC}:{webhook_name}")
        self.plugin = _plus(self.plugin, before, after, f"{PLUGIN_METRIC}:{VAP_PLUGIN}")

    def ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def mean_ms(self) -> float:
        return 1000 * statistics.fmean(self.latencies)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.busy_seconds

    @property
    def webhook_ms(self) -> float:
        return 1000 * self.webhook[0] / self.webhook[1] if self.webhook[1] else float("nan")

    @property
    def plugin_ms(self) -> float:
        return 1000 * self.plugin[0] / self.plugin[1] if self.plugin[1] else float("nan")


def _plus(
    total: tuple[float, float],
    before: dict[str, tuple[float, float]],
    after: dict[str, tuple[float, float]],
    key: str,
) -> tuple[float, float]:
    start, end = before.get(key, (0.0, 0.0)), after.get(key, (0.0, 0.0))
    return total[0] + end[0] - start[0], total[1] + end[1] - start[1]


def scrape(plane: ControlPlane) -> dict[str, tuple[float, float]]:
    """(sum, count) of the API server's admission timings: per webhook name, and for the
    in-tree ValidatingAdmissionPolicy plugin (whose per-policy histogram only counts denials)."""
    connection = Api(*_api_args(plane)).connection()
    try:
        connection.request("GET", "/metrics")
        text = connection.getresponse().read().decode()
    finally:
        connection.close()
    out: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (WEBHOOK_METRIC, PLUGIN_METRIC):
            continue
        for sample in family.samples:
            name = sample.labels.get("name", "")
            if family.name == PLUGIN_METRIC and name != VAP_PLUGIN:
                continue
            totals = out.setdefault(f"{family.name}:{name}", [0.0, 0.0])
            if sample.name.endswith("_sum"):
                totals[0] += sample.value
            elif sample.name.endswith("_count"):
                totals[1] += sample.value
    return {key: (v[0], v[1]) for key, v in out.items()}


def _api_args(plane: ControlPlane) -> tuple[int, str, str, str]:
    pki = plane.pki_dir
    assert plane.secure_port is not None
    return (
        plane.secure_port,
        str(pki / "ca.crt"),
        str(pki / "admin.crt"),
        str(pki / "admin.key"),
    )


# --- setting the configurations up -------------------------------------------------------------


def _webhook_configuration(config: str, url: str, ca_pem: bytes) -> dict[str, Any]:
    import base64

    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": f"bench-{config}"},
        "webhooks": [
            {
                "name": WEBHOOK_NAMES[config],
                "clientConfig": {
                    "url": f"{url}/validate",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                },
                "rules": [
                    {
                        "apiGroups": ["networking.istio.io"],
                        "apiVersions": ["*"],
                        "operations": ["CREATE", "UPDATE", "DELETE"],
                        "resources": ["serviceentries"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": NAMESPACES[config]}
                },
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "matchPolicy": "Equivalent",
                "timeoutSeconds": 10,
            }
        ],
    }


def cel_policy() -> list[dict[str, Any]]:
    """The in-tree alternative: hosts must be in the ``hosts`` key of a ConfigMap param."""
    namespace = NAMESPACES["cel"]
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": VAP_NAME, "namespace": namespace},
            "data": {"hosts": ",".join(HOSTS)},
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": VAP_NAME},
            "spec": {
                "failurePolicy": "Fail",
                "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["networking.istio.io"],
                            "apiVersions": ["*"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["serviceentries"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "object.spec.hosts.all(h, h in params.data.hosts.split(','))",
                        "messageExpression": "'hosts outside the egress allow list: ' + "
                        "object.spec.hosts.filter(h, !(h in params.data.hosts.split(',')))"
                        ".join(', ')",
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": VAP_NAME},
            "spec": {
                "policyName": VAP_NAME,
                "validationActions": ["Deny"],
                "paramRef": {
                    "name": VAP_NAME,
                    "namespace": namespace,
                    "parameterNotFoundAction": "Deny",
                },
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    ]


def _refused(connection: http.client.HTTPSConnection, namespace: str, body: bytes) -> bool:
    return _create(connection, namespace, body, dry_run=True)[0] != 201


def _https_ready(port: int, ca_file: Path, path: str = "/healthz") -> bool:
    context = ssl.create_default_context(cafile=str(ca_file))
    return https_status(LOOPBACK, port, path, context) == 200


@dataclass(frozen=True)
class ServingPki:
    """A CA and a loopback serving certificate for the benchmarks' webhook servers."""

    ca: CertKey
    directory: Path

    @classmethod
    def create(cls, directory: Path, name: str) -> ServingPki:
        directory.mkdir()
        ca = new_ca(f"{name}-ca")
        ca.write(directory / "ca.crt", directory / "ca.key")
        issue_cert(ca, name, ip_addresses=(LOOPBACK,), server=True).write(
            directory / "tls.crt", directory / "tls.key"
        )
        return cls(ca, directory)

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    def tls_args(self) -> list[str]:
        """The serving pair as ``egress-guard serve`` options."""
        return [
            f"--cert-file={self.directory / 'tls.crt'}",
            f"--key-file={self.directory / 'tls.key'}",
        ]


def start_server(
    plane: ControlPlane,
    pki: ServingPki,
    name: str,
    argv: Sequence[str],
    ready_path: str = "/healthz",
) -> tuple[ManagedProcess, int]:
    """Start a webhook server on a free loopback port; return it and the port once it answers."""
    port = free_port()
    server = ManagedProcess(
        name=name,
        argv=[*argv, f"--bind={LOOPBACK}:{port}"],
        log_path=plane.logs_dir / f"bench-{name}.log",
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    server.start()
    wait_until(
        f"{name} webhook",
        functools.partial(_https_ready, port, pki.ca_file, ready_path),
        process=server,
        timeout=60,
    )
    return server, port


class Bench:
    """The control plane, the three webhook servers and the five configurations."""

    def __init__(self, workdir: Path, serve_args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.serve_args = list(serve_args)
        self.plane = ControlPlane(workdir / "plane", build_tools())
        self.servers: list[ManagedProcess] = []

    def start(self) -> None:
        self.plane.start()
        kubectl = self.plane.kubectl
        for namespace in NAMESPACES.values():
            kubectl("create", "namespace", namespace, check=True)
        pki = ServingPki.create(self.workdir / "webhook-pki", "bench")
        policy = self.workdir / "policy.yaml"
        policy.write_text(yaml.safe_dump(EGRESS_GUARD_POLICY))
        argvs = {
            "null": [
                sys.executable,
                "-m",
                "tests.bench.bench_cluster",
                "null-server",
                *pki.tls_args(),
            ],
            "bare": [
                sys.executable,
                "-m",
                "tests.bench.bench_cluster",
                "null-server",
                "--bare",
                *pki.tls_args(),
            ],
            "egress-guard": [
                *egress_guard_command(),
                "serve",
                *pki.tls_args(),
                f"--policy={policy}",
                *self.serve_args,
            ],
        }
        for config, argv in argvs.items():
            server, port = start_server(self.plane, pki, config, argv)
            self.servers.append(server)
            kubectl.apply(
                _webhook_configuration(config, f"https://{LOOPBACK}:{port}", pki.ca.cert_pem)
            )
        kubectl.apply(cel_policy())
        wait_for_admission_sync(kubectl)
        api = Api(*_api_args(self.plane))
        connection = api.connection()
        try:
            # the two hooks that can refuse must be seen refusing before anything is timed
            for config in ("cel", "egress-guard"):
                namespace = NAMESPACES[config]
                probe = service_entry(namespace, "probe", DENIED_HOST)
                wait_until(
                    f"{config} to refuse {DENIED_HOST}",
                    functools.partial(_refused, connection, namespace, probe),
                    timeout=60,
                )
        finally:
            connection.close()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.plane.stop()


def run(creates: int, rounds: int, serve_args: Sequence[str] = ()) -> tuple[str, dict[str, Any]]:
    """Runs the benchmark; returns the markdown report and the summary kept as results."""
    load_before = os.getloadavg()
    api_version = ""
    with tempfile.TemporaryDirectory(prefix="egress-guard-bench-cluster-") as tmp:
        bench = Bench(Path(tmp), serve_args)
        try:
            bench.start()
            api = Api(*_api_args(bench.plane))
            version = bench.plane.api_get("/version")[1]
            api_version = str(version.get("gitVersion", "")) if isinstance(version, dict) else ""
            sequential = {c: Totals() for c in CONFIGS}
            concurrent = {c: Totals() for c in CONFIGS}
            # the same, per round, for the spread of the ratios across rounds
            seq_rounds = [{c: Totals() for c in CONFIGS} for _ in range(rounds)]
            conc_rounds = [{c: Totals() for c in CONFIGS} for _ in range(rounds)]
            # a multiple of the client count, so both phases do the same number of creates
            per_round = -(-creates // (rounds * CLIENTS)) * CLIENTS
            context = multiprocessing.get_context("spawn")
            with context.Pool(CLIENTS) as pool:
                # warm-up: connections, the API server's webhook clients, CEL compilation
                for config in CONFIGS:
                    create_many(api, NAMESPACES[config], [f"warm-{i}" for i in range(50)])
                    warm = [f"warm-c{k}" for k in range(CLIENTS)]
                    pool.map(_create_many_star, [(api, NAMESPACES[config], [n], 0.0) for n in warm])
                for r in range(rounds):
                    # rotating turns: drifting background load hits every configuration alike
                    for config in CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]:
                        names = [f"seq-{r}-{i}" for i in range(per_round)]
                        before = scrape(bench.plane)
                        timing = create_many(api, NAMESPACES[config], names)
                        after = scrape(bench.plane)
                        for totals in (sequential, seq_rounds[r]):
                            totals[config].add(
                                [timing], before, after, WEBHOOK_NAMES.get(config, "")
                            )
                for r in range(rounds):
                    for config in CONFIGS[r % len(CONFIGS) :] + CONFIGS[: r % len(CONFIGS)]:
                        before = scrape(bench.plane)
                        start_at = time.time() + 0.3
                        batches = [
                            (
                                api,
                                NAMESPACES[config],
                                [f"conc-{r}-{k}-{i}" for i in range(per_round // CLIENTS)],
                                start_at,
                            )
                            for k in range(CLIENTS)
                        ]
                        timings = pool.map(_create_many_star, batches)
                        after = scrape(bench.plane)
                        for totals in (concurrent, conc_rounds[r]):
                            totals[config].add(
                                timings, before, after, WEBHOOK_NAMES.get(config, "")
                            )
        finally:
            bench.stop()
    per_phase = {"1 connection": seq_rounds, f"{CLIENTS} clients": conc_rounds}
    summary = {
        "rounds": rounds,
        "creates": per_round * rounds,
        "phases": {
            phase: {
                **round_ratios(per, "null"),
                # information, not a target: egress-guard against the same stack with no flask
                **{f"floor_{k}": v for k, v in round_ratios(per, "bare").items()},
            }
            for phase, per in per_phase.items()
        },
    }
    return report(
        creates=per_round * rounds,
        sequential=sequential,
        concurrent=concurrent,
        rounds=per_phase,
        load=(load_before, os.getloadavg()),
        api_version=api_version,
        serve_args=serve_args,
    ), summary


LABELS = {
    "none": "no policy",
    "cel": "ValidatingAdmissionPolicy (CEL, ConfigMap param)",
    "null": "do-nothing flask webhook (same gunicorn)",
    "bare": "do-nothing WSGI webhook, no flask (same gunicorn; stack floor)",
    "egress-guard": "egress-guard",
}
SHORT_LABELS = {"null": "do-nothing flask webhook", "bare": "do-nothing WSGI webhook"}


def report(
    *,
    creates: int,
    sequential: dict[str, Totals],
    concurrent: dict[str, Totals],
    rounds: dict[str, list[dict[str, Totals]]],
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
    api_version: str,
    serve_args: Sequence[str],
) -> str:
    """The README-ready markdown."""
    lines = [
        f"{creates} ServiceEntry creates per configuration and phase against kube-apiserver "
        f"{api_version} (etcd without fsync) on {os.cpu_count()} CPUs; latency per create in ms "
        "as the client sees it. *API server* columns: its own mean time in the webhook call "
        "(`apiserver_admission_webhook_admission_duration_seconds`) and in the "
        "ValidatingAdmissionPolicy plugin (`apiserver_admission_controller_admission_duration_"
        "seconds{name=ValidatingAdmissionPolicy}`; the per-policy check histogram counts denials "
        "only).",
        "",
        "| configuration | 1 connection p50 / p99 / mean | creates/s | added mean "
        f"| {CLIENTS} clients p50 / p99 / mean | creates/s | added mean "
        "| API server: webhook call (1 / 8) | API server: VAP plugin (1 / 8) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base_s, base_c = sequential["none"].mean_ms, concurrent["none"].mean_ms

    def pair(a: float, b: float, digits: int = 2) -> str:
        return "—" if a != a else f"{a:.{digits}f} / {b:.{digits}f}"  # NaN: no such hook

    for config in CONFIGS:
        s, c = sequential[config], concurrent[config]
        lines.append(
            f"| {LABELS[config]} "
            f"| {s.ms(0.5):.2f} / {s.ms(0.99):.2f} / {s.mean_ms:.2f} | {s.throughput:.0f} "
            f"| {s.mean_ms - base_s:+.2f} "
            f"| {c.ms(0.5):.2f} / {c.ms(0.99):.2f} / {c.mean_ms:.2f} | {c.throughput:.0f} "
            f"| {c.mean_ms - base_c:+.2f} "
            f"| {pair(s.webhook_ms, c.webhook_ms)} | {pair(s.plugin_ms, c.plugin_ms, 3)} |"
        )
    lines.append("")
    for phase, totals, base in (
        ("1 connection", sequential, base_s),
        (f"{CLIENTS} clients", concurrent, base_c),
    ):
        eg = totals["egress-guard"].mean_ms - base
        # medians shrug off the odd GC or compaction pause that lands in one configuration's turn
        eg_p50 = totals["egress-guard"].ms(0.5) - totals["none"].ms(0.5)
        lines.append(
            f"- {phase}: egress-guard adds {eg:.2f} ms per create (mean; {eg_p50:.2f} ms at the "
            f"median); {_against(totals, base, 'null')} (target <= 1.1); "
            f"{_against(totals, base, 'bare')} (the stack floor, for information)."
        )
    lines += [
        "",
        f"Per round ({len(next(iter(rounds.values())))} rotating rounds): egress-guard's added "
        "cost over each do-nothing webhook's, median and range of the rounds (the target is "
        "against the flask one; the WSGI one is the stack floor, for information).",
        "",
        "| phase | against | ratio on added median latency "
        "| ratio on the API server's webhook call time |",
        "|---|---|---|---|",
    ]
    for phase, per_round in rounds.items():
        for baseline in ("null", "bare"):
            on_p50, on_call = _ratios(per_round, baseline)
            lines.append(
                f"| {phase} | {SHORT_LABELS[baseline]} | {_spread(on_p50)} | {_spread(on_call)} |"
            )
    lines.append("")
    lines.append(
        f"- Load average before / after: {' '.join(f'{x:.2f}' for x in load[0])} / "
        f"{' '.join(f'{x:.2f}' for x in load[1])}; configurations take turns in rotating "
        "order, so background load skews them alike."
    )
    if serve_args:
        lines.append(f"- egress-guard serve extra arguments: `{shlex.join(serve_args)}`")
    lines.append(f"- Command: `python -m tests.bench.bench_cluster {shlex.join(sys.argv[1:])}`")
    return "\n".join(lines)


def _ratio(value: float, baseline: float) -> str:
    """``value / baseline``, or '—' when the baseline added nothing measurable."""
    return f"{value / baseline:.2f}" if baseline > 0 else "—"


def _against(totals: dict[str, Totals], base: float, baseline: str) -> str:
    """One do-nothing webhook's added cost per create, and egress-guard's ratios to it."""
    other = totals[baseline].mean_ms - base
    other_p50 = totals[baseline].ms(0.5) - totals["none"].ms(0.5)
    eg = totals["egress-guard"].mean_ms - base
    eg_p50 = totals["egress-guard"].ms(0.5) - totals["none"].ms(0.5)
    call = _ratio(totals["egress-guard"].webhook_ms, totals[baseline].webhook_ms)
    return (
        f"the {SHORT_LABELS[baseline]} {other:.2f} ms ({other_p50:.2f} ms): ratio "
        f"{_ratio(eg, other)} on means, {_ratio(eg_p50, other_p50)} on medians, {call} on the "
        "API server's webhook call times"
    )


def _ratios(
    per_round: Sequence[dict[str, Totals]], baseline: str
) -> tuple[list[float], list[float]]:
    """Per round: egress-guard's added median latency over the ``baseline`` webhook's, and the
    ratio of the API server's webhook call times."""
    on_p50, on_call = [], []
    for totals in per_round:
        other_p50 = totals[baseline].ms(0.5) - totals["none"].ms(0.5)
        if other_p50 > 0:
            on_p50.append((totals["egress-guard"].ms(0.5) - totals["none"].ms(0.5)) / other_p50)
        on_call.append(totals["egress-guard"].webhook_ms / totals[baseline].webhook_ms)
    return on_p50, on_call


def round_ratios(
    per_round: Sequence[dict[str, Totals]], baseline: str
) -> dict[str, dict[str, float]]:
    """Median, lowest and highest of the per-round ratios, as the results keep them."""
    on_p50, on_call = _ratios(per_round, baseline)
    return {
        name: {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }
        for name, values in (("p50_ratio", on_p50), ("call_ratio", on_call))
        if values
    }


def _spread(values: Sequence[float]) -> str:
    """``median (min-max)`` of per-round ratios; '—' when there are none."""
    if not values:
        return "—"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: Sequence[str] | None = None) -> int:
    """``run`` (the benchmark) or ``null-server`` (the do-nothing webhook it starts)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command")
    null = sub.add_parser("null-server", help="serve the do-nothing webhook")
    null.add_argument("--bind", required=True)
    null.add_argument("--cert-file", required=True, type=Path)
    null.add_argument("--key-file", required=True, type=Path)
    null.add_argument("--bare", action="store_true", help="a plain WSGI callable, no flask")
    parser.add_argument("--creates", type=int, default=500, help="creates per configuration/phase")
    parser.add_argument("--rounds", type=int, default=10, help="turns the configurations take")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        help="extra egress-guard serve argument (repeatable): --serve-arg=--no-log-allowed",
    )
    parser.add_argument("--save", action="store_true", help="keep the summary in tests/bench/")
    argv_used = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv_used)
    if args.command == "null-server":
        serve_null(args.bind, args.cert_file, args.key_file, bare=args.bare)
        return 0
    report_text, summary = run(args.creates, args.rounds, args.serve_arg)
    print(report_text)
    if args.save:
        results.save("cluster", summary, module="tests.bench.bench_cluster", argv=argv_used)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the webhook service and of the policy core, printed as README-ready markdown.

Run ``python -m tests.bench.bench_service`` (or ``make bench``).  Not a pytest test: it takes about
a minute and its numbers depend on the machine.  What it measures:

1. AdmissionReviews/s and p50/p90/p99 latency of the real ``egress-guard serve`` over TLS with
   keep-alive, driven by ``wrk`` with 8 connections on a realistic mix (ServiceEntry, Sidecar,
   VirtualService, Namespace; 2.5-5 KB each with labels, annotations and managedFields), side by
   side with a do-nothing flask handler under the same gunicorn/TLS settings (the ceiling the
   targets are stated against) and a do-nothing plain WSGI callable, no flask (the stack floor:
   egress-guard's review routes bypass flask, so this is the least the same stack can cost);
2. the webhook's in-process work per review (parse, decide, respond), what its decision cache
   key costs, and the cost of an answer from that cache;
3. the allow-list lookup (``Policy.services_covering``) at 100, 10k and 100k hosts;
4. policy compile time (YAML, checks, indexes) at 100, 10k and 100k hosts.

``wrk`` is the Debian package of that name; when it is missing and we are root the script
installs it with apt-get, otherwise it falls back to a Python keep-alive client, which is slower
than the service and therefore measures itself more than the service (the output says so).
"""

from __future__ import annotations

import argparse
import gc
import http.client
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.bench import memory, results, worst_case
from tests.bench.hostnames import policy_with_services
from tests.integration.service import (
    Service,
    admission_review,
    namespace_object,
    running_service,
    service_entry,
    sidecar,
    virtual_service,
)
from webhook.admission.decision_cache import DecisionCache, cache_key
from webhook.admission.responses import review_response
from webhook.admission.server import GC_THRESHOLD
from webhook.core.checks import EmptyView
from webhook.core.decisions import MAX_LISTED_VIOLATIONS, STOP_AFTER_VIOLATIONS
from webhook.core.engine import decide
from webhook.core.hosts import HostTrie
from webhook.core.policy_documents import load_document
from webhook.core.policy_parsing import build_policy, parse_policy
from webhook.core.reviews import parse_review
from webhook.tls import generate_files

ROOT = Path(__file__).resolve().parents[2]
POLICY_FILE = ROOT / "policies" / "banzai-demo.yaml"
# compiles per allow-list size, the best kept
COMPILE_TRIES = 3

LUA = r"""
local entries = {}
for line in io.lines("@MANIFEST@") do
  local path, file = line:match("([^\t]+)\t(.+)")
  local f = assert(io.open(file, "rb"))
  table.insert(entries, {path, f:read("*a")})
  f:close()
end
local i = 0
local headers = {["Content-Type"] = "application/json"}
-- each wrk thread numbers its requests; @ID@ (in the uid, the name and the object's uid) becomes
-- thread and request number, so every review is a new object, as the API server sends creates
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
request = function()
  i = i + 1
  local e = entries[(i % #entries) + 1]
  local body = e[2]
  if @UNIQUE@ then
    body = body:gsub("@ID@", string.format("%04x%08x", tid or 0, i))
  end
  return wrk.format("POST", e[1], headers, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


@dataclass(frozen=True)
class Load:
    """One load-test result."""

    name: str
    layout: str
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    failures: int
    # established connections per worker process, sampled mid-run ("3/5")
    split: str = ""
    # CPU the server's processes (master and workers) used per request during the run
    cpu_us: float = 0.0
    # context switches of the workers' threads per request during the run
    switches: float = 0.0

    @property
    def rate(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


# --- the request mix ---------------------------------------------------------------------------


def request_mix() -> list[tuple[str, bytes]]:
    """(path, body) pairs: a realistic spread of kinds, operations and verdicts."""
    mix = [
        ("/validate", admission_review(service_entry(["api.evil.io"]), kind="ServiceEntry")),
        (
            "/validate",
            admission_review(
                service_entry(["httpbin.org"], namespace="test-app", kilobytes=3),
                kind="ServiceEntry",
                dry_run=True,
            ),
        ),
        ("/validate", admission_review(sidecar("test-app"), kind="Sidecar")),
        (
            "/validate",
            admission_review(
                virtual_service("httpbin.org", kb=5), kind="VirtualService", operation="UPDATE"
            ),
        ),
        ("/mutate", admission_review(namespace_object("team-new"), kind="Namespace", group="")),
        ("/validate", admission_review(namespace_object("team-new"), kind="Namespace", group="")),
        (
            "/validate",
            admission_review(
                service_entry(["*.github.com"], namespace="istio-system"), kind="ServiceEntry"
            ),
        ),
        ("/validate", admission_review(sidecar("payments", kb=2), kind="Sidecar")),
    ]
    return [(path, orjson.dumps(body)) for path, body in mix]


ID = "@ID@"


def unique_mix(mix: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The mix with ``@ID@`` in every uid and name, for the load generator to fill in."""
    out = []
    for path, body in mix:
        review = orjson.loads(body)
        request = review["request"]
        request["uid"] = f"00000000-0000-4000-8000-{ID}"
        obj = request.get("object") or {}
        meta = obj.get("metadata") or {}
        if request["kind"]["kind"] == "Namespace":
            # a Namespace's name is the namespace the decision is about
            name = f"team-{ID}"
        else:
            name = f"{meta.get('name', 'obj')}-{ID}"
        request["name"] = name
        if meta:
            meta["name"] = name
            meta["uid"] = f"11111111-0000-4000-8000-{ID}"
        out.append((path, orjson.dumps(review)))
    return out


def fill(mix: Sequence[tuple[str, bytes]], n: int, start: int = 0) -> list[tuple[str, bytes]]:
    """``n`` distinct reviews from a ``unique_mix`` (what the load generator sends)."""
    return [
        (path, body.replace(ID.encode(), f"{i:012x}".encode()))
        for i in range(start, start + n)
        for path, body in [mix[i % len(mix)]]
    ]


def verify(
    service: Service, mix: Sequence[tuple[str, bytes]], *, echo: bool = True
) -> dict[str, int]:
    """Send each request once: all must be answered 200 (with the uid echoed)."""
    verdicts: dict[str, int] = {}
    conn = http.client.HTTPSConnection("127.0.0.1", service.port, context=service.ssl_context())
    try:
        for path, body in mix:
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = orjson.loads(resp.read())
            if resp.status != 200:
                raise RuntimeError(f"{path} answered {resp.status}: {answer}")
            sent = orjson.loads(body)["request"]["uid"]
            if echo and answer["response"]["uid"] != sent:
                raise RuntimeError("uid not echoed")
            key = (
                "patched"
                if "patch" in answer["response"]
                else ("allow" if answer["response"]["allowed"] else "deny")
            )
            verdicts[key] = verdicts.get(key, 0) + 1
    finally:
        conn.close()
    return verdicts


# --- load generators ---------------------------------------------------------------------------


def ensure_wrk() -> str | None:
    """The wrk binary, installing the Debian package when possible."""
    found = shutil.which("wrk")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("installing wrk with apt-get ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        subprocess.run(cmd, env=env, check=False, capture_output=True, timeout=600)
    return shutil.which("wrk")


def connection_split(service: Service) -> str:
    """How the clients' established connections are spread over the workers, e.g. ``3/5``."""
    return "/".join(str(c) for c in service.connections_per_worker())


def run_wrk(
    wrk: str,
    url: str,
    script: Path,
    *,
    seconds: int,
    connections: int,
    threads: int,
    sample: Callable[[], str] | None = None,
) -> dict[str, Any]:
    """One wrk run; the Lua ``done`` hook prints a JSON summary; ``sample`` runs mid-run."""
    process = subprocess.Popen(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampled = ""
    if sample is not None:
        time.sleep(min(1.0, seconds / 2))
        sampled = sample()
    out, _ = process.communicate(timeout=seconds + 60)
    if process.returncode:
        raise RuntimeError(f"wrk failed ({process.returncode}):\n{out}")
    match = re.search(r"^RESULT (\{.*\})$", out, re.MULTILINE)
    if not match:
        raise RuntimeError(f"no result from wrk:\n{out}")
    return {**orjson.loads(match.group(1)), "split": sampled}


def run_python_client(
    service: Service, mix: Sequence[tuple[str, bytes]], *, seconds: float, connections: int
) -> dict[str, Any]:
    """The fallback load generator: threads with one keep-alive connection each."""
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(offset: int) -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", service.port, context=service.ssl_context())
        mine: list[float] = []
        i = offset
        while time.monotonic() < stop:
            path, body = mix[i % len(mix)]
            i += 1
            started = time.perf_counter()
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            mine.append(time.perf_counter() - started)
            if resp.status != 200:
                with lock:
                    failures[0] += 1
        conn.close()
        with lock:
            latencies.extend(mine)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()

    def pct(p: float) -> int:
        return int(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6)

    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "non2xx": failures[0],
        "errors": 0,
        "p50_us": pct(50),
        "p90_us": pct(90),
        "p99_us": pct(99),
    }


# --- in-process measurements -------------------------------------------------------------------


def per_call_us(
    func: Callable[[], object], *, batch_seconds: float = 0.01, batches: int = 40
) -> float:
    """Mean µs per call of ``func``, in the fastest of ``batches`` short timed batches.

    The machine's neighbours slow it down for whole tenths of a second at a time, long enough
    to spoil every one of a few long batches; the fastest of many short ones is the code's own
    cost, as ``timeit`` advises.
    """
    func()
    n = 1
    while True:
        started = time.perf_counter()
        for _ in range(n):
            func()
        elapsed = time.perf_counter() - started
        if elapsed > batch_seconds:
            break
        n *= 2
    best = elapsed
    for _ in range(batches - 1):
        started = time.perf_counter()
        for _ in range(n):
            func()
        best = min(best, time.perf_counter() - started)
    return best / n * 1e6


def request_work(
    mix: Sequence[tuple[str, bytes]],
) -> list[tuple[str, int, float, float, float, float | None]]:
    """Per review: size, parse+decide+respond, decide alone, cache key, answer from the cache."""
    policy = parse_policy(POLICY_FILE.read_text())
    rows = []
    for _path, body in mix:
        review = parse_review(orjson.loads(body))

        def work(body: bytes = body) -> bytes:
            rev = parse_review(orjson.loads(body))
            decision = decide(rev, policy)
            return review_response(rev.uid, allowed=decision.allowed, message=decision.reason)

        cache = DecisionCache(EmptyView(), size=16)
        # None: a review the engine answers before any check, which skips the cache
        hit = cache.decide(review, policy)[1] is not None
        rows.append(
            (
                f"{review.kind} {review.operation}{' dry-run' if review.dry_run else ''}",
                len(body),
                per_call_us(work),
                per_call_us(lambda review=review: decide(review, policy)),
                per_call_us(lambda review=review: cache_key(review, policy.revision)),
                per_call_us(lambda r=review, c=cache: c.decide(r, policy)) if hit else None,
            )
        )
    return rows


def where_time_goes(mix: Sequence[tuple[str, bytes]], reviews: int = 4000) -> list[str]:
    """cProfile of the real review handler on unique reviews: CPU share of each stage."""
    import cProfile
    import logging
    import pstats

    from webhook.admission.app import utc_now
    from webhook.admission.logs import configure_logging
    from webhook.admission.metrics import Metrics
    from webhook.admission.policy_edits import NoObjects
    from webhook.admission.reviewing import ReviewHandler
    from webhook.core.mutations import mutate
    from webhook.core.policy_admission import SecurityTeam
    from webhook.policy_runtime import PolicyStore

    with open(os.devnull, "w") as sink:
        configure_logging("info", sink)
        store = PolicyStore()
        store.update(POLICY_FILE.read_text(), origin="bench")
        handler = ReviewHandler(
            store=store,
            metrics=Metrics(),
            mutator=mutate,
            view=EmptyView(),
            log_allowed=True,
            cache_size=4096,
            clock=utc_now,
            policy_configmap=None,
            cluster_objects=NoObjects(),
            security_team=SecurityTeam(),
        )
        bodies = [(p[1:], b) for p, b in fill(unique_mix(mix), reviews)]
        warmup = [(p[1:], b) for p, b in fill(unique_mix(mix), 200, start=reviews)]
        for endpoint, body in warmup:
            handler.answer(endpoint, "application/json", body)
        # unprofiled CPU time per review first, best of 3 batches of fresh reviews
        cpu = float("inf")
        for batch in range(3):
            fresh = [(p[1:], b) for p, b in fill(unique_mix(mix), reviews, (batch + 2) * reviews)]
            started = time.process_time()
            for endpoint, body in fresh:
                handler.answer(endpoint, "application/json", body)
            cpu = min(cpu, (time.process_time() - started) / reviews)
        profile = cProfile.Profile()
        profile.enable()
        for endpoint, body in bodies:
            handler.answer(endpoint, "application/json", body)
        profile.disable()
        logging.getLogger().handlers.clear()
    stats: dict[tuple[str, int, str], Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]

    def cumulative(file_suffix: str, function: str) -> float:
        return sum(
            v[3]
            for (f, _, name), v in stats.items()
            if f.endswith(file_suffix) and name == function
        )

    total = cumulative("admission/reviewing.py", "answer")
    log = cumulative("admission/logs.py", "write")
    finish = cumulative("admission/reviewing.py", "finish")
    decided = cumulative("core/engine.py", "decide")
    cached = cumulative("admission/decision_cache.py", "decide")
    mutated = cumulative("core/mutations.py", "mutate")
    stages = [
        ("read: orjson + parse_review", cumulative("admission/reviewing.py", "read_review")),
        ("decide (engine and checks)", decided),
        ("decision cache around decide", cached - decided),
        ("mutate (the /mutate reviews)", mutated),
        ("response bytes", cumulative("admission/responses.py", "review_response")),
        ("decision log line", log),
        ("metrics", finish - log),
    ]
    lines = [
        f"Unprofiled: {cpu * 1e6:.1f} µs of CPU per unique review (best of 3 batches of "
        f"{reviews:,}).",
        "",
        "| stage | share of handler CPU | µs per review (profiled) |",
        "|---|---:|---:|",
    ]
    for label, seconds in stages:
        lines.append(f"| {label} | {seconds / total:.0%} | {seconds / reviews * 1e6:.1f} |")
    rest = total - sum(s for _, s in stages)
    lines.append(f"| dispatch and the rest | {rest / total:.0%} | {rest / reviews * 1e6:.1f} |")
    return lines


def policy_document(hosts: int, per_service: int = 100) -> dict[str, Any]:
    """A policy with ``hosts`` external hosts (exact and wildcard) in services of 100."""
    services = []
    for s in range(max(1, hosts // per_service)):
        names = [
            (
                f"*.h{i}.svc{s}.example{s % 97}.com"
                if i % 10 == 0
                else f"h{i}.svc{s}.example{s % 97}.com"
            )
            for i in range(min(per_service, hosts))
        ]
        services.append(
            {"name": f"svc-{s}", "hosts": names, "ports": [{"number": 443, "protocol": "TLS"}]}
        )
    return policy_with_services(services)


def lookups_and_compiles(sizes: Sequence[int]) -> list[dict[str, float]]:
    """Lookup µs and compile ms at each allow-list size."""
    rng = random.Random(7)
    rows = []
    # first use loads the JSON Schema validator and the public suffix list: not compile work
    build_policy(load_document(yaml.safe_dump(policy_document(10))))
    # the worker compiles with this collector setting (webhook.admission.server.tune_gc)
    gc.set_threshold(*GC_THRESHOLD)
    for size in sizes:
        doc = policy_document(size)
        text = yaml.safe_dump(doc, sort_keys=False)
        json_text = orjson.dumps(doc).decode()
        yaml_s = json_s = build_s = cpu_s = index_s = float("inf")
        pairs = [(h, svc["name"]) for svc in doc["externalServices"] for h in svc["hosts"]]
        # best of a few tries, as the worst-case table: a burst of other work on the machine
        # only ever adds to a single-shot figure
        for _ in range(COMPILE_TRIES):
            started = time.perf_counter()
            load_document(text)
            yaml_s = min(yaml_s, time.perf_counter() - started)
            started, cpu_started = time.perf_counter(), time.process_time()
            loaded = load_document(json_text)
            json_s = min(json_s, time.perf_counter() - started)
            started = time.perf_counter()
            policy = build_policy(loaded)
            build_s = min(build_s, time.perf_counter() - started)
            cpu_s = min(cpu_s, time.process_time() - cpu_started)
            started = time.perf_counter()
            HostTrie.build(pairs)
            index_s = min(index_s, time.perf_counter() - started)
        hosts = [h for h, _ in pairs]
        queries = []
        for _ in range(2000):
            host = rng.choice(hosts)
            kind = rng.random()
            if host.startswith("*."):
                host = "api." + host[2:]  # covered by the wildcard
            elif kind < 0.3:
                host = "miss-" + host  # not covered
            elif kind < 0.4:
                host = f"nowhere{rng.randrange(10**6)}.example.org"
            queries.append(host)

        def lookup_all(
            queries: list[str] = queries, covering: Any = policy.services_covering
        ) -> None:
            for q in queries:
                covering(q)

        rows.append(
            {
                "hosts": float(len(hosts)),
                "lookup_us": per_call_us(lookup_all) / len(queries),
                "yaml_ms": yaml_s * 1000,
                "json_ms": json_s * 1000,
                "build_ms": build_s * 1000,
                "index_ms": index_s * 1000,
                "total_ms": (json_s + build_s) * 1000,
                "cpu_ms": cpu_s * 1000,
                "yaml_total_ms": (yaml_s + build_s) * 1000,
            }
        )
    return rows


# --- main --------------------------------------------------------------------------------------


def load_test(
    name: str,
    layout: str,
    service: Service,
    mix: Sequence[tuple[str, bytes]],
    *,
    wrk: str | None,
    script: Path,
    seconds: int,
    connections: int,
    wrk_threads: int,
) -> Load:
    """Warm up, then measure one service."""
    if wrk:
        run_wrk(wrk, service.url, script, seconds=2, connections=connections, threads=wrk_threads)
        cpu_before, switches_before = service.cpu_seconds(), service.context_switches()
        r = run_wrk(
            wrk,
            service.url,
            script,
            seconds=seconds,
            connections=connections,
            threads=wrk_threads,
            sample=lambda: connection_split(service),
        )
    else:
        run_python_client(service, mix, seconds=2, connections=connections)
        cpu_before, switches_before = service.cpu_seconds(), service.context_switches()
        r = run_python_client(service, mix, seconds=seconds, connections=connections)
    cpu = service.cpu_seconds() - cpu_before
    switches = service.context_switches() - switches_before
    return Load(
        name,
        layout,
        int(r["requests"]),
        r["duration_us"] / 1e6,
        r["p50_us"] / 1000,
        r["p90_us"] / 1000,
        r["p99_us"] / 1000,
        int(r["non2xx"]) + int(r["errors"]),
        str(r.get("split", "")),
        cpu / max(1, int(r["requests"])) * 1e6,
        switches / max(1, int(r["requests"])),
    )


@dataclass(frozen=True)
class Run:
    """One server configuration under one request mix."""

    name: str
    server: str  # "ceiling", "floor" or "guard"
    layout: str  # WORKERSxTHREADS
    unique: bool
    extra: tuple[str, ...] = ()

    def args(self) -> tuple[str, ...]:
        """The server's command-line options."""
        workers, _, threads = self.layout.partition("x")
        return ("--workers", workers, "--threads", threads, *self.extra)


def plan_runs(layouts: Sequence[str], variants: Sequence[str]) -> list[Run]:
    """Per layout: the ceiling, the floor and egress-guard on unique reviews, variants, the
    identical row."""
    runs = []
    for layout in layouts:
        runs.append(Run("do-nothing flask (ceiling)", "ceiling", layout, unique=True))
        runs.append(Run("do-nothing WSGI, no flask (stack floor)", "floor", layout, unique=True))
        runs.append(Run("egress-guard", "guard", layout, unique=True))
        for variant in variants:
            runs.append(
                Run(f"egress-guard {variant}", "guard", layout, True, tuple(variant.split()))
            )
        runs.append(
            Run("egress-guard, identical reviews resent (cache hits)", "guard", layout, False)
        )
    return runs


def load_section(
    args: argparse.Namespace, mix: Sequence[tuple[str, bytes]]
) -> tuple[list[str], dict[str, Any]]:
    """Rotating rounds of every run: medians and spread as markdown, and per layout the
    median of the per-round ratios to the ceiling (each round runs both servers)."""
    wrk = ensure_wrk()
    tool = (
        f"wrk, {args.wrk_threads} threads"
        if wrk
        else "Python keep-alive client (wrk missing: the client is the bottleneck)"
    )
    layouts = [x.strip() for x in args.layouts.split(",") if x.strip()]
    runs = plan_runs(layouts, args.variant)
    results: dict[Run, list[Load]] = {run: [] for run in runs}
    verdicts: dict[str, int] = {}
    templates = unique_mix(mix)
    with tempfile.TemporaryDirectory(prefix="egress-guard-bench-") as tmp_name:
        tmp = Path(tmp_name)
        certs = generate_files(tmp / "certs", ["127.0.0.1"])
        scripts = {}
        for unique, bodies in ((True, templates), (False, mix)):
            manifest = tmp / f"mix-{unique}.tsv"
            with manifest.open("w") as out:
                for i, (path, body) in enumerate(bodies):
                    (tmp / f"body-{unique}-{i}.json").write_bytes(body)
                    out.write(f"{path}\t{tmp / f'body-{unique}-{i}.json'}\n")
            script = tmp / f"mix-{unique}.lua"
            script.write_text(
                LUA.replace("@MANIFEST@", str(manifest)).replace(
                    "@UNIQUE@", "true" if unique else "false"
                )
            )
            scripts[unique] = script
        policy = tmp / "policy.yaml"
        policy.write_text(POLICY_FILE.read_text())
        common = {
            "cert_file": certs.cert_file,
            "key_file": certs.key_file,
            "ca_file": certs.ca_file,
        }
        commands = {
            "ceiling": (sys.executable, "-m", "tests.bench.null_server"),
            "floor": (sys.executable, "-m", "tests.bench.null_server", "--bare"),
            "guard": (sys.executable, "-m", "webhook.cli", "serve"),
        }
        python_mix = {True: fill(templates, 20_000), False: list(mix)}
        for round_no in range(args.rounds):
            # rotate the order so no configuration always runs first (or last) in a round
            order = runs[round_no % len(runs) :] + runs[: round_no % len(runs)]
            for run in order:
                guard = run.server == "guard"
                with running_service(
                    tmp,
                    command=commands[run.server],
                    policy_file=policy if guard else None,
                    extra_args=run.args(),
                    **common,
                ) as svc:
                    got = verify(svc, mix, echo=guard)
                    if guard:
                        verdicts = got
                    load = load_test(
                        run.name,
                        run.layout,
                        svc,
                        python_mix[run.unique],
                        wrk=wrk,
                        script=scripts[run.unique],
                        seconds=args.seconds,
                        connections=args.connections,
                        wrk_threads=args.wrk_threads,
                    )
                    results[run].append(load)
                    print(f"  round {round_no + 1}: {load}", file=sys.stderr)
    sizes = sorted({len(b) for _, b in mix})
    lines = [
        f"### Service over TLS, keep-alive, {args.connections} connections, {args.seconds} s "
        f"per run, {args.rounds} rotating round(s) ({tool})",
        "",
        f"Mix of {len(mix)} AdmissionReviews cycled (ServiceEntry, Sidecar, VirtualService, "
        f"Namespace; {sizes[0] / 1000:.1f}-{sizes[-1] / 1000:.1f} KB each; "
        f"answers: {', '.join(f'{v} {k}' for k, v in sorted(verdicts.items()))}). "
        "Every request is a new object (uid and name differ), as the API server sends creates; "
        "egress-guard writes its JSON decision line for every review, as in production. "
        "The last row of each layout resends the same reviews instead, which the decision "
        "cache answers; it says little about creates. Figures are medians over the rounds; "
        "the range is the slowest and fastest round.",
        "",
        "| server | workersxthreads | reviews/s | range | p50 ms | p99 ms | failures "
        "| vs ceiling | p99 vs ceiling | server CPU µs per review | context switches per review "
        "| connections per worker |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]

    def median(run: Run, attr: str) -> float:
        return statistics.median(getattr(ld, attr) for ld in results[run])

    ceilings = {run.layout: run for run in runs if run.server == "ceiling"}
    for run in runs:
        ceiling = ceilings[run.layout]
        rate, base = median(run, "rate"), median(ceiling, "rate")
        p99, base_p99 = median(run, "p99_ms"), median(ceiling, "p99_ms")
        rates = [ld.rate for ld in results[run]]
        lines.append(
            f"| {run.name} | {run.layout} | {rate:,.0f} | {min(rates):,.0f}-{max(rates):,.0f} | "
            f"{median(run, 'p50_ms'):.2f} | {p99:.2f} | "
            f"{sum(ld.failures for ld in results[run])} | {rate / base:.2f}x | "
            f"{p99 / base_p99:.2f}x | {median(run, 'cpu_us'):.0f} "
            f"| {median(run, 'switches'):.1f} | {' '.join(ld.split for ld in results[run])} |"
        )
    lines += [
        "",
        "*Server CPU µs per review* is the CPU time the server's processes (gunicorn master and "
        "workers) used during a run over the reviews answered: TLS, HTTP, the WSGI stack and "
        "the handler: what egress-guard costs on top of the stack, as opposed to how the "
        "machine shared its cores during the run. It moves from run to run too, so compare the "
        "servers within one run. *Context switches per review* counts those of every "
        "thread of the workers (each one a GIL hand-off or a wake-up through the kernel).",
        "",
    ]
    floors = {run.layout: run for run in runs if run.server == "floor"}
    guards = [run for run in runs if run.server == "guard" and run.unique and not run.extra]
    summary: dict[str, Any] = {}
    for run in guards:
        ceiling, floor = ceilings[run.layout], floors[run.layout]
        ratios, p99s = round_ratios(results[ceiling], results[run])
        floor_ratios, floor_p99s = round_ratios(results[floor], results[run])
        summary[run.layout] = {
            "rounds": len(ratios),
            "ratio": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "p99_ratio": statistics.median(p99s),
            "guard_rate": median(run, "rate"),
            "ceiling_rate": median(ceiling, "rate"),
            "splits": [ld.split for ld in results[run]],
            "ceiling_splits": [ld.split for ld in results[ceiling]],
            "cpu_us": median(run, "cpu_us"),
            "ceiling_cpu_us": median(ceiling, "cpu_us"),
            "switches": median(run, "switches"),
            "ceiling_switches": median(ceiling, "switches"),
            # information, not a target: the same stack with no framework and no work
            "floor_ratio": statistics.median(floor_ratios),
            "floor_ratio_min": min(floor_ratios),
            "floor_ratio_max": max(floor_ratios),
            "floor_p99_ratio": statistics.median(floor_p99s),
            "floor_rate": median(floor, "rate"),
            "floor_cpu_us": median(floor, "cpu_us"),
        }
    lines += [
        "Per round, egress-guard's throughput and p99 against each baseline's in the same round "
        "(the targets are against the flask ceiling; the floor is for information):",
        "",
        "| layout | against | ratio per round | median | p99 ratio per round | median |",
        "|---|---|---|---:|---|---:|",
    ]
    for run in guards:
        for label, baseline in (
            ("do-nothing flask (ceiling)", ceilings[run.layout]),
            ("do-nothing WSGI (stack floor)", floors[run.layout]),
        ):
            ratios, p99s = round_ratios(results[baseline], results[run])
            lines.append(
                f"| {run.layout} | {label} | {' '.join(f'{r:.2f}' for r in ratios)} "
                f"| {statistics.median(ratios):.2f} | {' '.join(f'{r:.2f}' for r in p99s)} "
                f"| {statistics.median(p99s):.2f} |"
            )
    lines += [
        "",
        "Against the stack floor (do-nothing WSGI, no flask; information, not a target): "
        + "; ".join(
            f"{layout} {got['floor_ratio']:.2f}x the floor's throughput, p99 "
            f"{got['floor_p99_ratio']:.2f}x"
            for layout, got in summary.items()
        )
        + ".",
        "",
    ]
    return lines, summary


def round_ratios(base: Sequence[Load], run: Sequence[Load]) -> tuple[list[float], list[float]]:
    """Per round: the run's throughput and p99 over the baseline's in the same round."""
    pairs = list(zip(base, run, strict=True))
    return (
        [r.rate / b.rate for b, r in pairs if b.rate],
        [r.p99_ms / b.p99_ms for b, r in pairs if b.p99_ms],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run everything and print the markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8, help="duration of each load run")
    parser.add_argument("--rounds", type=int, default=5, help="rotating rounds of every run")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--layouts", default="1x8,2x4", help="WORKERSxTHREADS, comma-separated")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="extra egress-guard row with these serve options, e.g. '--decision-cache-size 0'",
    )
    parser.add_argument("--sizes", default="100,10000,100000", help="allow-list sizes")
    parser.add_argument("--no-load", action="store_true", help="skip the HTTP load tests")
    parser.add_argument("--no-worst-case", action="store_true", help="skip worst-case objects")
    parser.add_argument("--no-memory", action="store_true", help="skip the worker RSS table")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    parser.add_argument(
        "--save", action="store_true", help="keep the summary in tests/bench/results/"
    )
    argv_used = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv_used)

    lines = [
        "## egress-guard benchmark",
        "",
        f"Machine: {os.cpu_count()} CPU(s), {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}.",
        "",
    ]
    mix = request_mix()
    saved: dict[str, Any] = {}
    if not args.no_load:
        load_lines, saved["layouts"] = load_section(args, mix)
        lines += load_lines

    lines += [
        "### Where a unique review's time goes inside the process",
        "",
        "cProfile of the real review handler (`ReviewHandler.answer`: what the WSGI "
        "middleware calls) on 4,000 unique reviews of the mix, decision log written to "
        "/dev/null; the profiler inflates call-heavy stages, so read the shares, not the "
        "absolute µs. TLS, HTTP parsing and gunicorn's thread hand-off are outside this and are "
        "what the do-nothing ceiling measures.",
        "",
        *where_time_goes(mix),
        "",
    ]
    work = request_work(mix)
    lines += [
        "### Work per review inside the process (no HTTP)",
        "",
        "Each review of the mix validated in-process: orjson parse + `parse_review` + `decide` + "
        "response bytes, `decide` alone, the decision cache's key, and a decision answered "
        "from the cache (key + lookup; '-' for reviews decided before any check, which skip "
        "the cache).",
        "",
        "| review | bytes | parse+decide+respond µs | decide µs | cache key µs | cache hit µs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, size, full, dec, key, cached in work:
        shown = "-" if cached is None else f"{cached:.1f}"
        lines.append(f"| {label} | {size:,} | {full:.1f} | {dec:.1f} | {key:.1f} | {shown} |")
    lines += [
        "",
        f"Median: decide {statistics.median(w[3] for w in work):.1f} µs, "
        f"cache key {statistics.median(w[4] for w in work):.1f} µs.",
        "",
    ]

    sizes = [int(s) for s in args.sizes.split(",")]
    rows = lookups_and_compiles(sizes)
    lines += [
        "### Allow-list size: lookup and compile",
        "",
        "Compile = parse + schema and semantic checks + indexes, as the worker does it on a "
        "policy update (its GC setting included). `policy.json` text is parsed with orjson, "
        f"`policy.yaml` with libyaml. Each figure is the best of {COMPILE_TRIES} compiles.",
        "",
        "| hosts | lookup µs | JSON parse ms | YAML parse ms | checks+indexes ms "
        "| trie alone ms | compile from JSON ms | its CPU ms | compile from YAML ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {int(row['hosts']):,} | {row['lookup_us']:.2f} | {row['json_ms']:.1f} | "
            f"{row['yaml_ms']:.1f} | {row['build_ms']:.1f} | {row['index_ms']:.1f} | "
            f"{row['total_ms']:.1f} | {row['cpu_ms']:.1f} | {row['yaml_total_ms']:.1f} |"
        )
    lines.append("")
    saved["lookup_us"] = {str(int(r["hosts"])): r["lookup_us"] for r in rows}
    saved["compile_ms"] = {str(int(r["hosts"])): r["total_ms"] for r in rows}
    if not args.no_worst_case:
        cases = worst_case.worst_cases(worst_case.default_policies())
        lines += [
            "### Worst-case objects (up to the API server's 3 MiB request limit)",
            "",
            "Each object grown to the limit and decided once at its size and once at half of "
            f"it (best of {worst_case.REPEAT}, CPU time of the deciding thread's process); "
            f"growth 2.0 means linear. A denial names {MAX_LISTED_VIOLATIONS} violations, then "
            f"'and N more'; list checks stop reading after {STOP_AFTER_VIOLATIONS:,} violations.",
            "",
            *worst_case.table(cases),
            "",
        ]
        saved["worst_case"] = worst_case.summary(cases)
    if not args.no_memory:
        measured = memory.measure(sizes)
        lines += [
            "### Memory: one worker's resident set after 400 reviews",
            "",
            *memory.table(measured),
            "",
        ]
        saved["rss_mib"] = {str(size): worker / 2**20 for size, _, worker, _ in measured}
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")
    if args.save:
        path = results.save("service", saved, module="tests.bench.bench_service", argv=argv_used)
        print(f"saved {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Soak: the real service under steady load, its memory sampled, and its size per allow list.

``python -m tests.bench.soak`` (``make soak``) starts ``egress-guard serve`` on loopback, sends
a steady paced load of distinct ServiceEntries (more distinct objects than the decision cache
holds, so the cache fills and evicts), samples the RSS of the gunicorn master and of each worker
every ``--interval`` seconds, and prints a table.  Growth is measured from the first sample after
warm-up to the last; the target is at most 5%.  Then, unless ``--skip-sizes``, it starts one
service per allow-list size (100, 10,000 and 100,000 hosts) and reports each worker's RSS.

``tests/integration/test_soak.py`` runs a short version that asserts only bounded growth.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.integration.load import Load, LoadReport
from tests.integration.service import Service, admission_review, running_service, service_entry
from webhook.tls import generate_files

HOST_SIZES = (100, 10_000, 100_000)
HOSTS_PER_SERVICE = 100
# more distinct objects than the decision cache keeps (4096 by default)
DISTINCT_OBJECTS = 10_000
# set by the Dockerfile: without it glibc's per-thread arenas let RSS creep (+5.7% in 10 min)
SHIPPED_ENV = {"MALLOC_ARENA_MAX": "2"}


def policy_with_hosts(count: int) -> str:
    """A policy allowing ``count`` hosts, ``HOSTS_PER_SERVICE`` per external service."""
    lines = ["egress: {namespace: external}", "externalServices:"]
    services = max(1, count // HOSTS_PER_SERVICE)
    for s in range(services):
        hosts = ", ".join(f"h{s}-{i}.example.com" for i in range(min(HOSTS_PER_SERVICE, count)))
        lines.append(
            f"  - name: svc{s}\n    hosts: [{hosts}]\n    ports: [{{number: 443, protocol: TLS}}]"
        )
    lines.append("allow:\n  - from: {namespace: team-a}\n    to: [svc0]")
    return "\n".join(lines) + "\n"


def review_bodies(count: int, *, hosts: int = 100, update_every: int = 1) -> list[bytes]:
    """``count`` distinct ServiceEntry reviews, half for allowed hosts and half for others.

    Every ``update_every``-th pair is an UPDATE (by default all), the kind the decision cache
    keeps (it does not digest plain CREATEs, which never come twice): the soak measures memory
    with the cache full.
    """
    bodies = []
    for i in range(count):
        service = i % max(1, hosts // HOSTS_PER_SERVICE)
        host = f"h{service}-{i % HOSTS_PER_SERVICE}.example.com" if i % 2 else f"x{i}.example.org"
        obj = service_entry([host], namespace="team-a", name=f"se-{i}", kilobytes=1)
        if (i // 2) % update_every == 0:  # allowed and denied hosts alike
            review = admission_review(obj, kind="ServiceEntry", operation="UPDATE", old=obj)
        else:
            review = admission_review(obj, kind="ServiceEntry")
        bodies.append(orjson.dumps(review))
    return bodies


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Sample:
    """RSS of the master and each worker at one moment."""

    seconds: float
    requests: int
    master_kib: int
    workers_kib: dict[int, int]


@dataclass
class SoakResult:
    """The samples of one soak and the load's report."""

    samples: list[Sample] = field(default_factory=list)
    report: LoadReport | None = None
    warmup: float = 0.0

    def growth(self) -> dict[str, float]:
        """Relative RSS growth of each process from the first sample after warm-up to the last."""
        after = [s for s in self.samples if s.seconds >= self.warmup]
        if len(after) < 2:
            raise ValueError("not enough samples after warm-up")
        first, last = after[0], after[-1]
        out = {"master": last.master_kib / first.master_kib - 1}
        for pid, kib in first.workers_kib.items():
            out[f"worker {pid}"] = last.workers_kib.get(pid, 0) / kib - 1
        return out

    def table(self) -> str:
        """The samples as a markdown table."""
        pids = sorted({pid for s in self.samples for pid in s.workers_kib})
        head = "| t (s) | requests | master RSS (MiB) | " + " | ".join(
            f"worker {p} RSS (MiB)" for p in pids
        )
        rows = [head + " |", "|" + "---|" * (3 + len(pids))]
        for s in self.samples:
            cells = [f"{s.workers_kib.get(p, 0) / 1024:.1f}" for p in pids]
            rows.append(
                f"| {s.seconds:.0f} | {s.requests} | {s.master_kib / 1024:.1f} | "
                + " | ".join(cells)
                + " |"
            )
        return "\n".join(rows)


def soak(
    svc: Service,
    bodies: Sequence[bytes],
    *,
    seconds: float,
    interval: float,
    rate: float,
    warmup: float,
) -> SoakResult:
    """Steady load on ``svc`` for ``seconds``, RSS sampled every ``interval``."""
    result = SoakResult(warmup=warmup)
    load = Load(svc, bodies, rate=rate)
    started = time.monotonic()
    with load.running() as report:
        while True:
            elapsed = time.monotonic() - started
            result.samples.append(
                Sample(
                    elapsed,
                    len(report.outcomes),
                    rss_kib(svc.process.pid),
                    {pid: rss_kib(pid) for pid in svc.worker_pids()},
                )
            )
            if elapsed >= seconds:
                break
            time.sleep(min(interval, max(0.0, seconds - elapsed)))
    result.report = report
    return result


def serve(work: Path, policy_text: str, *extra: str, env: Mapping[str, str] | None = None) -> Any:
    """``running_service`` with fresh certificates and ``policy_text``."""
    certs = generate_files(work / "certs", ["127.0.0.1"])
    policy = work / "policy.yaml"
    policy.write_text(policy_text)
    return running_service(
        work,
        cert_file=certs.cert_file,
        key_file=certs.key_file,
        ca_file=certs.ca_file,
        policy_file=policy,
        extra_args=("--log-level", "warning", *extra),
        # the image's environment (Dockerfile), so the soak measures what ships
        env={**SHIPPED_ENV, **(env or {})},
    )


def worker_rss_by_hosts(work: Path, sizes: Sequence[int]) -> dict[int, int]:
    """Each allow-list size's worker RSS (KiB) after the policy is loaded and 2,000 reviews."""
    out = {}
    for size in sizes:
        run = work / f"hosts-{size}"
        run.mkdir()
        with serve(run, policy_with_hosts(size)) as svc:
            Load(svc, review_bodies(2000, hosts=size), rate=400).run_for(5)
            out[size] = max(rss_kib(pid) for pid in svc.worker_pids())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=60)
    parser.add_argument("--rate", type=float, default=300, help="requests per second")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--skip-sizes", action="store_true")
    parser.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="for the service"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="egress-guard-soak-") as tmp:
        work = Path(tmp)
        steady = work / "steady"
        steady.mkdir()
        env = dict(item.split("=", 1) for item in args.env)
        with serve(steady, policy_with_hosts(100), "--workers", str(args.workers), env=env) as svc:
            result = soak(
                svc,
                review_bodies(DISTINCT_OBJECTS),
                seconds=args.seconds,
                interval=args.interval,
                rate=args.rate,
                warmup=args.warmup,
            )
        assert result.report is not None
        print(result.table())
        print()
        print("load:", result.report.summary())
        growth = result.growth()
        print("growth after warm-up:", ", ".join(f"{k} {v * 100:+.1f}%" for k, v in growth.items()))
        failed = bool(result.report.failures) or any(v > 0.05 for v in growth.values())
        if not args.skip_sizes:
            print()
            print("| allow-list hosts | worker RSS (MiB) |")
            print("|---|---|")
            for size, kib in worker_rss_by_hosts(work, HOST_SIZES).items():
                print(f"| {size:,} | {kib / 1024:.1f} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Resident memory of one ``egress-guard serve`` worker at several allow-list sizes.

Starts the real service (gunicorn, one worker) with a generated policy of N hosts, sends it a
few hundred reviews so the request path is warm, and reads the worker's ``VmRSS`` (and the
master's) from ``/proc``.  ``python -m tests.bench.memory`` prints the table; ``make bench``
includes it.
"""

from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import orjson

from tests.integration.service import Service, running_service
from webhook.tls import generate_files

MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """A process's resident set size."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def warm(service: Service, mix: Sequence[tuple[str, bytes]], rounds: int = 50) -> None:
    """Send the mix ``rounds`` times over one keep-alive connection."""
    conn = http.client.HTTPSConnection("127.0.0.1", service.port, context=service.ssl_context())
    try:
        for _ in range(rounds):
            for path, body in mix:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                conn.getresponse().read()
    finally:
        conn.close()


def measure(sizes: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """(hosts, policy JSON bytes, worker RSS, master RSS) per allow-list size."""
    from tests.bench.bench_service import fill, policy_document, request_mix, unique_mix

    mix = fill(unique_mix(request_mix()), 64)
    rows = []
    with tempfile.TemporaryDirectory(prefix="egress-guard-memory-") as tmp_name:
        tmp = Path(tmp_name)
        certs = generate_files(tmp / "certs", ["127.0.0.1"])
        for size in sizes:
            policy = tmp / f"policy-{size}.json"
            policy.write_bytes(orjson.dumps(policy_document(size)))
            with running_service(
                tmp,
                cert_file=certs.cert_file,
                key_file=certs.key_file,
                ca_file=certs.ca_file,
                policy_file=policy,
                extra_args=("--workers", "1"),
            ) as svc:
                warm(svc, mix)
                (worker,) = svc.worker_pids()
                rows.append(
                    (size, policy.stat().st_size, rss_bytes(worker), rss_bytes(svc.process.pid))
                )
    return rows


def table(rows: Sequence[tuple[int, int, int, int]]) -> list[str]:
    """Markdown rows."""
    lines = [
        "| hosts | policy.json | worker RSS | gunicorn master RSS |",
        "|---:|---:|---:|---:|",
    ]
    for hosts, size, worker, master in rows:
        lines.append(
            f"| {hosts:,} | {size / MIB:.1f} MiB | {worker / MIB:.1f} MiB "
            f"| {master / MIB:.1f} MiB |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Print the memory table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,10000,100000")
    args = parser.parse_args(argv)
    print("\n".join(table(measure([int(s) for s in args.sizes.split(",")]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The costliest objects we know to build: decision time against object size, up to 3 MiB.

The API server accepts request bodies up to 3 MiB, so a tenant can send a VirtualService with
thousands of routes, a Sidecar importing thousands of hosts, a Pod with hundreds of containers or
a ServiceEntry with thousands of endpoints.  Each builder here takes a count and returns such an
object; ``worst_cases`` grows each one until its JSON reaches the size asked for and times
``decide`` on it, twice the count too, so a check that is worse than linear shows up as a growth
ratio well above 2.  ``python -m tests.bench.worst_case`` prints the table; ``make bench`` includes
it.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.admission.server import GC_THRESHOLD
from webhook.core.decisions import Decision
from webhook.core.engine import decide
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

MIB = 1024 * 1024
NAMESPACE = "test-app"


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": {"app": name}}


def virtual_service_routes(n: int) -> dict[str, Any]:
    """A VirtualService with ``n`` HTTP routes over ``n`` hosts, each to a different service."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": _meta("many-routes"),
        "spec": {
            "hosts": [f"svc-{i}.example.com" for i in range(n)],
            "exportTo": ["."],
            "http": [
                {
                    "match": [
                        {"uri": {"prefix": f"/p{i}"}, "headers": {"x-id": {"exact": str(i)}}}
                    ],
                    "route": [{"destination": {"host": f"dest-{i}", "port": {"number": 443}}}],
                }
                for i in range(n)
            ],
        },
    }


def sidecar_imports(n: int) -> dict[str, Any]:
    """A Sidecar importing ``n`` hosts (half exact names, half wildcards)."""
    hosts = [f"./h{i}.example.com" if i % 2 else f"*/*.w{i}.example.com" for i in range(n)]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": _meta("default"),
        "spec": {"egress": [{"hosts": hosts}], "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
    }


def pod_containers(n: int) -> dict[str, Any]:
    """A Pod with ``n`` containers, each with env, ports, a security context and probes."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**_meta("many-containers"), "annotations": {"team": "x" * 64}},
        "spec": {
            "containers": [
                {
                    "name": f"c{i}",
                    "image": f"registry.example.com/app:{i}",
                    "env": [{"name": f"E{j}", "value": "v" * 16} for j in range(8)],
                    "ports": [{"containerPort": 8000 + j} for j in range(4)],
                    "securityContext": {"runAsUser": 1000 + i, "capabilities": {"drop": ["ALL"]}},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8000}},
                }
                for i in range(n)
            ]
        },
    }


def service_entry_endpoints(n: int) -> dict[str, Any]:
    """A tenant ServiceEntry with ``n`` static endpoints outside the allow list."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": _meta("many-endpoints"),
        "spec": {
            "hosts": ["db.example.net"],
            "exportTo": ["."],
            "location": "MESH_EXTERNAL",
            "ports": [{"number": 5432, "name": "tcp", "protocol": "TCP"}],
            "resolution": "STATIC",
            "endpoints": [
                {"address": f"203.0.{(i >> 8) & 255}.{i & 255}", "labels": {"i": str(i)}}
                for i in range(n)
            ],
        },
    }


def service_entry_hosts(n: int) -> dict[str, Any]:
    """A tenant ServiceEntry with ``n`` hosts outside the allow list."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": _meta("many-hosts"),
        "spec": {
            "hosts": [f"h{i}.unlisted{i % 97}.example.com" for i in range(n)],
            "exportTo": ["."],
            "location": "MESH_EXTERNAL",
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }


# a policy under which the objects above are allowed: nothing stops a check early then
ALLOWING_POLICY = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: egress}
externalServices:
  - name: example
    hosts: ["*.example.com", "*.example.org", "*.example.net", "*.example0.com"]
    ports: [{number: 443, protocol: TLS}, {number: 5432, protocol: TCP}]
    addresses: [203.0.0.0/16]
allow:
  - {name: tenants, from: {namespace: test-app}, to: [example]}
"""


BUILDERS: dict[str, Callable[[int], dict[str, Any]]] = {
    "VirtualService, n routes and hosts": virtual_service_routes,
    "Sidecar importing n hosts": sidecar_imports,
    "Pod with n containers": pod_containers,
    "ServiceEntry with n endpoints": service_entry_endpoints,
    "ServiceEntry with n hosts": service_entry_hosts,
}


@dataclass(frozen=True)
class Case:
    """One object timed at two sizes."""

    label: str
    policy: str
    count: int
    size: int
    ms: float
    double_ms: float
    decision: Decision

    @property
    def growth(self) -> float:
        """Time at twice the count over time at the count (2.0 for a linear check)."""
        return self.double_ms / self.ms if self.ms else 0.0


def count_for(build: Callable[[int], dict[str, Any]], target_bytes: int) -> int:
    """The largest count whose object's JSON stays within ``target_bytes``."""
    per_item = len(orjson.dumps(build(1000))) / 1000
    count = max(1, int(target_bytes / per_item))
    while count > 1 and len(orjson.dumps(build(count))) > target_bytes:
        count = int(count * 0.95)
    return count


def time_decide(manifest: dict[str, Any], policy: Policy, *, repeat: int = 3) -> float:
    """Best-of ``repeat`` milliseconds for one decision on ``manifest``."""
    review = review_of_manifest(manifest)
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        decide(review, policy)
        best = min(best, time.process_time() - started)
    return best * 1000


def worst_cases(policies: Mapping[str, Policy], target_bytes: int = 3 * MIB) -> list[Case]:
    """Every builder at the largest count fitting ``target_bytes``, and at half of it."""
    # the collector setting of a worker (webhook.admission.server.tune_gc)
    gc.set_threshold(*GC_THRESHOLD)
    cases = []
    for label, build in BUILDERS.items():
        count = count_for(build, target_bytes)
        half = max(1, count // 2)
        manifest, halved = build(count), build(half)
        for name, policy in policies.items():
            cases.append(
                Case(
                    label,
                    name,
                    count,
                    len(orjson.dumps(manifest)),
                    time_decide(halved, policy),
                    time_decide(manifest, policy),
                    decide(review_of_manifest(manifest), policy),
                )
            )
    return sorted(cases, key=lambda c: c.double_ms, reverse=True)


def table(cases: Sequence[Case]) -> list[str]:
    """Markdown rows, slowest first."""
    lines = [
        "| object (slowest first) | policy | n | JSON | decide ms | at n/2 ms "
        "| growth (2.0 = linear) | verdict | reason chars |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for c in cases:
        lines.append(
            f"| {c.label} | {c.policy} | {c.count:,} | {c.size / MIB:.2f} MiB "
            f"| {c.double_ms:.1f} | {c.ms:.1f} | {c.growth:.2f} | {c.decision.verdict} "
            f"| {len(c.decision.reason):,} |"
        )
    return lines


def default_policies() -> dict[str, Policy]:
    """The banzai-demo policy the service benchmark uses (denies), and one allowing it all."""
    from tests.bench.bench_service import POLICY_FILE

    return {
        "banzai-demo": parse_policy(POLICY_FILE.read_text()),
        "allows all": parse_policy(ALLOWING_POLICY),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Print the worst-case table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=3.0, help="object size to grow to")
    args = parser.parse_args(argv)
    print("\n".join(table(worst_cases(default_policies(), int(args.mib * MIB)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark of the audit: time and memory to judge N existing objects, and report size.

Run ``python -m tests.bench.bench_audit [--objects 10000]``.  Not a pytest test: its numbers depend
on the machine.  What it measures, printed as README-ready markdown:

1. one audit pass over N objects (a mix of ServiceEntries, VirtualServices, Sidecars, Namespaces
   and Deployments over 50 namespaces, a tenth of them in breach), wall time, and the peak of
   memory allocated during a second, traced pass (``tracemalloc``; the objects themselves are not
   counted: they live in the informer caches);
2. the same N objects all in breach (a narrowing edit gone wrong), and the total size of the
   reports written for them, across namespaces and in the worst single namespace;
3. the admission of a narrowing edit of the policy ConfigMap over the N objects (both policies
   audited, grants diffed, warnings built): what the webhook's timeout must leave room for.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import time
import tracemalloc
from typing import Any

import orjson

from webhook.core.audit import audit
from webhook.core.policy_admission import SecurityTeam, check_policy_configmap
from webhook.core.policy_parsing import parse_policy
from webhook.core.reports import ReportFlavour, build_reports, summarize
from webhook.core.reviews import Review

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
NAMESPACES = 50
POLICY = """
egress: {namespace: egress}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
  - {name: github, hosts: [api.github.com, github.com], ports: [{number: 443, protocol: TLS}]}
  - {name: web, hosts: [www.example.org], ports: [{number: 80, protocol: HTTP}]}
allow:
  - {name: everyone, from: {namespace: "*"}, to: [api, web]}
"""


def _meta(namespace: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "uid": f"{namespace}-{name}",
        "labels": {"app": name, "team": namespace},
        "annotations": {"owner": f"{namespace}@example.com"},
    }


def objects(count: int, breach_every: int) -> list[dict[str, Any]]:
    """``count`` objects over NAMESPACES namespaces; every ``breach_every``-th one in breach."""
    made: list[dict[str, Any]] = []
    for i in range(count):
        ns = f"team-{i % NAMESPACES}"
        # spread breaches over every kind of the mix
        bad = (i // NAMESPACES) % breach_every == 0
        host = "evil.example.net" if bad else "api.example.com"
        route = host if bad else f"reviews.{ns}.svc.cluster.local"
        match i % 5:
            case 0:
                made.append(
                    {
                        "apiVersion": "networking.istio.io/v1",
                        "kind": "ServiceEntry",
                        "metadata": _meta(ns, f"se-{i}"),
                        "spec": {
                            "hosts": [host],
                            "exportTo": ["."],
                            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                            "resolution": "DNS",
                        },
                    }
                )
            case 1:
                made.append(
                    {
                        "apiVersion": "networking.istio.io/v1",
                        "kind": "VirtualService",
                        "metadata": _meta(ns, f"vs-{i}"),
                        "spec": {
                            "hosts": [route],
                            "exportTo": ["."],
                            "tls": [
                                {
                                    "match": [{"port": 443, "sniHosts": [route]}],
                                    "route": [
                                        {"destination": {"host": route, "port": {"number": 443}}}
                                    ],
                                }
                            ],
                        },
                    }
                )
            case 2:
                made.append(
                    {
                        "apiVersion": "networking.istio.io/v1",
                        "kind": "Sidecar",
                        "metadata": _meta(ns, f"sc-{i}"),
                        "spec": {
                            "workloadSelector": {"labels": {"app": f"a{i}"}},
                            "egress": [{"hosts": ["./*", "istio-system/*"]}],
                            "outboundTrafficPolicy": {
                                "mode": "ALLOW_ANY" if bad else "REGISTRY_ONLY"
                            },
                        },
                    }
                )
            case 3:
                labels = {"istio-injection": "disabled" if bad else "enabled"}
                made.append(
                    {
                        "apiVersion": "v1",
                        "kind": "Namespace",
                        "metadata": {"name": ns, "uid": f"ns-{i}", "labels": labels},
                    }
                )
            case _:
                annotations = {"sidecar.istio.io/inject": "false"} if bad else {}
                made.append(
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "metadata": _meta(ns, f"deploy-{i}"),
                        "spec": {
                            "selector": {"matchLabels": {"app": f"d{i}"}},
                            "template": {
                                "metadata": {
                                    "labels": {"app": f"d{i}"},
                                    "annotations": annotations,
                                },
                                "spec": {
                                    "containers": [{"name": "app", "image": "registry/app:1"}]
                                },
                            },
                        },
                    }
                )
    return made


def measure(count: int, breach_every: int) -> dict[str, Any]:
    policy = parse_policy(POLICY)
    items = objects(count, breach_every)
    gc.collect()
    started = time.perf_counter()
    result = audit(items, policy, now=NOW)
    elapsed = time.perf_counter() - started
    # a second pass under tracemalloc, which slows allocation: its time is not the one reported
    gc.collect()
    tracemalloc.start()
    audit(items, policy, now=NOW)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    reports = build_reports(result, flavour=ReportFlavour.OPENREPORTS, now=NOW)
    sizes = [len(orjson.dumps(r)) for r in reports.values()]
    totals = summarize(reports)
    return {
        "objects": count,
        "judged": result.judged,
        "in_breach": len(result.objects_in_breach),
        "seconds": elapsed,
        "peak_mib": peak / 2**20,
        "reports": totals.namespaces,
        "report_bytes_total": sum(sizes),
        "report_bytes_max": max(sizes, default=0),
        "aggregated": totals.aggregated_namespaces,
    }


class _Listed:
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def objects(self) -> list[dict[str, Any]]:
        return self.items


def measure_apply(count: int) -> float:
    """Seconds to admit a narrowing edit of the policy ConfigMap over ``count`` objects."""
    narrowed = POLICY.replace("to: [api, web]", "to: [web]")
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "egress-guard-policy", "namespace": "egress-guard"},
        "data": {"policy.yaml": narrowed},
    }
    review = Review(
        "bench", "", "v1", "ConfigMap", "UPDATE", "egress-guard", "egress-guard-policy", configmap
    )
    cluster = _Listed(objects(count, 10))
    started = time.perf_counter()
    decision = check_policy_configmap(
        review,
        current=parse_policy(POLICY),
        cluster=cluster,
        now=NOW,
        security_team=SecurityTeam(),
    )
    elapsed = time.perf_counter() - started
    assert decision.allowed and decision.warnings
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=10_000)
    args = parser.parse_args()
    print(
        "| case | objects | in breach | audit time | peak memory | reports "
        "| report size (total / largest) |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, every in (("10% in breach", 10), ("all in breach", 1)):
        row = measure(args.objects, every)
        print(
            f"| {label} | {row['objects']} | {row['in_breach']} | {row['seconds']:.2f} s "
            f"({row['seconds'] / row['objects'] * 1e6:.0f} us/object) | {row['peak_mib']:.1f} MiB "
            f"| {row['reports']} ({row['aggregated']} aggregated) | "
            f"{row['report_bytes_total'] / 1024:.0f} KiB / "
            f"{row['report_bytes_max'] / 1024:.1f} KiB |"
        )
    print()
    print(
        f"Admitting a narrowing policy edit with its warnings ({args.objects} objects judged "
        f"under both policies): {measure_apply(args.objects):.2f} s"
    )


if __name__ == "__main__":
    main()

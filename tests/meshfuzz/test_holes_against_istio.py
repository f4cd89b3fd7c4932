"""Every hole the fuzzer found, judged by Istio: the path is real, and admission now closes it.

For each counterexample (the unit twin in ``tests/unit/test_mesh_regressions.py`` holds the
same objects as plain dicts) two things must hold: with the objects in the mesh, Istio's own
config generator and simulation let some source reach a host the policy denies it, so the
hole is a real path and not an artefact of our model; and egress-guard denies at least one of
the objects, so a tenant cannot put them there.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.meshfuzz.differential import MeshView, Oracle, decide_object, leaks
from tests.meshfuzz.worlds import World, worlds

pytestmark = pytest.mark.mesh

WORLDS = {w.name: w for w in worlds()}
SHARED_GW = "istio-egressgateway.external.svc.cluster.local"
FIREWALL_GW = "istio-egressgateway.istio-egress.svc.cluster.local"


def _object(kind: str, namespace: str, spec: dict[str, Any], name: str = "t") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def _to(gateway: str, subset: str, port: int) -> dict[str, Any]:
    return {"destination": {"host": gateway, "subset": subset, "port": {"number": port}}}


def _tcp_to(namespace: str, gateway: str, subset: str, **match: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"route": [_to(gateway, subset, 443)]}
    if match:
        rule["match"] = [match]
    return _object(
        "VirtualService",
        namespace,
        {"hosts": [f"db.{namespace}.svc.cluster.local"], "exportTo": ["."], "tcp": [rule]},
    )


HOLES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "internal name routed to another service's passthrough subset": (
        "istio-egress-firewall",
        [_tcp_to("team-a", FIREWALL_GW, "bar-com-0")],
    ),
    "tcp route to the namespace's own passthrough subset": (
        "istio-egress-firewall",
        [_tcp_to("team-b", FIREWALL_GW, "bar-com-0")],
    ),
    "labelled source routed to another service's subset": (
        "banzai-shared",
        [_tcp_to("test-app", SHARED_GW, "httpbin-0", sourceLabels={"k8s-app": "app-b"})],
    ),
    "route without sourceLabels to a label-narrowed service": (
        "banzai-shared",
        [
            _object(
                "VirtualService",
                "test-app",
                {
                    "hosts": ["httpbin.org"],
                    "exportTo": ["."],
                    "http": [{"route": [_to(SHARED_GW, "httpbin-0", 80)]}],
                },
            )
        ],
    ),
    "namespace-wide SNI towards the gateway": (
        "banzai-shared",
        [
            _object(
                "DestinationRule",
                "test-app",
                {
                    "host": SHARED_GW,
                    "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL", "sni": "httpbin.org"}},
                },
            )
        ],
    ),
    "namespace-wide SNI in a subset named like a policy subset": (
        "banzai-shared",
        [
            _object(
                "DestinationRule",
                "test-app",
                {
                    "host": SHARED_GW,
                    "subsets": [
                        {
                            "name": "google-0",
                            "trafficPolicy": {
                                "tls": {"mode": "ISTIO_MUTUAL", "sni": "httpbin.org"}
                            },
                        }
                    ],
                },
            )
        ],
    ),
    "exported route imported by another namespace's Sidecar": (
        "istio-egress-firewall",
        [
            {
                **_tcp_to("team-b", FIREWALL_GW, "bar-com-0"),
                "metadata": {"name": "v", "namespace": "team-b"},
            },
            _object(
                "Sidecar",
                "team-a",
                {
                    "workloadSelector": {"labels": {"app": "stranger"}},
                    "egress": [{"hosts": ["./*", "team-b/*"]}],
                    "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
                },
            ),
        ],
    ),
    "ServiceEntry targetPort outside the service's ports": (
        "istio-egress-firewall",
        [
            _object(
                "ServiceEntry",
                "team-a",
                {
                    "hosts": ["legacy.team-a.svc.cluster.local"],
                    "ports": [{"number": 443, "name": "tls", "protocol": "TLS", "targetPort": 22}],
                    "resolution": "DNS",
                    "endpoints": [{"address": "service1.foo.com"}],
                    "exportTo": ["."],
                },
            )
        ],
    ),
    "ServiceEntry endpoint port outside the service's ports": (
        "istio-egress-firewall",
        [
            _object(
                "ServiceEntry",
                "team-a",
                {
                    "hosts": ["legacy.team-a.svc.cluster.local"],
                    "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
                    "resolution": "DNS",
                    "endpoints": [{"address": "service1.foo.com", "ports": {"tls": 25}}],
                    "exportTo": ["."],
                },
            )
        ],
    ),
    "WorkloadEntry with an allowed external address": (
        "mixed",
        [_object("WorkloadEntry", "team-a", {"address": "203.0.113.5", "labels": {"app": "db"}})],
    ),
}


@pytest.mark.parametrize(("world_name", "objects"), HOLES.values(), ids=HOLES.keys())
def test_hole_is_a_real_path_in_istio_and_admission_closes_it(
    oracle: Oracle, world_name: str, objects: list[dict[str, Any]]
) -> None:
    world: World = WORLDS[world_name]
    found = leaks(world, oracle, objects)
    assert found, "Istio no longer opens a path with these objects: the hole is not real"
    view = MeshView(world.baseline)
    decisions = [decide_object(world, obj, view) for obj in objects]
    assert not all(d.allowed for d in decisions), found[0][2]

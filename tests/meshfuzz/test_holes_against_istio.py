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

from tests.meshfuzz.differential import (
    MeshView,
    Oracle,
    Probe,
    decide_object,
    leaks,
    proxies,
    simulate,
)
from tests.meshfuzz.worlds import MIXED, ROOT, Source, World, make_world, worlds
from webhook.core.policy_parsing import parse_policy

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
    view = MeshView(world)
    decisions = [decide_object(world, obj, view) for obj in objects]
    assert not all(d.allowed for d in decisions), found[0][2]


# the firewall post's policy with the cluster's ranges declared, as a real deployment writes it:
# the gateway's pod and Service addresses are then internal like every other
FIREWALL_INTERNAL = make_world(
    "istio-egress-firewall-internal",
    parse_policy(
        (ROOT / "policies" / "istio-egress-firewall.yaml")
        .read_text()
        .replace("    mode: enforce\n", "    mode: enforce\n    internalNetworks: [10.0.0.0/8]\n")
    ),
)
TEAM_A = Source("team-a")
BAR_HELLO = Probe(TEAM_A, "", 443, "tcp", "tls", "10.96.200.1", "a.bar.com")


def _alias_entry(endpoint: str, **spec: Any) -> dict[str, Any]:
    return _object(
        "ServiceEntry",
        "team-a",
        {
            "hosts": ["alias.team-a.svc.cluster.local"],
            "ports": [{"number": 443, "name": "tcp", "protocol": "TCP", "targetPort": 8443}],
            "endpoints": [{"address": endpoint}],
            "exportTo": ["."],
            **spec,
        },
    )


def test_dns_alias_hands_the_client_hello_to_the_egress_gateway(oracle: Oracle) -> None:
    """team-a may not reach *.bar.com, which the shared gateway passes on its SNI alone: an
    entry resolving to the gateway's name forwards team-a's own ClientHello there untouched."""
    world = WORLDS["istio-egress-firewall"]
    entry = _alias_entry(FIREWALL_GW, resolution="DNS")
    (result,) = simulate(world, oracle, [entry], [BAR_HELLO])
    assert result["host"] == FIREWALL_GW, result
    (leg,) = result["legs"]
    assert (leg["sni"], leg["transport"]["mode"]) == ("a.bar.com", "DISABLE"), leg
    assert not decide_object(world, entry, MeshView(world)).allowed


def _plain_tls(host: str) -> dict[str, Any]:
    """A DestinationRule turning auto mTLS off towards ``host``: the gateway pod is in the mesh,
    so the sidecar would otherwise wrap the app's ClientHello in mTLS the gateway cannot route."""
    return _object(
        "DestinationRule",
        "team-a",
        {"host": host, "trafficPolicy": {"tls": {"mode": "DISABLE"}}, "exportTo": ["."]},
        name="plain",
    )


def _selectorless_service(
    name: str, cluster_ip: str, address: str, port: int, target: int
) -> list[dict[str, Any]]:
    """A selector-less Service of team-a, and its hand-made EndpointSlice to ``address``."""
    port_name = f"tcp-{port}"
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {
            "clusterIP": cluster_ip,
            "ports": [{"name": port_name, "port": port, "targetPort": target, "protocol": "TCP"}],
        },
    }
    endpoint = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{name}-1",
            "namespace": "team-a",
            "labels": {"kubernetes.io/service-name": name},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address]}],
        "ports": [{"name": port_name, "port": target, "protocol": "TCP"}],
    }
    return [service, endpoint]


def _alias_service_and_slice(address: str) -> list[dict[str, Any]]:
    """A selector-less Service of team-a whose hand-made EndpointSlice is ``address``."""
    return [
        *_selectorless_service("alias", "10.96.77.10", address, 443, 8443),
        _plain_tls("alias.team-a.svc.cluster.local"),
    ]


def _alias_workload(address: str) -> list[dict[str, Any]]:
    """A WorkloadEntry at ``address`` that team-a's own ``db`` Service selects."""
    spec = {"address": address, "labels": {"app": "db"}, "ports": {"tcp-443": 8443}}
    return [_object("WorkloadEntry", "team-a", spec), _plain_tls("db.team-a.svc.cluster.local")]


# tenant objects putting a given address behind a name team-a's pods may call
ADDRESS_ALIASES = {
    "ServiceEntry STATIC endpoint": lambda a: [_alias_entry(a, resolution="STATIC")],
    "Service with a hand-made EndpointSlice": _alias_service_and_slice,
    "WorkloadEntry selected by a Service": _alias_workload,
}


@pytest.mark.parametrize("aliasing", ADDRESS_ALIASES.values(), ids=ADDRESS_ALIASES.keys())
def test_address_alias_of_the_egress_gateway_is_denied(oracle: Oracle, aliasing: Any) -> None:
    """team-a's objects put the gateway pod's address behind a name: Istio hands team-a's own
    ClientHello for a.bar.com to the gateway, and admission refuses one of the objects, knowing
    the egress namespace's addresses from its cluster view."""
    world = FIREWALL_INTERNAL
    gateway_pod = next(p["ip"] for p in proxies(world) if p["kind"] == "gateway")
    objects = aliasing(gateway_pod)
    found = leaks(world, oracle, objects)
    assert any(p.source == TEAM_A and "a.bar.com" in why for p, _, why in found), found
    view = MeshView(world)
    decisions = [decide_object(world, o, view) for o in objects]
    assert not all(d.allowed for d in decisions)
    assert any("an address of an egress gateway's namespace" in d.reason for d in decisions)


# the mixed world plus a service reached by address that only team-a may reach directly
VAULT = make_world(
    "mixed-vault",
    parse_policy(
        MIXED.replace(
            "allow:\n",
            "  - {name: vault, hosts: [vault.vendor.example],\n"
            "     ports: [{number: 5432, protocol: TCP}], addresses: [198.51.100.0/24]}\n"
            "allow:\n  - {name: vault-a, from: {namespace: team-a}, to: [vault]}\n",
        ),
        name="mixed-vault",
    ),
)


def test_endpoint_of_a_service_another_namespace_imports_is_judged_for_it(oracle: Oracle) -> None:
    """team-a's hand-written endpoint to an address only team-a may reach, and team-b's Sidecar
    importing team-a's Services: team-b's pods reach the address directly."""
    service, endpoint = _selectorless_service("vault", "10.96.60.10", "198.51.100.7", 5432, 5432)
    importer = _object(
        "Sidecar",
        "team-b",
        {
            "workloadSelector": {"labels": {"app": "stranger"}},
            "egress": [{"hosts": ["./*", "team-a/*"]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    )
    objects = [service, endpoint, importer]
    found = leaks(VAULT, oracle, objects)
    assert any(p.source.namespace == "team-b" for p, _, _ in found), found
    view = MeshView(VAULT)
    assert [decide_object(VAULT, o, view).allowed for o in objects] == [True, False, True]


def _as_endpoints(slice_: dict[str, Any]) -> dict[str, Any]:
    """The same endpoints written as a v1 Endpoints object (mirrored into a slice)."""
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": slice_["metadata"]["labels"]["kubernetes.io/service-name"],
            "namespace": slice_["metadata"]["namespace"],
        },
        "subsets": [
            {
                "addresses": [{"ip": a} for e in slice_["endpoints"] for a in e["addresses"]],
                "ports": slice_["ports"],
            }
        ],
    }


@pytest.mark.parametrize("kind", ["EndpointSlice", "Endpoints"])
@pytest.mark.parametrize("cluster_ip", ["10.96.0.21", "None"], ids=["cluster-ip", "headless"])
def test_endpoint_at_an_allowed_address_on_another_port_is_denied(
    oracle: Oracle, cluster_ip: str, kind: str
) -> None:
    """Found by the fuzzer: payments (everyone, 203.0.113.0/28 on 443 and 80) and team-a's
    selector-less Service whose EndpointSlice puts 203.0.113.5 on port 5432. Envoy dials the
    endpoint's own port (for a headless Service the sidecar even listens on 203.0.113.5:5432
    and passes the connection through), so every pod of team-a reached 203.0.113.5:5432.
    Admission now holds the slice's ports to the ports of the services its addresses are."""
    world = WORLDS["mixed"]
    objects = _selectorless_service("vendor", cluster_ip, "203.0.113.5", 5432, 5432)
    if kind == "Endpoints":
        objects[1] = _as_endpoints(objects[1])
    found = leaks(world, oracle, objects)
    assert any(
        p.source.namespace == "team-a" and "203.0.113.5:5432" in why for p, _, why in found
    ), found
    view = MeshView(world)
    decisions = [decide_object(world, o, view) for o in objects]
    assert [d.allowed for d in decisions] == [True, False]
    assert "port 5432 of payments" in decisions[1].reason

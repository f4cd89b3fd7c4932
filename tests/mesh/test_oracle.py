"""The oracle itself: small meshes whose outcome Istio's documentation settles.

These pin the oracle's reading of Istio (verdicts, the second leg through a gateway, the
cluster's TLS, the gateway's RBAC) so a change in tools/meshsim that misreads a result fails
here before it can bless a broken generator.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.meshsim import Call, Oracle, Proxy, World

pytestmark = pytest.mark.mesh

CLIENT = Proxy("client", "apps", "10.0.0.2", {"app": "client"}, "client-sa")
GATEWAY = Proxy("egressgw", "egress", "10.0.0.9", {"istio": "egressgateway"}, "gw", "gateway")


def _se(host: str, port: int, protocol: str, namespace: str = "apps") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": host.replace(".", "-"), "namespace": namespace},
        "spec": {
            "hosts": [host],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            "ports": [{"number": port, "name": f"p-{port}", "protocol": protocol}],
        },
    }


def _sidecar(mode: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": "apps"},
        "spec": {"outboundTrafficPolicy": {"mode": mode}},
    }


def _gateway_service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "egressgw", "namespace": "egress"},
        "spec": {
            "clusterIP": "10.96.0.9",
            "selector": {"istio": "egressgateway"},
            "ports": [{"name": "tls", "port": 443, "targetPort": 8443, "protocol": "TCP"}],
        },
    }


def _two_leg(ap_namespaces: list[str]) -> list[dict[str, Any]]:
    """The Istio egress TLS pattern: sidecar -> gateway (mTLS, SNI) -> the external host."""
    host = "api.example.com"
    return [
        _se(host, 443, "TLS", "egress"),
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "egressgw", "namespace": "egress"},
            "spec": {
                "selector": {"istio": "egressgateway"},
                "servers": [
                    {
                        "port": {"number": 443, "name": "tls", "protocol": "TLS"},
                        "hosts": [host],
                        "tls": {"mode": "ISTIO_MUTUAL"},
                    }
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "DestinationRule",
            "metadata": {"name": "egressgw", "namespace": "egress"},
            "spec": {
                "host": "egressgw.egress.svc.cluster.local",
                "subsets": [
                    {
                        "name": "api",
                        "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL", "sni": host}},
                    }
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "to-gateway", "namespace": "apps"},
            "spec": {
                "hosts": [host],
                "tls": [
                    {
                        "match": [{"port": 443, "sniHosts": [host]}],
                        "route": [
                            {
                                "destination": {
                                    "host": "egressgw.egress.svc.cluster.local",
                                    "subset": "api",
                                    "port": {"number": 443},
                                }
                            }
                        ],
                    }
                ],
            },
        },
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "from-gateway", "namespace": "egress"},
            "spec": {
                "hosts": [host],
                "gateways": ["egressgw"],
                "tcp": [
                    {
                        "match": [{"port": 443}],
                        "route": [{"destination": {"host": host, "port": {"number": 443}}}],
                    }
                ],
            },
        },
        {
            "apiVersion": "security.istio.io/v1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "egressgw", "namespace": "egress"},
            "spec": {
                "selector": {"matchLabels": {"istio": "egressgateway"}},
                "action": "ALLOW",
                "rules": [
                    {
                        "from": [{"source": {"namespaces": ap_namespaces}}],
                        "when": [{"key": "connection.sni", "values": [host]}],
                    }
                ],
            },
        },
        _sidecar("REGISTRY_ONLY"),
    ]


def test_unknown_host_is_passed_through_under_allow_any(mesh_oracle: Oracle) -> None:
    world = World((), (), (CLIENT,), (Call("client", "example.org", 443, tls="tls"),))
    (got,) = mesh_oracle.simulate(world).results
    assert got.verdict == "passthrough", got.describe()
    assert got.legs[0].cluster == "PassthroughCluster"


def test_unknown_host_is_blocked_under_registry_only(mesh_oracle: Oracle) -> None:
    calls = (
        Call("client", "example.org", 443, tls="tls"),
        Call("client", "example.org", 80, protocol="http"),
    )
    world = World((_sidecar("REGISTRY_ONLY"),), (), (CLIENT,), calls)
    assert [r.verdict for r in mesh_oracle.simulate(world).results] == ["blocked", "blocked"]


def test_registered_host_goes_direct_with_its_dns_endpoint(mesh_oracle: Oracle) -> None:
    config = (_sidecar("REGISTRY_ONLY"), _se("api.example.com", 443, "TLS"))
    world = World(config, (), (CLIENT,), (Call("client", "api.example.com", 443, tls="tls"),))
    (got,) = mesh_oracle.simulate(world).results
    assert (got.verdict, got.host, got.port) == ("direct", "api.example.com", 443)
    assert got.legs[0].cluster == "outbound|443||api.example.com"
    assert got.legs[0].endpoints == ("api.example.com:443",)


def test_destination_rule_tls_is_read_from_the_cluster(mesh_oracle: Oracle) -> None:
    """Same cluster name, other TLS: the verdict must show the transport, not just the name."""
    dr = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "api", "namespace": "apps"},
        "spec": {
            "host": "api.example.com",
            "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": "evil.example.net"}},
        },
    }
    config = (_sidecar("REGISTRY_ONLY"), _se("api.example.com", 80, "HTTP"), dr)
    world = World(config, (), (CLIENT,), (Call("client", "api.example.com", 80, "http"),))
    (got,) = mesh_oracle.simulate(world).results
    transport = got.legs[0].transport
    assert transport is not None
    assert (transport.mode, transport.sni) == ("SIMPLE", "evil.example.net")


def test_call_through_the_gateway_ends_at_the_host_when_the_namespace_is_allowed(
    mesh_oracle: Oracle,
) -> None:
    world = World(
        tuple(_two_leg(["apps"])),
        (_gateway_service(),),
        (GATEWAY, CLIENT),
        (Call("client", "api.example.com", 443, tls="tls"),),
    )
    (got,) = mesh_oracle.simulate(world).results
    assert (got.verdict, got.host, got.port) == ("direct", "api.example.com", 443), got.describe()
    assert got.gateway is not None
    assert (got.gateway.proxy, got.gateway.subset, got.gateway.tls_mode, got.gateway.sni) == (
        "egressgw",
        "api",
        "ISTIO_MUTUAL",
        "api.example.com",
    )
    assert [leg.proxy for leg in got.legs] == ["client", "egressgw"]
    authz = got.legs[1].authz
    assert authz is not None and authz.allowed
    assert authz.filters[0].matched, authz


def test_gateway_rbac_denies_a_namespace_the_policy_does_not_name(mesh_oracle: Oracle) -> None:
    world = World(
        tuple(_two_leg(["somebody-else"])),
        (_gateway_service(),),
        (GATEWAY, CLIENT),
        (Call("client", "api.example.com", 443, tls="tls"),),
    )
    (got,) = mesh_oracle.simulate(world).results
    assert got.verdict == "blocked", got.describe()
    assert "AuthorizationPolicy" in got.reason
    assert got.gateway is not None and got.gateway.proxy == "egressgw"


def test_validation_reports_errors_per_object(mesh_oracle: Oracle) -> None:
    bad = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "bad", "namespace": "apps"},
        "spec": {"hosts": [], "http": [{"route": [{"destination": {"host": ""}}]}]},
    }
    good = _se("api.example.com", 443, "TLS")
    reports = mesh_oracle.validate([bad, good])
    assert [(r.kind, r.name) for r in reports] == [
        ("VirtualService", "bad"),
        ("ServiceEntry", "api-example-com"),
    ]
    assert reports[0].errors and not reports[1].errors


def test_objects_istio_rejects_are_left_out_of_the_mesh(mesh_oracle: Oracle) -> None:
    bad_se = _se("api.example.com", 443, "TLS")
    bad_se["spec"]["resolution"] = "NOT-A-RESOLUTION"
    world = World(
        (_sidecar("REGISTRY_ONLY"), bad_se),
        (),
        (CLIENT,),
        (Call("client", "api.example.com", 443, tls="tls"),),
    )
    sim = mesh_oracle.simulate(world)
    assert [r.name for r in sim.rejected] == ["api-example-com"]
    assert sim.results[0].verdict == "blocked"


def test_a_call_to_a_sidecar_pod_ends_at_that_pod(mesh_oracle: Oracle) -> None:
    """An entry whose endpoint is another sidecar's pod (a ``workloadSelector``): the call ends
    at that pod's own application, captured by its inbound listener; that proxy's outbound
    listeners, which would send a Host of an external service onwards, never see it."""
    server = Proxy("server", "apps", "10.0.0.3", {"app": "server"}, "server-sa")
    entry = _se("api.example.com", 80, "HTTP")
    entry["spec"] |= {"resolution": "STATIC", "workloadSelector": {"labels": {"app": "server"}}}
    config = (_sidecar("ALLOW_ANY"), entry)
    world = World(config, (), (CLIENT, server), (Call("client", "api.example.com", 80, "http"),))
    (got,) = mesh_oracle.simulate(world).results
    assert (got.verdict, got.host, got.port) == ("direct", "10.0.0.3", 80), got.describe()
    assert got.gateway is None
    assert [leg.proxy for leg in got.legs] == ["client"]


def test_a_gateway_api_route_given_as_config_takes_effect(mesh_oracle: Oracle) -> None:
    """istiod reads Gateway API routes from the Kubernetes client, not the config store: the
    oracle must hand them over as such, or a route is validated and then silently ignored."""
    web = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {
            "clusterIP": "10.96.0.30",
            "selector": {"app": "client"},
            "ports": [{"name": "http-web", "port": 80, "targetPort": 80, "protocol": "TCP"}],
        },
    }
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web", "namespace": "apps"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
            "rules": [
                {
                    "backendRefs": [
                        {
                            "group": "networking.istio.io",
                            "kind": "Hostname",
                            "name": "api.example.com",
                            "port": 80,
                        }
                    ]
                }
            ],
        },
    }
    config = (_sidecar("REGISTRY_ONLY"), _se("api.example.com", 80, "HTTP"), route)
    call = Call("client", "web.apps.svc.cluster.local", 80, "http", address="10.96.0.30")
    world = World(config, (web,), (CLIENT,), (call,))
    (got,) = mesh_oracle.simulate(world).results
    assert (got.verdict, got.host, got.port) == ("direct", "api.example.com", 80), got.describe()
    assert got.legs[0].route == "apps.web.0"


def test_tls_inside_a_proxy_protocol_wrapper_is_read(mesh_oracle: Oracle) -> None:
    """A DestinationRule's ``proxyProtocol`` wraps the cluster's TLS in a PROXY protocol
    socket; the connection still carries that mTLS and SNI after the header, so the oracle
    must not read it as the client's own bytes."""
    config = _two_leg(["apps"])
    rule = next(o for o in config if o["kind"] == "DestinationRule")
    rule["spec"]["subsets"][0]["trafficPolicy"]["proxyProtocol"] = {"version": "V1"}
    world = World(
        tuple(config),
        (_gateway_service(),),
        (GATEWAY, CLIENT),
        (Call("client", "api.example.com", 443, tls="tls"),),
    )
    (got,) = mesh_oracle.simulate(world).results
    transport = got.legs[0].transport
    assert transport is not None
    assert (transport.mode, transport.sni, transport.proxy_protocol) == (
        "ISTIO_MUTUAL",
        "api.example.com",
        True,
    ), got.describe()
    assert got.gateway is not None and got.gateway.tls_mode == "ISTIO_MUTUAL"


def test_a_cluster_without_endpoints_reaches_nothing(mesh_oracle: Oracle) -> None:
    """A STATIC entry whose ``workloadSelector`` picks no pod: Envoy has no host to connect
    to, so the call is reset there instead of reaching the entry's name."""
    entry = _se("db.example.com", 5432, "TCP")
    entry["spec"] |= {"resolution": "STATIC", "workloadSelector": {"labels": {"app": "none"}}}
    world = World((_sidecar("REGISTRY_ONLY"), entry), (), (CLIENT,), (Call("client", "", 5432),))
    (got,) = mesh_oracle.simulate(world).results
    assert (got.verdict, got.reason) == ("blocked", "cluster has no endpoints"), got.describe()
    assert got.legs[0].cluster == "outbound|5432||db.example.com"

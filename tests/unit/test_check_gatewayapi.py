"""Gateway API routes and gateways: egress paths that need no Istio CRD (trap 15)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from webhook.core.engine import decide
from webhook.core.policy import Mode
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

POLICIES = Path(__file__).resolve().parents[2] / "policies"
FIREWALL = parse_policy((POLICIES / "istio-egress-firewall.yaml").read_text())
BANZAI = parse_policy((POLICIES / "banzai-demo.yaml").read_text())
EGRESS_GW = "istio-egressgateway.istio-egress.svc.cluster.local"
API = "gateway.networking.k8s.io/v1"


def hostname(name: str, port: int = 443) -> dict[str, Any]:
    return {"group": "networking.istio.io", "kind": "Hostname", "name": name, "port": port}


def route(
    backends: list[dict[str, Any]],
    *,
    kind: str = "HTTPRoute",
    namespace: str = "team-a",
    parents: list[dict[str, Any]] | None = None,
    hostnames: list[str] | None = None,
    filters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    rule: dict[str, Any] = {"backendRefs": backends}
    if filters is not None:
        rule["filters"] = filters
    spec: dict[str, Any] = {
        "parentRefs": parents if parents is not None else [{"name": "web"}],
        "rules": [rule],
    }
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {
        "apiVersion": API
        if kind in ("HTTPRoute", "GRPCRoute")
        else f"{API.rsplit('/', 1)[0]}/v1alpha2",
        "kind": kind,
        "metadata": {"name": "r", "namespace": namespace},
        "spec": spec,
    }


def judge(manifest: dict[str, Any], policy: Any = FIREWALL, **kwargs: Any) -> Any:
    return decide(review_of_manifest(manifest, **kwargs), policy)


def fields(decision: Any) -> list[str]:
    return [v.field for v in decision.violations]


MESH_PARENT = [{"group": "", "kind": "Service", "name": "upstream", "port": 443}]
SE_PARENT = [{"group": "networking.istio.io", "kind": "ServiceEntry", "name": "api"}]


@pytest.mark.parametrize("kind", ["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"])
def test_external_hostname_backend_is_denied(kind: str) -> None:
    decision = judge(route([hostname("evil.example.com")], kind=kind, parents=MESH_PARENT))
    assert fields(decision) == ["spec.rules[0].backendRefs[0].name"]
    assert "skipping the egress gateway" in decision.reason
    assert "ask for the destination in the egress policy" in decision.reason


def test_even_an_allowed_host_as_hostname_backend_outside_egress_namespace_is_denied() -> None:
    # service1.foo.com is allowed to everyone, but through the gateway, not straight out
    decision = judge(route([hostname("service1.foo.com")], parents=SE_PARENT))
    (violation,) = decision.violations
    # the destination is granted already: the advice is the way there, not the policy
    assert f"through the egress gateway {EGRESS_GW}" in violation.message
    assert "call the host itself" in violation.message
    assert "egress policy" not in violation.message


@pytest.mark.parametrize(
    "name",
    [
        EGRESS_GW,
        "web.team-a.svc.cluster.local",
        "Istio-EgressGateway.istio-egress.svc.Cluster.Local.",
    ],
)
def test_internal_hostname_backend_is_allowed(name: str) -> None:
    decision = judge(route([hostname(name)], parents=SE_PARENT))
    assert decision.allowed, decision.reason


def test_egress_namespace_route_to_an_allow_listed_host_is_allowed() -> None:
    manifest = route(
        [hostname("service1.foo.com")],
        namespace="istio-egress",
        parents=[{"name": "egress-gateway"}],
    )
    assert judge(manifest).allowed


def test_egress_namespace_route_to_an_unlisted_host_is_denied() -> None:
    manifest = route(
        [hostname("evil.example.com")],
        namespace="istio-egress",
        parents=[{"name": "egress-gateway"}],
    )
    assert not judge(manifest).allowed


@pytest.mark.parametrize(
    "backend",
    [
        {"name": "web", "port": 80},
        {"group": "", "kind": "Service", "name": "web", "port": 80},
        {"group": "networking.istio.io", "kind": "ServiceEntry", "name": "api", "port": 443},
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "llm"},
    ],
)
def test_backends_checked_on_their_own_are_allowed(backend: dict[str, Any]) -> None:
    assert judge(route([backend], parents=MESH_PARENT)).allowed


def test_unknown_backend_kind_is_denied() -> None:
    backend = {"group": "gateway.envoyproxy.io", "kind": "Backend", "name": "anything"}
    decision = judge(route([backend]))
    assert fields(decision) == ["spec.rules[0].backendRefs[0].kind"]


def test_request_mirror_to_an_external_hostname_is_denied() -> None:
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": hostname("evil.example")}}
    manifest = route([{"name": "web", "port": 80}], parents=MESH_PARENT, filters=[mirror])
    decision = judge(manifest)
    assert fields(decision) == ["spec.rules[0].filters[0].requestMirror.backendRef.name"]


def test_backend_level_request_mirror_is_checked() -> None:
    mirror = {"type": "RequestMirror", "requestMirror": {"backendRef": hostname("evil.example")}}
    manifest = route([{"name": "web", "port": 80, "filters": [mirror]}], parents=MESH_PARENT)
    decision = judge(manifest)
    assert fields(decision) == [
        "spec.rules[0].backendRefs[0].filters[0].requestMirror.backendRef.name"
    ]


@pytest.mark.parametrize(
    ("namespace", "hosts", "allowed"),
    [
        ("team-a", ["api.foo.com"], True),
        ("team-a", ["*.foo.com"], True),
        ("team-b", ["service1.foo.com"], True),
        ("team-b", ["api.foo.com"], False),
        ("team-a", ["foo.com"], False),
        ("team-a", ["upstream.team-a.svc.cluster.local"], True),
    ],
)
def test_mesh_tls_route_hostnames_must_be_allowed_to_the_namespace(
    namespace: str, hosts: list[str], allowed: bool
) -> None:
    # a mesh TLSRoute's hostnames are its sidecar route's SNI match: on a parent without a
    # virtual IP they catch connections to any address carrying that SNI
    for parents in (MESH_PARENT, SE_PARENT):
        manifest = route(
            [{"name": "upstream", "port": 443}],
            kind="TLSRoute",
            namespace=namespace,
            parents=parents,
            hostnames=hosts,
        )
        decision = judge(manifest)
        assert decision.allowed is allowed
        if not allowed:
            assert "leave hostnames out (the route then matches its parent's own names)" in (
                decision.reason
            )


@pytest.mark.parametrize("kind", ["HTTPRoute", "GRPCRoute"])
def test_mesh_http_route_hostnames_reach_no_sidecar(kind: str) -> None:
    # istiod names an HTTP or gRPC route on a mesh parent after the parent alone and drops its
    # hostnames there; they only matter on the Gateway parents of the same route (ingress)
    for parents in (MESH_PARENT, SE_PARENT, [*MESH_PARENT, {"name": "web"}]):
        manifest = route(
            [{"name": "upstream", "port": 443}],
            kind=kind,
            namespace="team-b",
            parents=parents,
            hostnames=["api.foo.com", "*.example.com"],
        )
        decision = judge(manifest)
        assert decision.allowed, decision.reason
    # what the route sends to is still judged
    manifest = route([hostname("api.foo.com")], kind=kind, namespace="team-b", parents=MESH_PARENT)
    assert not judge(manifest).allowed


def test_ingress_route_hostnames_are_not_egress() -> None:
    manifest = route([{"name": "web", "port": 80}], hostnames=["shop.example.com"])
    assert judge(manifest).allowed


def test_route_attaching_to_a_gateway_in_the_egress_namespace_is_denied() -> None:
    parents = [{"name": "egress-gateway", "namespace": "istio-egress"}]
    decision = judge(route([{"name": "web", "port": 80}], parents=parents))
    assert fields(decision) == ["spec.parentRefs[0].namespace"]


def test_malformed_route_is_denied_without_crashing() -> None:
    manifest = route([])
    manifest["spec"]["rules"] = [{"backendRefs": "evil.example.com"}]
    assert fields(judge(manifest)) == ["spec.rules[0].backendRefs"]


def test_route_delete_is_allowed() -> None:
    manifest = route([hostname("evil.example.com")])
    assert judge(manifest, operation="DELETE").allowed


def test_audit_mode_admits_route_with_a_warning() -> None:
    policy = dataclasses.replace(FIREWALL, mode=Mode.AUDIT)
    decision = judge(route([hostname("evil.example.com")]), policy)
    assert decision.allowed and decision.audited and decision.warnings


# --- Gateway ---------------------------------------------------------------------------------


def gateway(
    klass: str, namespace: str = "team-a", addresses: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "gatewayClassName": klass,
        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
    }
    if addresses is not None:
        spec["addresses"] = addresses
    return {
        "apiVersion": API,
        "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": namespace},
        "spec": spec,
    }


@pytest.mark.parametrize(
    "klass",
    ["istio-waypoint", "istio-east-west", "istio-agentgateway", "istio-agentgateway-waypoint"],
)
def test_tenant_gateway_deploying_an_ungoverned_proxy_is_denied(klass: str) -> None:
    assert fields(judge(gateway(klass))) == ["spec.gatewayClassName"]


def test_gateway_of_an_external_load_balancer_class_is_allowed() -> None:
    assert judge(gateway("gke-l7-global-external-managed")).allowed


def test_egress_namespace_gateway_is_allowed() -> None:
    assert judge(gateway("istio", "istio-egress")).allowed


@pytest.mark.parametrize(
    "value",
    [
        EGRESS_GW,
        "istio-egressgateway.istio-egress",
        "other.istio-egress.svc",
    ],
)
def test_gateway_binding_the_egress_gateway_pods_is_denied(value: str) -> None:
    manifest = gateway("cloud-lb", addresses=[{"type": "Hostname", "value": value}])
    assert fields(judge(manifest)) == ["spec.addresses[0].value"]


def test_gateway_address_that_merely_resembles_the_egress_namespace_is_allowed() -> None:
    manifest = gateway("cloud-lb", addresses=[{"type": "Hostname", "value": "lb.external.com"}])
    assert judge(manifest, BANZAI).allowed


@pytest.mark.parametrize("klass", ["istio", "istio-remote", "some-other-class"])
@pytest.mark.parametrize("where", ["metadata", "spec.infrastructure"])
def test_gateway_declaring_a_network_gateway_is_denied(klass: str, where: str) -> None:
    # istiod takes any Gateway with the network label for that network's gateway: every
    # sidecar then sends traffic for endpoints of that network to the Gateway's addresses
    manifest = gateway(klass, addresses=[{"type": "IPAddress", "value": "203.0.113.7"}])
    manifest["spec"]["listeners"] = [
        {"name": "cross-network", "port": 15443, "protocol": "TLS", "tls": {"mode": "Passthrough"}}
    ]
    labels = {"topology.istio.io/network": "evilnet"}
    if where == "metadata":
        manifest["metadata"]["labels"] = labels
    else:
        manifest["spec"]["infrastructure"] = {"labels": labels}
    assert fields(judge(manifest)) == [f"{where}.labels[topology.istio.io/network]"]


# --- listeners and ListenerSets ----------------------------------------------------------------

AUTO = {"gateway.istio.io/listener-protocol": "auto-passthrough"}
OPTION_FIELD = "spec.listeners[1].tls.options[gateway.istio.io/listener-protocol]"


def passthrough(options: dict[str, str] | None = None) -> dict[str, Any]:
    tls: dict[str, Any] = {"mode": "Passthrough"}
    if options is not None:
        tls["options"] = options
    return {"name": "sni", "port": 15443, "protocol": "TLS", "hostname": "*.local", "tls": tls}


@pytest.mark.parametrize("namespace", ["team-a", "istio-egress"])
def test_gateway_listener_asking_for_auto_passthrough_is_denied(namespace: str) -> None:
    # istiod serves it as AUTO_PASSTHROUGH, refused on classic Gateways in every namespace
    manifest = gateway("istio", namespace)
    manifest["spec"]["listeners"].append(passthrough(AUTO))
    decision = judge(manifest)
    assert fields(decision) == [OPTION_FIELD]
    assert "AUTO_PASSTHROUGH" in decision.reason


@pytest.mark.parametrize("options", [None, {"gateway.istio.io/listener-protocol": "tls"}, {}])
def test_plain_passthrough_listener_is_allowed(options: dict[str, str] | None) -> None:
    manifest = gateway("istio")
    manifest["spec"]["listeners"].append(passthrough(options))
    assert judge(manifest).allowed


def listener_set(
    kind: str = "ListenerSet",
    namespace: str = "team-a",
    parent: dict[str, Any] | None = None,
    listeners: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    group = API.rsplit("/", 1)[0]
    api = f"{group}/v1" if kind == "ListenerSet" else "gateway.networking.x-k8s.io/v1alpha1"
    return {
        "apiVersion": api,
        "kind": kind,
        "metadata": {"name": "ls", "namespace": namespace},
        "spec": {
            "parentRef": parent if parent is not None else {"name": "shared"},
            "listeners": listeners
            if listeners is not None
            else [{"name": "https", "port": 8443, "protocol": "HTTPS", "hostname": "a.example"}],
        },
    }


LISTENER_SET_KINDS = ["ListenerSet", "XListenerSet"]


@pytest.mark.parametrize("kind", LISTENER_SET_KINDS)
def test_listener_set_on_a_tenant_gateway_is_allowed(kind: str) -> None:
    assert judge(listener_set(kind)).allowed
    other = {"name": "shared", "namespace": "team-b", "kind": "Gateway"}
    assert judge(listener_set(kind, parent=other)).allowed


@pytest.mark.parametrize("kind", LISTENER_SET_KINDS)
def test_listener_set_on_a_gateway_in_the_egress_namespace_is_denied(kind: str) -> None:
    parent = {"name": "egress", "namespace": "istio-egress"}
    decision = judge(listener_set(kind, parent=parent))
    assert fields(decision) == ["spec.parentRef.namespace"]
    assert "egress namespace istio-egress" in decision.reason


def test_listener_set_in_the_egress_namespace_is_judged_by_author() -> None:
    # the egress namespace is the security team's: its own ListenerSets are not judged by parent
    parent = {"name": "egress", "namespace": "istio-egress"}
    decision = judge(listener_set(namespace="istio-egress", parent=parent))
    assert "spec.parentRef.namespace" not in fields(decision)


@pytest.mark.parametrize("kind", LISTENER_SET_KINDS)
def test_listener_set_entry_asking_for_auto_passthrough_is_denied(kind: str) -> None:
    manifest = listener_set(kind)
    manifest["spec"]["listeners"].append(passthrough(AUTO))
    assert fields(judge(manifest)) == [OPTION_FIELD]


def test_listener_set_declaring_a_network_is_denied() -> None:
    # istiod reads the ListenerSet's own labels: a TLS listener on 15443 becomes AUTO_PASSTHROUGH
    manifest = listener_set(listeners=[passthrough()])
    manifest["metadata"]["labels"] = {"topology.istio.io/network": "evilnet"}
    assert fields(judge(manifest)) == ["metadata.labels[topology.istio.io/network]"]


def test_listener_set_delete_is_allowed() -> None:
    parent = {"name": "egress", "namespace": "istio-egress"}
    assert judge(listener_set(parent=parent), operation="DELETE").allowed


@pytest.mark.parametrize(
    "parent",
    [
        {"kind": "ListenerSet", "name": "ls", "namespace": "istio-egress"},
        {
            "group": "gateway.networking.x-k8s.io",
            "kind": "XListenerSet",
            "name": "ls",
            "namespace": "istio-egress",
        },
    ],
)
@pytest.mark.parametrize("kind", ["HTTPRoute", "TLSRoute"])
def test_route_attaching_to_a_listener_set_in_the_egress_namespace_is_denied(
    kind: str, parent: dict[str, Any]
) -> None:
    decision = judge(route([{"name": "web", "port": 443}], kind=kind, parents=[parent]))
    assert fields(decision) == ["spec.parentRefs[0].namespace"]
    assert f"a {parent['kind']} in the egress namespace" in decision.reason


def test_route_attaching_to_a_tenant_listener_set_is_allowed() -> None:
    parents = [{"kind": "ListenerSet", "name": "ls"}]
    assert judge(route([{"name": "web", "port": 443}], parents=parents)).allowed


@pytest.mark.parametrize("kind", ["Gateway", "ListenerSet"])
def test_long_listener_lists_are_judged_like_short_ones(kind: str) -> None:
    listeners = [passthrough({"x": "y"}) | {"name": f"l{i}"} for i in range(500)]
    manifest = gateway("istio") if kind == "Gateway" else listener_set()
    manifest["spec"]["listeners"] = listeners
    assert judge(manifest).allowed
    listeners[321] = passthrough(AUTO)
    assert fields(judge(manifest)) == [
        "spec.listeners[321].tls.options[gateway.istio.io/listener-protocol]"
    ]

"""Holes the differential fuzzer found: objects egress-guard admitted that opened a path.

Each test is one counterexample, reduced to plain dicts: the object, the policy it breached, and
the field the denial must point at.  Why each one leaked, in Istio's terms:

- the SNI of the sidecar->gateway mTLS hop picks the external host at the egress gateway, and the
  gateway authorizes rules narrowed by workload labels by namespace alone; so whatever sets that
  SNI (a route's gateway subset, a DestinationRule's ``tls.sni``) must be allowed to every
  workload it applies to, not merely to some workload of the namespace;
- a ServiceEntry's ``targetPort`` and endpoint ``ports`` are where the proxy really connects, so
  an allowed host on an allowed port number can still dial any port of that host.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.builders import assert_denied_at, judge
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

# Banzai's services and label rules on one shared egress gateway
SHARED = """
egress: {namespace: external, gateway: {mode: shared}}
externalServices:
  - {name: httpbin, hosts: [httpbin.org, www.httpbin.org],
     ports: [{number: 80, protocol: HTTP}, {number: 443, protocol: TLS}]}
  - {name: google, hosts: [google.com, www.google.com],
     ports: [{number: 80, protocol: HTTP}, {number: 443, protocol: TLS}]}
allow:
  - {name: app-a, from: {namespace: test-app, workloadLabels: {k8s-app: app-a}}, to: [httpbin]}
  - {name: app-b, from: {namespace: test-app, workloadLabels: {k8s-app: app-b}}, to: [google]}
"""
GATEWAY = "istio-egressgateway.external.svc.cluster.local"

# the Istio egress-firewall post: team-a may reach *.foo.com, team-b *.bar.com, everyone one host
FIREWALL = """
egress: {namespace: istio-egress, gateway: {mode: shared}}
externalServices:
  - {name: service1-foo, hosts: [service1.foo.com], ports: [{number: 443, protocol: TLS}]}
  - {name: foo-com, hosts: ["*.foo.com"], ports: [{number: 443, protocol: TLS}]}
  - {name: bar-com, hosts: ["*.bar.com"], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: cluster-wide, from: {namespace: "*"}, to: [service1-foo]}
  - {name: team-a, from: {namespace: team-a}, to: [foo-com]}
  - {name: team-b, from: {namespace: team-b}, to: [bar-com]}
"""
FIREWALL_GATEWAY = "istio-egressgateway.istio-egress.svc.cluster.local"


@pytest.fixture(scope="module")
def shared() -> Policy:
    return parse_policy(SHARED)


@pytest.fixture(scope="module")
def firewall() -> Policy:
    return parse_policy(FIREWALL)


def _object(kind: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": "tenant", "namespace": namespace},
        "spec": spec,
    }


def _to_gateway(gateway: str, subset: str, port: int) -> dict[str, Any]:
    return {"destination": {"host": gateway, "subset": subset, "port": {"number": port}}}


def test_internal_name_routed_to_another_services_gateway_subset_is_denied(
    firewall: Policy,
) -> None:
    # team-a's call to its own name "mirror" ends at the gateway's bar-com subset, whose
    # PASSTHROUGH server forwards the app's TLS to any *.bar.com SNI, identity unchecked
    manifest = _object(
        "VirtualService",
        "team-a",
        {
            "hosts": ["mirror"],
            "exportTo": ["."],
            "tcp": [{"route": [_to_gateway(FIREWALL_GATEWAY, "bar-com-0", 443)]}],
        },
    )
    assert_denied_at(
        judge(manifest, firewall), "spec.tcp[0].route[0].destination.subset", "bar-com"
    )


def test_subset_of_a_service_the_labelled_source_may_not_reach_is_denied(shared: Policy) -> None:
    # app-b's route to the httpbin subset gets SNI httpbin.org; the gateway admits test-app
    manifest = _object(
        "VirtualService",
        "test-app",
        {
            "hosts": ["mirror"],
            "exportTo": ["."],
            "tcp": [
                {
                    "match": [{"sourceLabels": {"k8s-app": "app-b"}}],
                    "route": [_to_gateway(GATEWAY, "httpbin-0", 443)],
                }
            ],
        },
    )
    decision = judge(manifest, shared)
    assert_denied_at(decision, "spec.tcp[0].route[0].destination.subset", "httpbin")


def test_route_without_source_labels_to_a_label_narrowed_service_is_denied(
    shared: Policy,
) -> None:
    # no sourceLabels: app-b gets the route to httpbin as well, and the gateway only sees test-app
    manifest = _object(
        "VirtualService",
        "test-app",
        {
            "hosts": ["httpbin.org"],
            "exportTo": ["."],
            "http": [{"route": [_to_gateway(GATEWAY, "httpbin-0", 80)]}],
        },
    )
    assert_denied_at(
        judge(manifest, shared), "spec.http[0].route[0].destination.host", "httpbin.org"
    )


def test_route_with_the_rules_labels_to_its_subset_is_admitted(shared: Policy) -> None:
    manifest = _object(
        "VirtualService",
        "test-app",
        {
            "hosts": ["httpbin.org"],
            "exportTo": ["."],
            "http": [
                {
                    "match": [{"sourceLabels": {"k8s-app": "app-a"}}],
                    "route": [_to_gateway(GATEWAY, "httpbin-0", 80)],
                }
            ],
        },
    )
    decision = judge(manifest, shared)
    assert decision.allowed, decision.reason


def test_namespace_wide_sni_to_the_gateway_for_a_label_narrowed_service_is_denied(
    shared: Policy,
) -> None:
    # the rule applies to app-b too: its calls to google would leave the gateway at httpbin.org
    manifest = _object(
        "DestinationRule",
        "test-app",
        {"host": GATEWAY, "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL", "sni": "httpbin.org"}}},
    )
    assert_denied_at(judge(manifest, shared), "spec.trafficPolicy.tls.sni", "httpbin.org")


def test_sni_to_the_gateway_for_the_selected_workloads_own_service_is_admitted(
    shared: Policy,
) -> None:
    manifest = _object(
        "DestinationRule",
        "test-app",
        {
            "host": GATEWAY,
            "workloadSelector": {"matchLabels": {"k8s-app": "app-a"}},
            "exportTo": ["."],
            "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL", "sni": "httpbin.org"}},
        },
    )
    decision = judge(manifest, shared)
    assert decision.allowed, decision.reason


def test_service_entry_target_port_outside_the_services_ports_is_denied(firewall: Policy) -> None:
    # port 443 is allowed, but the proxy would connect to service1.foo.com:22
    manifest = _object(
        "ServiceEntry",
        "team-a",
        {
            "hosts": ["service1.foo.com"],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS", "targetPort": 22}],
            "resolution": "DNS",
        },
    )
    assert_denied_at(judge(manifest, firewall), "spec.ports[0].targetPort", "port 22")


def test_service_entry_endpoint_port_outside_the_services_ports_is_denied(
    firewall: Policy,
) -> None:
    manifest = _object(
        "ServiceEntry",
        "team-a",
        {
            "hosts": ["service1.foo.com"],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
            "endpoints": [{"address": "service1.foo.com", "ports": {"tls": 25}}],
        },
    )
    assert_denied_at(judge(manifest, firewall), "spec.endpoints[0].ports.tls", "port 25")


def test_service_entry_target_port_equal_to_an_allowed_port_is_admitted(firewall: Policy) -> None:
    manifest = _object(
        "ServiceEntry",
        "team-a",
        {
            "hosts": ["service1.foo.com"],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS", "targetPort": 443}],
            "resolution": "DNS",
        },
    )
    decision = judge(manifest, firewall)
    assert decision.allowed, decision.reason


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"mirror": {"host": GATEWAY, "subset": "httpbin-0"}}, "spec.http[0].mirror.subset"),
        (
            {"mirrors": [{"destination": {"host": GATEWAY, "subset": "httpbin-0"}}]},
            "spec.http[0].mirrors[0].destination.subset",
        ),
    ],
    ids=["mirror", "mirrors"],
)
def test_mirror_to_another_services_gateway_subset_is_denied(
    shared: Policy, rule: dict[str, Any], field: str
) -> None:
    # the simulation follows no mirrors; a mirror copies app-b's requests onto the httpbin hop
    manifest = _object(
        "VirtualService",
        "test-app",
        {
            "hosts": ["google.com"],
            "exportTo": ["."],
            "http": [
                {
                    "match": [{"sourceLabels": {"k8s-app": "app-b"}}],
                    "route": [_to_gateway(GATEWAY, "google-0", 80)],
                    **rule,
                }
            ],
        },
    )
    assert_denied_at(judge(manifest, shared), field, "httpbin")


def _team_b_route(export_to: list[str] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "hosts": ["mirror"],
        "tcp": [{"route": [_to_gateway(FIREWALL_GATEWAY, "bar-com-0", 443)]}],
    }
    if export_to is not None:
        spec["exportTo"] = export_to
    return _object("VirtualService", "team-b", spec)


@pytest.mark.parametrize("export_to", [None, ["*"], ["team-a"]], ids=["omitted", "star", "team-a"])
def test_exported_route_to_a_passthrough_subset_other_namespaces_may_not_use_is_denied(
    firewall: Policy, export_to: list[str] | None
) -> None:
    # team-a's Sidecar may import team-b/*; team-b's route then hands team-a's raw TLS to the
    # *.bar.com PASSTHROUGH server, which cannot see who is calling
    decision = judge(_team_b_route(export_to), firewall)
    assert_denied_at(decision, "spec.tcp[0].route[0].destination.subset", "bar-com")


def test_tcp_route_to_a_passthrough_subset_reaches_every_wildcard_on_the_gateway_is_denied(
    firewall: Policy,
) -> None:
    # even private, team-b's own subset passes its raw TLS through: the gateway routes it on
    # the app's SNI, so SNI a.foo.com ends at *.foo.com, which only team-a may reach
    decision = judge(_team_b_route(["."]), firewall)
    assert_denied_at(decision, "spec.tcp[0].route[0].destination.subset", "sniHosts")


def test_tls_route_pinning_the_sni_under_its_passthrough_subsets_wildcard_is_admitted(
    firewall: Policy,
) -> None:
    manifest = _object(
        "VirtualService",
        "team-b",
        {
            "hosts": ["*.bar.com"],
            "exportTo": ["."],
            "tls": [
                {
                    "match": [{"port": 443, "sniHosts": ["*.bar.com"]}],
                    "route": [_to_gateway(FIREWALL_GATEWAY, "bar-com-0", 443)],
                }
            ],
        },
    )
    decision = judge(manifest, firewall)
    assert decision.allowed, decision.reason


def test_namespace_wide_sni_in_a_subset_named_like_a_policy_subset_is_denied(
    shared: Policy,
) -> None:
    # the namespace's own rule for the gateway host replaces the managed one for its pods, so
    # the generated route to subset google-0 would carry app-b's calls out as httpbin.org
    manifest = _object(
        "DestinationRule",
        "test-app",
        {
            "host": GATEWAY,
            "subsets": [
                {
                    "name": "google-0",
                    "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL", "sni": "httpbin.org"}},
                }
            ],
        },
    )
    assert_denied_at(
        judge(manifest, shared), "spec.subsets[0].trafficPolicy.tls.sni", "httpbin.org"
    )


MIXED = """
egress: {namespace: egress, gateway: {mode: shared}}
internalNetworks: [10.0.0.0/8]
externalServices:
  - {name: payments, hosts: [api.payments.example], addresses: [203.0.113.0/28],
     ports: [{number: 443, protocol: TLS}, {number: 80, protocol: HTTP}]}
allow:
  - {name: everyone, from: {namespace: "*"}, to: [payments]}
"""


@pytest.mark.parametrize("address", ["203.0.113.5", "api.payments.example"])
def test_workload_entry_with_an_allowed_external_address_is_denied(address: str) -> None:
    # the namespace's own Service "db" (ports 22, 5432, ...) selects the entry by its labels:
    # team-a then reaches the payments address on every port the Service declares
    manifest = _object("WorkloadEntry", "team-a", {"address": address, "labels": {"app": "db"}})
    assert_denied_at(judge(manifest, parse_policy(MIXED)), "spec.address", "port")


def test_workload_entry_with_an_internal_address_is_admitted() -> None:
    manifest = _object("WorkloadEntry", "team-a", {"address": "10.1.2.3", "labels": {"app": "db"}})
    decision = judge(manifest, parse_policy(MIXED))
    assert decision.allowed, decision.reason


def _alias(kind: str, spec: dict[str, Any], api: str = "networking.istio.io/v1") -> dict[str, Any]:
    return {**_object(kind, "team-a", spec), "apiVersion": api}


_OPAQUE = [{"number": 443, "name": "tcp", "protocol": "TCP"}]
_ALIASES = {
    "ExternalName Service": (
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "alias", "namespace": "team-a"},
            "spec": {"type": "ExternalName", "externalName": FIREWALL_GATEWAY},
        },
        "spec.externalName",
    ),
    "FQDN EndpointSlice": (
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "alias", "namespace": "team-a"},
            "addressType": "FQDN",
            "endpoints": [{"addresses": [FIREWALL_GATEWAY]}],
        },
        "endpoints[0].addresses[0]",
    ),
    "ServiceEntry DNS endpoint": (
        _alias(
            "ServiceEntry",
            {
                "hosts": ["alias.team-a.svc.cluster.local"],
                "ports": _OPAQUE,
                "resolution": "DNS",
                "endpoints": [{"address": FIREWALL_GATEWAY}],
            },
        ),
        "spec.endpoints[0].address",
    ),
    "ServiceEntry host resolved by DNS on a TCP port": (
        _alias(
            "ServiceEntry",
            {
                "hosts": ["other.istio-egress.svc.cluster.local"],
                "ports": _OPAQUE,
                "resolution": "DNS",
            },
        ),
        "spec.hosts[0]",
    ),
    "WorkloadEntry": (_alias("WorkloadEntry", {"address": FIREWALL_GATEWAY}), "spec.address"),
    "DestinationRule tunnel": (
        _alias(
            "DestinationRule",
            {
                "host": "proxy",
                "trafficPolicy": {
                    "tunnel": {
                        "protocol": "CONNECT",
                        "targetHost": FIREWALL_GATEWAY,
                        "targetPort": 443,
                    }
                },
            },
        ),
        "spec.trafficPolicy.tunnel.targetHost",
    ),
}


@pytest.mark.parametrize(("manifest", "field"), _ALIASES.values(), ids=_ALIASES.keys())
def test_tenant_alias_for_a_name_of_the_egress_namespace_is_denied(
    firewall: Policy, manifest: dict[str, Any], field: str
) -> None:
    """The gateway passes *.bar.com on its SNI alone: an alias whose destination is the gateway
    hands team-a's own ClientHello for a.bar.com to it, past the routes that keep team-a out."""
    assert_denied_at(judge(manifest, firewall), field, "is in the egress namespace")


# the gateway's pod and Service as the webhook's cluster view reports them
_GATEWAY_POD, _GATEWAY_SERVICE = "10.60.0.14", "10.97.0.10"


class _EgressView:
    def sidecars(self, namespace: str) -> list[Any]:
        del namespace
        return []

    def namespace_addresses(self, namespace: str) -> frozenset[str] | None:
        found = {"istio-egress": frozenset({_GATEWAY_POD, _GATEWAY_SERVICE})}
        return found.get(namespace, frozenset())


_ADDRESS_ALIASES = {
    "ServiceEntry STATIC endpoint": (
        _alias(
            "ServiceEntry",
            {
                "hosts": ["alias.team-a.svc.cluster.local"],
                "ports": _OPAQUE,
                "resolution": "STATIC",
                "endpoints": [{"address": _GATEWAY_POD}],
            },
        ),
        "spec.endpoints[0].address",
    ),
    "ServiceEntry NONE addresses": (
        _alias(
            "ServiceEntry",
            {
                "hosts": ["alias.team-a.svc.cluster.local"],
                "ports": _OPAQUE,
                "resolution": "NONE",
                "addresses": ["10.97.0.0/24"],
            },
        ),
        "spec.addresses[0]",
    ),
    "EndpointSlice": (
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "alias", "namespace": "team-a"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [_GATEWAY_POD]}],
        },
        "endpoints[0].addresses[0]",
    ),
    "Endpoints": (
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": "alias", "namespace": "team-a"},
            "subsets": [{"addresses": [{"ip": _GATEWAY_SERVICE}]}],
        },
        "subsets[0].addresses[0].ip",
    ),
    "WorkloadEntry": (
        _alias("WorkloadEntry", {"address": _GATEWAY_POD, "labels": {"app": "db"}}),
        "spec.address",
    ),
}


@pytest.mark.parametrize(
    ("manifest", "field"), _ADDRESS_ALIASES.values(), ids=_ADDRESS_ALIASES.keys()
)
def test_tenant_alias_at_an_address_of_the_egress_namespace_is_denied(
    manifest: dict[str, Any], field: str
) -> None:
    """The same alias by the gateway pod's or Service's address, which the webhook learns from
    its cluster view (the addresses are internal like every pod's)."""
    policy = parse_policy(FIREWALL + "internalNetworks: [10.0.0.0/8]\n")
    assert judge(manifest, policy).allowed, "offline, without the addresses, the rule is skipped"
    decision = judge(manifest, policy, view=_EgressView())
    assert_denied_at(decision, field, "an address of an egress gateway's namespace")


@pytest.mark.parametrize(
    "manifest",
    [
        # the Banzai post's own entry: HTTP is matched by Host, and the gateway wants mTLS there
        _alias(
            "ServiceEntry",
            {
                "hosts": ["httpbin.istio-egress.svc.cluster.local"],
                "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                "resolution": "DNS",
            },
        ),
        # a name of the tenant's own namespace stays an ordinary internal destination
        _alias(
            "ServiceEntry",
            {
                "hosts": ["alias.team-a.svc.cluster.local"],
                "ports": _OPAQUE,
                "resolution": "DNS",
                "endpoints": [{"address": "db.team-a.svc.cluster.local"}],
            },
        ),
    ],
    ids=["http entry for an egress-namespace name", "alias inside the tenant namespace"],
)
def test_internal_aliases_that_cannot_reach_a_passthrough_server_are_admitted(
    firewall: Policy, manifest: dict[str, Any]
) -> None:
    decision = judge(manifest, firewall)
    assert decision.allowed, decision.reason

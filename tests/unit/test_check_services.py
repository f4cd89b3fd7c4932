"""Services, Endpoints and EndpointSlices: registry entries that leave the cluster (trap 13)."""

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
BANZAI = parse_policy((POLICIES / "banzai-demo.yaml").read_text())
FIREWALL = parse_policy((POLICIES / "istio-egress-firewall.yaml").read_text())
# the firewall policy plus cluster ranges and a partner reached by IP
ADDRESSED = parse_policy(
    """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: istio-egress}
internalNetworks: [10.0.0.0/8, "fd00::/8"]
externalServices:
  - name: partner
    hosts: [api.partner.example]
    addresses: [198.51.100.0/24]
    ports: [{number: 443, protocol: TLS}]
  - name: payments
    hosts: [pay.example.net]
    addresses: [192.0.2.0/28]
    ports: [{number: 443, protocol: TLS}]
allow:
  - {name: everyone, from: {namespace: "*"}, to: [partner]}
  - {name: billing, from: {namespace: billing}, to: [payments]}
  - {name: billing-app, from: {namespace: shop, workloadLabels: {app: cart}}, to: [payments]}
"""
)
CONTROLLER = "system:serviceaccount:kube-system:endpointslice-controller"


def external_name(
    target: str,
    namespace: str = "team-a",
    export_to: str | None = None,
    ports: list[int] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "upstream", "namespace": namespace}
    if export_to is not None:
        meta["annotations"] = {"networking.istio.io/exportTo": export_to}
    spec: dict[str, Any] = {"type": "ExternalName", "externalName": target}
    if ports is not None:
        spec["ports"] = [{"name": f"tls-{p}", "port": p} for p in ports]
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def judge(manifest: dict[str, Any], policy: Any, username: str = "alice") -> Any:
    return decide(review_of_manifest(manifest, username=username), policy)


def fields(decision: Any) -> list[str]:
    return [v.field for v in decision.violations]


# --- ExternalName ----------------------------------------------------------------------------


def test_banzai_externalname_to_the_egress_gateway_is_allowed() -> None:
    manifest = external_name("egress-external.external.svc.cluster.local", "external")
    manifest["metadata"]["name"] = "httpbin"
    assert judge(manifest, BANZAI).allowed


def test_externalname_to_an_unlisted_host_is_denied() -> None:
    decision = judge(external_name("evil.example.com", "test-app"), BANZAI)
    assert fields(decision) == ["spec.externalName"]
    assert "bypassing the egress gateway" in decision.reason


def test_externalname_to_a_host_allowed_only_to_labelled_workloads_is_denied() -> None:
    # app-a may reach httpbin through the gateway, but nobody may reach it directly
    assert not judge(external_name("httpbin.org", "test-app"), BANZAI).allowed


@pytest.mark.parametrize(
    ("target", "namespace", "export_to", "allowed"),
    [
        # service1.foo.com is allowed to every namespace, so exporting everywhere is fine
        ("service1.foo.com", "team-a", None, True),
        ("Service1.Foo.COM.", "team-a", None, True),
        ("service1.foo.com", "team-b", "*", True),
        # *.foo.com is team-a's only: exported everywhere by default, which is too wide
        ("api.foo.com", "team-a", None, False),
        ("api.foo.com", "team-a", "*", False),
        ("api.foo.com", "team-a", ".", True),
        ("api.foo.com", "team-a", "team-a", True),
        ("api.foo.com", "team-a", ".,team-b", False),
        ("api.foo.com", "team-a", "team-b", False),
        ("api.bar.com", "team-a", ".", False),
        # the apex is not under the wildcard
        ("foo.com", "team-a", ".", False),
    ],
)
def test_externalname_must_be_allowed_directly_to_every_namespace_that_sees_it(
    target: str, namespace: str, export_to: str | None, allowed: bool
) -> None:
    decision = judge(external_name(target, namespace, export_to), FIREWALL)
    assert decision.allowed is allowed, decision.reason


@pytest.mark.parametrize("export_to", [None, "*", ".,team-b"])
def test_externalname_exported_too_far_for_an_allowed_host_names_the_annotation(
    export_to: str | None,
) -> None:
    decision = judge(external_name("api.foo.com", "team-a", export_to), FIREWALL)
    (violation,) = decision.violations
    assert violation.field == "spec.externalName"
    assert 'add the annotation networking.istio.io/exportTo: "."' in violation.message
    assert "egress policy" not in violation.message


def test_externalname_on_an_unlisted_port_is_denied() -> None:
    decision = judge(external_name("service1.foo.com", ports=[443, 22]), FIREWALL)
    assert fields(decision) == ["spec.ports[1].port"]


def test_externalname_on_allowed_ports_is_allowed() -> None:
    assert judge(external_name("service1.foo.com", ports=[443]), FIREWALL).allowed


@pytest.mark.parametrize(
    ("target", "allowed"),
    [("203.0.113.7", False), ("198.51.100.20", True), ("10.1.2.3", True)],
)
def test_externalname_that_is_an_ip_is_judged_as_an_address(target: str, allowed: bool) -> None:
    assert judge(external_name(target), ADDRESSED).allowed is allowed


@pytest.mark.parametrize("target", [None, "", "   ", 42])
def test_externalname_service_without_a_name_is_denied(target: Any) -> None:
    manifest = external_name("x")
    manifest["spec"]["externalName"] = target
    assert fields(judge(manifest, BANZAI)) == ["spec.externalName"]


def test_cluster_ip_service_is_allowed() -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "test-app"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    assert judge(manifest, BANZAI).allowed


def test_audit_mode_admits_externalname_with_a_warning() -> None:
    policy = dataclasses.replace(BANZAI, mode=Mode.AUDIT)
    decision = judge(external_name("evil.example.com", "test-app"), policy)
    assert decision.allowed and decision.audited and decision.warnings


# --- Endpoints -------------------------------------------------------------------------------


def endpoints(*ips: str, namespace: str = "team-a", not_ready: tuple[str, ...] = ()) -> dict:
    subset: dict[str, Any] = {
        "addresses": [{"ip": ip} for ip in ips],
        "ports": [{"port": 443, "name": "tls"}],
    }
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "upstream",
            "namespace": namespace,
            # not trusted: anyone can set it
            "labels": {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller"},
        },
        "subsets": [subset],
    }


@pytest.mark.parametrize(
    ("ips", "namespace", "allowed"),
    [
        (("10.1.2.3",), "team-a", True),
        (("fd00::1",), "team-a", True),
        (("198.51.100.7",), "team-a", True),
        (("203.0.113.7",), "team-a", False),
        (("10.1.2.3", "203.0.113.7"), "team-a", False),
        (("169.254.169.254",), "team-a", False),
        # payments is billing's alone, but any namespace importing the Service would reach it
        (("192.0.2.5",), "billing", False),
        (("192.0.2.5",), "team-a", False),
        # shop may reach payments only from labelled workloads: not directly
        (("192.0.2.5",), "shop", False),
        (("not-an-ip",), "team-a", False),
    ],
)
def test_hand_written_endpoints_must_stay_internal_or_allowed(
    ips: tuple[str, ...], namespace: str, allowed: bool
) -> None:
    decision = judge(endpoints(*ips, namespace=namespace), ADDRESSED)
    assert decision.allowed is allowed, decision.reason


def test_not_ready_endpoint_addresses_are_checked_too() -> None:
    decision = judge(endpoints("10.1.2.3", not_ready=("203.0.113.7",)), ADDRESSED)
    assert fields(decision) == ["subsets[0].notReadyAddresses[0].ip"]


@pytest.mark.parametrize(
    "username",
    [
        "system:kube-controller-manager",
        "system:serviceaccount:kube-system:endpoint-controller",
        "system:serviceaccount:kube-system:endpointslicemirroring-controller",
    ],
)
def test_endpoints_written_by_the_control_plane_are_trusted(username: str) -> None:
    assert judge(endpoints("203.0.113.7"), ADDRESSED, username=username).allowed


def test_endpoints_with_a_lookalike_username_are_checked() -> None:
    username = "system:serviceaccount:team-a:endpoint-controller"
    assert not judge(endpoints("203.0.113.7"), ADDRESSED, username=username).allowed


def test_malformed_endpoints_are_denied_without_crashing() -> None:
    manifest = endpoints("10.1.2.3")
    manifest["subsets"][0]["addresses"] = [{"hostname": "x"}, "10.0.0.1"]
    decision = judge(manifest, ADDRESSED)
    assert sorted(fields(decision)) == ["subsets[0].addresses[0].ip", "subsets[0].addresses[1]"]


# --- EndpointSlices --------------------------------------------------------------------------


def slice_of(address_type: str, *addresses: str, namespace: str = "team-a") -> dict:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "upstream-abc", "namespace": namespace},
        "addressType": address_type,
        "endpoints": [{"addresses": [a]} for a in addresses],
        "ports": [{"port": 443}],
    }


@pytest.mark.parametrize(
    ("address_type", "addresses", "allowed"),
    [
        ("IPv4", ("10.9.8.7",), True),
        ("IPv4", ("198.51.100.1",), True),
        ("IPv4", ("203.0.113.7",), False),
        ("IPv6", ("fd00::5",), True),
        ("IPv6", ("2001:db8::1",), False),
        ("FQDN", ("api.partner.example",), True),
        ("FQDN", ("db.team-a.svc.cluster.local",), True),
        ("FQDN", ("pay.example.net",), False),
        ("FQDN", ("evil.example.com",), False),
    ],
)
def test_hand_written_endpoint_slices_must_stay_internal_or_allowed(
    address_type: str, addresses: tuple[str, ...], allowed: bool
) -> None:
    decision = judge(slice_of(address_type, *addresses), ADDRESSED)
    assert decision.allowed is allowed, decision.reason


def test_endpoint_allowed_only_to_its_own_namespace_is_denied() -> None:
    """Found with Istio's simulation: billing's Service was imported by another namespace's
    Sidecar (``billing/*``), whose pods then reached payments directly; the Service's exportTo
    is not on the endpoint, so only a destination every namespace may reach is safe there."""
    decision = judge(slice_of("FQDN", "pay.example.net", namespace="billing"), ADDRESSED)
    assert fields(decision) == ["endpoints[0].addresses[0]"]
    assert "declare a ServiceEntry with exportTo" in decision.reason


def test_endpoint_slice_from_the_slice_controller_is_trusted() -> None:
    assert judge(slice_of("IPv4", "203.0.113.7"), ADDRESSED, username=CONTROLLER).allowed


def test_endpoint_slice_delete_is_allowed() -> None:
    review = review_of_manifest(slice_of("IPv4", "203.0.113.7"), operation="DELETE")
    assert decide(review, ADDRESSED).allowed


# --- the port an allowed endpoint is dialled on ----------------------------------------------


def _on_port(manifest: dict[str, Any], port: int) -> dict[str, Any]:
    for ports in [manifest.get("ports")] + [s["ports"] for s in manifest.get("subsets", ())]:
        if ports:
            ports[0]["port"] = port
    return manifest


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        (slice_of("IPv4", "198.51.100.1"), "ports[0].port"),
        (slice_of("FQDN", "api.partner.example"), "ports[0].port"),
        (endpoints("198.51.100.1"), "subsets[0].ports[0].port"),
        # a long list, judged a class of addresses at a time
        (slice_of("IPv4", *(f"198.51.100.{i}" for i in range(1, 200))), "ports[0].port"),
        (endpoints(*(f"198.51.100.{i}" for i in range(1, 200))), "subsets[0].ports[0].port"),
    ],
    ids=["slice", "slice-fqdn", "endpoints", "long-slice", "long-endpoints"],
)
def test_endpoint_at_an_allowed_address_on_a_port_the_service_does_not_open_is_denied(
    manifest: dict[str, Any], field: str
) -> None:
    """Found with Istio's simulation: partner is allowed everywhere at 198.51.100.0/24 on 443,
    but Envoy dials a hand-written endpoint on the endpoint's own port, so a selector-less
    Service (headless or not) with this slice reached 198.51.100.1:5432 directly."""
    decision = judge(_on_port(manifest, 5432), ADDRESSED)
    assert fields(decision) == [field], decision.reason
    assert "port 5432 of partner" in decision.reason


@pytest.mark.parametrize(
    "manifest",
    [
        _on_port(slice_of("IPv4", "198.51.100.1"), 443),
        _on_port(endpoints("198.51.100.1"), 443),
        # inside the cluster any port goes
        _on_port(slice_of("IPv4", "10.9.8.7"), 5432),
        _on_port(endpoints(*(f"10.9.8.{i}" for i in range(1, 200))), 5432),
        _on_port(slice_of("FQDN", "db.team-a.svc.cluster.local"), 5432),
    ],
    ids=["slice-443", "endpoints-443", "internal", "long-internal", "internal-name"],
)
def test_endpoint_on_an_allowed_port_or_inside_the_cluster_is_admitted(
    manifest: dict[str, Any],
) -> None:
    decision = judge(manifest, ADDRESSED)
    assert decision.allowed, decision.reason


TWO_PORTS = parse_policy(
    """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: istio-egress}
internalNetworks: [10.0.0.0/8]
externalServices:
  - name: partner
    hosts: [api.partner.example]
    addresses: [198.51.100.0/24]
    ports: [{number: 443, protocol: TLS}]
  - name: warehouse
    hosts: [db.warehouse.example]
    addresses: [192.0.2.0/28]
    ports: [{number: 5432, protocol: TCP}]
allow:
  - {name: everyone, from: {namespace: "*"}, to: [partner, warehouse]}
"""
)


@pytest.mark.parametrize(
    ("addresses", "port", "allowed"),
    [
        (("198.51.100.1",), 443, True),
        (("192.0.2.5",), 5432, True),
        # each address on its own service's ports, not on any allowed service's
        (("198.51.100.1",), 5432, False),
        (("192.0.2.5",), 443, False),
        # one group: Envoy dials every address on every port of it
        (("198.51.100.1", "192.0.2.5"), 5432, False),
        (("198.51.100.1", "192.0.2.5"), 22, False),
    ],
)
def test_endpoint_ports_are_the_ports_of_the_services_its_addresses_are(
    addresses: tuple[str, ...], port: int, allowed: bool
) -> None:
    for manifest in (slice_of("IPv4", *addresses), endpoints(*addresses)):
        decision = judge(_on_port(manifest, port), TWO_PORTS)
        assert decision.allowed is allowed, (manifest["kind"], decision.reason)

"""A tenant destination at an address of the egress namespace is an alias of the egress gateway.

The gateways pass a wildcard TLS service on its SNI alone, so a tenant entry, endpoint or
WorkloadEntry at a gateway pod's IP or the gateway Service's cluster IP would hand the app's own
ClientHello to the gateway past the routes that decide who may use it.  The addresses come from
the cluster view (``namespace_addresses``); offline views that cannot tell skip the rule, a
watched view that has not listed the namespace yet refuses with "retry shortly".
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pytest

from tests.unit.builders import assert_denied_at, judge
from webhook.core.checks import EmptyView
from webhook.core.checks.egress_addresses import (
    WAITING,
    egress_addresses,
    object_addresses,
    watched_namespaces,
)
from webhook.core.engine import decide
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

POLICY = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: egress}
internalNetworks: [10.0.0.0/8, "fd00::/8", "::ffff:10.0.0.0/104"]
externalServices:
  - name: payments
    hosts: [api.payments.example]
    ports: [{number: 443, protocol: TLS}]
    addresses: [198.51.100.0/24]
allow:
  - {name: team-a, from: {namespace: team-a}, to: [payments]}
"""
GATEWAY_POD = "10.60.0.12"
GATEWAY_SERVICE = "10.96.5.5"
GATEWAY_POD_V6 = "fd00::12"
OTHER_POD = "10.60.0.13"
ALIAS = "an address of an egress gateway's namespace"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY)


class HeldView:
    """A cluster view knowing the addresses of some namespaces (a watch, when ``synced`` is
    given)."""

    def __init__(self, addresses: Mapping[str, Collection[str]] | None = None) -> None:
        self.addresses = dict(addresses or {})

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        del namespace
        return ()

    def namespace_addresses(self, namespace: str) -> Collection[str] | None:
        found = self.addresses.get(namespace)
        return None if found is None else frozenset(found)


class Watch(HeldView):
    """A watch-fed view, synced or not (then it knows nothing yet)."""

    def __init__(self, addresses: Mapping[str, Collection[str]], *, synced: bool) -> None:
        super().__init__(addresses if synced else {})
        self.synced = synced


EGRESS = {"egress": [GATEWAY_POD, GATEWAY_SERVICE, GATEWAY_POD_V6]}
VIEW = HeldView(EGRESS)


def entry(
    *,
    endpoints: list[str] | None = None,
    addresses: list[str] | None = None,
    resolution: str = "STATIC",
    namespace: str = "team-a",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "hosts": ["legacy.team-a.svc.cluster.local"],
        "ports": [{"number": 443, "name": "tcp", "protocol": "TCP"}],
        "resolution": resolution,
        "exportTo": ["."],
    }
    if endpoints is not None:
        spec["endpoints"] = [{"address": a} for a in endpoints]
    if addresses is not None:
        spec["addresses"] = addresses
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "se", "namespace": namespace},
        "spec": spec,
    }


def endpoints(*ips: str, namespace: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "alias", "namespace": namespace},
        "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": [{"port": 8443}]}],
    }


def endpoint_slice(*ips: str, family: str = "IPv4") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "alias-1",
            "namespace": "team-a",
            "labels": {"kubernetes.io/service-name": "alias"},
        },
        "addressType": family,
        "endpoints": [{"addresses": [ip]} for ip in ips],
        "ports": [{"name": "tcp", "port": 8443, "protocol": "TCP"}],
    }


def workload(address: str, kind: str = "WorkloadEntry") -> dict[str, Any]:
    body = {"address": address, "labels": {"app": "alias"}}
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": kind,
        "metadata": {"name": "w", "namespace": "team-a"},
        "spec": {"template": body} if kind == "WorkloadGroup" else body,
    }


# --- each kind ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        GATEWAY_POD,
        GATEWAY_SERVICE,
        GATEWAY_POD_V6,
        # other spellings of the same addresses
        "FD00:0:0::12",
        "fd00:0000::0012",
        "::ffff:10.60.0.12",
        f" {GATEWAY_POD} ",
    ],
)
def test_a_service_entry_endpoint_at_an_egress_address_is_denied(
    policy: Policy, address: str
) -> None:
    decision = judge(entry(endpoints=[address]), policy, view=VIEW)
    assert_denied_at(decision, "spec.endpoints[0].address", ALIAS)
    assert "call the external host itself" in decision.reason


def test_a_leading_zero_spelling_is_no_address_and_denied_anyway(policy: Policy) -> None:
    assert not judge(entry(endpoints=["010.60.0.12"]), policy, view=VIEW).allowed


@pytest.mark.parametrize("address", [OTHER_POD, "10.60.1.12", "fd00::13", "db.example.internal"])
def test_other_internal_destinations_stay_allowed(policy: Policy, address: str) -> None:
    resolution = "STATIC" if address[0].isdigit() or ":" in address else "DNS"
    decision = judge(entry(endpoints=[address], resolution=resolution), policy, view=VIEW)
    assert ALIAS not in decision.reason


@pytest.mark.parametrize(
    ("address", "relation"),
    [
        (f"{GATEWAY_POD}/32", "is"),
        ("10.60.0.0/24", "contains"),
        ("10.0.0.0/8", "contains"),
        ("fd00::/64", "contains"),
    ],
)
def test_resolution_none_addresses_holding_an_egress_address_are_denied(
    policy: Policy, address: str, relation: str
) -> None:
    # with NONE the proxy passes the connection on to the address the app dialled
    decision = judge(entry(addresses=[address], resolution="NONE"), policy, view=VIEW)
    assert_denied_at(decision, "spec.addresses[0]", f"{relation} ")
    assert ALIAS in decision.reason


def test_addresses_that_are_only_virtual_ips_are_not_destinations(policy: Policy) -> None:
    # with STATIC the addresses are what the sidecar captures; traffic goes to the endpoints
    decision = judge(
        entry(addresses=[GATEWAY_POD], endpoints=[OTHER_POD], resolution="STATIC"),
        policy,
        view=VIEW,
    )
    assert decision.allowed, decision.reason


@pytest.mark.parametrize("address", [GATEWAY_POD, GATEWAY_SERVICE])
def test_hand_made_endpoints_at_an_egress_address_are_denied(policy: Policy, address: str) -> None:
    decision = judge(endpoints(OTHER_POD, address), policy, view=VIEW)
    assert_denied_at(decision, "subsets[0].addresses[1].ip", ALIAS)


@pytest.mark.parametrize(("address", "family"), [(GATEWAY_POD, "IPv4"), ("fd00::0:12", "IPv6")])
def test_hand_made_endpoint_slices_at_an_egress_address_are_denied(
    policy: Policy, address: str, family: str
) -> None:
    decision = judge(endpoint_slice(address, family=family), policy, view=VIEW)
    assert_denied_at(decision, "endpoints[0].addresses[0]", ALIAS)


@pytest.mark.parametrize(
    ("kind", "path"),
    [("WorkloadEntry", "spec.address"), ("WorkloadGroup", "spec.template.address")],
)
def test_workloads_at_an_egress_address_are_denied(policy: Policy, kind: str, path: str) -> None:
    assert_denied_at(judge(workload(GATEWAY_POD, kind), policy, view=VIEW), path, ALIAS)
    assert judge(workload(OTHER_POD, kind), policy, view=VIEW).allowed


def test_an_external_name_at_an_egress_address_is_denied(policy: Policy) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "alias", "namespace": "team-a"},
        "spec": {"type": "ExternalName", "externalName": GATEWAY_SERVICE},
    }
    assert_denied_at(judge(service, policy, view=VIEW), "spec.externalName", ALIAS)


def test_the_egress_namespace_is_watched(policy: Policy) -> None:
    # every gateway lives there; a namespace of its own would be watched too
    assert watched_namespaces(policy) == ("egress",)
    assert {gw.namespace for gw in policy.gateways} == {"egress"}


# --- whose objects, and what the view cannot tell ---------------------------------------


def test_the_security_teams_endpoints_in_the_egress_namespace_stay_allowed() -> None:
    team = parse_policy(POLICY + "securityTeam: {users: [alice]}\n")
    review = review_of_manifest(endpoints(GATEWAY_POD, namespace="egress"), username="alice")
    decision = decide(review, team, view=VIEW)
    assert decision.allowed, decision.reason
    assert egress_addresses(team, VIEW, "egress") is None


def test_a_view_that_cannot_tell_skips_the_rule(policy: Policy) -> None:
    for view in (EmptyView(), HeldView()):
        assert judge(entry(endpoints=[GATEWAY_POD]), policy, view=view).allowed


def test_a_watch_not_listed_yet_asks_to_retry(policy: Policy) -> None:
    waiting = Watch(EGRESS, synced=False)
    decision = judge(entry(endpoints=[OTHER_POD]), policy, view=waiting)
    assert_denied_at(decision, "spec.endpoints[0].address", WAITING)
    assert "retry shortly" in decision.reason
    # an entry naming no address does not wait
    assert judge(entry(endpoints=["db.example.internal"], resolution="DNS"), policy, view=waiting)
    synced = Watch(EGRESS, synced=True)
    assert judge(entry(endpoints=[OTHER_POD]), policy, view=synced).allowed
    assert not judge(entry(endpoints=[GATEWAY_POD]), policy, view=synced).allowed


# --- long lists --------------------------------------------------------------------------


@pytest.mark.parametrize("at", [0, 1, 2047, 2048, 4999])
def test_one_egress_address_deep_in_a_long_list_is_found(policy: Policy, at: int) -> None:
    ips = [f"10.60.{(i >> 8) & 255}.{i & 255}" for i in range(5000)]
    ips = [ip for ip in ips if ip != GATEWAY_POD][:4999]
    clean = judge(entry(endpoints=ips), policy, view=VIEW)
    assert clean.allowed, clean.reason
    ips.insert(at, GATEWAY_POD)
    assert_denied_at(
        judge(entry(endpoints=ips), policy, view=VIEW), f"spec.endpoints[{at}].address", ALIAS
    )
    assert_denied_at(
        judge(endpoints(*ips), policy, view=VIEW), f"subsets[0].addresses[{at}].ip", ALIAS
    )
    assert_denied_at(
        judge(endpoint_slice(*ips), policy, view=VIEW), f"endpoints[{at}].addresses[0]", ALIAS
    )


def test_a_long_list_repeating_the_gateways_block_is_judged_per_text(policy: Policy) -> None:
    ips = [f"10.60.0.{i % 240 + 13}" for i in range(20000)]
    assert judge(entry(endpoints=ips), policy, view=VIEW).allowed
    ips[15000] = "10.60.0.0/28"
    assert_denied_at(
        judge(entry(endpoints=ips), policy, view=VIEW), "spec.endpoints[15000].address", ALIAS
    )


# --- the addresses an object holds ---------------------------------------------------------


def test_addresses_of_pods_and_services() -> None:
    pod = {
        "status": {
            "phase": "Running",
            "podIP": "10.60.0.12",
            "podIPs": [{"ip": "10.60.0.12"}, {"ip": "fd00::12"}],
        }
    }
    done = {"status": {"phase": "Succeeded", "podIP": "10.60.0.14"}}
    service = {"spec": {"clusterIP": "10.96.5.5", "clusterIPs": ["10.96.5.5", "fd00:96::5"]}}
    headless = {"spec": {"clusterIP": "None", "clusterIPs": ["None"]}}
    assert object_addresses(pod) == {"10.60.0.12", "fd00::12"}
    assert object_addresses(done) == frozenset()
    assert object_addresses(service) == {"10.96.5.5", "fd00:96::5"}
    assert object_addresses(headless) == frozenset()
    assert (
        object_addresses({"spec": {"clusterIPs": "x"}, "status": {"podIPs": [None]}}) == frozenset()
    )

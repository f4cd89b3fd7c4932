"""ServiceEntry checks: a tenant entry is a direct path, allowed to everyone who sees it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.builders import assert_denied_at, judge
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

POLICY = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
mode: {mode}
egress: {{namespace: egress}}
internalNetworks: [10.0.0.0/8]
externalServices:
  - name: payments
    hosts: [api.payments.example]
    ports: [{{number: 443, protocol: TLS}}]
    addresses: [198.51.100.0/24]
  - name: partner
    hosts: ["*.partner.example"]
    ports: [{{number: 443, protocol: TLS}}]
  - name: db
    hosts: [db.vendor.example]
    ports: [{{number: 5432, protocol: TCP}}]
    addresses: [192.0.2.10/32]
  - name: shared
    hosts: [status.example.org]
    ports: [{{number: 443, protocol: HTTPS}}]
  - name: labelled
    hosts: [ml.example.net]
    ports: [{{number: 443, protocol: TLS}}]
  - name: legacy
    hosts: [legacy.example.net]
    ports: [{{number: 80, protocol: HTTP}}]
    tlsOrigination: {{port: 443}}
allow:
  - {{name: everyone, from: {{namespace: "*"}}, to: [shared]}}
  - {{name: team-a, from: {{namespace: team-a}}, to: [payments, partner, db, legacy]}}
  - name: team-a-ml
    from: {{namespace: team-a, workloadLabels: {{app: trainer}}}}
    to: [labelled]
  - {{name: team-b-sa, from: {{namespace: team-b, serviceAccount: batch}}, to: [payments]}}
"""

TLS = [{"number": 443, "name": "tls", "protocol": "TLS"}]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY.format(mode="enforce"))


def entry(
    spec: dict[str, Any], *, namespace: str = "team-a", version: str = "v1"
) -> dict[str, Any]:
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "ServiceEntry",
        "metadata": {"name": "se", "namespace": namespace},
        "spec": spec,
    }


def private(**spec: Any) -> dict[str, Any]:
    """A spec exported to its own namespace only, TLS on 443 and DNS resolution by default."""
    return {"exportTo": ["."], "ports": TLS, "resolution": "DNS", **spec}


ALLOWED = {
    "exact host allowed to the namespace": private(hosts=["api.payments.example"]),
    "host in upper case with trailing dot": private(hosts=["API.Payments.Example."]),
    "subdomain under an allowed wildcard": private(hosts=["eu.partner.example"]),
    "deep subdomain under an allowed wildcard": private(hosts=["a.b.partner.example"]),
    "wildcard equal to the policy wildcard, resolution NONE": private(
        hosts=["*.partner.example"], resolution="NONE"
    ),
    "narrower wildcard under the policy wildcard": private(
        hosts=["*.eu.partner.example"], resolution="NONE"
    ),
    "TCP port pinned to the service addresses": private(
        hosts=["db.vendor.example"],
        ports=[{"number": 5432, "name": "tcp", "protocol": "TCP"}],
        addresses=["192.0.2.10"],
        resolution="NONE",
    ),
    "TCP port with DNS resolution": private(
        hosts=["db.vendor.example"], ports=[{"number": 5432, "name": "tcp", "protocol": "TCP"}]
    ),
    "static endpoint inside the service addresses": private(
        hosts=["api.payments.example"],
        resolution="STATIC",
        endpoints=[{"address": "198.51.100.7"}],
    ),
    "DNS endpoint that is the service's own host": private(
        hosts=["api.payments.example"], endpoints=[{"address": "api.payments.example"}]
    ),
    "TLS origination port of an HTTP service": private(hosts=["legacy.example.net"]),
    "exported to every namespace, allowed to every namespace": {
        "hosts": ["status.example.org"],
        "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
        "resolution": "DNS",
    },
    "exported by name to its own namespace": {
        **private(hosts=["api.payments.example"]),
        "exportTo": ["team-a"],
    },
    "exported with ~ (own proxies only)": {
        **private(hosts=["api.payments.example"]),
        "exportTo": ["~"],
    },
    "MESH_INTERNAL label on an allowed host": private(
        hosts=["api.payments.example"], location="MESH_INTERNAL"
    ),
    "cluster-internal host resolved by DNS": {
        "hosts": ["httpbin.external.svc.cluster.local"],
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        "resolution": "DNS",
    },
    "cluster-internal host backed by an in-cluster IP": {
        "hosts": ["cache.team-a.svc.cluster.local"],
        "ports": TLS,
        "resolution": "STATIC",
        "endpoints": [{"address": "10.1.2.3"}],
    },
    "cluster-internal host selecting its own workloads": {
        "hosts": ["vm.team-a.svc.cluster.local"],
        "ports": TLS,
        "resolution": "STATIC",
        "workloadSelector": {"labels": {"app": "vm"}},
    },
    "cluster-internal host on a unix socket": {
        "hosts": ["sock.team-a.svc.cluster.local"],
        "ports": TLS,
        "resolution": "STATIC",
        "endpoints": [{"address": "unix:///var/run/app.sock"}],
    },
}


@pytest.mark.parametrize("spec", ALLOWED.values(), ids=ALLOWED.keys())
@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_tenant_service_entry_allowed(spec: dict[str, Any], version: str, policy: Policy) -> None:
    decision = judge(entry(spec, version=version), policy)
    assert decision.allowed, decision.reason


DENIED: dict[str, tuple[dict[str, Any], str, str]] = {
    # name: (spec, field, words in the message)
    "apex of an allowed wildcard": (
        private(hosts=["partner.example"]),
        "spec.hosts[0]",
        "partner.example",
    ),
    "bare star": (private(hosts=["*"], resolution="NONE"), "spec.hosts[0]", "over-broad"),
    "wildcard over a public suffix": (
        private(hosts=["*.com"], resolution="NONE"),
        "spec.hosts[0]",
        "over-broad",
    ),
    "wildcard over a two-label public suffix": (
        private(hosts=["*.co.uk"], resolution="NONE"),
        "spec.hosts[0]",
        "over-broad",
    ),
    "wildcard not covered by a policy wildcard": (
        private(hosts=["*.payments.example"], resolution="NONE"),
        "spec.hosts[0]",
        "over-broad",
    ),
    "wildcard above the policy wildcard": (
        private(hosts=["*.example"], resolution="NONE"),
        "spec.hosts[0]",
        "over-broad",
    ),
    "DYNAMIC_DNS wildcard trusting client SNI": (
        private(hosts=["*.attacker.example"], resolution="DYNAMIC_DNS"),
        "spec.hosts[0]",
        "over-broad",
    ),
    "host not in the policy": (private(hosts=["pastebin.com"]), "spec.hosts[0]", "pastebin.com"),
    "short name is never expanded": (private(hosts=["payments"]), "spec.hosts[0]", "payments"),
    "exportTo omitted makes it every namespace's": (
        {"hosts": ["api.payments.example"], "ports": TLS, "resolution": "DNS"},
        "spec.hosts[0]",
        "exportTo",
    ),
    "exported to a namespace that may not reach it": (
        {**private(hosts=["api.payments.example"]), "exportTo": [".", "team-c"]},
        "spec.hosts[0]",
        "team-c",
    ),
    "exportTo star": (
        {**private(hosts=["api.payments.example"]), "exportTo": ["*"]},
        "spec.hosts[0]",
        "every namespace",
    ),
    "rule with workload labels does not count": (
        private(hosts=["ml.example.net"]),
        "spec.hosts[0]",
        "identity check",
    ),
    "port the service does not have": (
        private(
            hosts=["api.payments.example"],
            ports=[{"number": 8443, "name": "tls", "protocol": "TLS"}],
        ),
        "spec.ports[0].number",
        "8443",
    ),
    "one good and one extra port": (
        private(
            hosts=["api.payments.example"],
            ports=[*TLS, {"number": 22, "name": "ssh", "protocol": "TCP"}],
        ),
        "spec.ports[1].number",
        "22",
    ),
    "addresses cover the Internet": (
        private(hosts=["api.payments.example"], addresses=["0.0.0.0/0"], resolution="NONE"),
        "spec.addresses[0]",
        "every address",
    ),
    "IPv6 addresses cover the Internet": (
        private(hosts=["api.payments.example"], addresses=["::/0"], resolution="NONE"),
        "spec.addresses[0]",
        "every address",
    ),
    "addresses outside the service ranges": (
        private(hosts=["api.payments.example"], addresses=["203.0.113.0/24"], resolution="NONE"),
        "spec.addresses[0]",
        "203.0.113.0/24",
    ),
    "CIDR wider than the service range": (
        private(hosts=["api.payments.example"], addresses=["198.51.0.0/16"], resolution="NONE"),
        "spec.addresses[0]",
        "198.51.0.0/16",
    ),
    "static endpoint outside the service addresses": (
        private(
            hosts=["api.payments.example"],
            resolution="STATIC",
            endpoints=[{"address": "203.0.113.7"}],
        ),
        "spec.endpoints[0].address",
        "203.0.113.7",
    ),
    "DNS endpoint elsewhere than the allowed host": (
        private(hosts=["api.payments.example"], endpoints=[{"address": "exfil.attacker.example"}]),
        "spec.endpoints[0].address",
        "exfil.attacker.example",
    ),
    "internal-looking host backed by an Internet IP": (
        {
            "hosts": ["payments.team-a.svc.cluster.local"],
            "ports": TLS,
            "resolution": "STATIC",
            "endpoints": [{"address": "203.0.113.7"}],
        },
        "spec.endpoints[0].address",
        "203.0.113.7",
    ),
    "internal-looking host backed by an Internet name": (
        {
            "hosts": ["payments.team-a.svc.cluster.local"],
            "ports": TLS,
            "resolution": "DNS",
            "endpoints": [{"address": "us.attacker.example"}],
        },
        "spec.endpoints[0].address",
        "us.attacker.example",
    ),
    "MESH_INTERNAL does not make an Internet endpoint internal": (
        {
            "hosts": ["db.team-a.svc.cluster.local"],
            "ports": TLS,
            "resolution": "STATIC",
            "location": "MESH_INTERNAL",
            "endpoints": [{"address": "203.0.113.9"}],
        },
        "spec.endpoints[0].address",
        "203.0.113.9",
    ),
    "internal host with addresses on the Internet": (
        {
            "hosts": ["x.team-a.svc.cluster.local"],
            "ports": TLS,
            "resolution": "STATIC",
            "addresses": ["203.0.113.0/24"],
        },
        "spec.addresses[0]",
        "203.0.113.0/24",
    ),
    "resolution NONE with a TCP port and no addresses": (
        private(
            hosts=["db.vendor.example"],
            ports=[{"number": 5432, "name": "tcp", "protocol": "TCP"}],
            resolution="NONE",
        ),
        "spec.ports[0]",
        "every IP address",
    ),
    "default resolution is NONE": (
        {
            "hosts": ["db.vendor.example"],
            "exportTo": ["."],
            "ports": [{"number": 5432, "name": "tcp", "protocol": "TCP"}],
        },
        "spec.ports[0]",
        "every IP address",
    ),
    "resolution NONE with an unnamed-protocol port": (
        private(
            hosts=["db.vendor.example"], ports=[{"number": 5432, "name": "pg"}], resolution="NONE"
        ),
        "spec.ports[0]",
        "unnamed-protocol",
    ),
    "resolution NONE with a MONGO port on an internal name": (
        {
            "hosts": ["mongo.team-a.svc.cluster.local"],
            "ports": [{"number": 27017, "name": "mongo", "protocol": "MONGO"}],
        },
        "spec.ports[0]",
        "every IP address",
    ),
    "internal name with resolution NONE trusts the client's SNI": (
        {"hosts": ["fake.team-a.svc.cluster.local"], "ports": TLS, "resolution": "NONE"},
        "spec.hosts[0]",
        "Host/SNI",
    ),
    "squatting the egress gateway's name": (
        {
            "hosts": ["istio-egressgateway.egress.svc.cluster.local"],
            "ports": TLS,
            "resolution": "STATIC",
            "endpoints": [{"address": "10.9.9.9"}],
        },
        "spec.hosts[0]",
        "egress gateway",
    ),
    "wildcard over the egress namespace's names": (
        {
            "hosts": ["*.egress.svc.cluster.local"],
            "ports": TLS,
            "resolution": "DNS",
            "endpoints": [{"address": "10.9.9.9"}],
        },
        "spec.hosts[0]",
        "egress gateway",
    ),
    "unknown resolution": (
        private(hosts=["api.payments.example"], resolution="MAGIC"),
        "spec.resolution",
        "MAGIC",
    ),
}


@pytest.mark.parametrize(("spec", "field", "words"), DENIED.values(), ids=DENIED.keys())
def test_tenant_service_entry_denied(
    spec: dict[str, Any], field: str, words: str, policy: Policy
) -> None:
    decision = judge(entry(spec), policy)
    assert_denied_at(decision, field, words)


def test_denial_names_host_source_and_what_is_allowed(policy: Policy) -> None:
    decision = judge(entry(private(hosts=["pastebin.com"])), policy)
    (violation,) = decision.violations
    assert "pastebin.com" in violation.message
    assert "namespace team-a" in violation.message
    assert "payments (api.payments.example)" in violation.message
    assert "status.example.org" in violation.message


def test_service_account_rule_suggests_the_egress_gateway(policy: Policy) -> None:
    decision = judge(entry(private(hosts=["api.payments.example"]), namespace="team-b"), policy)
    message = decision.violations[0].message
    assert "serviceAccount" in message
    assert "istio-egressgateway.egress.svc.cluster.local" in message


@pytest.mark.parametrize("host", ["api.payments.example", "*.partner.example"])
def test_entry_exported_too_far_for_an_allowed_host_names_the_fix(
    host: str, policy: Policy
) -> None:
    # allowed to team-a, wildcard or not: the audience is what is wrong, and exportTo fixes it
    spec = {"hosts": [host], "ports": TLS, "resolution": "DNS"}
    (violation,) = judge(entry(spec), policy).violations
    assert "set exportTo: ['.']" in violation.message
    assert "over-broad" not in violation.message
    # one parenthesis, not one inside another
    assert "every namespace (exportTo omitted means '*')," in violation.message
    assert violation.message.count("(") == 1
    assert judge(entry(private(hosts=[host])), policy).allowed


def test_visibility_is_judged_for_every_namespace_that_sees_it(policy: Policy) -> None:
    # team-a may reach payments, team-b only through its service account: exporting to
    # team-b hands team-b a direct path
    spec = {**private(hosts=["api.payments.example"]), "exportTo": [".", "team-b"]}
    assert not judge(entry(spec), policy).allowed
    assert judge(entry({**spec, "exportTo": ["."]}), policy).allowed


MALFORMED = {
    "hosts is a string": {"hosts": "api.payments.example", "exportTo": ["."]},
    "host is a number": {"hosts": [42], "exportTo": ["."]},
    "port number is a string": private(
        hosts=["api.payments.example"], ports=[{"number": "443", "name": "tls"}]
    ),
    "port number is a boolean": private(
        hosts=["api.payments.example"], ports=[{"number": True, "name": "tls"}]
    ),
    "endpoints is an object": private(hosts=["api.payments.example"], endpoints={"a": 1}),
    "endpoint is a string": private(hosts=["api.payments.example"], endpoints=["1.2.3.4"]),
    "exportTo is a string": {**private(hosts=["api.payments.example"]), "exportTo": "."},
    "invalid DNS label": private(hosts=["bad_host!.example"]),
}


@pytest.mark.parametrize("spec", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_entry_is_denied_with_a_field_not_a_crash(
    spec: dict[str, Any], policy: Policy
) -> None:
    decision = judge(entry(spec), policy)
    assert not decision.allowed
    assert all(v.field for v in decision.violations), decision.reason
    assert "malformed" not in decision.reason


def test_spec_of_the_wrong_type_is_denied(policy: Policy) -> None:
    manifest = entry({})
    manifest["spec"] = ["hosts"]
    decision = judge(manifest, policy)
    assert not decision.allowed
    assert decision.violations[0].field == "spec"


def test_deleting_a_service_entry_is_allowed(policy: Policy) -> None:
    assert judge(entry(private(hosts=["pastebin.com"])), policy, "DELETE").allowed


def test_audit_mode_admits_with_warnings() -> None:
    audit = parse_policy(POLICY.format(mode="audit"))
    decision = judge(entry(private(hosts=["pastebin.com"])), audit)
    assert decision.allowed
    assert decision.audited
    assert any("pastebin.com" in w for w in decision.warnings)


# --- the egress namespace -------------------------------------------------------------------


EGRESS_ALLOWED = {
    "a policy service exported everywhere": {
        "hosts": ["api.payments.example"],
        "ports": TLS,
        "resolution": "DNS",
        "exportTo": ["*"],
    },
    "a policy wildcard with resolution NONE": {
        "hosts": ["*.partner.example"],
        "ports": TLS,
        "resolution": "NONE",
    },
    "an IP endpoint inside the service addresses": {
        "hosts": ["api.payments.example"],
        "ports": TLS,
        "resolution": "STATIC",
        "endpoints": [{"address": "198.51.100.20"}],
    },
    "the TLS origination port": {
        "hosts": ["legacy.example.net"],
        "resolution": "DNS",
        "ports": [
            {"number": 80, "name": "http", "protocol": "HTTP"},
            {"number": 443, "name": "tls", "protocol": "TLS"},
        ],
    },
    "a service only some tenants may reach": {
        "hosts": ["ml.example.net"],
        "ports": TLS,
        "resolution": "DNS",
    },
}


@pytest.mark.parametrize("spec", EGRESS_ALLOWED.values(), ids=EGRESS_ALLOWED.keys())
def test_egress_namespace_entry_for_policy_service_allowed(
    spec: dict[str, Any], policy: Policy
) -> None:
    decision = judge(entry(spec, namespace="egress"), policy)
    assert decision.allowed, decision.reason


EGRESS_DENIED = {
    "a host outside the policy": (
        {"hosts": ["pastebin.com"], "ports": TLS, "resolution": "DNS"},
        "spec.hosts[0]",
    ),
    "a port the service does not have": (
        {
            "hosts": ["api.payments.example"],
            "resolution": "DNS",
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        },
        "spec.ports[0].number",
    ),
    "a DNS endpoint of another host": (
        {
            "hosts": ["api.payments.example"],
            "ports": TLS,
            "resolution": "DNS",
            "endpoints": [{"address": "proxy.attacker.example"}],
        },
        "spec.endpoints[0].address",
    ),
    "an IP endpoint outside the service addresses": (
        {
            "hosts": ["api.payments.example"],
            "ports": TLS,
            "resolution": "STATIC",
            "endpoints": [{"address": "203.0.113.1"}],
        },
        "spec.endpoints[0].address",
    ),
    "addresses outside the service addresses": (
        {
            "hosts": ["api.payments.example"],
            "ports": TLS,
            "resolution": "NONE",
            "addresses": ["0.0.0.0/1"],
        },
        "spec.addresses[0]",
    ),
    "a cluster-internal host": (
        {"hosts": ["x.egress.svc.cluster.local"], "ports": TLS, "resolution": "DNS"},
        "spec.hosts[0]",
    ),
    "the apex of a policy wildcard": (
        {"hosts": ["partner.example"], "ports": TLS, "resolution": "DNS"},
        "spec.hosts[0]",
    ),
}


@pytest.mark.parametrize(("spec", "field"), EGRESS_DENIED.values(), ids=EGRESS_DENIED.keys())
def test_egress_namespace_entry_outside_the_policy_denied(
    spec: dict[str, Any], field: str, policy: Policy
) -> None:
    decision = judge(entry(spec, namespace="egress"), policy)
    assert not decision.allowed
    assert field in {v.field for v in decision.violations}, decision.reason


def test_egress_namespace_denial_says_not_a_policy_service(policy: Policy) -> None:
    spec = {"hosts": ["pastebin.com"], "ports": TLS, "resolution": "DNS"}
    decision = judge(entry(spec, namespace="egress"), policy)
    assert "not an external service of the policy" in decision.reason


@pytest.mark.parametrize(
    ("namespace", "message"),
    [
        (
            "team-a",
            "port 8443 is not a port of payments (api.payments.example) for 'api.payments.example' "
            "(allowed ports: 443)",
        ),
        ("egress", "port 8443 is not a port of payments (api.payments.example) (ports: 443)"),
    ],
)
def test_a_port_refusal_names_the_service_and_its_ports(
    namespace: str, message: str, policy: Policy
) -> None:
    spec = private(
        hosts=["api.payments.example"], ports=[{"number": 8443, "name": "tls", "protocol": "TLS"}]
    )
    decision = judge(entry(spec, namespace=namespace), policy)
    assert not decision.allowed
    assert message in (decision.reason or ""), decision.reason


# --- entries whose endpoints are the calling pod's own loopback -------------------------------


def in_pod(hosts: list[str], *addresses: str, **spec: Any) -> dict[str, Any]:
    """A STATIC entry at loopback addresses, as Istio's local ext-authz sample writes it."""
    return {
        "hosts": hosts,
        "endpoints": [{"address": a} for a in addresses or ("127.0.0.1",)],
        "ports": [{"number": 8000, "name": "http", "protocol": "HTTP"}],
        "resolution": "STATIC",
        **spec,
    }


@pytest.mark.parametrize(
    "spec",
    [
        # the sample itself: exported everywhere, a name nobody else uses
        in_pod(["ext-authz-http.local"]),
        in_pod(["ext-authz-grpc.local"], "127.0.0.1", "::1"),
        in_pod(["helper.local"], "127.0.0.53"),
        # kept in the namespace, any name: only its own pods send there, to themselves
        in_pod(["api.github.com"], exportTo=["."]),
    ],
)
def test_entry_at_the_pods_own_loopback_is_allowed(spec: dict[str, Any], policy: Policy) -> None:
    decision = judge(entry(spec, namespace="team-c"), policy)
    assert decision.allowed, decision.reason


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        # seen by other namespaces: their traffic for a name they use would go to loopback
        (in_pod(["status.example.org"]), "other namespaces use"),
        (in_pod(["db.team-b.svc.cluster.local"]), "other namespaces use"),
        (in_pod(["x.local"], addresses=["0.0.0.0/0"]), "other namespaces' traffic"),
        (
            in_pod(["istio-egressgateway.egress.svc.cluster.local"], exportTo=["."]),
            "egress gateway",
        ),
        # one endpoint off the pod, or not STATIC: judged as any entry
        (in_pod(["x.local"], "127.0.0.1", "203.0.113.7", exportTo=["."]), "not an external"),
        (in_pod(["x.local"], "::ffff:127.0.0.1", exportTo=["."]), "not an external"),
        (in_pod(["x.local"], exportTo=["."], resolution="DNS"), "not an external"),
    ],
)
def test_loopback_entries_that_reach_further_are_denied(
    spec: dict[str, Any], words: str, policy: Policy
) -> None:
    decision = judge(entry(spec, namespace="team-c"), policy)
    assert not decision.allowed
    assert words in (decision.reason or ""), decision.reason

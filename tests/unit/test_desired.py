"""The desired-state generator: what the controller keeps in the cluster for a policy."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.core.desired import (
    DEFAULT_SIDECAR,
    MANAGED_BY_LABEL,
    REVISION_ANNOTATION,
    NamespaceInfo,
    desired_state,
    enforced_namespaces,
    generate,
    object_key,
)
from webhook.core.policy import MANAGED_LABEL, Policy
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

BANZAI = parse_policy((ROOT / "policies" / "banzai-demo.yaml").read_text())
FIREWALL = parse_policy((ROOT / "policies" / "istio-egress-firewall.yaml").read_text())


def policy(
    rules: str, *, services: str = "", extra: str = "", egress_ns: str = "external"
) -> Policy:
    """A small policy: one TLS+HTTP service ``api`` plus ``services``, and the given rules."""
    text = f"""
egress: {{namespace: {egress_ns}}}
{extra}
externalServices:
  - name: api
    hosts: [api.example.com]
    ports: [{{number: 80, protocol: HTTP}}, {{number: 443, protocol: TLS}}]
  - name: other
    hosts: [other.example.net]
    ports: [{{number: 443, protocol: TLS}}]
{services}
allow:
{rules}
"""
    return parse_policy(text)


def of_kind(manifests: Iterable[Mapping[str, Any]], kind: str, namespace: str | None = None):
    return [
        m
        for m in manifests
        if m["kind"] == kind and (namespace is None or m["metadata"]["namespace"] == namespace)
    ]


def by_name(manifests: Iterable[Mapping[str, Any]], kind: str, namespace: str, name: str):
    found = [m for m in of_kind(manifests, kind, namespace) if m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind} {namespace}/{name}: found {len(found)}"
    return found[0]


def imports(sidecar: Mapping[str, Any]) -> list[str]:
    return list(sidecar["spec"]["egress"][0]["hosts"])


# --- golden outputs (checked by hand once) -------------------------------------------------


@pytest.mark.parametrize(
    ("policy_obj", "namespaces", "golden"),
    [
        (BANZAI, ["test-app", "external", "kube-system"], "banzai-demo.yaml"),
        (FIREWALL, ["team-a", "team-b", "other", "istio-egress"], "istio-egress-firewall.yaml"),
    ],
)
def test_generated_objects_match_the_reviewed_golden_file(
    policy_obj: Policy, namespaces: list[str], golden: str
) -> None:
    rendered = yaml.safe_dump_all(desired_state(policy_obj, namespaces), sort_keys=True)
    assert rendered == (GOLDEN / golden).read_text()


# --- labels, names, order ------------------------------------------------------------------


def test_every_object_is_labelled_managed_with_the_policy_revision() -> None:
    for manifest in desired_state(FIREWALL, ["team-a", "istio-egress"]):
        meta = manifest["metadata"]
        assert meta["labels"][MANAGED_LABEL] == "true"
        assert meta["labels"][MANAGED_BY_LABEL] == "egress-guard"
        assert meta["annotations"][REVISION_ANNOTATION] == FIREWALL.revision


def test_every_name_is_a_dns_label_and_unique_per_kind_and_namespace() -> None:
    weird = policy(
        """
  - name: "Default!"
    from: {namespace: team-a, workloadLabels: {app: x}}
    to: [api]
  - name: "a very long rule name that goes on and on and on well beyond sixty three chars"
    from: {namespace: team-a, workloadLabels: {app: y}}
    to: [other]
"""
    )
    manifests = desired_state(weird, ["team-a", "external"])
    keys = [object_key(m) for m in manifests]
    assert len(keys) == len(set(keys))
    for manifest in manifests:
        assert DNS_LABEL.match(manifest["metadata"]["name"]), manifest["metadata"]["name"]
    names = {m["metadata"]["name"] for m in of_kind(manifests, "Sidecar", "team-a")}
    assert len(names) == 3 and DEFAULT_SIDECAR in names


def test_output_does_not_depend_on_namespace_order_or_duplicates() -> None:
    first = desired_state(FIREWALL, ["team-b", "istio-egress", "team-a"])
    second = desired_state(FIREWALL, ["team-a", "team-a", NamespaceInfo("team-b"), "istio-egress"])
    assert first == second


def test_policy_revision_changes_every_annotation_but_nothing_else() -> None:
    edited = parse_policy(
        (ROOT / "policies" / "banzai-demo.yaml").read_text().replace("mode: enforce", "mode: audit")
    )
    before = desired_state(BANZAI, ["test-app", "external"])
    after = desired_state(edited, ["test-app", "external"])
    assert edited.revision != BANZAI.revision
    for old, new in zip(before, after, strict=True):
        assert old["spec"] == new["spec"]
        assert new["metadata"]["annotations"][REVISION_ANNOTATION] == edited.revision


# --- which namespaces ----------------------------------------------------------------------


def test_excluded_egress_and_terminating_namespaces_get_no_sidecar() -> None:
    manifests = desired_state(
        BANZAI,
        ["kube-system", "istio-system", "egress-guard", "external", NamespaceInfo("gone", True)],
    )
    assert of_kind(manifests, "Sidecar") == []
    assert enforced_namespaces(BANZAI, ["kube-system", "external", "x", "y"]) == ["x", "y"]


def test_namespace_without_rules_gets_only_the_default_deny_sidecar() -> None:
    manifests = desired_state(BANZAI, ["unrelated"])
    assert [(m["kind"], m["metadata"]["name"]) for m in manifests] == [("Sidecar", DEFAULT_SIDECAR)]
    sidecar = manifests[0]
    assert sidecar["spec"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    assert imports(sidecar) == ["./*", "istio-system/*"]
    assert "workloadSelector" not in sidecar["spec"]


def test_egress_namespace_objects_only_when_that_namespace_exists() -> None:
    assert of_kind(desired_state(BANZAI, ["test-app"]), "ServiceEntry") == []
    assert len(of_kind(desired_state(BANZAI, ["test-app", "external"]), "ServiceEntry")) == 3


def test_rule_namespaces_that_do_not_exist_get_nothing() -> None:
    manifests = desired_state(BANZAI, ["external"])
    assert {m["metadata"]["namespace"] for m in manifests} == {"external"}


# --- Sidecars ------------------------------------------------------------------------------


def test_exactly_one_selectorless_sidecar_per_enforced_namespace() -> None:
    manifests = desired_state(FIREWALL, ["team-a", "team-b", "other", "istio-egress"])
    for ns in ("team-a", "team-b", "other"):
        selectorless = [
            m for m in of_kind(manifests, "Sidecar", ns) if "workloadSelector" not in m["spec"]
        ]
        assert [m["metadata"]["name"] for m in selectorless] == [DEFAULT_SIDECAR]


def test_banzai_default_sidecar_imports_no_external_host() -> None:
    sidecar = by_name(desired_state(BANZAI, ["test-app"]), "Sidecar", "test-app", DEFAULT_SIDECAR)
    assert imports(sidecar) == ["./*", "istio-system/*"]


def test_workload_sidecar_imports_exactly_its_allowed_hosts_and_their_gateways() -> None:
    manifests = desired_state(BANZAI, ["test-app"])
    app_a = by_name(manifests, "Sidecar", "test-app", "egress-guard-app-a")
    assert app_a["spec"]["workloadSelector"] == {"labels": {"k8s-app": "app-a"}}
    assert sorted(imports(app_a)[2:]) == sorted(
        [
            "external/github.com",
            "external/www.github.com",
            "external/httpbin.org",
            "external/www.httpbin.org",
            "external/egress-github.external.svc.cluster.local",
            "external/egress-httpbin.external.svc.cluster.local",
        ]
    )
    app_b = by_name(manifests, "Sidecar", "test-app", "egress-guard-app-b")
    assert not any("github" in h or "httpbin" in h for h in imports(app_b))


def test_namespace_wide_rules_reach_the_default_and_every_selector_sidecar() -> None:
    p = policy(
        """
  - name: everyone
    from: {namespace: team-a}
    to: [other]
  - name: web
    from: {namespace: team-a, workloadLabels: {app: web}}
    to: [api]
"""
    )
    manifests = desired_state(p, ["team-a"])
    default = by_name(manifests, "Sidecar", "team-a", DEFAULT_SIDECAR)
    web = by_name(manifests, "Sidecar", "team-a", "egress-guard-web")
    assert "external/other.example.net" in imports(default)
    assert "external/api.example.com" not in imports(default)
    # nothing merges in Istio: the selector Sidecar must repeat the namespace-wide import
    assert {"external/other.example.net", "external/api.example.com"} <= set(imports(web))


def test_wildcard_namespace_rule_applies_to_every_enforced_namespace() -> None:
    manifests = desired_state(FIREWALL, ["team-a", "other"])
    for ns in ("team-a", "other"):
        default = by_name(manifests, "Sidecar", ns, DEFAULT_SIDECAR)
        assert "istio-egress/service1.foo.com" in imports(default)
        assert "istio-egress/istio-egressgateway.istio-egress.svc.cluster.local" in imports(default)
    other = by_name(manifests, "Sidecar", "other", DEFAULT_SIDECAR)
    assert "istio-egress/*.foo.com" not in imports(other)


def test_team_a_never_imports_team_b_wildcard() -> None:
    manifests = desired_state(FIREWALL, ["team-a", "team-b"])
    team_a = imports(by_name(manifests, "Sidecar", "team-a", DEFAULT_SIDECAR))
    assert "istio-egress/*.foo.com" in team_a
    assert not any("bar.com" in h for h in team_a)


def test_nested_label_sets_more_specific_sidecar_has_both_and_is_applied_first() -> None:
    p = policy(
        """
  - name: web
    from: {namespace: team-a, workloadLabels: {app: web}}
    to: [api]
  - name: web-canary
    from: {namespace: team-a, workloadLabels: {app: web, track: canary}}
    to: [other]
"""
    )
    sidecars = of_kind(desired_state(p, ["team-a"]), "Sidecar", "team-a")
    names = [m["metadata"]["name"] for m in sidecars]
    # Istio gives a pod the oldest matching selector Sidecar: the specific one goes first
    assert names == ["egress-guard-web-canary", "egress-guard-web", DEFAULT_SIDECAR]
    canary = imports(sidecars[0])
    assert {"external/api.example.com", "external/other.example.net"} <= set(canary)
    assert "external/other.example.net" not in imports(sidecars[1])


def test_compatible_label_sets_get_a_union_sidecar_with_both_services() -> None:
    p = policy(
        """
  - name: web
    from: {namespace: team-a, workloadLabels: {app: web}}
    to: [api]
  - name: eu
    from: {namespace: team-a, workloadLabels: {region: eu}}
    to: [other]
"""
    )
    sidecars = of_kind(desired_state(p, ["team-a"]), "Sidecar", "team-a")
    union = sidecars[0]
    assert union["spec"]["workloadSelector"]["labels"] == {"app": "web", "region": "eu"}
    assert {"external/api.example.com", "external/other.example.net"} <= set(imports(union))
    single = {m["metadata"]["name"]: imports(m) for m in sidecars[1:]}
    assert "external/other.example.net" not in single["egress-guard-web"]
    assert "external/api.example.com" not in single["egress-guard-eu"]


def test_conflicting_label_values_never_get_a_union_sidecar() -> None:
    p = policy(
        """
  - name: web
    from: {namespace: team-a, workloadLabels: {app: web}}
    to: [api]
  - name: db
    from: {namespace: team-a, workloadLabels: {app: db}}
    to: [other]
"""
    )
    selectors = [
        m["spec"]["workloadSelector"]["labels"]
        for m in of_kind(desired_state(p, ["team-a"]), "Sidecar", "team-a")
        if "workloadSelector" in m["spec"]
    ]
    assert sorted(s["app"] for s in selectors) == ["db", "web"]
    assert all(len(s) == 1 for s in selectors)


def test_istio_system_as_egress_namespace_is_not_imported_wholesale() -> None:
    p = policy(
        "  - {from: {namespace: team-a}, to: [api]}",
        egress_ns="istio-system",
        extra="excludedNamespaces: [kube-system]",
    )
    default = by_name(desired_state(p, ["team-a"]), "Sidecar", "team-a", DEFAULT_SIDECAR)
    assert "istio-system/*" not in imports(default)
    assert "istio-system/api.example.com" in imports(default)


# --- tenant VirtualServices ----------------------------------------------------------------


def test_tenant_routes_stay_in_their_namespace_and_only_target_the_gateway() -> None:
    manifests = desired_state(FIREWALL, ["team-a", "team-b", "other", "istio-egress"])
    for vs in of_kind(manifests, "VirtualService"):
        if vs["metadata"]["namespace"] == "istio-egress":
            continue
        assert vs["spec"]["exportTo"] == ["."]
        assert "gateways" not in vs["spec"]
        for key in ("http", "tls", "tcp"):
            for route in vs["spec"].get(key, ()):
                for dest in route["route"]:
                    assert dest["destination"]["host"].endswith(".svc.cluster.local")


def test_label_rules_scope_their_routes_with_source_labels() -> None:
    vs = by_name(
        desired_state(BANZAI, ["test-app"]), "VirtualService", "test-app", "egress-guard-httpbin"
    )
    matches = [m for key in ("http", "tls") for r in vs["spec"][key] for m in r["match"]]
    assert matches and all(m["sourceLabels"] == {"k8s-app": "app-a"} for m in matches)


def test_namespace_wide_rule_routes_have_no_source_labels() -> None:
    p = policy(
        """
  - {name: all, from: {namespace: team-a}, to: [api]}
  - {name: web, from: {namespace: team-a, workloadLabels: {app: web}}, to: [api]}
"""
    )
    vs = by_name(desired_state(p, ["team-a"]), "VirtualService", "team-a", "egress-guard-api")
    matches = [m for key in ("http", "tls") for r in vs["spec"][key] for m in r["match"]]
    assert all("sourceLabels" not in m for m in matches)


def test_tls_routes_pick_a_subset_per_sni_host() -> None:
    vs = by_name(
        desired_state(BANZAI, ["test-app"]), "VirtualService", "test-app", "egress-guard-github"
    )
    pairs = [
        (r["match"][0]["sniHosts"], r["route"][0]["destination"]["subset"])
        for r in vs["spec"]["tls"]
    ]
    assert pairs == [(["github.com"], "github-0"), (["www.github.com"], "github-1")]


def test_namespace_only_gets_routes_for_services_it_may_reach() -> None:
    manifests = desired_state(FIREWALL, ["team-b"])
    names = {m["metadata"]["name"] for m in of_kind(manifests, "VirtualService", "team-b")}
    assert names == {"egress-guard-bar-com", "egress-guard-service1-foo"}


# --- the egress namespace ------------------------------------------------------------------


def test_service_entries_resolve_by_dns_and_wildcards_dynamically() -> None:
    entries = of_kind(desired_state(FIREWALL, ["istio-egress"]), "ServiceEntry")
    resolution = {tuple(se["spec"]["hosts"]): se["spec"]["resolution"] for se in entries}
    assert resolution == {
        ("service1.foo.com",): "DNS",
        ("*.foo.com",): "DYNAMIC_DNS",
        ("*.bar.com",): "DYNAMIC_DNS",
    }
    assert all(se["spec"]["location"] == "MESH_EXTERNAL" for se in entries)


def test_gateways_are_mutual_tls_and_only_bind_their_own_namespace() -> None:
    manifests = desired_state(BANZAI, ["external"])
    for gw in of_kind(manifests, "Gateway"):
        for server in gw["spec"]["servers"]:
            assert server["tls"]["mode"] == "ISTIO_MUTUAL"
            assert all(h.startswith("./") for h in server["hosts"])
        assert gw["spec"]["selector"]


def test_wildcard_tls_hosts_pass_through_and_are_never_auto_passthrough() -> None:
    gw = by_name(
        desired_state(FIREWALL, ["istio-egress"]), "Gateway", "istio-egress", "istio-egressgateway"
    )
    modes = {tuple(s["hosts"]): s["tls"]["mode"] for s in gw["spec"]["servers"]}
    assert modes == {
        ("./service1.foo.com",): "ISTIO_MUTUAL",
        ("./*.foo.com",): "PASSTHROUGH",
        ("./*.bar.com",): "PASSTHROUGH",
    }


def test_one_gateway_object_per_egress_gateway_with_unique_port_names() -> None:
    gateways = of_kind(desired_state(FIREWALL, ["istio-egress"]), "Gateway")
    assert [g["metadata"]["name"] for g in gateways] == ["istio-egressgateway"]
    names = [s["port"]["name"] for s in gateways[0]["spec"]["servers"]]
    assert len(names) == len(set(names)) == 3


def test_gateway_routes_are_bound_to_the_gateway_only() -> None:
    manifests = desired_state(BANZAI, ["external"])
    legs = of_kind(manifests, "VirtualService", "external")
    assert len(legs) == 6
    for vs in legs:
        service = BANZAI.services[vs["metadata"]["labels"]["egress-guard.io/service"]]
        assert vs["spec"]["gateways"] == [service.gateway.ref]
        assert "mesh" not in vs["spec"]["gateways"]
        assert vs["spec"]["exportTo"] == ["."]
        (host,) = vs["spec"]["hosts"]
        for key in ("http", "tcp"):
            for route in vs["spec"][key]:
                assert route["route"][0]["destination"]["host"] == host


def test_gateway_destination_rule_sets_the_sni_the_gateway_routes_on() -> None:
    dr = by_name(
        desired_state(BANZAI, ["external"]),
        "DestinationRule",
        "external",
        "egress-guard-egress-httpbin",
    )
    assert dr["spec"]["host"] == "egress-httpbin.external.svc.cluster.local"
    snis = {
        s["name"]: {p["tls"]["sni"] for p in s["trafficPolicy"]["portLevelSettings"]}
        for s in dr["spec"]["subsets"]
    }
    assert snis == {"httpbin-0": {"httpbin.org"}, "httpbin-1": {"www.httpbin.org"}}


def test_authorization_policy_admits_only_allowed_identities_per_sni() -> None:
    p = policy(
        """
  - {name: build, from: {namespace: ci, serviceAccount: builder}, to: [api]}
  - {name: all, from: {namespace: "*"}, to: [other]}
  - {name: any-sa, from: {namespace: "*", serviceAccount: robot}, to: [api]}
  - {name: ns, from: {namespace: team-a}, to: [other]}
"""
    )
    ap = by_name(
        desired_state(p, ["external"]),
        "AuthorizationPolicy",
        "external",
        "egress-guard-istio-egressgateway",
    )
    assert ap["spec"]["action"] == "ALLOW"
    assert ap["spec"]["selector"] == {"matchLabels": {"istio": "egressgateway"}}
    got = [(r["from"][0]["source"], r["when"][0]["values"]) for r in ap["spec"]["rules"]]
    assert got == [
        ({"principals": ["cluster.local/ns/ci/sa/builder"]}, ["api.example.com"]),
        ({"principals": ["*"]}, ["other.example.net"]),
        ({"principals": ["*/sa/robot"]}, ["api.example.com"]),
        ({"namespaces": ["team-a"]}, ["other.example.net"]),
    ]
    assert all(r["when"][0]["key"] == "connection.sni" for r in ap["spec"]["rules"])


def test_custom_trust_domain_is_used_in_principals() -> None:
    p = policy(
        "  - {from: {namespace: ci, serviceAccount: b}, to: [api]}",
        extra="trustDomain: corp.example",
    )
    ap = of_kind(desired_state(p, ["external"]), "AuthorizationPolicy")[0]
    assert ap["spec"]["rules"][0]["from"][0]["source"] == {
        "principals": ["corp.example/ns/ci/sa/b"]
    }


def test_http_only_services_also_check_the_host_header_with_and_without_port() -> None:
    p = policy(
        "  - {from: {namespace: a}, to: [web]}",
        services="""
  - name: web
    hosts: [web.example.org, "*.cdn.example.org"]
    ports: [{number: 80, protocol: HTTP}]
""",
    )
    ap = of_kind(desired_state(p, ["external"]), "AuthorizationPolicy")[0]
    (rule,) = ap["spec"]["rules"]
    assert rule["to"][0]["operation"]["hosts"] == [
        "web.example.org",
        "web.example.org:*",
        "*.cdn.example.org",
    ]


def test_passthrough_rule_admits_only_identityless_connections_for_wildcard_snis() -> None:
    ap = of_kind(desired_state(FIREWALL, ["istio-egress"]), "AuthorizationPolicy")[0]
    passthrough = [r for r in ap["spec"]["rules"] if "notPrincipals" in r["from"][0]["source"]]
    assert [r["when"][0]["values"] for r in passthrough] == [["*.foo.com"], ["*.bar.com"]]


def test_unused_service_gets_no_passthrough_rule() -> None:
    p = policy(
        "  - {from: {namespace: a}, to: [api]}",
        services="""
  - name: wild
    hosts: ["*.wild.example.org"]
    ports: [{number: 443, protocol: TLS}]
""",
    )
    ap = of_kind(desired_state(p, ["external"]), "AuthorizationPolicy")[0]
    assert not any("*.wild.example.org" in str(r) for r in ap["spec"]["rules"])


def test_telemetry_logs_every_gateway() -> None:
    telemetry = of_kind(desired_state(BANZAI, ["external"]), "Telemetry")
    assert sorted(t["spec"]["selector"]["matchLabels"]["gateway-name"] for t in telemetry) == [
        "egress-github",
        "egress-google",
        "egress-httpbin",
    ]
    assert all(
        t["spec"]["accessLogging"] == [{"providers": [{"name": "envoy"}]}] for t in telemetry
    )


def test_tls_origination_port_is_visible_to_the_gateway_only() -> None:
    p = policy(
        "  - {from: {namespace: a}, to: [legacy]}",
        services="""
  - name: legacy
    hosts: [legacy.example.org]
    ports: [{number: 80, protocol: HTTP}]
    tlsOrigination: {port: 443}
""",
    )
    manifests = desired_state(p, ["external", "a"])
    origination = by_name(manifests, "ServiceEntry", "external", "egress-guard-legacy-origination")
    assert origination["spec"]["exportTo"] == ["."]
    main = by_name(manifests, "ServiceEntry", "external", "egress-guard-legacy")
    assert [port["number"] for port in main["spec"]["ports"]] == [80]
    dr = by_name(manifests, "DestinationRule", "external", "egress-guard-legacy-tls-0")
    assert dr["spec"]["trafficPolicy"]["portLevelSettings"] == [
        {"port": {"number": 443}, "tls": {"mode": "SIMPLE", "sni": "legacy.example.org"}}
    ]
    leg2 = by_name(manifests, "VirtualService", "external", "egress-guard-legacy-gateway-0")
    assert leg2["spec"]["http"][0]["route"][0]["destination"]["port"] == {"number": 443}


def test_tcp_with_several_hosts_splits_service_entries_and_warns() -> None:
    p = policy(
        "  - {from: {namespace: a}, to: [db]}",
        services="""
  - name: db
    hosts: [db1.example.org, db2.example.org]
    ports: [{number: 5432, protocol: TCP}]
""",
    )
    result = generate(p, ["external"])
    entries = [
        se["spec"]["hosts"]
        for se in of_kind(result.manifests, "ServiceEntry")
        if se["metadata"]["labels"]["egress-guard.io/service"] == "db"
    ]
    assert entries == [["db1.example.org"], ["db2.example.org"]]
    assert any("TCP" in w and "db1.example.org" in w for w in result.warnings)


# --- NetworkPolicy -------------------------------------------------------------------------


def test_network_policy_only_when_the_policy_asks() -> None:
    assert of_kind(desired_state(BANZAI, ["test-app"]), "NetworkPolicy") == []
    p = policy("  - {from: {namespace: team-a}, to: [api]}", extra="networkPolicies: true")
    (netpol,) = of_kind(
        desired_state(p, ["team-a", "team-b", "external"]), "NetworkPolicy", "team-a"
    )
    assert netpol["spec"]["policyTypes"] == ["Egress"]
    assert netpol["spec"]["podSelector"] == {}
    targets = [to for rule in netpol["spec"]["egress"] for to in rule["to"]]
    assert {
        "podSelector": {"matchLabels": {"istio": "egressgateway"}},
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "external"}},
    } in targets
    # no rule opens an IP block: the only way out is through the gateway
    assert not any("ipBlock" in to for to in targets)
    (other,) = of_kind(desired_state(p, ["team-b"]), "NetworkPolicy", "team-b")
    assert not any("egressgateway" in str(rule) for rule in other["spec"]["egress"])

"""Sidecar checks: REGISTRY_ONLY, imports limited to what the selected workloads may reach, one
Sidecar per workload."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pytest

from tests.unit.builders import assert_denied_at, judge
from webhook.core.policy import MANAGED_LABEL, Policy
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

POLICY = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
mode: {mode}
istioVersion: "{version}"
egress: {{namespace: egress}}
externalServices:
  - name: payments
    hosts: [api.payments.example]
    ports: [{{number: 443, protocol: TLS}}]
  - name: partner
    hosts: ["*.partner.example"]
    ports: [{{number: 443, protocol: TLS}}]
  - name: partner-admin
    hosts: [admin.partner.example]
    ports: [{{number: 443, protocol: TLS}}]
  - name: ml
    hosts: [ml.example.net]
    ports: [{{number: 443, protocol: TLS}}]
  - name: status
    hosts: [status.example.org]
    ports: [{{number: 443, protocol: TLS}}]
allow:
  - {{name: everyone, from: {{namespace: "*"}}, to: [status]}}
  - {{name: team-a, from: {{namespace: team-a}}, to: [payments, partner]}}
  - {{name: team-a-ml, from: {{namespace: team-a, workloadLabels: {{app: trainer}}}}, to: [ml]}}
  - name: team-a-admin
    from: {{namespace: team-a, workloadLabels: {{app: admin, tier: ops}}}}
    to: [partner-admin]
  - {{name: team-b-sa, from: {{namespace: team-b, serviceAccount: batch}}, to: [payments]}}
"""


def make_policy(mode: str = "enforce", version: str = "1.30") -> Policy:
    return parse_policy(POLICY.format(mode=mode, version=version))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return make_policy()


class Cluster:
    """A ClusterView holding some Sidecars."""

    def __init__(self, *sidecars: Mapping[str, Any]) -> None:
        self._sidecars = sidecars

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        return [s for s in self._sidecars if s["metadata"]["namespace"] == namespace]

    def namespace_addresses(self, namespace: str) -> Collection[str] | None:
        del namespace
        return None


def sidecar(
    hosts: list[str] | None = None,
    *,
    selector: dict[str, str] | None = None,
    name: str = "sc",
    namespace: str = "team-a",
    mode: str | None = "REGISTRY_ONLY",
    labels: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = dict(extra)
    if hosts is not None:
        spec["egress"] = [{"hosts": hosts}]
    if selector is not None:
        spec["workloadSelector"] = {"labels": selector}
    if mode is not None:
        spec.setdefault("outboundTrafficPolicy", {})["mode"] = mode
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = labels
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": meta,
        "spec": spec,
    }


ALLOWED = {
    "own namespace only": sidecar(["./*"]),
    "own namespace by name": sidecar(["team-a/*"]),
    "another tenant namespace (its entries are checked on their own)": sidecar(["team-b/*"]),
    "the egress namespace's allowed host": sidecar(["./*", "egress/api.payments.example"]),
    "any namespace, allowed host": sidecar(["*/api.payments.example"]),
    "the policy wildcard, for workloads allowed everything under it": sidecar(
        ["egress/*.partner.example"], selector={"app": "admin", "tier": "ops"}
    ),
    "a service-account rule (the identity is enforced at the gateway)": sidecar(
        ["*/api.payments.example"], namespace="team-b"
    ),
    "a host under the allowed wildcard": sidecar(["egress/eu.partner.example"]),
    "a service allowed to every namespace": sidecar(["*/status.example.org"]),
    "cluster-internal names from any namespace": sidecar(["*/*.svc.cluster.local"]),
    "~/* imports nothing": sidecar(["~/*"]),
    "selector carrying the rule's labels": sidecar(
        ["./*", "egress/ml.example.net"], selector={"app": "trainer"}
    ),
    "selector with more labels than the rule": sidecar(
        ["egress/ml.example.net"], selector={"app": "trainer", "version": "v2"}
    ),
    "captureMode NONE with bind and port": {
        **sidecar(None),
        "spec": {
            "egress": [
                {
                    "port": {"number": 3306, "protocol": "TCP", "name": "mysql"},
                    "bind": "127.0.0.1",
                    "captureMode": "NONE",
                    "hosts": ["egress/api.payments.example"],
                }
            ],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    },
}


@pytest.mark.parametrize("manifest", ALLOWED.values(), ids=ALLOWED.keys())
def test_sidecar_allowed(manifest: dict[str, Any], policy: Policy) -> None:
    decision = judge(manifest, policy)
    assert decision.allowed, decision.reason


DENIED: dict[str, tuple[dict[str, Any], str, str]] = {
    "ALLOW_ANY": (
        sidecar(["./*"], mode="ALLOW_ANY"),
        "spec.outboundTrafficPolicy.mode",
        "ALLOW_ANY",
    ),
    "ALLOW_ANY_DYNAMIC_DNS": (
        sidecar(["./*"], mode="ALLOW_ANY_DYNAMIC_DNS"),
        "spec.outboundTrafficPolicy.mode",
        "REGISTRY_ONLY",
    ),
    "outbound policy missing falls back to the mesh default": (
        sidecar(["./*"], mode=None),
        "spec.outboundTrafficPolicy.mode",
        "ALLOW_ANY",
    ),
    "egress proxy": (
        sidecar(
            ["./*"],
            outboundTrafficPolicy={
                "mode": "REGISTRY_ONLY",
                "egressProxy": {"host": "proxy.attacker.example", "port": {"number": 3128}},
            },
        ),
        "spec.outboundTrafficPolicy.egressProxy",
        "egress proxy",
    ),
    "no egress section imports */*": (sidecar(None), "spec.egress", "*/*"),
    "empty egress list imports */*": (sidecar(None, egress=[]), "spec.egress", "*/*"),
    "selector sidecar with only ingress": (
        sidecar(
            None,
            selector={"app": "web"},
            ingress=[{"port": {"number": 80, "protocol": "HTTP", "name": "http"}}],
        ),
        "spec.egress",
        "*/*",
    ),
    "*/* explicitly": (sidecar(["*/*"]), "spec.egress[0].hosts[0]", "ml"),
    "everything of the egress namespace": (
        sidecar(["./*", "egress/*"]),
        "spec.egress[0].hosts[1]",
        "ml (ml.example.net)",
    ),
    "a host only labelled workloads may reach": (
        sidecar(["egress/ml.example.net"]),
        "spec.egress[0].hosts[0]",
        "ml.example.net",
    ),
    "selector missing one of the rule's labels": (
        sidecar(["egress/admin.partner.example"], selector={"app": "admin"}),
        "spec.egress[0].hosts[0]",
        "partner-admin",
    ),
    "wildcard importing a host another rule guards": (
        sidecar(["egress/*.partner.example"], selector={"app": "web"}, namespace="team-b"),
        "spec.egress[0].hosts[0]",
        "partner",
    ),
    "the policy wildcard also imports a host a narrower rule guards": (
        sidecar(["egress/*.partner.example"]),
        "spec.egress[0].hosts[0]",
        "partner-admin (admin.partner.example)",
    ),
    "a host nobody may reach, imported from any namespace": (
        sidecar(["*/pastebin.com"]),
        "spec.egress[0].hosts[0]",
        "pastebin.com",
    ),
    "a wildcard over a public suffix": (sidecar(["*/*.com"]), "spec.egress[0].hosts[0]", "*.com"),
    "the apex of an allowed wildcard": (
        sidecar(["egress/partner.example"]),
        "spec.egress[0].hosts[0]",
        "partner.example",
    ),
    "two slashes": (sidecar(["a/b/c.example"]), "spec.egress[0].hosts[0]", "exactly one"),
    "no slash": (sidecar(["api.payments.example"]), "spec.egress[0].hosts[0]", "exactly one"),
    "short name": (sidecar(["./payments"]), "spec.egress[0].hosts[0]", "dot"),
    "misplaced wildcard": (sidecar(["./a*.example.com"]), "spec.egress[0].hosts[0]", "'*'"),
    "~namespace on Istio 1.30": (sidecar(["./*", "~team-b/*"]), "spec.egress[0].hosts[1]", "1.31"),
    "listener without hosts": (
        sidecar(None, egress=[{"port": {"number": 80, "protocol": "HTTP", "name": "h"}}]),
        "spec.egress[0].hosts",
        "at least one",
    ),
}


@pytest.mark.parametrize(("manifest", "field", "words"), DENIED.values(), ids=DENIED.keys())
def test_sidecar_denied(manifest: dict[str, Any], field: str, words: str, policy: Policy) -> None:
    decision = judge(manifest, policy)
    assert_denied_at(decision, field, words)


def test_tilde_prefix_subtracts_on_istio_1_31() -> None:
    newer = make_policy(version="1.31")
    assert judge(sidecar(["./*", "~team-b/*", "~/api.payments.example"]), newer).allowed


def test_import_denial_names_the_workloads_and_what_they_may_reach(policy: Policy) -> None:
    decision = judge(sidecar(["egress/ml.example.net"], selector={"app": "web"}), policy)
    message = decision.violations[0].message
    assert "ml (ml.example.net)" in message
    assert "{app=web}" in message and "team-a" in message
    assert "payments (api.payments.example)" in message


def test_implicit_import_names_the_services_it_would_open(policy: Policy) -> None:
    decision = judge(sidecar(None), policy)
    message = decision.violations[0].message
    assert "ml (ml.example.net)" in message
    assert "partner-admin" in message


def test_egress_namespace_sidecars_are_denied(policy: Policy) -> None:
    assert not judge(sidecar(["./*"], namespace="egress"), policy).allowed


# --- uniqueness ------------------------------------------------------------------------------

DEFAULT = sidecar(["./*"], name="default")
MANAGED_ADMIN = sidecar(
    ["./*", "egress/admin.partner.example"],
    name="egress-guard-admin",
    selector={"app": "admin", "tier": "ops"},
    labels={MANAGED_LABEL: "true"},
)


def test_second_selectorless_sidecar_is_denied_naming_the_first(policy: Policy) -> None:
    decision = judge(sidecar(["./*"], name="mine"), policy, view=Cluster(DEFAULT))
    assert not decision.allowed
    assert "'default'" in decision.reason


def test_updating_the_selectorless_sidecar_itself_is_allowed(policy: Policy) -> None:
    updated = sidecar(["./*", "egress/api.payments.example"], name="default")
    assert judge(updated, policy, "UPDATE", view=Cluster(DEFAULT)).allowed


def test_selectorless_sidecar_of_another_namespace_does_not_count(policy: Policy) -> None:
    other = sidecar(["./*"], name="default", namespace="team-b")
    assert judge(sidecar(["./*"], name="mine"), policy, view=Cluster(other)).allowed


@pytest.mark.parametrize(
    ("selector", "allowed"),
    [
        ({"app": "admin"}, False),  # may select the same pods
        ({"app": "admin", "tier": "ops"}, False),
        ({"version": "v2"}, False),  # no common key: a pod may carry both
        ({"app": "web"}, True),  # conflicting value: never the same pod
        ({"app": "admin", "tier": "dev"}, True),
    ],
)
def test_selector_overlapping_a_managed_sidecar_is_denied(
    selector: dict[str, str], allowed: bool, policy: Policy
) -> None:
    decision = judge(sidecar(["./*"], selector=selector), policy, view=Cluster(MANAGED_ADMIN))
    assert decision.allowed is allowed, decision.reason


def test_overlap_with_an_unmanaged_selector_sidecar_is_not_judged(policy: Policy) -> None:
    mine = sidecar(["./*"], name="old", selector={"app": "admin"})
    assert judge(sidecar(["./*"], selector={"app": "admin"}), policy, view=Cluster(mine)).allowed


# --- DELETE ----------------------------------------------------------------------------------


def test_deleting_the_selectorless_sidecar_is_denied(policy: Policy) -> None:
    decision = judge(DEFAULT, policy, "DELETE", view=Cluster(DEFAULT))
    assert not decision.allowed
    assert "ALLOW_ANY" in decision.reason


def test_deleting_a_duplicate_selectorless_sidecar_is_allowed(policy: Policy) -> None:
    duplicate = sidecar(["./*"], name="older")
    assert judge(DEFAULT, policy, "DELETE", view=Cluster(DEFAULT, duplicate)).allowed


def test_deleting_a_selector_sidecar_is_allowed(policy: Policy) -> None:
    narrow = sidecar(["./*"], selector={"app": "web"})
    assert judge(narrow, policy, "DELETE").allowed


# --- modes and shapes ------------------------------------------------------------------------


def test_audit_mode_admits_allow_any_with_a_warning() -> None:
    decision = judge(sidecar(["./*"], mode="ALLOW_ANY"), make_policy(mode="audit"))
    assert decision.allowed and decision.audited
    assert any("ALLOW_ANY" in w for w in decision.warnings)


@pytest.mark.parametrize(
    "spec",
    [
        {"egress": "*/*", "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
        {"egress": [{"hosts": "*/*"}], "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
        {"egress": [{"hosts": [7]}], "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
        {"egress": [{"hosts": ["./*"]}], "outboundTrafficPolicy": "REGISTRY_ONLY"},
        {
            "egress": [{"hosts": ["./*"]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
            "workloadSelector": {"labels": {"app": 1}},
        },
    ],
)
def test_malformed_sidecar_is_denied_with_a_field(spec: dict[str, Any], policy: Policy) -> None:
    manifest = sidecar(None)
    manifest["spec"] = spec
    decision = judge(manifest, policy)
    assert not decision.allowed
    assert all(v.field for v in decision.violations), decision.reason
    assert "malformed" not in decision.reason

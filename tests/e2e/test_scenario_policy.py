"""Scenarios that change the policy under a running egress-guard: the Istio post, audit, edits.

Why a control plane of its own: these tests swap the policy ConfigMap the webhook watches, which
would change verdicts for every other test sharing the session's cluster.  The module starts one
plane and one ``egress-guard serve`` (ConfigMap source, the chart's layout) for itself (~10 s),
and every test first puts the policy it needs in force (``PolicyControl.use`` waits until the
webhook's ``/readyz`` reports that revision), so the tests do not depend on their order.

- The Istio "egress firewall" post with ``policies/istio-egress-firewall.yaml``: the objects the
  controller would write (``egress-guard render``) and the tenants' own imports and routes apply,
  team-a's reach for ``service1.bar.com`` and a third namespace's for ``service2.foo.com`` do not.
- Audit mode: the Banzai breaches are admitted, each with a kubectl warning naming what enforce
  mode would have refused.
- Policy edits reach verdicts within two seconds, without a restart; an invalid edit keeps the
  last good policy in force.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.e2e.harness import (
    ControlPlane,
    Kubectl,
    Tools,
    Webhook,
    create_namespace,
    egress_guard_command,
    existing_cluster_kubeconfig,
)
from tests.e2e.scenarios import (
    BANZAI_POLICY,
    BREACHES,
    DEFAULT_DENY_SIDECAR,
    ISTIO_FIREWALL_POLICY,
    PolicyControl,
    apply,
    assert_admitted,
    assert_denied,
    documents,
    ensure_namespace,
    policy_configmap,
    remove,
    run,
    wait_for,
)

pytestmark = pytest.mark.e2e

EDIT_BUDGET_S = 2.0
GATEWAY = "istio-egressgateway.istio-egress.svc.cluster.local"


@dataclass(frozen=True)
class PolicyPlane:
    """A control plane whose egress-guard policy the tests may change at will."""

    plane: ControlPlane
    hook: Webhook
    policy: PolicyControl

    @property
    def kubectl(self) -> Kubectl:
        return self.plane.kubectl


@pytest.fixture(scope="module")
def policy_plane(
    e2e_tools: Tools, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolicyPlane]:
    if existing_cluster_kubeconfig() is not None:
        pytest.skip("swapping the policy needs a harness control plane of its own")
    plane = ControlPlane(tmp_path_factory.mktemp("policy-plane"), e2e_tools)
    plane.start()
    try:
        hook = Webhook(plane, tmp_path_factory.mktemp("policy-webhook"))
        hook.start()
        try:
            yield PolicyPlane(plane, hook, PolicyControl(hook))
        finally:
            hook.stop()
    finally:
        plane.stop()


# --- the Istio egress-firewall post ---------------------------------------------------------


@pytest.fixture(scope="module")
def istio_post(policy_plane: PolicyPlane) -> str:
    """The post's namespaces exist; returns the name of a third, unprivileged namespace."""
    for name in ("team-a", "team-b", "istio-egress"):
        ensure_namespace(policy_plane.kubectl, name)
    return create_namespace(policy_plane.kubectl, "third")


@pytest.fixture
def firewall(policy_plane: PolicyPlane, istio_post: str) -> PolicyPlane:
    policy_plane.policy.use(policy_configmap(ISTIO_FIREWALL_POLICY))
    return policy_plane


def _imports(namespace: str, name: str, *hosts: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "workloadSelector": {"labels": {"app": name}},
            "egress": [{"hosts": ["./*", *hosts]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    }


def _route(namespace: str, name: str, host: str) -> dict[str, Any]:
    """Leg one of the post: the app's TLS to ``host`` goes to the shared egress gateway."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [host],
            "exportTo": ["."],
            "tls": [
                {
                    "match": [{"port": 443, "sniHosts": [host]}],
                    "route": [{"destination": {"host": GATEWAY, "port": {"number": 443}}}],
                }
            ],
        },
    }


THIRD = "<third>"

# (namespace, object, refusal needles or None when it must be admitted)
ISTIO_POST_CASES: dict[str, tuple[str, Callable[[str], dict[str, Any]], tuple[str, ...] | None]] = {
    "team-a-imports-foo-wildcard": (
        "team-a",
        lambda ns: _imports(ns, "foo-client", "istio-egress/*.foo.com"),
        None,
    ),
    "team-a-routes-www-foo": ("team-a", lambda ns: _route(ns, "www-foo", "www.foo.com"), None),
    "team-b-imports-bar-wildcard": (
        "team-b",
        lambda ns: _imports(ns, "bar-client", "istio-egress/*.bar.com"),
        None,
    ),
    "team-b-routes-service1-bar": (
        "team-b",
        lambda ns: _route(ns, "service1-bar", "service1.bar.com"),
        None,
    ),
    "third-imports-service1-foo": (
        THIRD,
        lambda ns: _imports(ns, "s1-client", "istio-egress/service1.foo.com"),
        None,
    ),
    "third-routes-service1-foo": (
        THIRD,
        lambda ns: _route(ns, "service1-foo", "service1.foo.com"),
        None,
    ),
    "team-a-imports-service1-bar": (
        "team-a",
        lambda ns: _imports(ns, "bar-reach", "istio-egress/service1.bar.com"),
        ("spec.egress[0].hosts[1]", "service1.bar.com", "namespace team-a", "foo-com (*.foo.com)"),
    ),
    "team-a-routes-service1-bar": (
        "team-a",
        lambda ns: _route(ns, "bar-route", "service1.bar.com"),
        ("service1.bar.com", "namespace team-a"),
    ),
    "team-b-imports-foo-wildcard": (
        "team-b",
        lambda ns: _imports(ns, "foo-reach", "istio-egress/*.foo.com"),
        ("*.foo.com", "namespace team-b"),
    ),
    "third-imports-service2-foo": (
        THIRD,
        lambda ns: _imports(ns, "s2-reach", "*/service2.foo.com"),
        ("service2.foo.com", "service1-foo (service1.foo.com)"),
    ),
    "third-routes-service2-foo": (
        THIRD,
        lambda ns: _route(ns, "s2-route", "service2.foo.com"),
        ("service2.foo.com",),
    ),
}


def test_istio_post_controller_objects_apply_cleanly(
    firewall: PolicyPlane, istio_post: str
) -> None:
    # what the controller would write for the post's policy, applied by hand through the webhook:
    # the egress side in istio-egress, each namespace's Sidecar and routes to the gateway
    rendered = subprocess.run(
        [
            *egress_guard_command(),
            "render",
            f"--policy={ISTIO_FIREWALL_POLICY}",
            f"--namespaces=team-a,team-b,{istio_post}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    objects = documents(rendered)
    assert {o["metadata"]["namespace"] for o in objects} >= {"team-a", "team-b", istio_post}
    outcome = apply(firewall.kubectl, objects)
    assert_admitted(outcome)


@pytest.mark.parametrize("case", ISTIO_POST_CASES, ids=list(ISTIO_POST_CASES))
def test_istio_post_per_cluster_and_per_source_policies(
    case: str, firewall: PolicyPlane, istio_post: str
) -> None:
    namespace, build, needles = ISTIO_POST_CASES[case]
    manifest = build(istio_post if namespace == THIRD else namespace)
    outcome = apply(firewall.kubectl, manifest)
    if needles is None:
        assert_admitted(outcome)
    else:
        assert_denied(outcome, *needles)


# --- audit mode -----------------------------------------------------------------------------


@pytest.fixture
def banzai_namespaces(policy_plane: PolicyPlane) -> PolicyPlane:
    for name in ("test-app", "external"):
        ensure_namespace(policy_plane.kubectl, name)
    return policy_plane


@pytest.mark.parametrize("breach", BREACHES, ids=list(BREACHES))
def test_audit_mode_admits_breaches_with_warnings(
    breach: str, banzai_namespaces: PolicyPlane
) -> None:
    cluster = banzai_namespaces
    text, needles = BREACHES[breach]
    (manifest,) = documents(text)

    cluster.policy.use(policy_configmap(BANZAI_POLICY))
    enforced = apply(cluster.kubectl, manifest, dry_run=True)
    assert_denied(enforced, *needles)

    cluster.policy.use(policy_configmap(BANZAI_POLICY, mode="audit"))
    try:
        dry = apply(cluster.kubectl, manifest, dry_run=True)
        audited = apply(cluster.kubectl, manifest)
        assert_admitted(audited)
        assert audited.warnings, "audit mode admitted a breach without a warning"
        assert dry.warnings == audited.warnings
        # the same violations enforce mode refused, as warnings (the API server caps each warning
        # at 256 characters, so a long one ends in an ellipsis pointing to the decision log)
        meta = manifest["metadata"]
        subject = f"{manifest['kind']} {meta['namespace']}/{meta['name']}: "
        for warning in audited.warnings:
            body = warning.removeprefix("Warning: egress-guard audit: ")
            assert body.startswith(subject), warning
            violation = body.removeprefix(subject).split("\u2026")[0].rstrip()
            assert len(violation) > 40, warning
            assert violation in enforced.errors, (violation, enforced.errors)
    finally:
        remove(cluster.kubectl, manifest)


def test_audit_mode_admits_deleting_the_default_deny_sidecar_with_a_warning(
    banzai_namespaces: PolicyPlane,
) -> None:
    cluster = banzai_namespaces
    (sidecar,) = [
        d
        for d in documents(
            f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: {DEFAULT_DENY_SIDECAR}, namespace: test-app}}
spec:
  egress: [{{hosts: ["./*"]}}]
  outboundTrafficPolicy: {{mode: REGISTRY_ONLY}}
"""
        )
    ]
    cluster.policy.use(policy_configmap(BANZAI_POLICY, mode="audit"))
    assert_admitted(apply(cluster.kubectl, sidecar))
    outcome = run(cluster.kubectl, "delete", "sidecar", DEFAULT_DENY_SIDECAR, "-n", "test-app")
    assert_admitted(outcome)
    warned = "\n".join(outcome.warnings)
    assert "egress-guard audit" in warned
    assert "deleting the selector-less Sidecar of namespace test-app" in warned


# --- policy edits ---------------------------------------------------------------------------


def _app_b_may_reach_httpbin(document: dict[str, Any]) -> None:
    for rule in document["allow"]:
        if rule["name"] == "app-b":
            rule["to"] = [*rule["to"], "httpbin"]


def _verdict_flips(cluster: PolicyPlane, manifest: dict[str, Any], *, admitted: bool) -> float:
    """Seconds from now until a server dry-run of ``manifest`` gets the wanted verdict."""
    started = time.monotonic()
    while True:
        outcome = apply(cluster.kubectl, manifest, dry_run=True)
        took = time.monotonic() - started
        if outcome.admitted is admitted:
            return took
        if took > 10 * EDIT_BUDGET_S:
            raise AssertionError(f"the verdict did not change within {took:.1f}s")


def test_policy_edit_changes_verdicts_within_two_seconds_without_restart(
    banzai_namespaces: PolicyPlane,
) -> None:
    cluster = banzai_namespaces
    assert cluster.hook.process is not None
    pid, start_time = cluster.hook.process.pid, cluster.hook.process.start_time
    (sidecar,) = documents(BREACHES["sidecar-for-app-b-importing-httpbin"][0])
    cluster.policy.use(policy_configmap(BANZAI_POLICY))
    assert_denied(apply(cluster.kubectl, sidecar, dry_run=True), "external/httpbin.org")

    cluster.policy.write(policy_configmap(BANZAI_POLICY, edit=_app_b_may_reach_httpbin))
    widened = _verdict_flips(cluster, sidecar, admitted=True)
    cluster.policy.write(policy_configmap(BANZAI_POLICY))
    narrowed = _verdict_flips(cluster, sidecar, admitted=False)
    print(f"[measure] ConfigMap edit -> verdict: widen {widened:.2f}s, narrow {narrowed:.2f}s")

    assert widened < EDIT_BUDGET_S
    assert narrowed < EDIT_BUDGET_S
    # the same process, never restarted
    assert cluster.hook.process.pid == pid
    assert cluster.hook.process.start_time == start_time
    assert cluster.hook.process.alive()


INVALID_EDITS = {
    "not-yaml": "egress: [unclosed\n",
    "schema-violation": "egress: {namespace: x}\nexternalServices: [{name: bad}]\n",
    "rule-to-unknown-service": (
        "apiVersion: egress-guard.dev/v1alpha1\nkind: EgressPolicy\nmode: enforce\n"
        "egress: {namespace: external}\n"
        "externalServices:\n"
        "- {name: s, hosts: [pastebin.com], ports: [{number: 443, protocol: TLS}]}\n"
        "allow: [{name: r, from: {namespace: test-app}, to: [no-such-service]}]\n"
    ),
    "empty": "",
}


@pytest.mark.parametrize("text", INVALID_EDITS.values(), ids=list(INVALID_EDITS))
def test_invalid_policy_edit_keeps_the_last_good_policy(
    text: str, banzai_namespaces: PolicyPlane
) -> None:
    cluster = banzai_namespaces
    (app_b_wider,) = documents(BREACHES["sidecar-for-app-b-importing-httpbin"][0])
    (pastebin,) = documents(BREACHES["service-entry-for-a-host-outside-the-list"][0])
    # a good policy that differs from the default, so "still in force" cannot be a coincidence
    good = cluster.policy.use(policy_configmap(BANZAI_POLICY, edit=_app_b_may_reach_httpbin))
    failures = cluster.policy.reload_failures()

    cluster.policy.write_text(text)
    wait_for(
        lambda: cluster.policy.reload_failures() > failures, 10, "the webhook to reject the edit"
    )

    assert cluster.policy.revision() == good
    assert_admitted(apply(cluster.kubectl, app_b_wider, dry_run=True))
    assert_denied(apply(cluster.kubectl, pastebin, dry_run=True), "pastebin.com")

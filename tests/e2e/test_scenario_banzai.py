"""The Banzai Cloud egress demo, applied with kubectl to a real API server guarded by egress-guard.

Why: the unit suite proves the decisions; this proves what a developer sees.  Under
``policies/banzai-demo.yaml`` (the session webhook's policy) the demo's own resources (default-deny
Sidecar, per-service egress Gateways, ServiceEntries and VirtualServices in ``external``, the
app-a/app-b Sidecars and routes and workloads in ``test-app``) apply cleanly, and each breach the
issue names is refused at ``kubectl apply`` time with a message naming the field, the host and
the source.  Every kubectl command and its output is printed: run with ``-rA`` to read them.

The namespaces ``test-app`` and ``external`` are literal (the policy names them) and are created
once per session; denials store nothing, so the tests do not depend on each other's order.
Destructive attempts that a regression could let through on shared objects run with
``--dry-run=server``, which the webhook judges exactly like the real request (see
``test_server_dry_run_gives_the_real_verdict``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.e2e.harness import Kubectl, Webhook
from tests.e2e.scenarios import (
    BANZAI_POLICY,
    BREACHES,
    DEFAULT_DENY_SIDECAR,
    ISTIO_KINDS,
    WORKLOADS,
    Outcome,
    PolicyControl,
    apply,
    assert_admitted,
    assert_denied,
    documents,
    ensure_namespace,
    policy_configmap,
    run,
)
from tests.unit.test_banzai_resources import ATTACKS, BANZAI_RESOURCES

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(webhook: Webhook | None, kubectl: Kubectl) -> Kubectl:
    """The session cluster with the Banzai policy in force and the literal namespaces."""
    if webhook is None:
        pytest.skip("existing cluster: its webhook's policy is not known to be banzai-demo")
    # nobody swaps the session policy (policy tests run on a plane of their own); make sure
    PolicyControl(webhook).use(policy_configmap(BANZAI_POLICY))
    for name in ("test-app", "external"):
        ensure_namespace(kubectl, name)
    return kubectl


@pytest.fixture(scope="module")
def demo(cluster: Kubectl) -> list[Outcome]:
    """The demo applied as its README does it, file group by file group (idempotent)."""
    resources = documents(BANZAI_RESOURCES)
    common = [r for r in resources if r["metadata"]["name"] == DEFAULT_DENY_SIDECAR]
    external = [r for r in resources if r["metadata"]["namespace"] == "external"]
    matches = [r for r in resources if r not in common and r not in external]
    return [apply(cluster, group) for group in (common, external, matches, documents(WORKLOADS))]


def _get(kubectl: Kubectl, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = kubectl("get", kind, name, "-n", namespace, "-o", "yaml")
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: dict[str, Any] = yaml.safe_load(result.stdout)
    return found


def test_banzai_demo_resources_apply_cleanly(demo: list[Outcome], cluster: Kubectl) -> None:
    for outcome in demo:
        assert_admitted(outcome)
        assert not outcome.warnings, outcome.warnings
    stored = cluster.json("get", ISTIO_KINDS, "-A")
    names = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in stored["items"]}
    expected = {
        (r["metadata"]["namespace"], r["metadata"]["name"]) for r in documents(BANZAI_RESOURCES)
    }
    assert expected <= names


def test_literal_namespaces_carry_the_injection_label(cluster: Kubectl) -> None:
    for name in ("test-app", "external"):
        labels = cluster.json("get", "namespace", name)["metadata"]["labels"]
        assert labels.get("istio-injection") == "enabled", labels


@pytest.mark.parametrize("breach", BREACHES, ids=list(BREACHES))
def test_breach_is_refused_with_a_readable_message(
    breach: str, demo: list[Outcome], cluster: Kubectl
) -> None:
    text, needles = BREACHES[breach]
    (manifest,) = documents(text)
    assert_denied(apply(cluster, manifest), *needles)
    meta = manifest["metadata"]
    assert _get(cluster, manifest["kind"].lower(), meta["name"], meta["namespace"]) is None


def test_deleting_the_default_deny_sidecar_is_refused(
    demo: list[Outcome], cluster: Kubectl
) -> None:
    before = _get(cluster, "sidecar", DEFAULT_DENY_SIDECAR, "test-app")
    assert before is not None
    outcome = run(cluster, "delete", "sidecar", DEFAULT_DENY_SIDECAR, "-n", "test-app")
    assert_denied(
        outcome, f"Sidecar test-app/{DEFAULT_DENY_SIDECAR}", "namespace test-app", "ALLOW_ANY"
    )
    after = _get(cluster, "sidecar", DEFAULT_DENY_SIDECAR, "test-app")
    assert after is not None
    assert after["metadata"]["uid"] == before["metadata"]["uid"]


# --- a compromised tenant in test-app tries the ways around -----------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_allow_any_is_refused_in_every_served_api_version(
    version: str, demo: list[Outcome], cluster: Kubectl
) -> None:
    # the webhook is registered for all versions (matchPolicy Equivalent); an older version
    # must not be a side door
    (manifest,) = documents(BREACHES["sidecar-with-allow-any"][0])
    manifest["apiVersion"] = f"networking.istio.io/{version}"
    assert_denied(apply(cluster, manifest), "ALLOW_ANY")


def test_patching_the_default_deny_sidecar_to_allow_any_is_refused(
    demo: list[Outcome], cluster: Kubectl
) -> None:
    patch = '{"spec":{"outboundTrafficPolicy":{"mode":"ALLOW_ANY"}}}'
    outcome = run(
        cluster,
        "patch",
        "sidecar",
        DEFAULT_DENY_SIDECAR,
        "-n",
        "test-app",
        "--type=merge",
        "-p",
        patch,
    )
    assert_denied(outcome, "spec.outboundTrafficPolicy.mode", "ALLOW_ANY")
    stored = _get(cluster, "sidecar", DEFAULT_DENY_SIDECAR, "test-app")
    assert stored is not None
    assert stored["spec"]["outboundTrafficPolicy"]["mode"] == "REGISTRY_ONLY"


def test_removing_the_mode_of_the_default_sidecar_leaves_registry_only(
    demo: list[Outcome], cluster: Kubectl
) -> None:
    # an omitted mode falls back to the mesh default (ALLOW_ANY): the mutating webhook puts
    # REGISTRY_ONLY back, or validation refuses; either way the stored object stays closed
    patch = '[{"op":"remove","path":"/spec/outboundTrafficPolicy"}]'
    run(
        cluster,
        "patch",
        "sidecar",
        DEFAULT_DENY_SIDECAR,
        "-n",
        "test-app",
        "--type=json",
        "-p",
        patch,
    )
    stored = _get(cluster, "sidecar", DEFAULT_DENY_SIDECAR, "test-app")
    assert stored is not None
    assert stored["spec"]["outboundTrafficPolicy"]["mode"] == "REGISTRY_ONLY"


def test_deleting_every_sidecar_at_once_is_refused(demo: list[Outcome], cluster: Kubectl) -> None:
    outcome = run(cluster, "delete", "sidecars", "--all", "-n", "test-app", "--dry-run=server")
    assert_denied(outcome, f"Sidecar test-app/{DEFAULT_DENY_SIDECAR}")


@pytest.mark.parametrize(
    "label", ["istio-injection=disabled", "istio-injection-", "istio.io/dataplane-mode=ambient"]
)
def test_relabelling_the_namespace_out_of_the_sidecar_is_refused(
    label: str, cluster: Kubectl
) -> None:
    outcome = run(cluster, "label", "namespace", "test-app", label, "--overwrite")
    assert_denied(outcome, "test-app")
    labels = cluster.json("get", "namespace", "test-app")["metadata"]["labels"]
    assert labels.get("istio-injection") == "enabled"
    assert "istio.io/dataplane-mode" not in labels


def test_pod_opting_out_of_injection_is_refused(cluster: Kubectl) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "no-sidecar",
            "namespace": "test-app",
            "labels": {"k8s-app": "app-a", "sidecar.istio.io/inject": "false"},
        },
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]},
    }
    assert_denied(apply(cluster, pod), "sidecar.istio.io/inject")


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_every_unit_suite_attack_is_refused_by_the_live_cluster(
    attack: str, demo: list[Outcome], cluster: Kubectl
) -> None:
    (manifest,) = documents(ATTACKS[attack])
    assert_denied(apply(cluster, manifest, dry_run=True))


# --- dry-run parity -------------------------------------------------------------------------


def _parity_cases(namespace: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "Sidecar",
            "metadata": {"name": "default", "namespace": namespace},
            "spec": {
                "egress": [{"hosts": ["./*"]}],
                "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
            },
        }
    ]
    for text, _ in BREACHES.values():
        (manifest,) = documents(text)
        manifest["metadata"]["namespace"] = "test-app"
        cases.append(manifest)
    return cases


def test_server_dry_run_gives_the_real_verdict(
    demo: list[Outcome], cluster: Kubectl, new_namespace: Callable[..., str]
) -> None:
    namespace = new_namespace("dry-run")
    for manifest in _parity_cases(namespace):
        dry = apply(cluster, manifest, dry_run=True)
        real = apply(cluster, manifest)
        assert dry.returncode == real.returncode, (dry, real)
        assert dry.errors == real.errors
        assert dry.warnings == real.warnings
    # deletion too: refused the same way, with and without --dry-run=server
    dry = run(cluster, "delete", "sidecar", "default", "-n", namespace, "--dry-run=server")
    real = run(cluster, "delete", "sidecar", "default", "-n", namespace)
    assert_denied(dry, namespace)
    assert (dry.returncode, dry.errors) == (real.returncode, real.errors)

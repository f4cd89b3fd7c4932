"""Mutations: namespaces get injection, Sidecars get REGISTRY_ONLY, and twice changes nothing."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from webhook.core.mutations import Mutation, encode_patch, mutate, pointer
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Operation, Review, review_of_manifest

pytestmark = pytest.mark.unit

POLICIES = Path(__file__).resolve().parents[2] / "policies"
BANZAI = parse_policy((POLICIES / "banzai-demo.yaml").read_text())


def namespace(name: str = "team-a", labels: Any = None, *, meta: bool = True) -> dict:
    manifest: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace"}
    if meta:
        manifest["metadata"] = {"name": name}
        if labels is not None:
            manifest["metadata"]["labels"] = labels
    return manifest


def sidecar(spec: Any = ..., namespace: str = "test-app") -> dict:
    manifest: dict[str, Any] = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": namespace},
    }
    if spec is not ...:
        manifest["spec"] = spec
    return manifest


def review(manifest: dict, operation: Operation = "CREATE", name: str = "") -> Review:
    base = review_of_manifest(manifest, operation=operation)
    if name and not base.name:
        # a Namespace without metadata still has its name in the request
        return dataclasses.replace(base, name=name)
    return base


def applied(manifest: dict, mutation: Mutation) -> dict:
    result: dict = jsonpatch.apply_patch(manifest, list(mutation.patch))
    return result


def assert_idempotent(manifest: dict, operation: Operation = "CREATE") -> dict:
    """Apply the patch, then check that mutating the result asks for nothing more."""
    first = mutate(review(manifest, operation, name="team-a"), BANZAI)
    assert not first.empty
    patched = applied(manifest, first)
    second = mutate(review(patched, operation, name="team-a"), BANZAI)
    assert second.patch == ()
    return patched


# --- namespaces ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "manifest",
    [
        namespace(),
        namespace(labels={}),
        namespace(labels={"team": "a", "egress-guard.io/tier": "gold"}),
        namespace(meta=False),
    ],
)
def test_new_namespace_is_labelled_for_injection(manifest: dict) -> None:
    before = copy.deepcopy(manifest)
    patched = assert_idempotent(manifest)
    assert patched["metadata"]["labels"]["istio-injection"] == "enabled"
    assert manifest == before  # the request object is never modified in place
    if before.get("metadata", {}).get("labels"):
        assert before["metadata"]["labels"].items() <= patched["metadata"]["labels"].items()


def test_namespace_label_patch_is_a_single_add() -> None:
    mutation = mutate(review(namespace(labels={"team": "a"})), BANZAI)
    assert mutation.patch == (
        {"op": "add", "path": "/metadata/labels/istio-injection", "value": "enabled"},
    )
    assert mutation.warnings and "istio-injection=enabled" in mutation.warnings[0]


@pytest.mark.parametrize(
    "labels",
    [
        {"istio.io/rev": "canary"},
        {"istio-injection": "disabled"},
        {"istio-injection": "enabled"},
        ["not", "a", "map"],
    ],
)
def test_namespace_that_already_chose_is_left_for_validation(labels: Any) -> None:
    assert mutate(review(namespace(labels=labels)), BANZAI).patch == ()


@pytest.mark.parametrize("operation", ["UPDATE", "DELETE"])
def test_existing_namespace_is_not_patched(operation: Operation) -> None:
    assert mutate(review(namespace(), operation), BANZAI).patch == ()


@pytest.mark.parametrize("name", ["kube-system", "istio-system", "egress-guard"])
def test_excluded_namespace_is_untouched(name: str) -> None:
    assert mutate(review(namespace(name)), BANZAI).patch == ()


def test_egress_namespace_is_labelled_too() -> None:
    assert mutate(review(namespace("external")), BANZAI).patch


# --- JSON pointers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "expected"),
    [
        (("metadata", "labels", "istio-injection"), "/metadata/labels/istio-injection"),
        (("metadata", "labels", "egress-guard.io/tier"), "/metadata/labels/egress-guard.io~1tier"),
        (("a~b", "c/d~/e"), "/a~0b/c~1d~0~1e"),
    ],
)
def test_pointer_escapes_tilde_and_slash(tokens: tuple[str, ...], expected: str) -> None:
    assert pointer(*tokens) == expected


def test_escaped_pointer_addresses_the_right_key() -> None:
    doc = {"metadata": {"labels": {}}}
    ops = [{"op": "add", "path": pointer("metadata", "labels", "x.io/a~b"), "value": "v"}]
    assert jsonpatch.apply_patch(doc, ops) == {"metadata": {"labels": {"x.io/a~b": "v"}}}


def test_encode_patch_is_base64_of_the_json_patch() -> None:
    mutation = mutate(review(namespace()), BANZAI)
    assert json.loads(base64.b64decode(encode_patch(mutation.patch))) == list(mutation.patch)


# --- Sidecars --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        {"egress": [{"hosts": ["./*", "istio-system/*"]}]},
        {"egress": [{"hosts": ["./*"]}], "outboundTrafficPolicy": {}},
        {"egress": [{"hosts": ["./*"]}], "outboundTrafficPolicy": None},
        {"egress": [{"hosts": ["./*"]}], "outboundTrafficPolicy": {"mode": None}},
        {"outboundTrafficPolicy": {"egressProxy": {"host": "proxy.example", "port": 3128}}},
        ...,
    ],
)
@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_sidecar_without_outbound_mode_gets_registry_only(spec: Any, operation: Operation) -> None:
    manifest = sidecar(spec)
    before = copy.deepcopy(manifest)
    patched = assert_idempotent(manifest, operation)
    assert patched["spec"]["outboundTrafficPolicy"]["mode"] == "REGISTRY_ONLY"
    assert manifest == before
    if isinstance(spec, dict) and "egress" in spec:
        assert patched["spec"]["egress"] == spec["egress"]


@pytest.mark.parametrize("mode", ["REGISTRY_ONLY", "ALLOW_ANY"])
def test_sidecar_with_an_explicit_mode_is_untouched(mode: str) -> None:
    manifest = sidecar({"outboundTrafficPolicy": {"mode": mode}})
    assert mutate(review(manifest), BANZAI).patch == ()


@pytest.mark.parametrize("spec", ["bogus", {"outboundTrafficPolicy": "ALLOW_ANY"}])
def test_malformed_sidecar_is_left_for_validation(spec: Any) -> None:
    assert mutate(review(sidecar(spec)), BANZAI).patch == ()


def test_sidecar_in_excluded_namespace_is_untouched() -> None:
    assert mutate(review(sidecar({}, namespace="istio-system")), BANZAI).patch == ()


def test_sidecar_delete_is_not_patched() -> None:
    assert mutate(review(sidecar({}), "DELETE"), BANZAI).patch == ()


def test_sidecar_warning_names_the_object() -> None:
    mutation = mutate(review(sidecar({})), BANZAI)
    assert "Sidecar test-app/default" in mutation.warnings[0]


def test_subresource_requests_are_not_patched() -> None:
    base = review(namespace())
    sub = dataclasses.replace(base, sub_resource="status")
    assert mutate(sub, BANZAI).patch == ()


def test_other_kinds_are_not_patched() -> None:
    manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "test-app"},
        "spec": {},
    }
    assert mutate(review(manifest), BANZAI) == Mutation()


# --- Pods before injection ---------------------------------------------------------------------

STATUS = json.dumps({"containers": ["decoy"], "initContainers": None})


def bare_pod(annotations: dict[str, str] | None = None, *extra: dict[str, Any]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "test-app", "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": "curl"}, *extra]},
    }


@pytest.mark.parametrize(
    ("manifest", "mark"),
    [
        # a decoy status: the injector then merges the Pod's own istio-proxy over its own
        # (command, image, user) and writes a status naming it, recording no override
        (
            bare_pod(
                {"sidecar.istio.io/status": STATUS},
                {"name": "istio-proxy", "command": ["sh", "-c", "curl evil.example"]},
            ),
            "annotation sidecar.istio.io/status",
        ),
        (bare_pod({"proxy.istio.io/overrides": '{"containers": []}'}), "proxy.istio.io/overrides"),
        (bare_pod(None, {"name": "istio-proxy", "image": "evil.example/shell"}), "'istio-proxy'"),
        (bare_pod(None, {"name": "istio-init", "image": "busybox"}), "'istio-init'"),
    ],
)
def test_pod_arriving_with_the_injectors_marks_is_refused(manifest: dict, mark: str) -> None:
    mutation = mutate(review(manifest), BANZAI)
    assert mutation.refusal and mark in mutation.refusal
    assert mutation.patch == ()


def test_plain_pods_and_istiods_gateway_pods_pass_before_injection() -> None:
    assert mutate(review(bare_pod()), BANZAI) == Mutation()
    gateway = bare_pod(None)
    gateway["metadata"]["labels"] = {"gateway.networking.k8s.io/gateway-name": "web"}
    gateway["spec"]["containers"] = [{"name": "istio-proxy", "args": ["proxy", "router"]}]
    assert mutate(review(gateway), BANZAI) == Mutation()


def test_pods_of_excluded_namespaces_are_left_alone() -> None:
    manifest = bare_pod({"sidecar.istio.io/status": STATUS})
    manifest["metadata"]["namespace"] = "istio-system"
    assert mutate(review(manifest), BANZAI) == Mutation()

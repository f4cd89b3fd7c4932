"""Offline decisions reproduce the cluster: egress-guard's mutating patch first, then validation."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from webhook.core.admitting import admit, mutated
from webhook.core.engine import decide
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

BANZAI = parse_policy(
    (Path(__file__).resolve().parents[2] / "policies" / "banzai-demo.yaml").read_text()
)


def sidecar(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": "test-app"},
        "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}], **spec},
    }


def test_sidecar_without_outbound_policy_is_admitted_as_the_cluster_would() -> None:
    review = review_of_manifest(sidecar())
    # judged raw, the omitted mode is the mesh default ALLOW_ANY
    assert not decide(review, BANZAI).allowed
    decision = admit(review, BANZAI)
    assert decision.allowed, decision.reason
    assert any("REGISTRY_ONLY" in w for w in decision.warnings)


def test_explicit_allow_any_is_still_denied() -> None:
    review = review_of_manifest(sidecar(outboundTrafficPolicy={"mode": "ALLOW_ANY"}))
    assert not admit(review, BANZAI).allowed


def test_new_namespace_without_injection_label_is_admitted_once_labelled() -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-z"}}
    review = review_of_manifest(namespace)
    assert not decide(review, BANZAI).allowed
    assert admit(review, BANZAI).allowed
    labels = mutated(review, BANZAI).object["metadata"]["labels"]  # type: ignore[index]
    assert labels["istio-injection"] == "enabled"


def test_the_manifest_itself_is_not_changed() -> None:
    manifest = sidecar()
    before = copy.deepcopy(manifest)
    admit(review_of_manifest(manifest), BANZAI)
    assert manifest == before


def test_objects_without_a_mutation_get_the_validating_decision() -> None:
    entry = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "evil", "namespace": "test-app"},
        "spec": {"hosts": ["evil.example.org"], "ports": [{"number": 443, "name": "tls"}]},
    }
    review = review_of_manifest(entry)
    assert mutated(review, BANZAI) is review
    assert admit(review, BANZAI) == decide(review, BANZAI)


def test_deletes_are_not_mutated() -> None:
    review = review_of_manifest(sidecar(), operation="DELETE")
    assert admit(review, BANZAI) == decide(review, BANZAI)


def test_a_pod_arriving_with_the_injectors_marks_is_refused_offline_too() -> None:
    # the mutating webhook refuses it before injection; offline admit answers the same
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "test-app",
            "annotations": {"sidecar.istio.io/status": '{"containers": ["decoy"]}'},
        },
        "spec": {"containers": [{"name": "istio-proxy", "image": "evil.example/shell"}]},
    }
    decision = admit(review_of_manifest(manifest), BANZAI)
    assert not decision.allowed
    assert "refused before injection" in (decision.reason or "")

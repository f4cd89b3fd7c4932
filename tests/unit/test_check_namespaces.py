"""Namespaces: injection stays on, ambient stays off, in tenant and egress namespaces alike."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tests.unit.builders import update_review
from webhook.core.engine import decide
from webhook.core.policy import Mode
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

POLICIES = Path(__file__).resolve().parents[2] / "policies"
BANZAI = parse_policy((POLICIES / "banzai-demo.yaml").read_text())


def namespace(name: str = "test-app", labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def judge(manifest: dict[str, Any], **kwargs: Any) -> Any:
    return decide(review_of_manifest(manifest, **kwargs), BANZAI)


def update(old: dict[str, Any], new: dict[str, Any]) -> Any:
    return decide(update_review(old, new), BANZAI)


def fields(decision: Any) -> list[str]:
    return [v.field for v in decision.violations]


@pytest.mark.parametrize(
    "labels",
    [
        {"istio-injection": "enabled"},
        {"istio.io/rev": "canary"},
        {"istio-injection": "enabled", "istio.io/rev": "canary"},
        {"istio-injection": "enabled", "istio.io/dataplane-mode": "none"},
    ],
)
def test_namespace_with_injection_is_allowed(labels: dict[str, str]) -> None:
    decision = judge(namespace(labels={"team": "a", **labels}))
    assert decision.allowed, decision.reason


@pytest.mark.parametrize("value", ["disabled", "false", "Enabled", ""])
def test_injection_label_other_than_enabled_is_denied(value: str) -> None:
    decision = judge(namespace(labels={"istio-injection": value}))
    assert fields(decision) == ["metadata.labels[istio-injection]"]
    assert "without a proxy" in decision.reason


def test_disabled_injection_beats_a_revision_label() -> None:
    decision = judge(namespace(labels={"istio-injection": "disabled", "istio.io/rev": "canary"}))
    assert fields(decision) == ["metadata.labels[istio-injection]"]


@pytest.mark.parametrize("labels", [None, {}, {"team": "a"}])
def test_namespace_without_injection_labels_is_denied(labels: dict[str, str] | None) -> None:
    decision = judge(namespace(labels=labels))
    assert fields(decision) == ["metadata.labels[istio-injection]"]
    assert "mutating webhook" in decision.reason


def test_empty_revision_label_is_denied() -> None:
    decision = judge(namespace(labels={"istio.io/rev": ""}))
    assert fields(decision) == ["metadata.labels[istio.io/rev]"]


def test_update_removing_the_injection_label_is_denied() -> None:
    old = namespace(labels={"istio-injection": "enabled", "team": "a"})
    new = namespace(labels={"team": "a"})
    decision = update(old, new)
    assert fields(decision) == ["metadata.labels[istio-injection]"]
    assert "removing the injection label" in decision.reason


def test_update_switching_from_revision_to_disabled_is_denied() -> None:
    old = namespace(labels={"istio.io/rev": "canary"})
    new = namespace(labels={"istio.io/rev": "canary", "istio-injection": "disabled"})
    assert not update(old, new).allowed


def test_update_keeping_the_injection_label_is_allowed() -> None:
    old = namespace(labels={"istio-injection": "enabled"})
    new = namespace(labels={"istio-injection": "enabled", "team": "b"})
    assert update(old, new).allowed


@pytest.mark.parametrize("mode", ["ambient", "Ambient", "something-new"])
def test_ambient_dataplane_mode_is_denied(mode: str) -> None:
    labels = {"istio-injection": "enabled", "istio.io/dataplane-mode": mode}
    decision = judge(namespace(labels=labels))
    assert fields(decision) == ["metadata.labels[istio.io/dataplane-mode]"]
    assert "ignores Sidecar" in decision.reason


def test_egress_namespace_follows_the_same_rules() -> None:
    decision = judge(namespace("external", labels={"istio-injection": "disabled"}))
    assert fields(decision) == ["metadata.labels[istio-injection]"]
    assert judge(namespace("external", labels={"istio-injection": "enabled"})).allowed


def test_namespace_delete_is_allowed() -> None:
    assert judge(namespace(labels={"istio-injection": "disabled"}), operation="DELETE").allowed


@pytest.mark.parametrize("name", ["istio-system", "kube-system", "egress-guard"])
def test_excluded_namespace_needs_no_injection(name: str) -> None:
    assert judge(namespace(name, labels={"istio-injection": "disabled"})).allowed


def test_malformed_labels_are_denied_without_crashing() -> None:
    manifest = namespace()
    manifest["metadata"]["labels"] = ["istio-injection=enabled"]
    decision = judge(manifest)
    assert not decision.allowed
    assert "metadata.labels" in fields(decision)


def test_audit_mode_admits_with_a_warning() -> None:
    review = review_of_manifest(namespace(labels={"istio-injection": "disabled"}))
    decision = decide(review, dataclasses.replace(BANZAI, mode=Mode.AUDIT))
    assert decision.allowed and decision.audited
    assert any("istio-injection" in w for w in decision.warnings)

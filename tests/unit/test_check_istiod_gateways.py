"""Gateway API Gateways of class istio: the tenant's own ingress, and istiod's Deployment for it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.unit.builders import update_review
from tests.unit.test_check_gatewayapi import gateway
from tests.unit.test_check_pods import BANZAI
from webhook.core.engine import decide
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

ISTIOD = "system:serviceaccount:istio-system:istiod"
REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"
POD_LABELS = {
    "gateway.networking.k8s.io/gateway-name": "web",
    "istio.io/gateway-name": "web",
    "sidecar.istio.io/inject": "true",
}


def istiod_deployment(**extra_container: Any) -> dict[str, Any]:
    """The Deployment istiod renders for Gateway test-app/web (kube-gateway template)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web-istio",
            "namespace": "test-app",
            "labels": {
                "gateway.istio.io/managed": "istio.io-gateway-controller",
                "gateway.networking.k8s.io/gateway-name": "web",
            },
        },
        "spec": {
            "selector": {"matchLabels": {"gateway.networking.k8s.io/gateway-name": "web"}},
            "template": {
                "metadata": {
                    "labels": dict(POD_LABELS),
                    "annotations": {"inject.istio.io/templates": "gateway"},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "istio-proxy",
                            "image": "auto",
                            "securityContext": {"runAsUser": 1337, "runAsGroup": 1337},
                            **extra_container,
                        }
                    ]
                },
            },
        },
    }


def gateway_pod() -> dict[str, Any]:
    template = istiod_deployment()["spec"]["template"]
    status = json.dumps({"containers": ["istio-proxy"], "initContainers": None})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-istio-5d4f-abcde",
            "namespace": "test-app",
            "labels": template["metadata"]["labels"],
            "annotations": {
                **template["metadata"]["annotations"],
                "sidecar.istio.io/status": status,
            },
        },
        "spec": template["spec"],
    }


def judge(manifest: dict[str, Any], username: str) -> Any:
    return decide(review_of_manifest(manifest, username=username), BANZAI)


def test_tenant_gateway_of_class_istio_is_allowed() -> None:
    assert decide(review_of_manifest(gateway("istio", "test-app")), BANZAI).allowed


def test_istiods_deployment_for_the_gateway_is_allowed() -> None:
    decision = judge(istiod_deployment(), ISTIOD)
    assert decision.allowed, decision.reason


def test_a_revisioned_istiod_may_write_it_too() -> None:
    assert judge(istiod_deployment(), ISTIOD + "-canary").allowed


def test_the_gateway_pods_created_by_kubernetes_are_allowed() -> None:
    decision = judge(gateway_pod(), REPLICASET_CONTROLLER)
    assert decision.allowed, decision.reason


def test_a_tenant_writing_istiods_deployment_is_denied() -> None:
    decision = judge(istiod_deployment(), "alice")
    assert not decision.allowed
    assert "only istiod writes them" in decision.reason


def test_a_tenant_editing_istiods_deployment_is_denied() -> None:
    old = istiod_deployment()
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "attacker/shell"
    assert not decide(update_review(old, new, username="alice"), BANZAI).allowed


def test_a_tenant_pod_forging_the_gateway_labels_is_denied() -> None:
    assert not judge(gateway_pod(), "alice").allowed


def test_a_tenant_stripping_the_labels_on_update_is_denied() -> None:
    old = istiod_deployment()
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {}
    new["spec"]["template"]["metadata"]["labels"] = {"app": "web"}
    assert not decide(update_review(old, new, username="alice"), BANZAI).allowed


def test_gateway_pod_with_a_second_container_loses_the_exemption() -> None:
    pod = gateway_pod()
    pod["spec"]["containers"].append(
        {"name": "shell", "image": "curl", "securityContext": {"runAsUser": 1337}}
    )
    assert not judge(pod, REPLICASET_CONTROLLER).allowed


def test_gateway_annotations_still_meet_the_capture_rules() -> None:
    # spec.infrastructure.annotations of the Gateway reach istiod's Deployment
    deployment = istiod_deployment()
    deployment["spec"]["template"]["metadata"]["annotations"]["sidecar.istio.io/proxyImage"] = "x"
    assert not judge(deployment, ISTIOD).allowed

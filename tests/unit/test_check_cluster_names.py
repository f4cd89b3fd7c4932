"""Names and addresses that reach anywhere: pod-DNS names, externalIPs, exposed egress Services."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from tests.unit.builders import assert_denied_at, judge
from webhook.core.engine import decide
from webhook.core.hosts import is_service_name
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

BANZAI = parse_policy(
    (Path(__file__).resolve().parents[2] / "policies" / "banzai-demo.yaml").read_text()
)


@pytest.mark.parametrize(
    ("host", "internal"),
    [
        ("reviews.test-app.svc.cluster.local", True),
        ("web-0.nginx.test-app.svc.cluster.local", True),
        ("*.test-app.svc.cluster.local", True),
        ("*.svc.cluster.local", True),
        # CoreDNS answers pod records with whatever address the name spells
        ("1-2-3-4.test-app.pod.cluster.local", False),
        ("93-184-216-34.default.pod.cluster.local", False),
        ("*.pod.cluster.local", False),
        ("*.cluster.local", False),
        ("cluster.local", False),
        ("evil.cluster.local", False),
        ("example.com", False),
    ],
)
def test_only_service_names_are_internal(host: str, internal: bool) -> None:
    assert is_service_name(host, "cluster.local") is internal
    assert BANZAI.is_internal(host) is internal


def service_entry(host: str, resolution: str = "DNS") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "pod-dns", "namespace": "test-app"},
        "spec": {
            "hosts": [host],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": resolution,
            "exportTo": ["."],
        },
    }


def test_service_entry_for_a_pod_dns_name_is_denied() -> None:
    decision = judge(service_entry("93-184-216-34.test-app.pod.cluster.local"), BANZAI)
    assert not decision.allowed


def test_service_entry_for_a_pod_dns_wildcard_is_denied() -> None:
    assert not judge(service_entry("*.pod.cluster.local"), BANZAI).allowed


def test_externalname_to_a_pod_dns_name_is_denied() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "sneaky", "namespace": "test-app"},
        "spec": {"type": "ExternalName", "externalName": "93-184-216-34.default.pod.cluster.local"},
    }
    assert_denied_at(judge(service, BANZAI), "spec.externalName", "bypassing the egress gateway")


def test_externalname_to_a_service_name_is_allowed() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "alias", "namespace": "test-app"},
        "spec": {"type": "ExternalName", "externalName": "reviews.other.svc.cluster.local"},
    }
    assert judge(service, BANZAI).allowed


def cluster_ip_service(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "test-app"},
        "spec": {"selector": {"k8s-app": "web"}, "ports": [{"port": 80}], **spec},
    }


@pytest.mark.parametrize("address", ["8.8.8.8", "10.0.0.1"])
def test_service_external_ips_are_denied(address: str) -> None:
    # CVE-2020-8554: kube-proxy hands the Service every packet sent to its externalIPs
    decision = judge(cluster_ip_service(externalIPs=[address]), BANZAI)
    assert_denied_at(decision, "spec.externalIPs[0]", "CVE-2020-8554")


def test_external_ips_on_an_update_are_denied() -> None:
    manifest = cluster_ip_service(externalIPs=["1.1.1.1"])
    assert not judge(manifest, BANZAI, operation="UPDATE").allowed


def test_service_without_external_ips_is_allowed() -> None:
    assert judge(cluster_ip_service(externalIPs=[]), BANZAI).allowed
    assert judge(cluster_ip_service(type="LoadBalancer"), BANZAI).allowed


def test_load_balancer_status_address_set_by_a_tenant_is_denied() -> None:
    service = cluster_ip_service(type="LoadBalancer")
    service["status"] = {"loadBalancer": {"ingress": [{"ip": "8.8.8.8"}]}}
    review = dataclasses.replace(
        review_of_manifest(service, operation="UPDATE", username="alice"), sub_resource="status"
    )
    decision = decide(review, BANZAI)
    assert not decision.allowed
    assert [v.field for v in decision.violations] == ["status.loadBalancer.ingress[0].ip"]


def test_load_balancer_status_set_by_the_service_controller_is_allowed() -> None:
    service = cluster_ip_service(type="LoadBalancer")
    service["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}
    user = "system:serviceaccount:kube-system:service-controller"
    review = dataclasses.replace(
        review_of_manifest(service, operation="UPDATE", username=user), sub_resource="status"
    )
    assert decide(review, BANZAI).allowed


@pytest.mark.parametrize("kind", ["LoadBalancer", "NodePort"])
def test_exposing_services_in_the_egress_namespace_are_denied(kind: str) -> None:
    service = cluster_ip_service(type=kind)
    service["metadata"]["namespace"] = "external"
    assert_denied_at(judge(service, BANZAI), "spec.type", "open proxy")


def test_gateway_labelled_workload_with_its_own_code_in_the_egress_namespace_is_denied() -> None:
    labels = {"gateway-name": "egress-httpbin", "gateway-type": "egress"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "lookalike", "namespace": "external"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "relay", "image": "attacker/relay"}]},
            },
        },
    }
    assert_denied_at(
        judge(deployment, BANZAI), "spec.template.metadata.labels", "egress gateway external/"
    )

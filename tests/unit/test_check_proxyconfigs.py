"""ProxyConfig resources get the rules of the proxy.istio.io/config annotation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.builders import assert_denied_at, judge
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

BANZAI = parse_policy(
    (Path(__file__).resolve().parents[2] / "policies" / "banzai-demo.yaml").read_text()
)


def proxy_config(spec: dict[str, Any], namespace: str = "test-app") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ProxyConfig",
        "metadata": {"name": "tuning", "namespace": namespace},
        "spec": spec,
    }


def test_environment_variables_are_denied() -> None:
    manifest = proxy_config({"environmentVariables": {"ISTIO_META_DNS_CAPTURE": "false"}})
    assert_denied_at(
        judge(manifest, BANZAI), "spec.environmentVariables.ISTIO_META_DNS_CAPTURE", "proxyMetadata"
    )
    manifest = proxy_config({"environmentVariables": {"PILOT_ADDRESS": "evil.example:15012"}})
    assert_denied_at(judge(manifest, BANZAI), "spec.environmentVariables.PILOT_ADDRESS", "agent")


def test_dns_proxying_and_lifecycle_variables_are_allowed() -> None:
    variables = {"ISTIO_META_DNS_CAPTURE": "true", "EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "true"}
    assert judge(proxy_config({"environmentVariables": variables}), BANZAI).allowed


def test_image_other_than_a_variant_of_the_mesh_image_is_denied() -> None:
    manifest = proxy_config({"image": {"imageType": "custom"}})
    assert_denied_at(judge(manifest, BANZAI), "spec.image", "image")
    assert judge(proxy_config({"image": {"imageType": "debug"}}), BANZAI).allowed


def test_unknown_fields_are_denied() -> None:
    assert not judge(proxy_config({"interceptionMode": "NONE"}), BANZAI).allowed


def test_concurrency_for_selected_workloads_is_allowed() -> None:
    manifest = proxy_config({"selector": {"matchLabels": {"k8s-app": "app-a"}}, "concurrency": 2})
    assert judge(manifest, BANZAI).allowed


def test_deleting_a_proxy_config_is_allowed() -> None:
    manifest = proxy_config({"environmentVariables": {"A": "b"}})
    assert judge(manifest, BANZAI, operation="DELETE").allowed


def test_proxy_configs_in_excluded_namespaces_are_left_alone() -> None:
    manifest = proxy_config({"image": {"imageType": "distroless"}}, namespace="istio-system")
    assert judge(manifest, BANZAI).allowed

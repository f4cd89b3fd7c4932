"""The policy ConfigMap as a policy source: what reaches the store, and what is reported."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from webhook.kube.policy_watch import ConfigMapPolicySource
from webhook.policy_runtime import PolicyStore, ReloadResult, embedded_policy_text

pytestmark = pytest.mark.unit


def configmap(version: str, policy: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "policy", "namespace": "egress-guard", "resourceVersion": version},
        "data": {"policy.yaml": policy},
    }


def source(rejections: list[str] | None = None) -> ConfigMapPolicySource:
    sink = rejections if rejections is not None else []
    return ConfigMapPolicySource(
        "egress-guard",
        "policy",
        connect=client.ApiClient,
        on_rejected=lambda configmap, problem: sink.append(problem),
    )


def test_a_delivered_configmap_becomes_the_policy_in_force_with_its_origin() -> None:
    store = PolicyStore()
    result = source().deliver(configmap("1", embedded_policy_text()), store)
    assert result is not None and result.ok
    assert store.current is not None
    assert store.current.origin == "configmap:egress-guard/policy"


def test_a_rejected_configmap_keeps_the_last_good_policy_and_is_reported() -> None:
    store = PolicyStore()
    rejections: list[str] = []
    watch = source(rejections)
    watch.deliver(configmap("1", embedded_policy_text()), store)
    good = store.current
    result = watch.deliver(configmap("2", "egress: {namespace: [broken"), store)
    assert result is not None and not result.ok
    assert store.current is good
    assert len(rejections) == 1


def test_a_source_that_cannot_reach_the_api_reports_it_to_the_store() -> None:
    def unreachable() -> client.ApiClient:
        raise ConnectionError("apiserver unreachable")

    heard: list[ReloadResult] = []
    store = PolicyStore(listeners=(heard.append,))
    watch = ConfigMapPolicySource("ns", "cm", connect=unreachable, initial_timeout=5)
    watch.start(store)
    watch.stop()
    assert not store.ready
    assert heard and "apiserver unreachable" in heard[0].problems[0]
    assert not watch.synced and not watch.failed

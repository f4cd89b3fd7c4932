"""kubectl exec/attach into the proxy container: a shell whose traffic iptables never captures."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.core.decisions import Decision
from webhook.core.engine import decide
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Review, parse_review

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BANZAI = parse_policy((ROOT / "policies" / "banzai-demo.yaml").read_text())


def connect(
    kind: str, container: str | None, namespace: str = "test-app", sub: str | None = None
) -> Review:
    """A CONNECT review as the API server sends it for kubectl exec/attach."""
    options: dict[str, object] = {"kind": kind, "apiVersion": "v1", "stdin": True, "tty": True}
    if kind == "PodExecOptions":
        options["command"] = ["sh"]
    if container is not None:
        options["container"] = container
    return parse_review(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "subResource": sub or ("exec" if kind == "PodExecOptions" else "attach"),
                "name": "app-a-7d9f-abcde",
                "namespace": namespace,
                "operation": "CONNECT",
                "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
                "object": options,
            },
        }
    )


def judge(review: Review) -> Decision:
    return decide(review, BANZAI)


@pytest.mark.parametrize("kind", ["PodExecOptions", "PodAttachOptions"])
def test_exec_or_attach_into_the_proxy_is_denied(kind: str) -> None:
    decision = judge(connect(kind, "istio-proxy"))
    assert not decision.allowed
    assert [v.field for v in decision.violations] == ["container"]
    assert "1337" in decision.reason


def test_exec_into_an_injected_init_container_is_denied() -> None:
    assert not judge(connect("PodExecOptions", "istio-validation")).allowed


@pytest.mark.parametrize("container", [None, ""])
def test_exec_naming_no_container_is_denied(container: str | None) -> None:
    # the API server then picks the only container, the proxy of a gateway pod
    decision = judge(connect("PodExecOptions", container))
    assert not decision.allowed
    assert "-c NAME" in decision.reason


@pytest.mark.parametrize("kind", ["PodExecOptions", "PodAttachOptions"])
def test_exec_or_attach_into_the_application_is_allowed(kind: str) -> None:
    assert judge(connect(kind, "app")).allowed


def test_exec_into_the_proxy_in_an_excluded_namespace_is_allowed() -> None:
    assert judge(connect("PodExecOptions", "istio-proxy", namespace="istio-system")).allowed


def test_port_forward_is_not_judged() -> None:
    review = connect("PodPortForwardOptions", None, sub="portforward")
    assert judge(review).allowed


def test_exec_with_a_malformed_container_is_denied() -> None:
    review = connect("PodExecOptions", None)
    bad = Review(
        **{**{f: getattr(review, f) for f in review.__slots__}, "object": {"container": 7}}
    )
    assert not judge(bad).allowed

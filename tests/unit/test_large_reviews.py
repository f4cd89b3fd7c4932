"""Large reviews: answered with the garbage collector paused, and past the decision cache."""

from __future__ import annotations

import gc
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import orjson
import pytest

from webhook.admission.app import utc_now
from webhook.admission.metrics import Metrics
from webhook.admission.policy_edits import NoObjects
from webhook.admission.reviewing import (
    JSON,
    NO_GC_BODY_BYTES,
    UNCACHED_BODY_BYTES,
    ReviewHandler,
)
from webhook.core.mutations import Mutation
from webhook.core.policy import Policy
from webhook.core.policy_admission import SecurityTeam
from webhook.core.reviews import Review
from webhook.policy_runtime import PolicyStore

pytestmark = pytest.mark.unit

POLICY = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: egress}
externalServices:
  - name: httpbin
    hosts: [httpbin.org]
    ports: [{number: 443, protocol: TLS}]
allow:
  - {name: team-a, from: {namespace: team-a}, to: [httpbin]}
"""


class SpyView:
    """A cluster view with no Sidecars that notes whether the collector ran while it was read."""

    generation = 1

    def __init__(self, fail: bool = False) -> None:
        self.gc_enabled: list[bool] = []
        self.fail = fail

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        del namespace
        self.gc_enabled.append(gc.isenabled())
        if self.fail:
            raise RuntimeError("the view broke")
        return ()

    def namespace_addresses(self, namespace: str) -> Collection[str] | None:
        del namespace
        return None


def handler(view: SpyView, mutated: list[bool] | None = None) -> tuple[ReviewHandler, Metrics]:
    store = PolicyStore()
    assert store.update(POLICY, origin="test").ok

    def mutator(review: Review, policy: Policy) -> Mutation:
        del review, policy
        if mutated is not None:
            mutated.append(gc.isenabled())
        return Mutation((), ())

    metrics = Metrics()
    return (
        ReviewHandler(
            store=store,
            metrics=metrics,
            mutator=mutator,
            view=view,
            log_allowed=False,
            cache_size=64,
            clock=utc_now,
            policy_configmap=None,
            cluster_objects=NoObjects(),
            security_team=SecurityTeam(),
        ),
        metrics,
    )


def sidecar_review(pad: int, *, uid: str = "u1") -> bytes:
    """A dry-run Sidecar review (always worth a digest) padded to about ``pad`` bytes."""
    return orjson.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "networking.istio.io", "version": "v1", "kind": "Sidecar"},
                "resource": {
                    "group": "networking.istio.io",
                    "version": "v1",
                    "resource": "sidecars",
                },
                "operation": "CREATE",
                "namespace": "team-a",
                "name": "default",
                "userInfo": {"username": "alice", "groups": ["devs"]},
                "object": {
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "Sidecar",
                    "metadata": {
                        "name": "default",
                        "namespace": "team-a",
                        "annotations": {"pad": "x" * pad},
                    },
                    "spec": {
                        "egress": [{"hosts": ["./*", "istio-system/*"]}],
                        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
                    },
                },
                "oldObject": None,
                "dryRun": True,
            },
        }
    )


def cache_lookups(metrics: Metrics) -> float:
    total = 0.0
    for result in ("hit", "miss"):
        value = metrics.registry.get_sample_value(
            "egress_guard_decision_cache_total", {"result": result}
        )
        total += value or 0.0
    return total


@pytest.fixture
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def answer(h: ReviewHandler, body: bytes, endpoint: str = "validate") -> dict[str, Any]:
    status, out, _ = h.answer(endpoint, JSON, body)
    assert status == 200
    response: dict[str, Any] = orjson.loads(out)["response"]
    return response


@pytest.mark.usefixtures("collector_on")
def test_a_small_review_is_decided_with_the_collector_on_and_cached() -> None:
    view = SpyView()
    h, metrics = handler(view)
    assert answer(h, sidecar_review(100))["allowed"] is True
    assert answer(h, sidecar_review(100, uid="u2"))["allowed"] is True
    assert view.gc_enabled == [True]  # the second answer came from the cache
    assert cache_lookups(metrics) == 2


@pytest.mark.usefixtures("collector_on")
def test_a_large_review_is_decided_with_the_collector_paused_then_resumed() -> None:
    view = SpyView()
    h, _ = handler(view)
    body = sidecar_review(NO_GC_BODY_BYTES)
    assert UNCACHED_BODY_BYTES > len(body) >= NO_GC_BODY_BYTES
    assert answer(h, body)["allowed"] is True
    assert view.gc_enabled == [False]
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_a_large_mutation_is_made_with_the_collector_paused() -> None:
    mutated: list[bool] = []
    h, _ = handler(SpyView(), mutated)
    assert answer(h, sidecar_review(NO_GC_BODY_BYTES), "mutate")["allowed"] is True
    assert mutated == [False]
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_on")
def test_the_collector_resumes_after_a_failing_decision_and_a_bad_body() -> None:
    h, _ = handler(SpyView(fail=True))
    response = answer(h, sidecar_review(NO_GC_BODY_BYTES))
    assert response["allowed"] is False
    assert gc.isenabled()
    status, _, _ = h.answer("validate", JSON, b"{" + b" " * NO_GC_BODY_BYTES)
    assert status == 400
    assert gc.isenabled()


def test_a_collector_disabled_by_someone_else_stays_disabled() -> None:
    was = gc.isenabled()
    gc.disable()
    try:
        view = SpyView()
        h, _ = handler(view)
        assert answer(h, sidecar_review(NO_GC_BODY_BYTES))["allowed"] is True
        assert view.gc_enabled == [False]
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()


@pytest.mark.usefixtures("collector_on")
def test_a_review_past_a_mebibyte_skips_the_decision_cache() -> None:
    view = SpyView()
    h, metrics = handler(view)
    for uid in ("u1", "u2"):
        assert answer(h, sidecar_review(UNCACHED_BODY_BYTES, uid=uid))["allowed"] is True
    # both decided, neither digested nor looked up
    assert view.gc_enabled == [False, False]
    assert cache_lookups(metrics) == 0
    assert len(h.cache) == 0


def test_a_large_review_is_kept_for_the_caller_to_free_after_the_response() -> None:
    h, _ = handler(SpyView())
    kept: list[object] = []
    status, out, _ = h.answer("validate", JSON, sidecar_review(NO_GC_BODY_BYTES), keep=kept)
    assert status == 200
    assert orjson.loads(out)["response"]["allowed"] is True
    (review,) = kept
    assert isinstance(review, Review)
    assert review.object is not None
    assert review.object["metadata"]["annotations"]["pad"] == "x" * NO_GC_BODY_BYTES


def test_a_small_review_or_a_refused_body_is_never_kept() -> None:
    h, _ = handler(SpyView())
    kept: list[object] = []
    assert h.answer("validate", JSON, sidecar_review(100), keep=kept)[0] == 200
    assert h.answer("validate", JSON, b"{" + b" " * NO_GC_BODY_BYTES, keep=kept)[0] == 400
    assert kept == []

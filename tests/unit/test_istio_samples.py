"""Istio's own samples as a corpus of legitimate manifests, decided as ``egress-guard check`` does.

The samples ship in the pinned ``istio.io/istio`` module. Applied by a tenant of ``test-app``
under ``banzai-demo``, everything that stays inside the mesh must pass whole; what reaches
outside (``external/``, bookinfo's ``egress-rule-google-apis.yaml``) must be refused, and so
are bookinfo's rate-limit EnvoyFilters, by design: an EnvoyFilter can send traffic anywhere
without the policy seeing where.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.istio_module import istio_module_dir
from webhook.core.admitting import admit
from webhook.core.checks.listed_view import ListedView
from webhook.core.decisions import Decision
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Review, review_of_manifest

pytestmark = pytest.mark.unit

POLICY: Final = Path(__file__).resolve().parents[2] / "policies" / "banzai-demo.yaml"
NAMESPACE: Final = "test-app"
SAMPLE_DIRS: Final = ("bookinfo", "httpbin", "helloworld", "tcp-echo", "websockets", "external")

# (file under samples/, kind, name) of every object refused.
REFUSED: Final = frozenset(
    {
        ("bookinfo/networking/egress-rule-google-apis.yaml", "ServiceEntry", "googleapis"),
        (
            "bookinfo/networking/egress-rule-google-apis.yaml",
            "VirtualService",
            "rewrite-port-for-googleapis",
        ),
        ("bookinfo/policy/productpage_envoy_ratelimit.yaml", "EnvoyFilter", "filter-ratelimit"),
        (
            "bookinfo/policy/productpage_envoy_ratelimit.yaml",
            "EnvoyFilter",
            "filter-ratelimit-svc",
        ),
        ("external/aptget.yaml", "ServiceEntry", "make-aptget-work"),
        ("external/github.yaml", "ServiceEntry", "github-https"),
        ("external/github.yaml", "ServiceEntry", "github-tcp"),
        ("external/pypi.yaml", "ServiceEntry", "python-https"),
        ("external/pypi.yaml", "ServiceEntry", "pypi-https"),
        ("external/pypi.yaml", "ServiceEntry", "pythonhosted-https"),
    }
)
# Objects per sample directory at the pinned version: the corpus is read whole, so a
# directory that yields fewer objects (a parse change, a moved file) fails here.
OBJECTS_PER_DIR: Final = {
    "bookinfo": 124,
    "tcp-echo": 20,
    "helloworld": 13,
    "httpbin": 11,
    "external": 6,
    "websockets": 4,
}
# Files that hold no Kubernetes objects (an OpenAPI document).
NOT_MANIFESTS: Final = frozenset({"bookinfo/swagger.yaml"})

Key = tuple[str, str, str]


def _corpus(samples: Path) -> tuple[list[tuple[Key, Review]], set[str]]:
    reviews: list[tuple[Key, Review]] = []
    skipped: set[str] = set()
    for sub in SAMPLE_DIRS:
        files = sorted((samples / sub).rglob("*.yaml")) + sorted((samples / sub).rglob("*.yml"))
        assert files, f"samples/{sub} holds no manifests"
        for path in files:
            where = path.relative_to(samples).as_posix()
            for doc in yaml.safe_load_all(path.read_text()):
                if doc is None:
                    continue
                if not isinstance(doc, Mapping) or not doc.get("kind") or not doc.get("apiVersion"):
                    skipped.add(where)
                    continue
                # applied into test-app, whatever namespace a sample names (the rate-limit
                # filters name istio-system, which the guardrail excludes)
                meta = doc.get("metadata")
                meta = {**meta, "namespace": NAMESPACE} if isinstance(meta, Mapping) else meta
                review = review_of_manifest({**doc, "metadata": meta}, namespace=NAMESPACE)
                reviews.append(((where, review.kind, review.name), review))
    return reviews, skipped


def _view(reviews: Sequence[tuple[Key, Review]]) -> ListedView:
    sidecars = [r.object for _, r in reviews if r.kind == "Sidecar" and r.object is not None]
    return ListedView({NAMESPACE: sidecars} if sidecars else {})


@pytest.fixture(scope="module")
def decisions() -> dict[Key, Decision]:
    reviews, skipped = _corpus(istio_module_dir() / "samples")
    assert skipped == NOT_MANIFESTS
    policy = parse_policy(POLICY.read_text())
    view = _view(reviews)
    decided: dict[Key, Decision] = {}
    for key, review in reviews:
        assert key not in decided, f"{key} appears twice"
        decided[key] = admit(review, policy, view=view)
    return decided


def test_the_corpus_is_read_whole(decisions: Mapping[Key, Any]) -> None:
    per_dir = Counter(where.split("/", 1)[0] for where, _, _ in decisions)
    assert dict(per_dir) == OBJECTS_PER_DIR


def test_exactly_the_egress_samples_and_the_rate_limit_filters_are_refused(
    decisions: Mapping[Key, Decision],
) -> None:
    refused = {key for key, decision in decisions.items() if not decision.allowed}
    assert refused == REFUSED, {key: decisions[key].reason for key in refused ^ REFUSED}


def test_everything_that_stays_inside_passes_whole(decisions: Mapping[Key, Decision]) -> None:
    kept = {key: d for key, d in decisions.items() if key not in REFUSED}
    assert len(kept) == sum(OBJECTS_PER_DIR.values()) - len(REFUSED)
    assert all(d.allowed for d in kept.values()), {
        key: d.reason for key, d in kept.items() if not d.allowed
    }
    kinds = Counter(kind for _, kind, _ in kept)
    # The ingress side of the samples is part of what must pass: classic and Gateway API.
    assert kinds["Gateway"] == 10
    assert kinds["HTTPRoute"] == 12
    assert kinds["VirtualService"] == 28


def test_every_object_of_external_is_refused(decisions: Mapping[Key, Decision]) -> None:
    external = {key: d for key, d in decisions.items() if key[0].startswith("external/")}
    assert len(external) == OBJECTS_PER_DIR["external"]
    assert not any(d.allowed for d in external.values())


def test_the_rate_limit_envoyfilters_are_refused_for_what_envoyfilters_can_do(
    decisions: Mapping[Key, Decision],
) -> None:
    filters = {key: d for key, d in decisions.items() if key[1] == "EnvoyFilter"}
    assert set(filters) == {k for k in REFUSED if k[1] == "EnvoyFilter"}
    for decision in filters.values():
        assert "any destination" in decision.reason

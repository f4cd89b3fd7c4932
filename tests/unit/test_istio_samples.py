"""Istio's own samples as a corpus of legitimate manifests, decided as ``egress-guard check`` does.

The samples ship in the pinned ``istio.io/istio`` module. Applied by a tenant of ``test-app``
under ``banzai-demo``, everything that stays inside the mesh must pass whole; what reaches
outside (``external/``, bookinfo's ``egress-rule-google-apis.yaml``) must be refused. So is, by
design, every object that takes a pod's traffic out of the proxy's hands or rewrites the proxy:
the rate-limit EnvoyFilters (an EnvoyFilter can send traffic anywhere without the policy seeing
where), pods opting out of injection (ext-authz's server, the OpenTelemetry collector and the
telemetry addons, which their samples install outside the mesh), proxyless gRPC (the
``grpc-agent`` template captures nothing), a custom Envoy bootstrap, node agents on the host's
network (SPIRE's agent, the core-dump enabler), ambient waypoints, the east-west gateway's
``AUTO_PASSTHROUGH`` server and the secure-metrics Prometheus mounting volumes into its proxy.
The addons and the multicluster gateway are platform installs (``istio-system``, which the
guardrail excludes); decided as a tenant would apply them, these refusals are the right ones.
Each refused object is pinned with the class of its reason.
"""

from __future__ import annotations

import copy
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
# The directories of samples/ without Kubernetes manifests: no YAML (builder, certs,
# wasm_modules, kind-lb) or a Skaffold file (cicd).
OTHER_DIRS: Final = frozenset({"builder", "certs", "wasm_modules", "kind-lb", "cicd"})
# Every other directory of samples/.
SAMPLE_DIRS: Final = (
    "bookinfo",
    "httpbin",
    "helloworld",
    "tcp-echo",
    "websockets",
    "external",
    "curl",
    "sleep",
    "extauthz",
    "grpc-echo",
    "health-check",
    "jwt-server",
    "mtls-echo",
    "ratelimit",
    "security",
    "proxy-coredump",
    "custom-bootstrap",
    "open-telemetry",
    "ambient-argo",
    "multicluster",
    "addons",
)

# What each class of refusal says (a fragment of the reason).
REASONS: Final = {
    "host not allowed": "is not an external service",
    "host allowed to some workloads only": "is allowed only to some workloads",
    "EnvoyFilter": "can send traffic to any destination",
    "injection off": "stops Istio from injecting the sidecar",
    "proxyless gRPC": "injection template(s) 'grpc-agent' are not the sidecar template",
    "custom bootstrap": "gives the proxy a custom Envoy bootstrap",
    "node agent": "puts the pod on the node's network",
    "waypoint": "class 'istio-waypoint' makes istiod deploy a gateway proxy",
    "AUTO_PASSTHROUGH": "AUTO_PASSTHROUGH lets clients pick any destination",
    "proxy volumes": "mounts tenant volumes into the proxy",
}
# (file under samples/, kind, name) of every object refused, with the class of its reason.
REFUSED: Final = {
    ("bookinfo/networking/egress-rule-google-apis.yaml", "ServiceEntry", "googleapis"): (
        "host not allowed"
    ),
    (
        "bookinfo/networking/egress-rule-google-apis.yaml",
        "VirtualService",
        "rewrite-port-for-googleapis",
    ): "host not allowed",
    ("bookinfo/policy/productpage_envoy_ratelimit.yaml", "EnvoyFilter", "filter-ratelimit"): (
        "EnvoyFilter"
    ),
    ("bookinfo/policy/productpage_envoy_ratelimit.yaml", "EnvoyFilter", "filter-ratelimit-svc"): (
        "EnvoyFilter"
    ),
    ("external/aptget.yaml", "ServiceEntry", "make-aptget-work"): "host not allowed",
    ("external/github.yaml", "ServiceEntry", "github-https"): (
        "host allowed to some workloads only"
    ),
    ("external/github.yaml", "ServiceEntry", "github-tcp"): "host not allowed",
    ("external/pypi.yaml", "ServiceEntry", "python-https"): "host not allowed",
    ("external/pypi.yaml", "ServiceEntry", "pypi-https"): "host not allowed",
    ("external/pypi.yaml", "ServiceEntry", "pythonhosted-https"): "host not allowed",
    ("ratelimit/local-rate-limit-service.yaml", "EnvoyFilter", "filter-local-ratelimit-svc"): (
        "EnvoyFilter"
    ),
    ("extauthz/ext-authz.yaml", "Deployment", "ext-authz"): "injection off",
    ("open-telemetry/otel.yaml", "Deployment", "opentelemetry-collector"): "injection off",
    ("open-telemetry/loki/otel.yaml", "Deployment", "opentelemetry-collector"): "injection off",
    ("addons/grafana.yaml", "Deployment", "grafana"): "injection off",
    ("addons/jaeger.yaml", "Deployment", "jaeger"): "injection off",
    ("addons/kiali.yaml", "Deployment", "kiali"): "injection off",
    ("addons/prometheus.yaml", "Deployment", "prometheus"): "injection off",
    ("addons/extras/skywalking.yaml", "Deployment", "skywalking-oap"): "injection off",
    ("addons/extras/skywalking.yaml", "Deployment", "skywalking-ui"): "injection off",
    ("addons/extras/zipkin.yaml", "Deployment", "zipkin"): "injection off",
    ("addons/extras/prometheus-secure-metrics.yaml", "Deployment", "prometheus"): ("proxy volumes"),
    ("grpc-echo/grpc-echo.yaml", "Deployment", "echo-v1"): "proxyless gRPC",
    ("grpc-echo/grpc-echo.yaml", "Deployment", "echo-v2"): "proxyless gRPC",
    ("custom-bootstrap/example-app.yaml", "Deployment", "helloworld-v1"): "custom bootstrap",
    ("security/spire/spire-quickstart.yaml", "DaemonSet", "spire-agent"): "node agent",
    ("proxy-coredump/daemonset.yaml", "DaemonSet", "enable-istio-coredumps"): "node agent",
    ("ambient-argo/application/details-waypoint.yaml", "Gateway", "bookinfo-details"): ("waypoint"),
    ("ambient-argo/application/reviews-waypoint.yaml", "Gateway", "bookinfo-reviews"): ("waypoint"),
    ("multicluster/expose-services.yaml", "Gateway", "cross-network-gateway"): "AUTO_PASSTHROUGH",
}
# Objects per sample directory at the pinned version: the corpus is read whole, so a
# directory that yields fewer objects (a parse change, a moved file) fails here.
OBJECTS_PER_DIR: Final = {
    "bookinfo": 124,
    "tcp-echo": 20,
    "helloworld": 13,
    "httpbin": 11,
    "external": 6,
    "websockets": 4,
    "curl": 3,
    "sleep": 3,
    "extauthz": 7,
    "grpc-echo": 3,
    "health-check": 4,
    "jwt-server": 3,
    "mtls-echo": 2,
    "ratelimit": 5,
    "security": 38,
    "proxy-coredump": 1,
    "custom-bootstrap": 2,
    "open-telemetry": 9,
    "ambient-argo": 33,
    "multicluster": 6,
    "addons": 49,
}
# Files that hold no Kubernetes objects: an OpenAPI document, Helm chart metadata and values,
# and Helm templates (not YAML before rendering).
NOT_MANIFESTS: Final = frozenset(
    {
        "bookinfo/swagger.yaml",
        "ambient-argo/tag-chart/Chart.yaml",
        "ambient-argo/tag-chart/values.yaml",
        "ambient-argo/tag-chart/templates/mutatingwebhooks.yaml",
        "ambient-argo/tag-chart/templates/shimservice.yaml",
        "ambient-argo/tag-chart/templates/validatingwebhook.yaml",
        "security/spire-trust-domain-federation/spire-base.yaml",
        "security/spire-trust-domain-federation/spire-east.yaml",
        "security/spire-trust-domain-federation/spire-west.yaml",
    }
)

Key = tuple[str, str, str]


def _corpus(samples: Path) -> tuple[list[tuple[Key, Review]], set[str]]:
    reviews: list[tuple[Key, Review]] = []
    skipped: set[str] = set()
    for sub in SAMPLE_DIRS:
        files = sorted((samples / sub).rglob("*.yaml")) + sorted((samples / sub).rglob("*.yml"))
        assert files, f"samples/{sub} holds no manifests"
        for path in files:
            where = path.relative_to(samples).as_posix()
            try:
                docs = list(yaml.safe_load_all(path.read_text()))
            except yaml.YAMLError:
                skipped.add(where)
                continue
            for doc in docs:
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


def test_every_sample_directory_is_decided_or_holds_no_manifests() -> None:
    samples = istio_module_dir() / "samples"
    found = {path.name for path in samples.iterdir() if path.is_dir()}
    assert found == set(SAMPLE_DIRS) | OTHER_DIRS
    for name in OTHER_DIRS - {"cicd"}:
        assert not [*(samples / name).rglob("*.yaml"), *(samples / name).rglob("*.yml")], name


def test_the_corpus_is_read_whole(decisions: Mapping[Key, Any]) -> None:
    per_dir = Counter(where.split("/", 1)[0] for where, _, _ in decisions)
    assert dict(per_dir) == OBJECTS_PER_DIR


def test_exactly_the_pinned_objects_are_refused(decisions: Mapping[Key, Decision]) -> None:
    refused = {key for key, decision in decisions.items() if not decision.allowed}
    assert refused == set(REFUSED), {key: decisions[key].reason for key in refused ^ set(REFUSED)}


def test_each_refusal_gives_the_reason_of_its_class(decisions: Mapping[Key, Decision]) -> None:
    wrong = {
        key: decisions[key].reason
        for key, reason in REFUSED.items()
        if REASONS[reason] not in decisions[key].reason
    }
    assert not wrong


def test_everything_that_stays_inside_passes_whole(decisions: Mapping[Key, Decision]) -> None:
    kept = {key: d for key, d in decisions.items() if key not in REFUSED}
    assert len(kept) == sum(OBJECTS_PER_DIR.values()) - len(REFUSED)
    assert all(d.allowed for d in kept.values()), {
        key: d.reason for key, d in kept.items() if not d.allowed
    }
    kinds = Counter(kind for _, kind, _ in kept)
    # The ingress side of the samples is part of what must pass: classic and Gateway API.
    assert kinds["Gateway"] == 13
    assert kinds["HTTPRoute"] == 14
    assert kinds["VirtualService"] == 30


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


def test_the_pods_outside_the_mesh_are_refused_for_that_alone() -> None:
    # ext-authz, the collectors and the addons: with the opt-out gone they pass whole, so
    # nothing else in them (ports, volumes, probes, security contexts) is held against them
    reviews, _ = _corpus(istio_module_dir() / "samples")
    opted_out = {key for key, reason in REFUSED.items() if reason == "injection off"}
    policy = parse_policy(POLICY.read_text())
    found = set()
    for key, review in reviews:
        if key not in opted_out:
            continue
        found.add(key)
        manifest = copy.deepcopy(dict(review.object or {}))
        template = manifest["spec"]["template"]["metadata"]
        removed = [
            (template.get(field) or {}).pop("sidecar.istio.io/inject", None)
            for field in ("labels", "annotations")
        ]
        assert "false" in removed, key
        decision = admit(review_of_manifest(manifest, namespace=NAMESPACE), policy)
        assert decision.allowed, (key, decision.reason)
    assert found == opted_out

"""Istio's Gateway API conversion inputs as a corpus, decided as ``egress-guard check`` does.

``pilot/pkg/config/kube/gateway/testdata/*.yaml`` in the pinned ``istio.io/istio`` module are
the inputs of istiod's Gateway API translation tests: Gateways, ListenerSets and routes as users
write them, ingress and mesh (GAMMA), some deliberately invalid. Applied by a tenant of
``test-app`` under ``banzai-demo`` (whatever namespace they name), what is refused is what
leaves the mesh or escapes the Sidecar: ``Hostname`` backends and entries for hosts the
namespace may not reach directly, backends of kinds egress-guard cannot follow, gateway proxies
no Sidecar governs (waypoint and east-west classes), network gateways, ``parametersRef``
overlays and mesh TLSRoutes matching external SNI names. Everything else passes, mesh
HTTPRoutes whose ``hostnames`` are an ingress's public names included: istiod names a mesh
route after its parent (docs/istio-semantics.md#mesh-route-hostnames).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Final

import pytest
import yaml

from tests.istio_module import istio_module_dir
from webhook.core.admitting import admit
from webhook.core.decisions import Decision
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

POLICY: Final = Path(__file__).resolve().parents[2] / "policies" / "banzai-demo.yaml"
NAMESPACE: Final = "test-app"
TESTDATA: Final = "pilot/pkg/config/kube/gateway/testdata"
OBJECTS: Final = 288

# (file, kind, namespace as written, name) -> fragment of the reason
Key = tuple[str, str, str, str]
NOT_ALLOWED: Final = "is not an external service allowed to every namespace"
SOME_WORKLOADS: Final = "is allowed only to some workloads or service accounts"
PROXY_CLASS: Final = "makes istiod deploy a gateway proxy"
NETWORK: Final = "makes istiod take this Gateway's addresses for the gateway of network"
PARAMETERS: Final = "spec.infrastructure.parametersRef: istiod merges the referenced ConfigMap"
UNKNOWN_KIND: Final = "is not a kind egress-guard can follow"
HOSTNAME: Final = "a Hostname backend sends the route's traffic straight to"
TLS_SNI: Final = "a TLSRoute attached to a mesh Service steers every sidecar's TLS"
REFUSED: Final[dict[Key, str]] = {
    ("backend-tls-policy.yaml", "ServiceEntry", "default", "external-service"): NOT_ALLOWED,
    ("backend-tls-policy.yaml", "ServiceEntry", "default", "multi-host-service"): NOT_ALLOWED,
    ("foreign-waypoint.yaml", "ServiceEntry", "default", "mcp"): NOT_ALLOWED,
    ("serviceentry.yaml", "ServiceEntry", "default", "egress"): SOME_WORKLOADS,
    ("valid-invalid-parent-ref.yaml", "ServiceEntry", "default", "egress"): SOME_WORKLOADS,
    ("east-west-ambient.yaml", "Gateway", "istio-system", "eastwestgateway"): PROXY_CLASS,
    ("east-west-ambient.yaml", "Gateway", "istio-system", "invalid"): PROXY_CLASS,
    ("east-west-ambient.yaml", "Gateway", "istio-system", "with-tls-passthrough"): PROXY_CLASS,
    ("listenerset-invalid.yaml", "Gateway", "istio-system", "waypoint"): PROXY_CLASS,
    ("waypoint.yaml", "Gateway", "ns", "invalid"): PROXY_CLASS,
    ("waypoint.yaml", "Gateway", "ns", "namespace"): PROXY_CLASS,
    ("eastwest.yaml", "Gateway", "istio-system", "eastwestgateway"): NETWORK,
    ("eastwest-labelport.yaml", "Gateway", "istio-system", "eastwestgateway"): NETWORK,
    ("eastwest-remote.yaml", "Gateway", "istio-system", "eastwestgateway"): NETWORK,
    ("eastwest-tlsoption.yaml", "Gateway", "istio-system", "eastwestgateway"): NETWORK,
    (
        "gateway-invalid-parameters-ref.yaml",
        "Gateway",
        "istio-system",
        "invalid-parameters-type",
    ): PARAMETERS,
    (
        "gateway-invalid-parameters-ref.yaml",
        "Gateway",
        "istio-system",
        "missing-parameters-configmap",
    ): PARAMETERS,
    (
        "gateway-invalid-parameters-ref.yaml",
        "Gateway",
        "istio-system",
        "valid-parameters-configmap",
    ): PARAMETERS,
    ("foreign-waypoint.yaml", "HTTPRoute", "default", "mcp"): UNKNOWN_KIND,
    ("invalid.yaml", "HTTPRoute", "default", "invalid-backendRef-kind"): UNKNOWN_KIND,
    ("invalid.yaml", "HTTPRoute", "default", "invalid-backendRef-mixed"): UNKNOWN_KIND,
    ("invalid.yaml", "HTTPRoute", "default", "invalid-backendRef-serviceimport"): UNKNOWN_KIND,
    ("invalid.yaml", "HTTPRoute", "default", "invalid-mirror"): UNKNOWN_KIND,
    ("mcs.yaml", "TCPRoute", "istio-system", "tcp"): UNKNOWN_KIND,
    ("invalid.yaml", "HTTPRoute", "default", "invalid-backendRef-hostname"): HOSTNAME,
    ("serviceentry.yaml", "HTTPRoute", "default", "egress"): HOSTNAME,
    ("serviceentry.yaml", "HTTPRoute", "default", "http"): HOSTNAME,
    ("serviceentry.yaml", "TCPRoute", "default", "egress"): HOSTNAME,
    ("serviceentry.yaml", "TLSRoute", "default", "egress"): HOSTNAME,
    ("mesh.yaml", "TLSRoute", "default", "tls"): TLS_SNI,
}
# Mesh HTTPRoutes whose hostnames no sidecar sees (an ingress's names, or names for the parent)
MESH_HOSTNAMES: Final = frozenset(
    {
        ("mesh.yaml", "HTTPRoute", "default", "dual"),
        ("route-precedence.yaml", "HTTPRoute", "allowed-1", "http"),
        ("route-precedence.yaml", "HTTPRoute", "allowed-2", "http"),
    }
)


@pytest.fixture(scope="module")
def decisions() -> dict[Key, Decision]:
    policy = parse_policy(POLICY.read_text())
    decided: dict[Key, Decision] = {}
    files = sorted((istio_module_dir() / TESTDATA).glob("*.yaml"))
    assert files, f"{TESTDATA} holds no inputs"
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, Mapping) or not doc.get("kind"):
                continue
            meta = doc.get("metadata")
            assert isinstance(meta, Mapping), path.name
            written = str(meta.get("namespace", ""))
            manifest = {**doc, "metadata": {**meta, "namespace": NAMESPACE}}
            review = review_of_manifest(manifest, namespace=NAMESPACE)
            key = (path.name, review.kind, written, review.name)
            assert key not in decided, f"{key} appears twice"
            decided[key] = admit(review, policy)
    return decided


def test_the_inputs_are_read_whole(decisions: Mapping[Key, Decision]) -> None:
    assert len(decisions) == OBJECTS


def test_exactly_the_pinned_objects_are_refused(decisions: Mapping[Key, Decision]) -> None:
    refused = {key for key, decision in decisions.items() if not decision.allowed}
    assert refused == set(REFUSED), {key: decisions[key].reason for key in refused ^ set(REFUSED)}


def test_each_refusal_gives_the_reason_of_its_class(decisions: Mapping[Key, Decision]) -> None:
    wrong = {
        key: decisions[key].reason
        for key, fragment in REFUSED.items()
        if fragment not in decisions[key].reason
    }
    assert not wrong


def test_mesh_http_routes_pass_whatever_their_hostnames(
    decisions: Mapping[Key, Decision],
) -> None:
    for key in MESH_HOSTNAMES:
        assert decisions[key].allowed, decisions[key].reason

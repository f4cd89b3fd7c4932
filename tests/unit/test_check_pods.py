"""Pods and pod templates: every way a compromised tenant could step around its sidecar."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.builders import update_review
from webhook.core.checks import EmptyView
from webhook.core.checks.pods import check_pod
from webhook.core.engine import decide
from webhook.core.policy import Mode
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest

pytestmark = pytest.mark.unit

POLICIES = Path(__file__).resolve().parents[2] / "policies"
BANZAI = parse_policy((POLICIES / "banzai-demo.yaml").read_text())
FIREWALL = parse_policy((POLICIES / "istio-egress-firewall.yaml").read_text())
STATUS = json.dumps(
    {
        "initContainers": ["istio-init"],
        "containers": ["istio-proxy"],
        "volumes": ["istio-envoy", "istio-data"],
        "imagePullSecrets": None,
        "revision": "default",
    }
)


def deployment(namespace: str = "test-app") -> dict[str, Any]:
    """A realistic Deployment: an app, a log shipper, an init container, probes, resources."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app-a", "namespace": namespace, "labels": {"k8s-app": "app-a"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"k8s-app": "app-a"}},
            "template": {
                "metadata": {
                    "labels": {"k8s-app": "app-a", "version": "v1"},
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "sidecar.istio.io/proxyCPU": "100m",
                    },
                },
                "spec": {
                    "serviceAccountName": "app-a",
                    "securityContext": {"runAsNonRoot": True, "fsGroup": 2000},
                    "initContainers": [
                        {
                            "name": "migrate",
                            "image": "registry.example/app-a:1.2",
                            "command": ["/app/migrate"],
                        }
                    ],
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example/app-a:1.2",
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "securityContext": {
                                "runAsUser": 1000,
                                "runAsGroup": 1000,
                                "allowPrivilegeEscalation": False,
                                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                            },
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        },
                        {
                            "name": "log-shipper",
                            "image": "registry.example/fluent-bit:3",
                            "securityContext": {"runAsUser": 1001},
                        },
                    ],
                },
            },
        },
    }


def template(manifest: dict[str, Any]) -> dict[str, Any]:
    """The pod template of a Deployment manifest (mutable, for the test to edit)."""
    result: dict[str, Any] = manifest["spec"]["template"]
    return result


def injected_pod(namespace: str = "test-app") -> dict[str, Any]:
    """A Pod as the validating webhook sees it after the Istio injector ran (no CNI)."""
    tpl = copy.deepcopy(template(deployment(namespace)))
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "app-a-7d9f-abcde",
            "namespace": namespace,
            "labels": {**tpl["metadata"]["labels"], "security.istio.io/tlsMode": "istio"},
            "annotations": {**tpl["metadata"]["annotations"], "sidecar.istio.io/status": STATUS},
        },
        "spec": tpl["spec"],
    }
    pod["spec"]["initContainers"].append(
        {
            "name": "istio-init",
            "image": "docker.io/istio/proxyv2:1.30.3",
            "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337"],
            "securityContext": {
                "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                "runAsUser": 0,
                "runAsGroup": 0,
                "runAsNonRoot": False,
            },
        }
    )
    pod["spec"]["containers"].append(
        {
            "name": "istio-proxy",
            "image": "docker.io/istio/proxyv2:1.30.3",
            "args": ["proxy", "sidecar"],
            "securityContext": {"runAsUser": 1337, "runAsGroup": 1337, "runAsNonRoot": True},
        }
    )
    return pod


def judge(manifest: dict[str, Any], policy: Any = BANZAI, **kwargs: Any) -> Any:
    return decide(review_of_manifest(manifest, **kwargs), policy)


def fields(decision: Any) -> list[str]:
    return [v.field for v in decision.violations]


def test_realistic_deployment_is_allowed() -> None:
    decision = judge(deployment())
    assert decision.allowed, decision.reason
    assert not decision.violations


def test_injected_pod_with_istio_init_net_admin_is_allowed() -> None:
    decision = judge(injected_pod())
    assert decision.allowed, decision.reason


# --- injection opt-out -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "annotations", "field"),
    [
        ({"sidecar.istio.io/inject": "false"}, {}, "labels[sidecar.istio.io/inject]"),
        ({"sidecar.istio.io/inject": "False"}, {}, "labels[sidecar.istio.io/inject]"),
        ({"sidecar.istio.io/inject": "no"}, {}, "labels[sidecar.istio.io/inject]"),
        ({"sidecar.istio.io/inject": "off"}, {}, "labels[sidecar.istio.io/inject]"),
        # injectRequired() does not trim: " true" is not a yes
        ({"sidecar.istio.io/inject": " true"}, {}, "labels[sidecar.istio.io/inject]"),
        ({}, {"sidecar.istio.io/inject": "false"}, "annotations[sidecar.istio.io/inject]"),
        # the label wins over the annotation
        (
            {"sidecar.istio.io/inject": "false"},
            {"sidecar.istio.io/inject": "true"},
            "labels[sidecar.istio.io/inject]",
        ),
    ],
)
def test_injection_opt_out_is_denied(
    labels: dict[str, str], annotations: dict[str, str], field: str
) -> None:
    manifest = deployment()
    template(manifest)["metadata"]["labels"].update(labels)
    template(manifest)["metadata"]["annotations"].update(annotations)
    decision = judge(manifest)
    assert not decision.allowed
    assert fields(decision) == [f"spec.template.metadata.{field}"]
    assert "egress allow list" in decision.reason


@pytest.mark.parametrize("value", ["true", "TRUE", "yes", "on", "y", ""])
def test_injection_label_values_that_keep_injection_are_allowed(value: str) -> None:
    manifest = deployment()
    template(manifest)["metadata"]["labels"]["sidecar.istio.io/inject"] = value
    assert judge(manifest).allowed


def test_injection_label_true_overrides_annotation_false() -> None:
    manifest = deployment()
    template(manifest)["metadata"]["labels"]["sidecar.istio.io/inject"] = "true"
    template(manifest)["metadata"]["annotations"]["sidecar.istio.io/inject"] = "false"
    assert judge(manifest).allowed


# --- capture-shrinking and proxy-replacing annotations ----------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "0.0.0.0/0"),
        ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "203.0.113.7/32"),
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "443"),
        ("traffic.sidecar.istio.io/excludeInterfaces", "eth0"),
        ("traffic.sidecar.istio.io/includeOutboundIPRanges", "10.0.0.0/8"),
        ("traffic.sidecar.istio.io/includeOutboundIPRanges", ""),
        ("sidecar.istio.io/interceptionMode", "NONE"),
        ("sidecar.istio.io/interceptionMode", "none"),
        ("sidecar.istio.io/interceptionMode", "bogus"),
        ("sidecar.istio.io/proxyImage", "evil.example/proxy:latest"),
        ("sidecar.istio.io/bootstrapOverride", "my-bootstrap"),
        ("sidecar.istio.io/userVolume", '{"v":{"configMap":{"name":"x"}}}'),
        ("sidecar.istio.io/userVolumeMount", '{"v":{"mountPath":"/var/lib/istio/envoy"}}'),
        ("sidecar.istio.io/discoveryAddress", "evil.example:15012"),
        ("proxy.istio.io/overrides", '{"containers":[{"name":"istio-proxy","image":"evil"}]}'),
        ("inject.istio.io/templates", "gateway"),
        ("inject.istio.io/templates", "grpc-agent"),
        ("inject.istio.io/templates", "sidecar,gateway"),
        ("inject.istio.io/templates", "spire"),
        ("inject.istio.io/templates", "sidecar,spire,grpc-agent"),
        ("ambient.istio.io/redirection", "disabled"),
        ("sidecar.istio.io/status", STATUS),
    ],
)
def test_bypass_annotation_on_template_is_denied(key: str, value: str) -> None:
    manifest = deployment()
    template(manifest)["metadata"]["annotations"][key] = value
    decision = judge(manifest)
    assert not decision.allowed
    assert fields(decision) == [f"spec.template.metadata.annotations[{key}]"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("traffic.sidecar.istio.io/includeOutboundIPRanges", "*"),
        ("traffic.sidecar.istio.io/excludeOutboundIPRanges", ""),
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "  "),
        ("traffic.sidecar.istio.io/includeOutboundPorts", "8443"),
        ("traffic.sidecar.istio.io/excludeInboundPorts", "9090"),
        ("sidecar.istio.io/interceptionMode", "REDIRECT"),
        ("sidecar.istio.io/interceptionMode", "TPROXY"),
        ("inject.istio.io/templates", "sidecar"),
        ("sidecar.istio.io/proxyImageType", "distroless"),
        ("sidecar.istio.io/logLevel", "debug"),
        ("proxy.istio.io/config", "holdApplicationUntilProxyStarts: true\nconcurrency: 2\n"),
        ("proxy.istio.io/config", '{"terminationDrainDuration": "30s"}'),
        ("proxy.istio.io/config", ""),
        # Istio's per-pod DNS proxying, lifecycle switches, tracing rate, image variants
        (
            "proxy.istio.io/config",
            'proxyMetadata: {ISTIO_META_DNS_CAPTURE: "true", ISTIO_META_DNS_AUTO_ALLOCATE: "true"}',
        ),
        ("proxy.istio.io/config", 'proxyMetadata: {EXIT_ON_ZERO_ACTIVE_CONNECTIONS: "true"}'),
        (
            "proxy.istio.io/config",
            "tracing: {sampling: 100.0, customTags: {team: {literal: {value: a}}}}",
        ),
        ("proxy.istio.io/config", "image: {imageType: distroless}"),
        ("inject.istio.io/templates", "sidecar,spire"),
    ],
)
def test_harmless_sidecar_annotation_is_allowed(key: str, value: str) -> None:
    manifest = deployment()
    template(manifest)["metadata"]["annotations"][key] = value
    decision = judge(manifest)
    assert decision.allowed, decision.reason


@pytest.mark.parametrize(
    "config",
    [
        '{"interceptionMode": "NONE"}',
        "interceptionMode: NONE",
        "tracing:\n  zipkin:\n    address: collector.evil.example:9411\n",
        '{"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "false"}}',
        '{"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true", "PILOT_ADDRESS": "x:15012"}}',
        '{"proxyMetadata": "ISTIO_META_DNS_CAPTURE=true"}',
        "tracing: {sampling: 1, zipkin: {address: collector.evil.example:9411}}",
        "image: {imageType: custom}",
        "image: {imageType: debug, hub: evil.example}",
        '{"discoveryAddress": "evil.example:15012"}',
        '{"holdApplicationUntilProxyStarts": true, "interceptionMode": "NONE"}',
        "{not yaml",
        "- a list",
        "just a string",
    ],
)
def test_proxy_config_beyond_lifecycle_fields_is_denied(config: str) -> None:
    manifest = deployment()
    template(manifest)["metadata"]["annotations"]["proxy.istio.io/config"] = config
    decision = judge(manifest)
    assert not decision.allowed
    assert fields(decision) == ["spec.template.metadata.annotations[proxy.istio.io/config]"]


def test_ambient_dataplane_label_on_pod_is_denied() -> None:
    manifest = deployment()
    template(manifest)["metadata"]["labels"]["istio.io/dataplane-mode"] = "ambient"
    decision = judge(manifest)
    assert fields(decision) == ["spec.template.metadata.labels[istio.io/dataplane-mode]"]


def test_ambient_opt_out_label_on_sidecar_pod_is_allowed() -> None:
    manifest = deployment()
    template(manifest)["metadata"]["labels"]["istio.io/dataplane-mode"] = "none"
    assert judge(manifest).allowed


# --- the node as the client: probes, hooks and volumes -----------------------------------------


@pytest.mark.parametrize(
    ("container", "field"),
    [
        (
            {"readinessProbe": {"httpGet": {"host": "evil.example", "port": 443, "path": "/b"}}},
            "readinessProbe.httpGet.host",
        ),
        (
            {"livenessProbe": {"tcpSocket": {"host": "198.51.100.9", "port": 25}}},
            "livenessProbe.tcpSocket.host",
        ),
        (
            {"startupProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}}},
            "startupProbe.httpGet.host",
        ),
        (
            {"lifecycle": {"postStart": {"httpGet": {"host": "203.0.113.7", "port": 80}}}},
            "lifecycle.postStart.httpGet.host",
        ),
        (
            {"lifecycle": {"preStop": {"tcpSocket": {"host": "203.0.113.7", "port": 80}}}},
            "lifecycle.preStop.tcpSocket.host",
        ),
    ],
)
def test_probe_or_hook_naming_a_host_is_denied(container: dict[str, Any], field: str) -> None:
    # the kubelet connects from the node, outside the mesh, with the path and headers given
    manifest = deployment()
    template(manifest)["spec"]["containers"][0].update(container)
    assert fields(judge(manifest)) == [f"spec.template.spec.containers[0].{field}"]
    init = deployment()
    template(init)["spec"]["initContainers"][0].update(container)
    assert fields(judge(init)) == [f"spec.template.spec.initContainers[0].{field}"]


def test_probes_and_hooks_on_the_pod_itself_are_allowed() -> None:
    manifest = deployment()
    template(manifest)["spec"]["containers"][0].update(
        {
            "readinessProbe": {"httpGet": {"port": 8080, "path": "/ready", "host": ""}},
            "livenessProbe": {"tcpSocket": {"port": 8080}},
            "startupProbe": {"exec": {"command": ["true"]}},
            "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
        }
    )
    assert judge(manifest).allowed


@pytest.mark.parametrize(
    "volume",
    [
        {"nfs": {"server": "203.0.113.7", "path": "/exports"}},
        {"gitRepo": {"repository": "https://evil.example/x.git"}},
        {"iscsi": {"targetPortal": "203.0.113.7:3260", "iqn": "iqn.x", "lun": 0}},
        {"cephfs": {"monitors": ["203.0.113.7:6789"]}},
        {"flexVolume": {"driver": "example/smb", "options": {"server": "203.0.113.7"}}},
        {"azureFile": {"secretName": "acct", "shareName": "loot"}},
    ],
)
def test_volume_the_node_mounts_from_afar_is_denied(volume: dict[str, Any]) -> None:
    manifest = deployment()
    spec = template(manifest)["spec"]
    spec["volumes"] = [{"name": "cache", "emptyDir": {}}, {"name": "out", **volume}]
    assert fields(judge(manifest)) == [f"spec.template.spec.volumes[1].{next(iter(volume))}"]


def test_volumes_the_node_serves_itself_are_allowed() -> None:
    manifest = deployment()
    template(manifest)["spec"]["volumes"] = [
        {"name": "a", "emptyDir": {}},
        {"name": "b", "configMap": {"name": "c"}},
        {"name": "c", "secret": {"secretName": "s"}},
        {"name": "d", "projected": {"sources": []}},
        {"name": "e", "downwardAPI": {"items": []}},
        {"name": "f", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "g", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        {"name": "h", "csi": {"driver": "secrets-store.csi.k8s.io", "readOnly": True}},
        {"name": "j", "image": {"reference": "registry.example/data:1"}},
    ]
    assert judge(manifest).allowed


@pytest.mark.parametrize(
    "path",
    [
        # the container runtime's socket: ``ctr run --net-host`` starts a container no
        # admission sees, on the node's network
        "/run/containerd/containerd.sock",
        # a hostNetwork static pod written here runs even when its mirror Pod is refused
        "/etc/kubernetes/manifests",
        # with SYS_ADMIN, nsenter into the node's or another pod's network namespace
        "/proc",
        "/run/netns",
        "/var/log",
    ],
)
@pytest.mark.parametrize("read_only", [False, True])
def test_host_path_volume_is_denied(path: str, read_only: bool) -> None:
    # read-only does not help: connect() on a unix socket works on a read-only mount
    manifest = deployment()
    source: dict[str, Any] = {"path": path}
    if read_only:
        source["readOnly"] = True
    spec = template(manifest)["spec"]
    spec["volumes"] = [{"name": "cache", "emptyDir": {}}, {"name": "node", "hostPath": source}]
    decision = judge(manifest)
    assert fields(decision) == ["spec.template.spec.volumes[1].hostPath"]
    assert "container runtime" in decision.reason
    assert "emptyDir or a PersistentVolumeClaim" in decision.reason


def test_host_path_volume_on_a_pod_is_denied() -> None:
    pod = injected_pod()
    pod["spec"]["volumes"] = [
        {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
        {"name": "sock", "hostPath": {"path": "/run/containerd/containerd.sock", "type": "Socket"}},
    ]
    assert fields(judge(pod)) == ["spec.volumes[1].hostPath"]


# --- pod spec: host network, proxy IDs, privileges --------------------------------------------


def test_host_network_is_denied() -> None:
    manifest = deployment()
    template(manifest)["spec"]["hostNetwork"] = True
    assert fields(judge(manifest)) == ["spec.template.spec.hostNetwork"]


@pytest.mark.parametrize(
    ("key", "opens"),
    [("hostPID", "process namespace"), ("hostIPC", "IPC namespace")],
)
@pytest.mark.parametrize("kind", ["Deployment", "Pod"])
def test_host_pid_and_ipc_are_denied(key: str, opens: str, kind: str) -> None:
    manifest = deployment() if kind == "Deployment" else injected_pod()
    spec = template(manifest)["spec"] if kind == "Deployment" else manifest["spec"]
    spec[key] = True
    decision = judge(manifest)
    prefix = "spec.template.spec" if kind == "Deployment" else "spec"
    assert fields(decision) == [f"{prefix}.{key}"]
    assert opens in decision.reason
    assert "platform namespace" in decision.reason


@pytest.mark.parametrize("key", ["hostPID", "hostIPC", "hostNetwork"])
def test_host_namespaces_set_false_are_allowed(key: str) -> None:
    manifest = deployment()
    template(manifest)["spec"][key] = False
    assert judge(manifest).allowed


def test_host_pid_on_a_cron_job_template_is_denied() -> None:
    job_template = copy.deepcopy(template(deployment()))
    job_template["spec"]["hostPID"] = True
    job_template["spec"]["restartPolicy"] = "Never"
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "test-app"},
        "spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": job_template}}},
    }
    assert fields(judge(cron)) == ["spec.jobTemplate.spec.template.spec.hostPID"]


@pytest.mark.parametrize(
    ("where", "key", "field"),
    [
        ("pod", "runAsUser", "spec.template.spec.securityContext.runAsUser"),
        ("pod", "runAsGroup", "spec.template.spec.securityContext.runAsGroup"),
        ("pod", "fsGroup", "spec.template.spec.securityContext.fsGroup"),
        ("app", "runAsUser", "spec.template.spec.containers[0].securityContext.runAsUser"),
        ("app", "runAsGroup", "spec.template.spec.containers[0].securityContext.runAsGroup"),
        ("shipper", "runAsUser", "spec.template.spec.containers[1].securityContext.runAsUser"),
        ("init", "runAsUser", "spec.template.spec.initContainers[0].securityContext.runAsUser"),
    ],
)
def test_pod_running_as_proxy_uid_or_gid_is_denied(where: str, key: str, field: str) -> None:
    manifest = deployment()
    spec = template(manifest)["spec"]
    target = {
        "pod": lambda: spec["securityContext"],
        "app": lambda: spec["containers"][0]["securityContext"],
        "shipper": lambda: spec["containers"][1]["securityContext"],
        "init": lambda: spec["initContainers"][0].setdefault("securityContext", {}),
    }[where]()
    target[key] = 1337
    decision = judge(manifest)
    assert not decision.allowed
    assert fields(decision) == [field]
    assert "1337" in decision.reason


def test_supplemental_group_1337_is_denied() -> None:
    manifest = deployment()
    template(manifest)["spec"]["securityContext"]["supplementalGroups"] = [3000, 1337]
    fields_found = fields(judge(manifest))
    assert fields_found == ["spec.template.spec.securityContext.supplementalGroups[1]"]


def test_ephemeral_container_running_as_proxy_uid_is_denied() -> None:
    pod = injected_pod()
    pod["spec"]["ephemeralContainers"] = [
        {"name": "debug", "image": "busybox", "securityContext": {"runAsUser": 1337}}
    ]
    decision = judge(pod)
    assert fields(decision) == ["spec.ephemeralContainers[0].securityContext.runAsUser"]


def test_neighbouring_uid_is_allowed() -> None:
    manifest = deployment()
    template(manifest)["spec"]["containers"][0]["securityContext"]["runAsUser"] = 1338
    assert judge(manifest).allowed


@pytest.mark.parametrize("cap", ["NET_ADMIN", "NET_RAW", "ALL", "net_admin", "CAP_NET_RAW"])
def test_container_with_network_capability_is_denied(cap: str) -> None:
    manifest = deployment()
    template(manifest)["spec"]["containers"][1]["securityContext"]["capabilities"] = {"add": [cap]}
    decision = judge(manifest)
    assert fields(decision) == [
        "spec.template.spec.containers[1].securityContext.capabilities.add[0]"
    ]
    assert "iptables rules or send raw packets" in decision.reason


@pytest.mark.parametrize(
    "cap",
    [
        # nsenter into the node's or the egress gateway's network namespace
        "SYS_ADMIN",
        # with shareProcessNamespace, drive the uncaptured proxy
        "SYS_PTRACE",
        "cap_sys_admin",
        " Sys_Ptrace ",
        "BPF",
        "SYS_MODULE",
        "SYS_TIME",
        "NET_BROADCAST",
        "PERFMON",
        "DAC_READ_SEARCH",
        # names no runtime knows today are refused as well
        "CHECKPOINT_RESTORE_2",
        "CAP_CAP_CHOWN",
        "CHOWNS",
        "",
    ],
)
def test_capability_beyond_pod_security_baseline_is_denied(cap: str) -> None:
    manifest = deployment()
    security = template(manifest)["spec"]["containers"][0]["securityContext"]
    security["capabilities"] = {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", cap]}
    decision = judge(manifest)
    assert fields(decision) == [
        "spec.template.spec.containers[0].securityContext.capabilities.add[1]"
    ]
    assert "Pod Security baseline" in decision.reason


@pytest.mark.parametrize(
    "cap",
    [
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
        "cap_setuid",
        " CAP_NET_BIND_SERVICE ",
        "Kill",
    ],
)
def test_pod_security_baseline_capabilities_are_allowed(cap: str) -> None:
    manifest = deployment()
    template(manifest)["spec"]["containers"][1]["securityContext"]["capabilities"] = {"add": [cap]}
    decision = judge(manifest)
    assert decision.allowed, decision.reason


def test_sys_admin_with_host_pid_names_both() -> None:
    manifest = deployment()
    spec = template(manifest)["spec"]
    spec["hostPID"] = True
    spec["containers"][0]["securityContext"]["capabilities"] = {"add": ["SYS_ADMIN", "SYS_PTRACE"]}
    assert fields(judge(manifest)) == [
        "spec.template.spec.hostPID",
        "spec.template.spec.containers[0].securityContext.capabilities.add[0]",
        "spec.template.spec.containers[0].securityContext.capabilities.add[1]",
    ]


def test_injected_containers_keep_their_capabilities() -> None:
    # istio-init adds NET_ADMIN and NET_RAW; in TPROXY mode the proxy adds NET_ADMIN too
    pod = injected_pod()
    proxy = pod["spec"]["containers"][-1]
    proxy["securityContext"]["capabilities"] = {"add": ["NET_ADMIN"], "drop": ["ALL"]}
    assert judge(pod).allowed


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("seccompProfile", {"type": "Unconfined"}),
        ("appArmorProfile", {"type": "Unconfined"}),
        ("procMount", "Unmasked"),
    ],
)
def test_unconfined_profiles_and_proc_mount_are_left_to_pod_security(key: str, value: Any) -> None:
    # no path to the network on their own once host namespaces, hostPath and capabilities
    # beyond the baseline are refused; Pod Security baseline judges them
    manifest = deployment()
    template(manifest)["spec"]["containers"][0]["securityContext"][key] = value
    assert judge(manifest).allowed


def test_privileged_init_container_is_denied() -> None:
    manifest = deployment()
    template(manifest)["spec"]["initContainers"][0]["securityContext"] = {"privileged": True}
    decision = judge(manifest)
    assert fields(decision) == ["spec.template.spec.initContainers[0].securityContext.privileged"]


@pytest.mark.parametrize(
    ("list_name", "name"),
    [
        ("containers", "istio-proxy"),
        ("initContainers", "istio-init"),
        ("initContainers", "istio-validation"),
    ],
)
def test_template_defining_an_injected_container_is_denied(list_name: str, name: str) -> None:
    manifest = deployment()
    template(manifest)["spec"][list_name].append({"name": name, "image": "evil.example/x"})
    decision = judge(manifest)
    index = len(template(manifest)["spec"][list_name]) - 1
    assert f"spec.template.spec.{list_name}[{index}].name" in fields(decision)


# --- injected Pods --------------------------------------------------------------------------


def test_injected_pod_still_checks_application_containers() -> None:
    pod = injected_pod()
    pod["spec"]["containers"][0]["securityContext"]["capabilities"]["add"] = ["NET_ADMIN"]
    decision = judge(pod)
    assert fields(decision) == ["spec.containers[0].securityContext.capabilities.add[0]"]


def test_injected_name_not_listed_in_status_is_checked() -> None:
    pod = injected_pod()
    status = json.loads(STATUS)
    status["initContainers"] = []
    pod["metadata"]["annotations"]["sidecar.istio.io/status"] = json.dumps(status)
    decision = judge(pod)
    assert not decision.allowed
    assert "spec.initContainers[1].name" in fields(decision)
    assert "spec.initContainers[1].securityContext.capabilities.add[0]" in fields(decision)


def test_status_listing_an_application_container_does_not_exempt_it() -> None:
    pod = injected_pod()
    status = json.loads(STATUS)
    status["containers"].append("log-shipper")
    pod["metadata"]["annotations"]["sidecar.istio.io/status"] = json.dumps(status)
    pod["spec"]["containers"][1]["securityContext"]["runAsUser"] = 1337
    assert fields(judge(pod)) == ["spec.containers[1].securityContext.runAsUser"]


def test_unparseable_status_exempts_nothing() -> None:
    pod = injected_pod()
    pod["metadata"]["annotations"]["sidecar.istio.io/status"] = "{broken"
    decision = judge(pod)
    assert not decision.allowed
    assert "spec.containers[2].securityContext.runAsUser" in fields(decision)


def test_bare_pod_without_injection_defining_istio_proxy_is_denied() -> None:
    pod = injected_pod()
    del pod["metadata"]["annotations"]["sidecar.istio.io/status"]
    decision = judge(pod)
    assert "spec.containers[2].name" in fields(decision)
    assert "spec.initContainers[1].name" in fields(decision)


def test_injected_pod_carrying_proxy_overrides_is_denied() -> None:
    pod = injected_pod()
    pod["metadata"]["annotations"]["proxy.istio.io/overrides"] = json.dumps(
        {"containers": [{"name": "istio-proxy", "image": "evil.example/proxy"}]}
    )
    assert fields(judge(pod)) == ["metadata.annotations[proxy.istio.io/overrides]"]


# --- Pod UPDATE ------------------------------------------------------------------------------


def update(old: dict[str, Any], new: dict[str, Any], policy: Any = BANZAI) -> Any:
    return decide(update_review(old, new), policy)


def test_pod_update_adding_exclusion_annotation_is_denied() -> None:
    old = injected_pod()
    new = copy.deepcopy(old)
    new["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeOutboundPorts"] = "443"
    decision = update(old, new)
    assert fields(decision) == [
        "metadata.annotations[traffic.sidecar.istio.io/excludeOutboundPorts]"
    ]


def test_pod_update_of_a_pod_that_predates_the_guardrail_only_judges_what_it_adds() -> None:
    old = injected_pod()
    old["metadata"]["labels"]["sidecar.istio.io/inject"] = "false"
    new = copy.deepcopy(old)
    new["metadata"]["labels"]["team"] = "payments"
    assert update(old, new).allowed


def test_pod_update_swapping_the_proxy_image_is_denied() -> None:
    old = injected_pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][2]["image"] = "evil.example/proxy:latest"
    decision = update(old, new)
    assert fields(decision) == ["spec.containers[2].image"]


def test_pod_update_of_application_image_is_allowed() -> None:
    old = injected_pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "registry.example/app-a:1.3"
    assert update(old, new).allowed


def test_pod_delete_is_allowed() -> None:
    pod = injected_pod()
    pod["spec"]["hostNetwork"] = True
    assert judge(pod, operation="DELETE").allowed


# --- every workload kind ---------------------------------------------------------------------


def _workload(kind: str, api_version: str) -> dict[str, Any]:
    base = deployment()
    tpl = template(base)
    tpl["spec"]["hostNetwork"] = True
    if kind == "CronJob":
        spec: dict[str, Any] = {"schedule": "@hourly", "jobTemplate": {"spec": {"template": tpl}}}
    else:
        spec = {"template": tpl}
    return {"apiVersion": api_version, "kind": kind, "metadata": base["metadata"], "spec": spec}


@pytest.mark.parametrize(
    ("kind", "api_version", "field"),
    [
        ("Deployment", "apps/v1", "spec.template.spec.hostNetwork"),
        ("StatefulSet", "apps/v1", "spec.template.spec.hostNetwork"),
        ("DaemonSet", "apps/v1", "spec.template.spec.hostNetwork"),
        ("ReplicaSet", "apps/v1", "spec.template.spec.hostNetwork"),
        ("ReplicationController", "v1", "spec.template.spec.hostNetwork"),
        ("Job", "batch/v1", "spec.template.spec.hostNetwork"),
        ("CronJob", "batch/v1", "spec.jobTemplate.spec.template.spec.hostNetwork"),
    ],
)
def test_every_workload_kind_has_its_pod_template_checked(
    kind: str, api_version: str, field: str
) -> None:
    assert fields(judge(_workload(kind, api_version))) == [field]


# --- malformed objects -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda m: template(m)["spec"].update(containers="app"), "spec.template.spec.containers"),
        (
            lambda m: template(m)["metadata"].update(annotations=["x"]),
            "spec.template.metadata.annotations",
        ),
        (lambda m: m["spec"].update(template=None), None),
        (lambda m: m["spec"].update(template=7), "spec.template"),
        (
            lambda m: template(m)["spec"]["containers"][0].update(securityContext="root"),
            "spec.template.spec.containers[0].securityContext",
        ),
    ],
)
def test_malformed_workload_is_judged_without_crashing(mutate: Any, field: str | None) -> None:
    manifest = deployment()
    mutate(manifest)
    decision = judge(manifest)
    if field is None:
        assert decision.allowed
    else:
        assert field in fields(decision)


# --- egress gateways, audit, exclusions ------------------------------------------------------


def gateway_deployment(namespace: str) -> dict[str, Any]:
    """An egress gateway as istiod deploys it for a Gateway API Gateway (no injection)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "istio-egressgateway", "namespace": namespace},
        "spec": {
            "template": {
                "metadata": {
                    "labels": {"istio": "egressgateway", "sidecar.istio.io/inject": "false"},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "istio-proxy",
                            "image": "docker.io/istio/proxyv2:1.30.3",
                            "args": ["proxy", "router"],
                            "securityContext": {"runAsUser": 1337, "runAsGroup": 1337},
                        }
                    ]
                },
            }
        },
    }


def test_policy_egress_gateway_in_egress_namespace_is_allowed() -> None:
    assert judge(gateway_deployment("istio-egress"), FIREWALL).allowed


def test_gateway_lookalike_in_tenant_namespace_is_denied() -> None:
    decision = judge(gateway_deployment("team-a"), FIREWALL)
    assert not decision.allowed
    assert "spec.template.metadata.labels[sidecar.istio.io/inject]" in fields(decision)


def test_egress_gateway_with_an_extra_container_loses_the_exemption() -> None:
    manifest = gateway_deployment("istio-egress")
    template(manifest)["spec"]["containers"].append({"name": "tool", "image": "curl"})
    decision = judge(manifest, FIREWALL)
    assert not decision.allowed
    assert "spec.template.spec.containers[0].name" in fields(decision)


def test_audit_mode_admits_a_bypass_with_a_warning() -> None:
    manifest = deployment()
    template(manifest)["spec"]["hostNetwork"] = True
    decision = judge(manifest, dataclasses.replace(BANZAI, mode=Mode.AUDIT))
    assert decision.allowed and decision.audited
    assert any("hostNetwork" in w for w in decision.warnings)


def test_excluded_namespace_is_not_checked() -> None:
    manifest = deployment("kube-system")
    template(manifest)["spec"]["hostNetwork"] = True
    assert judge(manifest).allowed


def test_helm_style_egress_gateway_with_gateway_template_is_allowed() -> None:
    manifest = gateway_deployment("istio-egress")
    tpl = template(manifest)
    tpl["metadata"]["labels"]["sidecar.istio.io/inject"] = "true"
    tpl["metadata"]["annotations"] = {"inject.istio.io/templates": "gateway"}
    tpl["spec"]["containers"][0] = {"name": "istio-proxy", "image": "auto"}
    assert judge(manifest, FIREWALL).allowed


def test_gateway_template_on_a_tenant_workload_is_denied() -> None:
    manifest = gateway_deployment("team-a")
    tpl = template(manifest)
    tpl["metadata"]["labels"]["sidecar.istio.io/inject"] = "true"
    tpl["metadata"]["annotations"] = {"inject.istio.io/templates": "gateway"}
    tpl["spec"]["containers"][0] = {"name": "istio-proxy", "image": "auto"}
    decision = judge(manifest, FIREWALL)
    assert "spec.template.metadata.annotations[inject.istio.io/templates]" in fields(decision)


def test_pod_check_judges_an_ephemeral_container_added_through_the_subresource() -> None:
    # kubectl debug --profile=sysadmin adds a privileged container through pods/ephemeralcontainers
    old = injected_pod()
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [
        {"name": "debugger", "image": "busybox", "securityContext": {"privileged": True}}
    ]
    review = update_review(old, new, sub_resource="ephemeralcontainers")
    assert review.namespace == "test-app"
    found = list(check_pod(review, BANZAI, EmptyView()))
    assert [v.field for v in found] == ["spec.ephemeralContainers[0].securityContext.privileged"]
    decision = decide(review, BANZAI)
    assert not decision.allowed
    assert [v.field for v in decision.violations] == [
        "spec.ephemeralContainers[0].securityContext.privileged"
    ]


def test_status_subresource_is_not_judged() -> None:
    pod = injected_pod()
    pod["spec"]["hostNetwork"] = True
    review = update_review(pod, pod, username="system:node:n1", sub_resource="status")
    assert review.namespace == "test-app"
    assert decide(review, BANZAI).allowed

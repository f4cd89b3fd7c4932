"""Pods and pod templates: the ways a workload can step around its sidecar (tamper-proofing).

``REGISTRY_ONLY`` is enforced by the pod's own proxy, and only for traffic that iptables hands to it
(docs/istio-semantics.md#traffic-capture, traps 12 and 16).  A compromised tenant who can write a
Deployment can switch injection off, shrink what iptables captures, swap the proxy, run as the
proxy's UID/GID 1337 (which iptables lets through), rewrite the rules with ``NET_ADMIN``, or leave
the pod's network namespace altogether: directly (``hostNetwork``) or through the node (its process
namespace, its files and sockets, capabilities beyond Pod Security baseline's), which no sidecar
and no NetworkPolicy covers.  Each of those is refused here, in the pod template (so the
developer hears it at ``kubectl apply``) and again on the Pod itself.

The Istio injector is a mutating webhook and runs before validation, so a Pod CREATE may already
carry ``istio-init``/``istio-proxy`` with ``NET_ADMIN`` and UID 1337: those containers are
skipped when the injector's ``sidecar.istio.io/status`` annotation names them.  A template is
never injected, so a container with one of those names there is the tenant's own override
(istiod merges its fields over the injected ones) and is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import compress
from operator import not_
from typing import Any

import yaml

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import (
    DATAPLANE_MODE,
    Reader,
    ambient_mode,
    egress_gateway_selecting,
    many,
    type_name,
)
from webhook.core.checks.injection import (
    INJECTED_CONTAINERS,
    STATUS,
    pod_invariants,
    proxy_alone,
    status_names,
)
from webhook.core.checks.injector_inputs import (
    PROXY_IMAGE_TYPES,
    check_injected_containers,
    check_mounts,
    check_template_values,
    check_template_volumes,
)
from webhook.core.checks.istiod_gateways import authorship_violations, gateway_name
from webhook.core.decisions import STOP_AFTER_VIOLATIONS, EnoughViolations, Violation
from webhook.core.policy import Policy
from webhook.core.reviews import Review

PROXY_ID = 1337
PROXY_CONTAINER = "istio-proxy"
INJECT = "sidecar.istio.io/inject"
TEMPLATES = "inject.istio.io/templates"
# templates merged after the sidecar one that only add to it: Istio's SPIRE integration mounts
# the SPIFFE workload socket into the proxy
ADDED_TEMPLATES = frozenset({"spire"})
PROXY_CONFIG = "proxy.istio.io/config"
INTERCEPTION_MODE = "sidecar.istio.io/interceptionMode"
INCLUDE_OUTBOUND_IPS = "traffic.sidecar.istio.io/includeOutboundIPRanges"

CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
# injectRequired() in istio/istio pkg/kube/inject/inject.go: these values inject, "" means the
# namespace default; anything else ("false", "no", "False", "off", typos) skips injection
INJECTING_VALUES = frozenset({"", "y", "yes", "true", "on"})
CAPTURING_MODES = frozenset({"REDIRECT", "TPROXY"})
# Pod Security baseline's capabilities: the only ones ``capabilities.add`` may name.  Beyond
# them a container can enter other network namespaces (SYS_ADMIN, with SYS_PTRACE for a
# process's), drive the uncaptured proxy (SYS_PTRACE), load kernel code (SYS_MODULE, BPF) or
# rewrite the pod's iptables rules (NET_ADMIN), past the sidecar and the NetworkPolicy layer; an
# allow list also refuses names the runtime learns after this list was written
BASELINE_CAPABILITIES = frozenset(
    {
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
    }
)
BASELINE_CAPABILITIES_TEXT = ", ".join(sorted(BASELINE_CAPABILITIES))
# refused ones that touch the pod's own network: their message says so
NETWORK_CAPABILITIES = frozenset({"NET_ADMIN", "NET_RAW", "ALL"})
# the newline before a line of an upper-cased, newline-joined ``add`` list that names none of
# the baseline's, the final newline apart: ``[^\S\n]`` is whitespace but the newline, and ``\s``
# is what ``str.strip`` strips
_REFUSED_LINE = re.compile(
    r"\n(?!\Z)(?![^\S\n]*(?:CAP_)?(?:"
    + "|".join(map(re.escape, sorted(BASELINE_CAPABILITIES)))
    + r")[^\S\n]*\n)"
)

# Annotations that shrink capture when set to any non-blank value.
SHRINKING_ANNOTATIONS: Mapping[str, str] = {
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": (
        "lets traffic to those IP ranges skip the sidecar, and so the egress allow list"
    ),
    "traffic.sidecar.istio.io/excludeOutboundPorts": (
        "lets traffic to those ports skip the sidecar, and so the egress allow list"
    ),
    "traffic.sidecar.istio.io/excludeInterfaces": (
        "lets traffic leaving through those interfaces skip the sidecar, and so the egress "
        "allow list"
    ),
}

# Annotations refused whatever their value: each replaces or reconfigures the proxy itself.
PROXY_REPLACING_ANNOTATIONS: Mapping[str, str] = {
    "sidecar.istio.io/proxyImage": (
        "replaces the sidecar (and istio-init) image; a proxy of the tenant's choosing runs as "
        "UID 1337, whose traffic iptables never captures"
    ),
    "sidecar.istio.io/bootstrapOverride": (
        "gives the proxy a custom Envoy bootstrap, which can add clusters and listeners that "
        "reach any destination from the uncaptured proxy"
    ),
    "sidecar.istio.io/userVolume": (
        "adds tenant volumes to the proxy, which can replace its bootstrap template or binaries"
    ),
    "sidecar.istio.io/userVolumeMount": (
        "mounts tenant volumes into the proxy, which can replace its bootstrap template or binaries"
    ),
    "sidecar.istio.io/discoveryAddress": (
        "points the proxy at another configuration server, which can program any route out"
    ),
    "proxy.istio.io/overrides": (
        "is re-applied by the injector over the injected istio-proxy container, so it can swap "
        "the proxy's image, command or user"
    ),
    "ambient.istio.io/redirection": (
        "is the ambient data plane's capture switch; ambient ignores Sidecar resources, and so "
        "the egress allow list"
    ),
}

# ProxyConfig fields that only tune the proxy's lifecycle and statistics.  Everything else is
# refused: interceptionMode, proxyMetadata (env of the agent, incl. DNS capture switches),
# discoveryAddress, proxyBootstrapTemplatePath, image, and every sink the *uncaptured* proxy
# dials itself (tracing, statsdUdpAddress, envoyMetricsService, envoyAccessLogService), since
# those carry request data to an address of the tenant's choosing.
SAFE_PROXY_CONFIG_KEYS = frozenset(
    {
        "holdApplicationUntilProxyStarts",
        "concurrency",
        "terminationDrainDuration",
        "drainDuration",
        "proxyStatsMatcher",
        "extraStatTags",
        # response and request header hardening (server, request-id, debug and metadata-exchange
        # headers): what the proxy writes into requests, never where they go
        "proxyHeaders",
        # how many proxies in front a gateway trusts for client addresses and certificates
        "gatewayTopology",
        # reserved in the API since Envoy dropped hot restart: accepted and ignored
        "parentShutdownDuration",
    }
)

# agent variables that only change its lifecycle or the pod's DNS handling: with DNS capture the
# agent answers the app's queries (narrowing where they go), without it they go out as before.
# Each value is held to its own grammar: the injector writes it unescaped into the template
# (``injector_inputs``), where free text could add fields to istio-init or istio-proxy.
GO_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")
SAFE_PROXY_METADATA: Mapping[str, frozenset[str] | re.Pattern[str]] = {
    "ISTIO_META_DNS_CAPTURE": frozenset({"true"}),
    "ISTIO_META_DNS_AUTO_ALLOCATE": frozenset({"true"}),
    "EXIT_ON_ZERO_ACTIVE_CONNECTIONS": frozenset({"true", "false"}),
    "MINIMUM_DRAIN_DURATION": GO_DURATION,
}
# the sampling rate and tags of the mesh's tracer; a tracer address would be dialled uncaptured
SAFE_TRACING_KEYS = frozenset({"sampling", "customTags", "maxPathTagLength"})
SAFE_METADATA_TEXT = ", ".join(
    f"{key}=<duration>" if isinstance(values, re.Pattern) else f"{key}={'|'.join(sorted(values))}"
    for key, values in sorted(SAFE_PROXY_METADATA.items())
)
SAFE_PROXY_CONFIG_TEXT = (
    f"{', '.join(sorted(SAFE_PROXY_CONFIG_KEYS))}, proxyMetadata {SAFE_METADATA_TEXT}, "
    f"tracing {', '.join(sorted(SAFE_TRACING_KEYS))} "
    f"and image.imageType {', '.join(sorted(PROXY_IMAGE_TYPES))}"
)

BYPASS_HINT = "route the traffic through the mesh and ask for the destination in the egress policy"


@dataclass(frozen=True, slots=True)
class PodShape:
    """Where a manifest keeps its pod: metadata and spec plus their field paths."""

    metadata: Mapping[str, Any]
    spec: Mapping[str, Any]
    meta_path: str
    spec_path: str
    # a template is never injected: injected container names there are the tenant's
    template: bool


@checks("", "Pod", subresources=("ephemeralcontainers",))
@checks("", "ReplicationController")
@checks("apps", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet")
@checks("batch", "Job", "CronJob")
def check_pod(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """A pod (or pod template) keeps its sidecar and cannot step around it."""
    if review.operation == "DELETE":
        return ()
    fenced = authorship_violations(
        review, _pod_labels(review.kind, review.object), _pod_labels(review.kind, review.old_object)
    )
    if fenced:
        return fenced
    if review.kind == "Pod" and review.operation == "UPDATE" and review.old_object is not None:
        return _update_violations(review, policy)
    found = pod_violations(
        review.kind, review.object, review.namespace, policy, limit=STOP_AFTER_VIOLATIONS
    )
    found.extend(pod_invariants(review, view))
    return found


def _update_violations(review: Review, policy: Policy) -> list[Violation]:
    """What a Pod UPDATE adds: a running pod's sidecar was set up at CREATE, so pods created
    before the guardrail can still be labelled, but no new bypass gets in.

    The API server validates an update before calling validating webhooks, and keeps a Pod's
    spec but for container images and a few scheduling fields; ephemeral containers are only
    ever appended.  While the pod stays what it was (gateway or not, the injector's status),
    the rest of its spec judges as before, so only the metadata, the images and the appended
    ephemeral containers are read: judging the whole spec twice to compare took 0.7 s for a
    1.5 MiB Pod.  An update that changes what the pod is is judged as a new pod.
    """
    new, old, namespace = review.object, review.old_object, review.namespace
    if old is None:
        return pod_violations("Pod", new, namespace, policy, limit=STOP_AFTER_VIOLATIONS)
    if _pod_context(new, namespace, policy) != _pod_context(old, namespace, policy):
        return pod_violations("Pod", new, namespace, policy, limit=STOP_AFTER_VIOLATIONS)
    found = pod_violations("Pod", new, namespace, policy, spec=False)
    before = set(pod_violations("Pod", old, namespace, policy, spec=False))
    found = [v for v in found if v not in before]
    found.extend(_appended_ephemeral_violations(new, old, namespace, policy))
    found.extend(_injected_image_changes(new, old))
    return found


def _pod_context(
    obj: Mapping[str, Any] | None, namespace: str, policy: Policy
) -> tuple[bool, bool, frozenset[str], frozenset[str]]:
    """What decides how a Pod's spec is judged: gateway or not, and what the injector added."""
    reader = Reader()
    shape = pod_shape(reader, "Pod", obj)
    if shape is None:
        return (False, False, frozenset(), frozenset())
    labels = reader.labels(shape.metadata.get("labels"), "") or {}
    annotations = reader.labels(shape.metadata.get("annotations"), "") or {}
    istiod_gateway = not policy.is_egress_namespace(namespace) and _is_istiod_gateway(labels, shape)
    gateway = istiod_gateway or _is_egress_gateway(policy, namespace, labels, shape)
    status = annotations.get(STATUS)
    return (gateway, istiod_gateway, status_names(status), status_names(status, ("volumes",)))


def _appended_ephemeral_violations(
    new: Mapping[str, Any] | None, old: Mapping[str, Any] | None, namespace: str, policy: Policy
) -> list[Violation]:
    """The ephemeral containers an update appends, judged as the pod's own containers are."""
    if new is None or old is None:
        return []
    path = "spec.ephemeralContainers"
    added = _ephemeral(new)
    kept = _ephemeral(old)
    start = len(kept) if added[: len(kept)] == kept else 0
    if start >= len(added):
        return []
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    _, _, injected, volumes = _pod_context(new, namespace, policy)
    try:
        for index in range(start, len(added)):
            container, where = added[index], f"{path}[{index}]"
            if not isinstance(container, Mapping):
                reader.add(where, f"must be an object, got {type_name(container)}")
                continue
            _check_container(reader, container, where, injected)
            if volumes:
                check_mounts(reader, container, where, volumes)
    except EnoughViolations:
        pass
    return reader.violations


def _ephemeral(pod: Mapping[str, Any]) -> list[Any]:
    spec = pod.get("spec")
    containers = spec.get("ephemeralContainers") if isinstance(spec, Mapping) else None
    return containers if type(containers) is list else []


def pod_violations(
    kind: str,
    obj: Mapping[str, Any] | None,
    namespace: str,
    policy: Policy,
    *,
    limit: int | None = None,
    spec: bool = True,
) -> list[Violation]:
    """Every way the pod of ``obj`` (a Pod or a workload with a template) escapes its sidecar.

    With ``limit``, raises EnoughViolations once that many are found; without ``spec``, only
    what the pod's metadata brings is judged.
    """
    reader = Reader(limit=limit)
    shape = pod_shape(reader, kind, obj)
    if shape is None:
        return reader.violations
    labels = reader.labels(shape.metadata.get("labels"), f"{shape.meta_path}.labels") or {}
    annotations = (
        reader.labels(shape.metadata.get("annotations"), f"{shape.meta_path}.annotations") or {}
    )
    istiod_gateway = not policy.is_egress_namespace(namespace) and _is_istiod_gateway(labels, shape)
    gateway = istiod_gateway or _is_egress_gateway(policy, namespace, labels, shape)
    injected = frozenset() if shape.template else _injected_names(annotations)
    if not gateway:
        _check_injection(reader, shape, labels, annotations)
        _check_gateway_lookalike(reader, policy, namespace, labels, shape)
    if istiod_gateway:
        _check_istiod_gateway(reader, policy, labels, shape)
    check_capture_metadata(reader, shape.meta_path, labels, annotations)
    if not spec:
        return reader.violations
    if injected and not gateway:
        volumes = status_names(annotations.get(STATUS), ("volumes",))
        check_injected_containers(reader, shape.spec, shape.spec_path, injected, volumes)
    if shape.template and not gateway:
        check_template_volumes(reader, shape.spec, shape.spec_path)
    skipped = (injected | {"istio-proxy"}) if gateway else injected
    _check_spec(reader, shape, skipped, gateway)
    return reader.violations


def pod_shape(reader: Reader, kind: str, obj: Mapping[str, Any] | None) -> PodShape | None:
    """The pod metadata/spec of a Pod, a workload template or a CronJob's job template."""
    if obj is None:
        reader.add("", "the request carries no object to check")
        return None
    if kind == "Pod":
        return PodShape(
            reader.mapping(obj.get("metadata"), "metadata"),
            reader.mapping(obj.get("spec"), "spec"),
            "metadata",
            "spec",
            template=False,
        )
    prefix = "spec"
    spec = reader.mapping(obj.get("spec"), prefix)
    if kind == "CronJob":
        job = reader.mapping(spec.get("jobTemplate"), "spec.jobTemplate")
        prefix = "spec.jobTemplate.spec"
        spec = reader.mapping(job.get("spec"), prefix)
    template = reader.mapping(spec.get("template"), f"{prefix}.template")
    return PodShape(
        reader.mapping(template.get("metadata"), f"{prefix}.template.metadata"),
        reader.mapping(template.get("spec"), f"{prefix}.template.spec"),
        f"{prefix}.template.metadata",
        f"{prefix}.template.spec",
        template=True,
    )


def _injected_names(annotations: Mapping[str, str]) -> frozenset[str]:
    """Containers the injector says it added (only names it really uses are trusted)."""
    return status_names(annotations.get(STATUS)) & INJECTED_CONTAINERS


def _is_egress_gateway(
    policy: Policy,
    namespace: str,
    labels: Mapping[str, str],
    shape: PodShape,
) -> bool:
    """An egress gateway pod of the policy: in the egress namespace, selected, proxy only.

    Gateway pods are the exit itself: their proxy is deliberately uncaptured and runs as 1337,
    and istiod deploys them with injection off and an explicit ``istio-proxy`` container.  The
    exemption holds only when that proxy is the sole container, so no tenant code rides along.
    """
    if not policy.is_egress_namespace(namespace):
        return False
    if egress_gateway_selecting(policy, labels) is None:
        return False
    return proxy_alone(shape.spec)


def _check_gateway_lookalike(
    reader: Reader, policy: Policy, namespace: str, labels: Mapping[str, str], shape: PodShape
) -> None:
    """In the egress namespace, only the proxy may wear an egress gateway's labels.

    The gateway's Service selects pods by those labels, so a pod carrying them next to code of
    its own receives the mesh's egress traffic and can send it on anywhere.
    """
    if not policy.is_egress_namespace(namespace):
        return
    selected = egress_gateway_selecting(policy, labels)
    if selected is not None:
        reader.add(
            f"{shape.meta_path}.labels",
            f"carries the labels of the egress gateway {selected.ref}, whose Service would send "
            "the mesh's egress traffic to this pod; only a pod running the gateway proxy "
            "alone may carry them",
        )


def _pod_labels(kind: str, obj: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The labels of the pod of ``obj`` (empty when absent or malformed)."""
    if obj is None:
        return {}
    shape = pod_shape(Reader(), kind, obj)
    labels = shape.metadata.get("labels") if shape is not None else None
    return labels if isinstance(labels, Mapping) else {}


# istiod's gateway template runs the image's entrypoint with these first arguments (older
# Istio: the injector's gateway template adds them at Pod creation, the Deployment has none)
GATEWAY_PROXY_ARGS = ("proxy", "router")


def _check_istiod_gateway(
    reader: Reader, policy: Policy, labels: Mapping[str, str], shape: PodShape
) -> None:
    """An istiod gateway pod outside the egress namespace runs istiod's proxy as rendered, and
    no Gateway of the egress namespace selects it.

    Its proxy is never captured, so its routes are all that keeps it in: Gateways select pods
    in every namespace, and one of the egress namespace's would give this proxy the egress
    gateway's listeners without the egress gateway's AuthorizationPolicy.  A command, or
    arguments other than istiod's, mean the Deployment was rewritten (a ``parametersRef``
    overlay): whatever runs then is not a proxy configured by istiod.
    """
    selected = egress_gateway_selecting(policy, labels)
    if selected is not None:
        reader.add(
            f"{shape.meta_path}.labels",
            f"carries the selector of the egress gateway {selected.ref}, so the egress "
            "namespace's Gateway programs this gateway proxy too, which runs uncaptured "
            "outside the egress namespace and without the egress gateway's authorization; "
            "remove those labels from the Gateway",
        )
    for where, container in reader.mappings(
        shape.spec.get("containers"), f"{shape.spec_path}.containers"
    ):
        if container.get("name") != PROXY_CONTAINER:
            continue
        if container.get("command") is not None:
            reader.add(
                f"{where}.command",
                "replaces the entrypoint of the gateway proxy, which runs uncaptured as UID "
                "1337: istiod's template sets none; remove the override",
            )
        args = container.get("args")
        if args is not None and (type(args) is not list or tuple(args[:2]) != GATEWAY_PROXY_ARGS):
            reader.add(
                f"{where}.args",
                "are not the arguments istiod gives a gateway proxy ('proxy', 'router', ...), "
                "so what runs uncaptured as UID 1337 is not a proxy configured by istiod; "
                "remove the override",
            )


def _is_istiod_gateway(labels: Mapping[str, str], shape: PodShape) -> bool:
    """A pod of a Gateway API Gateway deployed by istiod: its labels, and the proxy alone.

    Only istiod and Kubernetes' controllers may write objects carrying those labels
    (``istiod_gateways.authorship_violations``), so the labels can be trusted here.
    """
    if gateway_name(labels) is None:
        return False
    return proxy_alone(shape.spec)


def _check_injection(
    reader: Reader,
    shape: PodShape,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> None:
    """Injection stays on and uses the plain sidecar template."""
    meta = shape.meta_path
    # the label is the current API and wins over the deprecated annotation of the same name
    value: str | None
    if INJECT in labels:
        value, where = labels[INJECT], f"{meta}.labels[{INJECT}]"
    else:
        value, where = annotations.get(INJECT), f"{meta}.annotations[{INJECT}]"
    if value is not None and value.lower() not in INJECTING_VALUES:
        reader.add(
            where,
            f"{value!r} stops Istio from injecting the sidecar, so the pod's traffic never meets "
            "a proxy and the egress allow list does not apply; remove it (only true/yes/on or "
            "empty keep injection)",
        )
    templates = annotations.get(TEMPLATES)
    if templates is not None and {t.strip() for t in templates.split(",")} - ADDED_TEMPLATES != {
        "sidecar"
    }:
        reader.add(
            f"{meta}.annotations[{TEMPLATES}]",
            f"injection template(s) {templates!r} are not the sidecar template (with "
            f"{', '.join(sorted(ADDED_TEMPLATES))} at most); templates such as 'gateway' or "
            "'grpc-agent' set up no traffic capture or replace what the sidecar template "
            "injects, so the pod's traffic can skip the egress allow list; use 'sidecar'",
        )
    if shape.template and STATUS in annotations:
        reader.add(
            f"{meta}.annotations[{STATUS}]",
            "is written by the Istio injector; set by hand it makes injection and ambient "
            "capture treat the pod as already handled, so its traffic can skip every proxy; "
            "remove it",
        )


def check_capture_metadata(
    reader: Reader,
    meta_path: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
) -> None:
    """Nothing in a pod's labels and annotations (under ``meta_path``) narrows what iptables
    hands to the proxy, or replaces or reconfigures the proxy."""
    meta = f"{meta_path}.annotations"
    for key, effect in SHRINKING_ANNOTATIONS.items():
        value = annotations.get(key)
        if value is not None and value.strip():
            reader.add(f"{meta}[{key}]", f"{value!r} {effect}; {BYPASS_HINT}")
    include = annotations.get(INCLUDE_OUTBOUND_IPS)
    if include is not None and include.strip() != "*":
        reader.add(
            f"{meta}[{INCLUDE_OUTBOUND_IPS}]",
            f"{include!r} captures only those IP ranges (empty captures nothing), so traffic to "
            "every other address skips the sidecar and the egress allow list; remove it or set "
            "'*'",
        )
    mode = annotations.get(INTERCEPTION_MODE)
    if mode is not None and mode not in CAPTURING_MODES:
        reader.add(
            f"{meta}[{INTERCEPTION_MODE}]",
            f"{mode!r} is not a capturing mode (REDIRECT or TPROXY); NONE installs no iptables "
            "rules at all, so the pod's traffic skips the sidecar and the egress allow list",
        )
    for key, effect in PROXY_REPLACING_ANNOTATIONS.items():
        if key in annotations:
            reader.add(f"{meta}[{key}]", f"{effect}; remove it")
    check_template_values(reader, meta, annotations, judged=PROXY_REPLACING_ANNOTATIONS.keys())
    _check_proxy_config(reader, meta, annotations.get(PROXY_CONFIG))
    mode_label = ambient_mode(labels)
    if mode_label is not None:
        reader.add(
            f"{meta_path}.labels[{DATAPLANE_MODE}]",
            f"{mode_label!r} enrols the pod in the ambient data plane, which ignores Sidecar "
            "resources and exportTo, and so the egress allow list; remove the label",
        )


def _check_proxy_config(reader: Reader, meta: str, raw: str | None) -> None:
    """``proxy.istio.io/config`` may only tune lifecycle and statistics fields."""
    if raw is None or not raw.strip():
        return
    where = f"{meta}[{PROXY_CONFIG}]"
    try:
        config = yaml.safe_load(raw)
    except yaml.YAMLError:
        reader.add(where, "is not valid YAML/JSON, so egress-guard cannot tell what it changes")
        return
    if config is None:
        return
    if not isinstance(config, Mapping):
        reader.add(where, "must be a ProxyConfig object")
        return
    unsafe = unsafe_proxy_config(config)
    if unsafe:
        reader.add(
            where,
            f"sets {', '.join(unsafe)}; ProxyConfig fields can switch off traffic capture "
            "(interceptionMode), change the proxy's agent or bootstrap, or make the uncaptured "
            f"proxy send data to any address; only {SAFE_PROXY_CONFIG_TEXT} may be set per pod",
        )


def field_name(key: Any) -> str:
    """A ProxyConfig field as its JSON name: Istio reads the annotation with protobuf's JSON
    parser, which takes the proto name (``custom_tags``) for the JSON one (``customTags``)."""
    head, *rest = str(key).split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def unsafe_proxy_config(config: Mapping[Any, Any]) -> list[str]:
    """The fields of a ProxyConfig (annotation or resource) a tenant may not set, sorted."""
    unsafe: list[str] = []
    for key in sorted(config, key=str):
        value = config[key]
        name = field_name(key)
        if name in SAFE_PROXY_CONFIG_KEYS:
            continue
        if name == "proxyMetadata":
            unsafe += unsafe_proxy_environment(value, str(key))
        elif name == "tracing":
            if not isinstance(value, Mapping):
                unsafe.append(str(key))
            else:
                unsafe += [
                    f"{key}.{k}"
                    for k in sorted(value, key=str)
                    if field_name(k) not in SAFE_TRACING_KEYS
                ]
        elif name == "image":
            if not _official_image_type(value):
                unsafe.append(str(key))
        else:
            unsafe.append(str(key))
    return unsafe


def unsafe_proxy_environment(value: Any, field: str) -> list[str]:
    """The variables of the agent's environment (``proxyMetadata``) a tenant may not set."""
    if not isinstance(value, Mapping):
        return [field]
    unsafe = []
    for key in sorted(value, key=str):
        allowed = SAFE_PROXY_METADATA.get(key, frozenset())
        given = value[key]
        if isinstance(allowed, re.Pattern):
            safe = isinstance(given, str) and allowed.fullmatch(given) is not None
        else:
            safe = given in allowed
        if not safe:
            unsafe.append(f"{field}.{key}")
    return unsafe


def _official_image_type(value: Any) -> bool:
    """``image: {imageType: ...}`` naming a variant of the mesh's own proxy image."""
    if not isinstance(value, Mapping):
        return False
    fields = {field_name(key): given for key, given in value.items()}
    return set(fields) <= {"imageType"} and fields.get("imageType", "default") in PROXY_IMAGE_TYPES


# the node's namespaces besides its network, as hostNetwork is judged: each is a way onto the
# node, whose network namespace no sidecar and no NetworkPolicy covers
HOST_NAMESPACES: Mapping[str, str] = {
    "hostPID": (
        "shares the node's process namespace: a container can then enter the network namespace "
        "of any process on the node (the node's own, or the egress gateway's) or drive other "
        "pods' uncaptured proxies, past the sidecar, the egress allow list and the "
        "NetworkPolicy layer; remove it (node agents belong in a platform namespace)"
    ),
    "hostIPC": (
        "shares the node's IPC namespace (System V shared memory, message queues, the node's "
        "/dev/shm) with the node's processes and every other hostIPC pod, a channel to "
        "programs outside the mesh that no sidecar sees; remove it (node agents belong in a "
        "platform namespace)"
    ),
}


def _check_spec(reader: Reader, shape: PodShape, skipped: frozenset[str], gateway: bool) -> None:
    """Host networking and namespaces, the proxy's UID/GID and network privileges stay out of
    tenant hands."""
    spec, path = shape.spec, shape.spec_path
    host_network = spec.get("hostNetwork")
    if host_network not in (None, False):
        reader.add(
            f"{path}.hostNetwork",
            "puts the pod on the node's network, where no sidecar is injected and no iptables "
            "rule captures its traffic, so the egress allow list does not apply; remove it",
        )
    for key, effect in HOST_NAMESPACES.items():
        if spec.get(key) not in (None, False):
            reader.add(f"{path}.{key}", effect)
    pod_security = reader.mapping(spec.get("securityContext"), f"{path}.securityContext")
    if not gateway:
        # pod-level IDs apply to every container, including ephemeral ones added later
        _check_ids(reader, pod_security, f"{path}.securityContext", pod_level=True)
    for list_name in CONTAINER_LISTS:
        _check_containers(reader, spec.get(list_name), f"{path}.{list_name}", skipped)
    _check_volumes(reader, spec.get("volumes"), f"{path}.volumes")


# volume sources the node serves from the pod, the cluster or storage the platform provisions;
# every other type (nfs, iscsi, rbd, cephfs, glusterfs, flexVolume, gitRepo, the cloud disks
# and file shares...) has the node connect to a server, share or repository the pod spec names
SAFE_VOLUME_FIELDS = frozenset(
    {
        "name",
        "configMap",
        "secret",
        "downwardAPI",
        "projected",
        "emptyDir",
        "persistentVolumeClaim",
        "ephemeral",
        "csi",
        "image",
    }
)
HOST_PATH_MESSAGE = (
    "a hostPath volume opens the node's files and sockets to the pod: the container runtime's "
    "socket, the static pod manifests and /proc let it start containers or join network "
    "namespaces that no admission and no sidecar sees (the node's, the egress gateway's), past "
    "the egress allow list and the NetworkPolicy layer, even read-only (a unix socket still "
    "connects); use an emptyDir or a PersistentVolumeClaim, or run node agents in a platform "
    "namespace"
)
REMOTE_VOLUME_MESSAGE = (
    "a {key} volume is mounted by the node from a server or repository the pod spec names, "
    "outside the mesh and its egress gateway, so data written to it leaves the cluster "
    "unchecked; use a PersistentVolumeClaim (storage the platform provisions) instead"
)


def _check_volumes(reader: Reader, value: Any, path: str) -> None:
    """No volume has the node mount remote storage the tenant names, or its own files."""
    items: Iterable[tuple[str, Mapping[str, Any]]]
    if type(value) is list and many(value) and set(map(type, value)) == {dict}:
        # a pod may list thousands of volumes: only those with an unknown field are read
        odd = compress(range(len(value)), map(not_, map(SAFE_VOLUME_FIELDS.issuperset, value)))
        items = ((f"{path}[{i}]", value[i]) for i in odd)
    else:
        items = reader.mappings(value, path)
    for where, volume in items:
        for key in volume:
            if key == "hostPath":
                reader.add(f"{where}.{key}", HOST_PATH_MESSAGE)
            elif key not in SAFE_VOLUME_FIELDS:
                reader.add(f"{where}.{key}", REMOTE_VOLUME_MESSAGE.format(key=key))


def _check_containers(reader: Reader, value: Any, path: str, skipped: frozenset[str]) -> None:
    """Every container of one list, but the ``skipped`` ones (injected, or the gateway proxy)."""
    suspects = _suspect_containers(value, skipped)
    if suspects is None:
        for where, container in reader.mappings(value, path):
            _check_container(reader, container, where, skipped)
        return
    if set(map(type, value)) != {dict}:
        # as the plain reading does: the list's non-objects first, then its containers
        for index, item in enumerate(value):
            if not isinstance(item, Mapping):
                reader.add(f"{path}[{index}]", f"must be an object, got {type_name(item)}")
    for index in suspects:
        _check_container(reader, value[index], f"{path}[{index}]", skipped)


def _check_container(
    reader: Reader, container: Mapping[str, Any], where: str, skipped: frozenset[str]
) -> None:
    name = container.get("name")
    if name in skipped:
        return
    for path, host in _handler_hosts(container):
        reader.add(
            f"{where}.{path}.host",
            f"{host!r}: the kubelet runs this probe or hook from the node, outside the mesh and "
            "its egress gateway, to whatever host is named here (with the path and headers "
            "written here); leave host unset to reach the pod itself",
        )
    if name in INJECTED_CONTAINERS:
        reader.add(
            f"{where}.name",
            f"{name!r} is the name of a container the Istio injector adds; istiod merges a "
            "pod-defined one over the injected container, so it can replace the proxy or its "
            "iptables setup; rename the container",
        )
    security = reader.mapping(container.get("securityContext"), f"{where}.securityContext")
    _check_ids(reader, security, f"{where}.securityContext", pod_level=False)
    _check_privileges(reader, security, f"{where}.securityContext")


PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
HOOKS = ("postStart", "preStop")
# the handlers the kubelet runs as a network client; exec and grpc reach the pod itself
NETWORK_ACTIONS = ("httpGet", "tcpSocket")
HANDLER_FIELDS = frozenset((*PROBES, "lifecycle"))


def _handler_hosts(container: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(path, host)`` of each probe or lifecycle hook of ``container`` that names a host."""
    lifecycle = container.get("lifecycle")
    hooks = lifecycle if isinstance(lifecycle, Mapping) else {}
    handlers = [(key, container.get(key)) for key in PROBES]
    handlers += [(f"lifecycle.{key}", hooks.get(key)) for key in HOOKS]
    for path, handler in handlers:
        if not isinstance(handler, Mapping):
            continue
        for action in NETWORK_ACTIONS:
            fields = handler.get(action)
            if isinstance(fields, Mapping) and fields.get("host") not in (None, ""):
                yield f"{path}.{action}", fields["host"]


def _names_a_host(container: Mapping[str, Any]) -> bool:
    """Whether ``_handler_hosts`` finds anything, read with no path written: a long container
    list of probed containers asks it of each one."""
    if HANDLER_FIELDS.isdisjoint(container):
        return False
    for key in PROBES:
        handler = container.get(key)
        if handler and _acts_on_a_host(handler):
            return True
    hooks = container.get("lifecycle")
    if hooks and (type(hooks) is dict or isinstance(hooks, Mapping)):
        for key in HOOKS:
            handler = hooks.get(key)
            if handler and _acts_on_a_host(handler):
                return True
    return False


def _acts_on_a_host(handler: Any) -> bool:
    # decoded JSON holds dicts: the exact-type test spares the slower Mapping (ABC) test
    if type(handler) is not dict and not isinstance(handler, Mapping):
        return False
    for action in NETWORK_ACTIONS:
        fields = handler.get(action)
        if (
            fields
            and (type(fields) is dict or isinstance(fields, Mapping))
            and fields.get("host") not in (None, "")
        ):
            return True
    return False


def _suspect_containers(value: Any, skipped: frozenset[str]) -> Iterator[int] | None:
    """The indices of a long container list's objects that may break a rule, in order.

    None for a short list (or not a list): it is read item by item.  A 3 MiB pod can list tens
    of thousands of containers, and the plain reading costs about a microsecond each in paths
    and field reads for what is nearly always nothing to report.  Here a container equal to the
    last clean one of its name costs a lookup and one comparison in C, and any other a few reads
    of the fields the rules look at, with no path written; the indices given are judged by the
    plain reading, so the violations, their order and the stop after enough of them stay as
    they were.
    """
    if type(value) is not list or not many(value):
        return None
    return _suspects(value, INJECTED_CONTAINERS - skipped, skipped)


def _suspects(
    containers: list[Any], named: frozenset[str], skipped: frozenset[str]
) -> Iterator[int]:
    # the last container of each name found clean: an equal one is clean too
    clean: dict[Any, dict[str, Any]] = {}
    # capabilities seen to be allowed
    safe: set[str] = set()
    for index, container in enumerate(containers):
        if type(container) is not dict:
            if isinstance(container, Mapping):
                yield index
            continue
        name = container.get("name")
        # an unhashable name raises here as in the plain reading, at the same container
        if name in skipped:
            continue
        seen = clean.get(name)
        if seen is not None:
            try:
                if seen == container:
                    continue
            except RecursionError:
                # nested deeper than a comparison may go (the plain reading never compares)
                pass
        if (
            name not in named
            and _clean_security(container.get("securityContext"), safe)
            and not _names_a_host(container)
        ):
            clean[name] = container
            continue
        yield index


def _clean_security(security: Any, safe: set[str]) -> bool:
    """Whether a container's ``securityContext`` surely breaks no rule (False: read it)."""
    if security is None:
        return True
    if type(security) is not dict:
        return False
    user = security.get("runAsUser")
    group = security.get("runAsGroup")
    # an ID that is not an integer (a string may still be " 1337") is left to the plain reading
    if (user is not None and (type(user) is not int or user == PROXY_ID)) or (
        group is not None and (type(group) is not int or group == PROXY_ID)
    ):
        return False
    if security.get("privileged") not in (None, False):
        return False
    caps = security.get("capabilities")
    if caps is None:
        return True
    if type(caps) is not dict:
        return False
    add = caps.get("add")
    if add is None:
        return True
    if type(add) is not list or many(add):
        return False
    try:
        if safe.issuperset(add):
            return True
    except TypeError:
        # an unhashable item, which is not a string
        return False
    for cap in add:
        if type(cap) is not str or _is_refused(cap):
            return False
        safe.add(cap)
    return True


def _is_proxy_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == PROXY_ID
    return isinstance(value, str) and value.strip() == str(PROXY_ID)


def _check_ids(reader: Reader, security: Mapping[str, Any], path: str, *, pod_level: bool) -> None:
    """No process runs as, or belongs to, the proxy's UID/GID 1337."""
    for key, what in (("runAsUser", "UID"), ("runAsGroup", "GID")):
        if _is_proxy_id(security.get(key)):
            reader.add(
                f"{path}.{key}",
                f"{what} 1337 is the Istio proxy's; iptables lets traffic from it skip the "
                "sidecar, and so the egress allow list; use another ID",
            )
    if not pod_level:
        return
    # a member of group 1337 can chgrp a file it owns to 1337 and set its setgid bit, and the
    # program then runs with GID 1337: membership is as good as the primary group
    if _is_proxy_id(security.get("fsGroup")):
        reader.add(
            f"{path}.fsGroup",
            "1337 makes every container a member of the Istio proxy's group, which lets it run "
            "a setgid program as GID 1337, whose traffic iptables never captures; use another "
            "group",
        )
    for where, value in enumerate(reader.sequence(security.get("supplementalGroups"), "")):
        if _is_proxy_id(value):
            reader.add(
                f"{path}.supplementalGroups[{where}]",
                "1337 makes every container a member of the Istio proxy's group, which lets it "
                "run a setgid program as GID 1337, whose traffic iptables never captures; use "
                "another group",
            )


def _check_privileges(reader: Reader, security: Mapping[str, Any], path: str) -> None:
    """No container may rewrite the pod's iptables rules, craft raw packets or hold a
    capability beyond Pod Security baseline's."""
    if security.get("privileged") not in (None, False):
        reader.add(
            f"{path}.privileged",
            "a privileged container can rewrite the pod's iptables rules and send its traffic "
            "around the sidecar and the egress allow list; remove it",
        )
    caps = reader.mapping(security.get("capabilities"), f"{path}.capabilities")
    add = caps.get("add")
    where = f"{path}.capabilities.add"
    candidates = _capability_candidates(add, where)
    found = reader.strings(add, where) if candidates is None else candidates
    for where, cap in found:
        name = _capability_name(cap)
        if name not in BASELINE_CAPABILITIES:
            reader.add(where, _capability_message(cap, name))


def _capability_name(cap: str) -> str:
    return cap.strip().upper().removeprefix("CAP_")


def _is_refused(cap: str) -> bool:
    return _capability_name(cap) not in BASELINE_CAPABILITIES


def _capability_message(cap: str, name: str) -> str:
    if name in NETWORK_CAPABILITIES:
        return (
            f"{cap} lets the container rewrite the pod's iptables rules or send raw packets, "
            "so its traffic can skip the sidecar and the egress allow list; drop it (the "
            "mesh's own init container already has what capture needs)"
        )
    return (
        f"{cap} is not among Pod Security baseline's capabilities "
        f"({BASELINE_CAPABILITIES_TEXT}); the others let a container enter "
        "other network namespaces (SYS_ADMIN, SYS_PTRACE: the node's, the egress gateway's), "
        "drive the uncaptured proxy (SYS_PTRACE) or load kernel code (SYS_MODULE, BPF), past "
        "the sidecar, the egress allow list and the NetworkPolicy layer; drop it"
    )


def _capability_candidates(add: Any, path: str) -> Iterator[tuple[str, str]] | None:
    """``(path[i], item)`` for the items of a long ``add`` list that may be refused, in order.

    None for a short list or one holding other things, read item by item.  A 3 MiB container
    can add a quarter of a million capabilities: they are joined, upper-cased and scanned in C
    for a line naming none of the allowed ones (``CAP_`` and surrounding whitespace allowed),
    so a clean list costs no Python per item and paths are written only for the candidates
    found, which are judged as before.
    """
    if type(add) is not list or not many(add):
        return None
    try:
        joined = "\n".join(add)
    except TypeError:
        # an item that is not a string: the plain reading says which
        return None
    if joined.count("\n") != len(add) - 1:
        # an item spans lines: lines no longer number the items
        return None
    return ((f"{path}[{i}]", add[i]) for i in _line_numbers(f"\n{joined.upper()}\n"))


def _line_numbers(text: str) -> Iterator[int]:
    """The number of each line (from 0) ``_REFUSED_LINE`` finds the newline before."""
    line = last = 0
    for match in _REFUSED_LINE.finditer(text):
        line += text.count("\n", last, match.start())
        last = match.start()
        yield line


def _injected_image_changes(
    new: Mapping[str, Any] | None, old: Mapping[str, Any]
) -> list[Violation]:
    """Pod UPDATE may not swap the image of an injected container (images are mutable)."""
    if new is None:
        return []
    reader = Reader()
    old_images = _images(Reader(), old)
    found: list[Violation] = []
    for (list_name, index, name), image in _images(reader, new).items():
        if name not in INJECTED_CONTAINERS:
            continue
        before = next(
            (img for (ln, _, n), img in old_images.items() if ln == list_name and n == name),
            None,
        )
        if before is not None and before != image:
            found.append(
                Violation(
                    f"spec.{list_name}[{index}].image",
                    f"changes the image of the injected {name!r} container from {before!r} to "
                    f"{image!r}; the new image would run as the uncaptured proxy, outside the "
                    "egress allow list; recreate the pod instead",
                )
            )
    return found


def _images(reader: Reader, pod: Mapping[str, Any]) -> dict[tuple[str, int, str], str]:
    spec = reader.mapping(pod.get("spec"), "spec")
    images: dict[tuple[str, int, str], str] = {}
    for list_name in CONTAINER_LISTS:
        for index, item in enumerate(reader.sequence(spec.get(list_name), list_name)):
            if isinstance(item, Mapping) and isinstance(item.get("name"), str):
                images[(list_name, index, item["name"])] = str(item.get("image", ""))
    return images

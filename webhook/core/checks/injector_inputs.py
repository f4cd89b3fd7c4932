"""What a pod hands Istio's sidecar injector, and what the injector must hand back.

The injector renders its template as text and parses the result as YAML: annotation values
(``pkg/kube/inject/template.go: getAnnotation``) and the agent's environment from
``proxy.istio.io/config`` land in it unescaped, inside double-quoted, single-quoted or plain
scalars of ``istio-init`` and ``istio-proxy``.  A quote, backslash or line break in one of them
writes fields of the tenant's choosing into those containers: a command for the proxy, which
runs uncaptured as UID 1337, or an ``istio-init`` that exits before installing a single iptables
rule.  So the values the template reads are held to plain printable text, and the containers
the injector returns are held to the entrypoints its template gives them, whatever else slipped
through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from typing import Any, Final

from webhook.core.checks.common import Reader

# annotation prefixes the injection templates read (sidecar, gateway and grpc templates, and
# the OpenTelemetry resource attributes istiod adds to the proxy's environment)
TEMPLATE_PREFIXES: Final = (
    "sidecar.istio.io/",
    "traffic.sidecar.istio.io/",
    "status.sidecar.istio.io/",
    "readiness.status.sidecar.istio.io/",
    "resource.opentelemetry.io/",
)
# the Multus networks annotation is rendered inside a single-quoted scalar: its JSON form keeps
# its double quotes there
MULTUS_NETWORKS: Final = "k8s.v1.cni.cncf.io/networks"
# annotations outside those prefixes the sidecar template renders
TEMPLATE_ANNOTATIONS: Final = frozenset({"istio.io/reroute-virtual-interfaces", MULTUS_NETWORKS})
# read by Go code (the injector's status, the agent's bootstrap statistics), never rendered
# into the template: their JSON and regular expressions keep their quotes and backslashes
GO_READ_ANNOTATIONS: Final = frozenset(
    {
        "sidecar.istio.io/status",
        "sidecar.istio.io/statsHistogramBuckets",
        "sidecar.istio.io/statsInclusionPrefixes",
        "sidecar.istio.io/statsInclusionSuffixes",
        "sidecar.istio.io/statsInclusionRegexps",
        "sidecar.istio.io/extraStatTags",
    }
)
# a JSON object whose keys and values the template writes as the proxy's environment
DATADOG_ENV: Final = "apm.datadoghq.com/env"
PROXY_IMAGE_TYPE: Final = "sidecar.istio.io/proxyImageType"
# variants of the mesh's own proxy image (a tag suffix); hub and tag stay the mesh's
PROXY_IMAGE_TYPES: Final = frozenset({"default", "debug", "distroless"})

# printable ASCII without the characters that end or escape a YAML quoted scalar; YAML 1.1
# also breaks lines at NEL and the Unicode line and paragraph separators, so nothing beyond
# ASCII passes either
_PLAIN_TEXT: Final = re.compile(r"[ !#-&(-\[\]-~]*")
_SINGLE_QUOTABLE: Final = re.compile(r"[ -&(-~]*")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
UNSAFE_TEXT: Final = (
    "Istio's injector writes it unescaped into the YAML of istio-init and istio-proxy, where a "
    "quote, backslash, line break or non-ASCII character adds fields of its own (a command for "
    "the uncaptured proxy, an iptables setup that never runs)"
)


def plain_text(value: str) -> bool:
    """Text the injector's template can hold in any scalar without it adding structure."""
    return _PLAIN_TEXT.fullmatch(value) is not None


def renders_into_template(key: str) -> bool:
    """Whether the injector's template writes this annotation's value as text."""
    if key in GO_READ_ANNOTATIONS:
        return False
    return key in TEMPLATE_ANNOTATIONS or key.startswith(TEMPLATE_PREFIXES)


def check_template_values(
    reader: Reader, meta: str, annotations: Mapping[str, str], *, judged: Collection[str] = ()
) -> None:
    """Every annotation value the injector renders is plain text (``meta``: the annotations'
    path; ``judged``: keys refused already, whatever their value)."""
    for key, value in annotations.items():
        if key not in judged and renders_into_template(key):
            if key == MULTUS_NETWORKS:
                if _SINGLE_QUOTABLE.fullmatch(value) is None:
                    reader.add(f"{meta}[{key}]", f"{value!r}: {UNSAFE_TEXT}; write a plain value")
            elif not plain_text(value):
                reader.add(f"{meta}[{key}]", f"{value!r}: {UNSAFE_TEXT}; write a plain value")
            elif key == PROXY_IMAGE_TYPE and value not in PROXY_IMAGE_TYPES:
                reader.add(
                    f"{meta}[{key}]",
                    f"{value!r} is not a variant of the mesh's proxy image "
                    f"({', '.join(sorted(PROXY_IMAGE_TYPES))}); any other suffix picks another "
                    "image to run as the uncaptured proxy",
                )
    raw = annotations.get(DATADOG_ENV)
    if raw is not None and not _plain_environment(raw):
        reader.add(
            f"{meta}[{DATADOG_ENV}]",
            "must be a JSON object of variable names to plain values: the injector writes each "
            f"as an environment variable of istio-proxy, and {UNSAFE_TEXT}",
        )


def _plain_environment(raw: str) -> bool:
    try:
        env = json.loads(raw)
    except ValueError:
        return False
    return isinstance(env, dict) and all(
        _ENV_NAME.fullmatch(key) is not None and isinstance(value, str) and plain_text(value)
        for key, value in env.items()
    )


# the entrypoint each container of the sidecar template runs: the image's own, with these first
# arguments
INJECTED_ARGS: Final[Mapping[str, tuple[str, ...]]] = {
    "istio-proxy": ("proxy", "sidecar"),
    "istio-init": ("istio-iptables",),
    "istio-validation": ("istio-iptables",),
}
INIT: Final = "istio-init"
# volumes of the sidecar template: the proxy's bootstrap and sockets (istio-envoy), its
# certificates and the SDS socket (workload-socket, workload-certs, credential-socket), its
# token for istiod, the pod's labels and annotations it reads at start
INJECTED_VOLUMES: Final = frozenset(
    {
        "istio-envoy",
        "istio-data",
        "istio-podinfo",
        "istio-token",
        "istiod-ca-cert",
        "istio-ca-crl",
        "istio-certs",
        "workload-socket",
        "credential-socket",
        "workload-certs",
        "custom-bootstrap-volume",
        "lightstep-certs",
    }
)
INJECTED_VOLUMES_TEXT: Final = (
    "the volumes the injector adds are the proxy's own (its bootstrap and xDS socket, the "
    "workload's certificates and SDS socket, its token for istiod); a container of the pod "
    "writing there can rewrite the bootstrap the uncaptured proxy starts from or act as the "
    "proxy"
)


def check_injected_containers(
    reader: Reader,
    spec: Mapping[str, Any],
    path: str,
    injected: frozenset[str],
    volumes: frozenset[str],
) -> None:
    """The containers the injector added (``injected``, from its status) run what its template
    gives them, the pod's own containers keep out of its ``volumes``, and no tenant container
    starts for good before capture is in place."""
    for list_name in ("initContainers", "containers", "ephemeralContainers"):
        containers = spec.get(list_name)
        if type(containers) is not list:
            continue
        for index, container in enumerate(containers):
            if type(container) is not dict:
                continue
            name = container.get("name")
            if name in injected:
                if name in INJECTED_ARGS and list_name != "ephemeralContainers":
                    where = f"{path}.{list_name}[{index}]"
                    _check_entrypoint(reader, container, where, INJECTED_ARGS[name])
            elif volumes and container.get("volumeMounts") is not None:
                check_mounts(reader, container, f"{path}.{list_name}[{index}]", volumes)
    if INIT in injected:
        _check_started_before_capture(reader, spec.get("initContainers"), path, injected)


def check_template_volumes(reader: Reader, spec: Mapping[str, Any], path: str) -> None:
    """A template names none of the injector's volumes: the injector merges its own into a
    volume of the same name, which the pod's containers then share with the proxy."""
    volumes = spec.get("volumes")
    if type(volumes) is not list:
        return
    for index, volume in enumerate(volumes):
        if isinstance(volume, Mapping) and volume.get("name") in INJECTED_VOLUMES:
            reader.add(
                f"{path}.volumes[{index}].name",
                f"{volume.get('name')!r}: {INJECTED_VOLUMES_TEXT}; rename the volume",
            )


def check_mounts(
    reader: Reader, container: Mapping[str, Any], where: str, volumes: frozenset[str]
) -> None:
    """A container of the pod's own mounts none of the injector's ``volumes``."""
    mounts = container.get("volumeMounts")
    if type(mounts) is not list:
        return
    for index, mount in enumerate(mounts):
        if isinstance(mount, Mapping) and mount.get("name") in volumes:
            reader.add(
                f"{where}.volumeMounts[{index}].name",
                f"{mount.get('name')!r}: {INJECTED_VOLUMES_TEXT}; mount a volume of the pod's "
                "own instead",
            )


def _check_entrypoint(
    reader: Reader, container: Mapping[str, Any], where: str, first_args: tuple[str, ...]
) -> None:
    if container.get("command") is not None:
        reader.add(
            f"{where}.command",
            "the injector's template sets no command for this container: one here replaces "
            "the proxy or its iptables setup with a program of the pod's choosing; remove what "
            "put it there",
        )
    args = container.get("args")
    if type(args) is not list or tuple(args[: len(first_args)]) != first_args:
        reader.add(
            f"{where}.args",
            f"do not start with {' '.join(first_args)!r} as the injector's template does, so "
            "this is not the container Istio injects; remove what changed it",
        )


def _check_started_before_capture(
    reader: Reader, init_containers: Any, path: str, injected: frozenset[str]
) -> None:
    """Without native sidecars for the proxy, the injector runs ``istio-init`` after the pod's
    own init containers (so they are not blackholed).  A restartable one (``restartPolicy:
    Always``) placed before it keeps running: connections it opens then were never captured,
    and NAT rules added later leave established connections alone."""
    if type(init_containers) is not list:
        return
    for index, container in enumerate(init_containers):
        if not isinstance(container, Mapping):
            continue
        name = container.get("name")
        if name == INIT:
            return
        if name not in injected and container.get("restartPolicy") == "Always":
            reader.add(
                f"{path}.initContainers[{index}].restartPolicy",
                "this sidecar container starts before istio-init installs traffic capture and "
                "keeps running, so connections it opens then never meet the proxy; run the "
                "proxy as a native sidecar too (remove sidecar.istio.io/nativeSidecar: "
                "'false') or make this a regular container",
            )

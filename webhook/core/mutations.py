"""What the mutating webhook changes: safe defaults written into objects as they are admitted.

Two defaults make the guardrail hold without tenants having to remember them:

- a new Namespace gets ``istio-injection=enabled``, so its pods get the sidecar that enforces the
  allow list (a namespace naming a revision with ``istio.io/rev``, or carrying an
  ``istio-injection`` label already, is left for validation to judge);
- a Sidecar without ``outboundTrafficPolicy.mode`` gets ``REGISTRY_ONLY``, since an omitted mode
  falls back to the mesh default (``ALLOW_ANY`` out of the box), not to the namespace's Sidecar
  (docs/istio-semantics.md#sidecar-precedence, trap 8).

Patches are JSON Patch operations built directly from what is missing: admission is a hot path,
so there is no deep copy and no diff.  Mutating twice gives an empty patch the second time.

One refusal happens here rather than in validation, because only a mutating webhook called
before Istio's injector sees a Pod as its author wrote it: a Pod arriving with the injector's
marks already on it (``sidecar.istio.io/status``, ``proxy.istio.io/overrides``, or containers
named as the injector names its own).  The injector takes such a Pod for injected already and
merges the author's ``istio-proxy`` over its own (command, image, user: code of the author's
choosing running uncaptured as UID 1337), without recording it in ``proxy.istio.io/overrides``,
and writes a status that makes the result look injected.  Validating webhooks only see that
result.  Kubernetes calls mutating webhooks in the order of their configurations' names, so the
chart names egress-guard's to sort before Istio's (``istio-...``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.core.checks.injection import (
    INJECTED_CONTAINERS,
    container_names,
    is_istiod_gateway_pod,
)
from webhook.core.exemptions import exemption
from webhook.core.policy import REGISTRY_ONLY, Policy
from webhook.core.reviews import Review

INJECTION_LABEL = "istio-injection"
REVISION_LABEL = "istio.io/rev"
# what the injector writes on a Pod and reads back as "injected before"
INJECTOR_ANNOTATIONS = ("sidecar.istio.io/status", "proxy.istio.io/overrides")

Operation = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Mutation:
    """JSON Patch operations for the API server, and warnings for the user who sent the object;
    or, with ``refusal``, the reason the object is refused before anything else changes it."""

    patch: tuple[Operation, ...] = ()
    warnings: tuple[str, ...] = ()
    refusal: str = ""

    @property
    def empty(self) -> bool:
        """True when there is nothing to change."""
        return not self.patch


NO_MUTATION = Mutation()


def pointer(*tokens: str) -> str:
    """A JSON Pointer from raw keys, escaping ``~`` and ``/`` (RFC 6901)."""
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def encode_patch(operations: Iterable[Mapping[str, Any]]) -> str:
    """The AdmissionResponse ``patch`` field: base64 of the JSON Patch document."""
    return base64.b64encode(orjson.dumps(list(operations))).decode("ascii")


# (API group, kind) -> operations ``mutate`` patches; the registration is derived from it
MUTATED: Mapping[tuple[str, str], tuple[str, ...]] = {
    ("", "Namespace"): ("CREATE",),
    ("", "Pod"): ("CREATE",),
    ("networking.istio.io", "Sidecar"): ("CREATE", "UPDATE"),
}


def mutate(review: Review, policy: Policy) -> Mutation:
    """The patch egress-guard applies to one admitted object (often none)."""
    if review.operation not in ("CREATE", "UPDATE") or exemption(review, policy) is not None:
        return NO_MUTATION
    obj = review.object
    if not isinstance(obj, Mapping):
        return NO_MUTATION
    if review.group == "" and review.kind == "Namespace":
        return _namespace(review, obj) if review.operation == "CREATE" else NO_MUTATION
    if review.group == "networking.istio.io" and review.kind == "Sidecar":
        return _sidecar(review, obj)
    if review.group == "" and review.kind == "Pod" and review.operation == "CREATE":
        return _before_injection(obj)
    return NO_MUTATION


def _before_injection(pod: Mapping[str, Any]) -> Mutation:
    """Refuse a Pod that reaches the injector with the injector's marks already on it."""
    if is_istiod_gateway_pod(pod):
        # istiod's gateway pods carry the proxy with injection off; their authorship is judged
        # by validation
        return NO_MUTATION
    marks = injector_marks(pod)
    if not marks:
        return NO_MUTATION
    return Mutation(
        refusal=(
            f"the Pod arrives with what Istio's injector writes ({', '.join(marks)}); the "
            "injector would take it for injected already and keep the Pod's own version of its "
            "containers (command, image and user included), which run uncaptured as UID 1337; "
            "remove them and let the injector add the proxy"
        )
    )


def injector_marks(pod: Mapping[str, Any]) -> list[str]:
    """The injector's annotations and container names a Pod carries before injection."""
    marks: list[str] = []
    meta = pod.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if isinstance(annotations, Mapping):
        marks += [f"annotation {key}" for key in INJECTOR_ANNOTATIONS if key in annotations]
    spec = pod.get("spec")
    if isinstance(spec, Mapping):
        for list_name in ("initContainers", "containers"):
            names = dict.fromkeys(
                name
                for name in container_names(spec.get(list_name))
                if isinstance(name, str) and name in INJECTED_CONTAINERS
            )
            marks += [f"{list_name} {name!r}" for name in names]
    return marks


def _namespace(review: Review, obj: Mapping[str, Any]) -> Mutation:
    """Label a new namespace for sidecar injection unless it already chose a revision."""
    label = {INJECTION_LABEL: "enabled"}
    meta = obj.get("metadata")
    if meta is None:
        return _labelled(review, {"op": "add", "path": "/metadata", "value": {"labels": label}})
    if not isinstance(meta, Mapping):
        # malformed: leave it to the API server's own validation
        return NO_MUTATION
    labels = meta.get("labels")
    if labels is None:
        return _labelled(review, {"op": "add", "path": "/metadata/labels", "value": label})
    if not isinstance(labels, Mapping) or INJECTION_LABEL in labels or REVISION_LABEL in labels:
        return NO_MUTATION
    path = pointer("metadata", "labels", INJECTION_LABEL)
    return _labelled(review, {"op": "add", "path": path, "value": "enabled"})


def _labelled(review: Review, operation: Operation) -> Mutation:
    return Mutation(
        (operation,),
        (
            f"egress-guard: labelled namespace {review.name} {INJECTION_LABEL}=enabled so its "
            "pods get the sidecar that enforces the egress policy",
        ),
    )


def _sidecar(review: Review, obj: Mapping[str, Any]) -> Mutation:
    """Default a Sidecar's outbound policy to REGISTRY_ONLY; an explicit mode is left alone."""
    spec = obj.get("spec")
    policy_value = {"mode": REGISTRY_ONLY}
    if spec is None:
        operation: Operation = {
            "op": "add",
            "path": "/spec",
            "value": {"outboundTrafficPolicy": policy_value},
        }
    elif not isinstance(spec, Mapping):
        return NO_MUTATION
    else:
        outbound = spec.get("outboundTrafficPolicy")
        if outbound is None:
            # "add" also replaces an explicit null
            operation = {
                "op": "add",
                "path": "/spec/outboundTrafficPolicy",
                "value": policy_value,
            }
        elif not isinstance(outbound, Mapping) or outbound.get("mode") is not None:
            # an explicit mode (or a malformed value) is validation's to judge
            return NO_MUTATION
        else:
            operation = {
                "op": "add",
                "path": "/spec/outboundTrafficPolicy/mode",
                "value": REGISTRY_ONLY,
            }
    return Mutation(
        (operation,),
        (
            f"egress-guard: set outboundTrafficPolicy.mode={REGISTRY_ONLY} on {review.subject}; "
            "without it the workloads it selects fall back to the mesh default and may reach "
            "any host",
        ),
    )

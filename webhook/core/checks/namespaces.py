"""Namespaces: injection must stay on, and the ambient data plane stays off (tamper-proofing).

The allow list is enforced by each pod's sidecar, and pods get a sidecar only in a namespace
labelled for injection (docs/istio-semantics.md#injection).  The mutating webhook labels every new
namespace ``istio-injection=enabled`` (unless it names a revision), so a namespace without either
label, or with injection switched off, means a tenant is trying to start pods without a proxy.

Ambient is refused outright: ztunnel and waypoints ignore Sidecar resources and ``exportTo``
(docs/istio-semantics.md#ambient, trap 16), so none of the generated configuration would apply.
There is no safe reading: a pod in an ambient namespace that opts out of injection is captured by
ztunnel instead, which has no ``REGISTRY_ONLY`` equivalent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import DATAPLANE_MODE, Reader, ambient_mode
from webhook.core.decisions import Violation
from webhook.core.policy import Policy
from webhook.core.reviews import Review

INJECTION = "istio-injection"
REVISION = "istio.io/rev"
ENABLED = "enabled"


@checks("", "Namespace")
def check_namespace(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """An enforced namespace keeps sidecar injection on and stays out of ambient."""
    del policy, view  # excluded namespaces never reach a check
    if review.operation == "DELETE":
        return ()
    reader = Reader()
    labels = namespace_labels(reader, review.object)
    if labels is None:
        return reader.violations
    old_labels = namespace_labels(Reader(), review.old_object) or {}
    path = f"metadata.labels[{INJECTION}]"
    injection = labels.get(INJECTION)
    revision = labels.get(REVISION)
    if injection is not None and injection != ENABLED:
        reader.add(
            path,
            f"{injection!r} switches sidecar injection off for the namespace, so its pods "
            f"would start without a proxy and the egress allow list would not apply; set "
            f"{INJECTION}={ENABLED}",
        )
    elif injection is None and revision is None:
        reader.add(path, _missing_message(review, old_labels))
    elif injection is None and revision is not None and not revision.strip():
        reader.add(
            f"metadata.labels[{REVISION}]",
            "an empty revision selects no injector, so the namespace's pods would start "
            f"without a proxy; name a control-plane revision or set {INJECTION}={ENABLED}",
        )
    mode = ambient_mode(labels)
    if mode is not None:
        reader.add(
            f"metadata.labels[{DATAPLANE_MODE}]",
            f"{mode!r} moves the namespace to the ambient data plane, which ignores Sidecar "
            "resources and exportTo, so the egress allow list would not apply; remove the label",
        )
    return reader.violations


def namespace_labels(reader: Reader, obj: Mapping[str, object] | None) -> dict[str, str] | None:
    """The labels of a Namespace object (empty when it has none); None if there is no object."""
    if obj is None:
        reader.add("", "the request carries no object to check")
        return None
    meta = reader.mapping(obj.get("metadata"), "metadata")
    return reader.labels(meta.get("labels"), "metadata.labels") or {}


def _missing_message(review: Review, old_labels: Mapping[str, str]) -> str:
    if review.operation == "UPDATE" and (INJECTION in old_labels or REVISION in old_labels):
        return (
            "removing the injection label means new pods start without a sidecar, so their "
            f"traffic skips the egress allow list; keep {INJECTION}={ENABLED}"
        )
    return (
        "the namespace has neither istio-injection nor istio.io/rev, so its pods start without "
        "a sidecar and their traffic skips the egress allow list; egress-guard's mutating "
        f"webhook normally adds it: add {INJECTION}={ENABLED}"
    )

"""The Deployments istiod creates for Gateway API Gateways of class ``istio``, and their pods.

A tenant's own ingress gateway opens no egress by itself: what it forwards comes from the routes
attached to it, which are judged already.  Its proxy, though, is a gateway: deployed by istiod
with injection off and the proxy written out by its ``kube-gateway`` template (older Istio: the
``gateway`` injection template), running as UID 1337 and never captured, which the pod rules
refuse to tenants.  So those objects are recognised by who writes them: istiod writes the
Deployment, Kubernetes' controllers derive the ReplicaSet and the Pods; anyone else writing an
object that carries istiod's gateway labels is refused (change the Gateway instead).  With that
authorship held, the pod rules may treat a pod with those labels and only the proxy in it as a
gateway pod, and what the Gateway hands istiod for it is judged on the Gateway
(``gatewayapi``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.core.checks.common import labels_of
from webhook.core.checks.egress_namespace import is_platform
from webhook.core.decisions import Violation
from webhook.core.reviews import Review

# istiod and its revisions (istiod-canary...) run as service accounts of the mesh's namespace
ISTIOD_USER_PREFIX = "system:serviceaccount:istio-system:istiod"
MANAGED = ("gateway.istio.io/managed", "istio.io-gateway-controller")
# the pod labels istiod's gateway template sets (older Istio: istio.io/gateway-name)
GATEWAY_NAME_LABELS = ("gateway.networking.k8s.io/gateway-name", "istio.io/gateway-name")


def is_istiod(review: Review) -> bool:
    """The request comes from istiod (any revision)."""
    return review.username.startswith(ISTIOD_USER_PREFIX)


def gateway_name(labels: Mapping[str, Any]) -> str | None:
    """The Gateway an istiod gateway pod (or its template) belongs to, from its labels."""
    for key in GATEWAY_NAME_LABELS:
        value = labels.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _marked(obj: Mapping[str, Any] | None, pod_labels: Mapping[str, Any]) -> bool:
    """Whether ``obj`` carries istiod's gateway marks, on itself or on its pods."""
    if obj is None:
        return False
    return labels_of(obj).get(MANAGED[0]) == MANAGED[1] or gateway_name(pod_labels) is not None


def authorship_violations(
    review: Review,
    pod_labels: Mapping[str, Any],
    old_pod_labels: Mapping[str, Any],
) -> list[Violation]:
    """Objects carrying istiod's gateway marks may be written by istiod and Kubernetes only."""
    if is_istiod(review) or is_platform(review):
        return []
    if not (_marked(review.object, pod_labels) or _marked(review.old_object, old_pod_labels)):
        return []
    return [
        Violation(
            "metadata.labels",
            "carries the labels istiod gives the Deployment and pods of a Gateway API Gateway "
            f"({', '.join(GATEWAY_NAME_LABELS)}, {MANAGED[0]}); those run the gateway proxy "
            "uncaptured as UID 1337, so only istiod writes them: change the Gateway (its "
            "spec.infrastructure) instead",
        )
    ]

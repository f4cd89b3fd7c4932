"""The one entry point that decides a review: cheap exits first, then the check for its kind.

Every door (admission webhook, ``check``, e2e) calls ``decide``; it never raises for a bad object,
only answers.  Order matters and follows Gatekeeper/Kyverno: excluded namespaces and the
controller's own writes leave first, managed objects are protected next, then the kind's check
runs and the policy mode turns violations into a denial or warnings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import webhook.core.checks.registered  # noqa: F401  (fills the registry)
from webhook.core.checks import REGISTRY, ClusterView, EmptyView
from webhook.core.decisions import Decision, EnoughViolations, Violation, allow, verdict
from webhook.core.policy import MANAGED_LABEL, Policy
from webhook.core.reviews import Review

_EMPTY_VIEW = EmptyView()
BREAK_GLASS_GROUPS = frozenset({"system:masters"})
# subresources that change what a pod runs: `kubectl debug` adds containers through this one
JUDGED_SUBRESOURCES = frozenset({("Pod", "ephemeralcontainers")})


def target_namespace(review: Review) -> str:
    """The namespace a review concerns: a Namespace object concerns itself."""
    if review.group == "" and review.kind == "Namespace":
        return review.name
    return review.namespace


def is_managed(obj: Mapping[str, Any] | None) -> bool:
    """True for objects egress-guard's controller generated and owns."""
    if not isinstance(obj, Mapping):
        return False
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return False
    labels = meta.get("labels")
    return isinstance(labels, Mapping) and labels.get(MANAGED_LABEL) == "true"


def is_controller(review: Review, policy: Policy) -> bool:
    """The request comes from egress-guard's own controller identity."""
    return review.username in policy.controller_users


def decide(review: Review, policy: Policy, *, view: ClusterView = _EMPTY_VIEW) -> Decision:
    """Decide one review against the policy."""
    namespace = target_namespace(review)
    if review.operation == "CONNECT" or (
        review.sub_resource and (review.kind, review.sub_resource) not in JUDGED_SUBRESOURCES
    ):
        return allow("status-like subresources and CONNECT do not change egress")
    if namespace and policy.is_excluded(namespace):
        return allow(f"namespace {namespace} is excluded from the egress guardrail")
    if is_controller(review, policy):
        return allow("egress-guard's own controller")
    if is_managed(review.old_object) or is_managed(review.object):
        if BREAK_GLASS_GROUPS.intersection(review.groups):
            return allow(
                "managed object changed by a cluster administrator",
                warnings=(
                    f"egress-guard: {review.subject} is managed by egress-guard; "
                    "the controller will restore it",
                ),
            )
        return verdict(
            review.subject,
            [
                Violation(
                    f"metadata.labels[{MANAGED_LABEL}]",
                    "this object is generated and owned by egress-guard; change the egress "
                    "policy ConfigMap instead",
                )
            ],
            policy.mode,
        )
    check = REGISTRY.get((review.group, review.kind))
    if check is None:
        return allow(f"{review.kind} is not governed by egress-guard")
    try:
        violations = list(check(review, policy, view))
    except EnoughViolations as enough:
        return verdict(review.subject, list(enough.violations), policy.mode, complete=False)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        # a malformed object inside a valid review: deny with a reason, never crash
        violations = [Violation("", f"the object is malformed and cannot be checked ({exc!r})")]
    return verdict(review.subject, violations, policy.mode)

"""The one entry point that decides a review: cheap exits first, then the check for its kind.

Every door (admission webhook, ``check``, e2e) calls ``decide``; it never raises for a bad object,
only answers.  Order matters and follows Gatekeeper/Kyverno: the cheap exits of
``exemptions.exemption`` (CONNECT and status-like subresources, excluded namespaces, the
controller's own writes) leave first, managed objects are protected next, then the kind's check
runs and the policy mode turns violations into a denial or warnings.
"""

from __future__ import annotations

import webhook.core.checks.registered  # noqa: F401  (fills the registry)
from webhook.core.checks import REGISTRY, ClusterView, EmptyView
from webhook.core.checks.common import is_managed
from webhook.core.checks.egress_namespace import egress_namespace_violation
from webhook.core.decisions import Decision, EnoughViolations, Violation, allow, decision_for
from webhook.core.exemptions import exemption, target_namespace
from webhook.core.policy import MANAGED_LABEL, Policy
from webhook.core.reviews import Review

_EMPTY_VIEW = EmptyView()
BREAK_GLASS_GROUPS = frozenset({"system:masters"})


def decide(review: Review, policy: Policy, *, view: ClusterView = _EMPTY_VIEW) -> Decision:
    """Decide one review against the policy."""
    reason = exemption(review, policy)
    if reason is not None:
        return allow(reason)
    if is_managed(review.old_object) or is_managed(review.object):
        if BREAK_GLASS_GROUPS.intersection(review.groups):
            return allow(
                "managed object changed by a cluster administrator",
                warnings=(
                    f"egress-guard: {review.subject} is managed by egress-guard; "
                    "the controller will restore it",
                ),
            )
        return decision_for(
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
    fenced = egress_namespace_violation(review, policy, target_namespace(review))
    if fenced is not None:
        return decision_for(review.subject, [fenced], policy.mode)
    check = REGISTRY.get((review.group, review.kind))
    if check is None:
        return allow(f"{review.kind} is not governed by egress-guard")
    try:
        violations = list(check(review, policy, view))
    except EnoughViolations as enough:
        return decision_for(review.subject, list(enough.violations), policy.mode, complete=False)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        # a malformed object inside a valid review: deny with a reason, never crash
        violations = [Violation("", f"the object is malformed and cannot be checked ({exc!r})")]
    return decision_for(review.subject, violations, policy.mode)

"""The cheap exits every door takes before any check: what egress-guard does not judge at all.

``engine.decide`` allows these reviews, ``mutations.mutate`` leaves their objects alone and the
decision cache does not spend a hash on them: one function, so the three can never disagree
about what is out of scope.  Gatekeeper and Kyverno order them the same way: what cannot change
egress first, then excluded namespaces, then the controller's own writes.
"""

from __future__ import annotations

import webhook.core.checks.registered  # noqa: F401  (fills the interception table)
from webhook.core.checks import INTERCEPTIONS
from webhook.core.policy import Policy
from webhook.core.reviews import Review


def target_namespace(review: Review) -> str:
    """The namespace a review concerns: a Namespace object concerns itself."""
    if review.group == "" and review.kind == "Namespace":
        return review.name
    return review.namespace


def is_judged_subresource(review: Review) -> bool:
    """Whether a check asked for this subresource (``pods/exec``, ``pods/ephemeralcontainers``).

    Status-like subresources and CONNECTs no check asked for (port-forward, proxy) change no
    egress and leave before any check.
    """
    interception = INTERCEPTIONS.get((review.group, review.kind))
    if interception is None or not review.sub_resource:
        return False
    suffix = "/" + review.sub_resource
    return any(resource.endswith(suffix) for resource in interception.resources)


def is_controller(review: Review, policy: Policy) -> bool:
    """The request comes from egress-guard's own controller identity."""
    return review.username in policy.controller_users


def exemption(review: Review, policy: Policy) -> str | None:
    """Why ``review`` is out of egress-guard's scope, or None when it must be judged."""
    if (review.operation == "CONNECT" or review.sub_resource) and not is_judged_subresource(review):
        return "status-like subresources and CONNECT do not change egress"
    namespace = target_namespace(review)
    if namespace and policy.is_excluded(namespace):
        return f"namespace {namespace} is excluded from the egress guardrail"
    if is_controller(review, policy):
        return "egress-guard's own controller"
    return None

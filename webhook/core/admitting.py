"""Mutate, then validate: what the API server does with one object, reproduced offline.

The API server runs every mutating webhook before any validating one, so the validating webhook
judges the object *after* egress-guard's own patch (a Sidecar without ``outboundTrafficPolicy``
arrives with ``REGISTRY_ONLY``).  ``egress-guard check`` judging the raw manifest would deny what
the cluster admits.  ``admit`` applies the mutating patch with ``jsonpatch``, the library the
patch format comes from, and decides on the result, so every door answers as the cluster would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jsonpatch

from webhook.core.checks import ClusterView, EmptyView
from webhook.core.decisions import Decision
from webhook.core.engine import decide
from webhook.core.mutations import Mutation, mutate
from webhook.core.policy import Policy
from webhook.core.reviews import Review

_EMPTY_VIEW = EmptyView()


def mutated(review: Review, policy: Policy) -> Review:
    """The review as the validating webhook receives it: with egress-guard's patch applied."""
    return _patched(review, mutate(review, policy))


def admit(review: Review, policy: Policy, *, view: ClusterView = _EMPTY_VIEW) -> Decision:
    """Decide a review the way the cluster would: mutate first, then validate.

    The mutation's warnings are kept with the decision, as the API server shows both.
    """
    mutation = mutate(review, policy)
    if mutation.refusal:
        return Decision(False, f"{review.subject} is refused before injection: {mutation.refusal}")
    decision = decide(_patched(review, mutation), policy, view=view)
    if not mutation.warnings:
        return decision
    return dataclasses.replace(decision, warnings=mutation.warnings + decision.warnings)


def _patched(review: Review, mutation: Mutation) -> Review:
    if mutation.empty or not isinstance(review.object, Mapping):
        return review
    patched: dict[str, Any] = jsonpatch.apply_patch(
        review.object, list(mutation.patch), in_place=False
    )
    return dataclasses.replace(review, object=patched)

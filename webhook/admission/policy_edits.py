"""Judging an edit of the policy ConfigMap as the admission webhook sees it.

A policy edit is not judged like other objects: the proposed policy must parse, and the objects
already in the cluster (``ClusterObjects``, handed in by the CLI, which owns the Kubernetes
client) are judged against it so the edit can warn about what it would strand.  Listing them is
best effort; the verdict on the policy itself never depends on it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from webhook.core.decisions import Decision
from webhook.core.policy import Policy
from webhook.core.policy_admission import (
    ClusterObjects,
    ProposedCompiler,
    SecurityTeam,
    check_policy_configmap,
    compile_proposed,
)
from webhook.core.reviews import Review

logger = logging.getLogger(__name__)


class NoObjects:
    """``ClusterObjects`` of a webhook without a cluster: a policy edit strands nothing."""

    def objects(self) -> Iterable[Mapping[str, Any]]:
        """Nothing."""
        return ()


def judge_policy_edit(
    review: Review,
    current: Policy | None,
    *,
    cluster: ClusterObjects,
    now: datetime,
    security_team: SecurityTeam,
    compile_policy: ProposedCompiler = compile_proposed,
) -> Decision:
    """Validate an edit of the policy ConfigMap; warn about the objects it strands."""
    try:
        return check_policy_configmap(
            review,
            current=current,
            cluster=cluster,
            now=now,
            security_team=security_team,
            compile_policy=compile_policy,
        )
    except Exception as exc:
        # the existing objects only feed warnings: a listing that fails (RBAC, a slow
        # API server) must not block a valid edit, nor let an invalid one through
        logger.warning(
            "cannot judge existing objects against the proposed policy",
            extra={"fields": {"uid": review.uid, "error": repr(exc)[:300]}},
        )
    decision = check_policy_configmap(
        review,
        current=current,
        cluster=NoObjects(),
        now=now,
        security_team=security_team,
        compile_policy=compile_policy,
    )
    if not decision.allowed:
        return decision
    unjudged = "egress-guard: existing objects were not judged against this policy"
    return dataclasses.replace(decision, warnings=(*decision.warnings, unjudged))

"""What the per-kind check tests share: judging a manifest, and where a denial must point.

One definition of "denied at this field, for this reason" keeps the denial tables of every kind
asserting the same thing: the request is refused, the violation names the offending field, and
its message says why.
"""

from __future__ import annotations

from typing import Any

from webhook.core.checks import ClusterView, EmptyView
from webhook.core.decisions import Decision
from webhook.core.engine import decide
from webhook.core.policy import Policy
from webhook.core.reviews import Operation, Review, review_of_manifest


def judge(
    manifest: dict[str, Any],
    policy: Policy,
    operation: Operation = "CREATE",
    view: ClusterView | None = None,
) -> Decision:
    """The decision on ``manifest`` (a CREATE unless told), in an empty cluster or ``view``."""
    return decide(
        review_of_manifest(manifest, operation=operation), policy, view=view or EmptyView()
    )


def assert_denied_at(decision: Decision, field: str, words: str) -> None:
    """``decision`` denies, with a violation at ``field`` whose message contains ``words``."""
    assert not decision.allowed
    matching = [v for v in decision.violations if v.field == field]
    assert matching, decision.reason
    assert any(words in v.message for v in matching), decision.reason


def update_review(
    old: dict[str, Any], new: dict[str, Any], *, username: str = "alice", sub_resource: str = ""
) -> Review:
    """An UPDATE of ``old`` into ``new`` by ``username``, as the API server sends it."""
    group, _, version = str(new["apiVersion"]).rpartition("/")
    meta = new["metadata"]
    return Review(
        uid="u",
        group=group,
        version=version,
        kind=new["kind"],
        operation="UPDATE",
        namespace=meta.get("namespace", ""),
        name=meta["name"],
        object=new,
        old_object=old,
        username=username,
        sub_resource=sub_resource,
    )

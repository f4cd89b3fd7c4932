"""Tell the developer, at ``kubectl apply``, that the object only passes thanks to an ending grant.

An exception is meant to end; the team relying on it should hear so before its objects start
failing the audit and its next deploy is denied.  For a review admitted while an exception of
its namespace ends within the warning window, the object is decided again against the policy as
it will be once that exception has ended (``Policy.at`` at the expiry instant: the same single
path every consumer uses).  Only namespaces with such an exception pay for the second decision.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from webhook.core.checks import ClusterView, EmptyView
from webhook.core.engine import decide
from webhook.core.exemptions import target_namespace
from webhook.core.policy import Policy
from webhook.core.reviews import Review

WARNING_WINDOW = timedelta(days=7)


def expiring_grant_warnings(
    review: Review,
    policy: Policy,
    *,
    now: datetime,
    view: ClusterView | None = None,
    window: timedelta = WARNING_WINDOW,
) -> tuple[str, ...]:
    """A warning when ``review`` passes at ``now`` but not once an exception ending soon ends."""
    namespace = target_namespace(review)
    ending = [
        exc
        for exc in policy.expiring_within(now, window)
        if any(source.matches_namespace(namespace) for source in exc.sources)
    ]
    if not ending:
        return ()
    cluster = view or EmptyView()
    if decide(review, policy.at(now), view=cluster).violations:
        return ()
    for exc in ending:
        if decide(review, policy.at(exc.expires), view=cluster).violations:
            return (
                f"egress-guard: {review.subject} is allowed only by exception {exc.describe()}; "
                "it will breach the egress policy once that ends",
            )
    return ()

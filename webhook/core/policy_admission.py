"""Admission of the policy ConfigMap: refuse a broken edit, warn about what a valid one breaks.

Without this, a broken edit is accepted by the API server and the security team learns of it from
an Event; with it, ``kubectl apply`` answers.  The rules:

- an invalid policy is denied, with every problem and its field path (``data[policy.yaml]/...``,
  ``binaryData[policy.json.gz]/...``); so is a ConfigMap with two policy keys or a compressed
  key that cannot be decompressed (broken gzip, or more than ``MAX_POLICY_BYTES`` inflated);
- a valid one is admitted, with warnings naming the first existing objects it leaves in breach
  (judged by the audit's ``decide``), their count, which sources lose which hosts, and the
  exceptions about to end;
- deleting the ConfigMap is refused to everyone but the security team's identities, because the
  webhook would then run on its last good policy while the controller sees none.

Only this one ConfigMap is ever sent to the webhook: ``registration`` narrows the rule with a
namespace selector and ``matchConditions`` on namespace and name, so no other ConfigMap (and none
of their secrets-by-mistake) leaves the API server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from webhook.core.audit import AuditResult, ObjectRef, audit
from webhook.core.decisions import Decision, Violation, allow
from webhook.core.errors import PolicyError
from webhook.core.policy import Policy
from webhook.core.policy_diff import removed_grants, summary_of_removed
from webhook.core.policy_documents import POLICY_KEY, stored_policy
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Review

# kubectl prints every warning, but the API server truncates long ones and caps their total
MAX_LISTED = 5
MAX_HOSTS_LISTED = 3
EXPIRY_WARNING_WINDOW = timedelta(days=7)
WEBHOOK_NAME = "policy.egress-guard.dev"
APPLY_TIMEOUT_SECONDS = 15
# who deletes a namespace's objects when the namespace goes (with and without
# --use-service-account-credentials on kube-controller-manager)
NAMESPACE_DELETERS = (
    "system:serviceaccount:kube-system:namespace-controller",
    "system:kube-controller-manager",
)
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


# (policy text, ConfigMap name, now) -> the compiled policy, or PolicyError
ProposedCompiler = Callable[[str | bytes, str, datetime], Policy]


def compile_proposed(text: str | bytes, name: str, now: datetime) -> Policy:
    """The proposed policy, validated as at ``now`` (exception lengths included)."""
    return parse_policy(text, name=name, now=now)


class ClusterObjects(Protocol):
    """The objects egress-guard governs that exist now (the controller's informer caches)."""

    def objects(self) -> Iterable[Mapping[str, Any]]:
        """Every governed object, as the API returns it."""
        ...


@dataclass(frozen=True, slots=True)
class PolicyConfigMap:
    """Where the policy lives: the ConfigMap settings name, and its key."""

    namespace: str
    name: str

    def __post_init__(self) -> None:
        # both end up inside a CEL expression: only DNS names may get there
        if not _DNS_LABEL.match(self.namespace) or not _DNS_SUBDOMAIN.match(self.name):
            raise ValueError(f"{self.namespace}/{self.name} is not a ConfigMap namespace/name")

    def matches(self, review: Review) -> bool:
        """Whether ``review`` is about this ConfigMap."""
        return (
            review.group == ""
            and review.kind == "ConfigMap"
            and review.namespace == self.namespace
            and review.name == self.name
        )


@dataclass(frozen=True, slots=True)
class SecurityTeam:
    """The identities allowed to delete the policy ConfigMap."""

    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def includes(self, review: Review) -> bool:
        """Whether the requester is one of them, by user name or group."""
        return review.username in self.users or bool(self.groups.intersection(review.groups))


def registration(configmap: PolicyConfigMap, *, guard_delete: bool = True) -> dict[str, Any]:
    """The rule, selector and ``matchConditions`` that send this ConfigMap and no other.

    The namespace selector is the cheap filter the API server applies first; the CEL conditions
    then pin the exact namespace and name (``matchConditions``, GA in Kubernetes 1.30).
    ``guard_delete`` sends deletions too, to refuse them to all but the security team: only
    worth it once that team is named, since otherwise nobody (``helm uninstall`` included)
    could delete the ConfigMap.  The namespace controller is never refused: deleting the
    namespace would otherwise hang in Terminating.
    """
    operations = ["CREATE", "UPDATE", "DELETE"] if guard_delete else ["CREATE", "UPDATE"]
    conditions = [
        {
            "name": "egress-policy-configmap-only",
            "expression": (
                f"request.namespace == '{configmap.namespace}' && "
                f"request.name == '{configmap.name}'"
            ),
        }
    ]
    if guard_delete:
        conditions.append(
            {
                "name": "namespace-deletion-proceeds",
                "expression": (
                    "!(request.operation == 'DELETE' && request.userInfo.username in "
                    f"{list(NAMESPACE_DELETERS)!r})"
                ),
            }
        )
    return {
        "name": WEBHOOK_NAME,
        # judging the proposed policy audits every governed object (about 1 s per 10,000)
        "timeoutSeconds": APPLY_TIMEOUT_SECONDS,
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": operations,
                "resources": ["configmaps"],
                "scope": "Namespaced",
            }
        ],
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": configmap.namespace}},
        "matchConditions": conditions,
    }


def check_policy_configmap(
    review: Review,
    *,
    current: Policy | None,
    cluster: ClusterObjects,
    now: datetime,
    security_team: SecurityTeam,
    max_listed: int = MAX_LISTED,
    compile_policy: ProposedCompiler = compile_proposed,
) -> Decision:
    """Decide a CREATE, UPDATE or DELETE of the policy ConfigMap (already matched by name).

    ``compile_policy`` lets the webhook remember what it compiled, so the ConfigMap watch that
    sees the same text land a moment later need not compile it again.
    """
    if review.operation == "CONNECT" or review.sub_resource:
        return allow("status-like subresources and CONNECT do not change the policy")
    if review.operation == "DELETE":
        if review.username in NAMESPACE_DELETERS:
            return allow("the namespace holding the policy is being deleted")
        if security_team.includes(review):
            return allow(f"{review.username} belongs to the security team")
        return Decision(
            False,
            f"{review.subject} holds the egress policy: only the security team may delete it; "
            "edit it instead",
            (Violation("", "deleting the egress policy is reserved to the security team"),),
        )
    obj = review.object if isinstance(review.object, Mapping) else {}
    try:
        stored = stored_policy(obj.get("data"), obj.get("binaryData"))
    except PolicyError as exc:
        # two keys, or a payload that does not decode: its problems name the key themselves
        return _invalid(review, tuple(Violation(p.path, p.message) for p in exc.problems))
    # no key at all: an empty document gets the parser's own "empty" problem at the usual path
    where = stored.location if stored is not None else f"data[{POLICY_KEY}]"
    try:
        proposed = compile_policy(stored.text if stored is not None else "", review.name, now)
    except PolicyError as exc:
        return _invalid(
            review, tuple(Violation(f"{where}{p.path}", p.message) for p in exc.problems)
        )
    warnings = list(_stranding_warnings(proposed, current, cluster, now, max_listed))
    warnings.extend(_exception_warnings(proposed, now))
    return allow(f"valid egress policy, revision {proposed.revision}", tuple(warnings))


def _invalid(review: Review, violations: tuple[Violation, ...]) -> Decision:
    reason = f"{review.subject} is not a valid egress policy: " + "; ".join(
        str(v) for v in violations
    )
    return Decision(False, reason, violations)


def _in_breach(result: AuditResult) -> dict[ObjectRef, str]:
    first: dict[ObjectRef, str] = {}
    for finding in result.findings:
        first.setdefault(finding.ref, finding.message)
    return first


def _stranding_warnings(
    proposed: Policy, current: Policy | None, cluster: ClusterObjects, now: datetime, limit: int
) -> Iterable[str]:
    objects = list(cluster.objects())
    after = _in_breach(audit(objects, proposed, now=now))
    before = _in_breach(audit(objects, current, now=now)) if current is not None else {}
    stranded = [ref for ref in after if ref not in before]
    if stranded:
        listed = ", ".join(ref.describe() for ref in stranded[:limit])
        more = f" and {len(stranded) - limit} more" if len(stranded) > limit else ""
        yield (
            f"egress-guard: this policy leaves {len(stranded)} existing object(s) in breach: "
            f"{listed}{more}"
        )
    if current is None:
        return
    lost = summary_of_removed(removed_grants(current.at(now), proposed.at(now)))
    for source, hosts in list(lost.items())[:limit]:
        shown = ", ".join(hosts[:MAX_HOSTS_LISTED])
        more = f" and {len(hosts) - MAX_HOSTS_LISTED} more" if len(hosts) > MAX_HOSTS_LISTED else ""
        yield f"egress-guard: {source} loses access to {shown}{more}"
    if len(lost) > limit:
        yield f"egress-guard: {len(lost) - limit} more source(s) lose access"


def _exception_warnings(policy: Policy, now: datetime) -> Iterable[str]:
    for exc in policy.expiring_within(now, EXPIRY_WARNING_WINDOW):
        yield f"egress-guard: exception {exc.describe()} ends within 7 days"
    for exc in policy.expired(now):
        yield (
            f"egress-guard: exception {exc.name} ended at {exc.expires.isoformat()} and grants "
            "nothing; remove it"
        )

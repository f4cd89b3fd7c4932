"""Judge objects that already exist against the policy in force, with the admission ``decide``.

A narrowed policy, or an exception that ended, leaves objects admitted under the old grants in
place; Gatekeeper's audit and Kyverno's background scans exist for exactly that.  Each object (a
dict as the API returns it) becomes a CREATE review, the form that judges the whole object rather
than what an update adds, and goes through the same ``decide`` the webhook uses, on the policy
``at(now)``: one truth, many doors.  Objects the controller owns are skipped (it restores them),
and so are kinds egress-guard does not govern.  The checks that read the cluster (which
Sidecars exist, which addresses the egress namespace holds) read it from the objects listed,
as they are now rather than when each object was admitted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from webhook.core.checks import REGISTRY, ClusterView
from webhook.core.checks.common import is_managed
from webhook.core.checks.listed_view import listed_view
from webhook.core.engine import decide
from webhook.core.exemptions import target_namespace
from webhook.core.policy import Policy
from webhook.core.reviews import Review, review_of_manifest

POLICY_NAME = "egress-guard"
# not a controller identity, so the audit never takes the controller's cheap exit
AUDIT_USER = "egress-guard-audit"
_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """Which object a finding is about, enough for a report's ``resources`` and an Event."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str = ""

    def describe(self) -> str:
        """``ServiceEntry team-a/github`` for messages."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One breach of the policy by an existing object, at one field."""

    ref: ObjectRef
    rule: str
    field: str
    message: str
    # exceptions that granted this object until they expired
    expired_exceptions: tuple[str, ...] = ()

    @property
    def namespace(self) -> str:
        """The object's namespace (empty for cluster-scoped objects)."""
        return self.ref.namespace

    @property
    def kind(self) -> str:
        """The object's kind."""
        return self.ref.kind

    @property
    def name(self) -> str:
        """The object's name."""
        return self.ref.name

    def describe(self) -> str:
        """One line: object, field and why."""
        where = f" at {self.field}" if self.field else ""
        text = f"{self.ref.describe()}{where}: {self.message}"
        if self.expired_exceptions:
            text += f" (was granted by expired exception {', '.join(self.expired_exceptions)})"
        return text


@dataclass(frozen=True, slots=True)
class AuditResult:
    """Findings of one audit pass plus how many objects were judged and skipped."""

    findings: tuple[Finding, ...]
    judged: int
    skipped: int
    revision: str = ""
    objects_in_breach: tuple[ObjectRef, ...] = ()
    # objects judged per namespace (a Namespace object counts in its own), for report summaries
    judged_by_namespace: Mapping[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """True when no object breaches the policy."""
        return not self.findings


def rule_of(violation_field: str) -> str:
    """A stable, bounded rule id for a violation: its field path without list indices."""
    return _INDEX.sub("", violation_field) or "object"


def ref_of(obj: Mapping[str, Any]) -> ObjectRef:
    """The reference of an object as the API returns it."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    return ObjectRef(
        api_version=str(obj.get("apiVersion", "")),
        kind=str(obj.get("kind", "")),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
    )


def review_of_existing(obj: Mapping[str, Any]) -> Review:
    """The review that judges an existing object whole: a CREATE by the audit identity."""
    meta = obj.get("metadata")
    namespace = meta.get("namespace") if isinstance(meta, Mapping) else None
    # cluster-scoped objects (Namespace) have none; review_of_manifest would default it
    return review_of_manifest(
        obj, operation="CREATE", namespace=str(namespace or "") or None, username=AUDIT_USER
    )


def is_audited(review: Review) -> bool:
    """Kinds egress-guard governs; everything else is skipped."""
    return (review.group, review.kind) in REGISTRY


def audit(
    objects: Iterable[Mapping[str, Any]],
    policy: Policy,
    *,
    now: datetime,
    view: ClusterView | None = None,
) -> AuditResult:
    """Judge ``objects`` against ``policy`` as in force at ``now``; every breach is a finding."""
    effective = policy.at(now)
    expired = policy.expired(now)
    # every exception live at once: what the objects could rely on before some expired
    earlier = (
        policy.at(min(e.expires for e in expired) - timedelta(microseconds=1)) if expired else None
    )
    listed = [(obj, review_of_existing(obj)) for obj in objects]
    # without a view of its own, the cluster is what the pass lists: an address a gateway pod
    # took after a tenant object named it is found here, not at admission
    cluster = view if view is not None else listed_view(review for _, review in listed)
    findings: list[Finding] = []
    breaching: list[ObjectRef] = []
    judged = skipped = 0
    per_namespace: dict[str, int] = {}
    for obj, review in listed:
        if not is_audited(review) or is_managed(obj):
            skipped += 1
            continue
        judged += 1
        where = target_namespace(review)
        per_namespace[where] = per_namespace.get(where, 0) + 1
        decision = decide(review, effective, view=cluster)
        if not decision.violations:
            continue
        ref = ref_of(obj)
        breaching.append(ref)
        relied_on: tuple[str, ...] = ()
        if earlier is not None and not decide(review, earlier, view=cluster).violations:
            relied_on = tuple(
                e.name
                for e in expired
                if any(s.matches_namespace(ref.namespace) for s in e.sources)
            )
        findings.extend(
            Finding(ref, rule_of(v.field), v.field, v.message, relied_on)
            for v in decision.violations
        )
    return AuditResult(
        tuple(findings),
        judged,
        skipped,
        effective.revision,
        objects_in_breach=tuple(breaching),
        judged_by_namespace=per_namespace,
    )


def audit_table(result: AuditResult) -> str:
    """``egress-guard audit`` output: one line per finding, or a line saying all is clean."""
    if result.clean:
        return (
            f"no object in breach: {result.judged} judged, {result.skipped} skipped "
            f"(policy revision {result.revision})\n"
        )
    rows = [("NAMESPACE", "KIND", "NAME", "RULE", "MESSAGE")]
    rows += [(f.namespace, f.kind, f.name, f.rule, f.describe()) for f in result.findings]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    ]
    lines.append(
        f"{len(result.objects_in_breach)} object(s) in breach, {len(result.findings)} finding(s); "
        f"{result.judged} judged, {result.skipped} skipped (policy revision {result.revision})"
    )
    return "\n".join(lines) + "\n"


def audit_json(result: AuditResult) -> dict[str, Any]:
    """``egress-guard audit -o json`` output."""
    return {
        "revision": result.revision,
        "judged": result.judged,
        "skipped": result.skipped,
        "objectsInBreach": len(result.objects_in_breach),
        "findings": [
            {
                "apiVersion": f.ref.api_version,
                "kind": f.kind,
                "namespace": f.namespace,
                "name": f.name,
                "rule": f.rule,
                "field": f.field,
                "message": f.message,
                "expiredExceptions": list(f.expired_exceptions),
            }
            for f in result.findings
        ],
    }


def exit_code(result: AuditResult) -> int:
    """0 when nothing breaches, 1 otherwise: a CI job fails the merge on 1."""
    return 0 if result.clean else 1

"""The API server's audit log, read back: which calls a service account made, and the verdicts.

The control plane audits service accounts only (``control_plane.AUDIT_POLICY``), at Metadata
level: who, which verb on which resource in which namespace, the response code and RBAC's
decision. That is what the RBAC tests need to hold the code's real calls against the chart's
rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DECISION_ANNOTATION: Final = "authorization.k8s.io/decision"


@dataclass(frozen=True)
class AuditedCall:
    """One resource request as the API server recorded it."""

    user: str
    verb: str
    group: str
    resource: str
    namespace: str
    code: int
    decision: str

    @property
    def forbidden(self) -> bool:
        # A server-side apply that creates is authorized as "patch" by the filter (decision
        # allow) and as "create" by the handler, which answers 403 when that is missing.
        return self.code == 403 or self.decision == "forbid"

    @property
    def scope(self) -> str:
        return self.namespace or "(cluster)"

    def __str__(self) -> str:
        group = f".{self.group}" if self.group else ""
        return f"{self.verb} {self.resource}{group} in {self.scope}: {self.code} {self.decision}"


def _call(event: dict[str, Any]) -> AuditedCall | None:
    ref = event.get("objectRef")
    if not isinstance(ref, dict) or "resource" not in ref:
        return None  # discovery and other non-resource URLs
    who = event.get("impersonatedUser") or event.get("user") or {}
    resource = ref["resource"]
    if ref.get("subresource"):
        resource = f"{resource}/{ref['subresource']}"
    return AuditedCall(
        user=str(who.get("username", "")),
        verb=str(event.get("verb", "")),
        group=str(ref.get("apiGroup", "")),
        resource=resource,
        namespace=str(ref.get("namespace", "")),
        code=int((event.get("responseStatus") or {}).get("code", 0)),
        decision=str((event.get("annotations") or {}).get(DECISION_ANNOTATION, "")),
    )


def audited_calls(path: Path, *, users: Iterable[str] | None = None) -> list[AuditedCall]:
    """Every resource request in the audit log at ``path`` (of ``users`` if given), once
    each: a watch is logged when it starts and again when it ends."""
    wanted = set(users) if users is not None else None
    by_id: dict[str, AuditedCall] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        call = _call(event)
        if call is None or (wanted is not None and call.user not in wanted):
            continue
        by_id.setdefault(str(event.get("auditID")), call)
    return list(by_id.values())

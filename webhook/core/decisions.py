"""What the engine answers: allowed or not, why, and what the developer should do instead.

A denial is a value, never an exception.  The reason is written for the developer who ran
``kubectl apply``: it names the object, the offending field and host, the source, and what the
policy would allow.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.core.policy import Mode


@dataclass(frozen=True, slots=True)
class Violation:
    """One breach of the allow list, located at a field of the object."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one review."""

    allowed: bool
    reason: str
    violations: tuple[Violation, ...] = ()
    warnings: tuple[str, ...] = ()
    # allowed only because the policy is in audit mode
    audited: bool = False

    @property
    def verdict(self) -> str:
        """``allow``, ``deny`` or ``audit`` for logs and metrics."""
        if self.audited:
            return "audit"
        return "allow" if self.allowed else "deny"


def allow(reason: str = "", warnings: tuple[str, ...] = ()) -> Decision:
    """An allowing decision."""
    return Decision(True, reason, warnings=warnings)


def decision_for(subject: str, violations: list[Violation], mode: Mode) -> Decision:
    """Allow when nothing is wrong; otherwise deny, or admit with warnings in audit mode."""
    if not violations:
        return allow()
    found = tuple(violations)
    reason = f"{subject} breaches the egress policy: " + "; ".join(str(v) for v in found)
    if mode is Mode.AUDIT:
        warnings = tuple(f"egress-guard audit: {subject}: {v}" for v in found)
        return Decision(True, reason, found, warnings, audited=True)
    return Decision(False, reason, found)

"""What the engine answers: allowed or not, why, and what the developer should do instead.

A denial is a value, never an exception.  The reason is written for the developer who ran
``kubectl apply``: it names the object, the offending field and host, the source, and what the
policy would allow.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.core.policy import Mode

# an object can carry thousands of offending entries; the message names the first few so that
# kubectl output and the decision log line stay a few KB whatever the object's size
MAX_LISTED_VIOLATIONS = 10
# checks of list-shaped objects stop reading once this many violations are found: the denial is
# certain by then, and enumerating tens of thousands of bad entries would stall a worker
STOP_AFTER_VIOLATIONS = 100


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


class EnoughViolations(Exception):
    """Raised by a check's reader at ``STOP_AFTER_VIOLATIONS``; carries what it found."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__(f"{len(violations)} violations")
        self.violations = tuple(violations)


def allow(reason: str = "", warnings: tuple[str, ...] = ()) -> Decision:
    """An allowing decision."""
    return Decision(True, reason, warnings=warnings)


def decision_for(
    subject: str, violations: list[Violation], mode: Mode, *, complete: bool = True
) -> Decision:
    """Allow when nothing is wrong; otherwise deny, or admit with warnings in audit mode.

    ``complete`` is False when the check stopped reading at ``STOP_AFTER_VIOLATIONS``.
    """
    if not violations:
        return allow()
    found = tuple(violations)
    listed = found[:MAX_LISTED_VIOLATIONS]
    more = len(found) - len(listed)
    reason = f"{subject} breaches the egress policy: " + "; ".join(str(v) for v in listed)
    tail = f"and {more} more" if complete else f"and at least {more} more (checking stopped)"
    if more:
        reason += f"; {tail}"
    if mode is Mode.AUDIT:
        warnings = tuple(f"egress-guard audit: {subject}: {v}" for v in listed)
        if more:
            warnings += (f"egress-guard audit: {subject}: {tail}",)
        return Decision(True, reason, found, warnings, audited=True)
    return Decision(False, reason, found)

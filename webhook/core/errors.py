"""The exceptions of the policy core, one per kind of failure.

- ``EgressGuardError``: base of everything raised on purpose by egress-guard.
  - ``InvalidHostError``: a host name that Istio would reject or that cannot be matched.
  - ``PolicyError``: a policy document that cannot be used; carries every problem found.
    - ``PolicyDecodeError``: a stored policy that cannot even be decoded (bad gzip or base64,
      or a compression bomb).
  - ``ReviewError``: an AdmissionReview that is not one (the request is bad, not the object).

A denial is never an exception: it is a ``Decision`` value.
"""

from __future__ import annotations

from dataclasses import dataclass


class EgressGuardError(Exception):
    """Base of egress-guard's own errors."""


class InvalidHostError(EgressGuardError, ValueError):
    """A host name is malformed (bad label, misplaced wildcard, too long)."""

    def __init__(self, host: str, why: str) -> None:
        super().__init__(f"invalid host {host!r}: {why}")
        self.host = host
        self.why = why


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One thing wrong with a policy document, located by a JSON-pointer-like path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


class PolicyError(EgressGuardError):
    """A policy document is unusable; ``problems`` lists every error found, not just the first."""

    def __init__(self, problems: list[PolicyProblem]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid egress policy ({len(self.problems)} problem(s)):\n{lines}")


class ReviewError(EgressGuardError):
    """The admission request itself is malformed; the adapter answers it with HTTP 4xx."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class PolicyDecodeError(PolicyError):
    """A stored policy cannot be decoded: bad base64, broken gzip, or it inflates too far.

    A ``PolicyError`` like any unusable policy (the last good one stays in force, an edit is
    refused with its message); its own type lets callers tell an unreadable payload from a
    readable policy that is wrong.
    """

    def __init__(self, where: str, message: str) -> None:
        # the path is the ConfigMap key (``binaryData[policy.json.gz]``): the payload has no
        # field paths of its own until it is decoded
        super().__init__([PolicyProblem(where, message)])
        self.where = where

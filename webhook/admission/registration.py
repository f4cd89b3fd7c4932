"""What the webhooks intercept, derived from the code that judges and generates objects.

A kind the API server never sends is a kind no check can judge, and a generated kind that is not
intercepted is one any tenant may edit or delete.  So the registration is not written by hand:
the validating rules are the union of every check's interception (``webhook.core.checks``) and
every kind the controller generates (``webhook.core.managed``), the mutating rules those of
``webhook.core.mutations``.  The chart ships the same rules as data
(``charts/egress-guard/files/admission-rules.json``, written by ``python -m
webhook.admission.registration``) and a test keeps the two equal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import webhook.core.checks.registered  # noqa: F401  (fills the registry)
from webhook.admission.match_conditions import match_conditions
from webhook.core.checks import INTERCEPTIONS, WRITES
from webhook.core.managed import MANAGED_KINDS
from webhook.core.mutations import MUTATED

# registered only where the Gateway API CRDs are installed (the chart's webhook.gatewayAPI),
# the experimental channel's group with them
GATEWAY_API_GROUP = "gateway.networking.k8s.io"
GATEWAY_API_GROUPS = frozenset({GATEWAY_API_GROUP, "gateway.networking.x-k8s.io"})


@dataclass(frozen=True, slots=True)
class Target:
    """One intercepted REST resource (``pods/exec`` for a subresource) and its operations."""

    group: str
    resource: str
    operations: tuple[str, ...]


def validated_targets() -> tuple[Target, ...]:
    """Every resource the validating webhook must see: checked kinds plus generated kinds."""
    found: dict[tuple[str, str], set[str]] = {}
    for interception in INTERCEPTIONS.values():
        for resource in interception.resources:
            found.setdefault((interception.group, resource), set()).update(interception.operations)
    for kind in MANAGED_KINDS:
        # "only the controller touches managed objects" needs every write of them
        found.setdefault((kind.group, kind.plural), set()).update(WRITES)
    return _targets(found)


def mutated_targets() -> tuple[Target, ...]:
    """Every resource the mutating webhook patches."""
    found: dict[tuple[str, str], set[str]] = {}
    for (group, kind), operations in MUTATED.items():
        found.setdefault((group, _resource(group, kind)), set()).update(operations)
    return _targets(found)


def _resource(group: str, kind: str) -> str:
    interception = INTERCEPTIONS.get((group, kind))
    if interception is None:
        raise KeyError(f"{group or 'core'}/{kind} is mutated but has no check")
    return interception.resources[0]


def _targets(found: Mapping[tuple[str, str], set[str]]) -> tuple[Target, ...]:
    order = {op: i for i, op in enumerate((*WRITES, "CONNECT"))}
    return tuple(
        Target(group, resource, tuple(sorted(ops, key=order.__getitem__)))
        for (group, resource), ops in sorted(found.items())
    )


def rules(targets: Iterable[Target]) -> list[dict[str, Any]]:
    """Webhook rules for ``targets``: one per API group and set of operations.

    A rule matches the cartesian product of its groups, resources and operations, so mixing
    groups (or CONNECT with writes) in one rule would match more than was derived.
    """
    grouped: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for target in targets:
        grouped.setdefault((target.group, target.operations), []).append(target.resource)
    return [
        {
            "apiGroups": [group],
            "apiVersions": ["*"],
            "operations": list(operations),
            "resources": resources,
            "scope": "*",
        }
        for (group, operations), resources in grouped.items()
    ]


def admission_rules(*, gateway_api: bool) -> dict[str, list[dict[str, Any]]]:
    """Rules of the validating and the mutating webhook, keyed ``validating``/``mutating``."""
    shipped = chart_rules()
    validating = shipped["validating"]
    if gateway_api:
        validating = validating + shipped["validatingGatewayAPI"]
    return {"validating": validating, "mutating": shipped["mutating"]}


def validating_match_conditions() -> list[dict[str, Any]]:
    """The validating webhook's ``matchConditions``: UPDATEs that change nothing a check reads
    are never sent (``match_conditions``)."""
    return [dict(condition) for condition in match_conditions()]


def chart_rules() -> dict[str, list[dict[str, Any]]]:
    """The rules as the chart ships them: Gateway API rules apart, added when enabled."""
    targets = validated_targets()
    return {
        "validating": rules(t for t in targets if t.group not in GATEWAY_API_GROUPS),
        "validatingGatewayAPI": rules(t for t in targets if t.group in GATEWAY_API_GROUPS),
        "validatingMatchConditions": validating_match_conditions(),
        "mutating": rules(mutated_targets()),
    }


if __name__ == "__main__":
    json.dump(chart_rules(), sys.stdout, indent=2)
    sys.stdout.write("\n")

"""Policy exceptions: grants with an owner, a ticket and an end, and how YAML declares them.

An exception is kept apart from the permanent allow list because it expires: the policy holds
every declared exception and only ``Policy.at(now)`` folds the live ones into its rules.  Its
parsing lives here too, so the rules about owners, tickets, expiry instants and the
``maxExceptionDays`` limit are read in one place.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.errors import InvalidHostError
from webhook.core.external_services import ExternalService
from webhook.core.hosts import check_dns_name, covers
from webhook.core.policy import AllowRule, Source


@dataclass(frozen=True, slots=True)
class PolicyException:
    """A grant with an owner and an end: ``sources`` may reach ``services`` until ``expires``.

    ``hosts`` keeps what the security team wrote, for messages; the grant itself is the
    external services covering them, because a service is what carries ports and a gateway.
    """

    name: str
    sources: tuple[Source, ...]
    services: tuple[str, ...]
    owner: str
    ticket: str
    expires: dt.datetime
    reason: str = ""
    hosts: tuple[str, ...] = ()

    def is_live(self, now: dt.datetime) -> bool:
        """True until the expiry instant; at ``expires`` itself the grant is gone."""
        return now < self.expires

    def rules(self) -> tuple[AllowRule, ...]:
        """The allow rules this exception stands for while it is live, one per source."""
        return tuple(
            AllowRule(
                name=f"exception:{self.name}:{source.namespace}",
                source=source,
                services=self.services,
                exception=self.name,
            )
            for source in self.sources
        )

    def describe(self) -> str:
        """``github-for-ci (owner alice, ticket SEC-1, expires 2026-12-01T00:00:00+00:00)``."""
        return (
            f"{self.name} (owner {self.owner}, ticket {self.ticket}, "
            f"expires {self.expires.isoformat()})"
        )


def timestamps_as_text(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """YAML reads an unquoted ``expires: 2026-12-24T18:00:00Z`` as a timestamp: keep it text."""
    exceptions = document.get("exceptions")
    if not isinstance(exceptions, list) or not any(
        isinstance(item, Mapping) and isinstance(item.get("expires"), dt.date)
        for item in exceptions
    ):
        return document
    items = [
        {**item, "expires": item["expires"].isoformat()}
        if isinstance(item, Mapping) and isinstance(item.get("expires"), dt.date)
        else item
        for item in exceptions
    ]
    return {**document, "exceptions": items}


_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?$")


def parse_instant(text: str) -> dt.datetime:
    """An RFC 3339 instant with its offset, in UTC; ValueError for anything else."""
    if "T" not in text.upper() and " " not in text:
        raise ValueError("a date alone is not an instant: add a time and an offset")
    if not _RFC3339.match(text):
        raise ValueError("expected YYYY-MM-DDTHH:MM:SS[.frac] and Z or +HH:MM")
    value = dt.datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    if value.tzinfo is None:
        raise ValueError("an RFC 3339 instant needs an offset (Z or +HH:MM)")
    return value.astimezone(dt.UTC)


def build_exceptions(
    doc: Mapping[str, Any],
    services: Mapping[str, ExternalService],
    *,
    now: dt.datetime | None,
    problem: Callable[[str, str], None],
) -> tuple[PolicyException, ...]:
    """The ``exceptions`` of a schema-valid document, each problem reported through ``problem``.

    ``services`` are the external services that survived checking; a grant names them.
    """
    found: list[PolicyException] = []
    names: set[str] = set()
    max_days = doc.get("maxExceptionDays")
    all_names = {s["name"] for s in doc["externalServices"]}
    for i, item in enumerate(doc.get("exceptions", ())):
        path = f"/exceptions/{i}"
        name = item["name"]
        if name in names:
            problem(f"{path}/name", f"duplicate exception name {name!r}")
        names.add(name)
        if not item.get("services") and not item.get("hosts"):
            problem(path, f"exception {name!r} grants nothing: list services or hosts")
        try:
            expires = parse_instant(str(item["expires"]))
        except ValueError as exc:
            problem(f"{path}/expires", f"{item['expires']!r} is not an RFC 3339 instant: {exc}")
            continue
        if max_days is not None and now is not None:
            limit = now + dt.timedelta(days=int(max_days))
            if expires > limit:
                problem(
                    f"{path}/expires",
                    f"{name!r} runs until {expires.isoformat()}, past the "
                    f"{max_days}-day limit (maxExceptionDays) ending {limit.isoformat()}",
                )
        granted: list[str] = []
        for j, target in enumerate(item.get("services", ())):
            if target not in all_names:
                listed = ", ".join(sorted(all_names)) or "none"
                problem(
                    f"{path}/services/{j}",
                    f"unknown external service {target!r} (defined: {listed})",
                )
            elif target in services and target not in granted:
                granted.append(target)
        hosts: list[str] = []
        for j, host in enumerate(item.get("hosts", ())):
            try:
                normal = check_dns_name(host, require_dot=True)
            except InvalidHostError as exc:
                problem(f"{path}/hosts/{j}", exc.why + f" ({host!r})")
                continue
            covering = sorted(
                svc.name
                for svc in services.values()
                if any(covers(pattern, normal) for pattern in svc.hosts)
            )
            if not covering:
                problem(
                    f"{path}/hosts/{j}",
                    f"no external service covers {normal!r}: describe it under "
                    "externalServices (ports, protocol, gateway) before granting it",
                )
                continue
            hosts.append(normal)
            granted.extend(c for c in covering if c not in granted)
        labels = dict(item.get("workloadLabels") or {})
        account = item.get("serviceAccount")
        found.append(
            PolicyException(
                name=name,
                sources=tuple(
                    Source(namespace=ns, workload_labels=labels, service_account=account)
                    for ns in item["namespaces"]
                ),
                services=tuple(granted),
                owner=str(item["owner"]),
                ticket=str(item["ticket"]),
                expires=expires,
                reason=str(item.get("reason", "")),
                hosts=tuple(hosts),
            )
        )
    return tuple(found)

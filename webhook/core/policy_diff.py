"""What a policy edit changes: the access granted, and the generated objects, before applying it.

``egress-guard policy diff OLD NEW`` answers the security team's question "what will this edit
break or open" offline.  Grants are compared as ``source → service/host:port`` on both policies
resolved ``at(now)`` (so an exception counts only while it is live), and the objects are compared
as the controller would write them: ``desired.generate`` of both policies over the same namespaces,
ignoring the revision stamp every object carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson

from webhook.core.desired import REVISION_ANNOTATION, Manifest, generate, object_key
from webhook.core.policy import WILDCARD_NAMESPACE, Policy
from webhook.core.policy_parsing import parse_policy

Change = Literal["added", "removed", "changed"]
OutputFormat = Literal["table", "json"]


@dataclass(frozen=True, slots=True)
class Grant:
    """One source may reach one host of an external service on one port."""

    source: str
    service: str
    host: str
    port: int
    protocol: str
    # rule (or ``exception:NAME:NS``) granting it, for display: the same access granted another
    # way is no change
    via: str = ""

    @property
    def key(self) -> tuple[str, str, str, int]:
        """What the access is, whatever grants it."""
        return (self.source, self.service, self.host, self.port)

    def describe(self) -> str:
        """``team-a → github/api.github.com:443``."""
        return f"{self.source} → {self.service}/{self.host}:{self.port}"

    def as_json(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "source": self.source,
            "service": self.service,
            "host": self.host,
            "port": self.port,
            "protocol": self.protocol,
            "via": self.via,
        }


@dataclass(frozen=True, slots=True)
class ObjectChange:
    """A generated object the edit adds, removes or changes."""

    change: Change
    api_version: str
    kind: str
    namespace: str
    name: str

    def as_json(self) -> dict[str, str]:
        """The JSON form."""
        return {
            "change": self.change,
            "apiVersion": self.api_version,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
        }


@dataclass(frozen=True, slots=True)
class PolicyDiff:
    """Grants added and removed, and generated objects changed, from one policy to another."""

    added: tuple[Grant, ...]
    removed: tuple[Grant, ...]
    objects: tuple[ObjectChange, ...]
    namespaces: tuple[str, ...]
    old_revision: str = ""
    new_revision: str = ""

    @property
    def empty(self) -> bool:
        """True when the edit changes neither access nor generated objects."""
        return not (self.added or self.removed or self.objects)

    def as_json(self) -> dict[str, Any]:
        """The JSON form (``-o json``)."""
        return {
            "oldRevision": self.old_revision,
            "newRevision": self.new_revision,
            "namespaces": list(self.namespaces),
            "grants": {
                "added": [g.as_json() for g in self.added],
                "removed": [g.as_json() for g in self.removed],
            },
            "objects": [o.as_json() for o in self.objects],
        }

    def table(self) -> str:
        """The readable form: one table of grants, one of objects."""
        if self.empty:
            return "no change: the same access and the same generated objects\n"
        lines: list[str] = []
        if self.added or self.removed:
            rows = [("+", g.source, f"{g.service}/{g.host}:{g.port}", g.via) for g in self.added]
            rows += [("-", g.source, f"{g.service}/{g.host}:{g.port}", g.via) for g in self.removed]
            lines.append("GRANTS")
            lines.extend(_table(("", "SOURCE", "SERVICE/HOST:PORT", "VIA"), rows))
        else:
            lines.append("GRANTS: unchanged")
        lines.append("")
        if self.objects:
            rows = [(o.change, o.kind, o.namespace, o.name) for o in self.objects]
            lines.append(f"GENERATED OBJECTS (namespaces: {', '.join(self.namespaces)})")
            lines.extend(_table(("CHANGE", "KIND", "NAMESPACE", "NAME"), rows))
        else:
            lines.append("GENERATED OBJECTS: unchanged")
        return "\n".join(lines) + "\n"


def grants(policy: Policy) -> dict[tuple[str, str, str, int], Grant]:
    """Every grant of a resolved policy, by what it grants."""
    found: dict[tuple[str, str, str, int], Grant] = {}
    for rule in policy.rules:
        source = rule.source.describe()
        for name in rule.services:
            svc = policy.services[name]
            for host in svc.hosts:
                for port in svc.ports:
                    grant = Grant(source, name, host, port.number, port.protocol, rule.name)
                    found.setdefault(grant.key, grant)
    return found


def default_namespaces(*policies: Policy) -> tuple[str, ...]:
    """The namespaces the policies name (sources, exceptions, the egress namespace)."""
    names: set[str] = set()
    for policy in policies:
        names.add(policy.egress_namespace)
        names.update(r.source.namespace for r in policy.rules)
        names.update(s.namespace for e in policy.exceptions for s in e.sources)
    names.discard(WILDCARD_NAMESPACE)
    return tuple(sorted(names))


def _comparable(manifest: Manifest) -> bytes:
    meta = dict(manifest.get("metadata") or {})
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k != REVISION_ANNOTATION
    }
    meta["annotations"] = annotations
    return orjson.dumps({**manifest, "metadata": meta}, option=orjson.OPT_SORT_KEYS)


def _object_changes(old: Iterable[Manifest], new: Iterable[Manifest]) -> list[ObjectChange]:
    before = {object_key(m): _comparable(m) for m in old}
    after = {object_key(m): _comparable(m) for m in new}
    changes: list[ObjectChange] = []
    for key in sorted(before.keys() | after.keys(), key=lambda k: (k[2], k[1], k[3], k[0])):
        if key not in after:
            change: Change = "removed"
        elif key not in before:
            change = "added"
        elif before[key] != after[key]:
            change = "changed"
        else:
            continue
        changes.append(ObjectChange(change, *key))
    return changes


def diff_policies(
    old: Policy, new: Policy, *, now: datetime, namespaces: Sequence[str] | None = None
) -> PolicyDiff:
    """Grants and generated objects that change from ``old`` to ``new``, both as at ``now``."""
    old_at, new_at = old.at(now), new.at(now)
    names = tuple(sorted(set(namespaces))) if namespaces is not None else None
    if names is None:
        names = default_namespaces(old_at, new_at)
    before, after = grants(old_at), grants(new_at)
    added = tuple(after[k] for k in sorted(after.keys() - before.keys()))
    removed = tuple(before[k] for k in sorted(before.keys() - after.keys()))
    objects = _object_changes(generate(old_at, names).manifests, generate(new_at, names).manifests)
    return PolicyDiff(added, removed, tuple(objects), names, old_at.revision, new_at.revision)


def policy_diff_text(
    old_text: str | bytes,
    new_text: str | bytes,
    *,
    now: datetime,
    output: OutputFormat = "table",
    namespaces: Sequence[str] | None = None,
) -> str:
    """``egress-guard policy diff`` without the command line: texts in, printable text out.

    Raises ``PolicyError`` when either policy is invalid (the new one is validated at ``now``,
    as the webhook will at apply).
    """
    old = parse_policy(old_text, name="old")
    new = parse_policy(new_text, name="new", now=now)
    result = diff_policies(old, new, now=now, namespaces=namespaces)
    if output == "json":
        return orjson.dumps(result.as_json(), option=orjson.OPT_INDENT_2).decode() + "\n"
    return result.table()


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in (headers, *rows)) for i in range(len(headers))]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]


def removed_grants(old: Policy, new: Policy) -> tuple[Grant, ...]:
    """``diff_policies(old, new).removed`` of two resolved policies, without the rest of the diff.

    The ConfigMap webhook warns about lost access on every edit; building every grant of a
    100,000-host policy twice (and the generated objects) took about 0.4 s.  A grant's key
    names its service, so a (source, service) pair whose service kept its hosts and ports in
    a policy that still grants the pair loses nothing and is skipped whole.
    """
    still: set[tuple[str, str]] = {
        (rule.source.describe(), name) for rule in new.rules for name in rule.services
    }
    seen: set[tuple[str, str]] = set()
    removed: dict[tuple[str, str, str, int], Grant] = {}
    for rule in old.rules:
        source = rule.source.describe()
        for name in rule.services:
            if (source, name) in seen:
                continue
            seen.add((source, name))
            svc, kept = old.services[name], new.services.get(name)
            if (source, name) in still and kept is not None:
                if kept.hosts == svc.hosts and kept.ports == svc.ports:
                    continue
                granted = {(host, port.number) for host in kept.hosts for port in kept.ports}
            else:
                granted = set()
            for host in svc.hosts:
                for port in svc.ports:
                    if (host, port.number) not in granted:
                        grant = Grant(source, name, host, port.number, port.protocol, rule.name)
                        removed.setdefault(grant.key, grant)
    return tuple(removed[k] for k in sorted(removed))


def summary_of_removed(removed: Iterable[Grant]) -> Mapping[str, tuple[str, ...]]:
    """Hosts each source loses, for one-line warnings: ``{"team-a": ("api.github.com", ...)}``."""
    lost: dict[str, set[str]] = {}
    for grant in removed:
        lost.setdefault(grant.source, set()).add(grant.host)
    return {source: tuple(sorted(hosts)) for source, hosts in sorted(lost.items())}

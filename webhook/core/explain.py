"""Who may reach what: one workload, one destination, the rule that decides, as a value.

``egress-guard explain`` prints this value and ``-o json`` serialises it; the reachability
questions themselves (which services cover a host, which rules let a pod reach them) are the
``Policy`` methods the checks and ``desired`` use, so explain cannot drift from what is enforced.

A grant that rests only on pod labels is weaker than it looks: anyone who may create pods in the
namespace can set those labels.  A rule naming a service account is enforced at the egress
gateway on the mTLS identity, and a namespace-wide rule never depended on labels at all, so the
value says which of the three a grant is (``label_scoped``, ``note``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.core.errors import InvalidHostError
from webhook.core.hosts import check_dns_name, is_ip
from webhook.core.policy import AllowRule, Policy, Workloads

LABEL_SCOPED_NOTE = (
    "the grant rests only on pod labels, which anyone allowed to create pods in the namespace "
    "can set; a rule naming a serviceAccount is enforced on the mTLS identity at the gateway"
)


@dataclass(frozen=True, slots=True)
class Client:
    """A workload asking to reach a destination: a namespace, labels and a service account."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None

    @classmethod
    def parse(cls, text: str) -> Client:
        """Parse ``NS[/LABEL=VALUE...][@SERVICEACCOUNT]`` (labels split by ``/`` or ``,``)."""
        source, at, account = text.partition("@")
        namespace, _, label_text = source.partition("/")
        if not namespace or (at and not account):
            raise ValueError(f"expected NS[/LABEL=VALUE...][@SERVICEACCOUNT], got {text!r}")
        labels: dict[str, str] = {}
        for item in label_text.replace(",", "/").split("/"):
            if not item:
                continue
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise ValueError(f"expected LABEL=VALUE, got {item!r}")
            labels[key] = value
        return cls(namespace, labels, account or None)

    def describe(self) -> str:
        """``test-app{k8s-app=app-a}[sa=build]``."""
        text = self.namespace
        if self.labels:
            text += "{" + ",".join(f"{k}={v}" for k, v in sorted(self.labels.items())) + "}"
        if self.service_account:
            text += f"[sa={self.service_account}]"
        return text


def parse_destination(text: str) -> tuple[str, int | None]:
    """Parse ``HOST[:PORT]`` (``[v6]:port`` too) into a normalized host and port."""
    host, port_text = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    port = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"invalid port {port_text!r}")
        port = int(port_text)
    if is_ip(host):
        return str(ipaddress.ip_network(host, strict=False).network_address), port
    try:
        return check_dns_name(host), port
    except InvalidHostError as exc:
        raise ValueError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class Explanation:
    """Whether ``client`` may reach ``host:port``, what grants it, and why, line by line."""

    client: Client
    host: str
    port: int | None
    allowed: bool
    # the namespace is outside the guardrail: allowed, but nothing routes or restricts it
    excluded: bool = False
    service: str | None = None
    gateway_name: str | None = None
    gateway_namespace: str | None = None
    # every rule that lets the client reach ``service``
    rules: tuple[str, ...] = ()
    label_scoped: bool = False
    note: str = ""
    # the human explanation, one line each, in the order the CLI prints them
    details: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        """``host:port``, or the host alone when no port was asked."""
        return f"{self.host}:{self.port}" if self.port else self.host

    @property
    def headline(self) -> str:
        """``ALLOW test-app{k8s-app=app-a} -> httpbin.org:443``."""
        verdict = "ALLOW" if self.allowed else "DENY"
        return f"{verdict} {self.client.describe()} -> {self.target}"

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: plain keys, nulls where nothing grants."""
        gateway = (
            {"name": self.gateway_name, "namespace": self.gateway_namespace}
            if self.gateway_name is not None
            else None
        )
        return {
            "source": {
                "namespace": self.client.namespace,
                "labels": dict(sorted(self.client.labels.items())),
                "serviceAccount": self.client.service_account,
            },
            "destination": {"host": self.host, "port": self.port},
            "allowed": self.allowed,
            "excluded": self.excluded,
            "service": self.service,
            "gateway": gateway,
            "rules": list(self.rules),
            "label_scoped": self.label_scoped,
            "note": self.note,
            "details": list(self.details),
        }


def _strength(rules: tuple[AllowRule, ...]) -> tuple[bool, str]:
    """Whether a grant by ``rules`` rests only on pod labels, and the note saying so."""
    if any(r.source.is_namespace_wide for r in rules):
        return False, ""
    if any(r.source.workload_labels and r.source.service_account is None for r in rules):
        return True, LABEL_SCOPED_NOTE
    return False, ""


def label_scoped_notes(policy: Policy) -> tuple[str, ...]:
    """One line per rule whose grant rests only on pod labels (what ``render`` prints)."""
    notes = []
    for rule in policy.rules:
        source = rule.source
        if source.workload_labels and source.service_account is None:
            labels = ",".join(f"{k}={v}" for k, v in sorted(source.workload_labels.items()))
            notes.append(
                f"rule {rule.name or '(unnamed)'}: {{{labels}}} in namespace {source.namespace} "
                f"-> {', '.join(rule.services)}: {LABEL_SCOPED_NOTE}"
            )
    return tuple(notes)


def explain(policy: Policy, client: Client, host: str, port: int | None = None) -> Explanation:
    """Whether ``client`` may reach ``host`` (on ``port``), and the rule that decides it.

    ``host`` is normalized already (``parse_destination``).
    """
    if policy.is_excluded(client.namespace):
        return Explanation(
            client,
            host,
            port,
            allowed=True,
            excluded=True,
            details=(
                f"namespace {client.namespace} is excluded from the egress guardrail: "
                "egress-guard neither restricts nor routes its traffic",
            ),
        )
    if is_ip(host):
        services = frozenset(n for n in policy.services if policy.address_allowed(host, [n]))
    else:
        services = policy.services_covering(host)
    reachable = policy.allowed_for(Workloads(client.namespace, client.labels))
    may_reach = f"{client.describe()} may reach: {policy.describe_allowed(reachable)}"
    if not services:
        return Explanation(
            client,
            host,
            port,
            allowed=False,
            details=(f"no external service in the allow list covers {host}", may_reach),
        )
    reasons: list[str] = []
    for name in sorted(services):
        svc = policy.services[name]
        ports = ", ".join(f"{p.number}/{p.protocol}" for p in svc.ports)
        if port is not None and port not in {p.number for p in svc.ports}:
            reasons.append(f"service {name} covers {host} but not port {port} (ports: {ports})")
            continue
        rules = policy.rules_allowing(client.namespace, name, client.labels, client.service_account)
        if rules:
            rule = rules[0]
            details = [
                f"rule {rule.name}: {rule.source.describe()} may reach {name}",
                f"service {name}: hosts {', '.join(svc.hosts)}; ports {ports}",
                f"through egress gateway {svc.gateway.ref}",
            ]
            if rule.source.service_account:
                details.append(
                    "the service account is enforced at the egress gateway "
                    "(AuthorizationPolicy on the mTLS identity)"
                )
            label_scoped, note = _strength(rules)
            return Explanation(
                client,
                host,
                port,
                allowed=True,
                service=name,
                gateway_name=svc.gateway.name,
                gateway_namespace=svc.gateway.namespace,
                rules=tuple(r.name for r in rules),
                label_scoped=label_scoped,
                note=note,
                details=tuple(details),
            )
        wanted = [r for r in policy.rules if name in r.services]
        needs = "; ".join(f"rule {r.name} allows {r.source.describe()}" for r in wanted)
        reasons.append(
            f"service {name} covers {host}, but no rule lets {client.describe()} reach it"
            + (f" ({needs})" if needs else " (no rule names it)")
        )
    return Explanation(client, host, port, allowed=False, details=(*reasons, may_reach))

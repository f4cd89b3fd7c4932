"""The egress gateways' AuthorizationPolicies: who may leave through which gateway, and where to.

The gateway terminates the mesh mTLS, so it knows the client's identity and the SNI of the hop:
one ALLOW rule per allow rule and service, matching the source (principals for a service
account, namespaces otherwise) and the service's SNI values.  This is where a rule's service
account is enforced.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from webhook.core.desired.manifests import PREFIX, SECURITY, Manifest, meta, port_kind
from webhook.core.hosts import is_wildcard
from webhook.core.policy import WILDCARD_NAMESPACE, AllowRule, ExternalService, Gateway, Policy


def _source_clause(policy: Policy, rule: AllowRule) -> dict[str, Any]:
    src = rule.source
    td = policy.trust_domain
    if src.service_account is not None:
        if src.namespace == WILDCARD_NAMESPACE:
            # principals take one leading or trailing '*', so "any namespace" is a suffix match
            return {"principals": [f"*/sa/{src.service_account}"]}
        return {"principals": [f"{td}/ns/{src.namespace}/sa/{src.service_account}"]}
    if src.namespace == WILDCARD_NAMESPACE:
        # any authenticated mesh workload
        return {"principals": ["*"]}
    return {"namespaces": [src.namespace]}


def _snis(svc: ExternalService) -> list[str]:
    """SNI values of the mTLS hops to the gateway for ``svc`` (wildcards match by suffix)."""
    return sorted(set(svc.hosts))


def authorization_policy(
    policy: Policy, gateway: Gateway, services: Sequence[ExternalService]
) -> Manifest:
    """The ALLOW policy of one egress gateway for the services it carries."""
    names = {s.name for s in services}
    rules: list[dict[str, Any]] = []
    seen: set[str] = set()

    def add(rule: dict[str, Any]) -> None:
        key = repr(rule)
        if key not in seen:
            seen.add(key)
            rules.append(rule)

    for allow_rule in policy.rules:
        for name in allow_rule.services:
            if name not in names:
                continue
            svc = policy.services[name]
            rule: dict[str, Any] = {
                "from": [{"source": _source_clause(policy, allow_rule)}],
                "when": [{"key": "connection.sni", "values": _snis(svc)}],
            }
            if all(port_kind(p) == "http" for p in svc.ports):
                # HTTP-only: the Host header can be checked too (hosts is HTTP-only in AuthZ);
                # an exact host misses host:port, a wildcard cannot carry a port pattern
                hosts = [v for h in svc.hosts for v in ((h,) if is_wildcard(h) else (h, f"{h}:*"))]
                rule["to"] = [{"operation": {"hosts": hosts}}]
            add(rule)
    for svc in services:
        wild = [h for h in svc.hosts if is_wildcard(h)]
        if wild and any(port_kind(p) == "tls" for p in svc.ports) and _has_source(policy, svc):
            # passthrough: no identity to check, so admit only identity-less connections whose
            # SNI is one of the wildcard hosts; mTLS connections must match a rule above
            add(
                {
                    "from": [{"source": {"notPrincipals": ["*"]}}],
                    "when": [{"key": "connection.sni", "values": wild}],
                }
            )
    return {
        "apiVersion": SECURITY,
        "kind": "AuthorizationPolicy",
        "metadata": meta(f"{PREFIX}{gateway.name}", gateway.namespace),
        "spec": {
            "selector": {"matchLabels": dict(gateway.selector)},
            "action": "ALLOW",
            "rules": rules,
        },
    }


def _has_source(policy: Policy, svc: ExternalService) -> bool:
    return any(svc.name in r.services for r in policy.rules)

"""The addresses of the egress namespace: a tenant destination there aliases an egress gateway.

The egress gateways pass a wildcard TLS service on its SNI alone (``PASSTHROUGH``: no caller
identity reaches them), so which namespaces may use one is decided only by the routes generated
into each namespace's sidecars.  A tenant entry whose destination is a gateway pod's IP or the
gateway Service's cluster IP hands the app's own ClientHello to the gateway past those routes,
and such addresses are internal, so the internal-network rule alone lets them through.  Aliases
by name are refused by ``names_egress_namespace``; this module refuses aliases by address: the
addresses Pods and Services of the egress namespace (and of every gateway's namespace) hold
*now*, as the cluster view reports them (``ClusterView.namespace_addresses``).

What the view cannot tell:

- Views that do not watch the cluster (offline ``check`` without those Pods and Services among
  its manifests, unit tests) answer None and the rule is skipped, like the Sidecar-first
  invariant of ``injection``.
- A watched view whose watch of a namespace has not synced yet (the webhook watches the policy's
  namespaces from the start, so only a policy naming a new namespace, or a start whose first list
  timed out, leaves it so for long) refuses every IP destination of a tenant entry with "retry
  shortly", as ``injection.sidecar_missing`` does: an unknown must not become a silent allow.
- An address a gateway pod takes *after* an entry naming it was admitted is not seen at
  admission (docs/security-model.md#known-limits).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from webhook.core.checks import ClusterView
from webhook.core.checks.common import Block, blocks_of
from webhook.core.checks.injection import WatchedView
from webhook.core.hosts import address_range, is_ip, normalize
from webhook.core.policy import Policy

# ::ffff:a.b.c.d, which a dual-stack socket dials as the IPv4 address a.b.c.d
_MAPPED = 0xFFFF << 32
_MAPPED_MASK = ~0xFFFFFFFF

_ENDED = frozenset({"Succeeded", "Failed"})

WAITING = (
    "egress-guard has not yet learnt the addresses of the egress namespace (its watch is "
    "starting), so it cannot tell whether this address reaches an egress gateway directly: "
    "retry shortly"
)


@dataclass(frozen=True, slots=True)
class EgressAddresses:
    """The IP addresses the egress namespaces' Pods and Services hold, as sorted integers.

    An IPv4 address is held in its IPv4-mapped IPv6 form too, and a mapped one as IPv4: both
    reach the same socket.  ``waiting``: the view watches the cluster but has not listed some
    namespace yet, so every IP destination is refused (``problem``).
    """

    v4: tuple[int, ...] = ()
    v6: tuple[int, ...] = ()
    # (IP version, address) -> "10.0.0.5 (namespace istio-egress)", for messages
    names: Mapping[tuple[int, int], str] = field(default_factory=dict)
    # the IPv4 blocks holding an address, and each address as (32 or 128, it): what
    # ``AddressClasses`` tells apart
    cuts: frozenset[Block] = frozenset()
    waiting: bool = False

    def problem(self, value: str) -> str | None:
        """Why a tenant destination (an IP address or CIDR; anything else passes) is refused."""
        target = normalize(value)
        # most destinations that are no address are names: spare them the failing parse
        net = address_range(target) if is_ip(target) else None
        if net is None:
            return None
        if self.waiting:
            return WAITING
        version, first, last = net
        held = self.v4 if version == 4 else self.v6
        at = bisect_left(held, first)
        if at == len(held) or held[at] > last:
            return None
        relation = "is" if first == last else "contains"
        return (
            f"{value!r} {relation} {self.names[(version, held[at])]}, an address of an egress "
            "gateway's namespace: traffic sent there directly skips the routes that decide "
            "which workloads may use each egress gateway (a wildcard TLS service passes the "
            "gateway on its SNI alone); call the external host itself and the generated routes "
            "take it to the gateway"
        )


def object_addresses(obj: Mapping[str, Any]) -> frozenset[str]:
    """The IP addresses a Pod (``status.podIP``, ``status.podIPs[].ip``) or a Service
    (``spec.clusterIP``, ``spec.clusterIPs``; not ``None``, headless) holds.

    Read whatever the kind: items of a list carry none, and a Pod has no cluster IP nor a
    Service a pod IP.
    """
    spec, status = obj.get("spec"), obj.get("status")
    found: list[Any] = []
    if isinstance(spec, Mapping):
        found += [spec.get("clusterIP"), *_listed(spec.get("clusterIPs"))]
    if isinstance(status, Mapping) and status.get("phase") not in _ENDED:
        # a finished pod's address goes back to the pool, and may be a tenant pod's next
        pod_ips = [i.get("ip") for i in _listed(status.get("podIPs")) if isinstance(i, Mapping)]
        found += [status.get("podIP"), *pod_ips]
    return frozenset(a for a in found if isinstance(a, str) and a and a != "None")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def watched_namespaces(policy: Policy) -> tuple[str, ...]:
    """The namespaces whose addresses a tenant destination may not name: the egress namespace
    and every gateway's."""
    return tuple(dict.fromkeys((policy.egress_namespace, *(g.namespace for g in policy.gateways))))


def egress_addresses(policy: Policy, view: ClusterView, namespace: str) -> EgressAddresses | None:
    """What a tenant object in ``namespace`` may not name; None when the rule does not apply.

    It does not apply in the egress namespace (the security team's own objects), nor when the
    view cannot tell any of the namespaces' addresses and does not watch the cluster.
    """
    if policy.is_egress_namespace(namespace):
        return None
    known: list[tuple[str, Collection[str]]] = []
    unknown = False
    for watched in watched_namespaces(policy):
        found = view.namespace_addresses(watched)
        if found is None:
            unknown = True
        else:
            known.append((watched, found))
    if unknown and isinstance(view, WatchedView):
        return EgressAddresses(waiting=True)
    if not known:
        return None
    return _indexed(tuple((ns, frozenset(found)) for ns, found in known))


@lru_cache(maxsize=16)
def _indexed(known: tuple[tuple[str, frozenset[str]], ...]) -> EgressAddresses:
    """The addresses of each namespace, indexed (cached: they change far less than reviews)."""
    names: dict[tuple[int, int], str] = {}
    for namespace, found in known:
        for text in sorted(found):
            net = address_range(normalize(text))
            if net is None or net[1] != net[2]:
                continue
            version, address, _ = net
            name = f"{text} (namespace {namespace})"
            names.setdefault((version, address), name)
            if version == 4:
                names.setdefault((6, _MAPPED | address), name)
            elif address & _MAPPED_MASK == _MAPPED:
                names.setdefault((4, address & 0xFFFFFFFF), name)
    v4 = tuple(sorted(a for v, a in names if v == 4))
    return EgressAddresses(
        v4=v4,
        v6=tuple(sorted(a for v, a in names if v == 6)),
        names=names,
        cuts=frozenset(
            (
                *(block for address in v4 for block in blocks_of(address)),
                # each address is told apart as an interval of its own (AddressClasses)
                *((32 if v == 4 else 128, address) for v, address in names),
            )
        ),
    )

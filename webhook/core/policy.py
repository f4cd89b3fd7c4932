"""The egress policy as the decision engine uses it: frozen values plus precompiled indexes.

The security team writes YAML (see ``policy_parsing``); this module holds what that YAML means
once checked: the external services (hosts, ports, protocols, gateway), the allow rules, and the
indexes built once per policy revision so each admission decision is a handful of dictionary and
trie lookups whatever the size of the allow list.

Sources and the layers that enforce them:
- namespace and workload labels are checked at config time (Sidecar imports, VirtualService
  routes, ServiceEntries): a Sidecar may import a service only for workloads its selector pins to
  a rule's labels;
- a rule's service account is an identity, and identities are only known where mTLS ends, at the
  egress gateway: the generated AuthorizationPolicy enforces it there.  Objects that open a
  *direct* path (a tenant ServiceEntry, which bypasses the gateway) therefore need a rule with no
  labels and no service account.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import repeat
from operator import itemgetter, methodcaller
from typing import TYPE_CHECKING

# desired/ imports these three through this module, the policy's public face
from webhook.core.external_services import ExternalService as ExternalService
from webhook.core.external_services import Gateway as Gateway
from webhook.core.external_services import Port as Port
from webhook.core.hosts import HostTrie, address_range, covers

if TYPE_CHECKING:
    # exceptions build on this module's rules and sources; Policy only holds them
    from webhook.core.policy_exceptions import PolicyException

WILDCARD_NAMESPACE = "*"

DEFAULT_EXCLUDED_NAMESPACES: tuple[str, ...] = (
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "istio-system",
    "egress-guard",
)

MANAGED_LABEL = "egress-guard.io/managed"
SERVICE_LABEL = "egress-guard.io/service"
# the Sidecar outbound mode the whole guardrail rests on: unknown hosts are dropped
REGISTRY_ONLY = "REGISTRY_ONLY"

# Policy.known_tree: a label to its domain and the labels under that domain
KnownTree = dict[str, tuple[str, "KnownTree"]]
# the children of every known domain without any; never written to
_NO_CHILDREN: KnownTree = {}


class Mode(StrEnum):
    """``enforce`` denies violations; ``audit`` admits them with warnings and a log line."""

    ENFORCE = "enforce"
    AUDIT = "audit"


class GatewayMode(StrEnum):
    """One egress gateway for every service, or one per service (the Banzai layout)."""

    SHARED = "shared"
    DEDICATED = "dedicated"


@dataclass(frozen=True, slots=True)
class Source:
    """Who a rule is for: a namespace (or ``*``), optionally narrowed by labels and identity."""

    namespace: str
    workload_labels: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None

    def matches_namespace(self, namespace: str) -> bool:
        """True when the rule applies to workloads of ``namespace``."""
        return self.namespace in (WILDCARD_NAMESPACE, namespace)

    @property
    def is_namespace_wide(self) -> bool:
        """True when every workload of the namespace is a source, whatever labels or identity."""
        return not self.workload_labels and self.service_account is None

    def describe(self) -> str:
        """``team-a``, ``test-app{k8s-app=app-a}``, ``*[sa=build]`` for messages."""
        text = "every namespace" if self.namespace == WILDCARD_NAMESPACE else self.namespace
        if self.workload_labels:
            labels = ",".join(f"{k}={v}" for k, v in sorted(self.workload_labels.items()))
            text += "{" + labels + "}"
        if self.service_account:
            text += f"[sa={self.service_account}]"
        return text


@dataclass(frozen=True, slots=True)
class AllowRule:
    """``source`` may reach each service named in ``services``."""

    name: str
    source: Source
    services: tuple[str, ...]
    # the policy exception this rule comes from; empty for the permanent allow list
    exception: str = ""


@dataclass(frozen=True, slots=True)
class Workloads:
    """A set of workloads an object affects: a namespace, optionally narrowed by a selector.

    ``selector=None`` means every workload of the namespace.
    """

    namespace: str
    selector: Mapping[str, str] | None = None

    def describe(self) -> str:
        """Human form for messages: ``test-app`` or ``test-app{k8s-app=app-b}``."""
        if not self.selector:
            return f"namespace {self.namespace}"
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.selector.items()))
        return f"workloads {{{labels}}} in namespace {self.namespace}"


@dataclass(frozen=True, slots=True)
class Policy:
    """A checked, compiled egress policy.  Build it with ``policy_parsing.parse_policy``."""

    mode: Mode
    egress_namespace: str
    services: Mapping[str, ExternalService]
    rules: tuple[AllowRule, ...]
    excluded_namespaces: frozenset[str]
    cluster_domain: str = "cluster.local"
    trust_domain: str = "cluster.local"
    istio_version: tuple[int, int] = (1, 30)
    controller_users: frozenset[str] = frozenset()
    network_policies: bool = False
    internal_networks: tuple[str, ...] = ()
    # who may write in the egress namespace besides the controller
    security_team_users: frozenset[str] = frozenset()
    security_team_groups: frozenset[str] = frozenset()
    revision: str = ""
    name: str = ""
    # every declared exception, live or not; only ``at(now)`` folds the live ones into ``rules``
    exceptions: tuple[PolicyException, ...] = ()
    max_exception_days: int | None = None
    # indexes, derived in __post_init__
    _hosts: HostTrie[str] = field(init=False, repr=False, compare=False)
    _rules_by_ns: Mapping[str, tuple[AllowRule, ...]] = field(init=False, repr=False, compare=False)
    _wild_rules: tuple[AllowRule, ...] = field(init=False, repr=False, compare=False)
    _gateway_hosts: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _gateways: tuple[Gateway, ...] = field(init=False, repr=False, compare=False)
    # see host_class: names and wildcard suffixes a check may judge on their own
    _own_names: frozenset[str] = field(init=False, repr=False, compare=False)
    _own_suffixes: frozenset[str] = field(init=False, repr=False, compare=False)
    # filled on first use (see own_parents): a list, since the policy is frozen
    _own_parents: list[frozenset[str]] = field(init=False, repr=False, compare=False)
    # filled on first use (see known_domains, known_tree)
    _known_domains: list[frozenset[str]] = field(init=False, repr=False, compare=False)
    _known_tree: list[KnownTree] = field(init=False, repr=False, compare=False)
    _service_zone: str = field(init=False, repr=False, compare=False)
    _dot_zone: str = field(init=False, repr=False, compare=False)
    _egress_zones: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _cut_blocks: frozenset[tuple[int, int]] = field(init=False, repr=False, compare=False)
    _address_bounds: dict[int, tuple[int, ...]] = field(init=False, repr=False, compare=False)
    # effective policies by live exception names, shared by a policy and all its resolutions
    _resolved: dict[tuple[str, ...], Policy] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        trie = HostTrie.build(
            (host, svc.name) for svc in self.services.values() for host in svc.hosts
        )
        by_ns, wild = _index_rules(self.rules)
        gateways: dict[str, list[str]] = {}
        distinct: dict[str, Gateway] = {}
        for svc in self.services.values():
            gateways.setdefault(svc.gateway.fqdn, []).append(svc.name)
            distinct.setdefault(svc.gateway.fqdn, svc.gateway)
        object.__setattr__(self, "_hosts", trie)
        object.__setattr__(self, "_rules_by_ns", by_ns)
        object.__setattr__(self, "_wild_rules", wild)
        object.__setattr__(self, "_gateway_hosts", {k: tuple(v) for k, v in gateways.items()})
        object.__setattr__(self, "_gateways", tuple(distinct.values()))
        object.__setattr__(self, "_resolved", {})
        object.__setattr__(self, "_own_parents", [])
        object.__setattr__(self, "_known_domains", [])
        object.__setattr__(self, "_known_tree", [])
        zone = f"svc.{self.cluster_domain}"
        fqdns = [gw.fqdn for gw in self._gateways]
        object.__setattr__(self, "_service_zone", zone)
        object.__setattr__(self, "_dot_zone", "." + zone)
        spaces = sorted({self.egress_namespace, *(gw.namespace for gw in self._gateways)})
        object.__setattr__(self, "_egress_zones", tuple(f".{ns}.{zone}" for ns in spaces))
        ranges = [
            *self.internal_networks,
            *(a for v in self.services.values() for a in v.addresses),
        ]
        object.__setattr__(self, "_cut_blocks", frozenset(_cut_blocks(ranges)))
        object.__setattr__(self, "_address_bounds", _address_bounds(ranges))
        object.__setattr__(self, "_own_names", frozenset((*trie.exact_names(), *fqdns, zone)))
        object.__setattr__(
            self,
            "_own_suffixes",
            frozenset((*trie.suffixes(), zone, *(s for f in fqdns for s in _suffixes(f)), "")),
        )

    # --- exceptions: the one path from declared grants to grants in force ------------------

    def at(self, now: datetime) -> Policy:
        """The policy in force at ``now``: the permanent rules plus every live exception's.

        Every consumer (admission, the reconciler's plan, check, explain, render, diff, audit)
        decides on the result of this call.  A policy that was never resolved grants no
        exception at all, so a consumer that forgets to call it fails closed; resolving an
        already resolved policy starts again from the permanent rules, so an expired exception
        can never survive a second resolution.  The result is memoized per set of live
        exceptions: the review path pays a scan of the exceptions, not a recompile.
        """
        if not self.exceptions:
            return self
        live = tuple(e for e in self.exceptions if e.is_live(now))
        key = tuple(e.name for e in live)
        resolved = self._resolved.get(key)
        if resolved is None:
            resolved = self._with_exception_rules(live)
            if len(self._resolved) > 64:
                # time only moves forward, so old live sets are not asked for again
                self._resolved.clear()
            self._resolved[key] = resolved
        return resolved

    def _with_exception_rules(self, live: tuple[PolicyException, ...]) -> Policy:
        base_revision = self.revision.partition("+")[0]
        rules = tuple(r for r in self.rules if not r.exception)
        rules += tuple(rule for exc in live for rule in exc.rules())
        revision = base_revision
        if live:
            granted = "|".join(f"{e.name}@{e.expires.isoformat()}" for e in live)
            revision += "+" + hashlib.sha256(granted.encode()).hexdigest()[:8]
        # host and gateway indexes do not depend on rules: share them instead of recompiling
        resolved = copy.copy(self)
        by_ns, wild = _index_rules(rules)
        object.__setattr__(resolved, "rules", rules)
        object.__setattr__(resolved, "revision", revision)
        object.__setattr__(resolved, "_rules_by_ns", by_ns)
        object.__setattr__(resolved, "_wild_rules", wild)
        return resolved

    def next_expiry(self, now: datetime) -> datetime | None:
        """The next instant an exception ends after ``now`` (when to reconcile again)."""
        return min((e.expires for e in self.exceptions if e.is_live(now)), default=None)

    def expiring_within(
        self, now: datetime, window: timedelta = timedelta(days=7)
    ) -> tuple[PolicyException, ...]:
        """Live exceptions ending within ``window`` of ``now``, soonest first."""
        return tuple(
            sorted(
                (e for e in self.exceptions if e.is_live(now) and e.expires <= now + window),
                key=lambda e: (e.expires, e.name),
            )
        )

    def expired(self, now: datetime) -> tuple[PolicyException, ...]:
        """Declared exceptions that no longer grant anything at ``now``."""
        return tuple(e for e in self.exceptions if not e.is_live(now))

    # --- namespaces -------------------------------------------------------------------------

    def is_excluded(self, namespace: str) -> bool:
        """Namespaces the guardrail leaves alone (system, mesh, its own)."""
        return namespace in self.excluded_namespaces

    def is_security_team(self, username: str, groups: Iterable[str]) -> bool:
        """Whether a request's user or one of its groups is a security-team identity."""
        return username in self.security_team_users or any(
            g in self.security_team_groups for g in groups
        )

    @property
    def has_security_team(self) -> bool:
        """Whether the policy names the identities that own the egress namespace."""
        return bool(self.security_team_users or self.security_team_groups)

    def is_egress_namespace(self, namespace: str) -> bool:
        """The security team's namespace holding gateways and external ServiceEntries."""
        return namespace == self.egress_namespace

    # --- hosts ------------------------------------------------------------------------------

    @property
    def egress_zones(self) -> tuple[str, ...]:
        """``.<namespace>.svc.<domain>`` of the egress namespace and of every gateway's."""
        return self._egress_zones

    @property
    def service_zone(self) -> str:
        """``svc.<domain>``: ``is_internal`` holds of it and of the names under it."""
        return self._service_zone

    def is_internal(self, host: str) -> bool:
        """A normalized host naming a Service of the cluster (pod-DNS names are not)."""
        # is_service_name unrolled (a property test holds them equal): called once per host
        return host == self._service_zone or host.endswith(self._dot_zone)

    def splits_block(self, block: int, bits: int = 24) -> bool:
        """Whether a policy range ends inside IPv4 block ``block`` (the address ``>> 32 - bits``).

        When none does, every address of the block lies inside the same ranges (internal
        networks, service addresses), so the policy judges them all alike.  ``bits`` is 8, 16
        or 24.
        """
        return (bits, block) in self._cut_blocks

    def address_bounds(self, version: int) -> tuple[int, ...]:
        """Where an address of IP ``version`` enters or leaves a policy range (a range's first
        address and the one after its last), sorted, with 1 and the last address: between two
        neighbours, addresses lie inside the same ranges (internal networks, service
        addresses), so a CIDR's first and last address placed between the same neighbours as
        another's mean the policy judges the two alike (and only ``0/0`` starts before 1 and
        ends at the last address)."""
        return self._address_bounds[version]

    @property
    def own_names(self) -> frozenset[str]:
        """Names ``host_class`` leaves to be judged alone."""
        return self._own_names

    @property
    def own_suffixes(self) -> frozenset[str]:
        """Wildcard suffixes (``*.`` dropped) ``host_class`` leaves to be judged alone."""
        return self._own_suffixes

    @property
    def own_parents(self) -> frozenset[str]:
        """The parent domains of ``own_names`` and ``own_suffixes`` (``a.b`` for ``x.a.b``).

        A name whose parent is not among them is neither an own name nor an own suffix, so a
        list of names under a few parents is cleared of both by a few lookups.  Built on first
        use: only objects listing thousands of names ask.
        """
        if not self._own_parents:
            names = (*self._own_names, *self._own_suffixes)
            self._own_parents.append(
                frozenset(map(itemgetter(2), map(str.partition, names, repeat("."))))
            )
        return self._own_parents[0]

    @property
    def known_domains(self) -> frozenset[str]:
        """``own_names``, ``own_suffixes`` and every domain above them (``b.c``, ``c`` and the
        root ``""`` for ``a.b.c``): the domains whose answers to a host question can differ
        from their parent's.

        Closed under taking the parent, so a name outside it has nothing the policy knows at
        or below it, and every host question about it is answered by the nearest domain above
        it that is in the set (``checks.common.nearest_known``).  Built on first use.
        """
        if not self._known_domains:
            known: set[str] = {""}
            for name in (*self._own_names, *self._own_suffixes):
                while name and name not in known:
                    known.add(name)
                    name = name.partition(".")[2]
            self._known_domains.append(frozenset(known))
        return self._known_domains[0]

    @property
    def known_tree(self) -> KnownTree:
        """``known_domains`` as a tree read from the top-level label down: each label maps to
        its domain and the labels under it (``{"com": ("com", {"github": ("github.com",
        {})})}``), the root's being the top-level labels.

        A walk down it finds a name's nearest known domain in as many steps as that domain has
        labels, however many labels the name has (``checks.common.nearest_known``).  Built on
        first use; the domains without known children share one empty mapping.
        """
        if not self._known_tree:
            known = self.known_domains
            below: dict[str, KnownTree] = {"": {}}
            with_children = frozenset(map(itemgetter(2), map(str.partition, known, repeat("."))))
            # parents before children: fewer dots first
            for domain in sorted(known - {""}, key=methodcaller("count", ".")):
                label, _, parent = domain.partition(".")
                children: KnownTree = {} if domain in with_children else _NO_CHILDREN
                below[parent][label] = (domain, children)
                below[domain] = children
            self._known_tree.append(below[""])
        return self._known_tree[0]

    def host_class(self, host: str, *, wildcards: bool = False) -> str | None:
        """A key shared by normalized hosts the policy judges alike; None: judge it alone.

        A name the policy does not list by itself (no exact pattern, not a gateway, not the
        Service zone) is covered, imported, internal or not only through its parent domain, so
        ``a.example.com`` and ``b.example.com`` get the same answers from every host question
        of this class (``services_covering``, ``services_imported_by``, ``is_internal``,
        ``gateways``) and the key ``.example.com``.  With ``wildcards``, ``*.a.example.com``
        gets ``*.example.com`` unless ``a.example.com`` is a suffix the policy knows; only for
        callers that do not ask whether a wildcard is over a public suffix, which depends on
        the wildcard's own labels.  A check that found one host of a class clean skips the
        others: an object with 100k hosts under a few domains is judged a few times.  Only
        the verdict is shared; a violation still names its own host.
        """
        if host[:2] == "*.":
            suffix = host[2:]
            if not wildcards or suffix in self._own_suffixes or "*" in suffix:
                return None
            dot = suffix.find(".")
            return None if dot < 0 else "*" + suffix[dot:]
        if host in self._own_names or "*" in host:
            return None
        dot = host.find(".")
        return None if dot < 0 else host[dot:]

    def services_covering(self, host: str) -> frozenset[str]:
        """Names of the external services with a host pattern that covers ``host``."""
        return self._hosts.covering(host)

    def services_imported_by(self, pattern: str) -> frozenset[str]:
        """Names of services with a host that a Sidecar import ``pattern`` pulls in."""
        return self._hosts.under(pattern)

    def services_on_gateway(self, fqdn: str) -> tuple[str, ...]:
        """Services an egress gateway Service FQDN carries (empty when it is no gateway)."""
        return self._gateway_hosts.get(fqdn, ())

    @property
    def gateways(self) -> tuple[Gateway, ...]:
        """Every distinct egress gateway, in service order."""
        return self._gateways

    def service_hosts_covering(self, service: str, host: str) -> bool:
        """Whether ``service`` has a host pattern covering ``host``."""
        return any(covers(pattern, host) for pattern in self.services[service].hosts)

    # --- rules ------------------------------------------------------------------------------

    @property
    def rule_namespaces(self) -> frozenset[str]:
        """Namespaces some rule names (besides ``*``)."""
        return frozenset(self._rules_by_ns)

    def rules_for_namespace(self, namespace: str) -> tuple[AllowRule, ...]:
        """Every rule whose source namespace is ``namespace`` or ``*``."""
        return self._rules_by_ns.get(namespace, ()) + self._wild_rules

    def allowed_for(self, workloads: Workloads) -> frozenset[str]:
        """Services every workload in ``workloads`` may reach according to namespace and labels.

        A rule counts when its labels are implied by the selector (rule labels ⊆ selector), so
        every selected pod carries them.  Service accounts are enforced at the egress gateway.
        """
        selector = workloads.selector or {}
        allowed: set[str] = set()
        for rule in self.rules_for_namespace(workloads.namespace):
            labels = rule.source.workload_labels
            if all(selector.get(k) == v for k, v in labels.items()):
                allowed.update(rule.services)
        return frozenset(allowed)

    def allowed_directly(self, namespace: str) -> frozenset[str]:
        """Services every workload of ``namespace`` may reach, with no label or identity filter.

        This is the bar for objects that open a path without the gateway's identity check.
        """
        allowed: set[str] = set()
        for rule in self.rules_for_namespace(namespace):
            if rule.source.is_namespace_wide:
                allowed.update(rule.services)
        return frozenset(allowed)

    def allowed_for_some(self, namespace: str) -> frozenset[str]:
        """Services at least one workload of ``namespace`` may reach."""
        allowed: set[str] = set()
        for rule in self.rules_for_namespace(namespace):
            allowed.update(rule.services)
        return frozenset(allowed)

    def allowed_everywhere(self) -> frozenset[str]:
        """Services every namespace may reach directly (rules on ``*`` with no narrowing)."""
        allowed: set[str] = set()
        for rule in self._wild_rules:
            if rule.source.is_namespace_wide:
                allowed.update(rule.services)
        return frozenset(allowed)

    def rules_allowing(
        self,
        namespace: str,
        service: str,
        labels: Mapping[str, str] | None = None,
        service_account: str | None = None,
    ) -> tuple[AllowRule, ...]:
        """Rules letting a pod (namespace, labels, service account) reach ``service``."""
        pod_labels = labels or {}
        found = []
        for rule in self.rules_for_namespace(namespace):
            if service not in rule.services:
                continue
            src = rule.source
            if any(pod_labels.get(k) != v for k, v in src.workload_labels.items()):
                continue
            if src.service_account is not None and src.service_account != service_account:
                continue
            found.append(rule)
        return tuple(found)

    def describe_allowed(self, services: Iterable[str]) -> str:
        """``httpbin (httpbin.org, www.httpbin.org), github (...)`` or ``nothing``."""
        parts = [
            f"{name} ({', '.join(self.services[name].hosts)})"
            for name in sorted(services)
            if name in self.services
        ]
        return ", ".join(parts) if parts else "no external service"

    def address_allowed(self, address: str, services: Iterable[str]) -> bool:
        """Whether an IP/CIDR lies inside the declared addresses of one of ``services``."""
        return any(_inside(address, self.services[name].addresses) for name in services)

    def is_internal_address(self, address: str) -> bool:
        """Whether an IP/CIDR lies inside the policy's ``internalNetworks``."""
        return _inside(address, self.internal_networks)


def _index_rules(
    rules: Iterable[AllowRule],
) -> tuple[dict[str, tuple[AllowRule, ...]], tuple[AllowRule, ...]]:
    """Rules by source namespace, and the rules on every namespace."""
    by_ns: dict[str, list[AllowRule]] = {}
    wild: list[AllowRule] = []
    for rule in rules:
        if rule.source.namespace == WILDCARD_NAMESPACE:
            wild.append(rule)
        else:
            by_ns.setdefault(rule.source.namespace, []).append(rule)
    return {k: tuple(v) for k, v in by_ns.items()}, tuple(wild)


def _cut_blocks(ranges: Iterable[str]) -> Iterator[tuple[int, int]]:
    """``(bits, block)`` of the /8, /16 and /24 blocks an IPv4 range starts or ends inside."""
    for text in ranges:
        net = address_range(text)
        if net is None or net[0] != 4:
            continue
        _, first, last = net
        for bits in (8, 16, 24):
            shift = 32 - bits
            inside = (1 << shift) - 1
            if first & inside:
                yield bits, first >> shift
            if last & inside != inside:
                yield bits, last >> shift


def _address_bounds(ranges: Iterable[str]) -> dict[int, tuple[int, ...]]:
    """``Policy.address_bounds`` of ``ranges``, by IP version."""
    bounds: dict[int, set[int]] = {4: {1, (1 << 32) - 1}, 6: {1, (1 << 128) - 1}}
    for text in ranges:
        net = address_range(text)
        if net is not None:
            bounds[net[0]].update((net[1], net[2] + 1))
    return {version: tuple(sorted(found)) for version, found in bounds.items()}


def _suffixes(name: str) -> list[str]:
    """``a.b.c`` -> ``[a.b.c, b.c, c]``."""
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


def effective_policy(policy: Policy, now: datetime) -> Policy:
    """The policy in force at ``now`` (``Policy.at``), for callers that prefer a function."""
    return policy.at(now)


def _inside(address: str, networks: Iterable[str]) -> bool:
    """Whether an IP/CIDR is a subnet of one of ``networks`` (same IP version)."""
    net = address_range(address)
    if net is None:
        return False
    version, first, last = net
    for allowed in networks:
        candidate = address_range(allowed)
        if (
            candidate is not None
            and candidate[0] == version
            and candidate[1] <= first
            and last <= candidate[2]
        ):
            return True
    return False

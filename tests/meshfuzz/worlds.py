"""The policies the differential fuzzer attacks, and what each one says about its sources.

A *world* is a policy plus the namespaces that exist around it, the sources its rules name (and
a few no rule names), and the host and port pools the tenant-object generators draw from.  The
pools are biased towards the policy: its hosts, names under its wildcards, the apex of those
wildcards, near-misses an attacker would try (``evilgithub.com``), the egress gateways' own
names, cluster-local names and IP addresses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from webhook.core.desired import NamespaceInfo, generate
from webhook.core.hosts import is_wildcard, wildcard_suffix
from webhook.core.naming import gateway_subset
from webhook.core.policy import WILDCARD_NAMESPACE, Policy
from webhook.core.policy_parsing import parse_policy

ROOT = Path(__file__).resolve().parents[2]

# a namespace no rule names: it may reach only what "*" rules allow
OUTSIDER = "outsider"


@dataclass(frozen=True, slots=True)
class Source:
    """A client workload: where it runs, its pod labels and its service account."""

    namespace: str
    labels: tuple[tuple[str, str], ...] = ()
    service_account: str = "default"

    @property
    def label_map(self) -> dict[str, str]:
        """The pod labels as a dict."""
        return dict(self.labels)

    def describe(self) -> str:
        """``ns{k=v}[sa]`` for reports."""
        labels = ",".join(f"{k}={v}" for k, v in self.labels)
        return f"{self.namespace}{{{labels}}}[{self.service_account}]"


@dataclass(frozen=True, slots=True)
class World:
    """A policy, the cluster around it, and the pools generators draw tenant objects from."""

    name: str
    policy: Policy
    namespaces: tuple[str, ...]
    sources: tuple[Source, ...]
    hosts: tuple[str, ...]
    ports: tuple[int, ...]
    addresses: tuple[str, ...]
    label_sets: tuple[tuple[tuple[str, str], ...], ...]
    subsets: tuple[str, ...]
    # the policy's hosts and the names an allowed caller would really use under them
    policy_hosts: tuple[str, ...]
    baseline: tuple[dict[str, object], ...] = field(repr=False)

    @property
    def tenant_namespaces(self) -> tuple[str, ...]:
        """Namespaces whose objects the webhook judges as a tenant's."""
        return tuple(
            n
            for n in self.namespaces
            if not self.policy.is_excluded(n) and not self.policy.is_egress_namespace(n)
        )

    @property
    def gateway_fqdns(self) -> tuple[str, ...]:
        """The egress gateways' Service names."""
        return tuple(g.fqdn for g in self.policy.gateways)


def _concrete(host: str) -> list[str]:
    """Names an attacker tries around one policy host."""
    if is_wildcard(host):
        suffix = wildcard_suffix(host)
        return [f"a.{suffix}", f"x.y.{suffix}", suffix, f"evil{suffix}", f"{suffix}.evil.io"]
    first, _, rest = host.partition(".")
    return [host, f"evil{host}", f"{host}.evil.io", f"x.{host}", f"{first}-{rest}".replace(".", "")]


def _sources(policy: Policy, namespaces: tuple[str, ...]) -> tuple[Source, ...]:
    found: dict[Source, None] = {}
    labels = [r.source.workload_labels for r in policy.rules if r.source.workload_labels]
    accounts = sorted({r.source.service_account for r in policy.rules if r.source.service_account})
    for ns in namespaces:
        if policy.is_excluded(ns) or policy.is_egress_namespace(ns):
            continue
        found[Source(ns)] = None
        for label_map in labels:
            found[Source(ns, tuple(sorted(label_map.items())))] = None
        for account in accounts:
            found[Source(ns, (), account)] = None
        # a pod carrying a label no rule names
        found[Source(ns, (("app", "stranger"),))] = None
    return tuple(found)


def make_world(name: str, policy: Policy, extra_namespaces: tuple[str, ...] = ()) -> World:
    """A world for ``policy``: every namespace its rules name, an outsider, the egress one."""
    named = sorted(
        {r.source.namespace for r in policy.rules if r.source.namespace != WILDCARD_NAMESPACE}
    )
    namespaces = tuple(
        dict.fromkeys([*named, *extra_namespaces, OUTSIDER, policy.egress_namespace])
    )
    hosts: dict[str, None] = {}
    for svc in policy.services.values():
        for host in svc.hosts:
            hosts[host] = None
            for candidate in _concrete(host):
                hosts[candidate] = None
    for fqdn in (g.fqdn for g in policy.gateways):
        hosts[fqdn] = None
    for ns in namespaces:
        hosts[f"db.{ns}.svc.{policy.cluster_domain}"] = None
    hosts["db"] = None
    hosts[f"*.{policy.egress_namespace}.svc.{policy.cluster_domain}"] = None
    hosts["unlisted.example.org"] = None
    ports = sorted({p.number for s in policy.services.values() for p in s.ports} | {22, 8080})
    addresses = sorted(
        {a for s in policy.services.values() for a in s.addresses}
        | {"203.0.113.7", "198.51.100.9", "10.1.2.3", "0.0.0.0/0"}
    )
    label_sets = tuple(
        dict.fromkeys(
            [tuple(sorted(r.source.workload_labels.items())) for r in policy.rules]
            + [(("app", "stranger"),)]
        )
    )
    subsets = tuple(
        gateway_subset(svc, i) for svc in policy.services.values() for i in range(len(svc.hosts))
    )
    baseline = generate(policy, [NamespaceInfo(n) for n in namespaces]).manifests
    policy_hosts = tuple(
        dict.fromkeys(
            c
            for svc in policy.services.values()
            for h in svc.hosts
            for c in ((h, f"a.{wildcard_suffix(h)}") if is_wildcard(h) else (h,))
        )
    )
    return World(
        name=name,
        policy=policy,
        namespaces=namespaces,
        sources=_sources(policy, namespaces),
        hosts=tuple(hosts),
        ports=tuple(ports),
        addresses=tuple(addresses),
        label_sets=label_sets,
        subsets=subsets,
        policy_hosts=policy_hosts,
        baseline=tuple(baseline),
    )


MIXED = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: egress, gateway: {mode: shared}}
internalNetworks: [10.0.0.0/8]
externalServices:
  - name: payments
    hosts: [api.payments.example]
    ports: [{number: 443, protocol: TLS}, {number: 80, protocol: HTTP}]
    addresses: [203.0.113.0/28]
  - name: partner
    hosts: ["*.partner.example"]
    ports: [{number: 443, protocol: TLS}]
  - name: ml
    hosts: [ml.example.net]
    ports: [{number: 80, protocol: HTTP}]
    tlsOrigination: {port: 443}
  - name: db
    hosts: [db.vendor.example]
    ports: [{number: 5432, protocol: TCP}]
allow:
  - {name: everyone, from: {namespace: "*"}, to: [payments]}
  - {name: team-a, from: {namespace: team-a}, to: [partner]}
  - {name: trainer, from: {namespace: team-a, workloadLabels: {app: trainer}}, to: [ml]}
  - {name: builder, from: {namespace: team-b, serviceAccount: build}, to: [db]}
"""


def _read(name: str) -> Policy:
    return parse_policy((ROOT / "policies" / name).read_text(), name=name)


def _shared_banzai() -> Policy:
    text = (ROOT / "policies" / "banzai-demo.yaml").read_text()
    text = text.replace("mode: dedicated", "mode: shared").replace(
        "name: egress-{service}", "name: istio-egressgateway"
    )
    text = text.replace(
        "selector:\n          gateway-name: egress-{service}\n          gateway-type: egress",
        "selector: {istio: egressgateway}",
    )
    return parse_policy(text, name="banzai-shared")


def worlds() -> tuple[World, ...]:
    """Every world the fuzzer attacks, in a fixed order."""
    return (
        make_world("banzai", _read("banzai-demo.yaml")),
        make_world("banzai-shared", _shared_banzai()),
        make_world("istio-egress-firewall", _read("istio-egress-firewall.yaml")),
        make_world("mixed", parse_policy(MIXED, name="mixed")),
    )

"""DestinationRule: client-side traffic policy, which can add a destination and strip identity.

Two fields matter for egress (docs/istio-semantics.md#destinationrule):
``trafficPolicy.tunnel.targetHost`` makes the rule's host a CONNECT/POST proxy to a second
destination, so that target must be allowed directly; and a ``tls.mode`` other than ``ISTIO_MUTUAL``
towards an egress gateway replaces the mesh mTLS the gateway reads the client's identity from.  A
rule with a ``workloadSelector`` is private to its namespace (istiod makes it so), and one that
says otherwise in ``exportTo`` is refused as Istio's validation refuses it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from itertools import chain, compress, repeat
from operator import is_
from typing import Any

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import (
    ChunkedKeys,
    Reader,
    destination_problem,
    gateways_covered_by,
    judge_classes,
    many,
    name_classes,
    visibility,
)
from webhook.core.decisions import STOP_AFTER_VIOLATIONS, Violation
from webhook.core.hosts import MAX_HOST_LENGTH, VALID_NAME, is_wildcard, normalize
from webhook.core.policy import Policy, Workloads
from webhook.core.reviews import Review

ISTIO_MUTUAL = "ISTIO_MUTUAL"
DISABLE = "DISABLE"


def _carries_wildcard_tls(policy: Policy, fqdn: str) -> bool:
    """Whether an egress gateway carries a wildcard host on a TLS port (PASSTHROUGH needed)."""
    for name in policy.services_on_gateway(fqdn):
        service = policy.services[name]
        if any(p.is_tls for p in service.ports) and any(is_wildcard(h) for h in service.hosts):
            return True
    return False


@checks("networking.istio.io", "DestinationRule")
def check_destination_rule(
    review: Review, policy: Policy, view: ClusterView
) -> Iterable[Violation]:
    """No tunnel to a disallowed target, no identity stripping towards egress gateways."""
    del view
    if review.operation == "DELETE":
        return ()
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    namespace = review.namespace
    spec = reader.spec(review.object)
    raw_host = reader.string(spec.get("host"), "spec.host")
    host = (
        reader.host(
            raw_host, "spec.host", expand_in=namespace, cluster_domain=policy.cluster_domain
        )
        if raw_host
        else None
    )
    egress_ns = policy.is_egress_namespace(namespace)
    gateways = gateways_covered_by(policy, host) if host is not None else ()
    raw_subsets: Any = spec.get("subsets")
    keys: Sequence[Hashable] | None = subset_classes(policy, raw_subsets, bool(gateways))
    if keys is None:
        keys = chunked_subset_classes(policy, raw_subsets, bool(gateways))
    if keys is None:
        keys = subset_keys(raw_subsets)
    groups: list[tuple[Hashable, int, list[tuple[str, Mapping[str, Any]]] | None]] | None = None
    if keys is None:
        policies = list(_traffic_policies(reader, spec))
    else:
        # a subset's verdict depends on its trafficPolicy alone: equal ones are read once
        policies = list(_traffic_policies(reader, {"trafficPolicy": spec.get("trafficPolicy")}))
        if not _read_clean(raw_subsets, keys):
            groups = _read_subsets(reader, raw_subsets, keys)
    if egress_ns and host is not None:
        is_gateway = any(gw.fqdn == host for gw in policy.gateways)
        if not is_gateway and not policy.services_covering(host):
            reader.add(
                "spec.host",
                f"{host!r} is neither an external service nor an egress gateway of the policy: "
                f"{policy.describe_allowed(policy.services)}",
            )
    export_to = spec.get("exportTo")
    # istiod keeps a rule with a workloadSelector private to its namespace whatever exportTo
    # says, and its validation refuses an explicit wider one: omitted (or empty) is '.'
    if spec.get("workloadSelector") is not None and export_to not in (None, []):
        visible = visibility(reader, export_to, namespace)
        if visible.beyond(namespace):
            reader.add(
                "spec.exportTo",
                "a DestinationRule with a workloadSelector is private to its namespace, and "
                "Istio refuses a wider exportTo; set exportTo: ['.'] or leave it out",
            )
    allowed = policy.allowed_directly(namespace)
    source = f"namespace {namespace}"
    # tunnel targets under one parent domain get one verdict (a rule can have 17k subsets)
    clean_targets: set[str] = set()

    def judge(reader: Reader, path: str, traffic: Mapping[str, Any]) -> None:
        tunnel = reader.mapping(traffic.get("tunnel"), f"{path}.tunnel")
        target = reader.string(tunnel.get("targetHost"), f"{path}.tunnel.targetHost")
        if tunnel and egress_ns:
            reader.add(f"{path}.tunnel", "egress routes must not tunnel through another proxy")
        elif target:
            # the rule's host becomes a proxy; the target is a second, direct egress destination
            key = _target_class(policy, target)
            if key is None or key not in clean_targets:
                before = len(reader.violations)
                destination_problem(
                    policy, reader, target, f"{path}.tunnel.targetHost", allowed, source
                )
                if key is not None and len(reader.violations) == before:
                    clean_targets.add(key)
        if gateways:
            _check_tls(reader, policy, traffic, path, gateways[0].fqdn, namespace, egress_ns, spec)

    for path, traffic in policies:
        judge(reader, path, traffic)
    if keys is None:
        return reader.violations
    if groups is None:
        # every subset read clean: one judgement per key, unless one breaks the policy

        def judge_subset(reader: Reader, index: int) -> None:
            for path, traffic in _subset_policies(Reader(), index, raw_subsets[index]):
                judge(reader, path, traffic)

        judge_classes(reader, keys, judge_subset)
        return reader.violations
    clean: set[Hashable] = set()
    violations = reader.violations
    for key, index, items in groups:
        if key in clean:
            continue
        if items is None:
            # its shape was read clean in the first pass
            items = _subset_policies(Reader(), index, raw_subsets[index])
        before = len(violations)
        for path, traffic in items:
            judge(reader, path, traffic)
        if key is not None and len(violations) == before:
            clean.add(key)
    return reader.violations


def chunked_subset_classes(policy: Policy, subsets: Any, gateways: bool) -> list[Hashable] | None:
    """``subset_classes`` a chunk at a time, a chunk it cannot class halved down to a few
    subsets judged alone (None): one subset naming a null, numeric or invalid tunnel target
    among 17k leaves the others classed.  Only for a long list of objects; None when most
    subsets are judged alone (their reprs key them better, ``subset_keys``)."""
    if type(subsets) is not list or not many(subsets) or set(map(type, subsets)) != {dict}:
        return None
    keys = list(ChunkedKeys(subsets, partial(_signed_subset_classes, policy, gateways)))
    return None if keys.count(None) * 2 > len(keys) else keys


def _signed_subset_classes(
    policy: Policy, gateways: bool, subsets: Sequence[Any]
) -> list[Hashable] | None:
    """``subset_classes`` of a chunk, each key paired with the parts it is made of: a part
    alike in a whole chunk is left out of its keys, so chunks' keys of other parts never meet."""
    found = subset_classes(policy, subsets, gateways, signed=True)
    return None if found is None else list(found)


def subset_classes(
    policy: Policy, subsets: Any, gateways: bool, *, signed: bool = False
) -> list[Hashable] | None:
    """The class of each subset's verdict, its names judged by ``name_classes``; None: unsure.

    Only for a long list of objects whose trafficPolicies are objects with alike tunnels (all
    absent, or all objects naming a valid target) and, towards an egress gateway, alike tls
    settings.  The checks read nothing else of a subset but ``portLevelSettings``, keyed by
    its repr: subsets with one tunnel or SNI each, under a few domains, make a few classes.
    """
    if type(subsets) is not list or not many(subsets) or set(map(type, subsets)) != {dict}:
        return None
    traffic: list[Any] = list(map(dict.get, subsets, repeat("trafficPolicy")))
    if set(map(type, traffic)) != {dict}:
        return None
    # parts alike in every subset are left out of the keys
    parts: list[list[Any]] = []
    names: list[str] = []
    ports: list[Any] = list(map(dict.get, traffic, repeat("portLevelSettings")))
    if set(map(type, ports)) != {type(None)}:
        parts.append(list(map(repr, ports)))
        names.append("ports")
    tunnels: list[Any] = list(map(dict.get, traffic, repeat("tunnel")))
    kinds = set(map(type, tunnels))
    if kinds == {dict}:
        targets = name_classes(policy, list(map(dict.get, tunnels, repeat("targetHost"))))
        if targets is None:
            return None
        parts.append(targets)
        names.append("tunnel")
        if not all(tunnels):
            # an empty tunnel is none (the egress namespace may have none)
            parts.append(list(map(bool, tunnels)))
            names.append("some tunnel")
    elif kinds != {type(None)}:
        return None
    if gateways:
        tls: list[Any] = list(map(dict.get, traffic, repeat("tls")))
        kinds = set(map(type, tls))
        if kinds == {dict}:
            raw: list[Any] = list(map(dict.get, tls, repeat("sni")))
            if set(map(type, raw)) != {type(None)}:
                snis = name_classes(policy, raw)
                if snis is None:
                    return None
                parts.append(snis)
                names.append("sni")
            parts.append(list(map(repr, map(dict.get, tls, repeat("mode")))))
            names.append("mode")
        elif kinds != {type(None)}:
            return None
    if signed:
        return list(zip(repeat(tuple(names), len(subsets)), *parts, strict=True))
    if len(parts) == 1:
        return parts[0]
    return list(zip(*parts, strict=True)) if parts else [()] * len(subsets)


def _read_clean(subsets: list[dict[str, Any]], keys: Sequence[Hashable]) -> bool:
    """Whether every subset reads without a shape problem, one read per key (each subset of
    key None read on its own)."""
    firsts = dict(zip(keys, range(len(keys)), strict=True))
    firsts.pop(None, None)
    alone = compress(range(len(keys)), map(is_, repeat(None), keys))
    for index in chain(firsts.values(), alone):
        scratch = Reader()
        _subset_policies(scratch, index, subsets[index])
        if scratch.violations:
            return False
    return True


def subset_keys(subsets: Any) -> list[str] | None:
    """The key of each subset's verdict (its trafficPolicy's repr); None: read each.

    Only for a long list of objects: JSON values with equal reprs are equal, and a subset's
    checks read nothing but its trafficPolicy (and its index, for paths).
    """
    if type(subsets) is not list or not many(subsets) or set(map(type, subsets)) != {dict}:
        return None
    return list(map(repr, map(dict.get, subsets, repeat("trafficPolicy"))))


def _read_subsets(
    reader: Reader, subsets: list[dict[str, Any]], keys: Sequence[Hashable]
) -> list[tuple[Hashable, int, list[tuple[str, Mapping[str, Any]]] | None]]:
    """Each subset's traffic policies, shape problems recorded once per key (None: clean)."""
    groups: list[tuple[Hashable, int, list[tuple[str, Mapping[str, Any]]] | None]] = []
    clean: set[Hashable] = set()
    violations = reader.violations
    for index, key in enumerate(keys):
        if key in clean:
            groups.append((key, index, None))
            continue
        before = len(violations)
        groups.append((key, index, _subset_policies(reader, index, subsets[index])))
        if key is not None and len(violations) == before:
            clean.add(key)
    return groups


def _subset_policies(
    reader: Reader, index: int, subset: Mapping[str, Any]
) -> list[tuple[str, Mapping[str, Any]]]:
    """What ``_traffic_policies`` yields for subset ``index``."""
    path = f"spec.subsets[{index}].trafficPolicy"
    traffic = reader.mapping(subset.get("trafficPolicy"), path)
    if not traffic:
        return []
    return [
        (path, traffic),
        *reader.mappings(traffic.get("portLevelSettings"), f"{path}.portLevelSettings"),
    ]


def _target_class(policy: Policy, target: str) -> str | None:
    """``Policy.host_class`` of a valid, normalized name (never an IP: those end in a digit)."""
    if len(target) > MAX_HOST_LENGTH or target[-1:].isdigit() or not VALID_NAME.fullmatch(target):
        return None
    return policy.host_class(target)


def _traffic_policies(
    reader: Reader, spec: Mapping[str, Any]
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every traffic policy of a rule: top level, per port, per subset (and its ports)."""
    tops = [("spec.trafficPolicy", spec.get("trafficPolicy"))]
    for spath, subset in reader.mappings(spec.get("subsets"), "spec.subsets"):
        tops.append((f"{spath}.trafficPolicy", subset.get("trafficPolicy")))
    for path, raw in tops:
        traffic = reader.mapping(raw, path)
        if not traffic:
            continue
        yield path, traffic
        yield from reader.mappings(traffic.get("portLevelSettings"), f"{path}.portLevelSettings")


def _check_tls(
    reader: Reader,
    policy: Policy,
    traffic: Mapping[str, Any],
    path: str,
    fqdn: str,
    namespace: str,
    egress_ns: bool,
    spec: Mapping[str, Any],
) -> None:
    tls = reader.mapping(traffic.get("tls"), f"{path}.tls")
    mode = reader.string(tls.get("mode"), f"{path}.tls.mode")
    sni = reader.string(tls.get("sni"), f"{path}.tls.sni")
    if sni and not egress_ns:
        # the SNI of the sidecar->gateway hop is what the gateway routes on
        # (docs/istio-semantics.md#egress-gateway)
        # the rule applies to every workload it selects, and the gateway authorizes label-narrowed
        # rules by namespace only: the SNI must be allowed to all of them
        workloads = Workloads(namespace, _selector(spec))
        some = policy.allowed_for(workloads)
        host = normalize(sni)
        if not policy.is_internal(host) and not policy.services_covering(host) & some:
            reader.add(
                f"{path}.tls.sni",
                f"{sni!r} is the name the egress gateway {fqdn} routes on, and not every one of "
                f"the {workloads.describe()} may reach it; allowed: "
                f"{policy.describe_allowed(some)}",
            )
    if mode == DISABLE and egress_ns and _carries_wildcard_tls(policy, fqdn):
        # a wildcard TLS host has no fixed SNI for the mTLS hop: the app's own TLS passes
        # through to a PASSTHROUGH server that routes (and authorizes) on its SNI instead
        return
    if mode is not None and mode != ISTIO_MUTUAL:
        hint = "use ISTIO_MUTUAL (or leave tls unset)"
        raw_host = spec.get("host")
        if isinstance(raw_host, str) and raw_host.startswith("*") and not egress_ns:
            # a namespace-wide rule ("mTLS off for my services", host '*.local') covers the
            # gateway by accident: narrowing the host keeps what the developer meant
            hint += (
                f", or narrow spec.host {raw_host!r} to your own services, e.g. "
                f"'*.{namespace}.svc.{policy.cluster_domain}', so that it does not cover the "
                "egress gateway"
            )
        reader.add(
            f"{path}.tls.mode",
            f"{mode!r} towards the egress gateway {fqdn} replaces the mesh mTLS the gateway "
            f"reads the caller's identity from; {hint}",
        )


def _selector(spec: Mapping[str, Any]) -> dict[str, str] | None:
    """The rule's ``workloadSelector.matchLabels``; None (every workload) when absent."""
    selector = spec.get("workloadSelector")
    labels = selector.get("matchLabels") if isinstance(selector, Mapping) else None
    if not isinstance(labels, Mapping) or not labels:
        return None
    return {str(k): str(v) for k, v in labels.items()}

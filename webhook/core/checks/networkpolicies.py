"""Tenant NetworkPolicies: egress may only widen towards the cluster itself.

NetworkPolicies add up: a pod selected by several may send whatever any of them allows.  With
``networkPolicies: true`` the controller generates one per enforced namespace that lets pods
reach only DNS, istiod, the egress gateways and the namespace, the layer that holds when the
sidecar is stepped around (UDP, which the proxy never sees; a root container switching to UID
1337; ``resolution: NONE`` with a spoofed SNI).  One tenant policy with a wide egress rule would
cancel it.  So a tenant egress rule may name pods and namespaces (in-cluster peers, which is how
DNS and the gateways are reached) and ``ipBlock`` ranges inside the policy's
``internalNetworks``; a rule with no peer (every destination) is refused.  Ingress rules and
egress rules that only restrict are left alone.  The rule holds without generated NetworkPolicies
too: a platform's own default-deny egress policy adds up with tenant ones the same way.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from functools import partial
from itertools import repeat
from typing import Any

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import (
    AddressClasses,
    ChunkedKeys,
    Reader,
    is_object,
    judge_classes,
    many,
    stop_on_breaking_start,
)
from webhook.core.decisions import STOP_AFTER_VIOLATIONS, Violation
from webhook.core.policy import Policy
from webhook.core.reviews import Review

EGRESS = "Egress"


@checks("networking.k8s.io", "NetworkPolicy")
def check_network_policy(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """A tenant NetworkPolicy may open egress only to in-cluster peers."""
    del view
    if review.operation == "DELETE":
        return ()
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    spec = reader.spec(review.object)
    if not _governs_egress(reader, spec):
        return reader.violations
    for where, rule in reader.mappings(spec.get("egress"), "spec.egress"):
        if rule.get("to") in (None, []):
            reader.add(
                f"{where}.to",
                "an egress rule without peers allows every destination on its ports (DNS to "
                "any server included, which carries data out), and NetworkPolicies add up, so "
                "it cancels every default-deny egress policy of the namespace, egress-guard's "
                "or the platform's; name the pods, namespaces or in-cluster ipBlocks the "
                "workloads need (for DNS, kube-dns by namespaceSelector and podSelector)",
            )
        peers = rule.get("to")
        if isinstance(peers, list) and many(peers):

            def judge(reader: Reader, index: int, where: str = where, peers: Any = peers) -> None:
                peer = peers[index]
                if is_object(peer):
                    _check_peer(reader, policy, peer, f"{where}.to[{index}]")

            reader.non_objects(peers, f"{where}.to")
            # a list breaking the policy from its start is answered by its first peers
            stop_on_breaking_start(reader, judge, len(peers))
            judge_classes(reader, _peer_classes(AddressClasses(policy), peers), judge)
            continue
        for at, peer in reader.mappings(peers, f"{where}.to"):
            _check_peer(reader, policy, peer, at)
    return reader.violations


def _governs_egress(reader: Reader, spec: Mapping[str, Any]) -> bool:
    """Whether the policy has egress rules (``policyTypes`` omitted: iff ``egress`` is set)."""
    types = reader.strings(spec.get("policyTypes"), "spec.policyTypes")
    if spec.get("policyTypes") is None:
        return spec.get("egress") is not None
    return any(t == EGRESS for _, t in types)


def _peer_classes(classes: AddressClasses, peers: list[Any]) -> Collection[Hashable]:
    """Keys of peers ``_check_peer`` judges alike, in passes of C: no ipBlock (never a
    violation), or one address class.  A list some odd peers keep from being keyed whole (a
    null, a number, an ipBlock without a cidr, a peer of another kind among ipBlocks) is
    keyed a chunk at a time, those peers judged alone; so is any list longer than a chunk,
    so that an unparsable cidr deep in it costs no pass over the whole list first, and the
    judging stops at the violation limit without keying the rest."""
    chunked = ChunkedKeys(peers, partial(_block_keys, classes))
    if ChunkedKeys.spans_chunks(len(peers)):
        return chunked
    keys = _block_keys(classes, peers, bulk=True)
    return chunked if keys is None else keys


def _block_keys(
    classes: AddressClasses, peers: Sequence[Any], *, bulk: bool = False
) -> list[str | None] | None:
    """The keys of peers that are all ipBlocks with a cidr, or all without an ipBlock; with
    ``bulk``, only when every cidr is keyed in passes of C (``AddressClasses.bulk_keys``): a
    long list some cidrs keep from that is keyed a chunk at a time as the judging goes, which
    stops at the violation limit."""
    if set(map(type, peers)) != {dict}:
        return None
    blocks: list[Any] = list(map(dict.get, peers, repeat("ipBlock")))
    kinds = set(map(type, blocks))
    if kinds == {type(None)}:
        return ["no ipBlock"] * len(peers)
    if kinds != {dict}:
        return None
    cidrs: list[Any] = list(map(dict.get, blocks, repeat("cidr")))
    # the check strips the CIDR: only an unpadded one keeps its class (``classes.keys``)
    if set(map(type, cidrs)) != {str}:
        return None
    return classes.bulk_keys(cidrs) if bulk else classes.keys(cidrs)


def _check_peer(reader: Reader, policy: Policy, peer: Mapping[str, Any], path: str) -> None:
    """Pods and namespaces are in-cluster; an ipBlock must lie inside ``internalNetworks``."""
    block = reader.mapping(peer.get("ipBlock"), f"{path}.ipBlock")
    if not block:
        return
    cidr = reader.string(block.get("cidr"), f"{path}.ipBlock.cidr")
    if cidr is None:
        return
    if not policy.is_internal_address(cidr.strip()):
        internal = ", ".join(policy.internal_networks) or "none declared"
        reader.add(
            f"{path}.ipBlock.cidr",
            f"{cidr!r} lies outside the cluster's networks (internalNetworks: {internal}); a "
            "tenant NetworkPolicy adds up with the one egress-guard generates, so this range "
            "would be reachable around the egress gateway; reach external services through "
            "the mesh and the egress policy",
        )

"""Gateway: the object that programs gateway pods, in *any* namespace whose labels match.

A Gateway's ``selector`` matches pods cluster-wide by default (docs/istio-semantics.md#trap-11), so
a tenant Gateway can open listeners on the shared egress gateway; a missing selector binds every
gateway, and ``AUTO_PASSTHROUGH`` lets clients choose destinations through SNI.  In the egress
namespace only Gateways for the policy's own egress gateways are allowed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import Reader, format_labels, selectors_may_overlap
from webhook.core.decisions import MAX_LISTED_VIOLATIONS, STOP_AFTER_VIOLATIONS, Violation
from webhook.core.policy import Policy
from webhook.core.reviews import Review

AUTO_PASSTHROUGH = "AUTO_PASSTHROUGH"


@checks("networking.istio.io", "Gateway")
def check_gateway(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """A Gateway must not be able to select egress gateway pods, unless it is the policy's own."""
    del view
    if review.operation == "DELETE":
        return ()
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    spec = reader.spec(review.object)
    selector = reader.labels(spec.get("selector"), "spec.selector")
    egress_selectors = [dict(gw.selector) for gw in policy.gateways]
    if policy.is_egress_namespace(review.namespace):
        if selector is None or selector not in egress_selectors:
            listed = ", ".join(format_labels(s) for s in egress_selectors) or "none"
            reader.add(
                "spec.selector",
                f"a Gateway in the egress namespace must select exactly one of the policy's "
                f"egress gateways ({listed})",
            )
    elif not selector:
        reader.add(
            "spec.selector",
            "a Gateway without selector binds every gateway in the cluster, the egress gateways "
            "included; select your own gateway pods",
        )
    else:
        matched = [gw for gw in policy.gateways if selectors_may_overlap(selector, gw.known_labels)]
        if matched:
            # one violation naming them all: the fix is the same for every one
            named = ", ".join(
                f"{gw.ref} {format_labels(gw.known_labels)}"
                for gw in matched[:MAX_LISTED_VIOLATIONS]
            )
            more = len(matched) - MAX_LISTED_VIOLATIONS
            which = "gateway" if len(matched) == 1 else "gateways"
            reader.add(
                "spec.selector",
                f"selector {format_labels(selector)} can match the pods of the egress {which} "
                f"{named}{f' and {more} more' if more > 0 else ''} (Gateways select pods in "
                f"every namespace); {_egress_gateway_hint(policy, review.namespace)}; for an "
                "ingress gateway, use a selector that differs on one of those labels, e.g. "
                "istio: ingressgateway (the policy's egress.gatewayLabels names more labels "
                "egress gateway pods carry)",
            )
    _check_servers(reader, spec)
    return reader.violations


def _egress_gateway_hint(policy: Policy, namespace: str) -> str:
    """What a developer following Istio's egress-gateway task does instead: egress-guard
    writes the gateway's Gateway, routes and DestinationRules from the policy, and the
    namespace's calls to what it may reach already go through them."""
    allowed = policy.allowed_for_some(namespace)
    if not allowed:
        return (
            "egress-guard programs the egress gateways from the egress policy, which lets "
            f"namespace {namespace} reach no external service: ask the security team to add "
            "the host to it"
        )
    return (
        "egress-guard programs the egress gateways from the egress policy: calls from "
        f"namespace {namespace} to what the policy lets its workloads reach "
        f"({policy.describe_allowed(allowed)}) "
        "already go through them, with no Gateway, VirtualService or DestinationRule of yours; "
        "for another host, ask the security team to add it to the policy"
    )


def _check_servers(reader: Reader, spec: Mapping[str, Any]) -> None:
    for path, server in reader.mappings(spec.get("servers"), "spec.servers"):
        tls = reader.mapping(server.get("tls"), f"{path}.tls")
        mode = reader.string(tls.get("mode"), f"{path}.tls.mode")
        if mode == AUTO_PASSTHROUGH:
            reader.add(
                f"{path}.tls.mode",
                "AUTO_PASSTHROUGH lets clients pick any destination through SNI, with no route "
                "to check; use PASSTHROUGH or ISTIO_MUTUAL with VirtualServices",
            )

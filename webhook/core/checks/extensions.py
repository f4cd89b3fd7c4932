"""EnvoyFilter, WasmPlugin and TrafficExtension: raw proxy programming no allow list can read.

An EnvoyFilter can add clusters and listeners to any destination; Wasm modules can make outbound
calls and rewrite routing (docs/istio-semantics.md#trap-15).  Nothing in them can be checked against
hosts, so tenants (and humans in the egress namespace) may not create them; the platform team adds
the few that are needed in excluded namespaces.
"""

from __future__ import annotations

from collections.abc import Iterable

from webhook.core.checks import ClusterView, checks
from webhook.core.decisions import Violation
from webhook.core.policy import Policy
from webhook.core.reviews import Review


@checks("networking.istio.io", "EnvoyFilter")
@checks("extensions.istio.io", "WasmPlugin", "TrafficExtension")
def check_extension(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """Proxy extensions are denied outside excluded namespaces."""
    del policy, view
    if review.operation == "DELETE":
        return ()
    return (
        Violation(
            "",
            f"this {review.kind} can send traffic to any destination without the egress policy "
            f"seeing it; {review.kind}s are not allowed in namespace {review.namespace}, ask "
            "the platform team",
        ),
    )

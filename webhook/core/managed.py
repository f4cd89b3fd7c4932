"""The kinds egress-guard's controller generates, with the REST coordinates of each.

Two adapters need the same list: the reconciler, to apply and prune them, and the admission
registration, so that every generated kind reaches the webhook and "only the controller may
touch managed objects" holds for all of them.  Adapters must not import each other, so the list
lives here, in the core, as plain values.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Kind:
    """A resource kind with the coordinates its REST paths need."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """``group/version``, or ``version`` for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version


SERVICE_ENTRY = Kind("networking.istio.io", "v1", "ServiceEntry", "serviceentries")
DESTINATION_RULE = Kind("networking.istio.io", "v1", "DestinationRule", "destinationrules")
GATEWAY = Kind("networking.istio.io", "v1", "Gateway", "gateways")
VIRTUAL_SERVICE = Kind("networking.istio.io", "v1", "VirtualService", "virtualservices")
SIDECAR = Kind("networking.istio.io", "v1", "Sidecar", "sidecars")
AUTHORIZATION_POLICY = Kind(
    "security.istio.io", "v1", "AuthorizationPolicy", "authorizationpolicies"
)
TELEMETRY = Kind("telemetry.istio.io", "v1", "Telemetry", "telemetries")
NETWORK_POLICY = Kind("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies")

# every kind the generator can produce (webhook.core.desired.KIND_ORDER)
MANAGED_KINDS: tuple[Kind, ...] = (
    SERVICE_ENTRY,
    DESTINATION_RULE,
    GATEWAY,
    VIRTUAL_SERVICE,
    AUTHORIZATION_POLICY,
    TELEMETRY,
    SIDECAR,
    NETWORK_POLICY,
)

"""Building API clients, and the kinds egress-guard manages, as the REST API names them.

Clients are built per call site from an explicit kubeconfig (or the in-cluster service account),
never through the library's process-wide default configuration, so two Reconcilers or a
Reconciler and a test can live in one process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

FIELD_MANAGER = "egress-guard"


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
_BY_API_KIND = {(k.api_version, k.kind): k for k in MANAGED_KINDS}


def kind_of(manifest: Mapping[str, Any]) -> Kind:
    """The managed kind of a manifest; KeyError for kinds egress-guard never generates."""
    return _BY_API_KIND[(str(manifest.get("apiVersion")), str(manifest.get("kind")))]


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An ApiClient for ``kubeconfig``, else the in-cluster account, else ``~/.kube/config``."""
    if kubeconfig:
        return cast(
            client.ApiClient,
            config.new_client_from_config(config_file=kubeconfig),  # type: ignore[no-untyped-call]
        )
    configuration = client.Configuration()
    try:
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except config.ConfigException:
        return cast(client.ApiClient, config.new_client_from_config())  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)


def response_json(response: Any) -> Any:
    """The decoded body of a ``_preload_content=False`` response."""
    return json.loads(response.data)


def is_status(exc: BaseException, *codes: int) -> bool:
    """Whether ``exc`` is an API error with one of ``codes``."""
    return isinstance(exc, ApiException) and exc.status in codes

"""Building API clients, and the kinds egress-guard manages, as the REST API names them.

Clients are built per call site from an explicit kubeconfig (or the in-cluster service account),
never through the library's process-wide default configuration, so two Reconcilers or a
Reconciler and a test can live in one process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from webhook.core.managed import (
    AUTHORIZATION_POLICY,
    DESTINATION_RULE,
    GATEWAY,
    MANAGED_KINDS,
    NETWORK_POLICY,
    SERVICE_ENTRY,
    SIDECAR,
    TELEMETRY,
    VIRTUAL_SERVICE,
    Kind,
)

# the kinds live in the core (admission derives its registration from them); named here too
__all__ = [
    "AUTHORIZATION_POLICY",
    "DESTINATION_RULE",
    "FIELD_MANAGER",
    "GATEWAY",
    "MANAGED_KINDS",
    "NETWORK_POLICY",
    "SERVICE_ENTRY",
    "SIDECAR",
    "TELEMETRY",
    "VIRTUAL_SERVICE",
    "Kind",
    "is_status",
    "kind_of",
    "load_api_client",
    "response_json",
]

FIELD_MANAGER = "egress-guard"


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

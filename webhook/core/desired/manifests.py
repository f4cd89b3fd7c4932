"""The building blocks every generated object shares: names, metadata, API versions, ports.

Names are valid DNS labels, unique within a namespace and stable across runs (a hash suffix when
a name must be shortened); a port's kind (http, tls, tcp) decides how each leg routes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from webhook.core.hosts import is_wildcard, wildcard_suffix
from webhook.core.naming import PREFIX as PREFIX  # re-exported: every generated name
from webhook.core.naming import dns_label
from webhook.core.policy import SERVICE_LABEL, ExternalService, Port

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "egress-guard"
REVISION_ANNOTATION = "egress-guard.io/policy-revision"
DEFAULT_SIDECAR = "egress-guard-default"
NETWORK_POLICY = "egress-guard-egress"
MESH_NAMESPACE = "istio-system"
MAX_NAME = 63
NETWORKING = "networking.istio.io/v1"
SECURITY = "security.istio.io/v1"
TELEMETRY = "telemetry.istio.io/v1"

HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC"})
TLS_PROTOCOLS = frozenset({"TLS", "HTTPS"})

Manifest = dict[str, Any]


@dataclass(slots=True)
class Names:
    """Hands out object names that are valid DNS labels and unique within one namespace."""

    used: set[str] = field(default_factory=set)

    def take(self, *parts: str) -> str:
        """A fresh name from ``parts``, prefixed, shortened with a hash when needed."""
        raw = PREFIX + "-".join(parts)
        name = dns_label(raw)
        if name != raw or name in self.used or len(name) > MAX_NAME:
            digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
            name = name[: MAX_NAME - 9].rstrip("-") + "-" + digest
        self.used.add(name)
        return name


def meta(name: str, namespace: str, service: str | None = None) -> dict[str, Any]:
    """``metadata`` of a generated object, labelled with its service when it has one."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if service is not None:
        meta["labels"] = {SERVICE_LABEL: service}
    return meta


# --- hosts and ports -----------------------------------------------------------------------


def port_kind(port: Port) -> str:
    """``http``, ``tls`` or ``tcp``: how both legs route the port."""
    if port.protocol in HTTP_PROTOCOLS:
        return "http"
    if port.protocol in TLS_PROTOCOLS:
        return "tls"
    return "tcp"


def http_sni(host: str) -> str:
    """The SNI a sidecar puts on the mTLS hop for a host: a wildcard needs a concrete name."""
    return f"egress-guard.{wildcard_suffix(host)}" if is_wildcard(host) else host


def tcp_host(svc: ExternalService) -> str | None:
    """The one exact host plain TCP traffic goes to (a TCP port carries no host name)."""
    return next((h for h in svc.hosts if not is_wildcard(h)), None)

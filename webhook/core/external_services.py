"""The external services a policy names: hosts, ports and protocols, and their egress gateway.

These are the values the generated Istio objects are built from (ServiceEntries, gateways,
routes); they know nothing of who may reach them, which is the allow rules' business in
``policy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Port:
    """A port of an external service and the protocol Istio should treat it as."""

    number: int
    protocol: str

    @property
    def name(self) -> str:
        """A Service/ServiceEntry port name Istio accepts (``http-80``, ``tls-443``)."""
        return f"{self.protocol.lower()}-{self.number}"

    @property
    def is_tls(self) -> bool:
        """True when the proxy routes this port on SNI (TLS passthrough)."""
        return self.protocol in ("TLS", "HTTPS")


@dataclass(frozen=True, slots=True)
class Gateway:
    """An egress gateway: its Service in the egress namespace and the labels of its pods."""

    name: str
    namespace: str
    selector: Mapping[str, str]
    cluster_domain: str = "cluster.local"
    # labels its pods carry besides the selector (``egress.gatewayLabels``)
    pod_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def known_labels(self) -> Mapping[str, str]:
        """Every label the gateway's pods are known to carry: a selector contradicting one of
        them cannot select those pods."""
        return {**self.pod_labels, **self.selector}

    @property
    def fqdn(self) -> str:
        """The gateway Service's cluster DNS name, where sidecars send egress traffic."""
        return f"{self.name}.{self.namespace}.svc.{self.cluster_domain}"

    @property
    def ref(self) -> str:
        """``namespace/name`` as VirtualService ``gateways`` lists write it."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ExternalService:
    """A named destination outside the mesh that rules can allow."""

    name: str
    hosts: tuple[str, ...]
    ports: tuple[Port, ...]
    gateway: Gateway
    tls_origination_port: int | None = None
    addresses: tuple[str, ...] = ()

    def port(self, number: int) -> Port | None:
        """The port with that number, if the service has it."""
        for port in self.ports:
            if port.number == number:
                return port
        return None

    @property
    def port_numbers(self) -> frozenset[int]:
        """Every port number a client may use, plus the TLS origination port on the far side."""
        numbers = {p.number for p in self.ports}
        if self.tls_origination_port is not None:
            numbers.add(self.tls_origination_port)
        return frozenset(numbers)

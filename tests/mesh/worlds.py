"""A policy's mesh, ready for the oracle: generated config, gateways, sources and probe calls.

``scenario`` turns a policy into what a cluster running egress-guard holds: the objects
``webhook.core.desired.generate`` generates (what ``egress-guard render`` prints), one egress
gateway Deployment+Service per gateway the policy names (as Istio's gateway chart installs
them, with unprivileged ``targetPort``s, see ``target_port``), and client
pods for every rule's source plus strangers the policy does not name.  ``probes`` lists, per
source, a call to every host and port of every service and to a host no service covers, each
with the answer ``egress-guard explain`` gives (``intent``), so a test compares Istio's
simulated behaviour to the policy's intent call by call.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.meshsim import Call, CallResult, Proxy, World
from webhook.core.desired import generate
from webhook.core.explain import Client, explain, parse_destination
from webhook.core.external_services import ExternalService, Port
from webhook.core.hosts import is_wildcard, wildcard_suffix
from webhook.core.policy import WILDCARD_NAMESPACE, Policy
from webhook.core.policy_parsing import parse_policy

# A namespace no rule names: its pods only get what rules on "*" give.
OTHER_NAMESPACE = "other"
# A host no policy in these tests covers.
UNLISTED_HOST = "unlisted.example.net"
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC"})


@dataclass(frozen=True, slots=True)
class Intent:
    """What the policy says about one (source, host, port): allowed via a gateway, or denied."""

    allowed: bool
    gateway: str | None = None  # "namespace/name" of the egress gateway

    def describe(self) -> str:
        return f"allowed via {self.gateway}" if self.allowed else "denied"


def intent(policy_file: Path, source: Proxy, host: str, port: int) -> Intent:
    """The answer ``egress-guard explain`` gives (the core's ``explain``, resolved now)."""
    policy = _policy_at_now(policy_file)
    answer = explain(
        policy,
        Client(source.namespace, dict(source.labels), source.service_account),
        *parse_destination(f"{host}:{port}"),
    )
    if not answer.allowed:
        return Intent(False)
    if answer.gateway_name is None:
        return Intent(True)  # an excluded namespace: not routed by egress-guard at all
    return Intent(True, f"{answer.gateway_namespace}/{answer.gateway_name}")


@functools.lru_cache(maxsize=16)
def _policy_at_now(policy_file: Path) -> Policy:
    return parse_policy(policy_file.read_text()).at(datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Probe:
    """One call and what the policy says about it."""

    call: Call
    source: Proxy
    intent: Intent
    service: ExternalService | None
    port: Port | None


@dataclass(frozen=True, slots=True)
class Scenario:
    """A policy, the mesh it generates, and who is in it."""

    policy: Policy
    policy_file: Path
    config: tuple[Mapping[str, Any], ...]
    kube: tuple[Mapping[str, Any], ...]
    gateways: Mapping[str, Proxy]  # "namespace/name" -> gateway proxy
    sources: tuple[Proxy, ...]

    def world(self, calls: Iterable[Call]) -> World:
        return World(
            config=self.config,
            kube=self.kube,
            proxies=tuple(self.gateways.values()) + self.sources,
            calls=tuple(calls),
        )


def target_port(port: int) -> int:
    """An unprivileged container port for a gateway Service port.

    Istio's chart maps 443 to 8443; here privileged ports move to 10000+, so a policy that
    also lists 8443 does not put two Service ports on one container port.
    """
    return port + 10000 if port < 1024 else port


def _port_name(protocol: str, number: int) -> str:
    if protocol in HTTP_PROTOCOLS:
        return f"http2-{number}"
    if protocol == "TCP":
        return f"tcp-{number}"
    return f"tls-{number}"


def scenario(policy_file: Path, *, extra_namespaces: Sequence[str] = ()) -> Scenario:
    """Build the mesh a policy file stands for (see the module docstring)."""
    policy = parse_policy(policy_file.read_text(), name=str(policy_file))
    namespaces = {r.source.namespace for r in policy.rules} - {WILDCARD_NAMESPACE}
    namespaces |= {OTHER_NAMESPACE, policy.egress_namespace, *extra_namespaces}
    manifests = generate(policy, sorted(namespaces)).manifests
    config = tuple(m for m in manifests if ".istio.io/" in m["apiVersion"])
    kube: list[Mapping[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        for ns in sorted(namespaces)
    ]
    kube.extend(m for m in manifests if ".istio.io/" not in m["apiVersion"])

    ips = (f"10.20.{i // 250}.{i % 250 + 1}" for i in itertools.count())
    gateways: dict[str, Proxy] = {}
    for gw in policy.gateways:
        ports: dict[int, str] = {}
        for name in policy.services_on_gateway(gw.fqdn):
            for port in policy.services[name].ports:
                ports.setdefault(port.number, port.protocol)
        kube.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": gw.name, "namespace": gw.namespace},
                "spec": {
                    # no API-server defaulting here: without a cluster IP the Service would
                    # claim 0.0.0.0 on its ports and shadow plain TCP ServiceEntries
                    "clusterIP": f"10.96.0.{len(gateways) + 10}",
                    "selector": dict(gw.selector),
                    "ports": [
                        {
                            "name": _port_name(proto, number),
                            "port": number,
                            "targetPort": target_port(number),
                            "protocol": "TCP",
                        }
                        for number, proto in sorted(ports.items())
                    ],
                },
            }
        )
        gateways[gw.ref] = Proxy(
            name=gw.name,
            namespace=gw.namespace,
            ip=next(ips),
            labels=dict(gw.selector),
            service_account=f"{gw.name}-service-account",
            kind="gateway",
        )

    sources: dict[tuple[Any, ...], Proxy] = {}

    def add(namespace: str, labels: Mapping[str, str], account: str) -> None:
        key = (namespace, tuple(sorted(labels.items())), account)
        if key not in sources:
            sources[key] = Proxy(
                name=f"client-{len(sources)}",
                namespace=namespace,
                ip=next(ips),
                labels=dict(labels),
                service_account=account,
            )

    for rule in policy.rules:
        ns = rule.source.namespace
        if ns == WILDCARD_NAMESPACE:
            ns = OTHER_NAMESPACE
        add(ns, rule.source.workload_labels, rule.source.service_account or "default")
        if rule.source.service_account:
            # the same pod under another identity: only the gateway can tell them apart
            add(ns, rule.source.workload_labels, "intruder")
    for ns in sorted(namespaces - {policy.egress_namespace}):
        add(ns, {"app": "stranger"}, "stranger")
    return Scenario(
        policy=policy,
        policy_file=policy_file,
        config=config,
        kube=tuple(kube),
        gateways=gateways,
        sources=tuple(sources.values()),
    )


def concrete_host(pattern: str) -> str:
    """A name a wildcard host covers (``*.foo.com`` -> ``probe.foo.com``)."""
    return f"probe.{wildcard_suffix(pattern)}" if is_wildcard(pattern) else pattern


def _call(source: Proxy, host: str, port: Port | int, index: int) -> Call:
    number = port if isinstance(port, int) else port.number
    protocol = "TLS" if isinstance(port, int) else port.protocol
    ident = f"{source.name}->{host}:{number}#{index}"
    if protocol in HTTP_PROTOCOLS:
        kind = "http2" if protocol in ("HTTP2", "GRPC") else "http"
        return Call(source.name, host, number, protocol=kind, id=ident)
    if protocol == "TCP":
        return Call(source.name, host, number, id=ident)
    return Call(source.name, host, number, tls="tls", sni=host, id=ident)


def probes(sc: Scenario) -> list[Probe]:
    """Every source calls every host and port of every service, and an unlisted host."""
    out: list[Probe] = []
    for source in sc.sources:
        for svc in sc.policy.services.values():
            for pattern in svc.hosts:
                host = concrete_host(pattern)
                for port in svc.ports:
                    call = _call(source, host, port, len(out))
                    want = intent(sc.policy_file, source, host, port.number)
                    out.append(Probe(call, source, want, svc, port))
        for number in sorted({p.number for s in sc.policy.services.values() for p in s.ports}):
            proto = next(
                p for s in sc.policy.services.values() for p in s.ports if p.number == number
            )
            call = _call(source, UNLISTED_HOST, proto, len(out))
            want = intent(sc.policy_file, source, UNLISTED_HOST, number)
            out.append(Probe(call, source, want, None, proto))
    return out


def disagreement(sc: Scenario, probe: Probe, got: CallResult) -> str | None:
    """Why the simulated result differs from the intent, or None when they agree."""
    want = probe.intent
    head = f"{probe.source.name} {probe.call.id}: policy says {want.describe()}, Istio: "
    if not want.allowed:
        if got.verdict == "blocked":
            return None
        if probe.port is not None and probe.port.protocol == "TCP" and got.verdict == "direct":
            # plain TCP carries no name: a call "to" any host on the port goes where the
            # port leads; that is only a leak if the source may not reach that host
            reached = intent(sc.policy_file, probe.source, got.host, probe.port.number)
            if reached.allowed and got.gateway is not None:
                return None
        return head + got.describe()
    gateway = sc.gateways.get(want.gateway or "")
    if got.verdict != "direct" or gateway is None or got.gateway is None:
        return head + got.describe()
    if got.gateway.proxy != gateway.name or got.gateway.namespace != gateway.namespace:
        return head + got.describe()
    svc, port = probe.service, probe.port
    assert svc is not None and port is not None
    expected_port = port.number
    if svc.tls_origination_port is not None and port.protocol in HTTP_PROTOCOLS:
        expected_port = svc.tls_origination_port
        last = got.legs[-1].transport
        if last is None or last.mode != "SIMPLE":
            return head + got.describe() + " (no TLS origination at the gateway)"
    # plain TCP carries no name: the port leads to the service's first host
    host_ok = got.host in svc.hosts if port.protocol == "TCP" else got.host == probe.call.host
    if not host_ok or got.port != expected_port:
        return head + got.describe()
    return None


def matrix(sc: Scenario, results: Sequence[tuple[Probe, CallResult]]) -> str:
    """A markdown table: sources down, host:port across, the gateway or ``-`` in each cell."""
    columns: list[str] = []
    for probe, _ in results:
        col = f"{probe.call.host}:{probe.call.port}"
        if col not in columns:
            columns.append(col)
    rows: dict[str, dict[str, str]] = {}
    names: dict[str, str] = {}
    for probe, got in results:
        src = probe.source
        label = src.namespace
        if src.labels:
            label += "{" + ",".join(f"{k}={v}" for k, v in sorted(src.labels.items())) + "}"
        label += f"[sa={src.service_account}]"
        names[src.name] = label
        cell = got.gateway.proxy if got.verdict == "direct" and got.gateway else got.verdict
        if got.verdict == "blocked":
            cell = "-"
        rows.setdefault(src.name, {})[f"{probe.call.host}:{probe.call.port}"] = cell
    lines = ["| source | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, cells in rows.items():
        lines.append(f"| {names[name]} | " + " | ".join(cells.get(c, "") for c in columns) + " |")
    return "\n".join(lines)

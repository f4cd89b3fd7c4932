"""Admission judged by Istio: admit with egress-guard, then ask Istio where every call ends.

For a batch of tenant attempts in one world this module

1. drops the objects Istio's own validation rejects (the API server would never store them),
2. decides every remaining object with egress-guard's real engine (``decide``, the same review
   path the webhook uses, with a cluster view holding the managed Sidecars),
3. puts every *admitted* object into the baseline mesh (``desired.generate`` for the policy, the
   namespaces, the egress gateways' Services and pods, one sidecar pod per source), and
4. simulates calls from every source to the policy's hosts, their near-misses and whatever the
   admitted objects name, on every port the world knows.

A call is *unsafe* when it ends at an external host or address the policy does not allow that
source on that port: directly, by passthrough, or through an egress gateway whose
AuthorizationPolicy accepted it.  A batch with unsafe calls is re-run attempt by attempt so each
finding names the objects that opened the path.  The oracle is any callable that answers the
meshsim JSON protocol (one request dict in, one response dict out).
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from tests.meshfuzz.refs import rename
from tests.meshfuzz.worlds import Source, World
from webhook.core.checks.egress_addresses import object_addresses
from webhook.core.decisions import Decision
from webhook.core.engine import decide
from webhook.core.hosts import is_cluster_internal, is_ip, normalize
from webhook.core.reviews import review_of_manifest

Manifest = dict[str, Any]
Oracle = Callable[[Mapping[str, Any]], Mapping[str, Any]]

HTTP_PORTS = frozenset({80, 8080})
TLS_PORTS = frozenset({443})
FIRST_POD_IP = ipaddress.ip_address("10.60.0.10")
# calls reported per leaking attempt (the rest are usually the same path from other sources)
FINDINGS_PER_ATTEMPT = 3
KUBE_KINDS = frozenset({"Namespace", "Service", "Pod", "Endpoints", "EndpointSlice"})


class MeshView:
    """The cluster as the webhook's informers see it: the managed Sidecars plus admitted ones,
    and the addresses of the modelled pods (sidecars, gateways) and Services."""

    def __init__(self, world: World) -> None:
        self._sidecars: dict[str, list[Mapping[str, Any]]] = {}
        self._addresses: dict[str, set[str]] = {}
        for pod in proxies(world):
            self._addresses.setdefault(pod["namespace"], set()).add(pod["ip"])
        for manifest in (*world.baseline, *kube_objects(world)):
            self.add(manifest)

    def add(self, manifest: Mapping[str, Any]) -> None:
        """Record an object the API server stored."""
        ns = manifest["metadata"].get("namespace", "")
        if manifest.get("kind") == "Sidecar":
            self._sidecars.setdefault(ns, []).append(manifest)
        elif manifest.get("kind") in ("Pod", "Service"):
            self._addresses.setdefault(ns, set()).update(object_addresses(manifest))

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        """Sidecar objects currently in ``namespace``."""
        return tuple(self._sidecars.get(namespace, ()))

    def namespace_addresses(self, namespace: str) -> frozenset[str]:
        """The addresses of the pods and Services in ``namespace`` (the world is known whole)."""
        return frozenset(self._addresses.get(namespace, ()))


@dataclass(frozen=True, slots=True)
class Probe:
    """One call a source makes, and what the policy says about it."""

    source: Source
    host: str
    port: int
    protocol: str
    tls: str
    address: str = ""
    # the SNI, when the app presents another name than the one it dialled
    sni: str = ""

    def as_call(self, call_id: str, proxy: str) -> dict[str, Any]:
        """The meshsim ``Call``."""
        call: dict[str, Any] = {
            "id": call_id,
            "from": proxy,
            "port": self.port,
            "protocol": self.protocol,
            "tls": self.tls,
        }
        if self.host:
            call["host"] = self.host
        if self.address:
            call["address"] = self.address
        if self.sni:
            call["sni"] = self.sni
        return call


@dataclass(frozen=True, slots=True)
class Finding:
    """A call an admitted object let end where the policy forbids."""

    world: str
    objects: tuple[Manifest, ...]
    probe: Probe
    result: Mapping[str, Any]
    why: str

    def describe(self) -> str:
        """One paragraph for a report: objects, call, where it ended, why that is wrong."""
        names = ", ".join(
            f"{o['kind']} {o['metadata']['namespace']}/{o['metadata']['name']}"
            for o in self.objects
        )
        p = self.probe
        sni = f" sni {p.sni}" if p.sni else ""
        return (
            f"[{self.world}] {p.source.describe()} -> {p.host or p.address}:{p.port} "
            f"({p.protocol}/{p.tls}{sni}) ended {self.result.get('verdict')} at "
            f"{self.result.get('host')}:{self.result.get('port')}"
            f"{' via ' + str(self.result['gateway']) if self.result.get('gateway') else ''}: "
            f"{self.why}\n  objects: {names}\n" + yaml.safe_dump_all(self.objects, sort_keys=False)
        )


@dataclass(slots=True)
class Tally:
    """What a fuzz run tried, what Istio rejected, what egress-guard admitted, what leaked."""

    tried: int = 0
    istio_rejected: int = 0
    admitted: int = 0
    denied: int = 0
    # admitted objects in attempts that opened a forbidden path
    unsafe: int = 0
    findings: list[Finding] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        """Fold another tally into this one."""
        self.tried += other.tried
        self.istio_rejected += other.istio_rejected
        self.admitted += other.admitted
        self.denied += other.denied
        self.unsafe += other.unsafe
        self.findings.extend(other.findings)

    def summary(self) -> str:
        """``tried N, rejected by Istio N, admitted N, denied N, unsafe N``."""
        return (
            f"objects tried {self.tried}, rejected by Istio's validation {self.istio_rejected}, "
            f"admitted {self.admitted}, denied {self.denied}, unsafe {self.unsafe}"
        )


# --- the mesh around the policy ----------------------------------------------------------------


def _proxy_name(source: Source) -> str:
    labels = "-".join(v for _, v in source.labels)
    return "-".join(p for p in ("pod", source.namespace, labels, source.service_account) if p)


def proxies(world: World) -> list[dict[str, Any]]:
    """A sidecar pod per source and a gateway pod per egress gateway."""
    found: list[dict[str, Any]] = []
    ip = FIRST_POD_IP
    for source in world.sources:
        found.append(
            {
                "name": _proxy_name(source),
                "kind": "sidecar",
                "namespace": source.namespace,
                "labels": source.label_map,
                "ip": str(ip),
                "serviceAccount": source.service_account,
            }
        )
        ip += 1
    for gateway in world.policy.gateways:
        found.append(
            {
                "name": f"gw-{gateway.name}",
                "kind": "gateway",
                "namespace": gateway.namespace,
                "labels": dict(gateway.selector),
                "ip": str(ip),
                "serviceAccount": gateway.name,
            }
        )
        ip += 1
    return found


def kube_objects(world: World) -> list[Manifest]:
    """Namespaces (injection on), the egress gateways' Services and a ``db`` Service per tenant."""
    objects: list[Manifest] = []
    for ns in world.namespaces:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}},
            }
        )
    policy = world.policy
    for gateway, address in zip(policy.gateways, gateway_service_ips(world), strict=True):
        numbers = sorted(
            {
                n
                for s in policy.services_on_gateway(gateway.fqdn)
                for n in policy.services[s].port_numbers
            }
        )
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": gateway.name, "namespace": gateway.namespace},
                "spec": {
                    # the fake registry does no API defaulting: no cluster IP unless given
                    "clusterIP": address,
                    "selector": dict(gateway.selector),
                    # Istio's gateway chart maps privileged ports to unprivileged container ports
                    "ports": [
                        {
                            "name": f"tls-{n}",
                            "port": n,
                            "targetPort": n + 8000 if n < 1024 else n,
                            "protocol": "TCP",
                        }
                        for n in numbers
                    ],
                },
            }
        )
    for ns, address in zip(world.tenant_namespaces, tenant_service_ips(world), strict=True):
        # a tenant's own Service: a name and a cluster IP its routes may claim (plain TCP ports,
        # so a sidecar matches them on the address, whatever SNI the app presents)
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "db", "namespace": ns},
                "spec": {
                    "selector": {"app": "db"},
                    "clusterIP": address,
                    "ports": [
                        {"name": f"tcp-{n}", "port": n, "targetPort": n} for n in world.ports
                    ],
                },
            }
        )
    return objects


def gateway_service_ips(world: World) -> list[str]:
    """The cluster IP of each egress gateway's Service."""
    return [f"10.97.{i}.10" for i, _ in enumerate(world.policy.gateways)]


def tenant_service_ips(world: World) -> list[str]:
    """The cluster IP of each tenant namespace's ``db`` Service."""
    return [f"10.96.{i}.10" for i, _ in enumerate(world.tenant_namespaces)]


def _protocol(port: int) -> tuple[str, str]:
    if port in HTTP_PORTS:
        return "http", "plaintext"
    if port in TLS_PORTS:
        return "tcp", "tls"
    return "tcp", "plaintext"


def named_hosts(objects: Iterable[Mapping[str, Any]], domain: str = "cluster.local") -> set[str]:
    """Concrete external-looking names and addresses the objects mention, hand-written endpoint
    addresses (a headless Service's sidecar listens on each) and tenant Services' names."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and is_ip(value) and "/" in value:
            # a CIDR: probe one address inside it
            network = ipaddress.ip_network(value, strict=False)
            found.add(str(next(iter(network.hosts()), network.network_address)))
        elif isinstance(value, str) and "." in value and "/" not in value and " " not in value:
            found.add(normalize(value.split(":")[0]))

    for obj in objects:
        walk(obj.get("spec"))
        walk(obj.get("endpoints"))
        walk(obj.get("subsets"))
        if obj.get("kind") == "Service":
            meta = obj["metadata"]
            found.add(f"{meta['name']}.{meta.get('namespace', 'default')}.svc.{domain}")
    return {h for h in found if not h.startswith("*")}


def probes(world: World, extra_hosts: Iterable[str] = ()) -> list[Probe]:
    """Calls from every source to every probed host, on every port of the world."""
    hosts = sorted(
        {h for h in world.hosts if not h.startswith("*") and "." in h and not is_ip(h)}
        | {h for h in extra_hosts if not is_ip(h)}
    )
    addresses = sorted(
        {a for a in extra_hosts if is_ip(a) and "/" not in a} | set(tenant_service_ips(world))
    )
    sni_hosts = sorted(
        {h for h in world.hosts if not h.startswith("*") and "." in h}
        & {c for s in world.policy.services.values() for h in s.hosts for c in _names_of(h)}
    )
    # what cluster DNS answers for the tenants' own Services
    resolved = {
        f"db.{ns}.svc.{world.policy.cluster_domain}": ip
        for ns, ip in zip(world.tenant_namespaces, tenant_service_ips(world), strict=True)
    }
    resolved.update(
        zip(world.gateway_fqdns, gateway_service_ips(world), strict=True),
    )
    found: list[Probe] = []
    for source in world.sources:
        for port in world.ports:
            protocol, tls = _protocol(port)
            if protocol == "tcp" and tls == "plaintext":
                # plain TCP carries no name: what matters is the address dialled
                found.append(Probe(source, "", port, protocol, tls))
                found.extend(Probe(source, "", port, protocol, tls, a) for a in addresses)
                continue
            found.extend(Probe(source, h, port, protocol, tls, resolved.get(h, "")) for h in hosts)
            if tls == "tls":
                # TLS to an address some object claims, with the SNI of a policy host: a route
                # matched on the address can hand the app's own ClientHello to a gateway
                found.extend(
                    Probe(source, "", port, protocol, tls, a, s)
                    for a in addresses
                    for s in sni_hosts
                )
    return found


HTTP_APP_PROTOCOLS = frozenset({"http", "http2", "grpc", "kubernetes.io/h2c", "grpc-web"})


def _speaks_http(port: Mapping[str, Any]) -> bool:
    """Whether Istio reads a Service port as HTTP (its appProtocol, else its name's prefix)."""
    if "appProtocol" in port:
        return str(port["appProtocol"]).lower() in HTTP_APP_PROTOCOLS
    prefix = str(port.get("name", "")).split("-")[0].lower()
    return prefix in HTTP_APP_PROTOCOLS


def service_probes(world: World, objects: Sequence[Mapping[str, Any]]) -> list[Probe]:
    """HTTP calls from every source to a tenant Service's HTTP ports, by its name, at the
    address its DNS name answers (the cluster IP, or a headless Service's first endpoint):
    the world's probes speak HTTP on the world's HTTP ports only."""
    endpoints: dict[tuple[str, str], str] = {}
    for obj in objects:
        meta = obj["metadata"]
        if obj.get("kind") == "EndpointSlice":
            owner = (meta.get("labels") or {}).get("kubernetes.io/service-name", "")
            first = next(iter(obj.get("endpoints") or ()), {}).get("addresses") or [""]
        elif obj.get("kind") == "Endpoints":
            owner = meta["name"]
            subset = next(iter(obj.get("subsets") or ()), {})
            first = [a.get("ip", "") for a in subset.get("addresses") or ()] or [""]
        else:
            continue
        endpoints.setdefault((meta.get("namespace", ""), owner), first[0])
    found: list[Probe] = []
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj.get("kind") != "Service" or spec.get("type") == "ExternalName":
            continue
        meta = obj["metadata"]
        namespace = meta.get("namespace", "default")
        address = spec.get("clusterIP", "")
        if address == "None":
            address = endpoints.get((namespace, meta["name"]), "")
        if not address:
            continue
        fqdn = f"{meta['name']}.{namespace}.svc.{world.policy.cluster_domain}"
        for port in spec.get("ports") or ():
            if _speaks_http(port) and port.get("port") not in HTTP_PORTS:
                found.extend(
                    Probe(source, fqdn, int(port["port"]), "http", "plaintext", address)
                    for source in world.sources
                )
    return found + _entry_probes(world, objects)


def _entry_probes(world: World, objects: Sequence[Mapping[str, Any]]) -> list[Probe]:
    """Calls in a tenant ServiceEntry's own protocol on its ports where the world's probes
    speak another one: HTTP by Host off the HTTP ports, TLS by SNI off the TLS ports."""
    found: list[Probe] = []
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj.get("kind") != "ServiceEntry":
            continue
        hosts = [
            normalize(h)
            for h in spec.get("hosts") or ()
            if isinstance(h, str) and not h.startswith("*")
        ]
        address = next((a for a in spec.get("addresses") or () if "/" not in str(a)), "")
        for port in spec.get("ports") or ():
            number, protocol = port.get("number"), str(port.get("protocol", "")).upper()
            if not isinstance(number, int):
                continue
            if protocol in ("HTTP", "HTTP2", "GRPC") and number not in HTTP_PORTS:
                kind = ("http", "plaintext")
            elif protocol in ("TLS", "HTTPS") and number not in TLS_PORTS:
                kind = ("tcp", "tls")
            else:
                continue
            found.extend(
                Probe(source, host, number, *kind, address)
                for source in world.sources
                for host in hosts
            )
    return found


def _names_of(pattern: str) -> tuple[str, ...]:
    """Concrete names a policy host stands for (one under a wildcard)."""
    return (f"a.{pattern[2:]}",) if pattern.startswith("*.") else (pattern,)


# --- the verdict on one call -------------------------------------------------------------------


def _internal_address(world: World, address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return ip.is_private and not world.policy.address_allowed(address, world.policy.services)


def _services_at(world: World, address: str) -> list[str]:
    """The policy's services whose declared addresses hold ``address``."""
    policy = world.policy
    return [s for s in policy.services if policy.address_allowed(address, (s,))]


def _reaches_allowed(world: World, src: Source, services: Iterable[str], port: int) -> bool:
    """Whether one of ``services`` is allowed to ``src`` on ``port``."""
    policy = world.policy
    return any(
        port in policy.services[name].port_numbers
        and policy.rules_allowing(src.namespace, name, src.label_map, src.service_account)
        for name in services
    )


def unsafe_because(world: World, probe: Probe, result: Mapping[str, Any]) -> str | None:
    """Why a call's end breaches the policy for its source; None when it does not."""
    verdict = result.get("verdict")
    if verdict in ("blocked", "error", None):
        return None
    policy = world.policy
    host = normalize(str(result.get("host") or ""))
    port = int(result.get("port") or probe.port)
    if not host or is_cluster_internal(host, policy.cluster_domain):
        return None
    src = probe.source
    dialled = probe.address
    if (
        verdict == "passthrough"
        and dialled
        and not result.get("gateway")
        and is_ip(dialled)
        and not _internal_address(world, dialled)
        and _reaches_allowed(world, src, _services_at(world, dialled), port)
    ):
        # ORIGINAL_DST connects to the address the app dialled, whatever name it presents (the
        # host reported is that name): an address the policy declares for a service the source
        # may reach on that port is that service, as for a direct endpoint there
        return None
    if is_ip(host):
        if _internal_address(world, host):
            return None
        services = _services_at(world, host)
    else:
        services = sorted(policy.services_covering(host))
    if _reaches_allowed(world, src, services, port):
        return None
    where = "through an egress gateway" if result.get("gateway") else verdict
    return (
        f"{host}:{port} is not allowed to {src.describe()} (covered by "
        f"{', '.join(services) or 'no service'}), reached {where}"
    )


# --- running a batch ---------------------------------------------------------------------------


def _yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    return yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False)


def simulate(
    world: World,
    oracle: Oracle,
    tenant: Sequence[Manifest],
    probe_list: Sequence[Probe],
) -> list[Mapping[str, Any]]:
    """Where each probe ends in the baseline mesh plus ``tenant`` objects."""
    istio = [m for m in (*world.baseline, *tenant) if m.get("kind") not in KUBE_KINDS]
    kube = kube_objects(world) + [m for m in tenant if m.get("kind") in KUBE_KINDS]
    # the mirroring controller copies Endpoints of an existing selector-less Service only
    selectorless = {
        (m["metadata"].get("namespace"), m["metadata"]["name"])
        for m in tenant
        if m.get("kind") == "Service" and not (m.get("spec") or {}).get("selector")
    }
    kube += [
        mirrored(m)
        for m in tenant
        if m.get("kind") == "Endpoints"
        and (m["metadata"].get("namespace"), m["metadata"]["name"]) in selectorless
    ]
    pods = proxies(world)
    by_source = {s: p["name"] for s, p in zip(world.sources, pods, strict=False)}
    response = oracle(
        {
            "op": "simulate",
            "config": _yaml(istio),
            "kube": _yaml(kube),
            "proxies": pods,
            "calls": [p.as_call(str(i), by_source[p.source]) for i, p in enumerate(probe_list)],
        }
    )
    if response.get("error"):
        raise RuntimeError(f"oracle failed: {response['error']}")
    results = list(response.get("results") or ())
    if len(results) != len(probe_list):
        raise RuntimeError(f"oracle answered {len(results)} of {len(probe_list)} calls")
    return results


def mirrored(endpoints: Mapping[str, Any]) -> Manifest:
    """The EndpointSlice Kubernetes' mirroring controller writes for hand-written Endpoints of
    a selector-less Service: istiod reads slices only, so the Endpoints reach it this way."""
    meta = endpoints["metadata"]
    subsets = [s for s in endpoints.get("subsets") or () if isinstance(s, Mapping)]
    addresses = [a["ip"] for s in subsets for a in s.get("addresses") or () if "ip" in a]
    ports = [p for s in subsets[:1] for p in s.get("ports") or ()]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{meta['name']}-mirrored",
            "namespace": meta.get("namespace", "default"),
            "labels": {"kubernetes.io/service-name": meta["name"]},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a]} for a in addresses],
        "ports": [dict(p) for p in ports],
    }


def istio_accepts(oracle: Oracle, objects: Sequence[Manifest]) -> list[bool]:
    """Istio's validation verdict on each object, in order (Kubernetes kinds pass: not Istio's)."""
    istio = [o for o in objects if o.get("kind") not in KUBE_KINDS]
    if not istio:
        return [True] * len(objects)
    response = oracle({"op": "validate", "config": _yaml(istio)})
    if response.get("error"):
        raise RuntimeError(f"oracle failed: {response['error']}")
    reports = list(response.get("objects") or ())
    verdicts = {
        (r.get("kind"), r.get("namespace"), r.get("name")): not r.get("errors") for r in reports
    }
    return [
        o.get("kind") in KUBE_KINDS
        or verdicts.get((o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]), False)
        for o in objects
    ]


def decide_object(world: World, manifest: Manifest, view: MeshView) -> Decision:
    """egress-guard's decision on a CREATE of ``manifest`` by a tenant user."""
    review = review_of_manifest(manifest, username="tenant")
    return decide(review, world.policy, view=view)


def leaks(
    world: World, oracle: Oracle, tenant: Sequence[Manifest]
) -> list[tuple[Probe, Mapping[str, Any], str]]:
    """Unsafe calls in the baseline mesh plus ``tenant`` objects."""
    probe_list = probes(world, named_hosts(tenant, world.policy.cluster_domain))
    probe_list += service_probes(world, tenant)
    results = simulate(world, oracle, tenant, probe_list)
    found = []
    for probe, result in zip(probe_list, results, strict=True):
        why = unsafe_because(world, probe, result)
        if why is not None:
            found.append((probe, result, why))
    return found


def run_batch(world: World, oracle: Oracle, attempts: Sequence[Sequence[Manifest]]) -> Tally:
    """Validate, decide, simulate and judge a batch of tenant attempts in one world."""
    tally = Tally()
    named: list[list[Manifest]] = []
    for n, attempt in enumerate(attempts):
        objects = [copy.deepcopy(o) for o in attempt]
        # attempts share the mesh: give their objects distinct names (references follow)
        rename(objects, f"-a{n}")
        named.append(objects)
    flat = [o for objects in named for o in objects]
    accepted = iter(istio_accepts(oracle, flat) if flat else [])
    view = MeshView(world)
    admitted_attempts: list[list[Manifest]] = []
    for objects in named:
        kept: list[Manifest] = []
        for obj in objects:
            tally.tried += 1
            if not next(accepted):
                tally.istio_rejected += 1
                continue
            if decide_object(world, obj, view).allowed:
                tally.admitted += 1
                view.add(obj)
                kept.append(obj)
            else:
                tally.denied += 1
        if kept:
            admitted_attempts.append(kept)
    everything = [o for attempt in admitted_attempts for o in attempt]
    together = leaks(world, oracle, everything) if everything else []
    if not together:
        return tally
    # something leaked: find the attempts that open a path on their own
    for attempt in admitted_attempts:
        found = leaks(world, oracle, attempt)
        if found:
            tally.unsafe += len(attempt)
        for probe, result, why in found[:FINDINGS_PER_ATTEMPT]:
            tally.findings.append(Finding(world.name, tuple(attempt), probe, result, why))
    if not tally.findings:
        # only the combination leaks: report it whole
        tally.unsafe += len(everything)
        for probe, result, why in together[:FINDINGS_PER_ATTEMPT]:
            tally.findings.append(Finding(world.name, tuple(everything), probe, result, why))
    return tally

"""Hypothesis strategies for the objects a tenant may try to apply, biased towards the policy.

Each strategy draws from a ``World``'s pools (its policy's hosts and near-misses, gateway names,
subsets, ports, label sets, addresses), so most generated objects touch the allow list somewhere:
a route to a gateway subset, a ServiceEntry for a wildcard's apex, a DestinationRule changing the
SNI of the hop to the gateway.  Shapes follow the Istio and Gateway API schemas closely enough
that Istio's own validation (run by the oracle) accepts most of them; the oracle drops the rest.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import strategies as st

from tests.meshfuzz.differential import gateway_service_ips, proxies, tenant_service_ips
from tests.meshfuzz.refs import retarget
from tests.meshfuzz.worlds import World

Manifest = dict[str, Any]
NETWORKING = "networking.istio.io/v1"
GATEWAY_API = "gateway.networking.k8s.io/v1"
GATEWAY_API_ALPHA = "gateway.networking.k8s.io/v1alpha2"
PROTOCOLS = ("HTTP", "HTTPS", "TLS", "TCP", "GRPC", "HTTP2")
RESOLUTIONS = ("NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS")
APP_PROTOCOLS = ("tcp", "http", "https", "tls", "http2", "grpc", "kubernetes.io/h2c")
SERVICE_PORT_PREFIXES = ("tcp", "http", "https", "tls", "grpc", "http2", "mongo")


def _inside(address: str) -> str:
    """An address inside a CIDR (the address itself when it is one)."""
    if "/" not in address:
        return address
    network = ipaddress.ip_network(address, strict=False)
    if network.num_addresses <= 8:
        return str(network.network_address)
    return str(network.network_address + 5)


def _meta(name: str, namespace: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace}


def _drop_none(spec: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if v is not None}


@st.composite
def _export_to(draw: st.DrawFn, world: World, namespace: str) -> list[str] | None:
    choice = draw(st.sampled_from(("omit", "dot", "star", "names")))
    if choice == "omit":
        return None
    if choice == "dot":
        return ["."]
    if choice == "star":
        return ["*"]
    others = draw(st.lists(st.sampled_from(world.namespaces), min_size=1, max_size=2, unique=True))
    return sorted(set(others))


def _host(world: World, namespace: str = "") -> st.SearchStrategy[str]:
    """A host: usually a policy host (or a name under one) or the tenant's own Service."""
    hot = [h for h in world.policy_hosts if not h.startswith("*")]
    own = [f"db.{namespace}.svc.{world.policy.cluster_domain}"] if namespace else []
    return st.one_of(st.sampled_from(hot), st.sampled_from(hot + own), st.sampled_from(world.hosts))


def _port_number(world: World) -> st.SearchStrategy[int]:
    return st.sampled_from(world.ports)


def _egress_ips(world: World) -> list[str]:
    """The egress gateways' pod and Service addresses: what an alias of the gateway points at."""
    pods = [p["ip"] for p in proxies(world) if p["kind"] == "gateway"]
    return pods + gateway_service_ips(world)


def _endpoint_ips(world: World) -> list[str]:
    """Addresses a hand-written endpoint may name: outside (allowed or not), the egress
    gateways' pods and Services, a tenant pod, the tenants' own Services."""
    outside = [_inside(a) for a in world.addresses]
    tenant_pods = [p["ip"] for p in proxies(world) if p["kind"] == "sidecar"][:1]
    return outside * 2 + _egress_ips(world) + tenant_pods + tenant_service_ips(world)[:1]


def _target_ports(world: World) -> list[int]:
    """Ports an endpoint may be dialled on: the world's, and the egress gateways' container
    ports (Istio's gateway chart maps privileged ports to unprivileged ones)."""
    numbers = {p.number for s in world.policy.services.values() for p in s.ports}
    return sorted(set(world.ports) | {n + 8000 if n < 1024 else n for n in numbers})


def _gateway_refs(world: World) -> list[str]:
    """``namespace/name`` of the Istio Gateways the policy generates (the egress gateways')."""
    return [
        f"{m['metadata']['namespace']}/{m['metadata']['name']}"  # type: ignore[index]
        for m in world.baseline
        if m.get("kind") == "Gateway"
    ]


@st.composite
def service_entry(draw: st.DrawFn, world: World, namespace: str) -> Manifest:
    """A ServiceEntry: hosts, ports (with target ports), resolution, addresses, endpoints."""
    hosts = draw(st.lists(_host(world, namespace), min_size=1, max_size=2, unique=True))
    resolution = draw(st.sampled_from(RESOLUTIONS))
    ports = []
    for i, number in enumerate(
        draw(st.lists(_port_number(world), min_size=1, max_size=2, unique=True))
    ):
        protocol = draw(st.sampled_from(PROTOCOLS))
        port: dict[str, Any] = {
            "number": number,
            "name": f"p{i}-{protocol.lower()}",
            "protocol": protocol,
        }
        if draw(st.booleans()) and resolution != "NONE":
            port["targetPort"] = draw(st.sampled_from(_target_ports(world)))
        ports.append(port)
    spec: dict[str, Any] = {
        "hosts": hosts,
        "ports": ports,
        "resolution": resolution,
        "location": draw(st.sampled_from(("MESH_EXTERNAL", "MESH_INTERNAL"))),
    }
    if resolution in ("NONE", "STATIC") and draw(st.booleans()):
        spec["addresses"] = draw(
            st.lists(st.sampled_from(world.addresses), min_size=1, max_size=2, unique=True)
        )
    if resolution in ("STATIC", "DNS", "DNS_ROUND_ROBIN") and draw(st.booleans()):
        pool = [*world.addresses, *_egress_ips(world)] if resolution == "STATIC" else world.hosts
        endpoints = []
        for address in draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True)):
            endpoint: dict[str, Any] = {"address": address.split("/")[0]}
            if draw(st.booleans()):
                endpoint["ports"] = {ports[0]["name"]: draw(st.sampled_from(_target_ports(world)))}
            endpoints.append(endpoint)
        spec["endpoints"] = endpoints[:1] if resolution == "DNS_ROUND_ROBIN" else endpoints
        for endpoint in spec["endpoints"]:
            extra = draw(st.sampled_from(("none", "none", "network", "locality", "labels")))
            if extra == "network":
                endpoint["network"] = draw(st.sampled_from(("network-1", "remote")))
            elif extra == "locality":
                endpoint["locality"] = "region/zone"
            elif extra == "labels":
                endpoint["labels"] = dict(
                    draw(st.sampled_from((*world.label_sets, (("app", "db"),))))
                )
    elif resolution in ("STATIC", "DNS") and draw(st.integers(0, 3)) == 0:
        # the entry's endpoints are the pods and WorkloadEntries the selector picks
        labels = draw(st.sampled_from((*world.label_sets, (("app", "db"),))))
        spec["workloadSelector"] = {"labels": dict(labels) or {"app": "db"}}
    if draw(st.integers(0, 4)) == 0:
        spec["subjectAltNames"] = [
            draw(
                st.sampled_from(
                    [
                        f"spiffe://cluster.local/ns/{g.namespace}/sa/{g.name}"
                        for g in world.policy.gateways
                    ]
                    + [h for h in world.hosts if "." in h and not h.startswith("*")]
                )
            )
        ]
    spec["exportTo"] = draw(_export_to(world, namespace))
    return {
        "apiVersion": NETWORKING,
        "kind": "ServiceEntry",
        "metadata": _meta("se", namespace),
        "spec": _drop_none(spec),
    }


@st.composite
def _destination(draw: st.DrawFn, world: World) -> dict[str, Any]:
    if draw(st.integers(0, 4)) < 3:
        target = draw(st.sampled_from(world.gateway_fqdns))
    else:
        target = draw(st.sampled_from(world.gateway_fqdns + world.hosts))
    destination: dict[str, Any] = {"host": target}
    if target in world.gateway_fqdns and draw(st.integers(0, 3)) > 0:
        destination["subset"] = draw(st.sampled_from(world.subsets))
    if target in world.gateway_fqdns and draw(st.integers(0, 4)) > 0:
        # a port the gateway listens on, so the hop reaches one of its servers
        gateway_ports = sorted({p.number for s in world.policy.services.values() for p in s.ports})
        destination["port"] = {"number": draw(st.sampled_from(gateway_ports))}
    elif draw(st.booleans()):
        destination["port"] = {"number": draw(_port_number(world))}
    return destination


@st.composite
def _match(draw: st.DrawFn, world: World, kind: str, hosts: list[str]) -> dict[str, Any]:
    match: dict[str, Any] = {}
    if draw(st.booleans()):
        match["port"] = draw(_port_number(world))
    if draw(st.booleans()):
        match["sourceLabels"] = dict(draw(st.sampled_from(world.label_sets)))
    if kind == "tls":
        # Istio wants sniHosts inside the VirtualService's hosts
        match["sniHosts"] = draw(
            st.lists(st.sampled_from(hosts), min_size=1, max_size=2, unique=True)
        )
    if kind in ("tls", "tcp") and draw(st.integers(0, 3)) == 0:
        # routes matched on the address dialled, whatever the name
        match["destinationSubnets"] = draw(
            st.lists(st.sampled_from(world.addresses), min_size=1, max_size=2, unique=True)
        )
    if draw(st.integers(0, 5)) == 0:
        # a rule for some gateways only (the egress gateways' own, or the mesh)
        match["gateways"] = [draw(st.sampled_from(["mesh", *_gateway_refs(world)]))]
    return match


@st.composite
def _route_rule(draw: st.DrawFn, world: World, kind: str, hosts: list[str]) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    if kind == "tls" or draw(st.booleans()):
        rule["match"] = [draw(_match(world, kind, hosts))]
    rule["route"] = [{"destination": draw(_destination(world))}]
    if kind == "http":
        extra = draw(
            st.sampled_from(("none", "rewrite", "mirror", "mirrors", "redirect", "header"))
        )
        if extra == "rewrite":
            rule["rewrite"] = {"authority": draw(st.sampled_from(world.hosts))}
        elif extra == "header":
            # a Host/:authority set by headers: an authority rewrite under another name
            name = draw(st.sampled_from(("host", ":authority", "Host")))
            rule["headers"] = {"request": {"set": {name: draw(st.sampled_from(world.hosts))}}}
        elif extra == "mirror":
            rule["mirror"] = {"host": draw(st.sampled_from(world.hosts + world.gateway_fqdns))}
        elif extra == "mirrors":
            rule["mirrors"] = [{"destination": draw(_destination(world))}]
        elif extra == "redirect":
            del rule["route"]
            rule["redirect"] = {"authority": draw(st.sampled_from(world.hosts))}
    return rule


@st.composite
def virtual_service(draw: st.DrawFn, world: World, namespace: str) -> Manifest:
    """A mesh VirtualService: hosts, http/tls/tcp rules to gateways, subsets, rewrites."""
    hosts = draw(
        st.lists(
            _host(world, namespace).filter(lambda h: h != "*"),
            min_size=1,
            max_size=2,
            unique=True,
        )
    )
    if draw(st.integers(0, 4)) < 2:
        # the tenant's own Service: a name its pods dial, claimed on the Service's address
        hosts = [f"db.{namespace}.svc.{world.policy.cluster_domain}"]
    kind = draw(st.sampled_from(("http", "tls", "tcp")))
    spec: dict[str, Any] = {
        "hosts": hosts,
        kind: draw(st.lists(_route_rule(world, kind, hosts), min_size=1, max_size=2)),
        "exportTo": draw(_export_to(world, namespace)),
    }
    choice = draw(st.integers(0, 9))
    if choice < 2:
        spec["gateways"] = ["mesh"]
    elif choice == 2:
        # the egress gateways' own Gateways, with or without the mesh
        refs = draw(
            st.lists(st.sampled_from(_gateway_refs(world)), min_size=1, max_size=2, unique=True)
        )
        spec["gateways"] = refs + (["mesh"] if draw(st.booleans()) else [])
    return {
        "apiVersion": NETWORKING,
        "kind": "VirtualService",
        "metadata": _meta("vs", namespace),
        "spec": _drop_none(spec),
    }


@st.composite
def delegate_pair(draw: st.DrawFn, world: World, namespace: str) -> list[Manifest]:
    """A root VirtualService delegating to a host-less one in the same namespace."""
    host = draw(st.sampled_from([h for h in world.hosts if not h.startswith("*")]))
    root = {
        "apiVersion": NETWORKING,
        "kind": "VirtualService",
        "metadata": _meta("root", namespace),
        "spec": {"hosts": [host], "http": [{"delegate": {"name": "leaf", "namespace": namespace}}]},
    }
    leaf = {
        "apiVersion": NETWORKING,
        "kind": "VirtualService",
        "metadata": _meta("leaf", namespace),
        "spec": {"http": [draw(_route_rule(world, "http", [host]))]},
    }
    return [leaf, root]


@st.composite
def destination_rule(draw: st.DrawFn, world: World, namespace: str) -> Manifest:
    """A DestinationRule on a gateway or host: TLS mode, SNI, subsets, tunnels."""
    host = draw(st.sampled_from(world.gateway_fqdns) | st.sampled_from(world.hosts))
    tls: dict[str, Any] = {"mode": draw(st.sampled_from(("ISTIO_MUTUAL", "DISABLE", "SIMPLE")))}
    if draw(st.booleans()):
        tls["sni"] = draw(_host(world).filter(lambda h: not h.startswith("*")))
    traffic: dict[str, Any] = {"tls": tls}
    if draw(st.integers(0, 7)) == 0:
        traffic["proxyProtocol"] = {"version": draw(st.sampled_from(("V1", "V2")))}
    if draw(st.integers(0, 5)) == 0:
        traffic["tunnel"] = {
            "protocol": "CONNECT",
            "targetHost": draw(st.sampled_from(world.hosts)),
            "targetPort": draw(_port_number(world)),
        }
    spec: dict[str, Any] = {"host": host}
    where = draw(st.sampled_from(("top", "subset", "port")))
    if where == "top":
        spec["trafficPolicy"] = traffic
    elif where == "port":
        spec["trafficPolicy"] = {
            "portLevelSettings": [{"port": {"number": draw(_port_number(world))}, **traffic}]
        }
    else:
        subset: dict[str, Any] = {"name": draw(st.sampled_from(world.subsets))}
        if draw(st.integers(0, 3)) == 0:
            subset["labels"] = dict(
                draw(st.sampled_from((*world.label_sets, (("app", "db"),))))
            ) or {"app": "db"}
        spec["subsets"] = [subset | {"trafficPolicy": traffic}]
    if draw(st.integers(0, 3)) == 0:
        spec["workloadSelector"] = {"matchLabels": dict(draw(st.sampled_from(world.label_sets)))}
        spec["exportTo"] = ["."]
    else:
        spec["exportTo"] = draw(_export_to(world, namespace))
    return {
        "apiVersion": NETWORKING,
        "kind": "DestinationRule",
        "metadata": _meta("dr", namespace),
        "spec": _drop_none(spec),
    }


@st.composite
def sidecar(draw: st.DrawFn, world: World, namespace: str) -> Manifest:
    """A Sidecar with a selector (the namespace already has the managed default one)."""
    imports = ["./*"]
    pool = [f"{world.policy.egress_namespace}/{h}" for h in world.hosts if "." in h]
    pool += [f"*/{h}" for h in world.hosts if "." in h] + [
        "*/*",
        f"{world.policy.egress_namespace}/*",
    ]
    # other tenants' namespaces: their exported routes and entries come along
    pool += [f"{ns}/*" for ns in world.tenant_namespaces if ns != namespace]
    imports += draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
    listener: dict[str, Any] = {"hosts": imports}
    if draw(st.integers(0, 2)) == 0:
        # a listener of its own on one port, bound or not, captured or not
        number = draw(_port_number(world))
        protocol = draw(st.sampled_from(PROTOCOLS))
        listener["port"] = {
            "number": number,
            "protocol": protocol,
            "name": f"{protocol.lower()}-{number}",
        }
        if draw(st.booleans()):
            listener["bind"] = draw(
                st.sampled_from(
                    (
                        "0.0.0.0",
                        "127.0.0.1",
                        *(_inside(a) for a in world.addresses if a != "0.0.0.0/0"),
                    )
                )
            )
        if draw(st.booleans()):
            listener["captureMode"] = draw(st.sampled_from(("DEFAULT", "IPTABLES", "NONE")))
    egress = [listener]
    if "port" in listener and draw(st.booleans()):
        # the catch-all listener beside it
        egress.append({"hosts": ["./*"]})
    mode = draw(st.sampled_from(("REGISTRY_ONLY",) * 4 + ("ALLOW_ANY",)))
    outbound: dict[str, Any] = {"mode": mode}
    if mode == "ALLOW_ANY" and draw(st.booleans()):
        # unknown destinations sent to a proxy of the tenant's choosing
        proxy: dict[str, Any] = {
            "host": draw(st.sampled_from(world.gateway_fqdns + world.hosts)),
            "port": {"number": draw(_port_number(world))},
        }
        if draw(st.booleans()):
            proxy["subset"] = draw(st.sampled_from(world.subsets))
        outbound["egressProxy"] = proxy
    spec: dict[str, Any] = {
        "workloadSelector": {"labels": dict(draw(st.sampled_from(world.label_sets)))},
        "egress": egress,
        "outboundTrafficPolicy": outbound,
    }
    if draw(st.integers(0, 5)) == 0:
        number = draw(_port_number(world))
        spec["ingress"] = [
            {
                "port": {"number": number, "protocol": "TCP", "name": f"in-{number}"},
                "defaultEndpoint": f"127.0.0.1:{number}",
            }
        ]
    return {
        "apiVersion": NETWORKING,
        "kind": "Sidecar",
        "metadata": _meta("sc", namespace),
        "spec": spec,
    }


@st.composite
def workload_entry(draw: st.DrawFn, world: World, namespace: str) -> Manifest:
    """A WorkloadEntry (address an IP or a name) or a WorkloadGroup template."""
    address = draw(
        st.sampled_from(
            [_inside(a) for a in world.addresses] * 2
            + _egress_ips(world)
            + [h for h in world.hosts if not h.startswith("*")]
        )
    )
    # app=db: the label the namespace's own Service selects, so its ports lead to the address
    labels = dict(draw(st.sampled_from((*world.label_sets, (("app", "db"),)))))
    body: dict[str, Any] = {"address": address, "labels": labels}
    if draw(st.booleans()):
        # the namespace's db Service names its ports tcp-N: map one to another port
        body["ports"] = {
            f"tcp-{draw(_port_number(world))}": draw(st.sampled_from(_target_ports(world)))
        }
    if draw(st.booleans()):
        return {
            "apiVersion": NETWORKING,
            "kind": "WorkloadEntry",
            "metadata": _meta("we", namespace),
            "spec": body,
        }
    return {
        "apiVersion": NETWORKING,
        "kind": "WorkloadGroup",
        "metadata": _meta("wg", namespace),
        "spec": {
            "metadata": {"labels": labels},
            "template": {k: v for k, v in body.items() if k != "labels"},
        },
    }


@st.composite
def gateway(draw: st.DrawFn, world: World, namespace: str) -> Manifest:
    """An Istio Gateway whose selector may or may not reach an egress gateway's pods."""
    selectors = [dict(g.selector) for g in world.policy.gateways]
    selectors += [{"istio": "ingressgateway"}, {"app": "my-gateway"}] * 3
    selectors += [
        {k: v} for s in [dict(g.selector) for g in world.policy.gateways] for k, v in s.items()
    ]
    host = draw(st.sampled_from([h for h in world.hosts if h != "db"]))
    mode = draw(st.sampled_from(("PASSTHROUGH", "ISTIO_MUTUAL", "SIMPLE", "AUTO_PASSTHROUGH")))
    spec = {
        "selector": draw(st.sampled_from(selectors)),
        "servers": [
            {
                "port": {"number": 443, "name": "tls", "protocol": "TLS"},
                "hosts": [host],
                "tls": {"mode": mode, "credentialName": "cert"}
                if mode == "SIMPLE"
                else {"mode": mode},
            }
        ],
    }
    return {
        "apiVersion": NETWORKING,
        "kind": "Gateway",
        "metadata": _meta("gw", namespace),
        "spec": spec,
    }


@st.composite
def _parent_ref(draw: st.DrawFn, world: World) -> dict[str, Any]:
    """A route's parent: a mesh Service (the namespace's own or its new one), a ServiceEntry,
    or an egress gateway, sometimes narrowed to a port or a listener."""
    parent = draw(
        st.sampled_from(
            (
                "service",
                "new-service",
                "serviceentry",
                "egress-gateway",
                "egress-service",
                "egress-entry",
            )
        )
    )
    if parent in ("service", "new-service"):
        ref: dict[str, Any] = {
            "group": "",
            "kind": "Service",
            "name": "db" if parent == "service" else "svc",
        }
    elif parent == "serviceentry":
        ref = {"group": "networking.istio.io", "kind": "ServiceEntry", "name": "se"}
    elif parent == "egress-service":
        # a consumer route on the egress gateway's own Service (mesh routes need no grant)
        gw = draw(st.sampled_from(world.policy.gateways))
        ref = {"group": "", "kind": "Service", "name": gw.name, "namespace": gw.namespace}
    elif parent == "egress-entry":
        # a consumer route on one of the policy's ServiceEntries in the egress namespace
        entry = draw(st.sampled_from([m for m in world.baseline if m["kind"] == "ServiceEntry"]))
        meta: Any = entry["metadata"]
        ref = {
            "group": "networking.istio.io",
            "kind": "ServiceEntry",
            "name": meta["name"],
            "namespace": meta["namespace"],
        }
    else:
        gw = draw(st.sampled_from(world.policy.gateways))
        ref = {"name": gw.name, "namespace": gw.namespace}
        if draw(st.booleans()):
            ref["sectionName"] = draw(st.sampled_from(("tls", "https", "http", "tcp")))
    if draw(st.integers(0, 2)) == 0:
        ref["port"] = draw(_port_number(world))
    return ref


@st.composite
def _backend_ref(draw: st.DrawFn, world: World, namespace: str) -> dict[str, Any]:
    """A backend: a Service here, in another tenant's namespace or the egress namespace (mesh
    routes need no ReferenceGrant), or an Istio Hostname."""
    backend_kind = draw(st.sampled_from(("Service", "Service", "Hostname", "ServiceImport")))
    backend: dict[str, Any] = {"port": draw(_port_number(world))}
    if backend_kind == "Hostname":
        backend |= {
            "group": "networking.istio.io",
            "kind": "Hostname",
            "name": draw(st.sampled_from([h for h in world.hosts if "." in h])),
        }
        return backend
    if backend_kind == "ServiceImport":
        backend |= {"group": "multicluster.x-k8s.io", "kind": "ServiceImport"}
    gw = draw(st.sampled_from(world.policy.gateways))
    where = draw(st.sampled_from(("own", "new", "gateway", "gateway-here", "other")))
    if where == "own":
        backend["name"] = "db"
    elif where == "new":
        backend["name"] = "svc"
    elif where == "gateway":
        backend |= {"name": gw.name, "namespace": gw.namespace}
    elif where == "gateway-here":
        backend["name"] = gw.name
    else:
        others = [n for n in world.tenant_namespaces if n != namespace] or [namespace]
        backend |= {"name": "db", "namespace": draw(st.sampled_from(others))}
    if draw(st.integers(0, 3)) == 0:
        backend["weight"] = draw(st.sampled_from((0, 1, 100)))
    return backend


@st.composite
def gateway_api_route(draw: st.DrawFn, world: World, namespace: str) -> Manifest:
    """An HTTPRoute, GRPCRoute, TLSRoute or TCPRoute attached to one or two parents (mesh
    Services, a ServiceEntry, an egress gateway), to Services here or elsewhere or Hostnames."""
    kind = draw(st.sampled_from(("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute")))
    parents = draw(st.lists(_parent_ref(world), min_size=1, max_size=2))
    backends = draw(st.lists(_backend_ref(world, namespace), min_size=1, max_size=2))
    rule: dict[str, Any] = {"backendRefs": backends}
    if kind == "HTTPRoute" and draw(st.integers(0, 3)) == 0:
        host = draw(st.sampled_from([h for h in world.hosts if "." in h and not h.startswith("*")]))
        rule["filters"] = [
            draw(
                st.sampled_from(
                    (
                        {"type": "URLRewrite", "urlRewrite": {"hostname": host}},
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"set": [{"name": "Host", "value": host}]},
                        },
                    )
                )
            )
        ]
    spec: dict[str, Any] = {"parentRefs": parents, "rules": [rule]}
    if kind != "TCPRoute" and draw(st.integers(0, 4)) > 0:
        spec["hostnames"] = draw(
            st.lists(
                st.sampled_from([h for h in world.hosts if "." in h and not h.startswith("*")]),
                min_size=1,
                max_size=2,
                unique=True,
            )
        )
    version = GATEWAY_API if kind in ("HTTPRoute", "GRPCRoute") else GATEWAY_API_ALPHA
    return {
        "apiVersion": version,
        "kind": kind,
        "metadata": _meta(kind.lower(), namespace),
        "spec": spec,
    }


@st.composite
def kube_service(draw: st.DrawFn, world: World, namespace: str) -> list[Manifest]:
    """A plain Kubernetes Service (ClusterIP, headless, LoadBalancer/NodePort, externalIPs,
    ``appProtocol``, the exportTo annotation), selector-less with hand-made endpoints
    (EndpointSlice or Endpoints) at outside addresses or the egress gateways' addresses."""
    index = world.tenant_namespaces.index(namespace)
    kind = draw(st.sampled_from(("ClusterIP", "ClusterIP", "Headless", "LoadBalancer", "NodePort")))
    ports = []
    for number in draw(st.lists(_port_number(world), min_size=1, max_size=2, unique=True)):
        port: dict[str, Any] = {"port": number, "protocol": "TCP"}
        if draw(st.booleans()):
            port["name"] = f"{draw(st.sampled_from(SERVICE_PORT_PREFIXES))}-{number}"
        else:
            port["name"] = f"p-{number}"
            port["appProtocol"] = draw(st.sampled_from(APP_PROTOCOLS))
        # the fake registry does no defaulting: the target port is always written
        port["targetPort"] = draw(st.sampled_from((number, number, *_target_ports(world))))
        ports.append(port)
    spec: dict[str, Any] = {"ports": ports}
    selector = draw(st.sampled_from(("none", "none", "db", "labels")))
    if selector == "db":
        spec["selector"] = {"app": "db"}
    elif selector == "labels":
        spec["selector"] = dict(draw(st.sampled_from(world.label_sets))) or {"app": "db"}
    if kind == "Headless":
        spec["clusterIP"] = "None"
    else:
        spec["clusterIP"] = f"10.96.{index}.{20 + draw(st.integers(0, 3))}"
        if kind != "ClusterIP":
            spec["type"] = kind
        if draw(st.integers(0, 3)) == 0:
            spec["externalIPs"] = [draw(st.sampled_from([_inside(a) for a in world.addresses]))]
    metadata = _meta("svc", namespace)
    export = draw(st.sampled_from(("omit", "omit", ".", "*", "other")))
    if export != "omit":
        others = [n for n in world.namespaces if n != namespace]
        value = draw(st.sampled_from(others)) if export == "other" else export
        metadata["annotations"] = {"networking.istio.io/exportTo": value}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": spec}
    if "selector" in spec or draw(st.integers(0, 4)) == 0:
        return [service]
    addresses = draw(
        st.lists(st.sampled_from(_endpoint_ips(world)), min_size=1, max_size=2, unique=True)
    )
    targets = [(p["name"], p["targetPort"]) for p in ports]
    if draw(st.booleans()):
        endpoints: Manifest = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "svc",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": "svc"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [a]} for a in addresses],
            "ports": [{"name": n, "port": t, "protocol": "TCP"} for n, t in targets],
        }
    else:
        endpoints = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": _meta("svc", namespace),
            "subsets": [
                {
                    "addresses": [{"ip": a} for a in addresses],
                    "ports": [{"name": n, "port": t, "protocol": "TCP"} for n, t in targets],
                }
            ],
        }
    return [service, endpoints]


@st.composite
def external_name_service(draw: st.DrawFn, world: World, namespace: str) -> Manifest:
    """A Kubernetes Service of type ExternalName: a registry name that leads outside."""
    target = draw(_host(world).filter(lambda h: "." in h and not h.startswith("*")))
    port = draw(_port_number(world))
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta("ext", namespace),
        "spec": {
            "type": "ExternalName",
            "externalName": target,
            "ports": [{"name": f"tcp-{port}", "port": port, "targetPort": port}],
        },
    }


KINDS = (
    "ServiceEntry",
    "VirtualService",
    "Delegate",
    "DestinationRule",
    "Sidecar",
    "WorkloadEntry",
    "Gateway",
    "Route",
    "ExternalName",
    "Service",
)


@st.composite
def tenant_objects(draw: st.DrawFn, world: World) -> list[Manifest]:
    """One tenant attempt: a few objects in one tenant namespace (a delegate, or a Service and
    its endpoints, come as a pair)."""
    namespace = draw(st.sampled_from(world.tenant_namespaces))
    builders = {
        "ServiceEntry": service_entry,
        "VirtualService": virtual_service,
        "DestinationRule": destination_rule,
        "Sidecar": sidecar,
        "WorkloadEntry": workload_entry,
        "Gateway": gateway,
        "Route": gateway_api_route,
        "ExternalName": external_name_service,
    }
    groups: list[tuple[list[Manifest], dict[str, str]]] = []
    first: dict[str, str] = {}
    for i, kind in enumerate(draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=3))):
        if kind == "Delegate":
            made = draw(delegate_pair(world, namespace))
        elif kind == "Service":
            made = draw(kube_service(world, namespace))
        else:
            made = [draw(builders[kind](world, namespace))]
        mine = {m["metadata"]["name"]: f"{m['metadata']['name']}-{i}" for m in made}
        for old, new in mine.items():
            first.setdefault(old, new)
        for manifest in made:
            manifest["metadata"]["name"] = mine[manifest["metadata"]["name"]]
        groups.append((made, mine))
    # a reference leads to its own group's object, else to the first one drawn of that name
    for made, mine in groups:
        for manifest in made:
            retarget(manifest, first | mine)
    return [m for made, _ in groups for m in made]

"""The costliest objects we know to build: decision time against object size, up to 3 MiB.

The API server accepts request bodies up to 3 MiB, so a tenant can send a VirtualService with
thousands of routes, a Sidecar importing thousands of hosts, a Pod with hundreds of containers or
a ServiceEntry with thousands of endpoints.  Each builder here takes a count and returns such an
object; ``worst_cases`` grows each one until its JSON reaches the size asked for and times
``decide`` on it, twice the count too, so a check that is worse than linear shows up as a growth
ratio well above 2.  ``python -m tests.bench.worst_case`` prints the table; ``make bench`` includes
it.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson

from webhook.admission.app import utc_now
from webhook.admission.logs import configure_logging
from webhook.admission.metrics import Metrics
from webhook.admission.policy_edits import NoObjects
from webhook.admission.reviewing import JSON, ReviewHandler
from webhook.admission.server import GC_THRESHOLD
from webhook.core.checks import EmptyView, plural
from webhook.core.engine import decide
from webhook.core.mutations import mutate
from webhook.core.policy import Policy
from webhook.core.policy_admission import SecurityTeam
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import review_of_manifest
from webhook.policy_runtime import PolicyStore
from webhook.settings import DEFAULT_DECISION_CACHE_SIZE

MIB = 1024 * 1024
# tries per figure, the best kept: on this kind of machine a burst of other work inflates the
# CPU time of a 100 ms answer by half or more now and then, for seconds at a time, and three or
# five tries did not always include a quiet one
REPEAT = 9
NAMESPACE = "test-app"


def _meta(name: str) -> dict[str, Any]:
    return {"name": name, "namespace": NAMESPACE, "labels": {"app": name}}


def _tcp_fan_out(name: str, destinations: list[str]) -> dict[str, Any]:
    """A VirtualService of tcp rules, each to 50 of ``destinations`` (a weighted fan-out)."""
    rules = [
        {"route": [{"destination": {"host": host}} for host in destinations[i : i + 50]]}
        for i in range(0, len(destinations), 50)
    ]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": _meta(name),
        "spec": {"hosts": ["db.example.net"], "exportTo": ["."], "tcp": rules},
    }


def virtual_service_fan_out(n: int) -> dict[str, Any]:
    """tcp rules of 50 internal IPv4 destinations each, ``n`` destinations in all."""
    return _tcp_fan_out(
        "many-fan-outs", [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in range(n)]
    )


def virtual_service_ipv6_fan_out(n: int) -> dict[str, Any]:
    """tcp rules of 50 internal IPv6 destinations each, ``n`` destinations in all."""
    return _tcp_fan_out(
        "many-ipv6-fan-outs", [f"fd00:{i >> 16:x}:{i & 0xFFFF:x}::1" for i in range(n)]
    )


def virtual_service_routes(n: int) -> dict[str, Any]:
    """A VirtualService with ``n`` HTTP routes over ``n`` hosts, each to a different service."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": _meta("many-routes"),
        "spec": {
            "hosts": [f"svc-{i}.example.com" for i in range(n)],
            "exportTo": ["."],
            "http": [
                {
                    "match": [
                        {"uri": {"prefix": f"/p{i}"}, "headers": {"x-id": {"exact": str(i)}}}
                    ],
                    "route": [{"destination": {"host": f"dest-{i}", "port": {"number": 443}}}],
                }
                for i in range(n)
            ],
        },
    }


# the allowing policy's egress gateway (ALLOWING_POLICY below): an authority rewrite on a route
# to it picks the upstream, so the rewrite is judged
EGRESS_GATEWAY = "istio-egressgateway.egress.svc.cluster.local"


def _in_cluster(i: int) -> str:
    return f"dest-{i}"


def _to_gateway(i: int) -> str:
    return EGRESS_GATEWAY


def _external(i: int) -> str:
    return f"d{i}.example.net"


def _rewriting(
    name: str,
    n: int,
    destination: Callable[[int], str],
    rewrite: Callable[[dict[str, Any], str], None],
) -> dict[str, Any]:
    """``virtual_service_routes(n)`` with route ``i`` to ``destination(i)``, its authority
    rewritten to a name of its own by ``rewrite(rule, authority)``."""
    manifest = virtual_service_routes(n)
    manifest["metadata"] = _meta(name)
    for i, rule in enumerate(manifest["spec"]["http"]):
        rule["route"][0]["destination"]["host"] = destination(i)
        rewrite(rule, f"a{i}.example.com")
    return manifest


def _rewrite_authority(rule: dict[str, Any], authority: str) -> None:
    rule["rewrite"] = {"authority": authority}


def _set_host(rule: dict[str, Any], authority: str) -> None:
    rule["headers"] = {"request": {"set": {"Host": authority}}}


def _add_entry_authority(rule: dict[str, Any], authority: str) -> None:
    rule["route"][0]["headers"] = {"request": {"add": {":authority": authority}}}


def virtual_service_rewrites(n: int) -> dict[str, Any]:
    """``n`` routes to services of the namespace, each rewriting the authority to a name of its
    own: the Host picks no upstream there, so no rewrite is judged."""
    return _rewriting("rewrites", n, _in_cluster, _rewrite_authority)


def virtual_service_rewrites_to_gateway(n: int) -> dict[str, Any]:
    """``n`` routes to the egress gateway, each rewriting the authority to a name of its own:
    every rewrite is judged."""
    return _rewriting("rewrites-to-gateway", n, _to_gateway, _rewrite_authority)


def virtual_service_rewrites_to_external(n: int) -> dict[str, Any]:
    """``n`` routes each to an external host of its own, each rewriting the authority to a name
    of its own: every rewrite is judged."""
    return _rewriting("rewrites-to-external", n, _external, _rewrite_authority)


def virtual_service_host_headers(n: int) -> dict[str, Any]:
    """``n`` routes to services of the namespace, each setting the ``Host`` request header (an
    authority rewrite) to a name of its own."""
    return _rewriting("host-headers", n, _in_cluster, _set_host)


def virtual_service_host_headers_to_gateway(n: int) -> dict[str, Any]:
    """``n`` routes to the egress gateway, each setting the ``Host`` request header to a name of
    its own: every rewrite is judged."""
    return _rewriting("host-headers-to-gateway", n, _to_gateway, _set_host)


def virtual_service_entry_authorities_to_gateway(n: int) -> dict[str, Any]:
    """``n`` routes to the egress gateway, each route entry adding an ``:authority`` request
    header of its own: every rewrite is judged."""
    return _rewriting("entry-authorities", n, _to_gateway, _add_entry_authority)


def virtual_service_entry_authorities(n: int) -> dict[str, Any]:
    """``n`` routes to services of the namespace, each route entry adding an ``:authority``
    request header of its own."""
    return _rewriting("entry-authorities-in-cluster", n, _in_cluster, _add_entry_authority)


def sidecar_imports(n: int) -> dict[str, Any]:
    """A Sidecar importing ``n`` hosts (half exact names, half wildcards)."""
    hosts = [f"./h{i}.example.com" if i % 2 else f"*/*.w{i}.example.com" for i in range(n)]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": _meta("default"),
        "spec": {"egress": [{"hosts": hosts}], "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
    }


def pod_containers(n: int) -> dict[str, Any]:
    """A Pod with ``n`` containers, each with env, ports, a security context and probes."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**_meta("many-containers"), "annotations": {"team": "x" * 64}},
        "spec": {
            "containers": [
                {
                    "name": f"c{i}",
                    "image": f"registry.example.com/app:{i}",
                    "env": [{"name": f"E{j}", "value": "v" * 16} for j in range(8)],
                    "ports": [{"containerPort": 8000 + j} for j in range(4)],
                    "securityContext": {"runAsUser": 1000 + i, "capabilities": {"drop": ["ALL"]}},
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8000}},
                }
                for i in range(n)
            ]
        },
    }


def _static_service_entry(name: str, endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    """A tenant ServiceEntry of ``db.example.net`` with these static endpoints."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": _meta(name),
        "spec": {
            "hosts": ["db.example.net"],
            "exportTo": ["."],
            "location": "MESH_EXTERNAL",
            "ports": [{"number": 5432, "name": "tcp", "protocol": "TCP"}],
            "resolution": "STATIC",
            "endpoints": endpoints,
        },
    }


def service_entry_ipv6_endpoints(n: int) -> dict[str, Any]:
    """A tenant ServiceEntry with ``n`` static IPv6 endpoints, each in a /64 of its own."""
    addresses = [f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::1" for i in range(n)]
    return _static_service_entry("many-ipv6-endpoints", [{"address": a} for a in addresses])


def service_entry_endpoints(n: int) -> dict[str, Any]:
    """A tenant ServiceEntry with ``n`` static endpoints outside the allow list."""
    return _static_service_entry(
        "many-endpoints",
        [
            {"address": f"203.0.{(i >> 8) & 255}.{i & 255}", "labels": {"i": str(i)}}
            for i in range(n)
        ],
    )


def service_entry_hosts(n: int) -> dict[str, Any]:
    """A tenant ServiceEntry with ``n`` hosts outside the allow list."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": _meta("many-hosts"),
        "spec": {
            "hosts": [f"h{i}.unlisted{i % 97}.example.com" for i in range(n)],
            "exportTo": ["."],
            "location": "MESH_EXTERNAL",
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }


def service_entry_hosts_own_domains(n: int) -> dict[str, Any]:
    """A ServiceEntry with ``n`` hosts, each under a domain of its own (``h.p7.example.com``):
    no two hosts share a parent, so classing by parent domain gains nothing."""
    manifest = service_entry_hosts(1)
    manifest["metadata"] = _meta("own-domains")
    manifest["spec"]["hosts"] = [f"h.p{i}.example.com" for i in range(n)]
    return manifest


def sidecar_imports_own_domains(n: int) -> dict[str, Any]:
    """A Sidecar importing ``n`` hosts from every namespace, each under a domain of its own,
    half exact names and half wildcards."""
    hosts = [f"*/h.p{i}.example.com" if i % 2 else f"*/*.w.q{i}.example.org" for i in range(n)]
    manifest = sidecar_imports(1)
    manifest["spec"]["egress"] = [{"hosts": hosts}]
    return manifest


def _virtual_service_naming(
    n: int, host: Callable[[int], str], destination: Callable[[int], str]
) -> dict[str, Any]:
    """``virtual_service_routes(n)`` with host ``i`` and route ``i``'s destination renamed."""
    manifest = virtual_service_routes(n)
    manifest["spec"]["hosts"] = [host(i) for i in range(n)]
    for i, rule in enumerate(manifest["spec"]["http"]):
        rule["route"][0]["destination"]["host"] = destination(i)
    return manifest


def virtual_service_own_domains(n: int) -> dict[str, Any]:
    """A VirtualService of ``n`` routes and hosts, each destination under a domain of its own."""
    return _virtual_service_naming(n, "svc.p{}.example.net".format, "d.p{}.example.com".format)


# names kept apart by a label near the top, under known domains of different top-level domains:
# distinct for as many levels as they have labels from the bottom, none shared a level down
# from the top
_APART = ("example.com", "example.org", "example.net")


def _apart(prefix: str, i: int) -> str:
    return f"{prefix}.a.b.p{i}.{_APART[i % len(_APART)]}"


# top-level domains the policies know and do not know, in turn
_TOP = ("com", "net", "org", "io")


def service_entry_hosts_under_tops(n: int) -> dict[str, Any]:
    """A ServiceEntry with ``n`` short hosts each under a domain of its own right below one of
    a few top-level domains (``h.p7.org``): the most names 3 MiB holds, none sharing a parent."""
    manifest = service_entry_hosts(1)
    manifest["metadata"] = _meta("under-tops")
    manifest["spec"]["hosts"] = [f"h.p{i}.{_TOP[i % len(_TOP)]}" for i in range(n)]
    return manifest


def sidecar_imports_under_tops(n: int) -> dict[str, Any]:
    """A Sidecar importing ``n`` short hosts each under a domain of its own right below one of
    a few top-level domains, half of them wildcards."""
    hosts = [
        f"*/h.p{i}.{_TOP[i % len(_TOP)]}" if i % 2 else f"*/*.q{i}.{_TOP[i % len(_TOP)]}"
        for i in range(n)
    ]
    manifest = sidecar_imports(1)
    manifest["spec"]["egress"] = [{"hosts": hosts}]
    return manifest


def sidecar_imports_many_spaces(n: int) -> dict[str, Any]:
    """A Sidecar importing ``n`` short hosts under few top-level domains, from more namespace
    parts than are counted one by one (``ns7/h.p7.org``), half of them wildcards."""
    hosts = [
        f"ns{i % 20}/h.p{i}.{_TOP[i % len(_TOP)]}"
        if i % 2
        else f"ns{i % 20}/*.q{i}.{_TOP[i % len(_TOP)]}"
        for i in range(n)
    ]
    manifest = sidecar_imports(1)
    manifest["metadata"] = _meta("many-spaces")
    manifest["spec"]["egress"] = [{"hosts": hosts}]
    return manifest


def sidecar_imports_one_odd(n: int) -> dict[str, Any]:
    """``sidecar_imports`` with one entry three quarters in that no class of the others holds
    and that breaks the policy: the classes of the first entries do not hold the list."""
    manifest = sidecar_imports(n)
    manifest["metadata"] = _meta("one-odd")
    manifest["spec"]["egress"][0]["hosts"][n * 3 // 4] = "egress/h.odd.test"
    return manifest


def sidecar_imports_mixed(n: int) -> dict[str, Any]:
    """A Sidecar importing ``n`` hosts from its own namespace, from any and from the egress
    namespace in turn, each part with names of its own classes: pairing every part with every
    class (as a cover does) makes pairs no entry has, some of which break the policy."""
    hosts = [
        (f"./x{i}.a.com", f"*/*.x{i}.example.com", f"egress/h{i}.example.org")[i % 3]
        for i in range(n)
    ]
    manifest = sidecar_imports(1)
    manifest["metadata"] = _meta("mixed")
    manifest["spec"]["egress"] = [{"hosts": hosts}]
    return manifest


def service_entry_hosts_apart(n: int) -> dict[str, Any]:
    """A ServiceEntry with ``n`` hosts told apart only near the top (``h.a.b.p7.example.org``)."""
    manifest = service_entry_hosts(1)
    manifest["metadata"] = _meta("apart")
    manifest["spec"]["hosts"] = [_apart("h", i) for i in range(n)]
    return manifest


def sidecar_imports_apart(n: int) -> dict[str, Any]:
    """A Sidecar importing ``n`` hosts told apart only near the top, half of them wildcards."""
    hosts = [f"*/{_apart('h', i)}" if i % 2 else f"*/{_apart('*', i)}" for i in range(n)]
    manifest = sidecar_imports(1)
    manifest["spec"]["egress"] = [{"hosts": hosts}]
    return manifest


def virtual_service_apart(n: int) -> dict[str, Any]:
    """A VirtualService of ``n`` routes and hosts, all told apart only near the top."""
    return _virtual_service_naming(n, partial(_apart, "svc"), partial(_apart, "d"))


def service_entry_repeated_host(n: int) -> dict[str, Any]:
    """A ServiceEntry listing one host ``n`` times: every per-host memo hits."""
    manifest = service_entry_hosts(1)
    manifest["metadata"] = _meta("repeated-host")
    manifest["spec"]["hosts"] = ["h0.unlisted0.example.com"] * n
    return manifest


def pod_env(n: int) -> dict[str, Any]:
    """A Pod whose one container has ``n`` environment variables and ``n // 8`` ports."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta("many-env"),
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example.com/app:1",
                    "env": [{"name": f"VAR_{i}", "value": f"value-{i}"} for i in range(n)],
                    "ports": [{"containerPort": 1024 + i} for i in range(max(1, n // 8))],
                }
            ]
        },
    }


def destination_rule_subsets(n: int) -> dict[str, Any]:
    """A DestinationRule with ``n`` subsets, each with TLS and a tunnel to its own host."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": _meta("many-subsets"),
        "spec": {
            "host": "svc.example.com",
            "exportTo": ["."],
            "subsets": [
                {
                    "name": f"s{i}",
                    "labels": {"version": f"v{i}"},
                    "trafficPolicy": {
                        "tls": {"mode": "SIMPLE", "sni": f"t{i}.example.com"},
                        "tunnel": {"targetHost": f"t{i}.example.com", "targetPort": 443},
                    },
                }
                for i in range(n)
            ],
        },
    }


def _network_policy(name: str, cidrs: list[str]) -> dict[str, Any]:
    """A NetworkPolicy whose egress rule has an ipBlock peer for each of ``cidrs``."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(name),
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]}],
        },
    }


def network_policy_peers(n: int) -> dict[str, Any]:
    """A NetworkPolicy whose egress rule has ``n`` ipBlock peers."""
    return _network_policy("many-peers", [f"10.{(i >> 8) & 255}.{i & 255}.0/24" for i in range(n)])


def network_policy_wide_peers(n: int) -> dict[str, Any]:
    """A NetworkPolicy whose egress rule has ``n`` ipBlock peers wider than a /24, all apart."""
    return _network_policy(
        "many-wide-peers", [f"10.{(i >> 7) & 255}.{(i & 127) * 2}.0/23" for i in range(n)]
    )


def network_policy_ipv6_peers(n: int) -> dict[str, Any]:
    """A NetworkPolicy whose egress rule has ``n`` IPv6 ipBlock peers, each a /64 of its own."""
    return _network_policy(
        "many-ipv6-peers", [f"fd00:{i >> 16:x}:{i & 0xFFFF:x}::/64" for i in range(n)]
    )


def network_policy_families_in_turn(n: int) -> dict[str, Any]:
    """A NetworkPolicy whose ``n`` ipBlock peers are an IPv4 /24 and an IPv6 /64 in turn."""
    return _network_policy(
        "peers-in-turn",
        [
            f"10.{(i >> 8) & 255}.{i & 255}.0/24"
            if i % 2
            else f"fd00:{i >> 16:x}:{i & 0xFFFF:x}::/64"
            for i in range(n)
        ],
    )


def service_entry_families_in_turn(n: int) -> dict[str, Any]:
    """A tenant ServiceEntry whose ``n`` static endpoints are IPv4 and IPv6 addresses in turn."""
    return _static_service_entry(
        "endpoints-in-turn",
        [
            {
                "address": f"203.0.{(i >> 8) & 255}.{i & 255}"
                if i % 2
                else f"2001:db8::{i >> 16:x}:{i & 0xFFFF:x}"
            }
            for i in range(n)
        ],
    )


def _endpoint_slice(name: str, address_type: str, addresses: list[str]) -> dict[str, Any]:
    """A hand-written EndpointSlice with an endpoint of one address for each of ``addresses``."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(name),
        "addressType": address_type,
        "ports": [{"port": 443}],
        "endpoints": [{"addresses": [address]} for address in addresses],
    }


def endpoint_slice_ipv6(n: int) -> dict[str, Any]:
    """A hand-written IPv6 EndpointSlice with ``n`` endpoints of one address each."""
    return _endpoint_slice(
        "many-ipv6", "IPv6", [f"fd00:{i >> 16:x}:{i & 0xFFFF:x}::1" for i in range(n)]
    )


def endpoints_addresses(n: int) -> dict[str, Any]:
    """Hand-written Endpoints with ``n`` addresses."""
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": _meta("many-addresses"),
        "subsets": [
            {
                "addresses": [{"ip": f"203.0.{(i >> 8) & 255}.{i & 255}"} for i in range(n)],
                "ports": [{"port": 443}],
            }
        ],
    }


def endpoints_subsets(n: int) -> dict[str, Any]:
    """Hand-written Endpoints with ``n`` subsets of one internal address each, on a port no
    external service opens (allowed: the addresses stay in the cluster)."""
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": _meta("many-subsets"),
        "subsets": [
            {"addresses": [{"ip": f"10.0.{(i >> 8) & 255}.{i & 255}"}], "ports": [{"port": 9999}]}
            for i in range(n)
        ],
    }


def endpoint_slice_fqdns(n: int) -> dict[str, Any]:
    """A hand-written FQDN EndpointSlice with ``n`` endpoints of one name each."""
    return _endpoint_slice("many-names", "FQDN", [f"e{i}.example.com" for i in range(n)])


def gateway_servers(n: int) -> dict[str, Any]:
    """An ingress Gateway with ``n`` servers, each for its own host."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": _meta("many-servers"),
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": 443, "name": f"https-{i}", "protocol": "HTTPS"},
                    "hosts": [f"g{i}.example.com"],
                    "tls": {"mode": "SIMPLE", "credentialName": f"cert-{i}"},
                }
                for i in range(n)
            ],
        },
    }


def udp_route_rules(n: int) -> dict[str, Any]:
    """A Gateway API UDPRoute with ``n`` rules, each to a Service backend of its own."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "UDPRoute",
        "metadata": _meta("many-rules"),
        "spec": {
            "parentRefs": [{"name": "dns-gateway"}],
            "rules": [{"backendRefs": [{"name": f"dns-{i}", "port": 53}]} for i in range(n)],
        },
    }


def gateway_api_addresses(n: int) -> dict[str, Any]:
    """A Gateway API Gateway asking for ``n`` addresses, each a host of its own."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": _meta("many-addresses"),
        "spec": {
            "gatewayClassName": "istio-remote",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
            "addresses": [{"type": "Hostname", "value": f"gw{i}.example.com"} for i in range(n)],
        },
    }


def envoy_filter_patches(n: int) -> dict[str, Any]:
    """An EnvoyFilter with ``n`` config patches."""
    return {
        "apiVersion": "networking.istio.io/v1alpha3",
        "kind": "EnvoyFilter",
        "metadata": _meta("many-patches"),
        "spec": {
            "configPatches": [
                {
                    "applyTo": "HTTP_FILTER",
                    "match": {"context": "SIDECAR_INBOUND", "listener": {"portNumber": 8000 + i}},
                    "patch": {"operation": "INSERT_BEFORE", "value": {"name": f"f{i}"}},
                }
                for i in range(n)
            ]
        },
    }


def workload_entry_labels(n: int) -> dict[str, Any]:
    """A WorkloadEntry (one address) carrying ``n`` labels."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": _meta("many-labels"),
        "spec": {
            "address": "203.0.113.7",
            "labels": {f"label-{i}": f"value-{i}" for i in range(n)},
            "ports": {"https": 443},
        },
    }


# a policy under which the objects above are allowed: nothing stops a check early then
ALLOWING_POLICY = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: egress}
externalServices:
  - name: example
    hosts: ["*.example.com", "*.example.org", "*.example.net", "*.example0.com"]
    ports: [{number: 443, protocol: TLS}, {number: 5432, protocol: TCP}]
    addresses: [203.0.0.0/16, "2001:db8::/32"]
internalNetworks: [10.0.0.0/8, "fd00::/8"]
allow:
  - {name: tenants, from: {namespace: test-app}, to: [example]}
"""


BUILDERS: dict[str, Callable[[int], dict[str, Any]]] = {
    "VirtualService, n routes and hosts": virtual_service_routes,
    "VirtualService, tcp rules of 50 of n destinations": virtual_service_fan_out,
    "VirtualService, tcp rules of 50 of n IPv6 destinations": virtual_service_ipv6_fan_out,
    "VirtualService, n routes to hosts under as many domains": virtual_service_own_domains,
    "VirtualService, n routes rewriting the authority, in the cluster": virtual_service_rewrites,
    "VirtualService, n routes rewriting the authority, to the egress gateway": (
        virtual_service_rewrites_to_gateway
    ),
    "VirtualService, n routes rewriting the authority, to external hosts": (
        virtual_service_rewrites_to_external
    ),
    "VirtualService, n routes setting the Host header, in the cluster": (
        virtual_service_host_headers
    ),
    "VirtualService, n routes setting the Host header, to the egress gateway": (
        virtual_service_host_headers_to_gateway
    ),
    "VirtualService, n route entries adding :authority, in the cluster": (
        virtual_service_entry_authorities
    ),
    "VirtualService, n route entries adding :authority, to the egress gateway": (
        virtual_service_entry_authorities_to_gateway
    ),
    "Sidecar importing n hosts": sidecar_imports,
    "Sidecar importing n hosts under as many domains": sidecar_imports_own_domains,
    "Pod with n containers": pod_containers,
    "Pod, one container with n env vars": pod_env,
    "ServiceEntry with n endpoints": service_entry_endpoints,
    "ServiceEntry with n IPv6 endpoints": service_entry_ipv6_endpoints,
    "NetworkPolicy with n IPv6 ipBlock peers": network_policy_ipv6_peers,
    "NetworkPolicy with n ipBlock peers wider than a /24": network_policy_wide_peers,
    "NetworkPolicy with n ipBlock peers, IPv4 and IPv6 in turn": network_policy_families_in_turn,
    "ServiceEntry with n endpoints, IPv4 and IPv6 in turn": service_entry_families_in_turn,
    "EndpointSlice with n IPv6 endpoints": endpoint_slice_ipv6,
    "ServiceEntry with n hosts": service_entry_hosts,
    "ServiceEntry with n hosts under as many domains": service_entry_hosts_own_domains,
    "ServiceEntry with n hosts apart near the top": service_entry_hosts_apart,
    "ServiceEntry with n short hosts under few top-level domains": service_entry_hosts_under_tops,
    "Sidecar importing n short hosts under few top-level domains": sidecar_imports_under_tops,
    "Sidecar importing n short hosts from 20 namespace parts": sidecar_imports_many_spaces,
    "Sidecar importing n hosts apart near the top": sidecar_imports_apart,
    "Sidecar importing n hosts, one odd entry deep in them": sidecar_imports_one_odd,
    "Sidecar importing n hosts of three namespace parts in turn": sidecar_imports_mixed,
    "VirtualService, n routes to hosts apart near the top": virtual_service_apart,
    "ServiceEntry with one host n times": service_entry_repeated_host,
    "DestinationRule with n subsets": destination_rule_subsets,
    "NetworkPolicy with n ipBlock peers": network_policy_peers,
    "Endpoints with n addresses": endpoints_addresses,
    "Endpoints with n subsets of one address": endpoints_subsets,
    "EndpointSlice with n FQDN endpoints": endpoint_slice_fqdns,
    "Gateway with n servers": gateway_servers,
    "Gateway API Gateway with n addresses": gateway_api_addresses,
    "Gateway API UDPRoute with n rules": udp_route_rules,
    "EnvoyFilter with n patches": envoy_filter_patches,
    "WorkloadEntry with n labels": workload_entry_labels,
}


@dataclass(frozen=True)
class Case:
    """One object answered at two sizes: the whole handler, and ``decide`` alone."""

    label: str
    policy: str
    count: int
    size: int
    ms: float
    half_ms: float
    decide_ms: float
    freed_ms: float
    verdict: str
    reason_chars: int

    @property
    def growth(self) -> float:
        """Time at the count over time at half of it (2.0 for a linear check)."""
        return self.ms / self.half_ms if self.half_ms else 0.0


def count_for(build: Callable[[int], dict[str, Any]], target_bytes: int) -> int:
    """The largest count whose object's review body stays within ``target_bytes``."""
    per_item = len(orjson.dumps(build(1000))) / 1000
    count = max(1, int(target_bytes / per_item))
    while count > 1 and len(review_body(build(count))) > target_bytes:
        count = int(count * 0.97)
    return count


def _resource(manifest: Mapping[str, Any]) -> dict[str, str]:
    group, _, version = str(manifest.get("apiVersion", "")).rpartition("/")
    kind = str(manifest.get("kind", ""))
    return {"group": group, "version": version, "resource": plural(kind)}


def review_body(manifest: Mapping[str, Any], *, uid: str = "worst-case") -> bytes:
    """The AdmissionReview the API server sends to create ``manifest``."""
    resource = _resource(manifest)
    meta = manifest.get("metadata") or {}
    return orjson.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {
                    "group": resource["group"],
                    "version": resource["version"],
                    "kind": manifest.get("kind"),
                },
                "resource": resource,
                "name": meta.get("name", ""),
                "namespace": meta.get("namespace", NAMESPACE),
                "operation": "CREATE",
                "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
                "object": manifest,
                "oldObject": None,
                "dryRun": False,
            },
        }
    )


def review_handler(policy_text: str) -> ReviewHandler:
    """The webhook's review handler as a worker builds it (decision cache included)."""
    store = PolicyStore()
    store.update(policy_text, origin="bench")
    return ReviewHandler(
        store=store,
        metrics=Metrics(),
        mutator=mutate,
        view=EmptyView(),
        log_allowed=True,
        cache_size=DEFAULT_DECISION_CACHE_SIZE,
        clock=utc_now,
        policy_configmap=None,
        cluster_objects=NoObjects(),
        security_team=SecurityTeam(),
    )


def _renamed(manifest: dict[str, Any], suffix: str) -> dict[str, Any]:
    """``manifest`` under another name: a fresh object to the decision cache."""
    meta = dict(manifest["metadata"])
    meta["name"] = f"{meta['name']}-{suffix}"
    return {**manifest, "metadata": meta}


def time_answer(
    handler: ReviewHandler, manifest: dict[str, Any], *, repeat: int = REPEAT
) -> tuple[float, float]:
    """Best-of ``repeat`` CPU milliseconds for the handler to answer a review of ``manifest``,
    and for freeing the decoded review after the response, as the served routes do.

    Parse, decide and response make the answer, as a worker spends them; each repetition renames
    the object so no answer comes from the decision cache.
    """
    best, best_free = float("inf"), float("inf")
    for k in range(repeat):
        body = review_body(_renamed(manifest, f"r{next(_RUNS)}-{k}"))
        kept: list[object] = []
        started = time.process_time()
        handler.answer("validate", JSON, body, keep=kept)
        answered = time.process_time()
        kept.clear()
        freed = time.process_time()
        best = min(best, answered - started)
        best_free = min(best_free, freed - answered)
    return best * 1000, best_free * 1000


def time_decide(manifest: dict[str, Any], policy: Policy, *, repeat: int = REPEAT) -> float:
    """Best-of ``repeat`` CPU milliseconds for ``decide`` alone on ``manifest``."""
    review = review_of_manifest(manifest)
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        decide(review, policy)
        best = min(best, time.process_time() - started)
    return best * 1000


_RUNS = itertools.count()


def quiet_logs() -> None:
    """Send the handler's decision log nowhere (a worker writes it to stdout)."""
    configure_logging("info", open(os.devnull, "w"))  # noqa: SIM115  (lives with the process)


def worst_cases(
    policies: Mapping[str, str],
    target_bytes: int = 3 * MIB,
    builders: Mapping[str, Callable[[int], dict[str, Any]]] = BUILDERS,
) -> list[Case]:
    """Every builder at the largest count fitting ``target_bytes``, and at half of it."""
    # the collector setting of a worker (webhook.admission.server.tune_gc)
    gc.set_threshold(*GC_THRESHOLD)
    quiet_logs()
    handlers = {name: review_handler(text) for name, text in policies.items()}
    compiled = {name: parse_policy(text) for name, text in policies.items()}
    cases = []
    for label, build in builders.items():
        count = count_for(build, target_bytes)
        half = max(1, count // 2)
        manifest, halved = build(count), build(half)
        for name, handler in handlers.items():
            decision = decide(review_of_manifest(manifest), compiled[name])
            ms, freed_ms = time_answer(handler, manifest)
            cases.append(
                Case(
                    label,
                    name,
                    count,
                    len(review_body(manifest)),
                    ms,
                    time_answer(handler, halved)[0],
                    time_decide(manifest, compiled[name]),
                    freed_ms,
                    decision.verdict,
                    len(decision.reason),
                )
            )
    return sorted(cases, key=lambda c: c.ms, reverse=True)


def summary(cases: Sequence[Case]) -> list[dict[str, Any]]:
    """The cases as the saved results keep them (``tests.bench.results``)."""
    return [
        {
            "object": c.label,
            "policy": c.policy,
            "mib": c.size / MIB,
            "ms": c.ms,
            "freed_ms": c.freed_ms,
            "verdict": c.verdict,
        }
        for c in cases
    ]


def table(cases: Sequence[Case]) -> list[str]:
    """Markdown rows, slowest first."""
    lines = [
        "| object (slowest first) | policy | n | review JSON | answer ms | at n/2 ms "
        "| growth (2.0 = linear) | of it decide ms | then freed ms | verdict | reason chars |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for c in cases:
        lines.append(
            f"| {c.label} | {c.policy} | {c.count:,} | {c.size / MIB:.2f} MiB "
            f"| {c.ms:.1f} | {c.half_ms:.1f} | {c.growth:.2f} | {c.decide_ms:.1f} "
            f"| {c.freed_ms:.1f} | {c.verdict} | {c.reason_chars:,} |"
        )
    return lines


def default_policies() -> dict[str, str]:
    """The banzai-demo policy the service benchmark uses (denies), and one allowing it all."""
    from tests.bench.bench_service import POLICY_FILE

    return {"banzai-demo": POLICY_FILE.read_text(), "allows all": ALLOWING_POLICY}


def main(argv: Sequence[str] | None = None) -> int:
    """Print the worst-case table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=float, default=3.0, help="review size to grow to")
    parser.add_argument("--only", default="", help="only objects whose label contains this")
    args = parser.parse_args(argv)
    builders = {k: v for k, v in BUILDERS.items() if args.only.lower() in k.lower()}
    cases = worst_cases(default_policies(), int(args.mib * MIB), builders)
    print("\n".join(table(cases)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Kubernetes Gateway API routes and gateways: the egress paths that need no Istio CRD.

See docs/istio-semantics.md#gateway-api and trap 15.

Istio implements the Gateway API for ingress, for mesh traffic (GAMMA: a route whose parent is a
Service or ServiceEntry steers every sidecar calling it) and for egress.  So a route can do
what a VirtualService does:

- a backend of kind ``Hostname`` (group ``networking.istio.io``) names any host; outside the
  egress namespace an external one sends mesh traffic straight out, skipping the egress gateway;
- ``hostnames`` of a mesh-attached route claim hosts for the whole mesh;
- a route attached to a Gateway in the egress namespace programs the egress gateway itself, and
  so does one attached to a ListenerSet there, or a ListenerSet lending its listeners to such a
  Gateway;
- a listener asking for ``auto-passthrough`` in its TLS options is an ``AUTO_PASSTHROUGH``
  server, where the client's SNI picks the destination and no route is consulted.

Backends of kind Service and ServiceEntry are fine here: those objects are checked on their own.
A Gateway of class ``istio`` is the tenant's own ingress: it opens no egress by itself, what it
forwards comes from the routes attached to it, which are judged here; istiod's Deployment for it
is recognised by author (``istiod_gateways``), and what the Gateway hands that Deployment (the
proxy image annotation, the pods' labels and annotations, a ``parametersRef`` overlay) is
judged here.  Waypoint and east-west classes are refused: a
waypoint is ambient, which no Sidecar governs, and an east-west gateway passes mesh traffic on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import lru_cache, partial
from itertools import chain, compress, product, repeat
from operator import not_
from typing import Any

from webhook.core.checks import ClusterView, checks
from webhook.core.checks.common import (
    ChunkedKeys,
    Reader,
    egress_fqdns,
    egress_gateway_selecting,
    is_object,
    judge_classes,
    judge_read_hosts,
    many,
    read_hosts,
)
from webhook.core.checks.injection import STATUS
from webhook.core.checks.pods import check_capture_metadata
from webhook.core.decisions import STOP_AFTER_VIOLATIONS, Violation
from webhook.core.hosts import is_ip, normalize
from webhook.core.policy import Policy
from webhook.core.reviews import Review

GROUP = "gateway.networking.k8s.io"
# the experimental group: Istio releases before ListenerSet reached the standard channel read
# XListenerSet there
X_GROUP = "gateway.networking.x-k8s.io"
ISTIO_GROUP = "networking.istio.io"
CORE_GROUPS = frozenset({"", "core"})
INFERENCE_GROUPS = frozenset({"inference.networking.k8s.io", "inference.networking.x-k8s.io"})
ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute")
# classes for which istiod deploys a proxy in the Gateway's own namespace that routes cannot
# describe: waypoints are ambient (no Sidecar applies), east-west gateways pass mesh traffic on.
# Class "istio" (the tenant's own ingress) is fine: what it forwards comes from attached routes.
# With agentgateway switched on, istiod deploys agentgateway proxies (ingress and waypoint),
# whose pods are no Envoy gateway the pod rules recognise.
PROXY_DEPLOYING_CLASSES = frozenset(
    {"istio-waypoint", "istio-east-west", "istio-agentgateway", "istio-agentgateway-waypoint"}
)
# route parents whose listeners a Gateway's proxy serves: a ListenerSet lends its listeners to
# the Gateway it names, so a route attached to one programs that Gateway's proxy
GATEWAY_PARENTS = frozenset({(GROUP, "Gateway"), (GROUP, "ListenerSet"), (X_GROUP, "XListenerSet")})
LISTENER_SET_KINDS = ((GROUP, "ListenerSet"), (X_GROUP, "XListenerSet"))
# a listener TLS option that makes istiod emit an AUTO_PASSTHROUGH server, whatever tls.mode says
LISTENER_PROTOCOL = "gateway.istio.io/listener-protocol"
AUTO_PASSTHROUGH = "auto-passthrough"
# route kinds whose hostnames reach a sidecar through a mesh parent (a Service or ServiceEntry).
# istiod names the sidecar route after the parent alone (<name>.<ns>.svc.<domain>, or the
# ServiceEntry's hosts) and drops an HTTPRoute's or GRPCRoute's hostnames there; a TLSRoute's
# become the route's SNI match, which on a parent without a virtual IP catches connections to
# any address with that SNI (docs/istio-semantics.md#mesh-route-hostnames)
SNI_MATCHING_KINDS = frozenset({"TLSRoute"})
# istiod registers a Gateway carrying this label, of any class, as the gateway of that network:
# sidecars then send the mesh's traffic for endpoints of that network to its addresses
NETWORK_LABEL = "topology.istio.io/network"


@checks(GROUP, *ROUTE_KINDS)
def check_route(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """A route may not send mesh traffic straight out, claim unallowed hosts, or program egress."""
    del view
    if review.operation == "DELETE":
        return ()
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    spec = reader.spec(review.object)
    namespace = review.namespace
    in_egress = policy.is_egress_namespace(namespace)
    mesh_parent = False
    for where, parent in reader.mappings(spec.get("parentRefs"), "spec.parentRefs"):
        group = parent.get("group", GROUP)
        kind = parent.get("kind", "Gateway")
        if (group in CORE_GROUPS and kind == "Service") or (
            group == ISTIO_GROUP and kind == "ServiceEntry"
        ):
            mesh_parent = True
        elif (group, kind) in GATEWAY_PARENTS and not in_egress:
            parent_ns = parent.get("namespace", namespace)
            if isinstance(parent_ns, str) and policy.is_egress_namespace(parent_ns):
                reader.add(
                    f"{where}.namespace",
                    f"attaches the route to a {kind} in the egress namespace {parent_ns}, "
                    "which would program the egress gateway itself; egress routes are "
                    "generated from the egress policy: ask for the destination there",
                )
    if mesh_parent and review.kind in SNI_MATCHING_KINDS:
        _check_hostnames(reader, policy, spec, namespace)
    refs = _plain_backends(spec.get("rules"))
    for where, ref in _backend_refs(reader, spec) if refs is None else refs:
        _check_backend(reader, policy, ref, where, namespace)
    return reader.violations


def _check_hostnames(
    reader: Reader, policy: Policy, spec: Mapping[str, Any], namespace: str
) -> None:
    """Hostnames of a mesh-attached TLSRoute must be allowed to some workload of the namespace:
    they are the SNI names its sidecar route matches."""
    allowed = policy.allowed_for_some(namespace)

    def judge(reader: Reader, where: str, host: str) -> None:
        if policy.is_internal(host):
            return
        if not policy.services_covering(host) & allowed:
            reader.add(
                where,
                f"a TLSRoute attached to a mesh Service steers every sidecar's TLS for "
                f"{host!r} (on a parent without a virtual IP, to whatever address it is sent), "
                f"which is not an external service any workload of {namespace} may reach "
                f"(allowed: {policy.describe_allowed(allowed)}); leave hostnames out (the "
                "route then matches its parent's own names) or ask for the host in the "
                "egress policy",
            )

    # each name is judged right after it is read: its violation comes among the judgements'
    hosts = read_hosts(reader, spec.get("hostnames"), "spec.hostnames", defer=True)
    judge_read_hosts(reader, policy, hosts, lambda r, i, host: judge(r, hosts.path(i), host))


def _backend_refs(
    reader: Reader, spec: Mapping[str, Any]
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every backend a route can send to: rule backends and request mirrors at both levels.

    Yielded as they are read, so a route breaking the policy from its first rules stops at the
    violation limit without reading the rest; an absent list costs no path.
    """

    def mirrors(filters: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        for where, item in reader.mappings(filters, path):
            mirror = reader.mapping(item.get("requestMirror"), f"{where}.requestMirror")
            if "backendRef" in mirror:
                at = f"{where}.requestMirror.backendRef"
                yield at, reader.mapping(mirror.get("backendRef"), at)

    for where, rule in reader.mappings(spec.get("rules"), "spec.rules"):
        backends = rule.get("backendRefs")
        if backends is not None:
            for at, backend in reader.mappings(backends, f"{where}.backendRefs"):
                yield at, backend
                filters = backend.get("filters")
                if filters is not None:
                    yield from mirrors(filters, f"{at}.filters")
        filters = rule.get("filters")
        if filters is not None:
            yield from mirrors(filters, f"{where}.filters")


def _followed(group: Any, kind: Any) -> bool:
    """Whether a backend of this group and kind sends to a Service, ServiceEntry or inference
    pool, whose traffic other checks judge."""
    return (
        (group in CORE_GROUPS and kind == "Service")
        or (group == ISTIO_GROUP and kind == "ServiceEntry")
        or (group in INFERENCE_GROUPS and kind == "InferencePool")
    )


def _plain_backends(rules: Any) -> Iterator[tuple[str, Mapping[str, Any]]] | None:
    """``_backend_refs`` of a long rule list of the usual shape, found in passes of C, without
    the backends ``_check_backend`` passes by their group and kind alone; None for any other
    list (then read rule by rule).

    The usual shape: every rule an object without ``filters`` whose ``backendRefs`` is absent
    or a list of objects without ``filters``, each group and kind a string or absent.  A
    UDPRoute of 3 MiB holds 60k rules: read one by one, their paths alone cost 100 ms.
    """
    if type(rules) is not list or not many(rules) or set(map(type, rules)) != {dict}:
        return None
    if list(map(dict.get, rules, repeat("filters"))).count(None) != len(rules):
        return None
    lists: list[Any] = list(map(dict.get, rules, repeat("backendRefs")))
    if not set(map(type, lists)) <= {list, type(None)}:
        return None
    lists = [backends or () for backends in lists]
    refs: list[Any] = list(chain.from_iterable(lists))
    if not refs:
        return iter(())
    if set(map(type, refs)) != {dict}:
        return None
    if list(map(dict.get, refs, repeat("filters"))).count(None) != len(refs):
        return None
    groups = list(map(dict.get, refs, repeat("group"), repeat("")))
    kinds = list(map(dict.get, refs, repeat("kind"), repeat("Service")))
    if not set(map(type, groups)) | set(map(type, kinds)) <= {str}:
        return None
    if all(_followed(*pair) for pair in product(set(groups), set(kinds))):
        # a few groups and kinds, every pair of them followed: nothing to judge
        return iter(())
    # each distinct pair asked once, the list mapped in C
    passed = {pair for pair in set(zip(groups, kinds, strict=True)) if _followed(*pair)}
    followed = list(map(passed.__contains__, zip(groups, kinds, strict=True)))
    if all(followed):
        return iter(())
    # the rule and place in it of each backend, only when some backend is to be judged
    lengths = list(map(len, lists))
    if lengths.count(1) == len(lengths):
        # one backend per rule, the usual route
        rule_of: Sequence[int] = range(len(lengths))
        place_of: Sequence[int] = [0] * len(lengths)
    else:
        rule_of = list(chain.from_iterable(map(repeat, range(len(lists)), lengths)))
        place_of = list(chain.from_iterable(map(range, lengths)))
    return (
        (f"spec.rules[{rule_of[k]}].backendRefs[{place_of[k]}]", refs[k])
        for k in compress(range(len(refs)), map(not_, followed))
    )


def _check_backend(
    reader: Reader, policy: Policy, ref: Mapping[str, Any], where: str, namespace: str
) -> None:
    """Services, ServiceEntries and inference pools are checked elsewhere; Hostname here."""
    group = ref.get("group", "")
    kind = ref.get("kind", "Service")
    if _followed(group, kind):
        return
    if group != ISTIO_GROUP or kind != "Hostname":
        reader.add(
            f"{where}.kind",
            f"backend {group or 'core'}/{kind} is not a kind egress-guard can follow, so it "
            "cannot tell where the traffic goes; use a Service or ServiceEntry backend",
        )
        return
    name = reader.string(ref.get("name"), f"{where}.name")
    if not name:
        reader.add(f"{where}.name", "a Hostname backend needs a name")
        return
    host = normalize(name)
    if is_ip(host):
        reader.add(f"{where}.name", f"{name!r} is an IP address; a Hostname backend needs a name")
        return
    checked = reader.host(name, f"{where}.name")
    if checked is None or policy.is_internal(checked):
        return
    covering = policy.services_covering(checked)
    if policy.is_egress_namespace(namespace) and covering and not checked.startswith("*"):
        # the gateway leg: the egress gateway forwards to a host of the allow list
        return
    head = (
        f"a Hostname backend sends the route's traffic straight to {checked!r}, skipping the "
        "egress gateway and the egress allow list"
    )
    reachable = covering & policy.allowed_for_some(namespace)
    if reachable:
        # the destination is granted already: only the way there is wrong
        reader.add(
            f"{where}.name",
            f"{head}; workloads of {namespace} may reach it through the egress gateway "
            f"{egress_fqdns(policy, reachable)}: have them call the host itself (their "
            "sidecars send it there) instead of using a Hostname backend",
        )
        return
    gateways = ", ".join(gw.fqdn for gw in policy.gateways) or "the egress gateway"
    reader.add(
        f"{where}.name",
        f"{head}; send it to {gateways} and ask for the destination in the egress policy",
    )


@checks(GROUP, "Gateway")
def check_gateway(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """Tenant Gateways may not deploy an ungoverned proxy or bind the egress gateway's pods."""
    del view
    namespace = review.namespace
    if review.operation == "DELETE":
        return ()
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    spec = reader.spec(review.object)
    # refused in the egress namespace too, as AUTO_PASSTHROUGH is on classic Gateways
    _check_listeners(reader, spec)
    if policy.is_egress_namespace(namespace):
        return reader.violations
    klass = reader.string(spec.get("gatewayClassName"), "spec.gatewayClassName")
    if klass in PROXY_DEPLOYING_CLASSES:
        reader.add(
            "spec.gatewayClassName",
            f"class {klass!r} makes istiod deploy a gateway proxy in {namespace}; Sidecar "
            "resources do not govern gateway proxies (and waypoints are ambient), so its "
            "traffic would escape the egress allow list; run gateways in a namespace outside "
            "the guardrail, or use the egress gateway",
        )
    _check_infrastructure(reader, policy, review.object, spec)
    addresses = spec.get("addresses")
    namespace = policy.egress_namespace
    if type(addresses) is list and many(addresses):
        if _none_names_namespace(addresses, namespace):
            return reader.violations
        listed: list[Any] = addresses

        def judge(reader: Reader, index: int) -> None:
            address = listed[index]
            if is_object(address):
                _check_address(reader, address, f"spec.addresses[{index}]", namespace)

        reader.non_objects(listed, "spec.addresses")

        # a piece proven to hold nothing to report is one class, judged clean once
        keys_of = partial(_nothing_to_report, namespace)
        judge_classes(reader, ChunkedKeys(addresses, keys_of), judge)
        return reader.violations
    for where, address in reader.mappings(addresses, "spec.addresses"):
        _check_address(reader, address, where, namespace)
    return reader.violations


@checks(GROUP, "ListenerSet")
@checks(X_GROUP, "XListenerSet")
def check_listener_set(review: Review, policy: Policy, view: ClusterView) -> Iterable[Violation]:
    """A ListenerSet adds listeners to the Gateway it names, in any namespace that Gateway's
    ``allowedListeners`` admits: it may not name one in the egress namespace, and its listeners
    meet the rules of a Gateway's own."""
    del view
    if review.operation == "DELETE":
        return ()
    reader = Reader(limit=STOP_AFTER_VIOLATIONS)
    spec = reader.spec(review.object)
    namespace = review.namespace
    parent = reader.mapping(spec.get("parentRef"), "spec.parentRef")
    # istiod attaches a ListenerSet only to a parent of kind Gateway (the default)
    is_gateway = (parent.get("group", GROUP), parent.get("kind", "Gateway")) == (GROUP, "Gateway")
    parent_ns = parent.get("namespace", namespace)
    if (
        is_gateway
        and isinstance(parent_ns, str)
        and parent_ns != namespace
        and policy.is_egress_namespace(parent_ns)
    ):
        reader.add(
            "spec.parentRef.namespace",
            f"adds listeners to a Gateway in the egress namespace {parent_ns}, so the routes "
            "attached to them would program the egress gateway itself; egress gateways are "
            "configured from the egress policy only: ask for the destination there",
        )
    meta = review.object.get("metadata") if isinstance(review.object, Mapping) else None
    labels = reader.labels(reader.mapping(meta, "metadata").get("labels"), "metadata.labels")
    if labels and NETWORK_LABEL in labels:
        reader.add(
            f"metadata.labels[{NETWORK_LABEL}]",
            "makes istiod serve this ListenerSet's TLS passthrough listener on the network "
            "gateway port (15443) as AUTO_PASSTHROUGH, which lets clients pick any destination "
            "through SNI; networks and their gateways are the platform's to declare, so remove "
            "the label",
        )
    _check_listeners(reader, spec)
    return reader.violations


def _check_listeners(reader: Reader, spec: Mapping[str, Any]) -> None:
    """Listeners of a Gateway or ListenerSet: no auto-passthrough.

    istiod turns a listener whose TLS options ask for ``auto-passthrough`` into an
    ``AUTO_PASSTHROUGH`` server: the client's SNI picks the destination, with no route to judge.
    """
    listeners = spec.get("listeners")
    if _no_auto_passthrough(listeners):
        return
    for where, listener in reader.mappings(listeners, "spec.listeners"):
        tls = listener.get("tls")
        if tls is None:
            continue
        tls = reader.mapping(tls, f"{where}.tls")
        options = tls.get("options")
        if options is None:
            continue
        options = reader.mapping(options, f"{where}.tls.options")
        if options.get(LISTENER_PROTOCOL) == AUTO_PASSTHROUGH:
            reader.add(
                f"{where}.tls.options[{LISTENER_PROTOCOL}]",
                "auto-passthrough makes istiod serve this listener as AUTO_PASSTHROUGH, which "
                "lets clients pick any destination through SNI, with no route to check; use "
                "tls.mode Passthrough with a TLSRoute, or Terminate",
            )


def _no_auto_passthrough(listeners: Any) -> bool:
    """Whether a long list of listener objects is proven, in passes of C, to hold nothing
    ``_check_listeners`` reports: then none of thousands gets a path of its own."""
    if type(listeners) is not list or not many(listeners) or set(map(type, listeners)) != {dict}:
        return False
    tls = [t for t in map(dict.get, listeners, repeat("tls")) if t is not None]
    if not set(map(type, tls)) <= {dict}:
        return False
    options = [o for o in map(dict.get, tls, repeat("options")) if o is not None]
    if not set(map(type, options)) <= {dict}:
        return False
    return AUTO_PASSTHROUGH not in map(dict.get, options, repeat(LISTENER_PROTOCOL))


def _check_infrastructure(
    reader: Reader, policy: Policy, obj: Mapping[str, Any] | None, spec: Mapping[str, Any]
) -> None:
    """What the controller copies from a Gateway into the proxy it deploys for it.

    istiod renders the Deployment from its template and the Gateway: ``metadata.annotations``
    choose the proxy image (``sidecar.istio.io/proxyImage``), the labels and annotations of
    ``spec.infrastructure`` (or, without them, the Gateway's own) become the pods', and a
    ``parametersRef`` ConfigMap is merged over the rendered objects.  That proxy is never
    captured and runs as UID 1337, so these are judged like a pod's own, with the egress
    gateways' selectors and a hand-written injector status refused besides.  The network label
    is refused too: on the Gateway it declares a cross-network gateway.
    """
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    meta = reader.mapping(meta, "metadata")
    infra = reader.mapping(spec.get("infrastructure"), "spec.infrastructure")
    if infra.get("parametersRef") is not None:
        reader.add(
            "spec.infrastructure.parametersRef",
            "istiod merges the referenced ConfigMap over the gateway proxy's Deployment (its "
            "command, image and containers included) and renders again whenever the ConfigMap "
            "changes, which egress-guard does not see; that proxy runs uncaptured as UID 1337, "
            "so remove the reference (class-wide settings belong in the GatewayClass defaults "
            "the platform team keeps)",
        )
    for path, fields in (("metadata", meta), ("spec.infrastructure", infra)):
        labels = reader.labels(fields.get("labels"), f"{path}.labels") or {}
        annotations = reader.labels(fields.get("annotations"), f"{path}.annotations") or {}
        if NETWORK_LABEL in labels:
            reader.add(
                f"{path}.labels[{NETWORK_LABEL}]",
                "makes istiod take this Gateway's addresses for the gateway of network "
                f"{labels[NETWORK_LABEL]!r}: every sidecar then sends traffic for endpoints of "
                "that network to those addresses, past the egress gateway; networks and their "
                "gateways are the platform's to declare, so remove the label",
            )
        check_capture_metadata(reader, path, labels, annotations)
        if STATUS in annotations:
            reader.add(
                f"{path}.annotations[{STATUS}]",
                "is written by the Istio injector; on the gateway's pods it claims an "
                "injection that never happened; remove it",
            )
        selected = egress_gateway_selecting(policy, labels)
        if selected is not None:
            reader.add(
                f"{path}.labels",
                f"give the gateway's pods the selector of the egress gateway {selected.ref}, so "
                "the egress namespace's Gateway would program this proxy too, which runs "
                "uncaptured and without the egress gateway's authorization; remove them",
            )


def _check_address(reader: Reader, address: Mapping[str, Any], where: str, namespace: str) -> None:
    """An address may not be a host of the egress namespace."""
    value = reader.string(address.get("value"), f"{where}.value")
    if not value or address.get("type", "IPAddress") == "IPAddress":
        return
    host = normalize(value)
    if _in_namespace(host, namespace):
        reader.add(
            f"{where}.value",
            f"binds the Gateway to {host!r} in the egress namespace, so its listeners and "
            "routes would program the egress gateway's pods; egress gateways are "
            "configured from the egress policy only",
        )


def _none_names_namespace(addresses: Any, namespace: str) -> bool:
    """Whether a long list of address objects is proven, in passes of C, to hold no host of
    ``namespace`` and nothing else to report: then none of thousands is read on its own.
    """
    if type(addresses) is not list or not many(addresses):
        return False
    return _nothing_to_report(namespace, addresses) is not None


def _nothing_to_report(namespace: str, addresses: Sequence[Any]) -> list[bool] | None:
    """One key for each of a piece of a list of addresses proven, in passes of C, to hold no
    host of ``namespace`` and nothing else to report; None: read them one by one.

    A host of the namespace holds ".namespace" once normalized, and normalizing only
    lower-cases and trims: the lower-cased text of all values holds it too.
    """
    if set(map(type, addresses)) != {dict}:
        return None
    values = list(map(dict.get, addresses, repeat("value")))
    if not set(map(type, values)) <= {str, type(None)}:
        return None
    present = list(filter(None, values))
    text = "\n".join(present).lower()
    if f".{namespace}" in text and (
        # a value holding a newline would pass for two lines
        text.count("\n") != len(present) - 1 or _namespace_hosts(namespace).search(text)
    ):
        return None
    return [True] * len(addresses)


@lru_cache(maxsize=64)
def _namespace_hosts(namespace: str) -> re.Pattern[str]:
    """Lines of lower-cased values that ``_in_namespace`` may take for a host of
    ``namespace`` once normalized (trimmed, one trailing dot dropped): the second label the
    namespace, then the end or ``svc``.  Wider than that never matters: a line it finds only
    sends the list to be read value by value, and ``x.egress.example.com`` no longer does."""
    return re.compile(rf"^\s*[^.\n]*\.{re.escape(namespace)}(?:\.?\s*$|\.svc(?:[.\s]|$))", re.M)


def _in_namespace(host: str, namespace: str) -> bool:
    """``name.ns``, ``name.ns.svc`` and ``name.ns.svc.<domain>`` all name a Service of ``ns``."""
    labels = host.split(".")
    return len(labels) >= 2 and labels[1] == namespace and (len(labels) == 2 or labels[2] == "svc")

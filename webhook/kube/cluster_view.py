"""The webhook's view of the cluster, from watch-fed caches: Sidecars, and egress addresses.

Istio gives each workload one Sidecar (oldest selector match, else the namespace default), so
whether a new Sidecar is ambiguous depends on the ones already there.  A tenant destination at an
address a Pod or Service of the egress namespace holds reaches an egress gateway past the routes
that guard it (``webhook.core.checks.egress_addresses``).  The webhook cannot list either per
request (latency, and it would call the API server from inside its own admission), so informers
keep them and answer ``webhook.core.checks.ClusterView``.

Sidecars are watched cluster-wide.  Addresses are watched only in the namespaces the policy in
force names for its gateways (one namespace's Pods and Services, a handful of objects): from
serve start for the policy loaded then, and from each policy load after (``follow``); a namespace
first asked for starts its watch too.  Until a namespace's watch has listed it, its addresses are
unknown (None), which the checks answer with "retry shortly".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol

from kubernetes import client

from webhook.core.checks.egress_addresses import object_addresses, watched_namespaces
from webhook.kube.client import SIDECAR
from webhook.kube.informing import Handler, Informer, key_of
from webhook.policy_runtime import PolicyStore, ReloadResult

# how long serve start waits for the policy's egress namespace to be listed
ADDRESS_SYNC_WAIT = 10.0


class Cache(Protocol):
    """What the view needs of an informer (``webhook.kube.informing.Informer``)."""

    @property
    def synced(self) -> bool:
        """True once the first list has been loaded."""
        ...

    def add_handler(self, handler: Handler) -> None:
        """Also call ``handler`` for every event."""
        ...

    def start(self) -> Any:
        """Start listing and watching."""
        ...

    def stop(self) -> None:
        """Stop watching."""
        ...

    def wait_synced(self, timeout: float) -> bool:
        """Block until the first list is loaded (or ``timeout``)."""
        ...


# the caches of one namespace's address holders: its Pods, its Services
AddressCaches = Callable[[str], Sequence[Cache]]


def address_caches(api_client: client.ApiClient) -> AddressCaches:
    """Pod and Service informers of a namespace."""
    core = client.CoreV1Api(api_client)

    def caches(namespace: str) -> list[Cache]:
        return [
            Informer(core.list_namespaced_pod, namespace, name=f"pods-{namespace}"),
            Informer(core.list_namespaced_service, namespace, name=f"services-{namespace}"),
        ]

    return caches


class _Addresses:
    """The addresses one namespace's Pods and Services hold, kept from their caches' events."""

    __slots__ = ("by_object", "caches", "held")

    def __init__(self, caches: Sequence[Cache]) -> None:
        self.caches = caches
        # (cache index, object name) -> its addresses: a Pod and a Service may share a name
        self.by_object: dict[tuple[int, str], frozenset[str]] = {}
        # their union, rebuilt on the first read after a change
        self.held: frozenset[str] | None = frozenset()

    @property
    def synced(self) -> bool:
        return all(cache.synced for cache in self.caches)


class SidecarView:
    """``ClusterView`` over a cluster-wide Sidecar informer and per-namespace address ones."""

    def __init__(
        self, api_client: client.ApiClient, *, addresses: AddressCaches | None = None
    ) -> None:
        api = client.CustomObjectsApi(api_client)
        # per-namespace index so a review costs one dict lookup, whatever the cluster size
        self._by_namespace: dict[str, dict[str, Mapping[str, Any]]] = {}
        self._lock = threading.Lock()
        # bumped on every event so cached decisions that read this view can tell they are stale
        self._generation = 0
        self.informer = Informer(
            api.list_cluster_custom_object,
            SIDECAR.group,
            SIDECAR.version,
            SIDECAR.plural,
            name="sidecars",
            handler=self._on_event,
        )
        self._address_caches = addresses or address_caches(api_client)
        self._addresses: dict[str, _Addresses] = {}

    def _on_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        if kind == "SYNCED":
            return
        namespace, name = key_of(obj)
        with self._lock:
            self._generation += 1
            bucket = self._by_namespace.setdefault(namespace, {})
            if kind == "DELETED":
                bucket.pop(name, None)
            else:
                bucket[name] = obj

    def _on_address_event(
        self, watched: _Addresses, index: int, kind: str, obj: Mapping[str, Any]
    ) -> None:
        with self._lock:
            # SYNCED too: the namespace's answer turns from unknown to known
            self._generation += 1
            if kind == "SYNCED":
                return
            key = (index, key_of(obj)[1])
            found = frozenset() if kind == "DELETED" else object_addresses(obj)
            if watched.by_object.get(key, frozenset()) == found:
                return
            if found:
                watched.by_object[key] = found
            else:
                watched.by_object.pop(key, None)
            watched.held = None

    def start(self, *, wait: float = 10.0) -> SidecarView:
        """Start watching and wait (bounded) for the first list."""
        self.informer.start()
        self.informer.wait_synced(wait)
        return self

    def stop(self) -> None:
        """Stop watching."""
        self.informer.stop()
        with self._lock:
            watches = list(self._addresses.values())
        for watched in watches:
            for cache in watched.caches:
                cache.stop()

    def follow(self, store: PolicyStore, *, wait: float = ADDRESS_SYNC_WAIT) -> SidecarView:
        """Watch the addresses of the namespaces each policy loaded into ``store`` names, those
        of the policy in force now waited for (bounded)."""

        def loaded(result: ReloadResult) -> None:
            current = store.current
            if result.ok and current is not None:
                self.watch_addresses(watched_namespaces(current.policy))

        store.subscribe(loaded)
        current = store.current
        if current is not None:
            self.watch_addresses(watched_namespaces(current.policy), wait=wait)
        return self

    def watch_addresses(self, namespaces: Iterable[str], *, wait: float = 0.0) -> None:
        """Start watching the addresses of ``namespaces`` (those not watched yet), and wait up
        to ``wait`` seconds for them to be listed."""
        started: list[_Addresses] = []
        with self._lock:
            for namespace in namespaces:
                if namespace in self._addresses:
                    continue
                watched = _Addresses(self._address_caches(namespace))
                for index, cache in enumerate(watched.caches):
                    cache.add_handler(partial(self._on_address_event, watched, index))
                self._addresses[namespace] = watched
                started.append(watched)
        for watched in started:
            for cache in watched.caches:
                cache.start()
        for watched in started:
            for cache in watched.caches:
                cache.wait_synced(wait)

    @property
    def synced(self) -> bool:
        """True once the cache holds a full list."""
        return self.informer.synced

    @property
    def generation(self) -> int:
        """A counter that changes whenever a Sidecar, or a watched Pod or Service, changes."""
        return self._generation

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        """Sidecar objects currently in ``namespace``."""
        with self._lock:
            return list(self._by_namespace.get(namespace, {}).values())

    def namespace_addresses(self, namespace: str) -> Collection[str] | None:
        """The addresses the Pods and Services of ``namespace`` hold; None until its watch has
        listed them (a namespace first asked for starts being watched)."""
        with self._lock:
            watched = self._addresses.get(namespace)
        if watched is None:
            self.watch_addresses((namespace,))
            return None
        if not watched.synced:
            return None
        with self._lock:
            if watched.held is None:
                watched.held = frozenset().union(*watched.by_object.values())
            return watched.held

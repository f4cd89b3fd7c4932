"""The webhook's view of the Sidecars in the cluster, from a watch-fed cache.

Istio gives each workload one Sidecar (oldest selector match, else the namespace default), so
whether a new Sidecar is ambiguous depends on the ones already there.  The webhook cannot list
Sidecars per request (latency, and it would call the API server from inside its own admission),
so this informer keeps them per namespace and answers ``webhook.core.checks.ClusterView``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes import client

from webhook.kube.client import SIDECAR
from webhook.kube.informing import Informer, key_of


class SidecarView:
    """``ClusterView`` over a cluster-wide Sidecar informer."""

    def __init__(self, api_client: client.ApiClient) -> None:
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

    def start(self, *, wait: float = 10.0) -> SidecarView:
        """Start watching and wait (bounded) for the first list."""
        self.informer.start()
        self.informer.wait_synced(wait)
        return self

    def stop(self) -> None:
        """Stop watching."""
        self.informer.stop()

    @property
    def synced(self) -> bool:
        """True once the cache holds a full list."""
        return self.informer.synced

    @property
    def generation(self) -> int:
        """A counter that changes whenever any Sidecar is added, changed or deleted."""
        return self._generation

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        """Sidecar objects currently in ``namespace``."""
        with self._lock:
            return list(self._by_namespace.get(namespace, {}).values())

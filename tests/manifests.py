"""Manifests several kinds of tests build alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PAUSE = "registry.k8s.io/pause:3.10"


def static_service_entry(name: str, namespace: str, address: str) -> dict[str, Any]:
    """A tenant ServiceEntry of an in-cluster name sending TCP to one address (STATIC)."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [f"{name}.{namespace}.svc.cluster.local"],
            "ports": [{"number": 443, "name": "tcp", "protocol": "TCP"}],
            "resolution": "STATIC",
            "endpoints": [{"address": address}],
            "exportTo": ["."],
        },
    }


def pod(
    namespace: str, name: str = "app", *, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A Pod as a user writes it: no proxy, no injection annotations."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        # The harness runs the API server without the ServiceAccount admission plugin (no
        # controller-manager mints tokens), so the default it would fill in is written here;
        # the injected token volume is invalid without it.
        "spec": {"serviceAccountName": "default", "containers": [{"name": "app", "image": PAUSE}]},
    }

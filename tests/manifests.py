"""Manifests several kinds of tests build alike."""

from __future__ import annotations

from typing import Any


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

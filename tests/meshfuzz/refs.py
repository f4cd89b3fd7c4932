"""Renaming tenant objects without breaking the references between them.

Generators give objects short names (``se``, ``leaf``, ``svc``) and the fuzzer makes them unique
(per draw, per attempt).  Objects that point at each other by name, a root VirtualService at its
delegate, a route at its parent ServiceEntry or backend Service, an EndpointSlice at its Service,
must be renamed together, or the pair silently stops being one and the path it would open is
never tried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Manifest = dict[str, Any]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def _pointed(name: Any, mapping: Mapping[str, str]) -> Any:
    return mapping.get(name, name) if isinstance(name, str) else name


def _refs_in_namespace(refs: Any, namespace: str) -> Iterable[dict[str, Any]]:
    for ref in refs or ():
        if isinstance(ref, dict) and ref.get("namespace", namespace) == namespace:
            yield ref


def retarget(obj: Manifest, mapping: Mapping[str, str]) -> None:
    """Point ``obj``'s references to objects of its own namespace at their new names."""
    namespace = obj["metadata"].get("namespace", "")
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "VirtualService":
        for rule in spec.get("http") or ():
            delegate = rule.get("delegate")
            if isinstance(delegate, dict) and delegate.get("namespace", namespace) == namespace:
                delegate["name"] = _pointed(delegate.get("name"), mapping)
    elif kind == "EndpointSlice":
        labels = obj["metadata"].get("labels") or {}
        if SERVICE_NAME_LABEL in labels:
            labels[SERVICE_NAME_LABEL] = _pointed(labels[SERVICE_NAME_LABEL], mapping)
    elif str(obj.get("apiVersion", "")).startswith("gateway.networking.k8s.io/"):
        for ref in _refs_in_namespace(spec.get("parentRefs"), namespace):
            ref["name"] = _pointed(ref.get("name"), mapping)
        for rule in spec.get("rules") or ():
            for ref in _refs_in_namespace(rule.get("backendRefs"), namespace):
                if ref.get("kind", "Service") in ("Service", "ServiceEntry"):
                    ref["name"] = _pointed(ref.get("name"), mapping)


def rename(
    objects: Iterable[Manifest], suffix: str, others: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Append ``suffix`` to every object's name and retarget references among them (then
    among ``others``, old name to new); returns the old-to-new map of these objects."""
    objects = list(objects)
    mine = {o["metadata"]["name"]: o["metadata"]["name"] + suffix for o in objects}
    mapping = {**(others or {}), **mine}
    for obj in objects:
        obj["metadata"]["name"] = mine[obj["metadata"]["name"]]
        retarget(obj, mapping)
    return mine

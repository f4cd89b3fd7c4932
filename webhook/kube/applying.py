"""Writing desired objects: server-side apply with egress-guard's field manager, and pruning.

Server-side apply with ``force`` makes egress-guard the owner of every field it sets, whoever
touched them before.  Apply never removes fields *other* managers added (a break-glass
``kubectl edit`` adding ``egressProxy`` to a managed Sidecar, say), so when the object read back
still differs from the desired one it is replaced whole with the desired body.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, cast

from kubernetes import client

from webhook.core.desired import MANAGED_BY_LABEL, object_key
from webhook.core.policy import MANAGED_LABEL
from webhook.kube.client import FIELD_MANAGER, Kind, is_status, kind_of

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
MANAGED_SELECTOR = f"{MANAGED_LABEL}=true"

Manifest = Mapping[str, Any]


class Writer(Protocol):
    """What the reconciler needs to change the cluster (a fake in unit tests)."""

    def apply(self, manifest: Manifest) -> Manifest:
        """Create or update ``manifest``; return the object as stored."""
        ...

    def replace(self, manifest: Manifest, resource_version: str) -> Manifest:
        """Overwrite the stored object with exactly ``manifest``."""
        ...

    def delete(self, manifest: Manifest) -> None:
        """Delete the object ``manifest`` names; absent is fine."""
        ...


def differs(desired: Manifest, actual: Manifest | None) -> bool:
    """Whether ``actual`` is missing or disagrees with ``desired`` on labels, annotations, spec."""
    if actual is None:
        return True
    want_meta = desired.get("metadata") or {}
    have_meta = actual.get("metadata") or {}
    for field in ("labels", "annotations"):
        have = have_meta.get(field) or {}
        if any(have.get(k) != v for k, v in (want_meta.get(field) or {}).items()):
            return True
    # a spec equal to ours, nothing more: fields added by others count as a difference
    return bool(desired.get("spec") != actual.get("spec"))


def is_ours(obj: Manifest) -> bool:
    """Whether an object carries egress-guard's managed labels (both, so a stray one is kept)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_LABEL) == "true" and labels.get(MANAGED_BY_LABEL))


def plan_changes(
    desired: Iterable[Manifest], actual: Iterable[Manifest]
) -> tuple[list[Manifest], list[Manifest]]:
    """``(to_apply, to_delete)``: desired objects that differ, managed objects not desired."""
    have = {object_key(obj): obj for obj in actual if is_ours(obj)}
    want = {object_key(obj): obj for obj in desired}
    to_apply = [obj for key, obj in want.items() if differs(obj, have.get(key))]
    to_delete = [obj for key, obj in sorted(have.items()) if key not in want]
    return to_apply, to_delete


class ApiWriter:
    """``Writer`` over the Kubernetes API (custom-objects endpoints serve every group kind)."""

    def __init__(self, api_client: client.ApiClient, *, field_manager: str = FIELD_MANAGER):
        self.api = client.CustomObjectsApi(api_client)
        self.field_manager = field_manager

    def _coords(self, manifest: Manifest) -> tuple[Kind, str, str]:
        meta = manifest["metadata"]
        return kind_of(manifest), str(meta["namespace"]), str(meta["name"])

    def apply(self, manifest: Manifest) -> Manifest:
        """Server-side apply, taking ownership of conflicting fields."""
        kind, namespace, name = self._coords(manifest)
        result = self.api.patch_namespaced_custom_object(
            kind.group,
            kind.version,
            namespace,
            kind.plural,
            name,
            body=dict(manifest),
            field_manager=self.field_manager,
            force=True,
            _content_type=APPLY_CONTENT_TYPE,
        )
        if result is None:
            # the generated client maps only 200 to a body: an apply that creates the object
            # answers 201, which it returns as None, so read the stored object back
            result = self.api.get_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural, name
            )
        return cast(Manifest, result)

    def replace(self, manifest: Manifest, resource_version: str) -> Manifest:
        """PUT the desired body, dropping fields other managers added."""
        kind, namespace, name = self._coords(manifest)
        body = copy.deepcopy(dict(manifest))
        body["metadata"]["resourceVersion"] = resource_version
        result = cast(
            Manifest,
            self.api.replace_namespaced_custom_object(
                kind.group,
                kind.version,
                namespace,
                kind.plural,
                name,
                body,
                field_manager=self.field_manager,
            ),
        )
        return result

    def delete(self, manifest: Manifest) -> None:
        """Delete; an object already gone is not an error."""
        kind, namespace, name = self._coords(manifest)
        try:
            self.api.delete_namespaced_custom_object(
                kind.group, kind.version, namespace, kind.plural, name
            )
        except client.ApiException as exc:
            if not is_status(exc, 404):
                raise


def converge(writer: Writer, manifest: Manifest) -> Manifest:
    """Apply ``manifest``; replace it whole if foreign fields survive the apply."""
    stored = writer.apply(manifest)
    if differs(manifest, stored):
        version = str((stored.get("metadata") or {}).get("resourceVersion") or "")
        stored = writer.replace(manifest, version)
    return stored

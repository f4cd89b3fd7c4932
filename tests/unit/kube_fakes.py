"""In-memory collaborators for the Reconciler: caches, an elector, a writer, a policy source."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from webhook.kube.client import MANAGED_KINDS, Kind, kind_of
from webhook.policy_runtime import PolicySink, StaticPolicySource

Handler = Callable[[str, Mapping[str, Any]], None]


class MemoryInformer:
    """A cache held in memory: ``put``/``remove`` fire the handlers as a watch event would."""

    def __init__(self, items: list[Mapping[str, Any]] | None = None, *, synced: bool = True):
        self._items = list(items or ())
        self.synced = synced
        self.failed = False
        self.started = False
        self.handlers: list[Handler] = []

    def items(self) -> list[Mapping[str, Any]]:
        return list(self._items)

    def add_handler(self, handler: Handler) -> None:
        self.handlers.append(handler)

    def start(self) -> MemoryInformer:
        self.started = True
        return self

    def stop(self) -> None:
        self.started = False

    def put(self, obj: Mapping[str, Any]) -> None:
        self._items.append(obj)
        for handler in self.handlers:
            handler("ADDED", obj)


class FakeElector:
    """Leads for the first ``checks`` leadership checks, then loses the lease."""

    def __init__(self, checks: int = 10_000) -> None:
        self.left = checks
        self.failed = False
        self.started: list[Callable[[], None]] = []
        self.stopped: list[Callable[[], None]] = []

    def is_leader(self) -> bool:
        self.left -= 1
        return self.left >= 0

    def subscribe(
        self,
        *,
        on_started: Callable[[], None] | None = None,
        on_stopped: Callable[[], None] | None = None,
    ) -> None:
        if on_started is not None:
            self.started.append(on_started)
        if on_stopped is not None:
            self.stopped.append(on_stopped)

    def start(self) -> FakeElector:
        return self

    def stop(self, *, release: bool = True) -> None:
        del release


class FakeWriter:
    """Stores what it is given; refuses the ``(namespace, name)`` pairs in ``broken``."""

    def __init__(self, broken: frozenset[tuple[str, str]] = frozenset()) -> None:
        self.broken = broken
        self.applied: list[tuple[str, str, str]] = []
        self.deleted: list[tuple[str, str, str]] = []

    @staticmethod
    def _key(manifest: Mapping[str, Any]) -> tuple[str, str, str]:
        meta = manifest["metadata"]
        return (manifest["kind"], meta["namespace"], meta["name"])

    def apply(self, manifest: Mapping[str, Any]) -> Mapping[str, Any]:
        kind, namespace, name = self._key(manifest)
        if (namespace, name) in self.broken:
            raise RuntimeError(f"the API refused {namespace}/{name}")
        self.applied.append((kind, namespace, name))
        return manifest

    def replace(self, manifest: Mapping[str, Any], resource_version: str) -> Mapping[str, Any]:
        raise AssertionError("an apply that stores the manifest needs no replace")

    def delete(self, manifest: Mapping[str, Any]) -> None:
        self.deleted.append(self._key(manifest))


class FakePolicySource(StaticPolicySource):
    """A fixed policy text with the health attributes of a watched source."""

    def __init__(self, text: str) -> None:
        super().__init__(text, origin="configmap:egress-guard/egress-guard-policy")
        self.synced = False
        self.failed = False

    def start(self, sink: PolicySink) -> None:
        super().start(sink)
        self.synced = True


def namespace(name: str, *, terminating: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def managed_informers(
    objects: list[Mapping[str, Any]] | None = None, *, synced: bool = True
) -> dict[Kind, MemoryInformer]:
    """One in-memory cache per managed kind, holding the given objects of that kind."""
    caches = {kind: MemoryInformer(synced=synced) for kind in MANAGED_KINDS}
    for obj in objects or ():
        caches[kind_of(obj)].put(obj)
    return caches

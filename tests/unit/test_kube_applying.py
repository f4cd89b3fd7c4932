"""ApiWriter over a fake CustomObjectsApi: what the generated client really returns."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.kube.applying import ApiWriter, converge

pytestmark = pytest.mark.unit

SIDECAR: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "Sidecar",
    "metadata": {
        "name": "egress-guard-default",
        "namespace": "team-a",
        "labels": {"egress-guard.io/managed": "true"},
    },
    "spec": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}},
}


class FakeCustomObjects:
    """Answers server-side apply like the client does for a create: 201, returned as None."""

    def __init__(self, *, created: bool) -> None:
        self.created = created
        self.stored: dict[str, Any] = {
            **SIDECAR,
            "metadata": {**SIDECAR["metadata"], "resourceVersion": "7"},
        }
        self.calls: list[str] = []

    def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("patch")
        return None if self.created else self.stored

    def get_namespaced_custom_object(self, *args: Any) -> Any:
        self.calls.append("get")
        return self.stored

    def replace_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append("replace")
        return self.stored


def writer_with(api: FakeCustomObjects) -> ApiWriter:
    writer = ApiWriter.__new__(ApiWriter)
    writer.api = api  # type: ignore[assignment]
    writer.field_manager = "egress-guard"
    return writer


def test_apply_that_creates_reads_the_stored_object_back() -> None:
    api = FakeCustomObjects(created=True)
    stored = converge(writer_with(api), SIDECAR)
    assert stored["metadata"]["resourceVersion"] == "7"
    assert api.calls == ["patch", "get"]


def test_apply_that_updates_uses_the_returned_object() -> None:
    api = FakeCustomObjects(created=False)
    converge(writer_with(api), SIDECAR)
    assert api.calls == ["patch"]

"""From desired state to writes: what the controller applies, replaces and prunes."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client

from webhook.core.desired import desired_state
from webhook.core.policy_parsing import parse_policy
from webhook.kube.applying import converge, differs, plan_changes
from webhook.kube.policy_watch import ConfigMapPolicySource
from webhook.kube.reconciler import APPLIED_BY_ANNOTATION, namespace_infos, with_identity
from webhook.policy_runtime import ReloadResult

pytestmark = pytest.mark.unit

POLICY = parse_policy(
    """
egress: {namespace: external}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {from: {namespace: team-a}, to: [api]}
"""
)
DESIRED = desired_state(POLICY, ["team-a", "external"])


def stored(manifest: dict[str, Any], **extra_spec: Any) -> dict[str, Any]:
    """The object as the API server returns it: server metadata, maybe foreign fields."""
    obj = copy.deepcopy(manifest)
    obj["metadata"].update(uid="u1", resourceVersion="7", creationTimestamp="t")
    obj["metadata"]["labels"]["someone-else"] = "x"
    obj["spec"].update(extra_spec)
    return obj


def test_nothing_to_do_when_the_cluster_matches() -> None:
    assert plan_changes(DESIRED, [stored(m) for m in DESIRED]) == ([], [])


def test_missing_objects_are_applied() -> None:
    to_apply, to_delete = plan_changes(DESIRED, [stored(m) for m in DESIRED[1:]])
    assert to_apply == [DESIRED[0]] and to_delete == []


def test_foreign_spec_fields_count_as_drift() -> None:
    sidecar = next(m for m in DESIRED if m["kind"] == "Sidecar")
    tampered = stored(sidecar, egressProxy={"host": "evil.example.net"})
    assert differs(sidecar, tampered)


def test_changed_revision_annotation_counts_as_drift() -> None:
    old = stored(DESIRED[0])
    old["metadata"]["annotations"]["egress-guard.io/policy-revision"] = "old"
    assert differs(DESIRED[0], old)


def test_undesired_managed_objects_are_pruned_but_unlabelled_ones_never() -> None:
    orphan = stored(DESIRED[0])
    orphan["metadata"]["name"] = "egress-guard-gone"
    foreign = copy.deepcopy(orphan)
    foreign["metadata"]["name"] = "tenant-owned"
    foreign["metadata"]["labels"] = {}
    _, to_delete = plan_changes(DESIRED, [stored(m) for m in DESIRED] + [orphan, foreign])
    assert [o["metadata"]["name"] for o in to_delete] == ["egress-guard-gone"]


def test_a_lone_managed_label_is_not_enough_to_be_pruned() -> None:
    # a tenant can set egress-guard.io/managed on their own object; it must not be deleted
    squatter = stored(DESIRED[0])
    squatter["metadata"]["name"] = "tenant-object"
    del squatter["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    assert plan_changes(DESIRED, [stored(m) for m in DESIRED] + [squatter])[1] == []


class FakeWriter:
    """Records writes; apply keeps whatever foreign fields the stored object had."""

    def __init__(self, existing: dict[str, Any] | None = None) -> None:
        self.existing = existing
        self.calls: list[str] = []

    def apply(self, manifest: Any) -> Any:
        self.calls.append("apply")
        extra = (self.existing or {}).get("spec", {})
        return stored(manifest, **{k: v for k, v in extra.items() if k not in manifest["spec"]})

    def replace(self, manifest: Any, resource_version: str) -> Any:
        self.calls.append(f"replace@{resource_version}")
        return stored(manifest)

    def delete(self, manifest: Any) -> None:
        self.calls.append("delete")


def test_converge_applies_once_when_apply_is_enough() -> None:
    writer = FakeWriter()
    converge(writer, DESIRED[0])
    assert writer.calls == ["apply"]


def test_converge_replaces_whole_when_foreign_fields_survive_apply() -> None:
    sidecar = next(m for m in DESIRED if m["kind"] == "Sidecar")
    writer = FakeWriter(stored(sidecar, egressProxy={"host": "evil.example.net"}))
    converge(writer, sidecar)
    assert writer.calls == ["apply", "replace@7"]


def test_identity_annotation_does_not_touch_the_desired_object() -> None:
    annotated = with_identity(DESIRED[0], "replica-a")
    assert annotated["metadata"]["annotations"][APPLIED_BY_ANNOTATION] == "replica-a"
    assert APPLIED_BY_ANNOTATION not in DESIRED[0]["metadata"]["annotations"]


def test_terminating_namespaces_are_marked() -> None:
    infos = namespace_infos(
        [
            {"metadata": {"name": "a"}, "status": {"phase": "Active"}},
            {"metadata": {"name": "b", "deletionTimestamp": "t"}, "status": {"phase": "Active"}},
            {"metadata": {"name": "c"}, "status": {"phase": "Terminating"}},
        ]
    )
    assert [(i.name, i.terminating) for i in infos] == [("a", False), ("b", True), ("c", True)]


class FakeSink:
    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.updates: list[str] = []
        self.failures: list[str] = []

    def update(self, text: str | bytes, *, origin: str) -> ReloadResult:
        self.updates.append(str(text))
        return ReloadResult(self.ok, origin, "", problems=() if self.ok else ("bad",))

    def fail(self, origin: str, problem: str) -> ReloadResult:
        self.failures.append(problem)
        return ReloadResult(False, origin, "", problems=(problem,))


class RecordingWatch:
    """A ConfigMap source that keeps its rejection reports instead of posting Events."""

    def __init__(self, sink: FakeSink) -> None:
        self.sink = sink
        self.events: list[str] = []
        self.source = ConfigMapPolicySource(
            "egress-guard",
            "policy",
            connect=client.ApiClient,
            on_rejected=lambda configmap, problem: self.events.append(problem),
        )

    def deliver(self, configmap: dict[str, Any]) -> None:
        self.source.deliver(configmap, self.sink)


def _watch(sink: FakeSink) -> RecordingWatch:
    return RecordingWatch(sink)


def configmap(version: str, data: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "policy", "resourceVersion": version}, "data": data}


def test_policy_watch_delivers_each_version_once() -> None:
    sink = FakeSink()
    watch = _watch(sink)
    watch.deliver(configmap("1", {"policy.yaml": "a"}))
    watch.deliver(configmap("1", {"policy.yaml": "a"}))
    watch.deliver(configmap("2", {"policy.yaml": "b"}))
    assert sink.updates == ["a", "b"]
    assert watch.events == []


def test_rejected_policy_is_reported_as_an_event() -> None:
    watch = _watch(FakeSink(ok=False))
    watch.deliver(configmap("3", {"policy.yaml": "x"}))
    assert watch.events == ["bad"]


def test_configmap_without_the_policy_key_is_a_failure_and_an_event() -> None:
    sink = FakeSink()
    watch = _watch(sink)
    watch.deliver(configmap("4", {"other": "x"}))
    assert sink.updates == [] and len(sink.failures) == 1
    assert watch.events == sink.failures

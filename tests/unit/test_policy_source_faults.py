"""A policy source that fails (API server down, ConfigMap deleted, key removed) never costs the
last good policy, and says so: ``source_up``, the ``egress_guard_policy_source_up`` gauge, a log
line, an Event."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client
from prometheus_client import generate_latest

from webhook.admission.metrics import Metrics
from webhook.admission.policy_store import PolicyStore
from webhook.kube.informing import Informer
from webhook.kube.policy_watch import DELETED_REASON, PolicyWatch

pytestmark = pytest.mark.unit

GOOD = """
egress: {namespace: external}
externalServices:
  - name: httpbin
    hosts: [httpbin.org]
    ports: [{number: 443, protocol: TLS}]
allow:
  - from: {namespace: team-a}
    to: [httpbin]
"""


def source_up_gauge(metrics: Metrics) -> float:
    text = generate_latest(metrics.registry).decode()
    line = next(x for x in text.splitlines() if x.startswith("egress_guard_policy_source_up "))
    return float(line.split()[1])


def test_source_up_follows_deliveries_and_failures_and_the_policy_stays() -> None:
    store = PolicyStore()
    metrics = Metrics()
    metrics.watch(store)
    assert not store.source_up and source_up_gauge(metrics) == 0
    store.update(GOOD, origin="t")
    revision = store.current.revision if store.current else ""
    assert store.source_up and source_up_gauge(metrics) == 1
    store.fail("t", "the API server is unreachable")
    assert not store.source_up and source_up_gauge(metrics) == 0
    assert store.current is not None and store.current.revision == revision
    store.update(GOOD, origin="t")
    assert store.source_up and source_up_gauge(metrics) == 1


def test_an_invalid_policy_is_a_source_that_is_up(caplog: pytest.LogCaptureFixture) -> None:
    store = PolicyStore()
    store.update("egress: {namespace: [", origin="t")
    assert store.source_up and store.current is None


def test_a_source_failure_is_logged_as_such(caplog: pytest.LogCaptureFixture) -> None:
    store = PolicyStore()
    with caplog.at_level(logging.INFO, logger="webhook.admission.policy_store"):
        store.fail("configmap:a/b", "down")
        store.update(GOOD, origin="configmap:a/b")
        store.fail("configmap:a/b", "down again")
        store.update(GOOD, origin="configmap:a/b")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "policy source unavailable; no good policy loaded, denying every governed request",
        "policy loaded",
        "policy source unavailable; keeping the last good policy",
        "policy source available again",
    ]


@dataclass
class Result:
    ok: bool
    problems: tuple[str, ...] = ()


class FakeSink:
    def __init__(self) -> None:
        self.updates: list[str] = []
        self.failures: list[str] = []

    def update(self, text: str | bytes, *, origin: str) -> Result:
        self.updates.append(str(text))
        return Result(True)

    def fail(self, origin: str, problem: str) -> Result:
        self.failures.append(problem)
        return Result(False, (problem,))


class RecordingWatch(PolicyWatch):
    events: list[tuple[str, str]]

    def _event(self, configmap: Any, problem: str, *, reason: str = "PolicyRejected") -> None:
        self.events.append((reason, problem))


class Listing:
    """A list call's response (``_preload_content=False``) with the given ConfigMaps."""

    def __init__(self, *items: dict[str, Any]) -> None:
        self.data = json.dumps({"metadata": {"resourceVersion": "9"}, "items": list(items)})


def configmap(version: str, text: str = GOOD) -> dict[str, Any]:
    meta = {"name": "policy", "namespace": "egress-guard", "resourceVersion": version}
    return {"metadata": meta, "data": {"policy.yaml": text}}


def watch_listing(sink: FakeSink, *items: dict[str, Any]) -> RecordingWatch:
    watch = RecordingWatch(client.ApiClient(), "egress-guard", "policy", sink=sink)
    watch.events = []
    listing = Listing(*items)
    watch.informer._list = lambda *a, **kw: listing  # the API's list call, answered locally
    return watch


def test_an_outage_is_reported_once_and_its_end_redelivers_the_policy() -> None:
    sink = FakeSink()
    watch = watch_listing(sink, configmap("5"))
    watch.informer._relist()
    assert sink.updates == [GOOD] and sink.failures == []
    for _ in range(3):  # the informer retries with backoff, calling back each time
        watch._on_error(ConnectionRefusedError(111, "Connection refused"))
    assert len(sink.failures) == 1 and "cannot read the ConfigMap" in sink.failures[0]
    watch.informer._relist()  # back, same version: delivered again so the sink knows
    assert sink.updates == [GOOD, GOOD]
    watch.informer._relist()  # an ordinary resync: nothing new
    assert sink.updates == [GOOD, GOOD] and len(sink.failures) == 1


def test_an_empty_list_is_not_found_but_an_outage_never_looks_empty() -> None:
    sink = FakeSink()
    watch = watch_listing(sink, configmap("5"))
    watch.informer._relist()
    watch._on_error(ConnectionRefusedError(111, "Connection refused"))
    assert sink.updates == [GOOD] and not any("not found" in f for f in sink.failures)


def test_a_deleted_configmap_is_a_failure_and_an_event_and_keeps_nothing_else() -> None:
    sink = FakeSink()
    watch = watch_listing(sink, configmap("5"))
    watch.informer._relist()
    watch.informer._list = lambda *a, **kw: Listing()
    watch.informer._relist()  # the relist after a missed DELETED event
    assert sink.failures[0] == "ConfigMap egress-guard/policy was deleted"
    assert watch.events[0] == (DELETED_REASON, "ConfigMap egress-guard/policy was deleted")
    assert sink.updates == [GOOD]


def test_a_removed_key_is_a_failure_and_an_event() -> None:
    sink = FakeSink()
    watch = watch_listing(sink, configmap("5"))
    watch.informer._relist()
    watch.deliver({"metadata": {"name": "policy", "resourceVersion": "6"}, "data": {"x": "y"}})
    assert sink.failures == ["the ConfigMap has no key 'policy.yaml'"]
    assert watch.events == [("PolicyRejected", "the ConfigMap has no key 'policy.yaml'")]


def test_informer_reports_every_failed_list_to_on_error() -> None:
    errors: list[Exception] = []
    reported = threading.Event()

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionRefusedError(111, "Connection refused")

    def on_error(exc: Exception) -> None:
        errors.append(exc)
        if len(errors) >= 2:
            reported.set()

    informer = Informer(unreachable, name="t", on_error=on_error).start()
    try:
        assert reported.wait(5)
    finally:
        informer.stop()
    assert all(isinstance(e, ConnectionRefusedError) for e in errors)
    assert not informer.synced

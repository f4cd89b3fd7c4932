"""A policy source that fails (API server down, ConfigMap deleted, key removed) never costs the
last good policy, and says so: ``source_up``, the ``egress_guard_policy_source_up`` gauge, a log
line, an Event."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

import pytest
from kubernetes import client
from prometheus_client import generate_latest

from tests.unit.kube_fakes import FakeElector, FakeWriter, MemoryInformer, managed_informers
from webhook.admission.metrics import Metrics
from webhook.kube.informing import Informer
from webhook.kube.policy_watch import DELETED_REASON, ConfigMapPolicySource
from webhook.kube.reconciler import Reconciler
from webhook.policy_runtime import PolicyStore, ReloadResult

NO_KEY = (
    "the ConfigMap has no policy key "
    "(one of policy.json, policy.yaml, policy.json.gz, policy.yaml.gz)"
)

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


def test_an_invalid_policy_is_a_source_that_is_up() -> None:
    store = PolicyStore()
    store.update("egress: {namespace: [", origin="t")
    assert store.source_up and store.current is None


def test_a_source_failure_is_logged_as_such(caplog: pytest.LogCaptureFixture) -> None:
    store = PolicyStore()
    with caplog.at_level(logging.INFO, logger="webhook.policy_runtime.store"):
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


class FakeSink:
    def __init__(self) -> None:
        self.updates: list[str] = []
        self.failures: list[str] = []

    def update(self, text: str | bytes, *, origin: str) -> ReloadResult:
        self.updates.append(str(text))
        return ReloadResult(True, origin, "r")

    def fail(self, origin: str, problem: str) -> ReloadResult:
        self.failures.append(problem)
        return ReloadResult(False, origin, "", problems=(problem,))


class Listing:
    """A list call's response (``_preload_content=False``) with the given ConfigMaps."""

    def __init__(self, *items: Mapping[str, Any]) -> None:
        self.data = json.dumps({"metadata": {"resourceVersion": "9"}, "items": list(items)})


class FakeConfigMaps:
    """The API's list call of ConfigMaps, answered locally: the stored items, or refused."""

    def __init__(self, *items: Mapping[str, Any]) -> None:
        self.items = list(items)
        self.down = False
        self.selectors: list[Any] = []

    def __call__(self, namespace: str, **kwargs: Any) -> Listing:
        self.selectors.append((namespace, kwargs.get("field_selector")))
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        return Listing(*self.items)


class Watched:
    """A ConfigMap source fed by ``FakeConfigMaps``, its informer driven by hand, Events kept."""

    def __init__(self, sink: FakeSink, *items: Mapping[str, Any]) -> None:
        self.api = FakeConfigMaps(*items)
        self.events: list[tuple[str, str]] = []
        self.source = ConfigMapPolicySource(
            "egress-guard",
            "policy",
            connect=client.ApiClient,
            lister=self.api,
            on_event=lambda configmap, problem, reason: self.events.append((reason, problem)),
        )
        informer = self.source.attach(sink)
        assert informer is not None
        self.informer = informer


def configmap(version: str, text: str = GOOD) -> dict[str, Any]:
    meta = {"name": "policy", "namespace": "egress-guard", "resourceVersion": version}
    return {"metadata": meta, "data": {"policy.yaml": text}}


def test_the_informer_lists_only_the_policy_configmap() -> None:
    watched = Watched(FakeSink(), configmap("5"))
    assert watched.informer.relist()
    assert watched.api.selectors == [("egress-guard", "metadata.name=policy")]
    assert watched.source.synced


def test_an_outage_is_reported_once_and_its_end_redelivers_the_policy() -> None:
    sink = FakeSink()
    watched = Watched(sink, configmap("5"))
    assert watched.informer.relist()
    assert sink.updates == [GOOD] and sink.failures == []
    watched.api.down = True
    for _ in range(3):  # the informer retries with backoff, reporting each failure
        assert not watched.informer.relist()
    assert len(sink.failures) == 1 and "cannot read the ConfigMap" in sink.failures[0]
    assert watched.source.unreachable
    watched.api.down = False
    assert watched.informer.relist()  # back, same version: delivered again so the sink knows
    assert sink.updates == [GOOD, GOOD] and not watched.source.unreachable
    assert watched.informer.relist()  # an ordinary resync: nothing new
    assert sink.updates == [GOOD, GOOD] and len(sink.failures) == 1


def test_an_empty_list_is_not_found_but_an_outage_never_looks_empty() -> None:
    sink = FakeSink()
    watched = Watched(sink, configmap("5"))
    assert watched.informer.relist()
    watched.api.down = True
    assert not watched.informer.relist()
    assert sink.updates == [GOOD] and not any("not found" in f for f in sink.failures)
    assert watched.informer.items() == [configmap("5")]


def test_a_deleted_configmap_is_a_failure_and_an_event_and_keeps_nothing_else() -> None:
    sink = FakeSink()
    watched = Watched(sink, configmap("5"))
    assert watched.informer.relist()
    watched.api.items = []
    assert watched.informer.relist()  # the relist after a missed DELETED event
    assert sink.failures[0] == "ConfigMap egress-guard/policy was deleted"
    assert watched.events[0] == (DELETED_REASON, "ConfigMap egress-guard/policy was deleted")
    assert sink.updates == [GOOD]


def test_a_removed_key_is_a_failure_and_an_event() -> None:
    sink = FakeSink()
    watched = Watched(sink, configmap("5"))
    assert watched.informer.relist()
    removed = {"metadata": {"name": "policy", "resourceVersion": "6"}, "data": {"x": "y"}}
    watched.source.deliver(removed, sink)
    assert sink.failures == [NO_KEY]
    assert watched.events == [("PolicyRejected", NO_KEY)]


def test_a_rejection_hook_takes_precedence_over_the_event_hook_for_rejections() -> None:
    rejected: list[str] = []
    events: list[tuple[str, str]] = []
    source = ConfigMapPolicySource(
        "egress-guard",
        "policy",
        connect=client.ApiClient,
        on_rejected=lambda configmap, problem: rejected.append(problem),
        on_event=lambda configmap, problem, reason: events.append((reason, problem)),
    )
    source.deliver({"metadata": {"resourceVersion": "1"}, "data": {}}, FakeSink())
    assert rejected == [NO_KEY] and events == []


def test_the_controller_gauge_follows_its_configmap_source_through_an_outage() -> None:
    store = PolicyStore()
    api = FakeConfigMaps(configmap("5"))
    source = ConfigMapPolicySource(
        "egress-guard",
        "policy",
        connect=client.ApiClient,
        lister=api,
        on_event=lambda configmap, problem, reason: None,
    )
    reconciler = Reconciler(
        store=store,
        policy_source=source,
        namespaces=MemoryInformer(),
        managed=managed_informers(),
        elector=FakeElector(),
        writer=FakeWriter(),
        identity="test",
    )

    def gauge() -> float | None:
        return reconciler.metrics.registry.get_sample_value(
            "egress_guard_controller_policy_source_up"
        )

    informer = source.attach(store)
    assert informer is not None and informer.relist()
    assert gauge() == 1
    revision = store.current.revision if store.current else ""
    api.down = True
    assert not informer.relist()
    assert gauge() == 0 and store.current is not None and store.current.revision == revision
    api.down = False
    assert informer.relist()
    assert gauge() == 1


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


def test_a_manual_relist_reports_its_failure_like_the_loop() -> None:
    errors: list[Exception] = []

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionRefusedError(111, "Connection refused")

    informer = Informer(unreachable, name="t", on_error=errors.append)
    assert not informer.relist()
    assert [type(e) for e in errors] == [ConnectionRefusedError] and not informer.synced

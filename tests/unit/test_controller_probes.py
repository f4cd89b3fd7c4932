"""The Reconciler's /healthz, /readyz and /metrics: heartbeat, thread deaths, cache sync.

The WSGI app is called directly (no socket); ``tests/integration/test_controller_probes.py``
serves it over loopback.  Reconcilers are built from in-memory collaborators whose health the
test sets, or wired to a client that is never used (nothing is started).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner
from kubernetes import client
from prometheus_client import CollectorRegistry, Counter

from tests.unit.kube_fakes import (
    FakeElector,
    FakePolicySource,
    FakeWriter,
    MemoryInformer,
    managed_informers,
)
from webhook.cli import main
from webhook.kube.client import Kind
from webhook.kube.informing import Informer
from webhook.kube.leader import LeaseElector
from webhook.kube.policy_watch import ConfigMapPolicySource
from webhook.kube.probing import Heartbeat, ProbeResult, liveness, probe_app, readiness
from webhook.kube.reconciler import MAX_BACKOFF, Reconciler
from webhook.kube.reconciler_wiring import new_reconciler
from webhook.policy_runtime import PolicyStore, embedded_policy_text
from webhook.settings import split_host_port

pytestmark = pytest.mark.unit


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- pure health logic ---------------------------------------------------------------------


def test_heartbeat_ages_from_creation_until_a_beat() -> None:
    clock = FakeClock()
    heartbeat = Heartbeat(clock)
    clock.now += 42
    assert heartbeat.age() == 42
    heartbeat.beat()
    assert heartbeat.age() == 0
    clock.now += 1.5
    assert heartbeat.age() == 1.5


@pytest.mark.parametrize(
    ("age", "dead", "ok", "status"),
    [
        (0.0, [], True, "ok"),
        (180.0, [], True, "ok"),  # the boundary itself is still alive
        (180.001, [], False, "reconcile loop stalled"),
        (0.0, ["namespaces"], False, "thread died"),
        (500.0, ["leader-election"], False, "thread died"),
    ],
)
def test_liveness_needs_a_recent_heartbeat_and_no_dead_thread(
    age: float, dead: list[str], ok: bool, status: str
) -> None:
    result = liveness(heartbeat_age=age, stale_after=180.0, dead=dead)
    assert result.ok is ok
    assert result.detail["status"] == status
    if dead:
        assert result.detail["dead"] == dead


def test_readiness_lists_the_caches_still_waiting_sorted() -> None:
    result = readiness(unsynced=["sidecars", "namespaces"], leader=True)
    assert not result.ok
    assert result.detail == {"status": "caches not synced", "unsynced": ["namespaces", "sidecars"]}


def test_readiness_once_synced_reports_the_facts_given() -> None:
    result = readiness(unsynced=[], leader=False, policy_revision=None)
    assert result.ok
    assert result.detail == {"status": "ready", "leader": False, "policy_revision": None}


# --- the WSGI app --------------------------------------------------------------------------


class FakeProbes:
    """Answers set by the test."""

    def __init__(self, alive: bool, ready: bool) -> None:
        self.alive, self.ready = alive, ready

    def liveness(self) -> ProbeResult:
        return ProbeResult(self.alive, {"status": "alive" if self.alive else "stalled"})

    def readiness(self) -> ProbeResult:
        return ProbeResult(self.ready, {"status": "ready" if self.ready else "waiting"})


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry with one counted sample the exposition must show."""
    registry = CollectorRegistry()
    syncs = Counter(
        "egress_guard_controller_syncs", "Reconcile passes", ["result"], registry=registry
    )
    syncs.labels("ok").inc(3)
    return registry


def call(app: Any, path: str, method: str = "GET") -> tuple[str, dict[str, str], bytes]:
    """One request through a WSGI app: status line, headers, body."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen["status"], seen["headers"] = status, dict(headers)
        return lambda data: None

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "9090",
        "wsgi.url_scheme": "http",
    }
    chunks: Iterator[bytes] = iter(app(environ, start_response))
    body = b"".join(chunks)
    return seen["status"], seen["headers"], body


@pytest.mark.parametrize(
    ("path", "alive", "ready", "status"),
    [
        ("/healthz", True, False, "200 OK"),
        ("/healthz", False, True, "503 Service Unavailable"),
        ("/readyz", False, True, "200 OK"),
        ("/readyz", True, False, "503 Service Unavailable"),
    ],
)
def test_probe_endpoints_answer_their_own_probe_as_json(
    registry: CollectorRegistry, path: str, alive: bool, ready: bool, status: str
) -> None:
    app = probe_app(FakeProbes(alive, ready), registry)
    got, headers, body = call(app, path)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    expected = FakeProbes(alive, ready)
    probe = expected.liveness if path == "/healthz" else expected.readiness
    assert json.loads(body) == dict(probe().detail)


def test_metrics_serves_the_controllers_registry(registry: CollectorRegistry) -> None:
    status, headers, body = call(probe_app(FakeProbes(True, True), registry), "/metrics")
    assert status.startswith("200")
    assert headers["Content-Type"].startswith("text/plain")
    assert b'egress_guard_controller_syncs_total{result="ok"} 3.0' in body


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [
        ("/", "GET", "404 Not Found"),
        ("/healthz/", "GET", "404 Not Found"),
        ("/validate", "GET", "404 Not Found"),
        ("/healthz", "POST", "405 Method Not Allowed"),
        ("/metrics", "DELETE", "405 Method Not Allowed"),
    ],
)
def test_anything_else_is_refused(
    registry: CollectorRegistry, path: str, method: str, status: str
) -> None:
    assert call(probe_app(FakeProbes(True, True), registry), path, method)[0] == status


# --- HOST:PORT -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:9090", ("0.0.0.0", 9090)),
        ("127.0.0.1:0", ("127.0.0.1", 0)),
        ("[::]:9090", ("::", 9090)),
        ("localhost:65535", ("localhost", 65535)),
    ],
)
def test_host_port_parses_v4_v6_and_names(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text, option="--metrics-bind") == expected


@pytest.mark.parametrize("text", ["9090", "0.0.0.0", "0.0.0.0:", "0.0.0.0:http", "[::]:65536"])
def test_host_port_refuses_what_is_not_one(text: str) -> None:
    with pytest.raises(ValueError, match="--metrics-bind expects HOST:PORT"):
        split_host_port(text, option="--metrics-bind")


@pytest.mark.parametrize("value", ["9090", "0.0.0.0:99999", ":"])
def test_controller_refuses_a_bad_metrics_bind_before_touching_the_cluster(value: str) -> None:
    result = CliRunner().invoke(
        main, ["controller", "--kubeconfig=/nonexistent", f"--metrics-bind={value}"]
    )
    assert result.exit_code == 2
    assert "--metrics-bind expects HOST:PORT" in result.output


# --- the Reconciler's probes ---------------------------------------------------------------


def wired(**options: Any) -> Reconciler:
    """A Reconciler wired to a client that is never called (nothing is started)."""
    api_client = client.ApiClient(client.Configuration())
    return new_reconciler(
        api_client,
        policy_source=ConfigMapPolicySource(
            "egress-guard", "egress-guard-policy", connect=lambda: api_client
        ),
        lease_namespace="egress-guard",
        identity="test",
        **options,
    )


def test_a_fresh_reconciler_is_alive_but_not_ready() -> None:
    reconciler = wired()
    assert reconciler.liveness().ok
    ready = reconciler.readiness()
    assert not ready.ok
    # the policy ConfigMap, the namespaces and every managed kind must be listed first
    assert set(ready.detail["unsynced"]) == {
        "policy",
        "namespaces",
        "serviceentries",
        "destinationrules",
        "gateways",
        "virtualservices",
        "authorizationpolicies",
        "telemetries",
        "sidecars",
        "networkpolicies",
    }


@pytest.mark.parametrize(
    ("resync", "stale_after"),
    [(60.0, 180.0), (1.0, 2 * MAX_BACKOFF), (600.0, 1800.0)],
)
def test_liveness_window_is_three_resyncs_but_never_shorter_than_two_backoffs(
    resync: float, stale_after: float
) -> None:
    assert wired(resync=resync).stale_after == stale_after


@dataclass
class Parts:
    """The in-memory collaborators of one Reconciler, kept for the test to change."""

    policy: FakePolicySource
    namespaces: MemoryInformer
    managed: dict[Kind, MemoryInformer]
    elector: FakeElector


def in_memory(**options: Any) -> tuple[Reconciler, Parts]:
    parts = Parts(
        FakePolicySource(embedded_policy_text()),
        MemoryInformer(),
        managed_informers(),
        FakeElector(),
    )
    reconciler = Reconciler(
        store=PolicyStore(),
        policy_source=parts.policy,
        namespaces=parts.namespaces,
        managed=parts.managed,
        elector=parts.elector,
        writer=FakeWriter(),
        identity="test",
        **options,
    )
    return reconciler, parts


def test_a_loop_that_stops_beating_fails_liveness_after_the_window() -> None:
    clock = FakeClock()
    heartbeat = Heartbeat(clock)
    reconciler, _ = in_memory(stale_after=30.0, heartbeat=heartbeat)
    clock.now += 30
    assert reconciler.liveness().ok
    clock.now += 1
    stalled = reconciler.liveness()
    assert not stalled.ok and stalled.detail["status"] == "reconcile loop stalled"
    heartbeat.beat()
    assert reconciler.liveness().ok


@pytest.mark.parametrize("which", ["namespaces", "sidecars", "policy"])
def test_a_watch_that_ends_unasked_fails_liveness(which: str) -> None:
    reconciler, parts = in_memory()
    watches: dict[str, MemoryInformer | FakePolicySource] = {
        "namespaces": parts.namespaces,
        "policy": parts.policy,
        **{kind.plural: informer for kind, informer in parts.managed.items()},
    }
    watches[which].failed = True
    result = reconciler.liveness()
    assert not result.ok
    assert result.detail["dead"] == [which]


def test_an_election_that_ends_unasked_fails_liveness() -> None:
    reconciler, parts = in_memory()
    parts.elector.failed = True
    assert reconciler.liveness().detail["dead"] == ["leader-election"]


def test_readiness_waits_for_every_cache_then_reports_leader_and_policy() -> None:
    reconciler, parts = in_memory()
    parts.namespaces.synced = False
    assert reconciler.readiness().detail["unsynced"] == ["namespaces", "policy"]
    parts.namespaces.synced = True
    parts.policy.start(reconciler.store)
    ready = reconciler.readiness()
    assert ready.ok and ready.detail["leader"] is True
    assert ready.detail["policy_revision"] == reconciler.store.current.revision  # type: ignore[union-attr]


# --- the real loops' thread deaths ---------------------------------------------------------


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _die_at_once(loop: Informer | LeaseElector) -> None:
    loop.run = lambda: None  # type: ignore[method-assign]
    loop.start()
    _wait(lambda: loop.failed)


def test_an_informer_thread_that_ends_unasked_has_failed() -> None:
    informer = Informer(lambda **_: None, name="namespaces")
    assert not informer.failed
    _die_at_once(informer)
    assert informer.failed


def test_a_watch_stopped_on_request_is_not_a_death() -> None:
    informer = Informer(lambda **_: None, name="namespaces")
    _die_at_once(informer)
    informer.stop()
    assert not informer.failed


def test_an_election_thread_that_ends_unasked_has_failed() -> None:
    elector = LeaseElector(
        client.ApiClient(client.Configuration()), "egress-guard", "lease", "test"
    )
    _die_at_once(elector)
    assert elector.failed

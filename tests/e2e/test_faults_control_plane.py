"""Faults on a real control plane: the webhook (``--policy-configmap``) and the controller keep
the last good policy through an API server outage and through a deleted or emptied policy
ConfigMap, say so (metric, log, Event), prune nothing, and fail closed when they never had one.

Each test has a control plane of its own, since one stops its API server.  Measured seconds are
printed (``-s``) for docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.e2e.faults import (
    POLICY_NAMESPACE,
    SELECTOR_KEY,
    Controller,
    https_get,
    https_post,
    metric,
    running_controller,
    running_webhook,
    start_apiserver,
    stop_apiserver,
    wait_for,
)
from tests.e2e.harness import ControlPlane, Kubectl
from tests.integration.service import Service, admission_review, service_entry
from webhook.core.desired import DEFAULT_SIDECAR
from webhook.core.policy import MANAGED_LABEL
from webhook.kube.client import MANAGED_KINDS

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

WEBHOOK_SOURCE_UP = "egress_guard_policy_source_up"
CONTROLLER_SOURCE_UP = "egress_guard_controller_policy_source_up"
OUTAGE_SECONDS = 10.0


class World:
    """One test's namespaces and policy ConfigMap on its own control plane."""

    def __init__(self, plane: ControlPlane, work: Path) -> None:
        self.plane = plane
        self.work = work
        self.kubectl: Kubectl = plane.kubectl
        self.tag = secrets.token_hex(3)
        self.configmap = f"policy-{self.tag}"
        self.egress = f"egress-{self.tag}"
        self.team = f"team-{self.tag}"
        self.kubectl("create", "namespace", POLICY_NAMESPACE)
        for name in (self.egress, self.team):
            self.namespace(name)

    def namespace(self, name: str) -> None:
        self.kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": {SELECTOR_KEY: self.tag}},
            }
        )

    def policy_text(self) -> str:
        return yaml.safe_dump(
            {
                "egress": {"namespace": self.egress},
                "externalServices": [
                    {
                        "name": "httpbin",
                        "hosts": ["httpbin.org"],
                        "ports": [{"number": 443, "protocol": "TLS"}],
                    }
                ],
                "allow": [{"from": {"namespace": self.team}, "to": ["httpbin"]}],
            }
        )

    def set_configmap(self, data: dict[str, str]) -> None:
        self.kubectl.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": self.configmap, "namespace": POLICY_NAMESPACE},
                "data": data,
            }
        )

    def set_policy(self) -> None:
        self.set_configmap({"policy.yaml": self.policy_text()})

    def managed(self) -> dict[tuple[str, str, str], str]:
        """Every object the controller manages: (kind, namespace, name) -> uid."""
        plurals = ",".join(f"{k.plural}.{k.group}" if k.group else k.plural for k in MANAGED_KINDS)
        listed = self.kubectl.json("get", plurals, "-A", "-l", f"{MANAGED_LABEL}=true")
        return {
            (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"]["uid"]
            for o in listed["items"]
        }

    def sidecar_uid(self, namespace: str) -> str:
        found = self.kubectl(
            "get",
            "sidecars.networking.istio.io",
            DEFAULT_SIDECAR,
            "-n",
            namespace,
            "-o",
            "jsonpath={.metadata.uid}",
        )
        return found.stdout.strip() if found.returncode == 0 else ""

    def events(self, reason: str) -> list[dict[str, Any]]:
        listed = self.kubectl.json(
            "get", "events", "-n", POLICY_NAMESPACE, "--field-selector", f"reason={reason}"
        )
        return list(listed["items"])

    def review(self, host: str) -> bytes:
        obj = service_entry([host], namespace=self.team, name=f"se-{secrets.token_hex(3)}")
        return orjson.dumps(admission_review(obj, kind="ServiceEntry"))


@pytest.fixture
def world(throwaway_control_plane: ControlPlane, tmp_path: Path) -> Iterator[World]:
    yield World(throwaway_control_plane, tmp_path)


def allowed(svc: Service, world: World, host: str) -> bool:
    status, body = https_post(svc, "/validate", world.review(host))
    assert status == 200, body
    return bool(json.loads(body)["response"]["allowed"])


def webhook_metric(svc: Service, name: str) -> float | None:
    return metric(https_get(svc, "/metrics")[1], name)


def assert_deciding_with_the_last_good_policy(svc: Service, world: World) -> None:
    status, body = https_get(svc, "/readyz")
    assert status == 200, body
    assert allowed(svc, world, "httpbin.org")
    assert not allowed(svc, world, "evil.example.com")


def first_times(
    conditions: dict[str, Callable[[], bool]], *, since: float, timeout: float
) -> dict[str, float]:
    """Seconds from ``since`` until each condition first held, polled together."""
    found: dict[str, float] = {}
    while len(found) < len(conditions):
        for name, condition in conditions.items():
            if name not in found:
                with contextlib.suppress(OSError, ValueError):
                    if condition():
                        found[name] = time.monotonic() - since
        if time.monotonic() - since > timeout:
            raise AssertionError(f"not within {timeout} s: {set(conditions) - set(found)}")
        time.sleep(0.05)
    return found


def converged(world: World, controller: Controller) -> dict[tuple[str, str, str], str]:
    wait_for("the team's Sidecar", lambda: bool(world.sidecar_uid(world.team)), 60)
    wait_for("the controller's metrics", lambda: controller.metric(CONTROLLER_SOURCE_UP) == 1)
    return world.managed()


def test_api_server_outage_keeps_the_last_good_policy_and_converges_after(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.set_policy()
    plane = world.plane
    with (
        running_webhook(plane, world.work, configmap=world.configmap) as svc,
        running_controller(plane, world.work, configmap=world.configmap, tag=world.tag) as ctl,
    ):
        wait_for("the webhook's policy", lambda: webhook_metric(svc, WEBHOOK_SOURCE_UP) == 1)
        before = converged(world, ctl)
        assert before
        stopping = time.monotonic()
        stop_apiserver(plane)
        # the API server drains for a while after SIGTERM; the outage counts from its exit
        stopped = time.monotonic()
        noticed = wait_for(
            "the webhook to notice", lambda: webhook_metric(svc, WEBHOOK_SOURCE_UP) == 0, 30
        )
        wait_for("the controller to notice", lambda: ctl.metric(CONTROLLER_SOURCE_UP) == 0, 30)
        assert_deciding_with_the_last_good_policy(svc, world)
        assert "policy source unavailable; keeping the last good policy" in "\n".join(
            svc.log_lines()
        )
        time.sleep(max(0.0, OUTAGE_SECONDS - noticed))
        assert_deciding_with_the_last_good_policy(svc, world)
        apiserver_ready = start_apiserver(plane)
        back = time.monotonic()
        # the first change after the outage: the controller must see it and restore
        deleted_uid = world.sidecar_uid(world.team)
        world.kubectl("delete", "sidecars.networking.istio.io", DEFAULT_SIDECAR, "-n", world.team)
        seconds = first_times(
            {
                "restored": lambda: world.sidecar_uid(world.team) not in ("", deleted_uid),
                "webhook": lambda: webhook_metric(svc, WEBHOOK_SOURCE_UP) == 1,
                "controller": lambda: ctl.metric(CONTROLLER_SOURCE_UP) == 1,
            },
            since=back,
            timeout=90,
        )
        restored, webhook_up, controller_up = (
            seconds["restored"],
            seconds["webhook"],
            seconds["controller"],
        )
        total = time.monotonic() - back
        after = world.managed()
        assert_deciding_with_the_last_good_policy(svc, world)
        logs = "\n".join(svc.log_lines()) + ctl.log()
    # nothing pruned: every object is the same one, except the Sidecar deleted on purpose
    assert set(after) == set(before)
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {("Sidecar", world.team, DEFAULT_SIDECAR)}
    # neither read the outage as an empty policy
    assert "not found" not in logs and "was deleted" not in logs
    with capsys.disabled():
        print(
            f"\n[faults] API server stopped in {stopped - stopping:.1f} s, down for "
            f"{OUTAGE_SECONDS:.0f} s: webhook noticed {noticed:.1f} s after its exit; "
            f"API server ready {apiserver_ready:.1f} s after start; then "
            f"Sidecar restored in {restored:.1f} s, webhook source up in "
            f"{webhook_up:.1f} s, controller source up in {controller_up:.1f} s "
            f"(all within {total:.1f} s)"
        )


def test_deleted_or_emptied_configmap_keeps_the_last_good_policy_and_prunes_nothing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.set_policy()
    plane = world.plane
    with (
        running_webhook(plane, world.work, configmap=world.configmap) as svc,
        running_controller(plane, world.work, configmap=world.configmap, tag=world.tag) as ctl,
    ):
        wait_for("the webhook's policy", lambda: webhook_metric(svc, WEBHOOK_SOURCE_UP) == 1)
        before = converged(world, ctl)
        world.kubectl("delete", "configmap", world.configmap, "-n", POLICY_NAMESPACE)
        noticed = wait_for(
            "the webhook to notice", lambda: webhook_metric(svc, WEBHOOK_SOURCE_UP) == 0, 30
        )
        wait_for("the controller to notice", lambda: ctl.metric(CONTROLLER_SOURCE_UP) == 0, 30)
        wait_for("a PolicyDeleted Event", lambda: bool(world.events("PolicyDeleted")), 30)
        assert_deciding_with_the_last_good_policy(svc, world)
        assert "policy source unavailable; keeping the last good policy" in "\n".join(
            svc.log_lines()
        )
        # the controller keeps working with the last good policy: a new namespace is governed
        newcomer = f"late-{world.tag}"
        world.namespace(newcomer)
        wait_for("the newcomer's Sidecar", lambda: bool(world.sidecar_uid(newcomer)), 60)
        # the key removed: a rejection Event, still the last good policy
        world.set_configmap({"other.yaml": "x"})
        wait_for("a PolicyRejected Event", lambda: bool(world.events("PolicyRejected")), 30)
        assert webhook_metric(svc, WEBHOOK_SOURCE_UP) == 0
        assert_deciding_with_the_last_good_policy(svc, world)
        after = world.managed()
        world.set_policy()
        restored = wait_for(
            "the webhook's source up", lambda: webhook_metric(svc, WEBHOOK_SOURCE_UP) == 1, 30
        )
        wait_for("the controller's source up", lambda: ctl.metric(CONTROLLER_SOURCE_UP) == 1, 30)
    assert all(after.get(key) == uid for key, uid in before.items()), "something was pruned"
    message = world.events("PolicyDeleted")[0]["message"]
    assert "last good policy stays in force" in message
    with capsys.disabled():
        print(
            f"\n[faults] ConfigMap deleted: webhook noticed in {noticed:.1f} s; restored policy "
            f"picked up in {restored:.1f} s; {len(before)} managed objects kept"
        )


def test_without_a_good_policy_every_governed_request_is_denied_and_not_ready(
    world: World,
) -> None:
    plane = world.plane
    with running_webhook(plane, world.work, configmap=world.configmap) as svc:
        status, body = https_get(svc, "/readyz")
        assert status == 503, body
        assert webhook_metric(svc, WEBHOOK_SOURCE_UP) == 0
        status, body = https_post(svc, "/validate", world.review("httpbin.org"))
        response = json.loads(body)["response"]
        assert status == 200 and response["allowed"] is False
        assert "no valid egress policy" in response["status"]["message"]
        world.set_configmap({"policy.yaml": "egress: {namespace: [broken"})
        wait_for("the broken policy read", lambda: webhook_metric(svc, WEBHOOK_SOURCE_UP) == 1)
        assert https_get(svc, "/readyz")[0] == 503
        assert not allowed(svc, world, "httpbin.org")
        world.set_policy()
        wait_for("ready", lambda: https_get(svc, "/readyz")[0] == 200, 30)
        assert allowed(svc, world, "httpbin.org")

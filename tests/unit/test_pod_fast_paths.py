"""The pod checks' fast paths for long container and capability lists agree with the plain reading.

A long container list is read for the containers that may break a rule (a container equal to
the last clean one of its name is skipped, the others get cheap tests without paths) and only
those are judged; a long ``capabilities.add`` list is joined and scanned in C for candidates;
container names are read in C.  Random pods and workload templates (clean, injected and
malformed containers, IDs and capabilities in every spelling, repeats, shared and copied
objects) are decided with those paths taken at every size, with all of them off, and as
deployed (only lists of ``checks.common.many`` items), and the decisions must be identical,
violation for violation, for creates and for Pod updates, which compare old and new violations.
"""

from __future__ import annotations

import copy
import json
import random
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.builders import judge, update_review
from webhook.core.checks import common, injection, pods
from webhook.core.checks.common import Reader
from webhook.core.decisions import STOP_AFTER_VIOLATIONS, Decision, EnoughViolations, Violation
from webhook.core.engine import decide
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

POLICY = parse_policy(
    (Path(__file__).resolve().parents[2] / "policies" / "banzai-demo.yaml").read_text()
)
GATEWAY = POLICY.gateways[0]
STATUS = json.dumps({"initContainers": ["istio-init"], "containers": ["istio-proxy"]})
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _plain_names(value: Any) -> Iterator[Any]:
    return (container.get("name") for _, container in Reader().mappings(value, ""))


@contextmanager
def plain() -> Iterator[None]:
    """Every pod fast path off: each container and capability read on its own."""
    patch = pytest.MonkeyPatch()
    patch.setattr(pods, "_suspect_containers", lambda value, skipped: None)
    patch.setattr(pods, "_capability_candidates", lambda add, path: None)
    patch.setattr(injection, "container_names", _plain_names)
    try:
        yield
    finally:
        patch.undo()


@contextmanager
def from_size(size: int) -> Iterator[None]:
    """The fast paths taken for lists of ``size`` items or more."""
    patch = pytest.MonkeyPatch()
    patch.setattr(common, "CLASSES_FROM", size)
    try:
        yield
    finally:
        patch.undo()


Run = Callable[[], Decision | list[Violation]]


def outcome(run: Run) -> tuple[Any, ...]:
    """What ``run`` gave: a decision's violations and reason, a list, or what it raised."""
    try:
        found = run()
    except (TypeError, EnoughViolations) as exc:
        return ("raised", type(exc).__name__, getattr(exc, "violations", None))
    if isinstance(found, list):
        return (found,)
    return (found.violations, found.allowed, found.reason)


def assert_same(run: Run) -> None:
    with plain():
        slow = outcome(run)
    # at every size, and from 3 items: long container lists holding short capability lists
    for size in (0, 3):
        with from_size(size):
            assert outcome(run) == slow
    # and as deployed: short lists item by item, long ones by the fast paths
    assert outcome(run) == slow


CAPABILITIES = [
    "NET_ADMIN",
    "cap_net_raw",
    " all ",
    "CAP_ALL",
    "CAP_CAP_NET_ADMIN",
    "NET_ADMINS",
    "x\nNET_ADMIN",
    "net_admin\n",
    "\u2003NET_RAW\t",
    "\u017fys_admin",
    "ALl",
    "",
    "SYS_ADMIN",
    "cap_sys_ptrace",
    "SYS_TIME",
    "CAP_CAP_CHOWN",
    "CHOWNS",
    "SETUID_",
    "chown\nx",
    "x\nchown",
    "\n",
    "CAP_",
    "\u00dfETUID",
]
# Pod Security baseline's, in some of the spellings that pass
CLEAN_CAPABILITIES = [
    "CHOWN",
    "NET_BIND_SERVICE",
    "cap_setuid",
    " Kill\t",
    "\u2003CAP_SYS_CHROOT",
    "\u017fetgid",
]
NOT_CAPABILITIES: list[Any] = [7, None, ["NET_ADMIN"]]
IDS: list[Any] = [None, 0, 1337, "1337", " 1337 ", 1337.0, True, "x", [1337]]
PRIVILEGED: list[Any] = [None, False, True, 0, 1, "true", []]
NAMES: list[Any] = [
    "istio-proxy",
    "istio-init",
    "istio-validation",
    "enable-core-dump",
    None,
    7,
    ["unhashable"],
]
NOT_CONTAINERS: list[Any] = [None, "not a container", 3]


def some(rng: random.Random, pool: list[Any]) -> list[Any]:
    """Up to 70 items of ``pool``, often fewer than the threshold, often more."""
    size = rng.randrange(8) if rng.random() < 0.4 else rng.randrange(71)
    return [rng.choice(pool) for _ in range(size)]


def capability_list(rng: random.Random) -> list[Any]:
    """Mostly allowed strings, some refused ones, now and then a line break or a non-string."""
    pool = rng.sample(CAPABILITIES, rng.randint(1, 3)) + CLEAN_CAPABILITIES
    if rng.random() < 0.3:
        pool.append(rng.choice(NOT_CAPABILITIES))
    return some(rng, pool)


def security(rng: random.Random) -> Any:
    """A clean securityContext with up to two fields (IDs, privileged, capabilities) changed."""
    roll = rng.random()
    if roll < 0.1:
        return rng.choice([None, "bad", []])
    context: dict[str, Any] = {"runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
    for _ in range(rng.randrange(3)):
        field = rng.choice(["runAsUser", "runAsGroup", "privileged", "capabilities"])
        if field == "privileged":
            context[field] = rng.choice(PRIVILEGED)
        elif field == "capabilities":
            context[field] = rng.choice(
                [
                    None,
                    "NET_ADMIN",
                    {"drop": ["ALL"]},
                    {"add": "NET_ADMIN"},
                    {"add": capability_list(rng), "drop": ["ALL"]},
                    {"add": capability_list(rng)},
                ]
            )
        else:
            context[field] = rng.choice(IDS)
    return context


def container(rng: random.Random) -> Any:
    """Mostly an application container, now and then an injected name or not an object."""
    roll = rng.random()
    if roll < 0.05:
        return rng.choice(NOT_CONTAINERS)
    name = rng.choice(NAMES) if roll < 0.2 else rng.choice(["app", "app-2"])
    item: dict[str, Any] = {"name": name, "image": "busybox"}
    if rng.random() < 0.8:
        item["securityContext"] = security(rng)
    if rng.random() < 0.1:
        item["restartPolicy"] = "Always"
    if rng.random() < 0.2:
        item[rng.choice(["readinessProbe", "livenessProbe", "startupProbe"])] = handler(rng)
    if rng.random() < 0.1:
        item["lifecycle"] = rng.choice(
            [None, "x", {rng.choice(["postStart", "preStop"]): handler(rng)}]
        )
    return item


def handler(rng: random.Random) -> Any:
    """A probe or hook: on the pod itself, at a host, or of another shape."""
    action = rng.choice(["httpGet", "tcpSocket", "exec", "grpc"])
    fields: dict[str, Any] = {"port": 8080}
    roll = rng.random()
    if roll < 0.4:
        fields["host"] = rng.choice(["203.0.113.7", "evil.example", "", None, 7])
    return rng.choice([{action: fields}, {action: "x"}, "x"])


def volume_list(rng: random.Random) -> Any:
    """Volumes of the types the node serves itself, now and then one it mounts from afar."""
    if rng.random() < 0.05:
        return rng.choice([None, "x", {"name": "v"}])
    safe = [{"emptyDir": {}}, {"configMap": {"name": "c"}}, {"persistentVolumeClaim": {}}]
    remote = [
        {"nfs": {"server": "203.0.113.7", "path": "/"}},
        {"gitRepo": {}},
        {"hostPath": {"path": "/run/containerd/containerd.sock"}},
    ]
    items: list[Any] = []
    for index in range(rng.randint(0, 6)):
        kind = rng.choice(remote) if rng.random() < 0.2 else rng.choice(safe)
        items.append({"name": f"v{index}", **kind} if rng.random() < 0.95 else "x")
    return items


def container_list(rng: random.Random) -> Any:
    """A list drawn from a few containers (repeats, shared or copied), or not a list at all."""
    if rng.random() < 0.05:
        return rng.choice([None, "x", {"name": "app"}])
    pool = [container(rng) for _ in range(rng.randint(1, 6))]
    items = some(rng, pool)
    if rng.random() < 0.2:
        # the proxy first: alone, it makes a gateway pod (in the gateway's namespace, labelled)
        items.insert(0, {"name": "istio-proxy", "securityContext": {"runAsUser": 1337}})
    return items if rng.random() < 0.5 else copy.deepcopy(items)


@st.composite
def pod_specs(draw: st.DrawFn) -> dict[str, Any]:
    """Pod specs from a seeded generator.

    Hypothesis draws the seed: drawn field by field, long lists of nested containers spend its
    data budget and leave the deeper fields (capabilities) at their simplest.
    """
    rng = random.Random(draw(st.integers(0, 2**64)))
    spec: dict[str, Any] = {
        "containers": container_list(rng),
        "initContainers": container_list(rng),
    }
    if rng.random() < 0.5:
        spec["ephemeralContainers"] = container_list(rng)
    if rng.random() < 0.5:
        spec["volumes"] = volume_list(rng)
    for key in ("hostPID", "hostIPC"):
        if rng.random() < 0.1:
            spec[key] = rng.choice([True, False, None, "true"])
    return spec


pod_labels = st.sampled_from(
    [
        {"app": "a"},
        dict(GATEWAY.selector),
        {"gateway.networking.k8s.io/gateway-name": "gw"},
    ]
)
pod_annotations = st.sampled_from([{}, {"sidecar.istio.io/status": STATUS}])


@st.composite
def manifests(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["Pod", "Deployment", "CronJob"]))
    namespace = draw(st.sampled_from(["test-app", GATEWAY.namespace]))
    pod_meta = {"labels": draw(pod_labels), "annotations": draw(pod_annotations)}
    spec = draw(pod_specs())
    meta = {"name": "p", "namespace": namespace}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": kind, "metadata": {**meta, **pod_meta}, "spec": spec}
    template = {"metadata": pod_meta, "spec": spec}
    if kind == "CronJob":
        body = {"jobTemplate": {"spec": {"template": template}}}
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": meta, "spec": body}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": {"template": template}}


@FAST
@given(manifest=manifests())
def test_creates(manifest: dict[str, Any]) -> None:
    assert_same(lambda: judge(manifest, POLICY))
    kind, namespace = manifest["kind"], manifest["metadata"]["namespace"]
    for limit in (None, 3):
        assert_same(partial(pods.pod_violations, kind, manifest, namespace, POLICY, limit=limit))


@FAST
@given(
    old_spec=pod_specs(),
    new_spec=pod_specs(),
    keep=st.booleans(),
    labels=pod_labels,
    namespace=st.sampled_from(["test-app", GATEWAY.namespace]),
)
def test_pod_updates(
    old_spec: dict[str, Any],
    new_spec: dict[str, Any],
    keep: bool,
    labels: dict[str, str],
    namespace: str,
) -> None:
    # an update keeps the old containers (a new violation may hide among old ones) or not
    if keep:
        new_spec = {**new_spec, "containers": copy.deepcopy(old_spec["containers"])}
    old = pod(old_spec, namespace, labels)
    new = pod(new_spec, namespace, labels)
    assert_same(lambda: decide(update_review(old, new), POLICY))


def pod(
    spec: dict[str, Any], namespace: str = "test-app", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    meta = {
        "name": "p",
        "namespace": namespace,
        "labels": labels or {},
        "annotations": {"sidecar.istio.io/status": STATUS},
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def _alone_as_written_before(spec: dict[str, Any]) -> bool:
    containers = Reader().mappings(spec.get("containers"), "")
    inits = Reader().mappings(spec.get("initContainers"), "")
    return [c.get("name") for _, c in containers] == ["istio-proxy"] and all(
        c.get("name") in injection.INJECTED_CONTAINERS for _, c in inits
    )


def _missing_as_written_before(spec: dict[str, Any]) -> bool:
    reader = Reader()
    containers = [c for _, c in reader.mappings(spec.get("containers"), "")]
    inits = [c for _, c in reader.mappings(spec.get("initContainers"), "")]
    return not (
        any(c.get("name") == "istio-proxy" for c in containers)
        or any(c.get("name") == "istio-proxy" and c.get("restartPolicy") == "Always" for c in inits)
    )


def _either(run: Callable[[], bool]) -> bool | str:
    try:
        return run()
    except TypeError:
        return "raised"


@FAST
@given(spec=pod_specs())
def test_names_read_in_c_as_before(spec: dict[str, Any]) -> None:
    # whether the proxy runs alone (gateway pods) or at all (Pod creates), from names read in C
    proxy_pod = pod(spec)
    for size in (0, 3, common.CLASSES_FROM):
        with from_size(size):
            assert _either(lambda: pods.proxy_alone(spec)) == _either(
                lambda: _alone_as_written_before(spec)
            )
            missing = injection.missing_proxy(proxy_pod)
            assert (missing is not None and "no 'istio-proxy'" in missing) == (
                _missing_as_written_before(spec)
            )


def test_long_lists_keep_the_violation_stop() -> None:
    # thousands of repeated bad containers and capabilities: the violations up to the stop
    bad = {"name": "app", "securityContext": {"runAsUser": 1337, "privileged": True}}
    caps = {"name": "c", "securityContext": {"capabilities": {"add": ["NET_ADMIN", "x"] * 1300}}}
    proxy = {"name": "istio-proxy", "securityContext": {"runAsUser": 1337}}
    for spec in (
        {"containers": [proxy, *[copy.deepcopy(bad) for _ in range(1500)]]},
        {"containers": [proxy, caps], "initContainers": [{"name": "i"}] * 40},
    ):
        manifest = pod(spec)
        with plain():
            slow = judge(manifest, POLICY)
        fast = judge(manifest, POLICY)
        assert len(slow.violations) == STOP_AFTER_VIOLATIONS
        assert fast.violations == slow.violations


def test_an_update_reads_what_it_can_change_and_stops_in_appended_ephemeral_containers() -> None:
    # the API server keeps a Pod's spec on update (but images and scheduling fields) before the
    # webhook sees it: an update of a pod full of old violations is judged by what it adds
    bad = {"name": "app", "securityContext": {"runAsUser": 1337, "privileged": True}}
    proxy = {"name": "istio-proxy", "securityContext": {"runAsUser": 1337}}
    old = pod(
        {"containers": [proxy, *[{**copy.deepcopy(bad), "name": f"a{i}"} for i in range(1500)]]}
    )
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["labels"] = {"team": "a"}
    assert decide(update_review(old, relabelled), POLICY).allowed
    debugged = copy.deepcopy(old)
    debugged["spec"]["ephemeralContainers"] = [
        {**copy.deepcopy(bad), "name": f"debug{i}"} for i in range(1500)
    ]
    found = decide(update_review(old, debugged, sub_resource="ephemeralcontainers"), POLICY)
    assert len(found.violations) == STOP_AFTER_VIOLATIONS
    assert all(v.field.startswith("spec.ephemeralContainers[") for v in found.violations)


def test_clean_long_lists_are_clean() -> None:
    clean = {"name": "app", "securityContext": {"runAsUser": 0, "capabilities": {"add": ["CHOWN"]}}}
    spec = {
        "containers": [
            {"name": "istio-proxy", "args": ["proxy", "sidecar"]},
            *[copy.deepcopy(clean) for _ in range(2000)],
        ],
        "initContainers": [
            {"name": "i", "securityContext": {"capabilities": {"add": CLEAN_CAPABILITIES * 99}}}
        ],
    }
    assert judge(pod(spec), POLICY).violations == ()


def test_long_capability_list_names_each_capability_beyond_the_baseline() -> None:
    add = ["CHOWN", "SETUID"] * 2000
    add[7], add[3001], add[-1] = "SYS_ADMIN", "cap_sys_ptrace", "BPF"
    spec = {
        "containers": [{"name": "istio-proxy", "args": ["proxy", "sidecar"]}, {"name": "app"}],
        "initContainers": [{"name": "i", "securityContext": {"capabilities": {"add": add}}}],
    }
    found = [v.field for v in judge(pod(spec), POLICY).violations]
    where = "spec.initContainers[0].securityContext.capabilities.add"
    assert found == [f"{where}[7]", f"{where}[3001]", f"{where}[3999]"]


capability_pieces = st.sampled_from(
    [*pods.BASELINE_CAPABILITIES, "CAP_", "cap_", "SYS_ADMIN", "NET_RAW", "ALL", "_", "S"]
)
capability_spaces = st.sampled_from([" ", "\t", "\u2003", "\r", "\x1c", ""])


@st.composite
def capability_names(draw: st.DrawFn) -> str:
    """Allowed names and near misses: cases, prefixes, surrounding and inner whitespace."""
    if draw(st.booleans()):
        return draw(st.text(max_size=12))
    middle = "".join(draw(st.lists(capability_pieces, min_size=0, max_size=3)))
    if draw(st.booleans()):
        middle = middle.lower()
    return draw(capability_spaces) + middle + draw(capability_spaces)


@FAST
@given(add=st.lists(capability_names(), min_size=common.CLASSES_FROM, max_size=80))
def test_capability_scan_finds_exactly_the_refused_items(add: list[str]) -> None:
    # the joined scan is the per-item allow list, item for item: no refused one is missed, and
    # no allowed one is sent to the plain reading (which would cost a long clean list its speed)
    found = pods._capability_candidates(add, "p")
    if found is None:
        assert any("\n" in item for item in add)
        return
    assert [where for where, _ in found] == [
        f"p[{i}]" for i, item in enumerate(add) if pods._is_refused(item)
    ]


def test_containers_nested_too_deep_to_compare() -> None:
    # equal clean containers nested about as deep as the interpreter allows: comparing them
    # fails, and they are read one by one instead of the decision failing
    def nested(depth: int, user: int) -> dict[str, Any]:
        value: Any = "x"
        for _ in range(depth):
            value = {"a": value}
        return {"name": "app", "x": value, "securityContext": {"runAsUser": user}}

    depth = sys.getrecursionlimit() - 10
    containers = [nested(depth, 1000) for _ in range(40)] + [nested(depth, 1337)]
    manifest = pod({"containers": containers})
    with plain():
        slow = judge(manifest, POLICY)
    assert [v.field for v in slow.violations] == [
        "spec.containers[40].securityContext.runAsUser",
        "spec.containers",
    ]
    assert judge(manifest, POLICY).violations == slow.violations


def test_whitespace_of_the_capability_scan_is_what_strip_strips() -> None:
    # the scan for capabilities beyond the baseline trusts ``\s`` to be ``str.isspace`` (what
    # strip removes) and upper-casing to leave whitespace and newlines where they are: the plain
    # reading strips before it upper-cases, the scan sees the upper-cased text only
    space = re.compile(r"\s")
    for code in range(0x110000):
        char = chr(code)
        assert (space.fullmatch(char) is not None) == char.isspace(), hex(code)
        if char.isspace():
            assert char.upper() == char, hex(code)
        else:
            assert space.search(char.upper()) is None, hex(code)


def test_an_update_that_changes_what_the_pod_is_is_judged_as_a_new_pod() -> None:
    # a hand-edited injector status changes which containers are the injector's: the spec is
    # then judged again, whole
    proxy = {"name": "istio-proxy", "securityContext": {"runAsUser": 1337}}
    old = pod({"containers": [{"name": "app"}, proxy]})
    old["metadata"]["annotations"] = {"sidecar.istio.io/status": '{"containers": ["istio-proxy"]}'}
    renamed = copy.deepcopy(old)
    renamed["metadata"]["annotations"]["sidecar.istio.io/status"] = '{"containers": ["app"]}'
    decision = decide(update_review(old, renamed), POLICY)
    assert not decision.allowed
    assert "spec.containers[1].securityContext.runAsUser" in [v.field for v in decision.violations]

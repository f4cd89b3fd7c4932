"""matchConditions: per kind, an UPDATE the API server skips cannot change what a check reads.

Two properties over random changes to realistic objects of every registered kind:
- outside the read set, ``decide`` answers the changed UPDATE exactly as it answers an UPDATE
  that changes nothing (so skipping it cannot let anything new in);
- the CEL expression, evaluated by a CEL interpreter, says "call" exactly when a read path
  changed (so the API server skips nothing else).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import celpy
import pytest
from celpy import celtypes
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from webhook.admission.match_conditions import (
    READS,
    Kind,
    expression,
    match_conditions,
    reads_changed,
)
from webhook.core.checks import REGISTRY
from webhook.core.engine import decide
from webhook.core.policy import MANAGED_LABEL
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Review

pytestmark = pytest.mark.unit

POLICY = parse_policy(
    """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
egress: {namespace: egress}
externalServices:
  - name: api
    hosts: [api.example.com]
    ports: [{number: 443, protocol: TLS}]
allow:
  - {from: {namespace: team-a}, to: [api]}
"""
)

TEMPLATE = {
    "metadata": {
        "labels": {"app": "web"},
        "annotations": {"traffic.sidecar.istio.io/excludeOutboundPorts": "5432"},
    },
    "spec": {
        "containers": [
            {"name": "web", "image": "nginx", "securityContext": {"runAsUser": 1337}},
        ]
    },
}


def base(kind: Kind) -> dict[str, Any]:
    """An object of ``kind`` with fields its check reads and fields it does not."""
    group, name = kind
    obj: dict[str, Any] = {
        "apiVersion": f"{group}/v1" if group else "v1",
        "kind": name,
        "metadata": {
            "name": "x",
            "namespace": "team-a",
            "labels": {"app": "web"},
            "annotations": {"deployment.kubernetes.io/revision": "3"},
            "resourceVersion": "17",
            "generation": 3,
            "finalizers": ["example.com/keep"],
        },
        "status": {"replicas": 2},
    }
    if name == "CronJob":
        obj["spec"] = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": TEMPLATE}}}
    elif name == "Pod":
        obj["metadata"]["annotations"]["sidecar.istio.io/inject"] = "false"
        obj["spec"] = copy.deepcopy(TEMPLATE["spec"])
    elif name == "Namespace":
        obj["metadata"]["labels"]["istio-injection"] = "disabled"
        del obj["metadata"]["namespace"]
    elif name == "Endpoints":
        obj["subsets"] = [{"addresses": [{"ip": "203.0.113.9"}], "ports": [{"port": 443}]}]
    elif name == "EndpointSlice":
        obj["addressType"] = "FQDN"
        obj["endpoints"] = [{"addresses": ["evil.example.org"]}]
        obj["ports"] = [{"port": 443}]
    elif name == "Service":
        obj["spec"] = {"type": "ExternalName", "externalName": "evil.example.org"}
    elif ("spec", "template") in READS.get(kind, ()):
        obj["spec"] = {"replicas": 2, "template": copy.deepcopy(TEMPLATE)}
    else:
        obj["spec"] = {
            "hosts": ["evil.example.org"],
            "exportTo": ["*"],
            "egress": [{"hosts": ["*/*"]}],
            "http": [{"route": [{"destination": {"host": "evil.example.org"}}]}],
        }
    return obj


def update(kind: Kind, new: dict[str, Any], old: dict[str, Any], user: str = "alice") -> Review:
    group, name = kind
    return Review(
        uid="u",
        group=group,
        version="v1",
        kind=name,
        operation="UPDATE",
        namespace="" if name == "Namespace" else "team-a",
        name="x",
        object=new,
        old_object=old,
        username=user,
        groups=("system:authenticated",),
    )


KINDS = sorted(REGISTRY)
KEYS = ["spec", "template", "metadata", "labels", "annotations", "status", "replicas", "x"]
KEYS += ["subsets", "endpoints", "jobTemplate", "finalizers", "app", "containers"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["", "a", "1337"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=4,
)
# a change: set (or delete, with None as the marker below) the value at a path of known keys
CHANGE = st.tuples(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4), JSON, st.booleans())

# paths a controller changes on the UPDATEs the conditions are for
BOOKKEEPING = [
    ("spec", "replicas"),
    ("status", "replicas"),
    ("metadata", "resourceVersion"),
    ("metadata", "generation"),
    ("metadata", "finalizers"),
    ("metadata", "managedFields"),
    ("metadata", "ownerReferences"),
]


def changed(obj: dict[str, Any], path: list[str], value: Any, delete: bool) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    node = out
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    if delete:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return out


@pytest.fixture(autouse=True, scope="module")
def heterogeneous_equality() -> Any:
    """Kubernetes' CEL compares values of different types as unequal (``{"a": 1} != false`` is
    true); this Python evaluator raises "no such overload" instead.  The API server's schema
    validation keeps such values out of real objects, but the generated changes put any value
    anywhere, so the evaluator is given the API server's semantics for the module's tests."""
    patch = pytest.MonkeyPatch()
    for cls in vars(celtypes).values():
        if isinstance(cls, type) and cls.__module__ == celtypes.__name__:
            for name, unequal in (("__eq__", False), ("__ne__", True)):
                method = cls.__dict__.get(name)
                if method is not None:
                    patch.setattr(cls, name, _typed_or(method, unequal))
    yield
    patch.undo()


def _typed_or(method: Any, unequal: bool) -> Any:
    def compare(self: Any, other: Any) -> Any:
        try:
            return method(self, other)
        except TypeError:
            return unequal

    return compare


ENV = celpy.Environment()
PROGRAMS: dict[tuple[Kind, ...], Any] = {}


def call(kinds: tuple[Kind, ...], review: Review) -> bool:
    """Whether the API server would call the webhook, by evaluating the condition's CEL."""
    program = PROGRAMS.get(kinds)
    if program is None:
        program = PROGRAMS[kinds] = ENV.program(ENV.compile(expression(kinds)))
    request = {
        "operation": review.operation,
        "kind": {"group": review.group, "version": review.version, "kind": review.kind},
        "userInfo": {"username": review.username, "groups": list(review.groups)},
    }
    activation = {
        "request": celpy.json_to_cel(request),
        "object": celpy.json_to_cel(review.object),
        "oldObject": celpy.json_to_cel(review.old_object),
    }
    return bool(program.evaluate(activation))


def same(a: Any, b: Any) -> bool:
    return (a.allowed, a.reason, a.warnings) == (b.allowed, b.reason, b.warnings)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(KINDS), change=CHANGE)
def test_a_skipped_update_changes_nothing_a_check_reads(
    kind: Kind, change: tuple[list[str], Any, bool]
) -> None:
    path, value, delete = change
    # the API server validates metadata before admission: label and annotation values are strings
    if path[:2] in (["metadata", "labels"], ["metadata", "annotations"]):
        assume(len(path) <= 3 and (delete or len(path) < 3 or isinstance(value, str)))
    old = base(kind)
    new = changed(old, path, value, delete)
    review = update(kind, new, old)

    expected = reads_changed(kind, new, old)
    # one webhook for every kind, as a registration may have it
    assert call(tuple(KINDS), review) is expected
    if not expected:
        assert same(decide(review, POLICY), decide(update(kind, old, old), POLICY))


@pytest.mark.parametrize("kind", [k for k in KINDS if k in READS], ids=lambda k: "/".join(k))
@pytest.mark.parametrize("path", BOOKKEEPING, ids=".".join)
def test_bookkeeping_updates_are_skipped(kind: Kind, path: tuple[str, ...]) -> None:
    old = base(kind)
    new = changed(old, list(path), 7, delete=False)
    if path in READS[kind] or (path[0],) in READS[kind]:
        # spec.replicas is part of "spec" for kinds whose check reads the whole spec
        assert call((kind,), update(kind, new, old))
        return
    assert not call((kind,), update(kind, new, old))
    assert same(decide(update(kind, new, old), POLICY), decide(update(kind, old, old), POLICY))


def test_a_pod_template_change_is_sent() -> None:
    kind = ("apps", "Deployment")
    old = base(kind)
    new = changed(old, ["spec", "template", "spec", "hostNetwork"], True, delete=False)
    assert call((kind,), update(kind, new, old))
    assert not decide(update(kind, new, old), POLICY).allowed


@pytest.mark.parametrize("operation", ["CREATE", "DELETE", "CONNECT"])
def test_other_operations_are_always_sent(operation: str) -> None:
    kind = ("apps", "Deployment")
    obj = base(kind)
    review = update(kind, obj, obj)
    review = Review(**{**{f: getattr(review, f) for f in review.__slots__}, "operation": operation})
    assert call((kind,), review)


def test_kinds_without_a_read_set_are_always_sent() -> None:
    kind = ("example.com", "Widget")
    obj = {"metadata": {"name": "w"}, "spec": {"a": 1}}
    assert call((kind, ("apps", "Deployment")), update(kind, obj, obj))


def test_endpoint_controllers_are_skipped_for_endpoints_only() -> None:
    controller = "system:serviceaccount:kube-system:endpointslice-controller"
    slice_kind = ("discovery.k8s.io", "EndpointSlice")
    obj = base(slice_kind)
    review = update(slice_kind, changed(obj, ["endpoints"], [], False), obj, user=controller)
    assert not call(tuple(KINDS), review)
    assert decide(review, POLICY).allowed
    deployment = ("apps", "Deployment")
    old = base(deployment)
    new = changed(old, ["spec", "template", "spec", "hostNetwork"], True, delete=False)
    assert call(tuple(KINDS), update(deployment, new, old, user=controller))


def test_one_condition_per_webhook() -> None:
    (condition,) = match_conditions()
    assert condition["name"]
    assert condition["expression"] == expression(KINDS)
    # the API server refuses expressions longer than this many characters
    assert len(condition["expression"]) < 5 * 1024


def test_a_service_status_update_with_new_load_balancer_addresses_is_sent() -> None:
    # services/status carries load balancer addresses a tenant could point outside
    old = base(("", "Service"))
    new = changed(old, ["status", "loadBalancer", "ingress"], [{"ip": "203.0.113.9"}], False)
    review = dataclasses.replace(update(("", "Service"), new, old), sub_resource="status")
    assert not decide(review, POLICY).allowed
    assert call(tuple(KINDS), review)


@pytest.mark.parametrize("path", BOOKKEEPING, ids=".".join)
def test_every_update_of_a_managed_object_is_sent(path: tuple[str, ...]) -> None:
    # nobody but the controller may touch what egress-guard generates, bookkeeping included
    kind = ("networking.istio.io", "Sidecar")
    old = base(kind)
    old["metadata"]["labels"][MANAGED_LABEL] = "true"
    new = changed(old, list(path), ["tenant.example/hold"], False)
    review = update(kind, new, old)
    assert not decide(review, POLICY).allowed
    assert call(tuple(KINDS), review)

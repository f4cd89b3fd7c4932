"""The webhook's doors to the day-two features: exceptions in force per request, policy edits.

Each app here reads a clock handed in, so an exception's expiry instant is crossed without
sleeping; the policy ConfigMap is judged against objects handed in as the cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from flask import Flask

from webhook.admission.app import create_app
from webhook.core.mutations import Mutation
from webhook.core.policy import Policy
from webhook.core.policy_admission import SecurityTeam
from webhook.core.reviews import Review
from webhook.policy_runtime import PolicyStore
from webhook.settings import ConfigMapRef, Settings

pytestmark = pytest.mark.unit

EXPIRES = datetime(2026, 12, 3, tzinfo=UTC)
LIVE = EXPIRES - timedelta(days=1)
FAR = EXPIRES - timedelta(days=30)
BASE = """
egress: {namespace: egress}
externalServices:
  - {name: github, hosts: [api.github.com], ports: [{number: 443, protocol: TLS}]}
  - {name: httpbin, hosts: [httpbin.org], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: a-httpbin, from: {namespace: team-a}, to: [httpbin]}
"""
WITH_EXCEPTION = (
    BASE
    + """
exceptions:
  - {name: ci, namespaces: [team-b], services: [github], owner: alice, ticket: SEC-1,
     expires: "2026-12-03T00:00:00Z"}
"""
)
NARROWED = """
egress: {namespace: egress}
externalServices:
  - {name: httpbin, hosts: [httpbin.org], ports: [{number: 443, protocol: TLS}]}
allow: []
"""
POLICY_CM = ConfigMapRef("egress-guard", "egress-guard-policy")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Objects:
    def __init__(self, *objects: Mapping[str, Any], fail: bool = False) -> None:
        self.items = objects
        self.fail = fail
        self.calls = 0

    def objects(self) -> Iterable[Mapping[str, Any]]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("forbidden")
        return self.items


def entry(host: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "se", "namespace": namespace},
        "spec": {
            "hosts": [host],
            "exportTo": ["."],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
        },
    }


def configmap(text: str, *, name: str = "egress-guard-policy") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "egress-guard"},
        "data": {"policy.yaml": text},
    }


def review(
    obj: Mapping[str, Any] | None,
    *,
    operation: str = "CREATE",
    user: str = "bob",
    groups: tuple[str, ...] = ("devs",),
    old: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    source = obj or old or {}
    kind = str(source["kind"])
    group = "" if kind == "ConfigMap" else "networking.istio.io"
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": kind.lower() + "s"},
            "operation": operation,
            "namespace": source["metadata"]["namespace"],
            "name": source["metadata"]["name"],
            "userInfo": {"username": user, "groups": list(groups)},
            "object": obj,
            "oldObject": old,
        },
    }


def store(text: str | None) -> PolicyStore:
    policies = PolicyStore()
    if text is not None:
        assert policies.update(text, origin="test").ok
    return policies


def make_app(
    text: str | None = WITH_EXCEPTION,
    *,
    clock: Clock | None = None,
    objects: Objects | None = None,
    **kwargs: Any,
) -> Flask:
    return create_app(
        Settings(policy_configmap=POLICY_CM, security_team_groups=frozenset({"sec"})),
        policy_store=store(text),
        clock=clock or Clock(LIVE),
        cluster_objects=objects,
        **kwargs,
    )


def validate(app: Flask, body: Mapping[str, Any]) -> dict[str, Any]:
    response = app.test_client().post("/validate", json=body)
    assert response.status_code == 200
    answer: dict[str, Any] = orjson.loads(response.data)["response"]
    return answer


def test_an_exception_grants_until_its_expiry_instant_even_from_the_cache() -> None:
    clock = Clock(LIVE)
    app = make_app(clock=clock)
    gh = review(entry("api.github.com", "team-b"))
    assert validate(app, gh)["allowed"]
    assert validate(app, gh)["allowed"]  # now a cache hit
    clock.now = EXPIRES
    answer = validate(app, gh)
    assert not answer["allowed"]
    assert "api.github.com" in answer["status"]["message"]


def test_an_object_relying_on_an_exception_ending_within_a_week_gets_a_warning() -> None:
    answer = validate(make_app(), review(entry("api.github.com", "team-b")))
    assert answer["allowed"]
    [warning] = answer["warnings"]
    assert "exception" in warning and "ci" in warning


def test_no_expiry_warning_a_month_ahead_nor_for_objects_not_relying_on_it() -> None:
    far = validate(make_app(clock=Clock(FAR)), review(entry("api.github.com", "team-b")))
    assert far["allowed"] and not far.get("warnings")
    other = validate(make_app(), review(entry("httpbin.org", "team-a")))
    assert other["allowed"] and not other.get("warnings")


def test_the_mutator_gets_the_policy_in_force_at_the_request() -> None:
    seen: list[Policy] = []

    def mutator(_review: Review, policy: Policy) -> Mutation:
        seen.append(policy)
        return Mutation()

    clock = Clock(LIVE)
    app = make_app(clock=clock, mutator=mutator)
    body = review(entry("api.github.com", "team-b"))
    app.test_client().post("/mutate", json=body)
    clock.now = EXPIRES
    app.test_client().post("/mutate", json=body)
    live, ended = (tuple(r.name for r in p.rules) for p in seen)
    assert len(live) == len(ended) + 1
    assert seen[0].revision != seen[1].revision


def test_an_invalid_policy_configmap_is_refused_with_field_paths() -> None:
    answer = validate(make_app(), review(configmap("egress: {namespace: 7}\nallow: [3]\n")))
    assert not answer["allowed"]
    assert answer["status"]["message"].count("data[policy.yaml]") >= 2


def test_a_narrowing_edit_is_admitted_with_the_stranded_objects_and_lost_access() -> None:
    objects = Objects(entry("httpbin.org", "team-a"), entry("api.github.com", "team-c"))
    answer = validate(make_app(BASE, objects=objects), review(configmap(NARROWED)))
    assert answer["allowed"]
    warnings = "\n".join(answer["warnings"])
    assert "1 existing object(s) in breach" in warnings
    assert "team-a/se" in warnings
    assert "team-a loses access to httpbin.org" in warnings


def test_the_first_policy_is_judged_although_none_is_loaded_yet() -> None:
    app = make_app(None)
    assert validate(app, review(configmap(BASE)))["allowed"]
    assert not validate(app, review(configmap("nonsense: [")))["allowed"]


def test_only_the_policy_configmap_is_routed_to_the_policy_check() -> None:
    objects = Objects()
    app = make_app(objects=objects)
    other = configmap("not a policy", name="something-else")
    assert validate(app, review(other))["allowed"]
    assert objects.calls == 0


def test_deleting_the_policy_is_reserved_to_the_security_team() -> None:
    app = make_app()
    old = configmap(BASE)
    refused = validate(app, review(None, operation="DELETE", old=old))
    assert not refused["allowed"]
    allowed = validate(app, review(None, operation="DELETE", old=old, groups=("sec",)))
    assert allowed["allowed"]
    team = make_app(security_team=SecurityTeam(users=frozenset({"bob"})))
    assert validate(team, review(None, operation="DELETE", old=old))["allowed"]


def test_a_cluster_that_cannot_be_listed_does_not_block_a_valid_edit() -> None:
    app = make_app(objects=Objects(fail=True))
    answer = validate(app, review(configmap(NARROWED)))
    assert answer["allowed"]
    assert any("not judged" in w for w in answer["warnings"])
    assert not validate(app, review(configmap("egress: 3\n")))["allowed"]

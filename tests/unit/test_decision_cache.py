"""The decision cache: identical reviews are answered once, anything that could change the verdict
misses, and nothing that reads the cluster view outlives a change of that view."""

from __future__ import annotations

import re
import threading
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient

from webhook.admission.app import create_app
from webhook.admission.decision_cache import (
    IGNORED_METADATA,
    DecisionCache,
    _Recording,
    cache_key,
    digest,
    likely_repeated,
    view_generation,
)
from webhook.admission.metrics import Metrics
from webhook.core.checks import ClusterView, EmptyView
from webhook.core.decisions import Decision
from webhook.core.engine import decide
from webhook.core.policy import MANAGED_LABEL, Policy
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Review
from webhook.policy_runtime import PolicyStore
from webhook.settings import Settings

pytestmark = pytest.mark.unit

POLICY = """
egress:
  namespace: external
mode: {mode}
controller:
  users: [system:serviceaccount:egress-guard:controller]
externalServices:
  - name: httpbin
    hosts: [httpbin.org]
    ports: [{{number: 443, protocol: TLS}}]
  - name: github
    hosts: [github.com]
    ports: [{{number: 443, protocol: TLS}}]
allow:
  - from: {{namespace: team-a}}
    to: [{allowed}]
"""
CONTROLLER = "system:serviceaccount:egress-guard:controller"


def policy(allowed: str = "httpbin", mode: str = "enforce") -> Policy:
    return parse_policy(POLICY.format(allowed=allowed, mode=mode), name="test")


def service_entry(host: str, *, namespace: str = "team-a", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "se", "namespace": namespace, **meta},
        "spec": {
            "hosts": [host],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
            "resolution": "DNS",
            "exportTo": ["."],
        },
    }


def sidecar(name: str = "default", *, namespace: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "egress": [{"hosts": ["./*", "istio-system/*"]}],
            "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        },
    }


def se_review(obj: Mapping[str, Any] | None = None, **fields: Any) -> Review:
    obj = service_entry("httpbin.org") if obj is None else obj
    values: dict[str, Any] = {
        "uid": "uid-1",
        "group": "networking.istio.io",
        "version": "v1",
        "kind": "ServiceEntry",
        "operation": "CREATE",
        "namespace": "team-a",
        "name": "se",
        "object": obj,
        "username": "alice",
        "groups": ("devs", "system:authenticated"),
    }
    values.update(fields)
    return Review(**values)


def sidecar_review(obj: Mapping[str, Any] | None = None, **fields: Any) -> Review:
    obj = sidecar() if obj is None else obj
    return se_review(obj, kind="Sidecar", name=obj["metadata"]["name"], **fields)


class CountingDecider:
    """The real engine, counting its calls: a second call for one input is a miss."""

    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, review: Review, policy: Policy, *, view: ClusterView) -> Decision:
        with self.lock:
            self.calls += 1
        return decide(review, policy, view=view)


class Lookups:
    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.lock = threading.Lock()

    def __call__(self, hit: bool) -> None:
        with self.lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1


class FakeSidecarView:
    """A cluster view with a generation, as ``webhook.kube.cluster_view.SidecarView`` has."""

    def __init__(self, *objects: Mapping[str, Any]) -> None:
        self.objects = list(objects)
        self.generation = 0
        self.reads = 0
        # namespace -> the addresses its Pods and Services hold (none given: unknown)
        self.addresses: dict[str, set[str]] = {}

    def add(self, obj: Mapping[str, Any]) -> None:
        self.objects.append(obj)
        self.generation += 1

    def hold(self, namespace: str, address: str) -> None:
        """A Pod or Service of ``namespace`` takes ``address``, as an informer event reports."""
        self.addresses.setdefault(namespace, set()).add(address)
        self.generation += 1

    def sidecars(self, namespace: str) -> Sequence[Mapping[str, Any]]:
        self.reads += 1
        return [o for o in self.objects if o["metadata"]["namespace"] == namespace]

    def namespace_addresses(self, namespace: str) -> Collection[str] | None:
        self.reads += 1
        return frozenset(self.addresses.get(namespace, ())) if self.addresses else None


class GenerationlessView(FakeSidecarView):
    """A view that cannot say when it changed."""

    generation = None  # type: ignore[assignment]

    def __init__(self, *objects: Mapping[str, Any]) -> None:
        super().__init__(*objects)
        del self.generation

    def add(self, obj: Mapping[str, Any]) -> None:
        self.objects.append(obj)


def cache_for(
    view: ClusterView | None = None, size: int = 16
) -> tuple[DecisionCache, CountingDecider, Lookups]:
    decider, lookups = CountingDecider(), Lookups()
    cache = DecisionCache(view or EmptyView(), size=size, on_lookup=lookups, decider=decider)
    return cache, decider, lookups


# --- what hits ---------------------------------------------------------------------------


def test_identical_review_with_another_uid_and_dry_run_is_a_hit() -> None:
    cache, decider, lookups = cache_for()
    p = policy()
    first, hit1 = cache.decide(se_review(service_entry("evil.example.com")), p)
    again, hit2 = cache.decide(
        se_review(service_entry("evil.example.com"), uid="uid-2", dry_run=True), p
    )
    assert (hit1, hit2) == (False, True)
    assert again == first
    assert not again.allowed
    assert decider.calls == 1
    assert (lookups.hits, lookups.misses) == (1, 1)


def test_an_equal_object_decoded_afresh_is_a_hit() -> None:
    # the API server sends a new body each time: equal content, different Python objects
    cache, decider, _ = cache_for()
    p = policy()
    body = orjson.dumps(service_entry("httpbin.org"))
    cache.decide(se_review(orjson.loads(body)), p)
    _, hit = cache.decide(se_review(orjson.loads(body), uid="uid-9"), p)
    assert hit is True
    assert decider.calls == 1


def stamped(obj: dict[str, Any], n: int) -> dict[str, Any]:
    """``obj`` as the API server hands it to validation: fresh uid, timestamp, managed fields."""
    meta = {
        **obj["metadata"],
        "uid": f"00000000-0000-0000-0000-{n:012d}",
        "creationTimestamp": f"2026-01-01T00:00:{n:02d}Z",
        "resourceVersion": str(1000 + n),
        "generation": n,
        "managedFields": [{"manager": f"argocd-{n}", "operation": "Apply"}],
    }
    return {**obj, "metadata": meta}


def test_a_retried_create_with_fresh_server_bookkeeping_is_a_hit() -> None:
    cache, decider, _ = cache_for()
    p = policy()
    evil = service_entry("evil.example.com")
    first, _ = cache.decide(se_review(stamped(evil, 1), dry_run=True), p)
    again, hit = cache.decide(se_review(stamped(evil, 2), uid="uid-2"), p)
    assert hit is True
    assert again == first
    assert decider.calls == 1


def test_no_check_reads_the_metadata_the_cache_ignores() -> None:
    # the cache may leave these out of its key only while no decision depends on them; the
    # review's own uid, read by the review parser, is another thing, and so are the object
    # references the audit writes into reports, which name objects after the decision
    core = Path(__file__).resolve().parents[2] / "webhook" / "core"
    not_deciding = {"reviews.py", "audit.py", "reports.py"}
    as_key = re.compile("|".join(rf"[\"']{re.escape(f)}[\"']" for f in sorted(IGNORED_METADATA)))
    readers = [
        f"{source.relative_to(core)}: {found.group()}"
        for source in sorted(core.rglob("*.py"))
        if source.name not in not_deciding
        for found in as_key.finditer(source.read_text())
    ]
    assert readers == [], "webhook/admission/decision_cache.py must keep these in its key"


def test_an_object_orjson_cannot_write_is_decided_uncached() -> None:
    cache, decider, _ = cache_for()
    huge = {**service_entry("httpbin.org"), "extra": 2**70}
    for _ in range(2):
        decision, hit = cache.decide(se_review(huge), policy())
        assert (decision.allowed, hit) == (True, None)
    assert decider.calls == 2


def test_the_same_policy_text_reloaded_keeps_its_entries() -> None:
    cache, decider, _ = cache_for()
    cache.decide(se_review(), policy())
    _, hit = cache.decide(se_review(), policy())
    assert hit is True
    assert decider.calls == 1


# --- what misses -------------------------------------------------------------------------


def test_a_policy_swap_misses_and_answers_with_the_new_policy() -> None:
    cache, decider, _ = cache_for()
    github = se_review(service_entry("github.com"))
    before, _ = cache.decide(github, policy("httpbin"))
    after, hit = cache.decide(github, policy("httpbin, github"))
    assert not before.allowed
    assert after.allowed
    assert hit is False
    assert decider.calls == 2


def test_switching_to_audit_mode_misses() -> None:
    cache, _, _ = cache_for()
    evil = se_review(service_entry("evil.example.com"))
    enforced, _ = cache.decide(evil, policy(mode="enforce"))
    audited, hit = cache.decide(evil, policy(mode="audit"))
    assert (enforced.verdict, audited.verdict, hit) == ("deny", "audit", False)


EVIL = service_entry("evil.example.com")


@pytest.mark.parametrize(
    ("label", "changed"),
    [
        ("user", {"username": "mallory"}),
        ("groups", {"groups": ("devs",)}),
        ("group order", {"groups": ("system:authenticated", "devs")}),
        ("operation", {"operation": "UPDATE", "old_object": service_entry("httpbin.org")}),
        ("namespace", {"namespace": "team-b"}),
        ("name", {"name": "other"}),
        ("kind", {"kind": "WorkloadEntry"}),
        ("group", {"group": "networking.istio.io.evil"}),
        ("version", {"version": "v1beta1"}),
        ("subresource", {"sub_resource": "status"}),
        ("object host", {"object": service_entry("httpbin.org.evil.example.com")}),
        ("object deep value", {"object": {**EVIL, "spec": {**EVIL["spec"], "resolution": "NONE"}}}),
        ("old object", {"operation": "UPDATE", "old_object": EVIL}),
        ("only the old object", {"old_object": service_entry("httpbin.org")}),
    ],
)
def test_any_field_the_decision_reads_changes_the_key(label: str, changed: dict[str, Any]) -> None:
    base = se_review(EVIL)
    other = replace(base, **changed)
    assert cache_key(other, "rev") != cache_key(base, "rev"), label
    cache, decider, _ = cache_for()
    p = policy()
    cache.decide(base, p)
    _, hit = cache.decide(other, p)
    assert hit is not True, label
    assert decider.calls == 2


def test_uid_and_dry_run_do_not_change_the_key() -> None:
    base = se_review()
    assert cache_key(replace(base, uid="x", dry_run=True), "rev") == cache_key(base, "rev")


def test_object_and_old_object_are_not_interchangeable() -> None:
    # a DELETE of X (old object only) must not answer a CREATE of X (object only)
    x = service_entry("evil.example.com")
    create = se_review(x)
    delete = se_review(None, operation="CREATE", object=None, old_object=x)
    assert cache_key(create, "rev") != cache_key(delete, "rev")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"n": 1}, {"n": True}),
        ({"n": 1}, {"n": 1.0}),
        ({"n": 1}, {"n": "1"}),
        ({"n": 0.0}, {"n": -0.0}),
        ({"n": None}, {}),
        ({"a": "b", "c": "d"}, {"a": 'b","c":"d'}),
        ({"a": ["b", "c"]}, {"a": ["b,c"]}),
        ({"a": {"b": "c"}}, {"a": '{"b":"c"}'}),
        ({"host": "httpbin.org"}, {"host": "httpbin.org\u0000"}),
        ({"host": "httpbin.org"}, {"host": "HTTPBIN.org"}),
    ],
)
def test_distinct_objects_never_share_a_digest(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert digest(a) != digest(b)


def test_a_managed_object_allowed_for_an_administrator_stays_denied_for_others() -> None:
    # break glass depends on the groups: the administrator's allow must not leak to a tenant
    managed = service_entry("httpbin.org", labels={MANAGED_LABEL: "true"})
    admin = se_review(managed, operation="DELETE", object=None, old_object=managed)
    admin = replace(admin, groups=("system:masters",))
    tenant = replace(admin, groups=("devs",))
    cache, _, _ = cache_for()
    p = policy()
    allowed, _ = cache.decide(admin, p)
    denied, hit = cache.decide(tenant, p)
    assert allowed.allowed
    assert not denied.allowed
    assert hit is False


def test_stripping_the_managed_label_is_not_answered_from_a_plain_update() -> None:
    # same new object, same everything; only the old object says it was egress-guard's
    plain = service_entry("httpbin.org")
    managed = service_entry("httpbin.org", labels={MANAGED_LABEL: "true"})
    ordinary = se_review(plain, operation="UPDATE", old_object=plain)
    stripping = se_review(plain, operation="UPDATE", old_object=managed)
    cache, _, _ = cache_for()
    p = policy()
    assert cache.decide(ordinary, p)[0].allowed
    decision, hit = cache.decide(stripping, p)
    assert hit is False
    assert not decision.allowed


# --- what is never cached ----------------------------------------------------------------


@pytest.mark.parametrize(
    "review",
    [
        se_review(namespace="istio-system"),
        se_review(kind="ConfigMap", group=""),
        se_review(username=CONTROLLER),
    ],
    ids=["excluded namespace", "ungoverned kind", "egress-guard's controller"],
)
def test_reviews_decided_before_any_check_skip_the_cache(review: Review) -> None:
    cache, decider, lookups = cache_for()
    p = policy()
    for _ in range(2):
        decision, hit = cache.decide(review, p)
        assert decision.allowed
        assert hit is None
    assert decider.calls == 2
    assert (lookups.hits, lookups.misses) == (0, 0)
    assert len(cache) == 0


def test_a_policy_without_a_revision_is_never_cached() -> None:
    cache, decider, _ = cache_for()
    p = replace(policy(), revision="")
    cache.decide(se_review(), p)
    _, hit = cache.decide(se_review(), p)
    assert hit is None
    assert decider.calls == 2


def test_size_zero_turns_the_cache_off() -> None:
    cache, decider, lookups = cache_for(size=0)
    p = policy()
    for _ in range(3):
        _, hit = cache.decide(se_review(), p)
        assert hit is None
    assert decider.calls == 3
    assert (lookups.hits, lookups.misses) == (0, 0)


def test_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="0"):
        DecisionCache(EmptyView(), size=-1)
    with pytest.raises(ValueError, match="decision-cache-size"):
        Settings(decision_cache_size=-1)


def test_a_failing_decision_is_not_cached() -> None:
    calls = 0

    def flaky(review: Review, policy: Policy, *, view: ClusterView) -> Decision:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug in a check")
        return decide(review, policy, view=view)

    cache = DecisionCache(EmptyView(), size=4, decider=flaky)
    with pytest.raises(RuntimeError):
        cache.decide(se_review(), policy())
    decision, hit = cache.decide(se_review(), policy())
    assert (decision.allowed, hit) == (True, False)


# --- the cluster view --------------------------------------------------------------------


def test_a_sidecar_decision_is_reused_only_while_the_view_is_unchanged() -> None:
    view = FakeSidecarView()
    cache, decider, _ = cache_for(view)
    p = policy()
    second = sidecar_review(sidecar("second"))
    first_answer, _ = cache.decide(second, p)
    _, hit = cache.decide(replace(second, uid="uid-2"), p)
    assert first_answer.allowed
    assert hit is True
    # another selector-less Sidecar appears: the same review must now be denied
    view.add(sidecar("default"))
    now, hit = cache.decide(replace(second, uid="uid-3"), p)
    assert hit is False
    assert not now.allowed
    assert "selector-less Sidecar 'default'" in now.reason
    assert decider.calls == 2


def test_an_event_during_the_decision_makes_its_entry_stale() -> None:
    view = FakeSidecarView()
    p = policy()

    def deciding_while_a_sidecar_lands(
        review: Review, policy: Policy, *, view: ClusterView
    ) -> Decision:
        decision = decide(review, policy, view=view)
        fake.add(sidecar("default"))  # the informer's event lands after the read
        return decision

    fake = view
    cache = DecisionCache(view, size=4, decider=deciding_while_a_sidecar_lands)
    cache.decide(sidecar_review(sidecar("second")), p)
    cache._decide = decide  # later decisions without the race
    decision, hit = cache.decide(sidecar_review(sidecar("second")), p)
    assert hit is False
    assert not decision.allowed


def test_a_view_without_a_generation_is_never_trusted_from_the_cache() -> None:
    view = GenerationlessView()
    cache, decider, _ = cache_for(view)
    p = policy()
    cache.decide(sidecar_review(sidecar("second")), p)
    view.add(sidecar("default"))
    decision, hit = cache.decide(sidecar_review(sidecar("second")), p)
    assert hit is False
    assert not decision.allowed
    assert decider.calls == 2
    assert len(cache) == 0


def test_decisions_that_never_read_the_view_survive_its_changes() -> None:
    view = FakeSidecarView()
    cache, decider, _ = cache_for(view)
    p = policy()
    cache.decide(se_review(), p)
    view.add(sidecar("default"))
    _, hit = cache.decide(se_review(), p)
    assert hit is True
    assert view.reads == 0
    assert decider.calls == 1


def endpoint_entry(address: str) -> dict[str, Any]:
    """A tenant ServiceEntry whose one STATIC endpoint is ``address``."""
    entry = service_entry("legacy.team-a.svc.cluster.local")
    entry["spec"] = {
        **entry["spec"],
        "resolution": "STATIC",
        "endpoints": [{"address": address}],
    }
    return entry


def test_an_address_decision_is_reused_only_while_the_egress_addresses_are_unchanged() -> None:
    # the read of the egress namespace's addresses must be recorded like a read of Sidecars:
    # a gateway pod taking the endpoint's address makes the cached allow stale
    view = FakeSidecarView()
    view.hold("external", "10.96.0.20")
    cache, decider, _ = cache_for(view)
    text = POLICY.format(allowed="httpbin", mode="enforce") + "internalNetworks: [10.0.0.0/8]\n"
    p = parse_policy(text, name="internal")
    review = se_review(endpoint_entry("10.60.0.12"), dry_run=True)
    first, _ = cache.decide(review, p)
    assert first.allowed
    _, hit = cache.decide(replace(review, uid="uid-2"), p)
    assert hit is True
    view.hold("external", "10.60.0.12")
    now, hit = cache.decide(replace(review, uid="uid-3"), p)
    assert hit is False
    assert not now.allowed
    assert "10.60.0.12 (namespace external)" in now.reason
    assert decider.calls == 2


def test_the_recording_view_notes_a_read_of_namespace_addresses() -> None:
    view = FakeSidecarView()
    view.hold("external", "10.96.0.20")
    recording = _Recording(view)
    assert recording.namespace_addresses("external") == {"10.96.0.20"}
    assert recording.consulted


@pytest.mark.parametrize(
    ("view", "expected"),
    [(EmptyView(), 0), (FakeSidecarView(), 0), (GenerationlessView(), None)],
    ids=["empty", "with generation", "without"],
)
def test_view_generation(view: ClusterView, expected: int | None) -> None:
    assert view_generation(view) == expected


def test_a_boolean_is_not_a_generation() -> None:
    class Flagged(GenerationlessView):
        generation = True  # type: ignore[assignment]

    assert view_generation(Flagged()) is None


# --- bounds and threads ------------------------------------------------------------------


def test_the_least_recently_used_entry_is_evicted_at_the_bound() -> None:
    cache, decider, _ = cache_for(size=2)
    p = policy()
    a, b, c = (se_review(name=n) for n in "abc")
    cache.decide(a, p)
    cache.decide(b, p)
    cache.decide(a, p)  # a is now the most recent
    cache.decide(c, p)  # evicts b
    assert len(cache) == 2
    assert cache.decide(a, p)[1] is True
    assert cache.decide(c, p)[1] is True
    assert cache.decide(b, p)[1] is False
    assert decider.calls == 4


def test_concurrent_lookups_count_every_call_once() -> None:
    cache, _, lookups = cache_for(size=8)
    p = policy()
    reviews = [se_review(name=f"se-{i}") for i in range(12)]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(50):
                for r in reviews:
                    assert cache.decide(r, p)[0].allowed
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert lookups.hits + lookups.misses == 4 * 50 * 12
    assert len(cache) == 8


# --- through the app ---------------------------------------------------------------------


def admission(obj: Mapping[str, Any], *, uid: str, dry_run: bool = False) -> bytes:
    return orjson.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "networking.istio.io", "version": "v1", "kind": "ServiceEntry"},
                "resource": {
                    "group": "networking.istio.io",
                    "version": "v1",
                    "resource": "serviceentries",
                },
                "operation": "CREATE",
                "namespace": "team-a",
                "name": "se",
                "userInfo": {"username": "alice", "groups": ["devs"]},
                "object": obj,
                "oldObject": None,
                "dryRun": dry_run,
            },
        }
    )


def app_client(store: PolicyStore, size: int = 64) -> tuple[FlaskClient, Metrics]:
    metrics = Metrics()
    app = create_app(
        Settings(max_body_bytes=64 * 1024, decision_cache_size=size),
        policy_store=store,
        metrics=metrics,
    )
    return app.test_client(), metrics


def store_with(allowed: str) -> PolicyStore:
    store = PolicyStore()
    assert store.update(POLICY.format(allowed=allowed, mode="enforce"), origin="test").ok
    return store


def validate(client: FlaskClient, body: bytes) -> dict[str, Any]:
    resp = client.post("/validate", data=body, content_type="application/json")
    assert resp.status_code == 200
    response: dict[str, Any] = orjson.loads(resp.data)["response"]
    return response


def cache_count(metrics: Metrics, result: str) -> float:
    value = metrics.registry.get_sample_value(
        "egress_guard_decision_cache_total", {"result": result}
    )
    assert value is not None
    return value


def test_a_cached_answer_echoes_the_new_uid_and_counts_a_hit() -> None:
    client, metrics = app_client(store_with("httpbin"))
    evil = service_entry("evil.example.com")
    # a server-side dry-run, then the same dry-run again (a GitOps diff loop)
    first = validate(client, admission(evil, uid="uid-1", dry_run=True))
    second = validate(client, admission(evil, uid="uid-2", dry_run=True))
    assert first["uid"] == "uid-1"
    assert second["uid"] == "uid-2"
    assert {k: v for k, v in second.items() if k != "uid"} == {
        k: v for k, v in first.items() if k != "uid"
    }
    assert second["allowed"] is False
    assert (cache_count(metrics, "hit"), cache_count(metrics, "miss")) == (1.0, 1.0)
    text = client.get("/metrics").get_data(as_text=True)
    assert 'egress_guard_decision_cache_total{result="hit"} 1.0' in text


def test_a_policy_edit_through_the_store_is_obeyed_at_once() -> None:
    store = store_with("httpbin")
    client, metrics = app_client(store)
    github = service_entry("github.com")
    assert validate(client, admission(github, uid="u1"))["allowed"] is False
    assert store.update(POLICY.format(allowed="httpbin, github", mode="enforce"), origin="t").ok
    assert validate(client, admission(github, uid="u2"))["allowed"] is True
    assert cache_count(metrics, "hit") == 0.0


def test_the_app_without_a_cache_counts_nothing() -> None:
    client, metrics = app_client(store_with("httpbin"), size=0)
    for uid in ("u1", "u2"):
        assert validate(client, admission(service_entry("httpbin.org"), uid=uid))["allowed"]
    assert (cache_count(metrics, "hit"), cache_count(metrics, "miss")) == (0.0, 0.0)


def test_the_decision_log_says_whether_it_was_a_hit(caplog: pytest.LogCaptureFixture) -> None:
    client, _ = app_client(store_with("httpbin"))
    with caplog.at_level("INFO", logger="webhook.admission.decisions"):
        for uid in ("u1", "u2"):
            validate(client, admission(service_entry("httpbin.org"), uid=uid, dry_run=True))
    fields = [
        getattr(r, "fields", {}) for r in caplog.records if r.name == "webhook.admission.decisions"
    ]
    assert [(f["uid"], f["cache"]) for f in fields] == [("u1", "miss"), ("u2", "hit")]


def test_the_app_never_digests_a_plain_create() -> None:
    # a CREATE is a new object: the digest would cost more than the cache could give back
    client, metrics = app_client(store_with("httpbin"))
    for uid in ("u1", "u2"):
        assert validate(client, admission(service_entry("httpbin.org"), uid=uid))["allowed"]
    assert (cache_count(metrics, "hit"), cache_count(metrics, "miss")) == (0.0, 0.0)


@pytest.mark.parametrize(
    ("review", "admitted"),
    [
        (se_review(EVIL), False),
        (se_review(EVIL, dry_run=True), True),
        (se_review(EVIL, operation="UPDATE", old_object=EVIL), True),
        (se_review(EVIL, operation="DELETE", object=None, old_object=EVIL), False),
        (replace(se_review(EVIL), kind="VirtualService"), True),
    ],
    ids=["create", "dry-run create", "update", "delete", "virtualservice create"],
)
def test_likely_repeated_reviews(review: Review, admitted: bool) -> None:
    assert likely_repeated(review) is admitted

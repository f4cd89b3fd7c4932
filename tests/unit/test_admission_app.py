"""The flask adapter: AdmissionReview in, AdmissionReview out, and 4xx for anything else."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from webhook.admission.app import create_app
from webhook.admission.metrics import Metrics
from webhook.admission.review_routes import ReleasedWhenSent
from webhook.core.mutations import Mutation
from webhook.core.policy import Policy
from webhook.core.reviews import Review
from webhook.policy_runtime import PolicyStore
from webhook.settings import Settings

pytestmark = pytest.mark.unit

POLICY = """
egress:
  namespace: external
mode: {mode}
externalServices:
  - name: httpbin
    hosts: [httpbin.org]
    ports: [{{number: 443, protocol: TLS}}]
allow:
  - from: {{namespace: team-a}}
    to: [httpbin]
"""


def service_entry(host: str, *, namespace: str = "team-a", export: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "hosts": [host],
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        "resolution": "DNS",
    }
    if not export:
        spec["exportTo"] = ["."]
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": "se", "namespace": namespace},
        "spec": spec,
    }


def review(
    obj: Mapping[str, Any] | None,
    *,
    uid: str = "8d1f-uid",
    kind: str = "ServiceEntry",
    group: str = "networking.istio.io",
    namespace: str = "team-a",
    operation: str = "CREATE",
    dry_run: bool = False,
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": kind.lower() + "s"},
            "operation": operation,
            "namespace": namespace,
            "name": "se",
            "userInfo": {"username": "alice", "groups": ["devs"]},
            "object": obj,
            "oldObject": None,
            "dryRun": dry_run,
        },
    }


def loaded_store(mode: str = "enforce") -> PolicyStore:
    store = PolicyStore()
    assert store.update(POLICY.format(mode=mode), origin="test").ok
    return store


def make_app(store: PolicyStore | None = None, **kwargs: Any) -> Flask:
    return create_app(
        Settings(max_body_bytes=64 * 1024), policy_store=store or loaded_store(), **kwargs
    )


@pytest.fixture
def client() -> Iterator[FlaskClient]:
    yield make_app().test_client()


def post(client: FlaskClient, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    resp = client.post(path, data=data, content_type="application/json")
    return resp.status_code, orjson.loads(resp.data)


def test_allowed_service_entry_is_admitted_and_echoes_uid(client: FlaskClient) -> None:
    status, body = post(client, "/validate", review(service_entry("httpbin.org"), uid="abc-1"))
    assert status == 200
    assert body["apiVersion"] == "admission.k8s.io/v1"
    assert body["kind"] == "AdmissionReview"
    assert body["response"] == {"uid": "abc-1", "allowed": True}


def test_denied_service_entry_carries_403_and_the_reason(client: FlaskClient) -> None:
    status, body = post(client, "/validate", review(service_entry("evil.example.com")))
    assert status == 200
    response = body["response"]
    assert response["uid"] == "8d1f-uid"
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["reason"] == "Forbidden"
    assert "evil.example.com" in response["status"]["message"]
    assert "ServiceEntry team-a/se" in response["status"]["message"]


def test_dry_run_is_answered_like_a_real_request(client: FlaskClient) -> None:
    for host in ("httpbin.org", "evil.example.com"):
        _, real = post(client, "/validate", review(service_entry(host)))
        _, dry = post(client, "/validate", review(service_entry(host), dry_run=True))
        assert dry == real


def test_audit_mode_admits_with_warnings() -> None:
    client = make_app(loaded_store("audit")).test_client()
    _, body = post(client, "/validate", review(service_entry("evil.example.com")))
    response = body["response"]
    assert response["allowed"] is True
    assert "status" not in response
    assert any("evil.example.com" in w for w in response["warnings"])


def test_malformed_object_inside_a_good_review_is_denied_not_an_error(
    client: FlaskClient,
) -> None:
    obj = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "spec": "garbage"}
    status, body = post(client, "/validate", review(obj))
    assert status == 200
    assert body["response"]["allowed"] is False


def test_query_string_of_the_api_server_is_ignored(client: FlaskClient) -> None:
    resp = client.post(
        "/validate?timeout=10s",
        data=orjson.dumps(review(service_entry("httpbin.org"))),
        content_type="application/json",
    )
    assert resp.status_code == 200
    assert orjson.loads(resp.data)["response"]["allowed"] is True


def _no_request() -> dict[str, Any]:
    body = review(service_entry("httpbin.org"))
    del body["request"]
    return body


def _no_uid() -> dict[str, Any]:
    body = review(service_entry("httpbin.org"))
    del body["request"]["uid"]
    return body


def _v1beta1() -> dict[str, Any]:
    body = review(service_entry("httpbin.org"))
    body["apiVersion"] = "admission.k8s.io/v1beta1"
    return body


def _bad_operation() -> dict[str, Any]:
    body = review(service_entry("httpbin.org"))
    body["request"]["operation"] = "PATCH"
    return body


def _object_is_a_list() -> dict[str, Any]:
    body = review(service_entry("httpbin.org"))
    body["request"]["object"] = ["not", "an", "object"]
    return body


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"AdmissionReview"', "JSON object"),
        (b"{}", "AdmissionReview"),
        (orjson.dumps({"kind": "Pod", "apiVersion": "v1"}), "AdmissionReview"),
        (orjson.dumps(_no_request()), "no request"),
        (orjson.dumps(_no_uid()), "no uid"),
        (orjson.dumps(_v1beta1()), "admission.k8s.io/v1"),
        (orjson.dumps(_bad_operation()), "operation"),
        (orjson.dumps(_object_is_a_list()), "request.object"),
        (b'{"a": 1e999999}', ""),
        (b"\xff\xfe\x00", "not JSON"),
    ],
)
@pytest.mark.parametrize("path", ["/validate", "/mutate"])
def test_requests_that_are_not_reviews_get_400(
    client: FlaskClient, path: str, body: bytes, fragment: str
) -> None:
    status, answer = post(client, path, body)
    assert status == 400
    assert answer["status"] == 400
    assert fragment in answer["error"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_wrong_content_type_gets_415(client: FlaskClient, content_type: str) -> None:
    resp = client.post(
        "/validate",
        data=orjson.dumps(review(service_entry("httpbin.org"))),
        headers={"Content-Type": content_type} if content_type else {},
    )
    assert resp.status_code == 415
    assert "application/json" in orjson.loads(resp.data)["error"]


def test_json_with_charset_is_accepted(client: FlaskClient) -> None:
    resp = client.post(
        "/validate",
        data=orjson.dumps(review(service_entry("httpbin.org"))),
        content_type="application/json; charset=utf-8",
    )
    assert resp.status_code == 200


def test_body_over_the_limit_gets_413_without_being_decided(client: FlaskClient) -> None:
    big = review(service_entry("evil.example.com"))
    big["request"]["object"]["metadata"]["annotations"] = {"pad": "x" * (70 * 1024)}
    resp = client.post("/validate", data=orjson.dumps(big), content_type="application/json")
    assert resp.status_code == 413
    assert orjson.loads(resp.data)["status"] == 413


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("POST", "/nope", 404),
        ("GET", "/validate", 405),
        ("PUT", "/mutate", 405),
        ("POST", "/healthz", 405),
    ],
)
def test_unknown_routes_and_methods_get_json_4xx(
    client: FlaskClient, method: str, path: str, status: int
) -> None:
    resp = client.open(path, method=method, data=b"{}", content_type="application/json")
    assert resp.status_code == status
    assert orjson.loads(resp.data)["status"] == status


def test_without_any_good_policy_validate_denies_and_readyz_fails() -> None:
    store = PolicyStore()
    store.update("egress: [broken", origin="test")
    client = make_app(store).test_client()
    _, body = post(client, "/validate", review(service_entry("httpbin.org")))
    assert body["response"]["allowed"] is False
    assert "no valid egress policy" in body["response"]["status"]["message"]
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert orjson.loads(ready.data)["problems"]
    assert client.get("/healthz").status_code == 200


def test_readyz_reports_the_revision_once_a_policy_is_loaded(client: FlaskClient) -> None:
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert len(orjson.loads(resp.data)["policy_revision"]) == 12


def test_a_crashing_check_is_denied_not_500() -> None:
    def broken_view_sidecars(namespace: str) -> Any:
        raise RuntimeError("informer exploded")

    class BrokenView:
        sidecars = staticmethod(broken_view_sidecars)

    client = make_app(view=BrokenView()).test_client()
    sidecar = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Sidecar",
        "metadata": {"name": "default", "namespace": "team-a"},
        "spec": {"egress": [{"hosts": ["./*"]}], "outboundTrafficPolicy": {"mode": "ALLOW_ANY"}},
    }
    status, body = post(client, "/validate", review(sidecar, kind="Sidecar"))
    assert status == 200
    assert body["response"]["allowed"] is False


def test_mutate_returns_a_base64_json_patch() -> None:
    ops = ({"op": "add", "path": "/metadata/labels/x", "value": "y"},)
    seen: list[tuple[Review, Policy]] = []

    def mutator(rev: Review, policy: Policy) -> Mutation:
        seen.append((rev, policy))
        return Mutation(ops, ("egress-guard: default-deny Sidecar added",))

    client = make_app(mutator=mutator).test_client()
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}}
    _, body = post(client, "/mutate", review(ns, kind="Namespace", group="", uid="m-1"))
    response = body["response"]
    assert response["uid"] == "m-1"
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    assert orjson.loads(base64.b64decode(response["patch"])) == list(ops)
    assert response["warnings"] == ["egress-guard: default-deny Sidecar added"]
    assert seen[0][0].kind == "Namespace"
    assert seen[0][0].object == ns


def test_mutate_without_changes_has_no_patch() -> None:
    client = make_app(mutator=lambda r, p: Mutation(())).test_client()
    _, body = post(client, "/mutate", review(service_entry("httpbin.org")))
    assert body["response"] == {"uid": "8d1f-uid", "allowed": True}


def test_a_refusing_mutation_denies_with_its_reason() -> None:
    client = make_app(
        mutator=lambda r, p: Mutation(refusal="carries the injector's marks")
    ).test_client()
    status, body = post(client, "/mutate", review(service_entry("httpbin.org"), uid="m-2"))
    assert status == 200
    response = body["response"]
    assert response["uid"] == "m-2"
    assert response["allowed"] is False
    assert "refused before injection: carries the injector's marks" in response["status"]["message"]
    assert "patch" not in response


def test_a_crashing_mutation_admits_unchanged_with_a_warning() -> None:
    def mutator(rev: Review, policy: Policy) -> Mutation:
        raise KeyError("boom")

    client = make_app(mutator=mutator).test_client()
    status, body = post(client, "/mutate", review(service_entry("httpbin.org")))
    assert status == 200
    assert body["response"]["allowed"] is True
    assert "patch" not in body["response"]
    assert body["response"]["warnings"]


def test_metrics_count_decisions_and_refusals() -> None:
    metrics = Metrics()
    store = loaded_store()
    metrics.watch(store)
    client = make_app(store, metrics=metrics).test_client()
    post(client, "/validate", review(service_entry("httpbin.org")))
    post(client, "/validate", review(service_entry("evil.example.com")))
    post(client, "/validate", b"junk")
    text = client.get("/metrics").data.decode()
    assert (
        'egress_guard_admission_requests_total{decision="deny",endpoint="validate",'
        'kind="ServiceEntry",operation="CREATE"} 1.0' in text
    )
    assert (
        'egress_guard_admission_requests_total{decision="allow",endpoint="validate",'
        'kind="ServiceEntry",operation="CREATE"} 1.0' in text
    )
    assert 'egress_guard_admission_bad_requests_total{endpoint="validate",status="400"} 1.0' in text
    assert 'egress_guard_admission_duration_seconds_count{endpoint="validate"} 2.0' in text
    revision = store.current.revision if store.current else "?"
    assert f'egress_guard_policy_info{{mode="enforce",origin="test",revision="{revision}"}}' in text
    assert "egress_guard_policy_loaded 1.0" in text
    assert 'egress_guard_policy_reloads_total{result="failure"} 0.0' in text


def test_each_decision_is_one_structured_log_line(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="webhook.admission.decisions")
    post(client, "/validate", review(service_entry("evil.example.com"), uid="log-1", dry_run=True))
    records = [r for r in caplog.records if r.name == "webhook.admission.decisions"]
    assert len(records) == 1
    fields = records[0].fields  # type: ignore[attr-defined]
    assert fields["uid"] == "log-1"
    assert fields["user"] == "alice"
    assert fields["kind"] == "ServiceEntry"
    assert (fields["namespace"], fields["name"]) == ("team-a", "se")
    assert fields["operation"] == "CREATE"
    assert fields["decision"] == "deny"
    assert "evil.example.com" in fields["reason"]
    assert fields["dry_run"] is True
    assert len(fields["policy_revision"]) == 12
    assert fields["latency_ms"] >= 0


def test_policy_swap_is_seen_by_the_next_request() -> None:
    store = loaded_store()
    client = make_app(store).test_client()
    _, before = post(client, "/validate", review(service_entry("evil.example.com")))
    assert before["response"]["allowed"] is False
    store.update(
        POLICY.format(mode="enforce").replace("httpbin.org", "evil.example.com"), origin="t"
    )
    _, after = post(client, "/validate", review(service_entry("evil.example.com")))
    assert after["response"]["allowed"] is True


def call_wsgi(app: Flask, body: bytes, *, content_length: str | None) -> tuple[str, bytes]:
    """Call the app as gunicorn does for a chunked request (no Content-Length)."""
    import io

    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/validate",
        "QUERY_STRING": "",
        "CONTENT_TYPE": "application/json",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8443",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "https",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
    }
    if content_length is not None:
        environ["CONTENT_LENGTH"] = content_length
    statuses: list[str] = []
    chunks = app(environ, lambda status, headers, exc=None: statuses.append(status))
    return statuses[0], b"".join(chunks)


def test_chunked_review_within_the_limit_is_decided() -> None:
    status, body = call_wsgi(
        make_app(), orjson.dumps(review(service_entry("httpbin.org"))), content_length=None
    )
    assert status.startswith("200")
    assert orjson.loads(body)["response"]["allowed"] is True


def test_chunked_review_over_the_limit_gets_413() -> None:
    big = review(service_entry("httpbin.org"))
    big["request"]["object"]["metadata"]["annotations"] = {"pad": "x" * (70 * 1024)}
    status, body = call_wsgi(make_app(), orjson.dumps(big), content_length=None)
    assert status.startswith("413")
    assert orjson.loads(body)["status"] == 413


def test_nonsense_content_length_is_400() -> None:
    status, _ = call_wsgi(make_app(), b"{}", content_length="twelve")
    assert status.startswith("400")


def test_body_exactly_at_the_limit_is_read() -> None:
    doc = review(service_entry("httpbin.org"))
    raw = orjson.dumps(doc)
    pad = 64 * 1024 - len(raw)
    padded = raw[:-1] + b" " * pad + b"}"
    assert len(padded) == 64 * 1024
    status, _ = call_wsgi(make_app(), padded, content_length=str(len(padded)))
    assert status.startswith("200")


def test_a_large_review_is_freed_only_after_the_server_has_sent_the_answer() -> None:
    import io

    big = review(service_entry("httpbin.org"))
    big["request"]["object"]["metadata"]["annotations"] = {"pad": "x" * (300 * 1024)}
    body = orjson.dumps(big)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/validate",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
    }
    app = create_app(Settings(max_body_bytes=1024 * 1024), policy_store=loaded_store())
    answer = app(environ, lambda status, headers, exc=None: None)
    assert isinstance(answer, ReleasedWhenSent)
    (sent,) = list(answer)
    assert orjson.loads(sent)["response"]["allowed"] is True
    assert len(answer.kept) == 1  # still alive while the server writes the body
    answer.close()  # what the WSGI server calls once the body is written
    assert answer.kept == []

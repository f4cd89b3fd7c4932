"""The real service: ``egress-guard serve`` under gunicorn over TLS, driven over HTTPS.

One service per session answers the read-only tests; tests that edit its policy or certificate
files, or stop it, start a service of their own.
"""

from __future__ import annotations

import base64
import re
import shutil
import signal
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from cryptography import x509

from tests.integration.service import (
    Service,
    admission_review,
    namespace_object,
    running_service,
    service_entry,
    sidecar,
)
from webhook.tls import CertificateFiles, generate_files, issue_serving_cert, write_pair

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

POLICY = """
apiVersion: egress-guard.dev/v1alpha1
kind: EgressPolicy
mode: {mode}
egress: {{namespace: external}}
externalServices:
  - name: httpbin
    hosts: [httpbin.org]
    ports: [{{number: 443, protocol: TLS}}]
  - name: example
    hosts: ["*.example.com"]
    ports: [{{number: 443, protocol: TLS}}]
allow:
  - name: team-a-httpbin
    from: {{namespace: team-a}}
    to: [httpbin]
"""
HTTP_TIMEOUT = 10


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return generate_files(tmp_path_factory.mktemp("certs"), ["127.0.0.1", "localhost"])


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory, certs: CertificateFiles) -> Iterator[Service]:
    work = tmp_path_factory.mktemp("service")
    policy = work / "policy.yaml"
    policy.write_text(POLICY.format(mode="enforce"))
    with running_service(
        work,
        cert_file=certs.cert_file,
        key_file=certs.key_file,
        ca_file=certs.ca_file,
        policy_file=policy,
    ) as svc:
        yield svc


def client(svc: Service) -> requests.Session:
    """A keep-alive HTTPS client trusting only the service's CA."""
    s = requests.Session()
    # REQUESTS_CA_BUNDLE in the environment would otherwise override verify
    s.trust_env = False
    s.verify = str(svc.ca_file)
    return s


@pytest.fixture
def session(service: Service) -> Iterator[requests.Session]:
    with client(service) as s:
        yield s


@pytest.fixture
def own_service(tmp_path: Path, certs: CertificateFiles) -> Callable[..., Any]:
    """Start a service with its own copy of the policy and certificate files."""

    def start(mode: str = "enforce", extra: tuple[str, ...] = ()) -> Any:
        for name in ("ca.crt", "ca.key", "tls.crt", "tls.key"):
            shutil.copy2(certs.ca_file.parent / name, tmp_path / name)
        (tmp_path / "tls.key").chmod(0o600)
        policy = tmp_path / "policy.yaml"
        policy.write_text(POLICY.format(mode=mode))
        return running_service(
            tmp_path,
            cert_file=tmp_path / "tls.crt",
            key_file=tmp_path / "tls.key",
            ca_file=tmp_path / "ca.crt",
            policy_file=policy,
            extra_args=("--policy-poll-interval", "0.2", *extra),
        )

    return start


def post(
    session: requests.Session, service: Service, path: str, body: Any, **kw: Any
) -> requests.Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = kw.pop("headers", {"Content-Type": "application/json"})
    return session.post(service.url + path, data=data, headers=headers, timeout=HTTP_TIMEOUT, **kw)


def se_review(host: str, **kw: Any) -> dict[str, Any]:
    namespace = kw.pop("namespace", "team-a")
    obj = service_entry([host], namespace=namespace)
    return admission_review(obj, kind="ServiceEntry", **kw)


# --- decisions -------------------------------------------------------------------------------


def test_allowed_service_entry(session: requests.Session, service: Service) -> None:
    review = se_review("httpbin.org", uid="allow-1")
    resp = post(session, service, "/validate", review)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.json() == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "allow-1", "allowed": True},
    }


def test_denied_service_entry_says_why(session: requests.Session, service: Service) -> None:
    resp = post(session, service, "/validate", se_review("api.evil.io", uid="deny-1"))
    response = resp.json()["response"]
    assert response["uid"] == "deny-1"
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert "api.evil.io" in response["status"]["message"]
    assert "team-a" in response["status"]["message"]


def test_wildcard_entry_does_not_allow_its_apex(
    session: requests.Session, service: Service
) -> None:
    # *.example.com is listed but allowed to nobody; and never covers example.com anyway
    for host in ("example.com", "a.example.com"):
        resp = post(session, service, "/validate", se_review(host))
        assert resp.json()["response"]["allowed"] is False


def test_dry_run_gets_the_same_answer(session: requests.Session, service: Service) -> None:
    for host in ("httpbin.org", "api.evil.io"):
        real = post(session, service, "/validate", se_review(host, uid="u")).json()
        dry = post(session, service, "/validate", se_review(host, uid="u", dry_run=True)).json()
        assert dry == real


def test_every_answer_echoes_its_uid(session: requests.Session, service: Service) -> None:
    for uid in ("a", "0c6f0e06-1c5e-4a5e-bd4e-7ae4d0a9b3c1", "ünï-çødé", "x" * 300):
        resp = post(session, service, "/validate", se_review("httpbin.org", uid=uid))
        assert resp.json()["response"]["uid"] == uid


def test_api_server_query_string_is_ignored(session: requests.Session, service: Service) -> None:
    resp = post(session, service, "/validate?timeout=10s", se_review("httpbin.org"))
    assert resp.json()["response"]["allowed"] is True


def test_mutate_answers_a_new_namespace_with_a_json_patch(
    session: requests.Session, service: Service
) -> None:
    import jsonpatch

    namespace = namespace_object("team-new")
    del namespace["metadata"]["labels"]["istio-injection"]
    review = admission_review(namespace, kind="Namespace", group="", uid="mut-1")
    resp = post(session, service, "/mutate", review)
    assert resp.status_code == 200
    response = resp.json()["response"]
    assert response["uid"] == "mut-1"
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    ops = orjson.loads(base64.b64decode(response["patch"]))
    patched = jsonpatch.apply_patch(namespace, ops)
    assert patched["metadata"]["labels"]["istio-injection"] == "enabled"
    assert response["warnings"]


def test_mutate_leaves_a_labelled_namespace_alone(
    session: requests.Session, service: Service
) -> None:
    review = admission_review(namespace_object("team-new"), kind="Namespace", group="")
    response = post(session, service, "/mutate", review).json()["response"]
    assert response["allowed"] is True
    assert "patch" not in response


def test_sidecar_review_is_decided(session: requests.Session, service: Service) -> None:
    review = admission_review(sidecar("team-a"), kind="Sidecar", uid="sc-1")
    resp = post(session, service, "/validate", review)
    assert resp.status_code == 200
    assert resp.json()["response"]["uid"] == "sc-1"


def test_audit_mode_admits_with_warnings(own_service: Callable[..., Any]) -> None:
    with own_service("audit") as svc, client(svc) as s:
        resp = post(s, svc, "/validate", se_review("api.evil.io"))
        response = resp.json()["response"]
        assert response["allowed"] is True
        assert any("api.evil.io" in w for w in response["warnings"])
        # kubectl prints these: they must be single printable lines within the size limit
        assert all("\n" not in w and len(w) <= 256 for w in response["warnings"])


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"garbage",
        b"{}",
        orjson.dumps({"apiVersion": "v1", "kind": "Pod"}),
        orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
        orjson.dumps(
            {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {"kind": {"group": "", "version": "v1", "kind": "Pod"}},
            }
        ),
    ],
    ids=["garbage", "empty-object", "not-a-review", "no-request", "no-uid"],
)
def test_not_a_review_is_400(session: requests.Session, service: Service, body: bytes) -> None:
    resp = post(session, service, "/validate", body)
    assert resp.status_code == 400
    assert resp.json()["status"] == 400


def read_response(tls: ssl.SSLSocket) -> tuple[int, bytes]:
    """One HTTP/1.1 response with Content-Length from a raw TLS socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, "connection closed before the response headers"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert headers.get("Connection") != "close", "keep-alive expected"
    length = int(headers["Content-Length"])
    while len(body) < length:
        chunk = tls.recv(65536)
        assert chunk, "connection closed inside the body"
        body += chunk
    return int(lines[0].split()[1]), body


def test_body_over_six_mebibytes_is_413_before_it_is_sent(service: Service) -> None:
    # announce 7 MiB but send 1 KiB: the answer must come from Content-Length alone
    head = (
        b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(7 * 1024 * 1024).encode() + b"\r\n\r\n"
    )
    ctx = service.ssl_context()
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(head + b"{" + b" " * 1023)
        status, body = read_response(tls)
    assert status == 413
    assert orjson.loads(body)["status"] == 413


def test_service_survives_a_huge_body(session: requests.Session, service: Service) -> None:
    review = se_review("httpbin.org")
    review["request"]["object"]["metadata"]["annotations"]["pad"] = "x" * (7 * 1024 * 1024)
    try:
        resp = post(session, service, "/validate", review)
    except requests.ConnectionError:
        pass  # the service may close before the client finished sending: also a refusal
    else:
        assert resp.status_code == 413
    assert post(session, service, "/validate", se_review("httpbin.org")).status_code == 200


def test_wrong_content_type_is_415(session: requests.Session, service: Service) -> None:
    resp = post(
        session,
        service,
        "/validate",
        se_review("httpbin.org"),
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status_code == 415


def test_unknown_path_is_404(session: requests.Session, service: Service) -> None:
    resp = post(session, service, "/admit", se_review("httpbin.org"))
    assert resp.status_code == 404


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused(service: Service) -> None:
    ctx = ssl.create_default_context(cafile=str(service.ca_file))
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client could; the server must not
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
        ctx.wrap_socket(raw, server_hostname="127.0.0.1"),
    ):
        pass
    # TLS 1.2 is fine
    ctx12 = ssl.create_default_context(cafile=str(service.ca_file))
    ctx12.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=5) as raw,
        ctx12.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() == "TLSv1.2"


def test_plain_http_gets_no_answer(service: Service) -> None:
    with socket.create_connection(("127.0.0.1", service.port), timeout=5) as raw:
        raw.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = raw.recv(1024)
        except ConnectionResetError:
            data = b""
    assert not data.startswith(b"HTTP/1.1 200")


# --- health, readiness, metrics, logs --------------------------------------------------------


def test_health_and_readiness(session: requests.Session, service: Service) -> None:
    assert session.get(service.url + "/healthz", timeout=HTTP_TIMEOUT).status_code == 200
    ready = session.get(service.url + "/readyz", timeout=HTTP_TIMEOUT)
    assert ready.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{12}", ready.json()["policy_revision"])


def test_metrics_expose_the_series(session: requests.Session, service: Service) -> None:
    post(session, service, "/validate", se_review("api.evil.io"))
    text = session.get(service.url + "/metrics", timeout=HTTP_TIMEOUT).text
    for series in (
        'egress_guard_admission_requests_total{decision="deny",endpoint="validate",'
        'kind="ServiceEntry",operation="CREATE"}',
        'egress_guard_admission_duration_seconds_bucket{endpoint="validate",le="0.005"}',
        "egress_guard_policy_info{",
        "egress_guard_policy_loaded 1.0",
        'egress_guard_policy_reloads_total{result="success"} 1.0',
        'egress_guard_certificate_reloads_total{result="failure"} 0.0',
    ):
        assert series in text, series


def cache_hits(session: requests.Session, service: Service) -> float:
    text = session.get(service.url + "/metrics", timeout=HTTP_TIMEOUT).text
    found = re.search(r'^egress_guard_decision_cache_total\{result="hit"\} (\S+)$', text, re.M)
    assert found, "no decision cache series"
    return float(found.group(1))


def test_a_resubmitted_review_is_answered_from_the_decision_cache(
    session: requests.Session, service: Service
) -> None:
    # a host no other test uses, so the first answer is a miss whatever ran before
    host = f"cache-{uuid.uuid4().hex[:8]}.evil.io"
    before = cache_hits(session, service)
    # two server-side dry-runs of one object, as a GitOps diff loop sends them (plain CREATEs are
    # new objects and never digested)
    first = post(session, service, "/validate", se_review(host, uid="cache-1", dry_run=True)).json()
    again = post(session, service, "/validate", se_review(host, uid="cache-2", dry_run=True)).json()
    assert cache_hits(session, service) == before + 1
    assert (first["response"]["uid"], again["response"]["uid"]) == ("cache-1", "cache-2")
    assert first["response"]["allowed"] is again["response"]["allowed"] is False
    assert again["response"]["status"] == first["response"]["status"]


def test_a_large_review_is_decided_every_time_past_the_decision_cache(
    session: requests.Session, service: Service
) -> None:
    # a 2 MiB object (under the API server's 3 MiB): sent twice, decided twice, never digested
    host = f"large-{uuid.uuid4().hex[:8]}.evil.io"
    before = cache_hits(session, service)
    answers = []
    for uid in ("large-1", "large-2"):
        review = se_review(host, uid=uid, dry_run=True)
        review["request"]["object"]["metadata"]["annotations"]["pad"] = "x" * (2 * 1024 * 1024)
        resp = post(session, service, "/validate", review)
        assert resp.status_code == 200
        answers.append(resp.json()["response"])
    assert [a["uid"] for a in answers] == ["large-1", "large-2"]
    assert [a["allowed"] for a in answers] == [False, False]
    assert host in answers[1]["status"]["message"]
    assert cache_hits(session, service) == before
    # and the worker goes on answering small reviews, from the cache as before
    small = se_review(host, uid="small-1", dry_run=True)
    post(session, service, "/validate", small)
    assert post(session, service, "/validate", small).json()["response"]["allowed"] is False
    assert cache_hits(session, service) == before + 1


def test_each_decision_is_one_json_log_line(session: requests.Session, service: Service) -> None:
    post(session, service, "/validate", se_review("api.evil.io", uid="log-me", dry_run=True))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [line for line in service.log_lines() if '"uid":"log-me"' in line]
        if lines:
            break
        time.sleep(0.05)
    assert len(lines) == 1
    entry = orjson.loads(lines[0])
    assert entry["decision"] == "deny"
    assert entry["user"] == "alice@example.com"
    assert (entry["kind"], entry["namespace"], entry["operation"]) == (
        "ServiceEntry",
        "team-a",
        "CREATE",
    )
    assert entry["dry_run"] is True
    assert entry["policy_revision"]
    assert "api.evil.io" in entry["reason"]
    assert entry["latency_ms"] < 1000


def test_concurrent_requests_over_keep_alive(service: Service) -> None:
    def worker(n: int) -> list[tuple[str, str, bool]]:
        out = []
        with client(service) as s:
            for i in range(25):
                uid = f"c-{n}-{i}"
                host = "httpbin.org" if i % 2 else "api.evil.io"
                resp = post(s, service, "/validate", se_review(host, uid=uid)).json()
                out.append((uid, resp["response"]["uid"], resp["response"]["allowed"]))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = [r for rs in pool.map(worker, range(8)) for r in rs]
    assert len(results) == 200
    for sent, echoed, allowed in results:
        assert sent == echoed
        assert allowed is (int(sent.rsplit("-", 1)[1]) % 2 == 1)


def test_connection_is_kept_alive_between_reviews(service: Service) -> None:
    ctx = service.ssl_context()
    body = orjson.dumps(se_review("httpbin.org"))
    request = (
        b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    with (
        socket.create_connection(("127.0.0.1", service.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        for _ in range(3):
            tls.sendall(request)
            status, body = read_response(tls)
            assert status == 200
            assert orjson.loads(body)["response"]["allowed"] is True


# --- hot reloads -----------------------------------------------------------------------------


def served_serial(svc: Service) -> int:
    ctx = ssl.create_default_context(cafile=str(svc.ca_file))
    with (
        socket.create_connection(("127.0.0.1", svc.port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_rotated_certificate_is_served_without_restart(
    own_service: Callable[..., Any], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    from webhook.tls import KeyPair

    with own_service() as svc:
        pid = svc.process.pid
        before = served_serial(svc)
        ca_key = serialization.load_pem_private_key((tmp_path / "ca.key").read_bytes(), None)
        ca_cert = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
        rotated = issue_serving_cert(KeyPair(ca_cert, ca_key), ["127.0.0.1"])  # type: ignore[arg-type]
        write_pair(rotated, tmp_path / "tls.crt", tmp_path / "tls.key")
        assert wait_for(lambda: served_serial(svc) == rotated.certificate.serial_number)
        assert served_serial(svc) != before
        assert svc.process.pid == pid and svc.process.poll() is None
        with client(svc) as s:
            text = s.get(svc.url + "/metrics", timeout=HTTP_TIMEOUT).text
        assert 'egress_guard_certificate_reloads_total{result="success"} 1.0' in text


def test_policy_file_edit_is_picked_up_and_a_broken_edit_keeps_the_last_good(
    own_service: Callable[..., Any], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    with own_service() as svc, client(svc) as s:

        def allowed(host: str) -> bool:
            return bool(post(s, svc, "/validate", se_review(host)).json()["response"]["allowed"])

        revision = s.get(svc.url + "/readyz", timeout=HTTP_TIMEOUT).json()["policy_revision"]
        assert not allowed("api.partner.io")
        policy.write_text(POLICY.format(mode="enforce").replace("httpbin.org", "api.partner.io"))
        assert wait_for(lambda: allowed("api.partner.io"))
        assert not allowed("httpbin.org")
        new_revision = s.get(svc.url + "/readyz", timeout=HTTP_TIMEOUT).json()["policy_revision"]
        assert new_revision != revision

        policy.write_text("egress: {namespace: external}\nexternalServices: [{name: x}]\n")

        def failure_counted() -> bool:
            text = s.get(svc.url + "/metrics", timeout=HTTP_TIMEOUT).text
            return 'egress_guard_policy_reloads_total{result="failure"} 1.0' in text

        assert wait_for(failure_counted)
        assert allowed("api.partner.io"), "the last good policy must stay in force"
        ready = s.get(svc.url + "/readyz", timeout=HTTP_TIMEOUT)
        assert ready.status_code == 200
        assert ready.json()["policy_revision"] == new_revision
        assert any("policy rejected" in line for line in svc.log_lines())


def test_a_service_that_never_had_a_good_policy_is_not_ready(
    certs: CertificateFiles, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("not: [a, policy")
    with (
        running_service(
            tmp_path,
            cert_file=certs.cert_file,
            key_file=certs.key_file,
            ca_file=certs.ca_file,
            policy_file=policy,
        ) as svc,
        client(svc) as s,
    ):
        ready = s.get(svc.url + "/readyz", timeout=HTTP_TIMEOUT)
        assert ready.status_code == 503
        assert ready.json()["problems"]
        resp = post(s, svc, "/validate", se_review("httpbin.org"))
        assert resp.json()["response"]["allowed"] is False
        assert "no valid egress policy" in resp.json()["response"]["status"]["message"]


def test_sigterm_stops_the_service_gracefully(own_service: Callable[..., Any]) -> None:
    with own_service() as svc:
        started = time.monotonic()
        code = svc.stop(signal.SIGTERM, timeout=15)
        assert code == 0
        assert time.monotonic() - started < 15


def test_serve_without_certificates_uses_a_dev_ca_and_the_embedded_policy(
    tmp_path: Path,
) -> None:
    certs = tmp_path / "dev-certs"
    with (
        running_service(
            tmp_path,
            cert_file=None,
            key_file=None,
            ca_file=certs / "ca.crt",
            extra_args=("--dev-cert-dir", str(certs)),
        ) as svc,
        client(svc) as s,
    ):
        assert str(certs / "ca.crt") in "\n".join(svc.log_lines())
        text = s.get(svc.url + "/metrics", timeout=HTTP_TIMEOUT).text
        assert 'origin="embedded:banzai-demo.yaml"' in text
        # banzai: only labelled workloads of test-app may reach httpbin, so a tenant
        # ServiceEntry (which bypasses the gateway) is denied
        resp = post(s, svc, "/validate", se_review("httpbin.org", namespace="test-app"))
        assert resp.json()["response"]["allowed"] is False

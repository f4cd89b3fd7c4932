"""gunicorn configuration of ``egress-guard serve``: the measured choices stay in place."""

from __future__ import annotations

import io
import os
import ssl
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask
from gunicorn.workers.gthread import ThreadWorker
from prometheus_client import values

from webhook.admission.logs import configure_logging
from webhook.admission.metrics import MULTIPROC_DIR_ENV
from webhook.admission.server import WebhookServer
from webhook.policy_runtime import StaticPolicySource, embedded_policy_text
from webhook.settings import Settings
from webhook.tls import generate_files

pytestmark = pytest.mark.unit


def server(tmp_path: Path, **overrides: object) -> WebhookServer:
    files = generate_files(tmp_path, ["127.0.0.1"])
    settings = Settings(cert_file=files.cert_file, key_file=files.key_file, **overrides)  # type: ignore[arg-type]
    return WebhookServer(
        settings,
        source_factory=lambda s: StaticPolicySource(embedded_policy_text(), origin="embedded"),
    )


def test_gunicorn_runs_threads_with_keep_alive_beyond_the_api_server_idle_timeout(
    tmp_path: Path,
) -> None:
    cfg = server(tmp_path).cfg
    assert issubclass(cfg.worker_class, ThreadWorker)
    assert cfg.workers == 1
    assert cfg.threads == 8
    # the API server keeps idle webhook connections 90 s
    assert cfg.keepalive > 90


def test_gunicorn_serves_tls_without_a_control_socket(tmp_path: Path) -> None:
    cfg = server(tmp_path).cfg
    assert cfg.is_ssl
    assert cfg.control_socket_disable is True
    assert cfg.accesslog is None
    assert cfg.bind == ["127.0.0.1:8443"]


def test_ssl_context_hook_reuses_one_tls_1_2_context(tmp_path: Path) -> None:
    srv = server(tmp_path)
    hook = srv.cfg.ssl_context
    first = hook(srv.cfg, lambda: pytest.fail("the default factory is never used"))
    second = hook(srv.cfg, None)
    assert isinstance(first, ssl.SSLContext)
    assert first is second, "a context per connection would reload the key every handshake"
    assert first.minimum_version == ssl.TLSVersion.TLSv1_2


def test_load_builds_the_app_with_a_ready_policy(tmp_path: Path) -> None:
    app = server(tmp_path).load()
    assert isinstance(app, Flask)
    client = app.test_client()
    assert client.get("/readyz").status_code == 200


def test_serving_requires_a_certificate() -> None:
    with pytest.raises(ValueError, match="TLS"):
        WebhookServer(
            Settings(),
            source_factory=lambda s: StaticPolicySource("", origin="x"),
        )


def test_the_worker_class_recycles_connections_after_the_configured_lifetime(
    tmp_path: Path,
) -> None:
    cfg = server(tmp_path, connection_lifetime=12.0, workers=2).cfg
    assert cfg.worker_class.connection_lifetime == 12.0


def test_no_access_line_is_built_while_the_access_logger_drops_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = server(tmp_path).cfg
    log = cfg.logger_class(cfg)
    built: list[object] = []
    monkeypatch.setattr(log, "atoms", lambda *args: built.append(args) or {})
    log.access(None, None, {}, None)
    assert built == []  # gunicorn.access is at WARNING in our logging configuration
    log.access_log.setLevel("INFO")
    try:
        log.access(None, None, {}, None)
    finally:
        log.access_log.setLevel("WARNING")
        # the logger applied gunicorn's logging configuration to the whole process
        configure_logging("warning", io.StringIO())
    assert len(built) == 1


def test_one_worker_makes_no_metrics_directory(tmp_path: Path) -> None:
    srv = server(tmp_path)
    srv.cfg.on_starting(None)
    assert srv._metrics_dir is None
    text = srv.load().test_client().get("/metrics").data.decode()
    assert "egress_guard_admission_requests_total" in text  # the in-process registry, as ever
    srv.cfg.on_exit(None)


def test_several_workers_share_a_directory_made_before_forking_and_removed_at_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the worker's switch to shared values must not outlive the test
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    monkeypatch.setenv(MULTIPROC_DIR_ENV, "")
    srv = server(tmp_path, workers=2)
    srv.cfg.on_starting(None)
    directory = srv._metrics_dir
    assert directory is not None and directory.is_dir()
    try:
        text = srv.load().test_client().get("/metrics").data.decode()
    finally:
        values.close_all_multiprocess_files()
    assert text.count("\negress_guard_policy_info{") == 1
    assert 'egress_guard_policy_reloads_total{result="success"} 1.0' in text
    srv.cfg.child_exit(None, SimpleNamespace(pid=os.getpid()))
    assert any(directory.iterdir()), "an exited worker's counts stay in the totals"
    srv.cfg.on_exit(None)
    assert not directory.exists()

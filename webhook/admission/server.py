"""Run the webhook under gunicorn over TLS, configured from ``Settings`` in code.

Choices, all measured on a 2-core machine against a real kube-apiserver:
- ``gthread`` workers: the ``sync`` worker closes the connection after every response, so the API
  server pays a TLS handshake per review (+5.5 ms per create against +2.4 ms with keep-alive);
- keep-alive above the API server's 90 s idle timeout, so it reuses connections;
- one worker process with threads by default: the policy, its watcher, the decision log and the
  Prometheus registry live in one process, and the decision itself is microseconds; with
  several workers each keeps its own policy and watcher, and the metrics are summed over the
  workers through prometheus-client's multiprocess mode, in a private directory the master
  creates before forking and removes at exit (``webhook.admission.metrics``);
- no control socket (gunicorn 25+ creates one under the home directory by default, which fails on a
  read-only root filesystem);
- the SSL context comes from ``ReloadingServerContext``, so rotated certificate files are served
  from the next handshake on;
- the worker class is ``FairThreadWorker`` (``webhook.admission.worker``): gthread that spreads
  keep-alive connections evenly over the worker processes (with several, it recycles each after
  ``connection_lifetime`` seconds, so the split heals after a worker restart) and puts a deadline
  on every request's reads and writes, so clients sending partial requests cannot hold every
  thread;
- no ``reuse_port``: with it gunicorn gives every worker a listening socket of its own, so the
  connections queued on a worker that dies are refused instead of waiting for its replacement
  (tests/integration/test_faults_under_load.py);
- a young-generation GC threshold of ``GC_THRESHOLD`` allocations instead of 700: a review of a
  3 MiB object allocates hundreds of thousands of objects, and with the default every few
  hundred of them start a collection that walks the whole decoded object again, which made
  deciding such objects worse than linear in their size (tests/bench/worst_case.py).

The policy store, its source and the flask app are built in ``load()``, which gunicorn calls in the
worker process after forking: threads started before a fork do not survive it.
"""

from __future__ import annotations

import gc
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from wsgiref.types import WSGIApplication

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from webhook.admission.app import create_app
from webhook.admission.logs import gunicorn_log_config
from webhook.admission.metrics import (
    Metrics,
    create_shared_dir,
    remove_shared_dir,
    worker_exited,
)
from webhook.admission.worker import fair_worker
from webhook.core.checks import ClusterView, EmptyView
from webhook.core.policy_admission import ClusterObjects
from webhook.policy_runtime import PolicySource, PolicyStore
from webhook.settings import Settings
from webhook.tls import ReloadingServerContext

logger = logging.getLogger(__name__)

# (young, middle, old) collection thresholds; see the module docstring
GC_THRESHOLD = (50_000, 20, 100)


class AccessLogOnlyWhenRead(GunicornLogger):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's logger, building an access line only when the access logger would keep it.

    With a ``logconfig_dict`` gunicorn counts access logging as on and renders every request's
    access atoms (a dict of every header and a formatted date), which our configuration then
    drops at the ``gunicorn.access`` logger: the decision line says more.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Log the request only when ``gunicorn.access`` is enabled for INFO."""
        if self.access_log.isEnabledFor(logging.INFO):
            super().access(resp, req, environ, request_time)


def tune_gc() -> None:
    """Collect less often, and keep what the worker built at start out of every collection."""
    gc.set_threshold(*GC_THRESHOLD)
    gc.freeze()


SourceFactory = Callable[[Settings], PolicySource]
# the view may follow the policy store (the namespaces whose addresses it watches)
ViewFactory = Callable[[Settings, PolicyStore], ClusterView]
ObjectsFactory = Callable[[Settings], ClusterObjects]
# any WSGI application: egress-guard's is flask behind its review middleware, and the benchmarks
# serve a plain WSGI callable too, to measure the stack without flask
AppFactory = Callable[[Settings, PolicyStore, Metrics, ClusterView], WSGIApplication]


class WebhookServer(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn running the egress-guard flask app."""

    def __init__(
        self,
        settings: Settings,
        *,
        source_factory: SourceFactory,
        view_factory: ViewFactory | None = None,
        objects_factory: ObjectsFactory | None = None,
        app_factory: AppFactory | None = None,
    ) -> None:
        if settings.cert_file is None or settings.key_file is None:
            raise ValueError("the webhook only serves TLS: a certificate and key are required")
        self.settings = settings
        self._source_factory = source_factory
        self._app_factory = app_factory or self._default_app
        self._view_factory = view_factory
        self._objects_factory = objects_factory
        self._view: ClusterView | None = None
        self._metrics: Metrics | None = None
        self._tls: ReloadingServerContext | None = None
        self._source: PolicySource | None = None
        # the workers' metric files, with several workers; made by the master before it forks
        self._metrics_dir: Path | None = None
        super().__init__(prog="egress-guard serve")

    def gunicorn_options(self) -> dict[str, Any]:
        """The gunicorn settings derived from ``Settings``."""
        s = self.settings
        return {
            "bind": [s.bind],
            "workers": s.workers,
            "worker_class": fair_worker(s.connection_lifetime),
            "threads": s.threads,
            "keepalive": s.keepalive,
            "timeout": s.timeout,
            "graceful_timeout": s.graceful_timeout,
            "certfile": str(s.cert_file),
            "keyfile": str(s.key_file),
            "control_socket_disable": True,
            "accesslog": None,
            "logconfig_dict": gunicorn_log_config(s.log_level),
            "logger_class": AccessLogOnlyWhenRead,
            "loglevel": s.log_level,
            "proc_name": "egress-guard",
            "ssl_context": self._ssl_context,
            "worker_exit": self._worker_exit,
            "on_starting": self._on_starting,
            "child_exit": self._child_exit,
            "on_exit": self._on_exit,
        }

    def load_config(self) -> None:
        """Apply ``gunicorn_options`` (gunicorn calls this before parsing nothing else)."""
        for key, value in self.gunicorn_options().items():
            self.cfg.set(key, value)

    def load(self) -> WSGIApplication:
        """Build the service in the worker process: metrics, policy store and source, app."""
        metrics = Metrics(self._metrics_dir)
        store = PolicyStore()
        metrics.watch(store)
        self._metrics = metrics
        self._tls_context()
        source = self._source_factory(self.settings)
        source.start(store)
        self._source = source
        # the Sidecars already in the cluster, for checks that depend on them (an informer
        # cache in a cluster; nothing offline)
        view = self._view_factory(self.settings, store) if self._view_factory else EmptyView()
        self._view = view
        if self.settings.workers > 1:
            logger.info("several workers: each keeps its own policy and policy watcher")
        app = self._app_factory(self.settings, store, metrics, view)
        tune_gc()
        return app

    def _default_app(
        self, settings: Settings, store: PolicyStore, metrics: Metrics, view: ClusterView
    ) -> Flask:
        # the governed objects a policy edit is judged against, listed when an edit arrives
        objects = self._objects_factory(settings) if self._objects_factory else None
        return create_app(
            settings, policy_store=store, metrics=metrics, view=view, cluster_objects=objects
        )

    def _tls_context(self) -> ReloadingServerContext:
        if self._tls is None:
            assert self.settings.cert_file is not None and self.settings.key_file is not None
            self._tls = ReloadingServerContext(
                self.settings.cert_file,
                self.settings.key_file,
                check_interval=self.settings.cert_check_interval,
                on_reload=self._certificate_reloaded,
            )
        return self._tls

    def _certificate_reloaded(self, ok: bool, error: str) -> None:
        if ok:
            logger.info("serving certificate reloaded")
        else:
            logger.error(
                "serving certificate reload failed; still serving the previous one",
                extra={"fields": {"error": error}},
            )
        if self._metrics is not None:
            self._metrics.certificate_reloaded(ok, error)

    def _ssl_context(self, config: Any, default_factory: Any) -> ssl.SSLContext:
        # gunicorn calls this for every accepted connection, in the worker
        del config, default_factory
        return self._tls_context().current()

    def _on_starting(self, server: Any) -> None:
        # in the master, before any worker forks: every worker must find the directory
        del server
        if self.settings.workers > 1 and self._metrics_dir is None:
            self._metrics_dir = create_shared_dir()

    def _child_exit(self, server: Any, worker: Any) -> None:
        # in the master, for each worker that exited, killed ones included
        del server
        if self._metrics_dir is not None:
            worker_exited(self._metrics_dir, worker.pid)

    def _on_exit(self, server: Any) -> None:
        del server
        if self._metrics_dir is not None:
            remove_shared_dir(self._metrics_dir)
            self._metrics_dir = None

    def _worker_exit(self, server: Any, worker: Any) -> None:
        del server, worker
        if self._source is not None:
            self._source.stop()
        stop = getattr(self._view, "stop", None)
        if callable(stop):
            stop()
        # the log writer thread may still hold the last decisions: write them before exiting
        for handler in logging.getLogger().handlers:
            handler.flush()

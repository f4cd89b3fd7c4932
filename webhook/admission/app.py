"""The flask app factory: ``/validate``, ``/mutate``, health, readiness and metrics.

Every dependency comes in through ``create_app`` (settings, the policy store, metrics, the
mutation function, the cluster view), so tests build apps with fakes and nothing is read from the
environment.  The review logic is ``reviewing.ReviewHandler``; the two review routes are served
by a small WSGI middleware in front of flask (``review_routes``), and flask keeps health,
readiness, metrics and its own 404/405.  The policy ConfigMap itself (``policy_configmap``) is
judged by ``policy_edits`` against the objects in the cluster (``cluster_objects``, handed in by
the CLI, which owns the Kubernetes client).

Refusals: a body that is not an AdmissionReview v1 gets 400, a wrong content type 415, a body over
the limit 413, an unknown path 404.  None of them is ever a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from webhook.admission.metrics import Metrics
from webhook.admission.policy_edits import NoObjects
from webhook.admission.responses import error_body
from webhook.admission.review_routes import ReviewRoutes
from webhook.admission.reviewing import JSON, REVISION_HEADER, Clock, Mutator, ReviewHandler
from webhook.core.checks import ClusterView, EmptyView
from webhook.core.mutations import mutate
from webhook.core.policy_admission import ClusterObjects, PolicyConfigMap, SecurityTeam
from webhook.policy_runtime import PolicyStore
from webhook.settings import Settings

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The wall clock in UTC: the instant exceptions are judged at."""
    return datetime.now(UTC)


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status=status, mimetype=JSON)


def create_app(
    settings: Settings,
    *,
    policy_store: PolicyStore,
    metrics: Metrics | None = None,
    mutator: Mutator | None = None,
    view: ClusterView | None = None,
    cluster_objects: ClusterObjects | None = None,
    security_team: SecurityTeam | None = None,
    clock: Clock = utc_now,
) -> Flask:
    """Build the webhook's flask app around a policy store.

    With ``settings.policy_configmap`` set, reviews of that ConfigMap are judged as policy edits
    against ``cluster_objects``; only ``security_team`` may delete it.
    """
    app = Flask("egress-guard")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    metrics = metrics or Metrics()
    app.extensions["egress_guard.metrics"] = metrics
    handler = ReviewHandler(
        store=policy_store,
        metrics=metrics,
        mutator=mutator or mutate,
        view=view or EmptyView(),
        log_allowed=settings.log_allowed,
        cache_size=settings.decision_cache_size,
        clock=clock,
        policy_configmap=(
            PolicyConfigMap(settings.policy_configmap.namespace, settings.policy_configmap.name)
            if settings.policy_configmap is not None
            else None
        ),
        cluster_objects=cluster_objects or NoObjects(),
        security_team=security_team
        or SecurityTeam(settings.security_team_users, settings.security_team_groups),
    )

    def flask_review(endpoint: str) -> Callable[[], Response]:
        # reached only when the middleware is bypassed; keeps 405 for other methods
        def view() -> Response:
            status, body, revision = handler.answer(
                endpoint, request.content_type or "", request.get_data(cache=False)
            )
            response = _json(body, status)
            if revision:
                response.headers[REVISION_HEADER] = revision
            return response

        return view

    app.add_url_rule("/validate", "validate", flask_review("validate"), methods=["POST"])
    app.add_url_rule("/mutate", "mutate", flask_review("mutate"), methods=["POST"])
    app.wsgi_app = ReviewRoutes(  # type: ignore[method-assign]
        handler, app.wsgi_app, max_body=settings.max_body_bytes
    )

    @app.get("/healthz")
    def healthz() -> Response:
        return _json(b'{"status":"ok"}')

    @app.get("/readyz")
    def readyz() -> Response:
        current = policy_store.current
        if current is None:
            last = policy_store.last_result
            problems = list(last.problems) if last else ["no policy delivered yet"]
            return _json(orjson.dumps({"status": "no valid policy", "problems": problems}), 503)
        return _json(orjson.dumps({"status": "ready", "policy_revision": current.revision}))

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), mimetype=CONTENT_TYPE_LATEST)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        endpoint = request.path.strip("/") or "/"
        if endpoint in ("validate", "mutate"):
            metrics.bad_requests.labels(endpoint, str(status)).inc()
        return _json(error_body(status, exc.description or exc.name), status)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error", extra={"fields": {"path": request.path}})
        return _json(error_body(500, f"internal error: {type(exc).__name__}"), 500)

    return app

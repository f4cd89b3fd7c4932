"""The flask app factory: ``/validate``, ``/mutate``, health, readiness and metrics.

Every dependency comes in through ``create_app`` (settings, the policy store, metrics, the
mutation function, the cluster view), so tests build apps with fakes and nothing is read from the
environment.  The review routes are lean on purpose: the decision costs microseconds, so the body
is read once, parsed with orjson, decided, and answered with pre-serialized bytes, with one JSON
log line per decision and no other per-request work.

Refusals: a body that is not an AdmissionReview v1 gets 400, a wrong content type 415, a body over
the limit 413 (flask refuses it from ``Content-Length`` before reading), an unknown path 404.  None
of them is ever a 500, and a malformed *object* inside a good review is a denial, not an error.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from webhook.admission.metrics import Metrics
from webhook.admission.policy_store import LoadedPolicy, PolicyStore
from webhook.admission.responses import error_body, review_response
from webhook.core.checks import ClusterView, EmptyView
from webhook.core.decisions import Decision
from webhook.core.engine import decide
from webhook.core.errors import ReviewError
from webhook.core.policy import Policy
from webhook.core.reviews import Review, parse_review
from webhook.settings import Settings

logger = logging.getLogger(__name__)
decision_logger = logging.getLogger("webhook.admission.decisions")

JSON = "application/json"
NO_POLICY = (
    "egress-guard has no valid egress policy loaded yet, so it cannot admit this object; "
    "ask the platform team to fix the egress policy ConfigMap"
)


class MutationResult(Protocol):
    """What ``webhook.core.mutations.mutate`` returns: JSON Patch operations and warnings."""

    @property
    def patch(self) -> Sequence[dict[str, Any]]:
        """JSON Patch operations (RFC 6902)."""
        ...

    @property
    def warnings(self) -> Sequence[str]:
        """Messages for the user."""
        ...


Mutator = Callable[[Review, Policy], MutationResult]


@dataclass(frozen=True, slots=True)
class _NoMutation:
    patch: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()


def _no_mutation(review: Review, policy: Policy) -> MutationResult:
    del review, policy
    return _NoMutation()


def default_mutator() -> Mutator:
    """``webhook.core.mutations.mutate`` when that module exists, else a no-op."""
    try:
        module = importlib.import_module("webhook.core.mutations")
    except ImportError:
        return _no_mutation
    mutate = getattr(module, "mutate", None)
    return mutate if callable(mutate) else _no_mutation


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status=status, mimetype=JSON, headers=headers)


class _Handler:
    """The review endpoints' logic, holding the app's dependencies."""

    def __init__(
        self,
        *,
        store: PolicyStore,
        metrics: Metrics,
        mutator: Mutator,
        view: ClusterView,
        log_allowed: bool,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.mutator = mutator
        self.view = view
        self.log_allowed = log_allowed

    def read_review(self) -> Review:
        """The request's AdmissionReview, or _BadRequest with the HTTP status to answer."""
        if request.mimetype != JSON:
            raise _BadRequest(
                415, f"expected Content-Type {JSON}, got {request.mimetype or 'none'}"
            )
        body = request.get_data(cache=False)  # 413 from flask when over MAX_CONTENT_LENGTH
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _BadRequest(400, f"the body is not JSON: {exc}") from exc
        try:
            return parse_review(document)
        except ReviewError as exc:
            raise _BadRequest(exc.status, str(exc)) from exc

    def refuse(self, endpoint: str, exc: _BadRequest) -> Response:
        """An HTTP error answer for a request that is not a usable review."""
        self.metrics.bad_requests.labels(endpoint, str(exc.status)).inc()
        logger.warning(
            "refused admission request",
            extra={"fields": {"endpoint": endpoint, "status": exc.status, "error": exc.message}},
        )
        return _json(error_body(exc.status, exc.message), exc.status)

    def validate(self) -> Response:
        """Decide a review against the policy in force."""
        started = time.perf_counter()
        try:
            review = self.read_review()
        except _BadRequest as exc:
            return self.refuse("validate", exc)
        loaded = self.store.current
        if loaded is None:
            decision = Decision(False, NO_POLICY)
        else:
            try:
                decision = decide(review, loaded.policy, view=self.view)
            except Exception:
                # a bug in a check must not become a 500 the API server retries blindly
                logger.exception("decision failed", extra={"fields": {"uid": review.uid}})
                decision = Decision(False, "egress-guard failed to evaluate this object")
        body = review_response(
            review.uid,
            allowed=decision.allowed,
            message=decision.reason,
            warnings=decision.warnings,
        )
        self.finish("validate", review, loaded, decision.verdict, decision.reason, started)
        return _json(body)

    def mutate(self) -> Response:
        """Patch a review's object (default-deny Sidecar, gateway routing); never denies."""
        started = time.perf_counter()
        try:
            review = self.read_review()
        except _BadRequest as exc:
            return self.refuse("mutate", exc)
        loaded = self.store.current
        patch: Sequence[dict[str, Any]] = ()
        warnings: Sequence[str] = ()
        verdict = "allow"
        if loaded is None:
            warnings = ("egress-guard: no valid egress policy loaded; object not mutated",)
            verdict = "skip"
        else:
            try:
                mutation = self.mutator(review, loaded.policy)
                patch, warnings = mutation.patch, mutation.warnings
            except Exception:
                # admit unchanged: the reconciler converges the namespace later
                logger.exception("mutation failed", extra={"fields": {"uid": review.uid}})
                warnings = ("egress-guard: mutation failed; object admitted unchanged",)
                verdict = "error"
        body = review_response(review.uid, allowed=True, warnings=warnings, patch=patch)
        reason = f"{len(patch)} patch operation(s)" if patch else "no change"
        self.finish("mutate", review, loaded, verdict, reason, started)
        return _json(body)

    def finish(
        self,
        endpoint: str,
        review: Review,
        loaded: LoadedPolicy | None,
        verdict: str,
        reason: str,
        started: float,
    ) -> None:
        """Count, time and log one decision."""
        elapsed = time.perf_counter() - started
        self.metrics.requests.labels(endpoint, review.kind, review.operation, verdict).inc()
        self.metrics.latency.labels(endpoint).observe(elapsed)
        if verdict == "allow" and not self.log_allowed:
            return
        decision_logger.info(
            "admission decision",
            extra={
                "fields": {
                    "endpoint": endpoint,
                    "uid": review.uid,
                    "user": review.username,
                    "kind": review.kind,
                    "group": review.group,
                    "namespace": review.namespace,
                    "name": review.name,
                    "operation": review.operation,
                    "decision": verdict,
                    "reason": reason,
                    "policy_revision": loaded.revision if loaded else "",
                    "dry_run": review.dry_run,
                    "latency_ms": round(elapsed * 1000, 3),
                }
            },
        )


def create_app(
    settings: Settings,
    *,
    policy_store: PolicyStore,
    metrics: Metrics | None = None,
    mutator: Mutator | None = None,
    view: ClusterView | None = None,
) -> Flask:
    """Build the webhook's flask app around a policy store."""
    app = Flask("egress-guard")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    metrics = metrics or Metrics()
    app.extensions["egress_guard.metrics"] = metrics
    handler = _Handler(
        store=policy_store,
        metrics=metrics,
        mutator=mutator or default_mutator(),
        view=view or EmptyView(),
        log_allowed=settings.log_allowed,
    )

    app.add_url_rule("/validate", "validate", handler.validate, methods=["POST"])
    app.add_url_rule("/mutate", "mutate", handler.mutate, methods=["POST"])

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
        # no "Connection: close" on 413: gunicorn drains the unread body (bounded by its own
        # deadline), whereas closing with unread data makes the kernel reset the connection
        # and the client never sees the 413
        return _json(error_body(status, exc.description or exc.name), status)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error", extra={"fields": {"path": request.path}})
        return _json(error_body(500, f"internal error: {type(exc).__name__}"), 500)

    return app

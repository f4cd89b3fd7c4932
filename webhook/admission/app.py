"""The flask app factory: ``/validate``, ``/mutate``, health, readiness and metrics.

Every dependency comes in through ``create_app`` (settings, the policy store, metrics, the
mutation function, the cluster view), so tests build apps with fakes and nothing is read from the
environment.  The review routes are lean on purpose: the decision costs microseconds and flask's
per-request machinery costs more, so ``POST /validate`` and ``POST /mutate`` are served by a small
WSGI middleware in front of flask: the body is read once, parsed with orjson, decided, and
answered with pre-serialized bytes, with one JSON log line per decision and nothing else.
Validation decisions of identical reviews come from a bounded cache (``decision_cache``); the
response, with the request's own uid, is built afresh every time.

Every review reads the clock once and is decided on ``policy.at(now)``, the policy in force at
that instant: an exception that has ended grants nothing from that request on, and the decision
cache keys on the resolved revision, so a decision made under a live exception is never served
after it ends.  The policy ConfigMap itself (``policy_configmap``) is judged by
``check_policy_configmap`` against the objects in the cluster (``cluster_objects``, handed in by
the CLI, which owns the Kubernetes client).

Refusals: a body that is not an AdmissionReview v1 gets 400, a wrong content type 415, a body over
the limit 413 (refused from ``Content-Length`` before reading; gunicorn then drains at most 64 KiB
and closes), an unknown path 404.  None
of them is ever a 500, and a malformed *object* inside a good review is a denial, not an error.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from webhook.admission.decision_cache import DecisionCache, likely_repeated
from webhook.admission.logs import DecisionLog
from webhook.admission.metrics import Metrics
from webhook.admission.responses import error_body, review_response
from webhook.core.checks import ClusterView, EmptyView
from webhook.core.decisions import Decision
from webhook.core.errors import ReviewError
from webhook.core.expiry_warnings import expiring_grant_warnings
from webhook.core.mutations import Mutation, mutate
from webhook.core.policy import Policy
from webhook.core.policy_admission import (
    ClusterObjects,
    PolicyConfigMap,
    SecurityTeam,
    check_policy_configmap,
)
from webhook.core.reviews import Review, parse_review
from webhook.policy_runtime import LoadedPolicy, PolicyStore
from webhook.settings import Settings

logger = logging.getLogger(__name__)
decision_logger = logging.getLogger("webhook.admission.decisions")

JSON = "application/json"
NO_POLICY = (
    "egress-guard has no valid egress policy loaded yet, so it cannot admit this object; "
    "ask the platform team to fix the egress policy ConfigMap"
)


# what the mutating webhook asks of a review; ``mutate`` unless a test hands in another
Mutator = Callable[[Review, Policy], Mutation]
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The wall clock in UTC: the instant exceptions are judged at."""
    return datetime.now(UTC)


class NoObjects:
    """``ClusterObjects`` of a webhook without a cluster: a policy edit strands nothing."""

    def objects(self) -> Iterable[Mapping[str, Any]]:
        """Nothing."""
        return ()


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status=status, mimetype=JSON)


# status, body, and the revision of the policy that decided ("" when none did)
Answer = tuple[int, bytes, str]
# every decided review names its policy revision, so a client can tell which policy answered
REVISION_HEADER = "X-Egress-Guard-Policy-Revision"


class _Handler:
    """The review endpoints' logic, free of flask: content type and body in, status and JSON out."""

    def __init__(
        self,
        *,
        store: PolicyStore,
        metrics: Metrics,
        mutator: Mutator,
        view: ClusterView,
        log_allowed: bool,
        cache_size: int,
        clock: Clock,
        policy_configmap: PolicyConfigMap | None,
        cluster_objects: ClusterObjects,
        security_team: SecurityTeam,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.mutator = mutator
        self.view = view
        self.log_allowed = log_allowed
        self.clock = clock
        self.policy_configmap = policy_configmap
        self.cluster_objects = cluster_objects
        self.security_team = security_team
        # only reviews that come again are worth a digest: unique creates would pay it for nothing
        self.cache = DecisionCache(
            view,
            size=cache_size,
            on_lookup=metrics.decision_cache_lookup,
            admits=likely_repeated,
        )
        self.decision_log = DecisionLog(decision_logger)
        # prometheus' labels() takes a lock and builds a key on every call; children are stable
        self._counted: dict[tuple[str, str, str, str], Any] = {}
        self._timed: dict[str, Any] = {}

    def answer(self, endpoint: str, content_type: str, body: bytes) -> Answer:
        """Answer one POST to ``/validate`` or ``/mutate``."""
        started = time.perf_counter()
        try:
            review = self.read_review(content_type, body)
        except _BadRequest as exc:
            return self.refuse(endpoint, exc)
        # read once: the decision and the header must name the same policy
        loaded = self.store.current
        revision = loaded.revision if loaded is not None else ""
        if endpoint == "validate":
            return 200, self.validate(review, started, loaded), revision
        return 200, self.mutate(review, started, loaded), revision

    @staticmethod
    def read_review(content_type: str, body: bytes) -> Review:
        """The body's AdmissionReview, or _BadRequest with the HTTP status to answer."""
        mimetype = content_type.partition(";")[0].strip().lower()
        if mimetype != JSON:
            raise _BadRequest(415, f"expected Content-Type {JSON}, got {mimetype or 'none'}")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _BadRequest(400, f"the body is not JSON: {exc}") from exc
        try:
            return parse_review(document)
        except ReviewError as exc:
            raise _BadRequest(exc.status, str(exc)) from exc

    def refuse(self, endpoint: str, exc: _BadRequest) -> Answer:
        """An HTTP error answer for a request that is not a usable review."""
        self.metrics.bad_requests.labels(endpoint, str(exc.status)).inc()
        logger.warning(
            "refused admission request",
            extra={"fields": {"endpoint": endpoint, "status": exc.status, "error": exc.message}},
        )
        return exc.status, error_body(exc.status, exc.message), ""

    def validate(self, review: Review, started: float, loaded: LoadedPolicy | None) -> bytes:
        """Decide a review against ``loaded``, the policy in force, resolved now."""
        now = self.clock()
        cached: bool | None = None
        try:
            if self.policy_configmap is not None and self.policy_configmap.matches(review):
                # before the no-policy exit: the first valid policy must be admissible
                decision = self.judge_policy_edit(review, loaded, now)
            elif loaded is None:
                decision = Decision(False, NO_POLICY)
            else:
                decision, cached = self.cache.decide(review, loaded.policy.at(now))
                if decision.allowed and not decision.audited:
                    decision = self.with_expiry_warnings(decision, review, loaded.policy, now)
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
        self.finish(
            "validate", review, loaded, decision.verdict, decision.reason, started, cached=cached
        )
        return body

    def judge_policy_edit(
        self, review: Review, loaded: LoadedPolicy | None, now: datetime
    ) -> Decision:
        """Validate an edit of the policy ConfigMap; warn about the objects it strands."""
        current = loaded.policy if loaded else None
        try:
            return check_policy_configmap(
                review,
                current=current,
                cluster=self.cluster_objects,
                now=now,
                security_team=self.security_team,
            )
        except Exception as exc:
            # the existing objects only feed warnings: a listing that fails (RBAC, a slow
            # API server) must not block a valid edit, nor let an invalid one through
            logger.warning(
                "cannot judge existing objects against the proposed policy",
                extra={"fields": {"uid": review.uid, "error": repr(exc)[:300]}},
            )
        decision = check_policy_configmap(
            review, current=current, cluster=NoObjects(), now=now, security_team=self.security_team
        )
        if not decision.allowed:
            return decision
        unjudged = "egress-guard: existing objects were not judged against this policy"
        return dataclasses.replace(decision, warnings=(*decision.warnings, unjudged))

    def with_expiry_warnings(
        self, decision: Decision, review: Review, policy: Policy, now: datetime
    ) -> Decision:
        """``decision`` plus a warning when only an exception ending soon admits the object."""
        extra = expiring_grant_warnings(review, policy, now=now, view=self.view)
        if not extra:
            return decision
        return dataclasses.replace(decision, warnings=(*decision.warnings, *extra))

    def mutate(self, review: Review, started: float, loaded: LoadedPolicy | None) -> bytes:
        """Patch a review's object (default-deny Sidecar, gateway routing); never denies."""
        now = self.clock()
        patch: Sequence[dict[str, Any]] = ()
        warnings: Sequence[str] = ()
        verdict = "allow"
        if loaded is None:
            warnings = ("egress-guard: no valid egress policy loaded; object not mutated",)
            verdict = "skip"
        else:
            try:
                mutation = self.mutator(review, loaded.policy.at(now))
                patch, warnings = mutation.patch, mutation.warnings
            except Exception:
                # admit unchanged: the reconciler converges the namespace later
                logger.exception("mutation failed", extra={"fields": {"uid": review.uid}})
                warnings = ("egress-guard: mutation failed; object admitted unchanged",)
                verdict = "error"
        body = review_response(review.uid, allowed=True, warnings=warnings, patch=patch)
        reason = f"{len(patch)} patch operation(s)" if patch else "no change"
        self.finish("mutate", review, loaded, verdict, reason, started)
        return body

    def finish(
        self,
        endpoint: str,
        review: Review,
        loaded: LoadedPolicy | None,
        verdict: str,
        reason: str,
        started: float,
        *,
        cached: bool | None = None,
    ) -> None:
        """Count, time and log one decision (``cached``: a cache hit, miss, or not looked up)."""
        elapsed = time.perf_counter() - started
        key = (endpoint, review.kind, review.operation, verdict)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.metrics.requests.labels(*key)
        counter.inc()
        timer = self._timed.get(endpoint)
        if timer is None:
            timer = self._timed[endpoint] = self.metrics.latency.labels(endpoint)
        timer.observe(elapsed)
        if verdict == "allow" and not self.log_allowed:
            return
        self.decision_log.write(
            {
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
                "cache": "" if cached is None else "hit" if cached else "miss",
                "latency_ms": round(elapsed * 1000, 3),
            }
        )


_REASONS = {
    200: "200 OK",
    400: "400 BAD REQUEST",
    408: "408 REQUEST TIMEOUT",
    413: "413 REQUEST ENTITY TOO LARGE",
    415: "415 UNSUPPORTED MEDIA TYPE",
    500: "500 INTERNAL SERVER ERROR",
}


class _ReviewRoutes:
    """WSGI middleware answering ``POST /validate`` and ``POST /mutate`` without flask.

    Flask's request and app contexts, URL matching and response objects cost more than the
    decision itself (measured: tests/bench/bench_service.py), so the two hot routes are served
    here and everything else (health, metrics, 404/405) goes on to flask.
    """

    def __init__(self, handler: _Handler, app: Callable[..., Any], *, max_body: int) -> None:
        self.handler = handler
        self.app = app
        self.max_body = max_body

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Serve a review, or pass the request on to flask."""
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or path not in ("/validate", "/mutate"):
            return self.app(environ, start_response)
        endpoint = path[1:]
        try:
            body = self.read_body(environ)
            if isinstance(body, _BadRequest):
                status, payload, revision = self.handler.refuse(endpoint, body)
            elif body is None:
                status, payload, revision = self.handler.refuse(
                    endpoint,
                    _BadRequest(413, f"the body is larger than {self.max_body} bytes"),
                )
            else:
                status, payload, revision = self.handler.answer(
                    endpoint, environ.get("CONTENT_TYPE", ""), body
                )
        except Exception:
            logger.exception("unhandled error", extra={"fields": {"path": path}})
            status, payload, revision = 500, error_body(500, "internal error"), ""
        headers = [("Content-Type", JSON), ("Content-Length", str(len(payload)))]
        if revision:
            headers.append((REVISION_HEADER, revision))
        start_response(_REASONS.get(status, f"{status} ERROR"), headers)
        return [payload]

    def read_body(self, environ: dict[str, Any]) -> bytes | _BadRequest | None:
        """The request body, None when it is over the limit (unread when the length says so), or
        a 408 when it stops arriving (the server's socket deadline)."""
        try:
            return self._read_body(environ)
        except TimeoutError:
            return _BadRequest(408, "the request body did not arrive in time")

    def _read_body(self, environ: dict[str, Any]) -> bytes | None:
        stream = environ["wsgi.input"]
        length_text = environ.get("CONTENT_LENGTH") or ""
        if length_text:
            try:
                length = int(length_text)
            except ValueError:
                return b""  # refused as "not JSON"
            if length > self.max_body:
                return None
            return bytes(stream.read(length)) if length > 0 else b""
        # chunked: read one byte past the limit to tell "at the limit" from "over it"
        data = bytes(stream.read(self.max_body + 1))
        return None if len(data) > self.max_body else data


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
    handler = _Handler(
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
    app.wsgi_app = _ReviewRoutes(  # type: ignore[method-assign]
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

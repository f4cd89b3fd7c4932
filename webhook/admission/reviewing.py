"""The review endpoints' logic, free of flask: content type and body in, status and JSON out.

Every review reads the clock once and is decided on ``policy.at(now)``, the policy in force at
that instant: an exception that has ended grants nothing from that request on, and the decision
cache keys on the resolved revision, so a decision made under a live exception is never served
after it ends.  Validation decisions of identical reviews come from a bounded cache
(``decision_cache``); the response, with the request's own uid, is built afresh every time.
A malformed *object* inside a good review is a denial, not an error; a request that is not a
usable review is a ``BadRequest`` carrying its HTTP status.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import orjson

from webhook.admission.decision_cache import DecisionCache, likely_repeated
from webhook.admission.logs import DecisionLog
from webhook.admission.metrics import Metrics
from webhook.admission.policy_edits import judge_policy_edit
from webhook.admission.responses import error_body, review_response
from webhook.core.checks import ClusterView
from webhook.core.decisions import Decision
from webhook.core.errors import ReviewError
from webhook.core.expiry_warnings import expiring_grant_warnings
from webhook.core.mutations import Mutation
from webhook.core.policy import Policy
from webhook.core.policy_admission import ClusterObjects, PolicyConfigMap, SecurityTeam
from webhook.core.reviews import Review, parse_review
from webhook.policy_runtime import LoadedPolicy, PolicyStore

logger = logging.getLogger(__name__)
decision_logger = logging.getLogger("webhook.admission.decisions")

JSON = "application/json"
NO_POLICY = (
    "egress-guard has no valid egress policy loaded yet, so it cannot admit this object; "
    "ask the platform team to fix the egress policy ConfigMap"
)
# every decided review names its policy revision, so a client can tell which policy answered
REVISION_HEADER = "X-Egress-Guard-Policy-Revision"

# what the mutating webhook asks of a review; ``mutate`` unless a test hands in another
Mutator = Callable[[Review, Policy], Mutation]
Clock = Callable[[], datetime]
# status, body, and the revision of the policy that decided ("" when none did)
Answer = tuple[int, bytes, str]
# bodies from this size on are answered with the cyclic garbage collector paused (see answer)
NO_GC_BODY_BYTES = 256 * 1024
# bodies from this size on skip the decision cache: their digest costs milliseconds on every
# review, and an object past a mebibyte is rarely sent again unchanged
UNCACHED_BODY_BYTES = 1024 * 1024


class BadRequest(Exception):
    """A request that is not a usable review, with the HTTP status to answer it with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ReviewHandler:
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

    def answer(
        self,
        endpoint: str,
        content_type: str,
        body: bytes,
        *,
        keep: list[object] | None = None,
    ) -> Answer:
        """Answer one POST to ``/validate`` or ``/mutate``.

        A large body decodes into hundreds of thousands of containers, and each young-generation
        collection meanwhile walks the ones still alive: a 3 MiB review paid a fifth of its time
        to the collector for cycles it never makes (the decoded review is a tree, freed by
        reference counting when the answer returns).  So the collector is paused for large
        bodies; other threads of the process only have their collections postponed until the
        answer is done.  A collector someone else disabled stays disabled.

        Freeing that tree costs a third as much as decoding it (15 ms for a 3 MiB
        VirtualService), and nothing in the answer needs it done first: given ``keep``, a large
        review is appended to it instead of being freed here, and the caller drops it once the
        response is on its way.
        """
        if len(body) < NO_GC_BODY_BYTES or not gc.isenabled():
            return self._answer(endpoint, content_type, body, keep=None)
        gc.disable()
        try:
            return self._answer(endpoint, content_type, body, keep=keep)
        finally:
            gc.enable()

    def _answer(
        self, endpoint: str, content_type: str, body: bytes, *, keep: list[object] | None
    ) -> Answer:
        started = time.perf_counter()
        try:
            review = self.read_review(content_type, body)
        except BadRequest as exc:
            return self.refuse(endpoint, exc)
        if keep is not None:
            keep.append(review)
        # read once: the decision and the header must name the same policy
        loaded = self.store.current
        revision = loaded.revision if loaded is not None else ""
        if endpoint == "validate":
            cacheable = len(body) < UNCACHED_BODY_BYTES
            return 200, self.validate(review, started, loaded, cacheable=cacheable), revision
        return 200, self.mutate(review, started, loaded), revision

    @staticmethod
    def read_review(content_type: str, body: bytes) -> Review:
        """The body's AdmissionReview, or BadRequest with the HTTP status to answer."""
        mimetype = content_type.partition(";")[0].strip().lower()
        if mimetype != JSON:
            raise BadRequest(415, f"expected Content-Type {JSON}, got {mimetype or 'none'}")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(400, f"the body is not JSON: {exc}") from exc
        try:
            return parse_review(document)
        except ReviewError as exc:
            raise BadRequest(exc.status, str(exc)) from exc

    def refuse(self, endpoint: str, exc: BadRequest) -> Answer:
        """An HTTP error answer for a request that is not a usable review."""
        self.metrics.bad_requests.labels(endpoint, str(exc.status)).inc()
        logger.warning(
            "refused admission request",
            extra={"fields": {"endpoint": endpoint, "status": exc.status, "error": exc.message}},
        )
        return exc.status, error_body(exc.status, exc.message), ""

    def validate(
        self,
        review: Review,
        started: float,
        loaded: LoadedPolicy | None,
        *,
        cacheable: bool = True,
    ) -> bytes:
        """Decide a review against ``loaded``, the policy in force, resolved now.

        ``cacheable``: False decides without looking up or filling the decision cache.
        """
        now = self.clock()
        cached: bool | None = None
        try:
            if self.policy_configmap is not None and self.policy_configmap.matches(review):
                # before the no-policy exit: the first valid policy must be admissible
                decision = judge_policy_edit(
                    review,
                    loaded.policy if loaded else None,
                    cluster=self.cluster_objects,
                    now=now,
                    security_team=self.security_team,
                    # the watch that delivers this text once stored reuses the compile
                    compile_policy=self.store.compile_proposed,
                )
            elif loaded is None:
                decision = Decision(False, NO_POLICY)
            else:
                decision, cached = self.cache.decide(
                    review, loaded.policy.at(now), cacheable=cacheable
                )
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
            else:
                if mutation.refusal:
                    message = f"{review.subject} is refused before injection: {mutation.refusal}"
                    body = review_response(review.uid, allowed=False, message=message)
                    self.finish("mutate", review, loaded, "deny", message, started)
                    return body
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

"""The hot review routes, ``POST /validate`` and ``POST /mutate``, served as WSGI middleware.

The decision costs microseconds and flask's per-request machinery costs more, so these two
routes are answered in front of flask: the body is read once, decided by the ``ReviewHandler``
and answered with pre-serialized bytes.  Refusals: a body over the limit gets 413 (refused from
``Content-Length`` before reading; gunicorn then drains at most 64 KiB and closes), a body that
stops arriving 408; none of them is ever a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from webhook.admission.responses import error_body
from webhook.admission.reviewing import JSON, REVISION_HEADER, BadRequest, ReviewHandler

logger = logging.getLogger(__name__)


_REASONS = {
    200: "200 OK",
    400: "400 BAD REQUEST",
    408: "408 REQUEST TIMEOUT",
    413: "413 REQUEST ENTITY TOO LARGE",
    415: "415 UNSUPPORTED MEDIA TYPE",
    500: "500 INTERNAL SERVER ERROR",
}


class ReviewRoutes:
    """WSGI middleware answering ``POST /validate`` and ``POST /mutate`` without flask.

    Flask's request and app contexts, URL matching and response objects cost more than the
    decision itself (measured: tests/bench/bench_service.py), so the two hot routes are served
    here and everything else (health, metrics, 404/405) goes on to flask.
    """

    def __init__(self, handler: ReviewHandler, app: Callable[..., Any], *, max_body: int) -> None:
        self.handler = handler
        self.app = app
        self.max_body = max_body

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Serve a review, or pass the request on to flask."""
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "POST" or path not in ("/validate", "/mutate"):
            return self.app(environ, start_response)
        endpoint = path[1:]
        # a large decoded review, freed only once the response is sent (ReviewHandler.answer)
        decoded: list[object] = []
        try:
            body = self.read_body(environ)
            if isinstance(body, BadRequest):
                status, payload, revision = self.handler.refuse(endpoint, body)
            elif body is None:
                status, payload, revision = self.handler.refuse(
                    endpoint,
                    BadRequest(413, f"the body is larger than {self.max_body} bytes"),
                )
            else:
                status, payload, revision = self.handler.answer(
                    endpoint, environ.get("CONTENT_TYPE", ""), body, keep=decoded
                )
        except Exception:
            logger.exception("unhandled error", extra={"fields": {"path": path}})
            status, payload, revision = 500, error_body(500, "internal error"), ""
        headers = [("Content-Type", JSON), ("Content-Length", str(len(payload)))]
        if revision:
            headers.append((REVISION_HEADER, revision))
        start_response(_REASONS.get(status, f"{status} ERROR"), headers)
        if decoded:
            return ReleasedWhenSent(payload, decoded)
        return [payload]

    def read_body(self, environ: dict[str, Any]) -> bytes | BadRequest | None:
        """The request body, None when it is over the limit (unread when the length says so), or
        a 408 when it stops arriving (the server's socket deadline)."""
        try:
            return self._read_body(environ)
        except TimeoutError:
            return BadRequest(408, "the request body did not arrive in time")

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


class ReleasedWhenSent:
    """A one-chunk response body that drops what it keeps alive once the server has sent it.

    The WSGI server calls ``close`` after writing the body, so the decoded review is freed after
    the API server has its answer rather than before.
    """

    __slots__ = ("kept", "payload")

    def __init__(self, payload: bytes, kept: list[object]) -> None:
        self.payload = payload
        self.kept = kept

    def __iter__(self) -> Iterator[bytes]:
        return iter((self.payload,))

    def close(self) -> None:
        """Free what the answer kept alive."""
        self.kept.clear()

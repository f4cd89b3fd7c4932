"""The benchmark's baselines under egress-guard's gunicorn/TLS settings.

Run as ``python -m tests.bench.null_server --bind 127.0.0.1:PORT --cert-file F --key-file F``:
a do-nothing flask handler (the ceiling the targets are stated against).  It reads the body
(gunicorn would drain it anyway) and answers a constant AdmissionReview, so the difference to
``egress-guard serve`` is exactly the webhook's own work.

With ``--bare`` it serves a plain WSGI callable doing the same, without flask (the stack floor):
egress-guard answers its review routes from WSGI middleware in front of flask, so this is what
the same gunicorn, TLS and HTTP cost with no framework and no work at all.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from flask import Flask, Response, request

from webhook.admission.metrics import Metrics
from webhook.admission.server import AppFactory, WebhookServer
from webhook.policy_runtime import PolicyStore, StaticPolicySource, embedded_policy_text
from webhook.settings import Settings

ANSWER = (
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",'
    b'"response":{"uid":"x","allowed":true}}'
)
REVIEW_PATHS = ("/validate", "/mutate")
JSON_HEADERS = [("Content-Type", "application/json")]


def null_app(settings: Settings, store: PolicyStore, metrics: Metrics, view: object) -> Flask:
    """A flask app whose review routes do nothing but read the body."""
    del settings, store, metrics, view
    app = Flask("null")

    def handle() -> Response:
        request.get_data(cache=False)
        return Response(ANSWER, mimetype="application/json")

    for path in REVIEW_PATHS:
        app.add_url_rule(path, path[1:], handle, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", lambda: Response(b"{}", mimetype="application/json"))
    return app


def plain_review_app(answer: Callable[[bytes], bytes]) -> WSGIApplication:
    """A plain WSGI callable answering each review with ``answer(body)``: the body read per
    ``CONTENT_LENGTH`` as egress-guard's review middleware reads it, no framework."""

    def review(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD")
        if method == "POST" and path in REVIEW_PATHS:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length > 0 else b""
            body, status = answer(body), "200 OK"
        elif path == "/healthz":
            body, status = b"{}", "200 OK"
        else:
            body, status = b"{}", "404 NOT FOUND"
        start_response(status, [*JSON_HEADERS, ("Content-Length", str(len(body)))])
        return [body]

    return review


def bare_app(
    settings: Settings, store: PolicyStore, metrics: Metrics, view: object
) -> WSGIApplication:
    """The plain WSGI callable answering the constant review, as ``WebhookServer`` builds its
    app."""
    del settings, store, metrics, view
    return plain_review_app(lambda body: ANSWER)


def main() -> None:
    """Parse the same flags as ``egress-guard serve`` that matter here, and serve."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--cert-file", required=True, type=Path)
    parser.add_argument("--key-file", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--bare", action="store_true", help="a plain WSGI callable instead of flask"
    )
    args = parser.parse_args()
    settings = Settings(
        bind=args.bind,
        cert_file=args.cert_file,
        key_file=args.key_file,
        threads=args.threads,
        workers=args.workers,
        log_level="warning",
    )
    factory: AppFactory = bare_app if args.bare else null_app
    WebhookServer(
        settings,
        source_factory=lambda s: StaticPolicySource(embedded_policy_text(), origin="embedded"),
        app_factory=factory,
    ).run()


if __name__ == "__main__":
    main()

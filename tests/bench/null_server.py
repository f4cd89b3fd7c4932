"""The benchmark's ceiling: a do-nothing flask handler under egress-guard's gunicorn/TLS settings.

Run as ``python -m tests.bench.null_server --bind 127.0.0.1:PORT --cert-file F --key-file F``.
It reads the body (gunicorn would drain it anyway) and answers a constant AdmissionReview, so the
difference to ``egress-guard serve`` is exactly the webhook's own work.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flask import Flask, Response, request

from webhook.admission.metrics import Metrics
from webhook.admission.server import WebhookServer
from webhook.policy_runtime import PolicyStore, StaticPolicySource, embedded_policy_text
from webhook.settings import Settings

ANSWER = (
    b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",'
    b'"response":{"uid":"x","allowed":true}}'
)


def null_app(settings: Settings, store: PolicyStore, metrics: Metrics, view: object) -> Flask:
    """A flask app whose review routes do nothing but read the body."""
    del settings, store, metrics, view
    app = Flask("null")

    def handle() -> Response:
        request.get_data(cache=False)
        return Response(ANSWER, mimetype="application/json")

    app.add_url_rule("/validate", "validate", handle, methods=["POST"])
    app.add_url_rule("/mutate", "mutate", handle, methods=["POST"])
    app.add_url_rule("/healthz", "healthz", lambda: Response(b"{}", mimetype="application/json"))
    return app


def main() -> None:
    """Parse the same flags as ``egress-guard serve`` that matter here, and serve."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--cert-file", required=True, type=Path)
    parser.add_argument("--key-file", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    settings = Settings(
        bind=args.bind,
        cert_file=args.cert_file,
        key_file=args.key_file,
        threads=args.threads,
        workers=args.workers,
        log_level="warning",
    )
    WebhookServer(
        settings,
        source_factory=lambda s: StaticPolicySource(embedded_policy_text(), origin="embedded"),
        app_factory=null_app,
    ).run()


if __name__ == "__main__":
    main()

"""AdmissionReview v1 responses, serialized once with orjson.

The API server shows ``status.message`` to the user who ran ``kubectl apply`` and prints each
``warnings`` entry as ``Warning: ...``.  It truncates warnings itself once they pass 4 KiB in
total (each to 256 characters) and drops warnings that are not printable single lines, so
messages are cleaned and kept within those limits here, with a note to read the decision log
for the full text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from webhook.core.mutations import encode_patch
from webhook.core.reviews import ADMISSION_API_VERSION

MAX_MESSAGE_CHARS = 4096
MAX_WARNING_CHARS = 256
MAX_WARNINGS_TOTAL_CHARS = 4096
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def clean(text: str) -> str:
    """One printable line: control characters (newlines too) become a single space."""
    return _CONTROL.sub(" ", text).strip()


def truncate(text: str, limit: int, *, note: str = "") -> str:
    """``text`` cut to at most ``limit`` characters, ending with an ellipsis and ``note``."""
    if len(text) <= limit:
        return text
    tail = f"… {note}" if note else "…"
    return text[: max(0, limit - len(tail))] + tail


def fit_warnings(warnings: Iterable[str], uid: str) -> list[str]:
    """Warnings cleaned and cut so the API server passes them on unchanged."""
    out: list[str] = []
    total = 0
    items = [c for c in (clean(w) for w in warnings) if c]
    for i, warning in enumerate(items):
        item = truncate(warning, MAX_WARNING_CHARS, note="(see the egress-guard log)")
        remaining = len(items) - i - 1
        if total + len(item) > MAX_WARNINGS_TOTAL_CHARS - MAX_WARNING_CHARS:
            out.append(
                f"egress-guard: {remaining + 1} more warning(s) omitted; "
                f"see the egress-guard log for request {uid}"
            )
            break
        out.append(item)
        total += len(item)
    return out


def review_response(
    uid: str,
    *,
    allowed: bool,
    message: str = "",
    warnings: Sequence[str] = (),
    patch: Sequence[Mapping[str, Any]] = (),
    code: int = 403,
) -> bytes:
    """A complete AdmissionReview v1 response as JSON bytes."""
    response: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        text = truncate(
            clean(message) or "denied by egress-guard",
            MAX_MESSAGE_CHARS,
            note=f"(truncated; the egress-guard log has the full reason for request {uid})",
        )
        response["status"] = {
            "code": code,
            "reason": "Forbidden" if code == 403 else "InternalError",
            "message": text,
        }
    if warnings:
        fitted = fit_warnings(warnings, uid)
        if fitted:
            response["warnings"] = fitted
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = encode_patch(patch)
    return orjson.dumps(
        {"apiVersion": ADMISSION_API_VERSION, "kind": "AdmissionReview", "response": response}
    )


def error_body(status: int, message: str) -> bytes:
    """The JSON body of a refused HTTP request (not an AdmissionReview)."""
    return orjson.dumps({"status": status, "error": clean(message)})

"""AdmissionReview responses stay within what the API server passes on to kubectl."""

from __future__ import annotations

import base64

import orjson
import pytest

from webhook.admission.responses import (
    MAX_MESSAGE_CHARS,
    MAX_WARNING_CHARS,
    MAX_WARNINGS_TOTAL_CHARS,
    clean,
    fit_warnings,
    review_response,
    truncate,
)

pytestmark = pytest.mark.unit


def test_allowed_response_has_no_status() -> None:
    body = orjson.loads(review_response("u", allowed=True))
    assert body == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "u", "allowed": True},
    }


def test_long_denial_is_truncated_and_points_to_the_log() -> None:
    body = orjson.loads(review_response("uid-7", allowed=False, message="x" * 100_000))
    message = body["response"]["status"]["message"]
    assert len(message) <= MAX_MESSAGE_CHARS
    assert message.startswith("xxx")
    assert "uid-7" in message


def test_short_denial_is_kept_whole() -> None:
    body = orjson.loads(review_response("u", allowed=False, message="no: evil.com"))
    assert body["response"]["status"] == {
        "code": 403,
        "reason": "Forbidden",
        "message": "no: evil.com",
    }


def test_denial_without_a_reason_still_says_who_denied() -> None:
    body = orjson.loads(review_response("u", allowed=False, message=" \n"))
    assert "egress-guard" in body["response"]["status"]["message"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\nb", "a b"),
        ("a\r\n\tb", "a b"),
        ("bell\x07", "bell"),
        ("ünïcode ok", "ünïcode ok"),
    ],
)
def test_messages_become_single_printable_lines(raw: str, expected: str) -> None:
    assert clean(raw) == expected


def test_each_warning_fits_the_api_server_item_limit() -> None:
    fitted = fit_warnings(["w" * 1000, "short"], "u")
    assert len(fitted[0]) <= MAX_WARNING_CHARS
    assert fitted[1] == "short"


def test_too_many_warnings_end_with_a_count_of_the_rest() -> None:
    fitted = fit_warnings([f"warning {i} " + "y" * 200 for i in range(100)], "uid-9")
    assert sum(len(w) for w in fitted) <= MAX_WARNINGS_TOTAL_CHARS
    assert "more warning(s) omitted" in fitted[-1]
    assert "uid-9" in fitted[-1]
    kept = len(fitted) - 1
    assert str(100 - kept) in fitted[-1]


def test_empty_warnings_are_dropped() -> None:
    body = orjson.loads(review_response("u", allowed=True, warnings=["", "\n"]))
    assert "warnings" not in body["response"]


def test_patch_is_base64_json_patch() -> None:
    ops = [{"op": "remove", "path": "/spec/x"}]
    body = orjson.loads(review_response("u", allowed=True, patch=ops))
    assert body["response"]["patchType"] == "JSONPatch"
    assert orjson.loads(base64.b64decode(body["response"]["patch"])) == ops


def test_truncate_respects_the_limit_including_the_note() -> None:
    assert truncate("abcdef", 6) == "abcdef"
    cut = truncate("abcdefghij", 8, note="(more)")
    assert len(cut) == 8 and cut.endswith("(more)")

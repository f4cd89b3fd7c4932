"""Fuzzing of the review handler: hostile AdmissionReviews and raw bytes, the invariants of
``fuzz_reviews.Oracle`` on every answer.

CI runs a fixed, derandomized budget (about a minute for the module).  ``make fuzz`` runs the
same properties longer with a seed: ``FUZZ_SEED`` picks the seed and ``FUZZ_EXAMPLES`` scales the
number of examples.  Every crash the fuzzer found is pinned below as a named regression test.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from tests.unit.fuzz_reviews import (
    GOVERNED,
    ODD_HOSTS,
    OPERATIONS,
    SEEDS,
    SUBRESOURCES,
    CapturedErrors,
    Oracle,
    encode,
    small_json,
    structured_reviews,
    with_duplicate_key,
)
from tests.unit.served_app import served_app

pytestmark = pytest.mark.unit

FUZZ_SEED = os.environ.get("FUZZ_SEED", "")
MAX_BODY = 2 * 1024 * 1024
SCALE = int(os.environ.get("FUZZ_EXAMPLES", "1"))

F = TypeVar("F", bound=Callable[..., Any])


def budget(examples: int) -> Callable[[F], F]:
    """Hypothesis settings: fixed and derandomized in CI, seeded and ``SCALE`` times longer
    under ``make fuzz``."""

    def apply(test: F) -> F:
        configured = settings(
            max_examples=examples * SCALE,
            deadline=None,
            derandomize=not FUZZ_SEED,
            database=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.large_base_example,
            ],
        )(test)
        return seed(int(FUZZ_SEED))(configured) if FUZZ_SEED else configured

    return apply


@pytest.fixture(scope="module")
def oracle() -> Iterator[Oracle]:
    app, policy = served_app(max_body=MAX_BODY)
    errors = CapturedErrors()
    root = logging.getLogger("webhook")
    root.addHandler(errors)
    try:
        yield Oracle(Client(app), policy, errors, max_body=MAX_BODY)
    finally:
        root.removeHandler(errors)


@pytest.fixture
def checked(oracle: Oracle) -> Oracle:
    oracle.errors.records.clear()
    return oracle


# --- properties -----------------------------------------------------------------------------


@budget(1000)
@given(review=structured_reviews(), ascii_only=st.booleans())
def test_structured_reviews_of_every_kind_keep_the_invariants(
    oracle: Oracle, review: dict[str, Any], ascii_only: bool
) -> None:
    oracle.errors.records.clear()
    oracle.check(encode(review, ascii_only=ascii_only))


@budget(400)
@given(document=small_json)
def test_any_json_document_is_answered_without_a_server_error(
    oracle: Oracle, document: Any
) -> None:
    oracle.errors.records.clear()
    oracle.check(encode(document))


@budget(400)
@given(
    document=small_json,
    where=st.sampled_from(("request", "object", "kind", "userInfo", "uid", "operation")),
)
def test_any_value_at_any_envelope_field_is_answered(
    oracle: Oracle, document: Any, where: str
) -> None:
    oracle.errors.records.clear()
    review = json.loads(encode(structured_reviews_example()))
    if where in ("request",):
        review["request"] = document
    elif where == "object":
        review["request"]["object"] = document
    else:
        review["request"][where] = document
    oracle.check(encode(review))


@budget(400)
@given(body=st.binary(max_size=2048))
def test_raw_bytes_are_refused_with_a_reason(oracle: Oracle, body: bytes) -> None:
    oracle.errors.records.clear()
    oracle.check(body)


@budget(200)
@given(
    prefix=st.sampled_from((b'{"apiVersion":"admission.k8s.io/v1",', b'{"request":{', b"[")),
    body=st.binary(max_size=512),
)
def test_json_prefixed_garbage_is_refused_with_a_reason(
    oracle: Oracle, prefix: bytes, body: bytes
) -> None:
    oracle.errors.records.clear()
    oracle.check(prefix + body)


@budget(200)
@given(
    content_type=st.one_of(
        st.sampled_from(
            ("", "text/plain", "application/json; charset=latin-1", "APPLICATION/JSON")
        ),
        st.text(max_size=30).filter(lambda t: "\n" not in t and "\r" not in t),
    )
)
def test_any_content_type_is_answered(oracle: Oracle, content_type: str) -> None:
    oracle.errors.records.clear()
    oracle.check(encode(structured_reviews_example()), content_type=content_type)


def structured_reviews_example() -> dict[str, Any]:
    """A well-formed review of a governed kind (the seed ServiceEntry)."""
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": "ServiceEntry"},
            "operation": "CREATE",
            "namespace": "test-app",
            "name": "x",
            "userInfo": {"username": "alice", "groups": ["devs"]},
            "object": json.loads(json.dumps(SEEDS[("networking.istio.io", "ServiceEntry")])),
            "oldObject": None,
        },
    }


# --- every operation, subresource and kind, and the wire-level oddities --------------------


@pytest.mark.parametrize("operation", [*OPERATIONS, "PATCH", "create", ""])
@pytest.mark.parametrize("sub_resource", SUBRESOURCES)
def test_every_operation_and_subresource_is_answered(
    checked: Oracle, operation: str, sub_resource: str
) -> None:
    review = structured_reviews_example()
    review["request"]["operation"] = operation
    review["request"]["subResource"] = sub_resource
    checked.check(encode(review))


@pytest.mark.parametrize(("group", "kind"), GOVERNED)
@pytest.mark.parametrize("host", ODD_HOSTS)
def test_odd_hosts_in_every_kind_are_answered(
    checked: Oracle, group: str, kind: str, host: str
) -> None:
    obj = json.loads(json.dumps(SEEDS[(group, kind)]))
    text = json.dumps(obj).replace("httpbin.org", json.dumps(host)[1:-1])
    review = structured_reviews_example()
    review["request"]["kind"] = {"group": group, "version": "v1", "kind": kind}
    review["request"]["object"] = json.loads(text)
    checked.check(encode(review))


@pytest.mark.parametrize(
    "number",
    [
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775809",
        "1" * 400,
        "1e308",
        "1e400",
        "-1e400",
        "5e-324",
        "1e-400",
        "443.0",
        "-0",
        "NaN",
        "Infinity",
    ],
)
@pytest.mark.parametrize("where", ["number", "port", "uid", "runAsUser"])
def test_numbers_at_the_limits_are_answered(checked: Oracle, number: str, where: str) -> None:
    review = structured_reviews_example()
    review["request"]["object"]["spec"]["ports"][0]["number"] = (
        "@number@" if where == "number" else 443
    )
    if where == "port":
        review["request"]["object"]["spec"]["ports"][0]["targetPort"] = "@number@"
    if where == "uid":
        review["request"]["uid"] = "@number@"
    if where == "runAsUser":
        review["request"]["kind"] = {"group": "", "version": "v1", "kind": "Pod"}
        review["request"]["object"] = json.loads(json.dumps(SEEDS[("", "Pod")]))
        review["request"]["object"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = (
            "@number@"
        )
    checked.check(encode(review).replace(b'"@number@"', number.encode()))


@pytest.mark.parametrize("key", ["uid", "kind", "operation", "object", "namespace"])
def test_duplicate_keys_are_decided_by_the_last_one(checked: Oracle, key: str) -> None:
    review = structured_reviews_example()
    request = encode(review["request"])
    first_value: Any = {"kind": "Namespace"} if key == "kind" else None
    body = encode({**review, "request": "@request@"}).replace(
        b'"@request@"', with_duplicate_key(request, key, first_value)
    )
    checked.check(body)


@pytest.mark.parametrize("depth", [10, 200, 254, 256, 600, 1023, 1024, 1025, 5000])
@pytest.mark.parametrize("container", ["[", '{"a":'])
@pytest.mark.parametrize("where", ["top", "spec", "hosts"])
def test_deep_nesting_is_answered(checked: Oracle, depth: int, container: str, where: str) -> None:
    closing = "]" if container == "[" else "}"
    nested = (container * depth + "1" + closing * depth).encode()
    review = structured_reviews_example()
    if where == "top":
        body = nested
    elif where == "spec":
        review["request"]["object"]["spec"] = "@deep@"
        body = encode(review).replace(b'"@deep@"', nested)
    else:
        review["request"]["object"]["spec"]["hosts"] = "@deep@"
        body = encode(review).replace(b'"@deep@"', nested)
    checked.check(body)


@pytest.mark.parametrize(
    "text",
    ['"\\ud800"', '"\\udfff.org"', '"\\u0000"', '"ok\\ud83d\\ude00"', '"\u202e"'],
)
def test_escaped_surrogates_and_controls_are_answered(checked: Oracle, text: str) -> None:
    for field in ("uid", "namespace", "name"):
        review = structured_reviews_example()
        review["request"][field] = "@text@"
        checked.check(encode(review).replace(b'"@text@"', text.encode()))
    review = structured_reviews_example()
    review["request"]["object"]["spec"]["hosts"] = ["@text@"]
    checked.check(encode(review).replace(b'"@text@"', text.encode()))


@pytest.mark.parametrize(("group", "kind"), GOVERNED)
def test_huge_strings_and_arrays_in_every_kind_are_answered(
    checked: Oracle, group: str, kind: str
) -> None:
    review = structured_reviews_example()
    review["request"]["kind"] = {"group": group, "version": "v1", "kind": kind}
    obj = json.loads(json.dumps(SEEDS[(group, kind)]))
    obj["metadata"]["name"] = "n" * 300_000
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else obj
    for key in list(spec)[:6]:
        spec[key] = ["httpbin.org"] * 10_000 if key != "template" else spec[key]
    review["request"]["object"] = obj
    checked.check(encode(review))


def test_invalid_utf8_is_refused(checked: Oracle) -> None:
    body = encode(structured_reviews_example()).replace(b'"u-1"', b'"u-\xff\xfe"')
    checked.check(body)


# --- crashes the fuzzer found, pinned -------------------------------------------------------


@pytest.mark.parametrize("operation", [[], ["CREATE"], {}, {"CREATE": 1}])
def test_unhashable_operation_is_a_400_not_a_500(checked: Oracle, operation: Any) -> None:
    # parse_review looked the operation up in a set before checking its type: TypeError, 500
    review = structured_reviews_example()
    review["request"]["operation"] = operation
    checked.check(encode(review))
    assert checked.client.post("/validate", json=review).status_code == 400

"""Hostile AdmissionReviews for the review handler's fuzz tests: strategies and the oracle.

The structured strategy starts from a plausible object of every kind the engine governs and
damages it at random places (wrong types, nulls, huge strings and arrays, deep nesting, odd
Unicode hosts, numbers at the float and integer limits), inside an envelope whose every field is
fuzzed too (operations, subresources, users, dry-run).  Bodies are written with the standard
library's encoder, so integers past 64 bits reach the server as text, and ``with_duplicate_key``
repeats a key the way only hand-written JSON can.

``check_answer`` is the oracle: whatever the body, the answer is a 200 AdmissionReview echoing
the uid or a 4xx with a reason, a second identical request gets the same verdict, and a review
the engine denies is never answered ``allowed: true``.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import strategies as st
from werkzeug.test import Client

from webhook.admission.reviewing import REVISION_HEADER
from webhook.core.engine import decide
from webhook.core.errors import ReviewError
from webhook.core.policy import Policy
from webhook.core.reviews import parse_review

JSON_TYPE = "application/json"
INT64_MIN, INT64_MAX, UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1

SEEDS: dict[tuple[str, str], dict[str, Any]] = {}


def _seed(group: str, kind: str, spec: Mapping[str, Any] | None, **top: Any) -> None:
    version = "v1"
    api_version = f"{group}/{version}" if group else version
    SEEDS[(group, kind)] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "test-app", "labels": {"k8s-app": "app-a"}},
        **({"spec": dict(spec)} if spec is not None else {}),
        **top,
    }


_POD_SPEC = {
    "containers": [
        {
            "name": "app",
            "image": "busybox",
            "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["NET_ADMIN"]}},
        }
    ],
    "initContainers": [{"name": "init", "image": "busybox", "securityContext": {"runAsUser": 0}}],
    "hostNetwork": False,
}
_TEMPLATE = {
    "metadata": {
        "labels": {"k8s-app": "app-a"},
        "annotations": {"sidecar.istio.io/inject": "false", "proxy.istio.io/config": "{}"},
    },
    "spec": _POD_SPEC,
}
_ISTIO = "networking.istio.io"
_GW_API = "gateway.networking.k8s.io"
_seed(
    _ISTIO,
    "ServiceEntry",
    {
        "hosts": ["httpbin.org"],
        "addresses": ["10.0.0.1/32"],
        "ports": [{"number": 443, "name": "tls", "protocol": "TLS", "targetPort": 8443}],
        "location": "MESH_EXTERNAL",
        "resolution": "DNS",
        "endpoints": [{"address": "1.2.3.4", "ports": {"tls": 443}, "network": "n"}],
        "exportTo": ["."],
        "workloadSelector": {"labels": {"k8s-app": "app-a"}},
    },
)
_seed(
    _ISTIO,
    "VirtualService",
    {
        "hosts": ["httpbin.org"],
        "gateways": ["mesh", "external/egress-httpbin"],
        "exportTo": ["."],
        "http": [
            {
                "match": [{"port": 80, "gateways": ["mesh"], "authority": {"exact": "a"}}],
                "route": [{"destination": {"host": "httpbin.org", "port": {"number": 80}}}],
                "mirror": {"host": "google.com"},
                "mirrors": [{"destination": {"host": "github.com"}}],
                "delegate": {"name": "d", "namespace": "n"},
            }
        ],
        "tls": [
            {
                "match": [{"port": 443, "sniHosts": ["httpbin.org"]}],
                "route": [{"destination": {"host": "httpbin.org", "subset": "s"}, "weight": 100}],
            }
        ],
        "tcp": [{"route": [{"destination": {"host": "10.1.2.3"}}]}],
    },
)
_seed(
    _ISTIO,
    "DestinationRule",
    {
        "host": "httpbin.org",
        "exportTo": ["*"],
        "trafficPolicy": {"tls": {"mode": "SIMPLE", "sni": "github.com"}},
        "subsets": [{"name": "s", "labels": {"a": "b"}, "trafficPolicy": {"tls": {}}}],
        "workloadSelector": {"matchLabels": {"k8s-app": "app-a"}},
    },
)
_seed(
    _ISTIO,
    "Sidecar",
    {
        "egress": [{"hosts": ["./*", "istio-system/*"], "port": {"number": 443}}],
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY", "egressProxy": {"host": "a"}},
        "workloadSelector": {"labels": {"k8s-app": "app-a"}},
    },
)
_seed(
    _ISTIO,
    "Gateway",
    {
        "selector": {"istio": "egressgateway"},
        "servers": [{"port": {"number": 443, "protocol": "TLS"}, "hosts": ["*/httpbin.org"]}],
    },
)
_seed(_ISTIO, "EnvoyFilter", {"configPatches": [{"applyTo": "CLUSTER", "patch": {"value": {}}}]})
_seed(_ISTIO, "WorkloadEntry", {"address": "1.2.3.4", "labels": {"k8s-app": "app-a"}})
_seed(_ISTIO, "WorkloadGroup", {"template": {"address": "1.2.3.4", "labels": {"a": "b"}}})
for _kind in ("WasmPlugin", "TrafficExtension"):
    _seed("extensions.istio.io", _kind, {"url": "oci://x", "selector": {"matchLabels": {}}})
_seed(
    "",
    "Service",
    {
        "type": "ExternalName",
        "externalName": "google.com",
        "ports": [{"port": 443, "targetPort": 443}],
        "externalIPs": ["1.2.3.4"],
        "selector": {"k8s-app": "app-a"},
    },
)
_seed("", "Endpoints", None, subsets=[{"addresses": [{"ip": "1.2.3.4"}], "ports": [{"port": 1}]}])
SEEDS[("discovery.k8s.io", "EndpointSlice")] = {
    "apiVersion": "discovery.k8s.io/v1",
    "kind": "EndpointSlice",
    "metadata": {"name": "x", "namespace": "test-app", "labels": {}},
    "addressType": "IPv4",
    "endpoints": [{"addresses": ["1.2.3.4"], "conditions": {"ready": True}}],
    "ports": [{"port": 443, "protocol": "TCP"}],
}
_seed(
    "",
    "Namespace",
    {},
    metadata={"name": "test-app", "labels": {"istio-injection": "enabled"}, "annotations": {}},
)
_seed("", "Pod", _POD_SPEC)
_seed("", "ReplicationController", {"template": _TEMPLATE})
for _kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
    _seed("apps", _kind, {"template": _TEMPLATE, "selector": {"matchLabels": {}}})
_seed("batch", "Job", {"template": _TEMPLATE})
_seed(
    "batch", "CronJob", {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": _TEMPLATE}}}
)
for _kind in ("HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"):
    _seed(
        _GW_API,
        _kind,
        {
            "parentRefs": [{"kind": "ServiceEntry", "group": _ISTIO, "name": "httpbin.org"}],
            "hostnames": ["httpbin.org"],
            "rules": [{"backendRefs": [{"name": "google.com", "kind": "Hostname", "port": 443}]}],
        },
    )
_seed(
    _GW_API,
    "Gateway",
    {
        "gatewayClassName": "istio",
        "listeners": [{"name": "l", "port": 443, "protocol": "TLS", "hostname": "httpbin.org"}],
        "addresses": [{"type": "Hostname", "value": "egress.external.svc"}],
    },
)
# not governed: the engine must let them through untouched whatever their shape
_seed("rbac.authorization.k8s.io", "Role", {})
_seed("", "ConfigMap", None, data={"policy.yaml": "x"})

GOVERNED = sorted(SEEDS)

# --- hostile values -------------------------------------------------------------------------

ODD_HOSTS = (
    "",
    ".",
    "..",
    "*",
    "*.",
    "*.*",
    "**.org",
    "httpbin.org.",
    ".httpbin.org",
    "HTTPBIN.ORG",
    "httpbin\uff0eorg",  # fullwidth full stop, which IDNA maps to "."
    "httpbin\u3002org",  # ideographic full stop
    "\uff48\uff54\uff54\uff50\uff42\uff49\uff4e.org",  # fullwidth letters
    "httpbin.org\u200b",
    "\u202ehttpbin.org",
    "xn--",
    "xn--bcher-kva.example",
    "bücher.example",
    "ß.example",
    "\U0001f600.example",
    "httpbin.org\x00.evil.com",
    "httpbin.org:443",
    "[::1]",
    "::ffff:1.2.3.4",
    "0x7f.1",
    "1.2.3.4/0",
    "0.0.0.0/0",
    "a" * 64 + ".org",
    ("a" * 63 + ".") * 5 + "org",
    "*/httpbin.org",
    "./*",
    "~/*",
    "istio-system/*",
    "-leading.org",
    "under_score.org",
    "google.com\nhttpbin.org",
)
INT_LIMITS = (0, -1, 1, 65535, 65536, INT64_MIN, INT64_MAX, UINT64_MAX, -(2**31), 2**31 - 1)
FLOAT_LIMITS = (0.5, -0.0, 1e308, -1e308, 5e-324, 2.0**53 + 1, 443.0)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(INT_LIMITS),
    st.integers(),
    st.sampled_from(FLOAT_LIMITS),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(ODD_HOSTS),
    st.text(max_size=40),
)
small_json = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _nested(depth: int, inner: Any, as_list: bool) -> Any:
    value = inner
    for _ in range(depth):
        value = [value] if as_list else {"spec": value}
    return value


big_values = st.one_of(
    st.integers(1_000, 200_000).map(lambda n: "h" * n),
    st.integers(100, 20_000).map(lambda n: ["httpbin.org"] * n),
    st.integers(100, 5_000).map(lambda n: {f"k{i}": i for i in range(n)}),
    st.builds(_nested, st.integers(10, 900), small_json, st.booleans()),
)
hostile = st.one_of(scalars, small_json, st.lists(st.sampled_from(ODD_HOSTS), max_size=6))

# --- structured reviews ---------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out.extend(_paths(child, (*prefix, i)))
    return out


def _replace(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = root
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return root


def _damage(draw: st.DrawFn, obj: Any) -> Any:
    """``obj`` with one random part replaced, dropped, grown or given an unknown sibling."""
    paths = _paths(obj)
    path = draw(st.sampled_from(paths))
    action = draw(st.sampled_from(("replace", "replace", "big", "drop", "extra")))
    if action == "drop" and path:
        parent = obj
        for step in path[:-1]:
            parent = parent[step]
        del parent[path[-1]]
        return obj
    if action == "extra":
        target = obj
        for step in path:
            target = target[step]
        if isinstance(target, dict):
            target[draw(st.text(max_size=10))] = draw(hostile)
            return obj
        if isinstance(target, list):
            target.append(draw(hostile))
            return obj
    value = draw(big_values if action == "big" else hostile)
    return _replace(obj, path, value)


OPERATIONS = ("CREATE", "UPDATE", "DELETE", "CONNECT")
SUBRESOURCES = ("", "status", "ephemeralcontainers", "scale", "exec", "binding", "eviction")


@st.composite
def damaged_object(draw: st.DrawFn, kind_key: tuple[str, str]) -> Any:
    """The seed of ``kind_key`` with a few random parts damaged (or left whole)."""
    obj = copy.deepcopy(SEEDS[kind_key])
    for _ in range(draw(st.integers(0, 4))):
        obj = _damage(draw, obj)
    return obj


@st.composite
def structured_reviews(draw: st.DrawFn) -> dict[str, Any]:
    """An AdmissionReview of a governed kind with a damaged object and a fuzzed envelope."""
    group, kind = draw(st.sampled_from(GOVERNED))
    operation = draw(st.sampled_from(OPERATIONS))
    obj = draw(damaged_object((group, kind)))
    old = draw(st.one_of(st.none(), damaged_object((group, kind))))
    if operation == "DELETE":
        obj, old = (None, old or obj) if draw(st.booleans()) else (obj, old)
    request: dict[str, Any] = {
        "uid": draw(st.one_of(st.just("u-1"), st.text(min_size=1, max_size=40))),
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": kind.lower() + "s"},
        "subResource": draw(st.sampled_from(SUBRESOURCES)),
        "name": draw(st.sampled_from(("x", "", "test-app", "egress-guard"))),
        "namespace": draw(st.sampled_from(("test-app", "", "external", "istio-system", "ns"))),
        "operation": operation,
        "userInfo": {
            "username": draw(st.sampled_from(("alice", "system:serviceaccount:x:y", ""))),
            "groups": draw(
                st.one_of(
                    st.just(["system:authenticated"]),
                    st.just(["system:masters"]),
                    st.lists(small_json, max_size=3),
                )
            ),
        },
        "object": obj,
        "oldObject": old,
        "dryRun": draw(st.booleans()),
    }
    review: dict[str, Any] = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": request,
    }
    # the envelope is damaged too, less often: most examples should reach the checks
    if draw(st.integers(0, 9)) == 0:
        review = _damage(draw, review)
    return review


def encode(document: Any, *, ascii_only: bool = False) -> bytes:
    """JSON text as a client could write it: big integers kept, no NaN."""
    return json.dumps(document, ensure_ascii=ascii_only, allow_nan=False).encode()


def with_duplicate_key(body: bytes, key: str, value: Any) -> bytes:
    """``body`` (a JSON object) with ``key`` written again first, so the original value wins."""
    assert body.startswith(b"{")
    return b"{" + json.dumps(key).encode() + b":" + json.dumps(value).encode() + b"," + body[1:]


# --- the oracle -----------------------------------------------------------------------------


class CapturedErrors(logging.Handler):
    """Every log record carrying an exception: the handler's net caught something."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@dataclass(repr=False)
class Oracle:
    """Posts a body to both endpoints and checks every invariant of the answer."""

    client: Client
    policy: Policy
    errors: CapturedErrors
    max_body: int
    answers: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Oracle(answers={self.answers})"

    def check(self, body: bytes, content_type: str = JSON_TYPE) -> None:
        """Assert the handler's invariants for ``body`` on ``/validate`` and ``/mutate``."""
        expected_uid, engine_allowed = self._expectations(body, content_type)
        for endpoint in ("/validate", "/mutate"):
            first = self._post(endpoint, body, content_type)
            second = self._post(endpoint, body, content_type)
            assert first == second, f"{endpoint}: the same review got two different answers"
            status, payload, revision = first
            self.answers[str(status)] = self.answers.get(str(status), 0) + 1
            assert status < 500, f"{endpoint} answered {status}: {payload!r}"
            if status != 200:
                assert 400 <= status < 500 and payload.get("error"), payload
                assert expected_uid is None, f"{endpoint} refused a valid review: {payload}"
                continue
            assert payload.get("kind") == "AdmissionReview", payload
            assert revision == self.policy.revision, "a decided review names its policy"
            response = payload["response"]
            assert response["uid"] == expected_uid
            if endpoint == "/validate" and engine_allowed is not None:
                assert response["allowed"] is engine_allowed, (
                    f"the engine says allowed={engine_allowed}, the webhook answered "
                    f"{response['allowed']}: {response.get('status')}"
                )
        assert not self.errors.records, [
            (r.getMessage(), r.exc_info[1] if r.exc_info else None) for r in self.errors.records
        ]

    def _post(self, endpoint: str, body: bytes, content_type: str) -> tuple[int, Any, str]:
        response = self.client.post(endpoint, data=body, headers={"Content-Type": content_type})
        payload = orjson.loads(response.get_data())
        return response.status_code, payload, response.headers.get(REVISION_HEADER, "")

    def _expectations(self, body: bytes, content_type: str) -> tuple[str | None, bool | None]:
        """The uid a 200 must echo (None: a 4xx is due) and the engine's own verdict."""
        # parameters (charset) and case do not matter, as for any media type
        if len(body) > self.max_body:
            return None, None
        if content_type.partition(";")[0].strip().lower() != JSON_TYPE:
            return None, None
        try:
            review = parse_review(orjson.loads(body))
        except (orjson.JSONDecodeError, ReviewError):
            return None, None
        # the engine itself must never raise, whatever the object
        return review.uid, decide(review, self.policy).allowed

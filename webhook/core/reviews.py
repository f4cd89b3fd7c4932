"""AdmissionReview v1 requests as plain values, and the one parser that checks their shape.

The webhook gets JSON from the API server; ``check`` gets manifests from disk.  Both end up as a
``Review``, so the decision code never touches wire formats.  A review that is not one (missing
``request``, ``uid``, ``kind``...) raises ``ReviewError``: the *request* is bad and the adapter
answers 4xx.  An object of the wrong shape inside a well-formed review is not an error here; the
checks deny it with a reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, cast

from webhook.core.errors import ReviewError

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
OPERATIONS: frozenset[str] = frozenset(("CREATE", "UPDATE", "DELETE", "CONNECT"))
ADMISSION_API_VERSION = "admission.k8s.io/v1"


class GroupVersionKind(TypedDict):
    """``request.kind`` of an AdmissionReview."""

    group: str
    version: str
    kind: str


class UserInfo(TypedDict, total=False):
    """``request.userInfo`` of an AdmissionReview."""

    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class AdmissionRequest(TypedDict, total=False):
    """The fields of ``request`` that egress-guard reads."""

    uid: str
    kind: GroupVersionKind
    resource: dict[str, str]
    subResource: str
    name: str
    namespace: str
    operation: Operation
    userInfo: UserInfo
    object: dict[str, Any] | None
    oldObject: dict[str, Any] | None
    dryRun: bool


@dataclass(frozen=True, slots=True)
class Review:
    """One admission request: what is changed, how, and by whom."""

    uid: str
    group: str
    version: str
    kind: str
    operation: Operation
    namespace: str
    name: str
    object: Mapping[str, Any] | None = None
    old_object: Mapping[str, Any] | None = None
    username: str = ""
    groups: tuple[str, ...] = ()
    dry_run: bool = False
    sub_resource: str = ""

    @property
    def subject(self) -> str:
        """``ServiceEntry test-app/evil`` for messages and logs."""
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


def parse_review(body: Any) -> Review:
    """Check the shape of a decoded AdmissionReview v1 and return its request as a Review."""
    # every review passes here: JSON objects decode to dict, and the exact-type test spares the
    # slower Mapping (ABC) test for them; other mappings still pass it
    if type(body) is not dict and not isinstance(body, Mapping):
        raise ReviewError("the body must be a JSON object (an AdmissionReview)")
    if body.get("kind") != "AdmissionReview":
        raise ReviewError(f"expected kind AdmissionReview, got {body.get('kind')!r}")
    if body.get("apiVersion") != ADMISSION_API_VERSION:
        raise ReviewError(
            f"expected apiVersion {ADMISSION_API_VERSION}, got {body.get('apiVersion')!r}"
        )
    raw = body.get("request")
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise ReviewError("the AdmissionReview has no request")
    request = cast(AdmissionRequest, raw)
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("the AdmissionReview request has no uid")
    kind = request.get("kind")
    if type(kind) is not dict and not isinstance(kind, Mapping):
        raise ReviewError("the AdmissionReview request has no kind")
    kind_name = kind.get("kind")
    if not isinstance(kind_name, str):
        raise ReviewError("the AdmissionReview request has no kind")
    operation = request.get("operation")
    # a list or object here is unhashable: test the type before the set lookup
    if not isinstance(operation, str) or operation not in OPERATIONS:
        raise ReviewError(f"unknown operation {operation!r}")
    obj = request.get("object")
    if obj is not None and type(obj) is not dict and not isinstance(obj, Mapping):
        raise ReviewError("request.object must be an object or null")
    old = request.get("oldObject")
    if old is not None and type(old) is not dict and not isinstance(old, Mapping):
        raise ReviewError("request.oldObject must be an object or null")
    user = request.get("userInfo") or {}
    if type(user) is not dict and not isinstance(user, Mapping):
        raise ReviewError("request.userInfo must be an object")
    groups = user.get("groups") or []
    return Review(
        uid=uid,
        group=str(kind.get("group", "")),
        version=str(kind.get("version", "")),
        kind=kind_name,
        operation=operation,
        namespace=str(request.get("namespace") or ""),
        name=str(request.get("name") or _name_of(obj) or _name_of(old) or ""),
        object=obj,
        old_object=old,
        username=str(user.get("username", "")),
        groups=tuple(map(str, groups)) if isinstance(groups, list) else (),
        dry_run=bool(request.get("dryRun", False)),
        sub_resource=str(request.get("subResource") or ""),
    )


def _name_of(obj: Any) -> str:
    if isinstance(obj, Mapping):
        meta = obj.get("metadata")
        if isinstance(meta, Mapping):
            return str(meta.get("name") or meta.get("generateName") or "")
    return ""


def review_of_manifest(
    manifest: Mapping[str, Any],
    *,
    operation: Operation = "CREATE",
    namespace: str | None = None,
    username: str = "egress-guard-check",
) -> Review:
    """A Review for a manifest read from disk, as ``kubectl apply`` would submit it.

    ``namespace`` is the namespace for objects whose manifest names none.
    """
    api_version = str(manifest.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    meta = manifest.get("metadata") if isinstance(manifest.get("metadata"), Mapping) else {}
    assert isinstance(meta, Mapping)
    kind = str(manifest.get("kind", ""))
    # like kubectl: the namespace the manifest names wins; ``namespace`` only fills in for
    # objects that name none, so a bundle spanning namespaces is judged where it will land
    ns = "" if kind == "Namespace" else str(meta.get("namespace") or namespace or "default")
    obj = None if operation == "DELETE" else manifest
    old = manifest if operation in ("DELETE", "UPDATE") else None
    return Review(
        uid="offline",
        group=group,
        version=version,
        kind=kind,
        operation=operation,
        namespace=ns,
        name=str(meta.get("name") or ""),
        object=obj,
        old_object=old,
        username=username,
    )

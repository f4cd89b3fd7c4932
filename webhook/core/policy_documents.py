"""Read the text of a policy: bare YAML or JSON, or a ConfigMap manifest carrying it.

Accepts the bare policy document or a ConfigMap manifest carrying it under one of four keys:
``policy.yaml`` or ``policy.json`` in ``data``, or their gzip-compressed forms
``policy.yaml.gz`` and ``policy.json.gz`` in ``binaryData``.  A ConfigMap holds at most 1 MiB, a
100,000-host allow list takes about 2.6 MiB of JSON and 0.7 MiB gzipped; ``gzip -k policy.json &&
kubectl create configmap NAME --from-file=policy.json.gz`` puts it in ``binaryData``.
Decompression is bounded (``MAX_POLICY_BYTES``): a gzip bomb is refused, not inflated.

JSON is YAML too, but libyaml takes ~0.6 s for a 100,000-host list where orjson takes ~20 ms, so
text that parses as JSON is read with orjson and anything else with YAML.  Nothing here reads
files: callers pass text or bytes.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from webhook.core.errors import PolicyDecodeError, PolicyError, PolicyProblem

POLICY_KEY = "policy.yaml"
POLICY_JSON_KEY = "policy.json"
POLICY_GZIP_KEY = "policy.json.gz"
POLICY_YAML_GZIP_KEY = "policy.yaml.gz"
# the ConfigMap keys a policy may live under, at most one of them per ConfigMap
POLICY_KEYS = (POLICY_JSON_KEY, POLICY_KEY, POLICY_GZIP_KEY, POLICY_YAML_GZIP_KEY)
GZIP_SUFFIX = ".gz"
GZIP_MAGIC = b"\x1f\x8b"
# 100,000 hosts are ~2.6 MiB of JSON: 32 MiB leaves room for any honest policy and refuses a
# bomb (1 MiB of gzip can inflate to 1 GiB) before it costs more than this much memory
MAX_POLICY_BYTES = 32 * 1024 * 1024
# libyaml's loader is ~10x faster on large host lists; same safe semantics
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """The policy text found in a ConfigMap, decoded, and where it was found."""

    key: str
    # "data" or "binaryData"
    field: str
    text: str | bytes

    @property
    def location(self) -> str:
        """``data[policy.yaml]`` or ``binaryData[policy.json.gz]``: where problems point."""
        return f"{self.field}[{self.key}]"


def gunzip(blob: bytes, *, where: str = "", limit: int = MAX_POLICY_BYTES) -> bytes:
    """The decompressed bytes of gzip ``blob``; PolicyDecodeError if broken or over ``limit``.

    Concatenated members (``cat a.gz b.gz``) are read as gzip reads them.  The output is never
    allowed to grow past ``limit`` + 1 bytes, so a bomb costs at most that much memory.
    """
    out = bytearray()
    rest = blob
    while True:
        inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise PolicyDecodeError(where, f"not valid gzip: {exc}") from exc
        if len(out) > limit:
            raise PolicyDecodeError(
                where,
                f"decompresses to more than {limit // (1024 * 1024)} MiB; refused as a "
                "compression bomb (a 100,000-host policy is about 3 MiB)",
            )
        if not inflater.eof:
            raise PolicyDecodeError(where, "not valid gzip: the compressed data is truncated")
        rest = inflater.unused_data
        if not rest.strip(b"\0"):  # gzip tolerates zero padding after the last member
            return bytes(out)


def _binary(value: Any, where: str) -> bytes:
    """A ``binaryData`` value: base64 text as the API serves it, or bytes already decoded."""
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if not isinstance(value, str):
        raise PolicyDecodeError(where, "expected base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PolicyDecodeError(where, f"not valid base64: {exc}") from exc


def stored_policy(
    data: Mapping[str, Any] | None, binary_data: Mapping[str, Any] | None = None
) -> StoredPolicy | None:
    """The policy in a ConfigMap's ``data`` and ``binaryData``, decompressed; None if no key.

    Raises PolicyError when more than one policy key is present (which one is in force would be
    a guess), and PolicyDecodeError when a compressed key cannot be read.
    """
    data = data if isinstance(data, Mapping) else {}
    binary_data = binary_data if isinstance(binary_data, Mapping) else {}
    present = [
        (field, key)
        for field, values in (("data", data), ("binaryData", binary_data))
        for key in POLICY_KEYS
        if key in values
    ]
    if len(present) > 1:
        keys = " and ".join(f"{field}[{key}]" for field, key in present)
        raise PolicyError(
            [PolicyProblem("", f"the ConfigMap has several policy keys ({keys}); keep one")]
        )
    if not present:
        return None
    field, key = present[0]
    where = f"{field}[{key}]"
    value = (data if field == "data" else binary_data)[key]
    if key.endswith(GZIP_SUFFIX):
        # a gzip file is not UTF-8, so kubectl puts it in binaryData; in data it is text
        blob = _binary(value, where) if field == "binaryData" else str(value).encode()
        return StoredPolicy(key, field, gunzip(blob, where=where))
    if field == "binaryData":
        return StoredPolicy(key, field, _binary(value, where))
    return StoredPolicy(key, field, str(value))


def policy_text(
    data: Mapping[str, Any], binary_data: Mapping[str, Any] | None = None
) -> str | bytes | None:
    """The policy in a ConfigMap (any of ``POLICY_KEYS``), decompressed; None if none."""
    stored = stored_policy(data, binary_data)
    return stored.text if stored is not None else None


def decompressed(text: str | bytes, *, where: str = "") -> str | bytes:
    """``text`` itself, or its decompressed bytes when it is gzip (a ``policy.json.gz`` file)."""
    if isinstance(text, bytes) and text.startswith(GZIP_MAGIC):
        return gunzip(text, where=where)
    return text


def _json_document(text: str | bytes) -> Any:
    """The JSON value of ``text``, or None when it is not JSON (then it is read as YAML)."""
    head = text.lstrip()[:1]
    if head not in ("{", b"{"):
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def load_document(text: str | bytes) -> dict[str, Any]:
    """Parse YAML or JSON text into the policy mapping, unwrapping a ConfigMap if it is one.

    Gzip bytes (a ``policy.json.gz`` file read as is) are decompressed first.
    """
    text = decompressed(text)
    document = _json_document(text)
    if isinstance(document, Mapping):
        return _unwrap([document])
    try:
        docs = [d for d in yaml.load_all(text, Loader=_LOADER) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise PolicyError([PolicyProblem("", f"not valid YAML ({where}): {exc}")]) from exc
    if not docs:
        raise PolicyError([PolicyProblem("", "the policy document is empty")])
    return _unwrap(docs)


def _unwrap(docs: list[Any]) -> dict[str, Any]:
    for doc in docs:
        if isinstance(doc, Mapping) and doc.get("kind") == "ConfigMap":
            inner = policy_text(doc.get("data") or {}, doc.get("binaryData") or {})
            if inner is None:
                continue
            return load_document(inner)
    doc = docs[0]
    if isinstance(doc, Mapping) and doc.get("kind") == "ConfigMap":
        message = f"the ConfigMap has no policy key (one of {', '.join(POLICY_KEYS)})"
        raise PolicyError([PolicyProblem("/data", message)])
    if len(docs) > 1:
        raise PolicyError([PolicyProblem("", "expected one policy document, found several")])
    if not isinstance(doc, Mapping):
        raise PolicyError([PolicyProblem("", "the policy must be a mapping")])
    return dict(doc)

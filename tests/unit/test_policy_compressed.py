"""Compressed policies: ``binaryData[policy.json.gz]`` read by every reader, with a size cap.

The watch, the ConfigMap admission webhook, the CLI and the store all meet the same decoding
(``policy_documents.stored_policy``); these tests hold each of them to it, and to the rules
around it: one policy key per ConfigMap, a bomb refused, a broken payload never replacing the
last good policy.
"""

from __future__ import annotations

import base64
import gzip
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client

from webhook.cli import main
from webhook.core.errors import PolicyDecodeError, PolicyError
from webhook.core.policy_admission import SecurityTeam, check_policy_configmap
from webhook.core.policy_documents import (
    MAX_POLICY_BYTES,
    gunzip,
    load_document,
    stored_policy,
)
from webhook.core.policy_parsing import parse_policy
from webhook.core.reviews import Review
from webhook.kube.policy_watch import ConfigMapPolicySource
from webhook.policy_runtime import PolicyStore
from webhook.policy_runtime.store import CompiledPolicies

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, tzinfo=UTC)
POLICY = """
egress: {namespace: egress}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: team-a, from: {namespace: team-a}, to: [api]}
"""
WIDER = POLICY.replace("[api.example.com]", "[api.example.com, cdn.example.com]")


def as_json(text: str) -> bytes:
    return orjson.dumps(yaml.safe_load(text))


def gz_b64(raw: bytes) -> str:
    return base64.b64encode(gzip.compress(raw)).decode()


def bomb(size: int) -> bytes:
    """Gzip of ``size`` zero bytes: about a thousandth of it compressed."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    chunk = b"\0" * (1024 * 1024)
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join(parts) + compressor.flush()


def configmap(
    version: str = "1",
    *,
    data: dict[str, str] | None = None,
    binary: dict[str, str] | None = None,
) -> dict[str, Any]:
    cm: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "policy", "namespace": "egress-guard", "resourceVersion": version},
    }
    if data is not None:
        cm["data"] = data
    if binary is not None:
        cm["binaryData"] = binary
    return cm


# --- decoding -----------------------------------------------------------------------------


def test_a_gzipped_json_policy_in_binary_data_compiles_like_the_plain_one() -> None:
    stored = stored_policy(None, {"policy.json.gz": gz_b64(as_json(POLICY))})
    assert stored is not None and stored.location == "binaryData[policy.json.gz]"
    assert parse_policy(stored.text).revision == parse_policy(POLICY).revision


def test_a_gzipped_yaml_policy_is_read_too() -> None:
    stored = stored_policy({}, {"policy.yaml.gz": gz_b64(POLICY.encode())})
    assert stored is not None
    assert parse_policy(stored.text).revision == parse_policy(POLICY).revision


def test_plain_keys_stay_text_in_data() -> None:
    stored = stored_policy({"policy.yaml": POLICY}, {"other.bin": "AAAA"})
    assert stored is not None and stored.text == POLICY and stored.location == "data[policy.yaml]"
    assert stored_policy({"other": "x"}, {}) is None


def test_concatenated_gzip_members_read_as_gzip_reads_them() -> None:
    raw = as_json(POLICY)
    assert gunzip(gzip.compress(raw[:10]) + gzip.compress(raw[10:])) == raw


@pytest.mark.parametrize(
    ("data", "binary", "keys"),
    [
        ({"policy.yaml": POLICY}, {"policy.json.gz": "AAAA"}, "data[policy.yaml] and binaryData"),
        ({}, {"policy.json.gz": "AAAA", "policy.yaml.gz": "AAAA"}, "binaryData[policy.json.gz]"),
        ({"policy.json": "{}", "policy.yaml": "{}"}, {}, "data[policy.json] and data[policy"),
    ],
)
def test_two_policy_keys_are_refused_naming_both(
    data: dict[str, str], binary: dict[str, str], keys: str
) -> None:
    with pytest.raises(PolicyError) as info:
        stored_policy(data, binary)
    assert not isinstance(info.value, PolicyDecodeError)
    assert "several policy keys" in str(info.value) and keys in str(info.value)


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (base64.b64encode(b"not gzip at all").decode(), "not valid gzip"),
        (base64.b64encode(gzip.compress(b'{"egress": 1}')[:-12]).decode(), "truncated"),
        ("%%% not base64", "not valid base64"),
    ],
)
def test_a_broken_payload_is_a_decode_error_naming_the_key(payload: str, why: str) -> None:
    with pytest.raises(PolicyDecodeError) as info:
        stored_policy({}, {"policy.json.gz": payload})
    assert info.value.where == "binaryData[policy.json.gz]"
    assert why in str(info.value.problems[0])


def test_a_bomb_is_refused_before_it_inflates_past_the_cap() -> None:
    blob = bomb(4 * 1024 * 1024)
    assert len(blob) < 10_000
    with pytest.raises(PolicyDecodeError, match="compression bomb"):
        gunzip(blob, limit=1024 * 1024)
    # exactly at the cap is still read
    assert len(gunzip(bomb(1024 * 1024), limit=1024 * 1024)) == 1024 * 1024


def test_the_default_cap_refuses_a_bomb_of_the_default_cap_plus_one_mib() -> None:
    with pytest.raises(PolicyDecodeError, match="more than 32 MiB"):
        gunzip(bomb(MAX_POLICY_BYTES + 1024 * 1024))


def test_a_gzip_file_and_a_manifest_with_binary_data_load_as_documents() -> None:
    document = yaml.safe_load(POLICY)
    assert load_document(gzip.compress(as_json(POLICY))) == document
    manifest = configmap(binary={"policy.json.gz": gz_b64(as_json(POLICY))})
    assert load_document(yaml.safe_dump(manifest)) == document


# --- the watch and the store: the last good policy stays ------------------------------------


def watch(problems: list[str]) -> ConfigMapPolicySource:
    return ConfigMapPolicySource(
        "egress-guard",
        "policy",
        connect=client.ApiClient,
        on_rejected=lambda _cm, problem: problems.append(problem),
    )


def test_the_watch_delivers_a_compressed_policy_and_keeps_it_over_a_broken_one() -> None:
    store, problems = PolicyStore(), []
    source = watch(problems)
    good = configmap("1", binary={"policy.json.gz": gz_b64(as_json(POLICY))})
    result = source.deliver(good, store)
    assert result is not None and result.ok and store.current is not None
    revision = store.current.revision
    assert revision == parse_policy(POLICY).revision

    corrupt = configmap("2", binary={"policy.json.gz": base64.b64encode(b"\x1f\x8bjunk").decode()})
    result = source.deliver(corrupt, store)
    assert result is not None and not result.ok
    assert store.current.revision == revision
    assert "binaryData[policy.json.gz]" in problems[-1] and "not valid gzip" in problems[-1]

    both = configmap(
        "3", data={"policy.yaml": WIDER}, binary={"policy.json.gz": gz_b64(as_json(WIDER))}
    )
    result = source.deliver(both, store)
    assert result is not None and not result.ok
    assert store.current.revision == revision
    assert "several policy keys" in problems[-1]

    plain = configmap("4", data={"policy.json": as_json(WIDER).decode()})
    result = source.deliver(plain, store)
    assert result is not None and result.ok and result.changed


def test_the_watch_names_every_policy_key_when_none_is_there() -> None:
    problems: list[str] = []
    result = watch(problems).deliver(configmap(data={"other": "x"}), PolicyStore())
    assert result is not None and not result.ok
    assert "policy.json.gz" in problems[0] and "policy.yaml" in problems[0]


def test_the_store_reuses_what_the_admission_webhook_compiled_for_the_same_text() -> None:
    calls: list[str] = []

    def counting(text: str | bytes, origin: str) -> Any:
        calls.append(origin)
        return parse_policy(text, name=origin)

    store = PolicyStore(compiler=counting)
    text = as_json(WIDER)
    proposed = store.compile_proposed(text, "policy", NOW)
    result = store.update(text, origin="configmap:egress-guard/policy")
    assert result.ok and calls == []
    assert store.current is not None
    assert store.current.policy.revision == proposed.revision
    assert store.current.policy.name == "configmap:egress-guard/policy"
    # different text: compiled
    assert store.update(as_json(POLICY), origin="x").ok and calls == ["x"]


def test_the_compiled_cache_is_bounded() -> None:
    cache = CompiledPolicies(size=1)
    first, second = parse_policy(POLICY), parse_policy(WIDER)
    cache.put("a", first)
    cache.put("b", second)
    assert cache.get("a") is None and cache.get("b") is second
    off = CompiledPolicies(size=0)
    off.put("a", first)
    assert off.get("a") is None


# --- the ConfigMap admission webhook -------------------------------------------------------


def review(obj: dict[str, Any]) -> Review:
    return Review(
        uid="u",
        group="",
        version="v1",
        kind="ConfigMap",
        operation="UPDATE",
        namespace="egress-guard",
        name="policy",
        object=obj,
        old_object=obj,
        username="bob",
    )


class NoObjects:
    def objects(self) -> tuple[()]:
        return ()


def judge(obj: dict[str, Any]) -> Any:
    return check_policy_configmap(
        review(obj), current=None, cluster=NoObjects(), now=NOW, security_team=SecurityTeam()
    )


def test_the_admission_webhook_admits_a_compressed_policy() -> None:
    decision = judge(configmap(binary={"policy.json.gz": gz_b64(as_json(POLICY))}))
    assert decision.allowed, decision.reason
    assert parse_policy(POLICY).revision in decision.reason


def test_the_admission_webhook_points_problems_inside_the_compressed_key() -> None:
    broken = as_json(POLICY.replace("to: [api]", "to: [nope]"))
    decision = judge(configmap(binary={"policy.json.gz": gz_b64(broken)}))
    assert not decision.allowed
    assert [v.field for v in decision.violations] == ["binaryData[policy.json.gz]/allow/0/to/0"]


@pytest.mark.parametrize(
    ("binary", "data", "message"),
    [
        ({"policy.json.gz": base64.b64encode(b"junk").decode()}, None, "not valid gzip"),
        ({"policy.json.gz": base64.b64encode(bomb(40 << 20)).decode()}, None, "bomb"),
        ({"policy.json.gz": "AAAA"}, {"policy.yaml": POLICY}, "several policy keys"),
    ],
)
def test_the_admission_webhook_refuses_what_the_watch_would_reject(
    binary: dict[str, str], data: dict[str, str] | None, message: str
) -> None:
    decision = judge(configmap(data=data, binary=binary))
    assert not decision.allowed
    assert message in decision.reason


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_commands_read_a_gzipped_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.json.gz"
    path.write_bytes(gzip.compress(as_json(POLICY)))
    result = CliRunner().invoke(main, ["policy", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert parse_policy(POLICY).revision in result.output
    old = tmp_path / "old.yaml"
    old.write_text(POLICY)
    wider = tmp_path / "wider.json.gz"
    wider.write_bytes(gzip.compress(as_json(WIDER)))
    result = CliRunner().invoke(main, ["policy", "diff", str(old), str(wider)])
    assert result.exit_code == 0, result.output
    assert "cdn.example.com" in result.output


def test_cli_refuses_a_gzip_bomb_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bomb.json.gz"
    path.write_bytes(bomb(MAX_POLICY_BYTES + (1 << 20)))
    result = CliRunner().invoke(main, ["policy", "validate", str(path)])
    assert result.exit_code == 2
    assert "compression bomb" in result.output


def test_the_served_webhook_judges_binary_data_and_hands_its_compile_to_the_watch() -> None:
    from webhook.admission.app import create_app
    from webhook.settings import ConfigMapRef, Settings

    store = PolicyStore()
    assert store.update(POLICY, origin="test").ok
    app = create_app(
        Settings(policy_configmap=ConfigMapRef("egress-guard", "policy")),
        policy_store=store,
        clock=lambda: NOW,
    )

    def answer(obj: dict[str, Any]) -> dict[str, Any]:
        body = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                "resource": {"group": "", "version": "v1", "resource": "configmaps"},
                "operation": "UPDATE",
                "namespace": "egress-guard",
                "name": "policy",
                "userInfo": {"username": "bob"},
                "object": obj,
                "oldObject": obj,
            },
        }
        response = app.test_client().post("/validate", json=body)
        assert response.status_code == 200
        result: dict[str, Any] = orjson.loads(response.data)["response"]
        return result

    corrupt = configmap(binary={"policy.json.gz": base64.b64encode(b"\x1f\x8bxx").decode()})
    refused = answer(corrupt)
    assert not refused["allowed"]
    assert "binaryData[policy.json.gz]: not valid gzip" in refused["status"]["message"]

    cm = configmap("7", binary={"policy.json.gz": gz_b64(as_json(WIDER))})
    assert answer(cm)["allowed"]
    hits = store.compiled.hits
    result = watch([]).deliver(cm, store)
    assert result is not None and result.ok and result.changed
    assert store.compiled.hits == hits + 1


# --- lost access, as the edit webhook computes it ---------------------------------------------

EDITS = [
    (POLICY, WIDER),
    (WIDER, POLICY),
    (POLICY, POLICY.split("allow:")[0] + "allow: []\n"),
    (POLICY, POLICY.replace("number: 443", "number: 8443")),
    (POLICY, POLICY.replace("namespace: team-a}", "namespace: team-b}")),
    (WIDER, WIDER.replace("name: api,", "name: api2,").replace("to: [api]", "to: [api2]")),
    (
        POLICY + "  - {name: again, from: {namespace: team-a}, to: [api]}\n",
        POLICY.replace("[api.example.com]", "[cdn.example.com]"),
    ),
]


@pytest.mark.parametrize(("old", "new"), EDITS)
def test_removed_grants_agree_with_the_full_diff(old: str, new: str) -> None:
    from webhook.core.policy_diff import diff_policies, removed_grants

    before, after = parse_policy(old), parse_policy(new)
    full = diff_policies(before, after, now=NOW, namespaces=()).removed
    assert removed_grants(before.at(NOW), after.at(NOW)) == full

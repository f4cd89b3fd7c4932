"""Policies as JSON: the ``policy.json`` ConfigMap key and JSON text read by orjson."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from webhook.core.errors import PolicyError
from webhook.core.policy_documents import load_document, policy_text
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def banzai_document() -> dict[str, object]:
    configmap = yaml.safe_load((POLICIES / "banzai-demo.yaml").read_text())
    document: dict[str, object] = yaml.safe_load(configmap["data"]["policy.yaml"])
    return document


def configmap(data: dict[str, str]) -> str:
    return yaml.safe_dump(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p"}, "data": data}
    )


def test_json_text_compiles_to_the_same_policy_as_yaml() -> None:
    document = banzai_document()
    from_yaml = parse_policy(yaml.safe_dump(document))
    from_json = parse_policy(orjson.dumps(document))
    from_json_text = parse_policy(orjson.dumps(document).decode())
    assert from_json == from_yaml == from_json_text
    assert from_json.revision == from_yaml.revision


def test_a_configmap_carries_the_policy_under_policy_json() -> None:
    document = banzai_document()
    text = configmap({"policy.json": orjson.dumps(document).decode()})
    assert parse_policy(text) == parse_policy(yaml.safe_dump(document))


def test_a_configmap_as_json_is_unwrapped_too() -> None:
    document = banzai_document()
    cm = {"kind": "ConfigMap", "data": {"policy.json": orjson.dumps(document).decode()}}
    assert load_document(orjson.dumps(cm)) == document


def test_both_keys_in_one_configmap_are_refused() -> None:
    text = configmap({"policy.json": "{}", "policy.yaml": "{}"})
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    assert "several policy keys (data[policy.json] and data[policy.yaml])" in str(
        info.value.problems[0]
    )


def test_a_yaml_flow_mapping_that_is_not_json_still_parses() -> None:
    document = load_document("{egress: {namespace: egress}, externalServices: []}")
    assert document == {"egress": {"namespace": "egress"}, "externalServices": []}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"policy.yaml": "a: 1"}, "a: 1"),
        ({"policy.json": "{}"}, "{}"),
        ({"other": "x"}, None),
    ],
)
def test_policy_text_reads_either_key(data: dict[str, str], expected: str | None) -> None:
    assert policy_text(data) == expected

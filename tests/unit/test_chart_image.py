"""What the chart and the image promise, read from their files without helm or docker.

There is no container engine here, so the Dockerfile's invariants (non-root, pinned base, no
build tools in the final stage, the CLI as entrypoint) are checked as text. The chart's
values are checked against the project's own truths: the embedded demo policy, the policy
schema, the package version and the harness' excluded namespaces.
"""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.e2e.harness import EXCLUDED_NAMESPACES, WEBHOOK_NAMESPACE
from webhook.core.policy_parsing import parse_policy
from webhook.core.policy_schema import POLICY_SCHEMA

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "egress-guard"
DOCKERFILE = ROOT / "Dockerfile"


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _values() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return data


def _values_schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return data


# --- Dockerfile ------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _arg_defaults() -> dict[str, str]:
    defaults = {}
    for word, rest in _instructions():
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            defaults[name] = value
    return defaults


def _base_images() -> list[str]:
    defaults = _arg_defaults()
    images = []
    for stage in _stages():
        image = stage[0][1].split()[0]
        images.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image))
    return images


def test_the_image_is_built_in_two_stages_from_the_same_base() -> None:
    images = _base_images()
    assert len(images) >= 2
    assert len(set(images)) == 1


def test_the_base_image_is_the_projects_python_never_latest() -> None:
    minor = re.search(r"3\.\d+", _pyproject()["project"]["requires-python"])
    assert minor is not None
    for image in _base_images():
        name, _, tag = image.partition("@")[0].partition(":")
        assert name == "python"
        assert tag.startswith(f"{minor.group()}-slim"), image
        assert "latest" not in image
        if "@" in image:
            assert re.fullmatch(r"sha256:[0-9a-f]{64}", image.partition("@")[2])


def test_the_final_stage_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for word, rest in _stages()[-1] if word == "USER"]
    assert users, "the final stage sets no USER: the container would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid == "65532" and gid in ("", "65532")


def test_the_entrypoint_is_the_cli_and_serve_the_default_command() -> None:
    final = dict(_stages()[-1])
    assert json.loads(final["ENTRYPOINT"]) == ["egress-guard"]
    assert json.loads(final["CMD"]) == ["serve"]


def test_the_final_stage_installs_offline_and_keeps_no_build_tools() -> None:
    runs = " ".join(rest for word, rest in _stages()[-1] if word == "RUN")
    assert "--no-index" in runs
    assert "pip uninstall" in runs
    for tool in ("apt-get", "apk ", "gcc", "build-essential", "git "):
        assert tool not in runs
    # the wheels reach the final stage as a build mount, never as a copied layer
    assert not [rest for word, rest in _stages()[-1] if word in ("COPY", "ADD")]


def test_the_image_labels_carry_the_package_version() -> None:
    labels = " ".join(rest for word, rest in _stages()[-1] if word == "LABEL")
    assert "org.opencontainers.image.version" in labels
    assert _arg_defaults()["VERSION"] == _pyproject()["project"]["version"]


def test_the_build_context_admits_only_the_package() -> None:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    assert patterns[0] == "*"
    assert {"!pyproject.toml", "!webhook/"} <= set(patterns)
    copied = {rest.split()[0] for stage in _stages() for word, rest in stage if word == "COPY"}
    assert copied - {"pyproject.toml", "webhook"} <= {"README.md"}


# --- Chart metadata and values ------------------------------------------------------------


def test_chart_app_version_is_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == _pyproject()["project"]["version"]


def test_default_policy_is_the_banzai_demo_document() -> None:
    manifest = yaml.safe_load((ROOT / "policies" / "banzai-demo.yaml").read_text())
    assert _values()["policy"] == yaml.safe_load(manifest["data"]["policy.yaml"])


def test_default_policy_parses_with_the_core_parser() -> None:
    policy = parse_policy(yaml.safe_dump(_values()["policy"]), name="values.yaml")
    assert set(policy.services) == {"httpbin", "github", "google"}


def test_chart_excludes_the_same_namespaces_as_the_harness() -> None:
    # the release namespace is added by the chart; the harness lists it by name
    chart = set(_values()["excludedNamespaces"]) | {WEBHOOK_NAMESPACE}
    assert chart == set(EXCLUDED_NAMESPACES)


def test_values_schema_file_is_generated_from_the_policy_schema() -> None:
    spec = importlib.util.spec_from_file_location("values_schema", ROOT / "charts/values_schema.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (CHART / "values.schema.json").read_text() == module.schema_text(), (
        "run: python charts/values_schema.py"
    )
    schema = _values_schema()["properties"]["policy"]
    assert schema["properties"] == POLICY_SCHEMA["properties"]


def test_default_values_satisfy_the_values_schema() -> None:
    jsonschema.Draft202012Validator(_values_schema()).validate(_values())


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("policy", "mode"), "permissive"),
        (("policy", "egress"), {}),
        (("policy", "externalServices", 0, "name"), "Not_A_Label"),
        (("policy", "unknownField"), True),
        (("webhook", "failurePolicy"), "Ignore"),
        (("webhook", "replicas"), 0),
        (("certs", "mode"), "none"),
        (("image", "digest"), "latest"),
        (("excludedNamespaces",), ["Kube-System"]),
    ],
)
def test_values_schema_rejects(path: tuple[str | int, ...], value: Any) -> None:
    values = _values()
    target: Any = values
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(_values_schema()).validate(values)


def test_values_schema_requires_secret_and_ca_for_existing_certificates() -> None:
    values = _values()
    values["certs"]["mode"] = "existing"
    validator = jsonschema.Draft202012Validator(_values_schema())
    assert not validator.is_valid(values)
    values["certs"]["existing"] = {"secretName": "mine", "caBundle": "not a certificate"}
    assert not validator.is_valid(values)
    values["certs"]["existing"]["caBundle"] = "-----BEGIN CERTIFICATE-----\nMIIB\n"
    assert validator.is_valid(values)

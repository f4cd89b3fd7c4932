"""The offline commands honour exceptions as at ``--at`` (default now); ``policy diff``; ``audit``'s
bad input.

Each command resolves the policy with ``Policy.at`` once: the same exception grants at an
instant before its expiry and nothing from the expiry instant on, in every door.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from webhook.cli import main

pytestmark = pytest.mark.unit

LIVE = "2026-12-02T00:00:00Z"
EXPIRY = "2026-12-03T00:00:00Z"
OLD = """
egress: {namespace: egress}
externalServices:
  - {name: github, hosts: [api.github.com], ports: [{number: 443, protocol: TLS}]}
  - {name: httpbin, hosts: [httpbin.org], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: a-httpbin, from: {namespace: team-a}, to: [httpbin]}
exceptions:
  - {name: ci, namespaces: [team-b], services: [github], owner: alice, ticket: SEC-1,
     expires: "2026-12-03T00:00:00Z"}
"""
NEW = """
egress: {namespace: egress}
externalServices:
  - {name: httpbin, hosts: [httpbin.org], ports: [{number: 443, protocol: TLS}]}
  - {name: stripe, hosts: [api.stripe.com], ports: [{number: 443, protocol: TLS}]}
allow:
  - {name: a-stripe, from: {namespace: team-a}, to: [stripe]}
"""
GITHUB_SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: gh, namespace: team-b}
spec:
  hosts: [api.github.com]
  exportTo: ["."]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"""


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name, text in (("old", OLD), ("new", NEW), ("se", GITHUB_SE), ("bad", "egress: 3\n")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        paths[name] = str(path)
    return paths


def test_check_admits_under_a_live_exception_and_denies_from_its_expiry(
    files: dict[str, str],
) -> None:
    live = run("check", "--policy", files["old"], "--at", LIVE, files["se"])
    assert live.exit_code == 0, live.output
    ended = run("check", "--policy", files["old"], "--at", EXPIRY, files["se"])
    assert ended.exit_code == 1
    assert ended.stdout.startswith("DENY ServiceEntry team-b/gh")


def test_explain_names_the_exception_while_it_lives(files: dict[str, str]) -> None:
    args = ("explain", "--policy", files["old"], "--from", "team-b", "--to", "api.github.com:443")
    live = run(*args, "--at", LIVE)
    assert live.exit_code == 0, live.output
    assert "ci" in live.stdout
    assert run(*args, "--at", EXPIRY).exit_code == 1


def _virtual_services(output: str) -> set[tuple[str, str]]:
    return {
        (doc["metadata"]["namespace"], doc["metadata"]["name"])
        for doc in yaml.safe_load_all(output)
        if doc and doc["kind"] == "VirtualService"
    }


def test_render_routes_the_exception_only_while_it_lives(files: dict[str, str]) -> None:
    args = ("render", "--policy", files["old"], "--namespaces", "team-a,team-b")
    live = _virtual_services(run(*args, "--at", LIVE).stdout)
    ended = _virtual_services(run(*args, "--at", EXPIRY).stdout)
    assert ("team-b", "egress-guard-github") in live
    assert live - ended == {("team-b", "egress-guard-github")}


def test_at_must_be_an_instant_with_an_offset(files: dict[str, str]) -> None:
    for value in ("tomorrow", "2026-12-02T00:00:00"):
        result = run("check", "--policy", files["old"], "--at", value, files["se"])
        assert result.exit_code == 2
        assert "--at" in result.stderr


def test_policy_diff_table_lists_grants_added_and_removed_and_objects(
    files: dict[str, str],
) -> None:
    result = run("policy", "diff", files["old"], files["new"], "--at", LIVE)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.split()[:3] == ["+", "team-a", "stripe/api.stripe.com:443"] for line in lines)
    assert any(line.split()[:3] == ["-", "team-b", "github/api.github.com:443"] for line in lines)
    assert any(line.split()[:2] == ["removed", "VirtualService"] for line in lines)


def test_policy_diff_after_the_expiry_no_longer_counts_the_exception(
    files: dict[str, str],
) -> None:
    result = run("policy", "diff", files["old"], files["new"], "--at", EXPIRY, "-o", "json")
    assert result.exit_code == 0, result.output
    diff = json.loads(result.stdout)
    removed = {(g["source"], g["host"]) for g in diff["grants"]["removed"]}
    assert removed == {("team-a", "httpbin.org")}
    assert {(g["source"], g["host"]) for g in diff["grants"]["added"]} == {
        ("team-a", "api.stripe.com")
    }


@pytest.mark.parametrize("which", ["old", "new"])
def test_policy_diff_names_the_unusable_file_and_exits_two(
    files: dict[str, str], which: str
) -> None:
    pair = (files["bad"], files["new"]) if which == "old" else (files["old"], files["bad"])
    result = run("policy", "diff", *pair)
    assert result.exit_code == 2
    assert f"{files['bad']} is not usable" in result.stderr
    assert "egress" in result.stderr


def test_audit_without_usable_credentials_exits_two(tmp_path: Path, files: dict[str, str]) -> None:
    missing = str(tmp_path / "no-kubeconfig")
    result = run("audit", "--kubeconfig", missing, "--policy", files["new"])
    assert result.exit_code == 2
    assert "credentials" in result.stderr

"""``explain`` as a value: the grant, its service and gateway, and how strong it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from webhook.cli import main
from webhook.core.explain import LABEL_SCOPED_NOTE, Client, explain, label_scoped_notes
from webhook.core.policy_parsing import parse_policy
from webhook.policy_runtime import embedded_policy_text

pytestmark = pytest.mark.unit

BANZAI = parse_policy(embedded_policy_text())
MIXED = parse_policy(
    """
egress: {namespace: external}
externalServices:
  - {name: api, hosts: [api.example.com], ports: [{number: 443, protocol: TLS}]}
  - {name: db, hosts: [db.example.com], ports: [{number: 5432, protocol: TCP}]}
allow:
  - {name: builders, from: {namespace: ci, serviceAccount: builder}, to: [api]}
  - {name: team, from: {namespace: team-a}, to: [api]}
  - {name: web, from: {namespace: team-a, workloadLabels: {app: web}}, to: [db]}
  - {name: web-sa, from: {namespace: team-a, workloadLabels: {app: web}, serviceAccount: web},
     to: [db]}
"""
)


def test_a_grant_by_labels_alone_is_flagged_as_label_scoped() -> None:
    answer = explain(BANZAI, Client("test-app", {"k8s-app": "app-a"}), "httpbin.org", 443)
    assert answer.allowed
    assert answer.service == "httpbin"
    assert (answer.gateway_name, answer.gateway_namespace) == ("egress-httpbin", "external")
    assert answer.rules == ("app-a",)
    assert answer.label_scoped and answer.note == LABEL_SCOPED_NOTE


@pytest.mark.parametrize(
    ("client", "host", "port", "rules"),
    [
        # a service-account rule is enforced on the mTLS identity at the gateway
        (Client("ci", {}, "builder"), "api.example.com", 443, ("builders",)),
        # a namespace-wide rule never rested on labels
        (Client("team-a", {"app": "web"}), "api.example.com", 443, ("team",)),
    ],
)
def test_identity_and_namespace_grants_are_not_label_scoped(
    client: Client, host: str, port: int, rules: tuple[str, ...]
) -> None:
    answer = explain(MIXED, client, host, port)
    assert answer.allowed and answer.rules == rules
    assert not answer.label_scoped and answer.note == ""


def test_a_label_only_rule_beside_an_identity_rule_still_flags_the_grant() -> None:
    answer = explain(MIXED, Client("team-a", {"app": "web"}, "web"), "db.example.com", 5432)
    assert answer.allowed and answer.rules == ("web", "web-sa")
    assert answer.label_scoped


def test_a_denial_names_no_service_gateway_or_rule() -> None:
    answer = explain(BANZAI, Client("test-app"), "httpbin.org", 443)
    assert not answer.allowed
    assert answer.service is None and answer.gateway_name is None and answer.rules == ()
    assert any("no rule lets" in line for line in answer.details)


def test_an_excluded_namespace_is_allowed_without_a_grant() -> None:
    answer = explain(BANZAI, Client("kube-system"), "evil.example.com", None)
    assert answer.allowed and answer.excluded and answer.service is None


def test_explain_json_output_has_the_simple_shape() -> None:
    result = CliRunner().invoke(
        main,
        ["explain", "--from", "test-app/k8s-app=app-a", "--to", "httpbin.org:443", "-o", "json"],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["source"] == {
        "namespace": "test-app",
        "labels": {"k8s-app": "app-a"},
        "serviceAccount": None,
    }
    assert document["destination"] == {"host": "httpbin.org", "port": 443}
    assert document["allowed"] is True
    assert document["service"] == "httpbin"
    assert document["gateway"] == {"name": "egress-httpbin", "namespace": "external"}
    assert document["rules"] == ["app-a"]
    assert document["label_scoped"] is True
    assert document["note"] == LABEL_SCOPED_NOTE


def test_explain_json_denial_exits_one_with_allowed_false() -> None:
    result = CliRunner().invoke(
        main, ["explain", "--from", "test-app", "--to", "evil.example.com", "-o", "json"]
    )
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["allowed"] is False and document["gateway"] is None


def test_label_scoped_notes_name_each_rule_resting_on_pod_labels_only() -> None:
    policy = parse_policy(
        """
egress: {namespace: egress}
externalServices:
  - name: api
    hosts: [api.example.com]
    ports: [{number: 443, protocol: TLS}]
allow:
  - name: by-labels
    from: {namespace: team-a, workloadLabels: {app: web}}
    to: [api]
  - name: by-identity
    from: {namespace: team-a, workloadLabels: {app: web}, serviceAccount: web}
    to: [api]
  - name: whole-namespace
    from: {namespace: team-b}
    to: [api]
"""
    )
    [note] = label_scoped_notes(policy)
    assert note.startswith("rule by-labels: {app=web} in namespace team-a -> api:")
    assert "serviceAccount" in note


def test_render_says_which_rules_rest_on_pod_labels() -> None:
    banzai = Path(__file__).resolve().parents[2] / "policies" / "banzai-demo.yaml"
    result = CliRunner().invoke(main, ["render", "--policy", str(banzai)])
    assert result.exit_code == 0, result.output
    header = [line for line in result.stdout.splitlines() if line.startswith("# label-scoped:")]
    assert [line.split(":")[1].strip() for line in header] == ["rule app-a", "rule app-b"]

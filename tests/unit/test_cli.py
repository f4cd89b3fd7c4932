"""The ``egress-guard`` command: check, explain, policy validate/schema, certs, serve flags."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from webhook.cli import main
from webhook.cli.policies import schema_text
from webhook.core.explain import Client, parse_destination
from webhook.core.policy_schema import POLICY_SCHEMA

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
BANZAI = str(ROOT / "policies" / "banzai-demo.yaml")
FIREWALL = str(ROOT / "policies" / "istio-egress-firewall.yaml")

ALLOWED_SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cnn, namespace: team-a}
spec:
  hosts: [service1.foo.com]
  exportTo: ["."]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"""
DENIED_SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: evil, namespace: team-a}
spec:
  hosts: [evil.example.com]
  exportTo: ["."]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"""
UNGOVERNED = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: team-a}
data: {a: b}
"""


def run(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# --- check -----------------------------------------------------------------------------------


def test_check_allows_and_exits_zero(tmp_path: Path) -> None:
    result = run("check", "--policy", FIREWALL, write(tmp_path, "ok.yaml", ALLOWED_SE))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["ALLOW ServiceEntry team-a/cnn: allowed"]


SIDECAR_WITHOUT_POLICY = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: narrow, namespace: team-a}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
"""


def test_check_mutates_before_it_validates_as_the_cluster_does(tmp_path: Path) -> None:
    # the mutating webhook gives the Sidecar REGISTRY_ONLY before validation sees it
    result = run("check", "--policy", FIREWALL, write(tmp_path, "sc.yaml", SIDECAR_WITHOUT_POLICY))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ALLOW Sidecar team-a/narrow")


def test_check_prints_one_line_per_object_and_exits_one_on_any_denial(tmp_path: Path) -> None:
    manifest = write(tmp_path, "m.yaml", "---\n".join([ALLOWED_SE, DENIED_SE, UNGOVERNED]))
    result = run("check", "--policy", FIREWALL, manifest)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "ALLOW ServiceEntry team-a/cnn: allowed"
    assert lines[1].startswith("DENY ServiceEntry team-a/evil: ")
    assert "evil.example.com" in lines[1]
    assert lines[2].startswith("ALLOW ConfigMap team-a/settings: ")
    assert len(lines) == 3


def test_check_reads_stdin_and_applies_the_namespace_flag() -> None:
    manifest = DENIED_SE.replace("namespace: team-a", "")
    result = run("check", "--policy", FIREWALL, "-n", "kube-system", "-", stdin=manifest)
    assert result.exit_code == 0
    assert "ALLOW ServiceEntry kube-system/evil: namespace kube-system is excluded" in result.stdout


def test_check_namespace_flag_does_not_override_the_manifests_namespace() -> None:
    # kube-system is excluded: judged there, the entry would pass; it lands in team-a
    manifest = "---\n".join([DENIED_SE, NAMESPACE_OBJECT])
    result = run("check", "--policy", FIREWALL, "-n", "kube-system", "-", stdin=manifest)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("DENY ServiceEntry team-a/evil: ")
    assert lines[1].startswith("ALLOW Namespace team-a: ")


NAMESPACE_OBJECT = """
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {istio-injection: enabled}}
"""


def test_check_reports_audit_mode_as_audit_and_exits_zero(tmp_path: Path) -> None:
    audit = Path(FIREWALL).read_text().replace("mode: enforce", "mode: audit")
    result = run(
        "check",
        "--policy",
        write(tmp_path, "p.yaml", audit),
        write(tmp_path, "m.yaml", DENIED_SE),
    )
    assert result.exit_code == 0
    assert result.stdout.startswith("AUDIT ServiceEntry team-a/evil: ")


def test_check_unwraps_lists(tmp_path: Path) -> None:
    import yaml

    items = [yaml.safe_load(ALLOWED_SE), yaml.safe_load(DENIED_SE)]
    doc = {"apiVersion": "v1", "kind": "List", "items": items}
    result = run("check", "--policy", FIREWALL, write(tmp_path, "l.yaml", yaml.safe_dump(doc)))
    assert result.exit_code == 1
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["ALLOW", "DENY"]


def test_check_accepts_an_admission_review_json(tmp_path: Path) -> None:
    import yaml

    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "x",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": "ServiceEntry"},
            "operation": "CREATE",
            "namespace": "team-a",
            "name": "evil",
            "object": yaml.safe_load(DENIED_SE),
        },
    }
    result = run(
        "check", "--policy", FIREWALL, write(tmp_path, "r.json", orjson.dumps(review).decode())
    )
    assert result.exit_code == 1
    assert result.stdout.startswith("DENY ServiceEntry team-a/evil")


def test_check_delete_is_judged_on_the_old_object(tmp_path: Path) -> None:
    result = run(
        "check", "--policy", FIREWALL, "--operation", "DELETE", write(tmp_path, "m", DENIED_SE)
    )
    assert result.stdout.split()[0] in ("ALLOW", "DENY")
    assert "ServiceEntry team-a/evil" in result.stdout


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ({"m.yaml": "a: [unclosed"}, "not valid YAML"),
        ({"m.yaml": "- just\n- a list\n"}, "expected Kubernetes objects"),
        ({"m.yaml": "kind: List\nitems: [1]\n"}, "not an object"),
        ({}, "cannot read"),
    ],
)
def test_check_bad_input_exits_two(tmp_path: Path, files: dict[str, str], fragment: str) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    result = run("check", "--policy", FIREWALL, str(tmp_path / "m.yaml"))
    assert result.exit_code == 2
    assert fragment in result.stderr


def test_check_with_a_bad_policy_exits_two(tmp_path: Path) -> None:
    policy = write(tmp_path, "p.yaml", "egress: {namespace: x}\nexternalServices: nope\n")
    result = run("check", "--policy", policy, write(tmp_path, "m.yaml", ALLOWED_SE))
    assert result.exit_code == 2
    assert "/externalServices" in result.stderr


def test_check_uses_sidecars_among_the_manifests_as_the_cluster(tmp_path: Path) -> None:
    sidecar = """
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: test-app}
spec:
  egress: [{hosts: ["./*", "istio-system/*"]}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""
    result = run("check", "--policy", BANZAI, write(tmp_path, "s.yaml", sidecar))
    assert len(result.stdout.splitlines()) == 1
    assert "Sidecar test-app/default" in result.stdout


def test_check_uses_pods_and_services_among_the_manifests_as_the_cluster(tmp_path: Path) -> None:
    # the egress namespace's Service among the manifests: an endpoint at its cluster IP is the
    # egress gateway itself; without it, offline check cannot tell and skips the rule
    gateway = """
apiVersion: v1
kind: Service
metadata: {name: istio-egressgateway, namespace: istio-egress}
spec:
  clusterIP: 10.97.0.10
  ports: [{name: tls, port: 443}]
"""
    alias = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: alias, namespace: team-a}
spec:
  hosts: [alias.team-a.svc.cluster.local]
  exportTo: ["."]
  ports: [{number: 443, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.97.0.10}]
"""
    policy = write(
        tmp_path,
        "p.yaml",
        Path(FIREWALL)
        .read_text()
        .replace("    mode: enforce\n", "    mode: enforce\n    internalNetworks: [10.0.0.0/8]\n"),
    )
    alone = run("check", "--policy", policy, write(tmp_path, "a.yaml", alias))
    assert alone.exit_code == 0, alone.stdout
    both = run("check", "--policy", policy, write(tmp_path, "g.yaml", gateway + "---" + alias))
    assert both.exit_code == 1
    assert "DENY ServiceEntry team-a/alias" in both.stdout
    assert "an address of an egress gateway's namespace" in both.stdout


# --- explain ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "destination", "code", "fragment"),
    [
        ("test-app/k8s-app=app-a", "httpbin.org:443", 0, "rule app-a"),
        ("test-app/k8s-app=app-a", "www.github.com", 0, "rule app-a"),
        ("test-app/k8s-app=app-a", "google.com:443", 1, "no rule lets"),
        ("test-app/k8s-app=app-b", "google.com:80", 0, "rule app-b"),
        ("test-app", "httpbin.org:443", 1, "no rule lets"),
        ("test-app/k8s-app=app-a", "httpbin.org:8080", 1, "not port 8080"),
        ("test-app/k8s-app=app-a", "evil.example.com:443", 1, "no external service"),
        ("test-app/k8s-app=app-a", "HTTPBIN.ORG.:443", 0, "rule app-a"),
        ("test-app/k8s-app=app-a", "sub.httpbin.org:443", 1, "no external service"),
        ("other/k8s-app=app-a", "httpbin.org:443", 1, "no rule lets"),
        ("kube-system", "evil.example.com", 0, "excluded"),
    ],
)
def test_explain_answers_and_names_the_deciding_rule(
    source: str, destination: str, code: int, fragment: str
) -> None:
    result = run("explain", "--policy", BANZAI, "--from", source, "--to", destination)
    assert result.exit_code == code, result.output
    assert result.stdout.split()[0] == ("ALLOW" if code == 0 else "DENY")
    assert fragment in result.stdout


def test_explain_wildcard_never_covers_the_apex() -> None:
    allowed = run("explain", "--policy", FIREWALL, "--from", "team-a", "--to", "a.b.foo.com:443")
    apex = run("explain", "--policy", FIREWALL, "--from", "team-a", "--to", "foo.com:443")
    other = run("explain", "--policy", FIREWALL, "--from", "team-a", "--to", "x.bar.com:443")
    assert allowed.exit_code == 0 and "rule team-a" in allowed.stdout
    assert apex.exit_code == 1
    assert other.exit_code == 1
    assert "rule team-b allows team-b" in other.stdout


def test_explain_cluster_wide_rule_covers_every_namespace() -> None:
    result = run("explain", "--policy", FIREWALL, "--from", "anything", "--to", "service1.foo.com")
    assert result.exit_code == 0
    assert "rule cluster-wide" in result.stdout


@pytest.mark.parametrize(
    ("source", "destination"),
    [
        ("", "httpbin.org"),
        ("test-app/k8s-app", "httpbin.org"),
        ("test-app@", "httpbin.org"),
        ("test-app", "httpbin.org:99999"),
        ("test-app", "httpbin.org:http"),
        ("test-app", "a*.example.com"),
        ("test-app", "bad_label-.example.com"),
    ],
)
def test_explain_bad_input_exits_two(source: str, destination: str) -> None:
    result = run("explain", "--policy", BANZAI, "--from", source, "--to", destination)
    assert result.exit_code == 2


def test_client_parsing_takes_labels_and_service_account() -> None:
    client = Client.parse("team-a/app=web,tier=front/zone=x@builder")
    assert client.namespace == "team-a"
    assert client.labels == {"app": "web", "tier": "front", "zone": "x"}
    assert client.service_account == "builder"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Api.Example.com:443", ("api.example.com", 443)),
        ("api.example.com", ("api.example.com", None)),
        ("[2001:db8::1]:443", ("2001:db8::1", 443)),
        ("2001:db8::1", ("2001:db8::1", None)),
        ("10.0.0.1:80", ("10.0.0.1", 80)),
    ],
)
def test_destination_parsing(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_destination(text) == expected


# --- policy ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [BANZAI, FIREWALL])
def test_policy_validate_accepts_the_shipped_policies(path: str) -> None:
    result = run("policy", "validate", path)
    assert result.exit_code == 0
    assert "OK" in result.stdout


def test_policy_validate_lists_every_problem_with_its_path(tmp_path: Path) -> None:
    bad = Path(BANZAI).read_text()
    bad = bad.replace("to: [google]", "to: [gogle]").replace(
        "hosts: [github.com", "hosts: ['*.com'"
    )
    result = run("policy", "validate", write(tmp_path, "p.yaml", bad))
    assert result.exit_code == 1
    assert "INVALID (2 problem(s))" in result.stdout
    assert "/allow/1/to/0" in result.stdout
    assert "/externalServices/1/hosts/0" in result.stdout


def test_policy_validate_unreadable_file_exits_two(tmp_path: Path) -> None:
    result = run("policy", "validate", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 2


def test_policy_schema_prints_the_core_schema() -> None:
    result = run("policy", "schema")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == POLICY_SCHEMA


def test_the_schema_file_in_the_repo_is_the_core_schema() -> None:
    path = ROOT / "policies" / "egress-policy.schema.json"
    assert json.loads(path.read_text()) == POLICY_SCHEMA
    assert path.read_text() == schema_text(), "regenerate: egress-guard policy schema > " + str(
        path.relative_to(ROOT)
    )


def test_the_embedded_policy_is_the_repo_policy() -> None:
    embedded = ROOT / "webhook" / "data" / "banzai-demo.yaml"
    assert embedded.read_bytes() == Path(BANZAI).read_bytes()


# --- certs and serve -------------------------------------------------------------------------


def test_certs_generate_writes_a_ca_and_a_serving_pair(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = run("certs", "generate", "--out", str(out), "--host", "localhost", "--host", "::1")
    assert result.exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
    assert str(out / "ca.crt") in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--cert-file", "c.pem"], "go together"),
        (["--policy", "p.yaml", "--policy-configmap", "a/b"], "mutually exclusive"),
        (["--policy-configmap", "nonamespace"], "NAMESPACE/NAME"),
        (["--kubeconfig", "kc"], "only makes sense"),
        (["--bind", "localhost"], "HOST:PORT"),
        (["--decision-cache-size", "-1"], "--decision-cache-size"),
    ],
)
def test_serve_rejects_inconsistent_flags(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = run("serve", "--dev-cert-dir", str(tmp_path), *args)
    assert result.exit_code == 2
    assert fragment in result.stderr

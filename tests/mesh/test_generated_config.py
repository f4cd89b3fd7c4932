"""The reconciler's output, proven by Istio: every call ends where the policy says.

For the shipped policies, every source (each rule's pods, an impostor with another service
account, a stranger pod in every namespace) calls every host and port of every service and a
host no service covers; Istio's config generator and simulation decide where each call ends,
and ``egress-guard explain`` says where it should.  Every generated object must also pass
Istio's own validation.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mesh.worlds import concrete_host, disagreement, matrix, probes, scenario
from tests.meshsim import Call, Oracle
from webhook.core.errors import PolicyError
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.mesh

POLICIES = Path(__file__).resolve().parents[2] / "policies"
SHIPPED = ["banzai-demo.yaml", "istio-egress-firewall.yaml"]


@pytest.mark.parametrize("name", SHIPPED)
def test_every_generated_object_passes_istio_validation(mesh_oracle: Oracle, name: str) -> None:
    sc = scenario(POLICIES / name)
    reports = mesh_oracle.validate(sc.config)
    assert len(reports) == len(sc.config)
    failed = [f"{r.kind} {r.namespace}/{r.name}: {r.errors}" for r in reports if r.errors]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_call_ends_where_the_policy_says(mesh_oracle: Oracle, name: str) -> None:
    sc = scenario(POLICIES / name)
    plan = probes(sc)
    sim = mesh_oracle.simulate(sc.world(p.call for p in plan))
    assert not sim.rejected, sim.rejected
    pairs = list(zip(plan, sim.results, strict=True))
    wrong = [d for p, r in pairs if (d := disagreement(sc, p, r)) is not None]
    assert not wrong, "\n".join(wrong) + "\n" + matrix(sc, pairs)
    # the matrix is not trivially empty: something is allowed and something denied
    assert any(p.intent.allowed for p in plan)
    assert any(not p.intent.allowed for p in plan)


def test_banzai_matrix(mesh_oracle: Oracle) -> None:
    """The Banzai post's table: app-a reaches httpbin and github, app-b google, nobody else."""
    sc = scenario(POLICIES / "banzai-demo.yaml")
    plan = probes(sc)
    sim = mesh_oracle.simulate(sc.world(p.call for p in plan))
    reached = {
        (p.source.labels.get("k8s-app", p.source.labels.get("app")), r.host)
        for p, r in zip(plan, sim.results, strict=True)
        if r.verdict == "direct"
    }
    assert reached == {
        ("app-a", "httpbin.org"),
        ("app-a", "www.httpbin.org"),
        ("app-a", "github.com"),
        ("app-a", "www.github.com"),
        ("app-b", "google.com"),
        ("app-b", "www.google.com"),
    }


def test_tls_origination_beside_a_tls_port_routes_both(mesh_oracle: Oracle) -> None:
    """Found by the oracle: HTTPS 8443 next to HTTP 80 originated to 443 ended in a 503, since
    the gateway kept the origination ServiceEntry and lost the service's own ports."""
    sc = scenario(Path(__file__).parent / "origination-with-tls-port.yaml")
    plan = probes(sc)
    sim = mesh_oracle.simulate(sc.world(p.call for p in plan))
    pairs = list(zip(plan, sim.results, strict=True))
    wrong = [d for p, r in pairs if (d := disagreement(sc, p, r)) is not None]
    assert not wrong, "\n".join(wrong) + "\n" + matrix(sc, pairs)
    assert {p.call.port for p, _ in pairs if p.intent.allowed} == {80, 8443}


def test_tls_origination_port_stays_the_gateways_own(mesh_oracle: Oracle) -> None:
    """The origination entries carry every port now; still no sidecar reaches port 443."""
    sc = scenario(Path(__file__).parent / "origination-with-tls-port.yaml")
    (svc,) = sc.policy.services.values()
    assert svc.tls_origination_port == 443
    calls = [
        Call(src.name, host, 443, tls="tls", sni=host, id=f"{src.name}->{host}:443")
        for src in sc.sources
        for host in map(concrete_host, svc.hosts)
    ]
    sim = mesh_oracle.simulate(sc.world(calls))
    assert not sim.rejected, sim.rejected
    leaks = [f"{c.id}: {r.describe()}" for c, r in zip(calls, sim.results, strict=True)]
    assert all(r.verdict == "blocked" for r in sim.results), "\n".join(leaks)


def test_label_rule_beside_account_rule_in_one_namespace_is_rejected() -> None:
    """Found by the oracle on a hypothesis-generated policy: labels are checked only by the
    sidecar, accounts only by the gateway, so together a pod with neither got through."""
    text = (Path(__file__).parent / "labels-and-service-account.yaml").read_text()
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    (problem,) = info.value.problems
    assert problem.path == "/allow/1/from/serviceAccount"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # what the rejection says to write instead: an account on the label rule too ...
        ("workloadLabels: {app: a}}", "workloadLabels: {app: a}, serviceAccount: sa-2}"),
        # ... or the label rule's labels on the account rule
        ("serviceAccount: sa-1}", "serviceAccount: sa-1, workloadLabels: {app: a}}"),
    ],
)
def test_label_rule_and_account_rule_written_as_advised_admit_only_their_pods(
    mesh_oracle: Oracle, tmp_path: Path, old: str, new: str
) -> None:
    text = (Path(__file__).parent / "labels-and-service-account.yaml").read_text()
    assert old in text
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(text.replace(old, new))
    sc = scenario(policy_file)
    plan = probes(sc)
    sim = mesh_oracle.simulate(sc.world(p.call for p in plan))
    pairs = list(zip(plan, sim.results, strict=True))
    wrong = [d for p, r in pairs if (d := disagreement(sc, p, r)) is not None]
    assert not wrong, "\n".join(wrong) + "\n" + matrix(sc, pairs)
    assert any(p.intent.allowed for p in plan)
    assert any(not p.intent.allowed for p in plan)

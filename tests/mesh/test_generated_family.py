"""The generator on a hypothesis-generated family of policies, judged by Istio.

Exact and wildcard hosts, HTTP/HTTPS/TLS/TCP ports, shared and dedicated gateways, TLS
origination, rules by namespace, workload labels and service account.  For each policy every
source's calls must end where ``explain`` says and every generated object must pass Istio's
validation.  The budget (examples) keeps the whole module well under a minute of oracle time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.mesh.worlds import disagreement, matrix, probes, scenario
from tests.meshsim import Oracle
from webhook.core.errors import PolicyError
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.mesh

PORTS = [(80, "HTTP"), (443, "TLS"), (8443, "HTTPS"), (8080, "HTTP2")]
TCP_PORT = (5432, "TCP")
NAMESPACES = ["ns-a", "ns-b", "*"]


def _passes_through(service: dict[str, Any]) -> bool:
    wildcard = any(h.startswith("*") for h in service["hosts"])
    return wildcard and any(p["protocol"] in ("TLS", "HTTPS") for p in service["ports"])


def _label_and_account_hole(rules: list[dict[str, Any]]) -> bool:
    """A labels-only rule beside an account rule for a shared service and namespace, where the
    account rule's labels do not imply the labels-only rule's: the policy must be rejected."""
    for labelled in rules:
        src = labelled["from"]
        if "workloadLabels" not in src or "serviceAccount" in src:
            continue
        for other in rules:
            acc = other["from"]
            if "serviceAccount" not in acc or not set(labelled["to"]) & set(other["to"]):
                continue
            if "*" not in (src["namespace"], acc["namespace"]) and (
                src["namespace"] != acc["namespace"]
            ):
                continue
            if not src["workloadLabels"].items() <= acc.get("workloadLabels", {}).items():
                return True
    return False


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid policy document: distinct hosts per service, rules over them."""
    count = draw(st.integers(1, 3))
    services = []
    tcp_taken = False
    for i in range(count):
        exact = [f"api.s{i}.example.com", f"www.s{i}.example.org"]
        hosts = draw(st.lists(st.sampled_from(exact), min_size=0, max_size=2, unique=True))
        if draw(st.booleans()) or not hosts:
            hosts.append(f"*.s{i}.example.net")
        ports = draw(st.lists(st.sampled_from(PORTS), min_size=1, max_size=3, unique=True))
        wildcard = any(h.startswith("*") for h in hosts)
        if not tcp_taken and not wildcard and draw(st.booleans()):
            ports.append(TCP_PORT)
            tcp_taken = True
        svc: dict[str, Any] = {
            "name": f"svc{i}",
            "hosts": hosts,
            "ports": [{"number": n, "protocol": p} for n, p in ports],
        }
        # origination needs a plain HTTP port; on a port the service lists itself the
        # application's TLS would be wrapped twice (warned), so the family keeps 443 free
        has_http = any(p == "HTTP" for _, p in ports)
        if has_http and all(n != 443 for n, _ in ports) and draw(st.booleans()):
            svc["tlsOrigination"] = {"port": 443}
        services.append(svc)
    dedicated = draw(st.booleans())
    gateway = (
        {"mode": "dedicated", "name": "egw-{service}", "selector": {"app": "egw-{service}"}}
        if dedicated
        else {"mode": "shared", "name": "egw", "selector": {"app": "egw"}}
    )
    rules = []
    for j in range(draw(st.integers(1, 3))):
        source: dict[str, Any] = {"namespace": draw(st.sampled_from(NAMESPACES))}
        if draw(st.booleans()):
            source["workloadLabels"] = {"app": draw(st.sampled_from(["a", "b"]))}
        names = [s["name"] for s in services]
        to = draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names), unique=True))
        if draw(st.booleans()) and not any(_passes_through(s) for s in services if s["name"] in to):
            # the policy rejects service accounts on wildcard TLS hosts (no identity there)
            source["serviceAccount"] = "sa-1"
        rules.append({"name": f"rule-{j}", "from": source, "to": to})
    return {
        "apiVersion": "egress-guard.dev/v1alpha1",
        "kind": "EgressPolicy",
        "mode": "enforce",
        "egress": {"namespace": "egress", "gateway": gateway},
        "externalServices": services,
        "allow": rules,
    }


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=policies())
def test_generated_policies_route_as_intended(
    mesh_oracle: Oracle, document: dict[str, Any]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # explain reads the policy file while the results are judged: keep it until then
        path = Path(tmp) / "policy.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        if _label_and_account_hole(document["allow"]):
            with pytest.raises(PolicyError, match="a pod with neither the labels nor the account"):
                parse_policy(path.read_text())
            return
        sc = scenario(path)
        plan = probes(sc)
        reports = mesh_oracle.validate(sc.config)
        sim = mesh_oracle.simulate(sc.world(p.call for p in plan))
        invalid = [f"{r.kind} {r.namespace}/{r.name}: {r.errors}" for r in reports if r.errors]
        assert not invalid, "\n".join(invalid) + "\n" + yaml.safe_dump(document)
        pairs = list(zip(plan, sim.results, strict=True))
        wrong = [d for p, r in pairs if (d := disagreement(sc, p, r)) is not None]
        assert not wrong, (
            "\n".join(wrong) + "\n" + matrix(sc, pairs) + "\n" + yaml.safe_dump(document)
        )

"""Admission proven differentially: what egress-guard admits, Istio must not turn into a leak.

The CI budget: a fixed seed and a few hundred tenant objects over every world, judged by Istio's
own config generator and traffic simulation (the meshsim oracle).  ``make fuzz-mesh`` runs the
same code longer with another seed.
"""

from __future__ import annotations

import os

import pytest

from tests.meshfuzz.differential import Oracle, leaks, probes, simulate
from tests.meshfuzz.fuzzing import DEFAULT_SEED, fuzz
from tests.meshfuzz.worlds import World, worlds

pytestmark = pytest.mark.mesh

CI_EXAMPLES = int(os.environ.get("MESH_CI_EXAMPLES", "400"))


@pytest.mark.parametrize("world", worlds(), ids=lambda w: w.name)
def test_baseline_mesh_lets_no_source_reach_a_forbidden_host(oracle: Oracle, world: World) -> None:
    found = leaks(world, oracle, [])
    assert not found, "\n".join(
        f"{p.source.describe()} {p.host}:{p.port}: {w}" for p, _, w in found
    )


@pytest.mark.parametrize("world", worlds(), ids=lambda w: w.name)
def test_baseline_mesh_lets_every_allowed_source_reach_its_hosts(
    oracle: Oracle, world: World
) -> None:
    policy = world.policy
    wanted = [
        p
        for p in probes(world)
        if p.host
        and any(
            # the client's own ports: a TLS origination port exists only behind the gateway
            policy.services[s].port(p.port) is not None
            and policy.rules_allowing(
                p.source.namespace, s, p.source.label_map, p.source.service_account
            )
            for s in policy.services_covering(p.host)
        )
    ]
    assert wanted
    results = simulate(world, oracle, [], wanted)
    failed = [
        f"{p.source.describe()} -> {p.host}:{p.port}: {r.get('verdict')} {r.get('reason', '')}"
        for p, r in zip(wanted, results, strict=True)
        if r.get("verdict") != "direct" or not r.get("gateway")
    ]
    assert not failed, "\n".join(failed)


def test_fuzzed_tenant_objects_admitted_by_egress_guard_open_no_forbidden_path(
    oracle: Oracle,
) -> None:
    run = fuzz(oracle, seed=DEFAULT_SEED, examples=CI_EXAMPLES)
    print(run.summary())
    assert run.tally.tried >= CI_EXAMPLES
    # the generator must keep reaching Istio and the engine, or the proof proves nothing
    assert run.tally.admitted > run.tally.tried // 10, run.summary()
    assert run.tally.istio_rejected < run.tally.tried // 2, run.summary()
    assert not run.tally.findings, (
        run.summary() + "\n" + "\n".join(f.describe() for f in run.tally.findings[:5])
    )

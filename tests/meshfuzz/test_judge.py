"""The fuzzer's own machinery: how it names objects and judges where a call ended.

A judge that calls a safe path unsafe sends a reviewer after a hole that is not there; one
that renames objects apart from their references never tries the pair at all.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.meshfuzz.differential import Oracle, leaks, probes, simulate
from tests.meshfuzz.refs import rename
from tests.meshfuzz.worlds import worlds

pytestmark = pytest.mark.mesh

MIXED = {w.name: w for w in worlds()}["mixed"]


def _headless_at(address: str, port: int) -> list[dict[str, Any]]:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "vendor", "namespace": "team-a"},
        "spec": {
            "clusterIP": "None",
            "ports": [{"name": f"tcp-{port}", "port": port, "targetPort": port}],
        },
    }
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "vendor-1",
            "namespace": "team-a",
            "labels": {"kubernetes.io/service-name": "vendor"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address]}],
        "ports": [{"name": f"tcp-{port}", "port": port, "protocol": "TCP"}],
    }
    return [service, slice_]


def test_passthrough_to_an_allowed_address_is_judged_by_that_address(oracle: Oracle) -> None:
    """A headless Service at payments' address on 443: the sidecar passes every connection to
    203.0.113.5:443 through to that address, whatever SNI the app presents. payments is
    allowed to every namespace there, so no SNI makes the call a breach."""
    objects = _headless_at("203.0.113.5", 443)
    sni_calls = [
        p
        for p in probes(MIXED, {"203.0.113.5"})
        if p.address == "203.0.113.5"
        and p.sni == "db.vendor.example"
        and p.source.namespace == "team-a"
    ]
    assert sni_calls
    results = simulate(MIXED, oracle, objects, sni_calls)
    # the name reported is the SNI, the bytes go to the address
    assert {(r.get("verdict"), r.get("host")) for r in results} == {
        ("passthrough", "db.vendor.example")
    }, results
    assert leaks(MIXED, oracle, objects) == []


def test_renaming_an_attempt_keeps_its_references() -> None:
    leaf = {"kind": "VirtualService", "metadata": {"name": "leaf", "namespace": "a"}, "spec": {}}
    root = {
        "kind": "VirtualService",
        "metadata": {"name": "root", "namespace": "a"},
        "spec": {"http": [{"delegate": {"name": "leaf", "namespace": "a"}}]},
    }
    slice_ = {
        "kind": "EndpointSlice",
        "metadata": {
            "name": "svc",
            "namespace": "a",
            "labels": {"kubernetes.io/service-name": "svc"},
        },
    }
    service = {"kind": "Service", "metadata": {"name": "svc", "namespace": "a"}, "spec": {}}
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r", "namespace": "a"},
        "spec": {
            "parentRefs": [{"kind": "Service", "name": "svc"}, {"name": "svc", "namespace": "b"}],
            "rules": [{"backendRefs": [{"name": "svc"}, {"name": "db"}]}],
        },
    }
    rename([leaf, root, slice_, service, route], "-a3")
    assert root["spec"]["http"][0]["delegate"]["name"] == "leaf-a3"
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "svc-a3"
    assert [p["name"] for p in route["spec"]["parentRefs"]] == ["svc-a3", "svc"]
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]] == ["svc-a3", "db"]

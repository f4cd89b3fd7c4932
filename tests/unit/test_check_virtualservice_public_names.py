"""Legitimate VirtualServices denied before: redirects out, and an app's own public name."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.builders import judge
from tests.unit.test_check_virtualservices import PAYMENTS_GW, POLICY, to, vs
from webhook.core.policy import Policy
from webhook.core.policy_parsing import parse_policy

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def policy() -> Policy:
    return parse_policy(POLICY.format(mode="enforce"))


def public(**spec: Any) -> dict[str, Any]:
    """The bookinfo pattern: the public name on the ingress gateway and for the mesh."""
    base: dict[str, Any] = {
        "hosts": ["bookinfo.team-a.example"],
        "gateways": ["bookinfo-gateway", "mesh"],
        "exportTo": ["."],
        "http": [to("productpage")],
    }
    return vs(**{**base, **spec})


def test_redirect_to_an_outside_authority_is_allowed(policy: Policy) -> None:
    # a 301 goes back to the client; its next request is judged by its own sidecar
    manifest = vs(hosts=["web"], http=[{"redirect": {"authority": "pastebin.com:443"}}])
    assert judge(manifest, policy).allowed


def test_redirect_on_an_allowed_host_is_allowed(policy: Policy) -> None:
    manifest = vs(
        hosts=["api.payments.example"], http=[{"redirect": {"authority": "pastebin.com:443"}}]
    )
    assert judge(manifest, policy).allowed


def test_rewrite_to_an_outside_authority_is_still_denied(policy: Policy) -> None:
    manifest = vs(
        hosts=["api.payments.example"],
        http=[to(PAYMENTS_GW, rewrite={"authority": "pastebin.com"})],
    )
    assert not judge(manifest, policy).allowed


def test_own_public_name_on_ingress_and_mesh_routing_in_cluster_is_allowed(
    policy: Policy,
) -> None:
    decision = judge(public(), policy)
    assert decision.allowed, decision.reason


def test_own_public_name_exported_beyond_the_namespace_is_a_hijack(policy: Policy) -> None:
    manifest = public()
    del manifest["spec"]["exportTo"]
    assert not judge(manifest, policy).allowed


def test_own_public_name_routing_out_is_denied(policy: Policy) -> None:
    assert not judge(public(http=[to("pastebin.com")]), policy).allowed


def test_own_public_name_routing_to_an_egress_gateway_is_denied(policy: Policy) -> None:
    assert not judge(public(http=[to(PAYMENTS_GW)]), policy).allowed


def test_public_name_for_the_mesh_alone_is_still_denied(policy: Policy) -> None:
    # without the tenant's own gateway the name is no public name the app serves
    assert not judge(public(gateways=["mesh"]), policy).allowed


def test_public_name_rewritten_for_an_in_cluster_service_is_allowed(policy: Policy) -> None:
    # the rewrite only changes the Host header productpage receives; nothing leaves
    manifest = public(http=[to("productpage", rewrite={"authority": "pastebin.com"})])
    decision = judge(manifest, policy)
    assert decision.allowed, decision.reason


@pytest.mark.parametrize(
    "route",
    [
        to("productpage", mirror={"host": "pastebin.com"}, rewrite={"authority": "pastebin.com"}),
        to("productpage", mirror={"host": PAYMENTS_GW}, rewrite={"authority": "pastebin.com"}),
        to(
            "productpage",
            headers={"request": {"set": {"Host": "pastebin.com"}}},
            mirror={"host": PAYMENTS_GW},
        ),
    ],
    ids=["mirror out", "mirror to a gateway", "header rewrite, mirror to a gateway"],
)
def test_public_name_rewritten_where_the_host_picks_the_upstream_is_denied(
    policy: Policy, route: dict[str, Any]
) -> None:
    assert not judge(public(http=[route]), policy).allowed

"""The policy's host checks: the fast path for normalized names agrees with the full checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core.errors import InvalidHostError, PolicyError
from webhook.core.hosts import check_dns_name, is_cluster_internal
from webhook.core.policy_parsing import build_policy, is_overbroad

pytestmark = pytest.mark.unit

_label = st.sampled_from(["a", "B", "svc", "cluster", "local", "com", "x-1", "-bad", "io"])
_name = st.lists(_label, min_size=1, max_size=4).map(".".join)
_host = st.tuples(st.sampled_from(["", "*.", "*"]), _name, st.sampled_from(["", ".", " "])).map(
    "".join
)


def expected_hosts(host: str) -> list[str] | None:
    """What the full checks make of ``host``: its normalized form, or None when refused."""
    try:
        name = check_dns_name(host, require_dot=True)
    except InvalidHostError:
        return None
    if (name[0] == "*" and is_overbroad(name)) or is_cluster_internal(name, "cluster.local"):
        return None
    return [name]


@settings(max_examples=400, deadline=None)
@given(host=_host)
def test_a_host_is_accepted_exactly_when_the_full_checks_accept_it(host: str) -> None:
    document = {
        "egress": {"namespace": "egress"},
        "externalServices": [
            {"name": "s", "hosts": [host], "ports": [{"number": 443, "protocol": "TLS"}]}
        ],
    }
    expected = expected_hosts(host)
    try:
        policy = build_policy(document)
    except PolicyError:
        assert expected is None
        return
    assert list(policy.services["s"].hosts) == expected

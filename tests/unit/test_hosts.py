"""Host matching: Istio's wildcard rules, normalization, and the trie against a brute force."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core.errors import InvalidHostError
from webhook.core.hosts import (
    HostTrie,
    address_range,
    check_dns_name,
    covers,
    expand_short_name,
    is_cluster_internal,
    normalize,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("*.foo.com", "a.foo.com", True),
        ("*.foo.com", "a.b.foo.com", True),
        ("*.foo.com", "foo.com", False),
        ("*.foo.com", "evilfoo.com", False),
        ("*.foo.com", "foo.com.evil.net", False),
        ("*.foo.com", "*.foo.com", True),
        ("*.foo.com", "*.a.foo.com", True),
        ("*.a.foo.com", "*.foo.com", False),
        ("a.foo.com", "*.foo.com", False),
        ("foo.com", "foo.com", True),
        ("foo.com", "a.foo.com", False),
        ("*", "anything.example", True),
        ("*", "*.example.com", True),
    ],
)
def test_covers_follows_istio_wildcard_rules(pattern: str, host: str, expected: bool) -> None:
    assert covers(pattern, host) is expected


def test_wildcard_never_matches_apex() -> None:
    trie = HostTrie.build([("*.github.com", "github")])
    assert trie.covering("github.com") == set()
    assert trie.covering("api.github.com") == {"github"}


def test_normalize_is_case_insensitive_and_trailing_dot_tolerant() -> None:
    assert normalize("API.GitHub.com.") == "api.github.com"
    assert normalize("  www.Google.COM ") == "www.google.com"


@pytest.mark.parametrize(
    "bad",
    ["", "a*.com", "foo.*.com", "*foo.com", "-a.com", "a-.com", "a..com", "x" * 64 + ".com"],
)
def test_invalid_names_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidHostError):
        check_dns_name(bad)


def test_short_name_rejected_where_a_dot_is_required() -> None:
    with pytest.raises(InvalidHostError):
        check_dns_name("localhost", require_dot=True)
    assert check_dns_name("*.io", require_dot=True) == "*.io"


def test_bare_star_rejected_where_wildcards_are_not_allowed() -> None:
    with pytest.raises(InvalidHostError):
        check_dns_name("*", allow_wildcard=False)


@pytest.mark.parametrize(
    ("host", "internal"),
    [
        ("reviews.default.svc.cluster.local", True),
        ("cluster.local", True),
        ("*.svc.cluster.local", True),
        ("evilcluster.local", False),
        ("cluster.local.evil.com", False),
        ("*.local", False),
        ("*", False),
        ("github.com", False),
    ],
)
def test_cluster_internal_is_the_cluster_zone_only(host: str, internal: bool) -> None:
    assert is_cluster_internal(host, "cluster.local") is internal


@pytest.mark.parametrize(
    ("host", "expanded"),
    [
        ("reviews", "reviews.team-a.svc.cluster.local"),
        ("reviews.other", "reviews.other"),
        ("httpbin.org", "httpbin.org"),
        ("*", "*"),
        ("*.foo.com", "*.foo.com"),
        ("10.0.0.1", "10.0.0.1"),
    ],
)
def test_short_names_expand_against_the_rules_namespace(host: str, expanded: str) -> None:
    assert expand_short_name(host, "team-a", "cluster.local") == expanded


def test_trie_under_follows_sidecar_import_direction() -> None:
    trie = HostTrie.build(
        [
            ("service1.foo.com", "s1"),
            ("*.foo.com", "foo"),
            ("*.a.foo.com", "afoo"),
            ("foo.com", "apex"),
            ("bar.com", "bar"),
        ]
    )
    assert trie.under("*.foo.com") == {"s1", "foo", "afoo"}
    # an exact import never pulls in a wildcard registry host
    assert trie.under("service1.foo.com") == {"s1"}
    assert trie.under("x.foo.com") == frozenset()
    assert trie.under("*") == {"s1", "foo", "afoo", "apex", "bar"}
    assert trie.under("*.com") == {"s1", "foo", "afoo", "apex", "bar"}


def test_trie_refuses_additions_after_freeze() -> None:
    trie = HostTrie.build([("a.com", 1)])
    with pytest.raises(RuntimeError):
        trie.add("b.com", 2)


_label = st.sampled_from(["a", "b", "foo", "bar", "com", "x-1", "io"])
_name = st.lists(_label, min_size=1, max_size=4).map(".".join)
_pattern = st.one_of(_name, _name.map(lambda n: "*." + n), st.just("*"))


@settings(max_examples=300, deadline=None)
@given(patterns=st.lists(_pattern, max_size=12), host=_pattern)
def test_trie_covering_agrees_with_brute_force(patterns: list[str], host: str) -> None:
    trie = HostTrie.build((p, i) for i, p in enumerate(patterns))
    expected = {i for i, p in enumerate(patterns) if covers(p, host)}
    assert trie.covering(host) == expected


@settings(max_examples=300, deadline=None)
@given(patterns=st.lists(_pattern, max_size=12), hosts=st.lists(_pattern, max_size=6))
def test_trie_answers_stay_right_when_services_share_names_and_sets(
    patterns: list[str], hosts: list[str]
) -> None:
    """A policy's services hold many hosts each: the trie shares one answer set between the
    names of one service, and no answer may leak into another's."""
    trie = HostTrie.build((p, i % 3) for i, p in enumerate(patterns))
    for host in hosts:
        expected = {i % 3 for i, p in enumerate(patterns) if covers(p, host)}
        assert trie.covering(host) == expected
        assert trie.under(host) == {i % 3 for i, p in enumerate(patterns) if covers(host, p)}


@settings(max_examples=300, deadline=None)
@given(patterns=st.lists(_pattern, max_size=12), query=_pattern)
def test_trie_under_agrees_with_brute_force(patterns: list[str], query: str) -> None:
    trie = HostTrie.build((p, i) for i, p in enumerate(patterns))
    expected = {i for i, p in enumerate(patterns) if covers(query, p)}
    assert trie.under(query) == expected


@settings(max_examples=200, deadline=None)
@given(host=_name, prefix=st.lists(_label, min_size=1, max_size=3).map(".".join))
def test_wildcard_covers_every_strict_subdomain_but_not_apex(host: str, prefix: str) -> None:
    assert covers("*." + host, prefix + "." + host)
    assert not covers("*." + host, host)


@settings(max_examples=200, deadline=None)
@given(host=_name)
def test_case_and_trailing_dot_do_not_change_identity(host: str) -> None:
    assert normalize(host.upper() + ".") == normalize(host)


@given(
    st.lists(
        st.one_of(
            st.integers(0, 300).map(str),
            st.sampled_from(["00", "01", "007", "", "1a", "\u0661", "+1", " 1", "0x1"]),
        ),
        min_size=1,
        max_size=5,
    ).map(".".join)
)
def test_dotted_quads_read_as_ipaddress_reads_them(text: str) -> None:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        expected = None
    else:
        expected = (net.version, int(net.network_address), int(net.broadcast_address))
    assert address_range.__wrapped__(text) == expected


def test_covering_needs_the_frozen_trie_it_reads() -> None:
    trie: HostTrie[int] = HostTrie()
    trie.add("*.a.example.com", 1)
    with pytest.raises(RuntimeError):
        trie.covering("x.a.example.com")
    assert trie.freeze().covering("x.a.example.com") == {1}

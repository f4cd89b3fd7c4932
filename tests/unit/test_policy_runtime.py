"""The policy runtime: atomic swaps, last-good fallback, and the sources that feed it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from webhook.policy_runtime import (
    FilePolicySource,
    PolicyStore,
    ReloadResult,
    StaticPolicySource,
    embedded_policy_text,
)

pytestmark = pytest.mark.unit

GOOD = """
egress: {namespace: external}
externalServices:
  - name: httpbin
    hosts: [httpbin.org]
    ports: [{number: 443, protocol: TLS}]
allow:
  - from: {namespace: team-a}
    to: [httpbin]
"""
OTHER = GOOD.replace("httpbin.org", "api.example.com")
BROKEN_SCHEMA = GOOD.replace("number: 443", "number: seventy")
BROKEN_MEANING = GOOD.replace("to: [httpbin]", "to: [nothing]")
BROKEN_YAML = "egress: {namespace: [external"


def test_first_good_policy_makes_the_store_ready() -> None:
    store = PolicyStore(clock=lambda: 42.0)
    assert not store.ready and store.current is None
    result = store.update(GOOD, origin="t")
    assert result.ok and result.changed
    assert store.ready
    assert store.current is not None
    assert store.current.loaded_at == 42.0
    assert store.current.revision == result.revision


@pytest.mark.parametrize("broken", [BROKEN_SCHEMA, BROKEN_MEANING, BROKEN_YAML, "", "[]"])
def test_a_broken_edit_never_replaces_the_last_good_policy(broken: str) -> None:
    store = PolicyStore()
    good = store.update(GOOD, origin="t")
    before = store.current
    result = store.update(broken, origin="t")
    assert not result.ok
    assert result.problems
    assert result.revision == good.revision
    assert store.current is before


def test_a_broken_first_policy_leaves_the_store_unready() -> None:
    store = PolicyStore()
    result = store.update(BROKEN_MEANING, origin="t")
    assert not result.ok and result.revision == ""
    assert not store.ready
    assert store.last_result == result
    assert any("nothing" in p for p in result.problems)


def test_an_identical_policy_is_not_a_change() -> None:
    store = PolicyStore()
    store.update(GOOD, origin="t")
    first = store.current
    again = store.update(GOOD + "\n# a comment\n", origin="t")
    assert again.ok and not again.changed
    assert store.current is first


def test_listeners_hear_every_attempt() -> None:
    heard: list[ReloadResult] = []
    store = PolicyStore(listeners=(heard.append,))
    store.update(GOOD, origin="t")
    store.update(BROKEN_YAML, origin="t")
    store.fail("t", "API unreachable")
    assert [r.ok for r in heard] == [True, False, False]
    assert heard[2].problems == ("API unreachable",)


def test_concurrent_readers_see_a_whole_policy_at_all_times() -> None:
    store = PolicyStore()
    store.update(GOOD, origin="t")
    revisions = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            current = store.current
            assert current is not None
            # the policy's indexes agree with its revision: no half-swapped state
            covering = current.policy.services_covering("httpbin.org")
            revisions.add((current.revision, bool(covering)))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for i in range(30):
        store.update(OTHER if i % 2 else GOOD, origin="t")
    stop.set()
    for t in readers:
        t.join()
    good = PolicyStore()
    other = PolicyStore()
    good_rev = good.update(GOOD, origin="t").revision
    other_rev = other.update(OTHER, origin="t").revision
    assert revisions <= {(good_rev, True), (other_rev, False)}


def test_static_source_delivers_once() -> None:
    store = PolicyStore()
    StaticPolicySource(GOOD, origin="embedded").start(store)
    assert store.current is not None and store.current.origin == "embedded"


def test_embedded_policy_is_the_banzai_demo_and_valid() -> None:
    text = embedded_policy_text()
    assert text == (Path(__file__).parents[2] / "policies" / "banzai-demo.yaml").read_text()
    store = PolicyStore()
    assert store.update(text, origin="embedded").ok


def _rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    # make the change visible to the stamp even on coarse-mtime filesystems
    later = time.time() + 5
    import os

    os.utime(path, (later, later))


def test_file_source_loads_and_notices_edits(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    store = PolicyStore()
    source = FilePolicySource(path, interval=3600)
    assert source.poll(store)
    first = store.current
    assert not source.poll(store), "an unchanged file is not delivered again"
    _rewrite(path, OTHER)
    assert source.poll(store)
    assert store.current is not first
    assert store.current is not None
    assert store.current.policy.services_covering("api.example.com")


def test_file_source_broken_edit_keeps_last_good_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    heard: list[ReloadResult] = []
    store = PolicyStore(listeners=(heard.append,))
    source = FilePolicySource(path, interval=3600)
    source.poll(store)
    good = store.current
    _rewrite(path, BROKEN_SCHEMA)
    source.poll(store)
    assert store.current is good
    assert heard[-1].ok is False


def test_file_source_reports_a_vanished_file_once(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    heard: list[ReloadResult] = []
    store = PolicyStore(listeners=(heard.append,))
    source = FilePolicySource(path, interval=3600)
    source.poll(store)
    path.unlink()
    source.poll(store)
    source.poll(store)
    failures = [r for r in heard if not r.ok]
    assert len(failures) == 1
    assert "cannot read" in failures[0].problems[0]
    assert store.current is not None
    path.write_text(OTHER)
    assert source.poll(store)
    assert store.current.policy.services_covering("api.example.com")


def test_file_source_thread_picks_up_changes(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    store = PolicyStore()
    source = FilePolicySource(path, interval=0.05)
    source.start(store)
    try:
        assert store.ready
        _rewrite(path, OTHER)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            current = store.current
            if current and current.policy.services_covering("api.example.com"):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the watcher did not load the edited file")
    finally:
        source.stop()


def test_file_source_follows_a_kubernetes_style_symlink_swap(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "policy.yaml").write_text(GOOD)
    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "policy.yaml").write_text(OTHER)
    data = tmp_path / "..data"
    data.symlink_to("v1")
    path = tmp_path / "policy.yaml"
    path.symlink_to("..data/policy.yaml")
    store = PolicyStore()
    source = FilePolicySource(path, interval=3600)
    source.poll(store)
    tmp = tmp_path / "..data_tmp"
    tmp.symlink_to("v2")
    tmp.replace(data)
    assert source.poll(store)
    assert store.current is not None
    assert store.current.policy.services_covering("api.example.com")

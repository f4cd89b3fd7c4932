"""Metrics shared by several workers: prometheus-client's multiprocess mode, wired for the server.

Another worker is stood in for by a copy of this process's files under another pid: the
collector reads every file of the directory, whichever process wrote it.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import Counter, generate_latest, values

from webhook.admission.metrics import (
    MULTIPROC_DIR_ENV,
    Metrics,
    create_shared_dir,
    keep_values_in,
    remove_shared_dir,
    worker_exited,
)
from webhook.policy_runtime import PolicyStore, StaticPolicySource, embedded_policy_text

pytestmark = pytest.mark.unit

GONE_PID = 1


@pytest.fixture
def in_process_afterwards(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Give the test process back its in-process value class and environment."""
    monkeypatch.setattr(values, "ValueClass", values.ValueClass)
    # recorded as absent, so it is removed again afterwards
    monkeypatch.setenv(MULTIPROC_DIR_ENV, "")
    yield
    values.close_all_multiprocess_files()


def loaded_store() -> PolicyStore:
    store = PolicyStore()
    StaticPolicySource(embedded_policy_text(), origin="embedded").start(store)
    return store


def review_twice(metrics: Metrics) -> None:
    for decision in ("allow", "deny"):
        metrics.requests.labels("validate", "ServiceEntry", "CREATE", decision).inc()
        metrics.latency.labels("validate").observe(0.0003)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_each_start_gets_a_fresh_empty_directory_only_its_user_reads() -> None:
    first, second = create_shared_dir(), create_shared_dir()
    try:
        assert first != second
        for directory in (first, second):
            assert list(directory.iterdir()) == []
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    finally:
        remove_shared_dir(first)
        remove_shared_dir(second)


def test_the_directory_is_removed_with_every_workers_files(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_12.db").write_bytes(b"x")
    remove_shared_dir(directory)
    assert not directory.exists()
    remove_shared_dir(directory)  # already gone: nothing to do


def test_one_worker_keeps_its_values_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_DIR_ENV, raising=False)
    metrics = Metrics()
    review_twice(metrics)
    assert not values.ValueClass._multiprocess
    assert MULTIPROC_DIR_ENV not in os.environ
    assert sample(metrics, "egress_guard_admission_duration_seconds_count", endpoint="validate")


@pytest.mark.usefixtures("in_process_afterwards")
def test_values_created_after_the_switch_live_in_the_directory(tmp_path: Path) -> None:
    keep_values_in(tmp_path)
    assert values.ValueClass._multiprocess
    counter = Counter("probe", "A probe.", registry=None)
    counter.inc()
    assert [p.name.split("_")[0] for p in tmp_path.iterdir()] == ["counter"]


@pytest.mark.usefixtures("in_process_afterwards")
def test_every_workers_counts_are_summed_and_the_policy_exported_once(tmp_path: Path) -> None:
    metrics = Metrics(tmp_path)
    metrics.watch(loaded_store())
    review_twice(metrics)
    for own in list(tmp_path.iterdir()):
        # another worker that answered the same reviews, and has exited since
        kind = own.name.rsplit("_", 1)[0]
        shutil.copy(own, tmp_path / f"{kind}_{GONE_PID}.db")
    worker_exited(tmp_path, GONE_PID)
    labels = {"endpoint": "validate", "kind": "ServiceEntry", "operation": "CREATE"}
    assert sample(metrics, "egress_guard_admission_requests_total", **labels, decision="deny") == 2
    assert (
        sample(metrics, "egress_guard_admission_duration_seconds_count", endpoint="validate") == 4
    )
    text = generate_latest(metrics.registry).decode()
    assert text.count("\negress_guard_policy_info{") == 1
    assert text.count("\negress_guard_policy_loaded ") == 1


@pytest.mark.usefixtures("in_process_afterwards")
def test_names_and_help_texts_are_those_of_one_worker(tmp_path: Path) -> None:
    def help_lines(metrics: Metrics) -> set[str]:
        metrics.watch(loaded_store())
        review_twice(metrics)
        metrics.bad_requests.labels("validate", "400").inc()
        text = generate_latest(metrics.registry).decode()
        # only one worker exports the _created gauges of its own counters
        return {line for line in text.splitlines() if line.startswith("# HELP ")} - {
            line for line in text.splitlines() if line.startswith("# HELP") and "_created " in line
        }

    alone = help_lines(Metrics())
    assert help_lines(Metrics(tmp_path)) == alone


def test_an_exited_workers_counters_stay_and_only_live_gauges_go(tmp_path: Path) -> None:
    for name in ("counter_7.db", "histogram_7.db", "gauge_livesum_7.db", "counter_8.db"):
        (tmp_path / name).write_bytes(b"")
    worker_exited(tmp_path, 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_7.db",
        "counter_8.db",
        "histogram_7.db",
    ]

"""JSON log lines: the decision log's lean path writes what ``Logger.info`` would."""

from __future__ import annotations

import datetime
import io
import logging
import logging.config
import os
import resource
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.admission.logs import (
    DecisionLog,
    JsonFormatter,
    JsonLineHandler,
    configure_logging,
    gunicorn_log_config,
    sole_line_handler,
)

pytestmark = pytest.mark.unit


def capture(name: str, level: int = logging.INFO) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(level)
    return logger, stream


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_timestamp_matches_the_iso_format_with_milliseconds(created: float) -> None:
    expected = datetime.datetime.fromtimestamp(created, datetime.UTC).isoformat(
        timespec="milliseconds"
    )
    formatter = JsonFormatter()
    assert formatter.timestamp(created) == expected
    # a second call within the same second is answered from the cached seconds
    assert formatter.timestamp(created) == expected


def test_decision_line_equals_the_line_logger_info_writes() -> None:
    fields = {"uid": "u1", "decision": "allow", "latency_ms": 0.012, "dry_run": False}
    fast_logger, fast = capture("test.logs.fast")
    slow_logger, slow = capture("test.logs.slow")

    DecisionLog(fast_logger).write(fields)
    slow_logger.info("admission decision", extra={"fields": fields})

    fast_line, slow_line = orjson.loads(fast.getvalue()), orjson.loads(slow.getvalue())
    for line in (fast_line, slow_line):
        del line["time"], line["logger"]
    assert fast_line == slow_line
    assert fast_line["message"] == "admission decision"
    assert fast_line["level"] == "info"
    assert fast.getvalue().count("\n") == 1


def test_decision_lines_obey_the_level() -> None:
    logger, stream = capture("test.logs.quiet", level=logging.WARNING)
    DecisionLog(logger).write({"uid": "u1"})
    assert stream.getvalue() == ""


def test_decision_lines_reach_caplog(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.logs.caplog")
    with caplog.at_level(logging.INFO, logger="test.logs.caplog"):
        DecisionLog(logger).write({"uid": "u7"})
    (record,) = [r for r in caplog.records if r.name == "test.logs.caplog"]
    assert record.getMessage() == "admission decision"
    assert getattr(record, "fields", None) == {"uid": "u7"}


def line_handler(path: Path) -> tuple[logging.Logger, JsonLineHandler, Any]:
    stream = path.open("w")
    handler = JsonLineHandler(stream)
    logger = logging.getLogger(f"test.lines.{path.name}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, handler, stream


def test_lines_from_many_threads_are_all_written_whole_by_flush(tmp_path: Path) -> None:
    logger, handler, stream = line_handler(tmp_path / "lines.log")
    log = DecisionLog(logger)

    def write(thread: int) -> None:
        for i in range(500):
            log.write({"thread": thread, "i": i, "reason": "x" * (i % 50)})

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.flush()
    lines = (tmp_path / "lines.log").read_bytes().splitlines()
    entries = [orjson.loads(line) for line in lines]
    assert len(entries) == 8 * 500
    assert {(e["thread"], e["i"]) for e in entries} == {
        (t, i) for t in range(8) for i in range(500)
    }
    # one thread's lines keep their order
    assert [e["i"] for e in entries if e["thread"] == 3] == list(range(500))
    handler.close()
    stream.close()


def test_request_threads_do_not_queue_on_a_lock_to_log(tmp_path: Path) -> None:
    """Through a StreamHandler, 8 threads writing a file switched context every other line."""
    logger, handler, stream = line_handler(tmp_path / "switches.log")
    log = DecisionLog(logger)

    def write() -> None:
        for i in range(2000):
            log.write({"i": i})

    before = resource.getrusage(resource.RUSAGE_SELF)
    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.flush()
    after = resource.getrusage(resource.RUSAGE_SELF)
    switches = (after.ru_nvcsw - before.ru_nvcsw) + (after.ru_nivcsw - before.ru_nivcsw)
    assert len((tmp_path / "switches.log").read_bytes().splitlines()) == 16_000
    assert switches < 16_000 / 4
    handler.close()
    stream.close()


def test_a_forked_child_writes_its_own_lines_and_not_the_parents(tmp_path: Path) -> None:
    logger, handler, stream = line_handler(tmp_path / "fork.log")
    log = DecisionLog(logger)
    log.write({"who": "parent", "when": "before fork"})
    handler.flush()
    pid = os.fork()
    if pid == 0:  # the child: gunicorn's worker
        try:
            log.write({"who": "child"})
            handler.flush()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    log.write({"who": "parent", "when": "after fork"})
    handler.flush()
    entries = [orjson.loads(line) for line in (tmp_path / "fork.log").read_bytes().splitlines()]
    assert sorted(e["who"] for e in entries) == ["child", "parent", "parent"]
    handler.close()
    stream.close()


def test_gunicorn_logging_config_uses_the_line_handler() -> None:
    config = gunicorn_log_config("info")
    logging.config.dictConfig(config)
    try:
        (handler,) = logging.getLogger().handlers
        assert isinstance(handler, JsonLineHandler)
        assert isinstance(handler.formatter, JsonFormatter)
    finally:
        configure_logging("warning", io.StringIO())


class _CountingFile(io.BytesIO):
    """A binary stream counting its writes."""

    writes = 0

    def write(self, data: Any) -> int:
        self.writes += 1
        return super().write(data)


def test_lines_arriving_apart_share_a_write_instead_of_waking_the_writer_each() -> None:
    """Served reviews log one line each, a fraction of a millisecond apart: a writer woken for
    every line cost the request threads a GIL hand-off and a context switch per line."""
    binary = _CountingFile()
    stream = io.TextIOWrapper(binary, write_through=True)
    handler = JsonLineHandler(stream)
    logger = logging.getLogger("test.lines.spaced")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    log = DecisionLog(logger)

    def write(thread: int) -> None:
        for i in range(100):
            log.write({"thread": thread, "i": i})
            time.sleep(0.0002)

    started = time.monotonic()
    threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.flush()
    elapsed = time.monotonic() - started
    assert len(binary.getvalue().splitlines()) == 400
    # at most one write per batching interval (and the flush's), however the lines were spaced
    assert binary.writes <= elapsed / JsonLineHandler.BATCH_SECONDS + 2
    assert binary.writes < 400 / 4
    handler.close()


def sole_handler_logger(path: Path, name: str) -> tuple[logging.Logger, JsonLineHandler, Any]:
    logger, handler, stream = line_handler(path)
    child = logging.getLogger(f"{logger.name}.{name}")
    child.handlers = []
    child.propagate = True
    child.filters = []
    return child, handler, stream


def test_a_sole_line_handler_gets_the_line_handed_to_it_unchanged(tmp_path: Path) -> None:
    """The direct path (no record) writes the line the record's route writes."""
    child, handler, stream = sole_handler_logger(tmp_path / "direct.log", "direct")
    assert sole_line_handler(child) is handler
    fields = {"uid": "u1", "decision": "allow", "latency_ms": 0.012, "when": datetime.date.today()}
    DecisionLog(child).write(fields)
    child.addFilter(lambda record: True)  # the ordinary route from here on
    assert sole_line_handler(child) is None
    DecisionLog(child).write(fields)
    handler.flush()
    direct, routed = (
        orjson.loads(line) for line in (tmp_path / "direct.log").read_bytes().splitlines()
    )
    del direct["time"], routed["time"]
    assert direct == routed
    assert direct["logger"] == child.name and direct["when"] == str(datetime.date.today())
    handler.close()
    stream.close()


def _with_second_handler(child: logging.Logger) -> None:
    child.addHandler(logging.NullHandler())


def _with_logger_filter(child: logging.Logger) -> None:
    child.addFilter(lambda record: True)


def _with_handler_filter(child: logging.Logger) -> None:
    child.parent.handlers[0].addFilter(lambda record: True)  # type: ignore[union-attr]


def _with_handler_level(child: logging.Logger) -> None:
    child.parent.handlers[0].setLevel(logging.WARNING)  # type: ignore[union-attr]


def _with_other_formatter(child: logging.Logger) -> None:
    child.parent.handlers[0].setFormatter(logging.Formatter())  # type: ignore[union-attr]


def _not_propagating(child: logging.Logger) -> None:
    child.propagate = False


def _disabled(child: logging.Logger) -> None:
    child.disabled = True


@pytest.mark.parametrize(
    "change",
    [
        _with_second_handler,
        _with_logger_filter,
        _with_handler_filter,
        _with_handler_level,
        _with_other_formatter,
        _not_propagating,
        _disabled,
    ],
)
def test_anything_but_a_sole_line_handler_takes_the_records_route(
    tmp_path: Path, change: Any
) -> None:
    child, handler, stream = sole_handler_logger(tmp_path / "routes.log", "routes")
    change(child)
    assert sole_line_handler(child) is None
    handler.close()
    stream.close()
    child.disabled = False


def test_a_filter_on_the_way_still_drops_decision_lines(tmp_path: Path) -> None:
    child, handler, stream = sole_handler_logger(tmp_path / "dropped.log", "dropped")
    handler.addFilter(lambda record: getattr(record, "fields", {}).get("decision") != "allow")
    log = DecisionLog(child)
    log.write({"decision": "allow"})
    log.write({"decision": "deny"})
    handler.flush()
    (line,) = (tmp_path / "dropped.log").read_bytes().splitlines()
    assert orjson.loads(line)["decision"] == "deny"
    handler.close()
    stream.close()


@pytest.mark.parametrize("served", ["configure_logging", "gunicorn_log_config"])
def test_the_served_logging_configurations_hand_decision_lines_over_directly(
    served: str,
) -> None:
    if served == "configure_logging":
        configure_logging("info", io.StringIO())
    else:
        logging.config.dictConfig(gunicorn_log_config("info"))
    try:
        decisions = logging.getLogger("webhook.admission.decisions")
        assert sole_line_handler(decisions) is logging.getLogger().handlers[0]
    finally:
        configure_logging("warning", io.StringIO())

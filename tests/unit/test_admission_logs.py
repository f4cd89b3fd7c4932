"""JSON log lines: the decision log's lean path writes what ``Logger.info`` would."""

from __future__ import annotations

import datetime
import io
import logging

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.admission.logs import DecisionLog, JsonFormatter

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

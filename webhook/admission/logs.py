"""JSON log lines for the webhook: one object per line, so log pipelines need no parsing rules.

Structured fields travel in ``extra={"fields": {...}}``; the formatter merges them into the line.
Only adapters log; the core returns values.

The decision line is written for every review, so it has a lean path: ``DecisionLog`` hands the
logger a ready record instead of going through ``Logger.info`` (which looks up the caller's
frame, file, thread and process names for fields the JSON line never shows), and the formatter
renders the timestamp's seconds once per second.  Handlers, levels and filters apply as to any
record, so log configuration and ``caplog`` see decision lines as before.
"""

from __future__ import annotations

import datetime
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import orjson


def _seconds(second: int) -> str:
    return datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, then its fields."""

    # (second, its ISO text): one pair, swapped whole, so threads never see half an update
    _second: tuple[int, str] = (0, _seconds(0))

    def timestamp(self, created: float) -> str:
        """``created`` in UTC, ISO 8601 with milliseconds (``2026-11-23T10:00:00.123+00:00``)."""
        second = int(created)
        # datetime rounds to the microsecond (half to even) before isoformat cuts to millis
        micros = round((created - second) * 1e6)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, _seconds(second))
        return f"{cached[1]}.{micros // 1000:03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry: dict[str, Any] = {
            "time": self.timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # default=str: a stray non-JSON value must not lose the log line
        return orjson.dumps(entry, default=str).decode()


class _Record(logging.LogRecord):
    """A record with only what handlers and formatters read; no caller or process lookups."""

    def __init__(self, name: str, level: int, msg: str, fields: Mapping[str, Any]) -> None:
        # deliberately not calling LogRecord.__init__: it inspects threads and processes
        now = time.time()
        self.name = name
        self.msg = msg
        self.args = None
        self.levelno = level
        self.levelname = logging.getLevelName(level)
        self.pathname = self.filename = self.module = name
        self.lineno = 0
        self.funcName = ""
        self.exc_info = None
        self.exc_text = None
        self.stack_info = None
        self.created = now
        self.msecs = (now - int(now)) * 1000
        self.relativeCreated = 0.0
        self.thread = None
        self.threadName = None
        self.processName = None
        self.process = None
        self.taskName = None
        self.fields = fields


class DecisionLog:
    """Writes one INFO line per admission decision through ``logger``'s handlers."""

    def __init__(self, logger: logging.Logger, message: str = "admission decision") -> None:
        self.logger = logger
        self.message = message

    def write(self, fields: Mapping[str, Any]) -> None:
        """Log ``fields`` as one decision line (when INFO is enabled for the logger)."""
        logger = self.logger
        if logger.isEnabledFor(logging.INFO):
            logger.handle(_Record(logger.name, logging.INFO, self.message, fields))


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def gunicorn_log_config(level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for gunicorn's own loggers, in the same JSON format."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            # access lines would duplicate the decision lines
            "gunicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }

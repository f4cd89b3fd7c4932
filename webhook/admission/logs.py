"""JSON log lines for the webhook: one object per line, so log pipelines need no parsing rules.

Structured fields travel in ``extra={"fields": {...}}``; the formatter merges them into the line.
Only adapters log; the core returns values.

The decision line is written for every review, so it has a lean path.  When the line would
reach one ``JsonLineHandler`` and nothing else (the served configuration), ``DecisionLog``
formats the fields and queues the line on that handler itself; otherwise it hands the logger a
ready record instead of going through ``Logger.info`` (which looks up the caller's frame, file,
thread and process names for fields the JSON line never shows).  Either way levels, handlers
and filters decide as for any record, so log configuration and ``caplog`` see decision lines as
before.  The formatter renders the timestamp's seconds once per second.

Lines reach the stream through ``JsonLineHandler``: request threads format and queue a line, and
one writer thread writes whatever has queued in a single ``write``.  Through a ``StreamHandler``
every line took the handler's lock around a ``write`` and ``flush`` system call; with 8 request
threads the lock and the GIL changed hands around each call, and a line cost 28 µs of CPU and two
context switches instead of 9 µs (``tests/unit/test_admission_logs.py`` keeps the measurement's
shape).  Served reviews arrive a fraction of a millisecond apart, so a writer that wrote as soon
as a line came was woken for nearly every line, at the price of a wake-up system call and a GIL
hand-off in the request thread; the writer is woken once per batch instead and gathers for
``BATCH_SECONDS`` (5 ms) before it writes (served at 2 workers x 4 threads: 6-7 context switches
per review instead of 12-14).  The price: lines still queued when a worker is killed with
SIGKILL are lost (an orderly exit, and ``flush()``, write them all).
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from queue import SimpleQueue
from typing import Any, TextIO, cast

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
        return self.format_bytes(record).decode()

    def format_bytes(self, record: logging.LogRecord) -> bytes:
        """The record as a JSON line, UTF-8 encoded, without the newline."""
        fields = getattr(record, "fields", None)
        return self.line(
            record.created,
            record.levelname.lower(),
            record.name,
            record.getMessage(),
            fields if isinstance(fields, dict) else None,
            self.formatException(record.exc_info) if record.exc_info else None,
        )

    def line(
        self,
        created: float,
        level: str,
        name: str,
        message: str,
        fields: Mapping[str, Any] | None,
        exception: str | None = None,
    ) -> bytes:
        """One JSON line, UTF-8 encoded, without the newline: what ``format_bytes`` writes for
        a record of these values."""
        entry: dict[str, Any] = {
            "time": self.timestamp(created),
            "level": level,
            "logger": name,
            "message": message,
        }
        if fields:
            entry.update(fields)
        if exception:
            entry["exception"] = exception
        # default=str: a stray non-JSON value must not lose the log line
        return orjson.dumps(entry, default=str)


class _Flushed(threading.Event):
    """Set by the writer once every line queued before it is written."""


_STOP = b""


class JsonLineHandler(logging.Handler):
    """Writes JSON lines to ``stream`` from one writer thread, in batches (see the module doc).

    ``handle`` takes no lock: filters run in the caller's thread and the queue is thread-safe.
    A fork (gunicorn forks its workers after configuring logging) leaves the child without the
    writer thread, so the child starts its own, with an empty queue: lines the parent had
    queued are the parent's to write.
    """

    FLUSH_TIMEOUT_SECONDS = 5.0
    # how long the writer gathers lines after a wake-up before it writes them
    BATCH_SECONDS = 0.005

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        self.setFormatter(JsonFormatter())
        self._closed = False
        self._start()
        handler = weakref.ref(self)

        def restart_in_child() -> None:
            alive = handler()
            if alive is not None and not alive._closed:
                alive._start()

        os.register_at_fork(after_in_child=restart_in_child)

    def _start(self) -> None:
        self._lines: deque[bytes | _Flushed] = deque()
        # True from the wake-up's sending until the writer takes the batch: one wake-up per batch
        self._awake = False
        self._wake: SimpleQueue[None] = SimpleQueue()
        self._writer = threading.Thread(target=self._write_forever, name="log-writer", daemon=True)
        self._writer.start()

    def _enqueue(self, item: bytes | _Flushed) -> None:
        # append before the test: a writer that has just taken its batch has already cleared
        # ``_awake``, so a line appended after the batch was taken always sends a wake-up
        self._lines.append(item)
        if not self._awake:
            self._awake = True
            self._wake.put(None)

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and queue ``record``; no handler lock."""
        passed = bool(self.filter(record))
        if passed:
            self.emit(record)
        return passed

    def write_line(self, name: str, message: str, fields: Mapping[str, Any]) -> None:
        """Queue an INFO line of ``fields`` as ``emit`` would for such a record, without one."""
        try:
            formatter = cast(JsonFormatter, self.formatter)
            line = formatter.line(time.time(), "info", name, message, fields)
            self._enqueue(line + b"\n")
        except Exception:
            self.handleError(_Record(name, logging.INFO, message, fields))

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record's line for the writer."""
        try:
            formatter = self.formatter
            if isinstance(formatter, JsonFormatter):
                line = formatter.format_bytes(record)
            else:
                line = self.format(record).encode()
            self._enqueue(line + b"\n")
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Wait until every line queued so far is written (a few seconds at most)."""
        if not self._writer.is_alive():
            return
        done = _Flushed()
        self._enqueue(done)
        done.wait(self.FLUSH_TIMEOUT_SECONDS)

    def close(self) -> None:
        """Write what is queued, stop the writer, close the handler."""
        self._closed = True
        if self._writer.is_alive():
            self._enqueue(_STOP)
            self._writer.join(self.FLUSH_TIMEOUT_SECONDS)
        super().close()

    def _write_forever(self) -> None:
        lines = self._lines
        while True:
            self._wake.get()
            # let the lines of the next few milliseconds join the batch: a writer woken for every
            # line costs the request threads a GIL hand-off and a context switch per line
            time.sleep(self.BATCH_SECONDS)
            self._awake = False
            batch: list[bytes] = []
            flushed: list[_Flushed] = []
            stop = False
            while lines:
                item = lines.popleft()
                if isinstance(item, _Flushed):
                    flushed.append(item)
                elif item == _STOP:
                    stop = True
                else:
                    batch.append(item)
            if batch:
                self._write(b"".join(batch))
            for event in flushed:
                event.set()
            if stop:
                return

    def _write(self, data: bytes) -> None:
        try:
            binary = getattr(self.stream, "buffer", None)
            if binary is not None:
                # the text layer may hold a line another handler wrote: keep the order
                self.stream.flush()
                binary.write(data)
                binary.flush()
            else:
                self.stream.write(data.decode())
                self.stream.flush()
        except (OSError, ValueError):
            # a closed or broken stream: nothing else can be done with a log line
            pass


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
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = sole_line_handler(logger)
        if handler is not None:
            handler.write_line(logger.name, self.message, fields)
        else:
            logger.handle(_Record(logger.name, logging.INFO, self.message, fields))


def sole_line_handler(logger: logging.Logger) -> JsonLineHandler | None:
    """The one handler an INFO record of ``logger`` would reach, when handing it the line
    directly writes what ``Logger.handle`` would: a ``JsonLineHandler`` with the JSON formatter,
    no filter on the way, nothing else listening.  None otherwise (a test's ``caplog``, a
    second handler, a filter), and the record takes the ordinary route.

    The walk is ``Logger.callHandlers``' own and runs on every line, so a handler added or
    removed at any time is seen at once; what it spares is the record, two filter passes and
    the formatter's reading of it (measured: 2-3 µs of a unique review's 50).
    """
    if logger.disabled or logger.filters:
        return None
    found: logging.Handler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if found is not None:
                return None
            found = handler
        current = current.parent if current.propagate else None
    if (
        type(found) is not JsonLineHandler
        or found.filters
        or found.level > logging.INFO
        or type(found.formatter) is not JsonFormatter
    ):
        return None
    return found


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) as JSON lines."""
    handler = JsonLineHandler(stream or sys.stderr)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        if isinstance(old, JsonLineHandler):
            old.close()
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
                "()": JsonLineHandler,
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

"""Logging: text or JSON lines on stderr, journal priorities, and a rate limiter.

Three things decide what a line looks like:

- the format (``--log-format`` or ``[global] log_format``): ``text`` is one human line,
  ``json`` one object per line with the record's structured fields (:func:`fields`: a
  transition's instance, VRID, from/to state, reason and priority) as keys of their own;
- the level (``--log-level`` or ``[global] log_level``): ``debug`` shows the lines the code
  logs at DEBUG, ``error`` only errors;
- whether stderr is systemd's journal: then every line starts with the sd-daemon priority
  prefix (``<3>`` error ... ``<7>`` debug, sd-daemon(3)), which journald strips and stores as
  the entry's priority, so ``journalctl -p warning`` works. The text lines then leave out the
  time, which the journal records itself.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Hashable, Mapping
from typing import Any, Final, TextIO

SUPPRESS_WINDOW = 10.0

LOG_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
"""The values of ``--log-level`` and ``[global] log_level``, and the logging level of each."""
LOG_FORMATS: Final = ("text", "json")
"""The values of ``--log-format`` and ``[global] log_format``."""

FIELDS_ATTRIBUTE: Final = "pyvrrp_fields"
"""The LogRecord attribute :func:`fields` sets; the JSON format writes its items as keys."""

# sd-daemon(3) / syslog(3) priorities: LOG_CRIT 2, LOG_ERR 3, LOG_WARNING 4, LOG_INFO 6,
# LOG_DEBUG 7. pyvrrp logs nothing at NOTICE (5).
_CRITICAL, _ERROR, _WARNING, _INFO, _DEBUG = 2, 3, 4, 6, 7


class RateLimiter:
    """Log a message at most once per ``window`` seconds per key, counting the rest.

    A flood of bad packets must not flood the log: the first one of a kind is logged, the
    following ones within the window are counted and reported with the next logged one.
    Uses the wall-clock monotonic time (logging is not protocol behaviour). At a level the
    logger does not emit, a call costs one level check: no clock, no bookkeeping (these calls
    sit on per-packet paths).
    """

    def __init__(self, window: float = SUPPRESS_WINDOW) -> None:
        self.window = window
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def log(
        self, logger: logging.Logger, level: int, key: Hashable, message: str, *args: object
    ) -> bool:
        """Log ``message % args`` at ``level`` unless ``key`` was logged within the window;
        True if it was logged."""
        if not logger.isEnabledFor(level):
            return False
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.window:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        logger.log(level, message, *args)
        return True


def fields(**values: object) -> dict[str, Any]:
    """The ``extra=`` of a log call whose JSON line carries ``values`` as keys of their own.

    ``log.info("...", extra=fields(instance="vip58", vrid=58))``. The text format ignores
    them: its message already says the same in words. A key named like a Python keyword is
    written with a trailing underscore (``from_``) and logged without it (``from``).
    """
    return {FIELDS_ATTRIBUTE: {key.rstrip("_"): value for key, value in values.items()}}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's :func:`fields`
    (and the exception's text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, FIELDS_ATTRIBUTE, None)
        if isinstance(extra, Mapping):
            # The fixed keys win: a field never hides the message or the level.
            entry.update((k, v) for k, v in extra.items() if k not in entry)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def journal_priority(levelno: int) -> int:
    """The syslog priority journald stores for a record of logging level ``levelno``."""
    if levelno >= logging.CRITICAL:
        return _CRITICAL
    if levelno >= logging.ERROR:
        return _ERROR
    if levelno >= logging.WARNING:
        return _WARNING
    if levelno >= logging.INFO:
        return _INFO
    return _DEBUG


class JournalFormatter(logging.Formatter):
    """Another formatter's lines, each with the record's sd-daemon priority prefix.

    Every line of a multi-line record (a traceback) gets the prefix: journald stores each
    line as an entry of its own, and an unprefixed one would be stored at the default
    priority (info), hiding the rest of an error from ``journalctl -p err``.
    """

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{journal_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def stream_is_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is systemd's journal, by ``$JOURNAL_STREAM`` (systemd.exec(5)).

    systemd sets JOURNAL_STREAM to "DEVICE:INODE" (decimal) of the stream it connects to
    stdout/stderr when they go to the journal. It is inherited by children whose stderr may
    be something else (a terminal, a file, a pipe to another program), so the variable alone
    says nothing: the stream's own device and inode must match.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, colon, inode = value.partition(":")
    if not colon:
        return False
    try:
        expected = (int(device), int(inode))
        stat = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False  # malformed, or a stream without a file descriptor (pytest's capture)
    return (stat.st_dev, stat.st_ino) == expected


def text_formatter(*, journal: bool = False) -> logging.Formatter:
    """The text format; without the time when the journal adds its own."""
    if journal:
        return logging.Formatter("%(levelname)s %(message)s")
    return logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(message)s", "%H:%M:%S")


def setup_logging(
    log_format: str = "text",
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
    journal: bool | None = None,
) -> None:
    """Send pyvrrp's logs to ``stream`` (stderr) in ``log_format`` at ``level``.

    ``level`` is a logging level or a name of :data:`LOG_LEVELS`. ``journal`` None detects
    whether the stream is the journal (:func:`stream_is_journal`).
    """
    stream = sys.stderr if stream is None else stream
    if journal is None:
        journal = stream_is_journal(stream)
    formatter = JsonFormatter() if log_format == "json" else text_formatter(journal=journal)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter(formatter) if journal else formatter)
    logger = logging.getLogger("pyvrrp")
    logger.handlers[:] = [handler]
    set_level(level)
    logger.propagate = False


def set_level(level: int | str) -> None:
    """Change pyvrrp's log level (a logging level or a name of :data:`LOG_LEVELS`)."""
    logging.getLogger("pyvrrp").setLevel(LOG_LEVELS[level] if isinstance(level, str) else level)

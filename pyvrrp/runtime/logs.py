"""Logging: text or JSON lines on stderr, and a rate limiter for per-packet complaints."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Hashable

SUPPRESS_WINDOW = 10.0


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


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and exception text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Send pyvrrp's logs to stderr in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(message)s", "%H:%M:%S")
        )
    logger = logging.getLogger("pyvrrp")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False

"""The rate limiter for per-packet log lines."""

from __future__ import annotations

import logging

import pytest

from pyvrrp.runtime.logs import RateLimiter


@pytest.fixture
def logger() -> logging.Logger:
    logger = logging.getLogger("pyvrrp.test-logs")
    logger.setLevel(logging.INFO)
    return logger


def test_one_line_per_key_and_window_and_the_rest_counted(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr("pyvrrp.runtime.logs.time.monotonic", lambda: clock[0])
    limiter = RateLimiter(window=10.0)
    with caplog.at_level(logging.INFO, logger=logger.name):
        assert limiter.log(logger, logging.INFO, "a", "bad packet from %s", "x")
        assert not limiter.log(logger, logging.INFO, "a", "bad packet from %s", "y")
        assert limiter.log(logger, logging.INFO, "b", "other from %s", "z")
        clock[0] += 10.0
        assert limiter.log(logger, logging.INFO, "a", "bad packet from %s", "w")
    assert [r.getMessage() for r in caplog.records] == [
        "bad packet from x",
        "other from z",
        "bad packet from w (1 similar messages suppressed)",
    ]


def test_a_level_that_is_off_costs_no_clock_and_no_bookkeeping(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_clock() -> float:
        raise AssertionError("the clock was read for a line that cannot be emitted")

    limiter = RateLimiter()
    monkeypatch.setattr("pyvrrp.runtime.logs.time.monotonic", no_clock)
    with caplog.at_level(logging.INFO, logger=logger.name):
        for _ in range(1000):
            assert not limiter.log(logger, logging.DEBUG, "k", "per packet %d", 1)
    assert caplog.records == []
    monkeypatch.undo()
    # Nothing was counted as suppressed: the first line at an enabled level is plain.
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        assert limiter.log(logger, logging.DEBUG, "k", "per packet %d", 2)
    assert [r.getMessage() for r in caplog.records] == ["per packet 2"]

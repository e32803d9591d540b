"""Log lines: levels, the JSON format's fields, and the journal's priority prefixes."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyvrrp.cli import main
from pyvrrp.runtime import daemon
from pyvrrp.runtime.logs import (
    LOG_LEVELS,
    JournalFormatter,
    JsonFormatter,
    RateLimiter,
    fields,
    journal_priority,
    set_level,
    setup_logging,
    stream_is_journal,
    text_formatter,
)

ROOT = Path(__file__).parents[2]
CONFIG = """
[instances.vip58]
interface = "eth0.4000"
vrid = 58
addresses = ["1.2.3.58/29"]
"""


@pytest.fixture(autouse=True)
def pyvrrp_logger() -> Iterator[logging.Logger]:
    """setup_logging() reconfigures the "pyvrrp" logger: put it back for the other tests."""
    logger = logging.getLogger("pyvrrp")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved


def record(level: int, message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("pyvrrp", level, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


# ---------------------------------------------------------------------------- levels


@pytest.mark.parametrize(
    ("level", "shown"),
    [
        ("debug", ["debug", "info", "warning", "error"]),
        ("info", ["info", "warning", "error"]),
        ("warning", ["warning", "error"]),
        ("error", ["error"]),
    ],
)
def test_the_level_decides_which_lines_are_written(
    pyvrrp_logger: logging.Logger, level: str, shown: list[str]
) -> None:
    out = io.StringIO()
    setup_logging("json", level, stream=out, journal=False)
    child = logging.getLogger("pyvrrp.runtime.netlink")  # netlink logs under its module name
    for name in LOG_LEVELS:
        pyvrrp_logger.log(LOG_LEVELS[name], "a %s line", name)
        child.log(LOG_LEVELS[name], "a %s line from netlink", name)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["level"] for line in lines] == [name for name in shown for _ in (1, 2)]


def test_set_level_changes_the_level_of_a_running_daemon(pyvrrp_logger: logging.Logger) -> None:
    out = io.StringIO()
    setup_logging("text", "info", stream=out, journal=False)
    pyvrrp_logger.debug("hidden")
    set_level("debug")
    pyvrrp_logger.debug("shown")
    assert "hidden" not in out.getvalue()
    assert "DEBUG shown" in out.getvalue()


# ---------------------------------------------------------------------------- JSON


def test_json_lines_carry_the_fields_as_keys_of_their_own() -> None:
    extra = fields(
        instance="vip58", vrid=58, from_="BACKUP", to="MASTER", reason="preempt", priority=100
    )
    line = json.loads(JsonFormatter().format(record(logging.INFO, "vip58: ...", **extra)))
    assert line["message"] == "vip58: ..."
    assert line["level"] == "info"
    assert {k: line[k] for k in ("instance", "vrid", "from", "to", "reason", "priority")} == {
        "instance": "vip58",
        "vrid": 58,
        "from": "BACKUP",
        "to": "MASTER",
        "reason": "preempt",
        "priority": 100,
    }


def test_a_field_never_hides_the_message_or_the_level() -> None:
    line = json.loads(
        JsonFormatter().format(record(logging.ERROR, "real", **fields(message="x", level="y")))
    )
    assert (line["message"], line["level"]) == ("real", "error")


def test_the_text_format_says_it_in_words_and_ignores_the_fields() -> None:
    formatted = text_formatter().format(record(logging.WARNING, "vip58: odd", **fields(vrid=58)))
    assert formatted.endswith(" WARNING vip58: odd")
    assert "58," not in formatted


# ---------------------------------------------------------------------------- journal


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (logging.INFO, 6),
        (logging.DEBUG, 7),
        (logging.DEBUG - 5, 7),
        (logging.INFO + 5, 6),
    ],
)
def test_levels_map_to_syslog_priorities(level: int, priority: int) -> None:
    assert journal_priority(level) == priority


def test_every_line_of_a_traceback_carries_the_prefix() -> None:
    try:
        int("boom")
    except ValueError:
        failed = record(logging.ERROR, "it failed", exc_info=sys.exc_info())
    lines = JournalFormatter(text_formatter(journal=True)).format(failed).split("\n")
    assert lines[0] == "<3>ERROR it failed"
    assert len(lines) > 2
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: invalid literal for int() with base 10: 'boom'"


def test_journal_text_lines_leave_the_time_to_the_journal() -> None:
    assert text_formatter(journal=True).format(record(logging.INFO, "hi")) == "INFO hi"


def dev_ino(fd: int) -> str:
    stat = os.fstat(fd)
    return f"{stat.st_dev}:{stat.st_ino}"


def test_a_stream_is_the_journal_only_if_its_device_and_inode_match(tmp_path: Path) -> None:
    with open(tmp_path / "log", "w") as stream, open(tmp_path / "other", "w") as other:
        assert stream_is_journal(stream, {"JOURNAL_STREAM": dev_ino(stream.fileno())})
        # Inherited by a child whose stderr went elsewhere (a file, a terminal, a pipe).
        assert not stream_is_journal(stream, {"JOURNAL_STREAM": dev_ino(other.fileno())})
        assert not stream_is_journal(stream, {})
        for malformed in ("", "12", "a:b", "1:2:3"):
            assert not stream_is_journal(stream, {"JOURNAL_STREAM": malformed})
    # A stream without a file descriptor (pytest's capture, a StringIO).
    assert not stream_is_journal(io.StringIO(), {"JOURNAL_STREAM": "1:2"})


def test_setup_logging_detects_the_journal_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pyvrrp_logger: logging.Logger
) -> None:
    with open(tmp_path / "log", "w") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", dev_ino(stream.fileno()))
        setup_logging("json", "info", stream=stream)
        pyvrrp_logger.warning("careful", extra=fields(vrid=58))
        monkeypatch.setenv("JOURNAL_STREAM", "0:0")
        setup_logging("text", "info", stream=stream)
        pyvrrp_logger.warning("plain")
    first, second = (tmp_path / "log").read_text().splitlines()
    assert first.startswith('<4>{"time": ')
    assert json.loads(first[3:])["vrid"] == 58  # journald strips the prefix: JSON remains
    assert second.endswith(" WARNING plain")
    assert not second.startswith("<")


LOG_EVERY_LEVEL = textwrap.dedent(
    """
    import logging
    from pyvrrp.runtime.logs import setup_logging
    setup_logging("text", "debug")
    log = logging.getLogger("pyvrrp")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    try:
        raise RuntimeError("x")
    except RuntimeError:
        log.exception("failed")
    """
)


def run_with_stderr_pipe(code: str, journal: str | None) -> list[str]:
    """Run ``code`` with stderr a pipe, and JOURNAL_STREAM set as systemd would (or not)."""
    read_end, write_end = os.pipe()
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal == "this pipe":
        env["JOURNAL_STREAM"] = dev_ino(write_end)
    elif journal is not None:
        env["JOURNAL_STREAM"] = journal
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", code], stderr=write_end, env=env, cwd=ROOT
        )
    finally:
        os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8") as pipe:
        output = pipe.read()
    process.wait(timeout=60)
    return output.splitlines()


def test_a_process_whose_stderr_is_the_journal_prefixes_each_line_with_its_priority() -> None:
    lines = run_with_stderr_pipe(LOG_EVERY_LEVEL, "this pipe")
    assert lines[:4] == ["<7>DEBUG d", "<6>INFO i", "<4>WARNING w", "<3>ERROR e"]
    assert lines[4] == "<3>ERROR failed"
    assert lines[5] == "<3>Traceback (most recent call last):"
    assert lines[-1] == "<3>RuntimeError: x"
    assert all(line.startswith("<3>") for line in lines[4:])


@pytest.mark.parametrize("journal", [None, "another"])
def test_a_process_whose_stderr_is_not_the_journal_writes_plain_lines(
    tmp_path: Path, journal: str | None
) -> None:
    if journal == "another":  # inherited from a parent whose stderr was the journal
        stat = tmp_path.stat()
        journal = f"{stat.st_dev}:{stat.st_ino}"
    lines = run_with_stderr_pipe(LOG_EVERY_LEVEL, journal)
    assert [line.split(" ", 1)[1] for line in lines[:4]] == [
        "DEBUG d",
        "INFO i",
        "WARNING w",
        "ERROR e",
    ]
    assert not any(line.startswith("<") for line in lines)


def test_the_daemon_in_the_journal_logs_its_errors_at_priority_3(tmp_path: Path) -> None:
    # The real entry point, stopped at its first check (no network is touched).
    config = tmp_path / "node.toml"
    config.write_text(CONFIG)
    code = textwrap.dedent(
        f"""
        import sys
        from pyvrrp.runtime import daemon
        from pyvrrp.cli import main
        daemon.missing_capabilities = lambda: ["CAP_NET_RAW"]
        sys.exit(main(["-c", {str(config)!r}, "--log-level", "warning"]))
        """
    )
    lines = run_with_stderr_pipe(code, "this pipe")
    assert len(lines) == 1
    assert lines[0].startswith("<3>ERROR missing CAP_NET_RAW: pyvrrp needs CAP_NET_ADMIN")


# ---------------------------------------------------------------------------- options


@pytest.fixture
def stopped_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_daemon stops at its capability check, after setting up the logs."""
    monkeypatch.setattr(daemon, "missing_capabilities", lambda: ["CAP_NET_RAW"])


@pytest.mark.usefixtures("stopped_daemon")
@pytest.mark.parametrize(
    ("in_file", "argv", "level"),
    [
        (None, [], logging.INFO),
        (None, ["--log-level", "debug"], logging.DEBUG),
        (None, ["--log-level", "error"], logging.ERROR),
        ("warning", [], logging.WARNING),
        ("debug", [], logging.DEBUG),
        ("warning", ["--log-level", "debug"], logging.DEBUG),  # the command line wins
    ],
)
def test_log_level_option_and_key_set_the_daemons_level(
    tmp_path: Path,
    pyvrrp_logger: logging.Logger,
    in_file: str | None,
    argv: list[str],
    level: int,
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(CONFIG if in_file is None else f'[global]\nlog_level = "{in_file}"\n{CONFIG}')
    assert main(["-c", str(config), *argv]) == daemon.EXIT_ENVIRONMENT
    assert pyvrrp_logger.level == level


@pytest.mark.usefixtures("stopped_daemon")
def test_log_format_option_wins_over_the_configuration(
    tmp_path: Path, pyvrrp_logger: logging.Logger
) -> None:
    config = tmp_path / "node.toml"
    config.write_text('[global]\nlog_format = "text"\n' + CONFIG)
    assert main(["-c", str(config), "--log-format", "json"]) == daemon.EXIT_ENVIRONMENT
    (handler,) = pyvrrp_logger.handlers
    assert isinstance(handler.formatter, JsonFormatter)


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--log-level", "verbose"], "argument --log-level: invalid choice: 'verbose'"),
        (["--log-format", "xml"], "argument --log-format: invalid choice: 'xml'"),
    ],
)
def test_a_bad_log_option_is_a_usage_error(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", "node.toml", *argv]) == 2
    assert complaint in capsys.readouterr().err


def test_log_options_belong_to_the_daemon_not_to_a_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--log-level", "debug", "status"]) == 2
    assert (
        "--log-level is for the daemon (pyvrrp -c FILE --log-level debug), not for status"
        in capsys.readouterr().err
    )


# ---------------------------------------------------------------------------- rate limiter


@pytest.fixture
def limited_logger() -> logging.Logger:
    # Outside the "pyvrrp" tree, which setup_logging() stops from propagating to caplog.
    logger = logging.getLogger("test-rate-limiter")
    logger.setLevel(logging.INFO)
    return logger


def test_rate_limiter_logs_one_line_per_key_and_window_and_counts_the_rest(
    limited_logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr("pyvrrp.runtime.logs.time.monotonic", lambda: clock[0])
    limiter = RateLimiter(window=10.0)
    logger = limited_logger
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


def test_rate_limiter_at_a_level_that_is_off_reads_no_clock_and_counts_nothing(
    limited_logger: logging.Logger,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_clock() -> float:
        raise AssertionError("the clock was read for a line that cannot be emitted")

    limiter = RateLimiter()
    logger = limited_logger
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

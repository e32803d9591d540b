"""The mailer's timing in virtual time: bursts, backoff, the queue, and a node that never waits.

The transport here is a recording one (:class:`Outbox`): what it is given is what the real
:class:`~pyvrrp.runtime.mailer.SmtpTransport` would send; tests/runtime/test_mailer_smtp.py
sends it to a real SMTP server. Times are seconds since the test's start.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from pyvrrp.core.actions import Cause, State
from pyvrrp.runtime.mailer import (
    COALESCE_WINDOW,
    MAX_BURST,
    RETRY_INITIAL,
    Mailer,
    MailError,
    MailSettings,
    MailTransition,
    body,
    state_word,
    subject,
)
from pyvrrp.runtime.node import Transition

from .cluster import Cluster, config, instance

SETTINGS = MailSettings(
    host="127.0.0.1", port=25, sender="pyvrrp@example.com", recipients=("ops@example.com",)
)
WALL = 1_800_000_000.0  # the wall clock at the test's start (2027-01-15 08:00:00 UTC)


@attrs.define
class Attempt:
    time: float
    message: EmailMessage
    error: str | None = None


class Outbox:
    """A transport recording every attempt; ``failures`` and ``delays`` script the next ones."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.attempts: list[Attempt] = []
        self.failures: list[str] = []  # each attempt pops one, failing with it
        self.delay = 0.0  # seconds each attempt takes

    async def __call__(self, settings: MailSettings, message: EmailMessage) -> None:
        attempt = Attempt(round(trio.current_time() - self.t0, 6), message)
        self.attempts.append(attempt)
        await trio.sleep(self.delay)
        if self.failures:
            attempt.error = self.failures.pop(0)
            raise MailError(attempt.error)

    @property
    def delivered(self) -> list[Attempt]:
        return [a for a in self.attempts if a.error is None]

    def times(self) -> list[float]:
        return [a.time for a in self.attempts]


def transition(
    name: str,
    old: State,
    new: State,
    *,
    priority: int = 100,
    reason: str = "no advertisement for Master_Down_Interval",
    cause: Cause = Cause.MASTER_DOWN,
) -> Transition:
    return Transition(name, old, new, cause, reason, priority, trio.current_time())


@asynccontextmanager
async def running(**options: Any) -> AsyncIterator[tuple[Mailer, Outbox, Callable[..., None]]]:
    """A mailer on a recording outbox; ``publish`` sends it a transition as a node would."""
    t0 = trio.current_time()
    outbox = Outbox(t0)
    options.setdefault("settings", SETTINGS)
    mailer = Mailer(
        router_id="lb1",
        transport=outbox,
        wall_clock=lambda: WALL + trio.current_time() - t0,
        **options,
    )
    send, receive = trio.open_memory_channel[Transition](100)
    async with trio.open_nursery() as nursery:
        await nursery.start(mailer.run, receive)

        def publish(*args: Any, **kwargs: Any) -> None:
            send.send_nowait(transition(*args, **kwargs))

        yield mailer, outbox, publish
        nursery.cancel_scope.cancel()


async def sleep_until(t: float, t0: float) -> None:
    await trio.sleep_until(t0 + t)


# ---------------------------------------------------------------------------- bursts


async def test_transitions_a_few_seconds_apart_make_one_mail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as (mailer, outbox, publish):
        t0 = outbox.t0
        publish("vip58", State.BACKUP, State.MASTER)
        await sleep_until(1, t0)
        publish("vip59", State.BACKUP, State.MASTER, priority=90)
        await sleep_until(4, t0)
        publish("vip60", State.MASTER, State.BACKUP, reason="preempted", cause=Cause.PREEMPT)
        await sleep_until(30, t0)
        publish("vip58", State.MASTER, State.FAULT, reason="script chk failed", cause=Cause.FAULT)
        await sleep_until(60, t0)
    # A burst ends after COALESCE_WINDOW quiet seconds: 4 + 5, then 30 + 5.
    assert outbox.times() == [4 + COALESCE_WINDOW, 30 + COALESCE_WINDOW]
    first, second = (a.message for a in outbox.attempts)
    assert first["Subject"] == "[lb1] VRRP Instances - vip58, vip59 MASTER; vip60 BACKUP"
    text = first.get_content()
    assert text.splitlines()[2:5] == [
        "2027-01-15 08:00:00.000 UTC  [lb1] vip58: BACKUP -> MASTER "
        "(no advertisement for Master_Down_Interval), priority 100",
        "2027-01-15 08:00:01.000 UTC  [lb1] vip59: BACKUP -> MASTER "
        "(no advertisement for Master_Down_Interval), priority 90",
        "2027-01-15 08:00:04.000 UTC  [lb1] vip60: MASTER -> BACKUP (preempted), priority 100",
    ]
    assert "Now: vip58 MASTER, vip59 MASTER, vip60 BACKUP" in text
    assert second["Subject"] == "[lb1] VRRP Instance vip58 - Entering FAULT state"
    stats = mailer.statistics()
    assert (stats.sent, stats.failures, stats.pending, stats.transitions) == (2, 0, 0, 4)
    assert stats.last_sent == WALL + 35


async def test_a_flapping_cluster_gets_one_mail_per_max_burst(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as (mailer, outbox, publish):
        states = [State.BACKUP, State.MASTER]
        for n in range(150):  # a transition every 0.7 s: no quiet window ever
            await sleep_until(n * 0.7, outbox.t0)
            publish("vip58", states[n % 2], states[(n + 1) % 2])
        await sleep_until(200, outbox.t0)
    # The first burst is mailed MAX_BURST after it began; the second (from 60.2 s on) ends
    # with the flapping, at 149 x 0.7 = 104.3 s.
    assert outbox.times() == [MAX_BURST, pytest.approx(104.3 + COALESCE_WINDOW)]
    first = outbox.attempts[0].message
    assert first["Subject"] == "[lb1] VRRP Instance vip58 - Entering BACKUP state (86 transitions)"
    assert first.get_content().count("[lb1] vip58: ") == 86  # 0 to 59.5 s
    assert mailer.statistics().transitions == 150


async def test_only_instances_with_email_are_mailed_and_nothing_without_settings(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(wanted=lambda name: name == "vip58") as (mailer, outbox, publish):
        publish("vip59", State.BACKUP, State.MASTER)
        publish("vip58", State.BACKUP, State.MASTER)
        await sleep_until(10, outbox.t0)
        mailer.settings = None  # a reload removed [global.email]
        publish("vip58", State.MASTER, State.BACKUP)
        await sleep_until(20, outbox.t0)
    assert len(outbox.attempts) == 1
    assert "vip59" not in outbox.attempts[0].message.get_content()
    assert mailer.statistics().enabled is False
    assert mailer.statistics().transitions == 1


# ---------------------------------------------------------------------------- failures


async def test_a_failed_mail_is_retried_with_exponential_backoff_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as (mailer, outbox, publish):
        outbox.failures = ["refused"] * 3
        publish("vip58", State.BACKUP, State.MASTER)
        await sleep_until(12, outbox.t0)
        stats = mailer.statistics()
        assert (stats.failures, stats.retries, stats.pending) == (1, 0, 1)
        assert stats.last_error == "refused"
        # Another burst while the first waits for its retry: they leave as one mail.
        publish("vip59", State.BACKUP, State.MASTER)
        await sleep_until(200, outbox.t0)
    five = COALESCE_WINDOW
    assert outbox.times() == [five, five + 10, five + 30, five + 70]
    stats = mailer.statistics()
    assert (stats.sent, stats.failures, stats.retries, stats.dropped, stats.pending) == (
        1,
        3,
        3,
        0,
        0,
    )
    delivered = outbox.delivered[0].message
    assert delivered["Subject"] == "[lb1] VRRP Instances vip58, vip59 - Entering MASTER state"


async def test_backoff_stops_doubling_at_retry_max(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(retry_max=40.0) as (mailer, outbox, publish):
        outbox.failures = ["refused"] * 5
        publish("vip58", State.BACKUP, State.MASTER)
        await sleep_until(400, outbox.t0)
    waits = [b - a for a, b in zip(outbox.times(), outbox.times()[1:], strict=False)]
    assert waits == [RETRY_INITIAL, 20.0, 40.0, 40.0, 40.0]
    assert mailer.statistics().sent == 1


async def test_while_the_server_hangs_the_oldest_waiting_mail_is_dropped_and_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(max_waiting=2) as (mailer, outbox, publish):
        outbox.delay = 100.0  # every attempt takes 100 s
        for burst in range(5):  # bursts at 0, 10, 20, 30, 40: mails at 5, 15, 25, 35, 45
            await sleep_until(10 * burst, outbox.t0)
            publish(f"vip{burst}", State.BACKUP, State.MASTER)
        await sleep_until(50, outbox.t0)
        stats = mailer.statistics()
        # vip0 is being sent; vip1 then vip2 were dropped to make room for vip3 and vip4.
        assert (stats.pending, stats.dropped, stats.sent) == (3, 2, 0)
        outbox.delay = 0.0
        await sleep_until(300, outbox.t0)
    subjects = [a.message["Subject"] for a in outbox.attempts]
    assert subjects == [f"[lb1] VRRP Instance vip{n} - Entering MASTER state" for n in (0, 3, 4)]
    assert "dropped" not in outbox.attempts[0].message.get_content()  # composed before
    assert "2 earlier mails were dropped" in outbox.attempts[1].message.get_content()
    assert "dropped" not in outbox.attempts[2].message.get_content()  # reported once
    assert mailer.statistics().dropped == 2


async def test_a_mail_lists_at_most_max_listed_transitions_and_counts_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(max_listed=3) as (_mailer, outbox, publish):
        for n in range(5):
            publish(f"vip{n}", State.BACKUP, State.MASTER)
        await sleep_until(10, outbox.t0)
    text = outbox.attempts[0].message.get_content()
    assert text.startswith("pyvrrp 0.1.0 on lb1: 5 state changes.\n\n(2 earlier transitions")
    assert [line.split("] ")[1][:5] for line in text.splitlines() if "UTC  [" in line] == [
        "vip2:",
        "vip3:",
        "vip4:",
    ]


async def test_flush_mails_the_open_burst_at_once_and_retries_without_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as (mailer, outbox, publish):
        outbox.failures = ["refused"]
        publish("vip58", State.BACKUP, State.MASTER)
        await sleep_until(6, outbox.t0)  # failed at 5, next try at 15
        publish("vip58", State.MASTER, State.INITIALIZE, reason="shutdown", cause=Cause.SHUTDOWN)
        assert await mailer.flush(timeout=1.0)
        assert outbox.times() == [5, 6]
        delivered = outbox.delivered[0].message
        assert delivered["Subject"] == (
            "[lb1] VRRP Instance vip58 - Entering STOP state (2 transitions)"
        )


async def test_flush_gives_up_after_its_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as (mailer, outbox, publish):
        outbox.delay = 60.0
        publish("vip58", State.BACKUP, State.MASTER)
        start = trio.current_time()
        assert not await mailer.flush(timeout=2.0)
        assert trio.current_time() - start == pytest.approx(2.0)
        assert mailer.statistics().pending == 1


# ---------------------------------------------------------------------------- a node


VIP = "1.2.3.58/29"


async def test_a_node_is_never_held_up_by_a_hanging_mail_server(
    autojump_clock: trio.testing.MockClock,
    cluster: Cluster,
    nursery: trio.Nursery,
) -> None:
    a = await cluster.start("A", config({"vip58": instance(58, 100, VIP)}))
    outbox = Outbox(cluster.t0)
    outbox.delay = 1000.0  # the server accepts the connection and never answers
    mailer = Mailer(SETTINGS, router_id="A", transport=outbox)
    await nursery.start(mailer.run, a.node.subscribe())
    await cluster.sleep_until(60)
    # Master after Master_Down_Interval, then an advertisement every second, on time,
    # while the mail of the BACKUP -> MASTER transition hangs from 3.6 + 5 s on.
    assert a.state("vip58") is State.MASTER
    times = [t for t, _ in cluster.adverts("A")]
    assert times[0] == pytest.approx(3.609375)
    assert len(times) == 57
    assert all(b - a == pytest.approx(1.0) for a, b in itertools.pairwise(times))
    assert outbox.times() == [pytest.approx(3.609375 + COALESCE_WINDOW)]
    assert mailer.statistics().pending == 1


# ---------------------------------------------------------------------------- text


def mt(instance: str, new: str, old: str = "BACKUP") -> MailTransition:
    return MailTransition(WALL, instance, old, new, "why", 100)


@pytest.mark.parametrize(
    ("transitions", "expected"),
    [
        ([mt("vip58", "MASTER")], "[lb1] VRRP Instance vip58 - Entering MASTER state"),
        (
            [mt("vip58", "MASTER"), mt("vip59", "MASTER")],
            "[lb1] VRRP Instances vip58, vip59 - Entering MASTER state",
        ),
        (
            [mt("vip58", "MASTER"), mt("vip58", "BACKUP", "MASTER")],
            "[lb1] VRRP Instance vip58 - Entering BACKUP state (2 transitions)",
        ),
        (
            [mt("vip58", "FAULT"), mt("vip59", "MASTER"), mt("vip58", "BACKUP")],
            "[lb1] VRRP Instances - vip59 MASTER; vip58 BACKUP (3 transitions)",
        ),
        (
            [mt(f"vip{n}", "MASTER") for n in range(6)],
            "[lb1] VRRP Instances vip0, vip1, vip2 and 3 more - Entering MASTER state",
        ),
    ],
)
def test_the_subject_names_the_node_and_the_newest_states(
    transitions: list[MailTransition], expected: str
) -> None:
    assert subject("lb1", transitions) == expected


def test_the_body_of_one_transition() -> None:
    text = body("lb1", [MailTransition(WALL + 0.25, "vip58", "BACKUP", "MASTER", "why", 90)])
    assert text == (
        "pyvrrp 0.1.0 on lb1: 1 state change.\n"
        "\n"
        "2027-01-15 08:00:00.250 UTC  [lb1] vip58: BACKUP -> MASTER (why), priority 90\n"
        "\n"
        "Now: vip58 MASTER\n"
    )


def test_an_instance_stopped_at_shutdown_is_stop_as_in_keepalived() -> None:
    assert state_word(State.INITIALIZE, Cause.SHUTDOWN) == "STOP"
    assert state_word(State.INITIALIZE, Cause.MAINTENANCE) == "INIT"
    assert state_word(State.MASTER, Cause.PREEMPT) == "MASTER"


def test_mail_settings_write_the_server_as_the_configuration_does() -> None:
    assert SETTINGS.server == "127.0.0.1:25"
    assert attrs.evolve(SETTINGS, host="2001:db8::1", port=587).server == "[2001:db8::1]:587"

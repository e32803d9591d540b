"""E-mail alerts: keepalived's ``notification_email`` + ``smtp_alert``, without the flood.

The daemon feeds every published :class:`~pyvrrp.runtime.node.Transition` to
:meth:`Mailer.run`; transitions of instances with ``email = true`` are mailed to
``[global.email] to``. Three tasks, so that nothing here can delay a router:

- the *follower* takes transitions from the node's subscriber channel (unbounded: publishing
  never waits) and adds them to the open burst;
- the *closer* ends a burst once no transition came for :data:`COALESCE_WINDOW` seconds, or
  :data:`MAX_BURST` seconds after its first one (a cluster that never stops flapping), and
  queues it as one mail: a failover of ten instances is one mail, not ten;
- the *sender* sends the queued mails one at a time with :mod:`smtplib` in a worker thread,
  bounded by :data:`SEND_TIMEOUT`. A failure is logged and counted and the mail retried with
  exponential backoff (:data:`RETRY_INITIAL` doubling up to :data:`RETRY_MAX`); mails that
  queued up meanwhile are merged into the retried one. While it waits, at most
  :data:`MAX_WAITING` mails queue; beyond that the oldest is dropped and counted, and the next
  mail delivered says how many were lost.

Why smtplib in a thread and not an SMTP client on trio streams: smtplib is the standard
library's well-tested client (EHLO, STARTTLS, every AUTH method, dot-stuffing); a mail is
rare, so a worker thread costs nothing, and it runs beside the event loop rather than in it.
docs/notifications.md ("E-mail") is the user's description.
"""

from __future__ import annotations

import collections
import logging
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Final

import attrs
import trio

from pyvrrp._version import __version__
from pyvrrp.core.actions import Cause, State

if TYPE_CHECKING:
    import smtplib
    from email.message import EmailMessage

    from pyvrrp.runtime.node import Transition

__all__ = [
    "COALESCE_WINDOW",
    "MAX_BURST",
    "MAX_LISTED",
    "MAX_WAITING",
    "RETRY_INITIAL",
    "RETRY_MAX",
    "SEND_TIMEOUT",
    "STOP_FLUSH",
    "MailError",
    "MailSettings",
    "MailStatistics",
    "MailTransition",
    "MailTransport",
    "Mailer",
    "SmtpTransport",
]

log = logging.getLogger("pyvrrp")

COALESCE_WINDOW: Final = 5.0
"""Seconds without a transition that end a burst: what came before goes in one mail."""
MAX_BURST: Final = 60.0
"""Seconds after a burst's first transition when it is mailed even if transitions go on."""
SEND_TIMEOUT: Final = 30.0
"""Seconds one attempt may take: connect, STARTTLS, login and the mail itself."""
RETRY_INITIAL: Final = 10.0
"""Seconds before the first retry of a mail that could not be sent; doubles at each failure."""
RETRY_MAX: Final = 600.0
"""The longest wait between two attempts."""
MAX_WAITING: Final = 10
"""Mails queued behind the one being sent; one more drops the oldest."""
MAX_LISTED: Final = 100
"""Transitions one mail lists; older ones of a merged mail are only counted."""
STOP_FLUSH: Final = 5.0
"""Seconds a stopping daemon gives the last mails (its instances' STOP) to leave."""


class MailError(Exception):
    """A mail could not be sent; the message says why (the server's answer, or the error)."""


@attrs.frozen
class MailSettings:
    """Where and how to send: ``[global.email]`` of node.toml."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    starttls: bool = False
    username: str | None = None
    password_file: str | None = None

    @property
    def server(self) -> str:
        """``HOST:PORT`` as the configuration writes it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@attrs.frozen
class MailTransition:
    """One line of a mail: a transition, with the wall-clock time it happened."""

    time: float  # Unix time
    instance: str
    old: str
    new: str
    reason: str
    priority: int


@attrs.frozen
class MailStatistics:
    """What the mailer did since the daemon started (``pyvrrp status``'s ``email``)."""

    enabled: bool  # [global.email] is configured
    sent: int  # mails the server accepted
    failures: int  # attempts that failed (a mail retried three times counts three)
    retries: int  # attempts after a failure
    dropped: int  # mails given up: the queue was full, or e-mail was turned off by a reload
    pending: int  # mails queued or being sent (the open burst not included)
    transitions: int  # transitions taken for mailing
    last_sent: float | None  # Unix time of the last mail the server accepted
    last_error: str | None  # why the last failed attempt failed


MailTransport = Callable[[MailSettings, "EmailMessage"], Awaitable[None]]
"""Sends one message or raises :class:`MailError`; :class:`SmtpTransport` is the real one."""


def _read_password(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            # One line: the trailing newline an editor or `echo` adds is not part of it.
            return file.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise MailError(f"cannot read password_file {path}: {exc}") from None


class SmtpTransport:
    """Sends with :mod:`smtplib` in a worker thread, abandoned (not waited for) on timeout.

    With ``starttls`` the server's certificate is verified against ``ssl_context`` (default:
    the system's trusted CAs, and the host name of ``server``). Login happens only inside
    TLS: the password is never sent in clear.
    """

    def __init__(
        self, *, timeout: float = SEND_TIMEOUT, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.timeout = timeout
        self.ssl_context = ssl_context

    async def __call__(self, settings: MailSettings, message: EmailMessage) -> None:
        # The thread is abandoned when the attempt times out; smtplib's own timeout (the same,
        # per socket operation) ends it soon after, so abandoned threads do not pile up.
        with trio.move_on_after(self.timeout) as scope:
            await trio.to_thread.run_sync(
                partial(self._send, settings, message), abandon_on_cancel=True
            )
        if scope.cancelled_caught:
            raise MailError(f"{settings.server}: no answer within {self.timeout:g} s")

    def _send(self, settings: MailSettings, message: EmailMessage) -> None:
        if settings.username and not settings.starttls:
            raise MailError("a login needs starttls = true: the password would go in clear text")
        password = _read_password(settings.password_file or "") if settings.username else ""
        import smtplib  # only a node that sends mail loads it

        try:
            with smtplib.SMTP(settings.host, settings.port, timeout=self.timeout) as smtp:
                if settings.starttls:
                    context = self.ssl_context or ssl.create_default_context()
                    smtp.starttls(context=context)
                if settings.username:
                    smtp.login(settings.username, password)
                refused = smtp.send_message(message)
        except smtplib.SMTPException as exc:
            raise MailError(f"{settings.server}: {_describe_smtp(exc)}") from None
        except OSError as exc:  # refused, unreachable, timed out, TLS failures
            raise MailError(f"{settings.server}: {exc.strerror or exc}") from None
        except Exception as exc:
            # smtplib raising something it does not document: an alert mail must never take
            # the VRRP daemon down. Logged with its traceback, then handled as a failure.
            log.exception("e-mail: unexpected error from smtplib")
            raise MailError(f"{settings.server}: {type(exc).__name__}: {exc}") from None
        if refused:
            log.warning(
                "e-mail: the server refused %s (the other recipients got it)",
                ", ".join(
                    f"{to} ({code} {text.decode(errors='replace')})"
                    for to, (code, text) in refused.items()
                ),
            )


def _describe_smtp(exc: smtplib.SMTPException) -> str:
    import smtplib

    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error
        text = error.decode(errors="replace") if isinstance(error, bytes) else str(error)
        return f"{exc.smtp_code} {text}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "every recipient refused: " + ", ".join(
            f"{to} ({code} {text.decode(errors='replace')})"
            for to, (code, text) in exc.recipients.items()
        )
    return str(exc) or type(exc).__name__


def state_word(new: State, cause: Cause) -> str:
    """The state a mail names: keepalived's STOP for an instance stopped at shutdown."""
    return "STOP" if new is State.INITIALIZE and cause is Cause.SHUTDOWN else new.value


@attrs.define
class _Mail:
    transitions: list[MailTransition]
    omitted: int = 0  # older transitions not listed (more than MAX_LISTED)

    def merge(self, later: _Mail, max_listed: int) -> None:
        self.transitions.extend(later.transitions)
        self.omitted += later.omitted
        extra = len(self.transitions) - max_listed
        if extra > 0:
            del self.transitions[:extra]
            self.omitted += extra


def _names(names: list[str], most: int = 4) -> str:
    if len(names) <= most:
        return ", ".join(names)
    return f"{', '.join(names[: most - 1])} and {len(names) - most + 1} more"


def subject(router_id: str, transitions: list[MailTransition]) -> str:
    """keepalived's subject for one transition; for several, the newest state of each instance.

    ``[lb1] VRRP Instance vip58 - Entering MASTER state``;
    ``[lb1] VRRP Instances vip58, vip59 - Entering MASTER state``;
    ``[lb1] VRRP Instances - vip58 MASTER; vip59 BACKUP (5 transitions)``.
    """
    newest: dict[str, str] = {}
    for transition in transitions:
        newest.pop(transition.instance, None)  # ordered by each instance's last transition
        newest[transition.instance] = transition.new
    by_state: dict[str, list[str]] = {}
    for instance, state in newest.items():
        by_state.setdefault(state, []).append(instance)
    count = f" ({len(transitions)} transitions)" if len(transitions) > len(newest) else ""
    if len(by_state) == 1:
        ((state, names),) = by_state.items()
        plural = "s" if len(names) > 1 else ""
        return (
            f"[{router_id}] VRRP Instance{plural} {_names(names)} - Entering {state} state{count}"
        )
    groups = "; ".join(f"{_names(names)} {state}" for state, names in by_state.items())
    return f"[{router_id}] VRRP Instances - {groups}{count}"


def _utc(stamp: float) -> str:
    whole = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp))
    return f"{whole}.{int(stamp * 1000) % 1000:03d} UTC"


def body(
    router_id: str, transitions: list[MailTransition], *, omitted: int = 0, lost: int = 0
) -> str:
    """The text of a mail: every transition, oldest first, then each instance's state now."""
    lines = [
        f"pyvrrp {__version__} on {router_id}: {len(transitions) + omitted} state change"
        + ("s" if len(transitions) + omitted != 1 else "")
        + ".",
        "",
    ]
    if omitted:
        lines += [f"({omitted} earlier transitions are not listed.)", ""]
    for t in transitions:
        lines.append(
            f"{_utc(t.time)}  [{router_id}] {t.instance}: {t.old} -> {t.new} ({t.reason}), "
            f"priority {t.priority}"
        )
    newest: dict[str, str] = {}
    for t in transitions:
        newest[t.instance] = t.new
    lines += ["", "Now: " + ", ".join(f"{name} {state}" for name, state in sorted(newest.items()))]
    if lost:
        lines += [
            "",
            f"{lost} earlier mail{'s were' if lost != 1 else ' was'} dropped: the mail server "
            "could not be reached while they queued up (see the daemon's log).",
        ]
    return "\n".join(lines) + "\n"


class Mailer:
    """Mails transitions in bursts; see the module's description.

    ``settings`` None is e-mail off (no ``[global.email]``); ``wanted(instance)`` says which
    instances have ``email = true``. Both may be replaced at any time (a reload):
    :attr:`settings` and :attr:`router_id` are read when a mail is composed. The timing
    parameters exist for tests; the daemon uses the module's constants.
    """

    def __init__(
        self,
        settings: MailSettings | None,
        *,
        router_id: str,
        wanted: Callable[[str], bool] = lambda _instance: True,
        transport: MailTransport | None = None,
        coalesce_window: float = COALESCE_WINDOW,
        max_burst: float = MAX_BURST,
        retry_initial: float = RETRY_INITIAL,
        retry_max: float = RETRY_MAX,
        max_waiting: int = MAX_WAITING,
        max_listed: int = MAX_LISTED,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.router_id = router_id
        self.wanted = wanted
        self.transport: MailTransport = transport if transport is not None else SmtpTransport()
        self.coalesce_window = coalesce_window
        self.max_burst = max_burst
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.max_waiting = max_waiting
        self.max_listed = max_listed
        self._wall_clock = wall_clock
        self._burst: list[MailTransition] = []
        self._burst_started = 0.0  # trio time of the open burst's first transition
        self._burst_last = 0.0  # ... and of its newest
        self._burst_opened = trio.Event()
        self._channel: trio.MemoryReceiveChannel[Transition] | None = None
        self._waiting: collections.deque[_Mail] = collections.deque()
        self._has_mail = trio.Event()
        self._in_flight: _Mail | None = None
        self._backoff: trio.CancelScope | None = None
        self._idle = trio.Event()
        self._idle.set()
        self._lost = 0  # mails dropped since the last one delivered (that mail says so)
        self._sent = 0
        self._failures = 0
        self._retries = 0
        self._dropped = 0
        self._transitions = 0
        self._last_sent: float | None = None
        self._last_error: str | None = None

    # ------------------------------------------------------------------ input

    def notify(self, transition: Transition) -> None:
        """Add a transition to the open burst (if e-mail is on for its instance); never waits."""
        if self.settings is None or not self.wanted(transition.instance):
            return
        now = trio.current_time()
        self._transitions += 1
        if not self._burst:
            self._burst_started = now
            self._burst_opened.set()
        self._burst_last = now
        self._burst.append(
            MailTransition(
                # Transition.time is trio's (monotonic) clock: the wall clock now, minus the
                # time since it happened.
                time=self._wall_clock() - (now - transition.time),
                instance=transition.instance,
                old=transition.old.value,
                new=state_word(transition.new, transition.cause),
                reason=transition.reason,
                priority=transition.priority,
            )
        )

    def statistics(self) -> MailStatistics:
        """The counters of :class:`MailStatistics`, now."""
        return MailStatistics(
            enabled=self.settings is not None,
            sent=self._sent,
            failures=self._failures,
            retries=self._retries,
            dropped=self._dropped,
            pending=len(self._waiting) + (self._in_flight is not None),
            transitions=self._transitions,
            last_sent=self._last_sent,
            last_error=self._last_error,
        )

    # ------------------------------------------------------------------ running

    async def run(
        self,
        transitions: trio.MemoryReceiveChannel[Transition],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Mail the transitions received on ``transitions`` (``Node.subscribe()``) until
        cancelled."""
        self._channel = transitions
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._close_bursts)
            nursery.start_soon(self._send_mails)
            task_status.started()
            async with transitions:
                async for transition in transitions:
                    self.notify(transition)

    async def flush(self, timeout: float = STOP_FLUSH) -> bool:
        """Mail the open burst now, and wait up to ``timeout`` s until every mail has left.

        A mail waiting to be retried is tried again at once. Returns whether everything left;
        what did not is logged.
        """
        # What was published before (the STOP of every instance, published while the node
        # stopped) belongs to this burst. A transition handed to the follower task is in its
        # hands until it runs: two checkpoints let it (trio runs a batch of ready tasks in
        # either order, so after one the follower may still be behind this task). Anything
        # still in the channel is taken here.
        await trio.lowlevel.checkpoint()
        await trio.lowlevel.checkpoint()
        while self._channel is not None:
            try:
                self.notify(self._channel.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        self._close_burst()
        with trio.move_on_after(timeout):
            while self._waiting or self._in_flight is not None:
                if self._backoff is not None:
                    self._backoff.cancel()
                self._idle = trio.Event()
                await self._idle.wait()
            return True
        pending = len(self._waiting) + (self._in_flight is not None)
        log.warning("e-mail: %d mail%s not sent at shutdown", pending, "s" * (pending != 1))
        return False

    async def _close_bursts(self) -> None:
        while True:
            await self._burst_opened.wait()
            # A new transition only moves the deadline later: sleeping to the old one and
            # looking again never closes a burst early.
            while (deadline := self._burst_deadline()) > trio.current_time():
                await trio.sleep_until(deadline)
            self._close_burst()

    def _burst_deadline(self) -> float:
        return min(self._burst_last + self.coalesce_window, self._burst_started + self.max_burst)

    def _close_burst(self) -> None:
        self._burst_opened = trio.Event()
        if not self._burst:
            return
        mail = _Mail([])
        mail.merge(_Mail(self._burst), self.max_listed)
        self._burst = []
        if len(self._waiting) >= self.max_waiting:
            self._waiting.popleft()
            self._drop("the queue is full (the mail server is slow or unreachable)")
        self._waiting.append(mail)
        self._has_mail.set()

    def _drop(self, why: str) -> None:
        self._dropped += 1
        self._lost += 1
        log.warning("e-mail: dropped a mail: %s", why)

    async def _send_mails(self) -> None:
        while True:
            await self._has_mail.wait()
            if not self._waiting:
                self._has_mail = trio.Event()
                self._idle.set()
                continue
            self._in_flight = self._waiting.popleft()
            try:
                await self._deliver(self._in_flight)
            finally:
                self._in_flight = None

    async def _deliver(self, mail: _Mail) -> None:
        delay = self.retry_initial
        while True:
            settings = self.settings
            if settings is None:
                self._drop("e-mail was turned off ([global.email] removed by a reload)")
                return
            lost = self._lost  # what this message reports
            message = self.compose(mail, settings)
            try:
                await self.transport(settings, message)
            except MailError as exc:
                self._failures += 1
                self._last_error = str(exc)
                log.error(
                    "e-mail %r to %s failed: %s; trying again in %g s",
                    message["Subject"],
                    ", ".join(settings.recipients),
                    exc,
                    delay,
                )
                with trio.CancelScope() as self._backoff:
                    await trio.sleep(delay)
                self._backoff = None
                delay = min(delay * 2, self.retry_max)
                self._retries += 1
                # What queued up meanwhile goes with this one: one mail when the server is back.
                while self._waiting:
                    mail.merge(self._waiting.popleft(), self.max_listed)
                continue
            self._sent += 1
            self._lost -= lost  # drops during the attempt are for the next mail to say
            self._last_sent = self._wall_clock()
            log.info("e-mail sent to %s: %s", ", ".join(settings.recipients), message["Subject"])
            return

    def compose(self, mail: _Mail, settings: MailSettings) -> EmailMessage:
        """The message for ``mail``: keepalived's subject, every transition in the body."""
        import email.utils  # only a node that sends mail loads it
        from email.message import EmailMessage

        message = EmailMessage()
        message["Subject"] = subject(self.router_id, mail.transitions)
        message["From"] = settings.sender
        message["To"] = ", ".join(settings.recipients)
        message["Date"] = email.utils.formatdate(self._wall_clock(), localtime=True)
        # Not make_msgid()'s default domain: socket.getfqdn() may wait for DNS.
        message["Message-ID"] = email.utils.make_msgid("pyvrrp", domain=os.uname().nodename)
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
        message.set_content(
            body(self.router_id, mail.transitions, omitted=mail.omitted, lost=self._lost)
        )
        return message

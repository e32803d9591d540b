"""The mailer against a real SMTP server: aiosmtpd on 127.0.0.1, in a thread of its own.

Real sockets, real time, smtplib on the client side as in the daemon: the content of what
arrives, coalescing, a server that is down then back, a server that stalls while a node keeps
running, STARTTLS with a certificate made for the test, and login. The mailer's timing in
detail is tested in virtual time in tests/runtime/test_mailer.py.
"""

from __future__ import annotations

import itertools
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from pyvrrp.core.actions import Cause, State
from pyvrrp.runtime.mailer import Mailer, MailSettings, SmtpTransport
from pyvrrp.runtime.node import Transition
from tests.mailserver import HOST, PASSWORD, USER, Server, check_password, free_port

from .cluster import Cluster, config, instance

WAIT = 20.0  # generous bound on anything that should take well under a second


@pytest.fixture
def server() -> Iterator[Server]:
    made = Server(free_port())
    made.start()
    yield made
    made.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key), made with the openssl CLI."""
    openssl = shutil.which("openssl")
    assert openssl is not None, "the openssl command is needed (Debian package openssl)"
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    command = "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=pyvrrp-test-smtp"
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        [openssl, *command.split(), *files, "-addext", f"subjectAltName=IP:{HOST}"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[Server]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    made = Server(
        free_port(),
        tls_context=context,
        require_starttls=True,
        authenticator=check_password,
        auth_require_tls=True,
    )
    made.start()
    yield made
    made.stop()


def settings(port: int, **changes: Any) -> MailSettings:
    made = MailSettings(
        host=HOST,
        port=port,
        sender="pyvrrp@lb1.example.com",
        recipients=("ops@example.com", "oncall@example.com"),
    )
    return attrs.evolve(made, **changes)


def transition(name: str, old: State, new: State, priority: int = 100) -> Transition:
    return Transition(
        name,
        old,
        new,
        Cause.MASTER_DOWN,
        "no advertisement for Master_Down_Interval",
        priority,
        trio.current_time(),
    )


async def wait_for(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.02)


def mailer_for(mail: MailSettings, **options: Any) -> Mailer:
    options.setdefault("coalesce_window", 0.3)
    options.setdefault("retry_initial", 0.2)
    return Mailer(mail, router_id="lb1", **options)


async def send_one(mailer: Mailer, until: Callable[[], bool]) -> None:
    send, receive = trio.open_memory_channel[Transition](10)
    async with trio.open_nursery() as nursery:
        await nursery.start(mailer.run, receive)
        send.send_nowait(transition("vip58", State.BACKUP, State.MASTER))
        await wait_for(until)
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------------- plain SMTP


async def test_a_burst_arrives_as_one_mail_with_every_transition(server: Server) -> None:
    mailer = mailer_for(settings(server.port))
    send, receive = trio.open_memory_channel[Transition](10)
    async with trio.open_nursery() as nursery:
        await nursery.start(mailer.run, receive)
        send.send_nowait(transition("vip58", State.BACKUP, State.MASTER))
        send.send_nowait(transition("vip59", State.BACKUP, State.MASTER, priority=90))
        await wait_for(lambda: mailer.statistics().sent == 1)
        await trio.sleep(0.5)  # nothing else comes
        nursery.cancel_scope.cancel()
    (mail,) = server.inbox.received
    assert mail.sender == "pyvrrp@lb1.example.com"
    assert mail.recipients == ["ops@example.com", "oncall@example.com"]
    message = mail.message
    assert message["Subject"] == "[lb1] VRRP Instances vip58, vip59 - Entering MASTER state"
    assert message["From"] == "pyvrrp@lb1.example.com"
    assert message["To"] == "ops@example.com, oncall@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] is not None and message["Message-ID"] is not None
    text = message.get_content()
    assert "[lb1] vip58: BACKUP -> MASTER (no advertisement for Master_Down_Interval), " in text
    assert "[lb1] vip59: BACKUP -> MASTER (no advertisement for Master_Down_Interval), " in text
    assert "priority 90" in text
    assert "Now: vip58 MASTER, vip59 MASTER" in text
    assert mail.login is None
    assert attrs.asdict(mailer.statistics()) | {"last_sent": None} == {
        "enabled": True,
        "sent": 1,
        "failures": 0,
        "retries": 0,
        "dropped": 0,
        "pending": 0,
        "transitions": 2,
        "last_sent": None,
        "last_error": None,
    }


async def test_a_server_that_is_down_gets_the_mail_when_it_is_back() -> None:
    down = Server(free_port())
    mailer = mailer_for(settings(down.port))
    send, receive = trio.open_memory_channel[Transition](10)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(mailer.run, receive)
            send.send_nowait(transition("vip58", State.BACKUP, State.MASTER))
            await wait_for(lambda: mailer.statistics().failures >= 2)
            error = mailer.statistics().last_error
            assert error is not None
            assert error.startswith(f"{HOST}:{down.port}: ")
            assert "refused" in error.lower()
            await trio.to_thread.run_sync(down.start)
            await wait_for(lambda: mailer.statistics().sent == 1)
            nursery.cancel_scope.cancel()
    finally:
        down.stop()
    stats = mailer.statistics()
    assert stats.retries == stats.failures >= 2
    assert stats.pending == 0
    (mail,) = down.inbox.received
    assert mail.message["Subject"] == "[lb1] VRRP Instance vip58 - Entering MASTER state"


async def test_a_stalling_server_never_holds_up_the_node(server: Server) -> None:
    """A transition is published and mailed; the server sits on the mail for 3 s, while the
    new master keeps advertising every 0.1 s, on time."""
    server.inbox.stall = 3.0
    async with trio.open_nursery() as nursery:
        cluster = Cluster(nursery)
        a = await cluster.start(
            "A", config({"vip58": instance(58, 100, "1.2.3.58/29", advert_interval=0.1)})
        )
        mailer = mailer_for(settings(server.port), coalesce_window=0.1)
        await nursery.start(mailer.run, a.node.subscribe())
        await wait_for(lambda: a.state("vip58") is State.MASTER)
        await wait_for(lambda: mailer.statistics().pending == 1)  # the mail is on its way
        start = trio.current_time()
        await wait_for(lambda: mailer.statistics().sent == 1)
        stalled = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert stalled >= 2.5
    during = [t for t, _ in cluster.adverts("A") if start <= t + cluster.t0 <= start + stalled]
    # 0.1 s apart while the send blocked; a blocked router would send nothing for 3 s. The
    # margins leave room for a busy 2-core machine delaying a few of them.
    assert len(during) >= stalled / 0.1 * 0.5
    assert max(b - a for a, b in itertools.pairwise(during)) < 1.0
    # Subscribed after the start: INIT -> BACKUP came before.
    assert server.inbox.received[0].message["Subject"] == (
        "[lb1] VRRP Instance vip58 - Entering MASTER state"
    )


async def test_an_attempt_is_abandoned_at_its_timeout_and_retried(server: Server) -> None:
    server.inbox.stall = 2.0
    mailer = mailer_for(settings(server.port), transport=SmtpTransport(timeout=0.5))
    send, receive = trio.open_memory_channel[Transition](10)
    async with trio.open_nursery() as nursery:
        await nursery.start(mailer.run, receive)
        send.send_nowait(transition("vip58", State.BACKUP, State.MASTER))
        await wait_for(lambda: mailer.statistics().failures >= 1)
        server.inbox.stall = 0.0
        await wait_for(lambda: mailer.statistics().sent >= 1)
        nursery.cancel_scope.cancel()
    assert mailer.statistics().last_error == f"{HOST}:{server.port}: no answer within 0.5 s"


async def test_a_refused_recipient_is_logged_and_the_others_get_the_mail(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.inbox.refused = {"oncall@example.com"}
    mailer = mailer_for(settings(server.port))
    await send_one(mailer, lambda: mailer.statistics().sent == 1)
    assert [mail.recipients for mail in server.inbox.received] == [["ops@example.com"]]
    assert (
        "e-mail: the server refused oncall@example.com (550 5.1.1 no such mailbox) "
        "(the other recipients got it)" in caplog.messages
    )


async def test_every_recipient_refused_is_a_failure(server: Server) -> None:
    server.inbox.refused = {"ops@example.com", "oncall@example.com"}
    mailer = mailer_for(settings(server.port))
    await send_one(mailer, lambda: mailer.statistics().failures >= 1)
    error = mailer.statistics().last_error or ""
    assert error.startswith(f"{HOST}:{server.port}: every recipient refused: ")
    assert "ops@example.com (550 5.1.1 no such mailbox)" in error
    assert server.inbox.received == []


# ---------------------------------------------------------------------------- TLS, login


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "smtp-password"
    path.write_text(PASSWORD + "\n")  # as `echo` writes it
    return path


async def test_starttls_and_login(
    tls_server: Server, certificate: tuple[Path, Path], password_file: Path
) -> None:
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    mail = settings(tls_server.port, starttls=True, username=USER, password_file=str(password_file))
    mailer = mailer_for(mail, transport=SmtpTransport(ssl_context=trusting))
    await send_one(mailer, lambda: mailer.statistics().sent == 1)
    (received,) = tls_server.inbox.received
    assert received.login == USER
    assert received.message["Subject"] == "[lb1] VRRP Instance vip58 - Entering MASTER state"


# The daemon's process, where ssl and hmac are placeholders until first used
# (pyvrrp/runtime/deferred.py): STARTTLS and login with the system's trusted CAs (here the
# test's certificate, through OpenSSL's SSL_CERT_FILE), as `[global.email]` sends them.
_DAEMON_MAIL = """
import sys
from pyvrrp.runtime.deferred import DAEMON_DEFERRED, defer
defer(DAEMON_DEFERRED)
from email.message import EmailMessage
import trio
from pyvrrp.runtime.mailer import MailSettings, SmtpTransport
host, port, user, password_file = sys.argv[1:]
settings = MailSettings(
    host=host, port=int(port), sender="pyvrrp@lb1.example.com",
    recipients=("ops@example.com",), starttls=True, username=user,
    password_file=password_file,
)
message = EmailMessage()
message["Subject"], message["From"], message["To"] = "deferred ssl", settings.sender, "ops"
message.set_content("sent through a deferred ssl module")
print("before", "_ssl" in sys.modules)
trio.run(SmtpTransport(), settings, message)
print("after", "_ssl" in sys.modules)
"""


async def test_starttls_and_login_from_the_daemons_process_where_ssl_loads_at_first_use(
    tls_server: Server, certificate: tuple[Path, Path], password_file: Path
) -> None:
    argv = [HOST, str(tls_server.port), USER, str(password_file)]
    done = await trio.run_process(
        [sys.executable, "-c", _DAEMON_MAIL, *argv],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=os.environ | {"SSL_CERT_FILE": str(certificate[0])},
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["before", "False", "after", "True"]
    (received,) = tls_server.inbox.received
    assert received.login == USER
    assert received.message["Subject"] == "deferred ssl"


async def test_a_certificate_the_system_does_not_trust_is_refused(
    tls_server: Server, password_file: Path
) -> None:
    mail = settings(tls_server.port, starttls=True, username=USER, password_file=str(password_file))
    mailer = mailer_for(mail)  # the system's CAs: the test's certificate is unknown
    await send_one(mailer, lambda: mailer.statistics().failures >= 1)
    assert "certificate verify failed" in (mailer.statistics().last_error or "")
    assert tls_server.inbox.received == []


async def test_a_wrong_password_is_a_failure_with_the_servers_answer(
    tls_server: Server, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("guess")
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    mail = settings(tls_server.port, starttls=True, username=USER, password_file=str(wrong))
    mailer = mailer_for(mail, transport=SmtpTransport(ssl_context=trusting))
    await send_one(mailer, lambda: mailer.statistics().failures >= 1)
    assert (mailer.statistics().last_error or "").startswith(f"{HOST}:{tls_server.port}: 535 ")
    assert tls_server.inbox.received == []


async def test_a_server_requiring_starttls_refuses_a_plain_mail(tls_server: Server) -> None:
    mailer = mailer_for(settings(tls_server.port))
    await send_one(mailer, lambda: mailer.statistics().failures >= 1)
    assert "530" in (mailer.statistics().last_error or "")


async def test_login_without_starttls_is_refused_before_connecting(
    server: Server, password_file: Path
) -> None:
    mail = settings(server.port, username=USER, password_file=str(password_file))
    mailer = mailer_for(mail)
    await send_one(mailer, lambda: mailer.statistics().failures >= 1)
    assert mailer.statistics().last_error == (
        "a login needs starttls = true: the password would go in clear text"
    )
    assert server.inbox.received == []


async def test_an_unreadable_password_file_is_a_failure_naming_it(
    tls_server: Server, tmp_path: Path
) -> None:
    missing = tmp_path / "nope"
    mail = settings(tls_server.port, starttls=True, username=USER, password_file=str(missing))
    mailer = mailer_for(mail)
    await send_one(mailer, lambda: mailer.statistics().failures >= 1)
    assert (mailer.statistics().last_error or "").startswith(
        f"cannot read password_file {missing}: "
    )

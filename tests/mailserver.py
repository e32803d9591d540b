"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, in a thread of its own.

Used by tests/runtime/test_mailer_smtp.py and by the daemon's end-to-end test in the netns
lab (started in a node's namespace: the server's thread inherits the namespace of the
thread that starts it).
"""

from __future__ import annotations

import asyncio
import socket
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
USER = "pyvrrp"
PASSWORD = "s3cret pass"  # a space: the whole line of password_file is the password


@attrs.define
class Received:
    """One mail the server accepted: envelope, parsed message, and who logged in."""

    sender: str
    recipients: list[str]
    message: EmailMessage
    login: str | None


class Inbox:
    """An aiosmtpd handler keeping what it accepts; ``stall`` seconds before answering DATA,
    550 to the recipients in ``refused``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.stall = 0.0
        self.refused: set[str] = set()  # recipients answered 550

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address in self.refused:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.stall:
            await asyncio.sleep(self.stall)
        content = envelope.content
        assert isinstance(content, bytes)
        auth: object = session.auth_data  # typed None, set to what the authenticator gave
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        self.received.append(
            Received(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                message_from_bytes(content, policy=policy.default),
                login,
            )
        )
        return "250 OK"


def check_password(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(),
        PASSWORD.encode(),
    )
    # handled=False: aiosmtpd answers a failure with 535 itself.
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """An aiosmtpd controller that can be started (again) on a fixed port."""

    def __init__(self, port: int, **smtp: Any) -> None:
        self.port = port
        self.inbox = Inbox()
        self.smtp = smtp
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname=HOST, port=self.port, **self.smtp)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

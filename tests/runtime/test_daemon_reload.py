"""What a reload changes at once in ``[global]``: the log level (unless the command line set
it) and e-mail (the server, and which instances mail)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from pyvrrp import configfile
from pyvrrp.runtime.daemon import DaemonControl, _wants_mail, mail_settings
from pyvrrp.runtime.logs import set_level
from pyvrrp.runtime.mailer import Mailer, MailSettings

from .cluster import Cluster

INSTANCE = """
[instances.vip58]
interface = "eth0.4000"
vrid = 58
priority = 100
addresses = ["1.2.3.58/29"]
"""
EMAIL = """
[global.email]
server = "mail.example.com:587"
from = "pyvrrp@example.com"
to = ["ops@example.com"]
starttls = true
"""


@pytest.fixture(autouse=True)
def pyvrrp_level() -> Iterator[None]:
    logger = logging.getLogger("pyvrrp")
    saved = logger.level
    yield
    logger.setLevel(saved)


def node_toml(state_dir: Path, *, level: str | None = None, email: bool = False) -> str:
    lines = ["[global]", f'state_dir = "{state_dir}"']
    if level is not None:
        lines.append(f'log_level = "{level}"')
    text = "\n".join(lines) + "\n" + (EMAIL if email else "") + INSTANCE
    return text + ("email = true\n" if email else "")


@pytest.mark.parametrize(("command_line", "after"), [(None, logging.DEBUG), ("error", None)])
async def test_a_reload_applies_log_level_and_email_at_once(
    tmp_path: Path,
    command_line: str | None,
    after: int | None,
    cluster: Cluster,
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(node_toml(tmp_path / "state"))
    set_level(command_line or "info")
    before = logging.getLogger("pyvrrp").level
    a = await cluster.start("A", configfile.load(path))
    mailer = Mailer(mail_settings(a.node.config), router_id="A")
    mailer.wanted = partial(_wants_mail, a.node)
    control = DaemonControl(a.node, str(path), mailer=mailer, log_level=command_line)
    assert mailer.settings is None
    assert not mailer.wanted("vip58")
    path.write_text(node_toml(tmp_path / "state", level="debug", email=True))
    await control.reload()
    assert logging.getLogger("pyvrrp").level == (before if after is None else after)
    applied: MailSettings | None = mailer.settings  # not narrowed by the assert above
    assert applied == MailSettings(
        host="mail.example.com",
        port=587,
        sender="pyvrrp@example.com",
        recipients=("ops@example.com",),
        starttls=True,
    )
    assert mailer.wanted("vip58")
    # Back without [global.email]: e-mail is off again.
    path.write_text(node_toml(tmp_path / "state", level="warning"))
    await control.reload()
    assert mailer.settings is None
    assert not mailer.wanted("vip58")

"""A master that cannot install its addresses does not pretend, and send failures show.

A (100) and C (75) hold vip58; A becomes master at 3.609375 s. Its netlink refuses the VIP
(as the kernel refuses an address in conflict): A retries after 0.1, 0.2, 0.4, 0.8, 1.6 s...
(at most 5 s apart), gives the VIP up three advertisement intervals after the first failure
(priority 0, FAULT "cannot install ..."), C takes over, and A's fault clears when a retry
succeeds. Times are exact (virtual time).
"""

from __future__ import annotations

import errno
import logging
from typing import Any

import pytest
import trio
import trio.testing

from pyvrrp.core.actions import State
from pyvrrp.core.packet import IPAddress
from pyvrrp.runtime.instance import INSTALL_RETRY_FIRST, INSTALL_RETRY_MAX
from pyvrrp.runtime.metrics import render
from pyvrrp.runtime.netlink import AddressSpec, describe_address, kernel_error
from pyvrrp.runtime.transport import Transport
from pyvrrp.status_format import format_status
from pyvrrp.testing.fakenetlink import FakeNetlink
from tests.unit.test_metrics_render import parse_exposition

from .cluster import HOSTS, INTERFACE, Cluster, Host, config, instance

VIP = "1.2.3.58/29"
BECOMES_MASTER = 3.609375  # Master_Down_Interval of priority 100 at 1 s
GIVES_UP = BECOMES_MASTER + 3  # three advertisement intervals after the first failure
C_TAKES_OVER = round(GIVES_UP + 0.70703125, 6)  # C hears priority 0: Skew_Time(75)


class RefusingNetlink(FakeNetlink):
    """FakeNetlink refusing to add the addresses in ``refused`` (as the kernel refuses one
    in conflict), until they are taken out of it."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: set[str] = set()
        self.attempts: list[float] = []

    async def add_address(self, spec: AddressSpec) -> bool:
        if str(spec.address) in self.refused:
            await trio.lowlevel.checkpoint()
            self.attempts.append(trio.current_time())
            raise kernel_error(f"add address {describe_address(spec)}", errno.EBUSY, "refused")
        return await super().add_address(spec)


def refusing(host: str) -> RefusingNetlink:
    from ipaddress import IPv4Interface

    netlink = RefusingNetlink()
    netlink.add_link(INTERFACE, addresses=[IPv4Interface(f"{HOSTS[host]}/24")])
    netlink.refused.add(VIP)
    return netlink


async def start(cluster: Cluster) -> tuple[Host, Host, RefusingNetlink]:
    netlink = refusing("A")
    a = await cluster.start("A", config({"vip58": instance(58, 100, VIP)}), netlink=netlink)
    c = await cluster.start("C", config({"vip58": instance(58, 75, VIP)}))
    return a, c, netlink


def status(host: Host) -> dict[str, Any]:
    result: dict[str, Any] = host.node.status()["instances"]["vip58"]
    return result


async def test_a_master_that_cannot_install_retries_then_gives_the_vip_up(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    cluster: Cluster,
) -> None:
    with caplog.at_level(logging.ERROR, logger="pyvrrp"):
        a, c, netlink = await start(cluster)
        await cluster.sleep_until(BECOMES_MASTER + 1)
        # Still master (within the bounded time), and not pretending.
        assert a.state("vip58") is State.MASTER
        s = status(a)
        assert s["holdings_complete"] is False
        assert s["install_fault"] is None
        assert s["last_install_error"] == (
            f"{VIP} dev {INTERFACE}: device or resource busy (refused)"
        )
        assert f"  install      FAILING, retrying: {VIP} dev {INTERFACE}: " in format_status(
            a.node.status()
        )
        await cluster.sleep_until(C_TAKES_OVER + 1)
    # First attempt, then retries 0.1 s doubling: 0.1, 0.3, 0.7, 1.5, 3.1 s after it.
    attempts = [cluster.at(t) for t in netlink.attempts]
    offsets = [round(t - BECOMES_MASTER, 6) for t in attempts]
    assert offsets == [0, 0.1, 0.3, 0.7, 1.5, 3.1]
    assert INSTALL_RETRY_FIRST == 0.1 and INSTALL_RETRY_MAX == 5.0
    assert cluster.changes("A", "vip58")[-1] == (GIVES_UP, State.MASTER, State.FAULT)
    assert (GIVES_UP, 0) in cluster.adverts("A")
    reason = a.transitions_of("vip58")[-1].reason
    assert reason == f"cannot install {VIP} dev {INTERFACE}: device or resource busy (refused)"
    assert cluster.changes("C", "vip58")[-1] == (C_TAKES_OVER, State.BACKUP, State.MASTER)
    assert c.holds(VIP) and not a.holds(VIP)
    s = status(a)
    assert s["state"] == "FAULT"
    assert s["install_fault"] == s["last_install_error"]
    assert s["counters"]["install_failures"] == 6
    assert f"  install      gave its addresses up: cannot install {VIP}" in format_status(
        a.node.status()
    )
    metrics = parse_exposition(render(a.node.snapshot()))
    assert metrics["pyvrrp_install_failures_total"].value(vrrp_instance="vip58") == 6
    assert metrics["pyvrrp_instance_holdings_complete"].value(vrrp_instance="vip58") == 0
    # Logged, but rate-limited: not once per retry.
    refusals = [m for m in caplog.messages if "cannot add" in m]
    assert 1 <= len(refusals) < 6


async def test_the_fault_clears_when_a_retry_in_fault_installs(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    a, c, netlink = await start(cluster)
    await cluster.sleep_until(GIVES_UP + 1)
    assert a.state("vip58") is State.FAULT
    netlink.refused.clear()  # the conflict is gone
    # Retries in FAULT: 3.1 s after the first failure, then 6.3 s: that one works; the
    # probe's address is handed back at once, and A restarts as backup.
    await cluster.sleep_until(BECOMES_MASTER + 6.3 + 0.01)
    changes = cluster.changes("A", "vip58")
    assert changes[3] == (BECOMES_MASTER + 6.3, State.FAULT, State.BACKUP)
    s = status(a)
    assert s["install_fault"] is None
    assert s["holdings_complete"] is True
    # Back to master by preempting C (Skew_Time of 100 after C's next advertisement at most).
    await cluster.sleep_until(BECOMES_MASTER + 10)
    assert cluster.masters("vip58") == ["A"]
    assert a.holds(VIP) and not c.holds(VIP)
    metrics = parse_exposition(render(a.node.snapshot()))
    assert metrics["pyvrrp_instance_holdings_complete"].value(vrrp_instance="vip58") == 1


async def test_a_failure_that_ends_before_the_bounded_time_keeps_the_master(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    a, _, netlink = await start(cluster)
    await cluster.sleep_until(BECOMES_MASTER + 0.5)
    netlink.refused.clear()
    await cluster.sleep_until(BECOMES_MASTER + 10)
    assert cluster.changes("A", "vip58")[-1] == (BECOMES_MASTER, State.BACKUP, State.MASTER)
    assert a.holds(VIP)
    s = status(a)
    assert (s["holdings_complete"], s["counters"]["install_failures"]) == (True, 3)
    assert 0 not in [p for _, p in cluster.adverts("A")]


class FailingTransport:
    """Wraps a transport; raises OSError(ENETDOWN) while ``failing``."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.interface = inner.interface
        self.family = inner.family
        self.multicast = inner.multicast
        self.failing = True

    async def send(self, message: bytes, source: IPAddress, destination: IPAddress) -> None:
        if self.failing:
            raise OSError(errno.ENETDOWN, "Network is down")
        await self.inner.send(message, source, destination)

    async def receive(self) -> Any:
        return await self.inner.receive()

    def close(self) -> None:
        self.inner.close()


async def test_advert_send_failures_are_counted_shown_and_logged_rate_limited(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    cluster: Cluster,
) -> None:
    a = await cluster.start("A", config({"vip58": instance(58, 100, VIP)}))
    await cluster.sleep_until(BECOMES_MASTER + 0.5)
    vip58 = a.node.instances["vip58"]
    assert vip58.transport is not None
    failing = FailingTransport(vip58.transport)
    vip58.transport = failing
    with caplog.at_level(logging.WARNING, logger="pyvrrp"):
        await cluster.sleep_until(BECOMES_MASTER + 10.5)  # ten adverts fail
    failing.failing = False
    assert a.state("vip58") is State.MASTER
    s = status(a)
    assert s["counters"]["send_failures"] == 10
    assert s["last_send_error"] == "to 224.0.0.18: Network is down"
    assert "10 failed, last to 224.0.0.18: Network is down" in format_status(a.node.status())
    metrics = parse_exposition(render(a.node.snapshot()))
    assert metrics["pyvrrp_advert_send_failures_total"].value(vrrp_instance="vip58") == 10
    logged = [m for m in caplog.messages if "cannot send an advertisement" in m]
    assert 1 <= len(logged) < 10


async def test_what_a_retry_in_fault_could_install_is_taken_out_again(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    from ipaddress import IPv4Interface

    excluded = "2a03:4444:fff0:59:88::58/64"
    netlink = RefusingNetlink()
    netlink.add_link(INTERFACE, addresses=[IPv4Interface(f"{HOSTS['A']}/24")])
    netlink.refused.add(excluded)  # the VIP goes in, its excluded twin does not
    seed = instance(58, 100, VIP, excluded=excluded)
    a = await cluster.start("A", config({"vip58": seed}), netlink=netlink)
    c = await cluster.start("C", config({"vip58": instance(58, 75, VIP, excluded=excluded)}))
    await cluster.sleep_until(BECOMES_MASTER + 1)
    assert a.holds(VIP)  # installed, but the holdings are not complete
    assert status(a)["holdings_complete"] is False
    # Retries in FAULT at 3.1 and 6.3 s after the first failure add the VIP and remove it.
    for t in (GIVES_UP + 0.01, BECOMES_MASTER + 3.1 + 0.01, BECOMES_MASTER + 6.3 + 0.01):
        await cluster.sleep_until(t)
        assert a.state("vip58") is State.FAULT
        assert not a.holds(VIP)
    assert c.holds(VIP)
    adds = [op for op, spec in netlink.operations if op == "add_address"]
    assert len(adds) >= 3  # the takeover, and at least two retries that added the VIP


async def test_a_route_that_fails_is_retried_and_shown_but_the_master_keeps_its_vip(
    autojump_clock: trio.testing.MockClock, cluster: Cluster
) -> None:
    route = {"to": "10.58.0.0/16", "via": "192.168.200.254", "dev": INTERFACE, "table": 100}
    a = await cluster.start("A", config({"vip58": instance(58, 100, VIP, virtual_routes=[route])}))
    for _ in range(3):
        a.netlink.fail_next(
            "add_route", kernel_error("add route 10.58.0.0/16", errno.ENETUNREACH, "")
        )
    await cluster.sleep_until(BECOMES_MASTER + 0.5)
    s = status(a)
    assert (s["holdings_complete"], s["counters"]["install_failures"]) == (False, 3)
    assert s["last_install_error"].startswith("10.58.0.0/16 via 192.168.200.254")
    # The retry 0.7 s after the first failure works; no give-up, no FAULT, ever.
    await cluster.sleep_until(BECOMES_MASTER + 10)
    assert cluster.changes("A", "vip58")[-1] == (BECOMES_MASTER, State.BACKUP, State.MASTER)
    s = status(a)
    assert (s["holdings_complete"], s["counters"]["install_failures"]) == (True, 3)
    assert len(a.netlink.routes) == 1 and a.holds(VIP)

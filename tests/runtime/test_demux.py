"""The node's receive loops (pyvrrp/runtime/demux.py): a batch read from a socket is handed
out packet by packet, and the routers due are called before it and every DUE_CHECK packets
into it, so that a master's advertisement that comes due while a burst of its peers' is
handled waits for a few packets' work, not the whole batch's."""

from __future__ import annotations

from ipaddress import ip_address

import trio
import trio.testing

from pyvrrp.core.events import PacketReceived
from pyvrrp.core.packet import Advertisement, DecodeError, Family, encode
from pyvrrp.runtime.demux import DUE_CHECK, Demux
from pyvrrp.runtime.transport import BatchTransport, Transport

from .test_fast_path import Stalled

GROUP = Family.IPV4.multicast_group
PEER = ip_address("192.168.200.9")


def advert(vrid: int) -> PacketReceived:
    message = encode(
        Advertisement(
            vrid=vrid, priority=100, max_advert_interval=100, addresses=(ip_address("1.2.3.4"),)
        ),
        source=PEER,
        destination=GROUP,
    )
    return PacketReceived(message, PEER, GROUP, 255)


class OneBatch(Stalled):
    """A transport that hands out one batch, then nothing more."""

    def __init__(self, batch: list[PacketReceived | DecodeError]) -> None:
        super().__init__("eth0", Family.IPV4, multicast=True)
        self.batch = batch
        self.delivered = trio.Event()

    async def receive_batch(self) -> list[PacketReceived | DecodeError]:
        if self.delivered.is_set():
            await trio.sleep_forever()
        self.delivered.set()
        return self.batch


async def test_the_routers_due_are_called_before_a_batch_and_every_due_check_packets_in_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    size = 2 * DUE_CHECK + 5
    # VRIDs nobody runs here: each one handed out is counted as a drop of its interface.
    transport = OneBatch([advert(vrid) for vrid in range(1, size + 1)])
    assert isinstance(transport, BatchTransport)

    def factory(interface: str, family: Family, *, multicast: bool) -> Transport:
        return transport

    demux = Demux(factory)
    handed_out: list[int] = []  # packets of the batch handed out at each call

    def before() -> None:
        handed_out.append(demux.drops().get("eth0/ipv4", {}).get("unknown_vrid", 0))

    demux.before_batch = before
    key = ("eth0", Family.IPV4)
    async with trio.open_nursery() as nursery:
        # The loop update() would start for an instance on eth0 (none is needed here).
        nursery.start_soon(demux._receive_loop, key, transport, trio.CancelScope())
        await transport.delivered.wait()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert handed_out == [0, DUE_CHECK, 2 * DUE_CHECK]
    assert demux.drops() == {"eth0/ipv4": {"unknown_vrid": size}}

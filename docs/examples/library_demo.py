"""Two pyvrrp nodes in one trio program, on an in-memory LAN: no root, no network.

Run it: python docs/examples/library_demo.py
"""

from __future__ import annotations

from ipaddress import IPv4Interface, ip_address

import trio
import trio.testing

import pyvrrp
from pyvrrp.testing.fakenetlink import FakeNetlink
from pyvrrp.testing.fakestate import MemoryMaintenanceStore
from pyvrrp.testing.lan import MemoryLan, RecordingAnnouncements


def node_config(priority: int) -> pyvrrp.NodeConfig:
    return pyvrrp.parse_node(
        {
            "instances": {
                "web": {
                    "interface": "eth0",
                    "vrid": 51,
                    "priority": priority,
                    "addresses": ["192.0.2.100/24"],
                }
            },
        }
    )


def host(name: str, address: str) -> FakeNetlink:
    netlink = FakeNetlink()
    netlink.add_link("eth0", addresses=[IPv4Interface(f"{address}/24")])
    return netlink


async def main() -> None:
    lan = MemoryLan()
    netlink_a, netlink_b = host("a", "192.0.2.1"), host("b", "192.0.2.2")
    async with (
        pyvrrp.open_node(
            node_config(200),
            netlink=netlink_a,
            transport_factory=lan.factory("a", [ip_address("192.0.2.1")]),
            announcements=RecordingAnnouncements(),
            store=MemoryMaintenanceStore(),
        ) as a,
        pyvrrp.open_node(
            node_config(100),
            netlink=netlink_b,
            transport_factory=lan.factory("b", [ip_address("192.0.2.2")]),
            announcements=RecordingAnnouncements(),
            store=MemoryMaintenanceStore(),
        ) as b,
    ):
        changes = b.subscribe()
        await a.wait_state("web", pyvrrp.State.MASTER)
        state = a.status()["instances"]["web"]["state"]
        print(f"{trio.current_time():7.3f}s  a is {state}")
        print("          a holds", netlink_a.address_map["eth0"][-1])
        await a.set_maintenance(True)  # take a out of service: b takes over gracefully
        async for change in changes:
            old, new = change.old.value, change.new.value
            print(f"{change.time:7.3f}s  b: {old} -> {new} ({change.reason})")
            if change.new is pyvrrp.State.MASTER:
                break
        await trio.sleep(0.1)
        print("          b holds", netlink_b.address_map["eth0"][-1])


if __name__ == "__main__":
    # Virtual time: seconds of protocol run in milliseconds (a real program uses trio.run).
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

"""``pyvrrp cleanup``'s core: remove what a killed daemon left, idempotently."""

from __future__ import annotations

from ipaddress import IPv4Interface, ip_interface

from pyvrrp.core.config import parse_node
from pyvrrp.runtime.cleanup import cleanup
from pyvrrp.runtime.netlink import AddressSpec
from pyvrrp.testing.fakenetlink import FakeNetlink

CONFIG = parse_node(
    {
        "instances": {
            "vip58": {
                "interface": "eth0.4000",
                "vrid": 58,
                "addresses": ["1.2.3.58/29"],
                "excluded_addresses": ["2a03:4444:fff0:59:88::58/64"],
                "virtual_routes": [{"to": "10.58.0.0/16", "via": "192.168.200.254"}],
                "virtual_rules": [{"from": "1.2.3.56/29", "table": 100}],
            },
            "elsewhere": {
                "interface": "gone0",  # deleted since: nothing to remove, no error
                "vrid": 59,
                "addresses": ["1.2.3.59/29"],
            },
        },
        "routes": [{"to": "1.2.3.57/32", "dev": "eth0.4000", "table": 100}],
    }
)


async def test_cleanup_removes_everything_left_behind_then_nothing() -> None:
    netlink = FakeNetlink()
    netlink.add_link("eth0.4000", addresses=[IPv4Interface("192.168.200.1/24")])
    vip58 = CONFIG.instances["vip58"]
    for address in (*vip58.addresses, *vip58.excluded_addresses):
        await netlink.add_address(AddressSpec.from_config(address, "eth0.4000"))
    for route in (*vip58.virtual_routes, *CONFIG.routes):
        await netlink.add_route(route)
    await netlink.add_rule(vip58.virtual_rules[0])

    removed, problems = await cleanup(CONFIG, netlink)
    assert problems == []
    assert removed == [
        "vip58: from 1.2.3.56/29 lookup 100",
        "vip58: 10.58.0.0/16 via 192.168.200.254",
        "vip58: 2a03:4444:fff0:59:88::58/64 dev eth0.4000",
        "vip58: 1.2.3.58/29 dev eth0.4000",
        "1.2.3.57/32 dev eth0.4000 table 100",
    ]
    assert netlink.address_map["eth0.4000"] == (ip_interface("192.168.200.1/24"),)
    assert (netlink.routes, netlink.rules) == ((), ())
    assert await cleanup(CONFIG, netlink) == ([], [])

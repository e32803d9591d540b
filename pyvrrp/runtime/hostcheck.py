"""``pyvrrp check --host``: a valid configuration checked against this machine.

A configuration can be valid and still never work here: an interface or a tracked interface
that does not exist (the instance sits in FAULT forever), a ``unicast_source`` that is not an
address of its interface, a script that is missing, not executable or that another user
could change while it runs as root. :func:`check_host` finds those: the interfaces and
addresses through netlink reads (the :class:`~pyvrrp.runtime.netlink.Netlink` the daemon
uses, a ``FakeNetlink`` in tests), the files and accounts through
:func:`pyvrrp.configfile.check_environment`.

``pyvrrp check --host`` prints them as problems (exit 2); the daemon logs them as warnings
at start and at each reload, since what is missing now may appear later (an interface
created after pyvrrp starts).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyvrrp.configfile import check_environment
from pyvrrp.core.config import InstanceConfig, NodeConfig, Problem, RouteConfig, key_path
from pyvrrp.runtime.netlink import Netlink, open_netlink

__all__ = ["check_host", "check_host_now"]


def _interface_problem(name: str, what: str) -> str:
    return (
        f"interface {name} does not exist on this host ({what}); create it, or correct the "
        "name (`ip link show` lists the interfaces)"
    )


async def _check_instance(
    path: str, instance: InstanceConfig, netlink: Netlink, problems: list[Problem]
) -> None:
    interface_exists = await netlink.link(instance.interface) is not None
    if not interface_exists:
        problems.append(
            Problem(
                key_path(path, "interface"),
                _interface_problem(instance.interface, "the instance cannot start"),
            )
        )
    for index, track in enumerate(instance.track_interfaces):
        if await netlink.link(track.name) is None:
            why = (
                "the instance stays in FAULT"
                if track.weight == 0
                else f"its weight {track.weight} applies as if it were down"
            )
            problems.append(
                Problem(
                    f"{key_path(path, 'track_interfaces')}[{index}]",
                    _interface_problem(track.name, why),
                )
            )
    for key, addresses in (
        ("addresses", instance.addresses),
        ("excluded_addresses", instance.excluded_addresses),
    ):
        for index, address in enumerate(addresses):
            await _check_dev(
                f"{key_path(path, key)}[{index}].dev",
                address.dev,
                f"{address.address} cannot be added",
                netlink,
                problems,
            )
    await _check_routes(
        key_path(path, "virtual_routes"), instance.virtual_routes, netlink, problems
    )
    source = instance.unicast_source
    if source is not None and interface_exists:
        mine = [a.ip for a in await netlink.addresses(instance.interface)]
        if source not in mine:
            have = ", ".join(str(a) for a in mine) or "none"
            problems.append(
                Problem(
                    key_path(path, "unicast_source"),
                    f"{source} is not an address of {instance.interface} (its addresses: "
                    f"{have}); advertisements would leave from an address this host does not "
                    "have; write one of its addresses, or add it to the interface",
                )
            )


async def _check_routes(
    path: str, routes: Sequence[RouteConfig], netlink: Netlink, problems: list[Problem]
) -> None:
    for index, route in enumerate(routes):
        await _check_dev(
            f"{path}[{index}].dev",
            route.dev,
            f"the route to {route.to} cannot be added",
            netlink,
            problems,
        )


async def _check_dev(
    path: str, dev: str | None, what: str, netlink: Netlink, problems: list[Problem]
) -> None:
    """A problem at ``path`` when an item's ``dev`` (if any) is not an interface here."""
    if dev is not None and await netlink.link(dev) is None:
        problems.append(Problem(path, _interface_problem(dev, what)))


async def check_host(config: NodeConfig, netlink: Netlink) -> list[Problem]:
    """Every problem ``config`` has on this host (see the module docstring), in file order:
    the files and accounts first, then each instance's interfaces, routes and source
    address, then the static routes."""
    problems = check_environment(config)
    for name, instance in config.instances.items():
        await _check_instance(key_path("instances", name), instance, netlink, problems)
    await _check_routes("routes", config.routes, netlink, problems)
    return problems


async def check_host_now(config: NodeConfig) -> list[Problem]:
    """:func:`check_host` with a netlink connection of its own (reads only: no privilege
    needed), for ``pyvrrp check --host``."""
    async with open_netlink() as netlink:
        return await check_host(config, netlink)

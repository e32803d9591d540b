"""Netlink: addresses, routes, rules and link/address events.

The package decides nothing: it adds and removes what the driver asks for, answers questions
about interfaces, and forwards the kernel's link and address notifications as events.

=========================  ===============================================================
module                     what it holds
=========================  ===============================================================
``contract``               values, the :class:`Netlink` protocol, errors, the event hub (no
                           kernel library: the fakes in :mod:`pyvrrp.testing` use this alone)
``kernel``                 :class:`PyrouteNetlink`, the real thing: owner thread, addresses
                           on trio's thread
``requests``               the pyroute2 requests the owner thread makes (reads, dumps,
                           routes, rules)
``rtnl``                   address messages and link/address notifications encoded by hand
``monitor``                the task turning the kernel's notifications into events
``netns``                  :func:`enter_netns`, :func:`in_netns`
=========================  ===============================================================

Every name is importable from here. Importing the contract does not import pyroute2: the
kernel-side names (:class:`PyrouteNetlink`, :func:`open_netlink`) load it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyvrrp.runtime.netlink import contract
from pyvrrp.runtime.netlink.contract import *  # noqa: F403  (contract.__all__, re-exported)
from pyvrrp.runtime.netlink.netns import enter_netns, in_netns

if TYPE_CHECKING:
    from pyvrrp.runtime.netlink.kernel import PyrouteNetlink, open_netlink

# The contract's names (in step by construction; ruff cannot see they are strings), then the
# kernel side's, loaded lazily by __getattr__, and the netns helpers.
__all__ = [  # noqa: PLE0604
    *contract.__all__,
    "PyrouteNetlink",
    "enter_netns",
    "in_netns",
    "open_netlink",
]

_KERNEL = frozenset({"PyrouteNetlink", "open_netlink"})


def __getattr__(name: str) -> Any:
    # PEP 562: the kernel side (and pyroute2 with it) loads only when asked for.
    if name in _KERNEL:
        from pyvrrp.runtime.netlink import kernel

        return getattr(kernel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

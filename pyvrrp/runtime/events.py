"""``pyvrrp events``: transitions and priority changes as a stream of JSON lines.

The node publishes each transition and each change of an instance's effective priority on
an :class:`EventBus`, as JSON-able objects::

    {"type": "transition", "time": 1765000000.123, "instance": "vip58", "vrid": 58,
     "interface": "eth0.4000", "from": "BACKUP", "to": "MASTER", "cause": "master_down",
     "reason": "no advertisement for 3.6 s", "priority": 100}
    {"type": "priority", "time": 1765000000.456, "instance": "vip58", "vrid": 58,
     "interface": "eth0.4000", "from": 100, "to": 40,
     "reason": "40 = 100 base - 60 chk_nginx_ingress (bad)"}

``time`` is the wall clock (seconds since the epoch). Publishing never blocks and never
grows memory without bound: each subscriber has a queue of :data:`SUBSCRIBER_QUEUE` events,
and one that falls that far behind is cut off. On the control socket
(``{"command": "events"}``), :func:`stream_events` answers ``{"ok": true, "result":
{"events": "subscribed"}}``, then writes one line per event until the client leaves or the
daemon stops; a client cut off for being slow gets a last line ``{"type": "error", "code":
"overflow", "error": "..."}``. The command line's side is
:func:`pyvrrp.runtime.eventsclient.receive_events`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from typing import Any, Final

import trio

__all__ = [
    "SUBSCRIBER_QUEUE",
    "EventBus",
    "overflow_error",
    "Subscription",
    "priority_event",
    "stream_events",
    "transition_event",
]

Event = Mapping[str, Any]

SUBSCRIBER_QUEUE: Final = 1024
"""Events waiting for one subscriber before it is cut off."""
SEND_TIMEOUT: Final = 5.0
"""Seconds a client has to take one line; one that takes nothing for that long is gone."""


def _header(
    kind: str, instance: str, vrid: int, interface: str, wall: float | None
) -> dict[str, Any]:
    """The fields every event starts with, in the order the stream shows them."""
    return {
        "type": kind,
        "time": round(time.time() if wall is None else wall, 3),
        "instance": instance,
        "vrid": vrid,
        "interface": interface,
    }


def transition_event(
    *,
    instance: str,
    vrid: int,
    interface: str,
    old: str,
    new: str,
    cause: str,
    reason: str,
    priority: int,
    wall: float | None = None,
) -> dict[str, Any]:
    """A transition as the stream shows it; ``wall`` defaults to now."""
    return {
        **_header("transition", instance, vrid, interface, wall),
        "from": old,
        "to": new,
        "cause": cause,
        "reason": reason,
        "priority": priority,
    }


def priority_event(
    *,
    instance: str,
    vrid: int,
    interface: str,
    old: int,
    new: int,
    reason: str,
    wall: float | None = None,
) -> dict[str, Any]:
    """A change of effective priority as the stream shows it; ``wall`` defaults to now."""
    return {
        **_header("priority", instance, vrid, interface, wall),
        "from": old,
        "to": new,
        "reason": reason,
    }


class Subscription:
    """One subscriber's queue; iterate :attr:`receive`. ``overflowed`` tells, once it ends,
    that it was cut off for falling behind rather than closed."""

    def __init__(self, bus: EventBus, queue: int) -> None:
        self._bus = bus
        self.queue = queue
        self._send, self.receive = trio.open_memory_channel[Event](queue)
        self.overflowed = False

    def _offer(self, event: Event) -> bool:
        """Queue ``event``; False once this subscriber is gone (cut off or closed)."""
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.overflowed = True
            self._send.close()
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    def close(self) -> None:
        """Stop receiving (the subscriber left)."""
        self._bus._subscriptions.discard(self)
        self._send.close()
        self.receive.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fans events out to subscribers, each with a bounded queue (see the module docstring)."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self.published = 0
        self.cut_off = 0
        """Subscribers cut off for falling behind."""

    @property
    def subscribers(self) -> int:
        """How many subscribers there are now."""
        return len(self._subscriptions)

    def subscribe(self, queue: int = SUBSCRIBER_QUEUE) -> Subscription:
        """A subscription to every event from now on; use it as a context manager."""
        subscription = Subscription(self, queue)
        self._subscriptions.add(subscription)
        return subscription

    def publish(self, event: Event) -> None:
        """Give ``event`` to every subscriber; never blocks."""
        self.published += 1
        for subscription in list(self._subscriptions):
            if not subscription._offer(event):
                self._subscriptions.discard(subscription)
                self.cut_off += subscription.overflowed


def _line(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def overflow_error(queue: int) -> str:
    """The message of the last line a subscriber cut off for falling behind gets."""
    return (
        f"pyvrrp cut off this events stream: the client fell {queue} events behind; read "
        "faster, or subscribe again (events in between are lost)"
    )


async def stream_events(
    subscription: Subscription, stream: trio.abc.Stream, *, send_timeout: float = SEND_TIMEOUT
) -> None:
    """Serve one ``events`` client until it leaves, is cut off, or the daemon stops."""
    with subscription:

        async def send(value: Mapping[str, Any]) -> bool:
            with trio.move_on_after(send_timeout):
                await stream.send_all(_line(value))
                return True
            return False  # not taking anything: the client is stuck or gone

        async with trio.open_nursery() as nursery:

            async def watch_client() -> None:
                # A client that closes its end is noticed now, not at the next event.
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    while await stream.receive_some(4096):
                        pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch_client)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                if await send({"ok": True, "result": {"events": "subscribed"}}):
                    async for event in subscription.receive:
                        if not await send(event):
                            break
                    else:
                        if subscription.overflowed:
                            message = overflow_error(subscription.queue)
                            await send({"type": "error", "code": "overflow", "error": message})
            nursery.cancel_scope.cancel()

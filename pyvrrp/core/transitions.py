"""The state machine's allowed transitions, as data (h11's ``_state.py`` does the same).

:data:`TRANSITIONS` maps every (old state, new state) pair the router may take to the causes
that may take it there. :class:`~pyvrrp.core.router.VirtualRouter` checks each change
against it in one place (``_set_state``), so a transition no rule of RFC 9568 §6.4 (or of
keepalived's FAULT state) allows is a :class:`~pyvrrp.core.errors.UsageError`, not a silent
state. :func:`render_table` writes the table into docs/design.md; a unit test keeps the two
equal.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pyvrrp.core.actions import Cause, State
from pyvrrp.core.errors import UsageError

# Entering FAULT: a tracker failed, the operator asked for maintenance, or the sync group
# holds the router there (keepalived's FAULT; RFC 9568 has no such state).
_FAULT_CAUSES = frozenset({Cause.FAULT, Cause.MAINTENANCE, Cause.SYNC_GROUP})

TRANSITIONS: Mapping[tuple[State, State], frozenset[Cause]] = MappingProxyType(
    {
        # RFC 9568 §6.4.1: Startup.
        (State.INITIALIZE, State.BACKUP): frozenset({Cause.STARTUP}),
        (State.INITIALIZE, State.MASTER): frozenset({Cause.OWNER}),
        (State.INITIALIZE, State.FAULT): _FAULT_CAUSES,
        # RFC 9568 §6.4.2: Master_Down_Timer fires (the master went silent, sent priority 0,
        # or is preempted); or the sync group follows another member.
        (State.BACKUP, State.MASTER): frozenset(
            {Cause.MASTER_DOWN, Cause.MASTER_LEFT, Cause.PREEMPT, Cause.SYNC_GROUP}
        ),
        (State.BACKUP, State.FAULT): _FAULT_CAUSES,
        (State.BACKUP, State.INITIALIZE): frozenset({Cause.SHUTDOWN}),
        # RFC 9568 §6.4.3: a higher priority is heard; or the sync group yields.
        (State.MASTER, State.BACKUP): frozenset({Cause.HIGHER_PRIORITY, Cause.SYNC_GROUP}),
        (State.MASTER, State.FAULT): _FAULT_CAUSES,
        (State.MASTER, State.INITIALIZE): frozenset({Cause.SHUTDOWN}),
        # Leaving FAULT is a restart (an owner takes over at once, as at Startup).
        (State.FAULT, State.BACKUP): frozenset({Cause.RECOVERED}),
        (State.FAULT, State.MASTER): frozenset({Cause.RECOVERED}),
        (State.FAULT, State.INITIALIZE): frozenset({Cause.SHUTDOWN}),
    }
)


def check_transition(old: State, new: State, cause: Cause) -> None:
    """Raise :class:`UsageError` unless :data:`TRANSITIONS` allows ``old -> new`` for ``cause``."""
    if cause not in TRANSITIONS.get((old, new), frozenset()):
        raise UsageError(f"transition {old.name} -> {new.name} for {cause.value} is not allowed")


def render_table() -> str:
    """:data:`TRANSITIONS` as the Markdown table docs/design.md shows (one row per pair)."""
    order = list(State)
    lines = ["| from | to | causes |", "|---|---|---|"]
    for old, new in sorted(
        TRANSITIONS, key=lambda pair: (order.index(pair[0]), order.index(pair[1]))
    ):
        causes = ", ".join(f"`{c.value}`" for c in Cause if c in TRANSITIONS[old, new])
        lines.append(f"| {old.name} | {new.name} | {causes} |")
    return "\n".join(lines) + "\n"

"""Sync groups: members of a group change state together (keepalived's vrrp_sync_group).

- While any member is in FAULT for a reason of its own (a tracker or maintenance), every other
  member is held in FAULT too.
- When a member becomes MASTER on its own account, the members in BACKUP become MASTER too.
- When a MASTER member yields to a higher priority (BACKUP), the other masters yield too.

Transitions a member makes *because* of its group (cause SYNC_GROUP) are not propagated
again, so the group cannot ping-pong. The function is pure: the runtime calls it after every
event a member handled and delivers the returned events to the other members.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyvrrp.core.actions import Cause, State, StateChanged
from pyvrrp.core.events import Event, SyncFault, SyncState
from pyvrrp.core.router import VirtualRouter


def sync_events(
    group: str,
    members: Mapping[str, VirtualRouter],
    member: str,
    changes: Sequence[StateChanged] = (),
) -> list[tuple[str, Event]]:
    """What the other members of ``group`` must be told after ``member`` handled an event.

    ``members`` maps every member's name to its router; ``changes`` are the state changes
    ``member`` just made (possibly none: a fault can clear while a router stays in FAULT).
    """
    events: list[tuple[str, Event]] = []
    own = {name for name, router in members.items() if router.own_fault}
    for name, router in members.items():
        others = sorted(own - {name})
        if bool(others) != router.sync_fault:
            reason = f"sync group {group}: {', '.join(others)} in FAULT" if others else ""
            planned = all(members[o].planned_fault for o in others)
            events.append((name, SyncFault(bool(others), reason, planned)))
    for change in changes:
        if change.cause is Cause.SYNC_GROUP:
            continue
        if change.new is State.MASTER:
            follow, target = State.BACKUP, State.MASTER
        elif change.old is State.MASTER and change.new is State.BACKUP:
            follow, target = State.MASTER, State.BACKUP
        else:
            continue
        reason = f"sync group {group}: {member} became {target.value}"
        events.extend(
            (name, SyncState(target, reason))
            for name, router in members.items()
            if name != member and router.state is follow
        )
    return events

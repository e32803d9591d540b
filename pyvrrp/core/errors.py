"""The one error the core raises when it is used against its contract.

Two kinds of trouble reach the core, and they are kept apart as h11 keeps its local and
remote protocol errors apart:

- what a peer sends is checked by :func:`pyvrrp.core.packet.decode`, which reports it as a
  ``DecodeError`` (a packet to count and drop, never an exception that escapes the router);
- what the program using the core asks of it (parameters out of range, an event in a state
  that cannot take it, a transition the state machine does not allow, an advertisement that
  cannot be encoded) is a :class:`UsageError`: a bug in the caller, or in the core itself.

``UsageError`` is a ``ValueError`` so that callers written against the earlier mix of
``ValueError`` and ``RouterError`` keep working.
"""

from __future__ import annotations


class UsageError(ValueError):
    """The core was used in a way its contract forbids (a bug in the caller, not a peer)."""

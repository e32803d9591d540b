"""Errors the runtime reports to the user rather than crashing on."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["EnvironmentProblem", "UnknownInstance"]


class EnvironmentProblem(Exception):
    """The host lacks something pyvrrp needs (an interface, a capability, a kernel feature).

    The message says what is missing and what to do; the daemon exits with status 3.
    """


class UnknownInstance(Exception):
    """A request named instances the daemon does not have.

    ``names`` are the unknown names as given, ``known`` every instance the daemon runs.
    """

    def __init__(self, names: Sequence[str], known: Sequence[str]) -> None:
        self.names = tuple(names)
        self.known = tuple(known)
        plural = "s" if len(self.names) > 1 else ""
        instances = ", ".join(self.known) if self.known else "none configured"
        super().__init__(
            f"unknown instance{plural} {', '.join(self.names)} (instances: {instances})"
        )

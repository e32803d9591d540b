"""Errors the runtime reports to the user rather than crashing on."""

from __future__ import annotations


class EnvironmentProblem(Exception):
    """The host lacks something pyvrrp needs (an interface, a capability, a kernel feature).

    The message says what is missing and what to do; the daemon exits with status 3.
    """

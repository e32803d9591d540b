"""Fixtures shared by the netns tests that run the seed cluster under pyvrrp as it is.

A module gets its own lab (module scope: building one takes seconds), reset before each test.
Modules that need another cluster or daemon mix define their own ``lab`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from nslab import Lab, seed_cluster

from tests.netns.labtools import running_lab


@pytest.fixture(scope="module")
def seed_lab() -> Iterator[Lab]:
    """The seed cluster running pyvrrp on every node, for the whole module."""
    yield from running_lab(seed_cluster(), "pyvrrp")


@pytest.fixture
def lab(seed_lab: Lab) -> Lab:
    """The module's seed lab, back to the seed table with the default configs."""
    seed_lab.reset("pyvrrp", timeout=40, default_configs=True)
    return seed_lab

"""Fixtures of the runtime tests."""

from __future__ import annotations

import pytest
import trio

from tests.runtime.cluster import Cluster


@pytest.fixture
async def cluster(nursery: trio.Nursery) -> Cluster:
    """A :class:`Cluster` in pytest-trio's per-test nursery: its nodes (and LAN) are
    cancelled, as by a crash, when the test ends. Request ``autojump_clock`` for virtual
    time; the fixture is made at the test's start, so ``cluster.t0`` is the test's t0."""
    return Cluster(nursery)

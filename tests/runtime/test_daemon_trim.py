"""The daemon gives the C heap's free pages back to the kernel once started (glibc)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pyvrrp.runtime import daemon

ROOT = Path(__file__).parents[2]

# 20 MB of 4 kB objects on the C heap (over 512 bytes: malloc's, not CPython's small-object
# allocator), all freed but the last: it pins the heap's top, so free() alone returns
# nothing to the kernel. Then RssAnon (kB) before and after the daemon's trim.
_FREED_HEAP = """
import sys
from pyvrrp.runtime.daemon import _trim_heap

def anonymous_kib():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("RssAnon:"))

blocks = [bytes(4096) for _ in range(5000)]
pin = blocks[-1]
del blocks
before = anonymous_kib()
_trim_heap()
print(before - anonymous_kib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_heap_pages_go_back_to_the_kernel() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _FREED_HEAP],
        capture_output=True,
        check=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert int(out.stdout) > 10_000  # kB: most of the 20 MB freed


def test_a_c_library_without_malloc_trim_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes

    class NoTrim:
        pass

    monkeypatch.setattr(ctypes, "CDLL", lambda name: NoTrim())
    daemon._trim_heap()  # musl: no malloc_trim, nothing to do

"""dpx.heap.trim gives the pages of freed heap memory back: numpy arrays below glibc's mmap
threshold live in the heap, and freeing them leaves the process as large as before."""
from __future__ import annotations

import platform

import numpy as np
import pytest

from dpx import heap


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(platform.system() != "Linux" or heap._malloc_trim() is None,
                    reason="glibc's malloc_trim (Linux)")
def test_trim_returns_freed_heap_pages():
    arrays = [np.ones(8000) for _ in range(10000)]  # 64 KB each: 640 MB of heap
    pin = np.ones(8000)  # allocated last: the heap's top stays in use
    before = rss_mb()
    del arrays
    freed = rss_mb()
    heap.trim()
    after = rss_mb()
    assert freed > before - 200, "glibc gave the pages back by itself: nothing to test"
    assert after < freed - 400
    del pin

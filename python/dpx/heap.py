"""Freed heap memory given back to the system. glibc keeps what Python, numpy and torch free
in its arenas for reuse, so a stage that held hundreds of MB (the statistics samples of
thousands of systems) would leave the process that large for the rest of the run, and under
torchrun rank 0, which runs the statistics, larger than the other ranks."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def trim() -> None:
    """Return the free pages of every arena to the system (a no-op without glibc)."""
    fn = _malloc_trim()
    if fn is not None:
        fn(0)

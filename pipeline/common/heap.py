"""Returning freed memory to the operating system between batches.

glibc's allocator keeps pages freed by Python (large bodies, a batch's archive blob) for
reuse, so without this an instance's resident memory stays at the largest batch it has
seen and creeps up as the heap fragments (bench/pipeline.py measures it). `malloc_trim`
gives them back; it costs a few milliseconds per batch. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
_loaded = False


def release() -> None:
    global _trim, _loaded
    if not _loaded:
        _loaded = True
        if sys.platform.startswith("linux"):
            try:
                _trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
            except (OSError, AttributeError):  # musl and others have no malloc_trim
                _trim = None
    if _trim is not None:
        _trim(0)

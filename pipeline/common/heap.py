"""The heap: freed memory returned to the operating system between batches, and the cyclic
garbage collector paused while a batch or a document is built.

glibc's allocator keeps pages freed by Python (large bodies, a batch's archive blob) for
reuse, so without this an instance's resident memory stays at the largest batch it has
seen and creeps up as the heap fragments (bench/pipeline.py measures it). `malloc_trim`
gives them back; it costs a few milliseconds per batch. Elsewhere than glibc it does nothing.

The collector runs every 700 allocations of containers and traverses the young ones, and now
and then the whole heap. A transform makes tens of thousands of objects that all live until
its rows are written, and no reference cycles (its objects go by their reference counts): the
collector found nothing in any bench case, and cost about 6 % of an event of small records. A
document of containers (a sender's `[[[[...]]]]`, two bytes a list) is worse: 1 MB of nested
lists decoded in 200 ms with it, 45 ms without (bench/adversarial.py, envelope).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector paused for the block. Left alone when it is off already (by its
    owner, or by another thread in such a block now: that one turns it back on)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()

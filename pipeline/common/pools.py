"""Thread pools for work that waits on the network, not the GIL: each made once per process,
on first use, and found again by its name (a Function instance reuses its threads across
batches). A pool's tasks never give tasks to the same pool, so none can deadlock."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

_POOLS: dict[str, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def pool(name: str, workers: int) -> ThreadPoolExecutor:
    with _LOCK:
        found = _POOLS.get(name)
        if found is None:
            found = _POOLS[name] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        return found

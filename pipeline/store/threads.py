"""The threads a batch's storage requests run on side by side: they wait on the network, not
the GIL. One pool per process (a Function instance runs one batch per partition lease at a
time); tasks given to it never give it tasks of their own, so it cannot deadlock."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

# Requests in flight at once: a partition's transactions, a batch's dead letters.
WORKERS = 8

_POOL: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


def pool() -> ThreadPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="storage")
        return _POOL


def each(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """`fn` of every item, side by side when there are several: results in order; the first
    failure raises as its result is reached, and the items not started yet are not."""
    items = list(items)
    if len(items) <= 1:
        return iter([fn(item) for item in items])
    return pool().map(fn, items)

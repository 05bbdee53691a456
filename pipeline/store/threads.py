"""A batch's storage requests side by side, on the process's `storage` threads
(common/pools.py): they wait on the network, not the GIL. Tasks given to it never give it
tasks of their own, so it cannot deadlock."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from pipeline.common import pools

T = TypeVar("T")
R = TypeVar("R")

# Requests in flight at once: a partition's transactions, a batch's dead letters.
WORKERS = 8


def each(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """`fn` of every item, side by side when there are several: results in order; the first
    failure raises as its result is reached, and the items not started yet are not."""
    items = list(items)
    if len(items) <= 1:
        return iter([fn(item) for item in items])
    return pools.pool("storage", WORKERS).map(fn, items)

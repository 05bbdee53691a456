"""Timing for tests that bound a cost against a benign input measured in the same test."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(fn: Callable[[], object], runs: int = 3) -> float:
    """The fastest of `runs` runs of `fn`, in seconds: the least disturbed by other work."""
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best

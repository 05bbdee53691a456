"""The one retry policy of storage requests: which failures are transient, how long a throttled
account asks us to wait (Retry-After), and the retrying call itself.

The SDKs' own retries are off (`retry_total=0`), so every request of a Store goes through
`RetryPolicy.call` and is counted in one place.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

log = logging.getLogger("pipeline.store.retry")
T = TypeVar("T")

# Worth another try: throttling, timeouts, server errors, dropped connections.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True  # connection refused, reset, or timed out
    if isinstance(exc, HttpResponseError):
        return exc.status_code in TRANSIENT_STATUS
    return isinstance(exc, ConnectionError | TimeoutError | http.client.HTTPException)


def retry_after(exc: BaseException, now: float | None = None) -> float:
    """Seconds a throttled (429/503) response asks the client to wait, 0 when it does not say.

    Read from `x-ms-retry-after-ms` and `retry-after-ms` (milliseconds) and `Retry-After`
    (seconds, or an HTTP date, compared with `now`, epoch seconds, default the clock); when
    several are present, the longest wait wins. Unreadable values are ignored."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    try:
        found = {str(k).lower(): str(v).strip() for k, v in (headers or {}).items()}
    except (AttributeError, TypeError, ValueError):
        return 0.0
    waits = [0.0]
    for name, unit in (("x-ms-retry-after-ms", 0.001), ("retry-after-ms", 0.001)):
        with contextlib.suppress(ValueError):
            waits.append(float(found.get(name, "")) * unit)
    value = found.get("retry-after", "")
    try:
        waits.append(float(value))
    except ValueError:
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            when = parsedate_to_datetime(value)
            if when.tzinfo is None:  # "-0000": UTC, as HTTP dates always are
                when = when.replace(tzinfo=UTC)
            waits.append(when.timestamp() - (time.time() if now is None else now))
    return max(w for w in waits if w == w)  # NaN is not a wait


class RetryPolicy:
    """Exponential backoff with full jitter, never sooner than the service asks; `retries`
    counts the retries of every request made through it (several threads use one policy)."""

    def __init__(self, attempts: int, *, retry_base: float = 0.5, retry_cap: float = 15.0) -> None:
        self.attempts = attempts
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self.retries = 0
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, retried on transient storage failures.

        A request is never retried sooner than the service asks (`retry_after`): the wait is
        the longer of the backoff and the asked time. When the service asks for longer than
        `retry_cap`, the function does not sleep that long: it raises at once, and the
        trigger's retry policy delivers the batch again later (5 s to 5 min)."""
        for attempt in range(self.attempts):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if attempt + 1 >= self.attempts or not is_transient(exc):
                    raise
                asked = retry_after(exc)
                if asked > self.retry_cap:
                    log.warning(
                        "storage: %s asks to wait %.1fs, over the %.1fs cap: not retrying here",
                        type(exc).__name__,
                        asked,
                        self.retry_cap,
                    )
                    raise
                with self._lock:  # partitions are written from several threads
                    self.retries += 1
                delay = random.uniform(0, min(self.retry_cap, self.retry_base * 2**attempt))
                # A throttled account says when to come back; sooner would be throttled again.
                delay = max(delay, asked)
                log.warning(
                    "storage: %s on attempt %d, retrying in %.2fs",
                    type(exc).__name__,
                    attempt + 1,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

"""What `replay` reads, whatever its kind: the unit of work (`Input`), what could not be read
(`InputProblem`, `InputError`), the filters on a path's time and partition, and the bound on
one unit.

Every input is a unit of work (a file or a blob) with a stable key for `--resume`, a size for
the progress estimate, and a reader that yields `EventIn`s carrying the partition and
sequence number the trigger would have given them. One module per kind:

- files.py: `.json` (one body) and `.jsonl` (one body per line) files, and the chooser of
  local paths (a local `.avro` file is read as Capture);
- capture_avro.py: Event Hubs Capture `.avro` files, local or in a blob container;
- archive_blobs.py: our archive, each member an event marked as already archived;
- deadletter_blobs.py: dead letters, each blob one event.

Every byte is hostile (a client controls what APIM logs, any sender on the hub controls an
event, a Capture file or an archive blob can be damaged), so reading is streaming
(byte_streams.py), bounded (MAX_UNIT_BYTES) and keeps going: a damaged unit is reported
through `Report` (a message naming the input, the byte offset and what is wrong, never quoting
content) and reading goes on with the next one. Without `report` (e.g. `send`), the first
problem raises InputError.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.common.timestamps import parse_time
from pipeline.model import EventIn

MAX_UNIT_BYTES = 64 * 1024 * 1024
"""The most replay holds of one unit: a `.json` file, a `.jsonl` line, an Avro block
(compressed, and again inflated) or an archive gzip member (compressed, and again inflated).

Real units are far smaller: Event Hubs caps an event at 1 MB on its Standard and Premium
tiers, Capture writes blocks of a few events, an archive member is one log record. 64 MiB
leaves room for anything legitimate, while a unit that is (or inflates to) more than that,
such as a "zip bomb" (200 MB of zeros deflate to 200 KB), costs at most this much memory and
is reported as an error for its input instead of exhausting the process's memory. The readers
take a `limit` parameter (tests lower it)."""

Report = Callable[[str], None]
"""Told about a damaged part of an input (the message names the input); reading goes on."""

# Runs one storage request with retries (`Store.call`); inputs read through it when given one.
Caller = Callable[[Callable[[], Any]], Any]


class InputError(ValueError):
    """An input that cannot be read (further); the message names it."""


def fail_fast(message: str) -> None:
    """The `Report` of a reader given none: the first problem ends the input."""
    raise InputError(message)


def direct(fn: Callable[[], Any]) -> Any:
    """The `Caller` of an input read without retries."""
    return fn()


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def printable(name: str) -> str:
    """A file or blob name fit for a message: control characters (a terminal escape in a
    crafted name) become `?`, and so do lone surrogates (a file name that is not UTF-8, as
    Python reads it: no encoder takes them, in messages, origins or dead-letter names)."""
    return _UNPRINTABLE.sub("?", name)


def mib(n: int) -> str:
    """A size for a message: bytes, KiB or MiB."""
    if n >= 1048576:
        return f"{n / 1048576:g} MiB"
    return f"{n / 1024:g} KiB" if n >= 1024 else f"{n} bytes"


@dataclass(frozen=True, slots=True)
class InputProblem:
    """An input, or a part of one, that could not be read; `message` names it."""

    where: str
    message: str


@dataclass(frozen=True, slots=True)
class Input:
    """One file or blob. `fetch` opens it (run ahead in threads: a blob's first chunk is
    downloaded there), `events(fetched, report=None)` reads and decodes it."""

    key: str  # stable identity for --resume (path, or container/name@etag)
    label: str  # for messages
    size: int  # bytes, for the progress estimate
    fetch: Callable[[], Any]
    events: Callable[..., Iterator[EventIn]]
    # Told, once an event of this input is stored, whether it became a row (True) or a dead
    # letter again (False): dead letters replayed successfully are marked done.
    settle: Callable[[EventIn, bool], None] | None = None


@dataclass(frozen=True, slots=True)
class Filters:
    since: datetime | None = None  # inclusive, on the path's time
    until: datetime | None = None  # exclusive
    partitions: frozenset[str] = frozenset()

    def time_ok(self, t: datetime | None) -> bool:
        if t is None:
            return self.since is None and self.until is None
        return (self.since is None or t >= self.since) and (self.until is None or t < self.until)

    def partition_ok(self, partition: str | None) -> bool:
        return not self.partitions or partition in self.partitions


def stream_events(read: Callable[..., Iterator[EventIn]]) -> Callable[..., Iterator[EventIn]]:
    """`Input.events` for a byte stream: `read(chunks, report=...)` it, then close it."""

    def events(stream: Any, report: Report | None = None) -> Iterator[EventIn]:
        try:
            yield from read(stream.chunks(), report=report or fail_fast)
        finally:
            stream.close()

    return events


def parse_when(value: str) -> datetime:
    """--since / --until: a day (`2025-11-04`) or a time (`2025-11-04T10:00`), UTC."""
    t = parse_time(value if "T" in value or " " in value else value + "T00:00:00Z")
    if t is None:
        raise ValueError(f"{value!r} is not a date or time (YYYY-MM-DD[THH:MM])")
    return t

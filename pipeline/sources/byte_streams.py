"""An input's bytes, streaming and bounded: local files and blobs read in chunks, a buffer
over those chunks for the readers that resynchronise, and inflating with a bound.

- Files are read with `read()` in chunks of FILE_CHUNK, blobs with ranged reads of
  BLOB_CHUNK (each retried like any storage request, pinned to the ETag the listing gave, the
  next one downloaded while this one is parsed): an input is never held whole in memory.
- Inflating uses `zlib.decompressobj(...).decompress(data, max_length)`, so a "zip bomb" stops
  at the unit's bound and is an error for that unit, not a memory spike.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

from pipeline.common import pools
from pipeline.model import EventIn
from pipeline.sources.inputs import Caller, Input, InputError, printable, stream_events

FILE_CHUNK = 1024 * 1024  # bytes per read() of a local file
# Bytes per ranged read of a blob. Small, because azure-storage-blob (12.x) holds about nine
# bytes per byte of a read for a moment (it builds a `list()` of a response stream whose
# `len()` is its byte count: 8 bytes a slot): a 1 MiB read peaks at about 10 MB, a 4 MiB one
# at 40 MB, and a whole-blob `readall()` (32 MiB first request) at about 300 MB.
BLOB_CHUNK = 1024 * 1024


class FileStream:
    """A local file, read in chunks."""

    def __init__(self, path: Path, label: str, chunk: int) -> None:
        self.label, self.chunk = label, chunk
        try:
            self.file = path.open("rb")
        except OSError as exc:
            raise InputError(
                f"{label}: cannot read: {exc.strerror or type(exc).__name__}"
            ) from None

    def chunks(self) -> Iterator[bytes]:
        offset = 0
        while True:
            try:
                data = self.file.read(self.chunk)
            except OSError as exc:
                raise InputError(
                    f"{self.label}: cannot read at byte {offset}: "
                    f"{exc.strerror or type(exc).__name__}"
                ) from None
            if not data:
                return
            offset += len(data)
            yield data

    def close(self) -> None:
        self.file.close()


def _read_ahead() -> ThreadPoolExecutor:
    return pools.pool("read-ahead", 4)


class BlobStream:
    """A blob, read with ranged reads of `chunk` bytes, each retried through `call` and
    conditional on the listed ETag; the first is read when the stream is created (in a
    fetch thread), each next one while the previous is parsed."""

    def __init__(
        self,
        container: Any,
        name: str,
        size: int,
        etag: str | None,
        label: str,
        call: Caller,
        chunk: int,
    ) -> None:
        self.container, self.name, self.size, self.etag = container, name, size, etag
        self.label, self.call, self.chunk = label, call, chunk
        self.first = self._read(0) if size > 0 else b""

    def _read(self, offset: int) -> bytes:
        length = min(self.chunk, self.size - offset)
        condition: dict[str, Any] = (
            {"etag": self.etag, "match_condition": MatchConditions.IfNotModified}
            if self.etag
            else {}
        )
        try:
            return bytes(
                self.call(
                    lambda: self.container.download_blob(
                        self.name, offset=offset, length=length, **condition
                    ).readall()
                )
            )
        except ResourceNotFoundError:
            raise InputError(f"{self.label}: the blob no longer exists") from None
        except ResourceModifiedError:
            raise InputError(
                f"{self.label}: the blob changed since it was listed (its ETag); list it again"
            ) from None

    def chunks(self) -> Iterator[bytes]:
        first, self.first = self.first, b""
        offset = len(first)
        ahead = _read_ahead().submit(self._read, offset) if 0 < offset < self.size else None
        if first:
            yield first
        while ahead is not None:
            data = ahead.result()
            if not data:
                return
            offset += len(data)
            ahead = _read_ahead().submit(self._read, offset) if offset < self.size else None
            yield data

    def close(self) -> None:
        self.first = b""


def blob_input(
    container: Any, blob: Any, call: Caller, chunk: int, read: Callable[..., Iterator[EventIn]]
) -> Input:
    """The `Input` of a listed blob, streamed: `read(chunks, label=..., report=...)` decodes it."""
    name, size, etag = blob.name, blob.size or 0, blob.etag
    label = printable(f"{container.container_name}/{name}")

    def fetch() -> BlobStream:
        return BlobStream(container, name, size, etag, label, call, chunk)

    key = f"blob:{container.container_name}/{name}@{etag}"
    return Input(key, label, size, fetch, stream_events(partial(read, label=label)))


def listed_inputs(
    container: Any,
    prefix: str,
    pick: Callable[[str], Callable[..., Iterator[EventIn]] | None],
    call: Caller,
    chunk: int,
) -> Iterator[Input]:
    """The blobs under a prefix, in listing order (oldest first for time-named paths), that
    `pick` gives a reader for: the others are not replayed."""
    for blob in container.list_blobs(name_starts_with=prefix or None):
        read = pick(blob.name)
        if read is not None:
            yield blob_input(container, blob, call, chunk, read)


class Buffer:
    """The bytes of a chunk stream from `base` on, read on demand; `drop` forgets the bytes
    before a position. Holds what the reader still needs plus one chunk."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buf = bytearray()
        self.base = 0
        self.eof = False

    @property
    def end(self) -> int:
        """Bytes read from the stream so far."""
        return self.base + len(self._buf)

    def _more(self) -> bool:
        if not self.eof:
            for chunk in self._chunks:
                if chunk:
                    self._buf += chunk
                    return True
            self.eof = True
        return False

    def get(self, pos: int, n: int) -> bytes:
        """`n` bytes from `pos` (fewer only at the end of the stream)."""
        while self.end < pos + n and self._more():
            pass
        i = pos - self.base
        return bytes(self._buf[i : i + n])

    def some(self, pos: int, most: int) -> bytes:
        """At least one byte from `pos` and at most `most`; empty at the end of the stream."""
        while self.end <= pos and self._more():
            pass
        i = pos - self.base
        return bytes(self._buf[i : i + most])

    def at_end(self, pos: int) -> bool:
        return not self.some(pos, 1)

    def held(self, needle: bytes, start: int, end: int) -> int:
        """Position of `needle` within [start, end) among the bytes held (none read, none
        forgotten), or -1."""
        i = self._buf.find(needle, max(start - self.base, 0), max(end - self.base, 0))
        return self.base + i if i >= 0 else -1

    def drop(self, pos: int) -> None:
        n = min(pos - self.base, len(self._buf))
        if n > 0:
            del self._buf[:n]
            self.base += n

    def find(self, needle: bytes, start: int) -> int:
        """Position of `needle` at or after `start`, or -1; forgets the bytes before it."""
        pos = start
        while True:
            i = self._buf.find(needle, pos - self.base)
            if i >= 0:
                self.drop(self.base + i)
                return self.base
            pos = max(start, self.end - len(needle) + 1)
            self.drop(pos)
            if not self._more():
                return -1


class Damaged(Exception):
    """A unit that cannot be read; `fed` counts the bytes spent finding out."""

    def __init__(self, why: str, fed: int = 0) -> None:
        super().__init__(why)
        self.why, self.fed = why, fed


def inflate(d: Any, data: bytes, room: int) -> tuple[bytes, int]:
    """Inflate `data` with `d`, at most `room` + 1 bytes out: (output, input bytes used)."""
    out: list[bytes] = []
    total = used = 0
    while data:
        try:
            piece = d.decompress(data, room + 1 - total)
        except zlib.error as exc:
            raise Damaged(f"not valid deflate data: {exc}", used) from None
        out.append(piece)
        total += len(piece)
        if d.eof:
            used += len(data) - len(d.unused_data)
            break
        used += len(data) - len(d.unconsumed_tail)
        data = d.unconsumed_tail
        if total > room:
            break
    return b"".join(out), used

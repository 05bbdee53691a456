"""What `replay` reads: recorded event bodies, Event Hubs Capture files, our own archive.

Every input is a unit of work (a file or a blob) with a stable key for `--resume`, a size for
the progress estimate, and a reader that yields `EventIn`s carrying the partition and
sequence number the trigger would have given them.

- `.json` (one body) and `.jsonl` (one body per line) files.
- Event Hubs Capture `.avro` files (formats.md §4; `null` and `deflate` codecs), local or in a
  blob container; the partition and the window's time come from the Capture path
  `{namespace}/{hub}/{partition}/{yyyy}/{MM}/{dd}/{HH}/{mm}/{ss}.avro`.
- Our archive (`yyyy/MM/dd/HH/<sha>.jsonl.gz`): each member becomes an event marked as
  already archived, so replaying it never writes a second raw blob.

Every byte is hostile (a client controls what APIM logs, any sender on the hub controls an
event, a Capture file or an archive blob can be damaged), so reading is streaming, bounded
and keeps going:

- Files are read with `read()` in chunks of FILE_CHUNK, blobs with ranged reads of
  BLOB_CHUNK (each retried like any storage request, pinned to the ETag the listing gave, the
  next one downloaded while this one is parsed): an input is never held whole in memory.
- One unit (a `.json` file, a `.jsonl` line, an Avro block compressed or inflated, an archive
  gzip member compressed or inflated) is at most MAX_UNIT_BYTES: inflating uses
  `zlib.decompressobj(...).decompress(data, max_length)`, so a "zip bomb" stops there and is
  an error for that unit, not a memory spike.
- A damaged unit is reported through `report` (a message naming the input, the byte offset
  and what is wrong, never quoting content) and reading goes on with the next one: the next
  line; the next Avro block, found again by the file's 16-byte sync marker; the next archive
  member, found again by the gzip header `1f 8b 08 00` (linear: at most RESYNC_WORK times
  the bytes read are spent on candidates that fail, else the rest of the blob is reported as
  not read). Without `report` (e.g. `send`), the first problem raises InputError.
"""

from __future__ import annotations

import io
import re
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

from pipeline.common.timestamps import parse_time
from pipeline.model import EventIn, RawPointer
from pipeline.protect import archive

EVENT_SUFFIXES = (".json", ".jsonl", ".avro")
_CAPTURE_PATH = re.compile(
    r"(?:^|/)(?P<partition>[^/]+)/(?P<y>\d{4})/(?P<mo>\d{2})/(?P<d>\d{2})/(?P<h>\d{2})/"
    r"(?P<mi>\d{2})/(?P<s>\d{2})\.avro$"
)
_ARCHIVE_PATH = re.compile(
    r"(?:^|/)(?P<y>\d{4})/(?P<mo>\d{2})/(?P<d>\d{2})/(?P<h>\d{2})/[^/]+\.jsonl\.gz$"
)

MAX_UNIT_BYTES = 64 * 1024 * 1024
"""The most replay holds of one unit: a `.json` file, a `.jsonl` line, an Avro block
(compressed, and again inflated) or an archive gzip member (compressed, and again inflated).

Real units are far smaller: Event Hubs caps an event at 1 MB on its Standard and Premium
tiers, Capture writes blocks of a few events, an archive member is one log record. 64 MiB
leaves room for anything legitimate, while a unit that is (or inflates to) more than that,
such as a "zip bomb" (200 MB of zeros deflate to 200 KB), costs at most this much memory and
is reported as an error for its input instead of exhausting the process's memory. The readers
take a `limit` parameter (tests lower it)."""

FILE_CHUNK = 1024 * 1024  # bytes per read() of a local file
# Bytes per ranged read of a blob. Small, because azure-storage-blob (12.x) holds about nine
# bytes per byte of a read for a moment (it builds a `list()` of a response stream whose
# `len()` is its byte count: 8 bytes a slot): a 1 MiB read peaks at about 10 MB, a 4 MiB one
# at 40 MB, and a whole-blob `readall()` (32 MiB first request) at about 300 MB.
BLOB_CHUNK = 1024 * 1024
MAX_AVRO_HEADER = 1024 * 1024  # an Avro header (schema and codec) larger than this is damage
# Archive resynchronisation: bytes fed to candidate members that fail, at most RESYNC_WORK per
# byte read plus RESYNC_SLACK; past that the rest of the blob is reported as not read.
RESYNC_WORK = 2
RESYNC_SLACK = 1024 * 1024
# How each archive member starts: the gzip ID (1f 8b), CM = deflate (08) and FLG = 0 (archive.py
# writes no optional header fields; a candidate with flags could read a "file name" to the end
# of the blob before failing).
GZIP_MAGIC = b"\x1f\x8b\x08\x00"

Report = Callable[[str], None]
"""Told about a damaged part of an input (the message names the input); reading goes on."""


class InputError(ValueError):
    """An input that cannot be read (further); the message names it."""


def _fail_fast(message: str) -> None:
    raise InputError(message)


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(name: str) -> str:
    """A file or blob name fit for a message: control characters (a terminal escape in a
    crafted name) become `?`."""
    return _UNPRINTABLE.sub("?", name)


def _mib(n: int) -> str:
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


def capture_path(path: str) -> tuple[str | None, datetime | None]:
    """(partition, window time) of a Capture blob path, or (None, None)."""
    m = _CAPTURE_PATH.search(path.replace("\\", "/"))
    if not m:
        return None, None
    try:
        t = datetime(*(int(m.group(k)) for k in ("y", "mo", "d", "h", "mi", "s")), tzinfo=UTC)
    except ValueError:  # month 13, second 61...: not a Capture path
        return None, None
    return m.group("partition"), t


def archive_path_time(path: str) -> datetime | None:
    m = _ARCHIVE_PATH.search(path)
    if not m:
        return None
    try:
        return datetime(*(int(m.group(k)) for k in ("y", "mo", "d", "h")), tzinfo=UTC)
    except ValueError:
        return None


# --- byte streams -----------------------------------------------------------------------


class _FileStream:
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


_READ_AHEAD: ThreadPoolExecutor | None = None
_READ_AHEAD_LOCK = threading.Lock()


def _read_ahead() -> ThreadPoolExecutor:
    global _READ_AHEAD
    with _READ_AHEAD_LOCK:
        if _READ_AHEAD is None:
            _READ_AHEAD = ThreadPoolExecutor(max_workers=4, thread_name_prefix="read-ahead")
        return _READ_AHEAD


# Runs one storage request with retries (`Store.call`); inputs read through it when given one.
Caller = Callable[[Callable[[], Any]], Any]


def _direct(fn: Callable[[], Any]) -> Any:
    return fn()


class _BlobStream:
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


class _Buffer:
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


class _Damaged(Exception):
    """A unit that cannot be read; `fed` counts the bytes spent finding out."""

    def __init__(self, why: str, fed: int = 0) -> None:
        super().__init__(why)
        self.why, self.fed = why, fed


def _inflate(d: Any, data: bytes, room: int) -> tuple[bytes, int]:
    """Inflate `data` with `d`, at most `room` + 1 bytes out: (output, input bytes used)."""
    out: list[bytes] = []
    total = used = 0
    while data:
        try:
            piece = d.decompress(data, room + 1 - total)
        except zlib.error as exc:
            raise _Damaged(f"not valid deflate data: {exc}", used) from None
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


# --- readers ------------------------------------------------------------------------------


def read_body(chunks: Iterable[bytes], label: str, limit: int, report: Report) -> Iterator[EventIn]:
    """A `.json` file: one event body."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            report(f"{label}: larger than {_mib(limit)}: not replayed (a .json file is one event)")
            return
        parts.append(chunk)
    yield EventIn(body=b"".join(parts), origin=f"file:{label}")


def read_lines(
    chunks: Iterable[bytes], label: str, limit: int, report: Report
) -> Iterator[EventIn]:
    """A `.jsonl` file: one event body per line (a line that is not JSON is dead-lettered by
    the pipeline, like any event). A line longer than `limit` is reported and skipped."""
    buf = bytearray()
    lineno = 1
    skipping = False  # inside a line already reported as too long

    def event(line: bytes) -> EventIn | None:
        line = line.rstrip(b"\r")
        return EventIn(body=line, origin=f"file:{label}:{lineno}") if line.strip() else None

    for chunk in chunks:
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if not skipping:
                    buf += memoryview(chunk)[start:]
                    if len(buf) > limit:
                        report(f"{label}:{lineno}: line longer than {_mib(limit)}: skipped")
                        skipping = True
                        buf.clear()
                break
            if skipping:
                skipping = False
            elif len(buf) + nl - start > limit:
                report(f"{label}:{lineno}: line longer than {_mib(limit)}: skipped")
                buf.clear()
            else:
                buf += memoryview(chunk)[start:nl]
                ev = event(bytes(buf))
                buf.clear()
                if ev is not None:
                    yield ev
            lineno += 1
            start = nl + 1
    if buf and not skipping:
        ev = event(bytes(buf))
        if ev is not None:
            yield ev


def _long(buf: _Buffer, pos: int) -> tuple[int, int]:
    """The Avro long (zig-zag varint) at `pos`: (value, position after it)."""
    raw = buf.get(pos, 10)
    n = shift = 0
    for i, b in enumerate(raw):
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return (n >> 1) ^ -(n & 1), pos + i + 1
        shift += 7
    raise _Damaged("the file ends inside a number" if len(raw) < 10 else "a number is too long")


def _avro_header(buf: _Buffer) -> tuple[dict[str, bytes], bytes, int]:
    """(metadata, sync marker, position of the first block) of an Avro container file."""
    if buf.get(0, 4) != b"Obj\x01":
        raise _Damaged("no Avro header: not an Avro file")
    pos = 4
    meta: dict[str, bytes] = {}
    while True:
        count, pos = _long(buf, pos)
        if count == 0:
            break
        if count < 0:
            count = -count
            _, pos = _long(buf, pos)  # the block's size in bytes
        for _ in range(count):
            item = []
            for _part in ("key", "value"):
                n, pos = _long(buf, pos)
                if not 0 <= n <= MAX_AVRO_HEADER:
                    raise _Damaged("the header is damaged")
                value = buf.get(pos, n)
                if len(value) < n:
                    raise _Damaged("the file ends inside its header")
                item.append(value)
                pos += n
            if pos > MAX_AVRO_HEADER:
                raise _Damaged(f"the header is larger than {_mib(MAX_AVRO_HEADER)}")
            meta[item[0].decode("utf-8", "replace")] = item[1]
    sync = buf.get(pos, 16)
    if len(sync) < 16:
        raise _Damaged("the file ends inside its header")
    return meta, sync, pos + 16


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_MAX_SCHEMA_DEPTH = 16


def _check_type(t: Any, depth: int = 0) -> None:
    """Refuse what Capture's `EventData` schema never has and a crafted one could use to make
    decoding run away: arrays (of items of no size, a count of 2^62 spins without reading a
    byte), references to named types (a recursive record recurses once per byte read) and
    deep nesting."""
    if depth > _MAX_SCHEMA_DEPTH:
        raise _Damaged("its schema nests too deep for an Event Hubs Capture schema")
    if isinstance(t, str):
        if t not in _PRIMITIVES:
            raise _Damaged("its schema refers to a named type: not an Event Hubs Capture schema")
    elif isinstance(t, list):
        for u in t:
            _check_type(u, depth + 1)
    elif isinstance(t, dict):
        kind = t.get("type")
        if kind == "record":
            fields = t.get("fields")
            if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
                raise _Damaged("its schema has a record without a list of fields")
            for f in fields:
                _check_type(f.get("type"), depth + 1)
        elif kind == "map":
            _check_type(t.get("values"), depth + 1)
        elif kind == "array":
            raise _Damaged("its schema has an array: not an Event Hubs Capture schema")
        elif kind not in ("enum", "fixed") and not (isinstance(kind, str) and kind in _PRIMITIVES):
            raise _Damaged("its schema has a type Event Hubs Capture does not use")
    else:
        raise _Damaged("its schema is not an Avro schema")


def _capture_schema(meta: dict[str, bytes]) -> Any:
    """The writer schema of a Capture file, checked (`_check_type`) and parsed."""
    import fastavro

    try:
        doc = orjson.loads(meta.get("avro.schema", b""))
    except orjson.JSONDecodeError:
        raise _Damaged("its schema is not JSON") from None
    if not (
        isinstance(doc, dict)
        and doc.get("type") == "record"
        and isinstance(doc.get("fields"), list)
        and any(isinstance(f, dict) and f.get("name") == "Body" for f in doc["fields"])
    ):
        raise _Damaged("its schema is not an Event Hubs Capture record (no Body field)")
    _check_type(doc)
    try:
        return fastavro.parse_schema(doc)
    except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds for a bad schema
        raise _Damaged(f"its schema is not valid Avro ({type(exc).__name__})") from None


def _capture_event(rec: Any, label: str, partition: str | None) -> EventIn:
    if not isinstance(rec, dict):
        raise _Damaged("a record is not a record")
    body = rec.get("Body")
    if body is None:
        body = b""
    elif isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    elif not isinstance(body, bytes):
        raise _Damaged("a record's Body is not bytes")
    system = rec.get("SystemProperties")
    if not isinstance(system, dict):
        system = {}
    key = system.get("x-opt-partition-key")
    if isinstance(key, bytes):
        key = key.decode("utf-8", "replace")
    seq = rec.get("SequenceNumber")
    if not isinstance(seq, int) or isinstance(seq, bool):
        seq = None
    offset = rec.get("Offset")
    return EventIn(
        body=body,
        partition=partition,
        sequence=seq,
        enqueued=parse_time(rec.get("EnqueuedTimeUtc"))
        or parse_time(system.get("x-opt-enqueued-time")),
        offset=str(offset) if isinstance(offset, str | int) else None,
        origin=f"capture:{label}#{seq}",
        partition_key=key if isinstance(key, str) else None,
    )


def _block_events(
    raw: bytes, count: int, schema: Any, label: str, partition: str | None
) -> Iterator[EventIn]:
    """The events of one decoded Avro block; raises _Damaged at the first bad record."""
    import fastavro

    fo = io.BytesIO(raw)
    for i in range(count):
        try:
            rec = fastavro.schemaless_reader(fo, schema, None, handle_unicode_errors="replace")
        except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds on damaged data
            raise _Damaged(
                f"record {i + 1} of {count} does not decode ({type(exc).__name__})"
            ) from None
        try:
            yield _capture_event(rec, label, partition)
        except _Damaged as bad:
            raise _Damaged(f"record {i + 1} of {count}: {bad.why}") from None


def read_capture(
    chunks: Iterable[bytes],
    label: str,
    partition: str | None,
    limit: int = MAX_UNIT_BYTES,
    report: Report | None = None,
) -> Iterator[EventIn]:
    """An Event Hubs Capture (Avro container) file, block by block: a block that does not
    decode is reported and skipped; one whose framing is damaged (size, sync marker, a
    truncated file) is skipped up to the next sync marker."""
    report = report or _fail_fast
    buf = _Buffer(chunks)
    try:
        meta, sync, pos = _avro_header(buf)
        codec = meta.get("avro.codec", b"null") or b"null"
        if codec not in (b"null", b"deflate"):
            raise _Damaged(
                f"codec {printable(codec[:20].decode('ascii', 'replace'))!r} is not supported "
                "(null and deflate are)"
            )
        schema = _capture_schema(meta)
    except _Damaged as bad:
        report(f"{label}: not a readable Event Hubs Capture (Avro) file: {bad.why}")
        return
    while not buf.at_end(pos):
        start = pos
        buf.drop(start)
        try:
            count, pos = _long(buf, pos)
            size, pos = _long(buf, pos)
            if not 0 <= size <= limit:
                raise _Damaged(
                    f"its size ({size:,} bytes) is not between 0 and {_mib(limit)}"
                    if size >= 0
                    else "its size is negative"
                )
            if count < 0 or count > max(size, 1) * (1 if codec == b"null" else 1032):
                raise _Damaged("its record count is impossible")
            data = buf.get(pos, size)
            marker = buf.get(pos + size, 16)
            if len(data) < size or len(marker) < 16:
                raise _Damaged("the file ends inside it (truncated)")
            if marker != sync:
                raise _Damaged("its sync marker is wrong")
            buf.drop(pos + size + 16)
        except _Damaged as bad:
            nxt = buf.find(sync, start + 1)
            if nxt < 0:
                report(
                    f"{label}: Avro block at byte {start}: {bad.why}; no block follows: "
                    f"the rest of the file (from byte {start}) is not replayed"
                )
                return
            pos = nxt + 16
            report(
                f"{label}: Avro block at byte {start}: {bad.why}; skipped to the next block "
                f"at byte {pos}"
            )
            continue
        pos += size + 16
        try:
            if codec == b"deflate":
                d = zlib.decompressobj(-zlib.MAX_WBITS)
                raw, _ = _inflate(d, data, limit)
                if len(raw) > limit:
                    raise _Damaged(f"it inflates to more than {_mib(limit)}")
                if not d.eof:
                    raise _Damaged("its deflate data is incomplete")
                del data
            else:
                raw = data
            if count > len(raw):
                raise _Damaged("its record count is impossible")
            yield from _block_events(raw, count, schema, label, partition)
        except _Damaged as bad:
            report(f"{label}: Avro block at byte {start}: {bad.why}; the rest of it is skipped")


def _inflate_member(buf: _Buffer, start: int, limit: int) -> tuple[int, bytes]:
    """(end, inflated bytes) of the gzip member at `start`; _Damaged if it is not one."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out: list[bytes] = []
    total = 0
    pos = start
    while True:
        data = buf.some(pos, 65536)
        if not data:
            raise _Damaged("the blob ends inside it (truncated)", pos - start)
        try:
            piece, used = _inflate(d, data, limit - total)
        except _Damaged as bad:
            raise _Damaged(bad.why, pos - start + bad.fed) from None
        out.append(piece)
        total += len(piece)
        pos += used
        if total > limit:
            raise _Damaged(f"it inflates to more than {_mib(limit)}", pos - start)
        if d.eof:
            return pos, b"".join(out)
        if pos - start > limit:
            raise _Damaged(f"it is larger than {_mib(limit)}", pos - start)


_MEMBER_EVENT_TYPES = {
    "partition": str,
    "partitionKey": str,
    "sequence": int,
    "enqueued": str,
    "offset": str,
    "origin": str,
}


def _member(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(member, its event metadata), checked for the types `member_event` reads."""
    try:
        member = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _Damaged("it is not JSON") from None
    if not isinstance(member, dict):
        raise _Damaged("it is not a JSON object")
    ev = member.get("event") or {}
    if not isinstance(ev, dict) or any(
        ev.get(k) is not None and not isinstance(ev.get(k), t)
        for k, t in _MEMBER_EVENT_TYPES.items()
    ):
        raise _Damaged("its event metadata is malformed")
    return member, ev


def read_archive(
    chunks: Iterable[bytes],
    blob: str,
    label: str,
    filters: Filters,
    limit: int = MAX_UNIT_BYTES,
    report: Report | None = None,
) -> Iterator[EventIn]:
    """An archive blob, member by member; a damaged member is reported and reading goes on at
    the next gzip header after it (see the module's docstring)."""
    report = report or _fail_fast
    buf = _Buffer(chunks)
    pos = 0
    wasted = 0  # bytes fed to candidates that were no member, for the linear bound
    while not buf.at_end(pos):
        try:
            end, raw = _inflate_member(buf, pos, limit)
        except _Damaged as bad:
            wasted += bad.fed
            why = bad.why
            found: tuple[int, int, bytes] | None = None
            candidate = pos + 1
            while wasted <= RESYNC_WORK * buf.end + RESYNC_SLACK:
                candidate = buf.find(GZIP_MAGIC, candidate)
                if candidate < 0:
                    break
                try:
                    found = (candidate, *_inflate_member(buf, candidate, limit))
                    break
                except _Damaged as again:
                    wasted += again.fed
                    candidate += 1
            if found is None:
                more = (
                    "no member follows"
                    if candidate < 0
                    else "no next member found within the search's work limit"
                )
                report(
                    f"{label}: member at byte {pos} is damaged ({why}); {more}: the rest of "
                    f"the blob (from byte {pos}) is not replayed"
                )
                return
            report(
                f"{label}: member at byte {pos} is damaged ({why}): bytes {pos} to "
                f"{found[0] - 1} skipped, reading goes on at byte {found[0]}"
            )
            pos, end, raw = found
        buf.drop(end)
        try:
            member, ev = _member(raw)
            if filters.partition_ok(ev.get("partition")):
                pointer = RawPointer(blob, pos, end - pos, archive.sha256_hex(raw))
                try:
                    event = archive.member_event(member, pointer)
                except (TypeError, ValueError, AttributeError, OverflowError):
                    raise _Damaged("its record cannot be rebuilt as an event") from None
                yield event
        except _Damaged as bad:
            report(f"{label}: member at byte {pos}: {bad.why}; skipped")
        pos = end


# --- local files ----------------------------------------------------------------------------


def _events(read: Callable[..., Iterator[EventIn]]) -> Callable[..., Iterator[EventIn]]:
    """`Input.events` for a stream: `read(chunks, report=...)` it, then close it."""

    def events(stream: Any, report: Report | None = None) -> Iterator[EventIn]:
        try:
            yield from read(stream.chunks(), report=report or _fail_fast)
        finally:
            stream.close()

    return events


def local_inputs(
    paths: Iterable[str | Path],
    filters: Filters,
    *,
    limit: int = MAX_UNIT_BYTES,
    chunk: int = FILE_CHUNK,
) -> Iterator[Input | InputProblem]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in EVENT_SUFFIXES and p.is_file())
            if not found:
                yield InputProblem(
                    printable(str(path)), "folder holds no .json, .jsonl or .avro files"
                )
            for p in found:
                item = _local(p, filters, limit, chunk)
                if item is not None:
                    yield item
        elif path.exists():
            item = _local(path, filters, limit, chunk)
            if item is not None:
                yield item
        else:
            yield InputProblem(printable(str(path)), "no such file or folder")


def _local(path: Path, filters: Filters, limit: int, chunk: int) -> Input | None:
    label = printable(str(path))
    size = path.stat().st_size
    key = f"file:{path.resolve()}"

    def fetch() -> _FileStream:
        return _FileStream(path, label, chunk)

    if path.suffix == ".avro":
        partition, t = capture_path(path.as_posix())
        if (filters.since or filters.until) and not filters.time_ok(t):
            return None
        if not filters.partition_ok(partition):
            return None
        read = partial(read_capture, label=label, partition=partition, limit=limit)
    elif path.suffix == ".jsonl":
        read = partial(read_lines, label=label, limit=limit)
    else:
        read = partial(read_body, label=label, limit=limit)
    return Input(key, label, size, fetch, _events(read))


# --- blob containers ------------------------------------------------------------------------


def blob_inputs(
    container: Any,
    prefix: str,
    filters: Filters,
    kind: str,
    call: Caller = _direct,
    *,
    limit: int = MAX_UNIT_BYTES,
    chunk: int = BLOB_CHUNK,
) -> Iterator[Input]:
    """Capture (`kind="capture"`) or archive (`kind="archive"`) blobs under a prefix, oldest
    first, filtered on the time (and partition) their path names."""
    for blob in container.list_blobs(name_starts_with=prefix or None):
        name, size, etag = blob.name, blob.size or 0, blob.etag
        key = f"blob:{container.container_name}/{name}@{etag}"
        label = printable(f"{container.container_name}/{name}")

        def fetch(
            name: str = name, size: int = size, etag: str | None = etag, label: str = label
        ) -> Any:
            return _BlobStream(container, name, size, etag, label, call, chunk)

        if kind == "capture":
            if not name.endswith(".avro"):
                continue
            partition, t = capture_path(name)
            if not filters.time_ok(t) or not filters.partition_ok(partition):
                continue
            read = partial(read_capture, label=label, partition=partition, limit=limit)
        else:
            if not name.endswith(".jsonl.gz") or not filters.time_ok(archive_path_time(name)):
                continue
            read = partial(read_archive, blob=name, label=label, filters=filters, limit=limit)
        yield Input(key, label, size, fetch, _events(read))


def deadletter_inputs(
    container: Any,
    prefix: str,
    include_done: bool = False,
    call: Caller = _direct,
    *,
    limit: int = MAX_UNIT_BYTES,
) -> Iterator[Input]:
    """Dead letters (`replay --from-deadletter`): each blob is the event (or single-record
    envelope) as it was stored, with its partition, sequence number and origin in metadata.
    Replayed ones that now become rows are marked `status=done`, never deleted."""
    for blob in container.list_blobs(name_starts_with=prefix or None, include=["metadata"]):
        meta = dict(blob.metadata or {})
        if meta.get("status") == "done" and not include_done:
            continue
        name, size = blob.name, blob.size or 0
        label = printable(f"{container.container_name}/{name}")
        seq = meta.get("sequencenumber")
        event = EventIn(
            body=b"",
            partition=meta.get("partition"),
            sequence=int(seq) if seq and seq.lstrip("-").isdigit() and len(seq) < 20 else None,
            enqueued=parse_time(meta.get("enqueuedtime")),
            offset=meta.get("offset"),
            # The original origin: dead-lettered again, it maps to the same dead letter.
            origin=meta.get("origin") or f"deadletter:{name}",
        )

        def settle(ev: EventIn, ok: bool, name: str = name, meta: dict[str, str] = meta) -> None:
            if ok:
                done = {
                    **meta,
                    "status": "done",
                    "replayedat": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                call(lambda: container.get_blob_client(name).set_blob_metadata(done))

        def fetch(name: str = name, size: int = size, label: str = label) -> bytes:
            if size > limit:
                raise InputError(f"{label}: larger than {_mib(limit)}: not replayed")
            try:
                return bytes(call(lambda: container.download_blob(name).readall()))
            except ResourceNotFoundError:
                raise InputError(f"{label}: the blob no longer exists") from None

        def events(data: bytes, report: Report | None = None, event: EventIn = event) -> Any:
            return iter([replace(event, body=data)])

        yield Input(
            f"deadletter:{container.container_name}/{name}@{blob.etag}",
            label,
            size,
            fetch,
            events,
            settle,
        )


def parse_when(value: str) -> datetime:
    """--since / --until: a day (`2025-11-04`) or a time (`2025-11-04T10:00`), UTC."""
    t = parse_time(value if "T" in value or " " in value else value + "T00:00:00Z")
    if t is None:
        raise ValueError(f"{value!r} is not a date or time (YYYY-MM-DD[THH:MM])")
    return t

"""Event Hubs Capture files (formats.md §4): Avro container files with the `null` or
`deflate` codec, local or in a blob container; the partition and the window's time come from
the Capture path `{namespace}/{hub}/{partition}/{yyyy}/{MM}/{dd}/{HH}/{mm}/{ss}.avro`.

Read block by block (byte_streams.py), each block (compressed, and again inflated) at most
MAX_UNIT_BYTES. A block that does not decode is reported and skipped; one whose framing is
damaged (size, sync marker, a truncated file) is skipped up to the file's next 16-byte sync
marker, or, when only its own marker is damaged, up to where that marker is. The writer
schema is checked before fastavro sees it: a crafted one could make decoding run away.
"""

from __future__ import annotations

import io
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from pipeline.common.timestamps import parse_time
from pipeline.model import EventIn
from pipeline.sources.byte_streams import BLOB_CHUNK, Buffer, Damaged, inflate, listed_inputs
from pipeline.sources.inputs import (
    MAX_UNIT_BYTES,
    Caller,
    Filters,
    Input,
    Report,
    direct,
    fail_fast,
    mib,
    printable,
)

_CAPTURE_PATH = re.compile(
    r"(?:^|/)(?P<partition>[^/]+)/(?P<y>\d{4})/(?P<mo>\d{2})/(?P<d>\d{2})/(?P<h>\d{2})/"
    r"(?P<mi>\d{2})/(?P<s>\d{2})\.avro$"
)
MAX_AVRO_HEADER = 1024 * 1024  # an Avro header (schema and codec) larger than this is damage
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_MAX_SCHEMA_DEPTH = 16


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


def capture_inputs(
    container: Any,
    prefix: str,
    filters: Filters,
    call: Caller = direct,
    *,
    limit: int = MAX_UNIT_BYTES,
    chunk: int = BLOB_CHUNK,
) -> Iterator[Input]:
    """The Capture blobs under a prefix, oldest first, filtered on the time and partition
    their path names."""

    def pick(name: str) -> Callable[..., Iterator[EventIn]] | None:
        if not name.endswith(".avro"):
            return None
        partition, t = capture_path(name)
        if not filters.time_ok(t) or not filters.partition_ok(partition):
            return None
        return partial(read_capture, partition=partition, limit=limit)

    return listed_inputs(container, prefix, pick, call, chunk)


# --- the container file -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Container:
    """What the header of a Capture file says about its blocks."""

    codec: bytes
    schema: Any  # parsed by fastavro
    sync: bytes


def _long(buf: Buffer, pos: int) -> tuple[int, int]:
    """The Avro long (zig-zag varint) at `pos`: (value, position after it)."""
    raw = buf.get(pos, 10)
    n = shift = 0
    for i, b in enumerate(raw):
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return (n >> 1) ^ -(n & 1), pos + i + 1
        shift += 7
    raise Damaged("the file ends inside a number" if len(raw) < 10 else "a number is too long")


def _avro_header(buf: Buffer) -> tuple[dict[str, bytes], bytes, int]:
    """(metadata, sync marker, position of the first block) of an Avro container file."""
    if buf.get(0, 4) != b"Obj\x01":
        raise Damaged("no Avro header: not an Avro file")
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
            key, pos = _header_bytes(buf, pos)
            value, pos = _header_bytes(buf, pos)
            if pos > MAX_AVRO_HEADER:
                raise Damaged(f"the header is larger than {mib(MAX_AVRO_HEADER)}")
            meta[key.decode("utf-8", "replace")] = value
    sync = buf.get(pos, 16)
    if len(sync) < 16:
        raise Damaged("the file ends inside its header")
    return meta, sync, pos + 16


def _header_bytes(buf: Buffer, pos: int) -> tuple[bytes, int]:
    """The Avro bytes (a key or a value of the header's metadata) at `pos`."""
    n, pos = _long(buf, pos)
    if not 0 <= n <= MAX_AVRO_HEADER:
        raise Damaged("the header is damaged")
    value = buf.get(pos, n)
    if len(value) < n:
        raise Damaged("the file ends inside its header")
    return value, pos + n


def _container(buf: Buffer) -> tuple[_Container, int]:
    """The header of a Capture file, checked, and the position of its first block."""
    meta, sync, pos = _avro_header(buf)
    codec = meta.get("avro.codec", b"null") or b"null"
    if codec not in (b"null", b"deflate"):
        raise Damaged(
            f"codec {printable(codec[:20].decode('ascii', 'replace'))!r} is not supported "
            "(null and deflate are)"
        )
    return _Container(codec, _capture_schema(meta), sync), pos


# --- the writer schema --------------------------------------------------------------------


def _check_type(t: Any, depth: int = 0) -> None:
    """Refuse what Capture's `EventData` schema never has and a crafted one could use to make
    decoding run away: arrays (of items of no size, a count of 2^62 spins without reading a
    byte), references to named types (a recursive record recurses once per byte read) and
    deep nesting."""
    if depth > _MAX_SCHEMA_DEPTH:
        raise Damaged("its schema nests too deep for an Event Hubs Capture schema")
    if isinstance(t, str):
        if t not in _PRIMITIVES:
            raise Damaged("its schema refers to a named type: not an Event Hubs Capture schema")
    elif isinstance(t, list):
        for u in t:
            _check_type(u, depth + 1)
    elif isinstance(t, dict):
        _check_complex_type(t, depth)
    else:
        raise Damaged("its schema is not an Avro schema")


def _check_complex_type(t: dict[str, Any], depth: int) -> None:
    """`_check_type` of a type written as an object: a record, a map, an enum, a fixed."""
    kind = t.get("type")
    if kind == "record":
        fields = t.get("fields")
        if not isinstance(fields, list) or not all(isinstance(f, dict) for f in fields):
            raise Damaged("its schema has a record without a list of fields")
        for f in fields:
            _check_type(f.get("type"), depth + 1)
    elif kind == "map":
        _check_type(t.get("values"), depth + 1)
    elif kind == "array":
        raise Damaged("its schema has an array: not an Event Hubs Capture schema")
    elif kind not in ("enum", "fixed") and not (isinstance(kind, str) and kind in _PRIMITIVES):
        raise Damaged("its schema has a type Event Hubs Capture does not use")


def _capture_schema(meta: dict[str, bytes]) -> Any:
    """The writer schema of a Capture file, checked (`_check_type`) and parsed."""
    import fastavro

    try:
        doc = orjson.loads(meta.get("avro.schema", b""))
    except orjson.JSONDecodeError:
        raise Damaged("its schema is not JSON") from None
    if not (
        isinstance(doc, dict)
        and doc.get("type") == "record"
        and isinstance(doc.get("fields"), list)
        and any(isinstance(f, dict) and f.get("name") == "Body" for f in doc["fields"])
    ):
        raise Damaged("its schema is not an Event Hubs Capture record (no Body field)")
    _check_type(doc)
    try:
        return fastavro.parse_schema(doc)
    except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds for a bad schema
        raise Damaged(f"its schema is not valid Avro ({type(exc).__name__})") from None


# --- records ------------------------------------------------------------------------------


def _capture_event(rec: Any, label: str, partition: str | None) -> EventIn:
    if not isinstance(rec, dict):
        raise Damaged("a record is not a record")
    body = rec.get("Body")
    if body is None:
        body = b""
    elif isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    elif not isinstance(body, bytes):
        raise Damaged("a record's Body is not bytes")
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
    written = rec.get("EnqueuedTimeUtc")
    stamped = system.get("x-opt-enqueued-time")
    if not written and stamped is None:
        # Capture writes the time of every event it captures: a record without one is not an
        # event it captured. (Six bytes of empty fields made one: a deflated block of zeros
        # decoded into millions of events, each dead-lettered.) A time it holds that cannot
        # be read is the event's to keep (dead-lettered "undated" if need be).
        raise Damaged("no enqueued time (not an event Capture wrote)")
    enqueued = parse_time(written) or parse_time(stamped)
    return EventIn(
        body=body,
        partition=partition,
        sequence=seq,
        enqueued=enqueued,
        offset=str(offset) if isinstance(offset, str | int) else None,
        origin=f"capture:{label}#{seq}",
        partition_key=key if isinstance(key, str) else None,
    )


def _block_events(
    raw: bytes, count: int, schema: Any, label: str, partition: str | None, report: Report
) -> Iterator[EventIn]:
    """The events of one decoded Avro block; raises Damaged at the first record that does
    not decode (where the next one starts is then unknown). A record that decodes but whose
    values cannot be read is reported and skipped alone: the next one is where it was."""
    import fastavro

    fo = io.BytesIO(raw)
    skipped: Counter[str] = Counter()  # said once a block, by reason: not a line a record
    try:
        for i in range(count):
            try:
                rec = fastavro.schemaless_reader(fo, schema, None, handle_unicode_errors="replace")
            except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds on damaged data
                raise Damaged(
                    f"record {i + 1} of {count} does not decode ({type(exc).__name__})"
                ) from None
            try:
                event = _capture_event(rec, label, partition)
            except Exception as exc:  # noqa: BLE001 - a sender's odd value must not end the block
                why = exc.why if isinstance(exc, Damaged) else f"unreadable ({type(exc).__name__})"
                skipped[why] += 1
                continue
            yield event
    finally:
        for why, n in skipped.items():
            report(f"{label}: {n:,} of {count:,} records of a block: {why}: skipped")


# --- blocks -------------------------------------------------------------------------------


def _block(buf: Buffer, pos: int, head: _Container, limit: int) -> tuple[int, bytes, int]:
    """(record count, data, position after it) of the block at `pos`, its framing checked;
    Damaged if its size, count or sync marker is wrong or the file ends inside it."""
    count, pos = _long(buf, pos)
    size, pos = _long(buf, pos)
    if not 0 <= size <= limit:
        raise Damaged(
            f"its size ({size:,} bytes) is not between 0 and {mib(limit)}"
            if size >= 0
            else "its size is negative"
        )
    if count < 0 or count > max(size, 1) * (1 if head.codec == b"null" else 1032):
        raise Damaged("its record count is impossible")
    data = buf.get(pos, size)
    marker = buf.get(pos + size, 16)
    if len(data) < size or len(marker) < 16:
        raise Damaged("the file ends inside it (truncated)")
    if marker != head.sync:
        raise BadMarker(pos + size + 16)
    buf.drop(pos + size + 16)
    return count, data, pos + size + 16


class BadMarker(Damaged):
    """A block whose sync marker is wrong: only the marker, perhaps, and then the next block
    starts at `after`; or its size, and then at the next sync marker."""

    def __init__(self, after: int) -> None:
        super().__init__("its sync marker is wrong")
        self.after = after


def _resync(buf: Buffer, start: int, sync: bytes, bad: Damaged, label: str, report: Report) -> int:
    """After a block at `start` whose framing is damaged: the position of the next block, or
    -1 when none follows; reported either way. The next block starts just after the next
    sync marker, or, when only the block's own marker is damaged (no marker inside the
    block as its size says), just after that marker: a damaged marker costs its block, not
    the next one too (if that is wrong, reading there fails and the search goes on)."""
    if isinstance(bad, BadMarker) and not _marker_before(buf, sync, start, bad.after):
        # No marker inside the block as its size says: only its own marker is damaged.
        pos = bad.after
    elif (nxt := buf.find(sync, start + 1)) >= 0:
        pos = nxt + 16
    else:
        report(
            f"{label}: Avro block at byte {start}: {bad.why}; no block follows: "
            f"the rest of the file (from byte {start}) is not replayed"
        )
        return -1
    report(
        f"{label}: Avro block at byte {start}: {bad.why}; skipped to the next block at byte {pos}"
    )
    return pos


def _marker_before(buf: Buffer, sync: bytes, start: int, after: int) -> bool:
    """A sync marker starts after `start` and no later than `after` (where the block at
    `start` ends by its size): then its size is wrong, not only its marker."""
    buf.get(after, len(sync))  # a marker may start just before `after`, or at it
    return buf.held(sync, start + 1, after + len(sync)) >= 0


def _decoded(data: bytes, count: int, codec: bytes, limit: int) -> bytes:
    """A block's data as written by its codec, at most `limit` bytes inflated."""
    if codec == b"deflate":
        d = zlib.decompressobj(-zlib.MAX_WBITS)
        raw, _ = inflate(d, data, limit)
        if len(raw) > limit:
            raise Damaged(f"it inflates to more than {mib(limit)}")
        if not d.eof:
            raise Damaged("its deflate data is incomplete")
    else:
        raw = data
    if count > len(raw):
        raise Damaged("its record count is impossible")
    return raw


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
    report = report or fail_fast
    buf = Buffer(chunks)
    try:
        head, pos = _container(buf)
    except Damaged as bad:
        report(f"{label}: not a readable Event Hubs Capture (Avro) file: {bad.why}")
        return
    while not buf.at_end(pos):
        start = pos
        buf.drop(start)
        try:
            count, data, pos = _block(buf, pos, head, limit)
        except Damaged as bad:
            pos = _resync(buf, start, head.sync, bad, label, report)
            if pos < 0:
                return
            continue
        try:
            raw = _decoded(data, count, head.codec, limit)
            del data  # the compressed block is not held while its events are decoded
            yield from _block_events(raw, count, head.schema, label, partition, report)
        except Damaged as bad:
            report(f"{label}: Avro block at byte {start}: {bad.why}; the rest of it is skipped")

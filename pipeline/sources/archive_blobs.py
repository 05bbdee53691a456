"""Our own archive as a replay input (`yyyy/MM/dd/HH/<sha>.jsonl.gz`): each gzip member
becomes an event marked as already archived, so replaying it never writes a second raw blob.

Read member by member (byte_streams.py), each member (compressed, and again inflated) at most
MAX_UNIT_BYTES. A damaged member is reported and reading goes on at the next member, found
again by the gzip header `1f 8b 08 00` (linear: at most RESYNC_WORK times the bytes read are
spent on candidates that fail, else the rest of the blob is reported as not read).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from pipeline.model import EventIn, RawPointer
from pipeline.protect import archive
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
)

_ARCHIVE_PATH = re.compile(
    r"(?:^|/)(?P<y>\d{4})/(?P<mo>\d{2})/(?P<d>\d{2})/(?P<h>\d{2})/[^/]+\.jsonl\.gz$"
)
# Archive resynchronisation: bytes fed to candidate members that fail, at most RESYNC_WORK per
# byte read plus RESYNC_SLACK; past that the rest of the blob is reported as not read.
RESYNC_WORK = 2
RESYNC_SLACK = 1024 * 1024
# How each archive member starts: the gzip ID (1f 8b), CM = deflate (08) and FLG = 0 (archive.py
# writes no optional header fields; a candidate with flags could read a "file name" to the end
# of the blob before failing).
GZIP_MAGIC = b"\x1f\x8b\x08\x00"

_MEMBER_EVENT_TYPES = {
    "partition": str,
    "partitionKey": str,
    "sequence": int,
    "enqueued": str,
    "offset": str,
    "origin": str,
}


def archive_path_time(path: str) -> datetime | None:
    """The hour an archive blob's path names, or None."""
    m = _ARCHIVE_PATH.search(path)
    if not m:
        return None
    try:
        return datetime(*(int(m.group(k)) for k in ("y", "mo", "d", "h")), tzinfo=UTC)
    except ValueError:
        return None


def archive_inputs(
    container: Any,
    prefix: str,
    filters: Filters,
    call: Caller = direct,
    *,
    limit: int = MAX_UNIT_BYTES,
    chunk: int = BLOB_CHUNK,
) -> Iterator[Input]:
    """The archive blobs under a prefix, oldest first, filtered on the hour their path names
    (and, member by member, on the partition)."""

    def pick(name: str) -> Callable[..., Iterator[EventIn]] | None:
        if not name.endswith(".jsonl.gz") or not filters.time_ok(archive_path_time(name)):
            return None
        return partial(read_archive, blob=name, filters=filters, limit=limit)

    return listed_inputs(container, prefix, pick, call, chunk)


def _inflate_member(buf: Buffer, start: int, limit: int) -> tuple[int, bytes]:
    """(end, inflated bytes) of the gzip member at `start`; Damaged if it is not one."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out: list[bytes] = []
    total = 0
    pos = start
    while True:
        data = buf.some(pos, 65536)
        if not data:
            raise Damaged("the blob ends inside it (truncated)", pos - start)
        try:
            piece, used = inflate(d, data, limit - total)
        except Damaged as bad:
            raise Damaged(bad.why, pos - start + bad.fed) from None
        out.append(piece)
        total += len(piece)
        pos += used
        if total > limit:
            raise Damaged(f"it inflates to more than {mib(limit)}", pos - start)
        if d.eof:
            return pos, b"".join(out)
        if pos - start > limit:
            raise Damaged(f"it is larger than {mib(limit)}", pos - start)


def _next_member(buf: Buffer, pos: int, limit: int, wasted: int) -> tuple[int, int, bytes, int]:
    """(start, end, inflated bytes) of the first whole member after the damaged one at `pos`,
    and the bytes wasted on candidates so far; Damaged saying why when none is found."""
    candidate = pos + 1
    while wasted <= RESYNC_WORK * buf.end + RESYNC_SLACK:
        candidate = buf.find(GZIP_MAGIC, candidate)
        if candidate < 0:
            raise Damaged("no member follows")
        try:
            return (candidate, *_inflate_member(buf, candidate, limit), wasted)
        except Damaged as again:
            wasted += again.fed
            candidate += 1
    raise Damaged("no next member found within the search's work limit")


def _member(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(member, its event metadata), checked for the types `member_event` reads."""
    try:
        member = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise Damaged("it is not JSON") from None
    if not isinstance(member, dict):
        raise Damaged("it is not a JSON object")
    ev = member.get("event") or {}
    if not isinstance(ev, dict) or any(
        ev.get(k) is not None and not isinstance(ev.get(k), t)
        for k, t in _MEMBER_EVENT_TYPES.items()
    ):
        raise Damaged("its event metadata is malformed")
    return member, ev


def _member_event(raw: bytes, blob: str, start: int, end: int, filters: Filters) -> EventIn | None:
    """The event of the inflated member at bytes `start` to `end` of `blob`, pointing at it;
    None when its partition is filtered out."""
    member, ev = _member(raw)
    if not filters.partition_ok(ev.get("partition")):
        return None
    pointer = RawPointer(blob, start, end - start, archive.sha256_hex(raw))
    try:
        return archive.member_event(member, pointer)
    except (TypeError, ValueError, AttributeError, OverflowError):
        raise Damaged("its record cannot be rebuilt as an event") from None


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
    report = report or fail_fast
    buf = Buffer(chunks)
    pos = 0
    wasted = 0  # bytes fed to candidates that were no member, for the linear bound
    while not buf.at_end(pos):
        try:
            end, raw = _inflate_member(buf, pos, limit)
        except Damaged as bad:
            try:
                start, end, raw, wasted = _next_member(buf, pos, limit, wasted + bad.fed)
            except Damaged as none:
                report(
                    f"{label}: member at byte {pos} is damaged ({bad.why}); {none.why}: the rest "
                    f"of the blob (from byte {pos}) is not replayed"
                )
                return
            report(
                f"{label}: member at byte {pos} is damaged ({bad.why}): bytes {pos} to "
                f"{start - 1} skipped, reading goes on at byte {start}"
            )
            pos = start
        buf.drop(end)
        try:
            event = _member_event(raw, blob, pos, end, filters)
        except Damaged as bad:
            report(f"{label}: member at byte {pos}: {bad.why}; skipped")
        else:
            if event is not None:
                yield event
        pos = end

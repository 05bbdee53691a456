"""The raw archive: one blob per batch, one independent gzip member per record.

Blob = gzip(member 1) + gzip(member 2) + ... (a valid multi-member gzip file: `zcat` reads it
whole). An audit row points at its member with (RawBlob, RawOffset, RawLength), so one
ranged read returns that call's raw record alone, and RawSha256 (of the decompressed member)
proves it unchanged.

Blob names are content-addressed (`yyyy/MM/dd/HH/<sha256>.jsonl.gz`, the hour of the earliest
call): a batch delivered again produces the same name, and since the code only ever creates
blobs (never overwrites, never deletes) the archive works under an immutability policy.

Member line: {"v": 1, "kind", "correlationId", "rid", "event": {partition, partitionKey,
sequence, enqueued, offset, origin}, "index", "enveloped", "record"}. `rid` identifies the record
as first logged (before redaction), so a replay from the archive updates the same fragment;
`record` is a string when the logged message was cut (a log-to-eventhub message over 200 KB).

Sealed members (ARCHIVE_ENCRYPTION=on, "v": 2): what may hold personal data (the record, the
event's partition key and origin) is in "sealed", encrypted under the record's data key
(protect/encryption.py); what the audit needs to find and check a member stays readable
(kind, correlation id, rid, partition, sequence, times). RawSha256 is then the hash of the
member as stored, so `verify` checks an archive without any key, erased members included.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

from pipeline.common.timestamps import iso, parse_time, path_hour
from pipeline.model import Archived, EventIn, RawPointer, RawSource
from pipeline.protect import encryption

FORMAT_VERSION = 1
SEALED_VERSION = 2
# Level 3 keeps most of level 6's ratio on JSON at several times the speed (bench/).
COMPRESS_LEVEL = 3


def record_bytes(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_id(record_json: bytes) -> str:
    """Identity of a record: equal for duplicates of the same log record."""
    return hashlib.sha256(record_json).hexdigest()[:32]


# A Capture file's partition key and offset are any strings, and whatever an event carries is
# copied into the member of each of its records: cut, so that its size is not multiplied by
# the records (a 200 KB key on an event of 2,000 records made a 300 MB archive blob). Event
# Hubs keys are at most 128 characters, offsets 20 digits, our origins a path and a line.
_META_CHARS = {"partition": 64, "partitionKey": 256, "offset": 32, "origin": 1_024}


def event_meta(event: EventIn) -> dict[str, Any]:
    meta = {
        "partition": event.partition,
        "partitionKey": event.partition_key,
        "sequence": event.sequence,
        "enqueued": iso(event.enqueued) if event.enqueued else None,
        "offset": event.offset,
        "origin": event.origin,
    }
    for name, most in _META_CHARS.items():
        value = meta[name]
        if isinstance(value, str) and len(value) > most:
            meta[name] = value[:most]
    return meta


def member_bytes(
    kind: str,
    correlation_id: str,
    rid: str,
    event: EventIn,
    index: int,
    enveloped: bool,
    stored_record: bytes,
    key: bytes | None = None,
) -> bytes:
    meta = event_meta(event)
    doc: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "kind": kind,
        "correlationId": correlation_id,
        "rid": rid,
        "event": meta,
        "index": index,
        "enveloped": enveloped,
        "record": orjson.Fragment(stored_record),
    }
    if key is not None:
        # Sealed: what may hold personal data goes under the record's data key.
        secret = {
            "record": doc.pop("record"),
            "partitionKey": meta.pop("partitionKey"),
            "origin": meta.pop("origin"),
        }
        doc["v"] = SEALED_VERSION
        doc["sealed"] = encryption.seal_content(key, orjson.dumps(secret), correlation_id, rid)
    return orjson.dumps(doc) + b"\n"


def is_sealed(member: dict[str, Any]) -> bool:
    return member.get("v") == SEALED_VERSION


def open_sealed(member: dict[str, Any], key: bytes) -> dict[str, Any]:
    """A sealed member as a plain one (v1 shape), decrypted with its data key."""
    cid, rid = member.get("correlationId"), member.get("rid")
    if not isinstance(cid, str) or not isinstance(rid, str):
        raise ArchiveError("sealed archive member has no correlation id or rid")
    try:
        secret = encryption.open_content(key, member.get("sealed"), cid, rid)
    except encryption.SealError as exc:
        raise ArchiveError(f"sealed archive member {exc}") from None
    ev = member.get("event")
    ev = dict(ev) if isinstance(ev, dict) else {}
    ev["partitionKey"] = secret.get("partitionKey")
    ev["origin"] = secret.get("origin")
    out = {k: v for k, v in member.items() if k != "sealed"}
    out.update(v=FORMAT_VERSION, event=ev, record=secret.get("record"))
    return out


@dataclass(frozen=True, slots=True)
class ArchiveBlob:
    name: str
    data: bytes
    pointers: list[RawPointer]
    sha256: str  # of `data`; the name holds its first 40 hex digits
    # Sealed archive: each member's data key and correlation id (store/keys.py keeps them).
    keys: list[bytes] | None = None
    calls: list[str] | None = None


def pack_member(member: bytes, key: bytes | None = None) -> RawSource:
    """A member as the archive stores it: its own gzip member, so one call reads back alone."""
    return RawSource(
        gzip.compress(member, compresslevel=COMPRESS_LEVEL, mtime=0),
        hashlib.sha256(member).hexdigest(),
        key,
    )


def build_blob(
    members: list[RawSource], when: datetime, calls: list[str] | None = None
) -> ArchiveBlob:
    """The batch's blob, named by `when` (the batch's own time, see ingest) and its content."""
    data = b"".join(m.packed for m in members)
    digest = hashlib.sha256(data).hexdigest()
    name = f"{path_hour(when)}/{digest[:40]}.jsonl.gz"
    pointers = []
    offset = 0
    for member in members:
        pointers.append(RawPointer(name, offset, len(member.packed), member.sha256))
        offset += len(member.packed)
    keys = [m.key for m in members]
    if any(k is not None for k in keys):
        assert calls is not None and all(k is not None for k in keys)
        return ArchiveBlob(name, data, pointers, digest, keys, calls)  # type: ignore[arg-type]
    return ArchiveBlob(name, data, pointers, digest)


class ArchiveError(ValueError):
    pass


# A member holds one record (an event is at most 1 MB); anything that inflates past this is
# not one of ours (a crafted range, a "zip bomb"), and is refused before it is in memory.
MAX_MEMBER_BYTES = 16 * 1024 * 1024
# Archive blob names as build_blob writes them.
BLOB_NAME = re.compile(r"\A\d{4}/\d{2}/\d{2}/\d{2}/[0-9a-f]{40}\.jsonl\.gz\Z")


def inflate_member(data: bytes, limit: int = MAX_MEMBER_BYTES) -> bytes:
    """One gzip member, decompressed, refusing more than `limit` bytes of output."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        raw = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ArchiveError(f"archive member is not a gzip member ({exc})") from None
    if len(raw) > limit:
        raise ArchiveError(f"archive member inflates past {limit} bytes")
    if not d.eof:
        raise ArchiveError("archive member is cut short")
    return raw


def open_member(data: bytes, sha256: str | None = None) -> dict[str, Any]:
    """Decompress and parse one member read by a ranged read; check its hash when given."""
    raw = inflate_member(data)
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise ArchiveError("archive member does not match the row's RawSha256")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ArchiveError("archive member is not JSON") from None


def iter_members(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(offset, length, decompressed bytes) of each member of a whole archive blob."""
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out: list[bytes] = []
        pos = offset
        # Feed in slices so that `unused_data` (a copy) stays small for big blobs.
        while not d.eof and pos < len(data):
            chunk = view[pos : pos + 65536]
            try:
                out.append(d.decompress(chunk))
            except zlib.error as exc:
                raise ArchiveError(f"archive blob is corrupt at byte {offset} ({exc})") from None
            pos += len(chunk)
        if not d.eof:
            raise ArchiveError(f"archive blob ends inside a member at byte {offset}")
        length = pos - offset - len(d.unused_data)
        yield offset, length, b"".join(out)
        offset += length


def member_event(member: dict[str, Any], pointer: RawPointer) -> EventIn:
    """The event a replay feeds back into the pipeline for one archive member: the record in
    the shape it arrived in (an envelope of one, a bare message, or the text of a cut one).
    A sealed member stays sealed (its body is the member): ingest, which holds the keys,
    opens it (`opened_event`)."""
    sealed = is_sealed(member)
    record = member.get("record")
    if sealed:
        body = orjson.dumps(member)
    elif isinstance(record, str):
        body = record.encode("utf-8", "surrogatepass")
    elif member.get("enveloped"):
        body = orjson.dumps({"records": [record]})
    else:
        body = orjson.dumps(record)
    ev = member.get("event") or {}
    return EventIn(
        body=body,
        partition=ev.get("partition"),
        sequence=ev.get("sequence"),
        enqueued=parse_time(ev.get("enqueued")),
        offset=ev.get("offset"),
        origin=f"archive:{pointer.blob}@{pointer.offset}",
        partition_key=ev.get("partitionKey"),
        # Read from the archive by us: the pointer is where the member really is.
        archived=Archived(
            pointer,
            str(member.get("rid") or ""),
            verified=True,
            correlation_id=str(member.get("correlationId") or "") or None,
            sealed=sealed,
        ),
    )


def opened_event(event: EventIn, member: dict[str, Any], key: bytes) -> EventIn:
    """A sealed member's event (`member_event`), opened with its data key."""
    assert event.archived is not None
    opened = member_event(open_sealed(member, key), event.archived.pointer)
    assert opened.archived is not None
    return replace(opened, archived=replace(opened.archived, key=key))

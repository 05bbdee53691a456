"""`verify`: check the archive of days first..last against its manifests, from the bytes.

1. The chain: every manifest of the days parses, sits under its own day and sequence, and
   names a previous manifest that exists with that SHA-256 (a supplementary one: the day's
   manifest before it). Only the first manifest ever may name none.
2. The blobs: every listed blob exists with its size and SHA-256 (recomputed from its bytes);
   no blob of a manifested day is missing from its manifests; a day with blobs has a manifest.
3. The rows: every audit row of the days points at a member whose SHA-256 is `RawSha256`,
   which is a member of that call (its correlation id is the row's, or the row's response or
   backend request id: a twin joined into it), in a blob named as the archive names them and,
   when its day is sealed, listed by its manifests; a sealed member's key entity lists it
   (erased or not: a key entity removed is evidence destroyed without an erasure).
   What a row says beyond its pointer (its tokens, its caller) is not sealed: `replay
   --from-archive --dry-run` reads it again from these records.

Nothing the writer stated is trusted (blob metadata, names): hashes are recomputed.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson

from pipeline.compliance import manifests
from pipeline.model import RawPointer
from pipeline.protect.archive import BLOB_NAME, SEALED_VERSION, ArchiveError, inflate_member
from pipeline.store import archive_index, rows
from pipeline.store.account import Store
from pipeline.store.kpis import KpiStore

POINTER = ["RowKey", "RawBlob", "RawOffset", "RawLength", "RawSha256"]
# A call's other names, which the members of twins joined into its row carry.
NAMES = ["ResponseId", "BackendRequestId"]


@dataclass(slots=True)
class Report:
    problems: list[str] = field(default_factory=list)
    manifests: int = 0
    blobs: int = 0
    rows: int = 0

    def add(self, problem: str) -> None:
        self.problems.append(problem)


def verify(store: Store, first: date, last: date) -> Report:
    report = Report()
    names = list(archive_index.manifests(store))
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    listed_by_day: dict[date, dict[str, tuple[int, str]] | None] = {}
    for day in days:
        listed_by_day[day] = _check_chain(store, names, day, report)
    blob_cache = _BlobCache(store)
    sealed = {
        d.isoformat(): set(listed) for d, listed in listed_by_day.items() if listed is not None
    }
    for day in days:
        _check_blobs(store, day, listed_by_day[day], report, blob_cache)
        _check_rows(store, day, report, blob_cache, sealed)
    return report


def _check_chain(
    store: Store, names: list[str], day: date, report: Report
) -> dict[str, tuple[int, str]] | None:
    """The blobs the day's manifests list (None: the day has no manifest)."""
    listed: dict[str, tuple[int, str]] = {}
    mine = [n for n in names if (archive_index.parse_name(n) or (None,))[0] == day]
    if not mine:
        return None
    for sequence, name in enumerate(mine):
        report.manifests += 1
        raw = archive_index.read(store, name)
        try:
            doc = manifests.parse(raw or b"")
        except ValueError as exc:
            report.add(f"manifest {name}: unreadable ({exc})")
            continue
        if doc.get("day") != f"{day:%Y-%m-%d}" or doc.get("sequence") != sequence:
            report.add(f"manifest {name}: says day {doc.get('day')} #{doc.get('sequence')}")
        _check_link(store, names, name, day, sequence, doc.get("previous"), report)
        listed.update(manifests.listed(doc))
    return listed


def _check_link(
    store: Store,
    names: list[str],
    name: str,
    day: date,
    sequence: int,
    previous: Any,
    report: Report,
) -> None:
    if previous is None:
        earlier = [n for n in names if n < name and (archive_index.parse_name(n) or (0, 1))[1] == 0]
        if sequence or earlier:
            report.add(f"manifest {name}: names no previous manifest, but the chain has one")
        return
    target = previous.get("name") if isinstance(previous, dict) else None
    if sequence and target != archive_index.manifest_name(day, sequence - 1):
        report.add(f"manifest {name}: previous should be the day's #{sequence - 1}, not {target}")
    raw = archive_index.read(store, str(target)) if target else None
    if raw is None:
        report.add(f"manifest {name}: its previous manifest {target} is missing")
    elif manifests.digest(raw) != previous.get("sha256"):
        report.add(f"manifest {name}: its previous manifest {target} was changed (SHA-256)")


class _BlobCache:
    """Archive blobs read whole, each once per verify (the members of rows are checked from
    the same bytes); the last few kept."""

    def __init__(self, store: Store, keep: int = 8) -> None:
        self.store = store
        self.keep = keep
        self.blobs: dict[str, bytes | None] = {}

    def get(self, name: str) -> bytes | None:
        if name not in self.blobs:
            if len(self.blobs) >= self.keep:
                self.blobs.pop(next(iter(self.blobs)))
            self.blobs[name] = archive_index.read(self.store, name)
        return self.blobs[name]


def _check_blobs(
    store: Store,
    day: date,
    listed: dict[str, tuple[int, str]] | None,
    report: Report,
    cache: _BlobCache,
) -> None:
    present = {b.name for b in archive_index.day_blobs(store, day)}
    if listed is None:
        if present:
            report.add(f"day {day}: {len(present)} archive blobs and no manifest (not sealed)")
        return
    for name in sorted(present - set(listed)):
        report.add(f"blob {name}: in sealed day {day} but in none of its manifests")
    for name, (size, sha) in sorted(listed.items()):
        report.blobs += 1
        data = cache.get(name)
        if data is None:
            report.add(f"blob {name}: listed by the manifest of {day}, missing")
        elif len(data) != size or hashlib.sha256(data).hexdigest() != sha:
            report.add(f"blob {name}: changed since {day} was sealed (size or SHA-256)")


_Pointer = tuple[str, int, int, str, set[str]]  # row key, offset, length, sha, call's names


def _check_rows(
    store: Store, day: date, report: Report, cache: _BlobCache, sealed: dict[str, set[str]]
) -> None:
    by_blob: dict[str, list[_Pointer]] = defaultdict(list)
    for row in _rows(store, day):
        report.rows += 1
        key = row["RowKey"]
        # An Int64 may come back wrapped (EntityProperty): its value.
        blob, offset, length, sha = (getattr(v, "value", v) for v in map(row.get, POINTER[1:]))
        if not blob:
            # Every call's records are archived (a replayed one keeps its first copy's place):
            # a row pointing nowhere was written by someone else.
            report.add(f"row {key}: points at no raw record")
            continue
        if not isinstance(offset, int) or not isinstance(length, int):
            report.add(f"row {key}: its raw record's place is not a number")
            continue
        names = {rows.correlation_id_of(key), *(str(row[n]) for n in NAMES if row.get(n))}
        by_blob[str(blob)].append((key, offset, length, str(sha), names))
    for blob, pointers in sorted(by_blob.items()):
        blob_day = blob[:10].replace("/", "-")
        if not BLOB_NAME.fullmatch(blob) or (blob_day in sealed and blob not in sealed[blob_day]):
            for key, *_ in pointers:
                report.add(f"row {key}: its raw record's blob {blob} is in no manifest")
        else:
            _check_members(store, blob, pointers, report, cache)


def _check_members(
    store: Store, blob: str, pointers: list[_Pointer], report: Report, cache: _BlobCache
) -> None:
    """The rows' members in one blob: there, unchanged, of their call, and keyed if sealed."""
    data = cache.get(blob)
    sealed: list[tuple[str, int]] = []
    for key, offset, length, sha, names in pointers:
        member = _member(data[offset : offset + length]) if data is not None else None
        if data is None:
            report.add(f"row {key}: its raw record's blob {blob} is missing")
        elif member is None or hashlib.sha256(member).hexdigest() != sha:
            report.add(f"row {key}: its raw record in {blob} does not match RawSha256")
        else:
            head = _head(member)
            if head.get("correlationId") not in names:
                report.add(f"row {key}: its raw record in {blob} is another call's")
            if head.get("v") == SEALED_VERSION:
                sealed.append((key, offset))
    if sealed:
        listed = store.keys.listed([RawPointer(blob, o, 0, "") for _, o in sealed])
        for key, offset in sealed:
            if (blob, offset) not in listed:
                report.add(f"row {key}: the key entity of its sealed record is gone")


def _rows(store: Store, day: date) -> Iterator[Any]:
    """The day's rows, their pointers and names only, streamed (a page of 1,000 at a time)."""
    return iter(KpiStore(store).audit_rows(f"{day:%Y-%m-%d}", [*POINTER, *NAMES]))


def _member(data: bytes) -> bytes | None:
    """A member's content; None when the bytes are no gzip member (inflation is bounded: a
    crafted range cannot make verify run out of memory)."""
    try:
        return inflate_member(data)
    except ArchiveError:
        return None


def _head(member: bytes) -> dict[str, Any]:
    """A member's readable fields (correlation id, version); {} when it is no JSON object."""
    try:
        doc = orjson.loads(member)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}

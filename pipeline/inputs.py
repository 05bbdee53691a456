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
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from . import archive
from .model import EventIn, RawPointer
from .timestamps import parse_time

EVENT_SUFFIXES = (".json", ".jsonl", ".avro")
_CAPTURE_PATH = re.compile(
    r"(?:^|/)(?P<partition>[^/]+)/(?P<y>\d{4})/(?P<mo>\d{2})/(?P<d>\d{2})/(?P<h>\d{2})/"
    r"(?P<mi>\d{2})/(?P<s>\d{2})\.avro$"
)
_ARCHIVE_PATH = re.compile(
    r"(?:^|/)(?P<y>\d{4})/(?P<mo>\d{2})/(?P<d>\d{2})/(?P<h>\d{2})/[^/]+\.jsonl\.gz$"
)
# Blobs larger than this are spooled to a temporary file, so memory stays bounded.
SPOOL_BYTES = 16 * 1024 * 1024


class InputError(ValueError):
    """An input that cannot be read (further); the message names it."""


@dataclass(frozen=True, slots=True)
class InputProblem:
    """An input that could not even be opened (so it cannot be dead-lettered)."""

    where: str
    message: str


@dataclass(frozen=True, slots=True)
class Input:
    """One file or blob. `fetch` does the I/O (read, download: run ahead in threads), `events`
    decodes what was fetched."""

    key: str  # stable identity for --resume (path, or container/name@etag)
    label: str  # for messages
    size: int  # bytes, for the progress estimate
    fetch: Callable[[], Any]
    events: Callable[[Any], Iterator[EventIn]]
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
    t = datetime(*(int(m.group(k)) for k in ("y", "mo", "d", "h", "mi", "s")), tzinfo=UTC)
    return m.group("partition"), t


def archive_path_time(path: str) -> datetime | None:
    m = _ARCHIVE_PATH.search(path)
    if not m:
        return None
    return datetime(*(int(m.group(k)) for k in ("y", "mo", "d", "h")), tzinfo=UTC)


# --- readers --------------------------------------------------------------------------------


def read_capture(stream: IO[bytes], label: str, partition: str | None) -> Iterator[EventIn]:
    try:
        import fastavro
    except ImportError:
        raise InputError(
            "reading Event Hubs Capture files needs fastavro (`make setup` installs it)"
        ) from None
    try:
        reader = fastavro.reader(stream)
        for rec in reader:
            body = rec.get("Body") or b""
            system = rec.get("SystemProperties") or {}
            key = system.get("x-opt-partition-key")
            if isinstance(key, bytes):
                key = key.decode("utf-8", "replace")
            seq = rec.get("SequenceNumber")
            yield EventIn(
                body=bytes(body),
                partition=partition,
                sequence=seq,
                enqueued=parse_time(rec.get("EnqueuedTimeUtc"))
                or parse_time(system.get("x-opt-enqueued-time")),
                offset=str(rec.get("Offset")) if rec.get("Offset") is not None else None,
                origin=f"capture:{label}#{seq}",
                partition_key=key if isinstance(key, str) else None,
            )
    except (ValueError, EOFError, OSError, TypeError, KeyError, StopIteration) as exc:
        raise InputError(
            f"{label}: not a readable Event Hubs Capture (Avro) file ({exc})"
        ) from None
    except Exception as exc:  # fastavro raises its own types for corrupt blocks
        if type(exc).__module__.startswith("fastavro"):
            raise InputError(f"{label}: corrupt Avro data ({type(exc).__name__}: {exc})") from None
        raise


def read_lines(data: bytes, label: str) -> Iterator[EventIn]:
    for lineno, line in enumerate(data.split(b"\n"), start=1):
        line = line.rstrip(b"\r")
        if line.strip():
            yield EventIn(body=line, origin=f"file:{label}:{lineno}")


def read_archive(data: bytes, blob: str, filters: Filters) -> Iterator[EventIn]:
    try:
        for offset, length, raw in archive.iter_members(data):
            member = orjson.loads(raw)
            ev = member.get("event") or {}
            if not filters.partition_ok(ev.get("partition")):
                continue
            pointer = RawPointer(blob, offset, length, archive.sha256_hex(raw))
            yield archive.member_event(member, pointer)
    except (archive.ArchiveError, orjson.JSONDecodeError) as exc:
        raise InputError(f"archive blob {blob}: {exc}") from None


# --- local files ----------------------------------------------------------------------------


def local_inputs(paths: Iterable[str | Path], filters: Filters) -> Iterator[Input | InputProblem]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in EVENT_SUFFIXES and p.is_file())
            if not found:
                yield InputProblem(str(path), "folder holds no .json, .jsonl or .avro files")
            for p in found:
                item = _local(p, filters)
                if item is not None:
                    yield item
        elif path.exists():
            item = _local(path, filters)
            if item is not None:
                yield item
        else:
            yield InputProblem(str(path), "no such file or folder")


def _local(path: Path, filters: Filters) -> Input | None:
    label = str(path)
    size = path.stat().st_size
    key = f"file:{path.resolve()}"

    def fetch() -> bytes:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise InputError(f"{label}: cannot read: {exc.strerror or exc}") from None

    if path.suffix == ".avro":
        partition, t = capture_path(path.as_posix())
        if (filters.since or filters.until) and not filters.time_ok(t):
            return None
        if not filters.partition_ok(partition):
            return None
        return Input(
            key, label, size, fetch, lambda data: read_capture(io.BytesIO(data), label, partition)
        )
    if path.suffix == ".jsonl":
        return Input(key, label, size, fetch, lambda data: read_lines(data, label))
    return Input(
        key, label, size, fetch, lambda data: iter([EventIn(body=data, origin=f"file:{label}")])
    )


# --- blob containers ------------------------------------------------------------------------


def _download(container: Any, name: str, size: int) -> IO[bytes]:
    """The blob as a file object: in memory when small, spooled to disk when large."""
    downloader = container.download_blob(name)
    if size <= SPOOL_BYTES:
        return io.BytesIO(downloader.readall())
    spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _close_after
    downloader.readinto(spool)
    spool.seek(0)
    return spool


# Runs one storage request with retries (`Store.call`); inputs read through it when given one.
Caller = Callable[[Callable[[], Any]], Any]


def _direct(fn: Callable[[], Any]) -> Any:
    return fn()


def blob_inputs(
    container: Any, prefix: str, filters: Filters, kind: str, call: Caller = _direct
) -> Iterator[Input]:
    """Capture (`kind="capture"`) or archive (`kind="archive"`) blobs under a prefix, oldest
    first, filtered on the time (and partition) their path names."""
    for blob in container.list_blobs(name_starts_with=prefix or None):
        name, size = blob.name, blob.size or 0
        key = f"blob:{container.container_name}/{name}@{blob.etag}"
        label = f"{container.container_name}/{name}"
        if kind == "capture":
            if not name.endswith(".avro"):
                continue
            partition, t = capture_path(name)
            if not filters.time_ok(t) or not filters.partition_ok(partition):
                continue
            yield Input(
                key,
                label,
                size,
                lambda name=name, size=size: call(lambda: _download(container, name, size)),
                lambda f, label=label, partition=partition: _close_after(
                    f, read_capture(f, label, partition)
                ),
            )
        else:
            if not name.endswith(".jsonl.gz") or not filters.time_ok(archive_path_time(name)):
                continue
            yield Input(
                key,
                label,
                size,
                lambda name=name: call(lambda: container.download_blob(name).readall()),
                lambda data, name=name: read_archive(data, name, filters),
            )


def _close_after(f: IO[bytes], events: Iterator[EventIn]) -> Iterator[EventIn]:
    with f:
        yield from events


def deadletter_inputs(
    container: Any, prefix: str, include_done: bool = False, call: Caller = _direct
) -> Iterator[Input]:
    """Dead letters (`replay --from-deadletter`): each blob is the event (or single-record
    envelope) as it was stored, with its partition, sequence number and origin in metadata.
    Replayed ones that now become rows are marked `status=done`, never deleted."""
    for blob in container.list_blobs(name_starts_with=prefix or None, include=["metadata"]):
        meta = dict(blob.metadata or {})
        if meta.get("status") == "done" and not include_done:
            continue
        name = blob.name
        seq = meta.get("sequencenumber")
        event = EventIn(
            body=b"",
            partition=meta.get("partition"),
            sequence=int(seq) if seq and seq.lstrip("-").isdigit() else None,
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

        yield Input(
            f"deadletter:{container.container_name}/{name}@{blob.etag}",
            f"{container.container_name}/{name}",
            blob.size or 0,
            lambda name=name: call(lambda: container.download_blob(name).readall()),
            lambda data, event=event: iter([replace(event, body=data)]),
            settle,
        )


def parse_when(value: str) -> datetime:
    """--since / --until: a day (`2025-11-04`) or a time (`2025-11-04T10:00`), UTC."""
    t = parse_time(value if "T" in value or " " in value else value + "T00:00:00Z")
    if t is None:
        raise ValueError(f"{value!r} is not a date or time (YYYY-MM-DD[THH:MM])")
    return t

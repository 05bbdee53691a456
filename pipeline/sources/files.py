"""Local event files for `replay` and `send`: `.json` (one body) and `.jsonl` (one body per
line), and the chooser of local paths (folders walked; a `.avro` file read as Event Hubs
Capture, capture_avro.py).

A `.json` file or a `.jsonl` line is one unit: at most MAX_UNIT_BYTES. A longer line is
reported and reading goes on at the next one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

from pipeline.model import EventIn
from pipeline.sources.byte_streams import FILE_CHUNK, FileStream
from pipeline.sources.capture_avro import capture_path, read_capture
from pipeline.sources.inputs import (
    MAX_UNIT_BYTES,
    Filters,
    Input,
    InputProblem,
    Report,
    mib,
    printable,
    stream_events,
)

EVENT_SUFFIXES = (".json", ".jsonl", ".avro")


def read_body(chunks: Iterable[bytes], label: str, limit: int, report: Report) -> Iterator[EventIn]:
    """A `.json` file: one event body."""
    parts: list[bytes] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            report(f"{label}: larger than {mib(limit)}: not replayed (a .json file is one event)")
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
                        report(f"{label}:{lineno}: line longer than {mib(limit)}: skipped")
                        skipping = True
                        buf.clear()
                break
            if skipping:
                skipping = False
            elif len(buf) + nl - start > limit:
                report(f"{label}:{lineno}: line longer than {mib(limit)}: skipped")
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


def local_inputs(
    paths: Iterable[str | Path],
    filters: Filters,
    *,
    limit: int = MAX_UNIT_BYTES,
    chunk: int = FILE_CHUNK,
) -> Iterator[Input | InputProblem]:
    """The inputs of files and folders given on the command line, folders walked in order."""
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

    def fetch() -> FileStream:
        return FileStream(path, label, chunk)

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
    return Input(key, label, size, fetch, stream_events(read))

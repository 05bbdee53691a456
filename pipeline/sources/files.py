"""Local event files for `replay` and `send`: `.json` (one body) and `.jsonl` (one body per
line), and the chooser of local paths (folders walked; a `.avro` file read as Event Hubs
Capture, capture_avro.py).

Log Analytics rows leave a workspace in three forms, each read here one row per event
(docs/backfill.md; the rows themselves are read by loganalytics.py):

- `az monitor log-analytics query -o json`: a `.json` file holding one array of row objects
  (azure-cli-extensions `azext_loganalytics/custom.py`); split into one event per row.
- the portal's CSV export: a `.csv` file, a header row of column names then one row per line
  (a quoted value may span lines); each row becomes a JSON object of its non-empty cells.
- a workspace data export rule: JSON lines (one row per line, no outer array) in blobs named
  `.../y=YYYY/m=MM/d=DD/h=HH/m=MM/PT05M.json` (`PT05M_N.json` past 50,000 appends; Azure
  Monitor "Log Analytics workspace data export"). A `.json` file in such a folder is read as
  lines, and so is a diagnostic setting's own `PT1H.json` (JSON lines as well).

A `.json` file or a `.jsonl` line is one unit: at most MAX_UNIT_BYTES. A longer line is
reported and reading goes on at the next one.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import os
import re
import stat
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import orjson

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
from pipeline.sources.loganalytics import is_row

EVENT_SUFFIXES = (".json", ".jsonl", ".avro", ".csv")

# An Azure Monitor storage blob written as JSON lines: a data export rule's five-minute
# `PT05M.json` (or `PT05M_2.json`; `PT5M.json` is reported too) or a diagnostic setting's
# hourly `PT1H.json`, under `y=/m=/d=/h=/m=` folders.
_MONITOR_BLOB = re.compile(
    r"/y=(\d{4})/m=(\d{2})/d=(\d{2})/h=(\d{2})/m=(\d{2})/PT\w{1,8}\.json$", re.IGNORECASE
)
# `TimeGenerated [UTC]`: the portal names the time zone of a datetime column in its header.
_HEADER_ZONE = re.compile(r"\s*\[([^\]]{1,40})\]\s*$")


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
    body = b"".join(parts)
    rows = _query_rows(body)
    if rows is None:
        yield EventIn(body=body, origin=f"file:{label}")
        return
    for n, row in enumerate(rows, 1):
        yield _row_event(row, f"file:{label}:row {n}", report)


def _query_rows(body: bytes) -> list[object] | None:
    """The rows of an `az monitor log-analytics query` answer (a JSON array whose first item
    is a Log Analytics row), or None for any other body (read as one event, as before)."""
    if not body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        return None
    try:
        doc = orjson.loads(body.removeprefix(b"\xef\xbb\xbf"))
    except orjson.JSONDecodeError:
        return None  # the pipeline dead-letters the body with the reason
    if isinstance(doc, list) and doc and is_row(doc[0]):
        return doc
    return None


def _row_event(row: object, origin: str, report: Report) -> EventIn:
    """One row as its own event: its JSON text (a row too deep to write again is reported,
    and its event carries what could be written: the pipeline dead-letters it)."""
    try:
        return EventIn(body=orjson.dumps(row), origin=origin)
    except orjson.JSONEncodeError as exc:
        report(f"{origin}: row cannot be written as JSON ({exc}): dead-lettered")
        return EventIn(body=b"[row nested too deep to write]", origin=origin)


def read_lines(
    chunks: Iterable[bytes], label: str, limit: int, report: Report
) -> Iterator[EventIn]:
    """A `.jsonl` file: one event body per line (a line that is not JSON is dead-lettered by
    the pipeline, like any event). A line longer than `limit` (its CRLF's `\\r` not counted)
    is reported and skipped."""
    for lineno, line in enumerate(_lines(chunks, limit + 1), 1):
        if line is not None and line.endswith(b"\r"):
            line = line[:-1]
        if line is None or len(line) > limit:
            report(f"{label}:{lineno}: line longer than {mib(limit)}: skipped")
        elif line.strip():
            yield EventIn(body=line, origin=f"file:{label}:{lineno}")


def _lines(chunks: Iterable[bytes], most: int) -> Iterator[bytes | None]:
    """Each line of the stream, without its `\\n`; None for a line longer than `most` bytes,
    whose bytes are not kept (memory stays within `most` whatever the line)."""
    buf = bytearray()
    skipping = False  # inside a line already too long
    for chunk in chunks:
        start = 0
        while (nl := chunk.find(b"\n", start)) >= 0:
            if skipping or len(buf) + nl - start > most:
                skipping = False
                buf.clear()
                yield None
            else:
                buf += memoryview(chunk)[start:nl]
                yield bytes(buf)
                buf.clear()
            start = nl + 1
        if not skipping:
            buf += memoryview(chunk)[start:]
            if len(buf) > most:
                skipping = True
                buf.clear()
    if skipping:
        yield None
    elif buf:
        yield bytes(buf)


def read_csv(chunks: Iterable[bytes], label: str, limit: int, report: Report) -> Iterator[EventIn]:
    """A CSV export of Log Analytics rows: one event per row, a JSON object of the row's
    non-empty cells named by the header. A row whose cell count differs from the header's,
    or that the CSV reader rejects, becomes an event of its own bytes (the pipeline
    dead-letters them as not JSON) and is reported with the reason; a row longer than
    `limit` is reported and skipped whole.

    Rows end where their quotes close (`_csv_rows`), decided before any row is parsed: a
    row rejected or skipped never leaves the rest of a quoted cell to be read as rows (a
    prompt that spelled a row inside its cell would have been stored as a call)."""
    # The csv module's own cell limit (128 Ki characters) is far below a unit's: a long
    # prompt in one cell is a row like any other. (The limit is the module's, for the
    # process: every reader here sets the same, MAX_UNIT_BYTES, but for tests.)
    csv.field_size_limit(limit)
    header: list[str] | None = None
    for start, text in _csv_rows(_text_lines(chunks, limit, label, report), limit):
        origin = f"file:{label}:line {start}"
        if text is None:
            report(f"{origin}: row longer than {mib(limit)}: skipped")
            if header is None:
                return
            continue
        if not text.strip("\r\n"):
            continue  # a blank line (a cell of spaces is a value)
        try:
            parsed = list(csv.reader([text], strict=True))
            problem = "" if len(parsed) == 1 else f"{len(parsed)} rows where one was expected"
        except csv.Error as exc:
            parsed, problem = [], f"not CSV ({exc})"
        cells = parsed[0] if not problem else None
        if header is None or (cells is not None and _TIME_HINT.search(text) and _is_header(cells)):
            # The first row, or another header (two exports concatenated, each in its own
            # column order and time zone): the rows after it are read by its columns, or
            # not at all when its times are not in UTC.
            header = _csv_header(cells or [], label, report)
            if header is None:
                return
            continue
        if cells is not None and len(cells) == len(header):
            row = {name: cell for name, cell in zip(header, cells, strict=True) if cell != ""}
            yield EventIn(body=orjson.dumps(row), origin=origin)
            continue
        if cells is not None:
            problem = f"{len(cells)} cells where the header names {len(header)}"
        report(f"{origin}: {problem}: dead-lettered")
        yield EventIn(body=text.encode("utf-8", "replace"), origin=origin)


def _csv_rows(lines: Iterable[str | int], limit: int) -> Iterator[tuple[int, str | None]]:
    """(line a row starts on, its text) for each row: lines joined while a quoted cell is
    open (`_open_after`), where a CSV reader ends a row. The text is None for a row longer
    than `limit` (or holding a line `_text_lines` skipped, given as the count of its quotes:
    a quote there is taken to open or close a cell): counted through, not kept. The lines of
    an open row are joined a thousand at a time: a quoted cell of short lines kept a string
    object a line (51 bytes for a 2-byte line: 2.7 GB for a 64 MiB file)."""
    parts: list[str] = []  # lines of the open row not joined yet
    blocks: list[str] = []  # and those joined
    start = size = 0
    inside = False  # in a quoted cell at the end of the line read
    for lineno, line in enumerate(lines, 1):
        if size == 0:
            start = lineno
        if isinstance(line, int):
            inside ^= line % 2 == 1
            size = limit + 1
        else:
            inside = _open_after(line, inside)
            size += len(line)
            parts.append(line)
            if len(parts) >= _JOIN_EVERY:
                blocks.append("".join(parts))
                parts.clear()
        if size > limit:
            parts.clear()
            blocks.clear()
        if not inside:
            yield start, ("".join([*blocks, *parts]) if size <= limit else None)
            parts, blocks, size = [], [], 0
    if parts or blocks or size:
        yield start, ("".join([*blocks, *parts]) if size <= limit else None)


# A cell as a CSV reader reads it, when it ends on its line: quoted ("" a quote inside,
# whatever follows the closing quote up to a comma read along, as a lenient reader does), or
# not starting with a quote (a quote inside it is a character: `x"y`), or empty. Repeats are
# possessive: no step back kept for each cell or quote (see tests/test_hostile.py).
_CELL = r'(?:"[^"]*+(?:""[^"]*+)*+"[^,\n]*+|[^,"\n][^,\n]*+|)'
_LINE_CLOSED = re.compile(rf"{_CELL}(?:,{_CELL})*+\r?\n?")
# In a quoted cell: up to its closing quote.
_CLOSING = re.compile(r'[^"]*+(?:""[^"]*+)*+"')
_REST_CLOSED = re.compile(rf"[^,\n]*+(?:,{_CELL})*+\r?\n?")


def _open_after(line: str, inside: bool) -> bool:
    """Whether a quoted cell is still open at the end of `line`, read from inside one or not."""
    if not inside:
        return _LINE_CLOSED.fullmatch(line) is None
    m = _CLOSING.match(line)
    return m is None or _REST_CLOSED.fullmatch(line, m.end()) is None


_JOIN_EVERY = 1024


# A column name as the portal writes one (`TimeGenerated [UTC]`, `_ResourceId`).
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}(?:\s*\[[^\]]{1,40}\])?")
_TIME_COLUMN = re.compile(r"TimeGenerated(?:\s*\[[^\]]{1,40}\])?", re.IGNORECASE)
_TIME_HINT = re.compile("timegenerated", re.IGNORECASE)  # one scan of a row, before its cells


def _is_header(cells: list[str]) -> bool:
    """A row of column names, `TimeGenerated` among them. No row of data is one: its time
    cell holds a time, which APIM writes, whatever a client put in the other cells."""
    names = [c.strip().lstrip("\ufeff") for c in cells]  # a second file's byte order mark
    return any(_TIME_COLUMN.fullmatch(c) for c in names) and all(
        not c or _COLUMN.fullmatch(c) for c in names
    )


def _csv_header(cells: list[str], label: str, report: Report) -> list[str] | None:
    """Column names without the portal's zone suffix; a time in local time cannot be
    placed in UTC, so such an export is refused rather than misread."""
    names = []
    seen: set[str] = set()
    if cells:  # a second export's byte order mark, mid-file
        cells = [cells[0].lstrip("\ufeff"), *cells[1:]]
    for cell in cells:
        m = _HEADER_ZONE.search(cell)
        if m is not None and m.group(1).strip().upper() != "UTC":
            report(f"{label}: column {printable(cell[:60])!r} is not in UTC: export it in UTC")
            return None
        name = cell[: m.start()] if m else cell.strip()
        # Records are read without regard to case (envelope.flatten): a second column of one
        # name would silently replace the first's cells (a prompt in neither row nor report).
        if name and name.lower() in seen:
            report(f"{label}: column {printable(name[:60])!r} appears twice: not replayed")
            return None
        seen.add(name.lower())
        names.append(name)
    if not names or not any(names):
        report(f"{label}: no header row")
        return None
    return names


_REPLACEMENT = "\ufffd".encode()


def _utf8(chunks: Iterable[bytes], label: str, report: Report) -> Iterator[str]:
    """The chunks as UTF-8 text, a leading BOM dropped. Bytes that are not UTF-8 (an export
    saved as Windows-1252) are read as U+FFFD and reported, once: a U+FFFD the text has
    more often than its bytes spell it (EF BF BD, counted across each chunk's edge)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    tail, said = b"", False
    for chunk in itertools.chain(chunks, [b""]):  # streamed: the empty chunk ends the text
        text = decoder.decode(chunk, final=not chunk)
        if not said and text.count("\ufffd") > (tail + chunk).count(_REPLACEMENT):
            said = True
            report(f"{label}: bytes that are not UTF-8 read as U+FFFD: export it as UTF-8")
        tail = chunk[-2:]
        yield text


def _text_lines(
    chunks: Iterable[bytes], limit: int, label: str, report: Report
) -> Iterator[str | int]:
    """UTF-8 text (a leading BOM dropped) split after each newline, a line at most `limit`
    characters: a longer one is not kept, and stands as the count of its `"` (where a CSV
    row ends depends on them). Each chunk's text is searched once: linear in the input,
    however long its lines."""
    parts: list[str] = []  # the line read so far, without a newline yet
    size = 0
    skipped: int | None = None  # quotes of a line already too long, while it goes on

    for text in _utf8(chunks, label, report):
        if skipped is not None:
            nl = text.find("\n")
            if nl < 0:
                skipped += text.count('"')
                continue
            yield skipped + text.count('"', 0, nl)
            skipped, text = None, text[nl + 1 :]
        nl = text.rfind("\n")
        if nl < 0:
            parts.append(text)
            size += len(text)
            if size > limit:
                skipped = sum(p.count('"') for p in parts)
                parts, size = [], 0
            continue
        head = "".join([*parts, text[: nl + 1]])
        parts, size = [text[nl + 1 :]], len(text) - nl - 1
        for line in head.split("\n")[:-1]:
            yield line.count('"') if len(line) > limit else line + "\n"
    rest = "".join(parts)
    if skipped is not None:
        yield skipped
    elif rest:
        yield rest.count('"') if len(rest) > limit else rest


def monitor_blob_time(path: str) -> datetime | None:
    """The folder time of an Azure Monitor JSON-lines blob (`.../y=/m=/d=/h=/m=/PT05M.json`),
    or None when `path` is not one."""
    m = _MONITOR_BLOB.search(path)
    if m is None:
        return None
    try:
        return datetime(*(int(g) for g in m.groups()), tzinfo=UTC)
    except ValueError:
        return None


def local_inputs(
    paths: Iterable[str | Path],
    filters: Filters,
    *,
    limit: int = MAX_UNIT_BYTES,
    chunk: int = FILE_CHUNK,
) -> Iterator[Input | InputProblem]:
    """The inputs of files and folders given on the command line, folders walked in order.
    Suffixes are read without regard to case (`EXPORT.CSV`); what is not a regular file (a
    FIFO, a device, a link to nothing) is reported, never opened: reading a FIFO waits for
    a writer, forever."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if _suffix(p) in EVENT_SUFFIXES and not p.is_dir()
            )
            if not found:
                yield InputProblem(
                    printable(str(path)), "folder holds no .json, .jsonl, .csv or .avro files"
                )
            for p in found:
                yield from _regular(p, filters, limit, chunk)
        elif path.exists() or path.is_symlink():
            yield from _regular(path, filters, limit, chunk)
        else:
            yield InputProblem(printable(str(path)), "no such file or folder")


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _regular(
    path: Path, filters: Filters, limit: int, chunk: int
) -> Iterator[Input | InputProblem]:
    try:
        st = path.stat()
    except OSError as exc:
        yield InputProblem(printable(str(path)), f"cannot be read ({exc.strerror or exc})")
        return
    if not stat.S_ISREG(st.st_mode):
        yield InputProblem(printable(str(path)), "not a regular file (a FIFO or a device)")
        return
    item = _local(path, st, filters, limit, chunk)
    if item is not None:
        yield item


def _local(
    path: Path, st: os.stat_result, filters: Filters, limit: int, chunk: int
) -> Input | None:
    """A regular file as an input; `st`: the status that found it regular (its size and
    time are in the resume key)."""
    label = printable(str(path))
    size = st.st_size
    # The resume state is JSON: a name that is not UTF-8 is kept as its bytes in hex, under a
    # prefix of its own (escaped in place, `a\xff` named the file called `a\\xff` too). The
    # size and modification time are part of the key: a file that grew since (an hourly
    # PT1H.json downloaded again, an export written again) is not the input that was done.
    raw = os.fsencode(path.resolve())
    try:
        key = "file:" + raw.decode()
    except UnicodeDecodeError:
        key = "file-bytes:" + raw.hex()
    key += f"#{size}:{st.st_mtime_ns}"

    def fetch() -> FileStream:
        return FileStream(path, label, chunk)

    suffix = _suffix(path)
    if suffix == ".avro":
        partition, t = capture_path(path.as_posix())
        if (filters.since or filters.until) and not filters.time_ok(t):
            return None
        if not filters.partition_ok(partition):
            return None
        read = partial(read_capture, label=label, partition=partition, limit=limit)
    elif suffix == ".csv":
        read = partial(read_csv, label=label, limit=limit)
    elif suffix == ".jsonl" or (blob_time := monitor_blob_time(path.as_posix())):
        if suffix == ".json" and not filters.time_ok(blob_time):
            return None  # --since/--until on the export's folder time, as on Capture's
        read = partial(read_lines, label=label, limit=limit)
    else:
        read = partial(read_body, label=label, limit=limit)
    return Input(key, label, size, fetch, stream_events(read))

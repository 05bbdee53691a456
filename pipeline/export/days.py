"""Export days: each day's datasets written to local temporary files, compared with what the
target holds, and published only when they changed.

Layout (a contract): `calls/day=YYYY-MM-DD/part-NNNN.parquet`, `kpi/day=.../part-NNNN.parquet`,
`focus/day=.../part-NNNN.parquet`, and `_manifests/day=YYYY-MM-DD.json` listing the day's files
with rows, bytes and sha256, the schema version and the pipeline version.

Exact and idempotent:
- a day whose rows did not change is not written at all: its files are byte for byte what the
  last export wrote (Parquet written deterministically), its manifest the same;
- a changed dataset is written whole under new part numbers, then the manifest (the day's
  table of contents), then the previous files are deleted: a reader that goes through the
  manifest never sees half a day, and no row is lost or doubled however often it is run.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from pipeline import __version__
from pipeline.export.columns import CALLS, CALLS_READ, DATASETS, FOCUS, KPI, SCHEMA_VERSION
from pipeline.export.focus import FocusDay
from pipeline.export.parquet import PartWriter
from pipeline.kpi import attribution, prices
from pipeline.kpi.rollup import TOTAL_KEY
from pipeline.settings import Config
from pipeline.store.account import Store
from pipeline.store.exports import Target
from pipeline.store.kpis import KpiStore
from pipeline.store.rows import correlation_id_of

PART_ROWS = 1_000_000  # rows per calls file: a busy day is several files, each a few row groups
PARQUET = "application/vnd.apache.parquet"
_PART = re.compile(r"part-(\d{4,})\.parquet$")


@dataclass(slots=True)
class Produced:
    """A file written locally, before publishing."""

    path: Path
    rows: int
    size: int = 0
    sha256: str = ""

    def seal(self) -> Produced:
        digest = hashlib.sha256()
        with self.path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        self.size = self.path.stat().st_size
        self.sha256 = digest.hexdigest()
        return self


@dataclass(slots=True)
class DayExport:
    day: date
    written: list[str] = field(default_factory=list)  # datasets written (changed)
    unchanged: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # paths now listed by the manifest
    # Entries of the old manifest that were not acted on (see `checked`), said.
    problems: list[str] = field(default_factory=list)


def export_days(
    days: Iterable[date], cfg: Config, store: Store, target: Target, what: tuple[str, ...]
) -> list[DayExport]:
    table = prices.load(cfg.price_table, read_blob=store.read_blob)
    teams = attribution.load(cfg.attribution, read_blob=store.read_blob)
    out = []
    for day in days:
        with tempfile.TemporaryDirectory(prefix="aoai-export-") as work:
            produced = produce(day, store, what, table, teams, Path(work))
            out.append(publish(day, produced, target))
    return out


# --- producing a day's files -----------------------------------------------------------------


def produce(
    day: date,
    store: Store,
    what: tuple[str, ...],
    table: prices.PriceTable,
    teams: attribution.Attribution,
    work: Path,
) -> dict[str, list[Produced]]:
    """The day's datasets in `what`, as local files (calls and focus from one pass)."""
    out: dict[str, list[Produced]] = {}
    if "calls" in what or "focus" in what:
        # A transient failure while paging restarts the day's pass from a fresh query.
        calls, focus = store.call(
            lambda: calls_files(
                KpiStore(store).audit_rows(f"{day}", CALLS_READ), day, what, table, teams, work
            )
        )
        if "calls" in what:
            out["calls"] = calls
        if focus is not None:
            out["focus"] = [_write(work / "focus.parquet", FOCUS, "focus", focus)]
    if "kpi" in what:
        rows = store.call(lambda: list(KpiStore(store).rows(f"{day}", f"{day}")))
        out["kpi"] = [_write(work / "kpi.parquet", KPI, "kpi", (_kpi_values(e) for e in rows))]
    return out


def calls_files(
    rows: Iterable[Mapping[str, Any]],
    day: date,
    what: tuple[str, ...],
    table: prices.PriceTable,
    teams: attribution.Attribution,
    work: Path,
) -> tuple[list[Produced], list[dict[str, Any]] | None]:
    """One pass over a day's audit rows (streamed): the calls files (a new part every
    PART_ROWS rows), and the FOCUS rows when asked."""
    focus = FocusDay(day, table, teams) if "focus" in what else None
    parts: list[Produced] = []
    writer: PartWriter | None = None
    for row in rows:
        if focus is not None:
            focus.add(row)
        if "calls" not in what:
            continue
        if writer is None or writer.rows >= PART_ROWS:
            if writer is not None:
                parts.append(_close(writer))
            writer = PartWriter(work / f"calls-{len(parts)}.parquet", CALLS, "calls")
        values = dict(row)
        values["CorrelationId"] = correlation_id_of(row["RowKey"])
        writer.add(values)
    if "calls" in what:
        if writer is None:  # a day without calls: one empty file says so
            writer = PartWriter(work / "calls-0.parquet", CALLS, "calls")
        parts.append(_close(writer))
    return parts, (focus.rows() if focus is not None else None)


def _close(writer: PartWriter) -> Produced:
    writer.close()
    return Produced(writer.path, writer.rows).seal()


def _write(
    path: Path, columns: tuple[tuple[str, str], ...], dataset: str, rows: Iterable[Mapping]
) -> Produced:
    writer = PartWriter(path, columns, dataset)
    for values in rows:
        writer.add(values)
    return _close(writer)


def _kpi_values(entity: Mapping[str, Any]) -> dict[str, Any]:
    values = dict(entity)
    values["IsTotal"] = entity["RowKey"] == TOTAL_KEY
    values["Day"] = entity["PartitionKey"]
    return values


# --- publishing -------------------------------------------------------------------------------


def manifest_path(day: date) -> str:
    return f"_manifests/day={day}.json"


def _content(entries: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    return [(e["rows"], e["bytes"], e["sha256"]) for e in entries]


def _next_part(entries: list[dict[str, Any]]) -> int:
    numbers = [int(m.group(1)) for e in entries if (m := _PART.search(e["path"]))]
    return max(numbers, default=-1) + 1


_MANIFEST = re.compile(r"_manifests/day=(\d{4}-\d{2}-\d{2})\.json")


def manifest_day(name: str) -> date | None:
    """The day of a manifest named as `manifest_path` names it, or None."""
    m = _MANIFEST.fullmatch(name)
    if m is None:
        return None
    try:
        return date.fromisoformat(m.group(1))
    except ValueError:
        return None


def checked(raw: bytes | None, day: date, where: str) -> tuple[dict[str, list[dict]], list[str]]:
    """A manifest's datasets, keeping only entries the exporter could have written (a path
    `{dataset}/day={day}/part-NNNN.parquet` of that dataset and day, its rows, bytes and
    digest), and what was left out, said. Whoever can write to the export can write a
    manifest: a path it names is deleted, read and copied, so one that is not ours (`../x`,
    another day's file) must never be acted on."""
    if not raw:
        return {}, []
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}, [f"{where}: not valid JSON; read as no manifest"]
    found = doc.get("datasets") if isinstance(doc, dict) else None
    if not isinstance(found, dict):
        return {}, ([] if found is None else [f'{where}: "datasets" is not an object'])
    datasets: dict[str, list[dict]] = {}
    problems = []
    for dataset, entries in found.items():
        if dataset not in DATASETS or not isinstance(entries, list):
            problems.append(f"{where}: dataset {dataset!r} is not one the export writes")
            continue
        kept = datasets[dataset] = []
        for entry in entries:
            if _entry_ok(entry, dataset, day):
                kept.append(entry)
            else:
                path = entry.get("path") if isinstance(entry, dict) else None
                problems.append(
                    f"{where}: {dataset} entry {path!r} is not a file the export writes"
                )
    return datasets, problems


def _entry_ok(entry: Any, dataset: str, day: date) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return False
    folder, _, name = entry["path"].rpartition("/")
    numbers = [entry.get(k) for k in ("rows", "bytes")]
    return (
        folder == f"{dataset}/day={day}"
        and _PART.fullmatch(name) is not None
        and all(isinstance(n, int) and not isinstance(n, bool) for n in numbers)
        and isinstance(entry.get("sha256"), str)
    )


def publish(day: date, produced: dict[str, list[Produced]], target: Target) -> DayExport:
    """Write what changed: data files, then the manifest, then delete the replaced files."""
    where = f"{target.describe()}: {manifest_path(day)}"
    datasets, problems = checked(target.read(manifest_path(day)), day, where)
    result = DayExport(day, problems=problems)
    stale: list[str] = []
    for dataset in DATASETS:
        files = produced.get(dataset)
        if files is None:
            continue
        result.rows[dataset] = sum(f.rows for f in files)
        before = datasets.get(dataset) or []
        if _content(before) == [(f.rows, f.size, f.sha256) for f in files]:
            result.unchanged.append(dataset)
            continue
        first = _next_part(before)
        entries = []
        for i, f in enumerate(files):
            path = f"{dataset}/day={day}/part-{first + i:04d}.parquet"
            target.put(path, f.path, PARQUET)
            entries.append({"path": path, "rows": f.rows, "bytes": f.size, "sha256": f.sha256})
        datasets[dataset] = entries
        stale += [e["path"] for e in before]
        result.written.append(dataset)
    # A manifest with entries left out is written again without them: read by `sql` or an
    # engine, it must list only the files it holds.
    if result.written or problems:
        doc = {
            "day": f"{day}",
            "schemaVersion": SCHEMA_VERSION,
            "pipelineVersion": __version__,
            "datasets": datasets,
        }
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
            tmp.write(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2))
        try:
            target.put(manifest_path(day), Path(tmp.name), "application/json")
        finally:
            Path(tmp.name).unlink()
        for path in stale:
            target.delete(path)
    result.files = [e["path"] for entries in datasets.values() for e in entries]
    # Files of the day's folders the manifest does not list (an export that stopped between
    # its manifest and its deletes, or before its manifest): removed, so that engines that
    # read the folders, not the manifests, count each row once.
    listed = set(result.files)
    for dataset in DATASETS:
        for path in target.list(f"{dataset}/day={day}"):
            if path not in listed and _PART.search(path):
                target.delete(path)
    return result

"""Replay recorded events through the same `process_batch` the trigger uses.

Inputs: files or folders of Event Hub message bodies, `.json` (the file is one body) or
`.jsonl` (one body per line). A bad line becomes a dead letter like a bad event; a file that
cannot be read is reported and counted as not stored.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .ingest import BatchResult, process_batch
from .model import EventIn
from .settings import Config
from .store import Store

EVENT_SUFFIXES = (".json", ".jsonl")


@dataclass(frozen=True, slots=True)
class InputProblem:
    """An input that could not even be read (so it cannot be dead-lettered)."""

    where: str
    message: str


def expand_paths(paths: Iterable[str | Path]) -> Iterator[Path | InputProblem]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in EVENT_SUFFIXES and p.is_file())
            if not found:
                yield InputProblem(str(path), "folder holds no .json or .jsonl files")
            yield from found
        elif path.exists():
            yield path
        else:
            yield InputProblem(str(path), "no such file or folder")


def file_events(paths: Iterable[str | Path]) -> Iterator[EventIn | InputProblem]:
    """Events of each file, in order. Origins name file and line for messages."""
    for item in expand_paths(paths):
        if isinstance(item, InputProblem):
            yield item
            continue
        try:
            data = item.read_bytes()
        except OSError as exc:
            yield InputProblem(str(item), f"cannot read: {exc.strerror or exc}")
            continue
        if item.suffix == ".jsonl":
            for lineno, line in enumerate(data.split(b"\n"), start=1):
                line = line.rstrip(b"\r")
                if line.strip():
                    yield EventIn(body=line, origin=f"file:{item}:{lineno}")
        else:
            yield EventIn(body=data, origin=f"file:{item}")


@dataclass(slots=True)
class ReplaySummary:
    inputs: int = 0
    totals: BatchResult = field(default_factory=BatchResult)
    problems: list[InputProblem] = field(default_factory=list)
    not_stored: int = 0
    storage_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems and self.not_stored == 0

    def lines(self) -> list[str]:
        t = self.totals
        out = [
            f"{t.events} events, {t.records} records → {t.calls} calls: "
            f"{t.created} rows created, {t.updated} updated, {t.unchanged} unchanged",
        ]
        if t.skipped:
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(t.skipped.items()))
            out.append(f"{sum(t.skipped.values())} records skipped (other categories: {detail})")
        out.append(f"{t.dead_letters} dead letters")
        if self.problems:
            out.append(f"{len(self.problems)} inputs could not be read")
        if self.not_stored:
            out.append(f"{self.not_stored} events NOT stored: {self.storage_error}")
        return out


def replay(
    items: Iterable[EventIn | InputProblem],
    cfg: Config,
    store: Store,
    *,
    batch_size: int = 100,
    write_archive: bool = True,
    say: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
) -> ReplaySummary:
    summary = ReplaySummary()
    batch: list[EventIn] = []

    def flush() -> None:
        if not batch:
            return
        if summary.storage_error is not None:
            summary.not_stored += len(batch)
        else:
            try:
                result = process_batch(batch, cfg, store, write_archive=write_archive)
            except Exception as exc:  # noqa: BLE001 - reported, counted, and the exit code says so
                summary.storage_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                summary.not_stored += len(batch)
                say(f"error: storage failed, stopping: {summary.storage_error}")
            else:
                summary.totals.add(result)
                for dead in result.dead:
                    where = dead.event.origin.removeprefix("file:")
                    say(f"{where}: dead-lettered: {dead.reason}")
        batch.clear()

    for item in items:
        if isinstance(item, InputProblem):
            summary.problems.append(item)
            say(f"error: {item.where}: {item.message}")
            continue
        summary.inputs += 1
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    flush()
    return summary

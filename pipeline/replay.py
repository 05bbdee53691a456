"""Replay recorded events through the same `process_batch` the trigger uses.

Long runs: a progress line on stderr; `--resume` skips inputs a previous run completed (a
state file records each input once all of its events are stored); `--dry-run` reports what
would be created or changed without writing; Ctrl-C stops cleanly after the current batch.
Inputs are fetched ahead in threads (downloads overlap parsing), at most a few at a time, so
memory stays bounded whatever the archive size.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from . import heap
from .ingest import BatchResult, process_batch
from .inputs import Input, InputError, InputProblem
from .model import EventIn
from .settings import Config
from .store import Store

PREFETCH = 3  # inputs fetched ahead of the one being parsed


@dataclass(slots=True)
class ReplaySummary:
    inputs: int = 0
    skipped_inputs: int = 0  # done in an earlier run (--resume)
    totals: BatchResult = field(default_factory=BatchResult)
    problems: list[InputProblem] = field(default_factory=list)
    not_stored: int = 0
    storage_error: str | None = None
    interrupted: bool = False
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems and self.not_stored == 0 and not self.interrupted

    def lines(self) -> list[str]:
        t = self.totals
        verb = "would be " if self.dry_run else ""
        out = [
            f"{t.events} events, {t.records} records → {t.calls} calls: "
            f"{t.created} rows {verb}created, {t.updated} {verb}updated, {t.unchanged} unchanged",
        ]
        if self.skipped_inputs:
            out.append(f"{self.skipped_inputs} inputs skipped (completed by an earlier run)")
        if t.skipped:
            detail = ", ".join(f"{k}: {v}" for k, v in sorted(t.skipped.items()))
            out.append(f"{sum(t.skipped.values())} records skipped (other categories: {detail})")
        out.append(f"{t.dead_letters} dead letters" + (" (not written)" if self.dry_run else ""))
        out.append(f"{t.new_archive_blobs} archive blobs {verb}created")
        if self.problems:
            out.append(f"{len(self.problems)} inputs could not be read")
        if self.not_stored:
            out.append(f"{self.not_stored} events NOT stored: {self.storage_error}")
        if self.interrupted:
            out.append("interrupted after a complete batch: run again with --resume to continue")
        return out


class ResumeState:
    """Inputs completed by earlier runs, in a small JSON file written atomically."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        self.done: set[str] = set()
        if resume and path.exists():
            try:
                self.done = set(orjson.loads(path.read_bytes()).get("done", []))
            except (orjson.JSONDecodeError, AttributeError):
                raise InputError(
                    f"{path}: resume state is unreadable; delete it to start over"
                ) from None

    def mark(self, key: str) -> None:
        self.done.add(key)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_bytes(orjson.dumps({"done": sorted(self.done)}))
        os.replace(tmp, self.path)


class Progress:
    """One line on stderr: rewritten in place on a terminal, a line every 10 s otherwise."""

    def __init__(self, total_inputs: int, total_bytes: int, stream: TextIO | None = None) -> None:
        self.total_inputs, self.total_bytes = total_inputs, total_bytes
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        self.inputs = self.bytes = self.events = self.calls = 0

    def update(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        elapsed = max(now - self.start, 1e-6)
        rate = self.calls / elapsed
        eta = ""
        if self.total_bytes and self.bytes:
            left = elapsed * (self.total_bytes - self.bytes) / self.bytes
            eta = f" · ETA {_duration(left)}"
        line = (
            f"inputs {self.inputs}/{self.total_inputs} · events {self.events:,} · "
            f"calls {self.calls:,} ({rate:,.0f}/s){eta}"
        )
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
            if force:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


@contextlib.contextmanager
def stop_on_ctrl_c(flag: threading.Event) -> Iterator[None]:
    """First Ctrl-C: finish the current batch, then stop. Second: stop now."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()
        print("\nstopping after the current batch (Ctrl-C again to stop now)", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _prefetched(
    inputs: list[Input], pool: ThreadPoolExecutor
) -> Iterator[tuple[Input, Future[Any]]]:
    queue: deque[tuple[Input, Future[Any]]] = deque()
    pending = iter(inputs)
    for item in pending:
        queue.append((item, pool.submit(item.fetch)))
        if len(queue) >= PREFETCH:
            break
    while queue:
        item, future = queue.popleft()
        nxt = next(pending, None)
        if nxt is not None:
            queue.append((nxt, pool.submit(nxt.fetch)))
        yield item, future


def replay(
    items: Iterable[Input | InputProblem],
    cfg: Config,
    store: Store,
    *,
    batch_size: int = 100,
    dry_run: bool = False,
    state: ResumeState | None = None,
    progress: Progress | None = None,
    say: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    stop: threading.Event | None = None,
) -> ReplaySummary:
    summary = ReplaySummary(dry_run=dry_run)
    stop = stop or threading.Event()
    inputs: list[Input] = []
    for item in items:
        if isinstance(item, InputProblem):
            summary.problems.append(item)
            say(f"error: {item.where}: {item.message}")
        elif state is not None and item.key in state.done:
            summary.skipped_inputs += 1
        else:
            inputs.append(item)
    summary.inputs = len(inputs)
    if progress is not None:
        progress.total_inputs = len(inputs)
        progress.total_bytes = sum(i.size for i in inputs)

    batch: list[EventIn] = []
    batch_inputs: list[Input] = []  # the input of each event of `batch`
    # Inputs fully read whose last event is in `batch`: done once the batch is stored.
    finished_in_batch: list[Input] = []

    def flush() -> None:
        if not batch:
            return
        if summary.storage_error is not None:
            summary.not_stored += len(batch)
        else:
            try:
                result = process_batch(batch, cfg, store, dry_run=dry_run)
                heap.release()
            except Exception as exc:  # noqa: BLE001 - reported, counted, and the exit code says so
                summary.storage_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                summary.not_stored += len(batch)
                say(f"error: storage failed, stopping: {summary.storage_error}")
            else:
                summary.totals.add(result)
                for dead in result.dead:
                    where = dead.event.origin.removeprefix("file:")
                    say(f"{where}: dead-lettered: {dead.reason}")
                if progress is not None:
                    progress.calls += result.calls
                if not dry_run:
                    dead = {id(d.event) for d in result.dead}
                    for event, source in zip(batch, batch_inputs, strict=True):
                        if source.settle is not None:
                            source.settle(event, id(event) not in dead)
                if state is not None and not dry_run:
                    for done in finished_in_batch:
                        state.mark(done.key)
        batch.clear()
        batch_inputs.clear()
        finished_in_batch.clear()

    with ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="fetch") as pool:
        for item, fetched in _prefetched(inputs, pool):
            if stop.is_set() or summary.storage_error is not None:
                break
            try:
                for event in item.events(fetched.result()):
                    batch.append(event)
                    batch_inputs.append(item)
                    if progress is not None:
                        progress.events += 1
                    if len(batch) >= batch_size:
                        flush()
                        if progress is not None:
                            progress.update()
                        if stop.is_set() or summary.storage_error is not None:
                            break
            except InputError as exc:
                summary.problems.append(InputProblem(item.label, str(exc)))
                say(f"error: {exc}")
                continue
            if stop.is_set() or summary.storage_error is not None:
                break
            finished_in_batch.append(item)
            if progress is not None:
                progress.inputs += 1
                progress.bytes += item.size
        if not stop.is_set():
            flush()
        else:
            summary.interrupted = True
            flush()  # events already read from finished inputs are stored, not dropped
    if progress is not None:
        progress.update(force=True)
    return summary

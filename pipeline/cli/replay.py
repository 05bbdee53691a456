"""Replay recorded events through the same `process_batch` the trigger uses.

Long runs: a progress line on stderr; `--resume` skips inputs a previous run completed (a
state file records each input once it was read to its end without a problem and all of its
events are stored, including when its last event exactly fills a batch); `--dry-run` reports
what would be created or changed without writing anything (not even a missing table);
Ctrl-C stops cleanly after the current batch. Inputs are opened ahead in threads (a blob's
first chunk downloads while the previous input is parsed) and read in chunks (inputs.py), so
memory stays bounded whatever the input size.

A damaged input, or a damaged part of one (a corrupt block or member, an over-long line, a
"zip bomb"), is reported by name and counted, and the run goes on with the rest of it and the
next inputs; only storage failing (the audit storage, or the storage an input is read from)
stops the run.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
from azure.core.exceptions import AzureError, ResourceNotFoundError

from pipeline.common import heap
from pipeline.ingest.batch import BatchResult, process_batch
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.sources.inputs import Input, InputError, InputProblem
from pipeline.store.account import Store

PREFETCH = 3  # inputs fetched ahead of the one being parsed


@dataclass(slots=True)
class ReplaySummary:
    inputs: int = 0
    skipped_inputs: int = 0  # done in an earlier run (--resume)
    totals: BatchResult = field(default_factory=BatchResult)
    problems: list[InputProblem] = field(default_factory=list)
    not_stored: int = 0
    storage_error: str | None = None  # writing failed: the run stopped
    source_error: str | None = None  # reading an input's storage failed: the run stopped
    interrupted: bool = False
    dry_run: bool = False

    @property
    def failed_inputs(self) -> int:
        """Inputs with at least one problem (unreadable, or a damaged part skipped)."""
        return len({p.where for p in self.problems})

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and self.not_stored == 0
            and not self.interrupted
            and self.source_error is None
        )

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
            out.append(
                f"{self.failed_inputs} inputs failed, wholly or in part ({len(self.problems)} "
                "errors, listed above; what could be read of them was replayed)"
            )
        if self.not_stored:
            out.append(f"{self.not_stored} events NOT stored: {self.storage_error}")
        if self.source_error:
            out.append(f"stopped: {self.source_error}")
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
    try:
        while queue:
            item, future = queue.popleft()
            nxt = next(pending, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(nxt.fetch)))
            yield item, future
    finally:  # stopped early: close what was opened ahead
        for _, future in queue:
            future.add_done_callback(_close_fetched)


def _close_fetched(future: Future[Any]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    close = getattr(future.result(), "close", None)
    if close is not None:
        close()


def _with_last(events: Iterator[EventIn]) -> Iterator[tuple[EventIn, bool]]:
    """Each event, and whether it is the input's last: the input is read to its end (and
    has reported all its problems) before its last event is handed over."""
    previous = next(events, None)
    while previous is not None:
        current = next(events, None)
        yield previous, current is None
        previous = current


def _is_storage_failure(exc: BaseException) -> bool:
    """A failure of storage itself (unreachable, refused, throttled past the retries), as
    opposed to a problem with one input's content."""
    return isinstance(exc, AzureError | ConnectionError | TimeoutError)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {Path(last.filename).name}:{last.lineno}"


def _dry_run_store(store: Store) -> Store:
    """The store as a dry run sees it: an audit table that does not exist yet (a dry run
    against a new account creates nothing, not even the table) reads as one without rows."""
    view = copy.copy(store)
    fetch = store.fetch

    def fetch_or_nothing(pk: str, keys: Iterable[str]) -> dict[str, Any]:
        try:
            return fetch(pk, keys)
        except ResourceNotFoundError:
            return {}

    view.fetch = fetch_or_nothing  # type: ignore[method-assign]
    return view


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
    """Replay `items` in batches of `batch_size` events. A damaged input, or part of one, is
    reported (`say`) and counted, and the run goes on; only storage failing stops it."""
    summary = ReplaySummary(dry_run=dry_run)
    stop = stop or threading.Event()
    if dry_run:
        store = _dry_run_store(store)
    inputs: list[Input] = []

    def problem(where: str, message: str) -> None:
        summary.problems.append(InputProblem(where, message))
        say(f"error: {message}")

    for item in items:
        if isinstance(item, InputProblem):
            problem(item.where, f"{item.where}: {item.message}")
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
    # Inputs read to their end without a problem whose last event is in `batch`: done (for
    # --resume) once the batch is stored.
    finished_in_batch: list[Input] = []

    def stopping() -> bool:
        return (
            stop.is_set() or summary.storage_error is not None or summary.source_error is not None
        )

    def mark(item: Input) -> None:
        if state is not None and not dry_run:
            state.mark(item.key)

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
                for done in finished_in_batch:
                    mark(done)
        batch.clear()
        batch_inputs.clear()
        finished_in_batch.clear()

    with ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="fetch") as pool:
        fetched_inputs = _prefetched(inputs, pool)
        for item, fetched in fetched_inputs:
            if stopping():
                fetched.add_done_callback(_close_fetched)
                break
            problems_before = len(summary.problems)

            def report(message: str, item: Input = item) -> None:
                problem(item.label, message)

            events: Iterator[EventIn] | None = None
            count = 0
            try:
                events = iter(item.events(fetched.result(), report=report))
                for event, last in _with_last(events):
                    count += 1
                    batch.append(event)
                    batch_inputs.append(item)
                    if last and len(summary.problems) == problems_before:
                        finished_in_batch.append(item)
                    if progress is not None:
                        progress.events += 1
                    if len(batch) >= batch_size:
                        flush()
                        if progress is not None:
                            progress.update()
                        if stopping():
                            break
            except InputError as exc:
                problem(item.label, str(exc))
            except Exception as exc:  # noqa: BLE001 - sorted below: storage stops, the rest is this input's
                if _is_storage_failure(exc):
                    summary.source_error = (
                        f"reading {item.label}: {type(exc).__name__}: {exc}".splitlines()[0][:300]
                    )
                    say(f"error: storage failed, stopping: {summary.source_error}")
                    break
                problem(item.label, f"{item.label}: could not be read ({_where(exc)})")
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()
            if stopping():
                break
            if count == 0 and len(summary.problems) == problems_before:
                mark(item)  # nothing to store: done already
            if progress is not None:
                progress.inputs += 1
                progress.bytes += item.size
        fetched_inputs.close()
        if stop.is_set():
            summary.interrupted = True
        flush()  # events already read are stored, not dropped (after Ctrl-C too)
    if progress is not None:
        progress.update(force=True)
    return summary

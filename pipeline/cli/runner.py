"""The replay runner: inputs read in turn, their events cut into batches and stored by the
same `process_batch` the trigger uses.

Steps: choose the inputs (`_Run.admit`: problems reported, inputs done in an earlier run
skipped), read each (`_Run.read`: opened ahead in threads, a blob's first chunk downloading
while the previous input is parsed, and read in chunks, so memory stays bounded whatever the
input size), batch (`_Batch`), process (`_Run.flush`), record what is done for `--resume`
(`resume.py`: once an input was read to its end without a problem and all of its events are
stored, including when its last event exactly fills a batch) and show progress (`progress.py`).
`dry_run` reports what would be created or changed without writing anything (not even a
missing table); `stop` (Ctrl-C) ends the run cleanly after the current batch.

A damaged input, or a damaged part of one (a corrupt block or member, an over-long line, a
"zip bomb"), is reported by name and counted, and the run goes on with the rest of it and the
next inputs; only storage failing (the audit storage, or the storage an input is read from)
stops the run.
"""

from __future__ import annotations

import copy
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from pipeline.cli.progress import Progress
from pipeline.cli.resume import ResumeState
from pipeline.common import heap
from pipeline.common.render import terminal_text
from pipeline.ingest.batch import BatchResult, process_batch
from pipeline.ingest.plan import UNOPENED_SKIP
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.sources.inputs import Input, InputError, InputProblem
from pipeline.store.account import Store

PREFETCH = 3  # inputs fetched ahead of the one being parsed
MAX_PROBLEMS = 100  # problems printed and kept; the others are counted


@dataclass(slots=True)
class ReplaySummary:
    inputs: int = 0
    skipped_inputs: int = 0  # done in an earlier run (--resume)
    totals: BatchResult = field(default_factory=BatchResult)
    # The first MAX_PROBLEMS problems, then counted: a CSV of millions of bad rows reports
    # one each, and keeping them all held the whole run's messages in memory.
    problems: list[InputProblem] = field(default_factory=list)
    problem_count: int = 0
    failed: set[str] = field(default_factory=set)  # inputs with a problem
    not_stored: int = 0
    storage_error: str | None = None  # writing failed: the run stopped
    source_error: str | None = None  # reading an input's storage failed: the run stopped
    interrupted: bool = False
    dry_run: bool = False

    @property
    def failed_inputs(self) -> int:
        """Inputs with at least one problem (unreadable, or a damaged part skipped)."""
        return len(self.failed)

    @property
    def ok(self) -> bool:
        return (
            not self.problem_count
            and self.not_stored == 0
            and not self.interrupted
            and self.source_error is None
            # An archive member no key opens (not erased: its key entity is gone) was not
            # replayed: the run is not complete, whatever else it did.
            and not self.totals.skipped.get(UNOPENED_SKIP)
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
            out.append(f"{sum(t.skipped.values())} records skipped (other categories: {_named(t)})")
        out.append(f"{t.dead_letters} dead letters" + (" (not written)" if self.dry_run else ""))
        out.append(f"{t.new_archive_blobs} archive blobs {verb}created")
        if self.problem_count:
            all_shown = self.problem_count == len(self.problems)
            shown = "" if all_shown else f", the first {MAX_PROBLEMS}"
            out.append(
                f"{self.failed_inputs} inputs failed, wholly or in part ({self.problem_count} "
                f"errors, listed above{shown}; what could be read of them was replayed)"
            )
        if self.not_stored:
            out.append(f"{self.not_stored} events NOT stored: {self.storage_error}")
        if self.source_error:
            out.append(f"stopped: {self.source_error}")
        if self.interrupted:
            out.append("interrupted after a complete batch: run again with --resume to continue")
        return out


# Category names come from the records (any sender's; cut by ingest): escaped, the most common.
_SHOWN_CATEGORIES = 10


def _named(t: BatchResult) -> str:
    top = t.skipped.most_common(_SHOWN_CATEGORIES)
    names = ", ".join(f"{terminal_text(k)}: {v}" for k, v in sorted(top))
    rest = len(t.skipped) - len(top)
    return names + (f", and {rest} more" if rest > 0 else "")


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
    run = _Run(
        cfg,
        _dry_run_store(store) if dry_run else store,
        batch_size,
        dry_run,
        state,
        progress,
        say,
        stop or threading.Event(),
    )
    inputs = run.admit(items)
    with ThreadPoolExecutor(max_workers=PREFETCH, thread_name_prefix="fetch") as pool:
        fetched_inputs = _prefetched(inputs, pool)
        for item, fetched in fetched_inputs:
            if run.stopping():
                fetched.add_done_callback(_close_fetched)
                break
            run.read(item, fetched)
            if run.stopping():
                break
        fetched_inputs.close()
        if run.stop.is_set():
            run.summary.interrupted = True
        run.flush()  # events already read are stored, not dropped (after Ctrl-C too)
    if progress is not None:
        progress.update(force=True)
    return run.summary


@dataclass(slots=True)
class _Batch:
    """The events read and not stored yet, and the input of each."""

    events: list[EventIn] = field(default_factory=list)
    inputs: list[Input] = field(default_factory=list)
    # Inputs read to their end without a problem whose last event is in `events`: done (for
    # --resume) once the batch is stored.
    finished: list[Input] = field(default_factory=list)

    def add(self, event: EventIn, item: Input, finishes: bool) -> None:
        self.events.append(event)
        self.inputs.append(item)
        if finishes:
            self.finished.append(item)

    def clear(self) -> None:
        self.events.clear()
        self.inputs.clear()
        self.finished.clear()


@dataclass(slots=True)
class _Run:
    """One replay: what it was asked, the batch being filled and the summary it fills."""

    cfg: Config
    store: Store
    batch_size: int
    dry_run: bool
    state: ResumeState | None
    progress: Progress | None
    say: Callable[[str], None]
    stop: threading.Event
    summary: ReplaySummary = field(init=False)
    batch: _Batch = field(default_factory=_Batch)
    dead_named: int = 0  # dead letters named on a line of their own (MAX_PROBLEMS at most)

    def __post_init__(self) -> None:
        self.summary = ReplaySummary(dry_run=self.dry_run)

    def problem(self, where: str, message: str) -> None:
        s = self.summary
        s.problem_count += 1
        s.failed.add(where)  # as many as the inputs, not as their problems
        if len(s.problems) < MAX_PROBLEMS:
            s.problems.append(InputProblem(where, message))
            self.say(f"error: {message}")

    def stopping(self) -> bool:
        s = self.summary
        return self.stop.is_set() or s.storage_error is not None or s.source_error is not None

    def mark(self, item: Input) -> None:
        if self.state is not None and not self.dry_run:
            try:
                self.state.mark(item.key)
            except InputError as exc:
                # The rows are stored all the same: the run goes on, without --resume state.
                self.problem("resume state", str(exc))
                self.state = None

    def admit(self, items: Iterable[Input | InputProblem]) -> list[Input]:
        """The inputs to read: problems reported, inputs done in an earlier run skipped."""
        inputs: list[Input] = []
        for item in items:
            if isinstance(item, InputProblem):
                self.problem(item.where, f"{item.where}: {item.message}")
            elif self.state is not None and item.key in self.state.done:
                self.summary.skipped_inputs += 1
            else:
                inputs.append(item)
        self.summary.inputs = len(inputs)
        if self.progress is not None:
            self.progress.total_inputs = len(inputs)
            self.progress.total_bytes = sum(i.size for i in inputs)
        return inputs

    # --- reading ------------------------------------------------------------------------

    def read(self, item: Input, fetched: Future[Any]) -> None:
        """Read one input into batches, storing each batch once full."""
        problems_before = self.summary.problem_count
        count = self._read_events(item, fetched, problems_before)
        if self.stopping():
            return
        if count == 0 and self.summary.problem_count == problems_before:
            self.mark(item)  # nothing to store: done already
        if self.progress is not None:
            self.progress.inputs += 1
            self.progress.bytes += item.size

    def _read_events(self, item: Input, fetched: Future[Any], problems_before: int) -> int:
        """The events of `item` added to batches (and the full ones stored): how many."""

        def report(message: str) -> None:
            self.problem(item.label, message)

        events: Iterator[EventIn] | None = None
        count = 0
        try:
            events = iter(item.events(fetched.result(), report=report))
            for event, last in _with_last(events):
                count += 1
                self.batch.add(event, item, last and self.summary.problem_count == problems_before)
                if self.progress is not None:
                    self.progress.events += 1
                if len(self.batch.events) >= self.batch_size and not self._flush_full():
                    break
        except InputError as exc:
            self.problem(item.label, str(exc))
        except Exception as exc:  # noqa: BLE001 - sorted: storage stops, the rest is this input's
            self._read_failed(item, exc)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        return count

    def _flush_full(self) -> bool:
        """Store a full batch; whether to go on reading."""
        self.flush()
        if self.progress is not None:
            self.progress.update()
        return not self.stopping()

    def _read_failed(self, item: Input, exc: Exception) -> None:
        if _is_storage_failure(exc):
            self.summary.source_error = (
                f"reading {item.label}: {type(exc).__name__}: {exc}".splitlines()[0][:300]
            )
            self.say(f"error: storage failed, stopping: {self.summary.source_error}")
        else:
            self.problem(item.label, f"{item.label}: could not be read ({_where(exc)})")

    # --- storing ------------------------------------------------------------------------

    def flush(self) -> None:
        """Store the batch (once storage failed, count it as not stored)."""
        if not self.batch.events:
            return
        if self.summary.storage_error is not None:
            self.summary.not_stored += len(self.batch.events)
        else:
            result = self._process()
            if result is not None:
                self._stored(result)
        self.batch.clear()

    def _process(self) -> BatchResult | None:
        try:
            result = process_batch(self.batch.events, self.cfg, self.store, dry_run=self.dry_run)
            heap.release()
        except Exception as exc:  # noqa: BLE001 - reported, counted, and the exit code says so
            self.summary.storage_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            self.summary.not_stored += len(self.batch.events)
            self.say(f"error: storage failed, stopping: {self.summary.storage_error}")
            return None
        return result

    def _stored(self, result: BatchResult) -> None:
        """After a batch is stored: count it, name its dead letters, settle its events (dead
        letters replayed) and record its finished inputs as done."""
        self.summary.totals.add(result)
        for dead in result.dead:
            # A file of junk events is a line each for the first ones only (the summary counts
            # them all): a Capture file decoded into 20,000 empty events wrote 20,000 lines.
            self.dead_named += 1
            if self.dead_named <= MAX_PROBLEMS:
                where = dead.event.origin.removeprefix("file:")
                self.say(f"{where}: dead-lettered: {dead.reason}")
            elif self.dead_named == MAX_PROBLEMS + 1:
                self.say(f"further dead letters are not named here (the first {MAX_PROBLEMS} were)")
        if self.progress is not None:
            self.progress.calls += result.calls
        if not self.dry_run:
            dead_ids = {id(d.event) for d in result.dead}
            for event, source in zip(self.batch.events, self.batch.inputs, strict=True):
                if source.settle is not None:
                    source.settle(event, id(event) not in dead_ids)
        for done in self.batch.finished:
            self.mark(done)


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
    rows_view = copy.copy(store.audit_rows)
    fetch = rows_view.fetch

    def fetch_or_nothing(pk: str, keys: Iterable[str]) -> dict[str, Any]:
        try:
            return fetch(pk, keys)
        except ResourceNotFoundError:
            return {}

    rows_view.fetch = fetch_or_nothing  # type: ignore[method-assign]
    view = copy.copy(store)
    view.audit_rows = rows_view
    return view

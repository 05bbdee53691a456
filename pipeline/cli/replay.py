"""`python -m pipeline replay`: recorded events (files, Event Hubs Capture, our archive, dead
letters) through the same `process_batch` the trigger uses (runner.py), or re-published to an
Event Hub; then the KPI days touched rolled up again.

Long runs: a progress line on stderr (progress.py); `--resume` skips inputs a previous run
completed (resume.py); `--dry-run` reports what would be created or changed without writing
anything; Ctrl-C stops cleanly after the current batch. The containers read from must exist
(checked before anything is created): a misspelled name is an error, never an empty (or new)
container.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

from pipeline.cli import options
from pipeline.cli import send as publish
from pipeline.cli.progress import Progress
from pipeline.cli.resume import ResumeState
from pipeline.cli.runner import ReplaySummary, replay
from pipeline.compliance.seal import seal_days
from pipeline.ingest.archived import verify_archived
from pipeline.kpi import daily
from pipeline.settings import Config, SettingsError
from pipeline.sources import files
from pipeline.sources.archive_blobs import archive_inputs
from pipeline.sources.capture_avro import capture_inputs
from pipeline.sources.deadletter_blobs import deadletter_inputs
from pipeline.sources.inputs import Caller, Filters, Input, InputError, InputProblem, parse_when
from pipeline.store.account import Store


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay", help="process recorded events: files, Event Hubs Capture, our archive"
    )
    _add_input_options(p)
    _add_run_options(p)
    p.add_argument(
        "--to-eventhub", metavar="HUB", help="publish the events to this Event Hub instead"
    )
    p.add_argument("--eventhub-connection", metavar="CONNECTION_STRING")
    p.add_argument(
        "--eventhub-namespace",
        metavar="FQDN",
        help="e.g. ns.servicebus.windows.net (DefaultAzureCredential)",
    )
    options.add_storage(p)
    p.set_defaults(func=cmd_replay)


def _add_input_options(p: argparse.ArgumentParser) -> None:
    """What to read, and which of it."""
    p.add_argument(
        "paths",
        nargs="*",
        help=(
            ".json (one body, or a Log Analytics query's rows), .jsonl (one per line), .csv"
            " (Log Analytics export), Capture .avro files, or folders"
        ),
    )
    p.add_argument("--from-blob", metavar="CONTAINER[/PREFIX]", help="Capture .avro blobs")
    p.add_argument(
        "--source-storage",
        metavar="CONNECTION_STRING",
        help="storage account of --from-blob (default: the audit storage)",
    )
    p.add_argument(
        "--from-archive",
        nargs="?",
        const="",
        metavar="PREFIX",
        help="our raw archive (optionally a path prefix, e.g. 2025/11/04)",
    )
    p.add_argument(
        "--from-deadletter",
        nargs="?",
        const="",
        metavar="PREFIX",
        help="dead letters not yet replayed (marked done once they become rows)",
    )
    p.add_argument("--since", help="only inputs whose path time is at or after (date or time, UTC)")
    p.add_argument("--until", help="only inputs whose path time is before")
    p.add_argument("--partition", action="append", help="only this Event Hub partition (repeat)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """How the run goes: batches, dry run, resume, roll-up, progress."""
    p.add_argument(
        "--batch-size", type=int, default=100, help="events per batch (default 100, as the host)"
    )
    p.add_argument("--dry-run", action="store_true", help="say what would change; write nothing")
    p.add_argument("--resume", action="store_true", help="skip inputs completed by earlier runs")
    p.add_argument("--state", default=".replay-state.json", help="resume state file")
    p.add_argument(
        "--no-rollup",
        dest="rollup",
        action="store_false",
        help="do not roll the touched KPI days up again",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")


def cmd_replay(args: argparse.Namespace) -> int:
    if not (
        args.paths
        or args.from_blob
        or args.from_archive is not None
        or args.from_deadletter is not None
    ):
        print(
            "error: give files or folders, --from-blob, --from-archive or --from-deadletter",
            file=sys.stderr,
        )
        return 2
    cfg = options.config(args)
    try:
        store, containers = _open_store(args, cfg)
        items, state = _open_inputs(args, store, containers)
    except _Refused as refused:
        print(refused, file=sys.stderr)
        return 2
    if args.to_eventhub:
        return _republish(args, items)
    summary = _run(args, cfg, store, items, state)
    for line in summary.lines():
        print(line)
    _kpi_days(args, cfg, store, sorted(summary.totals.days))
    if not args.dry_run and summary.totals.archive_days:
        _seal_again(store, summary.totals.archive_days)
    return _exit_code(summary)


class _Refused(Exception):
    """The replay cannot start; the message is the line to print."""


@dataclass(frozen=True, slots=True)
class _Container:
    """A container replay reads from: where, what names it (for the message when it does not
    exist), and the inputs it holds."""

    client: Any
    prefix: str
    named_by: str
    inputs: Callable[[Any, str, Filters, Caller], Iterator[Input]]


def _deadletters(container: Any, prefix: str, filters: Filters, call: Caller) -> Iterator[Input]:
    """The dead letters under a prefix: all of them, whatever the filters."""
    return deadletter_inputs(container, prefix, call=call)


def _containers(args: argparse.Namespace, store: Store) -> list[_Container]:
    """Each container replay reads from, checked to exist: a misspelled name is an error,
    never an empty (or new) container."""
    found: list[_Container] = []
    if args.from_blob:
        name, _, prefix = args.from_blob.partition("/")
        service = (
            BlobServiceClient.from_connection_string(args.source_storage)
            if args.source_storage
            else store.blobs
        )
        client = service.get_container_client(name)
        found.append(_Container(client, prefix, "--from-blob", capture_inputs))
    if args.from_archive is not None:
        found.append(
            _Container(store.archive, args.from_archive, "ARCHIVE_CONTAINER", archive_inputs)
        )
    if args.from_deadletter is not None:
        found.append(
            _Container(
                store.deadletters, args.from_deadletter, "DEADLETTER_CONTAINER", _deadletters
            )
        )
    for c in found:
        store.require_container(c.client, c.named_by)
    return found


def _open_store(args: argparse.Namespace, cfg: Config) -> tuple[Store, list[_Container]]:
    """The audit store and the containers read from. The containers must exist (checked before
    anything is created), and a dry run or a re-publication creates nothing at all."""
    try:
        store = Store(cfg)
        containers = _containers(args, store)
        if not (args.dry_run or args.to_eventhub):
            store.ensure()
    except SettingsError as exc:
        raise _Refused(f"error: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - unreachable storage is a message, not a traceback
        raise _Refused(f"error: storage unreachable: {type(exc).__name__}: {exc}"[:500]) from None
    return store, containers


def _open_inputs(
    args: argparse.Namespace, store: Store, containers: list[_Container]
) -> tuple[list[Input | InputProblem], ResumeState | None]:
    """Every input (local ones first, then each container's, listed now) and the resume state."""
    try:
        filters = Filters(
            since=parse_when(args.since) if args.since else None,
            until=parse_when(args.until) if args.until else None,
            partitions=frozenset(args.partition or ()),
        )
        items: list[Input | InputProblem] = list(files.local_inputs(args.paths, filters))
        for c in containers:
            items += c.inputs(c.client, c.prefix, filters, store.call)
        state = None if args.dry_run else ResumeState(Path(args.state), args.resume)
    except (ValueError, InputError) as exc:
        raise _Refused(f"error: {exc}") from None
    except AzureError as exc:
        raise _Refused(
            f"error: listing the blobs failed: {type(exc).__name__}: {exc}"[:500]
        ) from None
    return items, state


def _run(
    args: argparse.Namespace,
    cfg: Config,
    store: Store,
    items: list[Input | InputProblem],
    state: ResumeState | None,
) -> ReplaySummary:
    progress = Progress(0, 0) if not args.quiet else None
    stop = threading.Event()
    with stop_on_ctrl_c(stop):
        return replay(
            items,
            cfg,
            store,
            batch_size=args.batch_size,
            dry_run=args.dry_run,
            state=state,
            progress=progress,
            stop=stop,
        )


def _seal_again(store: Store, days: set[str]) -> None:
    """Days sealed before that the replay added archive blobs to get a supplementary
    manifest (a sealed batch is a new blob: its records' keys are new)."""
    for sealed in seal_days([date.fromisoformat(d) for d in days], store, sealed_only=True):
        if sealed.manifest:
            print(f"archive of {sealed.day} sealed again: {sealed.blobs} new blobs")


def _kpi_days(args: argparse.Namespace, cfg: Config, store: Store, days: list[str]) -> None:
    """The KPI days the replay touched: listed (dry run), rolled up again, or the command that
    does it (--no-rollup)."""
    if days and args.dry_run:
        print(f"KPI days that would change: {', '.join(days)}")
    elif days and args.rollup:
        for r in daily.roll_up([date.fromisoformat(d) for d in days], cfg, store):
            print(f"KPIs rolled up again for {r.day}: {r.calls} calls, {r.cost_usd:.4f} USD")
    elif days:
        first, last = days[0], days[-1]
        n = (date.fromisoformat(last) - date.fromisoformat(first)).days + 1
        print(f"KPI days touched: run `python -m pipeline rollup --day {last} --days {n}`")


def _exit_code(summary: ReplaySummary) -> int:
    if summary.ok:
        return 0
    if summary.failed_inputs:
        print(
            f"{summary.failed_inputs} inputs were not stored (wholly or in part)", file=sys.stderr
        )
    if summary.not_stored:
        print(f"{summary.not_stored} events were not stored", file=sys.stderr)
    return 130 if summary.interrupted else 1


def _republish(args: argparse.Namespace, items: list[Input | InputProblem]) -> int:
    producer = publish.producer_for(
        args.to_eventhub, args.eventhub_connection, args.eventhub_namespace
    )
    report = publish.Problems()
    opener: Store | None = None

    def opened(ev: Any) -> Any:
        """A sealed archive member is sent as the record it holds, never erased ones."""
        nonlocal opener
        if ev.archived is None or not ev.archived.sealed:
            return ev
        opener = opener or Store(options.config(args))
        (ev,) = verify_archived([ev], opener)
        if ev.archived.erased:
            print(f"{ev.origin}: archive member erased: not sent", file=sys.stderr)
            return None
        if ev.archived.sealed:
            report(f"{ev.origin}: archive member sealed, and no key of ours opens it: not sent")
            return None
        return ev

    def events() -> Any:
        for item in items:
            if isinstance(item, InputProblem):
                report(f"{item.where}: {item.message}")
                continue
            try:
                for ev in item.events(item.fetch(), report=report):
                    if (ev := opened(ev)) is not None:
                        yield ev
            except InputError as exc:
                report(str(exc))

    with producer:
        stats = publish.publish(events(), producer, report)
    report.close()
    print(
        f"published {stats.events} events in {stats.batches} batches "
        f"({stats.bytes:,} bytes) to {args.to_eventhub}"
    )
    return 1 if report.count else 0


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

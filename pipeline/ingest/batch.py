"""One batch of events → audit rows, archive blob and dead letters: the write order and the
Event Hub trigger's shell.

`transform` is pure (event bytes in, plain data out: plan.py, then the archive blob and the
rows) and is what the benchmark times; `process_batch` adds the storage writes. The Event Hub
trigger, `replay` and the demo all call `process_batch`: there is no second copy of this path.

Order of writes: the archive blob first (rows point into it), then dead letters, then rows.
A failure anywhere raises, so the trigger's retry policy delivers the batch again; every
write is idempotent (content-addressed blobs, rows merged by key), so a redelivery finishes
the job without duplicates.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from pipeline.call.join import CallState, archived_pointers, remember
from pipeline.common import heap
from pipeline.ingest.archived import verify_archived
from pipeline.ingest.plan import Plan, SliceLimit, contain, count_skipped, plan_batch
from pipeline.model import DeadLetter, EventIn, Fragment, Preview, RawSource
from pipeline.protect import archive, deadletters, encryption
from pipeline.protect.policy import policy_for
from pipeline.settings import Config
from pipeline.store import rows

if TYPE_CHECKING:
    from pipeline.store.account import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BatchResult:
    events: int = 0
    records: int = 0
    calls: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    dead_letters: int = 0
    parser_errors: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    archive_blob: str | None = None
    new_archive_blobs: int = 0
    # Days whose rows were created or changed (KPI days to roll up again).
    days: set[str] = field(default_factory=set)
    # Days of the archive blobs created (yyyy-MM-dd): a sealed one is sealed again.
    archive_days: set[str] = field(default_factory=set)
    # This batch's dead letters (not accumulated by `add`).
    dead: list[DeadLetter] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        for name in (
            "events",
            "records",
            "calls",
            "created",
            "updated",
            "unchanged",
            "dead_letters",
            "parser_errors",
            "new_archive_blobs",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name, n in other.skipped.items():
            count_skipped(self.skipped, name, n)
        self.days |= other.days
        self.archive_days |= other.archive_days


def archive_plan(plan: Plan) -> archive.ArchiveBlob | None:
    """Build the batch's archive blob and point every fragment at its member: those of the
    calls, and the records in none (a record that lost to a rival, a message chunk past those
    kept), which the call then remembers. Every member is listed under its call's id."""
    members: list[RawSource] = []
    frags: list[Fragment] = []
    calls: list[str] = []
    earliest: datetime | None = None
    for cid, state in plan.states.items():
        for frag in itertools.chain(state.call.fragments.values(), state.displaced.values()):
            if frag.raw is None or frag.pointer is not None:
                continue
            members.append(frag.raw)
            frags.append(frag)
            calls.append(cid)
            t = frag.facts.call_time
            if t is not None and (earliest is None or t < earliest):
                earliest = t
    if not members:
        return None
    # The batch's own time names the blob; files carry no enqueued time, and then the
    # earliest call time does (plausible by then: records.facts).
    when = plan.enqueued or earliest
    assert when is not None  # every fragment has a time (checked in records.facts)
    blob = archive.build_blob(members, when, calls)
    for frag, pointer in zip(frags, blob.pointers, strict=True):
        frag.pointer = pointer
        frag.raw = None  # in the blob now: one copy is enough
    for state in plan.states.values():
        for frag in state.displaced.values():
            if frag.pointer is not None:
                state.aside.append(frag.pointer)
                remember(state, frag.rid, frag.pointer)
        state.displaced.clear()
    return blob


@dataclass(slots=True)
class Transformed:
    """Everything a batch becomes, before any storage request."""

    plan: Plan
    blob: archive.ArchiveBlob | None
    rows: list[rows.Row]


def transform(
    events: Sequence[EventIn], cfg: Config, until: SliceLimit | None = None
) -> Transformed:
    """Event bytes → the batch's archive blob and one row per call (pure: no I/O). With
    `until`, of the batch's first slice only (`plan.events` events)."""
    with heap.collector_paused():  # a batch makes no cycles (pipeline/common/heap.py)
        plan = plan_batch(events, cfg, until)
        blob = archive_plan(plan)  # first: rows carry the pointers into it
        return Transformed(plan, blob, _entities(plan, cfg))


def seal_previews(state: CallState) -> None:
    """Each preview of a call sealed under the data key of the record it was taken from, so
    that erasing that record's key erases its previews too. A record replayed from an archive
    written before encryption was on has no key: its previews stay as they were stored."""
    for frag in state.call.fragments.values():
        if frag.data_key is None:
            continue
        for which in ("prompt", "completion"):
            attr = f"{which}_preview"
            # Every preview here was just parsed (none is sealed yet, whatever its text
            # looks like: a prompt may start like a sealed one).
            p: Preview | None = getattr(frag, attr)
            if p is None:
                continue
            text = encryption.seal_text(frag.data_key, p.text, which, frag.correlation_id)
            sealed = Preview(text, p.rank)
            if getattr(state, attr) is p:
                setattr(state, attr, sealed)
            setattr(frag, attr, sealed)


def refused_dead_letters(
    plan: Plan, cfg: Config, refused: Sequence[tuple[str, str]]
) -> list[DeadLetter]:
    """The records of the calls (correlation id, Azure's error code) whose rows Table storage
    refused, as dead letters: one per event, from its bytes as received (they hold all its
    records), under the strictest capture. Not one per record: an event of 2,000 records of
    one refused call made 2,000 copies of itself (775 MB for an event of 387 KB)."""
    policy = policy_for(cfg)
    first: dict[int, tuple[EventIn, int, str]] = {}
    count: Counter[int] = Counter()
    for cid, code in refused:
        for event, index in plan.origins.get(cid, ()):
            first.setdefault(id(event), (event, index, code))
            count[id(event)] += 1
    out: list[DeadLetter] = []
    for key, (event, index, code) in first.items():
        many = f": {count[key]} records of this event" if count[key] > 1 else ""
        reason = f"row refused by Table storage ({code}){many}"
        out.append(deadletters.raw_dead_letter(policy, event, index, reason))
    return out


def _entities(plan: Plan, cfg: Config) -> list[rows.Row]:
    """One row per call. A call whose row cannot be built (a bug) is contained like a
    record: its records are dead-lettered as received, and the other calls are stored."""
    out: list[rows.Row] = []
    policy = policy_for(cfg)
    for cid, state in list(plan.states.items()):
        try:
            if cfg.archive_encryption:
                seal_previews(state)
            out.extend(rows.entities([state], cfg.shards))
        except Exception as exc:  # noqa: BLE001 - the call boundary
            del plan.states[cid]
            seen: set[int] = set()  # one dead letter per event: its bytes hold its records
            for event, index in plan.origins.get(cid, ()):
                if id(event) not in seen:
                    seen.add(id(event))
                    contain(plan, policy, event, exc)
                    plan.dead[-1] = replace(plan.dead[-1], record_index=index)
    return out


def process_batch(
    events: Sequence[EventIn],
    cfg: Config,
    store: Store,
    *,
    dry_run: bool = False,
) -> BatchResult:
    """Parse a batch and store everything it yields. Raises if storage fails.

    The archive blob is written before the rows that point into it, so a row never points
    at a blob that is not there. With `dry_run`, nothing is written: the result says what
    would be created or changed (rows are read to compare).

    A very large batch is handled in slices (SLICE), each with its own archive blob, so
    memory stays bounded whatever the batch holds (a call whose records fall in two slices is
    joined through the row, as across batches)."""
    total = BatchResult()
    calls: set[str] = set()
    checked = verify_archived(events, store)
    rest: Sequence[EventIn] = checked
    while rest:
        result = _process_slice(rest, cfg, store, dry_run, calls)
        rest = rest[result.events :]
        total.add(result)
        total.dead += result.dead
        total.archive_blob = result.archive_blob or total.archive_blob
    total.calls = len(calls)
    if checked is not events:
        # Callers know their events by identity (replay settles each input by it): the dead
        # letters name the event as given, not its checked or opened copy.
        given = {id(c): e for c, e in zip(checked, events, strict=True) if c is not e}
        total.dead = [
            replace(d, event=given[id(d.event)]) if id(d.event) in given else d for d in total.dead
        ]
    return total


# A slice of a batch: what one transform holds in memory until its rows are written. Memory
# follows the payload for real events (~2,500 calls of typical size in 32 MiB: a 10,000-call
# batch peaks near 250 MB, bench/pipeline.py) and the records for a sender's events of tiny
# ones (about 6 KB a call whatever its size: 250,000 calls of 134 bytes in 32 MB held 1.5 GB
# in one slice). A slice ends at whichever comes first.
SLICE = SliceLimit(payload=32 * 1024 * 1024, records=32_768)


def _process_slice(
    events: Sequence[EventIn], cfg: Config, store: Store, dry_run: bool, calls: set[str]
) -> BatchResult:
    """The first slice of `events` (`SLICE`), stored: its result says how many events it
    read."""
    done = transform(events, cfg, SLICE)
    plan, blob = done.plan, done.blob
    calls.update(plan.states)
    result = BatchResult(
        events=plan.events,
        records=plan.records,
        calls=len(plan.states),
        dead_letters=len(plan.dead),
        parser_errors=plan.parser_errors,
        skipped=plan.skipped,
        dead=plan.dead,
    )
    if blob is not None:
        result.archive_blob = blob.name
        if dry_run:
            result.new_archive_blobs = 0 if store.blob_exists(store.archive, blob.name) else 1
        else:
            if blob.keys is not None:
                store.keys.put(blob)  # before the blob: no member is ever without its key
            result.new_archive_blobs = 1 if store.put_archive(blob) else 0
            if result.new_archive_blobs:
                result.archive_days.add(blob.name[:10].replace("/", "-"))
    if not dry_run:
        store.put_dead_letters([dead for dead in plan.dead if not dead.in_place])
    written = store.write_rows(done.rows, dry_run=dry_run)
    result.created, result.updated, result.unchanged = (
        written.created,
        written.updated,
        written.unchanged,
    )
    result.days = written.days
    shredded = {(p.blob, p.offset) for p in written.shred}
    refused_calls: list[tuple[str, str]] = []
    for state, code in written.refused:
        if any((p.blob, p.offset) in shredded for p in archived_pointers(state)):
            # An erased call (its row says so): its new records lost their keys, and must not
            # come back readable as dead letters.
            log.warning("records of an erased call not kept: its row was refused (%s)", code)
            continue
        # Its records are in the archive already; without a row they are dead letters too,
        # so that every record is a row or a dead letter.
        refused_calls.append((state.call.correlation_id, code))
    refused = refused_dead_letters(plan, cfg, refused_calls)
    store.put_dead_letters(refused)
    result.dead += refused
    result.dead_letters += len(refused)
    if written.shred and not dry_run:
        # Records of calls erased before (a replay from Capture, a late record): their new
        # copies lose their keys at once, so erasure stays erasure.
        store.keys.shred(written.shred)
    return result


def park_batch(events: Sequence[EventIn], cfg: Config, store: Store, reason: str) -> int:
    """Store every event of a batch that could not be processed as a dead letter, so the host
    moving its checkpoint past the batch loses nothing. Nothing here parses the events
    (deadletters.raw_dead_letter), so whatever made the batch fail cannot make parking fail too.
    Raises if storage refuses."""
    policy = policy_for(cfg)
    store.put_dead_letters([deadletters.raw_dead_letter(policy, e, None, reason) for e in events])
    return len(events)


def run_trigger_batch(
    events: Sequence[EventIn],
    cfg: Config,
    store: Store,
    *,
    attempt: int = 0,
    max_retries: int = 0,
) -> BatchResult:
    """One invocation of the Event Hub trigger: process the batch; when it fails on its last
    delivery (the host then checkpoints past it), park it whole in the dead-letter store.
    Logs one structured `audit-batch` line either way."""
    try:
        return _run_trigger_batch(events, cfg, store, attempt, max_retries)
    finally:
        heap.release()


def _run_trigger_batch(
    events: Sequence[EventIn], cfg: Config, store: Store, attempt: int, max_retries: int
) -> BatchResult:
    started = time.monotonic()
    retries_before = store.retries
    first = events[0] if events else None
    facts: dict[str, Any] = {
        "partition": first.partition if first else None,
        "firstSequence": first.sequence if first else None,
        "lastSequence": events[-1].sequence if events else None,
        "events": len(events),
        "delivery": attempt + 1,
    }
    try:
        result = process_batch(events, cfg, store)
    except Exception as exc:
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        facts.update(outcome="failed", error=error, retries=store.retries - retries_before)
        if attempt < max_retries:
            log.error("audit-batch %s", orjson.dumps(facts).decode())
            raise  # not acknowledged: the trigger's retry policy delivers it again
        reason = f"batch failed on its last delivery ({attempt + 1}): {error}"
        parked = _park_last_delivery(events, cfg, store, reason, facts)
        return BatchResult(events=len(events), dead_letters=parked)
    facts.update(
        outcome="stored",
        records=result.records,
        calls=result.calls,
        created=result.created,
        updated=result.updated,
        unchanged=result.unchanged,
        deadLetters=result.dead_letters,
        skipped=sum(result.skipped.values()),
        archiveBlobs=result.new_archive_blobs,
        retries=store.retries - retries_before,
        durationMs=round((time.monotonic() - started) * 1000),
    )
    log.info("audit-batch %s", orjson.dumps(facts).decode())
    return result


def _park_last_delivery(
    events: Sequence[EventIn], cfg: Config, store: Store, reason: str, facts: dict[str, Any]
) -> int:
    """Park a batch on its last delivery; when storage refuses even that, log what to
    replay (the LOST line) and raise."""
    try:
        parked = park_batch(events, cfg, store, reason)
    except Exception:
        # Storage refused even the dead letters: the events are still in the Event Hub
        # (for its retention) and in Capture; the line says exactly which to replay.
        facts["outcome"] = "LOST"
        enqueued = [e.enqueued for e in events if e.enqueued is not None]
        if enqueued:
            facts["enqueuedFirst"] = min(enqueued).isoformat()
            facts["enqueuedLast"] = max(enqueued).isoformat()
        facts["recover"] = (
            "python -m pipeline replay <Capture container URL or files> "
            f"--partition {facts['partition']} --since <enqueuedFirst, hour>"
        )
        log.critical("audit-batch %s", orjson.dumps(facts).decode())
        raise
    facts.update(outcome="parked", deadLetters=parked)
    log.critical("audit-batch %s", orjson.dumps(facts).decode())
    return parked

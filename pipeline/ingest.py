"""One batch of events → audit rows, archive blob and dead letters.

`plan_batch` is pure (bytes in, plain data out) and is what the benchmark times; `process_batch`
adds the storage writes. The Event Hub trigger, `replay` and the demo all call
`process_batch`: there is no second copy of this path.

Order of writes: the archive blob first (rows point into it), then dead letters, then rows.
A failure anywhere raises, so the trigger's retry policy delivers the batch again; every
write is idempotent (content-addressed blobs, rows merged by key), so a redelivery finishes
the job without duplicates.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from . import archive, rows
from .envelope import EnvelopeError, category_of, flatten, open_envelope, text
from .gateway import gateway_facts
from .join import CallState, add_fragment
from .model import Call, DeadLetter, EventIn, Fragment, RawSource
from .redact import scrub_credentials
from .settings import Config

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("pipeline.ingest")

HANDLED_CATEGORIES = {"gatewaylogs": "gateway"}


@dataclass(slots=True)
class Plan:
    """The pure result of parsing a batch, before any storage write."""

    states: dict[str, CallState] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    events: int = 0
    records: int = 0


@dataclass(slots=True)
class BatchResult:
    events: int = 0
    records: int = 0
    calls: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    dead_letters: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    archive_blob: str | None = None
    # This batch's dead letters (not accumulated by `add`).
    dead: list[DeadLetter] = field(default_factory=list)

    def add(self, other: BatchResult) -> None:
        for name in ("events", "records", "calls", "created", "updated", "unchanged"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dead_letters += other.dead_letters
        self.skipped.update(other.skipped)


def _dead_record(record: Any, enveloped: bool) -> bytes:
    """A record on its own, in a shape `replay` reads back like the original event."""
    if isinstance(record, dict):
        record = scrub_credentials(record)
    return orjson.dumps({"records": [record]} if enveloped else record)


def plan_batch(events: Sequence[EventIn], cfg: Config) -> Plan:
    plan = Plan()
    for event in events:
        plan.events += 1
        try:
            env = open_envelope(event.body)
        except EnvelopeError as exc:
            plan.dead.append(DeadLetter(event.body, str(exc), event))
            continue
        for index, record in enumerate(env.records):
            plan.records += 1
            try:
                _plan_record(plan, event, index, record, env.enveloped, cfg)
            except Exception as exc:
                log.exception("parser error on %s record %d", event.origin, index)
                plan.dead.append(
                    DeadLetter(
                        _dead_record(record, env.enveloped),
                        f"parser error: {type(exc).__name__}: {exc}",
                        event,
                        index,
                    )
                )
    return plan


def _plan_record(
    plan: Plan, event: EventIn, index: int, record: Any, enveloped: bool, cfg: Config
) -> None:
    if not isinstance(record, dict):
        reason = f"record {index} is JSON {type(record).__name__}, expected an object"
        plan.dead.append(DeadLetter(_dead_record(record, enveloped), reason, event, index))
        return
    # Credentials go first: nothing below (facts, archive, dead letters) ever sees them.
    record = scrub_credentials(record)
    flat = flatten(record)
    category = category_of(flat)
    if category is None:
        reason = "unknown record shape: no category and not a known log-to-eventhub message"
        plan.dead.append(DeadLetter(_dead_record(record, enveloped), reason, event, index))
        return
    kind = HANDLED_CATEGORIES.get(category.lower())
    if kind is None:
        plan.skipped[category] += 1
        return
    correlation_id = text(flat, "correlationid")
    if correlation_id is None:
        reason = f"{category} record without correlationId"
        plan.dead.append(DeadLetter(_dead_record(record, enveloped), reason, event, index))
        return
    facts, prompt, completion = gateway_facts(flat, cfg.preview_chars)
    if facts.call_time is None:
        reason = f"{category} record without a readable time ({flat.get('time')!r})"
        plan.dead.append(DeadLetter(_dead_record(record, enveloped), reason, event, index))
        return
    try:
        rows.row_key(correlation_id)
    except rows.KeyTooLong as exc:
        plan.dead.append(DeadLetter(_dead_record(record, enveloped), str(exc), event, index))
        return
    stored = archive.record_bytes(record)
    frag = Fragment(
        kind=kind,
        correlation_id=correlation_id,
        rid=archive.record_id(stored),
        facts=facts,
        prompt_preview=prompt,
        completion_preview=completion,
        raw=RawSource(event, index, enveloped, stored),
    )
    state = plan.states.get(correlation_id)
    if state is None:
        state = plan.states[correlation_id] = CallState(Call(correlation_id))
    add_fragment(state, frag)


def archive_plan(plan: Plan) -> archive.ArchiveBlob | None:
    """Build the batch's archive blob and point every fragment at its member."""
    members: list[bytes] = []
    frags: list[Fragment] = []
    earliest: datetime | None = None
    for state in plan.states.values():
        for frag in state.call.fragments.values():
            src = frag.raw
            if src is None or frag.pointer is not None:
                continue
            members.append(
                archive.member_bytes(
                    frag.kind, frag.correlation_id, src.event, src.index, src.enveloped, src.record
                )
            )
            frags.append(frag)
            t = frag.facts.call_time
            if t is not None and (earliest is None or t < earliest):
                earliest = t
    if not members:
        return None
    assert earliest is not None  # every fragment has a time (checked in _plan_record)
    blob = archive.build_blob(members, earliest)
    for frag, pointer in zip(frags, blob.pointers, strict=True):
        frag.pointer = pointer
    return blob


def process_batch(
    events: Sequence[EventIn], cfg: Config, store: Store, *, write_archive: bool = True
) -> BatchResult:
    """Parse a batch and store everything it yields. Raises if storage fails."""
    plan = plan_batch(events, cfg)
    result = BatchResult(
        events=plan.events,
        records=plan.records,
        calls=len(plan.states),
        dead_letters=len(plan.dead),
        skipped=plan.skipped,
        dead=plan.dead,
    )
    if write_archive:
        blob = archive_plan(plan)
        if blob is not None:
            store.put_archive(blob)
            result.archive_blob = blob.name
    for dead in plan.dead:
        store.put_dead_letter(dead)
    written = store.write_calls(list(plan.states.values()))
    result.created, result.updated, result.unchanged = written
    return result

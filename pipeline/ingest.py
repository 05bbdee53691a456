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
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import archive, attribution, capture, heap, llmlogs, policy, rows
from .bodies import repair_truncated
from .envelope import EnvelopeError, category_of, flatten, open_envelope, text
from .gateway import gateway_facts
from .join import CallState, add_fragment
from .model import SOURCE_RANK, Call, DeadLetter, EventIn, Facts, Fragment, Preview, RawSource
from .redact import scrub_credentials
from .settings import Config

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("pipeline.ingest")

HANDLED_CATEGORIES = {"gatewaylogs": "gateway", "gatewayllmlogs": "llm"}


@dataclass(slots=True)
class Plan:
    """The pure result of parsing a batch, before any storage write."""

    states: dict[str, CallState] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    events: int = 0
    records: int = 0
    accepted: int = 0  # records that became a fragment of a call
    # String chunks of split LLM-log messages: (correlation id, "request"|"response") → chunks.
    llm_chunks: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)


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
    new_archive_blobs: int = 0
    # Days whose rows were created or changed (KPI days to roll up again).
    days: set[str] = field(default_factory=set)
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
            "new_archive_blobs",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped.update(other.skipped)
        self.days |= other.days


def _dead_record(record: Any, enveloped: bool) -> bytes:
    """A record on its own, in a shape `replay` reads back like the original event."""
    if isinstance(record, dict):
        record = scrub_credentials(record)
    return orjson.dumps({"records": [record]} if enveloped else record)


def plan_batch(events: Sequence[EventIn], cfg: Config) -> Plan:
    plan = Plan()
    captures = capture.policy_for(cfg)
    for event in events:
        plan.events += 1
        try:
            env = open_envelope(event.body)
        except EnvelopeError as exc:
            # A log-to-eventhub message over 200 KB arrives cut: salvage what is complete.
            salvaged = _salvage_message(event.body)
            if salvaged is None:
                plan.dead.append(_dead_letter(captures, event.body, str(exc), event, None))
                continue
            plan.records += 1
            _guarded(plan, event, 0, salvaged, False, cfg, cut_message=event.body)
            continue
        for index, record in enumerate(env.records):
            plan.records += 1
            _guarded(plan, event, index, record, env.enveloped, cfg)
    _reassemble_llm_chunks(plan, cfg)
    return plan


def _salvage_message(body: bytes) -> dict[str, Any] | None:
    text_ = body.decode("utf-8", "replace").lstrip("\ufeff").lstrip()
    if not text_.startswith("{"):
        return None
    doc = repair_truncated(text_)
    if not isinstance(doc, dict) or policy.shape_of(flatten(doc)) is None:
        return None
    return doc


def _guarded(
    plan: Plan,
    event: EventIn,
    index: int,
    record: Any,
    enveloped: bool,
    cfg: Config,
    cut_message: bytes | None = None,
) -> None:
    try:
        _plan_record(plan, event, index, record, enveloped, cfg, cut_message)
    except Exception as exc:  # noqa: BLE001 - a parser bug must not lose the record: dead-letter it
        # Where it failed, not what the record held: logs never carry prompt text.
        where = " < ".join(
            f"{Path(f.filename).name}:{f.lineno}"
            for f in traceback.extract_tb(exc.__traceback__)[-3:]
        )
        log.error(
            "parser error on %s record %d: %s at %s", event.origin, index, type(exc).__name__, where
        )
        body = cut_message if cut_message is not None else _dead_record(record, enveloped)
        reason = f"parser error: {type(exc).__name__}: {exc} (at {where})"
        plan.dead.append(_dead_letter(capture.policy_for(cfg), body, reason, event, index))


def _plan_record(
    plan: Plan,
    event: EventIn,
    index: int,
    record: Any,
    enveloped: bool,
    cfg: Config,
    cut_message: bytes | None,
) -> None:
    captures = capture.policy_for(cfg)
    captures.forget()

    def dead(reason: str) -> None:
        body = cut_message if cut_message is not None else _dead_record(record, enveloped)
        plan.dead.append(_dead_letter(captures, body, reason, event, index))

    if not isinstance(record, dict):
        dead(f"record {index} is JSON {type(record).__name__}, expected an object")
        return
    authorization = attribution.authorization_of(record)
    # Credentials go first: nothing below (facts, archive, dead letters) ever sees them.
    record = scrub_credentials(record)
    flat = flatten(record)
    category = category_of(flat)
    part = 0
    llm: llmlogs.LlmRecord | None = None
    if category is None:
        shape = policy.shape_of(flat)
        if shape is None:
            dead("unknown record shape: no category and not a known log-to-eventhub message")
            return
        msg = policy.parse_policy(flat, shape, cfg.trust_bearer)
        if msg is None:
            dead(f"log-to-eventhub message (shape {shape}) without a correlation id")
            return
        kind, label = "policy", f"log-to-eventhub message (shape {shape})"
        correlation_id, facts, part = msg.correlation_id, msg.facts, msg.part
        prompt_text, completion_text = msg.prompt_text, msg.completion_text
        if cut_message is not None:
            facts.body_truncated = True
    else:
        source = HANDLED_CATEGORIES.get(category.lower())
        if source is None:
            plan.skipped[category] += 1
            return
        label = f"{category} record"
        correlation_id = text(flat, "correlationid")
        if source == "gateway":
            kind = "gateway"
            facts, prompt_text, completion_text = gateway_facts(flat)
            if cfg.trust_bearer and facts.status is not None and facts.status < 400:
                caller = attribution.from_authorization(authorization)
                facts.caller_app_id = caller.app_id
                facts.caller_user_id = caller.user_id
                facts.caller_tenant_id = caller.tenant_id
        else:
            llm = llmlogs.parse_llm_record(flat)
            correlation_id = llm.correlation_id
            kind = "llm" if llm.header else "llm-msg"
            part = 0 if llm.header else llm.sequence
            facts = llm.facts
            prompt_text, completion_text = llmlogs.texts(llm)
    if correlation_id is None:
        dead(f"{label} without correlationId")
        return
    if facts.call_time is None:
        dead(f"{label} without a readable time")
        return
    try:
        rows.row_key(correlation_id)
    except rows.KeyTooLong as exc:
        dead(str(exc))
        return

    # What is stored follows the capture policy of whoever owns the call (LLM-log records
    # cannot say: they get the strictest policy, capture.py).
    cap = captures.for_call(
        facts.subscription_id, facts.product_id, named=kind in ("gateway", "policy")
    )
    counts: Counter[str] = Counter()
    rank = (SOURCE_RANK[kind], part)
    previews = []
    for text_ in (prompt_text, completion_text):
        stored_preview = captures.preview(text_, cap)
        counts.update(stored_preview.counts)
        previews.append(Preview(stored_preview.value, rank) if stored_preview.value else None)
    facts.caller_ip = captures.caller_ip(facts.caller_ip)
    clip_facts(facts)
    if cap.archive != "full":
        for name in ("url", "error_message"):  # free text of the request and the service
            value = getattr(facts, name)
            if value:
                setattr(facts, name, captures.redact_string(value, counts))

    original = (
        orjson.dumps(cut_message.decode("utf-8", "replace"))
        if cut_message is not None
        else archive.record_bytes(record)
    )
    if cut_message is not None:
        # A cut message is archived as the text that arrived, so replay salvages it again.
        text_value = cut_message.decode("utf-8", "replace")
        if cap.archive == "metadata":
            stored = archive.record_bytes(
                captures.archive_record(_salvage_message(cut_message) or {}, cap).value
            )
        elif cap.archive == "redacted":
            stored = orjson.dumps(captures.redact_string(text_value, counts))
        else:
            stored = original
    elif cap.archive == "full" and cap.prompt == "full":
        stored = original
    else:
        stored_record = captures.archive_record(record, cap)
        counts.update(stored_record.counts)
        stored = archive.record_bytes(stored_record.value)
    # Identity of the record as logged, whatever is stored; a record replayed from our
    # archive keeps the identity it was archived with, and its place in the archive.
    rid = event.archived.rid if event.archived else archive.record_id(original)
    frag = Fragment(
        kind=kind,
        correlation_id=correlation_id,
        rid=rid,
        facts=facts,
        prompt_preview=previews[0],
        completion_preview=previews[1],
        raw=None
        if event.archived
        else archive.pack_member(
            archive.member_bytes(kind, correlation_id, rid, event, index, enveloped, stored)
        ),
        pointer=event.archived.pointer if event.archived else None,
        part=part,
        # What is masked in what is stored (previews and the archived record): counted from
        # the placeholders, so a replay of an already-redacted archive counts the same.
        redactions=captures.placeholders(stored, *(p.text for p in previews if p is not None)),
    )
    state = plan.states.get(correlation_id)
    if state is None:
        state = plan.states[correlation_id] = CallState(Call(correlation_id))
    add_fragment(state, frag)
    plan.accepted += 1
    if llm is not None and not llm.header:
        for name, value in (("request", llm.request_messages), ("response", llm.response_messages)):
            if isinstance(value, str) and value:
                plan.llm_chunks.setdefault((correlation_id, name), []).append((llm.sequence, value))


# Longest text a fact keeps (the join state stores every source's facts on the row).
_FACT_CHARS = {"url": 2048, "error_message": 500}
_FACT_CHARS_DEFAULT = 512
_TEXT_FACTS = tuple(
    (f.name, _FACT_CHARS.get(f.name, _FACT_CHARS_DEFAULT))
    for f in fields(Facts)
    if f.type == "str | None" and f.name != "clipped"
)


def clip_facts(facts: Facts) -> None:
    """Bound the strings of a record's facts: a crafted record cannot grow the row. The cut
    fields are named in `facts.clipped`, and so in the row's `Clipped`."""
    cut = []
    for name, limit in _TEXT_FACTS:
        value = getattr(facts, name)
        if value is not None and len(value) > limit:
            setattr(facts, name, value[:limit])
            cut.append(name)
    if cut:
        facts.clipped = ",".join(cut)


def _dead_letter(
    captures: capture.CapturePolicy,
    body: bytes,
    reason: str,
    event: EventIn,
    index: int | None,
) -> DeadLetter:
    stored, _ = captures.dead_letter(body)
    # Reasons can quote the input (a parser's message): masked like any stored text.
    safe_reason = captures.redactor.redact(reason[:2000]).text[:1000]
    return DeadLetter(stored, safe_reason, event, index, redacted=stored != body)


def _reassemble_llm_chunks(plan: Plan, cfg: Config) -> None:
    """Messages split into 32 KB chunks: concatenate the chunks of this batch in sequence order
    and parse the whole; the lowest chunk's fragment gets the previews. (A chunk alone gives
    the same preview when it is the first one: previews only need the start of the text.)"""
    captures = capture.policy_for(cfg)
    cap = captures.for_call(None, None, named=False)
    for (cid, name), chunks in plan.llm_chunks.items():
        if len(chunks) < 2:
            continue
        joined = llmlogs.reassemble(chunks)
        if joined is None:
            continue
        first = min(seq for seq, _ in chunks)
        state = plan.states[cid]
        frag = state.call.fragments.get(f"llm-msg:{first}" if first else "llm-msg")
        if frag is None:
            continue
        record = llmlogs.LlmRecord(cid, False, first, frag.facts, None, None)
        kwargs = {"request": joined} if name == "request" else {"response": joined}
        prompt_text, completion_text = llmlogs.texts(record, **kwargs)
        rank = (SOURCE_RANK["llm-msg"], first)
        if name == "request":
            p = captures.preview(prompt_text, cap).value
            frag.prompt_preview = Preview(p, rank) if p else None
        else:
            c = captures.preview(completion_text, cap).value
            frag.completion_preview = Preview(c, rank) if c else None
        add_fragment(state, frag)


def archive_plan(plan: Plan) -> archive.ArchiveBlob | None:
    """Build the batch's archive blob and point every fragment at its member."""
    members: list[RawSource] = []
    frags: list[Fragment] = []
    earliest: datetime | None = None
    for state in plan.states.values():
        for frag in state.call.fragments.values():
            if frag.raw is None or frag.pointer is not None:
                continue
            members.append(frag.raw)
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
        frag.raw = None  # in the blob now: one copy is enough
    return blob


@dataclass(slots=True)
class Transformed:
    """Everything a batch becomes, before any storage request."""

    plan: Plan
    blob: archive.ArchiveBlob | None
    rows: list[rows.Row]


def transform(events: Sequence[EventIn], cfg: Config) -> Transformed:
    """Event bytes → the batch's archive blob and one row per call (pure: no I/O)."""
    plan = plan_batch(events, cfg)
    blob = archive_plan(plan)  # first: rows carry the pointers into it
    return Transformed(plan, blob, rows.entities(plan.states.values(), cfg.shards))


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

    A very large batch is handled in slices of SLICE_BYTES of payload, each with its own
    archive blob, so memory stays bounded whatever the batch size (a call whose records fall
    in two slices is joined through the row, as across batches)."""
    total = BatchResult()
    calls: set[str] = set()
    for part in slices(events, SLICE_BYTES):
        result = _process_slice(part, cfg, store, dry_run, calls)
        total.add(result)
        total.dead += result.dead
        total.archive_blob = result.archive_blob or total.archive_blob
    total.calls = len(calls)
    return total


# Payload per slice of a batch: ~2,500 calls of typical size, past the host's default batch
# (100 events); a 10,000-call batch then peaks near 250 MB (bench/pipeline.py).
SLICE_BYTES = 32 * 1024 * 1024


def slices(events: Sequence[EventIn], limit: int) -> list[Sequence[EventIn]]:
    """Consecutive runs of events of at most `limit` bytes of body (at least one event)."""
    out: list[Sequence[EventIn]] = []
    start, size = 0, 0
    for i, event in enumerate(events):
        if i > start and size + len(event.body) > limit:
            out.append(events[start:i])
            start, size = i, 0
        size += len(event.body)
    if start < len(events) or not out:
        out.append(events[start:])
    return out


def _process_slice(
    events: Sequence[EventIn], cfg: Config, store: Store, dry_run: bool, calls: set[str]
) -> BatchResult:
    done = transform(events, cfg)
    plan, blob = done.plan, done.blob
    calls.update(plan.states)
    result = BatchResult(
        events=plan.events,
        records=plan.records,
        calls=len(plan.states),
        dead_letters=len(plan.dead),
        skipped=plan.skipped,
        dead=plan.dead,
    )
    if blob is not None:
        result.archive_blob = blob.name
        if dry_run:
            result.new_archive_blobs = 0 if store.blob_exists(store.archive, blob.name) else 1
        else:
            result.new_archive_blobs = 1 if store.put_archive(blob) else 0
    if not dry_run:
        for dead in plan.dead:
            store.put_dead_letter(dead)
    written = store.write_rows(done.rows, dry_run=dry_run)
    result.created, result.updated, result.unchanged = (
        written.created,
        written.updated,
        written.unchanged,
    )
    result.days = written.days
    return result


def park_batch(events: Sequence[EventIn], cfg: Config, store: Store, reason: str) -> int:
    """Store every event of a batch that could not be processed as a dead letter, so the host
    moving its checkpoint past the batch loses nothing. Raises if even that fails."""
    captures = capture.policy_for(cfg)
    for event in events:
        store.put_dead_letter(_dead_letter(captures, event.body, reason, event, None))
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

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pipeline.call import attribution
from pipeline.call.bodies import repair_truncated
from pipeline.call.join import CallState, add_fragment
from pipeline.common import heap, safejson
from pipeline.common.timestamps import plausible
from pipeline.common.values import text
from pipeline.model import (
    SOURCE_RANK,
    Archived,
    Call,
    DeadLetter,
    EventIn,
    Facts,
    Fragment,
    Preview,
    RawSource,
)
from pipeline.protect import archive, capture
from pipeline.protect.redact import scrub_credentials
from pipeline.settings import Config
from pipeline.sources import llmlogs, policy
from pipeline.sources.envelope import (
    MAX_RECORDS,
    EnvelopeError,
    category_of,
    flatten,
    open_envelope,
)
from pipeline.sources.gateway import gateway_facts
from pipeline.store import rows

if TYPE_CHECKING:
    from pipeline.store.account import Store

log = logging.getLogger("pipeline.ingest.batch")

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
    # Records (or events) the parser itself failed on: contained, dead-lettered, counted.
    parser_errors: int = 0
    # Where each call's records came from: (event, record index), to dead-letter them as
    # received if the call cannot become a row.
    origins: dict[str, list[tuple[EventIn, int]]] = field(default_factory=dict)
    # The batch's own time (its earliest plausible enqueued time): names the archive blob.
    enqueued: datetime | None = None
    # Records of the event being read that were dead-lettered (see _plan_event).
    event_dead: int = 0
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
    parser_errors: int = 0
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
            "parser_errors",
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
    """Parse a batch. Nothing in one event or record can fail the batch: a failure while
    reading an event or a record (building its dead letter included) is contained at the
    event or record boundary and turned into a dead letter that cannot fail (`_contain`)."""
    plan = Plan()
    captures = capture.policy_for(cfg)
    for event in events:
        plan.events += 1
        if plausible(event.enqueued) and (plan.enqueued is None or event.enqueued < plan.enqueued):
            plan.enqueued = event.enqueued
        try:
            _plan_event(plan, event, cfg, captures)
        except Exception as exc:  # noqa: BLE001 - the event boundary (see _contain)
            _contain(plan, captures, event, None, exc)
    _reassemble_llm_chunks(plan, cfg)
    return plan


def _plan_event(plan: Plan, event: EventIn, cfg: Config, captures: capture.CapturePolicy) -> None:
    try:
        env = open_envelope(event.body)
    except EnvelopeError as exc:
        # A log-to-eventhub message over 200 KB arrives cut: salvage what is complete.
        salvaged = _salvage_message(event.body)
        if salvaged is None:
            # Not readable at all: whose it is cannot be known, so the strictest capture.
            plan.dead.append(
                _dead_letter(captures, captures.strictest, event.body, str(exc), event, None)
            )
            return
        plan.records += 1
        _guarded(plan, event, 0, salvaged, False, cfg, cut_message=event.body)
        return
    if len(env.records) > MAX_RECORDS:
        plan.records += len(env.records)
        reason = (
            f"event holds {len(env.records)} records, more than the {MAX_RECORDS} "
            "an Event Hub event of APIM logs can (1 MB): not read record by record"
        )
        plan.dead.append(_raw_dead_letter(captures, event, None, reason))
        return
    first_dead, plan.event_dead = len(plan.dead), 0
    for index, record in enumerate(env.records):
        plan.records += 1
        _guarded(plan, event, index, record, env.enveloped, cfg, nested=index in env.nested)
    if plan.event_dead > MAX_DEAD_PER_EVENT:
        # One dead letter for the event, not one per record: the event's bytes hold them all,
        # and a crafted event of thousands of bad records costs one blob, not thousands.
        first = plan.dead[first_dead].reason
        del plan.dead[first_dead:]
        reason = (
            f"{plan.event_dead} records of this event could not become rows (the first: {first})"
        )
        plan.dead.append(_raw_dead_letter(captures, event, None, reason[:1000]))


# Dead-lettered records of one event past which the event is dead-lettered once, whole.
MAX_DEAD_PER_EVENT = 16


def _add_dead(plan: Plan, make: Callable[[], DeadLetter]) -> None:
    """A record's dead letter, built only while the event has few (see _plan_event)."""
    plan.event_dead += 1
    if plan.event_dead <= MAX_DEAD_PER_EVENT:
        plan.dead.append(make())


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
    nested: bool = False,
) -> None:
    captures = capture.policy_for(cfg)
    try:
        _plan_record(plan, event, index, record, enveloped, cfg, captures, cut_message, nested)
    except Exception as exc:  # noqa: BLE001 - the record boundary (see _contain)
        _contain(plan, captures, event, index, exc, record, enveloped, cut_message)


def _contain(
    plan: Plan,
    captures: capture.CapturePolicy,
    event: EventIn,
    index: int | None,
    exc: Exception,
    record: Any = None,
    enveloped: bool = False,
    cut_message: bytes | None = None,
) -> None:
    """A parser failure: dead-letter the record, or, if even that fails, the event's bytes
    as received. The reason and the log say where it failed, never what the record held
    (an exception's message can quote the input)."""
    where = " < ".join(
        f"{Path(f.filename).name}:{f.lineno}" for f in traceback.extract_tb(exc.__traceback__)[-3:]
    )
    log.error(
        "parser error on %s record %s: %s at %s", event.origin, index, type(exc).__name__, where
    )
    plan.parser_errors += 1
    reason = f"parser error: {type(exc).__name__} (at {where})"
    if index is None:
        plan.dead.append(_raw_dead_letter(captures, event, None, reason))
    else:
        _add_dead(
            plan,
            lambda: _record_dead_letter(
                captures, event, index, reason, record, enveloped, cut_message
            ),
        )


def _record_dead_letter(
    captures: capture.CapturePolicy,
    event: EventIn,
    index: int,
    reason: str,
    record: Any,
    enveloped: bool,
    cut_message: bytes | None,
) -> DeadLetter:
    """The dead letter of one record, under its owner's capture (the strictest when the
    record cannot say whose it is)."""
    try:
        owner = _owner_capture(captures, record)
        body = cut_message if cut_message is not None else _dead_record(record, enveloped)
        return _dead_letter(captures, owner, body, reason, event, index)
    except Exception as exc:  # noqa: BLE001 - the last line of the record boundary
        log.error("dead letter of %s record %d: %s", event.origin, index, type(exc).__name__)
        return _raw_dead_letter(captures, event, index, reason)


def _owner_capture(captures: capture.CapturePolicy, record: Any) -> capture.Capture:
    if isinstance(record, dict):
        flat = flatten(record)
        subscription = text(flat, "apimsubscriptionid", "subscriptionid")
        product = text(flat, "productid", "productname")
        if subscription is not None or product is not None:
            return captures.for_call(subscription, product, named=True)
    return captures.strictest


def _raw_dead_letter(
    captures: capture.CapturePolicy, event: EventIn, index: int | None, reason: str
) -> DeadLetter:
    """A dead letter that cannot fail on content: the event's bytes as received (nothing
    decoded or walked), redacted as text under the strictest capture."""
    try:
        stored, _ = captures.dead_letter_text(event.body, captures.strictest)
    except Exception as exc:  # noqa: BLE001 - a detector bug: keep the bytes, say so loudly
        log.critical(
            "dead letter of %s kept unredacted: %s in redaction", event.origin, type(exc).__name__
        )
        stored = event.body
    return DeadLetter(stored, reason, event, index, redacted=stored != event.body)


@dataclass(slots=True)
class _Read:
    """What one record says, before the capture policy: the source step's output."""

    kind: str
    label: str
    correlation_id: str | None
    facts: Facts
    part: int
    prompt_text: str | None
    completion_text: str | None
    llm: llmlogs.LlmRecord | None = None


class _Dead(Exception):
    """A record that cannot become a fragment; the message is the dead letter's reason and
    never quotes the record."""


class _Skip(Exception):
    """A record of a category we do not handle: counted, not dead-lettered."""


def _read(record: dict[str, Any], flat: dict[str, Any], cfg: Config) -> _Read:
    """Source step: which log shape the record is, and the facts it states."""
    category = category_of(flat)
    if category is None:
        shape = policy.shape_of(flat)
        if shape is None:
            raise _Dead("unknown record shape: no category and not a known log-to-eventhub message")
        msg = policy.parse_policy(flat, shape, cfg.trust_bearer)
        if msg is None:
            raise _Dead(f"log-to-eventhub message (shape {shape}) without a correlation id")
        return _Read(
            "policy",
            f"log-to-eventhub message (shape {shape})",
            msg.correlation_id,
            msg.facts,
            msg.part,
            msg.prompt_text,
            msg.completion_text,
        )
    source = HANDLED_CATEGORIES.get(category.lower())
    if source is None:
        raise _Skip(category)
    label = "GatewayLogs record" if source == "gateway" else "GatewayLlmLogs record"
    if source == "gateway":
        facts, prompt_text, completion_text = gateway_facts(flat)
        return _Read(
            "gateway", label, text(flat, "correlationid"), facts, 0, prompt_text, completion_text
        )
    llm = llmlogs.parse_llm_record(flat)
    prompt_text, completion_text = llmlogs.texts(llm)
    return _Read(
        "llm" if llm.header else "llm-msg",
        label,
        llm.correlation_id,
        llm.facts,
        0 if llm.header else llm.sequence,
        prompt_text,
        completion_text,
        llm,
    )


def _trust_caller(read: _Read, authorization: str | None, cfg: Config) -> None:
    """Caller claims are believed only for successful calls, and only with
    CALLER_FROM_BEARER: a token that reached a successful call was validated on the way (by
    APIM or by Azure OpenAI), one on a failed call may be anything the client wrote. The
    same rule for the gateway's Authorization header and every policy shape's claims."""
    facts = read.facts
    trusted = cfg.trust_bearer and facts.status is not None and facts.status < 400
    if read.kind == "gateway" and trusted:
        caller = attribution.from_authorization(authorization)
        facts.caller_app_id = caller.app_id
        facts.caller_user_id = caller.user_id
        facts.caller_tenant_id = caller.tenant_id
    elif not trusted:
        facts.caller_app_id = facts.caller_user_id = facts.caller_tenant_id = None


def _check_time(read: _Read, event: EventIn) -> None:
    """A time outside the plausible window (timestamps.plausible) never names a partition
    or a blob: the event's enqueued time stands in, and `Clipped` says `CallTime`."""
    facts = read.facts
    if facts.call_time is None:
        raise _Dead(f"{read.label} without a readable time")
    enqueued = event.enqueued if plausible(event.enqueued) else None
    if plausible(facts.call_time, enqueued):
        return
    if enqueued is None:
        raise _Dead(f"{read.label} with an implausible time and no enqueued time to use instead")
    facts.call_time = enqueued
    _mark_clipped(facts, "call_time")


def _mark_clipped(facts: Facts, name: str) -> None:
    names = facts.clipped.split(",") if facts.clipped else []
    if name not in names:
        facts.clipped = ",".join([*names, name])


def _plan_record(
    plan: Plan,
    event: EventIn,
    index: int,
    record: Any,
    enveloped: bool,
    cfg: Config,
    captures: capture.CapturePolicy,
    cut_message: bytes | None,
    nested: bool = False,
) -> None:
    captures.forget()
    try:
        if not isinstance(record, dict):
            raise _Dead(f"record {index} is JSON {type(record).__name__}, expected an object")
        authorization = attribution.authorization_of(record)
        # Credentials go first: nothing below (facts, archive, dead letters) ever sees them.
        record = scrub_credentials(record)
        with safejson.watch() as deep:
            read = _read(record, flatten(record), cfg)
        if nested or deep.pruned:
            _mark_clipped(read.facts, "nesting")
        if read.kind == "policy" and cut_message is not None:
            read.facts.body_truncated = True
        _trust_caller(read, authorization, cfg)
        if read.correlation_id is None:
            raise _Dead(f"{read.label} without correlationId")
        _check_time(read, event)
        try:
            rows.row_key(read.correlation_id)
        except rows.KeyTooLong as exc:
            raise _Dead(str(exc)) from None
    except _Skip as skip:
        plan.skipped[str(skip)] += 1
        return
    except _Dead as why:
        reason = str(why)
        _add_dead(
            plan,
            lambda: _record_dead_letter(
                captures, event, index, reason, record, enveloped, cut_message
            ),
        )
        return
    frag = _protect(read, record, event, index, enveloped, cut_message, captures)
    cid = read.correlation_id
    state = plan.states.get(cid)
    if state is None:
        state = plan.states[cid] = CallState(Call(cid))
    add_fragment(state, frag)
    plan.origins.setdefault(cid, []).append((event, index))
    plan.accepted += 1
    llm = read.llm
    if llm is not None and not llm.header:
        for name, value in (("request", llm.request_messages), ("response", llm.response_messages)):
            if isinstance(value, str) and value:
                plan.llm_chunks.setdefault((cid, name), []).append((llm.sequence, value))


def _protect(
    read: _Read,
    record: dict[str, Any],
    event: EventIn,
    index: int,
    enveloped: bool,
    cut_message: bytes | None,
    captures: capture.CapturePolicy,
) -> Fragment:
    """Protect step: what of the record may be stored (previews, facts' free text, the
    archive member), under the capture policy of whoever owns the call (LLM-log records
    cannot say: they get the strictest policy, capture.py)."""
    kind, facts, correlation_id = read.kind, read.facts, read.correlation_id
    assert correlation_id is not None
    cap = captures.for_call(
        facts.subscription_id, facts.product_id, named=kind in ("gateway", "policy")
    )
    counts: Counter[str] = Counter()
    rank = (SOURCE_RANK[kind], read.part)
    previews = []
    for text_ in (read.prompt_text, read.completion_text):
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
    # A record replayed from our archive keeps the identity it was archived with, and its
    # place in the archive, but only when that place was checked (`verify_archived`) and
    # holds this very call: an event property alone proves nothing.
    archived = event.archived
    if archived is not None and not (
        archived.verified and archived.correlation_id == correlation_id
    ):
        archived = None
    rid = archived.rid if archived else archive.record_id(original)
    return Fragment(
        kind=kind,
        correlation_id=correlation_id,
        rid=rid,
        facts=facts,
        prompt_preview=previews[0],
        completion_preview=previews[1],
        raw=None
        if archived
        else archive.pack_member(
            archive.member_bytes(kind, correlation_id, rid, event, index, enveloped, stored)
        ),
        pointer=archived.pointer if archived else None,
        part=read.part,
        # What is masked in what is stored (previews and the archived record): counted from
        # the placeholders, so a replay of an already-redacted archive counts the same.
        redactions=captures.placeholders(stored, *(p.text for p in previews if p is not None)),
    )


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
    for name in cut:
        _mark_clipped(facts, name)


def _dead_letter(
    captures: capture.CapturePolicy,
    cap: capture.Capture,
    body: bytes,
    reason: str,
    event: EventIn,
    index: int | None,
) -> DeadLetter:
    stored, _ = captures.dead_letter(body, cap)
    # Reasons are ours and quote no input; masked anyway, like any stored text.
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
        try:
            _reassemble(plan, captures, cap, cid, name, chunks)
        except Exception as exc:  # noqa: BLE001 - chunks keep their own previews
            # Each chunk is a fragment already (rows and archive members): only the joined
            # preview is lost, and the log says where it failed.
            log.error("reassembling LLM-log chunks: %s", type(exc).__name__)


def _reassemble(
    plan: Plan,
    captures: capture.CapturePolicy,
    cap: capture.Capture,
    cid: str,
    name: str,
    chunks: list[tuple[int, str]],
) -> None:
    joined = llmlogs.reassemble(chunks)
    if joined is None:
        return
    first = min(seq for seq, _ in chunks)
    state = plan.states[cid]
    frag = state.call.fragments.get(f"llm-msg:{first}" if first else "llm-msg")
    if frag is None:
        return
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
    # The batch's own time names the blob; files carry no enqueued time, and then the
    # earliest call time does (plausible by then: ingest._check_time).
    when = plan.enqueued or earliest
    assert when is not None  # every fragment has a time (checked in _plan_record)
    blob = archive.build_blob(members, when)
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
    return Transformed(plan, blob, _entities(plan, cfg))


def _entities(plan: Plan, cfg: Config) -> list[rows.Row]:
    """One row per call. A call whose row cannot be built (a bug) is contained like a
    record: its records are dead-lettered as received, and the other calls are stored."""
    out: list[rows.Row] = []
    captures = capture.policy_for(cfg)
    for cid, state in list(plan.states.items()):
        try:
            out.extend(rows.entities([state], cfg.shards))
        except Exception as exc:  # noqa: BLE001 - the call boundary
            del plan.states[cid]
            seen: set[tuple[int, int]] = set()
            for event, index in plan.origins.get(cid, ()):
                if (id(event), index) not in seen:
                    seen.add((id(event), index))
                    _contain(plan, captures, event, None, exc)
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

    A very large batch is handled in slices of SLICE_BYTES of payload, each with its own
    archive blob, so memory stays bounded whatever the batch size (a call whose records fall
    in two slices is joined through the row, as across batches)."""
    total = BatchResult()
    calls: set[str] = set()
    events = verify_archived(events, store)
    for part in slices(events, SLICE_BYTES):
        result = _process_slice(part, cfg, store, dry_run, calls)
        total.add(result)
        total.dead += result.dead
        total.archive_blob = result.archive_blob or total.archive_blob
    total.calls = len(calls)
    return total


def verify_archived(events: Sequence[EventIn], store: Store) -> Sequence[EventIn]:
    """Check the archive pointers that events claim (the `aoai-audit-archived` property, set
    by `replay --to-eventhub`, can be set by any sender on the hub): honoured only when the
    blob exists in the archive container and the range holds a member whose SHA-256 is the
    claimed one; the member then says which call it belongs to. Otherwise the event is
    processed like any other, and its record archived anew. One ranged read per claim."""
    if all(e.archived is None or e.archived.verified for e in events):
        return events
    return [
        e if e.archived is None or e.archived.verified else replace(e, archived=_check(e, store))
        for e in events
    ]


def _check(event: EventIn, store: Store) -> Archived | None:
    assert event.archived is not None
    p = event.archived.pointer
    if (
        not archive.BLOB_NAME.match(p.blob)
        or p.offset < 0
        or not 0 < p.length <= archive.MAX_MEMBER_BYTES
    ):
        return None
    data = store.read_member(p.blob, p.offset, p.length)
    if data is None:
        return None
    try:
        member = archive.open_member(data, p.sha256)
    except archive.ArchiveError:
        return None
    if not isinstance(member, dict):
        return None
    cid, rid = member.get("correlationId"), member.get("rid")
    if not isinstance(cid, str) or not isinstance(rid, str):
        return None
    return Archived(p, rid, verified=True, correlation_id=cid)


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
        parser_errors=plan.parser_errors,
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
    moving its checkpoint past the batch loses nothing. Nothing here parses the events
    (`_raw_dead_letter`), so whatever made the batch fail cannot make parking fail too.
    Raises if storage refuses."""
    captures = capture.policy_for(cfg)
    for event in events:
        store.put_dead_letter(_raw_dead_letter(captures, event, None, reason))
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

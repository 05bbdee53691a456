"""A batch of events → a plan: the calls' fragments, dead letters and counts (pure: no I/O).

Each record goes through the steps of records.py. Nothing in one event or record can fail
the batch: a failure while reading an event or a record (building its dead letter included)
is contained at the event or record boundary (`_contain`) and turned into a dead letter that
cannot fail (deadletters.raw_dead_letter).
"""

from __future__ import annotations

import logging
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.call.join import CallState, absorb, add_fragment, twins
from pipeline.common.timestamps import plausible
from pipeline.common.values import text
from pipeline.ingest import records
from pipeline.ingest.records import Received
from pipeline.model import SOURCE_RANK, Call, DeadLetter, EventIn, Fragment, Preview
from pipeline.protect import deadletters, encryption
from pipeline.protect.masking import Masker
from pipeline.protect.policy import CapturePolicy, policy_for
from pipeline.protect.previews import preview
from pipeline.settings import Capture, Config
from pipeline.sources import llmlogs
from pipeline.sources.envelope import EnvelopeError, EnvelopeRefused, flatten, open_envelope

log = logging.getLogger(__name__)

# One dead letter an event, however many bad records a sender puts in it (a dead letter
# each let an event cost 16 blobs): one record's own, or one holding the event's bad records
# alone, up to MAX_BAD_TOGETHER of them (its good records are rows; holding them too, the
# dead letter, masked, replayed them as rivals of their rows), or past that the event whole
# (its bytes, read as text: a sender's event of thousands of bad records costs one blob).
MAX_DEAD_PER_EVENT = 1
MAX_BAD_TOGETHER = 16

# An archive member read back sealed that no key of ours opens: not erased (that is said
# apart), so its key entity is gone or damaged; the run that met it did not replay everything.
UNOPENED = "sealed, and no key of ours opens it"
UNOPENED_SKIP = f"archive member {UNOPENED}"


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
    # Records of the event being read that were dead-lettered (see _plan_event), and the
    # first MAX_BAD_TOGETHER of them with their reasons.
    event_dead: int = 0
    event_bad: list[tuple[Received, str]] = field(default_factory=list)
    # Records of the batch in a dead letter: their own, or their event's, whole.
    dead_records: int = 0
    # String chunks of split LLM-log messages: (correlation id, "request"|"response") →
    # sequence number → (record id, chunk, the record's Accepted).
    llm_chunks: dict[tuple[str, str], dict[int, tuple[str, str, Accepted]]] = field(
        default_factory=dict
    )


EMPTY_EVENT = "(events holding no record)"

# Skipped records are counted by their category, which any sender names: a name is cut, and
# past MAX_SKIPPED_NAMES the others share one count, so a flood of names grows nothing.
MAX_SKIPPED_NAMES = 100
OTHER_SKIPPED = "(other categories)"


def count_skipped(counts: Counter[str], name: str, n: int = 1) -> None:
    name = name[:80]
    if name not in counts and len(counts) >= MAX_SKIPPED_NAMES:
        name = OTHER_SKIPPED
    counts[name] += n


@dataclass(frozen=True, slots=True)
class SliceLimit:
    """Where a slice of a batch ends (ingest/batch.py): before the event that would take its
    payload past `payload` bytes, or once it holds `records` records. The first event is
    always read."""

    payload: int
    records: int

    def ends(self, plan: Plan, payload: int) -> bool:
        """Whether the slice `plan` has read ends before an event that takes its payload to
        `payload` bytes."""
        return plan.events > 0 and (payload > self.payload or plan.records >= self.records)


def plan_batch(events: Sequence[EventIn], cfg: Config, until: SliceLimit | None = None) -> Plan:
    """Parse a batch, or with `until` its first slice (`plan.events` says how many events it
    read). Nothing in one event or record can fail the batch (see the module)."""
    plan = Plan()
    policy = policy_for(cfg)
    payload = 0
    for event in events:
        if until is not None and until.ends(plan, payload + len(event.body)):
            break
        payload += len(event.body)
        plan.events += 1
        if plausible(event.enqueued) and (plan.enqueued is None or event.enqueued < plan.enqueued):
            plan.enqueued = event.enqueued
        if event.archived is not None and (event.archived.erased or event.archived.sealed):
            # Read back from the sealed archive: erased (its key destroyed), or no key opens it.
            why = "erased" if event.archived.erased else UNOPENED
            plan.skipped[f"archive member {why}"] += 1
            continue
        if event.sealed and event.body.startswith(encryption.DEAD_LETTER_MAGIC):
            # Still sealed (no key of ours opens it): it stays the dead letter it is.
            reason = "sealed dead letter that no key of ours opens (ARCHIVE_KEK changed?)"
            plan.dead.append(DeadLetter(event.body, reason, event, in_place=True))
            continue
        try:
            _plan_event(plan, event, cfg, policy)
        except Exception as exc:  # noqa: BLE001 - the event boundary (see _contain)
            contain(plan, policy, event, exc)
    _reassemble_llm_chunks(plan, policy)
    _join_twins(plan)
    return plan


def _join_twins(plan: Plan) -> None:
    """A call keyed by its response id (its records carry no APIM correlation id) and the
    call of this batch with that ResponseId are one call: one state, one row. Across batches
    the rows join in storage (store/audit.py `join_twins`)."""
    for keyed, cid in twins(plan.states):
        absorb(plan.states[cid], plan.states.pop(keyed))
        plan.origins.setdefault(cid, []).extend(plan.origins.pop(keyed, []))


def _plan_event(plan: Plan, event: EventIn, cfg: Config, policy: CapturePolicy) -> None:
    # The event's own count of bad records, from its first: a salvaged message (below) is
    # one of them too, and an earlier event's count left its dead letter unbuilt.
    first_dead, plan.event_dead = len(plan.dead), 0
    plan.event_bad.clear()
    try:
        env = open_envelope(event.body, cfg.max_records)
    except EnvelopeRefused as exc:
        plan.dead.append(deadletters.raw_dead_letter(policy, event, None, str(exc)))
        return
    except EnvelopeError as exc:
        _plan_unreadable(plan, event, cfg, policy, str(exc))
        return
    if not env.records:
        # `[]`, `{"records": []}`: nothing to store or dead-letter, but not without a trace.
        count_skipped(plan.skipped, EMPTY_EVENT)
        return
    if len(env.records) > cfg.max_records:
        plan.records += len(env.records)
        plan.dead_records += len(env.records)
        reason = (
            f"event holds {len(env.records)} records, more than the {cfg.max_records} "
            "an Event Hub event of APIM logs can (1 MB): not read record by record "
            "(MAX_RECORDS_PER_EVENT)"
        )
        plan.dead.append(deadletters.raw_dead_letter(policy, event, None, reason))
        return
    accepted: list[Accepted] = []
    for i, record in enumerate(env.records):
        plan.records += 1
        index = event.record_indexes[i] if i < len(event.record_indexes) else event.first_record + i
        received = Received(event, index, record, env.enveloped, nested=i in env.nested)
        _guarded(plan, received, cfg, policy, accepted.append)
    days = {a.frag.facts.call_time.date() for a in accepted if a.frag.facts.call_time}
    if len(days) > cfg.max_days:
        # Each day is a partition of the audit table, and each partition a transaction: a
        # sender's event of 2,500 records on as many days cost 2,500 requests (18 s).
        reason = (
            f"records of this event name {len(days)} days, more than the {cfg.max_days} of "
            "an event of APIM logs (its records are minutes apart): not read record by "
            "record (MAX_DAYS_PER_EVENT)"
        )
        plan.dead_records += len(accepted)
    else:
        for a in accepted:
            _commit(plan, a)
        if plan.event_dead <= MAX_DEAD_PER_EVENT:
            return
        first = plan.dead[first_dead].reason
        reason = (
            f"{plan.event_dead} records of this event could not become rows (the first: {first})"
        )[:1000]
        if plan.event_dead <= MAX_BAD_TOGETHER:
            del plan.dead[first_dead:]
            plan.dead.append(
                _bad_records_letter(policy, event, env.enveloped, plan.event_bad, reason)
            )
            return
    del plan.dead[first_dead:]
    plan.dead.append(deadletters.raw_dead_letter(policy, event, None, reason[:1000]))


def _plan_unreadable(
    plan: Plan, event: EventIn, cfg: Config, policy: CapturePolicy, reason: str
) -> None:
    """An event that is not an envelope: a log-to-eventhub message over 200 KB arrives cut,
    and what is complete of it is salvaged; anything else is a dead letter."""
    salvaged = records.salvage_message(event.body)
    if salvaged is None:
        # Not readable at all: whose it is cannot be known, so the strictest capture.
        plan.dead.append(
            deadletters.dead_letter(
                Masker(policy), policy.strictest, event.body, reason, event, None
            )
        )
        return
    plan.records += 1
    received = Received(event, 0, salvaged, False, cut_message=event.body)
    _guarded(plan, received, cfg, policy, lambda a: _commit(plan, a))


@dataclass(frozen=True, slots=True)
class Accepted:
    """A record that became a fragment of a call, before it joins the plan (its event may
    still be dead-lettered whole: see _plan_event)."""

    cid: str
    frag: Fragment
    received: Received
    by_response: bool
    # String chunks of a split LLM-log message: ("request"|"response", sequence, chunk).
    chunks: tuple[tuple[str, int, str], ...] = ()
    # The parsed record, for a record holding chunks (archived again once its neighbours
    # are known: `_mask_split_values`).
    parsed: records.Parsed | None = None


def _guarded(
    plan: Plan,
    received: Received,
    cfg: Config,
    policy: CapturePolicy,
    accept: Callable[[Accepted], None],
) -> None:
    """The record boundary. The record's Masker (its redaction memo) ends with it."""
    masker = Masker(policy)
    try:
        _plan_record(plan, received, cfg, masker, accept)
    except Exception as exc:  # noqa: BLE001 - the record boundary (see contain)
        contain(plan, policy, received.event, exc, received, masker)


def _plan_record(
    plan: Plan,
    received: Received,
    cfg: Config,
    masker: Masker,
    accept: Callable[[Accepted], None],
) -> None:
    try:
        parsed = records.parse(received, cfg)
        cid = records.facts(parsed, received.event, cfg)
    except records.Skip as skip:
        count_skipped(plan.skipped, str(skip))
        return
    except records.Dead as why:
        reason = str(why)
        _add_dead(plan, lambda: _record_dead_letter(masker, received, reason), received, reason)
        return
    protected = records.protect(parsed, received, masker)
    frag = records.fragment(parsed, protected, received, masker.policy)
    chunks: tuple[tuple[str, int, str], ...] = ()
    llm = parsed.read.llm
    if llm is not None and not llm.header:
        messages = (("request", llm.request_messages), ("response", llm.response_messages))
        chunks = tuple(
            (name, llm.sequence, value)
            for name, value in messages
            if isinstance(value, str) and value
        )
    accept(
        Accepted(cid, frag, received, parsed.read.by_response, chunks, parsed if chunks else None)
    )


def _commit(plan: Plan, a: Accepted) -> None:
    state = plan.states.get(a.cid)
    if state is None:
        state = plan.states[a.cid] = CallState(Call(a.cid, keyed_by_response=a.by_response))
    add_fragment(state, a.frag)
    plan.origins.setdefault(a.cid, []).append((a.received.event, a.received.index))
    plan.accepted += 1
    for name, sequence, chunk in a.chunks:
        # One chunk a sequence number, from the record the join keeps for it (the greatest
        # record id, join.py): a chunk delivered twice, or a rival's, is not joined again.
        held = plan.llm_chunks.setdefault((a.cid, name), {})
        other = held.get(sequence)
        if other is None or a.frag.rid > other[0]:
            held[sequence] = (a.frag.rid, chunk, a)


def contain(
    plan: Plan,
    policy: CapturePolicy,
    event: EventIn,
    exc: Exception,
    received: Received | None = None,
    masker: Masker | None = None,
) -> None:
    """A parser failure: dead-letter the record (`received`), or, if even that fails or
    there is no record, the event's bytes as received. The reason and the log say where it
    failed, never what the record held (an exception's message can quote the input)."""
    where = " < ".join(
        f"{Path(f.filename).name}:{f.lineno}" for f in traceback.extract_tb(exc.__traceback__)[-3:]
    )
    index = received.index if received is not None else None
    log.error(
        "parser error on %s record %s: %s at %s", event.origin, index, type(exc).__name__, where
    )
    plan.parser_errors += 1
    reason = f"parser error: {type(exc).__name__} (at {where})"
    if received is None or masker is None:
        plan.dead.append(deadletters.raw_dead_letter(policy, event, None, reason))
    else:
        _add_dead(plan, lambda: _record_dead_letter(masker, received, reason), received, reason)


def _add_dead(plan: Plan, make: Callable[[], DeadLetter], received: Received, reason: str) -> None:
    """A record's dead letter, built only for the event's first (see _plan_event)."""
    plan.event_dead += 1
    plan.dead_records += 1
    if plan.event_dead <= MAX_BAD_TOGETHER:
        plan.event_bad.append((received, reason))
    if plan.event_dead <= MAX_DEAD_PER_EVENT:
        plan.dead.append(make())


def _bad_records_letter(
    policy: CapturePolicy,
    event: EventIn,
    enveloped: bool,
    bad: list[tuple[Received, str]],
    reason: str,
) -> DeadLetter:
    """One dead letter for the bad records of an event, and them alone, each with its place
    in the event (its good records are rows): under their owners' capture when they share
    one, else the strictest. If even that fails, the event's bytes as received."""
    try:
        records_ = [received.record for received, _ in bad]
        owners = [_owner_capture(policy, r) for r in records_]
        capture = owners[0] if all(o == owners[0] for o in owners) else policy.strictest
        body = deadletters.records_body(records_, enveloped)
        letter = deadletters.dead_letter(Masker(policy), capture, body, reason, event, None)
        return replace(letter, record_indexes=tuple(received.index for received, _ in bad))
    except Exception as exc:  # noqa: BLE001 - the last line of the event boundary
        log.error("dead letter of %s's bad records: %s", event.origin, type(exc).__name__)
        return deadletters.raw_dead_letter(policy, event, None, reason)


def _record_dead_letter(masker: Masker, received: Received, reason: str) -> DeadLetter:
    """The dead letter of one record, under its owner's capture (the strictest when the
    record cannot say whose it is)."""
    event, index = received.event, received.index
    try:
        owner = _owner_capture(masker.policy, received.record)
        body = (
            received.cut_message
            if received.cut_message is not None
            else deadletters.record_body(received.record, received.enveloped)
        )
        return deadletters.dead_letter(masker, owner, body, reason, event, index)
    except Exception as exc:  # noqa: BLE001 - the last line of the record boundary
        log.error("dead letter of %s record %d: %s", event.origin, index, type(exc).__name__)
        return deadletters.raw_dead_letter(masker.policy, event, index, reason)


def _owner_capture(policy: CapturePolicy, record: Any) -> Capture:
    if isinstance(record, dict):
        flat = flatten(record)
        subscription = text(flat, "apimsubscriptionid", "subscriptionid")
        product = text(flat, "productid", "productname")
        if subscription is not None or product is not None:
            return policy.for_call(subscription, product, named=True)
    return policy.strictest


def _reassemble_llm_chunks(plan: Plan, policy: CapturePolicy) -> None:
    """Messages split into 32 KB chunks: concatenate the chunks of this batch in sequence order
    and parse the whole; the lowest chunk's fragment gets the previews. (A chunk alone gives
    the same preview when it is the first one: previews only need the start of the text.)"""
    cap = policy.for_call(None, None, named=False)
    masker = Masker(policy)
    # A record's chunks masked across their cuts (its request's and its response's: one
    # record may hold both), archived again once all are known.
    split: dict[int, tuple[Accepted, dict[str, str]]] = {}
    for (cid, name), held in plan.llm_chunks.items():
        if len(held) < 2:
            continue
        if cap.archive != "full":
            try:
                _mask_split_values(policy, held, split)
            except Exception as exc:  # noqa: BLE001 - each chunk keeps its own masking
                log.error("masking across LLM-log chunks: %s", type(exc).__name__)
        chunks = [(sequence, chunk) for sequence, (_, chunk, _) in held.items()]
        try:
            _reassemble(plan, masker, cap, cid, name, chunks)
        except Exception as exc:  # noqa: BLE001 - chunks keep their own previews
            # Each chunk is a fragment already (rows and archive members): only the joined
            # preview is lost, and the log says where it failed.
            log.error("reassembling LLM-log chunks: %s", type(exc).__name__)
    for accepted, masked in split.values():
        try:
            if accepted.parsed is not None:
                records.rearchive_chunk(
                    accepted.frag, accepted.parsed, accepted.received, policy, masked
                )
        except Exception as exc:  # noqa: BLE001 - the chunk keeps its own masking
            log.error("archiving an LLM-log chunk again: %s", type(exc).__name__)


# Characters of each chunk read on either side of a cut between two chunks: a value the cut
# splits is found there (the longest a detector takes whole: an RSA-8192 PEM key is about
# 6.5 KB, a JWT a few KB; a chunk is 32 KB).
_ACROSS = 16_384


def _mask_split_values(
    policy: CapturePolicy,
    held: dict[int, tuple[str, str, Accepted]],
    split: dict[int, tuple[Accepted, dict[str, str]]],
) -> None:
    """A message split into 32 KB chunks is masked chunk by chunk (each its own record), so a
    value the cut splits was kept in two halves, and one whose name ended the chunk before
    ("password: " | "Hunter2") was not found at all: a client chooses where the cut falls by
    the length of its prompt (an audit stored a password, an account key, a key but one
    character so). Here each cut between two chunks of the batch is read across: what is
    found there is masked in the chunk that holds it, a match across the cut in both (its
    placeholder in the first, as `Redactor.redact_pieces` does), and the records of those
    chunks go into `split` (by record) to be archived again."""
    edits: dict[int, list[tuple[int, int, str | None]]] = {}
    for s in sorted(held):
        if s + 1 not in held:
            continue
        chunk = held[s][1]
        head, tail = chunk[-_ACROSS:], held[s + 1][1][:_ACROSS]
        cut, base = len(head), len(chunk) - len(head)
        for a, b, label in policy.redactor.find(head + tail):
            if b <= cut:
                edits.setdefault(s, []).append((base + a, base + b, label))
            elif a >= cut:
                edits.setdefault(s + 1, []).append((a - cut, b - cut, label))
            else:
                edits.setdefault(s, []).append((base + a, len(chunk), label))
                edits.setdefault(s + 1, []).append((0, b - cut, None))  # its rest: removed
    for s, spans in edits.items():
        _, chunk, accepted = held[s]
        parts, pos = [], 0
        # Leftmost, longest, and a value's rest before a match of a piece of it read from the
        # other cut (a chunk shorter than two reads is read from both).
        for a, b, label in sorted(spans, key=lambda e: (e[0], -e[1], e[2] is not None)):
            if a < pos:
                continue
            parts += (chunk[pos:a], f"[{label}]" if label else "")
            pos = b
        masked = "".join(parts) + chunk[pos:]
        if masked != chunk:
            split.setdefault(id(accepted), (accepted, {}))[1][chunk] = masked


def _reassemble(
    plan: Plan,
    masker: Masker,
    cap: Capture,
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
        p = preview(masker, prompt_text, cap).value
        frag.prompt_preview = Preview(p, rank) if p else None
    else:
        c = preview(masker, completion_text, cap).value
        frag.completion_preview = Preview(c, rank) if c else None
    add_fragment(state, frag)

"""The steps of one record, each plain data in and out:

    Received ─parse─▶ Parsed ─facts─▶ (checked facts) ─protect─▶ Protected ─fragment─▶ Fragment

`parse` says which source the record is and what it states; `facts` completes and checks
what the call says (caller claims, time, key); `protect` decides what of it may be stored
under its owner's capture (previews, the archive record); `fragment` is the call's piece.
A step raises `Dead` (the record is dead-lettered with a reason of ours) or `Skip` (a
category we do not handle); anything else it raises is a parser error, contained at the
record boundary (plan.py).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, fields
from typing import Any

import orjson

from pipeline.call import attribution
from pipeline.call.bodies import last_value, repair
from pipeline.call.join import CUT_PREVIEW
from pipeline.common import safejson
from pipeline.common.render import INVISIBLE
from pipeline.common.timestamps import plausible
from pipeline.common.values import text
from pipeline.model import SOURCE_RANK, EventIn, Facts, Fragment, Preview, RawSource
from pipeline.protect import archive, encryption
from pipeline.protect.credentials import scrub_credentials
from pipeline.protect.fields import BODY, MESSAGES, PROPERTIES, key_kind
from pipeline.protect.masking import Masker
from pipeline.protect.policy import CapturePolicy
from pipeline.protect.previews import preview
from pipeline.protect.records import archive_record
from pipeline.settings import Capture, Config
from pipeline.sources import llmlogs, loganalytics, policy
from pipeline.sources.envelope import category_of, flatten
from pipeline.sources.gateway import gateway_facts
from pipeline.store import rows

HANDLED_CATEGORIES = {"gatewaylogs": "gateway", "gatewayllmlogs": "llm"}
# The part of a Log Analytics row's fragment (a gateway record or an LLM-log header): after
# its diagnostic-setting twin's (part 0), whose values it only completes.
LA_PART = 1


class Dead(Exception):
    """A record that cannot become a fragment; the message is the dead letter's reason and
    never quotes the record."""


class Skip(Exception):
    """A record of a category we do not handle: counted, not dead-lettered."""


@dataclass(slots=True)
class Received:
    """A record as its event holds it."""

    event: EventIn
    index: int
    record: Any
    enveloped: bool
    # A log-to-eventhub message that arrived cut: its bytes (`record` is what was salvaged).
    cut_message: bytes | None = None
    # The envelope kept part of the record as text (nested too deep).
    nested: bool = False


@dataclass(slots=True)
class Read:
    """What one record says, before the capture policy: the source step's output."""

    kind: str
    label: str
    correlation_id: str | None
    facts: Facts
    part: int
    prompt_text: str | None
    completion_text: str | None
    llm: llmlogs.LlmRecord | None = None
    # `correlation_id` is the model's response id (no APIM correlation id in the record).
    by_response: bool = False


@dataclass(slots=True)
class Parsed:
    """A record without credentials, and what it says."""

    record: dict[str, Any]
    read: Read
    # Its Authorization header, read before credentials went (caller claims, `facts`).
    authorization: str | None


@dataclass(slots=True)
class Protected:
    """What of a record may be stored, under its owner's capture."""

    capture: Capture
    prompt_preview: Preview | None
    completion_preview: Preview | None
    # The record as received (its identity, archive.record_id) and as the archive keeps it.
    original: bytes
    stored: bytes


# --- parse ---------------------------------------------------------------------------------------


def parse(received: Received, cfg: Config) -> Parsed:
    """Source step: which log shape the record is, and what it states."""
    record = received.record
    if not isinstance(record, dict):
        raise Dead(f"record {received.index} is JSON {type(record).__name__}, expected an object")
    authorization = attribution.authorization_of(record)
    with safejson.watch() as deep:
        # Credentials go first: nothing below (facts, archive, dead letters) ever sees them.
        # Inside the watch: `properties` sent as a JSON string is decoded (and bounded) here.
        record = scrub_credentials(record)
        read = read_source(record, flatten(record), cfg)
    if received.nested or deep.pruned:
        mark_clipped(read.facts, "nesting")
    if read.kind == "policy" and received.cut_message is not None:
        read.facts.body_truncated = True
    return Parsed(record, read, authorization)


def read_source(record: dict[str, Any], flat: dict[str, Any], cfg: Config) -> Read:
    """Which log shape the record is, and the facts it states."""
    table = loganalytics.table_of(flat)
    if table is not None:
        # A Log Analytics row (backfill): read as its diagnostic-setting twin, same kind, but
        # a fragment of its own beside it (part LA_PART): a day backfilled and also stored
        # live holds both forms of one record, which merge (the live one first, the row
        # filling what it lacks: the backfill's query leaves columns out) and are no rivals.
        flat = loganalytics.as_diagnostic(flat, table)
    category = category_of(flat)
    if category is None:
        return _read_policy(flat, cfg)
    source = HANDLED_CATEGORIES.get(category.lower())
    if source is None:
        raise Skip(category)
    part = LA_PART if table else 0
    if source == "gateway":
        facts, prompt_text, completion_text = gateway_facts(flat, cfg.proxies)
        return Read(
            "gateway",
            f"{loganalytics.GATEWAY_TABLE} row" if table else "GatewayLogs record",
            text(flat, "correlationid"),
            facts,
            part,
            prompt_text,
            completion_text,
        )
    llm = llmlogs.parse_llm_record(flat)
    prompt_text, completion_text = llmlogs.texts(llm)
    return Read(
        "llm" if llm.header else "llm-msg",
        f"{loganalytics.LLM_TABLE} row" if table else "GatewayLlmLogs record",
        llm.correlation_id,
        llm.facts,
        part if llm.header else llm.sequence,
        prompt_text,
        completion_text,
        llm,
    )


def _read_policy(flat: dict[str, Any], cfg: Config) -> Read:
    """A record without a category: one of the log-to-eventhub message shapes, or dead."""
    shape = policy.shape_of(flat)
    if shape is None:
        raise Dead("unknown record shape: no category and not a known log-to-eventhub message")
    msg = policy.parse_policy(flat, shape, cfg.trust_bearer, cfg.proxies)
    if msg is None:
        raise Dead(f"log-to-eventhub message (shape {shape}) without a correlation id")
    return Read(
        "policy",
        f"log-to-eventhub message (shape {shape})",
        msg.correlation_id,
        msg.facts,
        msg.part,
        msg.prompt_text,
        msg.completion_text,
        by_response=msg.by_response,
    )


# APIM cuts a log-to-eventhub message at 200 KB (formats.md §3): a longer body is not one it
# cut, and is not repaired (a replay unit of 64 MiB would be, for nothing).
CUT_MESSAGE_BYTES = 256 * 1024


# Where a cut string is text, kept for what it holds (a body's prompt and answer).
_TEXT_KINDS = frozenset({BODY, MESSAGES})


def salvage_message(body: bytes) -> dict[str, Any] | None:
    """A log-to-eventhub message over 200 KB arrives cut: what is complete of it, or None."""
    if len(body) > CUT_MESSAGE_BYTES:
        return None
    text_ = body.decode("utf-8", "replace").lstrip("\ufeff").lstrip()
    if not text_.startswith("{"):
        return None
    # Only a message that stops before its end: a whole one followed by more (two messages
    # in one event) is not cut, and salvaging the first would leave the second unread.
    doc, in_string = repair(text_, cut_only=True)
    if not isinstance(doc, dict) or policy.shape_of(flatten(doc)) is None:
        return None
    if in_string:
        _drop_cut_value(doc)
    return doc


def _drop_cut_value(doc: dict[str, Any]) -> None:
    """The string the cut fell inside stays where it is text (a body: previews), never where
    it is read as a fact: a client sizing its request so that the cut fell inside the
    message-storing sample's `"responseTokens":"1500"` was billed 1 or 15 tokens, and inside
    an on-error message's `error.reason` made `T` of `TokenLimitExceeded` its error code."""
    where = last_value(doc)
    if where is None or not isinstance(where[0][where[1]], str):
        return
    if key_kind(next(reversed(doc))) not in _TEXT_KINDS:
        del where[0][where[1]]


# --- facts ---------------------------------------------------------------------------------------


# An id nobody can see (blanks, control or invisible characters only) names no call: its row
# could not be told from another's in any listing, and APIM never writes one.
_NO_ID = re.compile(f"[\\s\\x00-\\x1f\\x7f-\\x9f{INVISIBLE}]*+")


def facts(parsed: Parsed, event: EventIn, cfg: Config) -> str:
    """Call step: the record's facts completed and checked in place (they are its own);
    returns the id of the call they belong to."""
    read = parsed.read
    _trust_caller(read, parsed.authorization, cfg)
    if read.correlation_id is None or _NO_ID.fullmatch(read.correlation_id):
        raise Dead(f"{read.label} without correlationId")
    _check_time(read, event)
    try:
        rows.row_key(read.correlation_id)
    except rows.KeyTooLong as exc:
        raise Dead(str(exc)) from None
    return read.correlation_id


def _trust_caller(read: Read, authorization: str | None, cfg: Config) -> None:
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


def _check_time(read: Read, event: EventIn) -> None:
    """A time outside the plausible window (timestamps.plausible) never names a partition
    or a blob: the event's enqueued time stands in, and `Clipped` says `CallTime`."""
    facts = read.facts
    if facts.call_time is None:
        raise Dead(f"{read.label} without a readable time")
    enqueued = event.enqueued if plausible(event.enqueued) else None
    if plausible(facts.call_time, enqueued):
        return
    if enqueued is None:
        raise Dead(f"{read.label} with an implausible time and no enqueued time to use instead")
    facts.call_time = enqueued
    mark_clipped(facts, "call_time")


def mark_clipped(facts: Facts, name: str) -> None:
    names = facts.clipped.split(",") if facts.clipped else []
    if name not in names:
        facts.clipped = ",".join([*names, name])


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
        mark_clipped(facts, name)


# --- protect -------------------------------------------------------------------------------------


_FREE = ("url", "error_message")


def protect(parsed: Parsed, received: Received, masker: Masker) -> Protected:
    """Protect step: what of the record may be stored (previews, facts' free text, the
    archive member), under the capture of whoever owns the call (LLM-log records cannot say:
    they get the strictest, policy.py)."""
    read = parsed.read
    facts = read.facts
    cap = masker.policy.for_call(
        facts.subscription_id, facts.product_id, named=read.kind in ("gateway", "policy")
    )
    # The masker's calls need somewhere to count what they mask; nothing reads it here: what a
    # record stores masked is counted from its placeholders (`fragment`).
    counts: Counter[str] = Counter()
    rank = (SOURCE_RANK[read.kind], read.part)
    # A prompt read from a body APIM cut yields to the LLM log's messages (APIM's reading of
    # the whole body): past the cut, a client can write the `messages` the model reads.
    cut = facts.body_truncated and read.kind in ("gateway", "policy")
    ranks = ((rank[0] + CUT_PREVIEW, rank[1]) if cut else rank, rank)
    previews = []
    for text_, rank_ in zip((read.prompt_text, read.completion_text), ranks, strict=True):
        if not text_:
            previews.append(None)  # what `preview` gives, without building it
            continue
        stored_preview = preview(masker, text_, cap)
        previews.append(Preview(stored_preview.value, rank_) if stored_preview.value else None)
    facts.caller_ip = masker.policy.caller_ip(facts.caller_ip)
    clip_facts(facts)
    if cap.archive != "full":
        # Free text of the request and the service, and a deployment the client named (its
        # body's `model`: anything, on a call that failed), masked as the archive masks them.
        names = ("url", "error_message", "deployment") if facts.deployment_claimed else _FREE
        for name in names:
            value = getattr(facts, name)
            if value:
                setattr(facts, name, masker.redact_string(value, counts))
    if received.cut_message is not None:
        original, stored = _cut_message(received.cut_message, cap, masker, counts)
    else:
        original, stored = _record(parsed.record, cap, masker)
    return Protected(cap, previews[0], previews[1], original, stored)


def _record(record: dict[str, Any], cap: Capture, masker: Masker) -> tuple[bytes, bytes]:
    """A record's bytes as received and as the archive keeps them."""
    original = archive.record_bytes(record)
    if cap.archive == "full" and cap.prompt == "full":
        return original, original
    return original, archive.record_bytes(archive_record(masker, record, cap).value)


def _cut_message(
    cut_message: bytes, cap: Capture, masker: Masker, counts: Counter[str]
) -> tuple[bytes, bytes]:
    """The same for a cut message: archived as the text that arrived, so that replay
    salvages it again."""
    text_value = cut_message.decode("utf-8", "replace")
    original = orjson.dumps(text_value)
    if cap.archive == "metadata":
        salvaged = salvage_message(cut_message) or {}
        return original, archive.record_bytes(archive_record(masker, salvaged, cap).value)
    if cap.archive == "redacted":
        return original, orjson.dumps(masker.redact_string(text_value, counts))
    return original, original


# --- fragment ------------------------------------------------------------------------------------


def fragment(
    parsed: Parsed, protected: Protected, received: Received, policy: CapturePolicy
) -> Fragment:
    """The record's fragment of its call, with its archive member (or its verified place in
    the archive, for a record replayed from it)."""
    read, event = parsed.read, received.event
    correlation_id = read.correlation_id
    assert correlation_id is not None  # checked by `facts`
    # A record replayed from our archive keeps the identity it was archived with, and its
    # place in the archive, but only when that place was checked (`verify_archived`) and
    # holds this very call: an event property alone proves nothing.
    archived = event.archived
    if archived is not None and not (
        archived.verified and archived.correlation_id == correlation_id
    ):
        archived = None
    rid = archived.rid if archived else archive.record_id(protected.original)
    previews = (protected.prompt_preview, protected.completion_preview)
    # Sealed archive: a data key of its own for each record (encryption.py).
    key = archived.key if archived else (encryption.new_key() if policy.sealed else None)
    return Fragment(
        kind=read.kind,
        correlation_id=correlation_id,
        rid=rid,
        facts=read.facts,
        prompt_preview=previews[0],
        completion_preview=previews[1],
        raw=None if archived else _member(read, rid, received, protected.stored, key),
        pointer=archived.pointer if archived else None,
        part=read.part,
        # What is masked in what is stored (previews and the archived record): counted from
        # the placeholders, so a replay of an already-redacted archive counts the same.
        redactions=policy.placeholders(
            protected.stored, *(p.text for p in previews if p is not None)
        ),
        data_key=key,
    )


def _member(
    read: Read, rid: str, received: Received, stored: bytes, key: bytes | None
) -> RawSource:
    """A record's archive member, packed (sealed under `key` when there is one)."""
    assert read.correlation_id is not None
    member = archive.member_bytes(
        read.kind,
        read.correlation_id,
        rid,
        received.event,
        received.index,
        received.enveloped,
        stored,
        key,
    )
    return archive.pack_member(member, key)


def rearchive_chunk(
    frag: Fragment,
    parsed: Parsed,
    received: Received,
    policy: CapturePolicy,
    masked: dict[str, str],
) -> None:
    """A record of a split LLM-log message archived again, each of its chunks (a request's,
    a response's) as `masked` says: redacted beside the chunks before and after it
    (ingest/plan.py), so that a value the 32 KB cut split in two is masked in both chunks
    (each masked alone kept both halves). The record's id, its key and its previews stay;
    only its member and what it counts as masked change."""
    if frag.raw is None:
        return  # read back from the archive: its member is there already
    record: dict[str, Any] | None = parsed.record
    for chunk, text_ in masked.items():
        record = _with_chunk(record, chunk, text_) if record is not None else None
    if record is None:
        return
    cap = policy.for_call(None, None, named=False)  # an LLM-log record: the strictest
    if cap.archive == "full":
        return
    stored = archive.record_bytes(archive_record(Masker(policy), record, cap).value)
    frag.raw = _member(parsed.read, frag.rid, received, stored, frag.data_key)
    previews = (frag.prompt_preview, frag.completion_preview)
    frag.redactions = policy.placeholders(stored, *(p.text for p in previews if p is not None))


def _with_chunk(record: dict[str, Any], chunk: str, masked: str) -> dict[str, Any] | None:
    """`record` (a copy) with its message `chunk`, at the top or in `properties`, replaced by
    `masked`; None when it holds it nowhere this can replace (a `properties` string)."""

    def swap(level: dict[str, Any]) -> dict[str, Any] | None:
        for k, v in level.items():
            if v == chunk:
                return {**level, k: masked}
        return None

    top = swap(record)
    if top is not None:
        return top
    for k, v in record.items():
        if key_kind(k) == PROPERTIES and isinstance(v, dict) and (inner := swap(v)) is not None:
            return {**record, k: inner}
    return None

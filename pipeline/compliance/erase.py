"""`erase` and legal holds: crypto-shredding on the WORM archive.

Erasing a subject (a user's object id, a subscription, or one call):
1. finds its calls: the audit rows naming it within the days given (and the rows of the same
   calls keyed by their response id, not joined yet);
2. refuses (Held) when an active legal hold covers any of them;
3. destroys the data key of every archived record of those calls: the members the rows point
   at and every other copy the key table lists for those calls (a redelivery, a replay);
4. blanks the rows' previews and sets `Erased` on them (the call's numbers stay: tokens,
   cost, status, caller ids; the audit of usage is not personal content);
5. writes the erasure log: one create-only blob per erasure under `_erasures/` in the archive
   container (WORM), with the subject as a keyed hash, never in clear.
The raw blobs are not touched; their erased members can no longer be read by anyone.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

from pipeline.call.join import archived_pointers, resolve
from pipeline.model import RawPointer
from pipeline.protect.encryption import SealError
from pipeline.sources.inputs import MAX_UNIT_BYTES
from pipeline.store import blobs, rows
from pipeline.store.account import Store
from pipeline.store.holds import Hold, LegalHolds
from pipeline.store.kek import KekError
from pipeline.store.keys import Member

KINDS = {"user": "CallerUserId", "subscription": "SubscriptionId", "call": None}
# The largest dead letter we write: a replay unit (a line of a file, a Capture event) of at
# most MAX_UNIT_BYTES, sealed (a header and a tag more). A larger one is not ours: counted,
# and reported, never passed over in silence.
MAX_DEAD_LETTER_BYTES = MAX_UNIT_BYTES + 64 * 1024
LOG_PREFIX = "_erasures/"
CASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
ATTEMPTS = 8
_HELD_NAMED = 10  # held calls a refusal names
_MIN_RESPONSE_ID = 16  # `chatcmpl-` and 29 characters, `resp_` and 50


class Held(Exception):
    """Legal holds cover some of the calls: `calls` names them (the first few), for a row a
    sender forged under a held subscription is a call the operator can tell from the rest."""

    def __init__(self, cases: list[str], calls: list[str] | None = None, held: int = 0) -> None:
        super().__init__(", ".join(cases))
        self.cases = cases
        self.calls = calls or []
        self.held = held


@dataclass(frozen=True, slots=True)
class Subject:
    kind: str  # user | subscription | call
    value: str


@dataclass(slots=True)
class Erasure:
    subject: Subject
    start: date | None
    end: date | None
    rows: list[Any] = field(default_factory=list)
    pointers: list[RawPointer] = field(default_factory=list)
    copies: list[Member] = field(default_factory=list)
    destroyed: int = 0
    already: int = 0  # rows erased before
    # Records archived unsealed (before ARCHIVE_ENCRYPTION was on): no key to destroy.
    unsealed: int = 0
    dead_letters: int = 0
    # Dead letters that held other calls' records too: written again without the subject's.
    dead_letters_rewritten: int = 0
    # Dead letters too large to be ours, not read: the operator decides (listed by the CLI).
    dead_letters_unchecked: list[str] = field(default_factory=list)
    days: set[str] = field(default_factory=set)
    log: str | None = None

    @property
    def calls(self) -> int:
        return len({e["RowKey"] for e in self.rows})

    @property
    def blobs(self) -> int:
        return len({p.blob for p in self.pointers} | {m.blob for m in self.copies})


def _day(entity: Any) -> str:
    return str(entity["PartitionKey"])[:10]


def _range_filter(start: date | None, end: date | None) -> tuple[str, dict[str, str]]:
    parts, params = [], {}
    if start is not None:
        parts.append("PartitionKey ge @lo")
        params["lo"] = start.isoformat()
    if end is not None:
        parts.append("PartitionKey lt @hi")
        params["hi"] = (end + timedelta(days=1)).isoformat()
    return " and ".join(parts), params


def find_rows(store: Store, subject: Subject, start: date | None, end: date | None) -> list[Any]:
    """The audit rows of the subject's calls within the days (all days when not given)."""
    where, params = _range_filter(start, end)
    if subject.kind == "call":
        found = [e for e in store.find_rows(subject.value) if _in(e, start, end)]
    else:
        column = KINDS[subject.kind]
        query = f"{column} eq @subject" + (f" and {where}" if where else "")
        found = store.call(
            lambda: list(
                store.audit.query_entities(query, parameters={**params, "subject": subject.value})
            )
        )
    return found + _twins(store, found)


def _in(entity: Any, start: date | None, end: date | None) -> bool:
    day = _day(entity)
    return (start is None or day >= start.isoformat()) and (end is None or day <= end.isoformat())


def _twins(store: Store, found: list[Any]) -> list[Any]:
    """Rows keyed by the response id of one of `found`, or naming its BackendRequestId
    (records without a correlation id, not joined yet: store/audit.py `join_twins`). Their
    keys are read first, a row whole only when it is a twin (memory follows the twins, not
    every such row of the days)."""
    wanted: dict[str, dict[str, Any]] = {}
    backends: dict[str, dict[str, Any]] = {}
    for entity in found:
        if entity.get("KeyedBy") is not None:
            continue
        days = _days_around(_day(entity))
        bid = entity.get("BackendRequestId")
        if isinstance(bid, str) and bid:
            for day in days:
                backends.setdefault(day, {})[bid] = entity
        rid = entity.get("ResponseId")
        if rid:
            try:
                key = rows.row_key(str(rid))
            except rows.KeyTooLong:
                continue  # a forged id no row can be keyed by (it stopped erase and hold)
            for day in days:
                wanted.setdefault(day, {})[key] = entity
    twins: dict[str, list[str]] = {}  # partition → the twins' RowKeys
    names = ["PartitionKey", "RowKey", "CallerUserId", "SubscriptionId", "BackendRequestId"]
    for day in sorted(wanted.keys() | backends.keys()):
        owners, by_backend = wanted.get(day, {}), backends.get(day, {})
        query = f"{rows.day_range(day)} and KeyedBy eq '{rows.KEYED_BY_RESPONSE}'"
        keyed = store.call(lambda q=query: list(store.audit.query_entities(q, select=names)))
        for entity in keyed:
            bid = entity.get("BackendRequestId")
            owner = owners.get(entity["RowKey"]) or (
                by_backend.get(bid) if isinstance(bid, str) else None
            )
            # A ResponseId is what a body says: a twin that names another caller or
            # subscription is not this call's.
            if owner is not None and all(
                entity.get(c) in (None, owner.get(c)) for c in ("CallerUserId", "SubscriptionId")
            ):
                twins.setdefault(entity["PartitionKey"], []).append(entity["RowKey"])
    return [e for pk, keys in twins.items() for e in store.fetch(pk, keys).values()]


def _days_around(day: str) -> list[str]:
    d = date.fromisoformat(day)
    return [(d + timedelta(days=i)).isoformat() for i in (-1, 0, 1)]


def holding(
    holds: Iterable[Hold],
    store: Store,
    entities: list[Any],
    hashes: dict[tuple[str, str], str] | None = None,
) -> list[str]:
    """Cases of active holds that cover any of these rows' calls. `hashes`: subject hashes
    already made (each costs a table read), shared between calls."""
    holds = list(holds)
    if not holds:
        return []
    cases: set[str] = set()
    hashes = {} if hashes is None else hashes
    for entity in entities:
        for kind in ("user", "subscription"):
            value = entity.get(KINDS[kind])
            if not value:
                continue
            h = hashes.get((kind, value))
            if h is None:
                h = hashes[(kind, value)] = store.keys.subject_hash(kind, str(value))
            cases.update(hold.case for hold in holds if hold.covers(kind, h, _day(entity)))
    return sorted(cases)


def row_pointers(entity: Any) -> list[RawPointer]:
    """Every archived record the row knows: its sources' and the others (rivals that lost,
    message chunks past those kept)."""
    return archived_pointers(rows.state_from_entity(entity))


def plan(store: Store, subject: Subject, start: date | None, end: date | None) -> Erasure:
    """What erasing the subject destroys (nothing is changed)."""
    erasure = Erasure(subject, start, end, rows=find_rows(store, subject, start, end))
    active = list(holds_of(store).active())
    hashes: dict[tuple[str, str], str] = {}
    by_row = [(e, holding(active, store, [e], hashes)) for e in erasure.rows]
    held = [e for e, cases in by_row if cases]
    if held:
        cases = sorted({case for _, row_cases in by_row for case in row_cases})
        calls = [rows.correlation_id_of(e["RowKey"]) for e in held[:_HELD_NAMED]]
        raise Held(cases, calls, len(held))
    erasure.already = sum(1 for e in erasure.rows if e.get("Erased") is not None)
    _collect(store, erasure)
    return erasure


def _collect(store: Store, erasure: Erasure) -> None:
    """The archived records of the rows' calls: those the rows point at, and every other copy
    the key table lists under the same correlation ids (only those: a ResponseId is what a
    body says, and never picks another call's records)."""
    days: set[str] = set()
    calls: set[str] = set()
    erasure.pointers = []
    for entity in erasure.rows:
        calls.add(rows.correlation_id_of(entity["RowKey"]))
        days.update(_days_around(_day(entity)))
        for p in row_pointers(entity):
            erasure.pointers.append(p)
            days.add(p.blob[:10].replace("/", "-"))
    pointed = {(p.blob, p.offset) for p in erasure.pointers}
    erasure.copies = [m for m in store.keys.scan(days, calls) if (m.blob, m.offset) not in pointed]
    listed = store.keys.listed(erasure.pointers)
    erasure.unsealed = sum(1 for p in erasure.pointers if (p.blob, p.offset) not in listed)
    erasure.days = days


def holds_of(store: Store) -> LegalHolds:
    return LegalHolds(store.legal_holds, store.archive, store.retry)


def erase(
    store: Store,
    subject: Subject,
    start: date | None,
    end: date | None,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> Erasure:
    when = (now or datetime.now(UTC)).replace(microsecond=0)
    erasure = plan(store, subject, start, end)
    if dry_run:
        found = _dead_letters(store, erasure)
        erasure.dead_letters = sum(1 for f in found if f.rest is None)
        erasure.dead_letters_rewritten = len(found) - erasure.dead_letters
        return erasure
    # Rows first: a record of these calls written from now on meets an erased row, and its
    # new copy loses its key in its own batch (store/merge.py `erased_copies`). Then the
    # records the rows point at now, and every copy, found again after the rows changed.
    erasure.rows = [_erase_row(store, entity, when) for entity in erasure.rows]
    _collect(store, erasure)
    erasure.destroyed = store.keys.shred([*erasure.pointers, *erasure.copies], when)
    for found in _dead_letters(store, erasure):
        if found.rest is None:
            with contextlib.suppress(ResourceNotFoundError):
                store.call(store.deadletters.delete_blob, found.name)
            erasure.dead_letters += 1
        else:
            meta = _kept_places({**found.metadata, "erasedrecords": str(found.erased)}, found.kept)
            try:
                store.rewrite_dead_letter(found.name, found.rest, meta, found.etag)
            except ResourceModifiedError:
                # Written meanwhile (a replay marked it done): left for the next erase, said.
                erasure.dead_letters_unchecked.append(found.name)
                continue
            erasure.dead_letters_rewritten += 1
    erasure.log = _log(store, erasure, when)
    return erasure


# A key naming a call, and its value: in a record (`"correlationId":"…"`, any case; a policy
# message's `apimRequestId` or `message-id`, sources/policy.py), or in a record kept as JSON
# text (`\"correlationId\":\"…`); `id` is a response's. Values holding a quote or a
# backslash are no APIM id and are not matched.
_CALL_KEY = re.compile(
    rb'\\?"(correlationid|apimrequestid|message-id|id)\\?"\s*:\s*\\?"([^"\\]{1,1024})\\?"',
    re.IGNORECASE,
)


def _names_a_call(data: bytes, calls: set[bytes], responses: set[bytes]) -> bool:
    return any(m[2] in (calls if len(m[1]) > 2 else responses) for m in _CALL_KEY.finditer(data))


@dataclass(frozen=True, slots=True)
class _Found:
    """A dead letter naming the subject or its calls: deleted, or, when it held other calls'
    records too (an event of several calls, a parked batch's event), written again as `rest`
    (those records only)."""

    name: str
    metadata: dict[str, str]
    etag: str | None
    rest: bytes | None = None
    erased: int = 0
    # Where in the dead letter's records those of `rest` were (their places in the event, a
    # dead letter of several records says: `recordindexes`).
    kept: tuple[int, ...] = ()


# Where a record names its subscription or its caller (gateway, policy messages, Log
# Analytics rows; sources/): the subject is matched as such a value, never as bytes anywhere
# (`sales` in `wholesales-emea`, or in a prompt about salesforce, is no subject).
_SUBJECT_KEYS = {
    "subscription": rb"apimsubscriptionid|subscriptionid|subscription-id|subscription_id",
    "user": rb"calleruserid|caller-user-id|caller_user_id|userid|user-id|user_id|oid",
}


def _subject_value(subject: Subject) -> re.Pattern[bytes] | None:
    keys = _SUBJECT_KEYS.get(subject.kind)
    if keys is None:
        return None
    value = re.escape(orjson.dumps(subject.value)[1:-1])  # as JSON writes it
    return re.compile(rb'\\?"(?i:' + keys + rb')\\?"\s*:\s*\\?"' + value + rb'\\?"')


def _dead_letters(store: Store, erasure: Erasure) -> list[_Found]:
    """Dead letters that name one of the erased calls (or the subject): the dead-letter
    container is not WORM, so they are deleted, or written again without the subject's
    records when they hold others' too. Read (and opened) one by one: dead letters are few;
    every one when the erasure names no days, else those of its days, of the calls' days,
    and the undated ones. A call is named by its id as the value of a `correlationId` (an
    `id` for a call keyed by its response id), the subject as the value of a field that
    names it, never as any bytes: a forged row of the subject whose id is `{` deleted every
    dead letter."""
    calls: set[bytes] = set()
    responses: set[bytes] = set()
    for e in erasure.rows:
        key = rows.correlation_id_of(e["RowKey"]).encode()
        (responses if e.get("KeyedBy") == rows.KEYED_BY_RESPONSE else calls).add(key)
        rid = e.get("ResponseId")
        if isinstance(rid, str) and len(rid) >= _MIN_RESPONSE_ID:
            # A twin's records joined into the row name only the response's id (which the
            # body says: a short one, `"id":"1"`, would name any message).
            responses.add(rid.encode())
        bid = e.get("BackendRequestId")
        if isinstance(bid, str) and len(bid) >= _MIN_RESPONSE_ID:
            # An AI-Gateway message names its call by the backend's id (`apimRequestId`).
            calls.add(bid.encode())
    subject = _subject_value(erasure.subject)
    if not (calls or responses or subject):
        return []

    def names(data: bytes) -> bool:
        return bool(subject and subject.search(data)) or _names_a_call(data, calls, responses)

    found = []
    erasure.dead_letters_unchecked = []
    for blob in _dead_letter_blobs(store, erasure):
        if (blob.size or 0) > MAX_DEAD_LETTER_BYTES:
            erasure.dead_letters_unchecked.append(blob.name)
            continue
        data = blobs.read_all(store.retry, store.deadletters, blob.name)
        try:
            data = store.open_dead_letter(data, sealed=bool((blob.metadata or {}).get("sealed")))
        except (SealError, KekError):
            continue  # not ours to open: no key of ours could read it either
        if names(data):
            meta = dict(blob.metadata or {})
            rest, erased, kept = _without(data, names)
            found.append(_Found(blob.name, meta, blob.etag, rest, erased, kept))
    return found


def _dead_letter_blobs(store: Store, erasure: Erasure) -> Iterable[Any]:
    if erasure.start is None and erasure.end is None:
        prefixes: list[str | None] = [None]  # all days: every dead letter
    else:
        days = set(erasure.days)
        if erasure.start is not None and erasure.end is not None:
            span = (erasure.end - erasure.start).days
            days.update((erasure.start + timedelta(days=i)).isoformat() for i in range(span + 1))
        prefixes = [*sorted({d.replace("-", "/") + "/" for d in days}), "undated/"]
    for prefix in prefixes:
        yield from store.call(
            lambda p=prefix: list(
                store.deadletters.list_blobs(name_starts_with=p, include=["metadata"])
            )
        )


def _without(data: bytes, names: Any) -> tuple[bytes | None, int, tuple[int, ...]]:
    """The dead letter without the records that name the subject or its calls, how many
    those were, and where the others were in it; (None, 0, ()) when nothing of it is
    another's (or it cannot be told apart: text that is no JSON of records goes whole)."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None, 0, ()
    envelope = isinstance(doc, dict) and isinstance(doc.get("records"), list)
    records = doc["records"] if envelope else doc if isinstance(doc, list) else None
    if not records:
        return None, 0, ()
    kept = [i for i, r in enumerate(records) if not names(orjson.dumps(r))]
    if not kept or len(kept) == len(records):
        return None, 0, ()
    rest = [records[i] for i in kept]
    body = {**doc, "records": rest} if envelope else rest
    return orjson.dumps(body), len(records) - len(kept), tuple(kept)


def _kept_places(meta: dict[str, str], kept: tuple[int, ...]) -> dict[str, str]:
    """The metadata of a dead letter of several records of an event written again with the
    records at `kept` only: their places in the event (one left: a record's dead letter)."""
    places = meta.get("recordindexes", "").split(",")
    if len(places) < 2 or max(kept, default=len(places)) >= len(places):
        return meta
    left = [places[i] for i in kept]
    out = {k: v for k, v in meta.items() if k != "recordindexes"}
    if len(left) == 1:
        out["recordindex"] = left[0]
    else:
        out["recordindexes"] = ",".join(left)
    return out


def _erase_row(store: Store, entity: Any, when: datetime) -> Any:
    """The row without previews, `Erased` set (kept from an earlier erasure), written only if
    nobody wrote it meanwhile (read again and redone otherwise)."""
    for _ in range(ATTEMPTS):
        state = rows.state_from_entity(entity)
        state.erased = state.erased or when
        state.prompt_preview = state.completion_preview = None
        new = rows.to_entity(resolve(state), state, store.cfg.shards)
        new["PartitionKey"] = entity["PartitionKey"]
        if store.audit_rows.replace_if_unchanged(new, entity):
            return new
        entity = store.call(store.audit.get_entity, entity["PartitionKey"], entity["RowKey"])
    raise RuntimeError(f"row {entity['RowKey']} kept changing under us")


def _log(store: Store, erasure: Erasure, when: datetime) -> str:
    """One create-only blob in the WORM archive container per erasure: what and when."""
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    name = f"{LOG_PREFIX}{when:%Y/%m/%d}/{stamp}-{uuid.uuid4().hex[:12]}.json"
    doc = {
        "erasedAt": when.isoformat().replace("+00:00", "Z"),
        "subject": {
            "kind": erasure.subject.kind,
            "hmacSha256": store.keys.subject_hash(erasure.subject.kind, erasure.subject.value),
        },
        "from": erasure.start.isoformat() if erasure.start else None,
        "to": erasure.end.isoformat() if erasure.end else None,
        "calls": erasure.calls,
        "recordKeysDestroyed": erasure.destroyed,
        "copiesFound": len(erasure.copies),
        "archiveBlobs": erasure.blobs,
        "deadLettersDeleted": erasure.dead_letters,
        "deadLettersRewritten": erasure.dead_letters_rewritten,
        "deadLettersUnchecked": len(erasure.dead_letters_unchecked),
    }
    blobs.create(
        store.retry,
        store.archive,
        name,
        orjson.dumps(doc, option=orjson.OPT_INDENT_2),
        content_type="application/json",
    )
    return name


def hold(
    store: Store, case: str, subject: Subject, start: date, end: date, now: datetime | None = None
) -> tuple[Hold, int, str | None]:
    """Record a legal hold and put a legal hold on the archive blobs of the subject's calls:
    (the hold, blobs held, why the blob holds failed or None)."""
    found = find_rows(store, subject, start, end)
    names = sorted({p.blob for e in found for p in row_pointers(e)})
    h = Hold(
        case=case,
        kind=subject.kind,
        subject=store.keys.subject_hash(subject.kind, subject.value),
        start=start,
        end=end,
        created=(now or datetime.now(UTC)).replace(microsecond=0),
        blobs=tuple(names),
    )
    holds = holds_of(store)
    holds.create(h)
    done, why = holds.set_blob_holds(names, True)
    return h, done, why


def release(
    store: Store, case: str, now: datetime | None = None
) -> tuple[Hold | None, int, str | None]:
    holds = holds_of(store)
    h = holds.get(case)
    if h is None or h.released is not None:
        return h, 0, None
    holds.release(h, (now or datetime.now(UTC)).replace(microsecond=0))
    still = {b for other in holds.active() for b in other.blobs}
    done, why = holds.set_blob_holds([b for b in h.blobs if b not in still], False)
    return h, done, why

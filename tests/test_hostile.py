"""Hostile input: what a client (or any sender on the hub) writes cannot lose, stall or hide
a call. Every test here runs the real path (against Azurite where storage is involved), and each
one fails when the defence it names is removed: `python -m bench.mutations hostile` applies
those mutations and checks it."""

from __future__ import annotations

import hashlib
import re
import tracemalloc
import zlib
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from azure.data.tables import TableEntity

from pipeline.call import stream
from pipeline.call.bodies import parse_body, repair_budget
from pipeline.common import safejson
from pipeline.common.timestamps import path_hour
from pipeline.ingest import batch as ingest
from pipeline.ingest import records
from pipeline.ingest.archived import verify_archived
from pipeline.ingest.batch import process_batch, run_trigger_batch, transform
from pipeline.ingest.plan import plan_batch
from pipeline.model import Archived, EventIn, RawPointer
from pipeline.protect import archive, deadletters
from pipeline.protect.archive import open_member
from pipeline.settings import Config
from pipeline.sources.envelope import MAX_RECORDS
from pipeline.sources.eventhub import ARCHIVED_PROPERTY, from_trigger
from pipeline.store.account import Store
from tests.fixtures import apim, sources
from tests.timing import best_of

ENQUEUED = datetime(2025, 3, 4, 10, 15, 7, tzinfo=UTC)


def ev(body: bytes, seq: int = 1, enqueued: datetime | None = ENQUEUED) -> EventIn:
    return EventIn(body=body, partition="0", sequence=seq, enqueued=enqueued, origin="test")


def rows(store: Store) -> dict[str, TableEntity]:
    return {e["RowKey"]: e for e in store.audit.list_entities()}


def dead_letters(store: Store) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    for b in store.deadletters.list_blobs(include=["metadata"]):
        out.append((store.deadletters.download_blob(b.name).readall(), dict(b.metadata)))
    return out


def ordinary(n: int) -> list[dict[str, Any]]:
    return [apim.gateway(apim.new_id(f"ordinary-{i}")) for i in range(n)]


def nested(depth: int) -> str:
    """A stand-in for an array nested `depth` deep: `dumps` writes it out (orjson itself
    refuses to write more than 254 levels)."""
    return f"__DEEP_{depth}__"


_DEEP = re.compile(rb'"__DEEP_(\d+)__"')
# Numbers orjson does not write but JSON text can hold (and orjson reads as floats).
_RAW = re.compile(rb'"__RAW_([-+.eE0-9]+)__"')
RAW_NUMBERS = ["123456789012345678901234567890", "-99999999999999999999", "1E-400", "-0", "1e308"]


def dumps(doc: Any) -> bytes:
    out = _DEEP.sub(lambda m: b"[" * int(m[1]) + b'"x"' + b"]" * int(m[1]), orjson.dumps(doc))
    return _RAW.sub(lambda m: m[1], out)


def envelope(*records: dict[str, Any]) -> bytes:
    return dumps({"records": list(records)})


# --- isolation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [300, 600, 1000])
def test_a_deep_request_body_does_not_fail_the_batch(store: Store, cfg: Config, depth: int) -> None:
    """The attack of the issue: a 628-byte body nested 300 deep failed the whole batch on
    every delivery. Now the call is a row like any other, beside the ordinary calls."""
    deep_id = apim.new_id(f"deep-{depth}")
    body = dumps({"messages": [{"role": "user", "content": "hi"}], "x": nested(depth)})
    deep = apim.gateway(deep_id, request=body.decode())
    result = process_batch([ev(apim.envelope(*ordinary(3), deep))], cfg, store)
    assert result.parser_errors == 0 and result.dead_letters == 0
    got = rows(store)
    assert set(got) == {deep_id, *(apim.new_id(f"ordinary-{i}") for i in range(3))}
    assert got[deep_id]["Deployment"] == "chat-prod"
    assert "Nesting" in got[deep_id]["Clipped"].split(",")
    assert got[deep_id]["PromptPreview"] == "hi"


def test_a_record_nested_deeper_than_the_limit_is_a_row_marked_nesting(
    store: Store, cfg: Config
) -> None:
    """A record whose own structure is deep (a public policy shape embeds the body as JSON):
    the deep part is kept as JSON text, the call is a row, and the archive member reads."""
    cid = apim.new_id("deep-record")
    rec = apim.gateway(cid)
    rec["properties"]["traceRecords"] = nested(300)
    process_batch([ev(envelope(rec, *ordinary(1)))], cfg, store)
    row = rows(store)[cid]
    assert "Nesting" in row["Clipped"].split(",")
    data = store.read_range(store.archive, row["RawBlob"], row["RawOffset"], row["RawLength"])
    member = open_member(data, row["RawSha256"])
    kept = member["record"]["properties"]["traceRecords"]
    assert safejson.depth_ok(kept, safejson.MAX_DEPTH + 2)  # walkable now
    # What was cut off is still there, as text.
    assert orjson.dumps(kept).count(b"[") + orjson.dumps(kept).count(b"\\u005b") >= 64


def test_an_event_deeper_than_the_decoder_allows_is_a_dead_letter_and_the_rest_stored(
    store: Store, cfg: Config
) -> None:
    bomb = b'{"records":[' + b"[" * 2000 + b"]" * 2000 + b"]}"
    good = apim.envelope(*ordinary(2))
    result = process_batch([ev(bomb, 1), ev(good, 2)], cfg, store)
    assert len(rows(store)) == 2
    ((body, meta),) = dead_letters(store)
    assert body == bomb and "not valid JSON" in meta["reason"]
    assert result.parser_errors == 0


def test_a_parser_failure_whose_dead_letter_also_fails_keeps_the_event_bytes(
    store: Store, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The boundary's last line: when reading a record raises and building its dead letter
    raises too, the event's bytes as received are dead-lettered, with a reason that names
    where it failed and quotes nothing of the record; the other calls are stored."""
    secret = "confidential-marker-7f3a"
    bad_id = apim.new_id("bad")
    bad = apim.gateway(bad_id, operationId=secret)
    real_read = records.read_source

    def failing_read(record: dict[str, Any], flat: dict[str, Any], cfg: Config) -> Any:
        if flat.get("correlationid") == bad_id:
            raise ValueError(f"invalid literal: {secret}")
        return real_read(record, flat, cfg)

    def failing_dead_record(record: Any, enveloped: bool) -> bytes:
        raise TypeError("Recursion limit reached")

    monkeypatch.setattr(records, "read_source", failing_read)
    monkeypatch.setattr(deadletters, "record_body", failing_dead_record)
    cfg = replace(cfg, archive_capture="full")  # to compare bytes (else the IPs are masked)
    event = apim.envelope(*ordinary(3), bad)
    result = process_batch([ev(event)], cfg, store)
    assert result.parser_errors == 1
    assert len(rows(store)) == 3
    ((body, meta),) = dead_letters(store)
    assert body == event  # nothing to redact in it: the exact bytes
    assert meta["recordindex"] == "3"
    assert meta["reason"].startswith("parser error: ValueError (at ")
    assert secret not in meta["reason"]


def test_a_row_that_cannot_be_built_dead_letters_its_records_not_the_batch(
    store: Store, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.store import rows as rows_module

    bad_id = apim.new_id("no-row")
    real = rows_module.to_entity

    def failing(resolved: Any, state: Any, shards: int) -> dict[str, Any]:
        if resolved.correlation_id == bad_id:
            raise OverflowError("date value out of range")
        return real(resolved, state, shards)

    monkeypatch.setattr(rows_module, "to_entity", failing)
    cfg = replace(cfg, archive_capture="full")
    event = apim.envelope(*ordinary(2), apim.gateway(bad_id))
    result = process_batch([ev(event)], cfg, store)
    assert len(rows(store)) == 2 and bad_id not in rows(store)
    ((body, meta),) = dead_letters(store)
    assert body == event and meta["recordindex"] == "2"
    assert result.parser_errors == 1


def test_unicode_digits_in_a_status_do_not_turn_a_call_into_a_dead_letter(
    store: Store, cfg: Config
) -> None:
    cid = apim.new_id("unicode-digit")
    process_batch([ev(apim.envelope(apim.gateway(cid, responseCode="²")))], cfg, store)
    row = rows(store)[cid]
    assert "Status" not in row  # not a number we can read: unknown, not a guess
    assert row["Deployment"] == "chat-prod"
    assert dead_letters(store) == []


def test_numbers_past_int64_are_unknown_not_a_dead_letter(store: Store, cfg: Config) -> None:
    cid = apim.new_id("huge-numbers")
    huge = "__RAW_123456789012345678901234567890__"  # orjson reads it as a float
    rec = apim.gateway(cid, responseCode=huge, requestSize="__RAW_1e30__", durationMs=2**63)
    process_batch([ev(envelope(rec))], cfg, store)
    row = rows(store)[cid]
    assert "Status" not in row and "DurationMs" not in row
    assert dead_letters(store) == []


def test_parking_does_not_parse_the_events(
    store: Store, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch that fails on its last delivery is parked whole; parking reads no structure,
    so even an event nested past every limit is parked as received."""
    deep = b'{"records":[' + b"[" * 900 + b"]" * 900 + b"]}"
    events = [ev(apim.envelope(*ordinary(1)), 1), ev(deep, 2)]

    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("storage is down")

    cfg = replace(cfg, archive_capture="full")  # to compare bytes (else the IPs are masked)
    monkeypatch.setattr(store, "write_rows", down)
    monkeypatch.setattr(deadletters, "dead_letter", down)  # parsing-based dead letters: unusable
    result = run_trigger_batch(events, cfg, store, attempt=5, max_retries=5)
    assert result.dead_letters == 2
    parked = [body for body, meta in dead_letters(store) if "last delivery" in meta["reason"]]
    assert sorted(parked) == sorted(e.body for e in events)


def test_an_event_of_many_bad_records_is_one_dead_letter(store: Store, cfg: Config) -> None:
    """Past 16 bad records, or past 5,000 records, an event is one dead letter (its bytes),
    not one per record: a crafted event costs one blob, not thousands."""
    cfg = replace(cfg, archive_capture="full")  # to compare bytes
    bad = envelope(*ordinary(2), *({"category": "GatewayLogs", "n": i} for i in range(40)))
    many = envelope(*[{"category": "GatewayLogs"}] * (MAX_RECORDS + 1))
    result = process_batch([ev(bad, 1), ev(many, 2)], cfg, store)
    assert len(rows(store)) == 2
    letters = dead_letters(store)
    assert len(letters) == result.dead_letters == 2
    got = {meta["sequencenumber"]: (body, meta["reason"]) for body, meta in letters}
    assert got["1"][0] == bad and got["1"][1].startswith("40 records of this event")
    assert got["2"][0] == many and "more than the 5000" in got["2"][1]


# --- linear time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cut",
    [
        "[" * 60_000,
        '{"a":' * 12_000,
        '{"messages":[' + '{"content":"' + "\\u00e9" * 10_000,
        "{" + "x" * 60_000,
        "[" * 1000 + "0," * 30_000,
    ],
    ids=["brackets", "objects", "escapes", "not-json", "deep-then-dense"],
)
def test_repairing_a_cut_body_is_linear(cut: str) -> None:
    """Repair used to cost O(length x depth): 20,000 `[` took 30 s. Same size, benign body
    (a long cut chat request) as the yardstick; a generous factor absorbs noise."""
    benign = orjson.dumps(apim.chat_request(*[("user", "word " * 40)] * 400)).decode()[: len(cut)]
    worst = best_of(lambda: parse_body(cut))
    base = best_of(lambda: parse_body(benign))
    assert worst <= 20 * base + 0.005, (worst, base)


def test_a_token_dense_cut_body_is_read_to_the_budget_and_cut_there() -> None:
    """Text of one-character tokens costs a Python step a byte: it is read to the budget."""
    cut = "[" + "1," * 100_000
    body = parse_body(cut)
    assert body.kind == "json" and body.truncated
    assert 0 < len(body.doc) <= repair_budget(len(cut)) // 2


def test_a_crafted_stream_cannot_grow_tool_call_slots() -> None:
    """Indexes that are not whole numbers are ignored; at most MAX_TOOL_CALLS slots."""
    indexes: list[Any] = ["²", "1e3", 1.5, -1, True, [0], {"i": 0}, *range(1000)]
    chunks = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": i, "function": {"name": "f", "arguments": "{}"}}]}}]}
        for i in indexes
    ]  # fmt: skip
    s = stream.parse_sse("".join(f"data: {orjson.dumps(c).decode()}\n\n" for c in chunks))
    assert sorted(s.tool_calls) == list(range(stream.MAX_TOOL_CALLS))


def test_a_policy_message_that_is_not_json_but_starts_with_a_brace_is_linear(
    cfg: Config,
) -> None:
    """The issue's 150 KB non-JSON event starting with `{` took 206 s; now it costs about as
    much as a benign message of the same size."""
    hostile = ("{" + '"a":[' * 30_000)[:150_000].encode()
    benign = sources.policy_message(
        "c1", request=apim.chat_request(*[("user", "word " * 50)] * 500)
    )[:150_000]
    worst = best_of(lambda: transform([ev(hostile)], cfg), 2)
    base = best_of(lambda: transform([ev(benign)], cfg), 2)
    assert worst <= 20 * base + 0.05, (worst, base)


# --- trust ------------------------------------------------------------------------------------


def test_an_implausible_time_never_names_a_partition_or_a_blob(store: Store, cfg: Config) -> None:
    old = apim.new_id("year-1")
    future = apim.new_id("year-9999")
    records = [
        apim.gateway(old, time="0001-01-01T00:00:00Z"),
        apim.gateway(future, time="9999-12-31T23:59:59.9999999Z"),
    ]
    process_batch([ev(apim.envelope(*records))], cfg, store)
    got = rows(store)
    for cid in (old, future):
        assert got[cid]["PartitionKey"].startswith("2025-03-04_")
        assert got[cid]["CallTime"] == ENQUEUED
        assert "CallTime" in got[cid]["Clipped"].split(",")
        assert got[cid]["RawBlob"].startswith("2025/03/04/10/")
    (blob,) = [b.name for b in store.archive.list_blobs()]
    assert blob.startswith("2025/03/04/10/")


def test_an_implausible_time_without_an_enqueued_time_is_a_dead_letter(
    store: Store, cfg: Config
) -> None:
    cid = apim.new_id("year-1-file")
    body = apim.envelope(apim.gateway(cid, time="0001-01-01T00:00:00Z"), *ordinary(1))
    process_batch([ev(body, enqueued=None)], cfg, store)
    assert cid not in rows(store) and len(rows(store)) == 1
    ((_, meta),) = dead_letters(store)
    assert "implausible time" in meta["reason"]


def test_the_batch_blob_is_named_by_the_batch_not_by_a_record(store: Store, cfg: Config) -> None:
    """A record can say it happened in 2016 (plausible: history re-published); the blob is
    still named by the batch's enqueued time, with a four-digit year."""
    process_batch(
        [ev(apim.envelope(apim.gateway(apim.new_id("2016"), time="2016-02-03T04:05:06Z")))],
        cfg,
        store,
    )
    (blob,) = [b.name for b in store.archive.list_blobs()]
    assert blob.startswith("2025/03/04/10/")
    assert path_hour(datetime(999, 1, 2, 3, tzinfo=UTC)) == "0999/01/02/03"  # not strftime's %Y


def archived_event(body: bytes, pointer: RawPointer, rid: str) -> EventIn:
    """What the trigger makes of an event carrying the archived-event property."""
    prop = orjson.dumps(
        {"blob": pointer.blob, "offset": pointer.offset, "length": pointer.length,
         "sha256": pointer.sha256, "rid": rid}
    ).decode()  # fmt: skip

    class HostEvent:
        def __init__(self) -> None:
            self.enqueued_time = ENQUEUED
            self.offset = 1
            self.sequence_number = 9
            self.partition_key = None
            self.metadata = {
                "PartitionContext": {"PartitionId": "0"},
                "PropertiesArray": [{ARCHIVED_PROPERTY: prop}],
            }

        def get_body(self) -> bytes:
            return body

    (event,) = from_trigger([HostEvent()])
    return event


def test_a_forged_archived_property_is_not_honoured(store: Store, cfg: Config) -> None:
    """Any sender on the hub can set the property: pointing at a blob that is not there, at
    another call's member, or with a wrong hash, the record is archived normally."""
    other = apim.new_id("other-call")
    process_batch([ev(apim.envelope(apim.gateway(other)))], cfg, store)
    real = rows(store)[other]
    real_ptr = RawPointer(real["RawBlob"], real["RawOffset"], real["RawLength"], real["RawSha256"])
    forged = {
        "missing": RawPointer("2025/03/04/10/" + "0" * 40 + ".jsonl.gz", 0, 100, "0" * 64),
        "other-call": real_ptr,
        "wrong-hash": replace(real_ptr, sha256="f" * 64),
        "not-a-name": RawPointer("../elsewhere", 0, 100, real_ptr.sha256),
    }
    for label, pointer in forged.items():
        cid = apim.new_id(f"forged-{label}")
        event = archived_event(apim.envelope(apim.gateway(cid)), pointer, "r" * 32)
        process_batch([event], cfg, store)
        row = rows(store)[cid]
        assert (row["RawBlob"], row["RawOffset"]) != (real_ptr.blob, real_ptr.offset), label
        data = store.read_range(store.archive, row["RawBlob"], row["RawOffset"], row["RawLength"])
        assert open_member(data, row["RawSha256"])["correlationId"] == cid, label


@pytest.mark.parametrize("claim", ["odd-name", "wrong-hash"])
def test_a_pointer_at_this_calls_own_member_is_checked_too(
    store: Store, cfg: Config, claim: str
) -> None:
    """This call's own member under a name build_blob never writes, or with a hash that is
    not its member's: the record is archived anew, and the row's RawSha256 proves its member."""
    cid = apim.new_id(f"own-member-{claim}")
    body = apim.envelope(apim.gateway(cid))
    done = transform([ev(body)], cfg)
    assert done.blob is not None
    (pointer,) = done.blob.pointers
    if claim == "odd-name":
        pointer = replace(pointer, blob="elsewhere/" + done.blob.name.replace("/", "-"))
    else:
        pointer = replace(pointer, sha256="f" * 64)
    store.archive.upload_blob(pointer.blob, done.blob.data)
    rid = open_member(done.blob.data[pointer.offset : pointer.offset + pointer.length])["rid"]
    process_batch([archived_event(body, pointer, rid)], cfg, store)
    row = rows(store)[cid]
    assert archive.BLOB_NAME.match(row["RawBlob"])
    data = store.read_range(store.archive, row["RawBlob"], row["RawOffset"], row["RawLength"])
    assert open_member(data, row["RawSha256"])["correlationId"] == cid


def test_a_pointer_at_a_zip_bomb_is_refused_in_bounded_memory(store: Store, cfg: Config) -> None:
    """64 KB that inflate to 64 MiB, its hash claimed: inflating stops at 16 MiB."""
    z, chunk, digest = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(1 << 20), hashlib.sha256()
    parts = []
    for _ in range(64):
        parts.append(z.compress(chunk))
        digest.update(chunk)
    bomb = b"".join([*parts, z.flush()])
    pointer = RawPointer(
        "2025/03/04/10/" + "b" * 40 + ".jsonl.gz", 0, len(bomb), digest.hexdigest()
    )
    store.archive.upload_blob(pointer.blob, bomb)
    event = archived_event(apim.envelope(apim.gateway(apim.new_id("bomb"))), pointer, "r" * 32)
    tracemalloc.start()
    try:
        (checked,) = verify_archived([event], store)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert checked.archived is None
    assert peak < 64 * 1024 * 1024, peak


def test_a_genuine_archived_property_is_honoured(store: Store, cfg: Config) -> None:
    """`replay --from-archive --to-eventhub`: the pointer checks out, so no second copy."""
    cid = apim.new_id("replayed")
    body = apim.envelope(apim.gateway(cid))
    process_batch([ev(body)], cfg, store)
    row = rows(store)[cid]
    pointer = RawPointer(row["RawBlob"], row["RawOffset"], row["RawLength"], row["RawSha256"])
    data = store.read_range(store.archive, pointer.blob, pointer.offset, pointer.length)
    rid = open_member(data)["rid"]
    before = {b.name for b in store.archive.list_blobs()}
    result = process_batch([archived_event(body, pointer, rid)], cfg, store)
    assert {b.name for b in store.archive.list_blobs()} == before
    assert result.new_archive_blobs == 0
    assert rows(store)[cid]["RawBlob"] == pointer.blob


def test_an_unverified_archived_pointer_is_ignored_by_the_pure_path(cfg: Config) -> None:
    cid = apim.new_id("unverified")
    claim = Archived(RawPointer("2025/03/04/10/" + "a" * 40 + ".jsonl.gz", 0, 10, "b" * 64), "r")
    done = transform([replace(ev(apim.envelope(apim.gateway(cid))), archived=claim)], cfg)
    assert done.blob is not None
    (row,) = [entity for _, entity in done.rows]
    assert row["RawBlob"] == done.blob.name


@pytest.mark.parametrize(("status", "trust"), [(429, True), (200, False)])
def test_policy_claims_follow_the_gateway_rule(
    store: Store, cfg: Config, status: int, trust: bool
) -> None:
    cid = apim.new_id(f"claims-{status}-{trust}")
    cfg = replace(cfg, trust_bearer=trust)
    process_batch([ev(sources.policy_message(cid, status=status))], cfg, store)
    row = rows(store)[cid]
    for prop in ("CallerAppId", "CallerUserId", "CallerTenantId"):
        assert prop not in row


def test_policy_claims_of_a_successful_call_are_kept(store: Store, cfg: Config) -> None:
    cid = apim.new_id("claims-ok")
    process_batch([ev(sources.policy_message(cid))], cfg, store)
    assert rows(store)[cid]["CallerAppId"] == "8f0e2b1c-1111-4a2b-9c3d-5e6f7a8b9c0d"


# --- dead letters follow the owner's capture ----------------------------------------------------


def test_dead_letters_follow_the_owners_capture_override(store: Store, cfg: Config) -> None:
    """ARCHIVE_CAPTURE=full, but team-hr is metadata-only: its dead-lettered record is
    redacted; another team's is kept as received."""
    cfg = replace(
        cfg,
        archive_capture="full",
        capture_overrides='{"subscriptions": {"team-hr": {"archive": "metadata"}}}',
    )
    email = "jane.doe@contoso.com"
    request = apim.chat_request(("user", f"Write to {email} about my salary"))
    hr = apim.gateway(None, request=request, apimSubscriptionId="team-hr")
    other = apim.gateway(None, request=request, apimSubscriptionId="team-finance")
    for rec in (hr, other):
        del rec["correlationId"]  # dead-lettered: "without correlationId"
    process_batch([ev(apim.envelope(hr), 1), ev(apim.envelope(other), 2)], cfg, store)
    letters = {meta["sequencenumber"]: body for body, meta in dead_letters(store)}
    assert email.encode() not in letters["1"] and b"[EMAIL]" in letters["1"]
    assert email.encode() in letters["2"]


def test_an_owner_less_dead_letter_follows_the_strictest_capture(store: Store, cfg: Config) -> None:
    cfg = replace(
        cfg,
        archive_capture="full",
        capture_overrides='{"products": {"hr": {"archive": "metadata"}}}',
    )
    body = b'not json, from jane.doe@contoso.com {"messages": ['
    no_owner = {"category": "GatewayLogs", "properties": {"requestBody": "jane.doe@contoso.com"}}
    process_batch([ev(body, 1), ev(apim.envelope(no_owner), 2)], cfg, store)
    ingest.park_batch([ev(body, 3)], cfg, store, "batch failed on its last delivery")
    letters = dead_letters(store)
    assert {meta["sequencenumber"] for _, meta in letters} == {"1", "2", "3"}
    for stored, _meta in letters:
        assert b"jane.doe@contoso.com" not in stored and b"[EMAIL]" in stored


# --- a fuzzer of hostile values ------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

HOSTILE_SCALARS = st.one_of(
    st.sampled_from(
        ["²", "٣٤", "1e400", "-1", "NaN", "", " ", "\u0000", "\ud7ff", "9" * 30, "0x1F", "１２"]
    ),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([f"__RAW_{n}__" for n in RAW_NUMBERS]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.text(max_size=40),
)
HOSTILE = st.one_of(
    HOSTILE_SCALARS,
    st.builds(nested, st.integers(min_value=60, max_value=1100)),
    st.lists(HOSTILE_SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=8), HOSTILE_SCALARS, max_size=3),
)
# Where a value lands: record and properties fields, and fields inside the logged bodies.
RECORD_PATHS = [
    ("correlationId",), ("time",), ("category",), ("properties",),
    ("properties", "responseCode"), ("properties", "backendResponseCode"),
    ("properties", "url"), ("properties", "backendUrl"), ("properties", "requestSize"),
    ("properties", "responseSize"), ("properties", "requestHeaders"),
    ("properties", "backendResponseHeaders"), ("properties", "lastError"),
    ("properties", "apimSubscriptionId"), ("properties", "operationId"), ("durationMs",),
    ("callerIpAddress",),
]  # fmt: skip
REQUEST_PATHS = ["messages", "model", "stream", "max_tokens", "input", "prompt", "tools"]
RESPONSE_PATHS = ["model", "usage", "choices", "id", "error", "object", "output"]


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        nxt = doc.get(key)
        if not isinstance(nxt, dict):
            return
        doc = nxt
    doc[path[-1]] = value


# Both fuzzers: fixed seed (CI runs the same examples every time), no per-example deadline.
FUZZ = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(
    record_edits=st.lists(st.tuples(st.sampled_from(RECORD_PATHS), HOSTILE), max_size=3),
    request_edits=st.lists(st.tuples(st.sampled_from(REQUEST_PATHS), HOSTILE), max_size=3),
    response_edits=st.lists(st.tuples(st.sampled_from(RESPONSE_PATHS), HOSTILE), max_size=3),
    stream=st.booleans(),
    cut=st.one_of(st.none(), st.integers(min_value=1, max_value=600)),
)
def test_fuzz_hostile_values_never_make_a_parser_error(
    record_edits: list[tuple[tuple[str, ...], Any]],
    request_edits: list[tuple[str, Any]],
    response_edits: list[tuple[str, Any]],
    stream: bool,
    cut: int | None,
) -> None:
    """Hostile values anywhere a client or a sender can put them: every record becomes a
    fragment, a counted skip, or a dead letter with a reason of ours; a parser error (an
    exception the boundary had to contain) is a failure of this test, not a dead letter."""
    request = apim.chat_request(("user", "Summarise our travel policy."), stream=stream)
    for key, value in request_edits:
        request[key] = value
    response: Any = apim.chat_response("Book economy class.")
    for key, value in response_edits:
        response[key] = value
    response_text = (
        apim.text("chat_stream_usage.sse")
        if stream
        else orjson.dumps(response, option=orjson.OPT_SORT_KEYS).decode()
    )
    if cut is not None:
        response_text = response_text[:cut]
    if not stream and any(isinstance(v, str) and v.startswith("__DEEP") for _, v in response_edits):
        response_text = dumps(response).decode()[: cut or None]
    rec = apim.gateway(apim.new_id("fuzz"), request=dumps(request).decode(), response=response_text)
    for path, value in record_edits:
        _set(rec, path, value)
    cfg = Config()
    plan = plan_batch([ev(envelope(rec, *ordinary(1)))], cfg)
    assert plan.parser_errors == 0, [d.reason for d in plan.dead]
    # Records, or the whole event when it is nested past what any decoder takes.
    assert plan.accepted + len(plan.dead) + sum(plan.skipped.values()) == max(plan.records, 1)
    done = ingest._entities(plan, cfg)
    assert plan.parser_errors == 0, [d.reason for d in plan.dead]
    assert len(done) == len(plan.states)


LLM_PATHS = [
    ("properties", "promptTokens"), ("properties", "completionTokens"),
    ("properties", "totalTokens"), ("properties", "sequenceNumber"),
    ("properties", "requestMessages"), ("properties", "responseMessages"),
    ("properties", "deploymentName"), ("properties", "modelName"),
    ("properties", "isStreamCompletion"), ("time",), ("correlationId",),
]  # fmt: skip
POLICY_FIELDS = [
    "status", "backendStatus", "durationMs", "requestSize", "responseSize", "url",
    "backendUrl", "error", "streamed", "time", "section", "subscriptionId", "callerAppId",
    "forwardedFor", "callerIp", "correlationId",
]  # fmt: skip
SSE_FIELDS = ["choices", "usage", "model", "id", "type", "delta", "output_index", "response"]


@FUZZ
@given(
    source=st.sampled_from(["policy", "llm", "sse", "responses-sse"]),
    edits=st.lists(st.tuples(st.integers(min_value=0, max_value=99), HOSTILE), max_size=4),
    body_edits=st.lists(st.tuples(st.sampled_from(REQUEST_PATHS), HOSTILE), max_size=3),
)
def test_fuzz_other_sources_never_make_a_parser_error(
    source: str, edits: list[tuple[int, Any]], body_edits: list[tuple[str, Any]]
) -> None:
    """The same promise for policy messages, LLM-log records and streamed bodies."""
    request = apim.chat_request(("user", "Summarise our travel policy."))
    for key, value in body_edits:
        request[key] = value
    cid = apim.new_id(f"fuzz-{source}")
    if source == "policy":
        msg = orjson.loads(sources.policy_message(cid, request={"messages": []}))
        msg["requestBody"] = dumps(request).decode()
        for i, value in edits:
            msg[POLICY_FIELDS[i % len(POLICY_FIELDS)]] = value
        body = dumps(msg)
    elif source == "llm":
        header = sources.llm_header(cid)
        message = sources.llm_messages(cid, dumps(request["messages"]).decode(), seq=2)
        for i, value in edits:
            _set(header if i % 2 else message, LLM_PATHS[i % len(LLM_PATHS)], value)
        body = envelope(header, message)
    else:
        chunks = []
        for i in range(4):
            if source == "sse":
                chunk: dict[str, Any] = {
                    "choices": [{"index": 0, "delta": {"content": f"part {i} "}}],
                    "model": "gpt-4o-2024-08-06",
                    "id": "chatcmpl-1",
                }
            else:
                chunk = {"type": "response.output_text.delta", "delta": f"part {i} ",
                         "output_index": 0}  # fmt: skip
            for j, value in edits:
                if j % 4 == i:
                    chunk[SSE_FIELDS[j % len(SSE_FIELDS)]] = value
            chunks.append("data: " + dumps(chunk).decode())
        stream = "\n\n".join(chunks) + "\n\ndata: [DONE]\n\n"
        request["stream"] = True
        body = envelope(apim.gateway(cid, request=dumps(request).decode(), response=stream))
    plan = plan_batch([ev(body)], Config())
    assert plan.parser_errors == 0, [d.reason for d in plan.dead]
    ingest._entities(plan, Config())
    assert plan.parser_errors == 0, [d.reason for d in plan.dead]

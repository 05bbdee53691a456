"""Hostile input: what a client (or any sender on the hub) writes cannot lose, stall or hide
a call. Every test here runs the real path (against Azurite where storage is involved), and each
one fails when the defence it names is removed: `python -m bench.mutations hostile` applies
those mutations and checks it."""

from __future__ import annotations

import copy
import gc
import gzip
import hashlib
import re
import threading
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
import pytest
from azure.data.tables import EntityProperty, TableEntity

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
from pipeline.protect.archive import member_event, open_member
from pipeline.settings import Config
from pipeline.sources import llmlogs
from pipeline.sources.envelope import open_envelope
from pipeline.sources.eventhub import ARCHIVED_PROPERTY, from_trigger
from pipeline.store.account import Store
from pipeline.store.rows import state_from_entity
from tests.fixtures import apim, shapes, sources
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


def row_of(done: Any, cid: str) -> dict[str, Any]:
    """The entity `transform` built for call `cid`."""
    (entity,) = [e for _, e in done.rows if e["RowKey"] == cid]
    return entity


@pytest.mark.parametrize("depth", [100, 300])
@pytest.mark.parametrize("given_as", ["object", "string"])
def test_deep_properties_are_marked_nesting_whether_an_object_or_a_string(
    cfg: Config, given_as: str, depth: int
) -> None:
    """Azure resource logs may send `properties` as a JSON string. Decoded (to remove
    credentials) outside the depth watch, a deep string was bounded unseen: the row did not
    say `Nesting`. Both shapes now give the same row, marked."""
    cid = apim.new_id(f"deep-properties-{given_as}-{depth}")
    rec = apim.gateway(cid)
    rec["properties"]["traceRecords"] = nested(depth)
    if given_as == "string":
        rec["properties"] = dumps(rec["properties"]).decode()
    done = transform([ev(envelope(rec, *ordinary(1)))], cfg)
    assert done.plan.parser_errors == 0 and not done.plan.dead
    row = row_of(done, cid)
    assert "Nesting" in row["Clipped"].split(",")
    assert row["Deployment"] == "chat-prod" and row["TokensSource"] == "reported"
    assert "Nesting" not in (row_of(done, apim.new_id("ordinary-0")).get("Clipped") or "")


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


def _collections_during(decode: Any, data: Any) -> int:
    seen: list[str] = []

    def note(phase: str, info: dict[str, int]) -> None:
        seen.append(phase)

    gc.callbacks.append(note)
    try:
        decode(data)
    finally:
        gc.callbacks.remove(note)
    return seen.count("start")


@pytest.mark.parametrize("decode", [safejson.loads, open_envelope], ids=["body", "event"])
def test_a_document_of_containers_is_decoded_without_the_collector_running(decode: Any) -> None:
    # 1 MB of nested lists cost 200 ms with the collector traversing them every 700
    # allocations, 45 ms without (bench/adversarial.py, envelope): it waits for the decode.
    dense = b'{"records":[{"properties":{"a":[' + b"[[],[[]]]," * 20_000 + b"[]]}}]}"
    assert gc.isenabled()
    # (one may run as the decode returns: it traverses what survived, once)
    assert _collections_during(decode, dense) <= 1
    assert gc.isenabled()
    with pytest.raises(ValueError):
        decode(dense[:-3])  # a decode that fails turns it back on too
    assert gc.isenabled()
    gc.disable()
    try:  # and one that was off stays off
        decode(dense)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_batch_is_transformed_without_the_collector_running(cfg: Config) -> None:
    # A batch's objects all live until its rows are written, and make no cycles: the
    # collector traversing them every 700 allocations found nothing and cost about 6 % of a
    # transform (pipeline/common/heap.py).
    body = apim.envelope(*[apim.gateway(apim.new_id(f"gc-{i}")) for i in range(300)])
    batch = [ev(body, 1)]
    assert _collections_during(lambda events: transform(events, cfg), batch) <= 1
    assert gc.isenabled()


def test_event_metadata_is_not_copied_whole_into_each_records_member(cfg: Config) -> None:
    # A Capture file's partition key and offset are any strings: copied into the member of
    # each record, 200 KB on an event of 2,000 records made a 300 MB archive blob.
    body = apim.envelope(*[apim.gateway(apim.new_id(f"meta-{i}")) for i in range(300)])
    plain = transform([ev(body, 1)], cfg).blob
    crafted = replace(ev(body, 1), partition_key="k" * 200_000, offset="9" * 200_000)
    blob = transform([crafted], cfg).blob
    assert plain is not None and blob is not None
    assert len(blob.data) < 1.2 * len(plain.data)
    p = blob.pointers[0]
    member = open_member(blob.data[p.offset : p.offset + p.length], p.sha256)
    assert member["event"]["partitionKey"] == "k" * 256 and member["event"]["offset"] == "9" * 32


def test_skipped_categories_any_sender_names_grow_nothing(cfg: Config) -> None:
    # Counted by name for the batch log and replay's summary: 300 names of 10 KB each were
    # 300 keys of 10 KB, per batch, and a replay's totals kept every one of every batch.
    others = [{"category": f"{i}-" + "x" * 10_000, "properties": {}} for i in range(300)]
    done = transform([ev(apim.envelope(*others), 1)], cfg)
    skipped = done.plan.skipped
    assert sum(skipped.values()) == 300 and len(skipped) <= 101
    assert all(len(name) <= 80 for name in skipped)
    total = ingest.BatchResult()
    for _ in range(3):
        total.add(ingest.BatchResult(skipped=Counter({f"{i}": 1 for i in range(200)})))
    assert len(total.skipped) <= 101 and sum(total.skipped.values()) == 600


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
    # Two records of the call in one event: one dead letter of the event (its bytes hold both).
    event = apim.envelope(*ordinary(2), apim.gateway(bad_id), sources.llm_header(bad_id))
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
    """An event is one dead letter however many bad records it holds: one holding its bad
    records (16 made 16 blobs an event), past 16 of them or past MAX_RECORDS_PER_EVENT records
    (2,500: APIM writes about 1,700 to an event) its bytes, whole: a crafted event costs one
    blob, not thousands; its good records are rows all the same. Raised, the setting reads
    it again."""
    cfg = replace(cfg, archive_capture="full")  # to compare bytes
    bad = envelope(*ordinary(2), *({"category": "GatewayLogs", "n": i} for i in range(40)))
    many = envelope(*[{"category": "GatewayLogs"}] * (cfg.max_records + 1))
    good = apim.gateway(apim.new_id("beside-two-bad"))
    two = envelope({"category": "GatewayLogs", "n": 1}, good, {"category": "GatewayLogs"})
    one = envelope({"category": "GatewayLogs", "n": 2})
    result = process_batch([ev(bad, 1), ev(many, 2), ev(two, 3), ev(one, 4)], cfg, store)
    assert len(rows(store)) == 3 and good["correlationId"] in rows(store)
    letters = dead_letters(store)
    assert len(letters) == result.dead_letters == 4
    got = {meta["sequencenumber"]: (body, meta["reason"]) for body, meta in letters}
    assert got["1"][0] == bad and got["1"][1].startswith("40 records of this event")
    # Two: their own dead letter, without the good record (a row), each with its place.
    assert orjson.loads(got["3"][0]) == {
        "records": [orjson.loads(two)["records"][i] for i in (0, 2)]
    }
    assert got["3"][1].startswith("2 records of this event")
    (meta3,) = [m for _, m in letters if m["sequencenumber"] == "3"]
    assert meta3["recordindexes"] == "0,2" and "recordindex" not in meta3
    assert orjson.loads(got["4"][0]) == orjson.loads(one)  # one bad record: its own letter
    assert got["2"][0] == many and "more than the 2500" in got["2"][1]
    assert "MAX_RECORDS_PER_EVENT" in got["2"][1]
    raised = replace(cfg, max_records=cfg.max_records + 1)
    (again,) = transform([ev(many, 2)], raised).plan.dead
    assert again.reason.startswith(f"{cfg.max_records + 1} records of this event")


def test_each_event_counts_its_own_bad_records(cfg: Config) -> None:
    """A cut policy message read after an event with a bad record: the count of bad records
    was the earlier event's, and the message's dead letter was never built (lost)."""
    cut = sources.policy_message("", request=apim.chat_request(("user", "hello")))[:-20]
    bad = envelope({"category": "GatewayLogs", "n": 1}, apim.gateway(apim.new_id("counted")))
    plan = transform([ev(bad, 1), ev(cut, 2)], cfg).plan
    assert sorted(d.event.sequence for d in plan.dead) == [1, 2]


def test_an_event_holding_no_record_is_counted(cfg: Config) -> None:
    """`[]` and `{"records": []}` hold nothing to store or dead-letter: they were the one
    event shape that left no trace at all (found by an audit)."""
    done = transform([ev(b"[]", 1), ev(b'{"records": []}', 2), ev(b" [ ] ", 3)], cfg)
    assert not done.rows and not done.plan.dead
    assert done.plan.skipped == {"(events holding no record)": 3}


def test_an_event_whose_records_span_many_days_is_one_dead_letter(
    store: Store, cfg: Config
) -> None:
    """Each day is a partition, each partition a transaction: a sender's event of records on
    40 days cost 40 requests (2,500 days: 2,500 requests, 18 s). Past MAX_DAYS_PER_EVENT
    days it is one dead letter, whole; an event across a midnight is read as ever."""
    cfg = replace(cfg, archive_capture="full")  # to compare bytes
    spread = envelope(
        *(
            apim.gateway(
                apim.new_id(f"spread-{d}"),
                time=f"2024-{1 + d // 28:02d}-{1 + d % 28:02d}T12:00:00Z",
            )
            for d in range(40)
        )
    )
    midnight = envelope(
        apim.gateway(apim.new_id("late"), time="2025-03-04T23:59:58.9000000Z"),
        apim.gateway(apim.new_id("early"), time="2025-03-05T00:00:01.1000000Z"),
    )
    sent: Counter[str] = Counter()
    counted = Store(cfg, raw_request_hook=lambda r: sent.update([r.http_request.method]))
    result = process_batch([ev(spread, 1), ev(midnight, 2)], cfg, counted)
    assert sorted(rows(store)) == sorted([apim.new_id("late"), apim.new_id("early")])
    ((body, meta),) = dead_letters(store)
    assert body == spread and result.dead_letters == 1
    assert "name 40 days, more than the 2" in meta["reason"]
    assert "MAX_DAYS_PER_EVENT" in meta["reason"]
    # The two calls' partitions (two days, shards), an archive blob, a dead letter, the look-up
    # across midnight: not a transaction per day the sender names.
    assert sum(sent.values()) <= 12, sent
    raised = replace(cfg, max_days=40)
    assert len(transform([ev(spread, 1)], raised).plan.states) == 40


def in_flight(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The most storage requests of `store` in flight at once, as they run (a list of one)."""
    flying, peak = [0], [0]
    call = store.retry.call
    lock = threading.Lock()

    def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            flying[0] += 1
            peak[0] = max(peak[0], flying[0])
        try:
            return call(fn, *args, **kwargs)
        finally:
            with lock:
                flying[0] -= 1

    monkeypatch.setattr(store.retry, "call", counted)
    return peak


def test_a_batch_of_junk_events_is_written_side_by_side_and_logged_in_bounded_lines(
    store: Store, cfg: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Any sender can make every event of a batch a dead letter (one blob each): one after
    the other they would cost a round trip each, and a log line each."""
    peak = in_flight(store, monkeypatch)
    junk = [ev(b"not an event %d" % i, i) for i in range(60)]
    with caplog.at_level("WARNING", logger="pipeline.store.blobs"):
        result = process_batch([ev(apim.envelope(*ordinary(1)), 99), *junk], cfg, store)
    assert result.dead_letters == 60 and len(rows(store)) == 1
    assert sorted(body for body, _ in dead_letters(store)) == sorted(e.body for e in junk)
    assert peak[0] > 1
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 21
    assert lines[-1].startswith("40 more dead letters in this batch, most for: ")
    assert "(40)" in lines[-1]


# --- linear time ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cut",
    [
        "[" * 60_000,
        '{"a":' * 12_000,
        '{"messages":[' + '{"content":"' + "\\u00e9" * 10_000,
        "{" + "x" * 60_000,
        "[" * 1000 + "0," * 30_000,
        '{"a{":' * 12_000,
        '{"a":' * 6_000 + '{"' + "{" * 30_000 + '":',
    ],
    ids=[
        "brackets",
        "objects",
        "escapes",
        "not-json",
        "deep-then-dense",
        "brace-keys",
        "brace-key",
    ],
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


@pytest.mark.parametrize("key", ['"a{"', '"{"', '"{{{"', ' "x{y" '])
def test_a_body_cut_after_a_key_holding_a_brace_keeps_every_field_before_it(
    cfg: Config, key: str
) -> None:
    """The cut lands after `{"key":` runs (nested objects, one token) whose last key holds a
    `{`: the repair cut there, inside the key, and salvaged nothing (the body was text)."""
    cid = apim.new_id(f"cut-brace-key-{key}")
    answer = orjson.dumps(apim.chat_response("Book economy class.", usage=False)).decode()
    cut = answer[:-1] + ',"extra":{"more":{' + key + ":"
    done = transform([ev(envelope(apim.gateway(cid, response=cut)))], cfg)
    assert done.plan.parser_errors == 0 and not done.plan.dead
    row = row_of(done, cid)
    assert row["Model"] == "gpt-4o-2024-08-06" and row["BodyTruncated"] is True
    assert row["CompletionPreview"] == "Book economy class."
    assert row["FinishReason"] == "stop" and row["TokensSource"] == "estimated"
    doc = parse_body(cut).doc
    assert doc["extra"] == {"more": {}} and doc["choices"][0]["message"]["role"] == "assistant"


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
    # Times whose UTC falls outside the years datetime holds raised OverflowError, not
    # ValueError: contained, but as a parser error. They are times no one can read.
    edges = [
        apim.gateway(apim.new_id("edge-before"), time="0001-01-01T00:00:00+01:00"),
        apim.gateway(apim.new_id("edge-after"), time="9999-12-31T23:59:59-01:00"),
    ]
    records = [
        apim.gateway(old, time="0001-01-01T00:00:00Z"),
        apim.gateway(future, time="9999-12-31T23:59:59.9999999Z"),
        *edges,
    ]
    done = process_batch([ev(apim.envelope(*records))], cfg, store)
    assert done.parser_errors == 0 and done.dead_letters == 1  # the two edges: their event
    ((_, meta),) = dead_letters(store)
    assert meta["reason"].startswith("2 records") and "without a readable time" in meta["reason"]
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


def archived_event(
    body: bytes, pointer: RawPointer | None, rid: str, raw: str | None = None
) -> EventIn:
    """What the trigger makes of an event carrying the archived-event property (`raw`: the
    property's text as a sender wrote it)."""
    prop = raw or orjson.dumps(
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


_DEEP_LIST = "[" * 1_010 + "]" * 1_010
_DEEP_OBJECT = '{"a":' * 1_010 + "1" + "}" * 1_010


@pytest.mark.parametrize(
    "claim",
    [
        '{"blob":' + _DEEP_LIST + ',"offset":0,"length":1,"sha256":"a","rid":"r"}',
        '{"blob":"b","offset":0,"length":1,"sha256":"a","rid":' + _DEEP_OBJECT + "}",
        '{"blob":"b","offset":true,"length":1,"sha256":"a","rid":"r"}',
        '{"blob":"b","offset":1e400,"length":1,"sha256":"a","rid":"r"}',
        '{"blob":"b","offset":-1,"length":99999999999999999999,"sha256":"a","rid":"r"}',
        '{"blob":null,"offset":0,"length":1,"sha256":"a","rid":"r"}',
        '["blob","offset"]',
        '"' + "x" * 100_000 + '"',
    ],
    ids=["deep-list", "deep-object", "bool", "1e400", "past-int64", "null", "array", "huge"],
)
def test_an_archived_property_of_any_shape_neither_fails_the_batch_nor_is_honoured(
    store: Store, cfg: Config, claim: str
) -> None:
    # str() of a list nested 1,010 deep raised RecursionError in the trigger's adapter,
    # before any batch handling: every delivery failed, and the batch was lost unparked.
    cids = [apim.new_id(f"claim-{i}") for i in range(3)]
    events = [archived_event(apim.envelope(apim.gateway(c)), None, "", raw=claim) for c in cids]
    assert [e.archived for e in events] == [None, None, None]
    process_batch(events, cfg, store)
    assert set(cids) <= set(rows(store))


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


def test_forged_claims_on_every_event_are_checked_side_by_side(
    store: Store, cfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim costs a ranged read, and any sender can put one on every event: a batch's
    claims are read side by side, not a round trip each one after the other."""
    missing = RawPointer("2025/03/04/10/" + "0" * 40 + ".jsonl.gz", 0, 100, "0" * 64)
    ids = [apim.new_id(f"claimed-{i}") for i in range(40)]
    events = [archived_event(apim.envelope(apim.gateway(cid)), missing, "r" * 32) for cid in ids]
    peak = in_flight(store, monkeypatch)
    checked = verify_archived(events, store)
    assert peak[0] > 1
    assert [e.archived for e in checked] == [None] * 40  # none honoured, in order
    process_batch(events, cfg, store)
    assert sorted(rows(store)) == sorted(ids)


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
    member = open_member(done.blob.data[pointer.offset : pointer.offset + pointer.length])
    # What a replay from the archive sends for that member (the record as archived, so the
    # body check passes): only the name or the hash can turn the claim away.
    replayed = member_event(member, pointer).body
    result = process_batch([archived_event(replayed, pointer, member["rid"])], cfg, store)
    row = rows(store)[cid]
    assert result.new_archive_blobs == 1  # archived anew
    assert archive.BLOB_NAME.match(row["RawBlob"])
    data = store.read_range(store.archive, row["RawBlob"], row["RawOffset"], row["RawLength"])
    assert open_member(data, row["RawSha256"])["correlationId"] == cid


def test_a_checked_pointer_at_this_calls_own_member_is_honoured(store: Store, cfg: Config) -> None:
    """The control of the test above: the right name and hash, and the claim stands."""
    cid = apim.new_id("own-member-control")
    done = transform([ev(apim.envelope(apim.gateway(cid)))], cfg)
    assert done.blob is not None
    (pointer,) = done.blob.pointers
    store.archive.upload_blob(pointer.blob, done.blob.data)
    member = open_member(done.blob.data[pointer.offset : pointer.offset + pointer.length])
    replayed = member_event(member, pointer).body
    result = process_batch([archived_event(replayed, pointer, member["rid"])], cfg, store)
    assert result.new_archive_blobs == 0
    assert rows(store)[cid]["RawBlob"] == pointer.blob


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
    member = open_member(data)
    rid = member["rid"]
    # What `replay --to-eventhub` sends: the record as the archive holds it.
    sent = member_event(member, pointer).body
    before = {b.name for b in store.archive.list_blobs()}
    result = process_batch([archived_event(sent, pointer, rid)], cfg, store)
    assert {b.name for b in store.archive.list_blobs()} == before
    assert result.new_archive_blobs == 0
    assert rows(store)[cid]["RawBlob"] == pointer.blob
    # The same genuine pointer on another body (the call's correlation id, other facts) is not
    # honoured: the body is archived as itself, and the row does not take its facts blindly.
    forged = apim.envelope(apim.gateway(cid, status=500))
    result = process_batch([archived_event(forged, pointer, rid)], cfg, store)
    assert result.new_archive_blobs == 1


def test_an_unverified_archived_pointer_is_ignored_by_the_pure_path(cfg: Config) -> None:
    cid = apim.new_id("unverified")
    claim = Archived(RawPointer("2025/03/04/10/" + "a" * 40 + ".jsonl.gz", 0, 10, "b" * 64), "r")
    done = transform([replace(ev(apim.envelope(apim.gateway(cid))), archived=claim)], cfg)
    assert done.blob is not None
    (row,) = [entity for _, entity in done.rows]
    assert row["RawBlob"] == done.blob.name


def test_a_verified_pointer_at_another_calls_member_is_ignored(cfg: Config) -> None:
    """A pointer checked in storage, but at a member of another call: the record is archived
    anew (the second check, where the fragment is built, after ingest/archived.py's)."""
    cid = apim.new_id("verified-elsewhere")
    pointer = RawPointer("2025/03/04/10/" + "a" * 40 + ".jsonl.gz", 0, 10, "b" * 64)
    claim = Archived(pointer, "r" * 32, verified=True, correlation_id="someone-else")
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


def test_a_clients_forwarded_for_names_no_caller_unless_a_trusted_proxy_wrote_it(
    store: Store, cfg: Config
) -> None:
    """X-Forwarded-For is a request header: any client writes one. CallerIp is the address
    APIM saw; only behind a proxy of TRUSTED_PROXIES is the header read, from the right, as
    far as that proxy's own entry (the client's first entries are never believed). The same
    for the gateway log and our policy message."""
    forged = "6.6.6.6, 198.51.100.23"  # the client wrote 6.6.6.6; the gateway appended the rest

    def batch(tag: str, proxy: str) -> tuple[str, str]:
        gw = apim.gateway(apim.new_id(f"xff-gw-{tag}"), callerIpAddress=proxy)
        gw["properties"]["requestHeaders"] = {"X-Forwarded-For": forged}
        msg = orjson.loads(sources.policy_message(apim.new_id(f"xff-policy-{tag}")))
        msg.update(callerIp=proxy, forwardedFor=forged)
        process_batch([ev(apim.envelope(gw), 1), ev(orjson.dumps(msg), 2)], cfg, store)
        return gw["correlationId"], msg["correlationId"]

    for cid in batch("direct", "203.0.113.10"):  # no proxy trusted: what APIM saw
        assert rows(store)[cid]["CallerIp"] == "203.0.113.10"
    cfg = replace(cfg, trusted_proxies="10.0.0.0/24")
    for cid in batch("behind", "10.0.0.4"):
        assert rows(store)[cid]["CallerIp"] == "198.51.100.23"
    for cid in batch("not-a-proxy", "203.0.113.10"):  # the header is the client's word
        assert rows(store)[cid]["CallerIp"] == "203.0.113.10"


def test_a_deployment_a_client_names_loses_to_apims_own(cfg: Config) -> None:
    """On routes where the body's `model` names the deployment, the body APIM logs is cut at
    8,192 bytes, and a client orders its keys and writes any header: a `model` past the cut
    and `azureml-model-deployment: finance` made the row's Deployment (and team, and budget)
    Finance's, outranking APIM's LLM log. A claim now yields to APIM's routing, and the
    header is read only beside a body logged whole."""
    path = "/openai/v1/chat/completions"
    long_prompt = apim.chat_request(("user", "Summarise. " + "lorem ipsum " * 900))
    cut = orjson.dumps({**long_prompt, "model": "research-gpt5"}).decode()[:8192]

    def row(*records: dict[str, Any]) -> dict[str, Any]:
        (entity,) = [e for _, e in transform([ev(apim.envelope(*records))], cfg).rows]
        return entity

    def gateway(cid: str, body: str) -> dict[str, Any]:
        rec = apim.gateway(cid, path=path, request=body, response=None)
        rec["properties"]["requestHeaders"] = {"azureml-model-deployment": "finance-gpt4o"}
        return rec

    cid = apim.new_id("claimed-header")
    assert row(gateway(cid, cut)).get("Deployment") is None
    header = sources.llm_header(cid, deployment="research-gpt5")
    assert row(gateway(cid, cut), header)["Deployment"] == "research-gpt5"
    # The body's own `model`, logged whole, is still a claim: APIM's LLM log outranks it.
    whole = orjson.dumps({"model": "finance-gpt4o", "messages": []}).decode()
    cid = apim.new_id("claimed-body")
    assert row(gateway(cid, whole))["Deployment"] == "finance-gpt4o"
    header = sources.llm_header(cid, deployment="research-gpt5")
    assert row(gateway(cid, whole), header)["Deployment"] == "research-gpt5"
    # A body logged whole that names no model: the routing header is the deployment.
    cid = apim.new_id("header-whole")
    bare = orjson.dumps({"messages": [{"role": "user", "content": "hi"}]}).decode()
    assert row(gateway(cid, bare))["Deployment"] == "finance-gpt4o"
    # A managed-compute endpoint routes by the header, whatever the body's length.
    managed = gateway(apim.new_id("header-managed"), cut)
    managed["properties"]["backendUrl"] = "https://llama.eastus2.inference.ml.azure.com/score"
    assert row(managed)["Deployment"] == "finance-gpt4o"


@pytest.mark.parametrize(
    ("model", "placeholder"),
    [("zed.victim@example.org", "[EMAIL]"), ("4111 1111 1111 1111", "[CARD]")],
)
def test_a_deployment_a_client_names_is_masked_as_its_archive_is(
    cfg: Config, model: str, placeholder: str
) -> None:
    """On routes where the body's `model` names the deployment, a failed call can name
    anything: it was stored in clear as the row's Deployment (and so in KPIs, chargeback
    and exports) while the archive masked it (found by an audit)."""
    path = "/openai/v1/chat/completions"
    body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    error = {"error": {"code": "DeploymentNotFound", "message": "The deployment does not exist."}}
    cid = apim.new_id(f"claimed-{placeholder}")
    rec = apim.gateway(
        cid, path=path, request=body.decode(), response=error, status=404, backend_status=404
    )
    (entity,) = [e for _, e in transform([ev(apim.envelope(rec))], cfg).rows]
    assert entity["Deployment"] == placeholder
    named = apim.gateway(apim.new_id("claimed-plain"), path=path, request={"model": "gpt-4o"})
    (entity,) = [e for _, e in transform([ev(apim.envelope(named))], cfg).rows]
    assert entity["Deployment"] == "gpt-4o"


def _row_of(cfg: Config, *records: dict[str, Any]) -> dict[str, Any]:
    (entity,) = [e for _, e in transform([ev(apim.envelope(*records))], cfg).rows]
    return entity


def _choice_chunk(index: int, text: str) -> dict[str, Any]:
    chunk = copy.deepcopy(shapes._chunk({"content": text}))
    chunk["choices"][0]["index"] = index
    return chunk


def test_a_stream_of_n_choices_counts_them_all(cfg: Config) -> None:
    """A client asking for `n` choices without `include_usage` was billed for the first:
    1,200 output tokens recorded as 200 (the estimate capped at one choice's max_tokens)."""
    words = "The quick brown fox jumps over the lazy dog. " * 8
    request = apim.chat_request(("user", "Write."), stream=True, n=8, max_tokens=200)

    def completion(n: int) -> int:
        chunks = [_choice_chunk(i, words) for i in range(n)]
        stream = shapes.sse(shapes.FIRST_EVENT, *chunks)
        rec = apim.gateway(apim.new_id(f"n-{n}"), request={**request, "n": n}, response=stream)
        return _row_of(cfg, rec)["CompletionTokens"]

    one = completion(1)  # 81: the texts, joined, tokenize a little differently at the seams
    assert 7 * one < completion(8) <= 8 * one
    body = apim.chat_response(words, usage=False)
    body["choices"] = [dict(body["choices"][0], index=i) for i in range(3)]
    rec = apim.gateway(apim.new_id("n-json"), request={**request, "n": 3}, response=body)
    assert 2 * one < _row_of(cfg, rec)["CompletionTokens"] <= 3 * one


def test_a_client_cannot_make_its_tokens_zero_or_unknown_by_shaping_what_apim_logs(
    cfg: Config,
) -> None:
    """APIM logs 8,192 bytes of each body, and a client shapes them: log-probabilities
    before the answer made a cut response read as "generated nothing" (0 output tokens); a
    request padded before its messages left the prompt unknown (the call unpriced: cost 0)."""
    request = apim.chat_request(("user", "Tell me a story."), logprobs=True, top_logprobs=20)
    answer = apim.chat_response("Once upon a time " * 100, usage=False)
    entry = {"token": "Once", "logprob": -0.1, "bytes": [79, 110, 99, 101], "top_logprobs": []}
    answer["choices"][0]["logprobs"] = {"content": [entry] * 400}
    text = orjson.dumps(answer, option=orjson.OPT_SORT_KEYS).decode()  # as Azure sorts keys
    cut = apim.gateway(
        apim.new_id("cut-before-answer"), request=request, response=text[:8192],
        responseSize=len(text),
    )  # fmt: skip
    row = _row_of(cfg, cut)
    assert "CompletionTokens" not in row and row["TokensSource"] == "estimated"
    # Padded: nothing countable before the cut; APIM's request size stands in.
    padded = "{" + " " * 9_000 + orjson.dumps(request).decode()[1:]
    rec = apim.gateway(
        apim.new_id("padded"), request=padded[:8192], response=shapes.sse_without_usage(),
        requestSize=len(padded),
    )  # fmt: skip
    row = _row_of(cfg, rec)
    assert row["PromptTokens"] == -(-len(padded) // 4) and row["CompletionTokens"] > 0


def test_a_usage_cut_in_half_yields_to_the_llm_logs_counts(cfg: Config) -> None:
    """A client sizing its answer can make the 8 KB cut fall after `completion_tokens` (Azure
    sorts keys: `prompt_tokens` comes later): the half reported outranked APIM's complete
    LLM-log counts, and without a prompt count the call cost nothing."""
    cid = apim.new_id("half-usage")
    body = orjson.dumps(
        apim.chat_response("x " * 3000, prompt=120_000, completion=2_000),
        option=orjson.OPT_SORT_KEYS,
    ).decode()
    at = body.index('"completion_tokens_details"')
    rec = apim.gateway(cid, response=body[:at], responseSize=len(body))
    header = sources.llm_header(cid, prompt=120_000, completion=2_000)
    row = _row_of(cfg, rec, header)
    assert (row["PromptTokens"], row["CompletionTokens"]) == (120_000, 2_000)
    assert row["TokensSource"] == "llm-log"
    # A whole body whose usage names one count (a sender's): the LLM log's complete counts win.
    cid = apim.new_id("one-count")
    one = apim.chat_response("x", completion=2_000)
    one["usage"] = {"completion_tokens": 2_000}
    header = sources.llm_header(cid, prompt=120_000, completion=2_000)
    row = _row_of(cfg, apim.gateway(cid, response=one), header)
    assert (row["PromptTokens"], row["TokensSource"]) == (120_000, "llm-log")
    # Without an LLM log: the count kept, the other one estimated (priced, not unknown).
    alone = _row_of(cfg, apim.gateway(apim.new_id("half-alone"), response=body[:at]))
    assert alone["CompletionTokens"] == 2_000 and alone["PromptTokens"] > 0
    assert alone["TokensSource"] == "estimated"


def test_an_image_embeddings_request_cut_is_not_priced_by_its_bytes(cfg: Config) -> None:
    """The request-size estimate is for text: an image's 400 KB data URL is no prompt."""
    path = "/models/images/embeddings?api-version=2024-05-01-preview"
    image = "data:image/png;base64," + "A" * 400_000
    body = orjson.dumps({"input": [{"image": image, "text": "a cat"}], "model": "embed-v3"})
    rec = apim.gateway(
        apim.new_id("image-embeddings"), path=path, request=body.decode()[:8192],
        response=None, requestSize=len(body), operationId="getImageEmbeddings",
    )  # fmt: skip
    assert "PromptTokens" not in _row_of(cfg, rec)


def test_a_prompt_read_from_a_cut_body_yields_to_the_llm_logs(cfg: Config) -> None:
    """Past APIM's 8,192-byte cut a client can write a second `messages` (the one a JSON
    reader that keeps the last key uses): the decoy before the cut was the row's preview,
    outranking the LLM log's messages, APIM's reading of the whole body."""
    cid = apim.new_id("decoy-prompt")
    decoy = '{"messages":[{"role":"user","content":"What is the capital of France?"}]'
    body = decoy + " " * 9_000 + ',"messages":[{"role":"user","content":"The real ask"}]}'
    rec = apim.gateway(cid, request=body[:8192], requestSize=len(body))
    real = sources.llm_messages(cid, [{"role": "user", "content": "The real ask"}])
    assert _row_of(cfg, rec, real)["PromptPreview"] == "The real ask"
    alone = apim.gateway(apim.new_id("decoy-alone"), request=body[:8192])
    assert _row_of(cfg, alone)["PromptPreview"] == "What is the capital of France?"


def test_a_preview_read_from_a_cut_body_still_goes_with_its_record(cfg: Config) -> None:
    """Ranked after every source, a cut body's preview is still its record's: replayed under
    PROMPT_CAPTURE=none, the stored row loses it (it stayed, found by its old rank)."""
    from pipeline.store import merge

    answer = orjson.dumps(apim.chat_response("word " * 3000)).decode()
    rec = apim.gateway(
        apim.new_id("cut-answer"), request=apim.chat_request(("user", "Secret question?")),
        response=answer[:8192], responseSize=len(answer),
    )  # fmt: skip
    stored = _row_of(cfg, rec)
    assert stored["PromptPreview"] == "Secret question?"
    ((state, _),) = transform([ev(apim.envelope(rec))], replace(cfg, prompt_capture="none")).rows

    class Stored(dict):  # the row as read from the table: with the ETag to write it with
        metadata: ClassVar[dict[str, str]] = {"etag": "W/1"}

    merged = merge.merge_into(Stored(stored), state, cfg.shards)
    assert merged is not None and "PromptPreview" not in merged


def test_a_stream_is_what_the_answer_was_not_what_the_request_asked(cfg: Config) -> None:
    request = apim.chat_request(("user", "hi"), stream=True)
    json_answer = apim.gateway(apim.new_id("asked-stream"), request=request)
    assert _row_of(cfg, json_answer)["Streamed"] is False
    unanswered = apim.gateway(apim.new_id("asked-stream-no-body"), request=request, response=None)
    assert _row_of(cfg, unanswered)["Streamed"] is True
    # Our policy's inbound message carries the request's flag alone: the answer still wins.
    cid = apim.new_id("asked-stream-policy")
    inbound = orjson.loads(sources.policy_message(cid, section="inbound", request=request))
    gw = apim.gateway(cid, request=request)
    both = transform([ev(apim.envelope(gw)), ev(orjson.dumps(inbound), 2)], cfg)
    ((_, row),) = both.rows
    assert row["Streamed"] is False and row["Sources"] == "gateway,policy"


def test_the_accelerators_end_user_id_names_no_caller(cfg: Config) -> None:
    """The ai-hub-gateway usage record's `endUserId` is a policy variable its operators fill
    from the request (its guide: a header): a client writing an HR user's object id there was
    that user, and rules billing by user put its calls on HR."""
    hr_user = "9b2f6c1e-0d4a-4e7b-8c3d-2a1b0f9e8d7c"
    msg = sources.shape_b("chatcmpl-end-user-claim", endUserId=hr_user)
    (row,) = [e for _, e in transform([ev(msg)], cfg).rows]
    assert "CallerUserId" not in row
    assert row["CallerAppId"] == "6a1e3f9b-2c4d-4e5f-8a9b-0c1d2e3f4a5b"  # the token's claim


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


# --- odd types and shapes where an object, a list or a string belongs ----------------------------

# What a reader of a stream or body row shows: compared between a hostile and a benign variant.
READ_COLUMNS = (
    "Model", "PromptPreview", "CompletionPreview", "TokensSource", "PromptTokens",
    "CompletionTokens", "TotalTokens", "FinishReason", "Streamed", "BodyTruncated", "Clipped",
    "ErrorCode",
)  # fmt: skip
STORABLE = (str, int, float, bool, bytes, datetime, type(None), EntityProperty)


def stored_record(done: Any, row: dict[str, Any]) -> dict[str, Any]:
    """The record as the archive keeps it (member of `transform`'s blob)."""
    data = done.blob.data[row["RawOffset"] : row["RawOffset"] + row["RawLength"]]
    record: dict[str, Any] = open_member(data, row["RawSha256"])["record"]
    return record


def stream_with(junk: str) -> str:
    """The §5.4 stream with one more event, `data: <junk>`, before its content delta."""
    blocks = apim.text("chat_stream_usage.sse").split("\n\n")
    blocks.insert(1, f"data: {junk}")
    return "\n\n".join(blocks)


@pytest.mark.parametrize(
    "junk",
    ["[1, 2]", "5", "-0.5", '"a string"', "true", '[{"choices": []}]', "[]", "{}", "{not json"],
)
def test_a_stream_data_line_that_is_not_an_object_is_a_junk_line(cfg: Config, junk: str) -> None:
    """A `data:` line holding JSON that is not an object (an array, a number, a string): the
    stream's redaction read it as a chunk (`.get` on a list) and the call became a parser-error
    dead letter. It is now a junk line: the row is the one a line of garbage gives, and the
    line is archived as it came."""
    request = dumps(apim.chat_request(("user", "Summarise our travel policy."), stream=True))
    done = {}
    for label, line in (("junk", junk), ("garbage", "garbage, not JSON")):
        cid = apim.new_id(f"stream-junk-{label}")
        rec = apim.gateway(cid, request=request.decode(), response=stream_with(line))
        done[label] = transform([ev(envelope(rec))], cfg)
        assert done[label].plan.parser_errors == 0 and not done[label].plan.dead, label
    row = row_of(done["junk"], apim.new_id("stream-junk-junk"))
    benign = row_of(done["garbage"], apim.new_id("stream-junk-garbage"))
    assert {c: row.get(c) for c in READ_COLUMNS} == {c: benign.get(c) for c in READ_COLUMNS}
    assert row["CompletionPreview"] == "Hello there" and row["TokensSource"] == "reported"
    kept = stored_record(done["junk"], row)["properties"]["backendResponseBody"]
    assert kept == stream_with(junk)  # nothing to mask: kept exactly as logged


def test_a_non_object_stream_line_is_redacted_as_text(cfg: Config) -> None:
    email = "jane.doe@contoso.com"
    cid = apim.new_id("stream-junk-pii")
    request = dumps(apim.chat_request(("user", "Summarise our travel policy."), stream=True))
    rec = apim.gateway(cid, request=request.decode(), response=stream_with(f'["{email}", 5]'))
    done = transform([ev(envelope(rec))], cfg)
    assert done.plan.parser_errors == 0 and not done.plan.dead
    kept = stored_record(done, row_of(done, cid))["properties"]["backendResponseBody"]
    assert email not in kept and 'data: ["[EMAIL]", 5]' in kept
    assert "Hello there" in kept


@pytest.mark.parametrize("depth", [100, 300])
def test_a_deep_value_under_a_machine_data_key_is_redacted_as_text(cfg: Config, depth: int) -> None:
    """Redaction does not walk machine-data keys (`role`, `id`, ...), so the depth check of
    its walk never saw a value nested there: when something else in the body was masked, the
    body was re-serialised, orjson refused the depth, and the call became a parser error.
    Such a body is now matched as text, like any body too deep to walk."""
    email = "jane.doe@contoso.com"
    cid = apim.new_id(f"deep-under-role-{depth}")
    request = {"messages": [{"role": nested(depth), "content": f"Write to {email}"}]}
    done = transform([ev(envelope(apim.gateway(cid, request=dumps(request).decode())))], cfg)
    assert done.plan.parser_errors == 0 and not done.plan.dead, [d.reason for d in done.plan.dead]
    row = row_of(done, cid)
    assert row["PromptPreview"] == "Write to [EMAIL]"
    kept = stored_record(done, row)["properties"]["requestBody"]
    assert email not in kept and "[EMAIL]" in kept


CHAT_PATH = "/openai/deployments/chat-prod/chat/completions?api-version=2024-10-21"
RESPONSES_PATH = "/openai/v1/responses"
JOBS_PATH = "/openai/fine_tuning/jobs?api-version=2024-10-21"


def without_usage(doc: dict[str, Any]) -> dict[str, Any]:
    doc = {k: v for k, v in doc.items() if k != "usage"}
    if isinstance(doc.get("response"), dict):
        doc["response"] = without_usage(doc["response"])
    return doc


def tool_call_answer(tool_calls: Any) -> dict[str, Any]:
    doc = without_usage(apim.load("chat_response_tools.json"))
    doc["choices"][0]["message"]["tool_calls"] = tool_calls
    return doc


def responses_answer(**edits: Any) -> dict[str, Any]:
    doc = without_usage(apim.load("responses_response.json"))
    doc["output"].append({"type": "function_call", "name": "f", "arguments": "{}"})
    for key, value in edits.items():
        if key == "content":
            doc["output"][0]["content"] = value
        else:
            doc[key] = value
    return doc


def responses_stream(**edits: Any) -> str:
    """A Responses API stream without usage, ending in `response.completed` (or `edits`)."""
    response = responses_answer(**edits)
    return shapes.sse(
        {"type": "response.output_text.delta", "output_index": 0, "delta": "Receipts"},
        {"type": response.pop("terminal", "response.completed"), "response": response},
        event_names=True,
        done=False,
    )


# (url path, response body, what the row says) for a value of the wrong type where the
# readers of content expected an object, a list or a string.
ODD_TYPES: dict[str, tuple[str, Any, dict[str, Any]]] = {
    "tool_calls a number": (CHAT_PATH, tool_call_answer(5), {"TokensSource": "estimated"}),
    "tool_calls a string": (CHAT_PATH, tool_call_answer("call"), {"TokensSource": "estimated"}),
    "tool_calls an object": (
        CHAT_PATH, tool_call_answer({"function": {"name": "f"}}), {"TokensSource": "estimated"}
    ),
    "a tool call's function a number": (
        CHAT_PATH, tool_call_answer([{"function": 7}]), {"TokensSource": "estimated"}
    ),
    "output content a number": (
        RESPONSES_PATH, responses_answer(content=5), {"TokensSource": "estimated"}
    ),
    "output content an object": (
        RESPONSES_PATH, responses_answer(content={"text": "x"}), {"TokensSource": "estimated"}
    ),
    "streamed output content a number": (
        RESPONSES_PATH, responses_stream(content=5), {"TokensSource": "estimated"}
    ),
    "streamed status a number": (
        RESPONSES_PATH, responses_stream(status=5), {"FinishReason": None}
    ),
    "streamed status a list": (
        RESPONSES_PATH, responses_stream(status=["completed"]), {"FinishReason": None}
    ),
    "streamed incomplete reason an object": (
        RESPONSES_PATH,
        responses_stream(
            terminal="response.incomplete", status="incomplete",
            incomplete_details={"reason": {"why": "max_output_tokens"}},
        ),
        {"FinishReason": "incomplete"},
    ),
    "stream error code an object": (
        RESPONSES_PATH,
        shapes.sse({"type": "error", "error": {"code": {"c": 1}, "message": "m"}},
                   event_names=True, done=False),
        {"ErrorCode": "stream_error", "ErrorSource": "backend"},
    ),
    "job object a list": (
        JOBS_PATH, {"object": ["fine_tuning.job"], "id": "ftjob-1", "status": "queued"},
        {"Operation": "fine_tuning", "JobId": None},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", ODD_TYPES)
def test_a_value_of_an_odd_type_in_a_body_is_read_as_absent(cfg: Config, case: str) -> None:
    """`generated_text` iterated `message.tool_calls` whatever it was (a number: TypeError),
    and other content readers assumed a field's type the same way: a valid call without
    usage became a parser-error dead letter, or a row with a list where a string belongs.
    A field of the wrong type is now read as absent; the rest of the call is read."""
    path, response, expected = ODD_TYPES[case]
    cid = apim.new_id(f"odd-type-{case}")
    body = response if isinstance(response, str) else dumps(response).decode()
    rec = apim.gateway(cid, path=path, request=dumps({"input": "hi"}).decode(), response=body)
    done = transform([ev(envelope(rec))], cfg)
    assert done.plan.parser_errors == 0 and not done.plan.dead, [d.reason for d in done.plan.dead]
    row = row_of(done, cid)
    assert {k: row.get(k) for k in expected} == expected
    odd = {k: type(v).__name__ for k, v in row.items() if not isinstance(v, STORABLE)}
    assert not odd, odd


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
    # Streams: more `data:` lines, anywhere, holding any JSON (arrays, numbers, strings).
    junk=st.lists(st.tuples(st.integers(min_value=0, max_value=5), HOSTILE), max_size=2),
)
def test_fuzz_other_sources_never_make_a_parser_error(
    source: str,
    edits: list[tuple[int, Any]],
    body_edits: list[tuple[str, Any]],
    junk: list[tuple[int, Any]],
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
        for at, value in junk:
            chunks.insert(at % (len(chunks) + 1), "data: " + dumps(value).decode())
        stream = "\n\n".join(chunks) + "\n\ndata: [DONE]\n\n"
        request["stream"] = True
        body = envelope(apim.gateway(cid, request=dumps(request).decode(), response=stream))
    plan = plan_batch([ev(body)], Config())
    assert plan.parser_errors == 0, [d.reason for d in plan.dead]
    ingest._entities(plan, Config())
    assert plan.parser_errors == 0, [d.reason for d in plan.dead]


# Realistic calls, each a request and a response (a stream: its chunks), whose every field a
# client could set to a value of another type: url path, request, response, stream kind.
def _chunks(stream_text: str) -> list[Any]:
    """The chunks of a stream (the `data:` line of each event but [DONE])."""
    lines = [line for line in stream_text.split("\n") if line.startswith("data: {")]
    return [orjson.loads(line[6:]) for line in lines]


def _content_calls() -> dict[str, tuple[str, Any, Any, str]]:
    chat_request = apim.load("chat_request_tools.json")
    responses_request = {
        "model": "gpt-4.1-nano",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Receipts?"}]},
            {"type": "function_call", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "output": "{}"},
        ],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object",
                   "properties": {"a": {"type": "string", "enum": ["x"]}}}}],
        "max_output_tokens": 100,
    }  # fmt: skip
    responses_answer = apim.load("responses_response.json")
    responses_answer["output"].append({"type": "function_call", "name": "f", "arguments": "{}"})
    chat_stream = _chunks(shapes.sse_tool_call()) + _chunks(shapes.SSE_USAGE)
    incomplete = {
        **responses_answer,
        "status": "incomplete",
        "incomplete_details": {"reason": "max_output_tokens"},
    }
    stream_error = {"type": "error", "error": {"code": "server_error", "message": "Retry."}}
    completions = "/openai/deployments/inst/completions?api-version=2024-10-21"
    embeddings = "/openai/deployments/embed/embeddings?api-version=2024-10-21"
    return {
        "chat": (CHAT_PATH, chat_request, apim.load("chat_response_tools.json"), "json"),
        "chat-text": (
            CHAT_PATH, apim.chat_request(("user", "Hi")), apim.chat_response("Hello."), "json"
        ),
        "completions": (
            completions, {"prompt": ["Say", "hi"], "max_tokens": 5},
            apim.load("completions_response.json"), "json",
        ),
        "embeddings": (
            embeddings, {"input": ["a", "b"]}, apim.load("embeddings_response.json"), "json"
        ),
        "responses": (RESPONSES_PATH, responses_request, responses_answer, "json"),
        "chat-stream": (CHAT_PATH, chat_request, chat_stream, "sse"),
        "responses-stream": (
            RESPONSES_PATH, responses_request, _chunks(shapes.sse_responses()), "events"
        ),
        "responses-stream-incomplete": (
            RESPONSES_PATH, responses_request,
            [{"type": "response.incomplete", "response": incomplete}], "events",
        ),
        "responses-stream-error": (
            RESPONSES_PATH, responses_request,
            [{"type": "response.output_text.delta", "output_index": 0, "delta": "Re"},
             stream_error], "events",
        ),
        "fine-tuning": (
            JOBS_PATH, {"model": "gpt-4o", "training_file": "file-1"},
            {"object": "fine_tuning.job", "id": "ftjob-1", "status": "queued"}, "json",
        ),
    }  # fmt: skip


CONTENT_CALLS = _content_calls()
# Machine data no reader opens: its subtrees are not edited (the key itself is).
_NOT_READ = frozenset({"content_filter_results", "prompt_filter_results", "logprobs"})


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in `doc`: each key of each object and each item of each list."""
    out = [at]
    if at and at[-1] in _NOT_READ:
        return out
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        out.extend(_paths(value, (*at, key)))
    return out


def _has(doc: Any, key: Any) -> bool:
    if isinstance(doc, dict):
        return key in doc
    return isinstance(doc, list) and isinstance(key, int) and key < len(doc)


def _put(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set the value at `path`, unless an earlier edit replaced a container on the way."""
    for key in path[:-1]:
        if not _has(doc, key):
            return
        doc = doc[key]
    if _has(doc, path[-1]):
        doc[path[-1]] = value


def _without_usage(doc: Any) -> Any:
    if isinstance(doc, list):
        return [_without_usage(d) for d in doc]
    if not isinstance(doc, dict):
        return doc
    return {k: _without_usage(v) if k == "response" else v for k, v in doc.items() if k != "usage"}


def _stream_text(chunks: Any, kind: str) -> str:
    """The logged stream: each chunk a `data:` line (with its `event:` line for the Responses
    API), whatever the chunk now holds."""
    if not isinstance(chunks, list):
        return "data: " + dumps(chunks).decode() + "\n\n"
    lines = []
    for chunk in chunks:
        name = chunk.get("type") if kind == "events" and isinstance(chunk, dict) else None
        head = f"event: {name}\n" if isinstance(name, str) and "\n" not in name else ""
        lines.append(head + "data: " + dumps(chunk).decode())
    return "\n\n".join(lines) + ("\n\ndata: [DONE]\n\n" if kind == "sse" else "\n\n")


def _content_record(call: str, doc: dict[str, Any], n: int = 0) -> dict[str, Any]:
    """The GatewayLogs record of `call` whose bodies are `doc`'s request and response."""
    path, _, _, kind = CONTENT_CALLS[call]
    response = doc["response"]
    body = _stream_text(response, kind) if kind != "json" else dumps(response).decode()
    request = dumps(doc["request"]).decode()
    return apim.gateway(apim.new_id(f"content-{call}-{n}"), path=path, request=request,
                        response=body)  # fmt: skip


def _content_doc(call: str, estimate: bool) -> dict[str, Any]:
    """A fresh copy of `call`'s bodies; without usage when the tokens are to be estimated."""
    _, request, response, _ = CONTENT_CALLS[call]
    doc: dict[str, Any] = orjson.loads(orjson.dumps({"request": request, "response": response}))
    if estimate:
        doc["response"] = _without_usage(doc["response"])
    return doc


def _rows_of_content_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the records (one call each), asserting none is a parser error or dead."""
    cfg = Config()
    plan = plan_batch([ev(envelope(*records))], cfg)
    assert plan.parser_errors == 0, [d.reason for d in plan.dead]
    assert plan.accepted == len(records) and not plan.dead
    built = [entity for _, entity in ingest._entities(plan, cfg)]
    assert plan.parser_errors == 0, [d.reason for d in plan.dead]
    assert len(built) == len(records)
    for row in built:
        odd = {k: type(v).__name__ for k, v in row.items() if not isinstance(v, STORABLE)}
        assert not odd, odd
    return built


# A value of each JSON type (a string empty too, and an array too deep to walk).
EVERY_TYPE = [5, -1.5, True, "s", "", None, [5], {"a": 5}, nested(70)]


@pytest.mark.parametrize("estimate", [True, False], ids=["no-usage", "usage"])
@pytest.mark.parametrize("call", CONTENT_CALLS)
def test_a_value_of_every_type_at_every_content_field(call: str, estimate: bool) -> None:
    """Each field of a realistic request, response and stream chunk (a whole chunk too), in
    turn, set to a value of each JSON type: every call is a row of storable values. Without
    usage, every text reader runs (the estimate); a parser error anywhere fails the test."""
    places = _paths(_content_doc(call, estimate))[1:]
    records = []
    for place in places:
        for value in EVERY_TYPE:
            doc = _content_doc(call, estimate)
            _put(doc, place, value)
            records.append(_content_record(call, doc, len(records)))
    for i in range(0, len(records), 200):
        _rows_of_content_records(records[i : i + 200])


@pytest.mark.parametrize("call", CONTENT_CALLS)
@FUZZ
@given(data=st.data(), estimate=st.booleans())
def test_fuzz_odd_types_at_every_content_field(
    call: str, data: st.DataObject, estimate: bool
) -> None:
    """Hostile values at up to three fields at once of realistic requests, responses and
    stream chunks (a whole chunk too), usage logged or not: never a parser error."""
    doc = _content_doc(call, estimate)
    places = _paths(doc)[1:]
    edits = data.draw(st.lists(st.tuples(st.sampled_from(places), HOSTILE), min_size=1, max_size=3))
    for place, value in edits:
        _put(doc, place, value)
    _rows_of_content_records([_content_record(call, doc)])


# --- a record forged for a call another record logged --------------------------------------


def archived_lines(store: Store, cid: str) -> list[dict[str, Any]]:
    """Every archived record of call `cid`, over every archive blob (a member per line)."""
    out = []
    for b in store.archive.list_blobs():
        for line in gzip.decompress(store.archive.download_blob(b.name).readall()).splitlines():
            if cid.encode() in line:
                out.append(orjson.loads(line))
    return out


def forged(rec: dict[str, Any], n: int) -> dict[str, Any]:
    """`rec` as a sender on the hub would forge it: another team billed, the call failed."""
    out = orjson.loads(orjson.dumps(rec))
    out["properties"].update(apimSubscriptionId=f"team-someone-else-{n}", responseCode=500)
    return out


def test_a_forged_rival_record_is_archived_and_the_row_says_it_is_contested(
    store: Store, cfg: Config
) -> None:
    # Any sender on the hub can write a record for a call whose id it knows (APIM returns
    # it to the caller), and grind the record's hash to win the join. Whichever record wins,
    # neither is dropped: both are archived, and the row counts the rival.
    genuine = apim.gateway("contested-1")
    process_batch([ev(envelope(genuine, forged(genuine, 1)))], cfg, store)
    (row,) = rows(store).values()
    assert row["Conflicts"] == 1
    assert len(archived_lines(store, "contested-1")) == 2
    # A later batch: a second forgery is archived and counted too, the first not twice.
    again = process_batch([ev(envelope(forged(genuine, 1), forged(genuine, 2)), seq=2)], cfg, store)
    assert again.dead_letters == 0
    (row,) = rows(store).values()
    assert row["Conflicts"] == 2
    subscriptions = {
        r["record"]["properties"]["apimSubscriptionId"]
        for r in archived_lines(store, "contested-1")
    }
    assert subscriptions == {
        genuine["properties"]["apimSubscriptionId"],
        "team-someone-else-1",
        "team-someone-else-2",
    }
    # Delivered again, in any order: nothing changes.
    redelivered = process_batch(
        [ev(envelope(forged(genuine, 2), genuine, forged(genuine, 1)), seq=3)], cfg, store
    )
    assert (redelivered.created, redelivered.updated) == (0, 0)


def test_rivals_are_the_same_whatever_the_order() -> None:
    genuine = apim.gateway("contested-2")
    records = [genuine, forged(genuine, 1), forged(genuine, 2)]
    cfg = Config()
    seen = set()
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2]):
        done = transform([ev(envelope(*(records[i] for i in order)))], cfg)
        ((_, entity),) = done.rows
        state = state_from_entity(entity)  # its pointers differ: the archive's order does
        winner = state.call.fragments["gateway"].rid
        seen.add(
            (entity["Conflicts"], winner, tuple(sorted(state.rivals)), entity["SubscriptionId"])
        )
        assert len(done.blob.pointers) == 3  # every record archived
    assert len(seen) == 1


def test_chunks_of_one_message_are_joined_only_to_the_size_apim_logs(cfg: Config) -> None:
    """A message is at most 2 MB (formats.md §2.2) and previews need its start: a sender
    naming one call in every chunk of a batch made one string of them all, parsed whole."""
    cid = apim.new_id("one-long-message")
    text = orjson.dumps([{"role": "user", "content": "Tell me about Paris. " + "la " * 1_500_000}])
    pieces = [text[i : i + 32_000].decode() for i in range(0, len(text), 32_000)]
    joined = llmlogs.reassemble([(n, p) for n, p in reversed(list(enumerate(pieces, 1)))])
    assert joined is not None and len(joined) == llmlogs.MAX_MESSAGE_CHARS
    assert joined == text[: llmlogs.MAX_MESSAGE_CHARS].decode()
    records = [sources.llm_messages(cid, p, seq=n) for n, p in enumerate(pieces, 1)]
    events = [ev(apim.envelope(*records[i : i + 25]), i) for i in range(0, len(records), 25)]
    done = transform(events, cfg)
    (row,) = [entity for _, entity in done.rows]
    assert row["PromptPreview"].startswith("Tell me about Paris. la la")


def test_message_chunks_past_those_kept_are_archived(store: Store, cfg: Config) -> None:
    # A call logged in more LLM-log message chunks than a row keeps (join.MAX_MESSAGE_
    # FRAGMENTS): the row keeps the first ones, the archive every one.
    cid = "many-chunks"
    chunks = [
        sources.llm_messages(cid, [{"role": "user", "content": f"part {i}"}], seq=i)
        for i in range(1, 13)
    ]
    process_batch([ev(envelope(sources.llm_header(cid), *chunks))], cfg, store)
    assert len(archived_lines(store, cid)) == 13


def test_a_lone_surrogate_escape_neither_hides_a_body_nor_dead_letters_an_event(
    cfg: Config,
) -> None:
    # JSON allows `\ud800` alone (RFC 8259 §8.2); orjson refuses it. In a request body it
    # made the body unreadable (no preview, no token estimate for a stream without usage:
    # a client could evade token accounting); in an event, every call of it a dead letter.
    question = "Write a long essay about tokens. " * 20
    body = '{"messages":[{"role":"user","content":"' + question + '\\ud800"}],"stream":true}'
    stream = shapes.sse_without_usage()
    rec = apim.gateway("lone-surrogate", request=None, response=None)
    p = rec["properties"]
    p["requestBody"] = p["backendRequestBody"] = body
    p["responseBody"] = p["backendResponseBody"] = stream
    done = transform([ev(envelope(rec))], cfg)
    ((_, row),) = done.rows
    assert row["TokensSource"] == "estimated" and row["PromptTokens"] > 100
    assert row["PromptPreview"].startswith("Write a long essay")
    # In the event itself (a value APIM does not write, but a sender can), next to others.
    others = [apim.gateway(f"beside-surrogate-{i}") for i in range(3)]
    poisoned = envelope(*others).replace(b'"beside-surrogate-0"', b'"beside-surrogate-0\\udc00"')
    done = transform([ev(poisoned)], cfg)
    assert len(done.rows) == 3 and not done.plan.dead


def test_only_lone_surrogate_escapes_are_replaced() -> None:
    fix = safejson.without_lone_surrogates
    assert fix('"\\ud83d\\ude00 fine"') is None  # a pair
    assert fix('"\\\\ud800 is text"') is None  # an escaped backslash, then text
    assert fix('"a\\ud800b\\uDC00c"') == '"a\\ufffdb\\ufffdc"'
    assert fix('"\\\\\\ud800"') == '"\\\\\\ufffd"'  # a backslash, then a lone escape
    assert orjson.loads(fix('["\\udbff", "\\ud83d\\ude00"]')) == ["\ufffd", "😀"]


def test_rivals_in_a_batch_merged_into_a_stored_row_are_counted(store: Store, cfg: Config) -> None:
    # The row holds the call's LLM-log record; a later batch brings its gateway record and a
    # forgery of it: the rival is counted on the stored row too.
    cid = "contested-later"
    process_batch([ev(envelope(sources.llm_header(cid)))], cfg, store)
    genuine = apim.gateway(cid)
    process_batch([ev(envelope(genuine, forged(genuine, 1)), seq=2)], cfg, store)
    (row,) = store.find_rows(cid)
    assert row["Conflicts"] == 1 and row["Sources"] == "gateway,llm"


def test_rivals_of_a_chunk_past_those_kept_do_not_count_whatever_the_order(cfg: Config) -> None:
    # Two records of message chunk 9: before chunks 1-8, they meet and one loses; after,
    # chunk 9 is past those kept and neither meets the other. Either way: no conflict, and
    # both are archived and remembered.
    cid = "rival-chunks"
    chunk = [
        sources.llm_messages(cid, [{"role": "user", "content": f"part {i}"}], seq=i)
        for i in range(1, 9)
    ]
    rivals = [
        sources.llm_messages(cid, [{"role": "user", "content": f"part 9, take {n}"}], seq=9)
        for n in (1, 2)
    ]
    seen = set()
    for order in (rivals + chunk, chunk + rivals):
        done = transform([ev(envelope(sources.llm_header(cid), *order))], cfg)
        ((state, entity),) = done.rows
        seen.add(("Conflicts" in entity, len(state.others)))
    assert seen == {(False, 2)}


# --- memory of the regex engine ---------------------------------------------------------------

# Patterns whose repeated group runs only over a bounded window of text: an address's domain
# labels, searched within 255 characters of an @ (detectors.py, the EMAIL detector's `after`).
_WINDOWED_REPEATS = {"pipeline.protect.detectors._EMAIL", "pipeline.protect.detectors._EMAIL_GLUED"}
_GROUP_REPEAT = re.compile(r"\)(?:\*|\+|\{\d*,\})(?!\+)")


def test_no_regex_repeats_a_group_over_text_without_bound() -> None:
    """Python's regex engine keeps a step back for each repeat of a group (about 120 bytes):
    `(?:…)*` over 10 MB of a client's line breaks took 1.7 GB, and 450 MB over a cut string of
    escapes. Every repeated group in the pipeline's patterns is possessive (`*+`, `++`),
    bounded (`{2,1024}`), or runs over a bounded window."""
    import importlib
    import pkgutil

    import pipeline

    found = []
    for info in pkgutil.walk_packages(pipeline.__path__, "pipeline."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern) and f"{info.name}.{name}" not in _WINDOWED_REPEATS:
                pattern = value.pattern
                text = pattern if isinstance(pattern, str) else pattern.decode("latin-1")
                if _GROUP_REPEAT.search(text):
                    found.append(f"{info.name}.{name}")
    assert sorted(set(found)) == []


def test_client_text_is_tokenised_in_memory_that_does_not_grow_with_it() -> None:
    from pipeline.call import bodies
    from pipeline.call.exchange import without_leading_blank_lines
    from pipeline.protect.escapes import unescaped_view

    n = 1 << 20
    texts = {
        "a completion of line breaks": "\n" * n + "Paris",
        "a cut string of escapes": '{"a":"' + "a\\n" * (n // 3),
        "a whole string of escapes": '{"a":"' + "a\\n" * (n // 3) + '"}',
        'a run of {"key":': '{"a":' * (n // 5),
    }
    work = {
        "a completion of line breaks": without_leading_blank_lines,
        "a cut string of escapes": lambda t: sum(1 for _ in bodies._TOKEN.finditer(t)),
        "a whole string of escapes": lambda t: sum(1 for _ in bodies._TOKEN.finditer(t)),
        'a run of {"key":': lambda t: sum(1 for _ in bodies._TOKEN.finditer(t)),
    }
    for name, text in texts.items():
        tracemalloc.start()
        try:
            work[name](text)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 * 1024, f"{name}: {peak:,} bytes"
    # The view of a dead letter's text and where its last character is written: the view,
    # and no number kept for each character (one Python int a character took 2.8 GB of a
    # 60 MB dead letter).
    text = texts["a cut string of escapes"] + " alice@contoso.com"
    tracemalloc.start()
    try:
        view, at = unescaped_view(text)
        assert at is not None and at(len(view)) == len(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(text), f"view: {peak:,} bytes for {len(text):,}"


def _traced_peak(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_text_full_of_hidden_characters_is_read_without_an_object_for_each() -> None:
    """A combining mark after every digit: the reading without hidden characters kept a
    string and two ints a hidden character (98 bytes a character: a 1 MB event +71 MB, a
    64 MiB replay unit +4.4 GB); now the view is read in C and spans mapped back alone."""
    from pipeline.protect.redactor import Redactor

    redactor = Redactor()
    text = "1\u0301" * 100_000 + " card 4111\u200b1111\u200b1111\u200b1111"
    redactor.find(text[:100])  # the detectors' first use builds their tables
    spans: list[tuple[int, int, str]] = []
    peak = _traced_peak(lambda: spans.extend(redactor.find(text)))
    assert spans[-1] == (len(text) - 19, len(text), "CARD")
    assert peak < 50 * len(text), f"{peak / len(text):.0f} bytes a character"


def test_a_csv_cell_of_short_lines_is_held_by_its_characters() -> None:
    """A quoted cell of 2-byte lines kept a string object a line until the row closed (49
    bytes a byte: 2.7 GB for a 64 MiB file)."""
    from pipeline.sources import files

    n = 1 << 20
    body = (
        "TimeGenerated [UTC],Type,RequestBody\n"
        '2025-11-04T10:00:00Z,ApiManagementGatewayLogs,"' + "a\n" * (n // 2) + '"\n'
    ).encode()
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    events: list[EventIn] = []
    peak = _traced_peak(
        lambda: events.extend(files.read_csv(chunks, "x.csv", 64 << 20, lambda _: None))
    )
    assert len(events) == 1 and orjson.loads(events[0].body)["RequestBody"] == "a\n" * (n // 2)
    assert peak < 30 * len(body), f"{peak / len(body):.0f} bytes a byte"


@pytest.mark.parametrize("cid", ["", " ", "\t\n", "\u200b", "\xa0\u2060", "\x85", "\ufeff "])
def test_an_id_nobody_can_see_names_no_call(cid: str) -> None:
    """A correlation id of blanks, control or invisible characters is no id: the record is a
    dead letter (its row would be told from no other in a listing), never a row under it."""
    record = apim.gateway("placeholder")
    record["correlationId"] = cid
    result = transform([ev(apim.envelope(record, apim.gateway(apim.new_id("seen-id"))))], Config())
    assert [e["RowKey"] for _, e in result.rows] == [apim.new_id("seen-id")]
    (dead,) = result.plan.dead
    assert dead.reason == "GatewayLogs record without correlationId"
    # Invisible characters beside visible ones are part of an id, not all of it.
    record["correlationId"] = "\u200b" + apim.new_id("seen-id-2")
    assert len(transform([ev(apim.envelope(record))], Config()).rows) == 1


@pytest.mark.parametrize("second", ['"Records"', '"records"', '"RECORDS" :'])
def test_an_event_of_two_record_lists_is_kept_whole(second: str) -> None:
    """A sender's envelope naming `records` twice (another case, or the same key twice, of
    which a decoder keeps the last): one list was read, the other was nowhere, neither row,
    dead letter nor archive. The event is one dead letter of its bytes, both calls in it."""
    ids = apim.new_id("two-lists-1"), apim.new_id("two-lists-2")
    a, b = (orjson.dumps(apim.gateway(cid)).decode() for cid in ids)
    key = second if second.endswith(":") else second + ":"
    body = ('{"records":[' + a + "]," + key + "[" + b + "]}").encode()
    result = transform([ev(body)], Config())
    assert not result.rows
    (dead,) = result.plan.dead
    assert dead.reason == "event holds more than one records list"
    assert all(cid.encode() in dead.body for cid in ids)
    # Read as the event is read: beside a lone surrogate escape (valid JSON orjson refuses).
    body = body[:-1] + b',"x":"\\ud800"}'
    assert not transform([ev(body)], Config()).rows
    # A `records` key inside a record is no second list.
    inner = apim.gateway(ids[0])
    inner["properties"]["records"] = [1]
    assert len(transform([ev(apim.envelope(inner))], Config()).rows) == 1


def test_a_value_the_cut_fell_inside_is_no_fact() -> None:
    """A client sizes its answer (or its request) so that APIM's 8,192-byte cut falls inside
    a string: the repair keeps the piece for previews, but `gpt-4o` of `gpt-4o-mini-2024-07-18`
    was the row's model (another price; `gpt-4o-mi` one no table knows: unpriced, cost 0), and
    a response id or a v1 body's deployment cut in half were facts too."""
    answer = apim.chat_response("word " * 1500, model="gpt-4o-mini-2024-07-18")
    full = orjson.dumps(answer, option=orjson.OPT_SORT_KEYS).decode()
    at_model = full.index('"model":"') + len('"model":"')
    at_id = full.index('"id":"') + len('"id":"')

    def row(**kw: Any) -> dict[str, Any]:
        record = apim.gateway(apim.new_id(f"cut-inside-{len(kw)}-{sorted(kw)}"), **kw)
        ((_, entity),) = transform([ev(apim.envelope(record))], Config()).rows
        return entity

    for k in (6, 9, 14):
        cut = row(response=full[: at_model + k], responseSize=len(full))
        assert "Model" not in cut and cut["ResponseId"] == answer["id"], k
    whole_model = row(response=full[: at_model + 40], responseSize=len(full))
    assert whole_model["Model"] == "gpt-4o-mini-2024-07-18"
    assert "ResponseId" not in row(response=full[: at_id + 10], responseSize=len(full))
    request = orjson.dumps(
        {"messages": [{"role": "user", "content": "x" * 200}], "model": "chat-prod"}
    )
    cut_request = row(
        path="/openai/v1/chat/completions", request=request.decode()[:-8], response=None
    )
    assert "Deployment" not in cut_request


@pytest.mark.parametrize("k", [1, 2, 3])
def test_a_count_the_message_cut_fell_inside_is_no_count(k: int) -> None:
    """The AI-Gateway message-storing sample logs the whole request, then the counts as
    strings: a client sizing its request so that the 200 KB cut fell inside
    `"responseTokens":"1500"` was billed 1, 15 or 150 output tokens, "reported"."""
    msg = orjson.loads(sources.shape_a(f"chatcmpl-cut-count-{k}"))
    msg["request"] = orjson.dumps(
        {"messages": [{"role": "user", "content": "x" * 199_000}]}
    ).decode()
    msg["promptTokens"], msg["responseTokens"], msg["totalTokens"] = "51234", "1500", "52734"
    body = orjson.dumps(msg)
    at = body.index(b'"responseTokens":"') + len(b'"responseTokens":"')
    ((_, row),) = transform([ev(body[: at + k])], Config()).rows
    assert row["PromptTokens"] == 51234 and "CompletionTokens" not in row
    # A body the cut fell inside is still read as far as it goes (previews).
    at = body.index(b'"request":"') + 5_000
    ((_, row),) = transform([ev(body[:at])], Config()).rows
    assert row["PromptPreview"].startswith("xxxx")


def _cut_cases() -> dict[str, tuple[bytes, bytes, str]]:
    """(whole event, the same cut as a client can place it, the column) per fact a cut once
    made a piece of: from a property audit cutting 68,000 times at every offset near a fact."""
    q = apim.chat_request(("user", "Summarise our travel policy in one sentence."))
    cases: dict[str, tuple[bytes, bytes, str]] = {}
    m = sources.policy_message(
        apim.new_id("cut-code"), request=q, response=apim.AOAI_429, status=429
    )
    cases["error code in a logged answer"] = (
        m,
        m[: m.index(b'429\\",\\"message') + 2],
        "ErrorCode",
    )
    m = sources.policy_message(
        apim.new_id("cut-reason"), section="on-error", status=429, request=q,
        error={"source": "llm-token-limit", "reason": "TokenLimitExceeded", "message": "Limit.",
               "scope": "api", "section": "inbound", "policyId": "t"},
    )  # fmt: skip
    cases["on-error reason, nested"] = (m, m[: m.index(b"TokenLimitExceeded") + 5], "ErrorCode")
    streamed = dict(q, model="gpt-4o", stream=True)
    rec = apim.gateway(apim.new_id("cut-stream"), request=streamed, response=None)
    props = rec["properties"]
    whole, n = apim.envelope(rec), len(props["requestBody"])
    props["requestSize"] = n
    for key in ("backendRequestBody", "requestBody"):
        props[key] = props[key][: n - 20]
    cases["stream flag after the cut"] = (whole, apim.envelope(rec), "Streamed")
    m = sources.shape_a("chatcmpl-cut-finish")
    cases["finish reason, message-storing"] = (m, m[: m.index(b"stop") + 2], "FinishReason")
    _, c_resp = sources.shape_c_pair("msg-cut-finish")
    cases["finish reason, request/response pair"] = (
        c_resp, c_resp[: c_resp.index(b"stop") + 3], "FinishReason"
    )  # fmt: skip
    answer = orjson.dumps(
        {"id": "resp_1", "object": "response", "status": "incomplete", "error": None,
         "incomplete_details": {"reason": "max_output_tokens"}, "model": "m", "output": []}
    ).decode()  # fmt: skip
    rec = apim.gateway(
        apim.new_id("cut-incomplete"), path="/openai/v1/responses",
        request={"model": "m", "input": "hi"}, response=answer, responseSize=len(answer),
    )  # fmt: skip
    whole = apim.envelope(rec)
    for key in ("backendResponseBody", "responseBody"):
        rec["properties"][key] = answer[: answer.index('"error"')]
    cases["why a response is incomplete"] = (whole, apim.envelope(rec), "FinishReason")
    return cases


@pytest.mark.parametrize("case", list(_cut_cases()))
def test_a_cut_never_makes_a_piece_of_a_code_reason_or_flag(case: str) -> None:
    """The cut may hide a fact, never change it: an error code cut to `4` of `429` or `T` of
    `TokenLimitExceeded`, a finish reason `sto`, `incomplete` for `max_output_tokens`, a
    stream flag False because `stream` came after the cut."""
    whole_body, cut_body, column = _cut_cases()[case]
    ((_, whole),) = transform([ev(whole_body)], Config()).rows
    ((_, cut),) = transform([ev(cut_body)], Config()).rows
    truth, seen = whole.get(column), cut.get(column)
    assert truth is not None
    if column == "Streamed":
        assert seen in (truth, None)
    else:
        assert seen is None or seen == truth or not str(truth).startswith(str(seen)), seen
        assert seen != "incomplete"


def test_a_serverless_endpoints_deployment_is_its_name_not_the_bodys_model(cfg: Config) -> None:
    """A serverless API endpoint (`{name}.{region}.models.ai.azure.com`) serves the one model
    deployed under its name. The row's Deployment was the body's `model` (or the routing
    header): a client of Research writing Finance's deployment there was billed to Finance
    (an attribution rule on `deployment`), and a budget on the endpoint saw nothing (black-box
    audit). APIM's backend URL names it; a managed-compute endpoint still routes by header."""
    backend = "https://mistral-large-research.eastus2.models.ai.azure.com/chat/completions"
    body = orjson.dumps({"model": "gpt-4o-finance-prod", "messages": []}).decode()
    for claimed in (body, orjson.dumps({"messages": []}).decode()):
        rec = apim.gateway(apim.new_id(f"serverless-{len(claimed)}"), path="/chat/completions",
                           request=claimed, response=None)  # fmt: skip
        rec["properties"]["backendUrl"] = backend
        rec["properties"]["requestHeaders"] = {"azureml-model-deployment": "finance"}
        ((_, row),) = transform([ev(apim.envelope(rec))], cfg).rows
        assert row["Deployment"] == "mistral-large-research"

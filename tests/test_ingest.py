"""GatewayLogs batches → audit rows, raw archive and dead letters, on real Azurite."""

from __future__ import annotations

import gzip
from dataclasses import replace
from datetime import datetime

import orjson
import pytest
from azure.core.exceptions import ServiceRequestError
from azure.data.tables import TableEntity

from pipeline.cli.azurite import connection_string, free_port
from pipeline.ingest.batch import process_batch, run_trigger_batch
from pipeline.ingest.plan import SliceLimit
from pipeline.model import EventIn, Fragment
from pipeline.protect.archive import open_member
from pipeline.settings import Config
from pipeline.store.account import Store
from tests.fixtures import apim

CID = "5b1f3c2e-7a4d-4e2b-9f00-3c1a2b3c4d5e"  # formats.md §1.3


def ev(body: bytes, seq: int | None = None, partition: str = "0") -> EventIn:
    return EventIn(body=body, partition=partition, sequence=seq, origin="test")


def stored_record(fragment: Fragment) -> dict[str, object]:
    """The record as a planned fragment will archive it (before the batch's blob is built)."""
    assert fragment.raw is not None
    return open_member(fragment.raw.packed, fragment.raw.sha256)["record"]


def all_rows(store: Store) -> dict[str, TableEntity]:
    return {e["RowKey"]: e for e in store.audit.list_entities()}


def comparable(entity: TableEntity, *, pointers: bool = True) -> dict[str, object]:
    """Row values; with pointers=False, without which archived copy the row points at."""
    out = {}
    for key, value in entity.items():
        if not pointers and key in ("RawBlob", "RawOffset", "RawLength", "RawSha256", "Fragments"):
            continue
        out[key] = getattr(value, "value", value)
    if not pointers:
        frags = orjson.loads(entity["Fragments"])
        for item in frags.values():
            if isinstance(item, dict):
                item.pop("ptr", None)
        out["Fragments"] = frags
    return out


def blobs(store: Store) -> dict[str, tuple[str, object]]:
    return {b.name: (b.etag, b.last_modified) for b in store.archive.list_blobs()}


def test_chat_call_row_has_the_contract_properties(store: Store, cfg: Config) -> None:
    result = process_batch([ev(apim.envelope(apim.gateway()), 1)], cfg, store)
    assert (result.calls, result.created, result.dead_letters) == (1, 1, 0)
    row = all_rows(store)[CID]
    expected = {
        "ApimService": "contoso-apim",
        "Region": "westeurope",
        "ApiId": "azure-openai",
        "OperationId": "ChatCompletions_Create",
        "ProductId": "ai-standard",
        "SubscriptionId": "team-finance",
        "UserId": "1",
        "CallerIp": "203.0.113.10",
        "Method": "POST",
        "Deployment": "chat-prod",
        "ApiVersion": "2024-10-21",
        "Operation": "chat.completions",
        "BackendId": "aoai-weu",
        "Status": 200,
        "BackendStatus": 200,
        "DurationMs": 1834,
        "BackendMs": 1790,
        "Model": "gpt-4o-2024-08-06",
        "PromptTokens": 29,
        "CompletionTokens": 13,
        "TotalTokens": 42,
        "TokensSource": "reported",
        "Streamed": False,
        "BodyTruncated": False,
        "PromptPreview": "You are a helpful assistant.",
        "CompletionPreview": "Book economy class and submit receipts within 30 days.",
        "Sources": "gateway",
    }
    for key, value in expected.items():
        assert row[key] == value, key
        assert type(row[key]) is type(value), key
    assert isinstance(row["CallTime"], datetime)
    assert row["CallTime"].isoformat().startswith("2025-03-04T10:15:02.123456")
    assert row.metadata["etag"]
    # One ranged read through the row's pointer returns this call's raw record alone.
    data = store.read_range(store.archive, row["RawBlob"], row["RawOffset"], row["RawLength"])
    member = open_member(data, row["RawSha256"])
    assert member["correlationId"] == CID and member["kind"] == "gateway"
    assert member["record"]["properties"]["backendResponseBody"].startswith('{"choices"')


def test_unknown_tokens_are_null_not_zero(store: Store, cfg: Config) -> None:
    rec = apim.gateway(apim.new_id("no-bodies"), request=None, response=None)
    process_batch([ev(apim.envelope(rec))], cfg, store)
    row = all_rows(store)[rec["correlationId"]]
    for key in ("PromptTokens", "CompletionTokens", "TotalTokens", "Model"):
        assert key not in row and row.get(key) is None
    assert row["TokensSource"] == "none"
    assert row["Status"] == 200 and row["Deployment"] == "chat-prod"


def test_multi_record_envelope_skips_other_categories(store: Store, cfg: Config) -> None:
    a, b = apim.new_id("a"), apim.new_id("b")
    body = apim.envelope(apim.gateway(a), apim.websocket_record(), apim.gateway(b))
    result = process_batch([ev(body)], cfg, store)
    assert result.calls == 2 and result.dead_letters == 0
    assert result.skipped == {"WebSocketConnectionLogs": 1}
    assert set(all_rows(store)) == {a, b}


def test_case_differences_and_properties_as_json_string(store: Store, cfg: Config) -> None:
    rec = apim.gateway(apim.new_id("pascal"))
    props = {k[0].upper() + k[1:]: v for k, v in rec.pop("properties").items()}
    rec = {k[0].upper() + k[1:]: v for k, v in rec.items()}
    rec["Properties"] = orjson.dumps(props).decode()
    process_batch([ev(apim.envelope(rec))], cfg, store)
    row = all_rows(store)[rec["CorrelationId"]]
    assert row["Deployment"] == "chat-prod" and row["PromptTokens"] == 29
    assert row["SubscriptionId"] == "team-finance" and row["Status"] == 200


def test_duplicate_delivery_leaves_one_row_and_no_new_blob(store: Store, cfg: Config) -> None:
    events = [
        ev(
            apim.envelope(apim.gateway(apim.new_id(f"dup{i}")), apim.gateway(apim.new_id(f"x{i}"))),
            i,
        )
        for i in range(3)
    ]
    first = process_batch(events, cfg, store)
    rows_before = {k: comparable(v) for k, v in all_rows(store).items()}
    blobs_before = blobs(store)
    assert len(rows_before) == 6 and len(blobs_before) == first.new_archive_blobs == 1
    again = process_batch(events, cfg, store)
    assert first.created == 6 and (again.created, again.updated, again.unchanged) == (0, 0, 6)
    assert again.new_archive_blobs == 0
    assert {k: comparable(v) for k, v in all_rows(store).items()} == rows_before
    assert blobs(store) == blobs_before  # same content-addressed blob, not rewritten
    for key, row in all_rows(store).items():  # and every row's raw record is in it
        data = store.read_range(store.archive, row["RawBlob"], row["RawOffset"], row["RawLength"])
        assert open_member(data, row["RawSha256"])["correlationId"] == key


def test_calls_recut_into_other_batches_give_identical_rows(
    azurite, cfg: Config, store: Store
) -> None:
    records = [apim.gateway(apim.new_id(f"cut{i}")) for i in range(6)]
    events = [ev(apim.envelope(*records[i : i + 2]), i) for i in range(0, 6, 2)]
    process_batch(events, cfg, store)

    other = Config(
        storage_connection=cfg.storage_connection,
        audit_table=cfg.audit_table + "b",
        archive_container=cfg.archive_container + "-b",
        deadletter_container=cfg.deadletter_container + "-b",
    )
    store_b = Store(other)
    store_b.ensure()
    process_batch([events[2]], other, store_b)
    process_batch([events[0], events[2]], other, store_b)  # events[2] again, cut differently
    process_batch([events[1], events[0]], other, store_b)

    a = {k: comparable(v, pointers=False) for k, v in all_rows(store).items()}
    b = {k: comparable(v, pointers=False) for k, v in all_rows(store_b).items()}
    assert a == b and len(a) == 6


def test_a_large_batch_is_handled_in_slices_with_the_same_rows(
    cfg: Config, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.ingest import batch as ingest
    from tests.fixtures import sources

    cid = apim.new_id("sliced")
    events = [ev(apim.envelope(apim.gateway(cid)), 0)]
    events += [ev(apim.envelope(apim.gateway(apim.new_id(f"sl{i}"))), i + 1) for i in range(6)]
    events.append(ev(apim.envelope(sources.llm_header(cid)), 7))  # the same call, another slice
    whole = process_batch(events, cfg, store)
    one_slice = {k: comparable(v, pointers=False) for k, v in all_rows(store).items()}
    for entity in store.audit.list_entities():
        store.audit.delete_entity(entity["PartitionKey"], entity["RowKey"])

    monkeypatch.setattr(ingest, "SLICE", SliceLimit(3 * max(len(e.body) for e in events), 10**6))
    sliced = process_batch(events, cfg, store)
    assert sliced.calls == whole.calls == 7 and sliced.records == whole.records == 8
    assert sliced.new_archive_blobs == 3 and (sliced.created, sliced.updated) == (7, 1)
    rows = {k: comparable(v, pointers=False) for k, v in all_rows(store).items()}
    assert rows == one_slice  # the call's two records, read through the row, join the same
    assert rows[cid]["Sources"] == one_slice[cid]["Sources"] and "," in rows[cid]["Sources"]


def test_a_batch_of_tiny_records_is_sliced_by_its_records(
    cfg: Config, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory follows the calls a slice holds (about 6 KB each), not only its bytes: small
    events of many tiny records end a slice at `SLICE.records`, and the rows are the ones
    one slice gives."""
    from pipeline.ingest import batch as ingest

    events = [
        ev(apim.envelope(*(apim.gateway(apim.new_id(f"tiny{e}-{i}")) for i in range(5))), e)
        for e in range(6)
    ]
    whole = process_batch(events, cfg, store)
    one_slice = {k: comparable(v, pointers=False) for k, v in all_rows(store).items()}
    for entity in store.audit.list_entities():
        store.audit.delete_entity(entity["PartitionKey"], entity["RowKey"])

    monkeypatch.setattr(ingest, "SLICE", SliceLimit(payload=10**9, records=10))
    sliced = process_batch(events, cfg, store)
    assert whole.new_archive_blobs == 1 and sliced.new_archive_blobs == 3  # 2 events each
    assert sliced.calls == whole.calls == 30 and sliced.created == 30
    assert {k: comparable(v, pointers=False) for k, v in all_rows(store).items()} == one_slice


def test_garbage_events_are_dead_lettered_and_the_rest_is_stored(store: Store, cfg: Config) -> None:
    good = apim.gateway(apim.new_id("good"))
    no_id = apim.gateway(apim.new_id("no-id"))
    del no_id["correlationId"]
    bad_time = apim.gateway(apim.new_id("bad-time"), time="yesterday")
    garbage = [
        b"\xff\xfe not json at all",
        b"",
        b"42",
        b'{"records": [1]}',
        apim.envelope(no_id),
        apim.envelope(bad_time),
        b'{"hello": "world"}',
    ]
    events = [ev(apim.envelope(good), 0)] + [ev(g, i + 1) for i, g in enumerate(garbage)]
    result = process_batch(events, cfg, store)
    assert result.created == 1 and result.dead_letters == len(garbage)
    assert set(all_rows(store)) == {good["correlationId"]}

    dead = {
        int(b.metadata["sequencenumber"]): b
        for b in store.deadletters.list_blobs(include=["metadata"])
    }
    assert sorted(dead) == list(range(1, len(garbage) + 1))
    reasons = {seq: b.metadata["reason"] for seq, b in dead.items()}
    assert "not valid JSON" in reasons[1]
    assert "empty" in reasons[2]
    assert "JSON int" in reasons[3]
    assert "record 0 is JSON int" in reasons[4]
    assert "without correlationId" in reasons[5]
    assert "time" in reasons[6]
    assert "unknown record shape" in reasons[7]
    for seq in (1, 2, 3):  # whole events keep their exact bytes
        assert store.deadletters.download_blob(dead[seq].name).readall() == garbage[seq - 1]
    for seq in (1, 4, 5):
        meta = dead[seq].metadata
        assert meta["partition"] == "0" and meta["status"] == "new" and meta["pipelineversion"]
    # A dead record replays like the original event: an envelope of that one record.
    replayable = orjson.loads(store.deadletters.download_blob(dead[5].name).readall())
    assert replayable["records"][0]["properties"]["apimSubscriptionId"] == "team-finance"

    # Delivered again, the dead letters are not duplicated.
    process_batch(events, cfg, store)
    assert len(list(store.deadletters.list_blobs())) == len(garbage)


SECRETS = (
    "sk-live-0123456789abcdef",
    "c0ffee0123456789c0ffee0123456789",
    "eyJhbGciOiJSUzI1NiJ9.e30.sig",
)


def test_credentials_are_never_stored(store: Store, cfg: Config) -> None:
    rec = apim.gateway(apim.new_id("creds"))
    p = rec["properties"]
    p["url"] += f"&subscription-key={SECRETS[1]}"
    p["requestHeaders"] = {
        "Authorization": f"Bearer {SECRETS[2]}",
        "api-key": SECRETS[0],
        "Ocp-Apim-Subscription-Key": SECRETS[1],
        "Cookie": f"session={SECRETS[0]}",
        "X-Forwarded-For": "198.51.100.23, 10.0.0.4",
    }
    p["backendRequestHeaders"] = {"API-KEY": SECRETS[0]}
    bad = dict(rec, correlationId=None)  # also goes to the dead-letter store
    process_batch([ev(apim.envelope(rec)), ev(apim.envelope(bad))], cfg, store)

    row = all_rows(store)[rec["correlationId"]]
    assert row["CallerIp"] == "203.0.113.10"  # what APIM saw: the header is the client's word
    stored = [orjson.dumps(comparable(row), default=str)]
    stored += [
        gzip.decompress(store.archive.download_blob(b.name).readall())
        for b in store.archive.list_blobs()
    ]
    stored += [
        store.deadletters.download_blob(b.name).readall() for b in store.deadletters.list_blobs()
    ]
    assert len(stored) == 3
    for data in stored:
        for secret in SECRETS:
            assert secret.encode() not in data


def test_archive_blob_is_one_gzip_file_with_a_member_per_call(store: Store, cfg: Config) -> None:
    records = [apim.gateway(apim.new_id(f"m{i}")) for i in range(5)]
    result = process_batch([ev(apim.envelope(*records))], cfg, store)
    (name,) = blobs(store)
    assert name == result.archive_blob and name.startswith("2025/03/04/10/")
    whole = gzip.decompress(store.archive.download_blob(name).readall()).splitlines()
    assert [orjson.loads(line)["correlationId"] for line in whole] == [
        r["correlationId"] for r in records
    ]
    for row in all_rows(store).values():
        assert row["RawBlob"] == name
        data = store.read_range(store.archive, name, row["RawOffset"], row["RawLength"])
        assert open_member(data, row["RawSha256"])["correlationId"] == row["RowKey"]


def test_storage_down_raises_so_the_trigger_retries(cfg: Config, store: Store) -> None:
    port = free_port()  # nothing listens there
    dead = replace(cfg, storage_connection=connection_string(port, port, port), storage_retries=2)
    down = Store(dead, retry_base=0.01)
    ids = {apim.new_id(f"down{i}") for i in range(4)}
    events = [ev(apim.envelope(apim.gateway(cid)), i) for i, cid in enumerate(sorted(ids))]
    # The storage error itself reaches the host (not swallowed, not some other failure),
    # after the in-process retries: the batch is not acknowledged.
    with pytest.raises(ServiceRequestError):
        run_trigger_batch(events, dead, down, attempt=0, max_retries=5)
    assert down.retries == 2
    # Storage is back when the trigger delivers the same batch again: all of it is stored.
    result = run_trigger_batch(events, cfg, store, attempt=1, max_retries=5)
    assert result.created == len(ids) and set(all_rows(store)) == ids
    assert result.new_archive_blobs == 1 and not list(store.deadletters.list_blobs())

"""Azure Table storage limits, enforced in code because Azurite does not enforce them
(platform.md): sizes counted as Azure counts them, oversized values clipped and flagged."""

from __future__ import annotations

import json
import random
import string
from dataclasses import fields, replace
from datetime import UTC, datetime

import orjson
import pytest
from azure.data.tables import EdmType, EntityProperty
from azure.data.tables._serialize import _add_entity_properties  # what the SDK sends

from pipeline.call.join import CallState, add_fragment
from pipeline.ingest.batch import process_batch, transform
from pipeline.model import Call, EventIn, Facts, Fragment
from pipeline.settings import Config
from pipeline.store import limits, rows
from pipeline.store.account import Store
from tests.fixtures import apim, sources

T = datetime(2025, 3, 4, 10, 15, 2, tzinfo=UTC)


def test_entity_size_is_counted_as_azure_counts_it() -> None:
    entity = {
        "PartitionKey": "2025-03-04_0",  # 12 characters
        "RowKey": "abc",  # 3
        "Model": "gpt-4o",  # string: 8 + 2*5 + 4 + 2*6
        "Status": 200,  # Int32: 8 + 2*6 + 4
        "Big": EntityProperty(2**40, EdmType.INT64),  # 8 + 2*3 + 8
        "Streamed": True,  # Bool: 8 + 2*8 + 1
        "CallTime": T,  # DateTime: 8 + 2*8 + 8
        "Z": EntityProperty(b"\x00" * 10, EdmType.BINARY),  # 8 + 2*1 + 4 + 10
        "Emoji": "😀",  # one character, two UTF-16 units: 8 + 2*5 + 4 + 2*2
    }
    expected = (
        4
        + 2 * 15
        + (8 + 10 + 4 + 12)
        + (8 + 12 + 4)
        + (8 + 6 + 8)
        + (8 + 16 + 1)
        + (8 + 16 + 8)
        + (8 + 2 + 4 + 10)
        + (8 + 10 + 4 + 4)
    )
    assert limits.entity_size(entity) == expected


def test_a_string_over_32k_utf16_units_is_clipped_without_splitting_a_character() -> None:
    # 20,000 emoji are 20,000 Python characters but 40,000 UTF-16 units: over the limit.
    entity = {"PartitionKey": "p", "RowKey": "r", "ErrorMessage": "😀" * 20_000, "Model": "m"}
    out = limits.fit(entity)
    assert limits.utf16_units(out["ErrorMessage"]) <= limits.MAX_STRING_UNITS
    assert out["ErrorMessage"] == "😀" * (limits.MAX_STRING_UNITS // 2)
    assert out["Clipped"] == "ErrorMessage" and out["Model"] == "m"


def test_an_entity_over_1_mib_is_clipped_free_text_first() -> None:
    fill = "a" * 30_000
    entity: dict = {"PartitionKey": "p", "RowKey": "r", "PromptPreview": fill, "Url": fill}
    entity.update({f"Extra{i:02}": fill for i in range(20)})  # 22 × 60 KB ≈ 1.3 MB
    entity["Fragments"] = fill  # the join state is never clipped
    assert limits.entity_size(entity) > limits.MAX_ENTITY_BYTES
    out = limits.fit(entity)
    assert limits.entity_size(out) <= limits.MAX_ENTITY_BYTES
    clipped = out["Clipped"].split(",")
    assert clipped[:2] == ["PromptPreview", "Url"] and out["PromptPreview"] == ""
    assert out["Fragments"] == fill


def test_more_than_252_properties_keeps_the_keys_and_the_join_state() -> None:
    entity: dict = {"PartitionKey": "p", "RowKey": "r", "RawBlob": "b", "Fragments": "{}"}
    entity.update({f"P{i:03}": i for i in range(300)})
    out = limits.fit(entity)
    assert len(out) - 2 == limits.MAX_PROPERTIES  # Clipped included
    assert out["RawBlob"] == "b" and out["Fragments"] == "{}"
    assert "P299" in out["Clipped"]


def test_transactions_stop_at_100_operations_and_4_mib() -> None:
    small = [(None, {"PartitionKey": "p", "RowKey": str(i), "A": "x"}) for i in range(250)]
    assert [len(c) for c in limits.transactions(small)] == [100, 100, 50]
    big = [(None, {"PartitionKey": "p", "RowKey": str(i), "A": "x" * 30_000}) for i in range(100)]
    chunks = list(limits.transactions(big))
    assert len(chunks) > 1 and sum(len(c) for c in chunks) == 100
    for chunk in chunks:
        size = sum(
            max(limits.wire_size(e), limits.entity_size(e)) + limits.TRANSACTION_OP_OVERHEAD
            for _, e in chunk
        )
        assert size <= limits.MAX_TRANSACTION_BYTES


def test_wire_size_bounds_what_the_sdk_sends() -> None:
    # The SDK writes the entity with json.dumps (ASCII only): a CJK character is a 6-byte
    # escape, an emoji 12, a control character 6; binary goes as base64 with its type.
    for text in ("中" * 500, "😀" * 300, '\x01\n"' * 200, "plain ascii" * 50, "\ud83d" * 9):
        entity = {
            "PartitionKey": "2025-11-04_0",
            "RowKey": "中😀" * 10,
            "Text": text,
            "Big": EntityProperty(2**40, EdmType.INT64),
            "CallTime": T,
            "Z": EntityProperty(bytes(range(256)) * 40, EdmType.BINARY),
        }
        sent = len(json.dumps(_add_entity_properties(entity)))
        assert sent <= limits.wire_size(entity) <= 1.5 * sent + 1024
        assert limits.entity_size(entity) < sent  # why entity_size cannot cut transactions


def _wide(cid: str, text: str, **kw: object) -> dict[str, object]:
    """A GatewayLogs record whose every free-text fact is `text`."""
    return apim.gateway(
        cid,
        time="2025-11-04T10:00:00Z",
        path=f"/openai/deployments/{text}/chat/completions?api-version={text}",
        apiId=text,
        operationId=text,
        productId=text,
        apimSubscriptionId=text,
        userId=text,
        backendId=text,
        **kw,
    )


def test_rows_of_non_ascii_text_are_written_in_transactions_azure_accepts(
    cfg: Config, store: Store
) -> None:
    # 250 calls whose facts are CJK text: 100 rows are under 4 MiB by Azure's entity size,
    # over it as sent (each character a 6-byte escape). Azurite refuses such a transaction
    # (RequestBodyTooLarge), which failed the whole batch.
    text = "中" * 512
    events = [
        EventIn(
            apim.envelope(*(_wide(f"cjk-{e}-{i}", text) for i in range(25))),
            partition="0",
            sequence=e,
        )
        for e in range(10)
    ]
    for chunk in limits.transactions(transform(events, cfg).rows):
        sent = sum(len(json.dumps(_add_entity_properties(e))) for _, e in chunk)
        assert sent + len(chunk) * limits.TRANSACTION_OP_OVERHEAD <= limits.MAX_TRANSACTION_BYTES
    result = process_batch(events, cfg, store)
    assert (result.created, result.dead_letters) == (250, 0)
    assert len(list(store.audit.list_entities(select=["RowKey"]))) == 250


def _astral_call(cid: str, sequence: int = 0) -> list[EventIn]:
    """A call logged three ways (gateway, LLM log, policy message) with every text fact at
    600 emoji: its join state is about 20,000 characters but 40,000 UTF-16 units, past a
    string property's 32 K."""
    emoji = "😀" * 600
    response = {
        "id": emoji,
        "model": emoji,
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": emoji, "message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    gateway = _wide(cid, emoji, response=response, method=emoji, location=emoji)
    gateway["properties"]["url"] += "😀" * 3000
    llm = sources.llm_header(cid, deployment=emoji, model=emoji, time="2025-11-04T10:00:01Z")
    error = {"source": emoji, "reason": emoji, "message": emoji * 2}
    policy = orjson.loads(
        sources.policy_message(
            cid, status=500, section="on-error", time="2025-11-04T10:00:00Z", error=error
        )
    )
    for key in ("service", "region", "apiId", "operationId", "productId", "subscriptionId"):
        policy[key] = emoji
    policy["userId"] = policy["method"] = policy["backendId"] = emoji
    policy["url"] = policy["backendUrl"] = gateway["properties"]["url"]
    return [
        EventIn(apim.envelope(gateway, llm), partition="0", sequence=sequence),
        EventIn(orjson.dumps(policy), partition="0", sequence=sequence + 1),
    ]


def _plain(n: int, sequence: int) -> list[EventIn]:
    return [
        EventIn(
            apim.envelope(apim.gateway(f"plain-{i}", time="2025-11-04T10:00:00Z")),
            partition="0",
            sequence=sequence + i,
        )
        for i in range(n)
    ]


def test_a_join_state_of_astral_characters_is_compressed_and_its_batch_stored(
    cfg: Config, store: Store
) -> None:
    # Counted in characters, the join state stayed inline, Azure refused the row
    # (PropertyValueTooLarge) and the whole batch, ten ordinary calls with it, failed on
    # every delivery.
    cid = "astral-join-state"
    result = process_batch(_astral_call(cid) + _plain(10, 2), cfg, store)
    assert (result.created, result.dead_letters) == (11, 0)
    (row,) = store.find_rows(cid)
    assert "Fragments" not in row and "FragmentsZ" in row
    assert len(rows.state_from_entity(row).call.fragments) == 3


def test_a_row_table_storage_refuses_is_dead_lettered_and_the_rest_stored(
    cfg: Config, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A limit we do not model, made here by keeping the join state inline however long:
    # Azure refuses that row (400). The rows beside it in its transaction are written, the
    # call's records are dead-lettered with Azure's error code, and the batch succeeds.
    monkeypatch.setattr(rows, "FRAGMENTS_INLINE_UNITS", 10**9)
    cid = "refused-call"
    events = _plain(30, 0) + _astral_call(cid, 30) + _plain(30, 32)
    result = process_batch(events, cfg, store)
    assert result.created == 30 and not store.find_rows(cid)  # the plain ones: 30 distinct
    # The call's records (three, in two events) are dead letters: one per event, as stored
    # (its bytes hold them all), naming the first record and how many (not a copy of the
    # event per record: 2,000 records of a refused call were 2,000 copies of their event).
    placed = sorted((d.event.sequence, d.record_index, d.reason) for d in result.dead)
    assert placed == [
        (30, 0, "row refused by Table storage (PropertyValueTooLarge): 2 records of this event"),
        (31, 0, "row refused by Table storage (PropertyValueTooLarge)"),
    ]
    assert len(list(store.deadletters.list_blobs())) == 2


def _noisy_state(cid: str) -> CallState:
    """A call whose join state compresses past one 64 KiB binary property: eight LLM message
    chunks and a gateway record, each with every text fact at its parse-time limit, random."""
    rng = random.Random(5)

    def noise(n: int) -> str:
        return "".join(rng.choices(string.ascii_letters + string.digits + "éß中😀", k=n))

    state = CallState(Call(cid))
    for kind, part in [("gateway", 0)] + [("llm-msg", p) for p in range(1, 9)]:
        facts = Facts(call_time=T)
        for f in fields(Facts):
            if f.type == "str | None" and f.name != "clipped":
                limit = {"url": 2048, "error_message": 500}.get(f.name, 512)
                setattr(facts, f.name, noise(limit))
        add_fragment(state, Fragment(kind, cid, f"rid-{kind}-{part}", facts, part=part))
    return state


def test_a_join_state_past_64_kib_is_split_and_reads_back(cfg: Config, store: Store) -> None:
    cid = "big-join-state"
    state = _noisy_state(cid)
    stats = store.write_rows(rows.entities([state], cfg.shards))
    assert stats.created == 1
    (row,) = store.find_rows(cid)
    assert "Fragments" not in row and "FragmentsZ1" in row  # more than one 64 KiB property
    parts = [getattr(row[k], "value", row[k]) for k in row if k.startswith("FragmentsZ")]
    assert all(len(p) <= limits.MAX_BINARY_BYTES for p in parts)
    assert limits.entity_size(dict(row)) <= limits.MAX_ENTITY_BYTES
    back = rows.state_from_entity(row)
    assert rows.fragments_json(back) == rows.fragments_json(state)
    # Delivered again: recognised as the same call, nothing written.
    again = store.write_rows(rows.entities([_noisy_state(cid)], cfg.shards))
    assert (again.created, again.updated, again.unchanged) == (0, 0, 1)


def test_a_refused_row_across_midnight_leaves_the_calls_row_under_the_other_day(
    cfg: Config, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The call's LLM-log record is stored at 23:59:59; its other records, at 00:00, make a
    # merged row Azure refuses. The row already stored must stay (it was deleted after the
    # merged one was written under the new day: here the merged one never was).
    cid = "edge-refused"
    first = sources.llm_header(cid, time="2025-11-04T23:59:59Z")
    process_batch([EventIn(apim.envelope(first), partition="0", sequence=0)], cfg, store)
    monkeypatch.setattr(rows, "FRAGMENTS_INLINE_UNITS", 10**9)
    late = [
        replace(e, body=e.body.replace(b"2025-11-04T10:00:0", b"2025-11-05T00:00:0"))
        for e in _astral_call(cid, 10)
    ]
    result = process_batch(late, cfg, store)
    assert {d.reason[:52] for d in result.dead} == {
        "row refused by Table storage (PropertyValueTooLarge)"
    }
    (row,) = store.find_rows(cid)
    assert row["PartitionKey"].startswith("2025-11-04") and row["Sources"] == "llm"


def test_a_refused_merge_dead_letters_the_new_records_and_keeps_the_row(
    cfg: Config, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The merge path (the row exists): the merged row is refused; the rows merged beside it
    # in its transaction are written, the stored row stays as it was.
    cid = "merge-refused"
    first = EventIn(apim.envelope(apim.gateway(cid, time="2025-11-04T10:00:00Z")), partition="0")
    process_batch([first, *_plain(5, 1)], cfg, store)
    monkeypatch.setattr(rows, "FRAGMENTS_INLINE_UNITS", 10**9)
    again = [replace(e, sequence=100 + e.sequence) for e in _plain(5, 1)]  # merged, unchanged
    # The unchanged rows first: the create transaction fails on a conflict, not a refusal.
    result = process_batch(again + _astral_call(cid, 10), cfg, store)
    assert {d.reason[:52] for d in result.dead} == {
        "row refused by Table storage (PropertyValueTooLarge)"
    }
    assert result.unchanged == 5
    (row,) = store.find_rows(cid)
    assert row["Sources"] == "gateway"

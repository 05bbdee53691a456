"""Azure Table storage limits, enforced in code because Azurite does not enforce them
(platform.md): sizes counted as Azure counts them, oversized values clipped and flagged."""

from __future__ import annotations

import random
import string
from dataclasses import fields
from datetime import UTC, datetime

from azure.data.tables import EdmType, EntityProperty

from pipeline.call.join import CallState, add_fragment
from pipeline.model import Call, Facts, Fragment
from pipeline.settings import Config
from pipeline.store import limits, rows
from pipeline.store.account import Store

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
        size = sum(limits.entity_size(e) + limits.TRANSACTION_OP_OVERHEAD for _, e in chunk)
        assert size <= limits.MAX_TRANSACTION_BYTES


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

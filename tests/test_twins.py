"""A call logged once without an APIM correlation id (the ai-hub-gateway usage record, keyed
by the response id `chatcmpl-…`) and once with one (GatewayLogs, whose response body names
that id) is one call: one row, counted once, in either order, in one batch or across batches,
across midnight, and again after a redelivery."""

from __future__ import annotations

from datetime import date
from typing import Any

import orjson
import pytest

from pipeline.ingest.batch import process_batch
from pipeline.ingest.plan import plan_batch
from pipeline.kpi import daily
from pipeline.kpi.rollup import TOTAL_KEY
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.store import rows
from pipeline.store.account import Store
from tests.fixtures import aihub, apim, sources
from tests.test_ingest import all_rows
from tests.test_kpi import kpi_rows

RID = "chatcmpl-AHb7Tq2kXw9ZgS1rYv0mQdLp3NcEu"
D = date(2025, 3, 4)


def hub(rid: str = RID, when: str = "3/4/2025 10:15:01 AM", **over: Any) -> EventIn:
    """The accelerator's usage record: no APIM request id, the response id as `id`."""
    return EventIn(aihub.usage_record(id=rid, timestamp=when, **over))


def gateway(cid: str, rid: str = RID, when: str = "2025-03-04T10:15:02.1234567Z") -> EventIn:
    """GatewayLogs of the same call: its response body carries the response id."""
    record = apim.gateway(
        cid,
        time=when,
        deployment="chat",
        response=apim.chat_response("Book economy.", rid=rid, prompt=38, completion=222),
    )
    return EventIn(apim.envelope(record))


def calls_on(store: Store, day: date) -> int:
    total = kpi_rows(store, day).get(TOTAL_KEY)
    return 0 if total is None else total["Calls"]


@pytest.mark.parametrize("hub_first", [True, False])
def test_one_batch_one_call_whatever_the_order(hub_first: bool) -> None:
    cid = apim.new_id(f"twins-batch-{hub_first}")
    events = [hub(), gateway(cid)] if hub_first else [gateway(cid), hub()]
    plan = plan_batch(events, Config())
    assert list(plan.states) == [cid]
    (state,) = plan.states.values()
    assert not state.call.keyed_by_response
    assert {f.kind for f in state.call.fragments.values()} == {"gateway", "policy"}
    # Both records stay containable as the call's (a row that fails dead-letters both).
    assert len(plan.origins[cid]) == 2


@pytest.mark.parametrize("hub_first", [True, False])
def test_across_batches_the_rollup_joins_them(hub_first: bool, store: Store, cfg: Config) -> None:
    cid = apim.new_id(f"twins-across-{hub_first}")
    batches = [[hub()], [gateway(cid)]] if hub_first else [[gateway(cid)], [hub()]]
    for events in batches:
        process_batch(events, cfg, store)
    before = all_rows(store)
    assert set(before) == {cid, RID}
    assert before[RID]["KeyedBy"] == "ResponseId" and "KeyedBy" not in before[cid]

    daily.roll_up([D], cfg, store)
    after = all_rows(store)
    assert list(after) == [cid]
    row = after[cid]
    assert row["Sources"] == "gateway,policy"
    assert (row["PromptTokens"], row["CompletionTokens"]) == (38, 222)
    assert calls_on(store, D) == 1

    # Idempotent: rolling up again changes nothing.
    etag = row.metadata["etag"]
    daily.roll_up([D], cfg, store)
    assert all_rows(store)[cid].metadata["etag"] == etag
    assert calls_on(store, D) == 1


def test_the_message_storing_sample_and_gatewaylogs_are_one_call(store: Store, cfg: Config) -> None:
    """formats.md verbatim: the GatewayLogs record of §1.3 and the AI-Gateway message of §3 of
    the same call. The message's `apimRequestId` is the backend's `apim-request-id` header,
    not APIM's correlation id: the message joins the call by its response id, and the call
    is counted once, in one batch and across two."""
    gw = (apim.HERE / "gatewaylogs_chat.json").read_bytes()
    record = orjson.loads(gw)["records"][0]
    message = sources.shape_a(apim.load("policy_shape_a.json")["id"])
    cid, backend_id = record["correlationId"], orjson.loads(message)["apimRequestId"]
    assert backend_id == record["properties"]["backendResponseHeaders"]["apim-request-id"]
    assert backend_id != cid
    plan = plan_batch([EventIn(gw), EventIn(message)], Config())
    assert list(plan.states) == [cid]
    assert {f.kind for f in plan.states[cid].call.fragments.values()} == {"gateway", "policy"}

    for events in ([EventIn(message)], [EventIn(gw)]):
        process_batch(events, cfg, store)
    day = date.fromisoformat(record["time"][:10])
    daily.roll_up([day], cfg, store)
    after = all_rows(store)
    assert list(after) == [cid], list(after)
    assert after[cid]["TotalTokens"] == 42
    assert calls_on(store, day) == 1


def test_a_redelivered_usage_record_joins_again(store: Store, cfg: Config) -> None:
    cid = apim.new_id("twins-redelivered")
    process_batch([hub(), gateway(cid)], cfg, store)
    process_batch([hub()], cfg, store)  # the policy's event delivered again, alone
    assert set(all_rows(store)) == {cid, RID}
    daily.roll_up([D], cfg, store)
    assert list(all_rows(store)) == [cid]
    assert calls_on(store, D) == 1


def test_across_midnight_the_row_leaves_the_other_day(store: Store, cfg: Config) -> None:
    """The usage record says 23:59:50, GatewayLogs 00:00:01 the next day: rows on two days.
    Rolling both up leaves one row, and the day it left counts no call."""
    cid = apim.new_id("twins-midnight")
    process_batch([hub(when="3/4/2025 11:59:50 PM")], cfg, store)
    process_batch([gateway(cid, when="2025-03-05T00:00:01.5000000Z")], cfg, store)
    assert {e["PartitionKey"][:10] for e in all_rows(store).values()} == {
        "2025-03-04",
        "2025-03-05",
    }
    daily.roll_up([D, date(2025, 3, 5)], cfg, store)
    after = all_rows(store)
    assert list(after) == [cid] and after[cid]["PartitionKey"].startswith("2025-03-05")
    assert (calls_on(store, D), calls_on(store, date(2025, 3, 5))) == (0, 1)


def test_a_usage_record_without_twin_is_its_own_call(store: Store, cfg: Config) -> None:
    process_batch([hub()], cfg, store)
    daily.roll_up([D], cfg, store)
    (row,) = all_rows(store).values()
    assert (row["RowKey"], row["KeyedBy"], row["ResponseId"]) == (RID, "ResponseId", RID)
    assert calls_on(store, D) == 1


def test_a_response_id_two_calls_name_joins_neither(store: Store, cfg: Config) -> None:
    """Which call it belongs to cannot be told: three rows rather than a wrong join."""
    a, b = apim.new_id("twins-ambiguous-a"), apim.new_id("twins-ambiguous-b")
    process_batch([gateway(a), gateway(b)], cfg, store)
    process_batch([hub()], cfg, store)
    daily.roll_up([D], cfg, store)
    assert set(all_rows(store)) == {a, b, RID}
    plan = plan_batch([gateway(a), gateway(b), hub()], Config())
    assert set(plan.states) == {a, b, RID}


def test_a_twin_written_again_during_the_join_is_merged_anew(store: Store, cfg: Config) -> None:
    """The join deletes the usage row only if nobody wrote it since it was read: written
    meanwhile (a redelivery), it is read and merged again, then deleted."""
    cid = apim.new_id("twins-race")
    process_batch([gateway(cid)], cfg, store)
    process_batch([hub()], cfg, store)
    stale = all_rows(store)[RID]
    store.audit.update_entity({"PartitionKey": stale["PartitionKey"], "RowKey": RID})  # MERGE
    assert all_rows(store)[RID].metadata["etag"] != stale.metadata["etag"]
    owner = rows.partition_key(stale["CallTime"], cid, cfg.shards)
    assert store.audit_rows._join_twin(owner, cid, stale)
    after = all_rows(store)
    assert list(after) == [cid] and "policy" in after[cid]["Fragments"]


def test_the_twins_previews_reach_the_call_row(store: Store, cfg: Config) -> None:
    """AI-Gateway's message-storing shape without `apimRequestId` is keyed by its response id
    too; its prompt and completion are the call's only previews when GatewayLogs logged no
    bodies, and the join keeps them."""
    msg = orjson.loads(apim.text("policy_shape_a.json"))
    del msg["apimRequestId"]
    cid = apim.new_id("twins-previews")
    bare = apim.gateway(cid, time="2025-03-04T10:15:02Z", request=None, response=None)
    bare["properties"]["backendResponseBody"] = orjson.dumps({"id": msg["id"]}).decode()
    process_batch([EventIn(apim.envelope(bare))], cfg, store)
    process_batch([EventIn(orjson.dumps(msg))], cfg, store)
    daily.roll_up([D], cfg, store)
    (row,) = all_rows(store).values()
    assert row["RowKey"] == cid
    assert row["PromptPreview"].startswith("Summarise our travel policy")
    assert row["CompletionPreview"].startswith("Book economy class")

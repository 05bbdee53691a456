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
    # Without the backend's headers logged: the response id alone joins them.
    del record["properties"]["backendResponseHeaders"]
    gw = apim.envelope(record)
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


# --- an answer logged cut before its `id`: the backend's request id joins them ---------------

MESSAGE_RID = "chatcmpl-B7xYzQ1aBcDeFgHiJkLmNoPqRsTu"  # the id of formats.md §3's message


def long_answer(cid: str | None = None, backend_id: str | None = None) -> EventIn:
    """formats.md §1.3's GatewayLogs record with a 9 KB answer: Azure writes the body's keys
    sorted, so APIM's 8,192 bytes end before `id`; backendResponseHeaders still name the
    backend's `apim-request-id`, which the message-storing sample logs as `apimRequestId`."""
    record = orjson.loads((apim.HERE / "gatewaylogs_chat.json").read_bytes())["records"][0]
    props = record["properties"]
    if cid is not None:
        record["correlationId"] = cid
    if backend_id is not None:
        props["backendResponseHeaders"]["apim-request-id"] = backend_id
    body = orjson.loads(props["backendResponseBody"])
    body["choices"][0]["message"]["content"] = "Book economy class. " * 450
    full = orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()
    assert full.find('"id"') > 8192
    props["backendResponseBody"] = props["responseBody"] = apim.cut_utf8(full)
    return EventIn(apim.envelope(record))


def message(backend_id: str | None = None, rid: str = MESSAGE_RID) -> EventIn:
    """formats.md §3's AI-Gateway message of the same call (keyed by its response id)."""
    over = {} if backend_id is None else {"apimRequestId": backend_id}
    return EventIn(sources.shape_a(rid, **over))


FORMATS_CID = "5b1f3c2e-7a4d-4e2b-9f00-3c1a2b3c4d5e"
BACKEND_ID = "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"


@pytest.mark.parametrize("batches", ["one batch", "gateway first", "message first"])
def test_a_long_answer_and_its_message_are_one_call(
    batches: str, store: Store, cfg: Config
) -> None:
    """GatewayLogs lost the response id past its 8,192 bytes: the message joins the call by
    the backend's request id both name, in one batch and across two (by the rollup)."""
    gw, msg = long_answer(), message()
    if batches == "one batch":
        plan = plan_batch([msg, gw], Config())
        assert list(plan.states) == [FORMATS_CID]
        process_batch([gw, msg], cfg, store)
        assert list(all_rows(store)) == [FORMATS_CID]
    else:
        for events in [[gw], [msg]] if batches == "gateway first" else [[msg], [gw]]:
            process_batch(events, cfg, store)
        before = all_rows(store)
        assert set(before) == {FORMATS_CID, MESSAGE_RID}
        assert before[MESSAGE_RID]["BackendRequestId"] == BACKEND_ID
        assert "ResponseId" not in before[FORMATS_CID]
    daily.roll_up([D], cfg, store)
    after = all_rows(store)
    assert list(after) == [FORMATS_CID], list(after)
    row = after[FORMATS_CID]
    assert (row["BackendRequestId"], row["ResponseId"]) == (BACKEND_ID, MESSAGE_RID)
    assert row["Sources"] == "gateway,policy" and row["TotalTokens"] == 42
    assert calls_on(store, D) == 1


def test_a_backend_request_id_two_calls_name_joins_neither(store: Store, cfg: Config) -> None:
    """A forged GatewayLogs record naming the same backend id: which call the message is
    cannot be told, so three rows rather than a wrong join; in one batch and across two."""
    a, b = apim.new_id("twins-backend-a"), apim.new_id("twins-backend-b")
    plan = plan_batch([long_answer(a), long_answer(b), message()], Config())
    assert set(plan.states) == {a, b, MESSAGE_RID}
    process_batch([long_answer(a), long_answer(b)], cfg, store)
    process_batch([message()], cfg, store)
    daily.roll_up([D], cfg, store)
    assert set(all_rows(store)) == {a, b, MESSAGE_RID}
    assert calls_on(store, D) == 3


def test_a_backend_request_id_two_messages_name_joins_neither(store: Store, cfg: Config) -> None:
    """Two messages with different response ids naming the call's backend id (one forged):
    neither joins the call by it (both would put a forgery in its row)."""
    forged = "chatcmpl-Forged0000000000000000000000"
    plan = plan_batch([long_answer(), message(), message(rid=forged)], Config())
    assert set(plan.states) == {FORMATS_CID, MESSAGE_RID, forged}
    process_batch([long_answer()], cfg, store)
    process_batch([message(), message(rid=forged)], cfg, store)
    daily.roll_up([D], cfg, store)
    assert set(all_rows(store)) == {FORMATS_CID, MESSAGE_RID, forged}


def test_a_request_id_longer_than_any_is_no_key(store: Store, cfg: Config) -> None:
    """A value past MAX_REQUEST_ID_CHARS is a sender's text, not a request id: not stored,
    and it joins nothing (the rollup would hold such values while it scans the day)."""
    long_id = "0f1e2d3c-" * 15
    plan = plan_batch([long_answer(backend_id=long_id), message(long_id)], Config())
    assert set(plan.states) == {FORMATS_CID, MESSAGE_RID}
    process_batch([long_answer(backend_id=long_id)], cfg, store)
    process_batch([message(long_id)], cfg, store)
    daily.roll_up([D], cfg, store)
    after = all_rows(store)
    assert set(after) == {FORMATS_CID, MESSAGE_RID}
    assert all("BackendRequestId" not in row for row in after.values())


def test_the_backend_request_id_header_is_read_in_any_case() -> None:
    """HTTP header names are case-insensitive; APIM logs them as the backend wrote them."""
    record = orjson.loads((apim.HERE / "gatewaylogs_chat.json").read_bytes())["records"][0]
    headers = record["properties"]["backendResponseHeaders"]
    headers["APIM-Request-Id"] = headers.pop("apim-request-id")
    plan = plan_batch([EventIn(apim.envelope(record))], Config())
    (state,) = plan.states.values()
    assert state.call.fragments["gateway"].facts.backend_request_id == BACKEND_ID

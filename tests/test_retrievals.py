"""A read, list, update, delete or cancel of a stored chat completion or response is no new
generation: no tokens, no price, no response id, Operation `retrieval`; it is a call in the
KPIs, never an unknown-token or unpriced one. Azure OpenAI answers a read with the stored
object itself, the original call's `id` and `usage` included: taken for a generation, every
read was billed the original's tokens, and its row named the original's response id, which
either took the original's response-keyed usage record into the reader's row (the original
team's usage went to the reader) or, two rows naming it, blocked that join (the original
counted twice). Only a call whose method is unknown is read by its bodies, as before."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

import pytest

from pipeline.ingest.batch import process_batch, transform
from pipeline.ingest.plan import plan_batch
from pipeline.kpi import daily, rollup
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.store.account import Store
from tests.fixtures import aihub, apim, sources, stored
from tests.test_ingest import all_rows
from tests.test_kpi import kpi_rows

RID = "chatcmpl-VICTIM0002aBcDeFgHiJkLmNoPqRs"
RESP = "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b"
D = date(2025, 3, 4)
V1 = stored.V1
PREVIEW = "?api-version=2025-02-01-preview"

_COMPLETION = stored.stored_chat_completion(RID, prompt=90_000, completion=10_000)
_RESPONSE = stored.stored_response(RESP, input_tokens=120_000, output_tokens=30_000)
_MESSAGES = {
    "object": "list",
    "data": [{"id": f"{RID}-0", "role": "user", "content": "Summarise our travel policy."}],
    "first_id": f"{RID}-0",
    "last_id": f"{RID}-0",
    "has_more": False,
}
_INPUT_ITEMS = {
    "object": "list",
    "data": [
        {
            "type": "message",
            "id": "msg_1",
            "role": "user",
            "content": [{"type": "input_text", "text": "Summarise our travel policy."}],
        }
    ],
    "first_id": "msg_1",
    "last_id": "msg_1",
    "has_more": False,
}

# (method, path, answer, APIM operation id): every way a client addresses a stored generation.
ADDRESSED = {
    "get-completion": ("GET", f"{V1}/chat/completions/{RID}", _COMPLETION, "getChatCompletion"),
    "get-completion-preview": (
        "GET",
        f"/openai/chat/completions/{RID}{PREVIEW}",
        _COMPLETION,
        "getChatCompletion",
    ),
    "get-messages": (
        "GET",
        f"{V1}/chat/completions/{RID}/messages",
        _MESSAGES,
        "getChatCompletionMessages",
    ),
    "list-completions": (
        "GET",
        f"{V1}/chat/completions?limit=20",
        {"object": "list", "data": [_COMPLETION], "first_id": RID, "last_id": RID},
        "listChatCompletions",
    ),
    "update-metadata": (
        "POST",
        f"{V1}/chat/completions/{RID}",
        _COMPLETION,
        "updateChatCompletion",
    ),
    "delete-completion": (
        "DELETE",
        f"{V1}/chat/completions/{RID}",
        {"object": "chat.completion.deleted", "id": RID, "deleted": True},
        "deleteChatCompletion",
    ),
    "get-response": ("GET", f"{V1}/responses/{RESP}", _RESPONSE, "getResponse"),
    "get-response-preview": (
        "GET",
        f"/openai/responses/{RESP}?api-version=2025-04-01-preview",
        _RESPONSE,
        "getResponse",
    ),
    "input-items": ("GET", f"{V1}/responses/{RESP}/input_items", _INPUT_ITEMS, "listInputItems"),
    "delete-response": (
        "DELETE",
        f"{V1}/responses/{RESP}",
        {"id": RESP, "object": "response", "deleted": True},
        "deleteResponse",
    ),
    "cancel-response": ("POST", f"{V1}/responses/{RESP}/cancel", _RESPONSE, "cancelResponse"),
}


def rows_of(*records: dict[str, Any]) -> dict[str, Any]:
    """The audit rows of a batch (transform only: no storage), by RowKey."""
    t = transform([EventIn(apim.envelope(*records))], Config())
    return {entity["RowKey"]: entity for _, entity in t.rows}


def retrieval(case: str, seed: str | None = None, **kw: Any) -> dict[str, Any]:
    method, path, answer, operation_id = ADDRESSED[case]
    request = {"metadata": {"reviewed": "yes"}} if method == "POST" else None
    return stored.addressed(
        seed or f"retrieval-{case}",
        method,
        path,
        answer,
        request=request,
        operation_id=operation_id,
        **kw,
    )


@pytest.mark.parametrize("case", list(ADDRESSED))
def test_addressing_a_stored_generation_is_a_retrieval_with_no_tokens_price_or_response_id(
    case: str,
) -> None:
    (row,) = rows_of(retrieval(case)).values()
    assert row["Operation"] == "retrieval"
    assert row["Method"] == ADDRESSED[case][0]
    assert row["TokensSource"] == "none"
    for name in ("PromptTokens", "CompletionTokens", "TotalTokens", "CachedTokens"):
        assert row.get(name) is None, name
    # The original's id, model and verdicts are not this call's.
    assert row.get("ResponseId") is None
    assert row.get("Model") is None and row.get("FinishReason") is None
    assert row["Status"] == 200 and row["SubscriptionId"] == "team-attacker"


def test_the_creating_call_keeps_its_tokens_model_and_response_id() -> None:
    (row,) = rows_of(
        stored.chat_completion_created("created", RID, prompt=90, completion=10)
    ).values()
    assert (row["Operation"], row["Method"], row["ResponseId"]) == ("chat.completions", "POST", RID)
    assert (row["PromptTokens"], row["CompletionTokens"], row["TotalTokens"]) == (90, 10, 100)
    assert row["TokensSource"] == "reported" and row["Model"] == "gpt-4o-2024-08-06"


@pytest.mark.parametrize(
    "path",
    [
        f"{V1}/responses/compact",  # generates: OpenAI's reference, a POST that answers usage
        "/api/projects/responses/openai/v1/responses",  # a Foundry project named `responses`
        f"{V1}/responses/.",
    ],
)
def test_a_post_that_names_no_stored_item_is_a_generation(path: str) -> None:
    """A stored item is named by its id (`resp_…`, `chatcmpl-…`): any segment after the
    endpoint made `POST /responses/compact`, or a project named `responses`, a retrieval
    with no tokens and no price (found by an audit)."""
    answer = stored.stored_response(RESP, input_tokens=180_000, output_tokens=4_000)
    rec = stored.addressed(
        f"post-{path}", "POST", path, answer, request={"model": "gpt-4o", "input": "Hi"}
    )
    (row,) = rows_of(rec).values()
    assert row["Operation"] == "responses" and row["TokensSource"] == "reported"
    assert (row["PromptTokens"], row["CompletionTokens"]) == (180_000, 4_000)


def test_a_read_its_llm_log_reports_tokens_for_still_has_none() -> None:
    """APIM's LLM log of the read reports the stored answer's usage and its id as
    `RequestId`: they are the original's, whatever record says them."""
    rec = retrieval("get-completion", seed="retrieval-with-llm-log")
    header = sources.llm_header(rec["correlationId"], prompt=90_000, completion=10_000)
    header["properties"]["requestId"] = RID
    (row,) = rows_of(rec, header).values()
    assert row["Sources"] == "gateway,llm"
    assert row["TokensSource"] == "none" and row.get("TotalTokens") is None
    assert row.get("ResponseId") is None and row["Operation"] == "retrieval"


def test_polling_a_batch_bills_nothing_and_keeps_its_job() -> None:
    """A GET of any kind generates nothing: a batch's object reports the usage of work
    billed once, and every poll counted it again."""
    batch = {
        "id": "batch_6e1c9a80-2a3f-4d6e-9a3b-1f2e3d4c5b6a",
        "object": "batch",
        "endpoint": "/chat/completions",
        "status": "completed",
        "model": "gpt-4o-2024-08-06",
        "usage": {"input_tokens": 50_000, "output_tokens": 5_000, "total_tokens": 55_000},
    }
    rec = stored.addressed(
        "poll-batch", "GET", f"/openai/batches/{batch['id']}{PREVIEW}", batch, operation_id="x"
    )
    (row,) = rows_of(rec).values()
    assert (row["Operation"], row["JobId"]) == ("batches", batch["id"])
    assert row["TokensSource"] == "none" and row.get("PromptTokens") is None
    assert row.get("ResponseId") is None


def test_without_a_method_a_record_is_read_by_its_bodies_as_before() -> None:
    rec = retrieval("get-completion", seed="retrieval-no-method")
    for key in ("method", "backendMethod"):
        del rec["properties"][key]
    (row,) = rows_of(rec).values()
    assert row["Operation"] == "chat.completions" and row["ResponseId"] == RID
    assert row["TotalTokens"] == 100_000


def _victim(cid: str, bodies: bool) -> EventIn:
    return EventIn(
        apim.envelope(
            stored.chat_completion_created(
                cid, RID, prompt=45_000, completion=5_000, sub="team-hr", bodies=bodies
            )
        )
    )


def _usage_record(prompt: int, completion: int) -> EventIn:
    """The victim's ai-hub-gateway usage record: keyed by the response id."""
    return EventIn(
        aihub.usage_record(
            id=RID,
            timestamp="3/4/2025 10:15:01 AM",
            subscriptionId="team-hr",
            model="gpt-4o-2024-08-06",
            promptTokens=prompt,
            responseTokens=completion,
            totalTokens=prompt + completion,
        )
    )


def test_a_read_in_the_batch_does_not_block_the_usage_records_join() -> None:
    victim, attacker = apim.new_id("victim-in-batch"), retrieval("get-completion")
    plan = plan_batch(
        [
            _victim("victim-in-batch", True),
            _usage_record(45_000, 5_000),
            EventIn(apim.envelope(attacker)),
        ],
        Config(),
    )
    # The usage record joined its call; the reader's call is one of its own.
    assert set(plan.states) == {victim, attacker["correlationId"]}
    kinds = {f.kind for f in plan.states[victim].call.fragments.values()}
    assert kinds == {"gateway", "policy"}


def by_subscription(store: Store, day: date) -> dict[str, dict[str, Any]]:
    """The day's KPI rows summed by subscription."""
    out: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for key, row in kpi_rows(store, day).items():
        if key == rollup.TOTAL_KEY:
            continue
        sums = out[row.get("SubscriptionId") or "-"]
        for name in (*rollup.COUNTS, *rollup.TOKENS, "CostUsd"):
            sums[name] += row.get(name) or 0
    return out


def test_a_read_across_batches_neither_takes_nor_blocks_the_usage_record(
    store: Store, cfg: Config
) -> None:
    # The victim's call logged without bodies: only its usage record knows the tokens, and
    # it stays a call of its own (documented). A read by another team must not take it.
    process_batch([_victim("victim-no-bodies", False), _usage_record(90_000, 10_000)], cfg, store)
    process_batch([EventIn(apim.envelope(retrieval("get-completion")))], cfg, store)
    daily.roll_up([D], cfg, store)
    assert RID in all_rows(store)  # the usage record's row was not merged into the reader's
    subs = by_subscription(store, D)
    assert subs["team-hr"]["TotalTokens"] == 100_000 and subs["team-hr"]["CostUsd"] > 0
    reader = subs["team-attacker"]
    assert (reader["Calls"], reader["Succeeded"], reader["TotalTokens"]) == (1, 1, 0)
    assert reader["CostUsd"] == 0
    assert (reader["UnknownTokenCalls"], reader["UnpricedCalls"]) == (0, 0)


def test_a_read_on_the_day_leaves_the_original_counted_once(store: Store, cfg: Config) -> None:
    victim = apim.new_id("victim-bodies")
    process_batch([_victim("victim-bodies", True)], cfg, store)
    process_batch([_usage_record(45_000, 5_000)], cfg, store)
    process_batch([EventIn(apim.envelope(retrieval("get-completion")))], cfg, store)
    daily.roll_up([D], cfg, store)
    assert RID not in all_rows(store) and all_rows(store)[victim]["Sources"] == "gateway,policy"
    subs = by_subscription(store, D)
    assert (subs["team-hr"]["Calls"], subs["team-hr"]["TotalTokens"]) == (1, 50_000)
    assert (subs["team-attacker"]["Calls"], subs["team-attacker"]["TotalTokens"]) == (1, 0)


def test_a_retrieval_row_is_a_call_not_an_unknown_or_unpriced_one() -> None:
    acc = rollup.Accumulator()
    row = {"Status": 200, "Operation": "retrieval", "TokensSource": "none", "Model": None}
    acc.add_usage(row, lambda model, deployment: None)
    assert (acc.counts["Calls"], acc.counts["Succeeded"]) == (1, 1)
    assert (acc.counts["UnknownTokenCalls"], acc.counts["UnpricedCalls"]) == (0, 0)
    assert acc.cost() == 0 and not any(acc.tokens.values())


def test_the_rollup_reads_the_operation() -> None:
    assert "Operation" in rollup.AUDIT_COLUMNS

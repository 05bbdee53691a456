"""A call's TotalTokens follows its parts: never less than the sum of the known prompt and
completion counts, whatever a record reports as `total_tokens`; and a prompt and completion
adding up past what a call can have (MAX_CALL_TOKENS, each part within it) make the call's
tokens unknown everywhere the KPIs reach: an unknown-token, unpriced call, with no tokens in
the sums, the chargeback or the budgets. Before: a record priced on 10^6 + 10^6 tokens with
`total_tokens: 0` counted 0 tokens (token budgets read 0 while the cost counted it), and one
of 10^9 + 10^9 was priced (12,500 USD) with a total counted nowhere and in no
unknownTokenCalls."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.data.tables import EdmType, EntityProperty

from pipeline.call.usage import from_counts, normalise_usage
from pipeline.cli.chargeback import statement_text
from pipeline.ingest.batch import process_batch, transform
from pipeline.kpi import alerting, daily, prices, rollup
from pipeline.model import MAX_CALL_TOKENS, EventIn
from pipeline.settings import Config
from pipeline.store.account import Store
from tests.fixtures import apim, sources
from tests.test_kpi import kpi_rows

D = date(2025, 11, 12)
MILLION, BILLION = 10**6, 10**9


@pytest.mark.parametrize(
    ("prompt", "completion", "reported", "total"),
    [
        (MILLION, MILLION, 0, 2 * MILLION),  # a total below its parts: their sum
        (29, 13, 12, 42),
        (29, 13, None, 42),  # missing: the sum
        (29, 13, 50, 50),  # above the sum: as reported
        (29, None, 5, 29),  # below the known part: that part
        (29, None, None, None),  # a part unknown: no total
        (BILLION, BILLION, None, None),  # each part within the bound, the sum past it
        (BILLION, BILLION, 0, None),
        (BILLION, 0, None, BILLION),
    ],
)
def test_a_total_is_never_less_than_its_known_parts(
    prompt: int, completion: int | None, reported: int | None, total: int | None
) -> None:
    usage = from_counts(prompt, completion, reported, None, None, "reported")
    assert usage is not None
    assert (usage.prompt, usage.completion, usage.total) == (prompt, completion, total)


def test_every_usage_shape_gets_the_rule() -> None:
    chat = normalise_usage({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 0}, None)
    responses = normalise_usage({"input_tokens": 10, "output_tokens": 5, "total_tokens": 1}, None)
    embeddings = normalise_usage({"prompt_tokens": 8, "total_tokens": 0}, "embeddings")
    assert chat is not None and responses is not None and embeddings is not None
    assert (chat.total, responses.total, embeddings.total) == (15, 15, 8)


def _record(tag: str, usage: dict[str, int], sub: str, minute: int) -> dict[str, Any]:
    """A chat completion's GatewayLogs record whose answer reports `usage`."""
    rec = apim.gateway(apim.new_id(tag), time=f"{D}T10:{minute:02d}:00Z", apimSubscriptionId=sub)
    body = orjson.dumps({**apim.chat_response("Book economy."), "usage": usage}).decode()
    rec["properties"]["backendResponseBody"] = rec["properties"]["responseBody"] = body
    return rec


def test_each_source_stores_the_total_of_its_parts() -> None:
    """GatewayLogs' answer, the LLM log's header and an ai-hub-gateway usage record."""
    gw = _record(
        "zero-total",
        {"prompt_tokens": MILLION, "completion_tokens": MILLION, "total_tokens": 0},
        "team-x",
        0,
    )
    llm = sources.llm_header(apim.new_id("llm-zero-total"), prompt=29, completion=13)
    llm["properties"]["totalTokens"] = 0
    hub = sources.shape_b("chatcmpl-zeroTotal0001", totalTokens=3)
    t = transform([EventIn(apim.envelope(gw, llm)), EventIn(hub)], Config())
    totals = {e["RowKey"]: e.get("TotalTokens") for _, e in t.rows}
    assert totals == {
        gw["correlationId"]: 2 * MILLION,
        llm["correlationId"]: 42,
        "chatcmpl-zeroTotal0001": 42,
    }


def test_parts_past_what_a_call_can_have_make_an_unknown_unpriced_call(
    store: Store, cfg: Config, tmp_path: Path
) -> None:
    """The audit's two records, through ingest, rollup, chargeback and a token budget: every
    measure agrees on 2 * 10^6 tokens, and the 10^9 + 10^9 call is flagged, not priced."""
    budgets = tmp_path / "budgets.json"
    doc = {"name": "all-daily-tokens", "scope": {}, "period": "day", "tokens": 100_000}
    budgets.write_text(orjson.dumps({"budgets": [{**doc, "thresholds": [0.8, 1.0]}]}).decode())
    cfg = dataclasses.replace(cfg, budgets=str(budgets))
    zero = {"prompt_tokens": MILLION, "completion_tokens": MILLION, "total_tokens": 0}
    huge = {"prompt_tokens": BILLION, "completion_tokens": BILLION}
    records = [_record("zero", zero, "team-x", 0), _record("huge", huge, "team-y", 1)]
    process_batch([EventIn(apim.envelope(*records))], cfg, store)
    (zero_row,) = store.find_rows(records[0]["correlationId"])
    (huge_row,) = store.find_rows(records[1]["correlationId"])
    assert zero_row["TotalTokens"] == 2 * MILLION
    # The record is kept as reported, its total unknown: the rollup reads the call as unknown.
    assert (huge_row["PromptTokens"], huge_row.get("TotalTokens")) == (BILLION, None)

    daily.roll_up([D], cfg, store)
    total = kpi_rows(store, D)[rollup.TOTAL_KEY]
    assert (total["PromptTokens"], total["TotalTokens"]) == (MILLION, 2 * MILLION)
    assert (total["UnknownTokenCalls"], total["UnpricedCalls"]) == (1, 1)
    priced_alone = total["CostUsd"]
    assert 0 < priced_alone < 100  # gpt-4o at 10^6 + 10^6 tokens, not 12,500 USD

    lines = orjson.loads(statement_text(store, D, D, "subscription", "json"))
    assert lines["total"]["totalTokens"] == 2 * MILLION
    assert lines["total"]["unknownTokenCalls"] == 1
    assert lines["total"]["costUsd"] == pytest.approx(priced_alone)

    (spend,) = alerting.spends_at(cfg, store, datetime(2025, 11, 12, 23, 30, tzinfo=UTC))
    assert spend.tokens == 2 * MILLION and spend.cost == pytest.approx(priced_alone)


def _price(model: Any, deployment: Any) -> Any:
    return prices.load("").price(model, deployment, D)


@pytest.mark.parametrize(
    ("row", "tokens", "unknown"),
    [
        # Written before the rule (or by hand): the rollup mends the total from its parts.
        ({"PromptTokens": MILLION, "CompletionTokens": MILLION, "TotalTokens": 0}, 2 * MILLION, 0),
        ({"PromptTokens": MILLION, "CompletionTokens": MILLION}, 2 * MILLION, 0),
        # Parts past what a call can have: nothing counted, the call unknown and unpriced.
        ({"PromptTokens": BILLION, "CompletionTokens": BILLION, "TotalTokens": 0}, 0, 1),
    ],
)
def test_the_rollup_counts_a_rows_tokens_by_the_same_rule(
    row: dict[str, Any], tokens: int, unknown: int
) -> None:
    acc = rollup.Accumulator()
    stored = {
        "Status": 200,
        "TokensSource": "reported",
        "Model": "gpt-4o-2024-08-06",
        **{k: EntityProperty(v, EdmType.INT64) for k, v in row.items()},
    }
    acc.add_usage(stored, _price)
    assert acc.tokens["TotalTokens"] == tokens
    assert (acc.counts["UnknownTokenCalls"], acc.counts["UnpricedCalls"]) == (unknown, unknown)
    assert (acc.cost() == 0) == bool(unknown)
    assert acc.tokens["PromptTokens"] == (0 if unknown else MILLION)


def test_the_focus_export_bills_the_counts_the_kpis_price() -> None:
    """The FOCUS export priced any row whose parts were integers: 10^9 + 10^9 billed there,
    unpriced in the KPIs and chargeback (an audit's finding, the same rule now)."""
    from pipeline.export.focus import FocusDay

    def row(prompt: int, completion: int) -> dict[str, Any]:
        counts = {"PromptTokens": prompt, "CompletionTokens": completion}
        return {
            "Status": 200,
            "Model": "gpt-4o-2024-08-06",
            "Deployment": "chat-prod",
            **{k: EntityProperty(v, EdmType.INT64) for k, v in counts.items()},
        }

    focus = FocusDay(D, prices.load(""), None)
    focus.add(row(BILLION, BILLION))
    focus.add(row(1_000, 500))
    assert sum(r["ConsumedQuantity"] for r in focus.rows()) == 1_500


def test_the_bound_is_the_models() -> None:
    assert MAX_CALL_TOKENS == BILLION  # the cases above sit each part exactly at the bound

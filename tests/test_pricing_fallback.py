"""A call whose logged answer lost `model` (APIM cuts bodies at 8,192 bytes and Azure sorts the
answer's keys: `choices`, an embeddings call's `data`, come first) is priced as its
deployment's model: the price table's `deployments` map (any case or padding), else the model
Azure reported for that deployment on the same day's answered calls, learned only where APIM
routed by the deployment (its URL path), never from one a client names. Rollup, hourly usage
(chargeback, budgets) and the FOCUS export agree. Azurite for storage; expected costs are
computed here from the audit rows and the price table, not by the code under test."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.export.columns import CALLS_READ
from pipeline.export.focus import FocusDay
from pipeline.ingest.batch import process_batch
from pipeline.kpi import daily, packed, prices, rollup
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.store.account import Store
from pipeline.store.kpis import KpiStore
from tests.fixtures import apim, sources

DAY = date(2025, 11, 4)
TABLE = prices.load("")
GPT4O, MINI, OLD4O = "gpt-4o-2024-08-06", "gpt-4o-mini-2024-07-18", "gpt-4o-2024-05-13"
ANSWER = ("Here is a detailed travel policy paragraph with many words. " * 200)[:12000]


def at(minute: int) -> str:
    return f"{DAY}T10:{minute:02d}:07.1234567Z"


def answered(tag: str, deployment: str, model: str, minute: int, **kw: Any) -> dict[str, Any]:
    """A short answer, logged whole: its model and usage are on the row."""
    response = apim.chat_response("ok", model=model, prompt=1000, completion=200)
    return apim.gateway(
        apim.new_id(tag), time=at(minute), deployment=deployment, response=response, **kw
    )


def long_answer(tag: str, deployment: str, minute: int) -> dict[str, Any]:
    """An answer of ~12 KB: the logged body ends inside `choices`, before `model` and `usage`
    (formats.md §1.3, §1.4), so the row has no model and estimated tokens."""
    full = (
        orjson.dumps(
            apim.chat_response(ANSWER, prompt=40, completion=2400), option=orjson.OPT_SORT_KEYS
        ).decode()
        + "\n"
    )
    return apim.gateway(
        apim.new_id(tag),
        time=at(minute),
        deployment=deployment,
        request=apim.chat_request(("user", "Write a very long travel policy."), max_tokens=4000),
        response=apim.cut_utf8(full),
        responseSize=len(full.encode()),
    )


def claimed(tag: str, deployment: str, model: str, minute: int) -> dict[str, Any]:
    """A v1 route: the deployment is the request body's `model`, the client's word."""
    return apim.gateway(
        apim.new_id(tag),
        time=at(minute),
        path="/openai/v1/chat/completions",
        request={"model": deployment, "messages": [{"role": "user", "content": "hi"}]},
        response=apim.chat_response("ok", model=model, prompt=5000, completion=900),
    )


def ingest_and_roll(store: Store, cfg: Config, *records: dict[str, Any] | bytes) -> None:
    bodies = [r if isinstance(r, bytes) else apim.envelope(r) for r in records]
    process_batch([EventIn(b, sequence=i + 1) for i, b in enumerate(bodies)], cfg, store)
    daily.roll_up([DAY], cfg, store)


def audit_rows(store: Store) -> list[dict[str, Any]]:
    return [
        {k: getattr(v, "value", v) for k, v in e.items()}
        for e in KpiStore(store).audit_rows(f"{DAY}", CALLS_READ)
    ]


def kpi(store: Store) -> dict[str, dict[str, Any]]:
    return {
        e["RowKey"]: {k: getattr(v, "value", v) for k, v in e.items()}
        for e in KpiStore(store).rows(f"{DAY}", f"{DAY}")
    }


def cost_at(model: str, row: dict[str, Any]) -> float:
    price = TABLE.price(model, None, DAY)
    assert price is not None
    return price.cost(row["PromptTokens"], row["CompletionTokens"], row.get("CachedTokens"))


def day_cost_is(store: Store, unlogged: str, deployment_priced: int) -> float:
    """The day's KPI cost is each row's at its model, `unlogged` for the rows without one;
    returns it."""
    want = sum(cost_at(r.get("Model") or unlogged, r) for r in audit_rows(store))
    total = kpi(store)["_total"]
    assert total["CostUsd"] == pytest.approx(want, abs=1e-8)
    assert total[rollup.DEPLOYMENT_PRICED] == deployment_priced
    return want


def usage_cost(store: Store, level: str) -> tuple[float, int]:
    """The day's cost and deployment-priced calls on KpiHourly at `level` (what budgets read
    by hour, chargeback by day and user)."""
    rows = KpiStore(store).usage_rows(f"{DAY}", f"{DAY}", rollup.LEVEL_RANGES[level])
    if level != "hour":
        rows = packed.unpack(rows)
    cost, fallback = 0.0, 0
    for row in rows:
        cost += float(getattr(row["CostUsd"], "value", row["CostUsd"]))
        fallback += row.get(rollup.DEPLOYMENT_PRICED, 0)
    return cost, fallback


def focus_rows(store: Store, table: prices.PriceTable) -> list[dict[str, Any]]:
    focus = FocusDay(DAY, table, None)
    for row in KpiStore(store).audit_rows(f"{DAY}", CALLS_READ):
        focus.add(row)
    return focus.rows()


def test_a_long_answer_is_priced_as_the_model_its_deployment_answered_with_that_day(
    cfg: Config, store: Store
) -> None:
    ingest_and_roll(
        store,
        cfg,
        answered("fb-short", "chat-prod", GPT4O, 1),
        long_answer("fb-long", "chat-prod", 2),
        long_answer("fb-long-case", "Chat-Prod", 3),  # another spelling of the deployment
    )
    rows = audit_rows(store)
    long_rows = [r for r in rows if r["TokensSource"] == "estimated"]
    assert len(long_rows) == 2
    # The row is not rewritten: it says what was logged.
    assert all(r.get("Model") is None and r["BodyTruncated"] for r in long_rows)
    want = sum(cost_at(GPT4O, r) for r in rows)

    total = kpi(store)["_total"]
    assert total["UnpricedCalls"] == 0
    assert total[rollup.DEPLOYMENT_PRICED] == 2
    assert total["CostUsd"] == pytest.approx(want, abs=1e-8)
    # KpiDaily groups spellings apart unless a name is written down: chat-prod's own call.
    group = kpi(store)[
        rollup.kpi_row_key(("chat-prod", None, "team-finance", "ai-standard", "aoai-weu"))
    ]
    (mine,) = [r for r in long_rows if r["Deployment"] == "chat-prod"]
    assert group["CostUsd"] == pytest.approx(cost_at(GPT4O, mine), abs=1e-8)
    assert group[rollup.DEPLOYMENT_PRICED] == 1
    # Hourly usage (budgets) and the packed day and user rows (chargeback): the same cost.
    for level in ("hour", "day", "user"):
        cost, fallback = usage_cost(store, level)
        assert cost == pytest.approx(total["CostUsd"], abs=1e-9) and fallback == 2, level
    # FOCUS: the same price, the model it was priced as named, the total the KPIs'.
    focus = focus_rows(store, TABLE)
    assert sum(r["BilledCost"] for r in focus) == pytest.approx(total["CostUsd"], abs=1e-8)
    assert all(r["x_Priced"] and r["SkuId"] == GPT4O for r in focus)


def test_an_embeddings_deployment_learns_its_model_from_a_call_the_llm_log_joined(
    cfg: Config, store: Store
) -> None:
    """1,536 floats never fit in 8 KB: no embeddings answer logs its model. One call whose
    LLM log was joined names it for the deployment's other calls of the day."""
    texts = ["Quarterly revenue grew by eleven percent in the northern region. " * 3] * 4
    emb = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": [0.01234567] * 1536} for i in range(4)
        ],
        "model": "text-embedding-3-large",
        "usage": {"prompt_tokens": 160, "total_tokens": 160},
    }
    full = orjson.dumps(emb, option=orjson.OPT_SORT_KEYS).decode() + "\n"

    def call(tag: str, minute: int) -> dict[str, Any]:
        return apim.gateway(
            apim.new_id(tag),
            time=at(minute),
            path="/openai/deployments/embed-large/embeddings?api-version=2024-10-21",
            request={"input": texts},
            response=apim.cut_utf8(full),
            operationId="embeddings_create",
            responseSize=len(full.encode()),
        )

    joined = call("fb-emb-llm", 1)
    llm = sources.llm_header(
        joined["correlationId"],
        time=at(1),
        deployment="embed-large",
        model="text-embedding-3-large",
        prompt=160,
        completion=0,
    )
    ingest_and_roll(store, cfg, apim.envelope(joined, llm), call("fb-emb-alone", 2))
    rows = audit_rows(store)
    alone = [r for r in rows if r.get("Model") is None]
    assert len(alone) == 1 and alone[0]["TokensSource"] == "estimated"
    total = kpi(store)["_total"]
    assert (total["UnpricedCalls"], total[rollup.DEPLOYMENT_PRICED]) == (0, 1)
    want = sum(cost_at("text-embedding-3-large", r) for r in rows)
    assert total["CostUsd"] == pytest.approx(want, abs=1e-10) and want > 0


def test_a_deployment_a_client_names_teaches_no_model(cfg: Config, store: Store) -> None:
    """v1 calls naming `chat-prod` in their body but answered by gpt-4o-mini (a body with the
    key twice, a proxy) outnumber chat-prod's routed answers: they must not make chat-prod's
    long answers cheap, nor price `chat-eu`, which only clients named."""
    ingest_and_roll(
        store,
        cfg,
        answered("fb-routed", "chat-prod", GPT4O, 1),
        *(claimed(f"fb-claim-{i}", "chat-prod", MINI, 2 + i) for i in range(3)),
        *(claimed(f"fb-claim-eu-{i}", "chat-eu", MINI, 6 + i) for i in range(3)),
        long_answer("fb-long-prod", "chat-prod", 10),
        long_answer("fb-long-eu", "chat-eu", 11),
    )
    rows = audit_rows(store)
    claims = [r for r in rows if r["Url"].endswith("/openai/v1/chat/completions")]
    assert {(r["Deployment"], r["Model"]) for r in claims} == {
        ("chat-prod", MINI),
        ("chat-eu", MINI),
    }
    long_prod, long_eu = (
        next(r for r in rows if r.get("Model") is None and r["Deployment"] == d)
        for d in ("chat-prod", "chat-eu")
    )
    want = sum(cost_at(r.get("Model") or GPT4O, r) for r in rows if r is not long_eu)
    total = kpi(store)["_total"]
    assert (total["UnpricedCalls"], total[rollup.DEPLOYMENT_PRICED]) == (1, 1)
    assert total["CostUsd"] == pytest.approx(want, abs=1e-8)
    focus = focus_rows(store, TABLE)
    assert sum(r["BilledCost"] for r in focus) == pytest.approx(want, abs=1e-8)
    assert {r["x_Priced"] for r in focus if r["ResourceId"] == "chat-eu" and not r["SkuId"]} == {
        False
    }
    assert long_prod["TokensSource"] == "estimated"


def test_a_deployment_that_answered_with_two_models_is_priced_as_the_more_frequent(
    cfg: Config, store: Store
) -> None:
    """Upgraded mid-day: twice gpt-4o-2024-05-13, once gpt-4o-2024-08-06 (half the price)."""
    ingest_and_roll(
        store,
        cfg,
        answered("fb-old-1", "chat-prod", OLD4O, 1),
        answered("fb-new-1", "chat-prod", GPT4O, 2),
        answered("fb-old-2", "chat-prod", OLD4O, 3),
        long_answer("fb-long-upgraded", "chat-prod", 4),
    )
    day_cost_is(store, OLD4O, deployment_priced=1)


def test_the_learned_choice_is_the_same_in_any_order_and_ties_go_to_the_least_name() -> None:
    url = "https://contoso-apim.azure-api.net/openai/deployments/{}/chat/completions"
    calls = [("chat-prod", GPT4O)] * 3 + [("chat-prod", OLD4O)] * 3 + [("mini", MINI)] * 2
    calls += [("Mini", GPT4O)] * 3  # another spelling of `mini`: one deployment
    for seed in range(5):
        random.Random(seed).shuffle(calls)
        learned = prices.DeploymentModels()
        for deployment, model in calls:
            learned.learn(deployment, model, url.format(deployment), False)
        learned.learn("chat-prod", MINI, url.format("chat-prod"), True)  # failed: not learned
        assert learned.chosen() == {"chat-prod": OLD4O, "mini": GPT4O}


def test_the_learning_keeps_a_bounded_set_of_pairs_whatever_the_order() -> None:
    """Forged records naming 12,000 (deployment, model) pairs: at most MAX_LEARNED_PAIRS are
    kept, the same ones in any order."""
    url = "https://contoso-apim.azure-api.net/openai/deployments/{}/chat/completions"
    pairs = [(f"dep-{i}", f"model-{i % 7}") for i in range(prices.MAX_LEARNED_PAIRS + 2_000)]
    chosen = []
    for seed in (1, 2):
        random.Random(seed).shuffle(pairs)
        learned = prices.DeploymentModels()
        for deployment, model in pairs:
            learned.learn(deployment, model, url.format(deployment), False)
        assert len(learned.chosen()) == prices.MAX_LEARNED_PAIRS
        chosen.append(learned.chosen())
    assert chosen[0] == chosen[1]


def test_deployments_waiting_for_their_model_are_bounded_by_the_days_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Successful calls with no model on 3,000 deployment names from one user: the names past
    the rollup's cap (grouped as OTHER) do not wait in every accumulator; they stay unpriced."""
    seen: list[int] = []
    resolve = rollup._resolve

    def spy(folded: rollup.DayRollup, *args: Any) -> None:
        seen.extend(len(a.pending or ()) for a in (*folded.hours.values(), *folded.users.values()))
        resolve(folded, *args)

    monkeypatch.setattr(rollup, "_resolve", spy)
    n = rollup.MAX_VALUES_PER_DAY + 1_000
    rows = [
        {
            "Deployment": f"dep-{i}",
            "Status": 200,
            "PromptTokens": 10,
            "CompletionTokens": 5,
            "TokensSource": "estimated",
            "CallerUserId": "u-1",
            "CallTime": datetime(2025, 11, 4, 10, tzinfo=UTC),
        }
        for i in range(n)
    ]
    total = rollup.rollup_day(rows, DAY, TABLE).daily[-1]
    assert max(seen) == rollup.MAX_VALUES_PER_DAY
    assert total["UnpricedCalls"] == n and total["CostUsd"] == 0


def with_map(cfg: Config, tmp_path: Path, deployments: dict[str, str]) -> Config:
    doc = orjson.loads(prices.BUNDLED.read_bytes())
    doc["deployments"] = deployments
    path = tmp_path / "prices.json"
    path.write_bytes(orjson.dumps(doc))
    return replace(cfg, price_table=str(path))


def test_the_deployments_map_names_a_deployment_in_any_case_or_padding(
    cfg: Config, store: Store, tmp_path: Path
) -> None:
    mapped = with_map(cfg, tmp_path, {" Chat-Prod": GPT4O})
    table = prices.load(mapped.price_table)
    ingest_and_roll(
        store,
        mapped,
        long_answer("fb-map-upper", "CHAT-PROD", 1),
        long_answer("fb-map-lower", "chat-prod", 2),
    )
    rows = audit_rows(store)
    assert {r["Deployment"] for r in rows} == {"CHAT-PROD", "chat-prod"}
    total = kpi(store)["_total"]
    # The operator's map, not the day's learning: not counted as deployment-priced.
    assert (total["UnpricedCalls"], total[rollup.DEPLOYMENT_PRICED]) == (0, 0)
    assert total["CostUsd"] == pytest.approx(sum(cost_at(GPT4O, r) for r in rows), abs=1e-8)
    assert sum(r["BilledCost"] for r in focus_rows(store, table)) == pytest.approx(
        total["CostUsd"], abs=1e-8
    )


def test_the_deployments_map_comes_before_what_the_day_learned(
    cfg: Config, store: Store, tmp_path: Path
) -> None:
    mapped = with_map(cfg, tmp_path, {"chat-prod": MINI})
    ingest_and_roll(
        store,
        mapped,
        answered("fb-first-short", "chat-prod", GPT4O, 1),
        long_answer("fb-first-long", "chat-prod", 2),
    )
    want = day_cost_is(store, MINI, deployment_priced=0)
    focus = focus_rows(store, prices.load(mapped.price_table))
    assert sum(r["BilledCost"] for r in focus) == pytest.approx(want, abs=1e-8)
    assert {r["SkuId"] for r in focus} == {GPT4O, MINI}


def test_two_spellings_of_a_deployment_mapped_apart_are_refused() -> None:
    doc = orjson.loads(prices.BUNDLED.read_bytes())
    doc["deployments"] = {"chat-prod": GPT4O, "CHAT-PROD ": MINI}
    with pytest.raises(prices.PriceTableError, match="deployments"):
        prices.PriceTable(doc, "test")
    doc["deployments"] = {"chat-prod": GPT4O, "CHAT-PROD ": GPT4O}
    assert prices.PriceTable(doc, "test").price(None, "Chat-Prod", DAY) is not None


def test_an_estimate_with_no_answer_to_count_is_a_call_of_unknown_tokens(
    cfg: Config, store: Store
) -> None:
    """A stream whose answer was not logged (the prompt estimated, the completion unknown) is
    a successful call whose tokens are unknown, as the KPI says: it was unpriced, and
    UnknownTokenCalls did not count it (only rows with no estimate at all were)."""
    record = answered("unknown-completion", "chat-prod", GPT4O, 3)
    request = orjson.dumps({"messages": [{"role": "user", "content": "Hi."}], "stream": True})
    record["properties"]["requestBody"] = record["properties"]["backendRequestBody"] = (
        request.decode()
    )
    for key in ("responseBody", "backendResponseBody"):
        record["properties"].pop(key)
    ingest_and_roll(store, cfg, record)
    (row,) = audit_rows(store)
    assert row["TokensSource"] == "estimated" and row.get("CompletionTokens") is None
    total = kpi(store)[rollup.TOTAL_KEY]
    assert (total["UnknownTokenCalls"], total["UnpricedCalls"], total["Calls"]) == (1, 1, 1)

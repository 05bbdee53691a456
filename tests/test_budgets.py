"""Budgets: periods and spend up to the last full hour (pure), and on Azurite with a real
webhook receiver: each threshold alerts exactly once across repeated checks, two checkers at
once, a replay of the same events and a re-roll; a webhook that is down gets the alert
later, once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.cli.receiver import Receiver
from pipeline.ingest.batch import process_batch
from pipeline.kpi import alerting, budgets, daily
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.store.account import Store
from tests.test_chargeback import DAYS, _fields, corpus, message

AT = datetime(2025, 11, 5, 18, 30, tzinfo=UTC)  # hours before 18:00 on 2025-11-05 count


def tokens_before(
    calls: list[dict[str, Any]], at: datetime, day_only: bool, subscription: str | None = None
) -> int:
    """Total tokens of successful calls in the hours over at `at` (this day, or the month),
    from the corpus itself: the oracle does not use the code under test."""
    cut = at.replace(minute=0, second=0, microsecond=0)
    total = 0
    for c in calls:
        t = datetime.fromisoformat(c["time"].replace("Z", "+00:00"))
        if subscription is not None and c["subscription"] != subscription:
            continue
        if c["status"] == 200 and t < cut and (not day_only or t.date() == at.date()):
            total += c["prompt"] + c["completion"]
    return total


@pytest.fixture
def estate(store: Store, cfg: Config, tmp_path: Path) -> tuple[Config, list[dict[str, Any]]]:
    calls = corpus()
    day_tokens = tokens_before(calls, AT, day_only=True)
    month_tokens = tokens_before(calls, AT, day_only=False)
    doc = {
        "budgets": [
            # 0.5 and 0.8 of the limit are reached, 1.0 is not.
            {
                "name": "all-daily-tokens",
                "scope": {},
                "period": "day",
                "tokens": round(day_tokens / 0.9),
                "thresholds": [0.5, 0.8, 1.0],
            },
            # Reached in full; the forecast too (the month is a sixth gone, spend is over).
            {
                "name": "month-tokens",
                "scope": {"subscription": "TEAM-CLAIMS"},
                "period": "month",
                "tokens": 1000,
                "thresholds": [1.0],
                "forecast": True,
            },
            {
                "name": "nothing-spent",
                "scope": {"team": "Nobody"},
                "period": "week",
                "amountUsd": 5,
            },
        ]
    }
    path = tmp_path / "budgets.json"
    path.write_bytes(orjson.dumps(doc))
    cfg = Config(**{**_fields(cfg), "budgets": str(path)})
    events = [EventIn(message(c)) for c in calls]
    for i in range(0, len(events), 60):
        process_batch(events[i : i + 60], cfg, store)
    assert month_tokens > day_tokens > 0
    return cfg, calls


EXPECTED = {
    "all-daily-tokens|2025-11-05|threshold|0.5",
    "all-daily-tokens|2025-11-05|threshold|0.8",
    "month-tokens|2025-11|threshold|1.0",
    "month-tokens|2025-11|forecast|1.0",
}


def with_webhook(cfg: Config, receiver: Receiver) -> Config:
    return Config(**{**_fields(cfg), "alert_webhook": receiver.url})


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerting, "POST_BACKOFF_S", 0.01)


def test_each_threshold_alerts_once_across_checks_replays_and_re_rolls(
    estate: tuple[Config, list[dict[str, Any]]], store: Store
) -> None:
    cfg, calls = estate
    with Receiver() as receiver:
        cfg = with_webhook(cfg, receiver)
        first = alerting.check(cfg, store, AT)
        assert {a.id for a in first.decided} == EXPECTED
        alerting.check(cfg, store, AT)
        # The same events delivered again, and the days rolled up again.
        process_batch([EventIn(message(c)) for c in calls], cfg, store)
        daily.roll_up(DAYS, cfg, store)
        again = alerting.check(cfg, store, AT)
        assert not again.decided and not again.delivered
    ids = [a["id"] for a in receiver.received]
    assert sorted(ids) == sorted(EXPECTED)  # each exactly once
    daily_half = next(a for a in receiver.received if a["id"].endswith("threshold|0.5"))
    assert daily_half["schema"] == "aoai-audit-alert/1" and daily_half["metric"] == "tokens"
    assert daily_half["spent"] == tokens_before(calls, AT, day_only=True)
    assert daily_half["text"].startswith("Budget all-daily-tokens: 90% of ")
    assert daily_half["at"] == "2025-11-05T18:30:00Z"


def test_an_hour_that_is_not_over_does_not_count(
    estate: tuple[Config, list[dict[str, Any]]], store: Store
) -> None:
    cfg, calls = estate
    at = AT.replace(hour=18, minute=59)
    (day,) = [s for s in alerting.spends_at(cfg, store, at) if s.budget.name == "all-daily-tokens"]
    assert day.tokens == tokens_before(calls, AT, day_only=True)
    later = AT.replace(hour=23)
    (day,) = [
        s for s in alerting.spends_at(cfg, store, later) if s.budget.name == "all-daily-tokens"
    ]
    assert day.tokens == tokens_before(calls, later, day_only=True) > 0


def test_two_checkers_at_once_send_each_alert_once(
    estate: tuple[Config, list[dict[str, Any]]], store: Store
) -> None:
    cfg, _ = estate
    daily.roll_up(DAYS, cfg, store)  # the checkers then race on alerts, not on the rollup
    with Receiver() as receiver:
        cfg = with_webhook(cfg, receiver)
        stores = [Store(cfg), Store(cfg)]
        barrier = threading.Barrier(2)
        results: list[alerting.CheckResult] = []

        def run(s: Store) -> None:
            barrier.wait()
            results.append(alerting.check(cfg, s, AT))

        threads = [threading.Thread(target=run, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(a["id"] for a in receiver.received) == sorted(EXPECTED)
    assert sum(len(r.decided) for r in results) == len(EXPECTED)


def test_a_webhook_that_is_down_gets_the_alert_later_once(
    estate: tuple[Config, list[dict[str, Any]]], store: Store
) -> None:
    cfg, _ = estate
    with Receiver() as receiver:
        cfg = with_webhook(cfg, receiver)
        receiver.status = 503
        down = alerting.check(cfg, store, AT)
        assert set(down.failed) == EXPECTED and down.failed[next(iter(EXPECTED))] == "HTTP 503"
        # Each alert was tried once in this check (its attempts), not again by the retry loop.
        assert receiver.refused == len(EXPECTED) * alerting.POST_ATTEMPTS
        still = alerting.check(cfg, store, AT)
        assert not still.decided and set(still.failed) == EXPECTED
        assert receiver.received == [] and receiver.refused > 0
        receiver.status = 200
        up = alerting.check(cfg, store, AT)
        assert set(up.delivered) == EXPECTED and not up.failed
        alerting.check(cfg, store, AT)
    assert sorted(a["id"] for a in receiver.received) == sorted(EXPECTED)


def test_a_receiver_that_got_it_does_not_get_it_again_while_another_is_down(
    estate: tuple[Config, list[dict[str, Any]]], store: Store
) -> None:
    cfg, _ = estate
    with Receiver() as up, Receiver() as down:
        down.status = 503
        cfg = Config(**{**_fields(cfg), "alert_webhook": f"{up.url}, {down.url}"})
        first = alerting.check(cfg, store, AT)
        assert set(first.failed) == EXPECTED
        down.status = 200
        second = alerting.check(cfg, store, AT)
        assert set(second.delivered) == EXPECTED
        alerting.check(cfg, store, AT)
    assert sorted(a["id"] for a in up.received) == sorted(EXPECTED)
    assert sorted(a["id"] for a in down.received) == sorted(EXPECTED)
    # The row names the receivers that have it by digest, never by URL (a secret).
    rows = list(store.budget_alerts.list_entities())
    assert all(up.url not in str(dict(r)) for r in rows)


def test_an_alert_being_delivered_is_not_delivered_twice(
    estate: tuple[Config, list[dict[str, Any]]], store: Store
) -> None:
    """The decider holds a lease while it posts: another checker that finds the alert
    undelivered meanwhile leaves it alone."""
    cfg, _ = estate
    with Receiver() as receiver:
        receiver.status = 503
        cfg = with_webhook(cfg, receiver)
        alerting.check(cfg, store, AT)  # decided, delivery failed: lease released
        receiver.status = 200
        rows = alerting.AlertStore(store).undelivered()
        now = datetime.now(UTC)
        taken = alerting.AlertStore(store).claim(rows[0], now)
        assert taken is not None
        assert alerting.AlertStore(store).claim(rows[0], now) is None  # stale ETag
        assert alerting.AlertStore(store).claim(taken, now) is None  # leased
        result = alerting.check(cfg, store, AT, now=now)
        assert len(result.delivered) == len(EXPECTED) - 1  # all but the one leased


# --- pure ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "at", "label", "start", "end"),
    [
        ("day", "2025-11-05T18:30", "2025-11-05", "2025-11-05", "2025-11-06"),
        ("week", "2025-11-05T18:30", "2025-W45", "2025-11-03", "2025-11-10"),
        ("week", "2025-12-31T23:59", "2026-W01", "2025-12-29", "2026-01-05"),
        ("month", "2025-12-31T23:59", "2025-12", "2025-12-01", "2026-01-01"),
        ("month", "2024-02-29T00:00", "2024-02", "2024-02-01", "2024-03-01"),
    ],
)
def test_periods_in_utc(kind: str, at: str, label: str, start: str, end: str) -> None:
    p = budgets.period_at(kind, datetime.fromisoformat(at).replace(tzinfo=UTC))
    assert (p.label, f"{p.start:%Y-%m-%d}", f"{p.end:%Y-%m-%d}") == (label, start, end)


def _spend(cost: float, at: datetime, **budget: Any) -> budgets.Spend:
    doc = {"name": "b", "period": "month", "amountUsd": 100, **budget}
    (b,) = budgets.parse(orjson.dumps({"budgets": [doc]}))
    return budgets.Spend(b, budgets.period_at(b.period, at), cost=cost)


def test_forecast_waits_for_a_tenth_of_the_period() -> None:
    early = datetime(2025, 11, 3, 23, 10, tzinfo=UTC)  # 2 days 23 h of 30 days: under 10 %
    s = _spend(20.0, early, forecast=True)
    assert s.forecast(early, "costUsd") is None and budgets.decide(s, early) == []
    later = datetime(2025, 11, 4, 1, 10, tzinfo=UTC)  # 3 days 1 h: 10.1 %
    s = _spend(20.0, later, forecast=True)
    (alert,) = budgets.decide(s, later)
    assert (alert.kind, alert.threshold, alert.row_key) == ("forecast", 1.0, "2025-11|forecast|1.0")
    assert alert.text().startswith("Budget b: forecast 197 USD exceeds 100 USD in 2025-11")


def test_usd_then_tokens_name_a_threshold_once() -> None:
    at = datetime(2025, 11, 20, 10, 5, tzinfo=UTC)
    s = _spend(52.0, at, tokens=1000, thresholds=[0.5, 0.8])
    s.tokens = 900
    alerts = {a.row_key: a for a in budgets.decide(s, at)}
    assert set(alerts) == {"2025-11|threshold|0.5", "2025-11|threshold|0.8"}
    assert alerts["2025-11|threshold|0.8"].metric == "tokens"  # USD reached only 0.5
    assert alerts["2025-11|threshold|0.5"].metric == "costUsd"
    assert alerts["2025-11|threshold|0.5"].text() == (
        "Budget b: 52% of 100 USD spent in 2025-11 (forecast 80.34 USD)"  # 52 / (466 h / 720 h)
    )


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"budgets": [{"name": "x", "period": "year", "amountUsd": 1}]},
            "budget 1 ('x'): \"period\"",
        ),
        ({"budgets": [{"name": "x", "period": "day"}]}, 'needs "amountUsd", "tokens" or both'),
        ({"budgets": [{"name": "x", "period": "day", "tokens": 1.5}]}, "whole number"),
        ({"budgets": [{"name": "x", "period": "day", "amountUsd": -1}]}, "> 0"),
        ({"budgets": [{"name": "x/y", "period": "day", "amountUsd": 1}]}, '"name" must be'),
        (
            {"budgets": [{"name": "x", "period": "day", "amountUsd": 1, "scope": {"user": "u"}}]},
            "unknown scope key 'user'",
        ),
        (
            {"budgets": [{"name": "x", "period": "day", "amountUsd": 1, "thresholds": []}]},
            '"thresholds"',
        ),
        (
            {
                "budgets": [
                    {"name": "x", "period": "day", "amountUsd": 1},
                    {"name": "X", "period": "week", "amountUsd": 1},
                ]
            },
            "two budgets are named 'X'",
        ),
    ],
)
def test_a_bad_budgets_file_names_the_budget(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(budgets.BudgetsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        budgets.parse(orjson.dumps(doc))


def test_doctor_names_a_bad_budgets_file_and_map(cfg: Config, store: Store, tmp_path: Path) -> None:
    from pipeline.cli import doctor
    from tests.conftest import settings_env

    bad_budgets = tmp_path / "budgets.json"
    bad_budgets.write_bytes(orjson.dumps({"budgets": [{"name": "x", "period": "year"}]}))
    bad_map = tmp_path / "map.json"
    bad_map.write_bytes(orjson.dumps({"rules": [{"team": "T", "match": {"tenant": "t"}}]}))
    env = {**settings_env(cfg), "BUDGETS": str(bad_budgets), "ATTRIBUTION": str(bad_map)}
    text = "\n".join(c.line() for c in doctor.run(env))
    assert "FAIL  budgets: " in text and "budget 1 ('x'): \"period\"" in text
    assert "FAIL  attribution map: " in text and "unknown match key 'tenant'" in text


def test_the_budgets_timer_is_bound_and_checks_now(
    cfg: Config, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timer rolls up today and records what is due now: a daily token budget of 1
    token is reached by the calls of the hours already over today."""
    from pipeline import runtime
    from tests.conftest import settings_env
    from tests.test_function_app import _functions

    fn = _functions()["budgets"]
    (binding,) = orjson.loads(fn.get_function_json())["bindings"]
    assert binding["type"] == "timerTrigger" and binding["schedule"] == "%BUDGET_SCHEDULE%"
    assert Config.from_env({}).budget_schedule == "0 5 * * * *"
    now = datetime.now(UTC)
    if now.hour == 0:
        pytest.skip("no hour of today is over yet")  # the first hour of a UTC day
    earlier = now.replace(hour=0, minute=30).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    process_batch([EventIn(message({**corpus()[0], "time": earlier, "status": 200}))], cfg, store)
    path = tmp_path / "budgets.json"
    doc = {"budgets": [{"name": "tiny", "period": "day", "tokens": 1}]}
    path.write_bytes(orjson.dumps(doc))
    for key, value in {**settings_env(cfg), "BUDGETS": str(path)}.items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    try:
        fn.get_user_function()(None)
    finally:
        runtime.reset()
    (row,) = list(store.budget_alerts.list_entities())
    assert row["PartitionKey"] == "tiny" and row["RowKey"] == f"{now:%Y-%m-%d}|threshold|1.0"
    assert row["Delivered"] is True  # no webhook: recorded only


def test_spend_in_the_last_hour_of_a_period_alerts_in_the_first_hour_of_the_next(
    store: Store, cfg: Config, tmp_path: Path
) -> None:
    """At 23:50 the hour 23:00-24:00 is not over; at 00:05 the day is: the check then
    evaluates the day that just ended too (and rolls it up again), so its last hour counts."""
    late = {**corpus()[0], "time": "2025-11-05T23:30:00.5Z", "status": 200}
    process_batch([EventIn(message(late))], cfg, store)
    path = tmp_path / "budgets.json"
    path.write_bytes(orjson.dumps({"budgets": [{"name": "d", "period": "day", "tokens": 1}]}))
    cfg = Config(**{**_fields(cfg), "budgets": str(path)})
    before = alerting.check(cfg, store, datetime(2025, 11, 5, 23, 50, tzinfo=UTC))
    assert before.decided == []
    after = alerting.check(cfg, store, datetime(2025, 11, 6, 0, 5, tzinfo=UTC))
    assert [a.id for a in after.decided] == ["d|2025-11-05|threshold|1.0"]
    assert after.decided[0].spent == late["prompt"] + late["completion"]


def test_a_month_budget_in_usd_counts_whole_days_and_equals_the_kpis(
    estate: tuple[Config, list[dict[str, Any]]], store: Store, tmp_path: Path
) -> None:
    """Later in the month every day of the corpus is over: the spend is the whole days'
    packed rows, in USD, and equals the daily KPIs' cost."""
    cfg, _ = estate
    path = tmp_path / "usd.json"
    doc = {"budgets": [{"name": "usd", "period": "month", "amountUsd": 1000, "scope": {}}]}
    path.write_bytes(orjson.dumps(doc))
    cfg = Config(**{**_fields(cfg), "budgets": str(path)})
    later = datetime(2025, 11, 20, 12, 30, tzinfo=UTC)
    (s,) = alerting.spends_at(cfg, store, later)
    kpi = sum(
        e["CostUsd"]
        for e in store.kpi.query_entities("RowKey eq @t", parameters={"t": "_total"})
        if e["PartitionKey"].startswith("2025-11")
    )
    assert s.cost > 0 and abs(s.cost - kpi) < 1e-6


def _gpt4o_day(client_spelling: str, answered_spelling: str) -> list[dict[str, Any]]:
    """A failing call whose body names the model `client_spelling` (a fine-tuning job: the
    row's Model is the client's), then 20 answered calls the service names."""
    t = datetime(2025, 11, 5, 9, tzinfo=UTC)
    failed = {"Model": client_spelling, "Status": 400, "CallTime": t, "SubscriptionId": "x"}
    answered = {"Deployment": "chat-prod", "Model": answered_spelling, "Status": 200,
                "CallTime": t.replace(hour=10), "SubscriptionId": "x", "PromptTokens": 100_000,
                "CompletionTokens": 1_000, "TotalTokens": 101_000}  # fmt: skip
    return [failed, *([answered] * 20)]


@pytest.mark.parametrize("spelling", ["\u00a0gpt-4o-2024-08-06", "GPT-4O-2024-08-06 "])
def test_a_failed_call_cannot_relabel_a_models_spend_and_silence_its_budget(
    spelling: str,
) -> None:
    """The first spelling of a priced model the day's scan met labelled all its calls: one
    failing call naming it with a no-break space, read first, put the day's gpt-4o spend
    under that spelling, its budget saw 0 USD and never alerted."""
    from pipeline.kpi import prices, rollup

    found = budgets.parse(
        b'{"budgets":[{"name":"gpt4o","scope":{"model":"gpt-4o-2024-08-06"},"period":"day",'
        b'"amountUsd":1.0,"thresholds":[1.0]}]}'
    )
    table = prices.load("")
    at = datetime(2025, 11, 5, 23, tzinfo=UTC)
    rows = _gpt4o_day(spelling, "gpt-4o-2024-08-06")
    for order in (rows, rows[::-1]):
        rolled = rollup.rollup_day(order, DAYS[2], table)
        models = {e.get("Model") for e in rolled.daily if e["RowKey"] != rollup.TOTAL_KEY}
        assert models == {"gpt-4o-2024-08-06"}  # as the service names it
        hourly = [e for e in rolled.hourly if e.get("Level") == "hour"]
        (spent,) = budgets.spend(found, hourly, at)
        assert spent.cost == rolled.daily[-1]["CostUsd"] > 1.0
        assert budgets.decide(spent, at)


def test_a_models_label_is_the_services_spelling_and_its_budget_finds_it() -> None:
    """Only failed calls name a priced model: its label is the price table's name, not the
    client's. Answered calls spell it otherwise: theirs, and a budget compares the model as
    the price table does (case and padding aside)."""
    from pipeline.kpi import prices, rollup

    table = prices.load("")
    (failed,) = _gpt4o_day("\u00a0GPT-4o-2024-08-06", "-")[:1]
    rolled = rollup.rollup_day([failed], DAYS[2], table)
    assert rolled.daily[0]["Model"] == "gpt-4o-2024-08-06"

    rows = _gpt4o_day("\u00a0gpt-4o-2024-08-06", " GPT-4o-2024-08-06")
    rolled = rollup.rollup_day(rows, DAYS[2], table)
    assert {e.get("Model") for e in rolled.daily[:-1]} == {" GPT-4o-2024-08-06"}
    found = budgets.parse(
        b'{"budgets":[{"name":"gpt4o","scope":{"model":"gpt-4o-2024-08-06"},"period":"day",'
        b'"amountUsd":1.0,"thresholds":[1.0]}]}'
    )
    hourly = [e for e in rolled.hourly if e.get("Level") == "hour"]
    (spent,) = budgets.spend(found, hourly, datetime(2025, 11, 5, 23, tzinfo=UTC))
    assert spent.cost == rolled.daily[-1]["CostUsd"] > 1.0


def test_budgets_check_exits_1_while_an_alert_is_not_delivered(
    estate: tuple[Config, list[dict[str, Any]]],
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A webhook down made `budgets check` print "not delivered" and exit 0: a scheduler
    running it saw a success while nobody received the alert (black-box audit)."""
    from pipeline.cli.main import main as cli
    from tests.conftest import settings_env

    cfg, _ = estate
    with Receiver() as receiver:
        cfg = with_webhook(cfg, receiver)
        env = {**settings_env(cfg), "BUDGETS": cfg.budgets, "ALERT_WEBHOOK": receiver.url}
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        receiver.status = 503
        assert cli(["budgets", "check", "--at", AT.isoformat()]) == 1
        assert "not delivered" in capsys.readouterr().out
        receiver.status = 200
        assert cli(["budgets", "check", "--at", AT.isoformat()]) == 0
        assert "delivered" in capsys.readouterr().out

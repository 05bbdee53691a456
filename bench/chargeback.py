"""Chargeback at scale: a month of 1,000,000 calls by 10,000 users.

1. The rollup of each day (pure, rows generated as the table query returns them): time per
   day and for the month, and how many KpiHourly rows of each kind it makes.
2. The month's statement by team (JSON and HTML) and by user, each in a fresh process, from
   the rows `chargeback` reads (`d|` or `u|`) streamed as the table query returns them: our
   time and peak memory, plus the time Azurite takes to return that many rows (its rate
   measured on one day's rows written to a private Azurite: writing a whole month there
   would take the bench longer than the rest). Goals: ≤ 30 s and ≤ 300 MB.

The estate: 10,000 users in 200 apps, each app in one of 40 subscriptions, three products,
five deployments, three backends; an attribution map of 100 rules (subscriptions to 12
teams, and 60 users named one by one). Calls are spread evenly over the days and hours.

    .venv/bin/python -m bench.chargeback
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.rollup import BACKENDS, MODELS, PRODUCTS, peak_rss_kib
from pipeline.kpi import attribution, prices
from pipeline.kpi.rollup import rollup_day

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


def roll_month(spool: Path) -> dict[str, Any]:
    """Roll up every day (timed); spool the rows the statement reads (`d|`, `u|`) to a
    JSON-lines file, as the table query would return them, for the statement to stream."""
    users, doc = estate()
    teams = attribution.parse(orjson.dumps(doc))
    table = prices.load("")
    per_day = CALLS // len(DAYS)
    seconds, kinds = 0.0, {"hour": 0, "day": 0, "user": 0}
    with spool.open("wb") as out:
        for i, day in enumerate(DAYS):
            start = time.perf_counter()
            rolled = rollup_day(rows(day, per_day, users, seed=i), day, table, teams)
            seconds += time.perf_counter() - start
            for e in rolled.hourly:
                kinds[e["Level"]] += 1
                if e["Level"] != "hour":
                    out.write(orjson.dumps({k: getattr(v, "value", v) for k, v in e.items()}))
                    out.write(b"\n")
    return {"seconds": seconds, "calls": per_day * len(DAYS), **kinds}


def _statement(spool: str, by: str, fmt: str) -> None:
    """Child process: the month's statement from the spooled rows (streamed, as from the
    table); prints seconds, peak RSS (KiB) and lines or bytes."""
    from pipeline.kpi import chargeback, statement
    from pipeline.kpi.rollup import LEVEL_RANGES

    lo, hi = LEVEL_RANGES[chargeback.level_of(by)]

    def stream() -> Iterator[dict[str, Any]]:
        with open(spool, "rb") as f:
            for line in f:
                row = orjson.loads(line)
                if lo <= row["RowKey"] < hi:
                    yield row

    start = time.perf_counter()
    folded = chargeback.fold(stream(), by)
    doc = chargeback.report(folded, by, DAYS[0], DAYS[-1])
    if fmt == "html":
        size = len(statement.render_html(doc, chargeback.daily_series(folded)))
    else:
        size = len(doc["lines"])
    seconds = time.perf_counter() - start
    print(f"{seconds} {peak_rss_kib()} {size}")


def statement_run(spool: Path, by: str, fmt: str) -> tuple[float, float, int]:
    code = f"from bench.chargeback import _statement; _statement({str(spool)!r}, {by!r}, {fmt!r})"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), int(out[1]) / 1024, int(out[2])


def azurite_read_rate(spool: Path) -> tuple[int, float]:
    """Rows per second of a KpiHourly range query on Azurite (a day's `u|` and `d|` rows
    written, then read back as `chargeback` reads them): what a month's read adds."""
    from pipeline.cli.azurite import Azurite
    from pipeline.kpi import chargeback
    from pipeline.kpi.rollup import LEVEL_RANGES
    from pipeline.settings import Config
    from pipeline.store.account import Store
    from pipeline.store.kpis import KpiStore

    first = DAYS[0].isoformat()
    with spool.open("rb") as f:
        day_rows = [r for line in f if (r := orjson.loads(line))["PartitionKey"] == first]
    with Azurite.start() as az:
        store = Store(Config(storage_connection=az.connection_string, kpi_hourly_table="Bench"))
        store.ensure()
        KpiStore(store).replace_day(first, day_rows, store.kpi_hourly)
        start = time.perf_counter()
        n = 0
        for level in ("day", "user"):
            n += sum(
                1
                for _ in KpiStore(store).usage_rows(
                    first, first, LEVEL_RANGES[level], chargeback.COLUMNS
                )
            )
        return n, n / (time.perf_counter() - start)


def report() -> list[tuple[str, str, str, str]]:
    out = []
    with tempfile.TemporaryDirectory() as work:
        spool = Path(work) / "usage.jsonl"
        month = roll_month(spool)
        out.append(
            (
                f"Hourly rollup, a month of {month['calls']:,} calls by {USERS:,} users",
                f"{month['seconds']:.1f} s ({month['calls'] / month['seconds']:,.0f} calls/s); "
                f"KpiHourly rows: {month['hour']:,} hour, {month['day']:,} day, "
                f"{month['user']:,} user",
                "linear in calls",
                "",
            )
        )
        _, rate = azurite_read_rate(spool)
        reads = {"team": month["day"], "user": month["user"]}
        for by, fmt in (("team", "json"), ("team", "html"), ("user", "json")):
            seconds, rss, size = statement_run(spool, by, fmt)
            read = reads[by] / rate
            what = f"{size:,} lines" if fmt == "json" else f"{size / 1024:,.0f} KB page"
            total = seconds + read
            out.append(
                (
                    f"Chargeback statement, the month by {by} ({fmt})",
                    f"{total:.1f} s = {seconds:.1f} s of ours + {read:.1f} s to read "
                    f"{reads[by]:,} rows at Azurite's {rate:,.0f} rows/s; peak RSS {rss:.0f} MB "
                    f"({what})",
                    "≤ 30 s, ≤ 300 MB",
                    "met" if total <= 30 and rss <= 300 else "NOT met",
                )
            )
    return out


if __name__ == "__main__":
    for row in report():
        print(" | ".join(row))

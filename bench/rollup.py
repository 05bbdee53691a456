"""KPI rollup of one day: time and peak memory for 100,000 and 1,000,000 audit rows.

Rows are generated in memory as the table query would return them (only the columns the
rollup reads), lazily, so the figures measure our aggregation, not Azurite or the row list.

    .venv/bin/python -m bench.rollup
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from pipeline.kpi import prices
from pipeline.kpi.rollup import rollup_day

DAY = date(2025, 11, 4)
MODELS = [
    ("chat-prod", "gpt-4o-2024-08-06"),
    ("gpt41-prod", "gpt-4.1-2025-04-14"),
    ("mini-prod", "gpt-4o-mini-2024-07-18"),
    ("o3-mini", "o3-mini-2025-01-31"),
    ("custom", "my-finetune"),
]
TEAMS = [f"team-{i}" for i in range(12)]
PRODUCTS = ["ai-standard", "ai-premium", "ai-research"]
BACKENDS = ["aoai-weu", "aoai-swc", "aoai-frc"]


def rows(n: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for _ in range(n):
        deployment, model = rng.choice(MODELS)
        status = 200 if rng.random() > 0.05 else rng.choice((429, 429, 400, 500))
        row: dict[str, Any] = {
            "Deployment": deployment,
            "Model": model if status == 200 else None,
            "SubscriptionId": rng.choice(TEAMS),
            "ProductId": rng.choice(PRODUCTS),
            "BackendId": rng.choice(BACKENDS),
            "Status": status,
            "ErrorSource": "gateway" if status == 429 and rng.random() < 0.5 else "backend",
            "Streamed": rng.random() < 0.15,
            "DurationMs": int(rng.lognormvariate(7, 0.7)),
            "BackendMs": int(rng.lognormvariate(6.9, 0.7)),
            # The hourly rows group by hour too.
            "CallTime": datetime(2025, 11, 4, rng.randrange(24), tzinfo=UTC),
        }
        if status == 200:
            prompt = rng.randint(20, 6000)
            completion = rng.randint(0, 1500)
            row.update(
                PromptTokens=prompt,
                CompletionTokens=completion,
                TotalTokens=prompt + completion,
                CachedTokens=(prompt // 1024) * 1024 if rng.random() < 0.3 else 0,
                ReasoningTokens=completion // 2 if model.startswith("o3") else 0,
                TokensSource="estimated" if row["Streamed"] else "reported",
            )
        else:
            row["TokensSource"] = "none"
        yield row


def _run(n: int) -> None:
    """Child process: roll up n streamed rows, print seconds and peak RSS (KiB)."""
    table = prices.load("")
    gen_start = time.perf_counter()
    for _ in rows(n):
        pass
    generate = time.perf_counter() - gen_start
    start = time.perf_counter()
    rolled = rollup_day(rows(n), DAY, table) if n else None
    seconds = time.perf_counter() - start - generate
    entities = rolled.daily if rolled else []
    assert not n or entities[-1]["Calls"] == n
    rss = peak_rss_kib()
    hourly = len(rolled.hourly) if rolled else 0
    print(f"{seconds} {rss} {max(0, len(entities) - 1)}/{hourly}")


def pairs(n: int) -> Iterator[dict[str, Any]]:
    """Failing calls to /openai/deployments/{D}/fine_tuning/jobs naming model M in the body:
    every (D, M) pair another, each name within its column's cap (MAX_VALUES_PER_DAY)."""
    side = 2_000
    when = datetime(2025, 11, 4, 10, tzinfo=UTC)
    for i in range(n):
        yield {
            "Deployment": f"d{i // side}",
            "Model": f"m{i % side}",
            "SubscriptionId": "team-x",
            "ProductId": "ai-standard",
            "BackendId": "aoai-weu",
            "CallTime": when,
            "Status": 404,
            "DurationMs": 30 + i % 500,
            "BackendMs": 20,
            "TokensSource": "none",
        }


def _run_pairs(n: int) -> None:
    """Child process: roll up n rows of `pairs`, print seconds, peak RSS (KiB) and groups."""
    start = time.perf_counter()
    rolled = rollup_day(pairs(n), DAY, prices.load(""))
    seconds = time.perf_counter() - start
    assert rolled.daily[-1]["Calls"] == n
    print(f"{seconds} {peak_rss_kib()} {len(rolled.daily) - 1}/{len(rolled.hourly)}")


def peak_rss_kib(field: str = "VmHWM") -> int:
    """This process's peak resident memory (`VmRSS`: the current one). VmHWM, not ru_maxrss:
    Linux carries ru_maxrss over exec from the parent that forked it, so a child of a big
    process looks big."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(n: int, run: str = "_run") -> tuple[float, float, str]:
    """(seconds of rollup alone, peak RSS MiB above an idle interpreter, groups), measured in
    a fresh process so earlier runs do not inflate the peak."""
    import subprocess
    import sys

    code = f"from bench.rollup import {run}; {run}({n})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, rss, groups = out.stdout.split()
    return float(seconds), int(rss) / 1024, groups


def best(n: int, runs: int = 3) -> tuple[float, float, str]:
    """The fastest of `runs` (a shared machine's noise only ever adds time)."""
    results = [measure(n) for _ in range(runs)]
    return min(results, key=lambda r: r[0])


def report() -> list[tuple[str, str, str, str]]:
    idle = measure(0)[1]
    small = best(100_000)
    large = best(1_000_000)
    ratio = large[0] / small[0]
    out = []
    for n, (seconds, rss, groups) in ((100_000, small), (1_000_000, large)):
        out.append(
            (
                f"KPI rollup, {n:,} rows of a day",
                f"{seconds:.2f} s ({n / seconds:,.0f} rows/s), peak RSS +{rss - idle:.1f} MiB "
                f"over an idle process, {groups} daily/hourly groups",
                "linear time, flat memory",
                "",
            )
        )
    grow_mem = (large[1] - idle) / max(small[1] - idle, 1.0)
    # At most linear: below x10 is the fixed cost of writing out the groups, which both
    # sizes share. Memory follows the groups seen, not the rows.
    linear = ratio <= 13.0 and grow_mem < 2.0
    out.append(
        (
            "KPI rollup growth, 1M vs 100k rows",
            f"time x{ratio:.1f}, memory x{grow_mem:.2f}",
            "time ≤ x10 (+30%), memory < x2",
            "met" if linear else "NOT met",
        )
    )
    # Groups made up by clients: the bound on a day's groups (MAX_GROUPS_PER_DAY), not the
    # calls, sets the memory (before the bound: 3.7 GB and 400,001 groups).
    n = 400_000
    seconds, rss, groups = measure(n, "_run_pairs")
    out.append(
        (
            f"KPI rollup, {n:,} failing calls naming distinct (deployment, model) pairs",
            f"{seconds:.2f} s, peak RSS +{rss - idle:.1f} MiB over an idle process, "
            f"{groups} daily/hourly groups",
            "≤ 10,001 groups, memory < 512 MiB",
            "met" if int(groups.split("/")[0]) <= 10_001 and rss - idle < 512 else "NOT met",
        )
    )
    return out


if __name__ == "__main__":
    for row in report():
        print(" | ".join(row))

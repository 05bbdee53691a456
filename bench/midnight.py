"""Calls that straddle a UTC midnight (issue 15, item 5): storage requests and end to end.

    .venv/bin/python -m bench.midnight            # part of `make bench`

The corpus is bench/corpus.py's traffic with every call's `time` moved into the ten minutes
around a UTC midnight (uniform, five minutes each side), the events in random time order (the
hardest case: every batch holds calls of both days, so every batch looks up the other day). With
DAY_EDGE = 2 minutes, 40% of the calls are near midnight and must be looked up on the other day.

1. Storage requests per 1,000 calls at 100 events per batch, counted by the SDKs' request hook.
   The floor is the least a writer needs with this table's partitions: an entity-group
   transaction holds rows of one partition (Azure), so one transaction per 100 rows of each
   (day, shard) partition the batch writes, and the archive blob. `⌈rows/100⌉ + 1`, the floor of
   bench/pipeline.py (which ignores that a batch's rows span partitions), is shown beside it.
2. End to end: `replay` of the corpus from a local .jsonl file into Azurite, then its rollup of
   the days it changed, against bench/pipeline.py's naive writer (one upsert and one blob per
   call) on the first 3,000 calls of the same corpus, in the same run.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.corpus import apim_events
from bench.pipeline import RequestCounter, batches, events_of, fresh_config, naive_writer
from pipeline.cli.azurite import Azurite
from pipeline.cli.runner import replay
from pipeline.ingest.batch import process_batch, transform
from pipeline.kpi.daily import roll_up
from pipeline.settings import Config
from pipeline.sources import files, inputs
from pipeline.store.account import Store

CALLS = 10_000
CALLS_PER_EVENT = 5
NAIVE_CALLS = 3_000
MIDNIGHT = datetime(2025, 11, 5, tzinfo=UTC)
SPREAD = timedelta(minutes=5)  # each side of midnight

Row = tuple[str, str, str, str]


def midnight_events(n_calls: int = CALLS, seed: int = 24) -> list[bytes]:
    """The corpus's events, each call's time moved to within SPREAD of MIDNIGHT."""
    rng = random.Random(seed)
    out = []
    for body in apim_events(n_calls, CALLS_PER_EVENT, seed=seed, tag="midnight"):
        doc = orjson.loads(body)
        for record in doc["records"]:
            t = MIDNIGHT + timedelta(seconds=rng.uniform(-1, 1) * SPREAD.total_seconds())
            # As APIM writes `time`: 7 fractional digits and Z (docs/formats.md §0.7).
            record["time"] = f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}0Z"
        out.append(orjson.dumps(doc))
    return out


def floors(group: list[Any], cfg: Config) -> tuple[int, int]:
    """(per-partition floor, ⌈rows/100⌉ floor) of one batch: transactions and the blob."""
    parts = Counter(entity["PartitionKey"] for _, entity in transform(group, cfg).rows)
    rows = sum(parts.values())
    return sum(math.ceil(n / 100) for n in parts.values()) + 1, math.ceil(rows / 100) + 1


def storage_requests(az: Azurite, bodies: list[bytes]) -> dict[str, Any]:
    cfg = fresh_config(az, "Midnight")
    Store(cfg).ensure()
    counter = RequestCounter()
    store = Store(cfg, raw_request_hook=counter)
    calls = floor = floor_total = 0
    for group in batches(events_of(bodies), 100):
        per_partition, total = floors(group, cfg)
        floor += per_partition
        floor_total += total
        calls += process_batch(group, cfg, store).calls
    return {
        "per_1000": 1000 * counter.total / calls,
        "floor_per_1000": 1000 * floor / calls,
        "floor_total_per_1000": 1000 * floor_total / calls,
        "vs_floor": counter.total / floor,
        "kinds": dict(counter.counts),
    }


def end_to_end(az: Azurite, bodies: list[bytes]) -> dict[str, float]:
    ours_cfg = fresh_config(az, "MidOurs")
    ours = Store(ours_cfg)
    ours.ensure()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "midnight.jsonl"
        path.write_bytes(b"\n".join(bodies))
        items = list(files.local_inputs([tmp], inputs.Filters()))
        start = time.perf_counter()
        summary = replay(items, ours_cfg, ours, say=lambda s: None)
        days = sorted(summary.totals.days)
        roll_up([date.fromisoformat(d) for d in days], ours_cfg, ours)
        t_ours = time.perf_counter() - start
    assert summary.ok and summary.totals.calls == CALLS, summary.lines()
    assert days == ["2025-11-04", "2025-11-05"], days
    naive_cfg = fresh_config(az, "MidNaive")
    naive = Store(naive_cfg)
    naive.ensure()
    naive_events = events_of(bodies[: NAIVE_CALLS // CALLS_PER_EVENT])
    start = time.perf_counter()
    naive_calls = sum(naive_writer(g, naive_cfg, naive) for g in batches(naive_events, 100))
    t_naive = time.perf_counter() - start
    assert naive_calls == NAIVE_CALLS
    ours_rate, naive_rate = CALLS / t_ours, naive_calls / t_naive
    return {"ours_calls_s": ours_rate, "naive_calls_s": naive_rate, "ratio": ours_rate / naive_rate}


def report() -> list[Row]:
    bodies = midnight_events()
    with Azurite.start() as az:
        s = storage_requests(az, bodies)
        e = end_to_end(az, bodies)
    kinds = ", ".join(f"{v} {k}" for k, v in sorted(s["kinds"].items()))
    return [
        (
            "Midnight corpus: storage requests per 1,000 calls, 100 events per batch",
            f"{s['per_1000']:.1f} (floor {s['floor_per_1000']:.1f}: {s['vs_floor']:.2f}×; "
            f"⌈rows/100⌉ floor {s['floor_total_per_1000']:.1f}; {kinds})",
            "≤ 1.5× floor",
            _ok(s["vs_floor"] <= 1.5),
        ),
        (
            "Midnight corpus: replay + rollup of its days vs naive writer",
            f"{e['ours_calls_s']:,.0f} vs {e['naive_calls_s']:,.0f} calls/s ({e['ratio']:.1f}×)",
            "≥ 5×",
            _ok(e["ratio"] >= 5),
        ),
    ]


def _ok(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    for row in report():
        print(" | ".join(row))

"""The ingest pipeline's speed, storage requests, memory and cold start (issue #10).

    .venv/bin/python -m bench.pipeline            # all of it (part of `make bench`)

1. CPU: calls/s and MB/s of Event Hub payload through the whole transform (event bytes →
   rows and archive blob, `ingest.transform`) on one core, with default settings, with
   redaction off, and the floor of merely `orjson.loads`-ing the same envelopes and bodies.
2. Storage requests per 1,000 calls, counted from the SDKs' own request hook (every HTTP
   request the pipeline sends, retries included), at 100 and 500 events per batch.
3. End to end on Azurite: our writer vs a naive one (one upsert and one blob per call).
4. Peak RSS while processing 10,000-call batches, in a fresh process (and after 4 more).
5. Cold start: importing `function_app`, then the first batch, in a fresh process.

The corpus (bench/corpus.py) is ~60% chat, 15% streamed, 15% embeddings, 5% Responses API,
5% errors; bodies of 1 to 8 KB, some cut at 8,192 bytes as APIM logs them; some prompts hold
personal data; five calls per diagnostic event.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import math
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from bench.corpus import apim_events
from pipeline.cli.azurite import Azurite
from pipeline.ingest.batch import process_batch, transform
from pipeline.ingest.plan import plan_batch
from pipeline.model import EventIn
from pipeline.protect import archive
from pipeline.settings import Config
from pipeline.store.account import Store

ROOT = Path(__file__).resolve().parent.parent
CPU_CALLS = 5_000
STORAGE_CALLS = 10_000
E2E_CALLS = 3_000
CALLS_PER_EVENT = 5
BODY_KEYS = ("requestBody", "responseBody", "backendRequestBody", "backendResponseBody")
REDACTION_OFF = {"prompt_capture": "truncated", "archive_capture": "full"}

Row = tuple[str, str, str, str]


def events_of(bodies: list[bytes], partition: str = "0") -> list[EventIn]:
    return [EventIn(b, partition=partition, sequence=i) for i, b in enumerate(bodies)]


def batches(events: list[EventIn], size: int) -> list[list[EventIn]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


def best_of(runs: int, fn: Callable[[], Any]) -> float:
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# --- 1. CPU ---------------------------------------------------------------------------------


def parse_floor(bodies: list[bytes]) -> None:
    """What any consumer must do: parse each envelope and each logged JSON body once."""
    for body in bodies:
        for record in orjson.loads(body)["records"]:
            props = record.get("properties") or {}
            for key in BODY_KEYS:
                value = props.get(key)
                if isinstance(value, str) and value[:1] in ("{", "["):
                    with contextlib.suppress(orjson.JSONDecodeError):  # cut at 8,192 bytes
                        orjson.loads(value)


def cpu() -> dict[str, float]:
    bodies = apim_events(CPU_CALLS, CALLS_PER_EVENT, tag="cpu")
    mb = sum(map(len, bodies)) / 1e6
    groups = batches(events_of(bodies), 100)

    def run(cfg: Config) -> None:
        for group in groups:
            transform(group, cfg)

    defaults, off = Config(), replace(Config(), **REDACTION_OFF)
    run(defaults)  # warm: compiled patterns, tokenizer vocabularies
    run(off)
    # Interleaved, best of 7: on a shared machine the least disturbed run is the closest to
    # what the code costs, and interleaving exposes the three to the same disturbances.
    t_default = t_off = t_floor = float("inf")
    for _ in range(7):
        t_default = min(t_default, best_of(1, lambda: run(defaults)))
        t_off = min(t_off, best_of(1, lambda: run(off)))
        t_floor = min(t_floor, best_of(1, lambda: parse_floor(bodies)))
    # Work the floor does not include and no writer can skip: compressing each call's raw
    # record into its own gzip member of the archive (so one call reads back alone).
    members = [
        gzip.decompress(frag.raw.packed)
        for group in groups[:10]
        for state in plan_batch(group, off).states.values()
        for frag in state.call.fragments.values()
        if frag.raw is not None
    ]
    t_gzip = best_of(
        3,
        lambda: [gzip.compress(m, compresslevel=archive.COMPRESS_LEVEL, mtime=0) for m in members],
    )
    return {
        "gzip_us": 1e6 * t_gzip / len(members),
        "floor_us": 1e6 * t_floor / CPU_CALLS,
        "mb": mb,
        "default_calls_s": CPU_CALLS / t_default,
        "default_mb_s": mb / t_default,
        "off_calls_s": CPU_CALLS / t_off,
        "off_mb_s": mb / t_off,
        "floor_calls_s": CPU_CALLS / t_floor,
        "off_vs_floor": t_off / t_floor,
    }


# --- 2 and 3. storage requests, end to end ----------------------------------------------------


class RequestCounter:
    """Counts HTTP requests as the SDK pipelines send them (their `raw_request_hook` policy
    runs once per request, after retries are decided), by kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, request: Any) -> None:
        http = request.http_request
        url, method = http.url, http.method
        if "$batch" in url:
            kind = "table transaction"
        elif "/devstoreaccount1/" in url and method == "PUT" and "comp=" not in url:
            kind = "blob create"
        elif method == "GET":
            kind = "read"
        else:
            kind = f"other {method}"
        self.counts[kind] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def fresh_config(az: Azurite, tag: str) -> Config:
    return replace(
        Config(storage_connection=az.connection_string),
        audit_table=f"Audit{tag}",
        archive_container=f"raw-{tag.lower()}",
        deadletter_container=f"dead-{tag.lower()}",
    )


def storage_requests(
    az: Azurite, events: list[EventIn], batch_size: int, tag: str = "", **settings: Any
) -> dict[str, Any]:
    cfg = replace(fresh_config(az, f"Req{tag}{batch_size}"), **settings)
    Store(cfg).ensure()
    counter = RequestCounter()
    store = Store(cfg, raw_request_hook=counter)
    calls = rows = floor = 0
    for group in batches(events, batch_size):
        result = process_batch(group, cfg, store)
        calls += result.calls
        rows += result.created
        # One transaction per 100 rows and the archive blob: the least any writer needs.
        floor += math.ceil(result.created / 100) + 1
    return {
        "batch": batch_size,
        "calls": calls,
        "requests": counter.total,
        "per_1000": 1000 * counter.total / calls,
        "floor_per_1000": 1000 * floor / calls,
        "vs_floor": counter.total / floor,
        "kinds": dict(counter.counts),
    }


def naive_writer(events: list[EventIn], cfg: Config, store: Store) -> int:
    """What public samples do: per call, one upsert and one blob, one request at a time."""
    plan = plan_batch(events, cfg)
    members = {}
    for state in plan.states.values():
        for frag in state.call.fragments.values():
            if frag.raw is not None:
                members[frag.correlation_id] = orjson.dumps(archive.open_member(frag.raw.packed))
    done = transform(events, cfg)
    for state, entity in done.rows:
        store.audit.upsert_entity(entity)
        store.archive.upload_blob(
            f"{entity['RowKey']}.json", members[state.call.correlation_id], overwrite=True
        )
    return len(done.rows)


def end_to_end(az: Azurite) -> dict[str, float]:
    events = events_of(apim_events(E2E_CALLS, CALLS_PER_EVENT, tag="e2e"))
    ours_cfg, naive_cfg = fresh_config(az, "Ours"), fresh_config(az, "Naive")
    ours, naive = Store(ours_cfg), Store(naive_cfg)
    ours.ensure()
    naive.ensure()
    start = time.perf_counter()
    calls = sum(process_batch(g, ours_cfg, ours).calls for g in batches(events, 100))
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    naive_calls = sum(naive_writer(g, naive_cfg, naive) for g in batches(events, 100))
    t_naive = time.perf_counter() - start
    assert calls == naive_calls == E2E_CALLS
    return {
        "ours_calls_s": calls / t_ours,
        "naive_calls_s": naive_calls / t_naive,
        "ratio": t_naive / t_ours,
    }


# --- 4 and 5. memory and cold start, each in a fresh process -----------------------------------

MEMORY_SCRIPT = """
import sys
from pathlib import Path
import orjson
from pipeline.ingest.batch import run_trigger_batch
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.store.account import Store
cfg = Config(storage_connection=sys.argv[1])
store = Store(cfg)
store.ensure()
from bench.rollup import peak_rss_kib
def rss_mb():
    return peak_rss_kib() / 1024
def now_mb():
    return peak_rss_kib("VmRSS") / 1024
base = rss_mb()
peaks, loaded = [], []
for path in sys.argv[2:]:  # each file is one 10,000-call batch, as the hub would deliver
    with open(path, "rb") as f:  # line by line: the bodies, without a copy of the whole file
        events = [EventIn(line.rstrip(b"\\n"), partition="0", sequence=i)
                  for i, line in enumerate(f)]
    loaded.append(now_mb())
    result = run_trigger_batch(events, cfg, store)
    assert result.calls == 10_000 and not result.dead_letters, (result.calls, result.dead_letters)
    del events, result
    peaks.append(rss_mb())
print(orjson.dumps({"base": base, "peaks": peaks, "loaded": loaded}).decode())
"""

COLD_SCRIPT = """
import sys, time
start = time.perf_counter()
import function_app
imported = time.perf_counter()
heavy = sorted(m for m in ("tiktoken", "matplotlib", "azure.eventhub") if m in sys.modules)
from pipeline.ingest.batch import run_trigger_batch
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.store.account import Store
cfg = Config.from_env()
store = Store(cfg)
store.ensure()
ready = time.perf_counter()
body = open(sys.argv[1], "rb").read().split(b"\\n")[0]
run_trigger_batch([EventIn(body, partition="0", sequence=1)], cfg, store)
first = time.perf_counter()
from pipeline.call import tokens
tokens.encoding("o200k_base")  # what the first call needing an estimate adds, once
vocab = time.perf_counter()
import orjson
print(orjson.dumps({"import_s": imported - start, "first_batch_s": first - ready,
                    "vocab_s": vocab - first, "heavy_at_import": heavy}).decode())
"""


def run_script(script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return orjson.loads(out.stdout.strip().splitlines()[-1])


def memory(az: Azurite, rounds: int = 5) -> dict[str, Any]:
    calls = 10_000
    with tempfile.TemporaryDirectory() as tmp:
        paths, size = [], 0
        for r in range(rounds):
            bodies = apim_events(calls, CALLS_PER_EVENT, seed=r, tag=f"mem{r}")
            path = Path(tmp) / f"batch{r}.jsonl"
            path.write_bytes(b"\n".join(bodies))
            paths.append(str(path))
            size = max(size, sum(map(len, bodies)))
        m = run_script(MEMORY_SCRIPT, az.connection_string, *paths)
    m["mb"] = size / 1e6
    return m


def cold_start(az: Azurite) -> dict[str, Any]:
    import os

    bodies = apim_events(5, CALLS_PER_EVENT, tag="cold")
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as f:
        f.write(b"\n".join(bodies))
        f.flush()
        env = dict(os.environ, AUDIT_STORAGE_CONNECTION=az.connection_string)
        return run_script(COLD_SCRIPT, f.name, env=env)


# --- the table ----------------------------------------------------------------------------------


def report() -> list[Row]:
    c = cpu()
    out: list[Row] = [
        (
            "Transform, default settings (redaction on), 1 core",
            f"{c['default_calls_s']:,.0f} calls/s, {c['default_mb_s']:.1f} MB/s",
            "≥ 2,000 calls/s, ≥ 10 MB/s",
            _ok(c["default_calls_s"] >= 2000 and c["default_mb_s"] >= 10),
        ),
        (
            "Transform, redaction off (truncated previews, full archive)",
            f"{c['off_calls_s']:,.0f} calls/s, {c['off_mb_s']:.1f} MB/s",
            "",
            "",
        ),
        (
            "Parse-only floor (orjson.loads envelopes and bodies)",
            f"{c['floor_calls_s']:,.0f} calls/s",
            "",
            "",
        ),
        (
            "Redaction off vs the floor",
            f"{c['off_vs_floor']:.1f}× (gzip of the archive members alone: "
            f"{c['gzip_us']:.0f} µs/call = {c['gzip_us'] / c['floor_us']:.1f}× the floor)",
            "≤ 3×",
            _ok(c["off_vs_floor"] <= 3),
        ),
    ]
    with Azurite.start() as az:
        events = events_of(apim_events(STORAGE_CALLS, CALLS_PER_EVENT, tag="req"))
        for size in (100, 500):
            s = storage_requests(az, events, size)
            kinds = ", ".join(f"{v} {k}" for k, v in sorted(s["kinds"].items()))
            out.append(
                (
                    f"Storage requests per 1,000 calls, {size} events per batch",
                    f"{s['per_1000']:.1f} (floor {s['floor_per_1000']:.1f}: "
                    f"{s['vs_floor']:.2f}×; {kinds})",
                    "≤ 1.5× floor (naive: 2,000)",
                    _ok(s["vs_floor"] <= 1.5),
                )
            )
        e = end_to_end(az)
        out.append(
            (
                "End to end on Azurite vs naive writer",
                f"{e['ours_calls_s']:,.0f} vs {e['naive_calls_s']:,.0f} calls/s "
                f"({e['ratio']:.1f}×)",
                "≥ 5×",
                _ok(e["ratio"] >= 5),
            )
        )
        m = memory(az)
        peaks = m["peaks"]
        out.append(
            (
                "Peak RSS, 10,000-call batch (5 batches)",
                f"{peaks[0]:.0f} MB after the first, {peaks[-1]:.0f} MB after the fifth "
                f"(process at start {m['base']:.0f} MB; batch payload {m['mb']:.0f} MB)",
                "≤ 300 MB, flat",
                _ok(max(peaks) <= 300 and peaks[-1] - peaks[0] <= 0.1 * peaks[0]),
            )
        )
        cs = cold_start(az)
        heavy = ", ".join(cs["heavy_at_import"]) or "none"
        out.append(
            (
                "Cold start: import function_app; first batch",
                f"{cs['import_s'] * 1000:.0f} ms; {cs['first_batch_s'] * 1000:.0f} ms "
                f"(heavy modules loaded at import: {heavy}; the o200k vocabulary, on the "
                f"first estimate: {cs['vocab_s'] * 1000:.0f} ms)",
                "lazy heavy parts",
                _ok(not cs["heavy_at_import"]),
            )
        )
    return out


def _ok(ok: bool) -> str:
    return "met" if ok else "NOT met"


if __name__ == "__main__":
    for row in report():
        print(" | ".join(row))

"""What the sealed archive costs (ARCHIVE_ENCRYPTION=on, issue #18): CPU per call in the
transform, storage requests per 1,000 calls, and an erasure.

1. The transform of the same batches, default settings, encryption off and on (a local KEK:
   Key Vault adds one wrap request per archive blob, counted in 2, not a CPU cost of ours),
   interleaved, best of 7. Sealing is per record: compress, AES-256-GCM, base64.
2. Storage requests of the same calls, off and on: on adds the blob's key entity (one
   create per archive blob of up to 500 records). Goal: at most +25 %.
3. `erase --subscription` of one team's calls among 2,000: time and requests.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import replace
from typing import Any

from bench.corpus import apim_events
from bench.pipeline import (
    CALLS_PER_EVENT,
    RequestCounter,
    batches,
    best_of,
    events_of,
    fresh_config,
    storage_requests,
)
from pipeline.cli.azurite import Azurite
from pipeline.compliance import erase
from pipeline.ingest.batch import process_batch, transform
from pipeline.settings import Config
from pipeline.store.account import Store

CPU_CALLS = 5_000
STORAGE_CALLS = 10_000
KEK = "local:" + base64.b64encode(os.urandom(32)).decode()
SEALED = {"archive_encryption": True, "archive_kek": KEK}

Row = tuple[str, str, str, str]


def cpu() -> dict[str, float]:
    groups = batches(events_of(apim_events(CPU_CALLS, CALLS_PER_EVENT, tag="enc")), 100)
    off, on = Config(), replace(Config(), **SEALED)

    def run(cfg: Config) -> None:
        for group in groups:
            transform(group, cfg)

    run(off)
    run(on)
    t_off = t_on = float("inf")
    for _ in range(7):
        t_off = min(t_off, best_of(1, lambda: run(off)))
        t_on = min(t_on, best_of(1, lambda: run(on)))
    return {
        "off_us": 1e6 * t_off / CPU_CALLS,
        "on_us": 1e6 * t_on / CPU_CALLS,
        "extra_us": 1e6 * (t_on - t_off) / CPU_CALLS,
        "ratio": t_on / t_off,
    }


def erasure(az: Azurite) -> dict[str, Any]:
    cfg = replace(fresh_config(az, "Erase"), **SEALED)
    Store(cfg).ensure()
    store = Store(cfg)
    bodies = apim_events(2_000, CALLS_PER_EVENT, tag="erase")
    for group in batches(events_of(bodies), 100):
        process_batch(group, cfg, store)
    teams = sorted(
        {e["SubscriptionId"] for e in store.audit.list_entities(select=["SubscriptionId"])}
    )
    subject = erase.Subject("subscription", teams[0])
    counter = RequestCounter()
    counted = Store(cfg, raw_request_hook=counter)
    started = time.perf_counter()
    done = erase.erase(counted, subject, None, None)
    return {
        "seconds": time.perf_counter() - started,
        "calls": done.calls,
        "keys": done.destroyed,
        "requests": counter.total,
        "teams": len(teams),
    }


def report() -> list[Row]:
    c = cpu()
    out: list[Row] = [
        (
            "Sealed archive: transform CPU per call, off → on",
            f"{c['off_us']:.0f} → {c['on_us']:.0f} µs (+{c['extra_us']:.0f} µs, {c['ratio']:.2f}×)",
            "",
            "",
        )
    ]
    with Azurite.start() as az:
        events = events_of(apim_events(STORAGE_CALLS, CALLS_PER_EVENT, tag="encreq"))
        for size in (100, 500):
            plain = storage_requests(az, events, size, tag="Off")
            sealed = storage_requests(az, events, size, tag="On", **SEALED)
            extra = sealed["per_1000"] / plain["per_1000"] - 1
            out.append(
                (
                    f"Sealed archive: storage requests per 1,000 calls, {size} events per batch",
                    f"{plain['per_1000']:.1f} → {sealed['per_1000']:.1f} (+{100 * extra:.0f} %)",
                    "≤ +25 %",
                    "met" if extra <= 0.25 else "NOT met",
                )
            )
        e = erasure(az)
    out.append(
        (
            f"erase --subscription: 1 of {e['teams']} teams, 2,000 calls",
            f"{e['calls']} calls, {e['keys']} record keys destroyed in {e['seconds']:.2f} s, "
            f"{e['requests']} storage requests",
            "",
            "",
        )
    )
    return out


if __name__ == "__main__":
    for row in report():
        print(" | ".join(row))

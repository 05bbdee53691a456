"""Storage requests a sender can make one event cost, against benign events (issue 13).

    .venv/bin/python -m bench.amplification        # part of `make bench`

CPU per byte is bench/adversarial.py's. Here: round trips. Each is 5-20 ms against Azure, and a
batch's requests wait on each other, so an event that makes the pipeline send many requests
stalls it as surely as one that burns CPU, and a flood of small events is cheap to send. Each
case is one batch of 100 events through `process_batch`, on a fresh table and containers of a
private Azurite (a case that needs stored traffic writes it first, not counted); requests are
counted by the SDKs' own request hook (retries included). The design bound: a small constant
per event, whatever the events hold and however many rows are stored already.

The crafted events are what any sender on the hub can write (formats.md §1 record shapes):
junk; records on many days (a partition, so a transaction, each); an archive claim on every
event (a ranged read each); calls whose records are years apart beside a busy day (the
midnight look-up of that day); ids of calls already stored (a conflict, then a merge).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from bench.corpus import apim_events
from bench.pipeline import RequestCounter, fresh_config
from pipeline.cli.azurite import Azurite
from pipeline.ingest.batch import process_batch
from pipeline.model import Archived, EventIn, RawPointer
from pipeline.settings import Config
from pipeline.store.account import Store

EVENTS = 100
BUSY_DAY_CALLS = 4_000  # rows of the day a forged call's window spans (4 pages of 1,000)
# Requests per event, at most: its dead letter, and per day it may name (MAX_DAYS_PER_EVENT)
# a transaction per shard (AUDIT_SHARDS) and a look-up of a neighbouring day's shards.
_DEFAULTS = Config()
GOAL = 1 + 2 * _DEFAULTS.max_days * _DEFAULTS.shards

Row = tuple[str, str, str, str]


def _gateway(cid: str, time_: str) -> dict[str, Any]:
    """A minimal GatewayLogs record (formats.md §1.1 field names)."""
    return {
        "time": time_,
        "category": "GatewayLogs",
        "operationName": "Microsoft.ApiManagement/GatewayLogs",
        "correlationId": cid,
        "callerIpAddress": "203.0.113.10",
        "properties": {"method": "POST", "responseCode": 200, "backendResponseCode": 200},
    }


def _llm_header(cid: str, time_: str) -> dict[str, Any]:
    """A GatewayLlmLogs header row (formats.md §2.4)."""
    return {
        "time": time_,
        "category": "GatewayLlmLogs",
        "correlationId": cid,
        "properties": {"correlationId": cid, "deploymentName": "chat-prod", "promptTokens": 9},
    }


def _envelope(*records: dict[str, Any]) -> bytes:
    return orjson.dumps({"records": list(records)})


def _stamp(day: date, clock: str = "12:00:00") -> str:
    return f"{day:%Y-%m-%d}T{clock}.0000000Z"


def _events(bodies: list[bytes], **kw: Any) -> list[EventIn]:
    return [EventIn(b, partition="0", sequence=i, **kw) for i, b in enumerate(bodies)]


def benign() -> list[EventIn]:
    return _events(apim_events(EVENTS * 5, 5, seed=31, tag="amplification"))


def junk() -> list[EventIn]:
    return _events([b"x%d" % i for i in range(EVENTS)])


def one_day_each() -> list[EventIn]:
    """Each event one call, on a day of its own: a partition (a transaction) per event."""
    first = date(2024, 1, 1)
    return _events(
        [_envelope(_gateway(f"day-{i}", _stamp(first + timedelta(days=i)))) for i in range(EVENTS)]
    )


def many_days() -> list[EventIn]:
    """Each event 25 calls on 25 days of their own (MAX_DAYS_PER_EVENT dead-letters them)."""
    first = date(2016, 1, 1)
    return _events(
        [
            _envelope(
                *(
                    _gateway(f"days-{e}-{k}", _stamp(first + timedelta(days=25 * e + k)))
                    for k in range(25)
                )
            )
            for e in range(EVENTS)
        ]
    )


def own_days_at_midnight() -> list[EventIn]:
    """The most an event can ask (an audit's case): two bad records (its dead letter), and
    calls on the two days it may name, each a second from midnight, in every shard: each day
    a transaction per shard, and a look-up of each neighbouring day."""
    first = date(2018, 1, 1)
    bodies = []
    for e in range(EVENTS):
        day = first + timedelta(days=3 * e)
        calls = [
            _gateway(
                f"own-{e}-{k}",
                _stamp(day + timedelta(days=k % 2), "23:59:59" if k % 2 else "00:00:01"),
            )
            for k in range(12)
        ]
        bodies.append(_envelope(*calls, {"category": "GatewayLogs"}, {"category": "GatewayLogs"}))
    return _events(bodies)


def forged_claims() -> list[EventIn]:
    """Each event one call, claiming a member of an archive blob that is not there."""
    pointer = RawPointer("2025/11/04/10/" + "0" * 40 + ".jsonl.gz", 0, 100, "0" * 64)
    bodies = [_envelope(_gateway(f"claim-{i}", _stamp(date(2025, 11, 4)))) for i in range(EVENTS)]
    return _events(bodies, archived=Archived(pointer, "r" * 32))


BUSY = date(2025, 11, 4)


def busy_day(store: Store, cfg: Config) -> None:
    """BUSY_DAY_CALLS calls of other clients stored on BUSY, spread over the day."""
    rng = random.Random(7)
    calls = [
        _gateway(
            f"{rng.getrandbits(128):032x}",
            (
                datetime(2025, 11, 4, tzinfo=UTC) + timedelta(seconds=rng.uniform(0, 86_000))
            ).strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
        )
        for _ in range(BUSY_DAY_CALLS)
    ]
    bodies = [_envelope(*calls[i : i + 50]) for i in range(0, len(calls), 50)]
    for i in range(0, len(bodies), 100):
        process_batch(_events(bodies[i : i + 100]), cfg, store)


def years_apart() -> list[EventIn]:
    """Each event one call whose gateway record is in 2016 and LLM-log header a second
    before BUSY's midnight, with RowKeys at both ends of the range: the look-up window of
    BUSY spans its whole day."""
    late = _stamp(BUSY, "23:59:59")
    bodies = []
    for i in range(EVENTS):
        cid = ("0" if i % 2 else "f") * 8 + f"-{i:04d}"
        bodies.append(_envelope(_gateway(cid, _stamp(date(2016, 1, 1))), _llm_header(cid, late)))
    return _events(bodies)


STORED = apim_events(50, 5, seed=41, tag="stored-before")


def stored_before(store: Store, cfg: Config) -> None:
    process_batch(_events(STORED), cfg, store)


def replayed_ids() -> list[EventIn]:
    """90 benign events, and 10 that repeat the ids of calls stored earlier: a conflict in a
    chunk makes it read back and merged."""
    return _events(apim_events(450, 5, seed=42, tag="fresh")[:90] + STORED[:10])


def measure(
    az: Azurite, tag: str, make: Callable[[], list[EventIn]], prepare: Any = None
) -> dict[str, Any]:
    cfg = replace(fresh_config(az, f"Amp{tag}"), kpi_table=f"Kpi{tag}")
    Store(cfg).ensure()
    if prepare is not None:
        prepare(Store(cfg), cfg)
    events = make()
    counter = RequestCounter()
    store = Store(cfg, raw_request_hook=counter)
    start = time.perf_counter()
    result = process_batch(events, cfg, store)
    seconds = time.perf_counter() - start
    size = sum(len(e.body) for e in events)
    return {
        "events": len(events),
        "kb": size / 1024,
        "requests": counter.total,
        "per_event": counter.total / len(events),
        "seconds": seconds,
        "calls": result.calls,
        "dead": result.dead_letters,
        "kinds": dict(counter.counts),
    }


def cases() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    logging.disable(logging.WARNING)  # a dead letter's log line each: hundreds here
    try:
        with Azurite.start() as az:
            _cases(az, out)
    finally:
        logging.disable(logging.NOTSET)
    return out


def _cases(az: Azurite, out: dict[str, dict[str, Any]]) -> None:
    out["benign corpus events (5 calls each)"] = measure(az, "Benign", benign)
    out["junk events (a dead letter each)"] = measure(az, "Junk", junk)
    out["one call per event, each on a day of its own"] = measure(az, "OneDay", one_day_each)
    out["25 calls per event on 25 days each"] = measure(az, "Days", many_days)
    out["two bad records and calls on 2 days of its own at midnight"] = measure(
        az, "OwnDays", own_days_at_midnight
    )
    out["a forged archive claim on every event"] = measure(az, "Claims", forged_claims)
    out[f"calls years apart beside a day of {BUSY_DAY_CALLS:,} rows"] = measure(
        az, "Years", years_apart, busy_day
    )
    out["10 of 100 events repeating stored ids"] = measure(
        az, "Replayed", replayed_ids, stored_before
    )


def report() -> list[Row]:
    found = cases()
    base = found["benign corpus events (5 calls each)"]["per_event"]
    crafted = {k: v for k, v in found.items() if not k.startswith("benign")}
    worst_name, worst = max(crafted.items(), key=lambda kv: kv[1]["per_event"])
    ok = worst["per_event"] <= GOAL
    return [
        (
            "Adversarial: storage requests per event, 100-event batches (Azurite)",
            f"worst {worst['per_event']:.2f} ({worst_name}; {worst['seconds']:.2f} s), "
            f"benign {base:.2f}; none grows with the rows stored",
            f"≤ {GOAL:g} per event (1 + 2 × days × shards)",
            "met" if ok else "NOT met",
        )
    ]


def main() -> None:
    found = cases()
    width = max(len(k) for k in found)
    print(f"{'Case':{width}}  Events      KB  Requests  Per event  Seconds  Calls  Dead")
    for name, r in found.items():
        print(
            f"{name:{width}}  {r['events']:6d}  {r['kb']:6.0f}  {r['requests']:8d}"
            f"  {r['per_event']:9.2f}  {r['seconds']:7.2f}  {r['calls']:5d}  {r['dead']:4d}"
            f"  {r['kinds']}"
        )


if __name__ == "__main__":
    main()

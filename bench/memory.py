"""Peak memory of a batch a sender crafts, against a batch of real events (issue 13).

    .venv/bin/python -m bench.memory        # part of `make bench`

A batch that makes the Functions worker exceed its memory (1.5 GB on the Consumption plan,
2 GB by default on Flex Consumption) is killed, delivered again and killed again: a stalled
partition. `process_batch` holds one slice of the batch at a time (`SLICE` in
pipeline/ingest/batch.py): its transform, until its rows are written. So the peak of a batch
is the peak of its largest slice, and here the first slice of each batch of 100 events goes
through `transform(events, cfg, SLICE)`, the call `process_batch` makes, in a fresh process
(peak RSS over the process with the events built). The crafted batches are what any sender
on the hub can write: the most calls an event may hold, each as small as a record can be
(one slice by bytes held them all: 250,000 calls, 1.5 GB), and the same with facts in
characters outside the Basic Multilingual Plane (each string then takes 4 bytes a
character).
"""

from __future__ import annotations

import random
import string
import subprocess
import sys
import time
from collections.abc import Callable

import orjson

EVENTS = 100
ONE_SLICE_BY_BYTES = 32 * 1024 * 1024 // EVENTS  # events this small: one slice by bytes
EMOJI = "\U0001f600"
GOAL_MB = 500  # peak over the process, for any batch of 100 events


def _letters(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters + string.digits, k=max(0, n)))


def _fill(make: Callable[[int, int], bytes], records: int, size: int) -> bytes:
    """`records` records of `make(i, room)` with the largest `room` that keeps the event
    within `size` bytes."""
    lo, hi, best = 0, size // records + 64, b""
    while lo <= hi:
        mid = (lo + hi) // 2
        body = b'{"records":[' + b",".join(make(i, mid) for i in range(records)) + b"]}"
        if len(body) <= size:
            best, lo = body, mid + 1
        else:
            hi = mid - 1
    return best


def _tiny_calls(astral: bool) -> bytes:
    """2,500 GatewayLogs calls (formats.md §1: category, correlationId, time, url) of about
    130 bytes, the url's deployment, job id and api-version each copied into a fact of its
    own; with `astral`, each of them starts with an emoji."""
    lead = EMOJI if astral else ""

    def make(i: int, room: int) -> bytes:
        third = max(0, (room - 45) // 3)
        name, job, version = (lead + _letters(third, 3 * i + k) for k in range(3))
        return orjson.dumps(
            {
                "category": "GatewayLogs",
                "correlationId": f"advx{i:x}",
                "time": 1762251302,
                "url": f"/deployments/{name}/files/{job}?api-version={version}",
            }
        )

    return _fill(make, 2_500, ONE_SLICE_BY_BYTES)


def _events(case: str) -> list[bytes]:
    if case == "benign":
        from bench.corpus import apim_events

        return apim_events(100 * EVENTS, 100)  # the corpus's calls, 100 to an event
    from bench.adversarial import fill, minimal_gateway, records_at_limit

    if case == BIG_UNIT:
        # The largest unit replay reads (a .jsonl line), not JSON: dead-lettered whole, its
        # text matched on a view with escapes undone (one Python int a character: 2.8 GB).
        from pipeline.sources.inputs import MAX_UNIT_BYTES

        return [('{"a":"' + fill("a\\n", MAX_UNIT_BYTES - 40) + " alice@contoso.com").encode()]
    template = {
        "tiny calls": lambda: _tiny_calls(astral=False),
        "tiny calls, facts outside the BMP": lambda: _tiny_calls(astral=True),
        "1 MB events at the record limit": lambda: records_at_limit(minimal_gateway),
    }[case]()
    return [template.replace(b"advx", f"a{i:03d}".encode()) for i in range(EVENTS)]


def _run(case: str) -> None:
    """In a fresh process: peak RSS of the first slice's transform, over the events built
    (VmHWM: Linux carries ru_maxrss over exec from a big parent, bench/rollup.py)."""
    from bench.adversarial import _config
    from bench.rollup import peak_rss_kib
    from pipeline.ingest.batch import SLICE, transform
    from pipeline.model import EventIn

    events = [EventIn(b, partition="0", sequence=i) for i, b in enumerate(_events(case))]
    cfg = _config()
    before = peak_rss_kib()
    start = time.perf_counter()
    done = transform(events, cfg, SLICE)
    seconds = time.perf_counter() - start
    peak = peak_rss_kib()
    payload = sum(len(e.body) for e in events)
    print(
        f"{(peak - before) / 1024:.0f} {peak / 1024:.0f} {done.plan.events} "
        f"{len(done.plan.states)} {payload} {seconds:.2f}"
    )


BIG_UNIT = "one 64 MiB replay unit, not JSON, an escape every third character"
CASES = (
    "benign",
    "tiny calls",
    "tiny calls, facts outside the BMP",
    "1 MB events at the record limit",
    BIG_UNIT,
)


def measure(case: str) -> list[float]:
    code = f"from bench.memory import _run; _run({case!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [float(x) for x in out.stdout.split()]


def report() -> list[tuple[str, str, str, str]]:
    rows = []
    for case in CASES:
        grown, peak, events, calls, payload, seconds = measure(case)
        rows.append(
            (
                f"Memory: {case}"
                if case == BIG_UNIT
                else f"Memory: first slice of a batch of 100 events, {case}",
                f"peak RSS {peak:.0f} MB (+{grown:.0f} MB over the events built); the slice "
                f"holds {events:.0f} of {len(_events(case)) if case == BIG_UNIT else 100} "
                f"events ({payload / 2**20:.1f} MiB in all), {calls:,.0f} calls; "
                f"{seconds:.1f} s",
                f"≤ {GOAL_MB} MB",
                "met" if peak <= GOAL_MB else "NOT met",
            )
        )
    return rows


if __name__ == "__main__":
    for row in report():
        print(" | ".join(row))

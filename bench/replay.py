"""Replay throughput from local Event Hubs Capture files into Azurite (end to end: Avro
decoding, parsing, redaction, archive blobs, table transactions).

    .venv/bin/python -m bench.replay
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.corpus import apim_events
from pipeline.cli.azurite import Azurite
from pipeline.cli.runner import replay
from pipeline.settings import Config
from pipeline.sources import files, inputs
from pipeline.store.account import Store
from tests.fixtures import capture

CALLS = 5000
FILES = 10


def measure() -> dict[str, float]:
    events = apim_events(CALLS, tag="replay")
    per_file = len(events) // FILES
    with tempfile.TemporaryDirectory() as tmp, Azurite.start() as az:
        t0 = datetime(2025, 11, 4, 10, tzinfo=UTC)
        size = 0
        for f in range(FILES):
            t = t0 + timedelta(minutes=5 * f)
            path = Path(tmp) / capture.capture_path(str(f % 4), t)
            path.parent.mkdir(parents=True, exist_ok=True)
            data = capture.capture_bytes(events[f * per_file : (f + 1) * per_file], t, 100 * f)
            path.write_bytes(data)
            size += len(data)
        cfg = Config(storage_connection=az.connection_string)
        store = Store(cfg)
        store.ensure()
        items = list(files.local_inputs([tmp], inputs.Filters()))
        start = time.perf_counter()
        summary = replay(items, cfg, store, say=lambda s: None)
        seconds = time.perf_counter() - start
        assert summary.ok, summary.lines()
        return {
            "calls": summary.totals.calls,
            "seconds": seconds,
            "calls_s": summary.totals.calls / seconds,
            "mb": size / 1e6,
        }


def report() -> list[tuple[str, str, str, str]]:
    m = measure()
    return [
        (
            "Replay from local Capture files (Azurite)",
            f"{m['calls_s']:,.0f} calls/s ({m['calls']:,.0f} calls, {m['mb']:.1f} MB of Avro, "
            f"{m['seconds']:.1f} s)",
            "reported",
            "",
        )
    ]


if __name__ == "__main__":
    for row in report():
        print(" | ".join(row))

"""Golden test: what the pipeline stores for a fixed corpus, compared with a stored snapshot.

The corpus is `samples/` (the demo's APIM events), a generated corpus of realistic traffic
(`bench/corpus.py`, fixed seed) and a few events that must become dead letters. Everything is
processed into Azurite in batches, then every row (without the service's Timestamp), every
archive blob and its members, and every dead letter (body and metadata) is compared with
`tests/golden/snapshot.json.gz`. It guards "behaviour unchanged" while the code is moved
around: a restructuring that changes what is stored fails here, with the first differences.

After an intended change of what is stored, regenerate the snapshot and review its diff:
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py`.
"""

from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.corpus import apim_events
from pipeline.ingest.batch import process_batch
from pipeline.model import EventIn
from pipeline.protect.archive import iter_members
from pipeline.settings import Config
from pipeline.store.account import Store

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "tests" / "golden" / "snapshot.json.gz"
START = datetime(2025, 11, 4, 9, 0, tzinfo=UTC)
# Properties that say which code wrote a row, not what the row says.
VOLATILE_ROW = {"Timestamp", "PipelineVersion", "etag"}
VOLATILE_META = {"pipelineversion"}


def corpus() -> list[bytes]:
    bodies = []
    for path in sorted((ROOT / "samples").glob("*.jsonl")):
        bodies += [line for line in path.read_bytes().splitlines() if line.strip()]
    bodies += apim_events(400, calls_per_event=5, seed=23, day="2025-11-05", tag="g")
    bodies += [
        b"not json at all",
        b'{"records":[{"category":"GatewayLogs","time":"2025-11-05T10:00:00Z"}]}',
        b'{"records":[42, {"category":"WebSocketConnectionLogs"}]}',
    ]
    return bodies


def events() -> list[EventIn]:
    return [
        EventIn(
            body=body,
            partition=str(i % 4),
            sequence=i,
            enqueued=START + timedelta(seconds=7 * i),
            offset=str(4096 * i),
            origin="golden",
        )
        for i, body in enumerate(corpus())
    ]


def stored(store: Store) -> dict[str, Any]:
    rows = {}
    for entity in store.audit.list_entities():
        values = {
            k: (v.value if hasattr(v, "value") else v)
            for k, v in entity.items()
            if k not in VOLATILE_ROW
        }
        for k, v in values.items():
            if isinstance(v, datetime):
                values[k] = v.isoformat()
            elif isinstance(v, bytes):
                values[k] = v.hex()
        rows[f"{entity['PartitionKey']}|{entity['RowKey']}"] = values
    archive = {}
    for blob in store.archive.list_blobs():
        data = store.archive.download_blob(blob.name).readall()
        archive[blob.name] = [
            [offset, length, orjson.loads(member)] for offset, length, member in iter_members(data)
        ]
    dead = {}
    for blob in store.deadletters.list_blobs(include=["metadata"]):
        body = store.deadletters.download_blob(blob.name).readall()
        meta = {k: v for k, v in blob.metadata.items() if k not in VOLATILE_META}
        dead[blob.name] = {"body": body.decode("utf-8", "replace"), "metadata": meta}
    return {"rows": rows, "archive": archive, "deadletters": dead}


def differences(expected: Any, got: Any, path: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(got, dict):
        out = []
        for key in sorted(expected.keys() | got.keys()):
            if key not in got:
                out.append(f"{path}/{key}: missing")
            elif key not in expected:
                out.append(f"{path}/{key}: unexpected")
            else:
                out += differences(expected[key], got[key], f"{path}/{key}")
        return out
    return [] if expected == got else [f"{path}: {expected!r:.120} != {got!r:.120}"]


def test_what_is_stored_matches_the_snapshot(store: Store, cfg: Config) -> None:
    batch = events()
    for i in range(0, len(batch), 25):
        process_batch(batch[i : i + 25], cfg, store)
    got = orjson.loads(orjson.dumps(stored(store), option=orjson.OPT_SORT_KEYS))
    assert len(got["rows"]) > 400 and got["deadletters"] and got["archive"]
    if os.environ.get("UPDATE_GOLDEN"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_bytes(gzip.compress(orjson.dumps(got, option=orjson.OPT_SORT_KEYS), mtime=0))
    if os.environ.get("GOLDEN_DUMP"):
        Path(os.environ["GOLDEN_DUMP"]).write_bytes(orjson.dumps(got))
    expected = orjson.loads(gzip.decompress(SNAPSHOT.read_bytes()))
    diff = differences(expected, got)
    assert not diff, f"{len(diff)} differences, the first: " + "; ".join(diff[:8])

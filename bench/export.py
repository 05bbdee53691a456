"""Analytics export of 1,000,000 audit rows of one day: time on one core, peak memory, and the
Parquet size against the rows as JSON.

Rows are generated as the table query returns them (the columns the export reads, with
realistic previews, URLs and ids), lazily, so the figures measure our conversion and
writing (calls and FOCUS from one pass, row groups of 65,536 rows), not Azurite. Goals:
≤ 60 s, memory flat ≤ 300 MB (one row group at a time, never the day).

    .venv/bin/python -m bench.export
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

from bench.rollup import BACKENDS, MODELS, PRODUCTS, TEAMS, peak_rss_kib

DAY = date(2025, 11, 4)
PROMPTS = [
    "Summarise the attached travel policy in one sentence for a new joiner.",
    "Draft a polite reply to [EMAIL] about the delayed invoice, two paragraphs.",
    "Translate the following paragraph into German and keep the legal terms.",
    "Classify this support ticket: printer on floor 3 shows error 0x80070005.",
]


def rows(n: int, seed: int = 3) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    for i in range(n):
        deployment, model = rng.choice(MODELS)
        status = 200 if rng.random() > 0.05 else 429
        prompt, completion = rng.randint(20, 6000), rng.randint(0, 1500)
        cid = f"{rng.getrandbits(128):032x}"
        yield {
            "RowKey": f"{cid[:8]}-{cid[8:12]}-{cid[12:16]}-{cid[16:20]}-{cid[20:]}",
            "CallTime": start + timedelta(microseconds=int(i * 86_400e6 / n)),
            "ApimService": "contoso-apim",
            "Region": "westeurope",
            "ApiId": "azure-openai",
            "OperationId": "ChatCompletions_Create",
            "ProductId": rng.choice(PRODUCTS),
            "SubscriptionId": rng.choice(TEAMS),
            "CallerIp": f"203.0.113.{rng.randrange(255)}",
            "CallerAppId": "8f0e2b1c-1111-4a2b-9c3d-5e6f7a8b9c0d",
            "CallerUserId": f"00000000-aaaa-4bbb-8ccc-{rng.randrange(10_000):012d}",
            "Method": "POST",
            "Url": f"https://contoso-apim.azure-api.net/openai/deployments/{deployment}"
            "/chat/completions?api-version=2024-10-21",
            "Deployment": deployment,
            "ApiVersion": "2024-10-21",
            "Operation": "chat.completions",
            "BackendId": rng.choice(BACKENDS),
            "Status": status,
            "BackendStatus": status,
            "DurationMs": int(rng.lognormvariate(7, 0.7)),
            "BackendMs": int(rng.lognormvariate(6.9, 0.7)),
            "Model": model,
            "ResponseId": f"chatcmpl-{cid[:29]}",
            "PromptTokens": prompt if status == 200 else None,
            "CompletionTokens": completion if status == 200 else None,
            "TotalTokens": prompt + completion if status == 200 else None,
            "CachedTokens": (prompt // 1024) * 1024 if status == 200 else None,
            "TokensSource": "reported" if status == 200 else "none",
            "Streamed": rng.random() < 0.15,
            "PromptPreview": rng.choice(PROMPTS)[:100],
            "CompletionPreview": "Here is a short summary of the policy you sent."[:100],
            "FinishReason": "stop",
            "ContentFiltered": False,
            "RawBlob": f"2025/11/04/{i // 40_000:02d}/{cid}.jsonl.gz",
            "RawOffset": rng.randrange(1 << 20),
            "RawLength": rng.randrange(800, 4000),
            "RawSha256": f"{rng.getrandbits(256):064x}",
            "Sources": "gateway,llm",
            "PipelineVersion": "0.1.0",
        }


def _run(n: int) -> None:
    """Child process: export n rows to a temporary folder; print seconds, peak RSS (KiB),
    Parquet bytes, JSON bytes, FOCUS rows."""
    from pipeline.export.days import calls_files
    from pipeline.kpi import attribution, prices

    table, teams = prices.load(""), attribution.Attribution()
    json_bytes = sum(len(orjson.dumps(r, default=str)) for r in rows(n)) if n else 0
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        parts, focus = calls_files(rows(n), DAY, ("calls", "focus"), table, teams, Path(work))
        seconds = time.perf_counter() - start
        size = sum(p.size for p in parts)
        assert sum(p.rows for p in parts) == n
    print(f"{seconds} {peak_rss_kib()} {size} {json_bytes} {len(focus or [])}")


def measure(n: int) -> list[float]:
    code = f"from bench.export import _run; _run({n})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [float(x) for x in out.stdout.split()]


def report() -> list[tuple[str, str, str, str]]:
    idle = measure(0)[1]
    out = []
    for n in (100_000, 1_000_000):
        seconds, rss, size, json_bytes, focus = measure(n)
        mem = (rss - idle) / 1024
        out.append(
            (
                f"Analytics export, {n:,} audit rows of a day (calls + FOCUS)",
                f"{seconds:.1f} s ({n / seconds:,.0f} rows/s), peak RSS +{mem:.0f} MiB; "
                f"Parquet {size / 2**20:,.1f} MiB = {size / json_bytes:.1%} of the rows' JSON "
                f"({json_bytes / 2**20:,.0f} MiB); {focus:,.0f} FOCUS rows",
                "1M: ≤ 60 s, ≤ 300 MB, flat",
                "" if n < 1_000_000 else ("met" if seconds <= 60 and mem <= 300 else "NOT met"),
            )
        )
    return out


if __name__ == "__main__":
    for row in report():
        print(" | ".join(row))

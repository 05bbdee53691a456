"""Redaction throughput on prompt text, one core (issue 5 goal: >= 20 MB/s).

.venv/bin/python -m bench.redaction
"""

from __future__ import annotations

import time

from bench.corpus import prompts
from pipeline.protect.redactor import Redactor

GOAL_MB_S = 20.0


def measure(seconds: float = 3.0) -> dict[str, float]:
    texts = prompts(2000)
    size = sum(len(t.encode()) for t in texts)
    redactor = Redactor()
    masked = sum(sum(redactor.redact(t).counts.values()) for t in texts)  # warm up, and count
    runs = 0
    start = time.perf_counter()
    while True:
        for t in texts:
            redactor.redact(t)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            break
    mb_s = runs * size / elapsed / 1e6
    return {
        "prompts": len(texts),
        "mb": size / 1e6,
        "avg_prompt_bytes": size / len(texts),
        "masked": masked,
        "mb_s": mb_s,
        "us_per_prompt": elapsed / (runs * len(texts)) * 1e6,
    }


def report() -> list[tuple[str, str, str, str]]:
    m = measure()
    ok = "met" if m["mb_s"] >= GOAL_MB_S else "NOT met"
    return [
        (
            "Redaction, prompt text, 1 core",
            f"{m['mb_s']:.1f} MB/s ({m['us_per_prompt']:.0f} µs per "
            f"{m['avg_prompt_bytes']:.0f}-byte prompt; {m['masked']:.0f} values masked in "
            f"{m['prompts']:.0f} prompts)",
            f">= {GOAL_MB_S:.0f} MB/s",
            ok,
        )
    ]


if __name__ == "__main__":
    for row in report():
        print(" | ".join(row))

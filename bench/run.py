"""`make bench`: every benchmark, one table with the goals beside the measured figures.

.venv/bin/python -m bench.run            # print the table
.venv/bin/python -m bench.run --docs     # and put it in docs/performance.md

The adversarial inputs (bench/adversarial.py) add one row per stage to the table; their full
report (every case, and the exceptions found) is printed below it, not put in the docs.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

from bench import (
    adversarial,
    amplification,
    chargeback,
    encryption,
    export,
    memory,
    midnight,
    pipeline,
    redaction,
    replay,
    rollup,
)

PERFORMANCE = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
MARKERS = re.compile(r"(<!-- bench:start -->\n).*?(<!-- bench:end -->)", re.S)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table() -> tuple[str, str]:
    """The table, and the adversarial bench's full report."""
    rows: list[tuple[str, str, str, str]] = []
    rows += pipeline.report()
    rows += midnight.report()
    rows += redaction.report()
    rows += rollup.report()
    rows += chargeback.report()
    rows += export.report()
    rows += replay.report()
    rows += encryption.report()
    adversarial_rows, adversarial_report = adversarial.report()
    rows += adversarial_rows
    rows += amplification.report()
    rows += memory.report()
    header = ("Measure", "Measured", "Goal", "")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(4)]
    lines = [f"Machine: {machine()}", ""]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines), adversarial_report


def main(argv: list[str]) -> None:
    text, adversarial_report = table()
    print(text)
    print()
    print(adversarial_report)
    if "--docs" in argv:
        page = PERFORMANCE.read_text()
        if not MARKERS.search(page):
            raise SystemExit(
                f"{PERFORMANCE} has no <!-- bench:start --> / <!-- bench:end --> markers"
            )
        block = "```\n" + text + "\n```\n"
        PERFORMANCE.write_text(MARKERS.sub(lambda m: m.group(1) + block + m.group(2), page))
        print("\nupdated docs/performance.md")


if __name__ == "__main__":
    main(sys.argv[1:])

"""`make bench`: every benchmark, one table with the goals beside the measured figures.

.venv/bin/python -m bench.run
"""

from __future__ import annotations

import os
import platform

from bench import pipeline, redaction, replay, rollup


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


def main() -> None:
    rows: list[tuple[str, str, str, str]] = []
    rows += pipeline.report()
    rows += redaction.report()
    rows += rollup.report()
    rows += replay.report()
    header = ("Measure", "Measured", "Goal", "")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(4)]
    print(f"Machine: {machine()}\n")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()

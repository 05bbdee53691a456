"""Screenshot of a realistic chargeback statement for the README: docs/img/statement.png.

Four teams (one of them "Unattributed") over the 30 days of November 2025, made up with a
fixed seed, rendered by `pipeline.kpi.statement.render_html` and photographed by headless
Chromium (`apt-get install -y chromium`); the blank bottom of the page is cropped.

    .venv/bin/python -m bench.statement_shot [--html out/statement.html] [--png PATH]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import matplotlib.image

from pipeline.kpi.chargeback import COVERAGE, MEASURES
from pipeline.kpi.statement import render_html

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 2400

# team, cost center, calls on a weekday, prompt and completion tokens per call, USD per 1k tokens
TEAMS = [
    ("Claims", "CC-4100", 2600, 1900, 420, 0.0041),
    ("Underwriting", "CC-4200", 900, 5200, 900, 0.0062),
    ("Customer Service", "CC-5300", 4100, 800, 260, 0.0009),
    ("Unattributed", None, 350, 1500, 380, 0.0035),
]
FIELDS = [*MEASURES, *COVERAGE]  # the measures of a chargeback line


def _day(rng: random.Random, team: tuple, day: date) -> dict[str, Any]:
    _, _, calls, prompt, completion, price = team
    weekend = day.weekday() >= 5
    n = int(calls * (0.25 if weekend else 1.0) * rng.uniform(0.75, 1.3))
    ok = n - int(n * rng.uniform(0.005, 0.03))
    p, c = ok * int(prompt * rng.uniform(0.9, 1.1)), ok * int(completion * rng.uniform(0.9, 1.1))
    cached = int(p * rng.uniform(0.1, 0.3))
    return {
        "calls": n,
        "succeeded": ok,
        "promptTokens": p,
        "completionTokens": c,
        "cachedTokens": cached,
        "reasoningTokens": int(c * 0.2) if team[0] == "Underwriting" else 0,
        "totalTokens": p + c,
        "costUsd": round((p - cached * 0.5 + c * 3) / 1000 * price, 6),
        "unpricedCalls": rng.randint(0, 3) if team[0] == "Unattributed" else 0,
        "unknownTokenCalls": rng.randint(0, 1),
    }


def sample(seed: int = 7) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(chargeback report, daily cost per team) for November 2025."""
    rng = random.Random(seed)
    first = date(2025, 11, 1)
    lines, daily = [], []
    for team in TEAMS:
        line: dict[str, Any] = {"group": team[0], "costCenter": team[1], "costUsd": 0.0}
        line |= dict.fromkeys(FIELDS, 0)
        for n in range(30):
            day = first + timedelta(n)
            figures = _day(rng, team, day)
            for key in [*FIELDS, "costUsd"]:
                line[key] += figures[key]
            daily.append({"day": day.isoformat(), "group": team[0], "costUsd": figures["costUsd"]})
        lines.append(line)
    total: dict[str, Any] = {key: sum(line[key] for line in lines) for key in FIELDS}
    total["costUsd"] = round(sum(line["costUsd"] for line in lines), 6)
    for line in lines:
        line["costUsd"] = round(line["costUsd"], 6)
        line["share"] = round(line["costUsd"] / total["costUsd"], 4)
    lines.sort(key=lambda line: -line["costUsd"])
    report = {
        "from": "2025-11-01",
        "to": "2025-11-30",
        "by": "team",
        "currency": "USD",
        "priceTableVersion": "2025-06-01",
        "attributionVersion": "2025-11-01",
        "lines": lines,
        "total": total,
    }
    return report, daily


def screenshot(html: Path, png: Path) -> None:
    """Headless Chromium's picture of `html`, the white below the content cut off."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "shot.png"
        subprocess.run(
            [
                str(CHROMIUM),
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={tmp}/profile",
                f"--screenshot={raw}",
                f"--window-size={WIDTH},{HEIGHT}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        pixels = matplotlib.image.imread(str(raw))[:, :, :3]
        inked = (pixels < 0.98).any(axis=2).any(axis=1).nonzero()[0]
        bottom = min(HEIGHT, int(inked[-1]) + 24) if len(inked) else HEIGHT
        matplotlib.image.imsave(png, pixels[:bottom])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "statement.png")
    parser.add_argument("--html", type=Path, help="also keep the HTML page here")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: apt-get install -y chromium", file=sys.stderr)
        return 1
    report, daily = sample()
    page = render_html(report, daily)
    with tempfile.TemporaryDirectory() as tmp:
        html = args.html or Path(tmp) / "statement.html"
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(page, encoding="utf-8")
        args.png.parent.mkdir(parents=True, exist_ok=True)
        screenshot(html, args.png)
    print(f"wrote {args.png} ({args.png.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

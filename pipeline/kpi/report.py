"""The `kpi` report: KPI rows summed by a dimension, as a table, CSV or JSON, and a chart."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pipeline.common.render import json_text, spreadsheet_text, table, terminal_text
from pipeline.kpi.rollup import COUNTS, TOKENS, TOTAL_KEY
from pipeline.kpi.sketch import Sketch

BY = {
    "model": "Model",
    "deployment": "Deployment",
    "subscription": "SubscriptionId",
    "product": "ProductId",
    "backend": "BackendId",
}
UNKNOWN = "(unknown)"
CHART_SIZE = (1200, 800)  # pixels
CHART_HEADROOM = 0.08  # room above the tallest stacked bar, as a fraction of its height


@dataclass(slots=True)
class Line:
    key: str
    day: str | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKENS, 0))
    cost: float = 0.0
    duration: Sketch = field(default_factory=Sketch)
    backend: Sketch = field(default_factory=Sketch)

    def add(self, row: Mapping[str, Any]) -> None:
        for k in COUNTS:
            self.counts[k] += int(_v(row.get(k)) or 0)
        for k in TOKENS:
            self.tokens[k] += int(_v(row.get(k)) or 0)
        self.cost += float(row.get("CostUsd") or 0.0)
        for attr, col in (("duration", "DurationSketch"), ("backend", "BackendSketch")):
            if row.get(col):
                getattr(self, attr).merge(Sketch.from_json(orjson.loads(row[col])))

    def as_dict(self, by: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.day is not None:
            out["Day"] = self.day
        out[BY[by]] = self.key
        out.update(self.counts)
        out.update(self.tokens)
        out["CostUsd"] = round(self.cost, 6)
        for name, sk, q in (
            ("DurationP50Ms", self.duration, 0.5),
            ("DurationP95Ms", self.duration, 0.95),
            ("DurationP99Ms", self.duration, 0.99),
            ("BackendP95Ms", self.backend, 0.95),
        ):
            value = sk.quantile(q)
            out[name] = round(value, 1) if value is not None else None
        return out


def _v(value: Any) -> Any:
    return getattr(value, "value", value)


def summarize(rows: Iterable[Mapping[str, Any]], by: str, daily: bool) -> list[dict[str, Any]]:
    """Lines per dimension value (and day, when `daily`), largest cost first, then TOTAL."""
    column = BY[by]
    lines: dict[tuple[str | None, str], Line] = {}
    total = Line("TOTAL")
    for row in rows:
        if row["RowKey"] == TOTAL_KEY:
            total.add(row)
            continue
        day = row["PartitionKey"] if daily else None
        key = (day, row.get(column) or UNKNOWN)
        line = lines.get(key)
        if line is None:
            line = lines[key] = Line(key[1], day)
        line.add(row)
    ordered = sorted(lines.values(), key=lambda ln: (ln.day or "", -ln.cost, ln.key))
    return [ln.as_dict(by) for ln in ordered] + [total.as_dict(by)]


TABLE_COLUMNS = (
    "Calls",
    "Succeeded",
    "ClientErrors",
    "ServerErrors",
    "Throttled",
    "PromptTokens",
    "CompletionTokens",
    "CachedTokens",
    "ReasoningTokens",
    "CostUsd",
    "DurationP95Ms",
    "EstimatedCalls",
    "UnpricedCalls",
)


def as_table(lines: list[dict[str, Any]], by: str) -> str:
    first = ["Day"] if lines and "Day" in lines[0] else []
    return table(lines, [*first, BY[by], *TABLE_COLUMNS], max_width=40)


def as_csv(lines: list[dict[str, Any]]) -> str:
    if not lines:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(lines[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: spreadsheet_text(v) for k, v in ln.items()} for ln in lines)
    return out.getvalue()


def as_json(lines: list[dict[str, Any]]) -> str:
    return json_text(lines)


def _legend_label(name: str) -> str:
    """A group name as matplotlib shows it, literally: `$` would start math text (a name
    like `$\\frac{a}$` made the chart fail) and a leading `_` hides the legend entry."""
    text = str(terminal_text(name)).replace("$", r"\$")
    return "\u200b" + text if text.startswith("_") else text


def stacked_totals(series: Mapping[str, list[float]]) -> list[float]:
    """Per day, the height of its stacked bar: the layers summed in drawing order."""
    return [sum(layers, 0.0) for layers in zip(*series.values(), strict=True)]


def stacked_ylim(series: Mapping[str, list[float]]) -> tuple[float, float]:
    """The y limits of a stacked panel: from 0 to CHART_HEADROOM above the tallest day's total.

    Set explicitly because autoscaling can't be trusted here: matplotlib makes each bar's
    bottom a "sticky" edge that its margins must not cross, so a zero (or nearly zero) layer
    on top of the tallest day pins the axis to that day's total, or just below it."""
    tallest = max(stacked_totals(series), default=0.0)
    return 0.0, (tallest * (1 + CHART_HEADROOM) if tallest > 0 else 1.0)


def chart(daily_lines: list[dict[str, Any]], by: str, path: Path, title: str) -> Path:
    """Daily tokens and cost, stacked by the dimension: a PNG of CHART_SIZE pixels."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError(
            "kpi --chart needs matplotlib (pip install matplotlib; `make setup` installs it)"
        ) from None
    column = BY[by]
    lines = [ln for ln in daily_lines if ln.get("Day")]
    days = sorted({ln["Day"] for ln in lines})
    cost_by_key: dict[str, float] = {}
    for ln in lines:
        cost_by_key[ln[column]] = cost_by_key.get(ln[column], 0.0) + ln["CostUsd"]
    keys = sorted(cost_by_key, key=lambda k: (-cost_by_key[k], k))
    shown, rest = keys[:8], set(keys[8:])

    def series(metric: str) -> dict[str, list[float]]:
        out = {k: [0.0] * len(days) for k in [*shown, *(["other"] if rest else [])]}
        for ln in lines:
            k = "other" if ln[column] in rest else ln[column]
            out[k][days.index(ln["Day"])] += float(ln[metric] or 0)
        return out

    width, height = CHART_SIZE
    fig, (ax_tokens, ax_cost) = plt.subplots(2, 1, figsize=(width / 100, height / 100), dpi=100)
    x = list(range(len(days)))
    for ax, metric, label in (
        (ax_tokens, "TotalTokens", "Tokens per day"),
        (ax_cost, "CostUsd", "Cost per day (USD)"),
    ):
        layers = series(metric)
        bottom = [0.0] * len(days)
        for key, values in layers.items():
            ax.bar(x, values, bottom=bottom, label=_legend_label(key))
            bottom = [a + b for a, b in zip(bottom, values, strict=True)]
        ax.set_ylim(*stacked_ylim(layers))
        ax.set_ylabel(label)
        many = len(days) > 7
        ax.set_xticks(x, days, rotation=30 if many else 0, ha="right" if many else "center")
        ax.grid(axis="y", alpha=0.3)
    ax_tokens.set_title(title)
    ax_tokens.legend(title=column, fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

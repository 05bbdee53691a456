"""Chargeback: the hourly usage rows of a period summed by team, cost center or any
dimension, as the `chargeback` command's JSON contract (pure: rows in, a dict out).

Sums are exact: every measure of `lines` adds up to `total`. Costs are in micro-dollars
apportioned by largest remainder, so the rounded lines sum to the rounded total exactly
(rounding each line on its own could miss it by a cent over thousands of users), and the
total is the `kpi` report's for the same range (same rollup pass, same prices).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pipeline.common.render import json_text, spreadsheet_text, table
from pipeline.kpi.attribution import UNATTRIBUTED

# --by → the KpiHourly column it groups on.
BY: dict[str, str] = {
    "team": "Team",
    "cost-center": "CostCenter",
    "subscription": "SubscriptionId",
    "product": "ProductId",
    "app": "CallerAppId",
    "user": "CallerUserId",
    "model": "Model",
    "deployment": "Deployment",
}
NONE_GROUP = "(none)"
# Contract field → KpiHourly column.
MEASURES: dict[str, str] = {
    "calls": "Calls",
    "succeeded": "Succeeded",
    "promptTokens": "PromptTokens",
    "completionTokens": "CompletionTokens",
    "cachedTokens": "CachedTokens",
    "reasoningTokens": "ReasoningTokens",
    "totalTokens": "TotalTokens",
}
COVERAGE: dict[str, str] = {
    "unpricedCalls": "UnpricedCalls",
    "unknownTokenCalls": "UnknownTokenCalls",
}


# The KpiHourly rows a `--by` reads: a user's day, or the day by every other dimension.
def level_of(by: str) -> str:
    return "user" if by == "user" else "day"


MICRO = 1_000_000


@dataclass(slots=True)
class Sums:
    measures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MEASURES, 0))
    coverage: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COVERAGE, 0))
    cost: float = 0.0
    cost_centers: set[str] = field(default_factory=set)

    def add(self, row: Mapping[str, Any]) -> None:
        for name, column in MEASURES.items():
            self.measures[name] += _int(row.get(column))
        for name, column in COVERAGE.items():
            self.coverage[name] += _int(row.get(column))
        self.cost += float(_v(row.get("CostUsd")) or 0.0)
        center = row.get("CostCenter")
        if isinstance(center, str) and center:
            self.cost_centers.add(center)


def _v(value: Any) -> Any:
    return getattr(value, "value", value)


def _int(value: Any) -> int:
    value = _v(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def group_of(row: Mapping[str, Any], column: str) -> str:
    value = row.get(column)
    if isinstance(value, str) and value:
        return value
    return UNATTRIBUTED if column in ("Team", "CostCenter") else NONE_GROUP


@dataclass(slots=True)
class Folded:
    """A period's hourly rows summed by group, and by day and group (for the statement)."""

    groups: dict[str, Sums] = field(default_factory=dict)
    daily: dict[tuple[str, str], float] = field(default_factory=dict)
    # Each day's cost as its KpiDaily `_total` row says (None: rows without it).
    day_costs: dict[str, float | None] = field(default_factory=dict)
    price_versions: set[str] = field(default_factory=set)
    attribution_versions: set[str] = field(default_factory=set)


def fold(rows: Iterable[Mapping[str, Any]], by: str, daily: bool = True) -> Folded:
    """Stream usage rows into sums per group (memory: groups, not rows); with `daily`, the
    cost per day and group too (the HTML statement's chart: days × groups)."""
    column = BY[by]
    out = Folded()
    for row in rows:
        group = group_of(row, column)
        sums = out.groups.get(group)
        if sums is None:
            sums = out.groups[group] = Sums()
        sums.add(row)
        if daily:
            key = (row["PartitionKey"], group)
            out.daily[key] = out.daily.get(key, 0.0) + float(_v(row.get("CostUsd")) or 0.0)
        day_cost = row.get("DayCostUsd")
        out.day_costs[row["PartitionKey"]] = (
            float(day_cost) if isinstance(day_cost, int | float) else None
        )
        for versions, name in (
            (out.price_versions, "PriceTableVersion"),
            (out.attribution_versions, "AttributionVersion"),
        ):
            value = row.get(name)
            if isinstance(value, str) and value:
                versions.add(value)
    return out


def apportion(exact: list[float], total: float) -> list[int]:
    """Micro-dollar amounts of `exact` that sum to round(total) exactly (largest remainder)."""
    target = round(round(total, 6) * MICRO)
    scaled = [x * MICRO for x in exact]
    floors = [math.floor(x) for x in scaled]
    left = target - sum(floors)
    order = sorted(range(len(exact)), key=lambda i: (floors[i] - scaled[i], i))
    for i in order[: max(0, left)]:
        floors[i] += 1
    return floors


def report(
    folded: Folded, by: str, first: date, last: date, currency: str = "USD"
) -> dict[str, Any]:
    """The JSON contract of `chargeback`: lines (largest cost first) and their total."""
    groups = sorted(folded.groups.items(), key=lambda kv: (-kv[1].cost, -_calls(kv[1]), kv[0]))
    total_cost = _total_cost(folded, groups)
    micros = apportion([s.cost for _, s in groups], total_cost)
    total_calls = sum(_calls(s) for _, s in groups)
    lines = []
    for (group, sums), micro in zip(groups, micros, strict=True):
        if total_cost > 0:
            share = sums.cost / total_cost
        else:
            share = _calls(sums) / total_calls if total_calls else 0.0
        lines.append(
            {
                "group": group,
                "costCenter": _cost_center(by, group, sums),
                **sums.measures,
                "costUsd": micro / MICRO,
                "share": round(share, 4),
                **sums.coverage,
            }
        )
    total: dict[str, Any] = {name: sum(ln[name] for ln in lines) for name in MEASURES}
    total["costUsd"] = round(total_cost, 6)
    for name in COVERAGE:
        total[name] = sum(ln[name] for ln in lines)
    return {
        "from": f"{first:%Y-%m-%d}",
        "to": f"{last:%Y-%m-%d}",
        "by": by,
        "currency": currency,
        "priceTableVersion": _versions(folded.price_versions),
        "attributionVersion": _versions(folded.attribution_versions),
        "lines": lines,
        "total": total,
    }


def _total_cost(folded: Folded, groups: list[tuple[str, Sums]]) -> float:
    """The days' costs as KpiDaily's `_total` rows state them, summed in day order as the
    `kpi` report sums them; the groups' sum for rows written before they carried it."""
    days = folded.day_costs
    if days and all(v is not None for v in days.values()):
        return sum(days[d] or 0.0 for d in sorted(days))
    return sum(s.cost for _, s in groups)


def _calls(sums: Sums) -> int:
    return sums.measures["calls"]


def _cost_center(by: str, group: str, sums: Sums) -> str | None:
    if by == "cost-center":
        return None if group == UNATTRIBUTED else group
    if by == "team" and sums.cost_centers:
        return ",".join(sorted(sums.cost_centers))
    return None


def _versions(found: set[str]) -> str | None:
    """The version the period was rolled up with; several (re-rolled with another table
    or map part-way) are listed, comma-separated."""
    return ",".join(sorted(found)) or None


def daily_series(folded: Folded) -> list[dict[str, Any]]:
    """Cost per day and group, for the statement's chart."""
    return [
        {"day": day, "group": group, "costUsd": round(cost, 6)}
        for (day, group), cost in sorted(folded.daily.items())
    ]


# --- renderings ----------------------------------------------------------------------------------

FIELDS = ["group", "costCenter", *MEASURES, "costUsd", "share", *COVERAGE]


def as_json(doc: dict[str, Any]) -> str:
    return json_text(doc)


def as_csv(doc: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: spreadsheet_text(v) for k, v in ln.items()} for ln in doc["lines"])
    writer.writerow({"group": "TOTAL", **doc["total"]})
    return out.getvalue()


def as_table(doc: dict[str, Any]) -> str:
    lines = [
        {
            **ln,  # render.cell shows control characters as escapes
            "costUsd": f"{ln['costUsd']:.6f}",
            "share": f"{ln['share']:.1%}",
        }
        for ln in doc["lines"]
    ]
    lines.append({"group": "TOTAL", **doc["total"], "costUsd": f"{doc['total']['costUsd']:.6f}"})
    head = (
        f"{doc['from']} to {doc['to']} by {doc['by']} ({doc['currency']}; prices "
        f"{doc['priceTableVersion'] or '-'}; attribution {doc['attributionVersion'] or 'none'})"
    )
    return head + "\n" + table(lines, FIELDS, max_width=40)

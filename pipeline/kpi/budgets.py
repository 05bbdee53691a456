"""Budgets (BUDGETS): limits per day, ISO week or month (UTC), and which alerts they call for
at a given time. Pure: hourly usage rows in, decisions out (kpi/alerting.py does the I/O).

```json
{"budgets": [
  {"name": "claims-monthly", "scope": {"team": "Claims"}, "period": "month",
   "amountUsd": 50, "thresholds": [0.5, 0.8, 1.0], "forecast": true},
  {"name": "all-daily-tokens", "scope": {}, "period": "day", "tokens": 2000000,
   "thresholds": [1.0]}]}
```

- Spend counts the hours that are over at `at` (the last full hour): an hour still running is
  not in its hourly row yet, and a budget check must not depend on how far into it it ran.
- An alert is one per (budget, period, kind, threshold): `threshold` when spend reached that
  share of a limit (USD first, then tokens: whichever reaches it first names the metric);
  `forecast` (threshold 1.0) when the spend projected linearly to the end of the period
  exceeds a limit, only once 10 % of the period has passed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pipeline.kpi.attribution import KEY_COLUMNS, UNATTRIBUTED, column_values
from pipeline.kpi.files import DocumentError, ReadBlob, read_document
from pipeline.kpi.prices import key_of

SCHEMA = "aoai-audit-alert/1"
# Scope keys → the KpiHourly columns they compare (case-insensitively).
SCOPE_KEYS = {
    k: KEY_COLUMNS[k]
    for k in ("team", "costCenter", "subscription", "product", "app", "deployment", "model")
}
PERIODS = ("day", "week", "month")
_FIELDS = frozenset({"name", "scope", "period", "amountUsd", "tokens", "thresholds", "forecast"})
FORECAST_AFTER = 0.10  # share of the period that must have passed before a forecast alert
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
# What budgets read of KpiHourly.
COLUMNS = ["PartitionKey", "Hour", "CostUsd", "TotalTokens", *SCOPE_KEYS.values()]


class BudgetsError(ValueError):
    """The budgets file cannot be used; the message says where."""


@dataclass(frozen=True, slots=True)
class Budget:
    name: str
    scope: tuple[tuple[str, str], ...]  # (column, value as prices.key_of has it)
    scope_doc: dict[str, str]
    period: str
    amount_usd: float | None
    tokens: int | None
    thresholds: tuple[float, ...]
    forecast: bool

    def matches(self, row: Mapping[str, Any]) -> bool:
        for column, value in self.scope:
            got = row.get(column)
            if not isinstance(got, str) or not got:
                got = UNATTRIBUTED if column in ("Team",) else ""
            # A model as the price table and the rollup compare it (` GPT-4o ` is gpt-4o):
            # the label a day's KPIs give it is one of its spellings, not always this one.
            if key_of(column, got) != value:
                return False
        return True


# --- the file -------------------------------------------------------------------------------------


def load(source: str, read_blob: ReadBlob | None = None) -> list[Budget]:
    """The budgets BUDGETS names: "" (none), a file path, or blob:CONTAINER/NAME."""
    if not source:
        return []
    try:
        data = read_document("BUDGETS", source, read_blob)
    except DocumentError as exc:
        raise BudgetsError(str(exc)) from None
    return parse(data, source)


def parse(data: bytes, where: str = "BUDGETS") -> list[Budget]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BudgetsError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("budgets"), list):
        raise BudgetsError(f'{where}: expected an object with a "budgets" list')
    budgets = [_budget(b, f"{where}: budget {i + 1}") for i, b in enumerate(doc["budgets"])]
    seen: set[str] = set()
    for b in budgets:
        if b.name.casefold() in seen:
            raise BudgetsError(f"{where}: two budgets are named {b.name!r}")
        seen.add(b.name.casefold())
    return budgets


def _budget(raw: Any, where: str) -> Budget:
    if not isinstance(raw, dict):
        raise BudgetsError(f"{where}: expected an object")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise BudgetsError(
            f'{where}: "name" must be 1-100 letters, digits, spaces, ".", "_" or "-"'
        )
    where = f"{where} ({name!r})"
    unknown = set(raw) - _FIELDS
    if unknown:
        raise BudgetsError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    period = raw.get("period")
    if period not in PERIODS:
        raise BudgetsError(f'{where}: "period" must be one of {", ".join(PERIODS)}')
    amount, tokens = _limit(raw, "amountUsd", where), _limit(raw, "tokens", where)
    if amount is None and tokens is None:
        raise BudgetsError(f'{where}: needs "amountUsd", "tokens" or both')
    forecast = raw.get("forecast", False)
    if not isinstance(forecast, bool):
        raise BudgetsError(f'{where}: "forecast" must be true or false')
    scope_doc, scope = _scope(raw.get("scope", {}), where)
    return Budget(
        name,
        scope,
        scope_doc,
        period,
        amount,
        None if tokens is None else int(tokens),
        _thresholds(raw.get("thresholds", [1.0]), where),
        forecast,
    )


def _limit(raw: dict[str, Any], key: str, where: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise BudgetsError(f'{where}: "{key}" must be a number > 0')
    if key == "tokens" and not float(value).is_integer():
        raise BudgetsError(f'{where}: "tokens" must be a whole number')
    return float(value)


def _thresholds(raw: Any, where: str) -> tuple[float, ...]:
    if not isinstance(raw, list) or not raw or len(raw) > 20:
        raise BudgetsError(f'{where}: "thresholds" must be a list of 1 to 20 numbers')
    out = []
    for t in raw:
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 10:
            raise BudgetsError(f"{where}: thresholds are shares of the limit, > 0 and <= 10")
        out.append(float(t))
    return tuple(sorted(set(out)))


def _scope(raw: Any, where: str) -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    if not isinstance(raw, dict):
        raise BudgetsError(f'{where}: "scope" must be an object ({{}} = everything)')
    pairs = column_values(raw, SCOPE_KEYS, where, "scope", BudgetsError)
    return dict(raw), tuple((column, key_of(column, value)) for column, value in pairs)


# --- periods -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Period:
    label: str  # 2025-11-20, 2025-W47, 2025-11
    start: datetime
    end: datetime


def period_at(kind: str, at: datetime) -> Period:
    """The period of `kind` that holds `at` (UTC)."""
    day = at.astimezone(UTC).date()
    if kind == "day":
        start = day
        end = day + timedelta(days=1)
        label = f"{day:%Y-%m-%d}"
    elif kind == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
        year, week, _ = day.isocalendar()
        label = f"{year}-W{week:02d}"
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
        label = f"{day:%Y-%m}"
    as_time = lambda d: datetime(d.year, d.month, d.day, tzinfo=UTC)  # noqa: E731
    return Period(label, as_time(start), as_time(end))


def last_full_hour(at: datetime) -> datetime:
    """The end of the last hour that is over at `at`."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# --- spend and decisions -----------------------------------------------------------------------


@dataclass(slots=True)
class Spend:
    budget: Budget
    period: Period
    cost: float = 0.0
    tokens: int = 0

    def elapsed(self, at: datetime) -> float:
        """Share of the period over at `at`, counting full hours."""
        done = min(last_full_hour(at), self.period.end) - self.period.start
        return max(0.0, done / (self.period.end - self.period.start))

    def forecast(self, at: datetime, metric: str) -> float | None:
        elapsed = self.elapsed(at)
        if elapsed < FORECAST_AFTER:
            return None
        return (self.cost if metric == "costUsd" else self.tokens) / elapsed


def periods_at(kind: str, at: datetime) -> list[Period]:
    """The periods a check at `at` evaluates: the one that holds `at`, and, in the first hour
    of a period, the one that just ended (its last hour is over only now: without this,
    spend in a period's last hour would never be seen by any check of that period)."""
    current = period_at(kind, at)
    cut = last_full_hour(at)
    if cut == current.start:
        return [period_at(kind, cut - timedelta(hours=1)), current]
    return [current]


def spend(
    budgets: Iterable[Budget], rows: Iterable[Mapping[str, Any]], at: datetime
) -> list[Spend]:
    """Each budget's spend in its periods at `at` (periods_at), from KpiHourly rows (streamed
    once): whole days' rows (no `Hour`) for the days before `at`'s, hours' rows for that day."""
    cut = last_full_hour(at)
    spends = [Spend(b, p) for b in budgets for p in periods_at(b.period, at)]
    for row in rows:
        hour_start = datetime.fromisoformat(row["PartitionKey"]).replace(tzinfo=UTC)
        hour = _v(row.get("Hour"))
        if hour is not None:
            hour_start = hour_start.replace(hour=int(hour))
            if hour_start >= cut:
                continue  # the hour is not over: not counted yet
        elif hour_start >= cut.replace(hour=0):
            continue  # a whole day's row counts only for days over by the cut's day
        for s in spends:
            if s.period.start <= hour_start < s.period.end and s.budget.matches(row):
                s.cost += float(_v(row.get("CostUsd")) or 0.0)
                s.tokens += int(_v(row.get("TotalTokens")) or 0)
    return spends


def _v(value: Any) -> Any:
    return getattr(value, "value", value)


def earliest_start(budgets: Iterable[Budget], at: datetime) -> datetime | None:
    starts = [p.start for b in budgets for p in periods_at(b.period, at)]
    return min(starts) if starts else None


@dataclass(frozen=True, slots=True)
class Alert:
    """One decision: an alert of `kind` at `threshold` for a budget in a period."""

    budget: str
    period: str
    kind: str  # threshold | forecast
    threshold: float
    metric: str  # costUsd | tokens
    spent: float
    limit: float
    forecast: float | None
    at: datetime
    scope: dict[str, str] = field(default_factory=dict)

    @property
    def row_key(self) -> str:
        return f"{self.period}|{self.kind}|{self.threshold!r}"

    @property
    def id(self) -> str:
        return f"{self.budget}|{self.row_key}"

    def payload(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "id": self.id,
            "budget": self.budget,
            "scope": self.scope,
            "period": self.period,
            "kind": self.kind,
            "threshold": self.threshold,
            "metric": self.metric,
            "spent": _round(self.spent, self.metric),
            "limit": _round(self.limit, self.metric),
            "forecast": None if self.forecast is None else _round(self.forecast, self.metric),
            "at": self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "text": self.text(),
        }

    def text(self) -> str:
        unit = "USD" if self.metric == "costUsd" else "tokens"
        verb = "spent" if self.metric == "costUsd" else "used"
        limit = _show(self.limit, self.metric)
        if self.kind == "forecast":
            return (
                f"Budget {self.budget}: forecast {_show(self.forecast or 0, self.metric)} {unit} "
                f"exceeds {limit} {unit} in {self.period} ({_show(self.spent, self.metric)} "
                f"{unit} {verb} so far)"
            )
        share = self.spent / self.limit if self.limit else 0.0
        tail = (
            f" (forecast {_show(self.forecast, self.metric)} {unit})"
            if self.forecast is not None
            else ""
        )
        return f"Budget {self.budget}: {share:.0%} of {limit} {unit} {verb} in {self.period}{tail}"


def _round(value: float, metric: str) -> float | int:
    return round(value, 6) if metric == "costUsd" else round(value)


def _show(value: float, metric: str) -> str:
    if metric == "tokens" or value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def _limits(budget: Budget) -> list[tuple[str, float]]:
    out = []
    if budget.amount_usd is not None:
        out.append(("costUsd", budget.amount_usd))
    if budget.tokens is not None:
        out.append(("tokens", float(budget.tokens)))
    return out


def decide(s: Spend, at: datetime) -> list[Alert]:
    """The alerts the spend calls for now (one per kind and threshold; the recorder keeps
    each once per period, so deciding again later changes nothing)."""
    chosen: dict[tuple[str, float], Alert] = {}
    for metric, limit in _limits(s.budget):
        spent = s.cost if metric == "costUsd" else float(s.tokens)
        projected = s.forecast(at, metric)
        for t in s.budget.thresholds:
            if spent >= t * limit:
                chosen.setdefault(
                    ("threshold", t), _alert(s, "threshold", t, metric, spent, limit, projected, at)
                )
        if s.budget.forecast and projected is not None and projected > limit:
            chosen.setdefault(
                ("forecast", 1.0), _alert(s, "forecast", 1.0, metric, spent, limit, projected, at)
            )
    return list(chosen.values())


def _alert(
    s: Spend,
    kind: str,
    threshold: float,
    metric: str,
    spent: float,
    limit: float,
    projected: float | None,
    at: datetime,
) -> Alert:
    return Alert(
        s.budget.name,
        s.period.label,
        kind,
        threshold,
        metric,
        spent,
        limit,
        projected,
        at,
        dict(s.budget.scope_doc),
    )


def status(s: Spend, at: datetime) -> dict[str, Any]:
    """A budget's state at `at`, for `budgets status`."""
    out: dict[str, Any] = {"budget": s.budget.name, "period": s.period.label}
    for metric, limit in _limits(s.budget):
        spent = s.cost if metric == "costUsd" else float(s.tokens)
        projected = s.forecast(at, metric)
        out[metric] = {
            "spent": _round(spent, metric),
            "limit": _round(limit, metric),
            "share": round(spent / limit, 4),
            "forecast": None if projected is None else _round(projected, metric),
        }
    return out

"""The daily KPI job: read a day's audit rows, roll them up, replace the day's KPI rows.

Called by the timer function and by `python -m pipeline rollup`. Each run replaces the day's
rows, so running it again (after a replay, after editing the price table) never double
counts; it reprices history with the prices valid on each day.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from azure.core.exceptions import AzureError

from pipeline.kpi import attribution, budgets, prices
from pipeline.kpi.rollup import AUDIT_COLUMNS, named_by, rollup_day
from pipeline.settings import Config
from pipeline.store.account import Store
from pipeline.store.kpis import KpiStore

log = logging.getLogger("pipeline.kpi.daily")


@dataclass(frozen=True, slots=True)
class DayResult:
    day: date
    calls: int
    groups: int
    deleted: int
    cost_usd: float


def price_table(cfg: Config, store: Store) -> prices.PriceTable:
    return prices.load(cfg.price_table, read_blob=store.read_blob)


def attribution_map(cfg: Config, store: Store) -> attribution.Attribution:
    return attribution.load(cfg.attribution, read_blob=store.read_blob)


def roll_up(days: list[date], cfg: Config, store: Store) -> list[DayResult]:
    """Roll up `days`, after joining their calls keyed by a response id into their twins. A
    join that takes a row from a neighbouring day (within minutes of midnight) rolls that day
    up again too, unless it is later than every day asked (not rolled up yet)."""
    table = price_table(cfg, store)  # read once per run: every day of a run uses one table
    teams = attribution_map(cfg, store)
    named = named_by(table, teams, _budget_scopes(cfg, store))
    kpis = KpiStore(store)
    results: dict[date, DayResult] = {}
    queue, last = sorted(set(days)), max(days, default=None)
    while queue:
        day = queue.pop(0)
        label = f"{day:%Y-%m-%d}"
        for other in sorted(date.fromisoformat(d) for d in store.join_twins(label)):
            if other != day and last is not None and other <= last and other not in queue:
                queue.append(other)
        # A transient failure while paging the day restarts that day's pass (the rows are
        # streamed, never held): the result does not depend on how often it ran.
        rolled = store.call(
            lambda label=label, day=day: rollup_day(
                kpis.audit_rows(label, AUDIT_COLUMNS), day, table, teams, named
            )
        )
        entities = rolled.daily
        written, deleted = kpis.replace_day(label, entities)
        kpis.replace_day(label, rolled.hourly, store.kpi_hourly)
        total = entities[-1]
        results[day] = DayResult(day, total["Calls"], written - 1, deleted, total["CostUsd"])
        log.info(
            "kpi rollup %s: %d calls in %d groups, cost %.4f USD (prices %s)",
            label,
            total["Calls"],
            written - 1,
            total["CostUsd"],
            table.version,
        )
    return sorted(results.values(), key=lambda r: r.day)


def _budget_scopes(cfg: Config, store: Store) -> list[tuple[str, str]]:
    """The (column, value) pairs budgets are scoped by: the rollup never caps those names.
    Budgets that cannot be read are the budgets check's to report, not the rollup's."""
    try:
        found = budgets.load(cfg.budgets, read_blob=store.read_blob)
    except (budgets.BudgetsError, AzureError) as exc:
        log.warning(
            "kpi rollup: budgets not read (%s): their names may be capped", type(exc).__name__
        )
        return []
    return [pair for b in found for pair in b.scope]

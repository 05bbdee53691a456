"""The daily KPI job: read a day's audit rows, roll them up, replace the day's KPI rows.

Called by the timer function and by `python -m pipeline rollup`. Each run replaces the day's
rows, so running it again (after a replay, after editing the price table) never double
counts; it reprices history with the prices valid on each day.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from pipeline.kpi import prices
from pipeline.kpi.rollup import AUDIT_COLUMNS, rollup_day
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


def roll_up(days: list[date], cfg: Config, store: Store) -> list[DayResult]:
    table = price_table(cfg, store)  # read once per run: every day of a run uses one table
    kpis = KpiStore(store)
    results = []
    for day in days:
        label = f"{day:%Y-%m-%d}"
        # A transient failure while paging the day restarts that day's pass (the rows are
        # streamed, never held): the result does not depend on how often it ran.
        entities = store.call(
            lambda label=label, day=day: rollup_day(
                kpis.audit_rows(label, AUDIT_COLUMNS), day, table
            )
        )
        written, deleted = kpis.replace_day(label, entities)
        total = entities[-1]
        results.append(DayResult(day, total["Calls"], written - 1, deleted, total["CostUsd"]))
        log.info(
            "kpi rollup %s: %d calls in %d groups, cost %.4f USD (prices %s)",
            label,
            total["Calls"],
            written - 1,
            total["CostUsd"],
            table.version,
        )
    return results

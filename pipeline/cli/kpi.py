"""`python -m pipeline rollup` and `kpi`: roll audit rows up into daily KPI rows, and report
those rows by a dimension as a table, CSV, JSON or a chart."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.cli import options
from pipeline.compliance.seal import seal_days
from pipeline.kpi import daily, report
from pipeline.store.account import Store
from pipeline.store.kpis import KpiStore


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "rollup", help="roll audit rows up into daily KPI rows (replaces those days)"
    )
    p.add_argument("--day", type=options.day, help="last day to roll up (default: yesterday, UTC)")
    p.add_argument("--days", type=int, default=1, help="number of days ending at --day (default 1)")
    options.add_storage(p)
    p.set_defaults(func=cmd_rollup)

    p = sub.add_parser("kpi", help="daily KPIs by a dimension: table, CSV, JSON, chart")
    p.add_argument("--from", dest="from_day", type=options.day, required=True, metavar="DAY")
    p.add_argument("--to", dest="to_day", type=options.day, required=True, metavar="DAY")
    p.add_argument("--by", choices=sorted(report.BY), default="model")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--daily", action="store_true", help="one line per day and value")
    p.add_argument("--chart", metavar="FILE.png", help="write daily tokens and cost, stacked")
    options.add_storage(p)
    p.set_defaults(func=cmd_kpi)


def cmd_rollup(args: argparse.Namespace) -> int:
    cfg = options.config(args)
    store = options.ensured_store(cfg)
    last = args.day or (datetime.now(UTC).date() - timedelta(days=1))
    days = [last - timedelta(days=i) for i in range(args.days - 1, -1, -1)]
    for r in daily.roll_up(days, cfg, store):
        print(
            f"{r.day:%Y-%m-%d}: {r.calls} calls in {r.groups} groups, "
            f"cost {r.cost_usd:.4f} USD"
            + (f", {r.deleted} stale rows removed" if r.deleted else "")
        )
    for sealed in seal_days(days, store):
        if sealed.manifest:
            print(
                f"{sealed.day:%Y-%m-%d}: archive sealed, {sealed.blobs} blobs in {sealed.manifest}"
            )
    return 0


def cmd_kpi(args: argparse.Namespace) -> int:
    cfg = options.config(args)
    return kpi_report(options.ensured_store(cfg), args)


def kpi_report(store: Store, args: argparse.Namespace) -> int:
    """Print the KPI rows of `args.from_day` to `args.to_day` by `args.by` (and a chart)."""
    first, last = args.from_day, args.to_day
    if options.reversed_range(args):
        return 2
    rows = list(KpiStore(store).rows(f"{first:%Y-%m-%d}", f"{last:%Y-%m-%d}"))
    if not rows:
        print(
            f"no KPI rows between {first} and {last}: run `python -m pipeline rollup "
            f"--day {last} --days {(last - first).days + 1}` first",
            file=sys.stderr,
        )
        return 1
    lines = report.summarize(rows, args.by, daily=args.daily)
    if args.format == "csv":
        print(report.as_csv(lines), end="")
    elif args.format == "json":
        print(report.as_json(lines))
    else:
        print(report.as_table(lines, args.by))
    if args.chart:
        path = report.chart(
            report.summarize(rows, args.by, daily=True),
            args.by,
            Path(args.chart),
            f"Tokens and cost by {args.by}, {first} to {last}",
        )
        print(f"chart written to {path}", file=sys.stderr)
    return 0

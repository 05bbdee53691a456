"""`python -m pipeline chargeback`: who spent what in a period, from the hourly usage rows,
as a table, CSV, JSON (a contract: pipeline/kpi/chargeback.py) or one self-contained HTML
statement."""

from __future__ import annotations

import argparse
import calendar
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pipeline.cli import options
from pipeline.kpi import chargeback, packed, statement
from pipeline.kpi.rollup import LEVEL_RANGES
from pipeline.store.account import Store
from pipeline.store.kpis import KpiStore


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "chargeback",
        help="spend by team, cost center, subscription, product, app, user, model or deployment",
    )
    period = p.add_mutually_exclusive_group(required=True)
    period.add_argument("--month", type=month, metavar="YYYY-MM", help="a calendar month (UTC)")
    period.add_argument("--from", dest="from_day", type=options.day, metavar="DAY")
    p.add_argument("--to", dest="to_day", type=options.day, metavar="DAY", help="with --from")
    p.add_argument("--by", choices=list(chargeback.BY), default="team")
    p.add_argument("--format", choices=("table", "csv", "json", "html"), default="table")
    p.add_argument("--out", metavar="FILE", help="write there instead of standard output")
    options.add_storage(p)
    p.set_defaults(func=cmd_chargeback)


def month(value: str) -> tuple[date, date]:
    """An argparse type: YYYY-MM → its first and last day."""
    try:
        first = datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a month (YYYY-MM)") from None
    return first, first.replace(day=calendar.monthrange(first.year, first.month)[1])


def period_of(args: argparse.Namespace) -> tuple[date, date]:
    if args.month is not None:
        if args.to_day is not None:
            raise SystemExit("error: --to goes with --from, not with --month")
        return args.month
    if args.to_day is None:
        raise SystemExit("error: --from needs --to")
    if args.to_day < args.from_day:
        raise SystemExit("error: --to is before --from")
    return args.from_day, args.to_day


def cmd_chargeback(args: argparse.Namespace) -> int:
    first, last = period_of(args)
    cfg = options.config(args)
    store = options.ensured_store(cfg)
    text = statement_text(store, first, last, args.by, args.format)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{args.format} statement written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def statement_text(store: Store, first: date, last: date, by: str, fmt: str) -> str:
    """The period's chargeback in `fmt`, from KpiHourly (one streamed read)."""
    kpis = KpiStore(store)
    lo, hi = f"{first:%Y-%m-%d}", f"{last:%Y-%m-%d}"
    _warn_unrolled(kpis, first, last)
    keys = LEVEL_RANGES[chargeback.level_of(by)]
    folded = store.call(
        lambda: chargeback.fold(
            packed.unpack(kpis.usage_rows(lo, hi, keys)), by, daily=fmt == "html"
        )
    )
    doc = chargeback.report(folded, by, first, last)
    if fmt == "json":
        return chargeback.as_json(doc)
    if fmt == "csv":
        return chargeback.as_csv(doc)
    if fmt == "html":
        return statement.render_html(doc, chargeback.daily_series(folded))
    return chargeback.as_table(doc)


def _warn_unrolled(kpis: KpiStore, first: date, last: date) -> None:
    """Days of the period before today that were never rolled up are missing from it: say so."""
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    end = min(last, yesterday)
    if end < first:
        return
    rolled = kpis.rolled_days(f"{first:%Y-%m-%d}", f"{end:%Y-%m-%d}")
    days = [first + timedelta(days=i) for i in range((end - first).days + 1)]
    missing = [d for d in days if f"{d:%Y-%m-%d}" not in rolled]
    if missing:
        print(
            f"note: {len(missing)} day(s) of the period have no KPI rows (first {missing[0]}); "
            "if they had calls, run `python -m pipeline rollup` for them",
            file=sys.stderr,
        )

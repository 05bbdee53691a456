"""`python -m pipeline export` and `sql`: the audit rows, KPIs and FOCUS cost rows as Parquet
in a folder or a blob container, and DuckDB queries over them."""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from pipeline.cli import options
from pipeline.common.render import json_text, spreadsheet_text, table, terminal_text
from pipeline.export.columns import DATASETS
from pipeline.export.targets import blob_target
from pipeline.store.account import Store
from pipeline.store.exports import DirTarget, Target


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="audit rows, KPIs and FOCUS cost rows as Parquet")
    p.add_argument("--from", dest="from_day", type=options.day, required=True, metavar="DAY")
    p.add_argument("--to", dest="to_day", type=options.day, required=True, metavar="DAY")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--to-dir", metavar="PATH", help="a local folder")
    where.add_argument("--to-blob", metavar="CONTAINER[/PREFIX]", help="a blob container")
    p.add_argument(
        "--what",
        type=datasets,
        default=("calls", "kpi"),
        help="calls,kpi,focus (default calls,kpi)",
    )
    p.add_argument(
        "--target-storage",
        metavar="CONNECTION_STRING",
        help="storage account of --to-blob (default: the audit account)",
    )
    options.add_storage(p)
    p.set_defaults(func=cmd_export)

    q = sub.add_parser("sql", help="DuckDB SQL over an export (views calls, kpi, focus)")
    q.add_argument("query", metavar="SQL")
    source = q.add_mutually_exclusive_group(required=True)
    source.add_argument("--dir", metavar="PATH", help="an export folder")
    source.add_argument("--blob", metavar="CONTAINER[/PREFIX]", help="an export in blobs")
    q.add_argument("--format", choices=("table", "csv", "json"), default="table")
    q.add_argument("--target-storage", metavar="CONNECTION_STRING", help="account of --blob")
    options.add_storage(q)
    q.set_defaults(func=cmd_sql)


def datasets(value: str) -> tuple[str, ...]:
    """An argparse type: a comma-separated subset of calls, kpi, focus."""
    chosen = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    wrong = [v for v in chosen if v not in DATASETS]
    if wrong or not chosen:
        raise argparse.ArgumentTypeError(f"--what takes {', '.join(DATASETS)}, comma-separated")
    return chosen


def cmd_export(args: argparse.Namespace) -> int:
    from pipeline.export.days import export_days

    if options.reversed_range(args):
        return 2
    cfg = options.config(args)
    store = options.ensured_store(cfg)
    target: Target
    if args.to_dir:
        target = DirTarget(Path(args.to_dir))
    else:
        target = blob_target(cfg, store, args.to_blob, args.target_storage)
        target.ensure()
    span = (args.to_day - args.from_day).days + 1
    days = [args.from_day + timedelta(days=i) for i in range(span)]
    for r in export_days(days, cfg, store, target, args.what):
        counts = ", ".join(f"{n:,} {d}" for d, n in r.rows.items())
        state = f"written: {', '.join(r.written)}" if r.written else "unchanged (nothing rewritten)"
        _warn(r.problems)
        print(f"{r.day}: {counts}; {state}")
    print(f"export in {target.describe()} (manifests in _manifests/)")
    return 0


def cmd_sql(args: argparse.Namespace) -> int:
    from pipeline.export import sql

    if args.dir:
        root = Path(args.dir)
        days, problems = sql.manifests(DirTarget(root))
        _warn(problems)
        return _answer(sql.connect(root, days), args)
    cfg = options.config(args)
    target = blob_target(cfg, Store(cfg), args.blob, args.target_storage)
    with tempfile.TemporaryDirectory(prefix="aoai-sql-") as work:
        root = Path(work)
        days, problems = sql.manifests(target)
        _warn(problems)
        files = [e["path"] for m in days for entries in m["datasets"].values() for e in entries]
        sql.mirror(target, files, root)
        return _answer(sql.connect(root, days), args)


def _warn(problems: list[str]) -> None:
    for problem in problems:
        print(f"warning: {terminal_text(problem)} (left out)", file=sys.stderr)


def _answer(con: object, args: argparse.Namespace) -> int:
    from pipeline.export import sql

    try:
        columns, rows = sql.query(con, args.query)
    except Exception as exc:  # noqa: BLE001 - DuckDB's errors say what is wrong with the query
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json_text([dict(zip(columns, row, strict=True)) for row in rows]))
    elif args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        # Cells are row values (any sender's): one starting like a formula stays text.
        writer.writerows([spreadsheet_text(v) for v in row] for row in rows)
    else:
        print(table([dict(zip(columns, row, strict=True)) for row in rows], columns, max_width=40))
    return 0

"""`python -m pipeline demo`: the bundled APIM samples replayed into a private Azurite (or the
given storage), then the audit rows, one call in full, and the daily KPIs, as the commands a
user would type print them."""

from __future__ import annotations

import argparse
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pipeline.cli import options
from pipeline.cli.kpi import kpi_report
from pipeline.cli.runner import replay
from pipeline.cli.show import show
from pipeline.common.render import table
from pipeline.kpi import daily
from pipeline.settings import Config
from pipeline.sources import files
from pipeline.sources.inputs import Filters
from pipeline.store import rows
from pipeline.store.account import Store

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

DEMO_COLUMNS = (
    "CallTime",
    "SubscriptionId",
    "Deployment",
    "Model",
    "Operation",
    "Status",
    "DurationMs",
    "PromptTokens",
    "CompletionTokens",
    "TotalTokens",
    "TokensSource",
    "Sources",
    "Streamed",
    "BodyTruncated",
    "ErrorCode",
    "PromptPreview",
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="bundled samples → private Azurite → audit rows")
    options.add_storage(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.storage:
        return demo(options.config(args))
    from pipeline.cli.azurite import Azurite

    print("Starting a private Azurite (in memory) ...")
    with Azurite.start() as az:
        env = dict(os.environ, AUDIT_STORAGE_CONNECTION=az.connection_string)
        return demo(Config.from_env(env))


def demo(cfg: Config, samples: Path = SAMPLES) -> int:
    store = options.ensured_store(cfg)
    shown = os.path.relpath(samples) if samples.is_relative_to(Path.cwd()) else str(samples)
    print(f"Replaying the bundled APIM sample events from {shown} ...\n")
    summary = replay(files.local_inputs([shown], Filters()), cfg, store, say=print)
    for line in summary.lines():
        print(line)
    entities = sorted(store.audit.list_entities(), key=lambda e: (e["CallTime"], e["RowKey"]))
    print(f"\nAudit rows in table {cfg.audit_table}:\n")
    print(table(entities, DEMO_COLUMNS, max_width=36))
    _show_one_call(store, entities)
    days = sorted({e["PartitionKey"][:10] for e in entities})
    if days:
        _daily_kpis(cfg, store, date.fromisoformat(days[0]), date.fromisoformat(days[-1]))
    return 0 if summary.ok else 1


def _show_one_call(store: Store, entities: list[dict[str, Any]]) -> None:
    """`show` of a call with reported tokens and a raw record (else the first call)."""
    pick = next(
        (e for e in entities if e.get("TokensSource") == "reported" and e.get("RawBlob")),
        entities[0] if entities else None,
    )
    if pick is not None:
        cid = rows.correlation_id_of(pick["RowKey"])
        print(f"\nOne call in full: python -m pipeline show {cid}\n")
        show(store, cid)


def _daily_kpis(cfg: Config, store: Store, first: date, last: date) -> None:
    """`rollup` of the days from `first` to `last`, then `kpi` by subscription with a chart."""
    n = (last - first).days + 1
    print(f"\nDaily KPIs: python -m pipeline rollup --day {last} --days {n}\n")
    for r in daily.roll_up([first + timedelta(days=i) for i in range(n)], cfg, store):
        print(f"  {r.day}: {r.calls} calls, {r.groups} groups, {r.cost_usd:.4f} USD")
    chart = Path("out") / "kpi-by-subscription.png"
    chart.parent.mkdir(exist_ok=True)
    command = f"kpi --from {first} --to {last} --by subscription --chart {chart}"
    print(f"\npython -m pipeline {command}\n")
    args = argparse.Namespace(
        from_day=first,
        to_day=last,
        by="subscription",
        daily=False,
        format="table",
        chart=str(chart),
    )
    kpi_report(store, args)

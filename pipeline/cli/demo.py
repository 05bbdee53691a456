"""`python -m pipeline demo`: the bundled APIM samples replayed into a private Azurite (or the
given storage), then the audit rows, one call in full, and the daily KPIs, as the commands a
user would type print them."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from pipeline.cli import options
from pipeline.cli.chargeback import statement_text
from pipeline.cli.kpi import kpi_report
from pipeline.cli.receiver import Receiver
from pipeline.cli.runner import replay
from pipeline.cli.show import show
from pipeline.common.render import table
from pipeline.compliance.seal import seal_days
from pipeline.kpi import alerting, budgets, daily
from pipeline.settings import Config
from pipeline.sources import files
from pipeline.sources.inputs import Filters
from pipeline.store import rows
from pipeline.store.account import Store

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
# The demo's attribution map and budgets (not in samples/: replay reads every file there).
EXAMPLES = SAMPLES.parent / "examples"

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
    # The sample attribution map and budgets, unless the environment names others.
    cfg = replace(
        cfg,
        attribution=cfg.attribution or os.path.relpath(EXAMPLES / "attribution.json"),
        budgets=cfg.budgets or os.path.relpath(EXAMPLES / "budgets.json"),
    )
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
        first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
        _daily_kpis(cfg, store, first, last)
        _chargeback(store, first, last)
        _budget_check(cfg, store, last)
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
    days = [first + timedelta(days=i) for i in range(n)]
    for r in daily.roll_up(days, cfg, store):
        print(f"  {r.day}: {r.calls} calls, {r.groups} groups, {r.cost_usd:.4f} USD")
    sealed = [s for s in seal_days(days, store) if s.manifest]
    print(
        f"  archive sealed: {len(sealed)} daily manifests; check them with "
        f"python -m pipeline verify --from {first} --to {last}"
    )
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


def _chargeback(store: Store, first: date, last: date) -> None:
    """`chargeback` by team as a table, and the HTML statement."""
    print(f"\npython -m pipeline chargeback --from {first} --to {last} --by team\n")
    print(statement_text(store, first, last, "team", "table"))
    page = Path("out") / "statement.html"
    page.write_text(statement_text(store, first, last, "team", "html"), encoding="utf-8")
    print(
        f"python -m pipeline chargeback --from {first} --to {last} --format html --out {page}"
        f"\n  → {page} (one self-contained page: open it, or mail it)"
    )


def _budget_check(cfg: Config, store: Store, last: date) -> None:
    """`budgets check` at the end of the last day, alerts posted to a local receiver."""
    at = datetime(last.year, last.month, last.day, 23, 30, tzinfo=UTC)
    with Receiver(on_alert=lambda a: print(f"  webhook received: {a['text']}")) as receiver:
        checked = replace(cfg, alert_webhook=cfg.alert_webhook or receiver.url)
        print(
            f"\nBudgets ({cfg.budgets}): python -m pipeline budgets check --at {at:%Y-%m-%dT%H:%MZ}"
        )
        print(f"  (ALERT_WEBHOOK → a local receiver, {receiver.url})\n")
        result = alerting.check(checked, store, at)
        for state in result.spends:
            for line in _status_lines(budgets.status(state, at)):
                print(line)
        print(f"\n{len(result.decided)} alerts decided, {len(result.delivered)} delivered")
        if receiver.received:
            print("\nOne alert as the webhook got it:\n")
            print(orjson.dumps(receiver.received[0], option=orjson.OPT_INDENT_2).decode())


def _status_lines(state: dict[str, Any]) -> list[str]:
    lines = []
    for metric in ("costUsd", "tokens"):
        if metric in state:
            m = state[metric]
            lines.append(
                f"  {state['budget']} {state['period']}: {m['spent']} of {m['limit']} "
                f"{'USD' if metric == 'costUsd' else 'tokens'} ({m['share']:.0%})"
            )
    return lines

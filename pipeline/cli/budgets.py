"""`python -m pipeline budgets check|status`: evaluate the budgets (BUDGETS) at a time, as the
`budgets` timer does, and deliver or print what they say."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import orjson

from pipeline.cli import options
from pipeline.common.render import table
from pipeline.kpi import alerting, budgets


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("budgets", help="check budgets and send alerts, or print their status")
    actions = p.add_subparsers(dest="action", required=True)
    for name, func, text in (
        ("check", cmd_check, "roll up what is needed, record and deliver due alerts"),
        ("status", cmd_status, "each budget's spend, limit, share and forecast"),
    ):
        q = actions.add_parser(name, help=text)
        q.add_argument(
            "--at",
            type=moment,
            metavar="ISO_TIME",
            help="evaluate at this UTC time (default: now); spend counts the hours over by then",
        )
        if name == "status":
            q.add_argument("--format", choices=("table", "json"), default="table")
        options.add_storage(q)
        q.set_defaults(func=func)


def moment(value: str) -> datetime:
    """An argparse type: an ISO 8601 time (UTC when it names no offset)."""
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def cmd_check(args: argparse.Namespace) -> int:
    cfg = options.config(args)
    store = options.ensured_store(cfg)
    at = args.at or datetime.now(UTC)
    result = alerting.check(cfg, store, at)
    if not result.spends:
        print("no budgets (set BUDGETS to a file or blob:CONTAINER/NAME)")
        return 0
    for alert in result.decided:
        print(f"alert {alert.id}: {alert.text()}")
    for alert_id in result.delivered:
        print(f"delivered {alert_id}")
    for alert_id, why in result.failed.items():
        print(f"not delivered {alert_id}: {why} (retried at the next check)")
    if not result.decided and not result.delivered and not result.failed:
        print(f"{len(result.spends)} budgets checked at {at:%Y-%m-%dT%H:%MZ}: no new alert")
    return 1 if result.failed else 0  # a scheduler sees an alert nobody received


def cmd_status(args: argparse.Namespace) -> int:
    cfg = options.config(args)
    store = options.ensured_store(cfg)
    at = args.at or datetime.now(UTC)
    states = [budgets.status(s, at) for s in alerting.spends_at(cfg, store, at)]
    if args.format == "json":
        print(orjson.dumps(states, option=orjson.OPT_INDENT_2).decode())
        return 0
    lines = []
    for state in states:
        for metric in ("costUsd", "tokens"):
            if metric in state:
                m = state[metric]
                lines.append(
                    {
                        "budget": state["budget"],
                        "period": state["period"],
                        "metric": metric,
                        "spent": m["spent"],
                        "limit": m["limit"],
                        "share": f"{m['share']:.1%}",
                        "forecast": "-" if m["forecast"] is None else m["forecast"],
                    }
                )
    print(table(lines, ["budget", "period", "metric", "spent", "limit", "share", "forecast"]))
    return 0

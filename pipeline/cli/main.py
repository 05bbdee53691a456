"""`python -m pipeline`: replay recorded events, inspect a call, run the demo.

Every command calls the same functions as the Function App's triggers.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

from pipeline import __version__
from pipeline.cli import doctor
from pipeline.cli import send as publish
from pipeline.cli.replay import Progress, ResumeState, replay, stop_on_ctrl_c
from pipeline.common.render import table
from pipeline.kpi import daily, report
from pipeline.protect.archive import ArchiveError, open_member
from pipeline.settings import SETTINGS, Config, SettingsError, azure_defaults, sample_values
from pipeline.sources import inputs
from pipeline.store import rows
from pipeline.store.account import KpiStore, Store

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

ROW_ORDER = (
    ["PartitionKey", "RowKey"]
    + [p for p, _ in rows.FACT_PROPERTIES]
    + [p for p, _ in rows.USAGE_PROPERTIES]
    + ["TokensSource", "PromptPreview", "CompletionPreview", "Sources"]
    + ["RawBlob", "RawOffset", "RawLength", "RawSha256", "PipelineVersion"]
)
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


def _config(args: argparse.Namespace) -> Config:
    env = dict(os.environ)
    if getattr(args, "storage", None):
        env["AUDIT_STORAGE_CONNECTION"] = args.storage
    return Config.from_env(env)


def _store(cfg: Config) -> Store:
    store = Store(cfg)
    store.ensure()
    return store


def _replay_sources(args: argparse.Namespace, store: Store) -> list[tuple[str, Any, str, str]]:
    """(kind, container, prefix, what names it) of each container replay reads from, each
    checked to exist: a misspelled name is an error, never an empty (or new) container."""
    sources: list[tuple[str, Any, str, str]] = []
    if args.from_blob:
        name, _, prefix = args.from_blob.partition("/")
        service = (
            BlobServiceClient.from_connection_string(args.source_storage)
            if args.source_storage
            else store.blobs
        )
        sources.append(("capture", service.get_container_client(name), prefix, "--from-blob"))
    if args.from_archive is not None:
        sources.append(("archive", store.archive, args.from_archive, "ARCHIVE_CONTAINER"))
    if args.from_deadletter is not None:
        sources.append(
            ("deadletter", store.deadletters, args.from_deadletter, "DEADLETTER_CONTAINER")
        )
    for _, container, _, named_by in sources:
        store.require_container(container, named_by)
    return sources


def _replay_inputs(
    args: argparse.Namespace, store: Store, sources: list[tuple[str, Any, str, str]]
) -> list[Any]:
    filters = inputs.Filters(
        since=inputs.parse_when(args.since) if args.since else None,
        until=inputs.parse_when(args.until) if args.until else None,
        partitions=frozenset(args.partition or ()),
    )
    items: list[Any] = list(inputs.local_inputs(args.paths, filters))
    for kind, container, prefix, _ in sources:
        if kind == "deadletter":
            items += inputs.deadletter_inputs(container, prefix, call=store.call)
        else:
            items += inputs.blob_inputs(container, prefix, filters, kind, store.call)
    return items


def cmd_replay(args: argparse.Namespace) -> int:
    if not (
        args.paths
        or args.from_blob
        or args.from_archive is not None
        or args.from_deadletter is not None
    ):
        print(
            "error: give files or folders, --from-blob, --from-archive or --from-deadletter",
            file=sys.stderr,
        )
        return 2
    cfg = _config(args)
    try:
        store = Store(cfg)
        # The containers read from must exist (checked before anything is created), and a
        # dry run or a re-publication creates nothing at all.
        sources = _replay_sources(args, store)
        if not (args.dry_run or args.to_eventhub):
            store.ensure()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - unreachable storage is a message, not a traceback
        print(f"error: storage unreachable: {type(exc).__name__}: {exc}"[:500], file=sys.stderr)
        return 2
    try:
        items = _replay_inputs(args, store, sources)
        state = None if args.dry_run else ResumeState(Path(args.state), args.resume)
    except (ValueError, inputs.InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AzureError as exc:
        print(
            f"error: listing the blobs failed: {type(exc).__name__}: {exc}"[:500], file=sys.stderr
        )
        return 2
    if args.to_eventhub:
        return _republish(args, items)
    progress = Progress(0, 0) if not args.quiet else None
    stop = threading.Event()
    with stop_on_ctrl_c(stop):
        summary = replay(
            items,
            cfg,
            store,
            batch_size=args.batch_size,
            dry_run=args.dry_run,
            state=state,
            progress=progress,
            stop=stop,
        )
    for line in summary.lines():
        print(line)
    days = sorted(summary.totals.days)
    if days and args.dry_run:
        print(f"KPI days that would change: {', '.join(days)}")
    elif days and args.rollup:
        for r in daily.roll_up([date.fromisoformat(d) for d in days], cfg, store):
            print(f"KPIs rolled up again for {r.day}: {r.calls} calls, {r.cost_usd:.4f} USD")
    elif days:
        first, last = days[0], days[-1]
        n = (date.fromisoformat(last) - date.fromisoformat(first)).days + 1
        print(f"KPI days touched: run `python -m pipeline rollup --day {last} --days {n}`")
    if not summary.ok:
        if summary.failed_inputs:
            print(
                f"{summary.failed_inputs} inputs were not stored (wholly or in part)",
                file=sys.stderr,
            )
        if summary.not_stored:
            print(f"{summary.not_stored} events were not stored", file=sys.stderr)
        return 130 if summary.interrupted else 1
    return 0


def _republish(args: argparse.Namespace, items: list[Any]) -> int:
    producer = publish.producer_for(
        args.to_eventhub, args.eventhub_connection, args.eventhub_namespace
    )
    problems = 0

    def report(message: str) -> None:
        nonlocal problems
        problems += 1
        print(f"error: {message}", file=sys.stderr)

    def events() -> Any:
        for item in items:
            if isinstance(item, inputs.InputProblem):
                report(f"{item.where}: {item.message}")
                continue
            try:
                yield from item.events(item.fetch(), report=report)
            except inputs.InputError as exc:
                report(str(exc))

    with producer:
        stats = publish.publish(events(), producer)
    print(
        f"published {stats.events} events in {stats.batches} batches "
        f"({stats.bytes:,} bytes) to {args.to_eventhub}"
    )
    return 1 if problems else 0


def print_row(entity: dict[str, Any]) -> None:
    keys = [k for k in ROW_ORDER if k in entity] + sorted(
        k for k in entity if k not in ROW_ORDER and k != "Fragments"
    )
    width = max(len(k) for k in keys)
    for key in keys:
        value = entity[key]
        if hasattr(value, "value") and not isinstance(value, str):
            value = value.value
        print(f"  {key.ljust(width)}  {value}")


def raw_records(store: Store, entity: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The raw record of each source of a row, read with one ranged read each."""
    state = rows.state_from_entity(entity)
    out = []
    for key, frag in sorted(state.call.fragments.items()):
        p = frag.pointer
        if p is None:
            continue
        data = store.read_range(store.archive, p.blob, p.offset, p.length)
        out.append((key, open_member(data, p.sha256)))
    return out


def show(store: Store, correlation_id: str) -> int:
    found = store.find_rows(correlation_id)
    if not found:
        print(f"no audit row for correlation id {correlation_id!r}", file=sys.stderr)
        return 1
    for entity in found:
        print(f"Audit row ({store.cfg.audit_table}):")
        print_row(entity)
        try:
            records = raw_records(store, entity)
        except ArchiveError as exc:
            print(f"error: raw record unreadable: {exc}", file=sys.stderr)
            return 1
        for key, member in records:
            print(f"\nRaw record ({key}, verified against RawSha256):")
            print(orjson.dumps(member, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    cfg = _config(args)
    return show(Store(cfg), args.correlation_id)


def demo(cfg: Config, samples: Path = SAMPLES) -> int:
    store = _store(cfg)
    shown = os.path.relpath(samples) if samples.is_relative_to(Path.cwd()) else str(samples)
    print(f"Replaying the bundled APIM sample events from {shown} ...\n")
    summary = replay(inputs.local_inputs([shown], inputs.Filters()), cfg, store, say=print)
    for line in summary.lines():
        print(line)
    entities = sorted(store.audit.list_entities(), key=lambda e: (e["CallTime"], e["RowKey"]))
    print(f"\nAudit rows in table {cfg.audit_table}:\n")
    print(table(entities, DEMO_COLUMNS, max_width=36))
    pick = next(
        (e for e in entities if e.get("TokensSource") == "reported" and e.get("RawBlob")),
        entities[0] if entities else None,
    )
    if pick is not None:
        cid = rows.correlation_id_of(pick["RowKey"])
        print(f"\nOne call in full: python -m pipeline show {cid}\n")
        show(store, cid)
    days = sorted({e["PartitionKey"][:10] for e in entities})
    if days:
        first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
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
        kpi_report(cfg, store, args)
    return 0 if summary.ok else 1


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a day (YYYY-MM-DD)") from None


def cmd_rollup(args: argparse.Namespace) -> int:
    cfg = _config(args)
    store = _store(cfg)
    last = args.day or (datetime.now(UTC).date() - timedelta(days=1))
    days = [last - timedelta(days=i) for i in range(args.days - 1, -1, -1)]
    for r in daily.roll_up(days, cfg, store):
        print(
            f"{r.day:%Y-%m-%d}: {r.calls} calls in {r.groups} groups, "
            f"cost {r.cost_usd:.4f} USD"
            + (f", {r.deleted} stale rows removed" if r.deleted else "")
        )
    return 0


def kpi_report(cfg: Config, store: Store, args: argparse.Namespace) -> int:
    first, last = args.from_day, args.to_day
    if last < first:
        print("error: --to is before --from", file=sys.stderr)
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


def cmd_kpi(args: argparse.Namespace) -> int:
    cfg = _config(args)
    return kpi_report(cfg, _store(cfg), args)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.storage:
        return demo(_config(args))
    from pipeline.cli.azurite import Azurite

    print("Starting a private Azurite (in memory) ...")
    with Azurite.start() as az:
        env = dict(os.environ, AUDIT_STORAGE_CONNECTION=az.connection_string)
        return demo(Config.from_env(env))


def sample_json() -> str:
    doc = {"IsEncrypted": False, "Values": sample_values()}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def _env_with_local_settings(path: str | None) -> dict[str, str]:
    """The environment, plus the Values of a local.settings.json when given."""
    env = dict(os.environ)
    if path:
        doc = orjson.loads(Path(path).read_bytes())
        env.update({k: str(v) for k, v in (doc.get("Values") or {}).items()})
    return env


def cmd_doctor(args: argparse.Namespace) -> int:
    env = _env_with_local_settings(args.settings)
    if args.storage:
        env["AUDIT_STORAGE_CONNECTION"] = args.storage
    checks = doctor.run(env)
    for check in checks:
        print(check.line())
    failed = sum(c.status == "fail" for c in checks)
    print(
        f"\n{len(checks)} checks: {failed} failed"
        + ("" if failed else ", deployment looks healthy")
    )
    return 1 if failed else 0


def cmd_send(args: argparse.Namespace) -> int:
    env = _env_with_local_settings(args.settings)
    hub = args.hub or env.get("EVENTHUB_NAME") or "apim-logs"
    connection = args.connection or env.get("EventHubConnection") or None
    namespace = args.namespace or env.get("EventHubConnection__fullyQualifiedNamespace") or None
    items = list(inputs.local_inputs(args.paths, inputs.Filters()))
    problems = [i for i in items if isinstance(i, inputs.InputProblem)]
    for p in problems:
        print(f"error: {p.where}: {p.message}", file=sys.stderr)

    def events() -> Any:
        for item in items:
            if isinstance(item, inputs.Input):
                for event in item.events(item.fetch()):
                    if args.partition_key:
                        event = replace(event, partition_key=args.partition_key)
                    yield event

    producer = publish.producer_for(hub, connection, namespace)
    with producer:
        stats = publish.publish(events(), producer)
    print(f"sent {stats.events} events in {stats.batches} batches ({stats.bytes:,} bytes) to {hub}")
    return 1 if problems else 0


def cmd_settings(args: argparse.Namespace) -> int:
    if args.write:
        repo = Path(__file__).resolve().parents[2]
        (repo / "local.settings.sample.json").write_text(sample_json())
        (repo / "infra" / "app-settings.json").write_text(
            orjson.dumps(azure_defaults(), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
        readme = repo / "README.md"
        text = readme.read_text()
        start, end = "<!-- settings:start -->\n", "<!-- settings:end -->"
        head, _, rest = text.partition(start)
        _, _, tail = rest.partition(end)
        readme.write_text(head + start + settings_markdown() + "\n" + end + tail)
        print("updated local.settings.sample.json, infra/app-settings.json and README.md")
    elif args.format == "sample":
        print(sample_json(), end="")
    else:
        print(settings_markdown())
    return 0


def settings_markdown() -> str:
    lines = [
        "| Setting | Default | Read by | In Azure (infra/) | What it does |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        if s.azure == "":
            azure = "not set"
        elif s.azure:
            azure = f"`{s.azure}`"
        else:
            azure = "same name"
        lines.append(f"| `{s.name}` | {default} | {s.scope} | {azure} | {s.doc} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Audit and usage pipeline for Azure OpenAI traffic through APIM.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)

    def storage_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--storage",
            metavar="CONNECTION_STRING",
            help="audit storage connection string (default: AUDIT_STORAGE_CONNECTION, "
            "else Azurite's development storage)",
        )

    p = sub.add_parser(
        "replay", help="process recorded events: files, Event Hubs Capture, our archive"
    )
    p.add_argument(
        "paths",
        nargs="*",
        help=".json (one body), .jsonl (one per line) or Capture .avro files, or folders",
    )
    p.add_argument("--from-blob", metavar="CONTAINER[/PREFIX]", help="Capture .avro blobs")
    p.add_argument(
        "--source-storage",
        metavar="CONNECTION_STRING",
        help="storage account of --from-blob (default: the audit storage)",
    )
    p.add_argument(
        "--from-archive",
        nargs="?",
        const="",
        metavar="PREFIX",
        help="our raw archive (optionally a path prefix, e.g. 2025/11/04)",
    )
    p.add_argument(
        "--from-deadletter",
        nargs="?",
        const="",
        metavar="PREFIX",
        help="dead letters not yet replayed (marked done once they become rows)",
    )
    p.add_argument("--since", help="only inputs whose path time is at or after (date or time, UTC)")
    p.add_argument("--until", help="only inputs whose path time is before")
    p.add_argument("--partition", action="append", help="only this Event Hub partition (repeat)")
    p.add_argument(
        "--batch-size", type=int, default=100, help="events per batch (default 100, as the host)"
    )
    p.add_argument("--dry-run", action="store_true", help="say what would change; write nothing")
    p.add_argument("--resume", action="store_true", help="skip inputs completed by earlier runs")
    p.add_argument("--state", default=".replay-state.json", help="resume state file")
    p.add_argument(
        "--no-rollup",
        dest="rollup",
        action="store_false",
        help="do not roll the touched KPI days up again",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument(
        "--to-eventhub", metavar="HUB", help="publish the events to this Event Hub instead"
    )
    p.add_argument("--eventhub-connection", metavar="CONNECTION_STRING")
    p.add_argument(
        "--eventhub-namespace",
        metavar="FQDN",
        help="e.g. ns.servicebus.windows.net (DefaultAzureCredential)",
    )
    storage_arg(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("show", help="print a call's audit row and its raw record")
    p.add_argument("correlation_id")
    storage_arg(p)
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("demo", help="bundled samples → private Azurite → audit rows")
    storage_arg(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "rollup", help="roll audit rows up into daily KPI rows (replaces those days)"
    )
    p.add_argument("--day", type=_day, help="last day to roll up (default: yesterday, UTC)")
    p.add_argument("--days", type=int, default=1, help="number of days ending at --day (default 1)")
    storage_arg(p)
    p.set_defaults(func=cmd_rollup)

    p = sub.add_parser("kpi", help="daily KPIs by a dimension: table, CSV, JSON, chart")
    p.add_argument("--from", dest="from_day", type=_day, required=True, metavar="DAY")
    p.add_argument("--to", dest="to_day", type=_day, required=True, metavar="DAY")
    p.add_argument("--by", choices=sorted(report.BY), default="model")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--daily", action="store_true", help="one line per day and value")
    p.add_argument("--chart", metavar="FILE.png", help="write daily tokens and cost, stacked")
    storage_arg(p)
    p.set_defaults(func=cmd_kpi)

    p = sub.add_parser("doctor", help="check a deployment: settings, storage, immutability, canary")
    p.add_argument("--settings", metavar="local.settings.json", help="read Values from this file")
    storage_arg(p)
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser(
        "send", help="publish recorded APIM events to an Event Hub (e.g. the emulator)"
    )
    p.add_argument("paths", nargs="+", help=".json, .jsonl or Capture .avro files, or folders")
    p.add_argument("--hub", help="Event Hub name (default: EVENTHUB_NAME)")
    p.add_argument("--connection", help="connection string (default: EventHubConnection)")
    p.add_argument("--namespace", help="FQDN, with DefaultAzureCredential instead of a key")
    p.add_argument("--partition-key", help="send every event with this partition key")
    p.add_argument("--settings", metavar="local.settings.json", help="read Values from this file")
    p.set_defaults(func=cmd_send)

    p = sub.add_parser("settings", help="list the settings (README table or local.settings sample)")
    p.add_argument("--format", choices=("markdown", "sample"), default="markdown")
    p.add_argument(
        "--write", action="store_true", help="regenerate local.settings.sample.json and README"
    )
    p.set_defaults(func=cmd_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # The CLI prints its own messages; library warnings would repeat them.
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `python -m pipeline ... | head`
        sys.stderr.close()
        return 0

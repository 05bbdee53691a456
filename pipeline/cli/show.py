"""`python -m pipeline show`: a call's audit row and the raw record of each of its sources,
each read with one ranged read and verified against its hash."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from pipeline.cli import options
from pipeline.protect.archive import ArchiveError, open_member
from pipeline.store import rows
from pipeline.store.account import Store

ROW_ORDER = (
    ["PartitionKey", "RowKey"]
    + [p for p, _ in rows.FACT_PROPERTIES]
    + [p for p, _ in rows.USAGE_PROPERTIES]
    + ["TokensSource", "PromptPreview", "CompletionPreview", "Sources"]
    + ["RawBlob", "RawOffset", "RawLength", "RawSha256", "PipelineVersion"]
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("show", help="print a call's audit row and its raw record")
    p.add_argument("correlation_id")
    options.add_storage(p)
    p.set_defaults(func=cmd_show)


def cmd_show(args: argparse.Namespace) -> int:
    return show(Store(options.config(args)), args.correlation_id)


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

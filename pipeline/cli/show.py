"""`python -m pipeline show`: a call's audit row and the raw record of each of its sources,
each read with one ranged read and verified against its hash."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pipeline.call.join import rank_of
from pipeline.cli import options
from pipeline.common.render import json_text, terminal_text
from pipeline.model import RawPointer
from pipeline.protect import encryption
from pipeline.protect.archive import ArchiveError, is_sealed, open_member, open_sealed
from pipeline.settings import SettingsError
from pipeline.store import rows
from pipeline.store.account import Store
from pipeline.store.kek import KekError
from pipeline.store.keys import KeyMissing

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
        # Previews and names are what clients wrote: escape sequences are shown, not sent.
        print(f"  {key.ljust(width)}  {terminal_text(str(value))}")


# A raw record of a row: (source key, the member, or None when erased, and when).
Raw = tuple[str, dict[str, Any] | None, str | None]


def raw_records(store: Store, entity: dict[str, Any]) -> list[Raw]:
    """The raw record of each source of a row, read with one ranged read each (and opened
    with its data key when the archive is sealed)."""
    state = rows.state_from_entity(entity)
    out: list[Raw] = []
    # The sources', then the call's other records (rivals that lost, chunks past those kept).
    pointed = [(key, frag.pointer) for key, frag in sorted(state.call.fragments.items())]
    pointed += [(f"other {rid}", p) for rid, p in sorted(state.others.items())]
    for key, p in pointed:
        if p is None:
            continue
        data = store.read_range(store.archive, p.blob, p.offset, p.length)
        member = open_member(data, p.sha256)
        if is_sealed(member):
            data_key = _member_key(store, p)
            if data_key is None:
                out.append((key, None, store.keys.erased_at(p) or "(time not recorded)"))
                continue
            member = open_sealed(member, data_key)
        out.append((key, member, None))
    return out


def _member_key(store: Store, p: RawPointer) -> bytes | None:
    try:
        return store.keys.member_key(p)
    except KeyMissing:
        raise ArchiveError("no key entity lists this sealed member") from None


def opened_previews(store: Store, entity: dict[str, Any]) -> dict[str, str]:
    """The row's sealed previews, opened with the key of the record each came from."""
    state = rows.state_from_entity(entity)
    out = {}
    for which, prop, preview in (
        ("prompt", "PromptPreview", state.prompt_preview),
        ("completion", "CompletionPreview", state.completion_preview),
    ):
        if preview is None or not preview.sealed:
            continue
        frag = next((f for f in state.call.fragments.values() if rank_of(f) == preview.rank), None)
        try:
            key = _member_key(store, frag.pointer) if frag and frag.pointer else None
            out[prop] = (
                encryption.open_text(key, preview.text, which, state.call.correlation_id)
                if key
                else "(erased)"
            )
        except (ArchiveError, encryption.SealError, KekError, SettingsError) as exc:
            # A preview that only looks sealed (a prompt may start that way), or a key we
            # cannot use: shown as stored, with why.
            out[prop] = f"{preview.text}  (not opened: {exc})"
    return out


def show(store: Store, correlation_id: str) -> int:
    found = store.find_rows(correlation_id)
    if not found:
        print(f"no audit row for correlation id {correlation_id!r}", file=sys.stderr)
        return 1
    for entity in found:
        print(f"Audit row ({store.cfg.audit_table}):")
        try:
            shown = {**entity, **opened_previews(store, entity)}
            print_row(shown)
            records = raw_records(store, entity)
        except (ArchiveError, encryption.SealError, KekError) as exc:
            print(f"error: raw record unreadable: {exc}", file=sys.stderr)
            return 1
        for key, member, erased in records:
            if member is None:
                print(f"\nRaw record ({key}): erased {erased} (its data key was destroyed)")
                continue
            print(f"\nRaw record ({key}, verified against RawSha256):")
            print(json_text(member))
    return 0

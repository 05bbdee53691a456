"""Dead letters as a replay input (`replay --from-deadletter`): each blob is the event (or
single-record envelope) as it was stored, with its partition, sequence number and origin in
metadata. Replayed ones that now become rows are marked `status=done`, never deleted.

A dead letter is one unit: read whole, at most MAX_UNIT_BYTES.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from pipeline.common.timestamps import parse_time
from pipeline.model import EventIn
from pipeline.sources.inputs import (
    MAX_UNIT_BYTES,
    Caller,
    Input,
    InputError,
    Report,
    direct,
    mib,
    printable,
)

# As dead_letter_blob writes it; metadata anyone with write access can edit ("²" is a digit
# to str.isdigit, not to int).
_SEQUENCE = re.compile(r"-?[0-9]{1,19}")
_INDEX = re.compile(r"[0-9]{1,7}")  # an event holds at most MAX_RECORDS_PER_EVENT records
_INDEXES = re.compile(r"[0-9]{1,7}(?:,[0-9]{1,7}){1,63}")


def _stored_event(name: str, meta: dict[str, str]) -> EventIn:
    """The event a dead letter was, from its metadata; its body is read later."""
    seq = meta.get("sequencenumber")
    index = meta.get("recordindex")
    indexes = meta.get("recordindexes") or ""
    return EventIn(
        body=b"",
        partition=meta.get("partition"),
        sequence=int(seq) if seq and _SEQUENCE.fullmatch(seq) else None,
        enqueued=parse_time(meta.get("enqueuedtime")),
        offset=meta.get("offset"),
        # The original origin: dead-lettered again, it maps to the same dead letter.
        origin=meta.get("origin") or f"deadletter:{name}",
        # A record's dead letter: the record's place in its event (its dead letter's name).
        first_record=int(index) if index and _INDEX.fullmatch(index) else 0,
        # The bad records of an event: each keeps its place.
        record_indexes=tuple(map(int, indexes.split(","))) if _INDEXES.fullmatch(indexes) else (),
    )


def _deadletter_input(container: Any, blob: Any, call: Caller, limit: int) -> Input:
    meta = dict(blob.metadata or {})
    name, size = blob.name, blob.size or 0
    label = printable(f"{container.container_name}/{name}")
    event = _stored_event(name, meta)

    def settle(ev: EventIn, ok: bool) -> None:
        if ok:
            done = {
                **meta,
                "status": "done",
                "replayedat": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
            call(lambda: container.get_blob_client(name).set_blob_metadata(done))

    def fetch() -> bytes:
        if size > limit:
            raise InputError(f"{label}: larger than {mib(limit)}: not replayed")
        try:
            return bytes(call(lambda: container.download_blob(name).readall()))
        except ResourceNotFoundError:
            raise InputError(f"{label}: the blob no longer exists") from None

    def events(data: bytes, report: Report | None = None) -> Any:
        # Sealed by us (its metadata says so, ARCHIVE_ENCRYPTION): ingest opens it.
        return iter([replace(event, body=data, sealed=bool(meta.get("sealed")))])

    key = f"deadletter:{container.container_name}/{name}@{blob.etag}"
    return Input(key, label, size, fetch, events, settle)


def deadletter_inputs(
    container: Any,
    prefix: str,
    include_done: bool = False,
    call: Caller = direct,
    *,
    limit: int = MAX_UNIT_BYTES,
) -> Iterator[Input]:
    """The dead letters under a prefix not yet replayed (all of them with `include_done`)."""
    for blob in container.list_blobs(name_starts_with=prefix or None, include=["metadata"]):
        if (blob.metadata or {}).get("status") == "done" and not include_done:
            continue
        yield _deadletter_input(container, blob, call, limit)

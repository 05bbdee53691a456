"""The Event Hub edge: trigger batches → `EventIn`.

With cardinality "many" the host sends one metadata set per batch; the library fills
`sequence_number`, `offset`, `enqueued_time` and `partition_key` on each event, and the
partition id is only in `events[0].metadata["PartitionContext"]` (platform.md). An event is
identified by (partition id, sequence number): `offset` is -1 on geo-replicated namespaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

import orjson

from pipeline.model import Archived, EventIn, RawPointer


def _metadata(first_event: Any) -> Any:
    """The batch's metadata: the host puts it on the first event."""
    try:
        return first_event.metadata or {}
    except Exception:  # noqa: BLE001 - metadata that fails to decode must not stop the batch
        return {}


def partition_id(metadata: Any) -> str | None:
    ctx = metadata.get("PartitionContext")
    if isinstance(ctx, dict):
        pid = ctx.get("PartitionId")
        return str(pid) if pid is not None else None
    return None


ARCHIVED_PROPERTY = "aoai-audit-archived"


def archived_property(archived: Archived) -> str:
    """Application property marking an event re-published from our archive (`replay
    --from-archive --to-eventhub`): the function must not archive its record again."""
    p = archived.pointer
    return orjson.dumps(
        {
            "blob": p.blob,
            "offset": p.offset,
            "length": p.length,
            "sha256": p.sha256,
            "rid": archived.rid,
        }
    ).decode()


def _archived(properties: Any) -> Archived | None:
    raw = properties.get(ARCHIVED_PROPERTY) if isinstance(properties, dict) else None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str):
        return None
    try:
        doc = orjson.loads(raw)
        return Archived(
            RawPointer(
                str(doc["blob"]), int(doc["offset"]), int(doc["length"]), str(doc["sha256"])
            ),
            str(doc["rid"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, OverflowError):
        return None  # not ours: process the event as any other


def _properties(metadata: Any) -> list[Any]:
    """Each event's application properties, in event order."""
    props = metadata.get("PropertiesArray")
    return props if isinstance(props, list) else []


def from_trigger(events: Sequence[Any]) -> list[EventIn]:
    """Adapt `azure.functions.EventHubEvent` objects (duck-typed, for tests and the host)."""
    if not events:
        return []
    metadata = _metadata(events[0])
    pid = partition_id(metadata)
    properties = _properties(metadata)
    out = []
    for i, ev in enumerate(events):
        enqueued = ev.enqueued_time
        if enqueued is not None and enqueued.tzinfo is None:
            enqueued = enqueued.replace(tzinfo=UTC)
        offset = ev.offset
        out.append(
            EventIn(
                body=ev.get_body() or b"",
                partition=pid,
                sequence=ev.sequence_number,
                enqueued=enqueued,
                offset=str(offset) if offset is not None else None,
                origin="eventhub",
                partition_key=ev.partition_key,
                archived=_archived(properties[i]) if i < len(properties) else None,
            )
        )
    return out

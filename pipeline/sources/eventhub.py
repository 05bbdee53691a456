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
    """The claim of the archived-event property, or None when it is not one of ours. Any
    sender can set the property: it is only a claim (ingest checks it against the archive),
    and its values are taken as they are typed, never converted (`str()` of a list nested
    1,000 deep raised RecursionError here, before any batch handling, and lost the batch)."""
    raw = properties.get(ARCHIVED_PROPERTY) if isinstance(properties, dict) else None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not isinstance(raw, str) or len(raw) > _MAX_CLAIM_CHARS:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    blob, offset, length, sha256, rid = (
        doc.get(k) for k in ("blob", "offset", "length", "sha256", "rid")
    )
    if not (_is_text(blob) and _is_text(sha256) and _is_text(rid)):
        return None
    if not (_is_count(offset) and _is_count(length)):
        return None
    return Archived(RawPointer(blob, offset, length, sha256), rid)


# A claim we write is about 250 characters (a blob name, two numbers, two hashes).
_MAX_CLAIM_CHARS = 4_096


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 1_024


def _is_count(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2**63


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

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

from .model import EventIn


def partition_id(first_event: Any) -> str | None:
    try:
        metadata = first_event.metadata or {}
    except Exception:  # noqa: BLE001 - metadata that fails to decode must not stop the batch
        return None
    ctx = metadata.get("PartitionContext")
    if isinstance(ctx, dict):
        pid = ctx.get("PartitionId")
        return str(pid) if pid is not None else None
    return None


def from_trigger(events: Sequence[Any]) -> list[EventIn]:
    """Adapt `azure.functions.EventHubEvent` objects (duck-typed, for tests and the host)."""
    if not events:
        return []
    pid = partition_id(events[0])
    out = []
    for ev in events:
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
            )
        )
    return out

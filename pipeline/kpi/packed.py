"""Many usage rows in few table entities: the `day` and `user` levels of KpiHourly.

A month's chargeback reads every group of every day: at 10,000 users that is hundreds of
thousands of small rows, and a table query returns them a thousand at a time. Packed, a day's
groups are one compressed JSON list split over binary properties (64 KiB each, Azure's limit)
of as few entities as needed (1 MiB each): a month is a few dozen entities. Deterministic:
the same rows give the same entities.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson
from azure.data.tables import EdmType, EntityProperty

PART = 60 * 1024  # bytes per binary property (Azure: 64 KiB)
# About 480 KiB of data per entity (Azure: 1 MiB), so that a transaction of several stays
# under 4 MiB once the binary is base64 in the request.
PARTS_PER_ENTITY = 8


def pack(
    day: str, level: str, rows: list[Mapping[str, Any]], common: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Entities `{level[0]}:NNNN` holding `rows` (dicts of plain values), with the
    properties every row shares (`common`: versions) in clear on each entity."""
    columns = sorted({k for r in rows for k in r})
    body = orjson.dumps([[r.get(c) for c in columns] for r in rows])
    data = zlib.compress(body, 6)
    slices = [data[i : i + PART] for i in range(0, len(data), PART)] or [b""]
    entities = []
    for n, start in enumerate(range(0, len(slices), PARTS_PER_ENTITY)):
        entity: dict[str, Any] = {
            "PartitionKey": day,
            "RowKey": f"{level[0]}:{n:04d}",
            "Day": day,
            "Level": level,
            "Rows": len(rows),
            "Columns": orjson.dumps(columns).decode(),
            **common,
        }
        for i, part in enumerate(slices[start : start + PARTS_PER_ENTITY]):
            entity[f"Data{i:02d}"] = EntityProperty(part, EdmType.BINARY)
        entities.append(entity)
    return entities


def unpack(entities: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The rows of packed entities (in PartitionKey, RowKey order, as a query returns them),
    each with the entity's PartitionKey and clear properties."""
    day: str | None = None
    chunks: list[bytes] = []
    head: Mapping[str, Any] = {}
    for entity in entities:
        if entity["PartitionKey"] != day:
            yield from _rows(head, chunks)
            day, chunks, head = entity["PartitionKey"], [], entity
        i = 0
        while (part := entity.get(f"Data{i:02d}")) is not None:
            chunks.append(getattr(part, "value", part))
            i += 1
    yield from _rows(head, chunks)


_CLEAR = (
    "PartitionKey",
    "Day",
    "DayCostUsd",
    "PriceTableVersion",
    "AttributionVersion",
    "PipelineVersion",
)


def _rows(head: Mapping[str, Any], chunks: list[bytes]) -> Iterator[dict[str, Any]]:
    if not head or not chunks:
        return
    columns = orjson.loads(head["Columns"])
    shared = {k: head[k] for k in _CLEAR if head.get(k) is not None}
    for values in orjson.loads(zlib.decompress(b"".join(chunks))):
        row = dict(zip(columns, values, strict=True))
        row.update(shared)
        yield row

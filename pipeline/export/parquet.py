"""Rows → one Parquet file, in row groups as they come: memory holds one row group, never
the whole day. Deterministic: the same rows in the same order give the same bytes (no times
in the file; the writer's name and version, the schema and ours are the only metadata)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pipeline.export.columns import BOOL, DATE, FLOAT64, INT64, STRING, TIMESTAMP, arrow_schema

ROW_GROUP = 65_536


def _string(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _int(v: Any) -> int | None:
    v = getattr(v, "value", v)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _float(v: Any) -> float | None:
    v = getattr(v, "value", v)
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v)


def _time(v: Any) -> datetime | None:
    return v if isinstance(v, datetime) else None


def _date(v: Any) -> date | None:
    if isinstance(v, date) and not isinstance(v, datetime):
        return v
    if isinstance(v, str):
        try:
            return date.fromisoformat(v)
        except ValueError:
            return None
    return None


# A value of the wrong type (a row written by hand, an older version) is null, never an error.
_COERCE = {
    STRING: _string,
    INT64: _int,
    BOOL: _bool,
    FLOAT64: _float,
    TIMESTAMP: _time,
    DATE: _date,
}


class PartWriter:
    def __init__(self, path: Path, columns: tuple[tuple[str, str], ...], dataset: str) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.columns = columns
        self.schema = arrow_schema(columns, dataset)
        self.writer = pq.ParquetWriter(
            str(path),
            self.schema,
            compression="zstd",
            compression_level=3,
            version="2.6",
            use_dictionary=True,
            write_statistics=True,
            store_schema=True,
        )
        self._coerce = [(name, _COERCE[kind]) for name, kind in columns]
        self._buffer: dict[str, list[Any]] = {name: [] for name, _ in columns}
        self._pending = 0
        self.rows = 0

    def add(self, values: Mapping[str, Any]) -> None:
        for name, coerce in self._coerce:
            self._buffer[name].append(coerce(values.get(name)))
        self._pending += 1
        self.rows += 1
        if self._pending >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa

        if not self._pending:
            return
        batch = pa.RecordBatch.from_pydict(self._buffer, schema=self.schema)
        self.writer.write_batch(batch, row_group_size=ROW_GROUP)
        self._buffer = {name: [] for name, _ in self.columns}
        self._pending = 0

    def close(self) -> None:
        self._flush()
        self.writer.close()

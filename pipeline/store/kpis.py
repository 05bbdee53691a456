"""The KPI job's storage: reads of a day's audit rows, writes and reads of the KPI rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from azure.data.tables import TableClient, UpdateMode

from pipeline.store import limits, rows
from pipeline.store.account import Store


def replace_ops(
    day: str, entities: list[dict[str, Any]], existing: set[str]
) -> list[tuple[Any, ...]]:
    """The operations that make a day's KPI rows exactly `entities`, given the RowKeys
    already there: upsert them all, delete the others."""
    keep = {e["RowKey"] for e in entities}
    ops: list[tuple[Any, ...]] = [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities]
    ops += [("delete", {"PartitionKey": day, "RowKey": rk}) for rk in sorted(existing - keep)]
    return ops


class KpiStore:
    """Reads of a day's audit rows and writes of its KPI rows."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def audit_rows(self, day: str, columns: list[str]) -> Iterable[Any]:
        """Every audit row of one UTC day: only that day's partitions, only `columns`."""
        return self.store.audit.query_entities(
            rows.day_range(day), select=columns, results_per_page=1000
        )

    def replace_day(
        self, day: str, entities: list[dict[str, Any]], table: TableClient | None = None
    ) -> tuple[int, int]:
        """Make the day's rows of `table` (KpiDaily by default; KpiHourly) exactly
        `entities`: upsert them, delete the others. Returns (written, deleted). Running it
        twice gives the same rows."""
        table = self.store.kpi if table is None else table
        existing = self.store.call(
            lambda: {
                e["RowKey"]
                for e in table.query_entities(
                    "PartitionKey eq @day", parameters={"day": day}, select=["RowKey"]
                )
            }
        )
        ops = replace_ops(day, entities, existing)
        # At most 100 operations and 4 MiB per transaction (packed usage rows are large).
        for chunk in limits.transactions(ops):
            self.store.call(table.submit_transaction, chunk)
        return len(entities), len(ops) - len(entities)

    def usage_rows(
        self, first: str, last: str, keys: tuple[str, str], columns: list[str] | None = None
    ) -> Iterable[Any]:
        """KpiHourly rows of the days first..last (inclusive) whose RowKey is in `keys`
        ([low, high): the rows of one level, rollup.LEVEL_RANGES), only `columns` (all when
        None: packed levels), streamed in PartitionKey, RowKey order."""
        return self.store.kpi_hourly.query_entities(
            "PartitionKey ge @first and PartitionKey le @last and RowKey ge @lo and RowKey lt @hi",
            parameters={"first": first, "last": last, "lo": keys[0], "hi": keys[1]},
            select=columns,
            results_per_page=1000,
        )

    def rolled_days(self, first: str, last: str) -> set[str]:
        """Days first..last that have KPI rows (a `_total` row): rolled up at least once."""
        return self.store.call(
            lambda: {
                e["PartitionKey"]
                for e in self.store.kpi.query_entities(
                    "PartitionKey ge @first and PartitionKey le @last and RowKey eq @total",
                    parameters={"first": first, "last": last, "total": "_total"},
                    select=["PartitionKey"],
                )
            }
        )

    def rows(self, first: str, last: str) -> Iterable[Any]:
        """KPI rows of the days first..last (inclusive)."""
        return self.store.call(
            lambda: list(
                self.store.kpi.query_entities(
                    "PartitionKey ge @first and PartitionKey le @last",
                    parameters={"first": first, "last": last},
                )
            )
        )

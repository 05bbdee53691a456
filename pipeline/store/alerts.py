"""Table `BudgetAlerts` (BUDGET_ALERTS_TABLE): each budget alert decided once, and its delivery.

PartitionKey = the budget's name, RowKey = `{period}|{kind}|{threshold}`. The decision is a
create-only insert, so whatever the number of checks, instances running at once, replays or
re-rolls, an alert is decided once. Delivery state lives on the same row: whoever delivers
holds a lease (`LeaseUntil`, taken with a conditional write), so two checkers never post the
same alert at the same time; a failed delivery releases it for the next check. Webhook URLs
are secrets: the row keeps a digest of each URL already served, never the URL.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode

from pipeline.store.account import Store

# How long a checker may take to deliver an alert before another may try (a crash then
# delivers it again: at least once, never twice while the first is running).
LEASE = timedelta(minutes=5)


class AlertStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.table = store.budget_alerts

    def decide(self, budget: str, row_key: str, fields: dict[str, Any], now: datetime) -> bool:
        """Record a decision, leased to the caller. False if it was decided before."""
        entity = {
            "PartitionKey": budget,
            "RowKey": row_key,
            **fields,
            "DecidedAt": now,
            "Delivered": False,
            "Attempts": 0,
            "LeaseUntil": now + LEASE,
        }
        try:
            self.store.call(self.table.create_entity, entity)
        except ResourceExistsError:
            return False
        return True

    def get(self, budget: str, row_key: str) -> Any | None:
        try:
            return self.store.call(self.table.get_entity, budget, row_key)
        except ResourceNotFoundError:
            return None

    def undelivered(self) -> list[Any]:
        """Alerts not delivered yet (to retry at each check), oldest decision first."""
        found = self.store.call(
            lambda: list(self.table.query_entities("Delivered eq @d", parameters={"d": False}))
        )
        return sorted(found, key=lambda e: (e["DecidedAt"], e["PartitionKey"], e["RowKey"]))

    def claim(self, entity: Any, now: datetime) -> Any | None:
        """Take the lease of an undelivered alert whose lease is over; None if somebody holds
        it or wrote the row meanwhile. Returns the row as written (with its new ETag)."""
        if entity.get("Delivered") or entity["LeaseUntil"] > now:
            return None
        update = {
            "PartitionKey": entity["PartitionKey"],
            "RowKey": entity["RowKey"],
            "LeaseUntil": now + LEASE,
        }
        if not self._write(update, entity.metadata["etag"]):
            return None
        return self.get(entity["PartitionKey"], entity["RowKey"])

    def finish(self, entity: Any, now: datetime, served: list[str], error: str | None) -> None:
        """After a delivery attempt: which URLs (digests) have it now, and whether all do."""
        update: dict[str, Any] = {
            "PartitionKey": entity["PartitionKey"],
            "RowKey": entity["RowKey"],
            "Attempts": int(entity.get("Attempts") or 0) + 1,
            "DeliveredTo": ",".join(served),
            "LastAttemptAt": now,
        }
        if error is None:
            update.update(Delivered=True, DeliveredAt=now, LastError="")
        else:
            update.update(LeaseUntil=now, LastError=error[:500])  # released: retried later
        self.store.call(self.table.update_entity, update, mode=UpdateMode.MERGE)

    def _write(self, update: dict[str, Any], etag: str) -> bool:
        try:
            self.store.call(
                self.table.update_entity,
                update,
                mode=UpdateMode.MERGE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as exc:
            if exc.status_code in (404, 412):
                return False
            raise
        return True

"""How incoming rows merge with the rows already stored: pure decisions, no requests.

- A row already there (a redelivery, a replay, or another source's record of the same call
  that arrived earlier) takes the incoming fragments into its join state (call/join.py); only
  a row that changed is written back, and only if nobody wrote it meanwhile (its ETag).
- The day edge: records of one call from different sources may carry slightly different
  times, and near midnight they may fall on different days. A call within DAY_EDGE of
  midnight may already have its row under the other day's partition: it is looked up there
  and merged into one row, under the day of the best-ranked time. The look-up is one query
  per neighbouring partition and batch, whatever the number of such calls (`edge_windows`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.data.tables import UpdateMode

from pipeline import __version__
from pipeline.call.join import CallState, absorb, archived_pointers, rank_of, resolve
from pipeline.model import Call, RawPointer
from pipeline.store import rows
from pipeline.store.rows import Row

# Within this margin of midnight the writer checks the other day's partition (one query per
# neighbouring partition and batch; about 0.3% of a day's calls are that close to midnight).
# It is also the spread assumed between the times different sources log for one call.
DAY_EDGE = timedelta(minutes=2)

Edge = list[tuple[Row, list[str]]]  # rows near midnight, each with its neighbouring days
Operation = tuple[Any, ...]  # a table transaction operation


@dataclass(slots=True)
class WriteStats:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # Days (yyyy-MM-dd) whose rows were created or changed: the KPI days to roll up again.
    days: set[str] = field(default_factory=set)
    # Archive members whose keys must go: new copies of records of calls already erased.
    shred: list[RawPointer] = field(default_factory=list)
    # Calls whose row Table storage refused (a limit we do not model): the call and Azure's
    # error code. The batch dead-letters their records; the other rows are written.
    refused: list[tuple[CallState, str]] = field(default_factory=list)

    def add(self, other: WriteStats) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.days |= other.days
        self.shred += other.shred
        self.refused += other.refused


def erased_copies(current: Any, incoming: CallState) -> list[RawPointer]:
    """The members of `incoming`'s records when the stored row `current` was erased: a
    replay or a late record must not bring the erased content back readable."""
    if current.get("Erased") is None:
        return []
    return archived_pointers(incoming)


# --- a stored row and an incoming call ----------------------------------------------------------


def merge_into(current: Any, incoming: CallState, shards: int) -> dict[str, Any] | None:
    """The new entity after adding `incoming`'s fragments to an existing row; None if unchanged."""
    state = rows.state_from_entity(current)
    changed = absorb(state, incoming)
    if not changed and current.get("PipelineVersion") == __version__:
        return None
    entity = rows.to_entity(resolve(state), state, shards)
    if entity["PartitionKey"] != current["PartitionKey"]:
        # The day of the call changed (a better-ranked source has another time): the caller
        # writes it under the current key; the partition is fixed by the first writer.
        entity["PartitionKey"] = current["PartitionKey"]
    if not changed and _same_entity(entity, current):
        return None
    return entity


def _same_entity(entity: dict[str, Any], current: Any) -> bool:
    keys = set(entity) | {k for k in current if k not in ("Timestamp",)}
    for key in keys:
        a, b = entity.get(key), current.get(key)
        if hasattr(a, "value"):
            a = a.value
        if hasattr(b, "value"):
            b = b.value
        if a != b:
            return False
    return True


def merge_ops(
    pk: str, chunk: Sequence[Row], existing: Mapping[str, Any], shards: int
) -> tuple[list[Operation], WriteStats]:
    """The operations that bring a chunk's rows of partition `pk` into the table, given the
    rows already there (`existing`, by RowKey): create the missing, replace the changed on
    the condition that nobody wrote them since they were read, leave the others."""
    ops: list[Operation] = []
    stats = WriteStats()
    for state, entity in chunk:
        current = existing.get(entity["RowKey"])
        if current is None:
            ops.append(("create", entity))
            stats.created += 1
            continue
        stats.shred += erased_copies(current, state)
        merged = merge_into(current, state, shards)
        if merged is None:
            stats.unchanged += 1
            continue
        ops.append(
            (
                "update",
                merged,
                {
                    "mode": UpdateMode.REPLACE,
                    "etag": current.metadata["etag"],
                    "match_condition": MatchConditions.IfNotModified,
                },
            )
        )
        stats.updated += 1
    if ops:
        stats.days.add(pk[:10])
    return ops, stats


# --- the day edge -------------------------------------------------------------------------------


def neighbour_days(state: CallState, own_day: str) -> list[str]:
    """Days other than `own_day` (where the call's row goes) whose partition may already hold
    this call's row: days of its fragments' times, and days within DAY_EDGE of them."""
    days: set[str] = set()
    for frag in state.call.fragments.values():
        t = frag.facts.call_time
        if t is None:
            continue
        for probe in (t - DAY_EDGE, t, t + DAY_EDGE):
            days.add(f"{probe:%Y-%m-%d}")
    days.discard(own_day)
    return sorted(days)


def split_at_day_edge(items: Sequence[Row]) -> tuple[dict[str, list[Row]], Edge]:
    """The rows by partition, except those near midnight: these apart, each with the other
    days whose partitions may already hold its call."""
    groups: dict[str, list[Row]] = defaultdict(list)
    edge: Edge = []
    for state, entity in items:
        neighbours = neighbour_days(state, entity["PartitionKey"][:10])
        if neighbours:
            edge.append(((state, entity), neighbours))
        else:
            groups[entity["PartitionKey"]].append((state, entity))
    return groups, edge


def _neighbour_pk(entity: dict[str, Any], day: str) -> str:
    """The partition of the same shard on another day."""
    return f"{day}_{entity['PartitionKey'].rsplit('_', 1)[1]}"


@dataclass(frozen=True, slots=True)
class EdgeWindow:
    """What to look for in one neighbouring partition: the rows of `keys` whose CallTime is
    within [start, end]. One range query covers it whatever the number of keys."""

    keys: frozenset[str]
    start: datetime
    end: datetime

    @property
    def lowest(self) -> str:
        return min(self.keys)

    @property
    def highest(self) -> str:
        return max(self.keys)


def edge_windows(edge: Edge) -> dict[str, EdgeWindow]:
    """Per neighbouring partition, the row keys to look for and the CallTime window their
    rows can have there.

    Why a window and not the keys: a filter holds at most 15 comparisons (Azure), so looking
    rows up by key costs a query per 14 calls, and near midnight on a busy day that is
    hundreds of queries per batch. A row this batch can join on the other day was written from
    a record of the same call, logged within DAY_EDGE of this batch's record of it (the same
    assumption that decides which calls are looked up at all): its CallTime lies within
    DAY_EDGE of one of the calls' fragment times. So one query per partition, over the
    RowKey range of the keys and that CallTime window, finds every such row."""
    keys: dict[str, set[str]] = defaultdict(set)
    start: dict[str, datetime] = {}
    end: dict[str, datetime] = {}
    for (state, entity), days in edge:
        times = [f.facts.call_time for f in state.call.fragments.values() if f.facts.call_time]
        if not times:
            continue
        lo, hi = min(times) - DAY_EDGE, max(times) + DAY_EDGE
        for day in days:
            pk = _neighbour_pk(entity, day)
            keys[pk].add(entity["RowKey"])
            start[pk] = min(start.get(pk, lo), lo)
            end[pk] = max(end.get(pk, hi), hi)
    return {pk: EdgeWindow(frozenset(ks), start[pk], end[pk]) for pk, ks in keys.items()}


def place_edge(
    groups: dict[str, list[Row]], edge: Edge, found: Mapping[tuple[str, str], Any]
) -> list[tuple[CallState, str, Any]]:
    """The edge's calls whose row already sits on another day (`found`: the stored rows of
    the neighbouring partitions by (PartitionKey, RowKey)), each as (its state, that day, that
    row); the other edge rows join their own partition's group in `groups`."""
    across = []
    for (state, entity), days in edge:
        hit = _stored_on(entity, days, found)
        if hit is None:
            groups[entity["PartitionKey"]].append((state, entity))
        else:
            across.append((state, *hit))
    return across


def _stored_on(
    entity: dict[str, Any], days: list[str], found: Mapping[tuple[str, str], Any]
) -> tuple[str, Any] | None:
    """The first of `days` whose partition holds this row, and the row there."""
    for day in days:
        current = found.get((_neighbour_pk(entity, day), entity["RowKey"]))
        if current is not None:
            return day, current
    return None


def merge_across_days(
    state: CallState, current: Any, shards: int
) -> tuple[CallState, dict[str, Any]]:
    """A call's row stored under another day merged with `state`'s fragments: the merged
    join state, and the entity under the day of the best-ranked time."""
    merged_state = rows.state_from_entity(current)
    absorb(merged_state, state)
    return merged_state, rows.to_entity(resolve(merged_state), merged_state, shards)


# --- a call keyed by its response id, and the call whose ResponseId it is ------------------------


def twin_window(day: str) -> tuple[datetime, datetime]:
    """CallTimes of the rows keyed by a response id whose twin can be on `day`: the day
    itself and DAY_EDGE on either side (two records of one call are logged that close)."""
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start - DAY_EDGE, start + timedelta(days=1) + DAY_EDGE


def absorb_twin(current: Any, twin: Any, shards: int) -> dict[str, Any] | None:
    """The row `current` after taking in the fragments of `twin`, a row keyed by a response
    id that `current` names as its ResponseId (None when it holds them already)."""
    state = rows.state_from_entity(twin)
    # The row keeps each preview once, beside the rank of the fragment it came from: give
    # them back to their fragments, so the merge weighs them against the row's own.
    for frag in state.call.fragments.values():
        rank = rank_of(frag)
        if state.prompt_preview is not None and state.prompt_preview.rank == rank:
            frag.prompt_preview = state.prompt_preview
        if state.completion_preview is not None and state.completion_preview.rank == rank:
            frag.completion_preview = state.completion_preview
    cid = rows.correlation_id_of(current["RowKey"])
    return merge_into(current, replace(state, call=Call(cid, state.call.fragments)), shards)

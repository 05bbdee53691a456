"""The audit table's requests, in the order that keeps the hot path free of reads:

1. Rows go out as `create` operations in entity-group transactions (≤ 100 per partition).
   A call seen for the first time costs no read.
2. If a transaction fails because a row already exists (a redelivery, a replay, or another
   log record of the same call that arrived earlier), that chunk is read back (≤ 14 keys per
   query), each existing row's join state is merged with the new fragments (merge.py), and only
   rows that changed are written, with their ETag, so concurrent writers never lose updates.
3. Calls near midnight are first looked up on the neighbouring day (merge.py, the day edge):
   per batch, one query per neighbouring partition (its rows in the batch's RowKey range and
   CallTime window, RowKey only; a page per 1,000 such rows, at most EDGE_PAGES or what the
   look-ups of its calls would cost: past them the calls are looked up by key), then a read
   of the rows it found among the batch's calls (≤ 14 keys per query), those that really
   cross midnight.
4. Calls keyed by their response id (records without an APIM correlation id, `KeyedBy`) join
   the row whose ResponseId they are, or whose BackendRequestId is theirs, when the KPI job
   rolls their day up (`join_twins`): one filtered query per day finds them; only when there
   are some are the day's ResponseId and BackendRequestId columns read, and each pair costs a
   read, a write and a delete. Nothing on the hot path.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from pipeline.call.join import CallState, claims, unique_backends
from pipeline.store import limits, merge, rows, threads
from pipeline.store.merge import Edge, EdgeWindow, WriteStats
from pipeline.store.retry import RetryPolicy
from pipeline.store.rows import Row

KEYS_PER_QUERY = 14  # Azure: ≤ 15 comparisons per filter; one is the PartitionKey
EDGE_PAGE = 1000  # Azure returns at most 1,000 entities per query response
# Pages of a neighbouring partition's window read before its calls are looked up by key
# instead (⌈calls/14⌉ queries): what the batch's own calls cost, not the day's traffic. A
# window of many calls may read as many pages as their look-ups would cost: a sender who
# planted 2,200 rows in the window of 50,000 calls cost 3,574 look-ups, not 3 pages.
EDGE_PAGES = 2
MERGE_ATTEMPTS = 8

log = logging.getLogger(__name__)


class AuditTable:
    """Writes and point reads of the audit rows, every request through the account's retry
    policy."""

    def __init__(self, table: TableClient, retry: RetryPolicy, shards: int) -> None:
        self.table = table
        self.retry = retry
        self.shards = shards

    def write_rows(self, items: Sequence[Row], *, dry_run: bool = False) -> WriteStats:
        """Store a batch's rows (with `dry_run`, only say what would change): one create
        transaction per partition and 100 rows, the partitions written concurrently."""
        groups, edge = merge.split_at_day_edge(items)
        # Calls near midnight: one query per neighbouring partition (merge.edge_windows) finds
        # the rows that already sit on the other day; the others are written with their own day.
        across = merge.place_edge(groups, edge, self._neighbour_rows(edge)) if edge else []
        tasks: list[Callable[[], WriteStats]] = [
            lambda s=s, d=d, c=c: self._merge_across_days(s, d, c, dry_run) for s, d, c in across
        ]
        # Chunks of one partition in order (so a merge sees the creates before it);
        # partitions side by side.
        tasks += [
            lambda pk=pk, group=group: self._write_partition(pk, group, dry_run)
            for pk, group in groups.items()
        ]
        return _run(tasks)

    def fetch(self, pk: str, keys: Iterable[str]) -> dict[str, Any]:
        """Existing rows among `keys` in partition `pk` (parameterised queries, never spliced)."""
        found: dict[str, Any] = {}
        for query, params in _key_queries(pk, keys):
            for entity in self.retry.call(
                lambda q=query, p=params: list(self.table.query_entities(q, parameters=p))
            ):
                found[entity["RowKey"]] = entity
        return found

    def find_rows(self, correlation_id: str) -> list[Any]:
        """All rows with this correlation id (any day): a cross-partition query, for the CLI."""
        rk = rows.row_key(correlation_id)
        return self.retry.call(
            lambda: list(self.table.query_entities("RowKey eq @rk", parameters={"rk": rk}))
        )

    # --- calls keyed by their response id ---------------------------------------------------

    def join_twins(self, day: str) -> set[str]:
        """Join each row keyed by a response id that can belong to `day` into the row of
        `day` whose ResponseId it is, or whose BackendRequestId is its own (merged into it,
        then deleted), whichever was written first. Returns the days whose rows changed. A
        keyed row that two rows of the day claim joins neither (logged)."""
        keyed, backends = self._keyed_by_response(day)
        if not keyed:
            return set()
        changed: set[str] = set()
        for rid, places in self._owners(day, keyed, backends).items():
            if len(places) > 1:
                log.warning(
                    "response id %r: %d rows name it or its backend request id: not joined",
                    rid,
                    len(places),
                )
                continue
            (pk, rk), (twin_pk, twin_rk) = places[0], keyed[rid]
            # Read whole only now: the query kept their keys (memory follows the twins to
            # join, not every row keyed by a response id in the window).
            twin = self.fetch(twin_pk, [twin_rk]).get(twin_rk)
            if twin is not None and self._join_twin(pk, rk, twin):
                changed |= {pk[:10], twin_pk[:10]}
        return changed

    def _keyed_by_response(self, day: str) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
        """The keys of the rows keyed by a response id whose twin can be on `day`
        (merge.twin_window), by response id, and which of them each backend request id
        names (join.unique_backends): one query, filtered on the server."""
        start, end = merge.twin_window(day)
        params = {
            "p0": f"{start:%Y-%m-%d}",
            "p1": rows.day_range_end(f"{end:%Y-%m-%d}"),
            "k": rows.KEYED_BY_RESPONSE,
            "t0": start,
            "t1": end,
        }
        query = (
            "PartitionKey ge @p0 and PartitionKey lt @p1 and KeyedBy eq @k"
            " and CallTime ge @t0 and CallTime lt @t1"
        )
        names = ["PartitionKey", "RowKey", "BackendRequestId"]
        try:
            found = self.retry.call(
                lambda: [
                    (e["PartitionKey"], e["RowKey"], e.get("BackendRequestId"))
                    for e in self.table.query_entities(query, parameters=params, select=names)
                ]
            )
        except ResourceNotFoundError:
            return {}, {}
        keyed = {rows.correlation_id_of(rk): (pk, rk) for pk, rk, _ in found}
        backends = unique_backends(
            (rows.correlation_id_of(rk), bid if isinstance(bid, str) else None)
            for _, rk, bid in found
        )
        return keyed, backends

    def _owners(
        self, day: str, keyed: dict[str, tuple[str, str]], backends: dict[str, str]
    ) -> dict[str, list[tuple[str, str]]]:
        """The rows of `day` (not keyed by a response id) that claim a row of `keyed`: they
        name its ResponseId, or its BackendRequestId (`backends`: join.unique_backends)."""

        def scan() -> dict[str, list[tuple[str, str]]]:
            owners: dict[str, list[tuple[str, str]]] = {}
            for e in self.table.query_entities(
                rows.day_range(day),
                select=["PartitionKey", "RowKey", "ResponseId", "BackendRequestId", "KeyedBy"],
                results_per_page=EDGE_PAGE,
            ):
                if e.get("KeyedBy") is not None:
                    continue
                rid, bid = e.get("ResponseId"), e.get("BackendRequestId")
                # Only strings are looked up: a property of another type names nothing.
                rids = (rid,) if isinstance(rid, str) else ()
                bids = (bid,) if isinstance(bid, str) else ()
                for twin in claims(rids, bids, keyed, backends):
                    owners.setdefault(twin, []).append((e["PartitionKey"], e["RowKey"]))
            return owners

        return self.retry.call(scan)

    def _join_twin(self, pk: str, rk: str, twin: Any) -> bool:
        """Merge `twin` into the row (pk, rk), then delete it, each on the condition that
        nobody wrote it meanwhile (else read again). False if that row is gone."""
        for _ in range(MERGE_ATTEMPTS):
            current = self.fetch(pk, [rk]).get(rk)
            if current is None:
                return False
            merged = merge.absorb_twin(current, twin, self.shards)
            if merged is not None and not self.replace_if_unchanged(merged, current):
                continue
            if self._delete_if_unchanged(twin):
                return True
            # The twin was written again meanwhile (its record delivered again): merge anew.
            twin = self.fetch(twin["PartitionKey"], [twin["RowKey"]]).get(twin["RowKey"])
            if twin is None:
                return True
        raise RuntimeError(f"row {rk} of partition {pk} kept changing under us")

    def replace_if_unchanged(self, entity: dict[str, Any], current: Any) -> bool:
        """Replace the row `current` (as read) by `entity`; False if written meanwhile."""
        try:
            self.retry.call(
                self.table.update_entity,
                entity,
                mode=UpdateMode.REPLACE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as exc:
            if exc.status_code != 412:
                raise
            return False
        return True

    def _delete_if_unchanged(self, current: Any) -> bool:
        try:
            self.retry.call(
                self.table.delete_entity,
                current["PartitionKey"],
                current["RowKey"],
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceNotFoundError:
            return True  # deleted by another run
        except HttpResponseError as exc:
            if exc.status_code != 412:
                raise
            return False
        return True

    def _write_partition(self, pk: str, items: list[Row], dry_run: bool) -> WriteStats:
        stats = WriteStats()
        for chunk in limits.transactions(items):
            stats.add(self._write_chunk(pk, chunk, dry_run))
        return stats

    def _neighbour_rows(self, edge: Edge) -> dict[tuple[str, str], Any]:
        """The stored rows, on the other day, of this batch's calls near midnight. The
        neighbouring partitions are asked side by side: the writes wait for the answers."""

        def look(item: tuple[str, EdgeWindow]) -> tuple[str, dict[str, Any]]:
            pk, window = item
            there = self.edge_keys(pk, window)
            if there is None:  # a window of more rows than it may read: the keys instead
                return pk, self.fetch(pk, sorted(window.keys))
            # Usually empty: no record of these calls was stored on that day.
            return pk, (self.fetch(pk, sorted(there)) if there else {})

        found: dict[tuple[str, str], Any] = {}
        for pk, stored in threads.each(look, merge.edge_windows(edge).items()):
            for rk, current in stored.items():
                found[(pk, rk)] = current
        return found

    def edge_keys(self, pk: str, window: EdgeWindow) -> set[str] | None:
        """Which of `window.keys` have a row in partition `pk`: one query (a page per 1,000
        rows of the window), the RowKey alone returned, not the rows. None past EDGE_PAGES
        pages, or as many as the look-ups of its keys would cost when that is more: the
        window is wider than calls near midnight make it (a sender's call whose records are
        days apart spans the whole day), and paging through a day's rows would cost the batch
        a read per 1,000 rows of someone else's traffic."""
        query, params = _window_query(pk, window)
        most = max(EDGE_PAGES, -(-len(window.keys) // KEYS_PER_QUERY))

        def scan() -> set[str] | None:
            pages = self.table.query_entities(
                query, parameters=params, select=["RowKey"], results_per_page=EDGE_PAGE
            ).by_page()
            keys: set[str] = set()
            for n, page in enumerate(pages, 1):
                keys.update(e["RowKey"] for e in page)
                if n >= most and pages.continuation_token:
                    return None
            return keys

        try:
            keys = self.retry.call(scan)
        except ResourceNotFoundError:
            return set()  # no table yet (a dry run on a new account): no rows in it
        return None if keys is None else window.keys.intersection(keys)

    def _merge_across_days(
        self, state: CallState, day: str, current: Any, dry_run: bool
    ) -> WriteStats:
        """A call logged within minutes of midnight whose row already sits under the other
        day (another source's record of it carried a time on that side): merge into one row
        under the day of the best-ranked time, and remove the other."""
        other_pk = current["PartitionKey"]
        merged_state, merged = merge.merge_across_days(state, current, self.shards)
        if merged["PartitionKey"] == other_pk:
            return self._merge_read_row(other_pk, (state, merged), current, dry_run)
        stats = self._write_chunk(merged["PartitionKey"], [(merged_state, merged)], dry_run)
        stats.shred += merge.erased_copies(current, state)
        if stats.refused:
            return stats  # the row under the other day stays: it is the call's only row
        if not dry_run:
            with contextlib.suppress(ResourceNotFoundError):
                self.retry.call(
                    self.table.delete_entity,
                    other_pk,
                    current["RowKey"],
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        stats.days.add(day)  # the day the row left changes too
        return stats

    def _merge_read_row(self, pk: str, item: Row, current: Any, dry_run: bool) -> WriteStats:
        """Merge into a row already read (`current`): a conditional write without reading it
        again; only if somebody wrote it meanwhile is it read and merged anew."""
        return self._merge_chunk(pk, [item], dry_run, known={current["RowKey"]: current})

    def _write_chunk(self, pk: str, chunk: list[Row], dry_run: bool = False) -> WriteStats:
        if not dry_run:
            try:
                self.retry.call(self.table.submit_transaction, [("create", e) for _, e in chunk])
                return WriteStats(created=len(chunk), days={pk[:10]})
            except TableTransactionError as exc:
                if _refused(exc) and len(chunk) > 1:
                    return _split(chunk, exc, lambda part: self._write_chunk(pk, part))
                # A row refused alone may exist already (Azure answers the refusal before
                # the conflict): the merge reads it, so an erased row is known as such.
                if not (_is_conflict(exc) or _refused(exc)):
                    raise
        return self._merge_chunk(pk, chunk, dry_run)

    def _merge_chunk(
        self, pk: str, chunk: list[Row], dry_run: bool, known: dict[str, Any] | None = None
    ) -> WriteStats:
        """Read the chunk's rows (`known`: as already read, for the first attempt), merge, and
        write them with their ETags; read again when somebody wrote one meanwhile."""
        last: Exception | None = None
        for _ in range(MERGE_ATTEMPTS):
            existing = (
                known if known is not None else self.fetch(pk, [e["RowKey"] for _, e in chunk])
            )
            known = None
            ops, stats = merge.merge_ops(pk, chunk, existing, self.shards)
            if not ops or dry_run:
                return stats
            try:
                self.retry.call(self.table.submit_transaction, ops)
                return stats
            except TableTransactionError as exc:
                if _refused(exc):
                    out = _split(chunk, exc, lambda part: self._merge_chunk(pk, part, dry_run))
                    out.shred += stats.shred  # copies of erased calls lose their keys all the same
                    return out
                if not (_is_conflict(exc) or exc.status_code == 412):
                    raise
                last = exc  # someone else wrote one of these rows meanwhile: read again
        raise RuntimeError(f"rows of partition {pk} kept changing under us") from last


def _key_queries(pk: str, keys: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Filters (with their parameters) for the distinct `keys` of partition `pk`, at most
    KEYS_PER_QUERY each."""
    distinct = list(dict.fromkeys(keys))
    for start in range(0, len(distinct), KEYS_PER_QUERY):
        part = distinct[start : start + KEYS_PER_QUERY]
        params: dict[str, Any] = {"pk": pk}
        clauses = []
        for i, key in enumerate(part):
            params[f"k{i}"] = key
            clauses.append(f"RowKey eq @k{i}")
        # The SDK substitutes @names split on spaces: keep them space-separated.
        yield f"PartitionKey eq @pk and ( {' or '.join(clauses)} )", params


def _window_query(pk: str, window: EdgeWindow) -> tuple[str, dict[str, Any]]:
    """The filter (with its parameters) of partition `pk`'s rows in the window's RowKey range
    and CallTime window: a range of the table's index, whatever the number of keys."""
    params: dict[str, Any] = {
        "pk": pk,
        "lo": window.lowest,
        "hi": window.highest,
        "t0": window.start,
        "t1": window.end,
    }
    # The SDK substitutes @names split on spaces: keep them space-separated.
    query = (
        "PartitionKey eq @pk and RowKey ge @lo and RowKey le @hi"
        " and CallTime ge @t0 and CallTime le @t1"
    )
    return query, params


def _run(tasks: list[Callable[[], WriteStats]]) -> WriteStats:
    """Run the partitions' writes, side by side when there are several; their stats summed."""
    stats = WriteStats()
    for result in threads.each(lambda task: task(), tasks):
        stats.add(result)
    return stats


# What Table storage answers when a row (or the transaction's size) is past one of its limits
# (learn.microsoft.com/rest/api/storageservices/table-service-error-codes): the fault of the
# rows, not of the service. Any other 400 (InvalidInput: what we send is malformed) is a bug
# of ours that would refuse every row: the batch fails and is delivered again, then parked.
_ROW_LIMIT_CODES = frozenset(
    {
        "PropertyValueTooLarge",
        "EntityTooLarge",
        "TooManyProperties",
        "KeyValueTooLarge",
        "PropertyNameTooLong",
        "OutOfRangeInput",
        "RequestBodyTooLarge",
    }
)


def _refused(exc: HttpResponseError) -> bool:
    """Table storage refused what we sent for a limit we do not model (a value, entity or
    name too large; 413: the transaction too large), as opposed to being unavailable. Only
    the rows at fault should fail then, not the batch: retrying would be refused again."""
    return exc.status_code == 413 or str(getattr(exc, "error_code", "")) in _ROW_LIMIT_CODES


def _split(
    chunk: list[Row], exc: HttpResponseError, write: Callable[[list[Row]], WriteStats]
) -> WriteStats:
    """A refused transaction written again in halves, down to the row at fault, which is
    reported refused (with Azure's error code, which quotes no content)."""
    if len(chunk) == 1:
        code = str(getattr(exc, "error_code", "") or f"HTTP {exc.status_code}")
        log.error(
            "a row of partition %s refused by Table storage: %s", chunk[0][1]["PartitionKey"], code
        )
        return WriteStats(refused=[(chunk[0][0], code)])
    half = len(chunk) // 2
    stats = write(chunk[:half])
    stats.add(write(chunk[half:]))
    return stats


def _is_conflict(exc: HttpResponseError) -> bool:
    code = str(getattr(exc, "error_code", "") or "")
    return exc.status_code == 409 or code == "EntityAlreadyExists"

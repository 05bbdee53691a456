"""Thin adapters over Azure Table and Blob storage (Azurite locally).

The only non-trivial logic here is the order of table operations, which keeps the hot path
free of reads:
1. Rows go out as `create` operations in entity-group transactions (≤ 100 per partition).
   A call seen for the first time costs no read.
2. If a transaction fails because a row already exists (a redelivery, a replay, or another
   log record of the same call that arrived earlier), that chunk is read back (≤ 14 keys per
   query), each existing row's join state is merged with the new fragments (join.py), and only
   rows that changed are written, with their ETag, so concurrent writers never lose updates.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from pipeline.call.join import CallState, add_fragment, resolve
from pipeline.model import DeadLetter
from pipeline.protect.archive import ArchiveBlob
from pipeline.settings import AZURITE_CONNECTION, Config
from pipeline.store import limits, rows
from pipeline.store.deadletters import dead_letter_blob
from pipeline.store.rows import Row

log = logging.getLogger("pipeline.store.account")
T = TypeVar("T")

KEYS_PER_QUERY = 14  # Azure: ≤ 15 comparisons per filter; one is the PartitionKey
MERGE_ATTEMPTS = 8


@dataclass(slots=True)
class WriteStats:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    # Days (yyyy-MM-dd) whose rows were created or changed: the KPI days to roll up again.
    days: set[str] = field(default_factory=set)

    def add(self, other: WriteStats) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.days |= other.days


# Worth another try: throttling, timeouts, server errors, dropped connections.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return True  # connection refused, reset, or timed out
    if isinstance(exc, HttpResponseError):
        return exc.status_code in TRANSIENT_STATUS
    return isinstance(exc, ConnectionError | TimeoutError | http.client.HTTPException)


def retry_after(exc: BaseException, now: float | None = None) -> float:
    """Seconds a throttled (429/503) response asks the client to wait, 0 when it does not say.

    Read from `x-ms-retry-after-ms` and `retry-after-ms` (milliseconds) and `Retry-After`
    (seconds, or an HTTP date, compared with `now`, epoch seconds, default the clock); when
    several are present, the longest wait wins. Unreadable values are ignored."""
    from datetime import UTC
    from email.utils import parsedate_to_datetime

    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    try:
        found = {str(k).lower(): str(v).strip() for k, v in (headers or {}).items()}
    except (AttributeError, TypeError, ValueError):
        return 0.0
    waits = [0.0]
    for name, unit in (("x-ms-retry-after-ms", 0.001), ("retry-after-ms", 0.001)):
        with contextlib.suppress(ValueError):
            waits.append(float(found.get(name, "")) * unit)
    value = found.get("retry-after", "")
    try:
        waits.append(float(value))
    except ValueError:
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            when = parsedate_to_datetime(value)
            if when.tzinfo is None:  # "-0000": UTC, as HTTP dates always are
                when = when.replace(tzinfo=UTC)
            waits.append(when.timestamp() - (time.time() if now is None else now))
    return max(w for w in waits if w == w)  # NaN is not a wait


class Store:
    """Audit table, raw archive and dead-letter containers of one storage account.

    Every request goes through `call`: transient failures are retried with exponential
    backoff and full jitter (the SDKs' own retries are off, so there is one policy, counted in
    `retries`); what still fails raises, so the trigger's retry policy redelivers the batch.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        connection: str | None = None,
        retry_base: float = 0.5,
        retry_cap: float = 15.0,
        **client_kwargs: Any,
    ) -> None:
        self.cfg = cfg
        self.attempts = cfg.storage_retries + 1
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self.retries = 0
        self._lock = threading.Lock()
        client_kwargs.setdefault("retry_total", 0)
        conn = connection or cfg.storage_connection
        if not conn and not cfg.storage_account:
            conn = AZURITE_CONNECTION
        if conn:
            self.tables = TableServiceClient.from_connection_string(conn, **client_kwargs)
            self.blobs = BlobServiceClient.from_connection_string(conn, **client_kwargs)
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
            account = cfg.storage_account
            self.tables = TableServiceClient(
                f"https://{account}.table.core.windows.net", credential=credential, **client_kwargs
            )
            self.blobs = BlobServiceClient(
                f"https://{account}.blob.core.windows.net", credential=credential, **client_kwargs
            )
        self.audit: TableClient = self.tables.get_table_client(cfg.audit_table)
        self.kpi: TableClient = self.tables.get_table_client(cfg.kpi_table)
        self.archive: ContainerClient = self.blobs.get_container_client(cfg.archive_container)
        self.deadletters: ContainerClient = self.blobs.get_container_client(
            cfg.deadletter_container
        )

    def close(self) -> None:
        self.tables.close()
        self.blobs.close()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, retried on transient storage failures.

        A request is never retried sooner than the service asks (`retry_after`): the wait is
        the longer of the backoff and the asked time. When the service asks for longer than
        `retry_cap`, the function does not sleep that long: it raises at once, and the
        trigger's retry policy delivers the batch again later (5 s to 5 min)."""
        for attempt in range(self.attempts):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if attempt + 1 >= self.attempts or not is_transient(exc):
                    raise
                asked = retry_after(exc)
                if asked > self.retry_cap:
                    log.warning(
                        "storage: %s asks to wait %.1fs, over the %.1fs cap: not retrying here",
                        type(exc).__name__,
                        asked,
                        self.retry_cap,
                    )
                    raise
                with self._lock:  # partitions are written from several threads
                    self.retries += 1
                delay = random.uniform(0, min(self.retry_cap, self.retry_base * 2**attempt))
                # A throttled account says when to come back; sooner would be throttled again.
                delay = max(delay, asked)
                log.warning(
                    "storage: %s on attempt %d, retrying in %.2fs",
                    type(exc).__name__,
                    attempt + 1,
                    delay,
                )
                time.sleep(delay)
        raise AssertionError("unreachable")

    # --- set-up -----------------------------------------------------------------------------

    def ensure(self, *, create_containers: bool | None = None) -> None:
        """Create the tables if missing (idempotent); create the containers only on a local
        emulator, and elsewhere check that they exist.

        The archive container is infra/'s to create, with version-level immutability (WORM),
        which cannot be added to a container afterwards: created here under a misspelled
        ARCHIVE_CONTAINER, it would take the raw archive without it, silently. So unless the
        account is Azurite (`is_local`), a missing container raises SettingsError naming it
        and its setting. `create_containers` overrides the detection."""
        self.call(self.tables.create_table_if_not_exists, self.cfg.audit_table)
        self.call(self.tables.create_table_if_not_exists, self.cfg.kpi_table)
        create = self.is_local() if create_containers is None else create_containers
        for container, setting in (
            (self.archive, "ARCHIVE_CONTAINER"),
            (self.deadletters, "DEADLETTER_CONTAINER"),
        ):
            if create:
                with contextlib.suppress(ResourceExistsError):
                    self.call(container.create_container)
            else:
                self.require_container(container, setting)

    # --- blobs --------------------------------------------------------------------------------

    def create_blob(
        self,
        container: ContainerClient,
        name: str,
        data: bytes,
        *,
        metadata: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
        content_encoding: str | None = None,
    ) -> bool:
        """Create a blob; never overwrite. False when it already existed (a redelivery)."""
        try:
            self.call(
                container.upload_blob,
                name,
                data,
                overwrite=False,
                metadata=metadata,
                content_settings=ContentSettings(
                    content_type=content_type, content_encoding=content_encoding
                ),
            )
            return True
        except ResourceExistsError:
            return False

    def put_archive(self, blob: ArchiveBlob) -> bool:
        # No content-encoding header: readers must get the gzip bytes untouched for ranged reads.
        return self.create_blob(self.archive, blob.name, blob.data, content_type="application/gzip")

    def put_dead_letter(self, dead: DeadLetter) -> bool:
        b = dead_letter_blob(dead)
        created = self.create_blob(self.deadletters, b.name, b.data, metadata=b.metadata)
        if not created:
            # The same event failed again (a redelivery, or a replay of this dead letter): keep
            # the one blob, but let it say why it failed this time.
            client = self.deadletters.get_blob_client(b.name)
            old = self.call(lambda: client.get_blob_properties().metadata) or {}
            if old.get("reason") != b.metadata["reason"] or old.get("status") != "new":
                meta = {**old, **b.metadata, "previousreason": old.get("reason", "")}
                self.call(lambda: client.set_blob_metadata(meta))
        log.warning(
            "dead letter %s: %s (%s)", b.name, b.metadata["reason"], b.metadata.get("origin")
        )
        return created

    def read_range(self, container: ContainerClient, name: str, offset: int, length: int) -> bytes:
        return self.call(
            lambda: container.download_blob(name, offset=offset, length=length).readall()
        )

    def read_member(self, blob: str, offset: int, length: int) -> bytes | None:
        """One archive member by a ranged read; None when the blob or the range is not there
        (a pointer that an event property claims, checked before it is honoured)."""
        try:
            data = self.read_range(self.archive, blob, offset, length)
        except ResourceNotFoundError:
            return None
        except HttpResponseError as exc:
            if exc.status_code in (400, 416):  # a range past the end of the blob
                return None
            raise
        return data if len(data) == length else None

    def read_blob(self, container: str, name: str) -> bytes:
        client = self.blobs.get_container_client(container)
        return self.call(lambda: client.download_blob(name).readall())

    # --- audit rows -----------------------------------------------------------------------------

    def write_rows(self, items: Sequence[Row], *, dry_run: bool = False) -> WriteStats:
        """Store a batch's rows (with `dry_run`, only say what would change): one create
        transaction per partition and 100 rows, the partitions written concurrently."""
        groups: dict[str, list[Row]] = defaultdict(list)
        edge: list[tuple[Row, list[str]]] = []
        for state, entity in items:
            neighbours = rows.neighbour_days(state, entity["PartitionKey"][:10])
            if neighbours:
                edge.append(((state, entity), neighbours))
            else:
                groups[entity["PartitionKey"]].append((state, entity))
        tasks: list[Callable[[], WriteStats]] = []
        if edge:
            # Calls near midnight: one query per neighbouring partition finds the rows that
            # already sit on the other day; the others are written with their own day.
            found = self._neighbour_rows(edge)
            for (state, entity), days in edge:
                shard = entity["PartitionKey"].rsplit("_", 1)[1]
                hits = [
                    (day, found[key])
                    for day in days
                    if (key := (f"{day}_{shard}", entity["RowKey"])) in found
                ]
                if hits:
                    day, current = hits[0]
                    tasks.append(
                        lambda s=state, d=day, c=current: self._merge_across_days(s, d, c, dry_run)
                    )
                else:
                    groups[entity["PartitionKey"]].append((state, entity))
        for pk, group in groups.items():
            # Chunks of one partition in order (so a merge sees the creates before it);
            # partitions side by side.
            tasks.append(lambda pk=pk, group=group: self._write_partition(pk, group, dry_run))
        stats = WriteStats()
        if len(tasks) == 1:
            stats.add(tasks[0]())
        elif tasks:
            for result in _writers().map(lambda task: task(), tasks):
                stats.add(result)
        return stats

    def _write_partition(self, pk: str, items: list[Row], dry_run: bool) -> WriteStats:
        stats = WriteStats()
        for chunk in _chunks(items):
            stats.add(self._write_chunk(pk, chunk, dry_run))
        return stats

    def _neighbour_rows(self, edge: list[tuple[Row, list[str]]]) -> dict[tuple[str, str], Any]:
        keys: dict[str, list[str]] = defaultdict(list)
        for (_, entity), days in edge:
            shard = entity["PartitionKey"].rsplit("_", 1)[1]
            for day in days:
                keys[f"{day}_{shard}"].append(entity["RowKey"])
        found: dict[tuple[str, str], Any] = {}
        for pk, rks in keys.items():
            for rk, current in self.fetch(pk, rks).items():
                found[(pk, rk)] = current
        return found

    def _merge_across_days(
        self, state: CallState, day: str, current: Any, dry_run: bool
    ) -> WriteStats:
        """A call logged within minutes of midnight whose row already sits under the other
        day (another source's record of it carried a time on that side): merge into one row
        under the day of the best-ranked time, and remove the other."""
        other_pk = current["PartitionKey"]
        merged_state = rows.state_from_entity(current)
        for frag in state.call.fragments.values():
            add_fragment(merged_state, frag)
        merged = rows.to_entity(resolve(merged_state), merged_state, self.cfg.shards)
        if merged["PartitionKey"] == other_pk:
            return self._write_chunk(other_pk, [(state, merged)], dry_run)
        stats = self._write_chunk(merged["PartitionKey"], [(merged_state, merged)], dry_run)
        if not dry_run:
            with contextlib.suppress(ResourceNotFoundError):
                self.call(
                    self.audit.delete_entity,
                    other_pk,
                    current["RowKey"],
                    etag=current.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        stats.days.add(day)  # the day the row left changes too
        return stats

    def _write_chunk(self, pk: str, chunk: list[Row], dry_run: bool = False) -> WriteStats:
        if not dry_run:
            try:
                self.call(self.audit.submit_transaction, [("create", e) for _, e in chunk])
                return WriteStats(created=len(chunk), days={pk[:10]})
            except TableTransactionError as exc:
                if not _is_conflict(exc):
                    raise
        return self._merge_chunk(pk, chunk, dry_run)

    def _merge_chunk(self, pk: str, chunk: list[Row], dry_run: bool) -> WriteStats:
        last: Exception | None = None
        for _ in range(MERGE_ATTEMPTS):
            existing = self.fetch(pk, [e["RowKey"] for _, e in chunk])
            ops: list[tuple[Any, ...]] = []
            stats = WriteStats()
            for state, entity in chunk:
                current = existing.get(entity["RowKey"])
                if current is None:
                    ops.append(("create", entity))
                    stats.created += 1
                    continue
                merged = rows.merge_into(current, state, self.cfg.shards)
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
            if not ops or dry_run:
                return stats
            try:
                self.call(self.audit.submit_transaction, ops)
                return stats
            except TableTransactionError as exc:
                if not (_is_conflict(exc) or exc.status_code == 412):
                    raise
                last = exc  # someone else wrote one of these rows meanwhile: read again
        raise RuntimeError(f"rows of partition {pk} kept changing under us") from last

    def blob_exists(self, container: ContainerClient, name: str) -> bool:
        return bool(self.call(container.get_blob_client(name).exists))

    def fetch(self, pk: str, keys: Iterable[str]) -> dict[str, Any]:
        """Existing rows among `keys` in partition `pk` (parameterised queries, never spliced)."""
        found: dict[str, Any] = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), KEYS_PER_QUERY):
            part = keys[start : start + KEYS_PER_QUERY]
            params: dict[str, Any] = {"pk": pk}
            clauses = []
            for i, key in enumerate(part):
                params[f"k{i}"] = key
                clauses.append(f"RowKey eq @k{i}")
            # The SDK substitutes @names split on spaces: keep them space-separated.
            query = f"PartitionKey eq @pk and ( {' or '.join(clauses)} )"
            for entity in self.call(
                lambda q=query, p=params: list(self.audit.query_entities(q, parameters=p))
            ):
                found[entity["RowKey"]] = entity
        return found

    def find_rows(self, correlation_id: str) -> list[Any]:
        """All rows with this correlation id (any day): a cross-partition query, for the CLI."""
        rk = rows.row_key(correlation_id)
        return self.call(
            lambda: list(self.audit.query_entities("RowKey eq @rk", parameters={"rk": rk}))
        )

    def is_local(self) -> bool:
        """The account is a local emulator (Azurite): `UseDevelopmentStorage=true`, its
        well-known account `devstoreaccount1`, or a loopback endpoint."""
        from urllib.parse import urlparse

        from pipeline.settings import AZURITE_ACCOUNT

        host = urlparse(self.blobs.url).hostname or ""
        return self.blobs.account_name == AZURITE_ACCOUNT or host in (
            "127.0.0.1",
            "localhost",
            "::1",
        )

    def require_container(self, container: ContainerClient, named_by: str) -> None:
        """Raise SettingsError, naming the container and `named_by` (its setting or option),
        when it does not exist. Never creates it."""
        from pipeline.settings import SettingsError

        if not self.call(container.exists):
            raise SettingsError(
                f"container {container.container_name!r} (named by {named_by}) does not exist "
                f"in storage account {container.account_name!r}: check the name; the pipeline "
                "does not create containers outside Azurite (infra/ creates them, the archive "
                "with version-level immutability)"
            )


_WRITERS: ThreadPoolExecutor | None = None
_WRITERS_LOCK = threading.Lock()


def _writers() -> ThreadPoolExecutor:
    """Threads for a batch's partitions: requests wait on the network, not the GIL. Created
    once per process (a Function instance runs one batch per partition lease at a time)."""
    global _WRITERS
    with _WRITERS_LOCK:
        if _WRITERS is None:
            _WRITERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="audit-write")
        return _WRITERS


def _is_conflict(exc: HttpResponseError) -> bool:
    code = str(getattr(exc, "error_code", "") or "")
    return exc.status_code == 409 or code == "EntityAlreadyExists"


def _chunks(items: list[Row]) -> Iterable[list[Row]]:
    chunk: list[Row] = []
    size = 0
    for item in items:
        n = limits.entity_size(item[1]) + limits.TRANSACTION_OP_OVERHEAD
        if chunk and (
            len(chunk) >= limits.MAX_TRANSACTION_OPS or size + n > limits.MAX_TRANSACTION_BYTES
        ):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        yield chunk


class KpiStore:
    """Reads of a day's audit rows and writes of its KPI rows."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def audit_rows(self, day: str, columns: list[str]) -> Iterable[Any]:
        """Every audit row of one UTC day: only that day's partitions, only `columns`."""
        return self.store.audit.query_entities(
            rows.day_range(day), select=columns, results_per_page=1000
        )

    def replace_day(self, day: str, entities: list[dict[str, Any]]) -> tuple[int, int]:
        """Make the day's KPI rows exactly `entities`: upsert them, delete the others.
        Returns (written, deleted). Running it twice gives the same rows."""
        table = self.store.kpi
        existing = self.store.call(
            lambda: {
                e["RowKey"]
                for e in table.query_entities(
                    "PartitionKey eq @day", parameters={"day": day}, select=["RowKey"]
                )
            }
        )
        keep = {e["RowKey"] for e in entities}
        ops: list[tuple[Any, ...]] = [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in entities]
        ops += [("delete", {"PartitionKey": day, "RowKey": rk}) for rk in sorted(existing - keep)]
        for start in range(0, len(ops), limits.MAX_TRANSACTION_OPS):
            self.store.call(
                table.submit_transaction, ops[start : start + limits.MAX_TRANSACTION_OPS]
            )
        return len(entities), len(existing - keep)

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

"""A storage account's clients, wired once: the audit and KPI tables, the raw archive and
dead-letter containers, and the one retry policy every request goes through.

What each request does lives beside it: audit.py (the audit table's writes and merges),
blobs.py (create-only blobs, ranged reads), kpis.py (the KPI job's reads and writes),
retry.py (the retry policy).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlparse

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient

from pipeline.model import DeadLetter
from pipeline.protect import encryption
from pipeline.protect.archive import ArchiveBlob
from pipeline.settings import AZURITE_ACCOUNT, AZURITE_CONNECTION, Config, SettingsError
from pipeline.store import blobs, threads
from pipeline.store.audit import AuditTable
from pipeline.store.deadletters import dead_letter_blob
from pipeline.store.kek import kek_from
from pipeline.store.keys import ArchiveKeys
from pipeline.store.merge import WriteStats
from pipeline.store.retry import RetryPolicy
from pipeline.store.rows import Row

T = TypeVar("T")


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
        self.retry = RetryPolicy(
            cfg.storage_retries + 1, retry_base=retry_base, retry_cap=retry_cap
        )
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
        self.kpi_hourly: TableClient = self.tables.get_table_client(cfg.kpi_hourly_table)
        self.budget_alerts: TableClient = self.tables.get_table_client(cfg.budget_alerts_table)
        self.archive: ContainerClient = self.blobs.get_container_client(cfg.archive_container)
        self.deadletters: ContainerClient = self.blobs.get_container_client(
            cfg.deadletter_container
        )
        self.audit_rows = AuditTable(self.audit, self.retry, cfg.shards)
        self.archive_keys_table: TableClient = self.tables.get_table_client(cfg.archive_keys_table)
        self.legal_holds: TableClient = self.tables.get_table_client(cfg.legal_holds_table)
        self._keys: ArchiveKeys | None = None

    @property
    def keys(self) -> ArchiveKeys:
        """The sealed archive's data keys (raises SettingsError when ARCHIVE_KEK is not set)."""
        if self._keys is None:
            self._keys = ArchiveKeys(
                self.archive_keys_table, self.retry, kek_from(self.cfg.archive_kek)
            )
        return self._keys

    def close(self) -> None:
        self.tables.close()
        self.blobs.close()

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, retried on transient storage failures (RetryPolicy.call)."""
        return self.retry.call(fn, *args, **kwargs)

    @property
    def retries(self) -> int:
        """Retries of this account's requests so far."""
        return self.retry.retries

    # --- set-up -----------------------------------------------------------------------------

    def ensure(self, *, create_containers: bool | None = None) -> None:
        """Create the tables if missing (idempotent); create the containers only on a local
        emulator, and elsewhere check that they exist.

        The archive container is infra/'s to create, with version-level immutability (WORM),
        which cannot be added to a container afterwards: created here under a misspelled
        ARCHIVE_CONTAINER, it would take the raw archive without it, silently. So unless the
        account is Azurite (`is_local`), a missing container raises SettingsError naming it
        and its setting. `create_containers` overrides the detection."""
        for table in (
            self.cfg.audit_table,
            self.cfg.kpi_table,
            self.cfg.kpi_hourly_table,
            self.cfg.budget_alerts_table,
            self.cfg.archive_keys_table,
            self.cfg.legal_holds_table,
        ):
            self.call(self.tables.create_table_if_not_exists, table)
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

    def put_archive(self, blob: ArchiveBlob) -> bool:
        # No content-encoding header: readers must get the gzip bytes untouched for ranged reads.
        # The full SHA-256 of the bytes rides along (the name holds 40 hex digits of it), so
        # the day's manifest lists the blob without reading it (compliance/seal.py).
        return blobs.create(
            self.retry,
            self.archive,
            blob.name,
            blob.data,
            metadata={"sha256": blob.sha256},
            content_type="application/gzip",
        )

    def put_dead_letters(self, deads: Sequence[DeadLetter]) -> int:
        """Create the dead letters' blobs side by side (a batch of junk events makes one each:
        one after the other, a round trip each); how many were new. Sealed, they share one
        data key, wrapped once: a Key Vault request per batch, not per dead letter."""
        if not deads:
            return 0
        seal = self._dead_letter_seal() if self.cfg.archive_encryption else None
        made = [dead_letter_blob(d) for d in deads]
        created = sum(
            threads.each(
                lambda b: blobs.put_dead_letter(self.retry, self.deadletters, b, seal), made
            )
        )
        blobs.log_dead_letters(made)
        return created

    def _dead_letter_seal(self) -> Callable[[bytes], bytes]:
        key = encryption.new_key()
        kek_id, wrapped = self.keys.kek.wrap(key)
        return lambda body: encryption.seal_dead_letter(key, wrapped, kek_id, body)

    def rewrite_dead_letter(
        self, name: str, body: bytes, metadata: dict[str, str], etag: str | None
    ) -> None:
        """A dead letter written again (`erase`: without a subject's records), sealed as it
        was, and only if nobody changed it since it was read (else the storage refuses)."""
        data = self._dead_letter_seal()(body) if metadata.get("sealed") else body
        client = self.deadletters.get_blob_client(name)
        self.retry.call(
            client.upload_blob,
            data,
            overwrite=True,
            metadata=metadata,
            etag=etag,
            match_condition=MatchConditions.IfNotModified,
        )

    def open_dead_letter(self, data: bytes, *, sealed: bool) -> bytes:
        """A dead letter's content as stored before sealing. Only one we sealed (its metadata
        says so) is opened: a sender's bytes that look sealed are content like any other."""
        head = encryption.dead_letter_header(data) if sealed else None
        if head is None:
            return data
        kek_id, wrapped, rest = head
        return encryption.open_dead_letter(self.keys.kek.unwrap(kek_id, wrapped), rest)

    def read_range(self, container: ContainerClient, name: str, offset: int, length: int) -> bytes:
        return blobs.read_range(self.retry, container, name, offset, length)

    def read_member(self, blob: str, offset: int, length: int) -> bytes | None:
        """One archive member by a ranged read; None when the blob or the range is not there."""
        return blobs.read_member(self.retry, self.archive, blob, offset, length)

    def read_blob(self, container: str, name: str) -> bytes:
        return blobs.read_all(self.retry, self.blobs.get_container_client(container), name)

    def blob_exists(self, container: ContainerClient, name: str) -> bool:
        return blobs.exists(self.retry, container, name)

    # --- audit rows -----------------------------------------------------------------------------

    def write_rows(self, items: Sequence[Row], *, dry_run: bool = False) -> WriteStats:
        """Store a batch's rows (AuditTable.write_rows); with `dry_run`, only count."""
        return self.audit_rows.write_rows(items, dry_run=dry_run)

    def fetch(self, pk: str, keys: Iterable[str]) -> dict[str, Any]:
        """Existing audit rows among `keys` in partition `pk`."""
        return self.audit_rows.fetch(pk, keys)

    def join_twins(self, day: str) -> set[str]:
        """Join the day's calls keyed by a response id into their twins (AuditTable)."""
        return self.audit_rows.join_twins(day)

    def find_rows(self, correlation_id: str) -> list[Any]:
        """All rows with this correlation id (any day): a cross-partition query, for the CLI."""
        return self.audit_rows.find_rows(correlation_id)

    # --- the account ----------------------------------------------------------------------------

    def is_local(self) -> bool:
        """The account is a local emulator (Azurite): `UseDevelopmentStorage=true`, its
        well-known account `devstoreaccount1`, or a loopback endpoint."""
        host = urlparse(self.blobs.url).hostname or ""
        return self.blobs.account_name == AZURITE_ACCOUNT or host in (
            "127.0.0.1",
            "localhost",
            "::1",
        )

    def require_container(self, container: ContainerClient, named_by: str) -> None:
        """Raise SettingsError, naming the container and `named_by` (its setting or option),
        when it does not exist. Never creates it."""
        if not self.call(container.exists):
            raise SettingsError(
                f"container {container.container_name!r} (named by {named_by}) does not exist "
                f"in storage account {container.account_name!r}: check the name; the pipeline "
                "does not create containers outside Azurite (infra/ creates them, the archive "
                "with version-level immutability)"
            )

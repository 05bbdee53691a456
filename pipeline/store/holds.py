"""LEGAL_HOLDS_TABLE: legal holds (PartitionKey "hold", RowKey = the case name), and the
version-level legal hold of the archive blobs a hold covers.

A hold names its subject by a keyed hash (store/keys.py `subject_hash`), never in clear; it
keeps the archive blobs it put a legal hold on, so `release` lifts exactly those (unless
another active case holds them too).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import orjson
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import EdmType, EntityProperty, TableClient, UpdateMode
from azure.storage.blob import ContainerClient

from pipeline.store import limits
from pipeline.store.retry import RetryPolicy

HOLD_PK = "hold"


class HoldExists(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Hold:
    case: str
    kind: str  # user | subscription
    subject: str  # keyed hash
    start: date
    end: date
    created: datetime
    released: datetime | None = None
    blobs: tuple[str, ...] = ()
    unlisted: int = 0  # blobs held but too many to list (release cannot lift those)

    def covers(self, kind: str, subject: str, day: str) -> bool:
        """Whether the hold covers a call of `day` (yyyy-MM-dd) whose `kind` hashes to
        `subject`."""
        return (
            self.released is None
            and self.kind == kind
            and self.subject == subject
            and self.start.isoformat() <= day <= self.end.isoformat()
        )


def _entity(hold: Hold) -> dict[str, object]:
    blobs = zlib.compress(orjson.dumps(list(hold.blobs)), 6)
    unlisted = 0
    if len(blobs) > limits.MAX_BINARY_BYTES * 12:
        # More blobs than an entity can list (tens of thousands): the hold itself stands;
        # `release` then cannot lift their blob holds, and says so.
        unlisted, blobs = len(hold.blobs), zlib.compress(b"[]")
    entity: dict[str, object] = {
        "PartitionKey": HOLD_PK,
        "RowKey": hold.case,
        "SubjectKind": hold.kind,
        "SubjectHash": hold.subject,
        "From": hold.start.isoformat(),
        "To": hold.end.isoformat(),
        "Created": hold.created,
    }
    step = limits.MAX_BINARY_BYTES
    for i in range(0, max(len(blobs), 1), step):
        entity["Blobs" if i == 0 else f"Blobs{i // step}"] = EntityProperty(
            blobs[i : i + step], EdmType.BINARY
        )
    if hold.released is not None:
        entity["Released"] = hold.released
    if unlisted:
        entity["BlobsUnlisted"] = unlisted
    return entity


def _hold(entity: dict[str, object]) -> Hold:
    parts, i = [], 0
    while (part := entity.get("Blobs" if i == 0 else f"Blobs{i}")) is not None:
        parts.append(getattr(part, "value", part))
        i += 1
    blobs = orjson.loads(zlib.decompress(b"".join(parts))) if parts else []  # type: ignore[arg-type]
    return Hold(
        case=str(entity["RowKey"]),
        kind=str(entity["SubjectKind"]),
        subject=str(entity["SubjectHash"]),
        start=date.fromisoformat(str(entity["From"])),
        end=date.fromisoformat(str(entity["To"])),
        created=entity["Created"],  # type: ignore[arg-type]
        released=entity.get("Released"),  # type: ignore[arg-type]
        blobs=tuple(blobs),
        unlisted=int(entity.get("BlobsUnlisted") or 0),  # type: ignore[call-overload]
    )


class LegalHolds:
    def __init__(self, table: TableClient, archive: ContainerClient, retry: RetryPolicy) -> None:
        self.table = table
        self.archive = archive
        self.retry = retry

    def all(self) -> list[Hold]:
        found = self.retry.call(
            lambda: list(
                self.table.query_entities("PartitionKey eq @pk", parameters={"pk": HOLD_PK})
            )
        )
        return [_hold(e) for e in found]

    def active(self) -> list[Hold]:
        return [h for h in self.all() if h.released is None]

    def get(self, case: str) -> Hold | None:
        try:
            return _hold(self.retry.call(self.table.get_entity, HOLD_PK, case))
        except ResourceNotFoundError:
            return None

    def create(self, hold: Hold) -> None:
        try:
            self.retry.call(self.table.create_entity, _entity(hold))
        except ResourceExistsError:
            raise HoldExists(
                f"case {hold.case!r} exists already (holds are never reused)"
            ) from None

    def release(self, hold: Hold, when: datetime) -> None:
        self.retry.call(
            self.table.update_entity,
            {"PartitionKey": HOLD_PK, "RowKey": hold.case, "Released": when},
            mode=UpdateMode.MERGE,
        )

    def set_blob_holds(self, blobs: Iterable[str], on: bool) -> tuple[int, str | None]:
        """Set (or clear) the version-level legal hold of archive blobs: (how many, None) or
        (how many before it failed, why). Needs version-level immutability on the container
        (infra/); Azurite has no legal holds and says so."""
        done = 0
        for name in blobs:
            client = self.archive.get_blob_client(name)
            try:
                self.retry.call(client.set_legal_hold, on)
            except HttpResponseError as exc:
                code = getattr(exc, "error_code", None) or exc.status_code
                return done, f"{code}: {str(exc.message or exc).splitlines()[0][:200]}"
            done += 1
        return done, None

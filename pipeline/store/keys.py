"""ARCHIVE_KEYS_TABLE: the data keys of the sealed archive, one entity per archive blob.

The archive is WORM and keeps every member for its retention; what makes a member readable
is its data key, and the keys live here, in a table, where they can be destroyed. An entity
(PartitionKey = the blob's day, RowKey = the rest of its name) holds:
- `BlobKey`: the blob key, wrapped by the KEK (`Kek`: which key, and which version);
- `Keys`: the data keys of the blob's members, in member order, sealed under the blob key
  (a destroyed key is zeros);
- `Members`: each member's offset, length and correlation id, readable without any key, so
  that `erase` finds every copy of a call's records (redeliveries, replays) by correlation id;
- `Erased`: the offsets whose keys were destroyed, and when.
A blob of more than MEMBERS_PER_ENTITY members has one entity per slice of them ("~1", ...).

The entity is written before the blob (ingest/batch.py): no member is ever without its key.
A redelivered batch seals its records under new keys, so it makes a new blob and entity
(content-addressed names differ); the row keeps pointing at the first copy, and `erase`
finds the others through `Members`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time
import zlib
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableTransactionError,
    UpdateMode,
)

from pipeline.common.timestamps import iso
from pipeline.model import RawPointer
from pipeline.protect import encryption
from pipeline.protect.archive import ArchiveBlob
from pipeline.store import limits
from pipeline.store.kek import Unwrapped
from pipeline.store.retry import RetryPolicy

# 500 members of the longest correlation ids (255 characters) stay well within 1 MiB.
MEMBERS_PER_ENTITY = 500
SECRETS_PK = "_secrets"
# A replay reads a blob's members one after another: its keys are read once, and kept this
# long, so that an erasure done elsewhere holds in every process within that time.
CACHE_SECONDS = 30.0
ATTEMPTS = 8


class KeyMissing(LookupError):
    """No key entity holds this member: not a member of our sealed archive."""


@dataclass(frozen=True, slots=True)
class Member:
    blob: str
    offset: int
    length: int
    correlation_id: str


def entity_keys(blob: str, part: int = 0) -> tuple[str, str]:
    """(PartitionKey, RowKey) of a blob's key entity: `yyyy/MM/dd/HH/<hash>.jsonl.gz` →
    (`yyyy-MM-dd`, `HH-<hash>.jsonl.gz`), `~N` after it for the Nth slice of its members."""
    pk = blob[:10].replace("/", "-")
    rk = blob[11:].replace("/", "-")
    return pk, rk if not part else f"{rk}~{part}"


def _put_binary(entity: dict[str, Any], name: str, data: bytes) -> None:
    step = limits.MAX_BINARY_BYTES
    for i in range(0, max(len(data), 1), step):
        prop = name if i == 0 else f"{name}{i // step}"
        entity[prop] = EntityProperty(data[i : i + step], EdmType.BINARY)


def _get_binary(entity: Any, name: str) -> bytes:
    parts, i = [], 0
    while (part := entity.get(name if i == 0 else f"{name}{i}")) is not None:
        parts.append(getattr(part, "value", part))
        i += 1
    return b"".join(parts)


def _members(entity: Any) -> list[Member]:
    blob = str(entity.get("Blob") or "")
    doc = orjson.loads(zlib.decompress(_get_binary(entity, "Members")))
    return [Member(blob, int(o), int(n), str(c)) for o, n, c in doc]


def _erased(entity: Any) -> dict[str, str]:
    raw = entity.get("Erased")
    return orjson.loads(raw) if raw else {}


class ArchiveKeys:
    def __init__(self, table: TableClient, retry: RetryPolicy, kek: Unwrapped) -> None:
        self.table = table
        self.retry = retry
        self.kek = kek
        self._cache: OrderedDict[str, tuple[float, dict[int, bytes | None]]] = OrderedDict()
        self._lock = threading.Lock()

    # --- writing: one entity per blob (per slice of its members) ---------------------------

    def entities(self, blob: ArchiveBlob) -> list[dict[str, Any]]:
        assert blob.keys is not None and blob.calls is not None
        out = []
        for part, start in enumerate(range(0, len(blob.pointers), MEMBERS_PER_ENTITY)):
            pk, rk = entity_keys(blob.name, part)
            pointers = blob.pointers[start : start + MEMBERS_PER_ENTITY]
            calls = blob.calls[start : start + MEMBERS_PER_ENTITY]
            blob_key = encryption.new_key()
            kek_id, wrapped = self.kek.wrap(blob_key)
            entity: dict[str, Any] = {
                "PartitionKey": pk,
                "RowKey": rk,
                "Blob": blob.name,
                "Kek": kek_id,
                "BlobKey": EntityProperty(wrapped, EdmType.BINARY),
            }
            members = [[p.offset, p.length, c] for p, c in zip(pointers, calls, strict=True)]
            _put_binary(entity, "Members", zlib.compress(orjson.dumps(members), 6))
            keys = blob.keys[start : start + MEMBERS_PER_ENTITY]
            _put_binary(entity, "Keys", encryption.seal_keys(blob_key, keys, rk.encode()))
            out.append(entity)
        return out

    def put(self, blob: ArchiveBlob) -> None:
        """The blob's key entities: one request (a transaction) for a blob's slices."""
        items = [(None, e) for e in self.entities(blob)]
        for chunk in limits.transactions(items):
            try:
                self.retry.call(self.table.submit_transaction, [("create", e) for _, e in chunk])
            except TableTransactionError:
                # Exists: a retried request that had succeeded (the same blob, the same keys).
                for _, entity in chunk:
                    with contextlib.suppress(ResourceExistsError):
                        self.retry.call(self.table.create_entity, entity)

    # --- reading -------------------------------------------------------------------------

    def _read(self, blob: str) -> list[Any]:
        pk, rk = entity_keys(blob)
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        params = {"pk": pk, "lo": rk, "hi": rk + "~~"}
        return self.retry.call(lambda: list(self.table.query_entities(query, parameters=params)))

    def _open(self, entity: Any) -> tuple[bytes, list[bytes]]:
        """The entity's blob key (unwrapped by the KEK) and its members' data keys."""
        blob_key = self.kek.unwrap(
            str(entity.get("Kek")), getattr(entity["BlobKey"], "value", entity["BlobKey"])
        )
        keys = encryption.open_keys(
            blob_key, _get_binary(entity, "Keys"), str(entity["RowKey"]).encode()
        )
        return blob_key, keys

    def blob_keys(self, blob: str) -> dict[int, bytes | None]:
        """Data key of each member of `blob` by offset (None: destroyed by `erase`)."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(blob)
            if hit is not None and now - hit[0] < CACHE_SECONDS:
                self._cache.move_to_end(blob)
                return hit[1]
        found: dict[int, bytes | None] = {}
        for entity in self._read(blob):
            erased = _erased(entity)
            for member, key in zip(_members(entity), self._open(entity)[1], strict=True):
                gone = str(member.offset) in erased or key == encryption.ERASED_KEY
                found[member.offset] = None if gone else key
        with self._lock:
            self._cache[blob] = (now, found)
            while len(self._cache) > 64:
                self._cache.popitem(last=False)
        return found

    def member_key(self, pointer: RawPointer) -> bytes | None:
        """The data key of the member at `pointer`; None when it was erased. Raises KeyMissing
        when no key entity lists that member."""
        keys = self.blob_keys(pointer.blob)
        if pointer.offset not in keys:
            raise KeyMissing(f"no key for {pointer.blob}@{pointer.offset}")
        return keys[pointer.offset]

    def listed(self, pointers: Iterable[RawPointer]) -> set[tuple[str, int]]:
        """Which of these members the key table lists (sealed members); reads no key."""
        out: set[tuple[str, int]] = set()
        for blob in sorted({p.blob for p in pointers}):
            out.update((blob, m.offset) for e in self._read(blob) for m in _members(e))
        return out

    def erased_at(self, pointer: RawPointer) -> str | None:
        for entity in self._read(pointer.blob):
            when = _erased(entity).get(str(pointer.offset))
            if when:
                return when
        return None

    def scan(self, days: Iterable[str], calls: set[str]) -> Iterator[Member]:
        """Members of the archive blobs of `days` (yyyy-MM-dd) that belong to `calls`: every
        copy of their records, those no row points at included. Reads no key."""
        for day in sorted(set(days)):
            entities = self.retry.call(
                lambda d=day: list(
                    self.table.query_entities("PartitionKey eq @pk", parameters={"pk": d})
                )
            )
            for entity in entities:
                for member in _members(entity):
                    if member.correlation_id in calls:
                        yield member

    # --- destroying -----------------------------------------------------------------------

    def shred(self, pointers: Iterable[RawPointer | Member], when: datetime | None = None) -> int:
        """Destroy the data keys of these members. Returns how many keys were destroyed now
        (members erased before, or not in any key entity, are not counted)."""
        stamp = iso(when or datetime.now(UTC))
        by_blob: dict[str, set[int]] = defaultdict(set)
        for p in pointers:
            by_blob[p.blob].add(p.offset)
        done = 0
        for blob, offsets in sorted(by_blob.items()):
            for _ in range(ATTEMPTS):
                try:
                    done += sum(self._shred_entity(e, offsets, stamp) for e in self._read(blob))
                    break
                except HttpResponseError as exc:
                    if exc.status_code != 412:
                        raise
            else:
                raise RuntimeError(f"key entity of {blob} kept changing under us")
            with self._lock:
                self._cache.pop(blob, None)
        return done

    def _shred_entity(self, entity: Any, offsets: set[int], stamp: str) -> int:
        members = _members(entity)
        hits = [i for i, m in enumerate(members) if m.offset in offsets]
        erased = _erased(entity)
        fresh = [i for i in hits if str(members[i].offset) not in erased]
        if not fresh:
            return 0
        blob_key, keys = self._open(entity)
        for i in fresh:
            keys[i] = encryption.ERASED_KEY
            erased[str(members[i].offset)] = stamp
        update: dict[str, Any] = {
            "PartitionKey": entity["PartitionKey"],
            "RowKey": entity["RowKey"],
            "Erased": orjson.dumps(erased).decode(),
        }
        # Every Keys property rewritten: the sealed list keeps its length.
        sealed = encryption.seal_keys(blob_key, keys, str(entity["RowKey"]).encode())
        _put_binary(update, "Keys", sealed)
        self.retry.call(
            self.table.update_entity,
            update,
            mode=UpdateMode.MERGE,
            etag=entity.metadata["etag"],
            match_condition=MatchConditions.IfNotModified,
        )
        return len(fresh)

    # --- the keyed hash of erasure subjects --------------------------------------------

    def subject_hash(self, kind: str, value: str) -> str:
        """HMAC-SHA256 of a subject under a secret of this archive (kept here, wrapped by the
        KEK): the erasure log and legal holds name subjects without naming them in clear."""
        digest = hmac.new(self._subject_secret(), f"{kind}\n{value}".encode(), hashlib.sha256)
        return digest.hexdigest()

    def _subject_secret(self) -> bytes:
        try:
            entity = self.retry.call(self.table.get_entity, SECRETS_PK, "subjects")
        except ResourceNotFoundError:
            kek_id, wrapped = self.kek.wrap(encryption.new_key())
            new = {
                "PartitionKey": SECRETS_PK,
                "RowKey": "subjects",
                "Kek": kek_id,
                "Wrapped": EntityProperty(wrapped, EdmType.BINARY),
            }
            # Exists: created meanwhile by another process, and theirs is the one.
            with contextlib.suppress(ResourceExistsError):
                self.retry.call(self.table.create_entity, new)
            entity = self.retry.call(self.table.get_entity, SECRETS_PK, "subjects")
        wrapped = entity["Wrapped"]
        return self.kek.unwrap(str(entity["Kek"]), getattr(wrapped, "value", wrapped))

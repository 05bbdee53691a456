"""What the archive container holds for a day, and its manifests (compliance/seal.py).

Manifests live beside the archive blobs, under `_manifests/YYYY-MM-DD/NNNN.json` (NNNN = 0 for
the day's manifest, 1, 2, ... for supplementary ones), created once and never overwritten
(the container is WORM in production; the code only ever creates them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContentSettings

from pipeline.store.account import Store

PREFIX = "_manifests/"
_MANIFEST = re.compile(r"\A_manifests/(\d{4}-\d{2}-\d{2})/(\d{4})\.json\Z")


@dataclass(frozen=True, slots=True)
class StoredBlob:
    name: str
    size: int
    created: datetime | None
    sha256: str | None  # from the blob's metadata, as the writer stated it (not verified)


def day_prefix(day: date) -> str:
    return f"{day:%Y/%m/%d}/"


def day_blobs(store: Store, day: date) -> list[StoredBlob]:
    """The archive blobs named for `day` (`yyyy/MM/dd/HH/...`), with their stated SHA-256."""

    def listing() -> list[StoredBlob]:
        return [
            StoredBlob(b.name, b.size, b.creation_time, (b.metadata or {}).get("sha256"))
            for b in store.archive.list_blobs(
                name_starts_with=day_prefix(day), include=["metadata"]
            )
        ]

    return store.call(listing)


def manifest_name(day: date, sequence: int) -> str:
    return f"{PREFIX}{day:%Y-%m-%d}/{sequence:04d}.json"


def manifests(store: Store, first: date | None = None, last: date | None = None) -> Iterator[str]:
    """Names of the manifests of days first..last (all when open), in (day, sequence) order."""

    def listing() -> list[str]:
        return sorted(b.name for b in store.archive.list_blobs(name_starts_with=PREFIX))

    for name in store.call(listing):
        m = _MANIFEST.match(name)
        if m is None:
            continue
        day = date.fromisoformat(m.group(1))
        if (first is None or day >= first) and (last is None or day <= last):
            yield name


def parse_name(name: str) -> tuple[date, int] | None:
    m = _MANIFEST.match(name)
    return (date.fromisoformat(m.group(1)), int(m.group(2))) if m else None


def read(store: Store, name: str) -> bytes | None:
    try:
        return store.call(lambda: store.archive.download_blob(name).readall())
    except ResourceNotFoundError:
        return None


def create(store: Store, name: str, data: bytes) -> bool:
    """Create a manifest; False when one of that name exists already (never overwritten)."""
    try:
        store.call(
            store.archive.upload_blob,
            name,
            data,
            overwrite=False,
            content_settings=ContentSettings(content_type="application/json"),
        )
    except ResourceExistsError:
        return False
    return True

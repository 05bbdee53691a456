"""Sealing the archive: a manifest per day, created once, chained (compliance/manifests.py).

The daily job (and `rollup`) seals the days it rolls up: a day without a manifest gets its
first (sequence 0, linked to the previous manifested day's first); a day already sealed whose
blobs grew since (late batches, replays) gets a supplementary manifest listing the new ones,
linked to the day's last. A day is listed from the container (one listing, no blob read: the
writer states each blob's SHA-256 in its metadata; `verify` recomputes it from the bytes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime

from pipeline.compliance import manifests
from pipeline.compliance.manifests import Link
from pipeline.store import archive_index
from pipeline.store.account import Store


@dataclass(frozen=True, slots=True)
class Sealed:
    day: date
    manifest: str | None  # the manifest written, or None when the day had nothing new
    blobs: int


def seal_days(
    days: list[date], store: Store, now: datetime | None = None, *, sealed_only: bool = False
) -> list[Sealed]:
    """Seal `days`; with `sealed_only`, only those sealed before (a replay that added blobs
    to a sealed day: without a supplementary manifest, `verify` names them as planted; a day
    not sealed yet waits for the daily job's first manifest)."""
    now = now or datetime.now(UTC)
    names = list(archive_index.manifests(store))
    if sealed_only:
        manifested = {parsed[0] for n in names if (parsed := archive_index.parse_name(n))}
        days = [d for d in days if d in manifested]
    out = []
    for day in sorted(set(days)):
        out.append(_seal(day, store, names, now))
    return out


def _seal(day: date, store: Store, names: list[str], now: datetime) -> Sealed:
    mine = [n for n in names if (archive_index.parse_name(n) or (None,))[0] == day]
    already: set[str] = set()
    for name in mine:
        raw = archive_index.read(store, name)
        if raw is not None:
            already |= set(manifests.listed(manifests.parse(raw)))
    new = [b for b in archive_index.day_blobs(store, day) if b.name not in already]
    if mine and not new:
        return Sealed(day, None, 0)
    sequence = len(mine)
    previous = _link(store, mine[-1]) if mine else _previous_day(store, names, day)
    entries = [(b.name, b.size, b.sha256 or _hash(store, b.name)) for b in new]
    data = manifests.build(day, sequence, entries, previous, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    name = archive_index.manifest_name(day, sequence)
    if not archive_index.create(store, name, data):
        return Sealed(day, None, 0)  # another run sealed it meanwhile: its manifest stands
    names.append(name)
    names.sort()
    return Sealed(day, name, len(entries))


def _link(store: Store, name: str) -> Link:
    raw = archive_index.read(store, name) or b""
    return Link(name, manifests.digest(raw))


def _previous_day(store: Store, names: list[str], day: date) -> Link | None:
    """The first manifest of the latest earlier day that has one (None: the chain starts)."""
    earlier = [
        n
        for n in names
        if (parsed := archive_index.parse_name(n)) is not None
        and parsed[0] < day
        and parsed[1] == 0
    ]
    return _link(store, earlier[-1]) if earlier else None


def _hash(store: Store, name: str) -> str:
    """A blob written before its writer stated its hash: read and hash it."""
    data = store.call(lambda: store.archive.download_blob(name).readall())
    return hashlib.sha256(data).hexdigest()

"""Archive pointers that events claim, checked before any record of them is read.

The `aoai-audit-archived` event property, set by `replay --to-eventhub`, can be set by any
sender on the hub: a claim is honoured only when the blob exists in the archive container and
the range holds a member whose SHA-256 is the claimed one; the member then says which call it
belongs to (records.fragment honours it for that call only). Otherwise the event is processed
like any other, and its record archived anew. One ranged read per claim, the claims of a
batch read side by side.

Our own sealed inputs are opened here too (ARCHIVE_ENCRYPTION), with the keys only storage
has: members read back from the sealed archive (`Archived.sealed`; a member whose data key
was destroyed by `erase` is marked `erased` and never replayed) and sealed dead letters
(`EventIn.sealed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from pipeline.model import Archived, EventIn
from pipeline.protect import archive, encryption
from pipeline.settings import SettingsError
from pipeline.store import threads
from pipeline.store.kek import KekError
from pipeline.store.keys import KeyMissing

if TYPE_CHECKING:
    from pipeline.store.account import Store


def verify_archived(events: Sequence[EventIn], store: Store) -> Sequence[EventIn]:
    """The events, each claim replaced by its checked version (or by None), our sealed
    members and dead letters opened."""
    if all(
        (e.archived is None or (e.archived.verified and not e.archived.sealed)) and not e.sealed
        for e in events
    ):
        return events
    # One ranged read per claim, side by side: any sender can put a claim on every event.
    return list(threads.each(lambda e: _checked(e, store), events))


def _checked(event: EventIn, store: Store) -> EventIn:
    if event.sealed:
        return _open_dead_letter(event, store)
    if event.archived is None:
        return event
    if event.archived.sealed:
        return _open_member(event, store)
    if event.archived.verified:
        return event
    return replace(event, archived=_check(event, store))


def _open_member(event: EventIn, store: Store) -> EventIn:
    """A member read from the sealed archive, opened with its data key; when that key was
    destroyed, the event says `erased` (and carries nothing of the record)."""
    archived = event.archived
    assert archived is not None
    try:
        key = store.keys.member_key(archived.pointer)
    except (KeyMissing, KekError, encryption.SealError, SettingsError):
        return event  # stays sealed: plan reports it
    if key is None:
        return replace(event, body=b"", archived=replace(archived, erased=True))
    try:
        return archive.opened_event(event, orjson.loads(event.body), key)
    except (archive.ArchiveError, orjson.JSONDecodeError, TypeError, ValueError):
        return event


def _open_dead_letter(event: EventIn, store: Store) -> EventIn:
    try:
        return replace(event, body=store.open_dead_letter(event.body, sealed=True), sealed=False)
    except (encryption.SealError, KekError, SettingsError):
        return event  # stays sealed: plan reports it


def _check(event: EventIn, store: Store) -> Archived | None:
    assert event.archived is not None
    p = event.archived.pointer
    if (
        not archive.BLOB_NAME.match(p.blob)
        or p.offset < 0
        or not 0 < p.length <= archive.MAX_MEMBER_BYTES
    ):
        return None
    data = store.read_member(p.blob, p.offset, p.length)
    if data is None:
        return None
    try:
        member = archive.open_member(data, p.sha256)
    except archive.ArchiveError:
        return None
    if not isinstance(member, dict):
        return None
    cid, rid = member.get("correlationId"), member.get("rid")
    if not isinstance(cid, str) or not isinstance(rid, str):
        return None
    key, opened = None, member
    if archive.is_sealed(member):
        # Honoured only while the member can be read: an erased one is archived anew (and
        # loses its new key at once, its row being erased: store/merge.py `erased_copies`).
        try:
            key = store.keys.member_key(p)
            opened = archive.open_sealed(member, key) if key is not None else None
        except (KeyMissing, KekError, encryption.SealError, SettingsError, archive.ArchiveError):
            return None
        if opened is None:
            return None
    # Honoured only for the very record archived there, as `replay --to-eventhub` sends it:
    # else a sender would give its own body the identity (and the key) of another record.
    try:
        if archive.member_event(opened, p).body != event.body:
            return None
    except (TypeError, ValueError, AttributeError, OverflowError):
        return None
    return Archived(p, rid, verified=True, correlation_id=cid, key=key)

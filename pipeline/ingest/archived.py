"""Archive pointers that events claim, checked before any record of them is read.

The `aoai-audit-archived` event property, set by `replay --to-eventhub`, can be set by any
sender on the hub: a claim is honoured only when the blob exists in the archive container and
the range holds a member whose SHA-256 is the claimed one; the member then says which call it
belongs to (records.fragment honours it for that call only). Otherwise the event is processed
like any other, and its record archived anew. One ranged read per claim.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from pipeline.model import Archived, EventIn
from pipeline.protect import archive

if TYPE_CHECKING:
    from pipeline.store.account import Store


def verify_archived(events: Sequence[EventIn], store: Store) -> Sequence[EventIn]:
    """The events, each claim replaced by its checked version (or by None)."""
    if all(e.archived is None or e.archived.verified for e in events):
        return events
    return [
        e if e.archived is None or e.archived.verified else replace(e, archived=_check(e, store))
        for e in events
    ]


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
    return Archived(p, rid, verified=True, correlation_id=cid)

"""Dead letters: what could not become an audit row, kept with its bytes and the reason.

One blob per dead letter in DEADLETTER_CONTAINER. The blob's content is the event body (or
the single record, wrapped as `{"records": [record]}` so it replays like the original event);
everything else is blob metadata: reason, partition, sequence number, enqueued time, offset,
origin, record index, pipeline version and a status (`new`, later `done` once replayed).

Names are deterministic (`yyyy/MM/dd/<hash>.json`, from the enqueued day and the content and
position), so a batch delivered twice leaves one dead letter per item, not two.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pipeline import __version__
from pipeline.common.timestamps import iso, path_hour, plausible
from pipeline.model import DeadLetter

_NOT_METADATA = re.compile(r"[^\x20-\x7e]")
MAX_REASON = 1024


@dataclass(frozen=True, slots=True)
class DeadLetterBlob:
    name: str
    data: bytes
    metadata: dict[str, str]


def _ascii(value: str, limit: int) -> str:
    # Blob metadata values must be ASCII; keep them readable and bounded. Azure trims a
    # value's surrounding spaces before it checks a SharedKey signature, which the SDK makes
    # over the value as sent: a value ending in a space is refused (403), so none is sent.
    return _NOT_METADATA.sub("?", value)[:limit].strip() or "?"


def dead_letter_blob(dead: DeadLetter) -> DeadLetterBlob:
    ev = dead.event
    # The enqueued day names the blob only when it is a plausible one (a Capture file can say
    # anything): `replay --from-deadletter 2025/11/04` must find it by prefix.
    day = path_hour(ev.enqueued)[:10] if plausible(ev.enqueued) and ev.enqueued else "undated"
    meta = {
        "reason": _ascii(dead.reason, MAX_REASON),
        "status": "new",
        "pipelineversion": __version__,
        "origin": _ascii(ev.origin, 512),
    }
    if ev.partition is not None:
        meta["partition"] = _ascii(str(ev.partition), 64)
    if ev.sequence is not None:
        meta["sequencenumber"] = str(ev.sequence)
    if ev.enqueued is not None:
        meta["enqueuedtime"] = iso(ev.enqueued)
    if ev.offset is not None:
        meta["offset"] = _ascii(str(ev.offset), 64)
    if dead.record_index is not None:
        meta["recordindex"] = str(dead.record_index)
    if dead.record_indexes:
        meta["recordindexes"] = ",".join(map(str, dead.record_indexes))
    # Named from what the metadata keeps (not the values before they were made ASCII): a
    # dead letter replayed from its metadata and failing again maps to this same blob.
    h = hashlib.sha256()
    h.update(dead.body)
    where = (meta.get("partition"), ev.sequence, dead.record_index, meta["origin"])
    h.update("|{}|{}|{}|{}".format(*where).encode())
    if dead.record_indexes:  # (the names of the other dead letters are as they were)
        h.update(f"|{meta['recordindexes']}".encode())
    name = f"{day}/{h.hexdigest()[:40]}.json"
    return DeadLetterBlob(name, dead.body, meta)


def restated(old: dict[str, str], new: dict[str, str]) -> dict[str, str] | None:
    """The metadata of a dead letter whose event failed again (a redelivery, or a replay of
    it): the one blob is kept, but says why it failed this time. None when it already does."""
    if old.get("reason") == new["reason"] and old.get("status") == "new":
        return None
    return {**old, **new, "previousreason": old.get("reason", "")}

"""Archive manifests: what one says, and the hash chain (pure).

A manifest lists archive blobs of one day (name, size, SHA-256) and names the manifest before
it with that manifest's SHA-256: the day's first manifest (sequence 0) the previous day's
first manifest that exists, a supplementary one (blobs that arrived after the day was
manifested) the day's manifest before it. Changing, removing or inserting any manifest breaks
every link after it; an auditor checks a day with `sha256sum` and a JSON reader alone.

Its bytes are canonical (keys sorted, no spaces): the same content, the same digest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

SCHEMA = "aoai-audit-archive-manifest/1"


@dataclass(frozen=True, slots=True)
class Link:
    name: str
    sha256: str


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build(
    day: date,
    sequence: int,
    blobs: list[tuple[str, int, str]],
    previous: Link | None,
    created: str,
) -> bytes:
    """A manifest's bytes: `blobs` as (name, size, sha256), sorted by name."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "day": f"{day:%Y-%m-%d}",
        "sequence": sequence,
        "created": created,
        "previous": None
        if previous is None
        else {"name": previous.name, "sha256": previous.sha256},
        "blobs": [{"name": n, "size": s, "sha256": h} for n, s, h in sorted(blobs)],
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def parse(data: bytes) -> dict[str, Any]:
    """A manifest's content; ValueError when it is not one."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ValueError(f"not a {SCHEMA} manifest")
    if not isinstance(doc.get("blobs"), list):
        raise ValueError("no blob list")
    return doc


def listed(doc: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """name → (size, sha256) of the blobs a manifest lists."""
    out = {}
    for b in doc["blobs"]:
        if isinstance(b, dict):
            out[str(b.get("name"))] = (int(b.get("size") or 0), str(b.get("sha256") or ""))
    return out

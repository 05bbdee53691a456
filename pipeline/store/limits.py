"""Azure Table storage limits, enforced here because Azurite does not enforce them all
(platform.md): a property holds at most 64 KiB (a string 32 K UTF-16 code units), an entity at
most 1 MiB counted as Azure counts it (strings as UTF-16), 252 properties besides the system
ones, a transaction 100 operations and 4 MiB.

The size formula is Microsoft's ("How the size of an entity is calculated in Windows Azure
table storage", learn.microsoft.com/archive/blogs/avkashchauhan): 4 bytes + (PartitionKey +
RowKey) × 2 + per property 8 + name × 2 + value (string 4 + 2/char, binary 4 + length,
Int32 4, Int64/Double/DateTime 8, Guid 16, Bool 1). Measured limits sit some tens of bytes
under 1 MiB, so we keep a margin.

Oversized values are clipped, never rejected, and the row says which (`Clipped`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any, TypeVar

from azure.data.tables import EdmType, EntityProperty

from pipeline.model import SEALED_TEXT

MAX_STRING_UNITS = 32 * 1024
MAX_BINARY_BYTES = 64 * 1024
MAX_ENTITY_BYTES = 1024 * 1024 - 4096  # the margin: see above
MAX_PROPERTIES = 252
MAX_TRANSACTION_OPS = 100
MAX_TRANSACTION_BYTES = 4 * 1024 * 1024
# Per-operation envelope of a batch request (MIME part headers, URL): a generous estimate.
TRANSACTION_OP_OVERHEAD = 1024
# Clipped first when an entity is too large: free text before identifiers.
CLIP_ORDER = ("PromptPreview", "CompletionPreview", "ErrorMessage", "Url")
# Never clipped: keys, the raw pointer and the join state (clipping them would lose the call).
NEVER_CLIP = frozenset(
    {"PartitionKey", "RowKey", "RawBlob", "RawSha256", "Fragments", "Sources"}
    | {"FragmentsZ"}
    | {f"FragmentsZ{i}" for i in range(1, 16)}
)
# Something carrying an entity second, like a row (join state, entity).
WithEntity = TypeVar("WithEntity", bound=tuple[Any, dict[str, Any]])


def utf16_units(s: str) -> int:
    """Azure counts strings in UTF-16 code units: a character past U+FFFF is two."""
    return len(s) if s.isascii() else len(s.encode("utf-16-le", "surrogatepass")) // 2


def clip_utf16(s: str, units: int) -> str:
    """Longest prefix of `s` that fits in `units` UTF-16 code units."""
    if len(s) * 2 <= units or utf16_units(s) <= units:
        return s
    total = 0
    for i, ch in enumerate(s):
        total += 2 if ord(ch) > 0xFFFF else 1
        if total > units:
            return s[:i]
    return s


def value_size(value: Any) -> int:
    """Bytes Azure counts for a property value (Table service data model)."""
    if isinstance(value, EntityProperty):
        if value.edm_type == EdmType.BINARY:
            return 4 + len(value.value)
        value = value.value
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return 4 if -(2**31) <= value < 2**31 else 8
    if isinstance(value, float | datetime):
        return 8
    if isinstance(value, bytes):
        return 4 + len(value)
    if isinstance(value, str):
        return 4 + 2 * utf16_units(value)
    return 16


def entity_size(entity: dict[str, Any]) -> int:
    """4 bytes + keys as UTF-16 + for each property 8 bytes + its name as UTF-16 + its value."""
    # The loop sizes the keys as string properties; Azure counts only their characters.
    size = 4 - (8 + 2 * len("PartitionKey") + 4) - (8 + 2 * len("RowKey") + 4)
    for name, value in entity.items():
        # Strings and small ints are most of a row: sized inline (this runs for every row).
        t = type(value)
        if t is str:
            n = 4 + 2 * (len(value) if value.isascii() else utf16_units(value))
        elif t is int and -(2**31) <= value < 2**31:
            n = 4
        else:
            n = value_size(value)
        size += 8 + 2 * len(name) + n
    return size


def _surely_fits(entity: dict[str, Any]) -> bool:
    """True when even counting every character as two UTF-16 units the entity is within the
    limits: one cheap pass that settles almost every row."""
    bound = 4
    for name, value in entity.items():
        t = type(value)
        if t is str:
            n = len(value)
            if n * 2 > MAX_STRING_UNITS:
                return False  # may hold more than 32K units: counted exactly below
            bound += 2 * len(name) + 12 + 4 * n
        elif t is EntityProperty and type(value.value) is bytes:
            bound += 2 * len(name) + 12 + len(value.value)
        else:
            bound += 2 * len(name) + 24
    return bound <= MAX_ENTITY_BYTES


def fit(entity: dict[str, Any], clipped_before: list[str] | None = None) -> dict[str, Any]:
    """The entity within Azure's limits; clipped properties (these and any cut earlier, at
    parse) are listed in `Clipped`."""
    clipped: list[str] = list(clipped_before or [])
    if len(entity) - 2 <= MAX_PROPERTIES and _surely_fits(entity):
        if clipped:
            entity["Clipped"] = ",".join(clipped)
        return entity
    _clip_long_strings(entity, clipped)
    if len(entity) - 2 > MAX_PROPERTIES:
        # Keep the protected ones, and room for `Clipped` itself.
        room = MAX_PROPERTIES - 1 - sum(1 for k in entity if k in NEVER_CLIP) + 2
        extra = [k for k in entity if k not in NEVER_CLIP][room:]
        for name in extra:
            del entity[name]
        clipped += extra
    _clip_to_size(entity, clipped)
    if clipped:
        entity["Clipped"] = ",".join(clipped)
    return entity


def _clip_long_strings(entity: dict[str, Any], clipped: list[str]) -> None:
    """Clip every string over MAX_STRING_UNITS (but the never-clipped), noting it in `clipped`."""
    for name in [
        n
        for n, v in entity.items()
        if type(v) is str and len(v) * 2 > MAX_STRING_UNITS and n not in NEVER_CLIP
    ]:
        short = clip_utf16(entity[name], MAX_STRING_UNITS)
        if short != entity[name]:
            entity[name] = short
            clipped.append(name)


def _clip_to_size(entity: dict[str, Any], clipped: list[str]) -> None:
    """Clip strings until the entity is within MAX_ENTITY_BYTES: CLIP_ORDER first, then the
    longest, noting each in `clipped`."""
    size = entity_size(entity)
    if size <= MAX_ENTITY_BYTES:
        return
    order = [n for n in CLIP_ORDER if isinstance(entity.get(n), str)] + sorted(
        (
            n
            for n, v in entity.items()
            if isinstance(v, str) and n not in NEVER_CLIP and n not in CLIP_ORDER
        ),
        key=lambda n: -len(entity[n]),
    )
    for name in order:
        if size <= MAX_ENTITY_BYTES:
            break
        value = entity[name]
        excess = (size - MAX_ENTITY_BYTES) // 2 + 64
        keep = max(0, utf16_units(value) - excess)
        # A sealed preview cut would open under no key: it goes whole.
        entity[name] = "" if value.startswith(SEALED_TEXT) else clip_utf16(value, keep)
        if name not in clipped:
            clipped.append(name)
        size = entity_size(entity)


# Beyond a typed value itself: its `"Name@odata.type":"Edm.Int64",` annotation.
_ANNOTATION = 40


def wire_size(entity: dict[str, Any]) -> int:
    """Bytes of the entity as the SDK sends it in a transaction, an upper bound: JSON written
    by `json.dumps` (ASCII only: a non-ASCII character is a 6-byte `\\uXXXX` escape per
    UTF-16 unit, three times what `entity_size` counts for it), typed values annotated, binary
    as base64, and the keys once more in an update's URL (percent-encoded UTF-8). The 4 MiB
    of a transaction are these bytes, not the entities' sizes."""
    size = 2 + 12 * (len(entity.get("PartitionKey", "")) + len(entity.get("RowKey", "")))
    for name, value in entity.items():
        size += len(name) + 4
        if type(value) is str:
            size += len(encode_basestring_ascii(value))
            continue
        size += len(name) + _ANNOTATION
        if isinstance(value, EntityProperty):
            value = value.value
        if isinstance(value, bytes):
            size += 4 * (len(value) + 2) // 3 + 2
        elif isinstance(value, str):
            size += len(encode_basestring_ascii(value))
        else:
            size += 40  # numbers, booleans, times and GUIDs as text
    return size


def transactions(items: Iterable[WithEntity]) -> Iterator[list[WithEntity]]:
    """`items` in order, cut into transactions of at most MAX_TRANSACTION_OPS entities and
    MAX_TRANSACTION_BYTES (the entities as sent or as Azure counts them, whichever is more,
    and each operation's envelope)."""
    chunk: list[WithEntity] = []
    size = 0
    for item in items:
        # As sent, and never less than Azure's own count of the entity (the 4 MiB were
        # sized by it before: ASCII rows keep their transactions).
        n = max(wire_size(item[1]), entity_size(item[1])) + TRANSACTION_OP_OVERHEAD
        if chunk and (len(chunk) >= MAX_TRANSACTION_OPS or size + n > MAX_TRANSACTION_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        yield chunk

"""Reading values from untrusted JSON: a field as text, a whole number, a flag, an object.

Every log source and body reader goes through these, so a sender's `"12"`, `12.0`, `"²"`,
`1e30` or an object sent as a JSON string is read the same way everywhere.
"""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.common import safejson


def string(value: Any) -> str | None:
    """`value` when it is a non-empty string (a field that is text or nothing, never a number)."""
    return value if isinstance(value, str) and value else None


def text(flat: dict[str, Any], *names: str) -> str | None:
    """First non-empty value among `names` as a string (numbers are accepted and converted)."""
    for name in names:
        value = flat.get(name)
        if value is None:
            continue
        if isinstance(value, str):
            if value:
                return value
        elif isinstance(value, bool):
            return "true" if value else "false"
        elif isinstance(value, int | float):
            return str(value)
    return None


def integer(flat: dict[str, Any], *names: str) -> int | None:
    """First value among `names` that is a whole number (numeric strings too, as policies send)."""
    for name in names:
        value = flat.get(name)
        if value is None:
            continue  # absent: most fields of most records
        value = as_int(value)
        if value is not None:
            return value
    return None


# Every whole number we read is a count, a size, a duration or a status: never negative, and
# stored as Edm.Int64. Anything else (orjson reads 1e30 as a float) is not a fact we can keep.
_MAX_INT64 = 2**63 - 1


def as_int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float):
        value = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        s = value.strip()
        # isascii: "²" and "٣" are digits to str.isdigit, but not to int().
        value = int(s) if s.isascii() and s.isdigit() and len(s) < 20 else None
    if isinstance(value, int) and 0 <= value <= _MAX_INT64:
        return value
    return None


def boolean(flat: dict[str, Any], *names: str) -> bool | None:
    for name in names:
        value = flat.get(name)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    return None


def json_object(value: Any) -> dict[str, Any] | None:
    """`value` as a JSON object: itself, or decoded when a sender put the object in a string.

    Azure resource logs may send `properties` as a JSON string, and policies do the same with
    headers; everything that reads such a field goes through here (depth-bounded, safejson).
    """
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = safejson.loads(value)
        except orjson.JSONDecodeError:
            return None
    return value if isinstance(value, dict) else None


def mapping(flat: dict[str, Any], name: str) -> dict[str, Any] | None:
    return json_object(flat.get(name))

"""Event Hub message bodies → log records, and case-tolerant field lookup in a record.

Shapes (formats.md §0): a diagnostic setting sends `{"records": [...]}`; a log-to-eventhub
policy sends whatever string it built (a bare object, or an array of objects).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.common import heap, safejson
from pipeline.common.values import json_object

_BOM = b"\xef\xbb\xbf"


class EnvelopeError(ValueError):
    """The event body is not a shape we can read; the message says why."""


class EnvelopeRefused(EnvelopeError):
    """JSON refused as a whole (two lists of records): kept as received, since decoding it
    again keeps one of the lists only."""


@dataclass(frozen=True, slots=True)
class Envelope:
    records: list[Any]
    # True when the body was a diagnostic-settings `{"records": [...]}` envelope.
    enveloped: bool
    # Indexes of the records nested deeper than safejson.MAX_DEPTH (kept as JSON text there).
    nested: frozenset[int] = frozenset()


def open_envelope(body: bytes, max_records: int | None = None) -> Envelope:
    """Decode an event body into its records. Raises EnvelopeError with a readable reason.
    Past `max_records` (MAX_RECORDS_PER_EVENT: more than APIM writes to an event) ingest
    does not read the records one by one, and they are not bounded here either."""
    data = body[3:] if body.startswith(_BOM) else body
    if not data.strip():
        raise EnvelopeError("empty event body")
    with heap.collector_paused():
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            doc = _without_lone_surrogates(data)
            if doc is None:
                # orjson's messages name a position, never the content.
                codec = _wide_json(data)
                if codec is not None:
                    raise EnvelopeError(
                        f"event body is JSON in {codec.upper()}, not UTF-8 (RFC 8259 section 8.1)"
                    ) from None
                raise EnvelopeError(f"event body is not valid JSON ({exc})") from None
        if isinstance(doc, dict):
            records = _records_member(doc, data)
            enveloped = records is not None
            if records is None:
                records = [doc]
        elif isinstance(doc, list):
            records, enveloped = doc, False
        else:
            kind = type(doc).__name__
            raise EnvelopeError(f"event body is JSON {kind}, expected an object or array")
        too_many = max_records is not None and len(records) > max_records
        if too_many or not safejson.may_be_deep(data):
            nested: frozenset[int] = frozenset()  # too many to read (ingest refuses the event)
        else:
            nested = frozenset(i for i, r in enumerate(records) if safejson.bound(r))
    return Envelope(records, enveloped, nested)


def _wide_json(data: bytes) -> str | None:
    """The codec of JSON that a sender wrote in UTF-16 or UTF-32 (refused: it names why),
    None when the body is no such JSON either."""
    wide = safejson.wide_encoding(data)
    if wide is None:
        return None
    try:
        orjson.loads(data[wide[0] :].decode(wide[1]))
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        return None
    return wide[1]


def _without_lone_surrogates(data: bytes) -> Any:
    """The event decoded with its lone surrogate escapes (valid JSON, refused by orjson) read
    as the replacement character, so that one such value does not dead-letter every call of
    the event; None when that is not why it failed."""
    try:
        fixed = safejson.without_lone_surrogates(data.decode())
        return orjson.loads(fixed) if fixed is not None else None
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        return None


def _records_member(doc: dict[str, Any], data: bytes) -> list[Any] | None:
    """The envelope's list of records. Two of them (`records` and `Records`, or one key twice,
    of which a decoder keeps the last) would leave one list unread and unarchived, without a
    trace: the event is refused whole instead (a dead letter with its bytes)."""
    found = [(k, v) for k, v in doc.items() if k.lower() == "records" and isinstance(v, list)]
    if len(found) > 1 or (found and _repeats_key(data, found[0][0])):
        raise EnvelopeRefused("event holds more than one records list")
    return found[0][1] if found else None


def _repeats_key(data: bytes, key: str) -> bool:
    """True when the top-level object names `key` (its `records`) more than once: a decoder
    keeps the last. The bytes are counted first (a fraction of a millisecond a MB): a client
    writes no keys in an event (what it sends is logged inside strings, escaped), so a second
    is rare, and then the event is decoded once more with each `"records"` renamed apart, in
    place (a number as long: the JSON stays the same shape). A duplicate spelled with
    escapes (`rec\\u006frds`) is not seen: the event is read as its decoder reads it."""
    needle = b'"' + key.encode() + b'"'
    count = data.count(needle)
    if count < 2:
        return False
    width = len(key)  # never short of digits: a 1 MB event holds far fewer than 10^7 keys
    names = iter(range(count))
    marked = re.sub(re.escape(needle), lambda m: b'"%0*d"' % (width, next(names)), data)
    try:
        doc = orjson.loads(marked)
    except orjson.JSONDecodeError:
        # Read as the event was (lone surrogates); one that now reads otherwise is refused.
        doc = _without_lone_surrogates(marked)
        if not isinstance(doc, dict):
            return True
    lists = [v for k, v in doc.items() if k.isdigit() and isinstance(v, list)]
    return len(lists) > 1


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """Lower-cased view of a record: top-level fields win over `properties` (formats.md §0.2).

    `properties` may be an object or, in some Azure resource logs, a JSON string.
    """
    props = None
    for key, value in record.items():
        if key.lower() == "properties":
            props = value
    props = json_object(props)
    flat = {key.lower(): value for key, value in props.items()} if props is not None else {}
    for key, value in record.items():
        lk = key.lower()
        if lk != "properties":
            flat[lk] = value
    return flat


def category_of(flat: dict[str, Any]) -> str | None:
    """The diagnostic category (`GatewayLogs`, `GatewayLlmLogs`, ...) or None."""
    value = flat.get("category")
    if isinstance(value, str) and value:
        return value
    op = flat.get("operationname")
    # Some exporters drop `category` but keep `operationName: Microsoft.ApiManagement/<cat>`.
    if isinstance(op, str) and op.lower().startswith("microsoft.apimanagement/"):
        return op.split("/", 1)[1]
    return None

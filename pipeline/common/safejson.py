"""JSON decoding with a bound on nesting: every document we walk is at most MAX_DEPTH deep.

A client controls the bodies APIM logs, and any sender on the hub controls a whole event, so
a document can be nested as deep as the decoder allows (orjson: 1,024 levels). Our walks
(redaction, previews, token estimation) recurse, and orjson re-serialises only 254 levels: a
deep document must not reach them. So, after decoding, a container deeper than MAX_DEPTH is
replaced by its JSON text (a string: kept, redacted and archived as text, never walked), or,
when even that cannot be produced (deeper than MAX_DEPTH + 254), by NOT_KEPT. Callers learn
that this happened through `watch()`, and the row says so (`Clipped` holds `Nesting`).

The cost is linear: the walk visits each container once and stops descending at MAX_DEPTH;
a text with fewer brackets than MAX_DEPTH cannot be too deep and is not walked at all.

Decoding runs with the cyclic collector paused (`heap.collector_paused`): a document of
containers (a sender's `[[[[...]]]]`, two bytes a list) makes the decoder allocate one tracked
object per two bytes, which the collector would traverse again and again. No object made
while decoding can be garbage before the decode ends, and the deep subtrees that `bound`
replaces are freed by their reference counts before the collector resumes.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from pipeline.common import heap

# Real request/response bodies nest about 10 levels (tool schemas a few more); 64 leaves room.
MAX_DEPTH = 64
NOT_KEPT = f"[not kept: JSON nested deeper than {MAX_DEPTH + 254} levels]"

JSONDecodeError = orjson.JSONDecodeError

_local = threading.local()


class Watch:
    """How many containers were replaced by their text while the watch was open."""

    __slots__ = ("pruned",)

    def __init__(self) -> None:
        self.pruned = 0


@contextmanager
def watch() -> Iterator[Watch]:
    """Count the containers `loads` and `bound` keep as text in this block (this thread)."""
    stack: list[Watch] = getattr(_local, "stack", None) or []
    _local.stack = stack
    w = Watch()
    stack.append(w)
    try:
        yield w
    finally:
        stack.pop()


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """`orjson.loads(data)` with containers deeper than MAX_DEPTH kept as their JSON text.
    Raises JSONDecodeError like orjson (a document deeper than 1,024 levels included)."""
    with heap.collector_paused():
        doc = orjson.loads(data)
        if isinstance(doc, dict | list) and may_be_deep(data):
            bound(doc)
    return doc


CLOSERS = {"{": "}", "[": "]"}  # what closes each container


def cut_short(text: str) -> bool:
    """True for text that opens an object or array and does not end by closing one: not JSON
    whatever lies between (a body cut by the gateway). Checked before decoding such text,
    whose error alone costs more than the repair of a short cut body."""
    closer = CLOSERS.get(text.lstrip()[:1])
    return closer is not None and text.rstrip()[-1:] != closer


# A `\\uXXXX` escape of a surrogate that is not half of a pair. JSON's grammar allows it
# (RFC 8259 §8.2), orjson refuses it, and a client can put one in its request body to make
# the body unreadable (no prompt preview, no token estimate). Escaped backslashes and whole
# pairs are matched first so that they are left alone; one pass, linear.
_SURROGATE_ESCAPE = re.compile(
    r"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|\\u[dD][89a-fA-F][0-9a-fA-F]{2}"
)
_MAYBE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def without_lone_surrogates(text: str) -> str | None:
    """`text` with each lone surrogate escape replaced by `\\ufffd` (the replacement
    character, as a decoder replaces bad input), or None when it holds none."""
    if not _MAYBE_SURROGATE.search(text):
        return None
    fixed = _SURROGATE_ESCAPE.sub(_keep_or_replace, text)
    return fixed if fixed != text else None


def _keep_or_replace(m: re.Match[str]) -> str:
    return m.group() if len(m.group()) != 6 else "\\ufffd"


def may_be_deep(data: bytes | bytearray | memoryview | str) -> bool:
    if isinstance(data, str):
        return data.count("[") + data.count("{") > MAX_DEPTH
    raw = bytes(data) if isinstance(data, memoryview) else data
    return raw.count(b"[") + raw.count(b"{") > MAX_DEPTH


_CONTAINERS = frozenset((dict, list))


def bound(doc: Any) -> int:
    """Replace, in place, the containers of `doc` deeper than MAX_DEPTH by their JSON text.
    Returns how many were replaced. Iterative: no recursion, whatever the depth."""
    if not isinstance(doc, dict | list):
        return 0
    replaced = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        values = node.values() if isinstance(node, dict) else node
        # A large node holding no non-empty container is passed over in C (filter, map,
        # isdisjoint: no Python step per value): most hold scalars, and a sender's
        # `[[],[],…]` holds empty lists. orjson makes exact dicts and lists only.
        if len(values) > 8 and _CONTAINERS.isdisjoint(map(type, filter(None, values))):
            continue
        if depth < MAX_DEPTH:
            for value in filter(None, values):
                if isinstance(value, dict | list):
                    stack.append((value, depth + 1))
            continue
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(value, dict | list) and value:
                node[key] = _as_text(value)
                replaced += 1
    if replaced:
        for w in getattr(_local, "stack", ()):
            w.pruned += replaced
    return replaced


def _as_text(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return NOT_KEPT


def depth_ok(doc: Any, limit: int = MAX_DEPTH) -> bool:
    """True when `doc` nests at most `limit` levels (stops at the first deeper container)."""
    if not isinstance(doc, dict | list):
        return True
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        for value in node.values() if isinstance(node, dict) else node:
            if isinstance(value, dict | list) and value:
                if depth >= limit:
                    return False
                stack.append((value, depth + 1))
    return True


# JSON in the encodings RFC 4627 §3 allowed (RFC 8259 §8.1 now says UTF-8 between systems):
# byte order marks, UTF-32's before UTF-16's (whose little-endian mark begins UTF-32's).
_MARKS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def wide_encoding(data: bytes) -> tuple[int, str] | None:
    """(length of its byte order mark, codec) of JSON text in UTF-16 or UTF-32, told by its
    mark or, without one, by where the NULs of its first ASCII characters fall (RFC 4627 §3);
    None for anything else (UTF-8 JSON has no NUL there)."""
    for mark, codec in _MARKS:
        if data.startswith(mark):
            return len(mark), codec
    head = data[:4]
    if len(head) < 4 or 0 not in head:
        return None
    zero = tuple(b == 0 for b in head)
    codec = {
        (False, True, True, True): "utf-32-le",
        (True, True, True, False): "utf-32-be",
        (False, True, False, True): "utf-16-le",
        (True, False, True, False): "utf-16-be",
    }.get(zero)
    return (0, codec) if codec else None

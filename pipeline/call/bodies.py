"""Logged request/response bodies → parsed documents, including bodies cut short.

APIM logs only the first N bytes of a body (≤ 8,192 in diagnostics, 200 KB for
log-to-eventhub) with no marker (formats.md §1.4, §3.1): the JSON just stops, sometimes inside
a string or a multi-byte character. `parse_body` salvages every complete field of such a
prefix by closing what is open, so `model`, `usage` or the start of the answer survive when
they came before the cut. Values that may have been cut (a number at the very end) are
dropped rather than guessed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from pipeline.common import safejson

BodyKind = Literal["absent", "json", "sse", "text"]


@dataclass(slots=True)
class Body:
    kind: BodyKind
    doc: Any = None
    truncated: bool = False
    # The body as logged (always set for "sse" and "text").
    text: str | None = None
    # UTF-8 size of what was logged, to compare with the size the gateway reports.
    logged_bytes: int = 0
    # The string value the cut fell inside, as the repair closed it: kept in `doc` for the
    # previews, but no fact (`model` cut to `gpt-4o` of `gpt-4o-mini`, a response id cut in
    # half): `whole` says which values were not.
    cut_tail: str | None = None

    def whole(self, value: str | None) -> str | None:
        """`value`, read from this body, unless it is the string the cut fell inside."""
        return None if value is not None and value == self.cut_tail else value


ABSENT = Body("absent")

_SSE_START = re.compile(r"\A\s*(?:data|event|id|retry)\s*:|\A\s*:", re.ASCII)


def parse_body(raw: Any) -> Body:
    """Interpret one logged body value (normally a string holding JSON or SSE text)."""
    body = read_whole(raw)
    return body if isinstance(body, Body) else salvage(body)


@dataclass(frozen=True, slots=True)
class Unread:
    """A body that is no whole JSON document nor a stream: `salvage` repairs it, or reads it
    as text. Kept apart so that a caller choosing between two bodies repairs one only."""

    raw: str  # as logged, without leading space or byte order mark
    fixed: str | None  # with lone surrogate escapes replaced, when it held any
    size: int


def read_whole(raw: Any) -> Body | Unread:
    """The body when it is absent, a whole JSON document or a stream; else what `salvage`
    needs to read the rest (a cut document, or text)."""
    if raw is None:
        return ABSENT
    if isinstance(raw, dict | list):
        # Some exporters hand the body over already decoded.
        return Body("json", raw)
    if not isinstance(raw, str):
        return ABSENT
    size = len(raw.encode("utf-8", "surrogatepass"))
    # A byte order mark before the body: decoders that serve the call skip it (RFC 8259 §8.1
    # lets them), so it must not make the body text whose prompt and model go unread.
    raw = raw.lstrip()
    if raw[:1] == "\ufeff":
        raw = raw[1:]
    if not raw.strip():
        return ABSENT
    if _SSE_START.match(raw):
        return Body("sse", None, False, raw, size)
    if not safejson.cut_short(raw):
        try:
            return Body("json", safejson.loads(raw), False, raw, size)
        except orjson.JSONDecodeError:
            pass
    # Valid JSON that orjson refuses for a lone surrogate escape: read with the replacement
    # character in its place, or the body would go unread (and its tokens uncounted).
    fixed = safejson.without_lone_surrogates(raw)
    if fixed is not None:
        with contextlib.suppress(orjson.JSONDecodeError):
            return Body("json", safejson.loads(fixed), False, raw, size)
    return Unread(raw, fixed, size)


def salvage(body: Unread) -> Body:
    """A body `read_whole` could not read: the complete part of a cut document, else text."""
    stripped = (body.fixed or body.raw).lstrip()
    if stripped[:1] in ("{", "["):
        doc, in_string = repair(stripped)
        if doc is not None:
            cut_tail = cut_string(doc) if in_string else None
            return Body("json", doc, True, body.raw, body.size, cut_tail)
    return Body("text", None, False, body.raw, body.size)


# Complete string | unterminated string running to the end | structural char | bare literal.
# A repeated group is possessive (`*+`) or bounded: the regex engine otherwise keeps a step
# back for each repeat, about 120 bytes (a cut string of 10 MB of escapes took 450 MB).
_TOKEN = re.compile(
    r'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
    r'|"[^"\\]*+(?:\\.[^"\\]*+)*+\\?\Z'
    r"|\[\[+|\]\]+"  # runs of brackets: one step for the run, not one per bracket
    r'|(?:\{\s*"[^"\\]*"\s*:\s*){2,1024}+'  # runs of `{"key":` (nested objects), likewise
    r"|[{}\[\]:,]"
    r'|[^\s{}\[\]:,"]+',
    re.DOTALL,
)
_CLOSE = safejson.CLOSERS
_KEY = re.compile(r'"[^"\\]*"')
# orjson decodes at most 1,024 levels: a deeper prefix is cut where it reaches them.
_MAX_DEPTH = 1024
# Trailing pieces of an escape sequence cut by the truncation: "\", "\u", "\u00", ...
_PARTIAL_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?\Z")

# The repair is a state machine over the tokens. Its state is what the innermost open
# container expects next: an object a "key", "colon", "value" or "comma", an array a "value"
# or "comma", the top level a "value". A step returning None ends the repair; _CUT_STRING
# marks a string value the truncation cut (always the last token).
_CUT_STRING = "cut string"
# One step per token: (openers of the open containers, state, token, its match, cut point)
# → (state, cut point). The cut point is where the last complete value or opener ends.
Step = Callable[[list[str], str, str, re.Match[str], int], tuple[str | None, int]]


def repair_truncated(text: str) -> Any | None:
    """The longest valid prefix of a JSON document that was cut off (`repair`)."""
    return repair(text)[0]


def repair(text: str, *, cut_only: bool = False) -> tuple[Any | None, bool]:
    """Parse the longest valid prefix of a JSON document that was cut off.

    Returns the salvaged document, or None when the text is not a JSON prefix at all, and
    whether the cut fell inside a string. Such a string value is kept (closed where it stops:
    previews want it), as the document's last value (`last_value`).
    `cut_only`: None too for a whole document followed by what may hold another (a `{` or a
    `[`: two messages one after the other): no cut, and the rest would go unread.

    Linear in the text: one pass over its tokens; the closing brackets are worked out once,
    from the stack, when the pass ends (every push and pop is followed by a new cut point,
    so the stack then is the stack of the last cut point).
    """
    text = text.rstrip("\ufffd")
    stack: list[str] = []
    state: str | None = "value"
    cut_end = -1
    budget = repair_budget(len(text))
    for m in _TOKEN.finditer(text):
        budget -= 1
        if budget < 0:
            break  # token-dense text past the budget: keep what is complete so far
        tok = m.group()
        state, cut_end = _STEPS.get(tok[0], _literal)(stack, state, tok, m, cut_end)
        if state is None:
            break
    if state == _CUT_STRING:
        # Keep what arrived of the string (it runs to the end of the text), closed.
        partial = _PARTIAL_ESCAPE.sub("", text[cut_end:])
        return _finish(text[:cut_end] + partial + '"', _closing(stack)), True
    if cut_end == -1:
        return None, False
    if cut_only and state is None and not stack and _may_hold_more(text, cut_end):
        return None, False
    return _finish(text[:cut_end], _closing(stack)), False


def last_value(doc: Any) -> tuple[Any, Any] | None:
    """(container, key) of a document's last value in text order, followed down the last
    members: where `repair` closed the string the cut fell inside. None for an empty one."""
    where = None
    while isinstance(doc, dict | list) and doc:
        key = next(reversed(doc)) if isinstance(doc, dict) else len(doc) - 1
        where, doc = (doc, key), doc[key]
    return where


def cut_string(doc: Any) -> str | None:
    """The string the cut fell inside, in a document `repair` salvaged from inside one."""
    where = last_value(doc)
    value = where[0][where[1]] if where else None
    return value if isinstance(value, str) else None


def _string(
    stack: list[str], state: str, tok: str, m: re.Match[str], cut_end: int
) -> tuple[str | None, int]:
    if len(tok) < 2 or tok[-1] != '"' or _ends_escaped(tok):
        # Cut by the truncation (it runs to the end of the text): a key cut in half loses
        # its pair, a value keeps what arrived.
        return (_CUT_STRING, m.start()) if state == "value" else (None, cut_end)
    if state == "key":
        return "colon", cut_end
    if state == "value":
        return ("comma" if stack else "value"), m.end()
    return None, cut_end


def _open(
    stack: list[str], state: str, tok: str, m: re.Match[str], cut_end: int
) -> tuple[str | None, int]:
    """`{` or `[`; a run of `[`, or of `{"key":`, opens several containers in one step."""
    if len(tok) > 1:
        run = _open_objects if tok[0] == "{" else _open_arrays
        return run(stack, state, tok, m, cut_end)
    if state != "value" or len(stack) >= _MAX_DEPTH:
        return None, cut_end
    stack.append(tok)
    return ("key" if tok == "{" else "value"), m.end()


def _open_objects(
    stack: list[str], state: str, tok: str, m: re.Match[str], cut_end: int
) -> tuple[str | None, int]:
    levels = tok.count("{") - sum(key.count("{") for key in _KEY.findall(tok))
    if state != "value" or levels > _MAX_DEPTH - len(stack):
        return None, cut_end
    stack.extend("{" * levels)
    # Cut point: just after the last opener (its key and colon wait for a value). Keys may
    # hold `{` and never `"`: that opener is the last `{` before the last key's quotes.
    key_start = tok.rfind('"', 0, tok.rfind('"'))
    return "value", m.start() + tok.rfind("{", 0, key_start) + 1


def _open_arrays(
    stack: list[str], state: str, tok: str, m: re.Match[str], cut_end: int
) -> tuple[str | None, int]:
    if state != "value":
        return None, cut_end
    room = _MAX_DEPTH - len(stack)
    stack.extend("[" * min(room, len(tok)))
    if room < len(tok):
        return None, m.start() + room  # deeper than the decoder reads: cut at its limit
    return "value", m.end()


def _close(
    stack: list[str], state: str, tok: str, m: re.Match[str], cut_end: int
) -> tuple[str | None, int]:
    """`}` or `]`, or a run of `]`."""
    if len(tok) > 1:
        return _close_arrays(stack, tok, m, cut_end)
    if not stack or _CLOSE[stack[-1]] != tok or state == "colon":
        return None, cut_end
    stack.pop()
    # A closed top-level value is the whole document: nothing after it belongs to it.
    return ("comma" if stack else None), m.end()


def _close_arrays(
    stack: list[str], tok: str, m: re.Match[str], cut_end: int
) -> tuple[str | None, int]:
    # As many arrays close as are open on top; a mismatch ends the repair.
    k = 0
    for opener in reversed(stack):
        if k == len(tok) or opener != "[":
            break
        k += 1
    if k:
        del stack[len(stack) - k :]
        cut_end = m.start() + k
    return ("comma" if k == len(tok) and stack else None), cut_end


def _colon(
    stack: list[str], state: str, tok: str, m: re.Match[str], cut_end: int
) -> tuple[str | None, int]:
    return ("value" if state == "colon" else None), cut_end


def _comma(
    stack: list[str], state: str, tok: str, m: re.Match[str], cut_end: int
) -> tuple[str | None, int]:
    if state != "comma":
        return None, cut_end
    return ("key" if stack[-1] == "{" else "value"), cut_end


def _literal(
    stack: list[str], state: str, tok: str, m: re.Match[str], cut_end: int
) -> tuple[str | None, int]:
    if state != "value" or m.end() == len(m.string):
        return None, cut_end  # a literal at the very end may be cut (`12` of `1234`): drop it
    return ("comma" if stack else "value"), m.end()


# The step of a token, by its first character (anything else is a bare literal).
_STEPS: dict[str, Step] = {
    '"': _string,
    "{": _open,
    "[": _open,
    "}": _close,
    "]": _close,
    ":": _colon,
    ",": _comma,
}


def repair_budget(length: int) -> int:
    """Tokens the repair reads: real bodies hold long strings (well over 16 bytes a token);
    text of nothing but brackets and tiny keys, crafted to cost a Python step per byte, is
    read up to this budget and cut there like any truncation (BodyTruncated says so)."""
    return max(2048, length // 16)


def _may_hold_more(text: str, end: int) -> bool:
    # Padding after a whole document (NULs, a byte order mark, blanks) hides nothing.
    return text.find("{", end) >= 0 or text.find("[", end) >= 0


def _closing(stack: list[str]) -> str:
    return "".join(_CLOSE[opener] for opener in reversed(stack))


def _ends_escaped(tok: str) -> bool:
    # `"abc\"` is unterminated: count the backslashes before the final quote.
    n = 0
    i = len(tok) - 2
    while i >= 0 and tok[i] == "\\":
        n += 1
        i -= 1
    return n % 2 == 1


def _finish(candidate: str, close: str) -> Any | None:
    try:
        return safejson.loads(candidate + close)
    except orjson.JSONDecodeError:
        return None  # deeper than the decoder allows, or not JSON after all

"""Logged request/response bodies → parsed documents, including bodies cut short.

APIM logs only the first N bytes of a body (≤ 8,192 in diagnostics, 200 KB for
log-to-eventhub) with no marker (formats.md §1.4, §3.1): the JSON just stops, sometimes inside
a string or a multi-byte character. `parse_body` salvages every complete field of such a
prefix by closing what is open, so `model`, `usage` or the start of the answer survive when
they came before the cut. Values that may have been cut (a number at the very end) are
dropped rather than guessed.
"""

from __future__ import annotations

import re
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


ABSENT = Body("absent")

_SSE_START = re.compile(r"\A\s*(?:data|event|id|retry)\s*:|\A\s*:", re.ASCII)


def parse_body(raw: Any) -> Body:
    """Interpret one logged body value (normally a string holding JSON or SSE text)."""
    if raw is None:
        return ABSENT
    if isinstance(raw, dict | list):
        # Some exporters hand the body over already decoded.
        return Body("json", raw)
    if not isinstance(raw, str):
        return ABSENT
    if not raw.strip():
        return ABSENT
    size = len(raw.encode("utf-8", "surrogatepass"))
    if _SSE_START.match(raw):
        return Body("sse", None, False, raw, size)
    try:
        return Body("json", safejson.loads(raw), False, raw, size)
    except orjson.JSONDecodeError:
        pass
    stripped = raw.lstrip()
    if stripped[:1] in ("{", "["):
        doc = repair_truncated(stripped)
        if doc is not None:
            return Body("json", doc, True, raw, size)
    return Body("text", None, False, raw, size)


# Complete string | unterminated string running to the end | structural char | bare literal.
_TOKEN = re.compile(
    r'"[^"\\]*(?:\\.[^"\\]*)*"'
    r'|"[^"\\]*(?:\\.[^"\\]*)*\\?\Z'
    r"|\[\[+|\]\]+"  # runs of brackets: one step for the run, not one per bracket
    r'|(?:\{\s*"[^"\\]*"\s*:\s*){2,}'  # runs of `{"key":` (nested objects), likewise
    r"|[{}\[\]:,]"
    r'|[^\s{}\[\]:,"]+',
    re.DOTALL,
)
_CLOSE = {"{": "}", "[": "]"}
_KEY = re.compile(r'"[^"\\]*"')
# orjson decodes at most 1,024 levels: a deeper prefix is cut where it reaches them.
_MAX_DEPTH = 1024
# Trailing pieces of an escape sequence cut by the truncation: "\", "\u", "\u00", ...
_PARTIAL_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?\Z")


def repair_truncated(text: str) -> Any | None:
    """Parse the longest valid prefix of a JSON document that was cut off.

    Returns the salvaged document, or None when the text is not a JSON prefix at all.
    A string value cut in the middle is kept (closed where it stops): previews want it.

    Linear in the text: one pass over its tokens; the closing brackets are worked out once,
    from the stack, when the pass ends (every push and pop is followed by a new cut point,
    so the stack then is the stack of the last cut point).
    """
    text = text.rstrip("\ufffd")
    # stack of [opener, state]; object states: key, colon, value, comma; array: value, comma
    stack: list[list[str]] = []
    cut_end = -1
    budget = repair_budget(len(text))

    def after_value() -> None:
        if stack:
            stack[-1][1] = "comma"

    for m in _TOKEN.finditer(text):
        budget -= 1
        if budget < 0:
            break  # token-dense text past the budget: keep what is complete so far
        tok = m.group()
        ch = tok[0]
        state = stack[-1][1] if stack else "value"
        if ch == "{" and len(tok) > 1:
            levels = tok.count("{") - sum(key.count("{") for key in _KEY.findall(tok))
            room = _MAX_DEPTH - len(stack)
            if state != "value" or levels > room:
                break
            stack.extend([["{", "value"] for _ in range(levels)])
            # Cut point: just after the last `{` (its key and colon wait for a value).
            cut_end = m.start() + tok.rfind("{") + 1
            continue
        if len(tok) > 1 and ch in "[]":
            if ch == "[":
                if state != "value":
                    break
                room = _MAX_DEPTH - len(stack)
                stack.extend([["[", "value"] for _ in range(min(room, len(tok)))])
                if room < len(tok):
                    cut_end = m.start() + room
                    break
                cut_end = m.end()
                continue
            # a run of `]`: as many frames as are arrays close; a mismatch ends the repair
            k = 0
            for frame in reversed(stack):
                if k == len(tok) or frame[0] != "[":
                    break
                k += 1
            if k:
                del stack[len(stack) - k :]
                after_value()
                cut_end = m.start() + k
            if k < len(tok) or not stack:
                break
            continue
        if ch == "{" or ch == "[":
            if state != "value" or len(stack) >= _MAX_DEPTH:
                break
            stack.append([ch, "key" if ch == "{" else "value"])
            cut_end = m.end()
        elif ch == "}" or ch == "]":
            if not stack or _CLOSE[stack[-1][0]] != ch or state in ("colon",):
                break
            stack.pop()
            after_value()
            cut_end = m.end()
            if not stack:
                break
        elif ch == ":":
            if state != "colon":
                break
            stack[-1][1] = "value"
        elif ch == ",":
            if state != "comma":
                break
            stack[-1][1] = "key" if stack[-1][0] == "{" else "value"
        elif ch == '"':
            complete = len(tok) >= 2 and tok.endswith('"') and not _ends_escaped(tok)
            if state == "key":
                if not complete:
                    break  # a key cut in half: the pair is lost
                stack[-1][1] = "colon"
            elif state == "value":
                if complete:
                    after_value()
                    cut_end = m.end()
                else:
                    # A string value cut by the truncation: keep what arrived.
                    partial = _PARTIAL_ESCAPE.sub("", tok)
                    return _finish(text[: m.start()] + partial + '"', _closing(stack))
            else:
                break
        else:
            if state != "value":
                break
            if m.end() == len(text):
                break  # a literal at the very end may be cut (`12` of `1234`): drop it
            after_value()
            cut_end = m.end()
    if cut_end == -1:
        return None
    return _finish(text[:cut_end], _closing(stack))


def repair_budget(length: int) -> int:
    """Tokens the repair reads: real bodies hold long strings (well over 16 bytes a token);
    text of nothing but brackets and tiny keys, crafted to cost a Python step per byte, is
    read up to this budget and cut there like any truncation (BodyTruncated says so)."""
    return max(2048, length // 16)


def _closing(stack: list[list[str]]) -> str:
    return "".join(_CLOSE[frame[0]] for frame in reversed(stack))


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

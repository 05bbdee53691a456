"""Plain-text tables for the terminal (no dependencies)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

# Names in the tables come from what clients and senders wrote (deployments, products, users,
# previews): a terminal must not act on them, nor a spreadsheet evaluate them.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
# Characters that are not seen but act: format characters (Unicode category Cf: bidi
# overrides such as U+202E reorder what follows, zero-width ones make two names that look
# the same differ) and the line and paragraph separators (Zl, Zp). Listed, not computed
# from unicodedata at import (a scan of every code point costs 0.15 s per command);
# tests/test_chargeback.py checks the list against the running Python's Unicode database.
INVISIBLE = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
_CONTROL = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{INVISIBLE}]")


def spreadsheet_text(value: Any) -> Any:
    """A CSV cell a spreadsheet opens as text (one starting like a formula is quoted) and a
    terminal shows as text (CSV goes to standard output too: control characters escaped)."""
    if isinstance(value, str):
        if value.startswith(_FORMULA):
            value = "'" + value
        return terminal_text(value)
    return value


# JSON escapes C0 controls in strings, not DEL or C1 (U+009B is an 8-bit CSI to a terminal),
# nor the invisible characters: escaped here, they read back as the same strings.
_C1 = re.compile(f"[\\x7f-\\x9f{INVISIBLE}]")


def json_text(doc: Any) -> str:
    """`doc` as indented JSON that sends no control or invisible character to a terminal
    (still JSON, the same values once parsed)."""
    text = orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode()
    return _C1.sub(lambda m: _json_escape(ord(m.group())), text)


def _json_escape(code: int) -> str:
    if code < 0x10000:
        return f"\\u{code:04x}"
    high, low = divmod(code - 0x10000, 0x400)  # JSON writes these as a surrogate pair
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


def terminal_text(value: Any) -> Any:
    """Text for the terminal: control characters (escape sequences, line breaks) and
    invisible ones (bidi overrides, zero-width characters) written as escapes, not sent."""
    if isinstance(value, str):
        return _CONTROL.sub(lambda m: visible(m.group()), value)
    return value


def visible(char: str) -> str:
    """A character as the Python escape that names it: `\\x1b`, `\\u202e`, `\\U000e0041`."""
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:,.6f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:,.2f}"
    if hasattr(value, "value") and not isinstance(value, str):  # EntityProperty
        return cell(value.value)
    return terminal_text(str(value))


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], max_width: int = 40) -> str:
    """Fixed-width table; long cells are cut with an ellipsis."""
    body = []
    for row in rows:
        cells = []
        for col in columns:
            text = cell(row.get(col))
            if len(text) > max_width:
                text = text[: max_width - 1] + "…"
            cells.append(text)
        body.append(cells)
    widths = [len(c) for c in columns]
    for cells in body:
        widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out.extend(line(cells) for cells in body)
    return "\n".join(out)

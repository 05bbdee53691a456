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
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def spreadsheet_text(value: Any) -> Any:
    """A CSV cell a spreadsheet opens as text (one starting like a formula is quoted) and a
    terminal shows as text (CSV goes to standard output too: control characters escaped)."""
    if isinstance(value, str):
        if value.startswith(_FORMULA):
            value = "'" + value
        return terminal_text(value)
    return value


# JSON escapes C0 controls in strings, not DEL or C1 (U+009B is an 8-bit CSI to a terminal).
_C1 = re.compile(r"[\x7f-\x9f]")


def json_text(doc: Any) -> str:
    """`doc` as indented JSON that sends no control character to a terminal (still JSON)."""
    text = orjson.dumps(doc, option=orjson.OPT_INDENT_2, default=str).decode()
    return _C1.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def terminal_text(value: Any) -> Any:
    """Text for the terminal: control characters (escape sequences, line breaks) written as
    escapes, not sent."""
    if isinstance(value, str):
        return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    return value


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

"""JSON text read with its string escapes undone, and where each character of that reading is
written: how text that cannot be decoded (a body cut short, a dead letter's bytes, JSON too deep
to walk) is matched by the detectors, and its matches masked where they are written.

`\\u0040` must read as `@`, `\\n` as a line break, `\\ud83d\\ude00` as one character, or an
address or a key written with escapes would pass unseen. The reading is made by `str.replace`
in C (one pass an escape letter) and a regex for `\\uXXXX`; where its characters are written is
worked out only where a detector found something to mask (offsets.py).
"""

from __future__ import annotations

import re

from pipeline.protect.offsets import Offsets

_LETTERS = {'"': '"', "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
# What stands for an escaped backslash while the other escapes are undone: a character the
# text neither holds nor spells (JSON text holds no raw control characters; a text holding
# all of these is read by the walk instead).
_STAND_INS = tuple(map(chr, range(8)))
# `\uXXXX` after the letters are undone: a surrogate pair is one character (a tag, an emoji,
# a maths digit).
_UNICODE = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})"
)
# Every escape, for the walk.
_ESCAPE = re.compile(r'\\["\\/bfnrt]|' + _UNICODE.pattern)


def unescaped_view(s: str) -> tuple[str, Offsets | None]:
    """`s` with its JSON string escapes undone (escapes JSON does not have stay as written),
    and where its characters are in `s` (None when it holds no escape: the view is `s`)."""
    if "\\" not in s:
        return s, None
    stand_in = next(
        (c for c in _STAND_INS if c not in s and f"\\u{ord(c):04x}" not in s), None
    )  # `\u0000` reads as NUL: a stand-in its text spells would be read as a backslash
    if stand_in is None:
        return walk(s)
    view = s.replace("\\\\", stand_in)
    for letter, char in _LETTERS.items():
        view = view.replace("\\" + letter, char)  # the same string back when none is there
    if "\\u" in view:
        view = _UNICODE.sub(_character, view)
    return view.replace(stand_in, "\\"), Offsets(s, _ESCAPE, 1)


def _character(m: re.Match[str]) -> str:
    if m.lastindex == 3:
        return chr(int(m.group(3), 16))
    high, low = int(m.group(1), 16), int(m.group(2), 16)
    return chr(0x10000 + ((high - 0xD800) << 10) + low - 0xDC00)


def walk(s: str) -> tuple[str, Offsets]:
    """The view by one walk over the escapes (how a text that holds every stand-in is
    read), and its offsets."""
    parts: list[str] = []
    pos = 0
    for m in _ESCAPE.finditer(s):
        start, end = m.span()
        parts.append(s[pos:start])
        parts.append(_LETTERS.get(s[end - 1], "\\") if end - start == 2 else _character(m))
        pos = end
    parts.append(s[pos:])
    return "".join(parts), Offsets(s, _ESCAPE, 1)

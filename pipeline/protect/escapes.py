"""JSON text read with its string escapes undone, and where each character of that reading is
written: how text that cannot be decoded (a body cut short, a dead letter's bytes, JSON too deep
to walk) is matched by the detectors, and its matches masked where they are written.

`\\u0040` must read as `@`, `\\n` as a line break, `\\ud83d\\ude00` as one character, or an
address or a key written with escapes would pass unseen. The reading is made by `str.replace`
in C (one pass an escape letter) and a regex for `\\uXXXX`; where its characters are written is
worked out only where a detector found something to mask (`Offsets`), by one walk over the
escapes as far as the last match, keeping nothing but where it stands: one number a character
(as before) made a dead letter of 60 MB of text take 2.8 GB.
"""

from __future__ import annotations

import re

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
        view, offsets = walk(s)
        return view, offsets
    view = s.replace("\\\\", stand_in)
    for letter, char in _LETTERS.items():
        if "\\" + letter in view:
            view = view.replace("\\" + letter, char)
    if "\\u" in view:
        view = _UNICODE.sub(_character, view)
    return view.replace(stand_in, "\\"), Offsets(s)


def _character(m: re.Match[str]) -> str:
    if m.lastindex == 3:
        return chr(int(m.group(3), 16))
    high, low = int(m.group(1), 16), int(m.group(2), 16)
    return chr(0x10000 + ((high - 0xD800) << 10) + low - 0xDC00)


class Offsets:
    """Where each character of a view starts in its text (and, at the view's length, where
    the text ends), for offsets asked in increasing order, as `splice` asks them: one walk
    over the escapes as far as the last offset asked, nothing kept but where it stands (an
    offset asked out of order starts the walk again)."""

    __slots__ = ("_asked", "_delta", "_escapes", "_next", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._restart()

    def _restart(self) -> None:
        self._escapes = _ESCAPE.finditer(self._text)
        self._next = next(self._escapes, None)
        self._delta = 0  # text offset minus view offset, past the escapes walked
        self._asked = 0

    def __call__(self, k: int) -> int:
        if k < self._asked:
            self._restart()
        self._asked = k
        # An escape's own character is where the plain text before it ends: escapes walked
        # while they start before the character asked.
        m, delta, escapes = self._next, self._delta, self._escapes
        while m is not None and (start := m.start()) - delta < k:
            delta += m.end() - start - 1
            m = next(escapes, None)
        self._next, self._delta = m, delta
        return k + delta


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
    return "".join(parts), Offsets(s)

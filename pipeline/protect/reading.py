"""The text as the detectors read it: what a person or a model reads, in the characters the
patterns are written for.

A value can be written so that it reads the same and matches nothing: digits in another
script, a card number pasted from a document with no-break spaces between its groups, an
address with an invisible character in it, or spelled in tag characters that no one sees
but a model reads. The detectors (detectors.py) read a view of the text instead:

- `fold`, one character for one: every decimal digit that is not ASCII (`\\d` matches them;
  Luhn, mod-97 and the anchors count ASCII digits), the full-width forms of what addresses,
  keys and numbers are made of (letters, "@", "+", "-", "."), the hyphens phone numbers are
  typed with, tag characters (U+E0020-E007E, "ASCII smuggling") as the ASCII they spell,
  and, next to a digit, the spaces and dashes word processors put between digit groups
  (no-break, thin, figure, ideographic; en and em dash; the long vowel mark a Japanese input
  method types for a hyphen). The view has the text's length, so a span found in it is the
  span of the text to replace.
- `unhide`: without the characters a reader never sees (Unicode's default-ignorable code
  points: zero-width spaces and joiners, soft hyphen, bidirectional controls, variation
  selectors) and the combining marks drawn on a character (accents, underlines, keycaps),
  with the offsets to map a span found in it back onto the text.

Text holding none of these characters (almost all text, and all ASCII text) is read as it
is, with no copy. Prose full of no-break or ideographic spaces (French, Japanese) is not
copied for them either: they are folded only next to a digit.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

from pipeline.protect.offsets import Offsets

# Full-width U+FF0B... are U+002B... (+, -, .), and the letters and "@".
_FULL_WIDTH = (0xFF0B, 0xFF0D, 0xFF0E, *range(0xFF20, 0xFF3B), *range(0xFF41, 0xFF5B))
_FOLD_EXTRA = {
    **{c: c - 0xFEE0 for c in _FULL_WIDTH},
    **dict.fromkeys((0x2010, 0x2011, 0x2012, 0x2212, 0xFE63), ord("-")),
}
_WIDE_DIGIT = re.compile(r"[^\D\x00-\x7f]")  # a decimal digit that is not ASCII
_FOLD_OTHER = re.compile("[" + "".join(map(chr, sorted(_FOLD_EXTRA))) + "]")

# Tag characters spell ASCII (U+E0041 is "A"): the invisible text a model still reads.
_TAGS = re.compile("[\U000e0020-\U000e007e]")
_TAG_ASCII = {c: c - 0xE0000 for c in range(0xE0020, 0xE007F)}

# Between digit groups: no-break, en quad to hair, narrow no-break, medium mathematical and
# ideographic spaces; en dash, em dash, horizontal bar, and the long vowel mark a Japanese
# input method types for "-" (０９０ー１２３４ー５６７８). Read as " " and "-" next to a digit.
_SEPARATORS = "\u00a0\u2000-\u200a\u202f\u205f\u3000\u2013\u2014\u2015\u30fc\uff70"
_SEPARATOR_BY_DIGIT = re.compile(f"[0-9][{_SEPARATORS}]|[{_SEPARATORS}][0-9]")
_SEPARATOR = re.compile(f"[{_SEPARATORS}]")
_AS_SEPARATOR = {
    **dict.fromkeys([0x00A0, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000], " "),
    **dict.fromkeys([0x2013, 0x2014, 0x2015, 0x30FC, 0xFF70], "-"),
}

# Default_Ignorable_Code_Point (Unicode DerivedCoreProperties.txt) but the tags read above,
# and the combining marks of general use (diacritics, their extensions and supplement, marks
# for symbols such as the keycap U+20E3, half marks). Not the vowel signs of Indic scripts:
# those are letters of their words.
_HIDDEN = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e001f\U000e007f-\U000e0fff"
    "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+"
)

# One hidden or tag character at a time, for `as_written`: between two digits read as a
# space (a separator of digit groups: the digit detectors then see one long run, not a window
# per group), elsewhere as a NUL (no pattern reads it as part of a word or as a space).
# Constant replacements keep `re.sub` off Python callbacks.
_HIDDEN_OR_TAG = re.compile(_HIDDEN.pattern[:-2] + "\U000e0020-\U000e007e]")
_HIDDEN_IN_NUMBER = re.compile(  # class-led (fast to scan for), then the digit before it
    _HIDDEN_OR_TAG.pattern + "(?<=\\d" + _HIDDEN_OR_TAG.pattern + ")(?=\\d)"
)

# Any of the characters above: one scan tells text that reads as it is written (most text,
# and prose in other scripts) from text that must be read through this module.
_SPECIAL = re.compile(
    _WIDE_DIGIT.pattern
    + "|["
    + "".join(map(chr, sorted(_FOLD_EXTRA)))
    + "\U000e0020-\U000e007e"
    + _SEPARATORS
    + _HIDDEN.pattern[1:-2]
    + "]"
)


@functools.cache
def _fold_table() -> str:
    """Every decimal digit that is not ASCII (General Category Nd: what `str.isdecimal` and
    the regex digit class accept) as its ASCII digit, and _FOLD_EXTRA: a string indexed by
    code point, up to the last character folded (str.translate finds each character in it,
    cheaper than a miss in a dict; one past its end is kept). Built on first use, a pass over
    every code point (about 70 ms), paid only by a process that meets such a character."""
    folded = {
        c: 48 + unicodedata.decimal(ch)
        for c in range(0x80, sys.maxunicode + 1)
        if (ch := chr(c)).isdecimal()
    }
    folded.update(_FOLD_EXTRA)
    table = list(map(chr, range(max(folded) + 1)))
    for c, ascii_ in folded.items():
        table[c] = chr(ascii_)
    return "".join(table)


def special(text: str) -> bool:
    """Whether `text` holds any character this module reads differently (O(1) for ASCII
    text, one scan for other text: prose in other scripts is read as it is)."""
    return not text.isascii() and _SPECIAL.search(text) is not None


def needs_fold(text: str) -> bool:
    """Whether `fold` or `spell_tags` may change a `special` text."""
    return (
        _WIDE_DIGIT.search(text) is not None
        or _FOLD_OTHER.search(text) is not None
        or _TAGS.search(text) is not None
        or _SEPARATOR_BY_DIGIT.search(text) is not None
    )


def fold(text: str) -> str:
    """`text` as the built-in detectors read it: the same length, each character above but
    the tag characters as its ASCII twin (str.translate: one pass, about 40 ns a character
    when there is one)."""
    if text.isascii():
        return text
    if _WIDE_DIGIT.search(text) is not None or _FOLD_OTHER.search(text) is not None:
        text = text.translate(_fold_table())
    if _SEPARATOR_BY_DIGIT.search(text) is not None:
        # Only the separators next to a digit would change a match; one pass replaces all.
        text = _SEPARATOR.sub(lambda m: _AS_SEPARATOR[ord(m.group())], text)
    return text


def spell_tags(text: str) -> str:
    """`text` with its tag characters as the ASCII they spell (the same length)."""
    return text.translate(_TAG_ASCII) if _TAGS.search(text) is not None else text


def as_written(text: str) -> str:
    """`text` (a `special` one) as written, for the detectors' first reading: its hidden and
    tag characters, which no one reads as part of a word, as NULs, or spaces between two
    digits (the same length), then folded. A value they border ends there; one they split
    is `hidden_view`'s."""
    if _HIDDEN_OR_TAG.search(text) is not None:
        text = _HIDDEN_OR_TAG.sub("\x00", _HIDDEN_IN_NUMBER.sub(" ", text))
    return fold(text)


def hidden_view(text: str) -> tuple[str, Offsets | None] | None:
    """The second reading of a `special` text: without its hidden characters and with its
    tags spelled (and folded), with where its characters are written when characters were
    taken out; None when it reads as `fold(text)` does. Detectors read both: this one finds a
    value that invisible characters split, the first one a value they only border ("card
    \u200b4111 ..."): taken out, they would join it to the word beside it."""
    hidden = unhide(text)
    view, written = hidden or (text, None)
    if hidden is None and _TAGS.search(view) is None:
        return None
    return fold(spell_tags(view)), written


def unhide(text: str) -> tuple[str, Offsets] | None:
    """`text` without its hidden characters, read in C, and where each of its characters is
    written (offsets.py); None when it has none (O(1) for ASCII)."""
    if text.isascii():
        return None
    view, taken = _HIDDEN.subn("", text)
    return (view, Offsets(text, _HIDDEN, 0)) if taken else None


def visible(text: str) -> str:
    """`text` without its hidden characters, for a test of what it may hold."""
    return _HIDDEN.sub("", text)

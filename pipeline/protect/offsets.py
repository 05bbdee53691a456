"""Where each character of a reading of a text is written, when the reading replaced runs of
it (escapes undone: escapes.py; hidden characters taken out: reading.py): worked out only
where a match is masked, by one walk over those runs, nothing kept per character (one Python
int a character took 2.8 GB of a 60 MB dead letter, an object a hidden character 71 MB of a
1 MB event).
"""

from __future__ import annotations

import re
from collections.abc import Iterable


class Offsets:
    """For a reading of `text` in which each match of `runs` became `kept` characters (1: an
    escape is the character it spells; 0: hidden characters are taken out), the offset in
    `text` of a reading's offset (its end: the text's end). Asked in increasing order, as
    `splice` asks: the walk goes on from where it stands (out of order, it starts again).

    A run that became a character is where it is written; runs taken out just before a
    character are not part of it, so a span of the reading takes those inside it and right
    after it (a combining mark belongs to the character before it), never those before."""

    __slots__ = ("_asked", "_delta", "_kept", "_next", "_runs", "_text", "pattern")

    def __init__(self, text: str, pattern: re.Pattern[str], kept: int) -> None:
        self._text, self.pattern, self._kept = text, pattern, kept
        self._restart()

    def _restart(self) -> None:
        self._runs = self.pattern.finditer(self._text)
        self._next = next(self._runs, None)
        self._delta = 0  # offset in the text minus offset in the reading, past the runs walked
        self._asked = 0

    def __call__(self, k: int) -> int:
        if k < self._asked:
            self._restart()
        self._asked = k
        m, delta, runs, kept = self._next, self._delta, self._runs, self._kept
        while m is not None and (start := m.start()) - delta <= k - kept:
            delta += m.end() - start - kept
            m = next(runs, None)
        self._next, self._delta = m, delta
        return k + delta

    def where(self, offsets: Iterable[int]) -> dict[int, int]:
        """The offset in the text of each of `offsets` (in any order)."""
        return {k: self(k) for k in sorted(set(offsets))}

"""Personal data and secrets in text masked with typed placeholders (`[EMAIL]`, ...) where the
capture policy says so (policy.py): `Redactor` runs the detectors (detectors.py) over their
windows (windows.py) and keeps the leftmost matches; `splice` and `apply_spans` write the
placeholders; `clip_text` cuts redacted text without cutting one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.protect.boundaries import PLACEHOLDER
from pipeline.protect.detectors import DETECTORS, Detector, offset_lower, shorter_valid
from pipeline.protect.reading import as_written, hidden_view, special
from pipeline.protect.windows import (
    digit_runs,
    digit_windows,
    ipv6_windows,
    join_windows,
    near_windows,
)


@dataclass(slots=True)
class Redaction:
    text: str
    counts: Counter[str]


Spans = list[tuple[int, int, str]]  # (start, end, label), left to right, not overlapping
# An empty Counter without `Counter.__init__` (Python code, most of the cost of a one-entry
# Counter): a record can hold a value in each of thousands of strings.
_NEW_COUNTER = Counter.__new__


def splice(
    text: str,
    spans: Spans,
    counts: Counter[str],
    at: Callable[[int], int] | None = None,
    bare: Callable[[int], bool] | None = None,
) -> str:
    """`text` with each span replaced by its typed placeholder, counted into `counts`. With
    `at`, spans are offsets of a view of `text` (escapes.unescaped_view) and `at` maps them
    back onto `text`. With `bare`, a span at an offset it says is outside any JSON string (a
    card number written as a number) becomes a JSON string: the text stays JSON."""
    parts: list[str] = []
    pos = 0
    for start, end, label in spans:
        a, b = (start, end) if at is None else (at(start), at(end))
        parts.append(text[pos:a])
        parts.append(f'"[{label}]"' if bare is not None and bare(a) else f"[{label}]")
        counts[label] += 1
        pos = b
    parts.append(text[pos:])
    return "".join(parts)


def apply_spans(text: str, spans: Spans) -> Redaction:
    """`text` with each span replaced by its typed placeholder."""
    if not spans:
        return Redaction(text, Counter())
    if len(spans) == 1:  # most strings of a record that hold anything: one value
        start, end, label = spans[0]
        counts = _NEW_COUNTER(Counter)
        counts[label] = 1
        return Redaction(f"{text[:start]}[{label}]{text[end:]}", counts)
    counts = Counter()
    return Redaction(splice(text, spans, counts), counts)


class Redactor:
    """Masks personal data and secrets in text with typed placeholders (`[EMAIL]`, ...)."""

    def __init__(self, custom: Sequence[tuple[str, re.Pattern[str]]] = ()) -> None:
        """`custom`: (label, regex) pairs, validated by settings (REDACT_PATTERNS)."""
        self.detectors = (
            *DETECTORS,
            *(Detector(label, compiled, "text") for label, compiled in custom),
        )
        self._builtin = len(DETECTORS)  # detectors from here on are custom ones

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, label) spans, left to right. On overlap the detector
        listed first wins (secrets before numbers)."""
        if len(text) < 6:
            return []
        found = self._find_custom(text)
        # Built-in detectors read the text as a reader does (reading.py): every digit
        # (full-width, Arabic-Indic...) as an ASCII one, and, when it holds characters no
        # one sees or tag characters, a second time without them (fold and spell_tags keep
        # the length: their spans are those of the text they read).
        if not special(text):  # one scan: most text reads as it is written
            self._find_builtin(text, found)
            return _leftmost(found) if found else []
        self._find_builtin(as_written(text), found)
        second = hidden_view(text)
        if second is not None:
            view, written = second
            first = len(found)
            self._find_builtin(view, found)
            if written is not None:
                at = written.where(x for f in found[first:] for x in (f[0], -f[2]))
                for i in range(first, len(found)):
                    start, rank, end, label = found[i]
                    found[i] = (at[start], rank, -at[-end], label)
        return _leftmost(found) if found else []

    def _find_builtin(self, text: str, found: list[tuple[int, int, int, str]]) -> None:
        """Matches of the built-in detectors in `text` (as reading.py gives it), added to
        `found` as (start, rank, -end, label)."""
        n = len(text)
        low: str | None = None
        runs: list[tuple[int, int, int]] | None = None
        for rank, det in enumerate(self.detectors[: self._builtin]):
            scope = det.scope
            if scope == "text":
                # A guard, when listed, must occur (a loop: cheaper than any() per detector).
                for g in det.guards:
                    if g in text:
                        break
                else:
                    if det.guards:
                        continue
                windows: list[tuple[int, int]] = [(0, n)]
            elif scope == "digits":
                if runs is None:
                    runs = digit_runs(text)
                windows = digit_windows(det, text, runs)
            elif det.label == "IP":  # IPv6: anchored on colon pairs, not every colon
                if ":" not in text:
                    continue
                windows = ipv6_windows(det, text)
            else:
                low = low or offset_lower(text)  # once, for the first detector that needs it
                windows = near_windows(low, det.guards, det.before, det.after)
            if windows:
                self._scan_windows(det, rank, text, windows, found)

    def _find_custom(self, text: str) -> list[tuple[int, int, int, str]]:
        """Matches of the custom patterns (REDACT_PATTERNS), on the text as written: their
        authors wrote them for it (a regex digit class matches every digit already)."""
        found: list[tuple[int, int, int, str]] = []
        if self._builtin == len(self.detectors):
            return found  # none configured
        for rank in range(self._builtin, len(self.detectors)):
            self._scan_windows(self.detectors[rank], rank, text, [(0, len(text))], found)
        return found

    def _scan_windows(
        self,
        det: Detector,
        rank: int,
        text: str,
        windows: list[tuple[int, int]],
        found: list[tuple[int, int, int, str]],
    ) -> None:
        """`det`'s matches in `windows` of `text`, added to `found` as (start, rank, -end)."""
        joined = join_windows(text, windows) if det.scope == "digits" and len(windows) > 8 else None
        if det.finder is not None:
            found += [(a, rank, -b, det.label) for a, b in det.finder(text, windows, joined)]
        elif joined is not None:
            self._scan_joined(det, rank, text, windows, joined, found)
        else:
            for lo, hi in windows:
                self._scan(det, rank, text, lo, hi, found, det.word_start)

    @staticmethod
    def _scan(
        det: Detector,
        rank: int,
        text: str,
        lo: int,
        hi: int,
        found: list[tuple[int, int, int, str]],
        word_start: bool,
    ) -> None:
        pos = lo
        search, resolve, validate = det.pattern.search, det.resolve, det.validate
        group, label = det.group, det.label
        while pos < hi:
            m = search(text, pos, hi)
            if m is None:
                return
            start, end = m.span(group)
            if resolve is not None:
                end = resolve(det, text, start, end)
            elif validate is not None and not validate(m.group(group)):
                # Greedy matches run into the next number ("+33 6 12 34 56 78 020 ...");
                # try the same start with fewer groups before moving on.
                end = shorter_valid(det, text, start, end) if group == 0 else -1
            if end < 0:
                pos = m.start() + 1
                continue
            pos = max(m.end() if end == m.end(group) else end, m.start() + 1)
            if word_start and _continues_word(text, start):
                continue
            if start < end:
                found.append((start, rank, -end, label))

    @staticmethod
    def _scan_joined(
        det: Detector,
        rank: int,
        text: str,
        windows: list[tuple[int, int]],
        joined_starts: tuple[str, list[int]],
        found: list[tuple[int, int, int, str]],
    ) -> None:
        """`_scan` of every window as one scan of their texts joined by newlines
        (`join_windows`): no digit detector matches across a newline, and each sees one as it
        sees a window's end. Text with many short numbers costs one regex search per match, not
        one per window
        (used from 9 windows on: below, a search per window costs less than joining them)."""
        joined, starts = joined_starts
        local: list[tuple[int, int, int, str]] = []
        Redactor._scan(det, rank, joined, 0, len(joined), local, False)
        i = 0
        for start, _, end, label in local:
            while starts[i + 1] <= start:
                i += 1
            shift = windows[i][0] - starts[i]
            start += shift
            if det.word_start and _continues_word(text, start):
                continue
            found.append((start, rank, end - shift, label))

    def redact(self, text: str) -> Redaction:
        return apply_spans(text, self.find(text) if len(text) >= 6 else [])

    def redact_pieces(self, pieces: Sequence[str]) -> tuple[list[str], Counter[str]]:
        """Redact text that arrived in pieces (stream deltas, log chunks) as one text: a card
        number split across two pieces is still found. Each placeholder goes into the piece
        where its match starts; the rest of the match is removed from the following pieces."""
        joined = "".join(pieces)
        spans = self.find(joined) if len(joined) >= 6 else []
        if not spans:
            return list(pieces), Counter()
        out: list[str] = []
        counts: Counter[str] = Counter(label for _, _, label in spans)
        offset = 0
        first = 0  # spans before it end before the current piece: one walk over both lists
        for piece in pieces:
            lo, hi = offset, offset + len(piece)
            offset = hi
            while first < len(spans) and spans[first][1] <= lo:
                first += 1
            i = first
            if i == len(spans) or spans[i][0] >= hi:
                out.append(piece)  # no match touches it
                continue
            parts: list[str] = []
            cursor = lo
            while i < len(spans) and spans[i][0] < hi:
                start, end, label = spans[i]
                parts.append(joined[cursor : max(start, lo)])
                if start >= lo:
                    parts.append(f"[{label}]")
                cursor = min(end, hi)
                i += 1
            parts.append(joined[cursor:hi])
            out.append("".join(parts))
        return out, counts


def _continues_word(text: str, start: int) -> bool:
    """A match at `start` would continue a word (or a placeholder) to its left."""
    if start == 0:
        return False
    c = text[start - 1]
    return c.isalnum() or (c == "]" and start > 1 and "A" <= text[start - 2] <= "Z")


def _leftmost(found: list[tuple[int, int, int, str]]) -> list[tuple[int, int, str]]:
    """Non-overlapping spans of `found` (start, rank, -end, label): leftmost, then first
    listed, then longest."""
    found.sort()
    out: list[tuple[int, int, str]] = []
    for start, _, end, label in found:
        end = -end
        if out and start < out[-1][1]:
            continue  # overlaps a span taken by an earlier or higher-priority detector
        out.append((start, end, label))
    return out


def clip_text(text: str, limit: int) -> str:
    """The first `limit` characters, never ending inside a placeholder."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    for m in PLACEHOLDER.finditer(text, max(0, limit - 20), limit + 20):
        if m.start() < limit < m.end():
            return text[: m.start()]
    return cut

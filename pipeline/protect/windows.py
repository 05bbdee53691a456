"""Where in a text each detector's regex runs, so that text without candidates costs (almost)
nothing: windows around runs of digits, around guards (`Detector.scope`) and around IPv6
colon pairs; in long digit windows, only the parts around a detector's `Anchors`.
"""

from __future__ import annotations

import itertools
import re

from pipeline.protect.detectors import Anchors, Detector

# Anchors (`Anchors`) closer than this are one cluster: text dense with anchors costs a
# string search per this many characters, not one per anchor.
_CLUSTER_GAP = 128
_WIDE_DIGIT = re.compile(r"[^\D\x00-\x7f]")  # a digit `\d` matches outside ASCII
# Windows narrower than this are scanned whole: finding anchors would cost more.
_ANCHOR_FROM = 256


def _clusters(shape: bytes, literal: bytes) -> list[tuple[int, int]]:
    """(first start, last end) of each run of `literal`s in `shape` that follow each other
    within `_CLUSTER_GAP` bytes: a search per cluster, then one per `_CLUSTER_GAP` bytes
    (the last occurrence within reach, `rfind`)."""
    out = []
    size = len(literal)
    i = shape.find(literal)
    while i != -1:
        end = i + size
        while (j := shape.rfind(literal, end, end + _CLUSTER_GAP + size)) != -1:
            end = j + size
        out.append((i, end))
        i = shape.find(literal, end)
    return out


def _anchored(text: str, anchors: Anchors, windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of long windows that can hold a match: from `before` (and 3 characters for a
    lookbehind, as a window's start gives) before a cluster of anchors to `reach` past its last
    one. A regex search of these finds what a search of the window finds: a match's anchor is
    in a cluster, so the match lies in that cluster's part and reads nothing past its end;
    and a match in a part has its anchor in the part, so it is a match in the window."""
    back, reach = anchors.before + 3, anchors.reach
    out: list[tuple[int, int]] = []
    for lo, hi in windows:
        # `\d` matches digits outside ASCII: such a window is scanned whole
        if hi - lo < _ANCHOR_FROM or (
            not (window := text[lo:hi]).isascii() and _WIDE_DIGIT.search(window)
        ):
            out.append((lo, hi))
            continue
        # One byte per character, after a space: a group of digits at the window's start
        # counts as after a non-digit (anchors found in excess only widen the parts).
        ascii_ = (" " + window).encode("ascii", "replace")
        shapes: dict[bytes, bytes] = {}
        spans: list[tuple[int, int]] = []
        for table, literal in anchors.literals:
            if table not in shapes:
                shapes[table] = ascii_.translate(table)
            spans += [(a - back, b + reach) for a, b in _clusters(shapes[table], literal)]
        if len(anchors.literals) > 1:
            spans.sort()
        lo1 = lo - 1  # the text's offset of byte 0
        out += [(max(lo, lo1 + a), min(hi, lo1 + b)) for a, b in _merge(spans)]
    return out


# Runs of digits and the separators numbers are written with, holding 4 digits or more; windows
# for "digits" detectors. Runs whose windows (3 characters before, 2 after) touch are one match:
# a text of many short numbers costs one Python step per cluster, not per number. Possessive:
# a run is taken whole.
_DIGIT_RUN = re.compile(r"[0-9](?=(?:[ ().:/-]*+[0-9]){3})[0-9 ().:/-]{4,}+")
_DIGIT_WINDOW = re.compile(_DIGIT_RUN.pattern + r"((?:[\s\S]{0,5}?" + _DIGIT_RUN.pattern + r")*+)")
# IPv6 anchors: two colons with at most 4 hex digits between them (literal-led: fast to scan),
# chained into one match while each next anchor starts within 78 characters of the previous
# one's end (its window touches): one match per cluster, not per anchor.
_IPV6_CLUSTER = re.compile(r":[0-9A-Fa-f]{0,4}:(?:[\s\S]{0,78}?:[0-9A-Fa-f]{0,4}:)*+")


def digit_runs(text: str) -> list[tuple[int, int, int]]:
    """Windows around runs of digits, with how many digits the runs hold; merged when they
    touch. Widened a little to the left for a leading "(" or "+"."""
    n = len(text)
    out = []
    for m in _DIGIT_WINDOW.finditer(text):
        run = m.group()
        if m.start(1) < m.end(1):  # several runs: not the digits between them
            run = "".join(_DIGIT_RUN.findall(run))
        digits = len(run) - len(run.translate(_DROP_DIGITS))
        out.append((max(0, m.start() - 3), min(n, m.end() + 2), digits))
    return out


_DROP_DIGITS = str.maketrans("", "", "0123456789")


def near_windows(
    low: str, guards: tuple[str, ...], before: int, after: int
) -> list[tuple[int, int]]:
    """Merged windows (`before`, `after`) around every occurrence of each guard in `low`.
    Each window jumps to the last occurrence its reach still touches (`rfind`), so text full
    of a guard ("@@@@...") costs a few searches per window, not Python work per occurrence."""
    n = len(low)
    windows: list[tuple[int, int]] = []
    for g in guards:
        i = low.find(g)
        while i != -1:
            lo, hi = max(0, i - before), min(n, i + after)
            while hi < n:
                j = low.rfind(g, i + 1, hi + before + len(g))
                if j == -1:
                    break
                i, hi = j, min(n, j + after)
            windows.append((lo, hi))
            i = low.find(g, hi + before + 1) if hi < n else -1
    if len(windows) < 2:
        return windows
    if len(guards) > 1:
        windows.sort()
    return _merge(windows)


def digit_windows(
    det: Detector, text: str, runs: list[tuple[int, int, int]]
) -> list[tuple[int, int]]:
    """A digit detector's windows: the runs with enough digits (and of what it `needs`),
    from `before` characters ahead; around its anchors only, in long windows."""
    windows = [
        (max(0, lo - det.before) if det.before else lo, hi)
        for lo, hi, digits in runs
        if digits >= det.min_digits
        and (det.needs is None or text.count(det.needs[0], lo, hi) >= det.needs[1])
    ]
    if det.anchors is not None and any(hi - lo >= _ANCHOR_FROM for lo, hi in windows):
        windows = _anchored(text, det.anchors, windows)
    return windows


def ipv6_windows(det: Detector, text: str) -> list[tuple[int, int]]:
    n = len(text)
    return _merge(
        [
            (max(0, m.start() - det.before), min(n, m.end() + det.after))
            for m in _IPV6_CLUSTER.finditer(text)
        ]
    )


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of (sorted) windows, so no region is scanned twice."""
    out: list[tuple[int, int]] = []
    for lo, hi in spans:
        if out and lo <= out[-1][1]:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def join_windows(text: str, windows: list[tuple[int, int]]) -> tuple[str, list[int]]:
    """The windows' texts joined by newlines, and where each starts in the result (one more
    entry: past the end)."""
    parts = [text[lo:hi] for lo, hi in windows]
    return "\n".join(parts), list(itertools.accumulate([len(p) + 1 for p in parts], initial=0))

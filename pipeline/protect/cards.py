"""Card numbers: the issuers' lengths, Luhn, and the one-pass finder of the CARD detector
(`find_cards`), which finds what the `CARD` regex, `valid_card` and the cut rule
(detectors.py `shorter_valid`) find, in time linear in the text.
"""

from __future__ import annotations

import functools
import re

from pipeline.protect.boundaries import END_OK, LEFT_EDGE, RIGHT_EDGE, START_OK

_DOUBLED = bytes.maketrans(b"0123456789", b"0246813579")  # Luhn: 2d, minus 9 above 9


def _luhn(digits: str) -> bool:
    b = digits.encode()
    return (sum(b[-1::-2]) + sum(b[-2::-2].translate(_DOUBLED)) - 48 * len(b)) % 10 == 0


def _card_range(d: str) -> tuple[int, ...] | range:
    """The lengths of a card number with these first four digits (ISO/IEC 7812 IINs)."""
    if d[0] == "4":
        return (13, 16, 19)  # Visa
    two, four = int(d[:2]), int(d[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return (16,)  # Mastercard
    if two in (34, 37):
        return (15,)  # Amex
    if d.startswith(("6011", "65")) or 644 <= int(d[:3]) <= 649:
        return range(16, 20)  # Discover
    if 3528 <= four <= 3589:
        return range(16, 20)  # JCB
    if two in (36, 38, 39) or 300 <= int(d[:3]) <= 305:
        return range(14, 20)  # Diners
    if two == 62:
        return range(16, 20)  # UnionPay
    if d.startswith(("50", "56", "57", "58", "6")):
        return range(12, 20)  # Maestro
    return ()


def _card_prefix(d: str) -> bool:
    """Issuer ranges of the common networks with their lengths."""
    return len(d) in _card_range(d)


def valid_card(text: str) -> bool:
    digits = "".join(c for c in text if c.isdigit())
    return 13 <= len(digits) <= 19 and _card_prefix(digits) and _luhn(digits)


@functools.cache  # bounded: 10,000 four-digit prefixes at most
def _card_lengths(prefix: str) -> int:
    """The lengths 13-19 of a card number starting with these four digits: bit n - 13."""
    return sum(1 << (n - 13) for n in _card_range(prefix) if n >= 13)


# Card numbers: 13-19 digits, single spaces or hyphens between them. `find_cards` works on
# runs of such digits (`_CARD_RUN`); `CARD` is the same rule as one regex, kept as the
# reference the finder is tested against.
CARD = re.compile(LEFT_EDGE + r"\d(?:[ -]?\d){12,18}" + RIGHT_EDGE)
# Possessive: a run of joined digits is taken whole, never re-split; the lookbehinds make a
# digit inside a run (too short to be a card) fail at once instead of rescanning the run. The
# 13 digits a card needs one by one, the rest group by group (a repeat of a group costs a step
# per digit: "12 34 56 ..." took twice as long).
_CARD_RUN = re.compile(
    r"[0-9](?<![0-9][0-9])(?<![0-9][ -][0-9])(?:[ -]?[0-9]){12}+[0-9]*+(?:[ -][0-9]++)*+"
)


# --- cards: every start of a run of joined digits, every length, in one pass -------------------
#
# "1 2 3 4 ..." makes every digit a candidate start with up to 7 candidate lengths, each a
# Luhn check: per start in Python that is about a microsecond per two characters. Runs with
# more digits than `_CARD_BULK` are first filtered in bulk: Luhn sums of every start and
# length at once with big-integer arithmetic (one byte per digit), masked by the issuer's
# first two digits and the shape of the run; only starts left over are checked one by one,
# with exactly the rules of `CARD` + `valid_card` + `shorter_valid` (`_card_spans`: the
# greedy end is in the bulk pass too, the four first digits checked only where the first two
# do not tell the lengths; a few operations per card found).

_CARD_BULK = 64
_CARD_PAD = "x" * 19  # between runs: no 19-digit window spans two runs
_CARD_DIGITS = str.maketrans("x", "0", " -")
# One letter per digit: what follows it. S: a space then a digit; H: a hyphen then a digit;
# d: a digit; E: the end of the run (x: padding).
_CARD_SHAPE = str.maketrans("0123456789", "dddddddddd")
_VALUES = bytes.maketrans(b"0123456789", bytes(range(10)))
_TIMES_TWO = bytes.maketrans(bytes(range(10)), bytes([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]))
_TENS = bytes(1 if v % 10 == 0 else 0 for v in range(256))
_CAN_END = bytes(1 if chr(v) in "SHE" else 0 for v in range(256))  # a length may end here
_GREEDY_END = bytes(1 if chr(v) in "SE" else 0 for v in range(256))  # a greedy match may
# A start may follow (any length): a space, or padding (the run's first digit).
_CAN_FOLLOW = bytes(0x7F if chr(v) in "Sx" else 0 for v in range(256))
_NONZERO = re.compile(rb"[^\x00]")
_SEPARATED = str.maketrans("SH", "ss")
_BITS = str.maketrans("sdEx", "1000")


@functools.cache
def _card_two_digits() -> tuple[bytes, bytes]:
    """Translation tables from the first two digits (as 0-99): to the lengths a card number
    starting with them may have (bit n - 13), and to 1 where the next two digits matter."""
    lengths: dict[int, set[int]] = {}
    for p in range(10_000):
        lengths.setdefault(p // 100, set()).add(_card_lengths(f"{p:04d}"))
    union = bytes(functools.reduce(int.__or__, lengths.get(v, {0})) for v in range(256))
    return union, bytes(len(lengths.get(v, ())) > 1 for v in range(256))


def _sum12(x: int) -> int:
    """Byte k: the sum of bytes k, ..., k + 11 of `x` (each at most 9: no carries)."""
    x2 = x + (x >> 8)
    x4 = x2 + (x2 >> 16)
    return x4 + (x4 >> 32) + (x4 >> 64)


def _card_candidates(ds: str, shape: str) -> tuple[bytes, bytes]:
    """Per index of `ds`, bit n - 13 set where length n passes Luhn, may end (shape), and the
    first two digits allow it: a superset of the starts (and lengths) of valid cards. And per
    index, the two digits from it (as 0-99)."""
    n = len(ds)
    values = ds.encode().translate(_VALUES)
    x = int.from_bytes(values, "little")
    two = (x * 10 + (x >> 8)).to_bytes(n, "little")  # byte k: 10 * digit k + digit k + 1
    shape_b = shape.encode()
    starts = int.from_bytes((b"x" + shape_b[:-1]).translate(_CAN_FOLLOW), "little")
    allowed = int.from_bytes(two.translate(_card_two_digits()[0]), "little") & starts
    if not allowed:  # no run of digits starts like a card number
        return bytes(n), two
    doubled = values.translate(_TIMES_TWO)
    # Digit j weighted as Luhn weighs it when the number ends on an even (a) / odd (b) index.
    wa, wb = bytearray(values), bytearray(doubled)
    wa[1::2], wb[1::2] = doubled[1::2], values[1::2]
    xa, xb = int.from_bytes(wa, "little"), int.from_bytes(wb, "little")
    full = (1 << (8 * n)) - 1
    even = int.from_bytes(b"\xff\x00" * (n // 2 + 1), "little") & full
    odd = even ^ full
    ones = full // 255  # byte k: 1
    sa, sb = _sum12(xa), _sum12(xb)  # byte k of sa: sum of wa[k], ..., wa[k + 11]
    can_end = int.from_bytes(shape_b.translate(_CAN_END), "little")
    # The greedy match ends before a space or at the run's end (taken as allowed by `RIGHT_EDGE`
    # here): a length ending no later is a candidate (it is the match or a cut of it).
    greedy_end = int.from_bytes(shape_b.translate(_GREEDY_END), "little")
    greedy, any_end = {}, 0
    for length in range(19, 12, -1):
        any_end |= greedy_end >> (8 * (length - 1))
        greedy[length] = any_end
    hits = 0
    for length in range(13, 20):
        sa += xa >> (8 * (length - 1))
        sb += xb >> (8 * (length - 1))
        bit = length - 13
        if not allowed & (ones << bit):
            continue
        # Starts k with k + length - 1 even take the a-weights.
        sums = (sa & even) | (sb & odd) if length % 2 else (sa & odd) | (sb & even)
        ok = int.from_bytes(sums.to_bytes(n, "little").translate(_TENS), "little")
        hits |= (ok & (can_end >> (8 * (length - 1))) & greedy[length]) << bit
    return (hits & allowed).to_bytes(n, "little"), two


def find_cards(
    text: str, windows: list[tuple[int, int]], joined_starts: tuple[str, list[int]] | None
) -> list[tuple[int, int]]:
    """The spans `_scan` would find with `CARD`, `valid_card` and `shorter_valid`: at each
    start, the longest valid length among the greedy match and its cuts at a separator."""
    runs = _card_runs(text, windows, joined_starts)
    if not runs:
        return []
    joined = _CARD_PAD.join([g for _, g in runs])
    ds = joined.translate(_CARD_DIGITS)
    shape = joined.translate(_CARD_SHAPE).replace("d ", "S").replace("d-", "H")
    shape = shape.replace("dx", "Ex")[:-1] + "E"
    seps = shape.translate(_SEPARATED)  # "s" where a separator follows the digit
    if len(ds) - len(_CARD_PAD) * (len(runs) - 1) > _CARD_BULK:
        return _card_spans(text, runs, ds, shape, seps, *_card_candidates(ds, shape))
    return _card_spans_few(text, runs, ds, shape, seps)


def _card_runs(
    text: str, windows: list[tuple[int, int]], joined_starts: tuple[str, list[int]] | None
) -> list[tuple[int, str]]:
    """The card-shaped runs of digits in the windows: (offset in `text`, the run)."""
    if joined_starts is None:
        return [
            (m.start(), m.group()) for lo, hi in windows for m in _CARD_RUN.finditer(text, lo, hi)
        ]
    # One search over all windows (see `Redactor._scan_joined`).
    joined, starts = joined_starts
    runs, i = [], 0
    for m in _CARD_RUN.finditer(joined):
        while starts[i + 1] <= m.start():
            i += 1
        runs.append((windows[i][0] + m.start() - starts[i], m.group()))
    return runs


def _next_run(
    text: str, runs: list[tuple[int, str]], run: int, run_hi: int, k: int
) -> tuple[int, int, int, bool]:
    """The run holding digit `k` of `ds`, from run `run` on (whose digits end at `run_hi`):
    its index, its first digit and one past its last in `ds`, and whether a match may end
    where it ends (`RIGHT_EDGE`)."""
    run_lo = run_hi
    while k >= run_hi:
        run += 1
        run_lo = run_hi + (len(_CARD_PAD) if run else 0)
        g = runs[run][1]
        run_hi = run_lo + len(g) - g.count(" ") - g.count("-")
    start, g = runs[run]
    return run, run_lo, run_hi, END_OK.match(text, start + len(g)) is not None


def _card_spans_few(
    text: str, runs: list[tuple[int, str]], ds: str, shape: str, seps: str
) -> list[tuple[int, int]]:
    """`find_cards` for a few digits: every start is tried."""
    spans: list[tuple[int, int]] = []
    run = -1
    run_lo = run_hi = 0  # the current run's digits in `ds`
    end_ok = False
    seen, extra = 0, 0  # separators before digit `seen` of the current run
    k = -1
    while (k := k + 1) < len(ds):
        if shape[k] == "x":
            continue
        if k >= run_hi:
            run, run_lo, run_hi, end_ok = _next_run(text, runs, run, run_hi, k)
            seen, extra = run_lo, 0
        top = min(19, run_hi - k)
        if top < 13:
            continue
        if k == run_lo:
            if not START_OK.match(text, runs[run][0]):
                continue
        elif shape[k - 1] != "S":
            continue
        # The greedy match: the longest length whose last digit may end a match (`RIGHT_EDGE`): the
        # run's last digit, or one followed by a space.
        if top == run_hi - k and end_ok:
            greedy = top
        else:
            j = shape.rfind("S", k + 12, k + top)
            if j < 0:
                continue
            greedy = j - k + 1
        n = _card_length(ds, seps, k, greedy)
        if not n:
            continue
        extra += seps.count("s", seen, k)
        first = runs[run][0] + (k - run_lo) + extra
        extra += seps.count("s", k, k + n - 1)
        seen = k + n - 1
        spans.append((first, runs[run][0] + (seen - run_lo) + extra + 1))
        k += n - 1  # the next start is past this card
    return spans


def _card_length(ds: str, seps: str, k: int, greedy: int) -> int:
    """The longest valid card at digit `k` of `ds`, or 0: a length the issuer allows, that
    ends at the greedy end or at a cut before it (a space or hyphen follows), with Luhn."""
    cuts = seps[k + 12 : k + greedy - 1][::-1].translate(_BITS)  # bit n - 13: length n
    valid = _card_lengths(ds[k : k + 4]) & ((int(cuts, 2) if cuts else 0) | 1 << (greedy - 13))
    while valid:
        n = valid.bit_length() + 12
        if _luhn(ds[k : k + n]):
            return n
        valid ^= 1 << (n - 13)
    return 0


def _card_spans(
    text: str,
    runs: list[tuple[int, str]],
    ds: str,
    shape: str,
    seps: str,
    bits: bytes,
    two: bytes,
) -> list[tuple[int, int]]:
    """`find_cards` for long runs, from the bulk pass (`_card_candidates`): only its candidate
    starts are visited, and its bits already hold Luhn, the start after a space (or a run's
    start), an end before a separator (or the run's end) and no later than the greedy
    match's. Left to check: a run's own start and end (`LEFT_EDGE`, `RIGHT_EDGE`), and the
    issuer's four digits where the first two do not tell the lengths."""
    spans: list[tuple[int, int]] = []
    run = -1
    run_lo = run_hi = 0  # the current run's digits in `ds`
    start_ok = end_ok = False
    seen = base = 0  # text offset of digit k: base + k + separators in seps[seen:k]
    search = _NONZERO.search
    inexact = _card_two_digits()[1]
    k = 0
    while (m := search(bits, k)) is not None:
        k = m.start()
        if k >= run_hi:  # bits lie inside runs (padding starts no card and ends none)
            run, run_lo, run_hi, end_ok = _next_run(text, runs, run, run_hi, k)
            start = runs[run][0]
            start_ok = START_OK.match(text, start) is not None
            seen, base = run_lo, start - run_lo
        valid = bits[k]
        if run_hi - k <= 19 and not end_ok:  # the greedy match ends at a space before
            if (j := shape.rfind("S", k + 12, run_hi)) < 0:
                k += 1
                continue
            valid &= (2 << (j - k - 12)) - 1  # lengths up to j - k + 1
        if inexact[two[k]]:
            valid &= _card_lengths(ds[k : k + 4])
        if not valid or (k == run_lo and not start_ok):
            k += 1
            continue
        last = k + valid.bit_length() + 11
        base += seps.count("s", seen, k)
        first = base + k
        base += seps.count("s", k, last)
        seen = last
        spans.append((first, base + last + 1))
        k = last + 1  # the next start is past this card
    return spans

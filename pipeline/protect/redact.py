"""What we do not store: credentials always, personal data and secrets by policy.

Credentials in headers and URLs are removed from every record before it is archived,
dead-lettered or turned into a row, under every capture setting. Personal data and secrets in
text are masked by `Redactor` where the capture policy says so (policy.py). The live request
is never touched: we only see logs of it.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.common.values import json_object
from pipeline.protect.fields import CREDENTIAL, CREDENTIAL_HEADERS, HEADERS, URL, key_kind

# Query (and fragment: OAuth implicit flow) parameters that carry keys, tokens, passwords or
# signatures: APIM subscription and AOAI keys, OAuth tokens and codes, storage SAS `sig`,
# S3 and GCS presigned-URL signatures, session ids. Names match whole, in any case. A list of
# literals then one character class: no nested quantifier, linear time.
_URL_SECRET = re.compile(
    r"([?&#](?:"
    r"(?:access|id|refresh|auth|session|x-amz-security)[-_]?token|token"
    r"|client[-_]?secret|secret|password|passwd|pwd"
    r"|(?:api|subscription)[-_]?key|key|sig|signature|x-amz-signature|x-goog-signature"
    r"|code|auth|session(?:[-_]?id)?"
    r")=)[^&#\s\"]*",
    re.IGNORECASE,
)
REMOVED = "[REMOVED]"


def scrub_url(url: str) -> str:
    return _URL_SECRET.sub(lambda m: m.group(1) + REMOVED, url) if "=" in url else url


def _scrub_headers(headers: Any) -> Any:
    decoded = json_object(headers) if isinstance(headers, str) else headers
    if not isinstance(decoded, dict):
        return headers
    if not any(k.lower() in CREDENTIAL_HEADERS for k in decoded):
        return decoded
    return {k: v for k, v in decoded.items() if k.lower() not in CREDENTIAL_HEADERS}


# What credential scrubbing reads (fields.key_kind): the rest of a record is left alone.
_SCRUBBED = frozenset({CREDENTIAL, HEADERS, URL})


# Records of one source share their set of keys: which of them need a look is worked out
# once per key set.
_PLANS: dict[tuple[str, ...], tuple[tuple[str, int], ...]] = {}


def _scrub_level(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` without credentials: the same dict when it holds none (most records)."""
    keys = tuple(obj)
    plan = _PLANS.get(keys)
    if plan is None:
        plan = tuple((k, kind) for k in keys if (kind := key_kind(k)) in _SCRUBBED)
        if len(_PLANS) < 1_000:
            _PLANS[keys] = plan
    changes: dict[str, Any] = {}
    for key, kind in plan:
        value = obj[key]
        if kind == CREDENTIAL:
            changes[key] = _DROPPED
        elif kind == HEADERS:
            new = _scrub_headers(value)
            if new is not value:
                changes[key] = new
        elif isinstance(value, str):
            new = scrub_url(value)
            if new != value:
                changes[key] = new
    if not changes:
        return obj
    return {k: changes.get(k, v) for k, v in obj.items() if changes.get(k) is not _DROPPED}


_DROPPED = object()


def scrub_credentials(record: dict[str, Any]) -> dict[str, Any]:
    """`record` without credential headers or URL keys (top level and properties); the record
    itself is never changed (a copy is made where something goes)."""
    out = _scrub_level(record)
    for key, value in list(out.items()):
        if key.lower() == "properties":
            if isinstance(value, str):
                value = json_object(value)
            if isinstance(value, dict):
                scrubbed = _scrub_level(value)
                if scrubbed is not out[key]:
                    if out is record:
                        out = dict(record)
                    out[key] = scrubbed
    return out


# --- personal data and secrets in text ----------------------------------------------------------
#
# Detectors are fast, offline and validated where a checksum exists (Luhn for cards, mod-97
# for IBANs), so look-alikes (order numbers, GUIDs, timestamps, versions, model ids) stay.
# Each match becomes a typed placeholder; `Redaction.counts` says how many of each type.
#
# A client writes the text (request bodies up to 200 KB), so every detector runs in time
# linear in it with a small constant, whatever it holds: a regex that tries a match from
# every character of a run and rescans the run each time is quadratic. The means, named at
# each pattern: a left boundary, so a run of candidate characters is tried from its first
# character only; possessive quantifiers (`*+`, `{m,n}+`) where giving characters back can
# never lead to a match; validation inside the regex where it can be written as one (IPv4
# octets); and for checksums, every candidate length of a match checked in one pass, with
# long digit runs prefiltered in bulk (cards). A regex still tries a match at every digit of
# its window, and a window of digit runs ("1 2 3 ...", "12 34 ...") can be the whole text:
# detectors whose matches hold a rarer shape (an SSN's 3-2-4 digit groups; a phone's "+",
# trunk "0" or 3-3-4 groups) scan only the parts of long windows around it (`Anchors`),
# found by string searches.

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*\]")
# A placeholder reads as a word: no match starts right after one or ends right before one, so
# redacting redacted text finds nothing new (its "]" would otherwise open a boundary that the
# redacted value's last character had closed).
_AFTER_PLACEHOLDER = r"(?<![A-Z]\])"
_BEFORE_PLACEHOLDER = r"(?!\[[A-Z])"

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


def _valid_card(text: str) -> bool:
    digits = "".join(c for c in text if c.isdigit())
    return 13 <= len(digits) <= 19 and _card_prefix(digits) and _luhn(digits)


@functools.cache  # bounded: 10,000 four-digit prefixes at most
def _card_lengths(prefix: str) -> int:
    """The lengths 13-19 of a card number starting with these four digits: bit n - 13."""
    return sum(1 << (n - 13) for n in _card_range(prefix) if n >= 13)


# IBAN lengths by country (SWIFT IBAN registry, 2024). Other codes accept 15-34 characters,
# checked as the whole match only (`_iban_pattern`).
_IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HN": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23,
    "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
_IBAN_DIGITS = str.maketrans({c: str(ord(c) - 55) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"})


def _valid_iban(text: str) -> bool:
    s = text.replace(" ", "").upper()
    expected = _IBAN_LENGTH.get(s[:2])
    if (expected is not None and len(s) != expected) or not 15 <= len(s) <= 34:
        return False
    return int((s[4:] + s[:4]).translate(_IBAN_DIGITS)) % 97 == 1


def _codes(codes: list[str]) -> str:
    """Two-letter codes as a regex that reads each letter once: "D[EK]|F[IR]"."""
    first: dict[str, list[str]] = {}
    for code in sorted(codes):
        first.setdefault(code[0], []).append(code[1])
    return "|".join(f"{a}[{''.join(b)}]" for a, b in first.items())


def _iban_pattern() -> re.Pattern[str]:
    """IBAN candidates, each one mod-97 check away from an answer. A known country's IBAN has
    one length: the candidate is the prefix of that length of the greedy match (4-character
    groups, optional single spaces) that ends at a word boundary, so it is that match or the
    match cut at a space. Another country's candidate is the greedy match itself when it has
    15-34 characters (lookaheads: one parse of at least 15 ending at a boundary; none of 35 or
    36). Candidates of the wrong length never reach Python: "XX12 3456 XX12 3456 ..." made a
    start, a validation and a cut search every 10 characters. The country is told by
    lookbehinds after "[A-Z][A-Z][0-9][0-9]", so the regex still starts with a character class
    (fast to scan for)."""
    by_length: dict[int, list[str]] = {}
    for code, n in _IBAN_LENGTH.items():
        by_length.setdefault(n, []).append(code)
    known = []
    for n, codes in sorted(by_length.items()):
        groups, tail = divmod(n - 4, 4)
        known.append(
            f"(?<=(?:{_codes(codes)})..)(?: ?[A-Z0-9]{{4}}){{{groups}}}"
            + (f" ?[A-Z0-9]{{{tail}}}" if tail else "")
        )
    group, tail = r"(?: ?[A-Z0-9]{4})", r"(?: ?[A-Z0-9]{1,4})"
    other = (
        f"(?!{group}{{7}} ?[A-Z0-9]{{3,4}}\\b)"
        f"(?={group}{{2}}(?:{group}{{1,5}}{tail}?| ?[A-Z0-9]{{3,4}})\\b)"
        f"{group}{{2,7}}{tail}?"
    )
    all_known = f"(?:{_codes(list(_IBAN_LENGTH))})[0-9][0-9]"
    # (?!\w{33}): no word boundary within reach, so no candidate (one scan of a long word
    # instead of every split of it into groups).
    return re.compile(
        f"[A-Z][A-Z][0-9][0-9](?!\\w{{33}})"
        f"(?:(?<={all_known})(?:{'|'.join(known)})|(?<!{all_known}){other})\\b(?!\\[[A-Z])"
    )


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)"  # 0-255 without leading zeros


def _valid_ipv4(text: str) -> bool:
    parts = text.split(".")
    if len(parts) != 4 or not all(
        p.isdigit() and int(p) <= 255 and (p == "0" or p[0] != "0") for p in parts
    ):
        return False
    # Loopback, "any" and broadcast addresses identify nobody.
    return parts[0] != "127" and text not in ("0.0.0.0", "255.255.255.255")


_OCTET_ASCII = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4_TAIL = _OCTET_ASCII + r"(?:\." + _OCTET_ASCII + r"){3}"
_H = r"[0-9A-Fa-f]{1,4}"
# What `ipaddress.IPv6Address` accepts (3.11 rules): 8 groups, or fewer around one "::", the
# last two possibly written as an IPv4 address. Bounded alternatives, no exceptions raised.
_IPV6_VALID = re.compile(
    "|".join(
        [
            f"(?:{_H}:){{7}}{_H}",
            f"(?:{_H}:){{1,7}}:",
            *(f"(?:{_H}:){{1,{7 - lo}}}(?::{_H}){{{lo}}}" for lo in range(1, 7)),
            f":(?:(?::{_H}){{1,7}}|:)",
            f"(?:{_H}:){{6}}{_IPV4_TAIL}",
            f"::(?:{_H}:){{0,5}}{_IPV4_TAIL}",
            *(f"(?:{_H}:){{{hi}}}:(?:{_H}:){{0,{5 - hi}}}{_IPV4_TAIL}" for hi in range(1, 6)),
        ]
    )
)


def _valid_ipv6(text: str) -> bool:
    return len(text) >= 6 and _IPV6_VALID.fullmatch(text) is not None


_PHONE_SEPARATORS = str.maketrans("", "", " .-/()+")


def _valid_phone(text: str) -> bool:
    digits = len(text.translate(_PHONE_SEPARATORS))  # a phone match: digits and these
    # E.164 allows 15 digits; a national number with a trunk 0 has at least 9 (dates have 8).
    return (8 if text[0] in "+(" or text[0] != "0" else 9) <= digits <= 15


# The longest prefix of a phone match with 8 to 15 digits that ends right before a separator.
_PHONE_PREFIX = re.compile(r"(?:\D*+\d){8,15}(?=[ .\-/()])")


def _phone_end(det: Detector, text: str, start: int, end: int) -> int:
    """End of the phone number at `start`: the match if it has 8 (9 after a trunk 0) to 15
    digits, else the longest prefix that has and is still a match, cut at a separator
    (`_shorter_valid` rules): found by one regex match, not one validation per cut."""
    need = 9 if text[start] == "0" else 8
    digits = len(text[start:end].translate(_PHONE_SEPARATORS))
    if digits <= 15:
        return end if digits >= need else -1
    # The prefix ends at a group boundary of the match past its first 7 digits (country code
    # and parentheses hold fewer): it is a match itself, as `_shorter_valid` requires.
    m = _PHONE_PREFIX.match(text, start, end)
    if m is None or len(m.group().translate(_PHONE_SEPARATORS)) < need:
        return -1
    return m.end()


def _ipv6_end(det: Detector, text: str, start: int, end: int) -> int:
    """End of the IPv6 address at `start`: the match, or the match cut before its IPv4 tail
    (a cut inside the tail leaves a partial IPv4 address, never valid)."""
    if _valid_ipv6(text[start:end]):
        return end
    cut = text.find(".", start, end)
    if cut > start and _valid_ipv6(text[start:cut]) and det.pattern.fullmatch(text, start, cut):
        return cut
    return -1


def _iban_end(det: Detector, text: str, start: int, end: int) -> int:
    """The match is the only candidate (see `_iban_pattern`)."""
    return end if _valid_iban(text[start:end]) else -1


@dataclass(frozen=True, slots=True)
class Detector:
    label: str
    pattern: re.Pattern[str]
    # Where the regex runs, so that text without candidates costs (almost) nothing:
    # "text": the whole text, once a guard substring occurs in it;
    # "near": windows around each occurrence of a guard (matched case-insensitively);
    # "digits": windows around runs of digits (numbers, cards, phones, IPs, IBANs).
    scope: Literal["text", "near", "digits"] = "text"
    guards: tuple[str, ...] = ()
    validate: Callable[[str], bool] | None = None
    # Regex group holding the secret (the rest, like "AccountKey=", is kept as context).
    group: int = 0
    # Window around a guard for scope "near": characters before and after it.
    before: int = 0
    after: int = 160
    # The match must not continue a word to its left.
    word_start: bool = False
    # Scope "digits": fewest digits a match has (windows with fewer are skipped), and a
    # character the window must hold at least so many times (the dots of an IPv4 address).
    min_digits: int = 4
    needs: tuple[str, int] | None = None
    # Instead of `validate` and `_shorter_valid`: end of the longest valid match at `start`
    # that ends where the match does or at a separator before, or -1.
    resolve: Callable[[Detector, str, int, int], int] | None = None
    # Finds the spans itself in the windows (and their `_join`, scope "digits"), instead of a
    # regex search per window.
    finder: Callable[[str, list[tuple[int, int]], Any], list[tuple[int, int]]] | None = None
    # Scope "digits": what every match holds near its start; the windows shrink to the parts
    # around such anchors (`_anchored`).
    anchors: Anchors | None = None


@dataclass(frozen=True, slots=True)
class Anchors:
    """What every match of a detector holds around its start: a match that starts at s holds
    an anchor starting in s - 1 ... s + `before`, and its regex reads (lookarounds included)
    no further than s + `reach`. An anchor is a literal in the window's text as ASCII bytes
    (one per character), translated by a table: `_AS_D`: digits as "d", "dddd" is four digits
    in a row; `_AS_DB`: the rest as "b" too, "bddd" is a group of (at least) 3 digits after a
    character that is not one, or after the text's start."""

    literals: tuple[tuple[bytes, bytes], ...]  # (table, literal)
    before: int
    reach: int


_B = (
    r"(?<![\w@.+/-])" + _AFTER_PLACEHOLDER
)  # left boundary: not inside a word, address, number or path
_E = r"(?![\w@/-]|\.\w|\.?\[[A-Z])"  # right boundary
_START_OK, _END_OK = re.compile(_B), re.compile(_E)

# Card numbers: 13-19 digits, single spaces or hyphens between them. `_find_cards` works on
# runs of such digits (`_CARD_RUN`); `_CARD` is the same rule as one regex, kept as the
# reference the finder is tested against.
_CARD = re.compile(_B + r"\d(?:[ -]?\d){12,18}" + _E)
# Possessive: a run of joined digits is taken whole, never re-split; the lookbehinds make a
# digit inside a run (too short to be a card) fail at once instead of rescanning the run. The
# 13 digits a card needs one by one, the rest group by group (a repeat of a group costs a step
# per digit: "12 34 56 ..." took twice as long).
_CARD_RUN = re.compile(
    r"[0-9](?<![0-9][0-9])(?<![0-9][ -][0-9])(?:[ -]?[0-9]){12}+[0-9]*+(?:[ -][0-9]++)*+"
)

# E-mail: the local part starts where a run of its characters starts, so the run is scanned
# once, not once from each of its characters ("a.a.a.a...@" was quadratic). `_find_emails`
# searches each window as a slice of its own, so the window start counts as a boundary (a long
# run is cut to the 64 characters before its "@", as before). Possessive labels: a label ends
# at its ".".
_EMAIL_BODY = r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]++\.)+[A-Za-z]{2,}\b" + _BEFORE_PLACEHOLDER
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])" + _AFTER_PLACEHOLDER + _EMAIL_BODY)
# An address glued to the end of the previous match ("a@b.com-c@d.com"), tried once there.
_EMAIL_GLUED = re.compile(_EMAIL_BODY)
_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")

# Anchors (`Anchors`) closer than this are one cluster: text dense with anchors costs a
# string search per this many characters, not one per anchor.
_CLUSTER_GAP = 128
_AS_D = bytes.maketrans(b"0123456789", b"dddddddddd")
_AS_DB = bytes(ord("d") if 48 <= c <= 57 else ord("b") for c in range(256))
_ZERO_AS_O = bytes.maketrans(b"0123456789", b"oddddddddd")  # "od": 0 then 1-9
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


DETECTORS: tuple[Detector, ...] = (
    Detector(
        "PRIVATE_KEY",
        # Linear: literal-led, and "[A-Z0-9 ]*" cannot run past the next "-----".
        re.compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.S,
        ),
        "text",
        ("-----BEGIN",),
    ),
    Detector(
        "JWT",
        # A JWT starts at the first "eyJ" of a run of base64url characters that follows a
        # non-word character ("-eyJ" counts, as `\b` did): a lookahead checks once per run
        # that ".eyJ<payload>." follows it, so "eyJ-eyJ-..." is scanned once, not once per
        # "eyJ". Later "eyJ"s in the same run could only match less. Possessive: "." ends
        # each segment.
        re.compile(
            r"(?<![A-Za-z0-9_-])(?<![A-Z]\])(?=[A-Za-z0-9_-]*+\.eyJ[A-Za-z0-9_-]{4,}+\.)"
            r"(?:[A-Za-z0-9_-]*?-)??"
            r"(eyJ[A-Za-z0-9_-]{8,}+\.eyJ[A-Za-z0-9_-]{4,}+\.[A-Za-z0-9_-]*+)"
        ),
        "text",
        ("eyJ",),
        group=1,
    ),
    Detector(
        "TOKEN",
        # Possessive: whitespace, then the token (no character of one is in the other).
        re.compile(r"(?i)(?<![A-Z]\])\bbearer\s++([A-Za-z0-9._~+/-]{16,}+=*)"),
        "near",
        ("bearer",),
        group=1,
        before=0,
        after=4096,
    ),
    Detector(
        "SECRET",
        # Possessive whitespace: giving a space back cannot produce "=" or ":".
        re.compile(
            r"(?i)(?<![A-Z]\])\b(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd"
            r"|ClientSecret|client_secret)\s*+[=:]\s*+\"?(?-i:(?!\[[A-Z]))([^;\s\"'&,]{4,})"
        ),
        "near",
        ("accountkey", "sharedaccess", "password", "pwd", "clientsecret", "client_secret"),
        group=1,
        before=0,
        after=400,
    ),
    Detector(
        "API_KEY",
        # Literal-led (fast to find); the lookbehind after it is the `\b` before "sk-".
        re.compile(
            r"sk-(?<!\wsk-)(?<![A-Z]\]sk-)(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}"
        ),
        "text",
        ("sk-",),
    ),
    Detector(
        "API_KEY",
        # `\b` moved after the literal (fast to find)
        re.compile(r"A[KS]IA(?<!\wA[KS]IA)(?<![A-Z]\]A[KS]IA)[0-9A-Z]{16}\b(?!\[[A-Z])"),
        "text",
        ("AKIA", "ASIA"),
    ),
    Detector(
        "API_KEY",
        # Azure keys are 32 hex characters; alone they look like hashes or GUIDs, so only in a
        # key context ("api-key: ...", "subscription key = ...", "key": "..."). Possessive
        # whitespace: two `\s*` around an optional separator split a run of spaces in
        # quadratically many ways.
        # The first letter is a character class outside the case-insensitive part (with the
        # characters `(?i)` matches for a, s, k), so a window is scanned for candidates in a
        # tight loop rather than by trying five words at every character.
        re.compile(
            r"[AaSs\u017fKk\u212a](?i:(?:(?<=a)(?:pi[-_ ]?key|ccess[-_ ]?key)|(?<=s)(?:ubscription"
            r"[-_ ]?key|ecret)|(?<=k)(?<!\wk)(?<![A-Z]\]k)ey)[\"']?\s*+(?:[:=]|is)?\s*+[\"']?"
            r"([0-9a-f]{32})\b(?-i:(?!\[[A-Z])))"
        ),
        "near",
        ("key", "secret"),
        group=1,
        before=20,
        after=60,
    ),
    Detector(
        "EMAIL",
        _EMAIL,
        "near",
        ("@",),
        before=64,  # RFC 5321: a local part has at most 64 characters
        after=255,
        finder=lambda text, windows, joined: _find_emails(text, windows, joined),
    ),
    Detector(
        "IBAN",
        # Digits make up most of an IBAN; the window reaches back for "GB29 NWBK " before them.
        # No leading \b: `word_start` checks the left boundary (the regex stays fast).
        _iban_pattern(),
        "digits",
        validate=_valid_iban,
        word_start=True,
        min_digits=8,
        before=14,
        resolve=_iban_end,
    ),
    Detector(
        "CARD",
        _CARD,
        "digits",
        validate=_valid_card,
        min_digits=13,
        finder=lambda text, windows, joined: _find_cards(text, windows, joined),
    ),
    Detector(
        "SSN",
        # The area number is checked after its three digits (a lookbehind): a digit that
        # starts no SSN fails at once.
        re.compile(_B + r"\d{3}(?<!000|666|9\d\d)([- ])(?!00)\d{2}\1(?!0000)\d{4}" + _E),
        "digits",
        min_digits=9,
        # the match is the anchor; `_E` reads 3 characters past its end
        anchors=Anchors(((_AS_D, b"ddd dd dddd"), (_AS_D, b"ddd-dd-dddd")), before=0, reach=14),
    ),
    Detector(
        "PHONE",
        re.compile(
            _B
            + r"(?=[+(]|\d\d)(?:"
            # international: +CC then groups, optionally a (0) or an area code in parentheses.
            # Possessive groups of at most 5 digits: a run is cut into groups one way only
            # (`\d{1,5}` tried every split of "+1 " + 26 digits, thousands per "+"); the
            # lookahead skips a "+" without the 8 digits a valid number has.
            + r"\+(?=(?:[ .()-]{0,2}\d){8})\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}+){1,5}"
            + _E
            # North America: (555) 123-4567, 555-123-4567, 555.123.4567
            + r"|(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
            + _E
            # national numbers with a trunk 0: UK 020 7946 0958, FR 06 12 34 56 78, DE 030 1234567
            # (possessive: a group ends where its digits end; at least 9 digits ahead)
            + r"|0(?=(?:[ ./-]?\d){8})[1-9]\d{0,3}+(?:[ ./-]\d{2,8}+){1,4}"
            + _E
            + r")"
        ),
        "digits",
        validate=_valid_phone,
        min_digits=8,
        resolve=_phone_end,
        # At the start: "+", a trunk "0[1-9]", or North America's three groups (3, 3 and 4 or
        # more digits) after a character that is not a digit (or "(" and a space). At most 41
        # characters (+CC 3, (area) 7, 5 groups of 6), then `_E` reads 3.
        anchors=Anchors(
            (
                (_AS_D, b"+"),
                (_ZERO_AS_O, b"od"),
                (_AS_DB, b"bdddbdddbdddd"),
                (_AS_DB, b"bdddbbdddbdddd"),
            ),
            before=0,
            reach=44,
        ),
    ),
    Detector(
        "IP",
        # The octet rules are in the regex (no validation call per dotted number): not
        # loopback, not 0.0.0.0 or 255.255.255.255, each octet 0-255 without leading zeros.
        # The first lookahead drops a number without a dot after it in a few steps.
        re.compile(
            _B
            + r"(?=\d{1,3}\.)(?!127\.|0\.0\.0\.0(?!\d)|255\.255\.255\.255(?!\d))"
            + _OCTET
            + r"(?:\."
            + _OCTET
            + r"){3}"
            + _E
        ),
        "digits",
        needs=(".", 3),
    ),
    Detector(
        "IP",
        # One start per run of address characters (lookbehind); the lookaheads skip runs that
        # cannot hold an address (fewer than 6 characters, or neither "::" nor 6 full groups)
        # before `_valid_ipv6` is called. Possessive: the match can only end where the run of
        # hex digits and colons ends (a "1:2:...:9" run fails in one pass, not by trying every
        # shorter split). An IPv4 tail is taken whole or not at all: a partial one ("1.2.3")
        # is never valid, and the match without it is the one cut worth trying.
        re.compile(
            r"(?<![\w:.])(?<![A-Z]\])(?=[0-9A-Fa-f:.]{6})"
            r"(?=(?:[0-9A-Fa-f]{1,4}:){6}|[0-9A-Fa-f]{0,4}+(?::[0-9A-Fa-f]{1,4}+)*+::)"
            r"(?:[0-9A-Fa-f]{0,4}+:){2,7}+[0-9A-Fa-f]{0,4}+(?:(?:\.\d{1,3}){3})?(?![\w:]|\[[A-Z])"
        ),
        "near",
        ("::", ":"),
        validate=_valid_ipv6,
        resolve=_ipv6_end,
        before=40,
        after=40,
    ),
)

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


@dataclass(slots=True)
class Redaction:
    text: str
    counts: Counter[str]


Spans = list[tuple[int, int, str]]  # (start, end, label), left to right, not overlapping
# An empty Counter without `Counter.__init__` (Python code, most of the cost of a one-entry
# Counter): a record can hold a value in each of thousands of strings.
_NEW_COUNTER = Counter.__new__


def splice(text: str, spans: Spans, counts: Counter[str], at: Sequence[int] | None = None) -> str:
    """`text` with each span replaced by its typed placeholder, counted into `counts`. With
    `at`, spans are offsets of a view of `text` (masking.unescaped_view) and `at` maps them
    back onto `text`."""
    parts: list[str] = []
    pos = 0
    for start, end, label in spans:
        a, b = (start, end) if at is None else (at[start], at[end])
        parts.append(text[pos:a])
        parts.append(f"[{label}]")
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

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, label) spans, left to right. On overlap the detector
        listed first wins (secrets before numbers)."""
        n = len(text)
        if n < 6:
            return []
        found: list[tuple[int, int, int, str]] = []
        low: str | None = None
        runs: list[tuple[int, int, int]] | None = None
        for rank, det in enumerate(self.detectors):
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
                    runs = _digit_runs(text)
                windows = _digit_windows(det, text, runs)
            elif det.label == "IP":  # IPv6: anchored on colon pairs, not every colon
                if ":" not in text:
                    continue
                windows = _ipv6_windows(det, text)
            else:
                low = low or _lower(text)  # once, for the first detector that needs it
                windows = _near_windows(low, det.guards, det.before, det.after)
            if windows:
                self._scan_windows(det, rank, text, windows, found)
        return _leftmost(found) if found else []

    def _scan_windows(
        self,
        det: Detector,
        rank: int,
        text: str,
        windows: list[tuple[int, int]],
        found: list[tuple[int, int, int, str]],
    ) -> None:
        """`det`'s matches in `windows` of `text`, added to `found` as (start, rank, -end)."""
        joined = _join(text, windows) if det.scope == "digits" and len(windows) > 8 else None
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
                end = _shorter_valid(det, text, start, end) if group == 0 else -1
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
        """`_scan` of every window as one scan of their texts joined by newlines (`_join`): no
        digit detector matches across a newline, and each sees one as it sees a window's end.
        Text with many short numbers costs one regex search per match, not one per window
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


# A cut for a shorter candidate: a separator right after a non-separator.
_CUT = re.compile(r"(?<![ .\-/()])[ .\-/()]")


def _shorter_valid(det: Detector, text: str, start: int, end: int) -> int:
    """End of the longest valid match of `det` at `start` that stops before `end`, or -1.
    Validation first: it rejects most cuts without a regex match."""
    assert det.validate is not None
    for cut in reversed([m.start() for m in _CUT.finditer(text, start + 1, end)]):
        if det.validate(text[start:cut]) and det.pattern.fullmatch(text, start, cut):
            return cut
    return -1


# --- cards: every start of a run of joined digits, every length, in one pass -------------------
#
# "1 2 3 4 ..." makes every digit a candidate start with up to 7 candidate lengths, each a
# Luhn check: per start in Python that is about a microsecond per two characters. Runs with
# more digits than `_CARD_BULK` are first filtered in bulk: Luhn sums of every start and
# length at once with big-integer arithmetic (one byte per digit), masked by the issuer's
# first two digits and the shape of the run; only starts left over are checked one by one,
# with exactly the rules of `_CARD` + `_valid_card` + `_shorter_valid` (`_card_spans`: the
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
    # The greedy match ends before a space or at the run's end (taken as allowed by `_E`
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


def _join(text: str, windows: list[tuple[int, int]]) -> tuple[str, list[int]]:
    """The windows' texts joined by newlines, and where each starts in the result (one more
    entry: past the end)."""
    parts = [text[lo:hi] for lo, hi in windows]
    return "\n".join(parts), list(itertools.accumulate([len(p) + 1 for p in parts], initial=0))


def _find_cards(
    text: str, windows: list[tuple[int, int]], joined_starts: tuple[str, list[int]] | None
) -> list[tuple[int, int]]:
    """The spans `_scan` would find with `_CARD`, `_valid_card` and `_shorter_valid`: at each
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
    where it ends (`_E`)."""
    run_lo = run_hi
    while k >= run_hi:
        run += 1
        run_lo = run_hi + (len(_CARD_PAD) if run else 0)
        g = runs[run][1]
        run_hi = run_lo + len(g) - g.count(" ") - g.count("-")
    start, g = runs[run]
    return run, run_lo, run_hi, _END_OK.match(text, start + len(g)) is not None


def _card_spans_few(
    text: str, runs: list[tuple[int, str]], ds: str, shape: str, seps: str
) -> list[tuple[int, int]]:
    """`_find_cards` for a few digits: every start is tried."""
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
            if not _START_OK.match(text, runs[run][0]):
                continue
        elif shape[k - 1] != "S":
            continue
        # The greedy match: the longest length whose last digit may end a match (`_E`): the
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
    """`_find_cards` for long runs, from the bulk pass (`_card_candidates`): only its candidate
    starts are visited, and its bits already hold Luhn, the start after a space (or a run's
    start), an end before a separator (or the run's end) and no later than the greedy
    match's. Left to check: a run's own start and end (`_B`, `_E`), and the issuer's four
    digits where the first two do not tell the lengths."""
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
            start_ok = _START_OK.match(text, start) is not None
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


def _find_emails(text: str, windows: list[tuple[int, int]], _: object) -> list[tuple[int, int]]:
    """The spans a search of each window with the unbounded-start regex would find."""
    spans: list[tuple[int, int]] = []
    for lo, hi in windows:
        window = text[lo:hi]
        pos = 0
        while (m := _EMAIL.search(window, pos)) is not None:
            spans.append((lo + m.start(), lo + m.end()))
            pos = m.end()
            while window[pos : pos + 1] in _LOCAL and (m := _EMAIL_GLUED.match(window, pos)):
                spans.append((lo + m.start(), lo + m.end()))
                pos = m.end()
    return spans


def _digit_runs(text: str) -> list[tuple[int, int, int]]:
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


def _near_windows(
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


def _digit_windows(
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


def _ipv6_windows(det: Detector, text: str) -> list[tuple[int, int]]:
    n = len(text)
    return _merge(
        [
            (max(0, m.start() - det.before), min(n, m.end() + det.after))
            for m in _IPV6_CLUSTER.finditer(text)
        ]
    )


def _lower(text: str) -> str:
    """`text` lower-cased, offsets kept: "İ" lowers to two characters."""
    low = text.lower()
    if len(low) != len(text):
        low = text.replace("\u0130", "i").lower()
    return low


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


def clip_text(text: str, limit: int) -> str:
    """The first `limit` characters, never ending inside a placeholder."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    for m in PLACEHOLDER.finditer(text, max(0, limit - 20), limit + 20):
        if m.start() < limit < m.end():
            return text[: m.start()]
    return cut

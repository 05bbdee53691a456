"""What we do not store: credentials always, personal data and secrets by policy.

Credentials in headers and URLs are removed from every record before it is archived,
dead-lettered or turned into a row, under every capture setting. Personal data and secrets in
text are masked by `Redactor` where the capture policy says so (capture.py). The live request
is never touched: we only see logs of it.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "ocp-apim-subscription-key",
        "ocp-apim-trace-key",
        "cookie",
        "set-cookie",
        "x-functions-key",
    }
)
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
    if isinstance(headers, str) and headers.startswith("{"):
        try:
            headers = orjson.loads(headers)
        except orjson.JSONDecodeError:
            return headers
    if not isinstance(headers, dict):
        return headers
    if not any(k.lower() in CREDENTIAL_HEADERS for k in headers):
        return headers
    return {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}


_DROP_KEY, _HEADERS_KEY, _URL_KEY, _PLAIN_KEY = range(4)


# Record keys repeat in every record: classify each once.
@functools.lru_cache(maxsize=4096)  # bounded: a hostile record cannot grow it
def _key_kind(key: str) -> int:
    lk = key.lower()
    if lk in CREDENTIAL_HEADERS:
        return _DROP_KEY  # a policy that logged a credential as a field of its own
    if lk.endswith("headers"):
        return _HEADERS_KEY
    if lk.endswith("url") or lk == "uri":
        return _URL_KEY
    return _PLAIN_KEY


# Records of one source share their set of keys: which of them need a look is worked out
# once per key set.
_PLANS: dict[tuple[str, ...], tuple[tuple[str, int], ...]] = {}


def _scrub_level(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` without credentials: the same dict when it holds none (most records)."""
    keys = tuple(obj)
    plan = _PLANS.get(keys)
    if plan is None:
        plan = tuple((k, kind) for k in keys if (kind := _key_kind(k)) != _PLAIN_KEY)
        if len(_PLANS) < 1_000:
            _PLANS[keys] = plan
    changes: dict[str, Any] = {}
    for key, kind in plan:
        value = obj[key]
        if kind == _DROP_KEY:
            changes[key] = _DROPPED
        elif kind == _HEADERS_KEY:
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
                try:
                    value = orjson.loads(value)
                except orjson.JSONDecodeError:
                    continue
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
# long digit runs prefiltered in bulk (cards).

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*\]")

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
def _card_lengths(prefix: str) -> tuple[int, ...]:
    """The lengths 13-19, longest first, of a card number starting with these four digits."""
    return tuple(sorted((n for n in _card_range(prefix) if n >= 13), reverse=True))


# IBAN lengths by country (SWIFT IBAN registry, 2024). Other codes accept 15-34 characters,
# checked as the whole match only (`_iban_shorter`).
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


def _iban_shorter(det: Detector, text: str, start: int, end: int) -> int:
    """End of the IBAN at `start` that stops before `end` (at a space), or -1. A known country
    has one length, so one candidate; for other countries only the whole match is checked,
    which keeps the cost at one mod-97 per start (a run of 4-character groups after an
    unknown code would otherwise be checked at every group)."""
    s = text[start:end]
    expected = _IBAN_LENGTH.get(s[:2].upper())
    if expected is None:
        return -1
    spaces = 0
    i = s.find(" ")
    while i != -1 and i - spaces <= expected:
        if i - spaces == expected:
            return start + i if _valid_iban(s[:i]) else -1
        spaces += 1
        i = s.find(" ", i + 1)
    return -1


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)"  # 0-255 without leading zeros


def _valid_ipv4(text: str) -> bool:
    parts = text.split(".")
    if len(parts) != 4 or not all(
        p.isdigit() and int(p) <= 255 and (p == "0" or p[0] != "0") for p in parts
    ):
        return False
    # Loopback, "any" and broadcast addresses identify nobody.
    return parts[0] != "127" and text not in ("0.0.0.0", "255.255.255.255")


_HEXTETS = re.compile(r"[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*")
_OCTET_ASCII = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4_TAIL = re.compile(_OCTET_ASCII + r"(?:\." + _OCTET_ASCII + r"){3}")


def _valid_ipv6(text: str) -> bool:
    """What `ipaddress.IPv6Address` accepts (3.11 rules), without raising: an exception per
    rejected candidate costs microseconds, and a client can send a candidate every few
    characters."""
    if text.count(":") < 2 or len(text) < 6:
        return False
    parts = text.split(":")
    if "." in parts[-1]:
        if not _IPV4_TAIL.fullmatch(parts[-1]):
            return False
        parts[-1:] = ["0", "0"]
    if len(parts) > 9:
        return False
    inner = parts[1:-1]
    skips = inner.count("")
    if skips > 1:
        return False
    if skips:
        hi = inner.index("") + 1
        lo = len(parts) - hi - 1
        if not parts[0]:
            hi -= 1
            if hi:
                return False
        if not parts[-1]:
            lo -= 1
            if lo:
                return False
        if hi + lo > 7:
            return False
        used = parts[:hi] + parts[len(parts) - lo :]
    elif len(parts) != 8:
        return False
    else:
        used = parts
    return not used or _HEXTETS.fullmatch(":".join(used)) is not None


def _valid_phone(text: str) -> bool:
    digits = sum(map(str.isdigit, text))
    # E.164 allows 15 digits; a national number with a trunk 0 has at least 9 (dates have 8).
    return (8 if text[0] in "+(" or text[0] != "0" else 9) <= digits <= 15


def _phone_shorter(det: Detector, text: str, start: int, end: int) -> int:
    """`_shorter_valid` for phones: a shorter candidate has no more digits, so the walk stops
    as soon as too few are left (one count per cut, not one regex match per cut)."""
    need = 9 if text[start] == "0" else 8
    digits = sum(map(str.isdigit, text[start:end]))
    right = end
    for cut in reversed([m.start() for m in _CUT.finditer(text, start + 1, end)]):
        digits -= sum(map(str.isdigit, text[cut:right]))
        right = cut
        if digits < need:
            return -1
        if digits <= 15 and det.pattern.fullmatch(text, start, cut):
            return cut
    return -1


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
    # When a match fails `validate`: the end of the longest valid match at the same start
    # that stops at a separator, or -1 (default: `_shorter_valid`).
    shorter: Callable[[Detector, str, int, int], int] | None = None
    # Finds the spans itself in the windows, instead of a regex search per window.
    finder: Callable[[str, list[tuple[int, int]]], list[tuple[int, int]]] | None = None


_B = r"(?<![\w@.+/-])"  # left boundary: not inside a word, address, number or path
_E = r"(?![\w@/-]|\.\w)"  # right boundary
_START_OK, _END_OK = re.compile(_B), re.compile(_E)

# Card numbers: 13-19 digits, single spaces or hyphens between them. `_find_cards` works on
# runs of such digits (`_CARD_RUN`); `_CARD` is the same rule as one regex, kept as the
# reference the finder is tested against.
_CARD = re.compile(_B + r"\d(?:[ -]?\d){12,18}" + _E)
# Possessive: a run of joined digits is taken whole, never re-split.
_CARD_RUN = re.compile(r"[0-9](?:[ -]?[0-9]){12,}+")

# E-mail: the local part starts where a run of its characters starts, so the run is scanned
# once, not once from each of its characters ("a.a.a.a...@" was quadratic). `_find_emails`
# searches each window as a slice of its own, so the window start counts as a boundary (a long
# run is cut to the 64 characters before its "@", as before). Possessive labels: a label ends
# at its ".".
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]++\.)+[A-Za-z]{2,}\b")
# An address glued to the end of the previous match ("a@b.com-c@d.com"), tried once there.
_EMAIL_GLUED = re.compile(_EMAIL.pattern.removeprefix("(?<![A-Za-z0-9._%+-])"))

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
            r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]*+\.eyJ[A-Za-z0-9_-]{4,}+\.)"
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
        re.compile(r"(?i)\bbearer\s++([A-Za-z0-9._~+/-]{16,}+=*)"),
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
            r"(?i)\b(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd|ClientSecret"
            r"|client_secret)\s*+[=:]\s*+\"?([^;\s\"'&,]{4,})"
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
        re.compile(r"sk-(?<!\wsk-)(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}"),
        "text",
        ("sk-",),
    ),
    Detector(
        "API_KEY",
        re.compile(r"A[KS]IA(?<!\wA[KS]IA)[0-9A-Z]{16}\b"),  # `\b` moved after the literal
        "text",
        ("AKIA", "ASIA"),
    ),
    Detector(
        "API_KEY",
        # Azure keys are 32 hex characters; alone they look like hashes or GUIDs, so only in a
        # key context ("api-key: ...", "subscription key = ...", "key": "..."). Possessive
        # whitespace: two `\s*` around an optional separator split a run of spaces in
        # quadratically many ways.
        re.compile(
            r"(?i)(?:api[-_ ]?key|subscription[-_ ]?key|access[-_ ]?key|secret|\bkey)[\"']?\s*+"
            r"(?:[:=]|is)?\s*+[\"']?([0-9a-f]{32})\b"
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
        finder=lambda text, windows: _find_emails(text, windows),
    ),
    Detector(
        "IBAN",
        # Digits make up most of an IBAN; the window reaches back for "GB29 NWBK " before them.
        # No leading \b: `word_start` checks the left boundary (the regex stays fast). Bounded
        # groups; candidates shorter than the match are one per start (`_iban_shorter`).
        re.compile(r"[A-Z][A-Z][0-9][0-9](?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
        "digits",
        validate=_valid_iban,
        word_start=True,
        min_digits=8,
        before=14,
        shorter=_iban_shorter,
    ),
    Detector(
        "CARD",
        _CARD,
        "digits",
        validate=_valid_card,
        min_digits=13,
        finder=lambda text, windows: _find_cards(text, windows),
    ),
    Detector(
        "SSN",
        re.compile(_B + r"(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}" + _E),
        "digits",
        min_digits=9,
    ),
    Detector(
        "PHONE",
        re.compile(
            _B
            + r"(?:"
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
        shorter=_phone_shorter,
    ),
    Detector(
        "IP",
        # The octet rules are in the regex (no validation call per dotted number): not
        # loopback, not 0.0.0.0 or 255.255.255.255, each octet 0-255 without leading zeros.
        re.compile(
            _B
            + r"(?!127\.|0\.0\.0\.0(?!\d)|255\.255\.255\.255(?!\d))"
            + _OCTET
            + r"(?:\."
            + _OCTET
            + r"){3}"
            + _E
        ),
        "digits",
    ),
    Detector(
        "IP",
        # One start per run of address characters (lookbehind); the lookaheads skip runs that
        # cannot hold an address (fewer than 6 characters, or neither "::" nor 6 full groups)
        # before `_valid_ipv6` is called.
        re.compile(
            r"(?<![\w:.])(?=[0-9A-Fa-f:.]{6})"
            r"(?=(?:[0-9A-Fa-f]{1,4}:){6}|[0-9A-Fa-f]{0,4}+(?::[0-9A-Fa-f]{1,4}+)*+::)"
            r"(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:\.\d{1,3}){0,3}(?![\w:])"
        ),
        "near",
        ("::", ":"),
        validate=_valid_ipv6,
        before=40,
        after=40,
    ),
)

# Runs of digits and the separators numbers are written with, holding 4 digits or more; windows
# for "digits" detectors. Runs whose windows (3 characters before, 2 after) touch are one match:
# a text of many short numbers costs one Python step per cluster, not per number. Possessive:
# a run is taken whole.
_DIGIT_RUN = re.compile(r"[0-9](?=(?:[ ().:/-]*+[0-9]){3})[0-9 ().:/-]{4,}+")
_DIGIT_WINDOW = re.compile(_DIGIT_RUN.pattern + r"(?:[\s\S]{0,5}?" + _DIGIT_RUN.pattern + r")*+")
# IPv6 anchors: two colons with at most 4 hex digits between them (literal-led: fast to scan),
# chained into one match while each next anchor starts within 78 characters of the previous
# one's end (its window touches): one match per cluster, not per anchor.
_IPV6_CLUSTER = re.compile(r":[0-9A-Fa-f]{0,4}:(?:[\s\S]{0,78}?:[0-9A-Fa-f]{0,4}:)*+")


@dataclass(slots=True)
class Redaction:
    text: str
    counts: Counter[str]


Spans = list[tuple[int, int, str]]  # (start, end, label), left to right, not overlapping


def apply_spans(text: str, spans: Spans) -> Redaction:
    """`text` with each span replaced by its typed placeholder."""
    if not spans:
        return Redaction(text, Counter())
    parts: list[str] = []
    counts: Counter[str] = Counter()
    pos = 0
    for start, end, label in spans:
        parts.append(text[pos:start])
        parts.append(f"[{label}]")
        counts[label] += 1
        pos = end
    parts.append(text[pos:])
    return Redaction("".join(parts), counts)


class PatternError(ValueError):
    """A custom redaction pattern that cannot be used; the message names it."""


class Redactor:
    """Masks personal data and secrets in text with typed placeholders (`[EMAIL]`, ...)."""

    def __init__(self, custom: Sequence[tuple[str, str]] = ()) -> None:
        detectors = list(DETECTORS)
        for name, pattern in custom:
            label = re.sub(r"[^A-Z0-9_]", "_", name.upper())
            if not label or not label[0].isalpha():
                raise PatternError(f"redaction pattern name {name!r}: must start with a letter")
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise PatternError(f"redaction pattern {name!r}: invalid regex ({exc})") from None
            if compiled.search(""):
                raise PatternError(f"redaction pattern {name!r}: matches the empty string")
            detectors.append(Detector(label, compiled, "text"))
        self.detectors = tuple(detectors)

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
                if det.guards:
                    for g in det.guards:
                        if g in text:
                            break
                    else:
                        continue
                windows: list[tuple[int, int]] = [(0, n)]
            elif scope == "digits":
                if runs is None:
                    runs = _digit_runs(text)
                windows = [
                    (max(0, lo - det.before) if det.before else lo, hi)
                    for lo, hi, digits in runs
                    if digits >= det.min_digits
                    and (det.needs is None or text.count(det.needs[0], lo, hi) >= det.needs[1])
                ]
            elif det.label == "IP":  # IPv6: anchored on colon pairs, not every colon
                if ":" not in text:
                    continue
                windows = _merge(
                    [
                        (max(0, m.start() - det.before), min(n, m.end() + det.after))
                        for m in _IPV6_CLUSTER.finditer(text)
                    ]
                )
            else:
                if low is None:
                    low = text.lower()
                    if len(low) != n:  # "İ" lowers to two characters: keep offsets aligned
                        low = text.replace("\u0130", "i").lower()
                windows = _near_windows(low, det.guards, det.before, det.after)
            if not windows:
                continue
            if det.finder is not None:
                found += [(a, b, rank, det.label) for a, b in det.finder(text, windows)]
                continue
            for lo, hi in windows:
                self._scan(det, rank, text, lo, hi, found)
        if not found:
            return []
        found.sort(key=lambda f: (f[0], f[2], -f[1]))
        out: list[tuple[int, int, str]] = []
        for start, end, _, label in found:
            if out and start < out[-1][1]:
                continue  # overlaps a span taken by an earlier or higher-priority detector
            out.append((start, end, label))
        return out

    @staticmethod
    def _scan(
        det: Detector,
        rank: int,
        text: str,
        lo: int,
        hi: int,
        found: list[tuple[int, int, int, str]],
    ) -> None:
        pos = lo
        search = det.pattern.search
        while pos < hi:
            m = search(text, pos, hi)
            if m is None:
                return
            start, end = m.span(det.group)
            if det.validate is not None and not det.validate(m.group(det.group)):
                # Greedy matches run into the next number ("+33 6 12 34 56 78 020 ...");
                # try the same start with fewer groups before moving on.
                if det.group:
                    end = -1
                elif det.shorter is not None:
                    end = det.shorter(det, text, start, end)
                else:
                    end = _shorter_valid(det, text, start, end)
                if end < 0:
                    pos = m.start() + 1
                    continue
            pos = max(m.end() if end == m.end(det.group) else end, m.start() + 1)
            if det.word_start and start > 0 and text[start - 1].isalnum():
                continue
            if start < end:
                found.append((start, end, rank, det.label))

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
# with exactly the rules of `_CARD` + `_valid_card` + `_shorter_valid`.

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
_CAN_FOLLOW = bytes(1 if chr(v) in "Sx" else 0 for v in range(256))  # a start may follow
_NONZERO = re.compile(rb"[^\x00]")


@functools.cache
def _card_two_digits() -> dict[int, bytes]:
    """Per length: a translation table from the first two digits (as 0-99) to 1 if a card
    number of that length can start with them."""
    ok = {n: bytearray(256) for n in range(13, 20)}
    for p in range(10_000):
        for n in _card_range(f"{p:04d}"):
            if n >= 13:
                ok[n][p // 100] = 1
    return {n: bytes(t) for n, t in ok.items()}


def _card_candidates(ds: str, shape: str) -> bytes:
    """Per index of `ds`, bit n - 13 set where length n passes Luhn, may end (shape), and the
    first two digits allow it: a superset of the starts (and lengths) of valid cards."""
    n = len(ds)
    values = ds.encode().translate(_VALUES)
    x = int.from_bytes(values, "little")
    two = (x * 10 + (x >> 8)).to_bytes(n, "little")  # byte k: 10 * digit k + digit k + 1
    shape_b = shape.encode()
    starts = int.from_bytes((b"x" + shape_b[:-1]).translate(_CAN_FOLLOW), "little")
    tables = _card_two_digits()
    allowed = {n: int.from_bytes(two.translate(t), "little") & starts for n, t in tables.items()}
    if not any(allowed.values()):  # no run of digits starts like a card number
        return bytes(n)
    doubled = values.translate(_TIMES_TWO)
    # Digit j weighted as Luhn weighs it when the number ends on an even (a) / odd (b) index.
    wa, wb = bytearray(values), bytearray(doubled)
    wa[1::2], wb[1::2] = doubled[1::2], values[1::2]
    xa, xb = int.from_bytes(wa, "little"), int.from_bytes(wb, "little")
    even = int.from_bytes(b"\xff\x00" * (n // 2 + 1), "little") & ((1 << (8 * n)) - 1)
    sa, sb = xa, xb
    for i in range(1, 12):  # byte k of sa: sum of wa[k], ..., wa[k + i]; at most 19 * 9 < 256
        sa += xa >> (8 * i)
        sb += xb >> (8 * i)
    can_end = int.from_bytes(shape_b.translate(_CAN_END), "little")
    hits = 0
    for length in range(13, 20):
        sa += xa >> (8 * (length - 1))
        sb += xb >> (8 * (length - 1))
        if not allowed[length]:
            continue
        # Starts k with k + length - 1 even take the a-weights.
        pick = even if length % 2 else even ^ ((1 << (8 * n)) - 1)
        sums = (sa & pick) | (sb & ~pick)
        ok = int.from_bytes(sums.to_bytes(n, "little").translate(_TENS), "little")
        hits |= (ok & allowed[length] & (can_end >> (8 * (length - 1)))) << (length - 13)
    return hits.to_bytes(n, "little")


def _find_cards(text: str, windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans `_scan` would find with `_CARD`, `_valid_card` and `_shorter_valid`: at each
    start, the longest valid length among the greedy match and its cuts at a separator."""
    runs = [(m.start(), m.group()) for lo, hi in windows for m in _CARD_RUN.finditer(text, lo, hi)]
    if not runs:
        return []
    joined = _CARD_PAD.join([g for _, g in runs])
    ds = joined.translate(_CARD_DIGITS)
    shape = joined.translate(_CARD_SHAPE).replace("d ", "S").replace("d-", "H")
    shape = shape.replace("dx", "Ex")[:-1] + "E"
    # Checked in bulk when long: bit n - 13 of bits[k] (Luhn included), else every start.
    bits = _card_candidates(ds, shape) if len(ds) > _CARD_BULK else b""
    spans: list[tuple[int, int]] = []
    run = -1
    run_lo = run_hi = 0  # the current run's digits in `ds`
    end_ok: bool | None = None
    seen, extra = 0, 0  # separators before digit `seen` of the current run
    k = -1
    while True:
        k += 1
        if bits:
            if (m := _NONZERO.search(bits, k)) is None:
                break
            k = m.start()
        elif k >= len(ds):
            break
        if shape[k] == "x":
            continue
        while k >= run_hi:
            run += 1
            run_lo = run_hi + (len(_CARD_PAD) if run else 0)
            g = runs[run][1]
            run_hi = run_lo + len(g) - g.count(" ") - g.count("-")
            end_ok, seen, extra = None, run_lo, 0
        top = min(19, run_hi - k)
        if top < 13:
            continue
        if k == run_lo:
            if not _START_OK.match(text, runs[run][0]):
                continue
        elif shape[k - 1] != "S":
            continue
        # The greedy match: the longest length whose last digit may end a match (`_E`).
        greedy = top
        while greedy >= 13:
            c = shape[k + greedy - 1]
            if c == "S":
                break
            if c == "E":
                if end_ok is None:
                    start, g = runs[run]
                    end_ok = _END_OK.match(text, start + len(g)) is not None
                if end_ok:
                    break
            greedy -= 1
        else:
            continue
        passed = bits[k] if bits else 0
        for n in _card_lengths(ds[k : k + 4]):
            if (
                n <= greedy
                and (n == greedy or shape[k + n - 1] in "SH")
                and (passed >> (n - 13) & 1 if bits else _luhn(ds[k : k + n]))
            ):
                break
        else:
            continue
        extra += shape.count("S", seen, k) + shape.count("H", seen, k)
        first = runs[run][0] + (k - run_lo) + extra
        extra += shape.count("S", k, k + n - 1) + shape.count("H", k, k + n - 1)
        seen = k + n - 1
        spans.append((first, runs[run][0] + (seen - run_lo) + extra + 1))
        k += n - 1  # the next start is past this card
    return spans


def _find_emails(text: str, windows: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The spans a search of each window with the unbounded-start regex would find."""
    spans: list[tuple[int, int]] = []
    for lo, hi in windows:
        window = text[lo:hi]
        pos = 0
        while (m := _EMAIL.search(window, pos)) is not None:
            spans.append((lo + m.start(), lo + m.end()))
            pos = m.end()
            while (m := _EMAIL_GLUED.match(window, pos)) is not None:
                spans.append((lo + m.start(), lo + m.end()))
                pos = m.end()
    return spans


def _digit_runs(text: str) -> list[tuple[int, int, int]]:
    """Windows around runs of digits, with how many digits the runs hold; merged when they
    touch. Widened a little to the left for a leading "(" or "+"."""
    n = len(text)
    out = []
    for m in _DIGIT_WINDOW.finditer(text):
        runs = "".join(_DIGIT_RUN.findall(m.group()))  # not the digits between runs
        out.append(
            (
                max(0, m.start() - 3),
                min(n, m.end() + 2),
                len(runs) - len(runs.translate(_DROP_DIGITS)),
            )
        )
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
    if len(guards) > 1:
        windows.sort()
    return _merge(windows)


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

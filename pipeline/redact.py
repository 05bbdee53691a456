"""What we do not store: credentials always, personal data and secrets by policy.

Credentials in headers and URLs are removed from every record before it is archived,
dead-lettered or turned into a row, under every capture setting. Personal data and secrets in
text are masked by `Redactor` where the capture policy says so (capture.py). The live request
is never touched: we only see logs of it.
"""

from __future__ import annotations

import functools
import ipaddress
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
# Query parameters that carry keys or tokens (APIM subscription key, AOAI key, SAS signature).
_URL_SECRET = re.compile(
    r"([?&](?:api-key|subscription-key|sig|code|access_token|key)=)[^&#\s\"]*",
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

PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*\]")


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_prefix(d: str) -> bool:
    """Issuer ranges of the common networks with their lengths (ISO/IEC 7812 IINs)."""
    n = len(d)
    if d[0] == "4":
        return n in (13, 16, 19)  # Visa
    two, four = int(d[:2]), int(d[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16  # Mastercard
    if two in (34, 37):
        return n == 15  # Amex
    if d.startswith(("6011", "65")) or 644 <= int(d[:3]) <= 649:
        return 16 <= n <= 19  # Discover
    if 3528 <= four <= 3589:
        return 16 <= n <= 19  # JCB
    if two in (36, 38, 39) or 300 <= int(d[:3]) <= 305:
        return 14 <= n <= 19  # Diners
    if two == 62:
        return 16 <= n <= 19  # UnionPay
    if d.startswith(("50", "56", "57", "58", "6")):
        return 12 <= n <= 19  # Maestro
    return False


def _valid_card(text: str) -> bool:
    digits = "".join(c for c in text if c.isdigit())
    return 13 <= len(digits) <= 19 and _card_prefix(digits) and _luhn(digits)


# IBAN lengths by country (SWIFT IBAN registry; the common ones, others accept 15-34).
_IBAN_LENGTH = {
    "AD": 24, "AE": 23, "AT": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29, "CH": 21, "CY": 28,
    "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23,
    "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "KW": 30, "KZ": 20,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28,
    "PT": 25, "QA": 29, "RO": 24, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26,
    "UA": 29,
}  # fmt: skip


def _valid_iban(text: str) -> bool:
    s = text.replace(" ", "").upper()
    expected = _IBAN_LENGTH.get(s[:2])
    if (expected is not None and len(s) != expected) or not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _valid_ipv4(text: str) -> bool:
    parts = text.split(".")
    if len(parts) != 4 or not all(
        p.isdigit() and int(p) <= 255 and (p == "0" or p[0] != "0") for p in parts
    ):
        return False
    # Loopback, "any" and broadcast addresses identify nobody.
    return parts[0] != "127" and text not in ("0.0.0.0", "255.255.255.255")


def _valid_ipv6(text: str) -> bool:
    if text.count(":") < 2 or len(text) < 6:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _valid_phone(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    # E.164 allows 15 digits; a national number with a trunk 0 has at least 9 (dates have 8).
    return (8 if text[0] in "+(" or text[0] != "0" else 9) <= digits <= 15


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


_B = r"(?<![\w@.+/-])"  # left boundary: not inside a word, address, number or path
_E = r"(?![\w@/-]|\.\w)"  # right boundary

DETECTORS: tuple[Detector, ...] = (
    Detector(
        "PRIVATE_KEY",
        re.compile(
            r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.S,
        ),
        "text",
        ("-----BEGIN",),
    ),
    Detector(
        "JWT",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        "text",
        ("eyJ",),
    ),
    Detector(
        "TOKEN",
        re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{16,}=*)"),
        "near",
        ("bearer",),
        group=1,
        before=0,
        after=4096,
    ),
    Detector(
        "SECRET",
        re.compile(
            r"(?i)\b(?:AccountKey|SharedAccessKey|SharedAccessSignature|Password|Pwd|ClientSecret"
            r"|client_secret)\s*[=:]\s*\"?([^;\s\"'&,]{4,})"
        ),
        "near",
        ("accountkey", "sharedaccess", "password", "pwd", "clientsecret", "client_secret"),
        group=1,
        before=0,
        after=400,
    ),
    Detector(
        "API_KEY",
        re.compile(r"\bsk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20,}"),
        "text",
        ("sk-",),
    ),
    Detector("API_KEY", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "text", ("AKIA", "ASIA")),
    Detector(
        "API_KEY",
        # Azure keys are 32 hex characters; alone they look like hashes or GUIDs, so only in a
        # key context ("api-key: ...", "subscription key = ...", "key": "...").
        re.compile(
            r"(?i)(?:api[-_ ]?key|subscription[-_ ]?key|access[-_ ]?key|secret|\bkey)[\"']?\s*"
            r"(?:[:=]|is)?\s*[\"']?([0-9a-f]{32})\b"
        ),
        "near",
        ("key", "secret"),
        group=1,
        before=20,
        after=60,
    ),
    Detector(
        "EMAIL",
        re.compile(r"[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b"),
        "near",
        ("@",),
        before=64,  # RFC 5321: a local part has at most 64 characters
        after=255,
    ),
    Detector(
        "IBAN",
        # Digits make up most of an IBAN; the window reaches back for "GB29 NWBK " before them.
        # No leading \b: `word_start` checks the left boundary (the regex stays fast).
        re.compile(r"[A-Z][A-Z][0-9][0-9](?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
        "digits",
        validate=_valid_iban,
        word_start=True,
        min_digits=8,
        before=14,
    ),
    Detector(
        "CARD",
        re.compile(_B + r"\d(?:[ -]?\d){12,18}" + _E),
        "digits",
        validate=_valid_card,
        min_digits=13,
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
            # international: +CC then groups, optionally a (0) or an area code in parentheses
            _B
            + r"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){1,5}"
            + _E
            # North America: (555) 123-4567, 555-123-4567, 555.123.4567
            + r"|"
            + _B
            + r"(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
            + _E
            # national numbers with a trunk 0: UK 020 7946 0958, FR 06 12 34 56 78, DE 030 1234567
            + r"|"
            + _B
            + r"0[1-9]\d{0,3}(?:[ ./-]\d{2,8}){1,4}"
            + _E
        ),
        "digits",
        validate=_valid_phone,
        min_digits=8,
    ),
    Detector(
        "IP", re.compile(_B + r"\d{1,3}(?:\.\d{1,3}){3}" + _E), "digits", validate=_valid_ipv4
    ),
    Detector(
        "IP",
        re.compile(
            r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:\.\d{1,3}){0,3}(?![\w:])"
        ),
        "near",
        ("::", ":"),
        validate=_valid_ipv6,
        before=40,
        after=40,
    ),
)

# Runs of digits and the separators numbers are written with; windows for "digits" detectors.
_DIGIT_RUN = re.compile(r"[0-9][0-9 ().:/-]{4,}")
# IPv6 anchors: two colons with at most 4 hex digits between them (literal-led: fast to scan).
_IPV6_ANCHOR = re.compile(r":[0-9A-Fa-f]{0,4}:")


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
            else:
                if det.label == "IP":  # IPv6: anchored on colon pairs, not every colon
                    if ":" not in text:
                        continue
                    anchors = [m.start() for m in _IPV6_ANCHOR.finditer(text)]
                else:
                    if low is None:
                        low = text.lower()
                    anchors = []
                    for g in det.guards:
                        if g in low:
                            anchors += _occurrences(low, g)
                if not anchors:
                    continue
                anchors.sort()
                windows = _merge([(max(0, i - det.before), min(n, i + det.after)) for i in anchors])
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
                end = _shorter_valid(det, text, start, end) if det.group == 0 else -1
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
        for piece in pieces:
            lo, hi = offset, offset + len(piece)
            offset = hi
            parts: list[str] = []
            cursor = lo
            for start, end, label in spans:
                if end <= lo or start >= hi:
                    continue
                parts.append(joined[cursor : max(start, lo)])
                if start >= lo:
                    parts.append(f"[{label}]")
                cursor = min(end, hi)
            parts.append(joined[cursor:hi])
            out.append("".join(parts))
        return out, counts


_SEPARATORS = frozenset(" .-/()")


def _shorter_valid(det: Detector, text: str, start: int, end: int) -> int:
    """End of the longest valid match of `det` at `start` that stops before `end`, or -1."""
    assert det.validate is not None
    for cut in range(end - 1, start, -1):
        if text[cut] in _SEPARATORS and text[cut - 1] not in _SEPARATORS:
            m = det.pattern.fullmatch(text, start, cut)
            if m is not None and det.validate(m.group()):
                return cut
    return -1


_NOT_DIGITS = str.maketrans(dict.fromkeys(" ().:/-"))


def _digit_runs(text: str) -> list[tuple[int, int, int]]:
    """Windows around runs of digits, with how many digits each holds; merged when they
    touch. Widened a little to the left for a leading "(" or "+"."""
    runs: list[tuple[int, int, int]] = []
    n = len(text)
    for m in _DIGIT_RUN.finditer(text):
        run = m.group()
        digits = len(run.translate(_NOT_DIGITS))
        if digits < 4:
            continue
        lo, hi = max(0, m.start() - 3), min(n, m.end() + 2)
        if runs and lo <= runs[-1][1]:
            runs[-1] = (runs[-1][0], hi, runs[-1][2] + digits)
        else:
            runs.append((lo, hi, digits))
    return runs


def _occurrences(text: str, needle: str) -> list[int]:
    out = []
    i = text.find(needle)
    while i != -1:
        out.append(i)
        i = text.find(needle, i + 1)
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

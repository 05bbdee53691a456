"""The personal data and secret detectors: their patterns, validators and where each looks.

Detectors are fast, offline and validated where a checksum exists (Luhn for cards, mod-97
for IBANs), so look-alikes (order numbers, GUIDs, timestamps, versions, model ids) stay.
Each match becomes a typed placeholder; `Redaction.counts` (redactor.py) says how many of
each type.

A client writes the text (request bodies up to 200 KB), so every detector runs in time
linear in it with a small constant, whatever it holds: a regex that tries a match from
every character of a run and rescans the run each time is quadratic. The means, named at
each pattern: a left boundary, so a run of candidate characters is tried from its first
character only; possessive quantifiers (`*+`, `{m,n}+`) where giving characters back can
never lead to a match; validation inside the regex where it can be written as one (IPv4
octets); and for checksums, every candidate length of a match checked in one pass, with
long digit runs prefiltered in bulk (cards.py). A regex still tries a match at every digit
of its window, and a window of digit runs ("1 2 3 ...", "12 34 ...") can be the whole text:
detectors whose matches hold a rarer shape (an SSN's 3-2-4 digit groups; a phone's "+",
trunk "0" or 3-3-4 groups) scan only the parts of long windows around it (`Anchors`,
windows.py), found by string searches.

Text is not always written in the characters the patterns name: digits in other scripts
(full-width ０９０-１２３４-５６７８, Arabic-Indic ٠٩٠), no-break spaces between digit groups,
invisible characters inside an address. The detectors read the text as reading.py gives it, so
the patterns, validators and checksums below only ever see ASCII digits and separators.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.protect.boundaries import (
    AFTER_PLACEHOLDER,
    BEFORE_PLACEHOLDER,
    LEFT_EDGE,
    PLACEHOLDER,
    RIGHT_EDGE,
)
from pipeline.protect.cards import CARD, find_cards, valid_card
from pipeline.protect.fields import SECRET_KEY_WORDS, secret_key

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
    (`shorter_valid` rules): found by one regex match, not one validation per cut."""
    need = 9 if text[start] == "0" else 8
    digits = len(text[start:end].translate(_PHONE_SEPARATORS))
    if digits <= 15:
        return end if digits >= need else -1
    # The prefix ends at a group boundary of the match past its first 7 digits (country code
    # and parentheses hold fewer): it is a match itself, as `shorter_valid` requires.
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
    # Instead of `validate` and `shorter_valid`: end of the longest valid match at `start`
    # that ends where the match does or at a separator before, or -1.
    resolve: Callable[[Detector, str, int, int], int] | None = None
    # Finds the spans itself in the windows (and their `join_windows`, scope "digits"), instead of a
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


# E-mail: the local part starts where a run of its characters starts, so the run is scanned
# once, not once from each of its characters ("a.a.a.a...@" was quadratic). `_find_emails`
# searches each window as a slice of its own, so the window start counts as a boundary (a long
# run is cut to the 64 characters before its "@", as before). Possessive labels: a label ends
# at its ".".
# Addresses are written in the letters of alphabetic scripts too (RFC 6531/6532: "jörg.müller@
# bäckerei.de", "иван@пример.рф"): Latin with its accents, Greek, Cyrillic. Not in the letters
# of scripts written without spaces: the domain ends where these letters and digits do, so a
# CJK letter right after it ("a@b.comです") or before it ("メールa@b.com") is not taken in.
_LETTER = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u03ff\u0400-\u04ff\u1e00-\u1eff"
_EMAIL_BODY = (
    f"[{_LETTER}0-9._%+-]+()@(?:[{_LETTER}0-9-]++\\.)+[{_LETTER}]{{2,}}(?![{_LETTER}0-9_])"
    + BEFORE_PLACEHOLDER
)
_EMAIL = re.compile(f"(?<![{_LETTER}0-9._%+-])" + AFTER_PLACEHOLDER + _EMAIL_BODY)
# An address glued to the end of the previous match ("a@b.com-c@d.com"), tried once there.
_EMAIL_GLUED = re.compile(_EMAIL_BODY)


# RFC 5321: a local part has at most 64 characters. A longer run before an `@` is masked from
# its last 64: where a match starts must not depend on where its window started (the
# window of an `@` alone starts 64 before it; windows of several merge and start earlier).
_LOCAL_MAX = 64


def _find_emails(text: str, windows: list[tuple[int, int]], _: object) -> list[tuple[int, int]]:
    """The spans a search of each window with the unbounded-start regex would find, each
    starting at most _LOCAL_MAX characters before its `@`."""
    spans: list[tuple[int, int]] = []
    search, glued = _EMAIL.search, _EMAIL_GLUED.match
    # Per match a few C calls and no Python function: text can hold an address every 7
    # characters. Group 1 is empty, at the "@" (the local part's end).
    for lo, hi in windows:
        window = text[lo:hi]
        pos = 0
        while (m := search(window, pos)) is not None:
            while m is not None:  # then each address glued to its end
                start, pos = m.span()
                spans.append((lo + max(start, m.start(1) - _LOCAL_MAX), lo + pos))
                m = glued(window, pos)
    return spans


# Anchor alphabets (`Anchors`): one byte per character of a window.
_AS_D = bytes.maketrans(b"0123456789", b"dddddddddd")
_AS_DB = bytes(ord("d") if 48 <= c <= 57 else ord("b") for c in range(256))
_ZERO_AS_O = bytes.maketrans(b"0123456789", b"oddddddddd")  # "od": 0 then 1-9


# What the SECRET detector looks for, lower-cased (also the redaction prefilter's words):
# "pass" is in password, passwd, Passwort, passphrase and "mot de passe"; "sig=" is a shared
# access signature's, in a URL or a connection string. Each word costs a search of every
# text, so they are few.
SECRET_WORDS = ("pass", "secret", "pwd", "accountkey", "sharedaccess", "sig=")


# The five dashes of PEM armour: four or five, or what a word processor makes of them (an
# em dash and an en dash).
_DASHES = "(?:-{4,5}+|[\u2013\u2014][-\u2013\u2014]{1,4}+)"
# What the keys that name their issuer hold: GitHub's "ghp_" and "github_pat_", Stripe's
# "sk_live_", an "_" (a single character is searched for fastest, and prose seldom has it).
KEY_PREFIXES = ("_",)

# A URL's user and password: the user ends at ":", the password at "@" (possessive).
_URL_USERINFO = re.compile(r"[^\s/:@\"'<>]{1,256}+:((?!\[[A-Z])[^\s/@\"'<>]{1,256}+)@")


def _find_url_passwords(text: str) -> list[tuple[int, int]]:
    """The password of each "scheme://user:password@" in `text`: a match right after each
    "://" (one per occurrence, never longer than a URL's user and password)."""
    spans: list[tuple[int, int]] = []
    i = text.find("://")
    while i != -1:
        if (m := _URL_USERINFO.match(text, i + 3)) is not None:
            spans.append(m.span(1))
        i = text.find("://", i + 3)
    return spans


def offset_lower(text: str) -> str:
    """`text` lower-cased, offsets kept: "İ" lowers to two characters."""
    low = text.lower()
    if len(low) != len(text):
        low = text.replace("\u0130", "i").lower()
    return low


# A JSON member that names a secret ("apiKey", "client_secret", "connectionString":
# fields.secret_key), in JSON written as text: a JSON answer's content, a body APIM cut,
# joined stream deltas, a chunk of an LLM-log message; or escaped once or more inside other
# text, a log line pasted into a prompt (`{\"apiKey\":\"...\"}`: each quote then has the same
# run of backslashes before it). Decoded JSON is masked by its walk (masking._secret_value);
# this reads the same members where nothing decodes them. The search (of the text lower-cased)
# stops only at the end of a secret's name (fields.SECRET_KEY_WORDS) followed by a quote and a
# colon; the name is then read back to its opening quote (at most 64 characters) and checked
# whole.
_SECRET_MEMBER = re.compile(
    "(?:" + "|".join(SECRET_KEY_WORDS) + r")[_\-. ]{0,3}(\\*)\"[ \t\r\n]*+:[ \t\r\n]*+"
)
_MEMBER_NAME_MAX = 64
# What JSON read as text must hold for a member to be there (the detector's guards, and the
# prefilter's: policy.py).
MEMBER_COLONS = ('":', '" :')
_JSON_NUMBER = re.compile(r"-?[0-9][0-9.eE+-]{0,63}")


def _find_secret_members(text: str) -> list[tuple[int, int]]:
    """The value of each member of `text` whose name is a secret's: a string (to its closing
    quote, or to the end of a cut text) or a number. Linear: each match is read forward
    once, and the search goes on past it."""
    spans: list[tuple[int, int]] = []
    low = offset_lower(text)  # a case-sensitive search: several times faster than (?i)
    pos = 0
    while (m := _SECRET_MEMBER.search(low, pos)) is not None:
        pos = m.end()
        quote = m.group(1) + '"'
        level = len(quote).bit_length() - 1  # a quote at level k has 2**k - 1 backslashes
        if len(quote) != 1 << level:
            continue
        name_end = m.start(1)
        open_at = text.rfind(quote, max(0, name_end - _MEMBER_NAME_MAX - len(quote)), name_end)
        if open_at < 0 or text[open_at - 1 : open_at] == "\\":
            continue
        name = text[open_at + len(quote) : name_end]
        if "\\" in name or '"' in name or not secret_key(name):
            continue
        if text.startswith(quote, pos):
            start = pos + len(quote)
            end = _string_end(text, start, level)
        elif (number := _JSON_NUMBER.match(text, pos)) is not None:
            start, end = number.span()
        else:
            continue  # true, false, null, an object: nothing to mask as text
        # A value masked already (an archive replayed) stays, as decoded JSON's does.
        if start < end and PLACEHOLDER.fullmatch(text, start, end) is None:
            spans.append((start, end))
            pos = max(pos, end)
    return spans


# What follows a JSON value: a quote followed by anything else was inside the value.
_AFTER_VALUE = re.compile(r"[ \t\r\n]*+(?:[,}\]]|\Z)")


def _string_end(text: str, start: int, level: int) -> int:
    """Where a JSON string opened at `start`, `level` escapes deep, ends: before the quote
    that closes it once its backslashes are undone `level` times (a quote inside it is
    still escaped then), or where an outer string ends, or at the end of a cut text."""
    i = start
    while (q := text.find('"', i)) != -1:
        run = q
        while run > start and text[run - 1] == "\\":
            run -= 1
        n = q - run
        for _ in range(level):
            if n % 2 == 0:
                return run  # unescaped at an outer level: the outer string ends here
            n = (n - 1) // 2
        if n % 2 == 0 and (level or _AFTER_VALUE.match(text, q + 1)):
            # At the top level, only a quote that ends the value closes it: text read on its
            # unescaped view (a JSON answer's preview, a cut body) shows a `\\"` or `\\u0022`
            # inside the value as a bare quote (`"Xy7"kLq"`), and it does not end there.
            return q - ((1 << level) - 1)
        i = q + 1
    return len(text)


# Microsoft's identifiable keys (security-utilities SEC101/200, SEC101/156): an Azure AI
# services key of 84 characters with the signature "JQQJ9" at character 53, and an Entra ID
# client secret with "8Q~" at character 4. Found from their signature, then read around it.
IDENTIFIABLE = ("JQQJ9", "~")
_CASK = re.compile(
    r"[A-Za-z0-9]{52}JQQJ9[9DH][A-Za-z0-9][A-L][A-Za-z0-9]{16}[A-Za-z][A-Za-z0-9]{7}"
    r"(?:[A-Za-z0-9]{2}==)?(?![A-Za-z0-9])"
)
_ENTRA = re.compile(r"[A-Za-z0-9_~.-]{3}8Q~[A-Za-z0-9_~.-]{34}(?![A-Za-z0-9_~.+/=-])")
_KEY_CHARS = {"JQQJ9": re.compile(r"[A-Za-z0-9]"), "8Q~": re.compile(r"[A-Za-z0-9_~.+/=-]")}


# A fixed prefix, then a run of the key's characters, not inside a longer word.
_PREFIXED = re.compile(
    r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,}+"
    r"|[rs]k_live_[0-9A-Za-z]{20,}+)(?![A-Za-z0-9_])"
)


def _find_named_keys(text: str) -> list[tuple[int, int]]:
    """Spans of keys that name their issuer (`_PREFIXED`) and of identifiable keys."""
    prefixed = [m.span() for m in _PREFIXED.finditer(text)] if "_" in text else []
    return prefixed + _find_identifiable(text)


def _find_identifiable(text: str) -> list[tuple[int, int]]:
    """Spans of `_CASK` and `_ENTRA` keys: each signature's occurrence is one candidate,
    whose start is a fixed distance before it and must not continue a run of key characters."""
    spans: list[tuple[int, int]] = []
    for signature, pattern, back in (("JQQJ9", _CASK, 52), ("8Q~", _ENTRA, 3)):
        before = _KEY_CHARS[signature]
        i = text.find(signature)
        while i != -1:
            start = i - back
            if (
                start >= 0
                and (start == 0 or before.fullmatch(text[start - 1]) is None)
                and (m := pattern.match(text, start)) is not None
            ):
                spans.append(m.span())
            i = text.find(signature, i + 1)
    return spans


DETECTORS: tuple[Detector, ...] = (
    Detector(
        "PRIVATE_KEY",
        # PEM and PGP armour ("-----BEGIN RSA PRIVATE KEY-----", "... PGP PRIVATE KEY
        # BLOCK-----"), with four or five dashes or the dashes a word processor makes of
        # them. Linear: "BEGIN" is led by its dashes, and "[A-Z0-9 ]*" cannot run past the
        # next dash.
        re.compile(
            f"{_DASHES}BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?{_DASHES}"
            f".*?(?:{_DASHES}END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?{_DASHES}|\\Z)",
            re.S,
        ),
        "text",
        ("BEGIN",),
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
        # The password of a URL, "postgres://admin:<password>@host" (`_find_url_passwords`):
        # there is no password without an "@". Before the names of secrets: "pwd:" is one too,
        # and the URL's password runs past the ";" where a name's value stops.
        _URL_USERINFO,
        "text",
        ("@",),
        finder=lambda text, windows, joined: _find_url_passwords(text),
    ),
    Detector(
        "SECRET",
        # The value of a JSON member named for a secret, where JSON is text (before the
        # names below: the whole value, not its first word).
        _SECRET_MEMBER,
        "text",
        MEMBER_COLONS,
        finder=lambda text, windows, joined: _find_secret_members(text),
    ),
    Detector(
        "SECRET",
        # A secret's name, then its value: "Password=...", "DB_PASSWORD=...", "&sig=...",
        # "\"password\": \"...\"" (a quote after the name), "client secret: ...",
        # "Passwort：...", and "my password is ..." when the value holds a digit or a symbol
        # ("the password is required" is prose). Possessive whitespace: giving a space back
        # cannot produce "=", ":" or "is".
        re.compile(
            r"(?i)(?<![A-Z]\])(?<![A-Z0-9])(?:AccountKey|SharedAccessKey|SharedAccessSignature"
            r"|(?:PG)?Pass(?:word|wd|wort|phrase)|Pwd|Mot de passe"
            r"|Client[ _-]?Secret|(?<=[?&;])Sig(?==))[\"']?(?:\s*+[=:\uff1a]\s*+"
            r"|\s++is\s++(?=[\"']?[^\s\"']*?[0-9!#$%&*+?@^~]))"
            r"[\"']?(?-i:(?!\[[A-Z]))([^;\s\"'&,]{4,})"
        ),
        "near",
        SECRET_WORDS,
        group=1,
        before=7,  # "client " before "secret", "pg" before "password"
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
        # Keys that say what they are: by a prefix (GitHub, Stripe) or a signature
        # (Microsoft's identifiable keys), `_find_named_keys`.
        _PREFIXED,
        "text",
        (*KEY_PREFIXES, *IDENTIFIABLE),
        finder=lambda text, windows, joined: _find_named_keys(text),
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
        CARD,
        "digits",
        validate=valid_card,
        min_digits=13,
        finder=lambda text, windows, joined: find_cards(text, windows, joined),
    ),
    Detector(
        "SSN",
        # The area number is checked after its three digits (a lookbehind): a digit that
        # starts no SSN fails at once.
        re.compile(
            LEFT_EDGE + r"\d{3}(?<!000|666|9\d\d)([- ])(?!00)\d{2}\1(?!0000)\d{4}" + RIGHT_EDGE
        ),
        "digits",
        min_digits=9,
        # the match is the anchor; `RIGHT_EDGE` reads 3 characters past its end
        anchors=Anchors(((_AS_D, b"ddd dd dddd"), (_AS_D, b"ddd-dd-dddd")), before=0, reach=14),
    ),
    Detector(
        "PHONE",
        re.compile(
            LEFT_EDGE
            + r"(?=[+(]|\d\d)(?:"
            # international: +CC then groups, optionally a (0) or an area code in parentheses.
            # Possessive groups of at most 5 digits: a run is cut into groups one way only
            # (`\d{1,5}` tried every split of "+1 " + 26 digits, thousands per "+"); the
            # lookahead skips a "+" without the 8 digits a valid number has.
            + r"\+(?=(?:[ .()-]{0,2}\d){8})\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}+){1,5}"
            + RIGHT_EDGE
            # North America: (555) 123-4567, 555-123-4567, 555.123.4567
            + r"|(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}"
            + RIGHT_EDGE
            # national numbers with a trunk 0: UK 020 7946 0958, FR 06 12 34 56 78, DE 030 1234567
            # (possessive: a group ends where its digits end; at least 9 digits ahead)
            + r"|0(?=(?:[ ./-]?\d){8})[1-9]\d{0,3}+(?:[ ./-]\d{2,8}+){1,4}"
            + RIGHT_EDGE
            + r")"
        ),
        "digits",
        validate=_valid_phone,
        min_digits=8,
        resolve=_phone_end,
        # At the start: "+", a trunk "0[1-9]", or North America's three groups (3, 3 and 4 or
        # more digits) after a character that is not a digit (or "(" and a space). At most 41
        # characters (+CC 3, (area) 7, 5 groups of 6), then `RIGHT_EDGE` reads 3.
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
            LEFT_EDGE
            + r"(?=\d{1,3}\.)(?!127\.|0\.0\.0\.0(?!\d)|255\.255\.255\.255(?!\d))"
            + _OCTET
            + r"(?:\."
            + _OCTET
            + r"){3}"
            + RIGHT_EDGE
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


# A cut for a shorter candidate: a separator right after a non-separator.
_CUT = re.compile(r"(?<![ .\-/()])[ .\-/()]")


def shorter_valid(det: Detector, text: str, start: int, end: int) -> int:
    """End of the longest valid match of `det` at `start` that stops before `end`, or -1.
    Validation first: it rejects most cuts without a regex match."""
    assert det.validate is not None
    for cut in reversed([m.start() for m in _CUT.finditer(text, start + 1, end)]):
        if det.validate(text[start:cut]) and det.pattern.fullmatch(text, start, cut):
            return cut
    return -1

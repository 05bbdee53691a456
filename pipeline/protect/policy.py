"""The capture policy: the capture settings as one immutable object, and each call's capture.

- PROMPT_CAPTURE (previews in the audit table, and LLM-log messages wherever they are stored):
  `redacted` (default: personal data and secrets masked, then truncated to PREVIEW_CHARS),
  `truncated` (no masking), `hashed` (a keyed HMAC of the text only, so equal prompts group
  without being stored), `none`, `full` (no masking, no truncation beyond the storage limit).
- ARCHIVE_CAPTURE (the raw archive and dead letters): `redacted` (default), `full` (explicit
  opt-in: as logged), `metadata` (no bodies or messages at all).
- CAPTURE_OVERRIDES: per APIM subscription or product. Records that do not name their
  subscription or product (LLM logs) follow the strictest of the default and all overrides,
  so a metadata-only team's prompts never leak through a log that cannot say whose they are.

Credentials are removed before any of this, under every setting (credentials.scrub_credentials).
What is stored under a capture: previews.py, records.py (the archive), deadletters.py; the
redaction they share, memoised per record: masking.py.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pipeline.protect.detectors import IDENTIFIABLE, KEY_PREFIXES, MEMBER_COLONS, SECRET_WORDS
from pipeline.protect.reading import needs_fold, special, visible
from pipeline.protect.redactor import Redactor
from pipeline.settings import Capture, Config

# From least to most protective, to find the strictest.
_PROMPT_STRICTNESS = {"full": 0, "truncated": 1, "redacted": 2, "hashed": 3, "none": 4}
_ARCHIVE_STRICTNESS = {"full": 0, "redacted": 1, "metadata": 2}


@dataclass(frozen=True, slots=True, eq=False)
class CapturePolicy:
    """The capture settings of a configuration, and how its text is scanned. Immutable: one
    per configuration and process (`policy_for`); per-record state lives in masking.Masker."""

    default: Capture
    by_subscription: Mapping[str, Capture]
    by_product: Mapping[str, Capture]
    # The capture of a record that cannot name its owner.
    strictest: Capture
    redactor: Redactor
    hash_key: bytes
    caller_ip_mode: str
    # Text without any of what this needs cannot match a detector; None: scan every string.
    prefilter: Callable[[str], bool] | None
    # Whether a value's strings may be scanned joined by newlines (masking.Masker.walk).
    joined_scan: bool
    placeholder_text: re.Pattern[str]
    placeholder_bytes: re.Pattern[bytes]
    # ARCHIVE_ENCRYPTION=on: each archived record and its previews sealed under a data key.
    sealed: bool = False

    def for_call(self, subscription: str | None, product: str | None, *, named: bool) -> Capture:
        """The capture of a record; `named` says whether the record can name its owner."""
        if not named:
            return self.strictest
        if subscription is not None and subscription in self.by_subscription:
            return self.by_subscription[subscription]
        if product is not None and product in self.by_product:
            return self.by_product[product]
        return self.default

    def caller_ip(self, value: str | None) -> str | None:
        """A caller address as CALLER_IP_MODE says to store it (lists: each entry)."""
        if value is None or self.caller_ip_mode == "keep":
            return value
        if self.caller_ip_mode == "drop":
            return None
        return ", ".join(self.keyed_hash(v.strip())[:28] for v in value.split(",") if v.strip())

    def keyed_hash(self, text: str) -> str:
        digest = hmac.new(self.hash_key, text.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return "hmac-sha256:" + digest.hexdigest()

    def placeholders(self, stored: bytes, *texts: str) -> dict[str, int]:
        """Placeholders of our detectors in stored bytes and texts, by type."""
        counts: dict[str, int] = {}  # a plain dict: this runs for every record
        for m in self.placeholder_bytes.finditer(stored):
            label = m.group(1).decode()
            counts[label] = counts.get(label, 0) + 1
        for t in texts:
            for m in self.placeholder_text.finditer(t):
                counts[m.group(1)] = counts.get(m.group(1), 0) + 1
        return counts


@functools.lru_cache(maxsize=8)
def policy_for(cfg: Config) -> CapturePolicy:
    """The policy of a configuration, built once per process (regexes compiled once)."""
    by_subscription = dict(cfg.capture_by_subscription)
    by_product = dict(cfg.capture_by_product)
    everything = [cfg.capture, *by_subscription.values(), *by_product.values()]
    redactor = Redactor(cfg.custom_patterns)
    labels = "|".join(sorted({re.escape(d.label) for d in redactor.detectors}))
    return CapturePolicy(
        default=cfg.capture,
        by_subscription=by_subscription,
        by_product=by_product,
        strictest=Capture(
            max((c.prompt for c in everything), key=_PROMPT_STRICTNESS.__getitem__),
            max((c.archive for c in everything), key=_ARCHIVE_STRICTNESS.__getitem__),
            min(c.preview_chars for c in everything),
        ),
        redactor=redactor,
        hash_key=cfg.prompt_hash_key.encode(),
        caller_ip_mode=cfg.caller_ip_mode,
        # Custom patterns can match anything: with them every string is scanned.
        prefilter=None if cfg.custom_patterns else _may_match,
        # One scan over a value's strings joined by newlines finds at least what scanning
        # each string alone finds (a newline is a boundary to every built-in detector) --
        # unless a custom pattern anchors on where a string starts or ends.
        joined_scan=not any(_ANCHORED.search(p.pattern) for _, p in cfg.custom_patterns),
        placeholder_text=re.compile(rf"\[({labels})\]"),
        placeholder_bytes=re.compile(rf"\[({labels})\]".encode()),
        sealed=cfg.archive_encryption,
    )


# A custom pattern that matches where a string starts or ends (^, $, \A, \Z, lookbehind).
_ANCHORED = re.compile(r"\^|\$|\\[AZz]|\(\?<[=!]")

# Something a built-in detector needs: a digit, an @, a colon pair (IPv6), a key or token
# prefix, or a credential word. Substring tests, not one regex alternation: on long text
# without a digit (most answers) they are an order of magnitude faster. Digits other than
# ASCII (full-width, Arabic-Indic...) and the other characters the detectors read as ASCII
# (reading.fold) count too, and so does what hides among invisible characters.
_DIGIT_OR_AT = re.compile(r"[0-9@]")
_MARKERS = ("::", "BEGIN", "eyJ", "sk-", "AKIA", "ASIA", *KEY_PREFIXES, *IDENTIFIABLE)
_WORDS = ("bearer", "key", *SECRET_WORDS)


def _may_match(text: str) -> bool:
    if special(text):  # one scan: most text, and prose in other scripts, is not
        if needs_fold(text):
            return True
        text = visible(text)  # "pass\u200bword" is read as "password" (reading.py)
    if _DIGIT_OR_AT.search(text) is not None:
        return True
    if any(m in text for m in _MARKERS):
        return True
    low = text.lower()
    if any(w in low for w in _WORDS):
        return True
    # A JSON member named for a secret whose name holds none of the words ("accessToken",
    # "connectionString": detectors._SECRET_MEMBER).
    return any(c in text for c in MEMBER_COLONS) and ("token" in low or "string" in low)

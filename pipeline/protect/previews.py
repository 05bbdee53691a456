"""The prompt and completion previews of the audit row, as PROMPT_CAPTURE says to keep them."""

from __future__ import annotations

from collections import Counter

from pipeline.protect.masking import Masker, Stored
from pipeline.protect.redactor import clip_text
from pipeline.settings import Capture

# Table storage: a string property holds 32K UTF-16 units; keep `full` previews below that.
FULL_PREVIEW_CHARS = 30_000


def preview(masker: Masker, text: str | None, capture: Capture) -> Stored:
    if not text or capture.prompt == "none":
        return Stored(None, Counter())
    if capture.prompt == "hashed":
        return Stored(masker.policy.keyed_hash(text), Counter())
    if capture.prompt == "full":
        return Stored(text[:FULL_PREVIEW_CHARS], Counter())
    counts: Counter[str] = Counter()
    if capture.prompt == "redacted":
        text = masker.redact_text(text, counts, capture.preview_chars)
    clipped = clip_text(text, capture.preview_chars)
    return Stored(clipped or None, counts)

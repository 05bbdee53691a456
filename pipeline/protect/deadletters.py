"""Dead letters: what is stored of an event or a record that could not become a row.

A dead letter keeps what arrived so that `replay` can read it again once the cause is fixed,
under its owner's archive capture (the strictest when it cannot say whose it is): as received
with `full`, else redacted (`metadata` redacts rather than drops, to stay replayable).
`raw_dead_letter` is the one that cannot fail on content: no decoding, no walking.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import orjson

from pipeline.common import safejson
from pipeline.model import DeadLetter, EventIn
from pipeline.protect.credentials import scrub_credentials
from pipeline.protect.masking import Masker, redact_escaped
from pipeline.protect.policy import CapturePolicy
from pipeline.settings import Capture

log = logging.getLogger(__name__)

_NOT_JSON = object()


def record_body(record: Any, enveloped: bool) -> bytes:
    """A record on its own, in a shape `replay` reads back like the original event."""
    if isinstance(record, dict):
        record = scrub_credentials(record)
    return orjson.dumps({"records": [record]} if enveloped else record)


def records_body(records: list[Any], enveloped: bool) -> bytes:
    """Several records of an event (its bad ones), in a shape `replay` reads back like it."""
    records = [scrub_credentials(r) if isinstance(r, dict) else r for r in records]
    return orjson.dumps({"records": records} if enveloped else records)


def dead_letter(
    masker: Masker,
    capture: Capture,
    body: bytes,
    reason: str,
    event: EventIn,
    index: int | None,
) -> DeadLetter:
    """The dead letter of `body` (an event, or one record of it) under `capture`."""
    stored, _ = stored_body(masker, body, capture)
    # Reasons are ours and quote no input; masked anyway, like any stored text.
    safe_reason = masker.redactor.redact(reason[:2000]).text[:1000]
    return DeadLetter(stored, safe_reason, event, index, redacted=stored != body)


def raw_dead_letter(
    policy: CapturePolicy, event: EventIn, index: int | None, reason: str
) -> DeadLetter:
    """A dead letter that cannot fail on content: the event's bytes as received (nothing
    decoded or walked), redacted as text under the strictest capture."""
    try:
        stored, _ = stored_text(policy, event.body, policy.strictest)
    except Exception as exc:  # noqa: BLE001 - a detector bug: keep the bytes, say so loudly
        log.critical(
            "dead letter of %s kept unredacted: %s in redaction", event.origin, type(exc).__name__
        )
        stored = event.body
    return DeadLetter(stored, reason, event, index, redacted=stored != event.body)


def stored_body(masker: Masker, body: bytes, capture: Capture) -> tuple[bytes, Counter[str]]:
    """Bytes of a dead letter as stored under `capture`: as received when its archive
    capture is `full`, else redacted (the exact bytes when nothing is masked)."""
    if capture.archive == "full":
        return body, Counter()
    counts: Counter[str] = Counter()
    if body.count(b"[") + body.count(b"{") > len(body) // 8:
        # Mostly brackets (real bodies are mostly text): decoding would cost far more
        # than the text it holds, so it is matched as text.
        return stored_text(masker.policy, body, capture)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        doc = _NOT_JSON
    if doc is _NOT_JSON or not safejson.depth_ok(doc):
        return stored_text(masker.policy, body, capture)
    redacted = orjson.dumps(masker.walk(doc, counts))
    if not counts:
        return body, counts  # nothing to mask: keep the exact bytes
    return redacted, counts


def stored_text(policy: CapturePolicy, body: bytes, capture: Capture) -> tuple[bytes, Counter[str]]:
    """The same, without decoding any structure: the detectors run over the text (JSON
    escapes undone in a view), in linear time. For the dead letters that must not fail
    whatever the bytes are (a record the parser failed on, a parked batch). Bytes that
    are not UTF-8 survive unchanged (surrogateescape)."""
    if capture.archive == "full":
        return body, Counter()
    counts: Counter[str] = Counter()
    # JSON a sender wrote in UTF-16 or UTF-32 (refused: RFC 8259 wants UTF-8) is read as that
    # text, its personal data masked like UTF-8's, and written back in it: replayed, it is
    # refused for the same reason.
    mark, codec = safejson.wide_encoding(body) or (0, "utf-8")
    try:
        text = body[mark:].decode(codec, "surrogateescape" if codec == "utf-8" else "strict")
    except UnicodeDecodeError:
        mark, codec, text = 0, "utf-8", body.decode("utf-8", "surrogateescape")
    redacted = redact_escaped(policy.redactor, text, counts)
    if not counts:
        return body, counts
    errors = "surrogateescape" if codec == "utf-8" else "surrogatepass"
    return body[:mark] + redacted.encode(codec, errors), counts

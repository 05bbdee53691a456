"""What the raw archive keeps of a record under a capture: bodies, messages, the caller's
address and the rest of its free text, field by field (fields.key_kind)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pipeline.protect.fields import (
    BODY,
    CALLER_IP,
    CREDENTIAL,
    FREE,
    HEADERS,
    MESSAGES,
    OTHER,
    PROPERTIES,
    key_kind,
)
from pipeline.protect.masking import Masker, Stored
from pipeline.protect.policy import CapturePolicy
from pipeline.protect.redactor import clip_text
from pipeline.settings import Capture

# Kinds whose values the archive keeps as logged under every capture (credentials are gone
# already: credentials.scrub_credentials runs first).
_AS_LOGGED = frozenset({OTHER, CREDENTIAL})
_DROP = object()
_STRUCTURES = (dict, list)  # a tuple: `dict | list` is built again at each isinstance


def archive_record(masker: Masker, record: dict[str, Any], capture: Capture) -> Stored:
    """The record as the archive stores it under `capture`."""
    counts: Counter[str] = Counter()
    out = _level(masker, record, capture, counts, top=True)
    # Every `properties` member, whatever its case: a record may hold several ("properties"
    # and "Properties"), and the parser reads the last (sources/envelope.py `flatten`). One
    # that is not an object (a JSON string that is no object, a list) is no level the parser
    # reads: it is free text like any other.
    for key, value in out.items():
        if key_kind(key) == PROPERTIES:
            if isinstance(value, dict):
                out[key] = _level(masker, value, capture, counts, top=False)
            elif capture.archive != "full":
                out[key] = masker.walk(value, counts)
    return Stored(out, counts)


def _level(
    masker: Masker, obj: dict[str, Any], capture: Capture, counts: Counter[str], *, top: bool
) -> dict[str, Any]:
    """One level of a record (the record, or its `properties`); at the top, `properties`
    members are left for `archive_record`, below it they are free text."""
    out: dict[str, Any] = {}
    # Free-text values of this level (header values as a list, without the caller's
    # address), redacted together at the end: one scan for all their plain strings.
    free: dict[str, Any] = {}
    header_maps: set[str] = set()  # keys whose free value is the list of a header map
    # `metadata` drops bodies and messages, and masks every other free text as `redacted`
    # does: the stricter setting never keeps what the weaker one masks.
    redacted = capture.archive != "full"
    for key, value in obj.items():
        kind = key_kind(key)
        if kind == PROPERTIES and not top:
            kind = FREE  # a `properties` inside `properties`: no level the parser reads
        elif kind == OTHER and isinstance(value, _STRUCTURES):
            kind = FREE  # identifiers and numbers are scalars: a structure is someone's text
        if kind in _AS_LOGGED:
            out[key] = value
            continue
        if kind in (CALLER_IP, MESSAGES):  # each its own rule
            stored = (
                _caller_ip(masker.policy, value)
                if kind == CALLER_IP
                else _messages(masker, value, capture, counts)
            )
            if stored is not _DROP:
                out[key] = stored
            continue
        if kind == BODY and capture.archive == "metadata":
            continue
        if kind == HEADERS and isinstance(value, dict):
            value = _caller_ip_headers(masker.policy, value)
            if redacted:
                free[key] = [v for h, v in value.items() if key_kind(h) != CALLER_IP]
                header_maps.add(key)
        elif redacted and kind != PROPERTIES:
            free[key] = value
        out[key] = value
    if free:
        _redact_free(masker, out, free, header_maps, counts)
    return out


def _redact_free(
    masker: Masker,
    out: dict[str, Any],
    free: dict[str, Any],
    header_maps: set[str],
    counts: Counter[str],
) -> None:
    """The free-text values of a level, redacted in one walk and written back into `out`."""
    walked = masker.walk(list(free.values()), counts)
    for (key, before), after in zip(free.items(), walked, strict=True):
        if after is before:
            continue
        if key in header_maps:
            values = iter(after)
            out[key] = {
                h: v if key_kind(h) == CALLER_IP else next(values) for h, v in out[key].items()
            }
        else:
            out[key] = after


def _caller_ip(policy: CapturePolicy, value: Any) -> Any:
    """A caller-address field as CALLER_IP_MODE says (_DROP: not stored)."""
    if policy.caller_ip_mode == "keep":
        return value
    if policy.caller_ip_mode == "hash" and isinstance(value, str):
        return policy.caller_ip(value)
    return _DROP


def _caller_ip_headers(policy: CapturePolicy, headers: dict[str, Any]) -> dict[str, Any]:
    """Headers with the caller's address (X-Forwarded-For...) as CALLER_IP_MODE says."""
    if policy.caller_ip_mode == "keep":
        return headers
    out = {}
    for h, v in headers.items():
        if key_kind(h) != CALLER_IP:
            out[h] = v
        elif policy.caller_ip_mode == "hash":
            out[h] = policy.caller_ip(v) if isinstance(v, str) else v
    return out


def _messages(masker: Masker, value: Any, capture: Capture, counts: Counter[str]) -> Any:
    """LLM-log messages: the stricter of the archive and the prompt capture applies."""
    if capture.archive == "metadata" or capture.prompt == "none":
        return _DROP
    if capture.prompt == "hashed":
        return _hash_contents(masker.policy, value)
    if capture.archive == "redacted" or capture.prompt == "redacted":
        value = masker.walk(value, counts)
    if capture.prompt in ("truncated", "redacted"):
        value = _clip_contents(value, capture.preview_chars)
    return value


def _hash_contents(policy: CapturePolicy, value: Any) -> Any:
    if isinstance(value, str):
        return policy.keyed_hash(value)
    if isinstance(value, list):
        return [_hash_contents(policy, v) for v in value]
    if isinstance(value, dict):
        return {k: (_hash_contents(policy, v) if k == "content" else v) for k, v in value.items()}
    return value


def _clip_contents(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return clip_text(value, limit)
    if isinstance(value, list):
        return [_clip_contents(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: (_clip_contents(v, limit) if k == "content" else v) for k, v in value.items()}
    return value

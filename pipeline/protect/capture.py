"""What of a prompt and a raw record is stored: the capture policy.

- PROMPT_CAPTURE (previews in the audit table, and LLM-log messages wherever they are stored):
  `redacted` (default: personal data and secrets masked, then truncated to PREVIEW_CHARS),
  `truncated` (no masking), `hashed` (a keyed HMAC of the text only, so equal prompts group
  without being stored), `none`, `full` (no masking, no truncation beyond the storage limit).
- ARCHIVE_CAPTURE (the raw archive and dead letters): `redacted` (default), `full` (explicit
  opt-in: as logged), `metadata` (no bodies or messages at all).
- CAPTURE_OVERRIDES: per APIM subscription or product. Records that do not name their
  subscription or product (LLM logs) follow the strictest of the default and all overrides,
  so a metadata-only team's prompts never leak through a log that cannot say whose they are.

Credentials are removed before any of this, under every setting (redact.scrub_credentials).
Redaction works on decoded values: JSON inside JSON strings is decoded and walked (an `@`
hidden as `\\u0040` is still an `@`), stream deltas are joined before matching, and text that
cannot be decoded (a body cut mid-JSON) is matched on an unescaped view of it.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import hmac
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from pipeline.common import safejson
from pipeline.protect.redact import Redaction, Redactor, Spans, clip_text, splice
from pipeline.settings import Config, SettingsError

PromptMode = Literal["redacted", "truncated", "hashed", "none", "full"]
ArchiveMode = Literal["redacted", "full", "metadata"]
PROMPT_MODES: tuple[str, ...] = ("redacted", "truncated", "hashed", "none", "full")
ARCHIVE_MODES: tuple[str, ...] = ("redacted", "full", "metadata")
# From least to most protective, to find the strictest.
_PROMPT_STRICTNESS = {"full": 0, "truncated": 1, "redacted": 2, "hashed": 3, "none": 4}
_ARCHIVE_STRICTNESS = {"full": 0, "redacted": 1, "metadata": 2}
# Table storage: a string property holds 32K UTF-16 units; keep `full` previews below that.
FULL_PREVIEW_CHARS = 30_000

# Fields holding request/response bodies or messages, in any of the sources (lower-case).
BODY_FIELDS = frozenset(
    {
        "requestbody", "responsebody", "backendrequestbody", "backendresponsebody",
        "request", "response", "messages", "prompt", "choices",
    }
)  # fmt: skip
MESSAGE_FIELDS = frozenset({"requestmessages", "responsemessages"})
# Who called, kept as logged under `redacted`: the audit needs them, and the row's CallerIp is
# derived from them (CALLER_IP_MODE governs both).
CALLER_IP_FIELDS = frozenset(
    {"calleripaddress", "callerip", "forwardedfor", "clientip", "requestip", "x-forwarded-for"}
)


@dataclass(frozen=True, slots=True)
class Capture:
    prompt: PromptMode
    archive: ArchiveMode
    preview_chars: int


@dataclass(slots=True)
class Stored:
    """A value as it will be stored, and what was masked in it."""

    value: Any
    counts: Counter[str]


class CapturePolicy:
    def __init__(self, cfg: Config) -> None:
        self.default = Capture(
            _mode(cfg.prompt_capture, PROMPT_MODES, "PROMPT_CAPTURE"),
            _mode(cfg.archive_capture, ARCHIVE_MODES, "ARCHIVE_CAPTURE"),
            cfg.preview_chars,
        )
        self.by_subscription, self.by_product = _overrides(cfg.capture_overrides, self.default)
        custom = _patterns(cfg.redact_patterns)
        self.redactor = Redactor(custom)
        self._memo: dict[str, tuple[str, Counter[str]]] = {}
        # Text without any of these cannot match a built-in detector; custom patterns can
        # match anything, so with them every string is scanned.
        self._prefilter = None if custom else _may_match
        # One scan over a value's strings joined by newlines finds at least what scanning
        # each string alone finds (a newline is a boundary to every built-in detector) --
        # unless a custom pattern anchors on where a string starts or ends.
        self._joined_scan = not any(_ANCHORED.search(pattern) for _, pattern in custom)
        labels = "|".join(sorted({re.escape(d.label) for d in self.redactor.detectors}))
        self._placeholder_text = re.compile(rf"\[({labels})\]")
        self._placeholder_bytes = re.compile(rf"\[({labels})\]".encode())
        self.hash_key = cfg.prompt_hash_key.encode()
        everything = [self.default, *self.by_subscription.values(), *self.by_product.values()]
        if any(c.prompt == "hashed" for c in everything) and not self.hash_key:
            raise SettingsError("PROMPT_CAPTURE=hashed needs PROMPT_HASH_KEY (a secret)")
        self.caller_ip_mode = cfg.caller_ip_mode
        if self.caller_ip_mode == "hash" and not self.hash_key:
            # An unkeyed hash of an IPv4 address is reversed by trying all 2^32 of them.
            raise SettingsError("CALLER_IP_MODE=hash needs PROMPT_HASH_KEY (a secret)")
        self.strictest = Capture(
            max((c.prompt for c in everything), key=_PROMPT_STRICTNESS.__getitem__),
            max((c.archive for c in everything), key=_ARCHIVE_STRICTNESS.__getitem__),
            min(c.preview_chars for c in everything),
        )

    def for_call(self, subscription: str | None, product: str | None, *, named: bool) -> Capture:
        """The capture of a record; `named` says whether the record can name its owner."""
        if not named:
            return self.strictest
        if subscription is not None and subscription in self.by_subscription:
            return self.by_subscription[subscription]
        if product is not None and product in self.by_product:
            return self.by_product[product]
        return self.default

    # --- previews ---------------------------------------------------------------------------

    def preview(self, text: str | None, capture: Capture) -> Stored:
        if not text or capture.prompt == "none":
            return Stored(None, Counter())
        if capture.prompt == "hashed":
            return Stored(self.keyed_hash(text), Counter())
        if capture.prompt == "full":
            return Stored(text[:FULL_PREVIEW_CHARS], Counter())
        counts: Counter[str] = Counter()
        if capture.prompt == "redacted":
            text = self.redact_text(text, counts)
        clipped = clip_text(text, capture.preview_chars)
        return Stored(clipped or None, counts)

    def placeholders(self, stored: bytes, *texts: str) -> dict[str, int]:
        """Placeholders of our detectors in stored bytes and texts, by type."""
        counts: Counter[str] = Counter()
        for m in self._placeholder_bytes.finditer(stored):
            counts[m.group(1).decode()] += 1
        for t in texts:
            for m in self._placeholder_text.finditer(t):
                counts[m.group(1)] += 1
        return dict(counts)

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

    # --- raw records ----------------------------------------------------------------------------

    def archive_record(self, record: dict[str, Any], capture: Capture) -> Stored:
        """The record as the archive stores it under `capture`."""
        counts: Counter[str] = Counter()
        out = self._level(record, capture, counts)
        props_key = next((k for k in out if k.lower() == "properties"), None)
        if props_key is not None and isinstance(out[props_key], dict):
            out[props_key] = self._level(out[props_key], capture, counts)
        return Stored(out, counts)

    def _level(self, obj: dict[str, Any], capture: Capture, counts: Counter[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        # Free-text values of this level (header values as a list, without the caller's
        # address), redacted together at the end: one scan for all their plain strings.
        free: dict[str, Any] = {}
        header_maps: set[str] = set()  # keys whose free value is the list of a header map
        redacted = capture.archive == "redacted"
        for key, value in obj.items():
            kind = _key_kind(key)
            if kind == _OTHER:
                out[key] = value
                continue
            if kind == _CALLER_IP:
                if self.caller_ip_mode == "keep":
                    out[key] = value
                elif self.caller_ip_mode == "hash" and isinstance(value, str):
                    out[key] = self.caller_ip(value)
                continue  # dropped
            if kind == _MESSAGES:
                stored = self._messages(value, capture, counts)
                if stored is not _DROP:
                    out[key] = stored
                continue
            if kind == _BODY and capture.archive == "metadata":
                continue
            if kind == _HEADERS and isinstance(value, dict):
                value = self._caller_ip_headers(value)
                if redacted:
                    free[key] = [v for h, v in value.items() if _key_kind(h) != _CALLER_IP]
                    header_maps.add(key)
            elif redacted and kind != _PROPERTIES:
                free[key] = value
            out[key] = value
        if free:
            walked = self._walk(list(free.values()), counts)
            for (key, before), after in zip(free.items(), walked, strict=True):
                if after is before:
                    continue
                if key in header_maps:
                    values = iter(after)
                    out[key] = {
                        h: v if _key_kind(h) == _CALLER_IP else next(values)
                        for h, v in out[key].items()
                    }
                else:
                    out[key] = after
        return out

    def _caller_ip_headers(self, headers: dict[str, Any]) -> dict[str, Any]:
        """Headers with the caller's address (X-Forwarded-For...) as CALLER_IP_MODE says."""
        if self.caller_ip_mode == "keep":
            return headers
        out = {}
        for h, v in headers.items():
            if _key_kind(h) != _CALLER_IP:
                out[h] = v
            elif self.caller_ip_mode == "hash":
                out[h] = self.caller_ip(v) if isinstance(v, str) else v
        return out

    def _messages(self, value: Any, capture: Capture, counts: Counter[str]) -> Any:
        """LLM-log messages: the stricter of the archive and the prompt capture applies."""
        if capture.archive == "metadata" or capture.prompt == "none":
            return _DROP
        if capture.prompt == "hashed":
            return self._hash_contents(value)
        if capture.archive == "redacted" or capture.prompt == "redacted":
            value = self._walk(value, counts)
        if capture.prompt in ("truncated", "redacted"):
            value = _clip_contents(value, capture.preview_chars)
        return value

    def _hash_contents(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.keyed_hash(value)
        if isinstance(value, list):
            return [self._hash_contents(v) for v in value]
        if isinstance(value, dict):
            return {k: (self._hash_contents(v) if k == "content" else v) for k, v in value.items()}
        return value

    def _walk(self, value: Any, counts: Counter[str]) -> Any:
        """`value` with every text string in it redacted. Most values hold nothing to mask:
        their plain strings are scanned together once, and only a string a match touches
        (or one holding JSON or a stream, decoded on its own) is redacted alone."""
        if isinstance(value, str):
            return self.redact_string(value, counts)
        strings: list[str] = []
        _collect(value, strings)
        todo = self._to_redact(strings)
        return self._rebuild(value, todo, counts) if todo else value

    def _to_redact(self, strings: list[str]) -> dict[str, Spans | None]:
        """The strings to change: each with its matches when the joint scan found them all
        inside it, or None when it must be redacted on its own."""
        todo: dict[str, Spans | None] = {}
        plain: list[str] = []
        memo = self._memo
        # Each distinct string once: `todo` is keyed by value, and a crafted body that
        # repeats one string thousands of times then costs one scan of it.
        for s in dict.fromkeys(strings):
            if _text_kind(s) != "plain":
                todo[s] = None  # decoded and walked by redact_string
            elif len(s) >= 32 and s in memo:
                # Already redacted in this record (the answer, as its preview was made).
                if memo[s][0] != s:
                    todo[s] = None  # redact_string answers from the memo
            else:
                plain.append(s)
        if not plain:
            return todo
        if not self._joined_scan:
            todo.update(dict.fromkeys(plain))
            return todo
        joined = "\n".join(plain)
        if self._prefilter is not None and not self._prefilter(joined):
            return todo
        spans = self.redactor.find(joined)
        if not spans:
            return todo
        starts, pos = [], 0
        for s in plain:
            starts.append(pos)
            pos += len(s) + 1
        inside: dict[int, Spans] = {}
        crossed: set[int] = set()
        for start, end, label in spans:
            first = bisect.bisect_right(starts, start) - 1
            last = bisect.bisect_right(starts, end - 1) - 1
            if first == last:
                base = starts[first]
                inside.setdefault(first, []).append((start - base, end - base, label))
            else:  # a match across strings (a custom pattern, "key" then a hex key)
                crossed.update(range(first, last + 1))
        for i in sorted(inside.keys() | crossed):
            s = plain[i]
            if i in crossed or todo.get(s, ()) is None:
                todo[s] = None  # its own scan decides
            else:
                todo[s] = inside[i]
        return todo

    def _rebuild(self, value: Any, todo: dict[str, Spans | None], counts: Counter[str]) -> Any:
        if isinstance(value, str):
            if value not in todo:
                return value
            spans = todo[value]
            if spans is None:
                return self.redact_string(value, counts)
            return splice(value, spans, counts)  # no Counter per string
        if isinstance(value, dict):
            return {
                k: v if k in _NOT_TEXT else self._rebuild(v, todo, counts) for k, v in value.items()
            }
        if isinstance(value, list):
            return [self._rebuild(v, todo, counts) for v in value]
        return value

    def forget(self) -> None:
        """Start a new record: the memo of redacted strings only spans one record (where
        request and backend request bodies, and the first message and the preview, repeat)."""
        self._memo.clear()

    def redact_string(self, s: str, counts: Counter[str]) -> str:
        """A string value: plain text, JSON text (decoded and walked), or an SSE stream."""
        if len(s) < 6:
            return s
        if len(s) >= 32:
            hit = self._memo.get(s)
            if hit is not None:
                if hit[1]:
                    counts.update(hit[1])
                return hit[0]
            local: Counter[str] = Counter()
            out = self._redact_uncached(s, local)
            self._memo[s] = (out, local)
            if local:
                counts.update(local)
            return out
        return self._redact_uncached(s, counts)

    def _redact_uncached(self, s: str, counts: Counter[str]) -> str:
        kind = _text_kind(s)
        if kind == "json":
            try:
                doc = orjson.loads(s)
            except orjson.JSONDecodeError:
                return self._redact_escaped(s, counts)  # cut JSON: match on an unescaped view
            before = sum(counts.values())
            try:
                walked = self._walk(doc, counts)
            except _TooDeep:
                # Too deep to walk (and to re-serialise): matched as text, like cut JSON.
                return self._redact_escaped(s, counts)
            if sum(counts.values()) == before:
                return s  # nothing masked: keep the body exactly as logged
            out = orjson.dumps(walked).decode()
            return out + "\n" if s.endswith("\n") else out
        if kind == "sse":
            return self._redact_sse(s, counts)
        r = self._redact_plain(s)
        if r.counts:
            counts.update(r.counts)
        return r.text

    def _redact_plain(self, s: str) -> Redaction:
        if self._prefilter is not None and not self._prefilter(s):
            return Redaction(s, Counter())  # nothing any detector could match
        return self.redactor.redact(s)

    def redact_text(self, s: str, counts: Counter[str]) -> str:
        """Plain text (a preview, a message): masked, memoised like record strings."""
        if len(s) >= 32:
            hit = self._memo.get(s)
            if hit is not None and _text_kind(s) != "sse":
                counts.update(hit[1])
                return hit[0]
        r = self._redact_plain(s)
        if len(s) >= 32:
            self._memo[s] = (r.text, r.counts)
        counts.update(r.counts)
        return r.text

    def _redact_escaped(self, s: str, counts: Counter[str]) -> str:
        view, offsets = unescaped_view(s)
        spans = self.redactor.find(view)
        if not spans:
            return s
        return splice(s, spans, counts, offsets)

    def _redact_sse(self, s: str, counts: Counter[str]) -> str:
        """Redact a logged stream as the text it carries: deltas are joined before matching,
        so a card number split across two chunks is still found. A stream with nothing to
        mask is kept exactly as logged."""
        before = sum(counts.values())
        blocks = s.replace("\r\n", "\n").split("\n\n")
        parsed: list[tuple[str | None, Any, str]] = []  # (event line, doc or None, raw block)
        for block in blocks:
            event_line = None
            data_lines = []
            for line in block.split("\n"):
                if line.startswith("event:"):
                    event_line = line
                elif line.startswith("data:"):
                    data_lines.append(line[5:].lstrip(" "))
            data = "\n".join(data_lines)
            doc: Any = None
            if data and data.strip() != "[DONE]":
                try:
                    doc = orjson.loads(data)
                except orjson.JSONDecodeError:
                    doc = None
                if safejson.may_be_deep(data) and not safejson.depth_ok(doc):
                    doc = None  # matched as text below
            parsed.append((event_line, doc, block))
        # Deltas: (doc, path) per stream of text, joined then redacted together.
        streams: dict[tuple[Any, ...], list[tuple[dict[str, Any], str]]] = {}
        for _, doc, _ in parsed:
            if isinstance(doc, dict):
                for key, holder, field in _delta_slots(doc):
                    streams.setdefault(key, []).append((holder, field))
        for slots in streams.values():
            pieces = [holder[field] for holder, field in slots]
            joined = "".join(pieces)
            hit = self._memo.get(joined)
            if hit is not None and hit[0] == joined:
                continue  # the answer's text, already found clean as its preview was made
            new, c = self.redactor.redact_pieces(pieces)
            counts.update(c)
            for (holder, field), piece in zip(slots, new, strict=True):
                holder[field] = piece
        out = []
        for event_line, doc, block in parsed:
            if doc is not None:
                # Chunk metadata (ids, model, filter verdicts) holds no free text; errors and
                # the whole response of a Responses API terminal event do.
                for key in ("error", "response"):
                    if isinstance(doc.get(key), dict):
                        doc[key] = self._walk(doc[key], counts)
            elif block.strip():
                # [DONE], comments, or the event the log cut in half
                block = self._redact_escaped(block, counts)
            out.append((event_line, doc, block))
        if sum(counts.values()) == before:
            return s
        lines_out = []
        for event_line, doc, block in out:
            if doc is None:
                lines_out.append(block)
                continue
            lines = [event_line] if event_line else []
            lines.append("data: " + orjson.dumps(doc).decode())
            lines_out.append("\n".join(lines))
        return "\n\n".join(lines_out)

    # --- dead letters ---------------------------------------------------------------------------

    def dead_letter(self, body: bytes, capture: Capture) -> tuple[bytes, Counter[str]]:
        """Bytes of a dead letter as stored under `capture` (its owner's, or the strictest):
        as received when its archive capture is `full`, else redacted (dead letters must stay
        replayable, so `metadata` redacts rather than drops)."""
        if capture.archive == "full":
            return body, Counter()
        counts: Counter[str] = Counter()
        if body.count(b"[") + body.count(b"{") > len(body) // 8:
            # Mostly brackets (real bodies are mostly text): decoding would cost far more
            # than the text it holds, so it is matched as text.
            return self.dead_letter_text(body, capture)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = _NOT_JSON
        if doc is _NOT_JSON or not safejson.depth_ok(doc):
            return self.dead_letter_text(body, capture)
        redacted = orjson.dumps(self._walk(doc, counts))
        if not counts:
            return body, counts  # nothing to mask: keep the exact bytes
        return redacted, counts

    def dead_letter_text(self, body: bytes, capture: Capture) -> tuple[bytes, Counter[str]]:
        """The same, without decoding any structure: the detectors run over the text (JSON
        escapes undone in a view), in linear time. For the dead letters that must not fail
        whatever the bytes are (a record the parser failed on, a parked batch). Bytes that
        are not UTF-8 survive unchanged (surrogateescape)."""
        if capture.archive == "full":
            return body, Counter()
        counts: Counter[str] = Counter()
        text = body.decode("utf-8", "surrogateescape")
        redacted = self._redact_escaped(text, counts)
        if not counts:
            return body, counts
        return redacted.encode("utf-8", "surrogateescape"), counts


_NOT_JSON = object()
_DROP = object()
# Record fields that can hold free text (bodies, URLs, headers, errors, traces); the others
# are identifiers, numbers and names the audit keeps as logged.
_FREE_TEXT = BODY_FIELDS | {"lasterror", "errors", "error", "tracerecords"}


_OTHER, _PROPERTIES, _CALLER_IP, _HEADERS, _MESSAGES, _BODY, _FREE = range(7)


# Record keys repeat in every record: classify each once.
@functools.lru_cache(maxsize=4096)  # bounded: a hostile record cannot grow it
def _key_kind(key: str) -> int:
    lk = key.lower()
    if lk == "properties":
        return _PROPERTIES
    if lk in CALLER_IP_FIELDS:
        return _CALLER_IP
    if lk in MESSAGE_FIELDS:
        return _MESSAGES
    if lk.endswith("headers"):
        return _HEADERS
    if lk in BODY_FIELDS:
        return _BODY
    if lk in _FREE_TEXT or lk.endswith(("url", "uri", "message")):
        return _FREE
    return _OTHER


# Something a built-in detector needs: a digit, an @, a colon pair (IPv6), a key or token
# prefix, or a credential word. Substring tests, not one regex alternation: on long text
# without a digit (most answers) they are an order of magnitude faster.
_DIGIT_OR_AT = re.compile(r"[0-9@]")
_MARKERS = ("::", "-----BEGIN", "eyJ", "sk-", "AKIA", "ASIA")
_WORDS = ("bearer", "password", "pwd", "accountkey", "sharedaccess", "secret", "key")


def _may_match(text: str) -> bool:
    if _DIGIT_OR_AT.search(text) is not None:
        return True
    if any(m in text for m in _MARKERS):
        return True
    low = text.lower()
    return any(w in low for w in _WORDS)


# Keys whose values are enumerations or machine data, never free text (content-filter
# verdicts are most of a response's small strings).
_NOT_TEXT = frozenset(
    {
        "content_filter_results", "prompt_filter_results", "content_filter_result",
        "content_filter_offsets", "logprobs", "role", "object", "finish_reason", "type",
        "system_fingerprint", "embedding", "created", "created_at", "index", "id", "model",
        "status", "call_id", "item_id", "tool_call_id", "usage",
    }
)  # fmt: skip
_SSE_HEAD = re.compile(r"(?:data|event|id|retry)\s*:|:")


def _text_kind(s: str) -> str:
    """ "json" (decoded and walked), "sse" (a logged stream) or "plain" text."""
    head = s[:16].lstrip()
    if head[:1] in ("{", "[", '"'):
        return "json"
    return "sse" if _SSE_HEAD.match(head) else "plain"


# A custom pattern that matches where a string starts or ends (^, $, \A, \Z, lookbehind).
_ANCHORED = re.compile(r"\^|\$|\\[AZz]|\(\?<[=!]")


class _TooDeep(Exception):
    """A decoded body nests deeper than _COLLECT_DEPTH: it is matched as text instead."""


# Records arrive bounded (safejson.MAX_DEPTH, envelope.py); bodies decoded here are not, and
# the depth is checked by the walk that collects their strings anyway (no second pass).
_COLLECT_DEPTH = safejson.MAX_DEPTH + 16


def _collect(value: Any, out: list[str], depth: int = 0) -> None:
    """The text strings in `value` (not under machine-data keys), as `_walk` visits them."""
    if isinstance(value, str):
        if len(value) >= 6:
            out.append(value)
    elif isinstance(value, dict | list):
        if depth > _COLLECT_DEPTH:
            raise _TooDeep
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in _NOT_TEXT:
                    _collect(v, out, depth + 1)
        else:
            for v in value:
                _collect(v, out, depth + 1)


def _delta_slots(doc: dict[str, Any]) -> list[tuple[tuple[Any, ...], dict[str, Any], str]]:
    """Where text deltas live in one chunk: (stream key, holder dict, field)."""
    slots: list[tuple[tuple[Any, ...], dict[str, Any], str]] = []
    choices = doc.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        idx = _key_part(choice.get("index", 0))
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        if isinstance(delta.get("content"), str):
            slots.append((("content", idx), delta, "content"))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                slots.append((("tool", idx, _key_part(call.get("index", 0))), fn, "arguments"))
    kind = doc.get("type")
    if kind in (
        "response.output_text.delta",
        "response.function_call_arguments.delta",
    ) and isinstance(doc.get("delta"), str):
        slots.append(
            (
                (
                    kind,
                    _key_part(doc.get("output_index", 0)),
                    _key_part(doc.get("content_index", 0)),
                ),
                doc,
                "delta",
            )
        )
    return slots


def _key_part(value: Any) -> Any:
    """An index as a dict key: a list or object where a number belongs is not hashable."""
    return (
        value if isinstance(value, int | str | float | bool) or value is None else repr(type(value))
    )


_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def unescaped_view(s: str) -> tuple[str, list[int]]:
    """JSON text with string escapes decoded, and for each character of the view its offset
    in `s` (plus one past the end), so spans found in the view map back onto `s`."""
    if "\\" not in s:
        return s, list(range(len(s) + 1))
    view: list[str] = []
    offsets: list[int] = []
    i, n = 0, len(s)
    while i < n:
        ch = s[i]
        if ch == "\\" and i + 1 < n:
            nxt = s[i + 1]
            if nxt == "u" and i + 6 <= n:
                try:
                    view.append(chr(int(s[i + 2 : i + 6], 16)))
                    offsets.append(i)
                    i += 6
                    continue
                except ValueError:
                    pass
            elif nxt in _ESCAPES:
                view.append(_ESCAPES[nxt])
                offsets.append(i)
                i += 2
                continue
        view.append(ch)
        offsets.append(i)
        i += 1
    offsets.append(n)
    return "".join(view), offsets


def _clip_contents(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return clip_text(value, limit)
    if isinstance(value, list):
        return [_clip_contents(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: (_clip_contents(v, limit) if k == "content" else v) for k, v in value.items()}
    return value


def _mode(value: str, allowed: tuple[str, ...], setting: str) -> Any:
    v = value.strip().lower()
    if v not in allowed:
        raise SettingsError(f"{setting}={value!r}: expected one of {', '.join(allowed)}")
    return v


def _overrides(raw: str, default: Capture) -> tuple[dict[str, Capture], dict[str, Capture]]:
    if not raw.strip():
        return {}, {}
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SettingsError(f"CAPTURE_OVERRIDES is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or set(doc) - {"subscriptions", "products"}:
        raise SettingsError(
            'CAPTURE_OVERRIDES: expected {"subscriptions": {...}, "products": {...}}'
        )
    out: list[dict[str, Capture]] = []
    for scope in ("subscriptions", "products"):
        entries = doc.get(scope) or {}
        if not isinstance(entries, dict):
            raise SettingsError(f"CAPTURE_OVERRIDES.{scope}: expected an object of names")
        parsed: dict[str, Capture] = {}
        for name, spec in entries.items():
            where = f"CAPTURE_OVERRIDES.{scope}.{name}"
            if not isinstance(spec, dict) or set(spec) - {"prompt", "archive", "previewChars"}:
                raise SettingsError(f"{where}: allowed keys are prompt, archive, previewChars")
            chars = spec.get("previewChars", default.preview_chars)
            if not isinstance(chars, int) or not 0 <= chars <= 2000:
                raise SettingsError(f"{where}.previewChars: a whole number from 0 to 2000")
            parsed[name] = Capture(
                _mode(str(spec.get("prompt", default.prompt)), PROMPT_MODES, f"{where}.prompt"),
                _mode(str(spec.get("archive", default.archive)), ARCHIVE_MODES, f"{where}.archive"),
                chars,
            )
        out.append(parsed)
    return out[0], out[1]


def _patterns(raw: str) -> list[tuple[str, str]]:
    if not raw.strip():
        return []
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SettingsError(f"REDACT_PATTERNS is not valid JSON ({exc})") from None
    if isinstance(doc, dict):
        items = list(doc.items())
    elif isinstance(doc, list) and all(isinstance(d, dict) for d in doc):
        items = [(d.get("name"), d.get("pattern")) for d in doc]
    else:
        raise SettingsError('REDACT_PATTERNS: expected {"NAME": "regex", ...}')
    for name, pattern in items:
        if not isinstance(name, str) or not isinstance(pattern, str):
            raise SettingsError("REDACT_PATTERNS: every entry needs a name and a regex string")
    return items


@functools.lru_cache(maxsize=8)
def policy_for(cfg: Config) -> CapturePolicy:
    """The policy of a configuration, built once (regexes compiled once per process)."""
    from pipeline.protect.redact import PatternError

    try:
        return CapturePolicy(cfg)
    except PatternError as exc:
        raise SettingsError(f"REDACT_PATTERNS: {exc}") from None

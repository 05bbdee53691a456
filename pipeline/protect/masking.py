"""Redaction of one record's values under a capture policy, memoised for that record.

Redaction works on decoded values: JSON inside JSON strings is decoded and walked (an `@`
hidden as `\\u0040` is still an `@`), stream deltas are joined before matching (streams.py),
and text that cannot be decoded (a body cut mid-JSON) is matched on an unescaped view of it.

A `Masker` is made for each record at the record boundary (ingest) and passed to every step
that stores text of it: previews, the archive record, its dead letter. The same long strings
repeat within a record (request and backend request bodies; the first message and the
preview), so each is redacted once; the memo ends with the record's Masker.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.common import safejson
from pipeline.protect import streams
from pipeline.protect.boundaries import PLACEHOLDER
from pipeline.protect.escapes import unescaped_view
from pipeline.protect.fields import secret_key
from pipeline.protect.policy import CapturePolicy, policy_for
from pipeline.protect.redactor import Redaction, Redactor, Spans, splice
from pipeline.settings import Config

# Strings from this length are memoised: shorter ones cost less to redact again.
_MEMO_FROM = 32
# The longest value a detector masks whole (an RSA-8192 key's PEM is about 6.5 KB).
_VALUE_MAX = 16_384


@dataclass(slots=True)
class Stored:
    """A value as it will be stored, and what was masked in it."""

    value: Any
    counts: Counter[str]


class Masker:
    """Masks the text of one record's values under `policy`, each long string once."""

    __slots__ = ("_memo", "policy", "redactor")

    def __init__(self, policy: CapturePolicy) -> None:
        self.policy = policy
        self.redactor = policy.redactor
        self._memo: dict[str, tuple[str, Counter[str]]] = {}

    def redact_text(self, s: str, counts: Counter[str], shown: int | None = None) -> str:
        """Plain text (a preview, a message): masked, memoised like record strings. Text
        that reads as JSON (a JSON answer) is matched on its unescaped view, as the JSON
        text of a cut body is (an address written `a\\u0040b.com` is one), and is not
        memoised: `redact_string` of the same value decodes it, for the archive, and must not
        take this reading of it."""
        kind = _text_kind(s)
        if kind == "json":
            # With `shown`, only its first `shown` characters are kept (a preview): a value
            # that starts there ends within _VALUE_MAX (the longest a detector masks whole),
            # so the rest of a long answer is not read twice (the archive decodes it).
            return self.redact_escaped(s if shown is None else s[: shown + _VALUE_MAX], counts)
        memo = len(s) >= _MEMO_FROM and kind == "plain"
        if memo:
            hit = self._memo.get(s)
            if hit is not None:
                counts.update(hit[1])
                return hit[0]
        r = self._redact_plain(s)
        if memo:
            self._memo[s] = (r.text, r.counts)
        counts.update(r.counts)
        return r.text

    def redact_string(self, s: str, counts: Counter[str]) -> str:
        """A string value: plain text, JSON text (decoded and walked), or an SSE stream."""
        if len(s) < 6:
            return s
        if len(s) >= _MEMO_FROM:
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

    def walk(self, value: Any, counts: Counter[str]) -> Any:
        """`value` with every text string in it redacted. Most values hold nothing to mask:
        their plain strings are scanned together once, and only a string a match touches
        (or one holding JSON or a stream, decoded on its own) is redacted alone."""
        if isinstance(value, str):
            return self.redact_string(value, counts)
        strings: list[str] = []
        rebuild = _collect(value, strings)
        todo = self._to_redact(strings)
        return self._rebuild(value, todo, counts) if todo or rebuild else value

    def redact_escaped(self, s: str, counts: Counter[str]) -> str:
        return redact_escaped(self.redactor, s, counts, self.policy.prefilter)

    def _redact_uncached(self, s: str, counts: Counter[str]) -> str:
        kind = _text_kind(s)
        if kind == "json":
            return self._redact_json(s, counts)
        if kind == "sse":
            return self._redact_sse(s, counts)
        r = self._redact_plain(s)
        if r.counts:
            counts.update(r.counts)
        return r.text

    def _redact_json(self, s: str, counts: Counter[str]) -> str:
        if safejson.cut_short(s):
            return self.redact_escaped(s, counts)  # cut JSON: match on an unescaped view
        try:
            doc = orjson.loads(s)
        except orjson.JSONDecodeError:
            return self.redact_escaped(s, counts)
        local: Counter[str] = Counter()
        try:
            walked = self.walk(doc, local)
            if sum(local.values()) == 0:
                return s  # nothing masked: keep the body exactly as logged
            out = orjson.dumps(walked).decode()
        except (_TooDeep, orjson.JSONEncodeError):
            # Too deep to walk, or to re-serialise (deep under a key the walk skips, such as
            # `role`): matched as text, like cut JSON.
            return self.redact_escaped(s, counts)
        counts.update(local)
        return out + "\n" if s.endswith("\n") else out

    def _redact_plain(self, s: str) -> Redaction:
        prefilter = self.policy.prefilter
        if prefilter is not None and not prefilter(s):
            return Redaction(s, Counter())  # nothing any detector could match
        return self.redactor.redact(s)

    def _to_redact(self, strings: list[str]) -> dict[str, Spans | None]:
        """The strings to change: each with its matches when the joint scan found them all
        inside it, or None when it must be redacted on its own."""
        todo, plain = self._triage(strings)
        if not plain:
            return todo
        if not self.policy.joined_scan:
            todo.update(dict.fromkeys(plain))
            return todo
        joined = "\n".join(plain)
        prefilter = self.policy.prefilter
        if prefilter is not None and not prefilter(joined):
            return todo
        spans = self.redactor.find(joined)
        if not spans:
            return todo
        inside, crossed = _spans_by_string(plain, spans)
        for i in sorted(inside.keys() | crossed):
            s = plain[i]
            if i in crossed or todo.get(s, ()) is None:
                todo[s] = None  # its own scan decides
            else:
                todo[s] = inside[i]
        return todo

    def _triage(self, strings: list[str]) -> tuple[dict[str, Spans | None], list[str]]:
        """Strings redacted alone (JSON, streams, memoised changes) and plain ones to scan."""
        todo: dict[str, Spans | None] = {}
        plain: list[str] = []
        memo = self._memo
        # Each distinct string once: `todo` is keyed by value, and a crafted body that
        # repeats one string thousands of times then costs one scan of it.
        for s in dict.fromkeys(strings):
            if _text_kind(s) != "plain":
                todo[s] = None  # decoded and walked by redact_string
            elif len(s) >= _MEMO_FROM and s in memo:
                # Already redacted in this record (the answer, as its preview was made).
                if memo[s][0] != s:
                    todo[s] = None  # redact_string answers from the memo
            else:
                plain.append(s)
        return todo, plain

    def _rebuild(self, value: Any, todo: dict[str, Spans | None], counts: Counter[str]) -> Any:
        if isinstance(value, str):
            if value not in todo:
                return value
            spans = todo[value]
            if spans is None:
                return self.redact_string(value, counts)
            if len(spans) == 1:  # most: one value (an address as a member's name)
                start, end, label = spans[0]
                counts[label] += 1
                return f"{value[:start]}[{label}]{value[end:]}"
            return splice(value, spans, counts)  # no Counter per string
        if isinstance(value, dict):
            out = {
                k: self._machine(k, v, todo, counts)
                if k in NOT_TEXT
                else _masked_secret(counts)
                if _secret_value(k, v)
                else self._rebuild(v, todo, counts)
                for k, v in value.items()
            }
            return self._rename(out, todo, counts) if not todo.keys().isdisjoint(out) else out
        if isinstance(value, list):
            return [self._rebuild(v, todo, counts) for v in value]
        number = _number_text(value)
        if number is not None and number in todo:
            masked = self._rebuild(number, todo, counts)
            return masked if masked != number else value  # a card sent as a number: text
        return value

    def _rename(
        self, value: dict[str, Any], todo: dict[str, Spans | None], counts: Counter[str]
    ) -> dict[str, Any]:
        """`value` with its keys that hold something to mask masked (an address or a key
        written as a member's name); two that mask alike stay two members."""
        out: dict[str, Any] = {}
        last: dict[str, int] = {}  # the last number each masked name took: linear in names
        for k, v in value.items():
            masked = self._rebuild(k, todo, counts) if k in todo else k
            if masked != k:
                k = masked
                while k in out or k in value:
                    last[masked] = n = last.get(masked, 1) + 1
                    k = f"{masked} ({n})"
            out[k] = v
        return out

    def _machine(
        self, key: str, value: Any, todo: dict[str, Spans | None], counts: Counter[str]
    ) -> Any:
        """A value under a NOT_TEXT key: kept when it has the key's machine shape, the marker
        when it is log probabilities, else redacted like any value."""
        if skipped(key, value):
            return value
        if dropped(key, value):
            counts["LOGPROBS"] += 1
            return LOGPROBS_MARKER
        return self._rebuild(value, todo, counts)

    def _rebuild_in_place(
        self, value: dict[str, Any] | list[Any], todo: dict[str, Spans | None], counts: Counter[str]
    ) -> None:
        """`_rebuild` writing into the containers of `value` (which the caller owns), so that
        references into them (a stream's delta slots) stay valid."""
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            # Most items of a stream's chunks are strings: no call for them.
            if type(v) in _NUMBER_TYPES and (number := _number_text(v)) is not None:
                if number in todo:
                    value[k] = self._rebuild(v, todo, counts)  # type: ignore[index]
            elif isinstance(k, str) and k in NOT_TEXT:
                new = self._machine(k, v, todo, counts)
                if new is not v:
                    value[k] = new  # type: ignore[index]
            elif isinstance(k, str) and _secret_value(k, v):
                value[k] = _masked_secret(counts)  # type: ignore[index]
            elif isinstance(v, str):
                if v in todo:
                    value[k] = self._rebuild(v, todo, counts)  # type: ignore[index]
            elif isinstance(v, _CONTAINERS):
                self._rebuild_in_place(v, todo, counts)
        if isinstance(value, dict) and not todo.keys().isdisjoint(value):
            renamed = self._rename(value, todo, counts)
            value.clear()
            value.update(renamed)

    def _redact_sse(self, s: str, counts: Counter[str]) -> str:
        """Redact a logged stream as the text it carries. Text deltas are joined per stream of
        text before matching (a value split across chunks is still found); every other value
        of every chunk (a Responses API event's item, part, text or whole response, errors,
        names, fields we do not know) is walked like a body, all chunks in one walk (the ids
        and models that repeat in every chunk are scanned once). A stream with nothing to
        mask is kept exactly as logged."""
        before = sum(counts.values())
        blocks = streams.parse(s)
        joined: list[tuple[list[streams.Slot], list[str]]] = []
        for slots in streams.deltas(blocks).values():
            joined.append((slots, self._redact_deltas(slots, counts)))
            for holder, field in slots:
                holder[field] = ""  # hidden from the walk: redacted above, joined
        docs = [doc for _, doc, _ in blocks if doc is not None]
        strings: list[str] = []
        rebuild = _collect(docs, strings)
        todo = self._to_redact(strings)
        if todo or rebuild:
            self._rebuild_in_place(docs, todo, counts)
        for slots, pieces in joined:
            for (holder, field), piece in zip(slots, pieces, strict=True):
                holder[field] = piece
        out: list[streams.Block] = []
        names: dict[str, str] = {}  # `event:` lines repeat: each distinct head redacted once
        for event_line, doc, raw in blocks:
            if doc is not None:
                if event_line is not None:  # kept by render: a sender can write anything there
                    if event_line not in names:
                        names[event_line] = self.redact_text(event_line, counts)
                    event_line = names[event_line]
            elif raw.strip():
                # [DONE], comments, or the event the log cut in half
                raw = self.redact_escaped(raw, counts)
            out.append((event_line, doc, raw))
        if sum(counts.values()) == before:
            return s
        return streams.render(out)

    def _redact_deltas(self, slots: list[streams.Slot], counts: Counter[str]) -> list[str]:
        """One stream of deltas, joined then redacted together: the pieces to write back."""
        pieces = [holder[field] for holder, field in slots]
        joined = "".join(pieces)
        hit = self._memo.get(joined)
        if hit is not None and hit[0] == joined:
            return pieces  # the answer's text, already found clean as its preview was made
        new, c = self.redactor.redact_pieces(pieces)
        counts.update(c)
        return new


def redact_escaped(
    redactor: Redactor,
    s: str,
    counts: Counter[str],
    prefilter: Callable[[str], bool] | None = None,
) -> str:
    """JSON text matched without decoding its structure: on a view with string escapes
    undone, in linear time (cut JSON, text too deep to walk, dead letters as text). A view
    the `prefilter` says no detector can match is kept as it is, unscanned (most cut bodies:
    prose). In JSON text, a match outside the strings (a card number sent as a number)
    becomes a string placeholder: the text stays the JSON (or the JSON prefix) it was, which
    a replay reads (repairs) again."""
    view, offsets = unescaped_view(s)
    if prefilter is not None and not prefilter(view):
        return s
    spans = redactor.find(view)
    if not spans:
        return s
    bare = _outside_strings(s) if s.lstrip()[:1] in ("{", "[") else None
    return splice(s, spans, counts, offsets, bare)


# A JSON string, or the one a cut left open (running to the end, maybe in an escape).
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)


def _outside_strings(s: str) -> Callable[[int], bool]:
    """Whether an offset of JSON text `s` lies outside its strings. Found once the text has
    a match: one pass over its strings."""
    spans = [m.span() for m in _JSON_STRING.finditer(s)]
    starts = [a for a, _ in spans]

    def outside(at: int) -> bool:
        i = bisect.bisect_right(starts, at) - 1
        return i < 0 or at >= spans[i][1]

    return outside


def _spans_by_string(plain: list[str], spans: Spans) -> tuple[dict[int, Spans], set[int]]:
    """Matches of a scan over `plain` joined by newlines: those inside one string (by its
    index, as offsets in it), and the indices of strings a match crosses."""
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
    return inside, crossed


# Keys whose values may be machine data, not text. An embedding (a list of numbers, thousands
# of them) is skipped. `logprobs` repeats the answer token by token: tokens too short to match
# alone, and `bytes` arrays of UTF-8 values that no detector reads; so wherever values are
# redacted, log probabilities are not kept: the object or list becomes LOGPROBS_MARKER,
# counted as LOGPROBS (a request's `"logprobs": true` or `5` stays). Every other key's value
# is text to whoever wrote it: ids, models, roles, types and filter verdicts are scanned like
# any text (each distinct string once per walk, so they cost little; a value of the usual
# shape comes out unchanged, one holding an address or a card number does not).
NOT_TEXT = frozenset({"embedding", "logprobs"})
LOGPROBS_MARKER = "[logprobs not kept]"


_NUMBERS = frozenset({float, int})


def skipped(key: str, value: Any) -> bool:
    """Whether the value of a NOT_TEXT key is machine data, kept as it is."""
    if key == "embedding":  # every item a number (one pass in C: no Python step per item)
        return isinstance(value, list) and all(map(_NUMBERS.__contains__, map(type, value)))
    return not isinstance(value, dict | list | str)  # logprobs: true, 5, null


def dropped(key: str, value: Any) -> bool:
    """Whether the value of a NOT_TEXT key is log probabilities, replaced by LOGPROBS_MARKER
    (an empty list or object holds nothing: kept, so a stream stays as logged)."""
    return key == "logprobs" and isinstance(value, dict | list) and len(value) > 0


_SSE_HEAD = re.compile(r"(?:data|event|id|retry)\s*:|:")


def _text_kind(s: str) -> str:
    """ "json" (decoded and walked), "sse" (a logged stream) or "plain" text."""
    head = s[:16].lstrip()
    if head[:1] in ("{", "[", '"'):
        return "json"
    return "sse" if _SSE_HEAD.match(head) else "plain"


class _TooDeep(Exception):
    """A decoded body nests deeper than _COLLECT_DEPTH: it is matched as text instead."""


# Records arrive bounded (safejson.MAX_DEPTH, envelope.py); bodies decoded here are not, and
# the depth is checked by the walk that collects their strings anyway (no second pass).
_COLLECT_DEPTH = safejson.MAX_DEPTH + 16


_CONTAINERS = (dict, list)  # a tuple: `dict | list` is built again at each isinstance


def _collect(value: Any, out: list[str], depth: int = 0) -> bool:
    """The text strings in `value`, as `walk` visits them; whether it must be rebuilt
    whatever they hold: log probabilities to replace (`dropped`), or a value of a key that
    names a secret (`_secret_value`, masked as the value is rebuilt). Strings and scalars
    inside a container (most values: a stream's chunks are made of them) are taken by its
    loop, without a call each."""
    if isinstance(value, str):
        if len(value) >= 6:
            out.append(value)
    elif isinstance(value, _CONTAINERS):
        if depth > _COLLECT_DEPTH:
            raise _TooDeep
        if isinstance(value, dict):
            return _collect_dict(value, out, depth + 1)
        return _collect_list(value, out, depth + 1)
    elif (number := _number_text(value)) is not None:
        out.append(number)
    return False


def _collect_list(value: list[Any], out: list[str], depth: int) -> bool:
    drop = False
    for v in value:
        if isinstance(v, str):
            if len(v) >= 6:
                out.append(v)
        elif isinstance(v, _CONTAINERS):
            drop = _collect(v, out, depth) or drop
        elif type(v) in _NUMBER_TYPES and (number := _number_text(v)) is not None:
            out.append(number)
    return drop


def _collect_dict(value: dict[str, Any], out: list[str], depth: int) -> bool:
    """`_collect` of an object: its values, but machine data (`skipped`); log
    probabilities (`dropped`) and secrets' values are said by the result."""
    drop = False
    for k, v in value.items():
        if len(k) >= 6 and not _API_NAMES.get(k) and not _api_name(k):
            out.append(k)  # a member's name is text (an address, a key)
        if isinstance(v, str):
            if len(v) >= 6:
                out.append(v)
            drop = drop or _secret_value(k, v)
        elif not v or not isinstance(v, _CONTAINERS) or (k in NOT_TEXT and skipped(k, v)):
            if type(v) in _NUMBER_TYPES and (number := _number_text(v)) is not None:
                out.append(number)
            drop = drop or _secret_value(k, v)  # a scalar, an empty container, machine data
        elif k in NOT_TEXT and dropped(k, v):
            drop = True
        else:
            drop = _collect(v, out, depth) or drop
    return drop


def _api_name(key: str) -> bool:
    """A member name of letters and underscores, shorter than any key a detector finds (an
    AWS key id is 20 letters): what every API names its members (`finish_reason`), which a
    walk then need not scan, thousands of times in a stream. Those seen are remembered
    (short names, a bounded number of them: a sender chooses names)."""
    plain = len(key) < 20 and key.isascii() and key.replace("_", "").isalpha()
    if plain:
        if len(_API_NAMES) >= _API_NAMES_MAX:
            _API_NAMES.clear()  # the names in use come back at once
        _API_NAMES[key] = True
    return plain


_API_NAMES: dict[str, bool] = {}
_API_NAMES_MAX = 4_096
_NUMBER_TYPES = frozenset({int, float})


# The numbers a detector reads: a card number (13 to 19 digits) sent as a JSON number.
_LONG_NUMBER = 10**12
_NO_CARD = 10**20  # past 19 digits no card: and `str` of a 5,000-digit int raises


def _number_text(value: Any) -> str | None:
    """The digits of a number as long as a card number, as a detector reads them; None for
    any other value. (A float that big is whole: its digits as an integer.)"""
    kind = type(value)
    if kind is not int and kind is not float:
        return None
    if not _LONG_NUMBER <= abs(value) < _NO_CARD:  # NaN compares false: None too
        return None
    return str(int(value))


def _secret_value(key: str, value: Any) -> bool:
    """A value under a key that names a secret (fields.secret_key): a string (not a
    placeholder already) or a number, masked whole whatever it looks like. The key first:
    a cached look-up, where most values of a walk stop."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    if not secret_key(key):
        return False
    return not isinstance(value, str) or (value != "" and PLACEHOLDER.fullmatch(value) is None)


def _masked_secret(counts: Counter[str]) -> str:
    counts["SECRET"] += 1
    return "[SECRET]"


def masker_for(cfg: Config) -> Masker:
    """A fresh Masker under the policy of `cfg`: for tools and tests that redact values
    outside a batch (each call starts an empty memo)."""
    return Masker(policy_for(cfg))

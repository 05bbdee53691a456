"""A logged server-sent-events stream as blocks, where its text deltas are, and back to text.

Redaction (masking.py) joins each stream of deltas before matching, so a card number split
across two chunks is still found, then writes the blocks back.
"""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.common import safejson

# One event of the stream: its lines other than `data:` (`event:`, `id:`, comments: None when
# there are none), its data decoded (None: kept as text), its text.
Block = tuple[str | None, dict[str, Any] | None, str]
# Where one delta of a stream of text lives: the dict holding it, and its field.
Slot = tuple[dict[str, Any], str]


def parse(s: str) -> list[Block]:
    blocks: list[Block] = []
    for raw in s.replace("\r\n", "\n").split("\n\n"):
        head = []
        data_lines = []
        for line in raw.split("\n"):
            if line.startswith("data:"):
                data_lines.append(line[5:].lstrip(" "))
            elif line:
                head.append(line)  # a sender can write anything there: redacted as text
        blocks.append(("\n".join(head) or None, _data("\n".join(data_lines)), raw))
    return blocks


def _data(data: str) -> dict[str, Any] | None:
    """The event's chunk; None for anything else (kept and redacted as text): [DONE], a
    line cut in half, or JSON that is no chunk (an array, a number, a string)."""
    if not data or data.strip() == "[DONE]":
        return None
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    if safejson.may_be_deep(data) and not safejson.depth_ok(doc):
        return None  # matched as text
    return doc


def deltas(blocks: list[Block]) -> dict[tuple[Any, ...], list[Slot]]:
    """The text deltas of the stream, by stream of text (a choice's content, refusal or text,
    a tool call's arguments, a Responses API event's deltas), in order. The rest of each
    chunk is redacted as values (masking.Masker._redact_sse)."""
    streams: dict[tuple[Any, ...], list[Slot]] = {}
    for _, doc, _ in blocks:
        if doc is not None:
            for key, holder, field in _delta_slots(doc):
                streams.setdefault(key, []).append((holder, field))
    return streams


def render(blocks: list[Block]) -> str:
    """The stream's text: blocks with data re-serialised, the others as they were."""
    out = []
    for head, doc, raw in blocks:
        if doc is None:
            out.append(raw)
            continue
        lines = [head] if head else []
        lines.append("data: " + orjson.dumps(doc).decode())
        out.append("\n".join(lines))
    return "\n\n".join(out)


def _delta_slots(doc: dict[str, Any]) -> list[tuple[tuple[Any, ...], dict[str, Any], str]]:
    """Where text deltas live in one chunk: (stream key, holder dict, field)."""
    slots = _choice_slots(doc.get("choices"))
    if isinstance(doc.get("delta"), str):
        # Responses API: every `response.*.delta` event (output text, refusal, function-call
        # and tool arguments, reasoning text and summaries, audio transcripts...) carries its
        # piece in `delta`; one stream of text per event type, output item, part and summary.
        # Any other event type with a text `delta` is read the same way (nothing is left out).
        key = (
            _key_part(doc.get("type")),
            _key_part(doc.get("output_index", 0)),
            _key_part(doc.get("content_index", 0)),
            _key_part(doc.get("summary_index", 0)),
        )
        slots.append((key, doc, "delta"))
    return slots


# Text fields of a chat chunk's `delta`, each its own stream of text per choice: the answer, a
# refusal, reasoning (`reasoning_content`, sent by reasoning models behind some gateways).
_DELTA_TEXT = ("content", "refusal", "reasoning_content")


def _choice_slots(choices: Any) -> list[tuple[tuple[Any, ...], dict[str, Any], str]]:
    """Chat Completions and legacy Completions chunks: each choice's text (`text` of a
    Completions chunk), its delta's content, refusal and reasoning, the legacy
    `function_call` and each tool call's arguments, and an audio answer's transcript."""
    slots: list[tuple[tuple[Any, ...], dict[str, Any], str]] = []
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        idx = _key_part(choice.get("index", 0))
        if isinstance(choice.get("text"), str):
            slots.append((("text", idx), choice, "text"))
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        for field in _DELTA_TEXT:
            if isinstance(delta.get(field), str):
                slots.append(((field, idx), delta, field))
        fn = delta.get("function_call")
        if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
            slots.append((("function_call", idx), fn, "arguments"))
        audio = delta.get("audio")
        if isinstance(audio, dict) and isinstance(audio.get("transcript"), str):
            slots.append((("audio", idx), audio, "transcript"))
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else ():
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                slots.append((("tool", idx, _key_part(call.get("index", 0))), fn, "arguments"))
    return slots


def _key_part(value: Any) -> Any:
    """An index as a dict key: a list or object where a number belongs is not hashable."""
    return (
        value if isinstance(value, int | str | float | bool) or value is None else repr(type(value))
    )

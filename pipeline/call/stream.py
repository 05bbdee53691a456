"""Server-sent-event bodies (streamed calls) → one assembled response (formats.md §5.4, §5.7).

Chat Completions: `data: {chunk}` events, the first Azure event with empty `model` and only
`prompt_filter_results`, deltas per choice, tool-call arguments in fragments by `index`, a
finish chunk, then (only with `stream_options.include_usage`) a chunk with `"choices": []`
and `usage`, then `data: [DONE]`.

Responses API: `event: <type>` + `data: {...}`; text arrives in `response.output_text.delta`,
and the terminal `response.completed` / `response.incomplete` / `response.failed` carries the
whole response with `usage`. There is no `[DONE]`.

A logged stream may be cut anywhere (APIM logs the first 8,192 bytes): a partial last event is
ignored and `complete` stays False.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.call.content import (
    completion_text,
    generated_extra,
    generated_text,
    list_of,
    tool_call_text,
    tool_calls_text,
)
from pipeline.common import safejson
from pipeline.common.values import as_int, string

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


@dataclass(slots=True)
class Stream:
    kind: str = "chat"  # "chat" or "responses"
    model: str | None = None
    response_id: str | None = None
    text: str = ""
    tool_calls: dict[int, dict[str, str]] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    content_filtered: bool = False
    # Text deltas as they arrive (joined once: `+=` on an attribute copies the whole text
    # each time, quadratic in the number of deltas).
    parts: list[str] = field(default_factory=list)
    # What the other choices (`n` > 1) generated: output tokens too, never previewed.
    others: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    # The whole response object of a Responses API terminal event.
    response: dict[str, Any] | None = None
    # A terminal marker ([DONE] or a terminal event) was seen: nothing was cut.
    complete: bool = False
    events: int = 0
    # A `delta.audio` was seen: the output is mostly audio tokens, which no text measures.
    audio: bool = False

    def completion_text(self) -> str | None:
        if self.response is not None:
            text = completion_text(self.response)
            if text:
                return text
        if self.text:
            return self.text
        calls = sorted(self.tool_calls.items())
        return tool_calls_text(
            [tool_call_text(c.get("name"), c.get("arguments")) for _, c in calls]
        )

    def generated_text(self) -> str:
        """Everything the model generated that we saw: text plus tool names and arguments."""
        if self.response is not None:
            return generated_text(self.response)
        calls = (c.get("name", "") + c.get("arguments", "") for c in self.tool_calls.values())
        return self.text + "".join(calls) + "".join(self.others)


# One SSE line we act on: a blank line (end of an event), a `data` or an `event` field.
# Anything else (comments, unknown fields, garbage) never matches, so the regex engine skips
# it without a Python step per line.
_LINE = re.compile(r"^(?:(data|event)(?::[ ]?(.*))?)?$", re.MULTILINE)


def _events(text: str) -> list[tuple[str | None, str]]:
    """(event type, data) pairs. Incomplete trailing events are returned as they are."""
    out: list[tuple[str | None, str]] = []
    event: str | None = None
    data: list[str] = []
    for m in _LINE.finditer(text.replace("\r\n", "\n").replace("\r", "\n")):
        name = m.group(1)
        if name is None:  # a blank line
            if data:
                out.append((event, "\n".join(data)))
            event, data = None, []
        elif name == "data":
            data.append(m.group(2) or "")
        else:
            event = m.group(2) or ""
    if data:
        out.append((event, "\n".join(data)))
    return out


def parse_sse(text: str) -> Stream:
    s = Stream()
    for event, data in _events(text):
        if data.strip() == "[DONE]":
            s.complete = True
            continue
        body = data.strip()
        if not (body.startswith("{") and body.endswith("}")):
            continue  # the event the log cut in half (an exception per event costs more)
        try:
            doc = safejson.loads(body)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(doc, dict):
            continue
        s.events += 1
        kind = event or doc.get("type")
        if isinstance(kind, str) and (kind.startswith("response.") or kind == "error"):
            _responses_event(s, kind, doc)
        else:
            _chat_chunk(s, doc)
    s.text += "".join(s.parts)
    s.parts.clear()
    for slot in s.tool_calls.values():
        pieces = slot.pop("pieces", None)
        if pieces:
            slot["arguments"] = "".join(pieces)
    return s


# Tool-call slots kept per stream: a crafted stream cannot grow the dict without bound.
MAX_TOOL_CALLS = 128


def _index(value: object) -> int | None:
    """A choice, tool-call or output index as the stream wrote it (a whole number)."""
    if value is None:
        return 0
    return as_int(value)


def _slot(s: Stream, index: int | None) -> dict[str, Any] | None:
    if index is None:
        return None
    slot = s.tool_calls.get(index)
    if slot is None:
        if len(s.tool_calls) >= MAX_TOOL_CALLS:
            return None
        slot = s.tool_calls[index] = {}
    return slot


def _chat_chunk(s: Stream, doc: dict[str, Any]) -> None:
    if not s.model:
        s.model = string(doc.get("model"))  # Azure's first event has model ""
    if not s.response_id:
        s.response_id = string(doc.get("id"))
    if isinstance(doc.get("usage"), dict):
        s.usage = doc["usage"]
    if isinstance(doc.get("error"), dict):
        s.error = doc["error"]
    choices = doc.get("choices")
    for choice in choices if isinstance(choices, list) else ():
        if not isinstance(choice, dict):
            continue
        if _index(choice.get("index")) == 0:
            _first_choice(s, choice)  # previews follow the first choice
        else:
            _other_choice(s, choice)  # estimates count every choice (a request's `n`)


def _other_choice(s: Stream, choice: dict[str, Any]) -> None:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        if isinstance(delta.get("content"), str):
            s.others.append(delta["content"])
        _generated_extra(s, delta)
        for call in list_of(delta.get("tool_calls")):
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                s.others += [v for v in (fn.get("name"), fn.get("arguments")) if isinstance(v, str)]
    elif isinstance(choice.get("text"), str):
        s.others.append(choice["text"])


def _first_choice(s: Stream, choice: dict[str, Any]) -> None:
    delta = choice.get("delta")
    if isinstance(delta, dict):
        if isinstance(delta.get("content"), str):
            s.parts.append(delta["content"])
        if isinstance(delta.get("refusal"), str):
            s.parts.append(delta["refusal"])  # generated text too: it counts as output
        _generated_extra(s, delta, refusal=False)
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            _tool_call_deltas(s, calls)
    elif isinstance(choice.get("text"), str):
        # A streamed legacy Completion (`object: text_completion`, formats.md): its text is
        # on the choice, with no delta. Unread, such a stream without `usage` counted no
        # output tokens.
        s.parts.append(choice["text"])
    reason = string(choice.get("finish_reason"))
    if reason:
        s.finish_reason = reason
        if reason == "content_filter":
            s.content_filtered = True


def _generated_extra(s: Stream, delta: dict[str, Any], refusal: bool = True) -> None:
    """Reasoning: output tokens, never previewed (a preview shows the answer; the first
    choice's refusal is in it already). Audio makes the output unknown (`Stream.audio`)."""
    s.others += generated_extra(delta, refusal)
    if isinstance(delta.get("audio"), dict):
        s.audio = True


def _tool_call_deltas(s: Stream, calls: list[Any]) -> None:
    """Tool calls arrive as a name, then their arguments in pieces, each under its index."""
    for call in calls:
        if not isinstance(call, dict):
            continue
        slot = _slot(s, _index(call.get("index")))
        fn = call.get("function")
        if slot is None or not isinstance(fn, dict):
            continue
        if string(fn.get("name")):
            slot["name"] = fn["name"]
        if isinstance(fn.get("arguments"), str):
            slot.setdefault("pieces", []).append(fn["arguments"])


def _responses_event(s: Stream, kind: str, doc: dict[str, Any]) -> None:
    s.kind = "responses"
    response = doc.get("response")
    if isinstance(response, dict):
        s.model = string(response.get("model")) or s.model
        s.response_id = string(response.get("id")) or s.response_id
    if kind == "response.output_text.delta" and isinstance(doc.get("delta"), str):
        s.parts.append(doc["delta"])
    elif kind == "response.output_item.added":
        item = doc.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            _function_call_added(s, doc, item)
    elif kind == "response.function_call_arguments.delta" and isinstance(doc.get("delta"), str):
        slot = _slot(s, _index(doc.get("output_index")))
        if slot is not None:
            slot.setdefault("pieces", []).append(doc["delta"])
    elif kind in _TERMINAL and isinstance(response, dict):
        _terminal(s, response)
    elif kind == "error":
        s.error = doc.get("error") if isinstance(doc.get("error"), dict) else doc


def _function_call_added(s: Stream, doc: dict[str, Any], item: dict[str, Any]) -> None:
    slot = _slot(s, _index(doc.get("output_index")))
    if slot is not None:
        slot.clear()
        slot["name"] = string(item.get("name")) or ""


def _terminal(s: Stream, response: dict[str, Any]) -> None:
    """`response.completed`, `.incomplete` or `.failed`: the whole response, with usage."""
    s.complete = True
    s.response = response
    if isinstance(response.get("usage"), dict):
        s.usage = response["usage"]
    details = response.get("incomplete_details")
    reason = string(details.get("reason")) if isinstance(details, dict) else None
    s.finish_reason = reason or string(response.get("status"))
    if reason == "content_filter":
        s.content_filtered = True
    if isinstance(response.get("error"), dict):
        s.error = response["error"]

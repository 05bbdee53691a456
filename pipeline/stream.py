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

from dataclasses import dataclass, field
from typing import Any

import orjson

from .content import completion_text, generated_text

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
    error: dict[str, Any] | None = None
    # The whole response object of a Responses API terminal event.
    response: dict[str, Any] | None = None
    # A terminal marker ([DONE] or a terminal event) was seen: nothing was cut.
    complete: bool = False
    events: int = 0

    def completion_text(self) -> str | None:
        if self.response is not None:
            text = completion_text(self.response)
            if text:
                return text
        if self.text:
            return self.text
        if self.tool_calls:
            calls = [
                f"{c.get('name') or '?'}({c.get('arguments', '')})"
                for _, c in sorted(self.tool_calls.items())
            ]
            return "[tool_calls] " + "; ".join(calls)
        return None

    def generated_text(self) -> str:
        """Everything the model generated that we saw: text plus tool names and arguments."""
        if self.response is not None:
            return generated_text(self.response)
        calls = (c.get("name", "") + c.get("arguments", "") for c in self.tool_calls.values())
        return self.text + "".join(calls)


def _events(text: str) -> list[tuple[str | None, str]]:
    """(event type, data) pairs. Incomplete trailing events are returned as they are."""
    out: list[tuple[str | None, str]] = []
    event: str | None = None
    data: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if raw == "":
            if data:
                out.append((event, "\n".join(data)))
            event, data = None, []
            continue
        if raw.startswith(":"):
            continue  # comment / keep-alive
        name, _, value = raw.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
    if data:
        out.append((event, "\n".join(data)))
    return out


def parse_sse(text: str) -> Stream:
    s = Stream()
    for event, data in _events(text):
        if data.strip() == "[DONE]":
            s.complete = True
            continue
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue  # the event the log cut in half
        if not isinstance(doc, dict):
            continue
        s.events += 1
        kind = event or doc.get("type")
        if isinstance(kind, str) and (kind.startswith("response.") or kind == "error"):
            _responses_event(s, kind, doc)
        else:
            _chat_chunk(s, doc)
    return s


def _chat_chunk(s: Stream, doc: dict[str, Any]) -> None:
    if doc.get("model") and not s.model:
        s.model = doc["model"]  # Azure's first event has model ""
    if doc.get("id") and not s.response_id:
        s.response_id = doc["id"]
    if isinstance(doc.get("usage"), dict):
        s.usage = doc["usage"]
    if isinstance(doc.get("error"), dict):
        s.error = doc["error"]
    for choice in doc.get("choices") or ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue  # previews and estimates follow the first choice
        delta = choice.get("delta") or {}
        if isinstance(delta, dict):
            if isinstance(delta.get("content"), str):
                s.text += delta["content"]
            for call in delta.get("tool_calls") or ():
                if not isinstance(call, dict):
                    continue
                slot = s.tool_calls.setdefault(int(call.get("index", 0)), {})
                fn = call.get("function") or {}
                if fn.get("name"):
                    slot["name"] = fn["name"]
                if isinstance(fn.get("arguments"), str):
                    slot["arguments"] = slot.get("arguments", "") + fn["arguments"]
        if choice.get("finish_reason"):
            s.finish_reason = choice["finish_reason"]
            if choice["finish_reason"] == "content_filter":
                s.content_filtered = True


def _responses_event(s: Stream, kind: str, doc: dict[str, Any]) -> None:
    s.kind = "responses"
    response = doc.get("response")
    if isinstance(response, dict):
        if response.get("model"):
            s.model = response["model"]
        if response.get("id"):
            s.response_id = response["id"]
    if kind == "response.output_text.delta" and isinstance(doc.get("delta"), str):
        s.text += doc["delta"]
    elif kind == "response.output_item.added":
        item = doc.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            s.tool_calls[int(doc.get("output_index", 0))] = {"name": str(item.get("name", ""))}
    elif kind == "response.function_call_arguments.delta":
        slot = s.tool_calls.setdefault(int(doc.get("output_index", 0)), {})
        slot["arguments"] = slot.get("arguments", "") + str(doc.get("delta", ""))
    elif kind in _TERMINAL and isinstance(response, dict):
        s.complete = True
        s.response = response
        if isinstance(response.get("usage"), dict):
            s.usage = response["usage"]
        details = response.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        s.finish_reason = reason or response.get("status")
        if reason == "content_filter":
            s.content_filtered = True
        if isinstance(response.get("error"), dict):
            s.error = response["error"]
    elif kind == "error":
        s.error = doc.get("error") if isinstance(doc.get("error"), dict) else doc

"""The human-readable text of requests and responses, for previews and token estimates.

Preview rule (issue contract, as the KQL users run today): the content of the *first*
request message and of the *first* choice; for content arrays the text parts are joined.
"""

from __future__ import annotations

from typing import Any


def part_text(content: Any) -> str | None:
    """Text of a message `content`: a string, or the text parts of a content array."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    texts.append(t)
                elif isinstance(t, dict) and isinstance(t.get("value"), str):
                    texts.append(t["value"])  # Assistants-style {"text": {"value": ...}}
        return " ".join(texts) if texts else None
    return None


def tool_call_text(name: Any, arguments: Any) -> str:
    """One tool call as previews show it: `name(arguments)`."""
    return f"{name or '?'}({arguments or ''})"


def tool_calls_text(calls: list[str]) -> str | None:
    """The tool calls of an answer without text, as previews show them."""
    return "[tool_calls] " + "; ".join(calls) if calls else None


def _tool_calls_text(tool_calls: Any) -> str | None:
    if not isinstance(tool_calls, list) or not tool_calls:
        return None
    calls = []
    for call in tool_calls:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            calls.append(tool_call_text(fn.get("name"), fn.get("arguments")))
    return tool_calls_text(calls)


def _message_text(message: Any) -> str | None:
    if isinstance(message, str):
        return message
    if not isinstance(message, dict):
        return None
    text = part_text(message.get("content"))
    if text:
        return text
    return _tool_calls_text(message.get("tool_calls")) or text


def prompt_text(request: Any, operation: str | None) -> str | None:
    """Text of the first request message (chat), prompt, input or first input item."""
    if not isinstance(request, dict):
        return None
    messages = request.get("messages")
    if isinstance(messages, list) and messages:
        return _message_text(messages[0])
    for key in ("prompt", "input"):
        value = request.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value:
            first = value[0]
            if isinstance(first, str):
                return first
            if isinstance(first, dict):
                text = _message_text(first)
                if text is None and first.get("type") == "function_call_output":
                    output = first.get("output")
                    text = output if isinstance(output, str) else None
                if text is not None:
                    return text
            if isinstance(first, int):
                return None  # token-id input: nothing readable
    instructions = request.get("instructions")
    return instructions if isinstance(instructions, str) else None


def completion_text(response: Any) -> str | None:
    """Text of the first choice (chat/completions) or the output text (Responses API)."""
    if not isinstance(response, dict):
        return None
    choices = response.get("choices")
    if isinstance(choices, list) and choices:
        first = choices[0]
        if isinstance(first, dict):
            if isinstance(first.get("text"), str):
                return first["text"]
            return _message_text(first.get("message"))
    output = response.get("output")
    if isinstance(output, list):
        return responses_output_text(output)
    if isinstance(response.get("output_text"), str):
        return response["output_text"]
    if isinstance(response.get("text"), str):
        return response["text"]  # audio transcription / translation
    return None


def generated_text(response: Any) -> str:
    """All text the model generated, in every choice (a request's `n`) or the Responses
    output: message text plus tool-call names and arguments, as counted for an output-token
    estimate."""
    if not isinstance(response, dict):
        return ""
    text = "".join(
        _choice_generated(c) for c in list_of(response.get("choices")) if isinstance(c, dict)
    )
    output = response.get("output")
    if isinstance(output, list):
        text += _output_generated(output)
    return text


def generated_extra(message: dict[str, Any], refusal: bool = True) -> list[str]:
    """A message's (or a stream delta's) generated text besides `content` and tool calls,
    all of it output tokens: a refusal, the reasoning of models that return it (DeepSeek-R1
    on Azure AI Foundry). An audio answer's transcript is not here: see `answered_in_audio`."""
    parts: list[str] = []
    if refusal and isinstance(message.get("refusal"), str):
        parts.append(message["refusal"])
    if isinstance(message.get("reasoning_content"), str):
        parts.append(message["reasoning_content"])
    return parts


def answered_in_audio(response: Any) -> bool:
    """A chat answer with an `audio` part (gpt-4o-audio): its output is mostly audio tokens,
    several per word of the transcript and priced higher, which no text we see measures."""
    if not isinstance(response, dict):
        return False
    for choice in list_of(response.get("choices")):
        message = choice.get("message") if isinstance(choice, dict) else None
        if isinstance(message, dict) and isinstance(message.get("audio"), dict):
            return True
    return False


def _choice_generated(choice: dict[str, Any]) -> str:
    parts: list[str] = []
    if isinstance(choice.get("text"), str):
        parts.append(choice["text"])
    message = choice.get("message")
    if isinstance(message, dict):
        parts.append(part_text(message.get("content")) or "")
        parts += generated_extra(message)
        for call in list_of(message.get("tool_calls")):
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                parts.append(str(fn.get("name") or "") + str(fn.get("arguments") or ""))
    return "".join(parts)


def list_of(value: Any) -> list[Any]:
    """A field that holds a list, or nothing: a sender may put any JSON value there."""
    return value if isinstance(value, list) else []


def _output_generated(output: list[Any]) -> str:
    parts: list[str] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in list_of(item.get("content")):
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    parts.append(part["text"])
        elif item.get("type") == "function_call":
            parts.append(str(item.get("name") or "") + str(item.get("arguments") or ""))
    return "".join(parts)


def responses_output_text(output: list[Any]) -> str | None:
    """Text of a Responses API `output`: its message text, else its function calls."""
    texts: list[str] = []
    calls: list[str] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            content = item.get("content")
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        texts.append(part["text"])
        elif item.get("type") == "function_call":
            calls.append(tool_call_text(item.get("name"), item.get("arguments")))
    if texts:
        return "".join(texts)
    return tool_calls_text(calls)

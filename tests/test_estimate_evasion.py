"""A call whose usage was not logged is estimated (pipeline/call/exchange.py): a client must
not make it count fewer tokens than it used by how it shapes its request, nor a model's answer
count less by the fields its text comes in. Each test is a way a cost audit found.

Pure: records go through `transform` with default settings, no storage.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson

from pipeline.call import tokens
from pipeline.call.bodies import parse_body
from pipeline.call.exchange import interpret
from pipeline.ingest.batch import transform
from pipeline.model import EventIn
from pipeline.settings import Config
from tests.fixtures import apim, shapes, sources
from tests.timing import best_of

ENQUEUED = datetime(2025, 11, 4, 10, 15, 7, tzinfo=UTC)
TIME = "2025-11-04T10:15:02.1234567Z"
O200K = "o200k_base"


def _row(body: bytes) -> dict[str, Any]:
    event = EventIn(body=body, partition="0", sequence=1, enqueued=ENQUEUED, origin="test")
    (row,) = [entity for _, entity in transform([event], Config()).rows]
    return row


def _gateway_row(*records: dict[str, Any]) -> dict[str, Any]:
    return _row(apim.envelope(*records))


def _text_tokens(*texts: str) -> int:
    return sum(tokens.estimate_text(t, O200K) for t in texts)


def _stream(model: str, *deltas: dict[str, Any]) -> str:
    """A chat stream without `include_usage` (no usage chunk), one chunk per delta."""
    chunks = [dict(shapes._chunk(d), model=model) for d in deltas]
    return shapes.sse(shapes.FIRST_EVENT, *chunks, dict(shapes._chunk({}, "stop"), model=model))


# --- 1. an embeddings request padded before its input -------------------------------------

EMBED_TEXTS = ["Quarterly revenue grew by eleven percent in the northern region. " * 30] * 16


def _embeddings_answer(n: int) -> str:
    """1,536 floats per input, keys sorted as Azure sends them: always cut before `usage`."""
    data = [{"embedding": [0.01234567] * 1536, "index": i, "object": "embedding"} for i in range(n)]
    body = {"data": data, "model": "text-embedding-3-large", "object": "list"}
    body["usage"] = {"prompt_tokens": 5776, "total_tokens": 5776}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode() + "\n"


def _padded_embeddings(cid: str, path: str, operation_id: str) -> tuple[dict[str, Any], int]:
    body = "{" + " " * 9_000 + '"input":' + orjson.dumps(EMBED_TEXTS).decode() + "}"
    answer = _embeddings_answer(len(EMBED_TEXTS))
    rec = apim.gateway(
        apim.new_id(cid), time=TIME, path=path, request=apim.cut_utf8(body),
        response=apim.cut_utf8(answer), operationId=operation_id,
        requestSize=len(body.encode()), responseSize=len(answer.encode()),
    )  # fmt: skip
    return rec, len(body.encode())


def test_text_embeddings_padded_before_their_input_are_estimated_from_the_request_size() -> None:
    """`{` + 9,000 blanks + `"input": [...]`: APIM's cut fell before anything countable and,
    embeddings being skipped by the request-size rule (meant for image embeddings only), the
    call had no tokens: TokensSource none, cost 0."""
    for path, operation_id in (
        ("/openai/deployments/embed-large/embeddings?api-version=2024-10-21", "embeddings_create"),
        ("/models/embeddings?api-version=2024-05-01-preview", "getEmbeddings"),
    ):
        rec, size = _padded_embeddings(f"padded-embeddings-{operation_id}", path, operation_id)
        row = _gateway_row(rec)
        assert row["TokensSource"] == "estimated", path
        assert row["PromptTokens"] == math.ceil(size / 4)
        assert row["CompletionTokens"] == 0
    # Image embeddings keep their exemption, known from the operation APIM names when the
    # URL names none (an image's bytes are no text tokens).
    rec, _ = _padded_embeddings("padded-image-embeddings", "/vision/embed", "getImageEmbeddings")
    assert "PromptTokens" not in _gateway_row(rec)


# --- 2. a prompt moved into schemas ---------------------------------------------------------

CLAUSE = (
    "Return the clause text verbatim, quoting every sub-paragraph, footnote and annex "
    "reference, then summarise how it changes the obligations of each party. "
)


def _described(n: int, tag: str) -> dict[str, Any]:
    """An object schema of `n` string fields, each with a long description."""
    props = {
        f"{tag}_{i}": {"type": "string", "description": f"{tag} {i}: {CLAUSE * 2}"}
        for i in range(n)
    }
    return {"type": "object", "properties": props, "additionalProperties": False}


def _descriptions(schema: Any) -> list[str]:
    """Every description in a schema (what the model is shown, whatever its nesting)."""
    found: list[str] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("description"), str):
                found.append(node["description"])
            stack += node.values()
        elif isinstance(node, list):
            stack += node
    return found


def _chat_stream_call(cid: str, request: dict[str, Any]) -> dict[str, Any]:
    body = orjson.dumps(request).decode()
    sse = _stream("gpt-4o-2024-08-06", {"content": '{"doc":{}}'})
    rec = apim.gateway(
        apim.new_id(cid), time=TIME, request=body, response=sse,
        requestSize=len(body), responseSize=len(sse),
    )  # fmt: skip
    return _gateway_row(rec)


def test_a_prompt_moved_into_a_response_format_schema_is_counted() -> None:
    """Structured outputs: the model is given the json_schema with the prompt. The estimate
    ignored `response_format`: a client writing its prompt into the schema's descriptions was
    counted 42 prompt tokens for about 1,700."""
    schema = {"type": "object", "properties": {"doc": _described(16, "field")}}
    request = {
        "messages": [{"role": "user", "content": "Extract."}], "stream": True,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "extraction", "strict": True, "schema": schema},
        },
    }  # fmt: skip
    row = _chat_stream_call("schema-in-response-format", request)
    described = _text_tokens(*_descriptions(schema))
    assert described > 1_000
    assert described < row["PromptTokens"] < 1.5 * described
    assert row["TokensSource"] == "estimated"


def test_a_prompt_moved_into_nested_tool_parameters_is_counted() -> None:
    """The tool estimate read only the top level of a tool's `parameters`: descriptions in a
    nested object, an array's `items`, an `anyOf` branch or `$defs` counted nothing."""
    parameters = {
        "type": "object",
        "properties": {
            "doc": _described(4, "nested"),
            "rows": {"type": "array", "items": _described(4, "item")},
            "either": {"anyOf": [_described(4, "branch"), {"$ref": "#/$defs/party"}]},
        },
        "$defs": {"party": _described(4, "defined")},
        "required": ["doc"],
    }
    tool = {"name": "file_clauses", "description": "File the clauses.", "parameters": parameters}
    request = {
        "messages": [{"role": "user", "content": "Go."}], "stream": True,
        "tools": [{"type": "function", "function": tool}],
    }  # fmt: skip
    row = _chat_stream_call("schema-in-tool-parameters", request)
    described = _text_tokens(*_descriptions(parameters))
    assert described > 1_000
    assert described < row["PromptTokens"] < 1.5 * described


def test_tool_properties_that_are_no_object_are_counted_as_their_text() -> None:
    """`properties` of a string (no schema, but the model is shown it): its text counts."""
    prose = " ".join(f"Clause {i} allows termination with notice." for i in range(200))
    tool = {"name": "f", "parameters": {"type": "object", "properties": prose}}
    request = {
        "messages": [{"role": "user", "content": "Go."}], "stream": True,
        "tools": [{"type": "function", "function": tool}],
    }  # fmt: skip
    row = _chat_stream_call("tool-properties-text", request)
    assert _text_tokens(prose) < row["PromptTokens"] < 1.5 * _text_tokens(prose)


def test_a_responses_text_format_schema_is_counted() -> None:
    """The Responses API's structured outputs are `text.format`: counted as chat's."""
    schema = _described(16, "field")
    request = {
        "model": "gpt-4o", "input": "Extract.", "stream": True,
        "text": {"format": {"type": "json_schema", "name": "x", "strict": True, "schema": schema}},
    }  # fmt: skip
    body = orjson.dumps(request).decode()
    rec = apim.gateway(
        apim.new_id("schema-in-text-format"), time=TIME,
        path="/openai/v1/responses", request=body, response=None, requestSize=len(body),
    )  # fmt: skip
    row = _gateway_row(rec)
    described = _text_tokens(*_descriptions(schema))
    assert described < row["PromptTokens"] < 1.5 * described


def _nested_schema(depth: int) -> str:
    """Tool parameters `depth` objects deep, each described, written as text (orjson writes
    only 254 levels)."""
    level = '{"type":"object","description":"' + CLAUSE.strip() + '","properties":{"n":'
    return level * depth + '{"type":"string"}' + "}}" * depth


def test_a_schema_nested_past_the_depth_bound_is_counted_in_linear_time() -> None:
    """Hostile input: a tool schema nested 150 objects (300 JSON levels) deep, through a
    log-to-eventhub policy (200 KB logged). The levels past the nesting bound
    (safejson.MAX_DEPTH, 64) are kept as text, and counted as text: hiding the prompt deeper
    does not hide it. Counting costs the same per byte whatever the depth."""

    def request(depth: int) -> str:
        tool = '{"type":"function","function":{"name":"f","parameters":' + _nested_schema(depth)
        return '{"messages":[{"role":"user","content":"Go."}],"tools":[' + tool + "}]}"

    body = request(150)
    assert len(body) < 200_000
    msg = orjson.loads(sources.policy_message(apim.new_id("deep-schema"), time=TIME, request={}))
    msg |= {"requestBody": body, "requestSize": len(body.encode()), "streamed": True}
    row = _row(orjson.dumps(msg))
    assert row["PromptTokens"] > 150 * _text_tokens(CLAUSE.strip())

    def estimate(text: str) -> Any:
        return interpret(url=apim.AOAI + "/openai/deployments/d/chat/completions", status=200,
                         request=parse_body(text), request_size=len(text))  # fmt: skip

    small, large = request(15), request(150)
    per_byte_small = best_of(lambda: estimate(small)) / len(small)
    per_byte_large = best_of(lambda: estimate(large)) / len(large)
    assert per_byte_large < 3 * per_byte_small


# --- 3. generated text in other fields than `content` ---------------------------------------

FOUNDRY_CHAT = "/models/chat/completions?api-version=2024-05-01-preview"
SAID = "Sure, here is a long explanation of the quarterly results and what they mean. " * 5


def test_streamed_reasoning_content_counts_as_output() -> None:
    """DeepSeek-R1 on Azure AI Foundry streams its reasoning as `delta.reasoning_content`
    (billed as output): an answer of "OK." after 86 tokens of reasoning counted 2."""
    deltas = [{"reasoning_content": w + " "} for w in SAID.split()] + [{"content": "OK."}]
    sse = _stream("DeepSeek-R1", *deltas)
    request = {"model": "DeepSeek-R1", "messages": [{"role": "user", "content": "Why?"}]}
    rec = apim.gateway(
        apim.new_id("r1-stream"), time=TIME, path=FOUNDRY_CHAT, request={**request, "stream": True},
        response=sse, responseSize=len(sse),
    )  # fmt: skip
    row = _gateway_row(rec)
    assert row["CompletionTokens"] >= _text_tokens(SAID)
    assert row["CompletionPreview"] == "OK."  # the preview is the answer, not the reasoning


def test_a_json_answers_refusal_and_reasoning_count_as_output() -> None:
    """A non-streamed answer without usage (a body cut before it) counted only `content`:
    a `refusal` or a `reasoning_content` beside it counted nothing."""
    for key in ("refusal", "reasoning_content"):
        answer = apim.chat_response(None if key == "refusal" else "OK.", usage=False)
        answer["choices"][0]["message"][key] = SAID
        rec = apim.gateway(apim.new_id(f"json-{key}"), time=TIME, response=answer)
        row = _gateway_row(rec)
        assert row["CompletionTokens"] >= _text_tokens(SAID), key


def test_an_audio_answer_leaves_the_completion_unknown_not_low() -> None:
    """gpt-4o-audio answers in audio tokens (several per word, priced above text) that no
    logged text measures: its completion is unknown (null), never the transcript's count nor
    the 0 a stream of `delta.audio` counted."""
    model = "gpt-4o-audio-preview-2024-12-17"
    path = "/openai/deployments/audio/chat/completions?api-version=2025-01-01-preview"
    request = {
        "messages": [{"role": "user", "content": "Explain."}],
        "modalities": ["text", "audio"],
    }
    deltas = [{"audio": {"id": "audio_1", "transcript": w + " "}} for w in SAID.split()]
    sse = _stream(model, *deltas)
    answer = apim.chat_response(None, model=model, usage=False)
    answer["choices"][0]["message"]["audio"] = {
        "data": "UklGRiQAAABXQVZF", "expires_at": 1741083600, "id": "audio_1", "transcript": SAID,
    }  # fmt: skip
    for name, req, resp in (
        ("stream", {**request, "stream": True}, sse),
        ("json", request, answer),
    ):
        rec = apim.gateway(
            apim.new_id(f"audio-{name}"), time=TIME, path=path, request=req, response=resp
        )
        row = _gateway_row(rec)
        assert row["TokensSource"] == "estimated" and row["PromptTokens"] > 0, name
        assert "CompletionTokens" not in row and "TotalTokens" not in row, name


# --- members the estimate did not read -----------------------------------------------------

PROMPT = CLAUSE * 40  # about 1,000 tokens


def test_a_prompt_moved_into_any_member_of_the_request_is_counted() -> None:
    """The estimate read the members it knew: a prompt moved into a legacy assistant
    `function_call`, a custom tool, Predicted Outputs' `prediction` or On Your Data's
    `data_sources` counted 8 to 28 tokens of about 1,000 (a black-box audit). Every member
    that is no setting is counted as its JSON text, every part of a message and every tool
    whatever its type, in chat, completions and Responses requests."""
    ask = [{"role": "user", "content": "Go."}]
    legacy = {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "f", "arguments": orjson.dumps({"a": PROMPT}).decode()},
    }
    moves = {
        "function_call": {"messages": [*ask, legacy]},
        "custom tool": {"messages": ask, "tools": [
            {"type": "custom", "custom": {"name": "g", "description": PROMPT}}]},
        "custom tool call": {"messages": [*ask, {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "custom", "custom": {"name": "g", "input": PROMPT}}]}]},
        "a function tool's other member": {"messages": ask, "tools": [{"type": "function",
            "function": {"name": "f", "description": "F.", "examples": PROMPT}}]},
        "prediction": {"messages": ask, "prediction": {"type": "content", "content": PROMPT}},
        "data_sources": {"messages": ask, "data_sources": [{"type": "azure_search",
            "parameters": {"role_information": PROMPT, "endpoint": "https://s"}}]},
        "a member newer than this code": {"messages": ask, "context_notes": PROMPT},
    }  # fmt: skip
    floor = _text_tokens(PROMPT)
    for name, request in moves.items():
        row = _chat_stream_call(f"moved-{name}", dict(request, stream=True, temperature=0.2))
        assert floor <= row["PromptTokens"] < 1.3 * floor, (name, row["PromptTokens"])
        assert row["TokensSource"] == "estimated"
    # Settings are not text the model reads: a request of them only counts its messages.
    settings = {"messages": ask, "stream": True, "max_tokens": 5, "stop": ["\n"], "user": "u1",
                "metadata": {"team": "a"}, "seed": 3, "logit_bias": {"50256": -100}}  # fmt: skip
    assert _chat_stream_call("settings-only", settings)["PromptTokens"] < 20

    for path, request in (
        ("/openai/v1/responses", {"model": "gpt-4o", "stream": True, "input": [
            {"type": "custom_tool_call_output", "call_id": "c1", "output": PROMPT}]}),
        ("/openai/v1/responses", {"model": "gpt-4o", "stream": True, "input": "Go.",
            "prompt": {"id": "pmpt_1", "variables": {"doc": PROMPT}}}),
        ("/openai/deployments/davinci/completions?api-version=2024-10-21",
            {"prompt": "Go.", "suffix": PROMPT, "stream": True}),
    ):  # fmt: skip
        body = orjson.dumps(request).decode()
        rec = apim.gateway(
            apim.new_id(f"moved-{path}-{len(body)}"), time=TIME, path=path, request=body,
            response=None, requestSize=len(body),
        )  # fmt: skip
        row = _gateway_row(rec)  # a legacy completions model has an encoding of its own
        assert 0.9 * floor <= row["PromptTokens"] < 1.3 * floor, (path, row["PromptTokens"])

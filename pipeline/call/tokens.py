"""Token estimates with tiktoken, from vocabularies shipped inside the package.

tiktoken normally downloads its vocabularies on first use; a Function App behind Private Link
cannot, and neither can our build machines. We bundle o200k_base and cl100k_base (gzip,
byte-identical to OpenAI's files: sha256 checked at load, formats.md §6.3) and build the
`tiktoken.Encoding` ourselves, so tiktoken's downloader is never called. Each vocabulary is
loaded once per process, and only when an estimate is actually needed.

Estimates follow the OpenAI cookbook (formats.md §6.2): exact for text-only chat messages;
tools, images and audio are approximations (say so: rows carry TokensSource=estimated).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import math
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tiktoken

VOCAB_DIR = Path(__file__).resolve().parent / "vocab"

# sha256 of the uncompressed files, as tiktoken's own `expected_hash` (tiktoken_ext.openai_public).
VOCAB_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
# Split patterns and special tokens copied from tiktoken_ext/openai_public.py (tiktoken 0.14);
# tests/test_tokens.py checks they still equal tiktoken's own.
PATTERNS = {
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
SPECIAL_TOKENS = {
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
}
DEFAULT_ENCODING = "o200k_base"

_lock = threading.Lock()
_loaded: dict[str, tiktoken.Encoding] = {}


class VocabularyError(RuntimeError):
    pass


def load_ranks(name: str) -> dict[bytes, int]:
    path = VOCAB_DIR / f"{name}.tiktoken.gz"
    data = gzip.decompress(path.read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != VOCAB_SHA256[name]:
        raise VocabularyError(f"{path} is corrupt: sha256 {digest}, expected {VOCAB_SHA256[name]}")
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def encoding(name: str) -> tiktoken.Encoding:
    """A bundled encoding, built on first use and kept for the life of the process."""
    enc = _loaded.get(name)
    if enc is None:
        with _lock:
            enc = _loaded.get(name)
            if enc is None:
                import tiktoken

                enc = tiktoken.Encoding(
                    name=name,
                    pat_str=PATTERNS[name],
                    mergeable_ranks=load_ranks(name),
                    special_tokens=SPECIAL_TOKENS[name],
                )
                # The Rust core keeps its own copy of the ranks; the Python dict (~23 MB for
                # o200k) only serves pickling, which we never do.
                enc._mergeable_ranks = {}
                _loaded[name] = enc
    return enc


def encoding_name(model: str | None, deployment: str | None = None) -> str:
    """Encoding for the response `model`, else the deployment name, else o200k_base.

    Deployment names are arbitrary, so they are only a hint. Families we do not bundle
    (o200k_harmony of gpt-oss shares o200k_base's text tokens; p50k/r50k are retired models)
    map to the nearest bundled one.
    """
    from tiktoken.model import encoding_name_for_model  # a pure name table, no download

    for candidate in (model, deployment):
        if not candidate:
            continue
        try:
            name = encoding_name_for_model(candidate.lower())
        except KeyError:
            continue
        if name.startswith("o200k"):
            return "o200k_base"
        return "cl100k_base"
    return DEFAULT_ENCODING


# BPE merges within one pre-token cost more than linear time, and a client can send one
# 200 KB "word" (no spaces): long texts are counted in slices of at most this many
# characters, cut before a space where there is one (where tiktoken's pieces start, so prose
# counts exactly; a cut inside a word can shift an estimate by a token).
COUNT_SLICE = 2048


def count(text: str, enc: tiktoken.Encoding) -> int:
    # encode_ordinary: special-token text in a prompt is just text, never an error.
    if len(text) <= 4 * COUNT_SLICE:
        return len(enc.encode_ordinary(text))
    total, i, n = 0, 0, len(text)
    while i < n:
        j = min(n, i + COUNT_SLICE)
        if j < n:
            space = text.rfind(" ", i + COUNT_SLICE // 2, j)
            if space > 0:
                j = space
        total += len(enc.encode_ordinary(text[i:j]))
        i = j
    return total


# --- prompt estimates -----------------------------------------------------------------------

# Image inputs are billed by tiles, from the image size (unknown here): low detail is a flat
# 85 tokens; for high/auto we assume a 1024x1024 image (85 + 4 tiles x 170).
IMAGE_LOW = 85
IMAGE_DEFAULT = 765


def _content_tokens(content: Any, enc: tiktoken.Encoding) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count(content, enc)
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, str):
                total += count(part, enc)
            elif isinstance(part, dict):
                kind = part.get("type")
                if isinstance(part.get("text"), str):
                    total += count(part["text"], enc)
                elif kind in ("image_url", "input_image"):
                    image = part.get("image_url")
                    detail = (image.get("detail") if isinstance(image, dict) else None) or part.get(
                        "detail"
                    )
                    total += IMAGE_LOW if detail == "low" else IMAGE_DEFAULT
                # audio and file parts: not text-countable; left out (approximate)
        return total
    if isinstance(content, dict | int | float | bool):
        return count(_json(content), enc)
    return 0


def _json(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


def _json_tokens(value: Any, enc: tiktoken.Encoding) -> int:
    """Tokens of a value's JSON text. Bounded by the body it was read from: a document we
    decode is at most `safejson.MAX_DEPTH` deep (deeper parts are already strings), orjson
    writes it in linear time, and `count` cuts it into slices."""
    import orjson

    try:
        return count(_json(value), enc)
    except orjson.JSONEncodeError:  # not from a JSON body (an integer past 64 bits): its text
        return count(str(value), enc)


def chat_message_tokens(messages: Iterable[Any], enc: tiktoken.Encoding) -> int:
    """Cookbook `num_tokens_from_messages`: 3 per message, +1 per name, +3 reply priming."""
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += 3
        for key, value in message.items():
            if key == "content":
                total += _content_tokens(value, enc)
            elif key == "tool_calls" and isinstance(value, list):
                for call in value:  # approximate: function name and arguments as text
                    fn = call.get("function") if isinstance(call, dict) else None
                    if isinstance(fn, dict):
                        total += count(str(fn.get("name") or ""), enc)
                        total += count(str(fn.get("arguments") or ""), enc)
                    elif call is not None:
                        total += _json_tokens(call, enc)  # a custom tool's call: its text
            elif isinstance(value, str):
                total += count(value, enc)
            elif isinstance(value, dict | list):
                # The model reads the rest of a message too (a legacy `function_call` and its
                # arguments, an audio reference...): its JSON text, never a blind spot.
                total += _json_tokens(value, enc)
            if key == "name":
                total += 1
    return total + 3


# What the cookbook formula counts of a tool's `parameters` and of each of its properties.
# The model is shown the rest of the schema too (nested `properties`, `items`, `anyOf`,
# `$defs`, titles, examples...), and a client can move its whole prompt into nested
# descriptions: that rest is counted as its JSON text (a few tokens of punctuation per nested
# property more than OpenAI's rendering, never a blind spot). Its JSON text rather than a walk
# of the schema keywords: every key and value counts whatever its name (an unknown keyword, a
# level past the nesting bound kept as text), in one linear pass in C.
_PARAMS_COUNTED = frozenset({"type", "properties", "required", "additionalProperties"})
_TOOL_COUNTED = frozenset({"type", "function", "name", "description", "parameters", "strict"})
_PROPERTY_COUNTED = frozenset({"type", "description", "enum"})


def _rest(spec: dict[str, Any], counted: frozenset[str], into: list[Any]) -> None:
    rest = {k: v for k, v in spec.items() if k not in counted}
    if rest:
        into.append(rest)


def tools_tokens(tools: Any, enc: tiktoken.Encoding) -> int:
    """Cookbook `num_tokens_for_tools` (approximate; the constants are per model family),
    plus the JSON text of what the cookbook leaves out of the parameters (nested schemas)."""
    if not isinstance(tools, list) or not tools:
        return 0
    func_init = 7 if enc.name == "o200k_base" else 10
    prop_init, prop_key, enum_init, enum_item, func_end = 3, 3, -3, 3, 12
    total = 0
    rests: list[Any] = []  # counted at the end, in one call: a call per piece costs more
    for tool in tools:
        if not isinstance(tool, dict):
            continue
        fn = tool.get("function", tool)
        if tool.get("type", "function") != "function" or not isinstance(fn, dict):
            rests.append(tool)  # a custom or built-in tool: its text
            continue
        total += func_init
        _rest(tool, _TOOL_COUNTED, rests)
        if fn is not tool:
            _rest(fn, _TOOL_COUNTED, rests)
        desc = str(fn.get("description") or "").removesuffix(".")
        total += count(f"{fn.get('name') or ''}:{desc}", enc)
        params = fn.get("parameters")
        if not isinstance(params, dict):
            continue
        _rest(params, _PARAMS_COUNTED, rests)
        props = params.get("properties")
        if isinstance(props, dict) and props:
            total += prop_init
            for key, spec in props.items():
                total += prop_key
                spec = spec if isinstance(spec, dict) else {}
                if isinstance(spec.get("enum"), list):
                    total += enum_init
                    for item in spec["enum"]:
                        total += enum_item + count(str(item), enc)
                p_desc = str(spec.get("description") or "").removesuffix(".")
                total += count(f"{key}:{spec.get('type') or ''}:{p_desc}", enc)
                _rest(spec, _PROPERTY_COUNTED, rests)
        elif props is not None and not isinstance(props, dict):
            rests.append(props)  # not an object of properties: its text
    return total + func_end + (_json_tokens(rests, enc) if rests else 0)


def format_tokens(fmt: Any, enc: tiktoken.Encoding) -> int:
    """A structured-output schema (chat `response_format`, Responses `text.format`): the
    model is given it with the prompt, so its JSON text counts as input. `text` and
    `json_object` formats add a few tokens at most: not counted."""
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return 0
    return _json_tokens(fmt.get("json_schema", fmt), enc)


def _text_or_tokens(value: Any, enc: tiktoken.Encoding) -> int:
    """Embeddings/completions input: a string, a list of strings, or token ids."""
    if isinstance(value, str):
        return count(value, enc)
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return len(value)  # already token ids
        return sum(_text_or_tokens(v, enc) for v in value)
    return 0


def responses_input_tokens(request: dict[str, Any], enc: tiktoken.Encoding) -> int:
    """Responses API input as chat messages (instructions = a system message); approximate."""
    messages: list[Any] = []
    if isinstance(request.get("instructions"), str):
        messages.append({"role": "system", "content": request["instructions"]})
    value = request.get("input")
    if isinstance(value, str):
        messages.append({"role": "user", "content": value})
    elif isinstance(value, list):
        for item in value:
            if not isinstance(item, dict):
                continue
            if "role" in item:
                messages.append({"role": item["role"], "content": item.get("content")})
            elif item.get("type") == "function_call_output":
                messages.append({"role": "tool", "content": item.get("output")})
            elif item.get("type") == "function_call":
                messages.append({"role": "assistant", "content": item.get("arguments")})
            else:  # another kind of item (a custom tool's output...): its JSON text
                messages.append({"role": "user", "content": None, "item": item})
    text = request.get("text")
    return (
        chat_message_tokens(messages, enc)
        + tools_tokens(request.get("tools"), enc)
        + format_tokens(text.get("format") if isinstance(text, dict) else None, enc)
        + _other_members(request, _RESPONSES_READ, enc)
    )


# Request members that are settings (flags, numbers, ids, limits, where to store the call),
# not text the model reads. Every other member a client sends is counted as its JSON text:
# a prompt moved into a member we do not read (Predicted Outputs' `prediction`, On Your
# Data's `data_sources`, a parameter newer than this code) is never a blind spot; at worst a
# member the service does not bill is counted (an estimate errs high, never to nothing).
_SETTINGS = frozenset({
    "model", "stream", "stream_options", "temperature", "top_p", "n", "max_tokens",
    "max_completion_tokens", "presence_penalty", "frequency_penalty", "logit_bias",
    "logprobs", "top_logprobs", "user", "seed", "stop", "tool_choice", "function_call",
    "parallel_tool_calls", "store", "metadata", "reasoning_effort", "modalities", "audio",
    "service_tier", "verbosity", "safety_identifier", "prompt_cache_key", "echo", "best_of",
})  # fmt: skip
_CHAT_READ = _SETTINGS | {"messages", "tools", "functions", "response_format"}
_RESPONSES_READ = _SETTINGS | {
    "input", "instructions", "tools", "text", "previous_response_id", "conversation",
    "reasoning", "include", "truncation", "max_output_tokens", "background", "max_tool_calls",
}  # fmt: skip
_COMPLETIONS_READ = _SETTINGS | {"prompt"}


def _other_members(request: dict[str, Any], read: frozenset[str], enc: tiktoken.Encoding) -> int:
    rest = {k: v for k, v in request.items() if k not in read}
    return _json_tokens(rest, enc) if rest else 0


# Operations whose input is billed by tokens we can count from the request body.
ESTIMABLE = frozenset({"chat.completions", "completions", "embeddings", "responses"})


def estimate_prompt(request: Any, operation: str | None, enc_name: str) -> int | None:
    """Input tokens of a request body; None when it holds nothing countable for `operation`."""
    if not isinstance(request, dict) or operation not in ESTIMABLE:
        return None
    enc = encoding(enc_name)
    if operation == "embeddings":
        value = request.get("input")
        if isinstance(value, list) and any(isinstance(v, dict) for v in value):
            # Image embeddings (`/models/images/embeddings`: {"image": data URL, "text"}): an
            # image's tokens are not text tokens; only a reported usage counts them.
            return None
        return _text_or_tokens(value, enc) if "input" in request else None
    if operation == "completions":
        if "prompt" not in request:
            return None
        return _text_or_tokens(request["prompt"], enc) + _other_members(
            request, _COMPLETIONS_READ, enc
        )
    if operation == "responses":
        return responses_input_tokens(request, enc)
    if isinstance(request.get("messages"), list):
        return (
            chat_message_tokens(request["messages"], enc)
            + tools_tokens(request.get("tools") or request.get("functions"), enc)
            + format_tokens(request.get("response_format"), enc)
            + _other_members(request, _CHAT_READ, enc)
        )
    return None


def estimate_text(text: str | None, enc_name: str) -> int:
    return count(text, encoding(enc_name)) if text else 0


def scale(tokens: int, seen_bytes: int, total_bytes: int | None) -> int:
    """Tokens of a logged prefix scaled up to the whole body's size (bodies cut by APIM)."""
    if not total_bytes or seen_bytes <= 0 or total_bytes <= seen_bytes:
        return tokens
    return math.ceil(tokens * total_bytes / seen_bytes)

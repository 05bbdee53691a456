"""`usage` objects of every API → one `Usage` (formats.md §5.9).

Chat and legacy completions report prompt/completion tokens, embeddings only prompt tokens
(completion is then known to be 0), the Responses API input/output tokens. Details are
optional and Azure often sends only some of them: a missing detail stays None.
"""

from __future__ import annotations

from typing import Any

from pipeline.common.values import as_int
from pipeline.model import MAX_CALL_TOKENS, TokensSource, Usage


def _detail(usage: dict[str, Any], block: str, name: str) -> int | None:
    details = usage.get(block)
    if isinstance(details, dict):
        return as_int(details.get(name))
    return None


def normalise_usage(
    usage: Any, operation: str | None, source: TokensSource = "reported"
) -> Usage | None:
    """Normalise a `usage` object; None when it carries no token count at all."""
    if not isinstance(usage, dict):
        return None
    if "input_tokens" in usage or "output_tokens" in usage:
        prompt = as_int(usage.get("input_tokens"))
        completion = as_int(usage.get("output_tokens"))
        cached = _detail(usage, "input_tokens_details", "cached_tokens")
        reasoning = _detail(usage, "output_tokens_details", "reasoning_tokens")
    else:
        prompt = as_int(usage.get("prompt_tokens"))
        completion = as_int(usage.get("completion_tokens"))
        cached = _detail(usage, "prompt_tokens_details", "cached_tokens")
        reasoning = _detail(usage, "completion_tokens_details", "reasoning_tokens")
    total = as_int(usage.get("total_tokens"))
    if completion is None and operation == "embeddings" and prompt is not None:
        completion = 0  # embeddings have no output tokens: a known zero, not an unknown
    return from_counts(prompt, completion, total, cached, reasoning, source)


def from_counts(
    prompt: int | None,
    completion: int | None,
    total: int | None,
    cached: int | None,
    reasoning: int | None,
    source: TokensSource,
) -> Usage | None:
    """The usage of counts a log reported; None when it reported none of them. A missing
    total is the sum of the two others when both are known."""
    prompt, completion, total, cached, reasoning = (
        _plausible(n) for n in (prompt, completion, total, cached, reasoning)
    )
    if prompt is None and completion is None and total is None:
        return None
    if total is None and prompt is not None and completion is not None:
        total = _plausible(prompt + completion)
    return Usage(prompt, completion, total, cached, reasoning, source)


def _plausible(n: int | None) -> int | None:
    """A count no call can have (MAX_CALL_TOKENS) is unknown, as any unreadable number."""
    return n if n is None or n <= MAX_CALL_TOKENS else None

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
    """The usage of counts a log reported; None when it reported none of them. The total
    follows its parts (`total_of`)."""
    prompt, completion, total, cached, reasoning = (
        _plausible(n) for n in (prompt, completion, total, cached, reasoning)
    )
    if prompt is None and completion is None and total is None:
        return None
    return Usage(prompt, completion, total_of(prompt, completion, total), cached, reasoning, source)


def total_of(prompt: int | None, completion: int | None, reported: int | None = None) -> int | None:
    """A call's total: never less than the sum of its known parts.

    The total is what token budgets and the `TotalTokens` sums read, the parts what the cost
    is priced from: a total taken apart from its parts let a record priced on 10^6 + 10^6
    tokens say `total_tokens: 0` (token budgets read 0 while the cost counted the call). So
    the sum of the known parts when the reported total is smaller, or missing while both
    parts are known (with a part unknown, a missing total stays unknown: the known part
    alone is no total). A sum past MAX_CALL_TOKENS (each part within it, 10^9 + 10^9) is no
    call's total: unknown, and the rollup then counts the whole call's tokens as unknown
    (kpi/rollup.call_tokens: an unknown-token, unpriced call, in KPIs, chargeback and
    budgets alike) rather than pricing the parts of a count no call can have. Capping the
    total instead would have left those parts priced, and budgets reading a made-up 10^9."""
    known = (prompt or 0) + (completion or 0)
    if reported is None:
        total = known if prompt is not None and completion is not None else None
    else:
        total = max(reported, known)
    return _plausible(total)


def _plausible(n: int | None) -> int | None:
    """A count no call can have (MAX_CALL_TOKENS) is unknown, as any unreadable number."""
    return n if n is None or n <= MAX_CALL_TOKENS else None

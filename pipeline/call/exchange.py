"""What a logged request/response pair says about a call: operation, model, tokens, errors.

Shared by every source that logs bodies (GatewayLogs, log-to-eventhub policies).

Token accounting (`Usage.source`, the row's TokensSource):
- `reported`: the response body's `usage`, or the final stream chunk's.
- `estimated`: no usage was logged for a successful call (stream without include_usage, a body
  cut before `usage`, no response logged): the prompt is counted from the request, the
  completion from the text that was logged (scaled up when the body was cut, never above the
  request's max tokens); with no response logged, completion and total stay unknown.
- `none`: nothing to count, and always for failed calls (4xx/5xx are not billed: their tokens
  stay null, never an estimate).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pipeline.call import operations, tokens
from pipeline.call.bodies import ABSENT, Body
from pipeline.call.content import answered_in_audio, completion_text, generated_text, prompt_text
from pipeline.call.errors import aoai_error, classify, is_content_filter, stream_error
from pipeline.call.stream import Stream, parse_sse
from pipeline.call.usage import normalise_usage, total_of
from pipeline.common.values import as_int, string
from pipeline.model import Facts, Usage

# Operations that name their deployment in the body's `model` on v1 / Responses paths.
_INFERENCE = frozenset(
    {"chat.completions", "completions", "embeddings", "responses", "images", "audio"}
)
# Bytes of a chat/completions JSON body after the answer text: created, id, model, object,
# prompt_filter_results, system_fingerprint, usage (formats.md §1.3: about 900 bytes).
_JSON_TAIL_BYTES = 900
_JOB_PATH = re.compile(r"/(?:fine_tuning/jobs|fine-tunes|batches|files)/([^/?#]+)", re.IGNORECASE)
_JOB_OBJECTS = frozenset({"fine_tuning.job", "batch", "file", "fine-tune"})


@dataclass(slots=True)
class Exchange:
    facts: Facts
    prompt_text: str | None
    completion_text: str | None


def _max_output(request: dict[str, Any] | None) -> int | None:
    """The most output tokens the request allows: per choice, times its `n` choices."""
    if not request:
        return None
    n = as_int(request.get("n"))
    choices = n if n is not None and 1 <= n <= _MAX_CHOICES else 1
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        value = as_int(request.get(key))
        if value is not None and value > 0:
            return value * choices
    return None


# Azure OpenAI accepts `n` up to 128 (chat completions reference).
_MAX_CHOICES = 128
# Bytes of a request body per input token, for a body cut before anything countable (a
# client's own padding, or tools written before the messages): about 4 characters a token.
_BYTES_PER_TOKEN = 4


def interpret(
    *,
    method: str | None = None,
    url: str | None = None,
    backend_url: str | None = None,
    operation_id: str | None = None,
    status: int | None = None,
    backend_status: int | None = None,
    request: Body = ABSENT,
    response: Body = ABSENT,
    request_size: int | None = None,
    response_size: int | None = None,
    last_error: dict[str, Any] | None = None,
) -> Exchange:
    """What one logged request/response pair says; every piece may be missing. `method`: the
    HTTP method, when the record logs it (without it the call is read by its bodies)."""
    req = request.doc if isinstance(request.doc, dict) else None
    stream = parse_sse(response.text) if response.kind == "sse" and response.text else None
    resp = response.doc if isinstance(response.doc, dict) else None

    operation = _operation(backend_url, url, operation_id)
    # A call that generated nothing (operations.creates_generation): a read, list, update or
    # delete of a stored completion or response, or a job's, a batch's, a file's. Its answer
    # may be a stored generation, with that call's `id`, `model`, `usage` and finish reason:
    # none of them is this call's. So no tokens (`none`, never an estimate: nothing was
    # generated, nothing is billed) and no response id (it names the original call: a
    # response-keyed usage record then joined the reader's row, or two rows naming it blocked
    # that join and the original was counted twice). A read of a generating family is a
    # `retrieval` and names no model either (none served it: the reader would join that
    # model's groups) nor the original's finish reason or content-filter verdict. A job keeps
    # its model (a fine-tuning job's base model is what it addresses). Unknown method: as before.
    generates = operations.creates_generation(method, backend_url, url, operation) is not False
    retrieval = not generates and operation in operations.GENERATING
    if retrieval:
        operation = operations.RETRIEVAL
    deployment, claimed = _deployment(backend_url, url, req, operation, request)
    model = None if retrieval else _model(stream, resp, req, operation, request, response)
    error = classify(status, backend_status, resp, last_error, response.cut_tail)
    failure = error
    if failure is None and stream is not None and stream.error is not None:
        failure = stream_error(stream.error)  # a stream that ended in an error event
    finish_reason, filtered = _finish(resp, stream, response.truncated)
    finish_reason = None if retrieval else response.whole(finish_reason)
    filtered = filtered and not retrieval
    # Failed calls are not billed: their tokens stay unknown, never an estimate.
    usage = Usage(source="none") if failure or not generates else _reported(resp, stream, operation)
    partial = usage is not None and (usage.prompt is None or usage.completion is None)
    if usage is None or (partial and response.truncated):
        estimate = _estimate(
            operation,
            model,
            deployment,
            req,
            request,
            response,
            stream,
            resp,
            request_size,
            response_size,
            operations.is_image_embeddings(backend_url, url, operation_id),
        )
        # A `usage` cut in half (a client can size its answer so that the cut falls after
        # `completion_tokens`): what it kept, the estimate for the rest.
        usage = estimate if usage is None else _completed(usage, estimate)
    facts = Facts(
        url=url,
        deployment=deployment,
        deployment_claimed=claimed or None,
        api_version=operations.api_version_from_url(backend_url)
        or operations.api_version_from_url(url),
        operation=operation,
        status=status,
        backend_status=backend_status,
        model=model,
        response_id=(
            string(stream.response_id if stream else None)
            or response.whole(string(resp.get("id") if resp else None))
        )
        if generates
        else None,
        streamed=_streamed(req, request, response),
        streamed_seen=response.kind in ("sse", "json") or None,
        body_truncated=request.truncated
        or response.truncated
        or bool(stream is not None and not stream.complete),
        usage=usage,
        finish_reason=finish_reason,
        content_filtered=filtered
        or bool(error and error.content_filtered)
        or is_content_filter(aoai_error(resp)),
        error_code=failure.code if failure else None,
        error_source=failure.source if failure else None,
        error_message=failure.message if failure else None,
        job_id=response.whole(_job_id(operation, resp, backend_url or url)),
    )
    c_text = stream.completion_text() if stream else completion_text(resp)
    return Exchange(facts, prompt_text(req, operation), without_leading_blank_lines(c_text))


# Legacy completions answer a prompt with its continuation, which usually starts with blank
# lines ("\n\nParis is ..."): a preview showing them looks empty in a table. Possessive: the
# regex engine keeps no step back for each line (10 MB of line breaks took 1.7 GB).
_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\r?\n)++")


def without_leading_blank_lines(text: str | None) -> str | None:
    if not text:
        return text
    return _LEADING_BLANK_LINES.sub("", text, count=1) or None


def _operation(backend_url: str | None, url: str | None, operation_id: str | None) -> str:
    return (
        operations.operation_from_url(backend_url)
        or operations.operation_from_url(url)
        or operations.operation_from_id(operation_id)
        or "other"
    )


def _deployment(
    backend_url: str | None,
    url: str | None,
    req: dict[str, Any] | None,
    operation: str,
    request: Body,
) -> tuple[str | None, bool]:
    """The deployment, and whether it is the client's claim (the body's `model`: the cut
    body APIM logs may not hold the key the backend read) rather than a URL's."""
    deployment = operations.deployment_from_url(backend_url) or operations.deployment_from_url(url)
    if (
        deployment is None
        and req is not None
        and operation in _INFERENCE
        and operations.is_body_model_deployment(backend_url or url)
    ):
        # v1 and Responses: the body names the deployment (not a name the cut fell inside)
        model = request.whole(string(req.get("model")))
        return model, model is not None
    return deployment, False


def _model(
    stream: Stream | None,
    resp: dict[str, Any] | None,
    req: dict[str, Any] | None,
    operation: str,
    request: Body,
    response: Body,
) -> str | None:
    # A model the cut fell inside is no model (`gpt-4o` of `gpt-4o-mini`: another price, or
    # one no table knows, which left the call unpriced): unknown, and its deployment prices it.
    model = string(stream.model if stream else None) or response.whole(
        string(resp.get("model") if resp else None)
    )
    if model is None and operation == "other" and resp is not None:
        # Foundry's GetModelInfo answers {"model_name", "model_type", "model_provider_name"}.
        return response.whole(string(resp.get("model_name")))
    if model is None and operation == "fine_tuning" and req is not None:
        return request.whole(string(req.get("model")))  # the base model of a job being created
    return model


def _streamed(req: dict[str, Any] | None, request: Body, response: Body) -> bool | None:
    """What the answer was; the request's `stream` (the client's word) only when no
    answer was logged."""
    if response.kind == "sse":
        return True
    if response.kind == "json":
        return False
    if req is not None and (not request.truncated or "stream" in req):
        return req.get("stream") is True
    return None  # neither body logged (or the request cut before `stream`): unknown


def _finish(
    resp: dict[str, Any] | None, stream: Stream | None, cut: bool
) -> tuple[str | None, bool]:
    if stream is not None:
        return stream.finish_reason, stream.content_filtered
    if resp is None:
        return None, False
    choices = resp.get("choices")
    if isinstance(choices, list) and choices:
        reasons = [c.get("finish_reason") for c in choices if isinstance(c, dict)]
        first = reasons[0] if reasons and isinstance(reasons[0], str) else None
        return first, "content_filter" in reasons
    if resp.get("object") == "response":
        details = resp.get("incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        if reason is None and "incomplete_details" not in resp and cut:
            return None, False  # why it is incomplete came after the cut: not `incomplete`
        return string(reason) or string(resp.get("status")), reason == "content_filter"
    return None, False


def _completed(kept: Usage, estimate: Usage) -> Usage:
    prompt = kept.prompt if kept.prompt is not None else estimate.prompt
    completion = kept.completion if kept.completion is not None else estimate.completion
    total = total_of(prompt, completion)
    return Usage(prompt, completion, total, kept.cached, kept.reasoning, "estimated")


def _reported(resp: dict[str, Any] | None, stream: Stream | None, operation: str) -> Usage | None:
    if stream is not None and stream.usage is not None:
        return normalise_usage(stream.usage, operation)
    if resp is not None:
        return normalise_usage(resp.get("usage"), operation)
    return None


def _estimate(
    operation: str,
    model: str | None,
    deployment: str | None,
    req: dict[str, Any] | None,
    request: Body,
    response: Body,
    stream: Stream | None,
    resp: dict[str, Any] | None,
    request_size: int | None,
    response_size: int | None,
    image_embeddings: bool,
) -> Usage:
    if operation not in tokens.ESTIMABLE:
        return Usage(source="none")  # images, audio, files...: only what the body reports
    enc = tokens.encoding_name(model, deployment)
    prompt = tokens.estimate_prompt(req, operation, enc)
    if prompt is not None and request.truncated:
        prompt = tokens.scale(prompt, request.logged_bytes, request_size)
    elif prompt is None and request.truncated and request_size and not image_embeddings:
        # Nothing countable before the cut: the size APIM measured stands in (left unknown,
        # the call was unpriced, and a client padding its body paid nothing). Not for image
        # embeddings, known by their route, never by the body (a text embeddings body padded
        # before its `input` cost nothing): an image's bytes are no text tokens.
        prompt = math.ceil(request_size / _BYTES_PER_TOKEN)
    completion = _estimate_completion(operation, enc, req, response, stream, resp, response_size)
    if prompt is None and (completion is None or operation == "embeddings"):
        return Usage(source="none")  # an embedding's 0 output tokens alone say nothing
    # The rule of every total (usage.total_of): a sum past what a call can have is unknown.
    return Usage(prompt, completion, total_of(prompt, completion), None, None, "estimated")


def _estimate_completion(
    operation: str,
    enc: str,
    req: dict[str, Any] | None,
    response: Body,
    stream: Stream | None,
    resp: dict[str, Any] | None,
    response_size: int | None,
) -> int | None:
    """Output tokens counted from the text logged, scaled up when the body was cut."""
    if operation == "embeddings":
        return 0  # no output tokens, ever
    if response.kind == "absent":
        return None
    if (stream is not None and stream.audio) or (stream is None and answered_in_audio(resp)):
        # Spoken answers (gpt-4o-audio) bill audio tokens, several per word of the transcript
        # and priced higher: counting the transcript would be silently low. Unknown instead.
        return None
    if stream is not None:
        seen = stream.generated_text()
        if not stream.complete and not seen:
            return None  # cut before any output: unknown, not "generated nothing"
        completion = tokens.estimate_text(seen, enc)
        if not stream.complete:
            completion = tokens.scale(completion, response.logged_bytes, response_size)
    elif resp is not None:
        text = generated_text(resp)
        if response.truncated and not text:
            # Cut before the answer (log-probabilities, or the instructions a Responses
            # answer repeats, come first): unknown, not "generated nothing".
            return None
        completion = tokens.estimate_text(text, enc)
        if response.truncated:
            completion = _scale_cut_json(completion, text, response.logged_bytes, response_size)
    else:
        return None
    cap = _max_output(req)
    return min(completion, cap) if cap is not None else completion


def _scale_cut_json(tokens_seen: int, text: str, logged_bytes: int, total_bytes: int | None) -> int:
    # The unseen part of a cut JSON body is the rest of the answer plus a fixed-size tail.
    if not total_bytes or total_bytes <= logged_bytes:
        return tokens_seen
    seen = len(text.encode("utf-8"))
    if seen == 0:
        return tokens_seen
    unseen = max(0, total_bytes - logged_bytes - _JSON_TAIL_BYTES)
    return math.ceil(tokens_seen * (seen + unseen) / seen)


def _job_id(operation: str, resp: dict[str, Any] | None, url: str | None) -> str | None:
    if operation not in ("fine_tuning", "batches", "files"):
        return None
    if resp is not None and string(resp.get("object")) in _JOB_OBJECTS:
        return string(resp.get("id"))
    m = _JOB_PATH.search(url or "")
    return m.group(1) if m else None

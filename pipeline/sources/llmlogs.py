"""GatewayLlmLogs records (APIM's built-in LLM logging, formats.md §2) → the facts of one call.

Per call APIM writes one *header* record (DeploymentName, ModelName, tokens) and zero or more
*message* records (RequestMessages / ResponseMessages, DeploymentName empty, tokens 0); a
message over 32 KB is split into chunks ordered by SequenceNumber, each holding a slice of
the serialized JSON. Only header records count tokens (every Microsoft sample filters
`DeploymentName != ''` before summing; §2.2, §2.4).

The raw Event Hub shape is not documented (§2.5): fields are looked up case-insensitively, at the
top level and in `properties` (camelCase inside `properties` and flat PascalCase both work).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.call.bodies import parse_body
from pipeline.call.content import part_text
from pipeline.call.operations import operation_from_id
from pipeline.call.usage import from_counts
from pipeline.common.timestamps import parse_time
from pipeline.common.values import as_int, boolean, integer, text
from pipeline.model import Facts
from pipeline.sources.origin import apim_service, region_name


@dataclass(slots=True)
class LlmRecord:
    correlation_id: str | None
    header: bool
    sequence: int
    facts: Facts
    # Request/response messages as logged: a list, or a string (a chunk of serialized JSON).
    request_messages: Any
    response_messages: Any


def parse_llm_record(flat: dict[str, Any]) -> LlmRecord:
    deployment = text(flat, "deploymentname")
    counts = (
        integer(flat, "prompttokens"),
        integer(flat, "completiontokens"),
        integer(flat, "totaltokens"),
    )
    # The header names its deployment (Microsoft's queries sum tokens `where DeploymentName
    # != ''`, formats.md §2.4); message records carry no tokens. One that reports tokens
    # without a deployment (a route naming none) is still the call's header: read as a
    # message record, its billed tokens, model and response id went nowhere.
    header = deployment is not None or any(counts)
    facts = Facts(
        call_time=parse_time(flat.get("time") or flat.get("timegenerated")),
        apim_service=apim_service(text(flat, "resourceid")),
        region=region_name(text(flat, "region", "location")),
        streamed=boolean(flat, "isstreamcompletion"),
        # Microsoft's Stream Analytics sample for LLM logs on Event Hub reads both; they are
        # the call's only subscription and backend when no GatewayLogs record comes with it
        # (a GatewayLogs twin outranks them in the join).
        subscription_id=text(flat, "apimsubscriptionid"),
        backend_id=text(flat, "backendid"),
    )
    if header:
        op_name = text(flat, "operationname") or ""
        facts.deployment = deployment
        facts.model = text(flat, "modelname")
        facts.api_version = text(flat, "apiversion")
        facts.response_id = text(flat, "requestid")
        facts.operation = operation_from_id(op_name)
        facts.usage = from_counts(
            *counts,
            # Only a third-party note mentions promptCachedTokens; used when present.
            as_int(flat.get("promptcachedtokens")),
            None,
            "llm-log",
        )
    return LlmRecord(
        correlation_id=text(flat, "correlationid"),
        header=header,
        sequence=integer(flat, "sequencenumber") or 0,
        facts=facts,
        request_messages=flat.get("requestmessages"),
        response_messages=flat.get("responsemessages"),
    )


def messages_of(value: Any) -> list[Any] | None:
    """A messages value as a list: already a list, a JSON string, or a salvageable prefix."""
    if isinstance(value, list):
        return value or None
    if isinstance(value, dict):
        return [value]
    if isinstance(value, str) and value.strip():
        doc = parse_body(value).doc  # a chunk cut mid-JSON is repaired there
        if isinstance(doc, list):
            return doc or None
        if isinstance(doc, dict):
            return [doc]
    return None


def first_content(messages: list[Any] | None) -> str | None:
    if not messages:
        return None
    first = messages[0]
    if isinstance(first, str):
        return first
    if isinstance(first, dict):
        return part_text(first.get("content"))
    return None


def texts(
    record: LlmRecord, request: Any = None, response: Any = None
) -> tuple[str | None, str | None]:
    """First request and response message texts (from reassembled chunks, when given)."""
    req = messages_of(request if request is not None else record.request_messages)
    resp = messages_of(response if response is not None else record.response_messages)
    return first_content(req), first_content(resp)


# APIM logs at most 2 MB of a request or response message (formats.md §2.2), and previews
# need only its start: a batch's chunks of one call beyond that are not joined (a sender
# naming one call in every chunk of a 32 MB slice made a 32 MB string, parsed whole).
MAX_MESSAGE_CHARS = 2 * 1024 * 1024


def reassemble(chunks: list[tuple[int, str]]) -> str | None:
    """Concatenate string chunks of one message field in SequenceNumber order, if they start
    at the beginning of the JSON (a run that starts mid-document cannot be parsed alone), up
    to MAX_MESSAGE_CHARS (the rest is cut: a cut document is repaired where it is read)."""
    ordered, size = [], 0
    for _, chunk in sorted(chunks):
        ordered.append(chunk[: MAX_MESSAGE_CHARS - size])
        size += len(ordered[-1])
        if size >= MAX_MESSAGE_CHARS:
            break
    joined = "".join(ordered)
    return joined if joined.lstrip().startswith(("[", "{")) else None

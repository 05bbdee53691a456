"""log-to-eventhub policy messages (formats.md §3) → the facts of one call.

The Event Hub body is whatever string the policy built (§3.1). Recognised shapes (§3.2):
- `aoai-audit/1`: our own policy (infra/apim/), one message per call from outbound or on-error,
  keyed by APIM's request id (= GatewayLogs correlationId, so it joins with the other logs);
- AI-Gateway "message-storing" (shape A): one message per 200 response;
- ai-hub-gateway usage records (shape B): non-streaming usage only;
- openai-python-enterprise-logging (shape C): a Request and a Response message per call,
  correlated by `message-id`.

Public shapes write made-up defaults when usage is missing: shape A `"0"` for every count,
shape B `?? 1` for prompt and total (so 1/0/1). Those exact patterns are read as "not
reported", never as real counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.call.bodies import ABSENT, Body, parse_body
from pipeline.call.exchange import interpret
from pipeline.call.usage import from_counts, normalise_usage
from pipeline.common.timestamps import parse_time
from pipeline.common.values import integer, mapping, text
from pipeline.model import Facts, Usage
from pipeline.settings import Proxies
from pipeline.sources.gateway import request_id
from pipeline.sources.origin import client_ip, region_name, service_name

SCHEMA = "aoai-audit/1"
_NA = frozenset({"NA", "N/A", ""})
# What the ai-hub-gateway usage fragment writes for a call with no subscription or product
# (`context.Subscription?.Id ?? "Portal-Admin"`, `context.Product?.Name ?? "Portal-Admin"`):
# a default, not an APIM entity.
_NO_ENTITY = frozenset({"Portal-Admin"})
# Response `object` (shape B's targetService) → operation.
_OBJECT_OPERATION = {
    "chat.completion": "chat.completions",
    "text_completion": "completions",
    "list": "embeddings",
    "response": "responses",
}


@dataclass(slots=True)
class PolicyMessage:
    correlation_id: str
    part: int
    facts: Facts
    prompt_text: str | None
    completion_text: str | None
    # `correlation_id` is the response id: the message carries no APIM request id.
    by_response: bool = False


def shape_of(flat: dict[str, Any]) -> str | None:
    if text(flat, "schema") == SCHEMA:
        return "audit"
    if "event-type" in flat and "message-id" in flat:
        return "C"
    if "apimrequestid" in flat or ("request" in flat and "responsetokens" in flat):
        return "A"
    if "targetservice" in flat or ("responsetokens" in flat and "subscriptionid" in flat):
        return "B"
    return None


def _clean(value: str | None) -> str | None:
    return None if value is None or value in _NA else value


def _entity(value: str | None) -> str | None:
    value = _clean(value)
    return None if value in _NO_ENTITY else value


def _tokens(
    flat: dict[str, Any], prompt: str, completion: str, total: str
) -> tuple[int | None, int | None, int | None]:
    return integer(flat, prompt), integer(flat, completion), integer(flat, total)


def _usage(p: int | None, c: int | None, t: int | None, operation: str | None) -> Usage | None:
    if operation == "embeddings" and c is None and (p is not None or t is not None):
        c = 0  # embeddings have no output tokens
    return from_counts(p, c, t, None, None, "reported")


def parse_policy(
    flat: dict[str, Any], shape: str, trust_bearer: bool, proxies: Proxies = ()
) -> PolicyMessage | None:
    """Facts of one policy message of `shape` (see `shape_of`); None when it carries no
    correlation key. `proxies`: TRUSTED_PROXIES, for the caller's address."""
    return _PARSERS[shape](flat, trust_bearer, proxies)


def _ours(flat: dict[str, Any], trust_bearer: bool, proxies: Proxies) -> PolicyMessage | None:
    cid = text(flat, "correlationid")
    if cid is None:
        return None
    error = mapping(flat, "error")
    ex = interpret(
        method=text(flat, "method"),  # a GET or DELETE generates nothing (call/operations.py)
        url=text(flat, "url"),
        backend_url=text(flat, "backendurl"),
        operation_id=text(flat, "operationid"),
        status=integer(flat, "status"),
        backend_status=integer(flat, "backendstatus"),
        request=parse_body(flat.get("requestbody")),
        response=parse_body(flat.get("responsebody")),
        request_size=integer(flat, "requestsize"),
        response_size=integer(flat, "responsesize"),
        last_error=error,
    )
    f = ex.facts
    f.call_time = parse_time(flat.get("time"))
    f.apim_service = service_name(_clean(text(flat, "service")))
    f.region = region_name(_clean(text(flat, "region")))
    f.api_id = _clean(text(flat, "apiid"))
    f.operation_id = _clean(text(flat, "operationid"))
    f.product_id = _clean(text(flat, "productid"))
    f.subscription_id = _clean(text(flat, "subscriptionid"))
    f.user_id = _clean(text(flat, "userid"))
    f.caller_ip = client_ip(
        _clean(text(flat, "forwardedfor")), _clean(text(flat, "callerip")), proxies
    )
    f.method = text(flat, "method")
    f.backend_id = _clean(text(flat, "backendid"))
    f.duration_ms = integer(flat, "durationms")
    f.backend_ms = integer(flat, "backendms")
    if f.streamed is None:
        f.streamed = flat.get("streamed") is True
    # The policy reads claims from a token APIM validated (or that reached a successful call).
    if trust_bearer or text(flat, "callerappid"):
        f.caller_app_id = _clean(text(flat, "callerappid"))
        f.caller_user_id = _clean(text(flat, "calleruserid"))
        f.caller_tenant_id = _clean(text(flat, "callertenantid"))
    part = 1 if text(flat, "section") == "on-error" else 0
    return PolicyMessage(cid, part, f, ex.prompt_text, ex.completion_text)


def _answer(choices: Body, **more: Any) -> Body:
    """An answer rebuilt around the `choices` a message logged (serialised apart), as cut as
    they were: a finish reason the cut fell inside (`sto` of `stop`) is then no fact."""
    if not isinstance(choices.doc, list):
        return ABSENT
    doc = {"choices": choices.doc, **more}
    return Body("json", doc, choices.truncated, None, choices.logged_bytes, choices.cut_tail)


def _shape_a(flat: dict[str, Any], trust_bearer: bool, proxies: Proxies) -> PolicyMessage | None:
    # Keyed by the response id, like the accelerator's records: the sample's `apimRequestId`
    # is the backend's `apim-request-id` response header (`context.Response.Headers`), the
    # model service's own id and not APIM's correlation id (formats.md §1.3 logs the two
    # apart), so it names no row of the call and keying by it made a second row of it. Only
    # a message without a response id (the sample always writes one) is keyed by it.
    rid = _clean(text(flat, "id"))
    cid = rid or _clean(text(flat, "apimrequestid"))
    if cid is None:
        return None
    request = parse_body(flat.get("request"))
    response = _answer(parse_body(flat.get("response")), model=text(flat, "model"))
    # The sample logs only responses with status 200.
    ex = interpret(status=200, backend_status=200, request=request, response=response)
    f = ex.facts
    f.operation = _operation_from_request(request.doc) or f.operation
    f.call_time = parse_time(flat.get("timestamp"))
    f.model = _clean(text(flat, "model"))
    f.region = region_name(_clean(text(flat, "modelregion")))
    f.caller_ip = client_ip(None, _clean(text(flat, "clientip")), proxies)
    f.response_id = _clean(text(flat, "id"))
    # The call's GatewayLogs record names it too (backendResponseHeaders), even when its
    # answer was cut before the response id: the second key the twins join by.
    f.backend_request_id = request_id(_clean(text(flat, "apimrequestid")))
    p, c, t = _tokens(flat, "prompttokens", "responsetokens", "totaltokens")
    if (p, c, t) != (0, 0, 0):  # the sample's default when usage was missing
        f.usage = _usage(p, c, t, f.operation) or f.usage
    return PolicyMessage(cid, 0, f, ex.prompt_text, ex.completion_text, rid is not None)


def _shape_b(flat: dict[str, Any], trust_bearer: bool, proxies: Proxies) -> PolicyMessage | None:
    cid = _clean(text(flat, "id"))
    if cid is None:
        return None
    operation = _OBJECT_OPERATION.get(text(flat, "targetservice") or "")
    f = Facts(
        call_time=parse_time(flat.get("timestamp")),
        status=200,  # the accelerator logs usage only for status 200
        operation=operation,
        model=_clean(text(flat, "model")),
        apim_service=service_name(_clean(text(flat, "gatewayname"))),
        region=region_name(_clean(text(flat, "gatewayregion"))),
        subscription_id=_entity(text(flat, "subscriptionid")),
        # The product's display name (`context.Product.Name`): the only product identity this
        # record has, kept as is (docs/sources.md says why it differs from GatewayLogs' id).
        product_id=_entity(text(flat, "productname")),
        caller_ip=client_ip(None, _clean(text(flat, "requestip")), proxies),
        backend_id=_clean(text(flat, "backendid")),
        deployment=_clean(text(flat, "deploymentname")),
        caller_app_id=_clean(text(flat, "appid")),
        # Not `endUserId`: a variable the accelerator's operators set from any part of the
        # request (its guide: headers), so whatever a client writes; CallerUserId is an Entra
        # object id from a validated token, and rules bill users by it. The archive keeps it.
        streamed=False,  # the accelerator meters streams elsewhere
        response_id=_clean(text(flat, "id")),
    )
    p, c, t = _tokens(flat, "prompttokens", "responsetokens", "totaltokens")
    if (p, c, t) != (1, 0, 1):  # `?? 1` defaults when the response had no usage
        f.usage = _usage(p, c, t, operation)
    if f.usage is None:
        f.usage = Usage(source="none")
    # The accelerator logs no APIM request id: the call is keyed by the response id.
    return PolicyMessage(cid, 0, f, None, None, by_response=True)


def _shape_c(flat: dict[str, Any], trust_bearer: bool, proxies: Proxies) -> PolicyMessage | None:
    cid = _clean(text(flat, "message-id"))
    if cid is None:
        return None
    kind = (text(flat, "event-type") or "").lower()
    operation_id = _clean(text(flat, "operation"))
    f = Facts(call_time=parse_time(flat.get("event-time")), operation_id=operation_id)
    part = 1 if kind == "request" else 2
    prompt = completion = None
    if kind == "request":
        messages = parse_body(flat.get("messages"))
        req: dict[str, Any] = {}
        if isinstance(messages.doc, list):
            req["messages"] = messages.doc
        if isinstance(flat.get("prompt"), str) and flat["prompt"]:
            req["prompt"] = flat["prompt"]
        ex = interpret(operation_id=operation_id, request=parse_body(req) if req else ABSENT)
        f.operation = ex.facts.operation
        f.usage = None  # the request half says nothing about usage
        prompt = ex.prompt_text
    else:
        ex = interpret(operation_id=operation_id, response=_answer(parse_body(flat.get("choices"))))
        f.operation = ex.facts.operation
        f.model = _clean(text(flat, "model"))
        f.api_id = _clean(text(flat, "apiid"))
        f.product_id = _clean(text(flat, "productid"))
        f.backend_ms = integer(flat, "modeltime")
        f.finish_reason = ex.facts.finish_reason
        counts = {
            k: integer(flat, k) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
        }
        reported = {k: v for k, v in counts.items() if v is not None}
        f.usage = normalise_usage(reported, f.operation)
        completion = ex.completion_text
    return PolicyMessage(cid, part, f, prompt, completion)


_PARSERS: dict[str, Callable[[dict[str, Any], bool, Proxies], PolicyMessage | None]] = {
    "audit": _ours,
    "A": _shape_a,
    "B": _shape_b,
    "C": _shape_c,
}


def _operation_from_request(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return None
    if "messages" in doc:
        return "chat.completions"
    if "prompt" in doc:
        return "completions"
    if "input" in doc:
        return "embeddings"
    return None

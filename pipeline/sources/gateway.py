"""GatewayLogs records (APIM's diagnostic setting, formats.md §1) → the facts of one call.

One record per request: the gateway's own fields (§1.1, §1.2: ids, status codes, timings,
caller) and, when the diagnostic logs them, the request and response bodies and headers
(cut at 8,192 bytes, §1.4), which `call.exchange` reads for operation, model and tokens.
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.call.bodies import ABSENT, Body, Unread, read_whole, salvage
from pipeline.call.exchange import interpret
from pipeline.common.timestamps import parse_time
from pipeline.common.values import integer, mapping, text
from pipeline.model import MAX_REQUEST_ID_CHARS, Facts
from pipeline.settings import Proxies
from pipeline.sources.origin import apim_service, client_ip, region_name

_DEPLOYMENT_HEADER = "azureml-model-deployment"
# Hosts of managed-compute and serverless endpoints, which route by that header
# (`{name}.{region}.inference.ml.azure.com`, `{name}.{region}.models.ai.azure.com`).
_HEADER_ROUTED = re.compile(
    r"^https?://[^/?#]+\.(?:inference\.ml|models\.ai)\.azure\.com(?:[:/?#]|$)", re.IGNORECASE
)


# A serverless API endpoint (`{deployment}.{region}.models.ai.azure.com`) serves the one model
# deployed under its name: APIM's backend URL names the deployment, whatever model the body
# names (a client naming another team's deployment there was billed to that team).
_SERVERLESS = re.compile(
    r"^https?://([^./?#:]+)\.[^./?#:]+\.models\.ai\.azure\.com(?:[:/?#]|$)", re.I
)


def _header_routed(backend_url: str | None) -> bool:
    return bool(backend_url and _HEADER_ROUTED.match(backend_url))


def header(headers: dict[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            return value if isinstance(value, str) else None
    return None


def request_id(value: str | None) -> str | None:
    """`value` as a backend request id; None when empty or longer than any such id."""
    return value if value and len(value) <= MAX_REQUEST_ID_CHARS else None


def pick_body(*raws: Any) -> Body:
    """The first body that is a whole document, else the first one that was logged at all.
    (Backend bodies come first: they are what the model saw and said.) Only the body picked
    is repaired: two cut bodies of a call cost one repair."""
    first: Body | Unread | None = None
    seen: list[Any] = []
    for raw in raws:
        if raw is None or any(raw is r or raw == r for r in seen):
            continue  # APIM logs the same text twice when no policy changed it
        seen.append(raw)
        body = read_whole(raw)
        if isinstance(body, Body) and body.kind == "json":
            return body
        if first is None and body is not ABSENT:
            first = body
    if first is None:
        return ABSENT
    return salvage(first) if isinstance(first, Unread) else first


def gateway_facts(
    flat: dict[str, Any], proxies: Proxies = ()
) -> tuple[Facts, str | None, str | None]:
    """Facts, prompt text and completion text of one GatewayLogs record."""
    url, operation_id = text(flat, "url"), text(flat, "operationid")
    backend_url = text(flat, "backendurl")
    request = pick_body(flat.get("backendrequestbody"), flat.get("requestbody"))
    ex = interpret(
        # The method the backend was called with (APIM can rewrite it), else the client's:
        # a GET or DELETE generates nothing, whatever its answer reports.
        method=text(flat, "backendmethod") or text(flat, "method"),
        url=url,
        backend_url=backend_url,
        operation_id=operation_id,
        status=integer(flat, "responsecode"),
        backend_status=integer(flat, "backendresponsecode"),
        request=request,
        response=pick_body(flat.get("backendresponsebody"), flat.get("responsebody")),
        request_size=integer(flat, "requestsize"),
        response_size=integer(flat, "responsesize"),
        last_error=mapping(flat, "lasterror"),
    )
    facts = ex.facts
    request_headers = mapping(flat, "requestheaders")
    serverless = _SERVERLESS.match(backend_url or "")
    if serverless:
        facts.deployment, facts.deployment_claimed = serverless.group(1).lower(), None
    elif facts.deployment is None and (not request.truncated or _header_routed(backend_url)):
        # Managed-compute endpoints route by this header when the body names no model
        # (Azure AI Model Inference API reference, request headers); logged only when the
        # diagnostic lists it. A client writes it, so it is a claim; elsewhere only a body
        # logged whole shows that it names no model (past a cut, its `model` routed).
        facts.deployment = header(request_headers, _DEPLOYMENT_HEADER) or header(
            mapping(flat, "backendrequestheaders"), _DEPLOYMENT_HEADER
        )
        facts.deployment_claimed = facts.deployment is not None or None
    facts.call_time = parse_time(flat.get("time"))
    facts.apim_service = apim_service(text(flat, "resourceid"))
    facts.region = region_name(text(flat, "location", "region"))
    facts.api_id = text(flat, "apiid")
    facts.operation_id = operation_id
    facts.product_id = text(flat, "productid")
    facts.subscription_id = text(flat, "apimsubscriptionid")
    facts.user_id = text(flat, "userid")
    facts.caller_ip = client_ip(
        header(request_headers, "x-forwarded-for"), text(flat, "calleripaddress"), proxies
    )
    facts.method = text(flat, "method")
    facts.backend_id = text(flat, "backendid")
    # What a message keyed by its response id may name of this call when its answer was
    # logged cut before `id` (call/join.twins): the backend's own request id.
    facts.backend_request_id = request_id(
        header(mapping(flat, "backendresponseheaders"), "apim-request-id")
    )
    facts.duration_ms = integer(flat, "durationms", "totaltime")
    facts.backend_ms = integer(flat, "backendtime")
    return facts, ex.prompt_text, ex.completion_text

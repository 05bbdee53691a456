"""GatewayLogs records (APIM diagnostics, formats.md §1) → facts about one call."""

from __future__ import annotations

import re
from typing import Any

from . import operations
from .bodies import ABSENT, Body, parse_body
from .content import clip, completion_text, prompt_text
from .envelope import boolean, integer, mapping, text
from .model import Facts, Preview
from .timestamps import parse_time
from .usage import normalise_usage

GATEWAY_RANK = (0, 0)
_SERVICE = re.compile(r"/providers/microsoft\.apimanagement/service/([^/]+)", re.IGNORECASE)


def apim_service(resource_id: str | None) -> str | None:
    # Azure Monitor upper-cases resourceId; APIM service names are lower-case DNS labels.
    m = _SERVICE.search(resource_id or "")
    return m.group(1).lower() if m else None


def region_name(value: str | None) -> str | None:
    """`West Europe` (GatewayLogs) and `westeurope` (LLM logs) both become `westeurope`."""
    return value.replace(" ", "").lower() if value else None


def header(headers: dict[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    for key, value in headers.items():
        if key.lower() == name:
            if isinstance(value, list):
                value = ",".join(str(v) for v in value)
            return value if isinstance(value, str) else None
    return None


def client_ip(forwarded_for: str | None, caller_ip: str | None) -> str | None:
    """The client: first X-Forwarded-For entry (Application Gateway in front), else the caller."""
    if forwarded_for:
        first = forwarded_for.split(",", 1)[0].strip()
        if first.startswith("["):  # [2001:db8::1]:443
            first = first[1:].split("]", 1)[0]
        elif first.count(":") == 1:  # 203.0.113.7:53120
            first = first.split(":", 1)[0]
        if first:
            return first
    return caller_ip


def pick_body(*raws: Any) -> Body:
    """The first body that parsed completely, else the first one that was logged at all."""
    bodies = [parse_body(raw) for raw in raws]
    for body in bodies:
        if body.kind == "json" and not body.truncated:
            return body
    for body in bodies:
        if body.kind != "absent":
            return body
    return ABSENT


def gateway_facts(
    flat: dict[str, Any], preview_chars: int
) -> tuple[Facts, Preview | None, Preview | None]:
    """Facts, prompt preview and completion preview of one GatewayLogs record."""
    url = text(flat, "url")
    backend_url = text(flat, "backendurl")
    request = pick_body(flat.get("backendrequestbody"), flat.get("requestbody"))
    response = pick_body(flat.get("backendresponsebody"), flat.get("responsebody"))
    req_doc = request.doc if isinstance(request.doc, dict) else None
    resp_doc = response.doc if isinstance(response.doc, dict) else None

    operation = (
        operations.operation_from_url(backend_url)
        or operations.operation_from_url(url)
        or operations.operation_from_id(text(flat, "operationid"))
        or "other"
    )
    deployment = operations.deployment_from_url(backend_url) or operations.deployment_from_url(url)
    if deployment is None and req_doc is not None:
        model_field = req_doc.get("model")
        if isinstance(model_field, str) and model_field:
            deployment = model_field  # v1 / Responses: the body's `model` names the deployment

    model = resp_doc.get("model") if resp_doc else None
    usage = normalise_usage(resp_doc.get("usage"), operation) if resp_doc else None
    response_id = resp_doc.get("id") if resp_doc else None
    streamed = response.kind == "sse" or (req_doc is not None and req_doc.get("stream") is True)

    request_headers = mapping(flat, "requestheaders")
    facts = Facts(
        call_time=parse_time(flat.get("time")),
        apim_service=apim_service(text(flat, "resourceid")),
        region=region_name(text(flat, "location", "region")),
        api_id=text(flat, "apiid"),
        operation_id=text(flat, "operationid"),
        product_id=text(flat, "productid"),
        subscription_id=text(flat, "apimsubscriptionid"),
        user_id=text(flat, "userid"),
        caller_ip=client_ip(
            header(request_headers, "x-forwarded-for"), text(flat, "calleripaddress")
        ),
        method=text(flat, "method"),
        url=url,
        deployment=deployment,
        api_version=operations.api_version_from_url(backend_url)
        or operations.api_version_from_url(url),
        operation=operation,
        backend_id=text(flat, "backendid"),
        status=integer(flat, "responsecode"),
        backend_status=integer(flat, "backendresponsecode"),
        duration_ms=integer(flat, "durationms", "totaltime"),
        backend_ms=integer(flat, "backendtime"),
        model=model if isinstance(model, str) and model else None,
        response_id=response_id if isinstance(response_id, str) and response_id else None,
        streamed=streamed or boolean(flat, "isstreamcompletion") or False,
        body_truncated=request.truncated or response.truncated,
        usage=usage,
    )
    prompt = clip(prompt_text(req_doc, operation), preview_chars)
    completion = clip(completion_text(resp_doc), preview_chars)
    return (
        facts,
        Preview(prompt, GATEWAY_RANK) if prompt else None,
        Preview(completion, GATEWAY_RANK) if completion else None,
    )

"""Who called: the Entra app and user behind a call, from bearer-token claims.

Read from the `Authorization` header of a logged request (GatewayLogs logs it when it is in
the diagnostic's "headers to log"), before credentials are removed; the token itself is never
stored. The signature is not checked here: the claims are used only for calls that succeeded,
because a token that reached a successful call was validated on the way, by APIM's
`validate-azure-ad-token`/`validate-jwt` policy or by Azure OpenAI's Entra authentication.
APIs that accept a subscription key and pass an arbitrary bearer token through unvalidated
should set CALLER_FROM_BEARER=false (README, "Attribution").
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.common.values import json_object


@dataclass(frozen=True, slots=True)
class Caller:
    app_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None


NOBODY = Caller()


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The payload of a JWT, unverified; None if it is not one."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def _claim(claims: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def from_claims(claims: dict[str, Any]) -> Caller:
    # v1 tokens carry `appid`, v2 tokens `azp`; `oid` is the user (or the app's service principal).
    return Caller(
        app_id=_claim(claims, "appid", "azp"),
        user_id=_claim(claims, "oid"),
        tenant_id=_claim(claims, "tid"),
    )


def from_authorization(value: Any) -> Caller:
    if isinstance(value, list):
        value = value[0] if value else None
    if not isinstance(value, str):
        return NOBODY
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token:
        return NOBODY
    claims = jwt_claims(token.strip())
    return from_claims(claims) if claims else NOBODY


def authorization_of(record: dict[str, Any]) -> Any:
    """The logged `Authorization` request header of a GatewayLogs record, if any: in the
    record's `requestHeaders` or its `properties`' (either may be sent as a JSON string)."""
    for level in (record, json_object(record.get("properties"))):
        for key, value in level.items() if level is not None else ():
            headers = json_object(value) if key.lower() == "requestheaders" else None
            for name, header in headers.items() if headers is not None else ():
                if name.lower() == "authorization":
                    return header
    return None

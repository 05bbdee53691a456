"""What never gets stored: credentials in headers and URLs.

Applied to every record before it is archived, dead-lettered or turned into a row, under
every capture setting. The live request is never touched: we only see logs of it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "ocp-apim-subscription-key",
        "ocp-apim-trace-key",
        "cookie",
        "set-cookie",
        "x-functions-key",
    }
)
# Query parameters that carry keys or tokens (APIM subscription key, AOAI key, SAS signature).
_URL_SECRET = re.compile(
    r"([?&](?:api-key|subscription-key|sig|code|access_token|key)=)[^&#\s\"]*",
    re.IGNORECASE,
)
REMOVED = "[REMOVED]"


def scrub_url(url: str) -> str:
    return _URL_SECRET.sub(lambda m: m.group(1) + REMOVED, url) if "=" in url else url


def _scrub_headers(headers: Any) -> Any:
    if isinstance(headers, str) and headers.startswith("{"):
        try:
            headers = orjson.loads(headers)
        except orjson.JSONDecodeError:
            return headers
    if not isinstance(headers, dict):
        return headers
    return {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}


def _scrub_level(obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        lk = key.lower()
        if lk in CREDENTIAL_HEADERS:
            continue  # a policy that logged a credential as a field of its own
        if lk.endswith("headers"):
            value = _scrub_headers(value)
        elif isinstance(value, str) and (lk.endswith("url") or lk == "uri"):
            value = scrub_url(value)
        out[key] = value
    return out


def scrub_credentials(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of `record` without credential headers or URL keys (top level and properties)."""
    out = _scrub_level(record)
    for key, value in out.items():
        if key.lower() == "properties":
            if isinstance(value, str):
                try:
                    value = orjson.loads(value)
                except orjson.JSONDecodeError:
                    continue
            if isinstance(value, dict):
                out[key] = _scrub_level(value)
    return out

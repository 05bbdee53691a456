"""Where a call ran and who sent it, read the same way from every log source: the APIM
service, the Azure region and the client's IP address.

Each source names these fields its own way (formats.md §1.1, §2.3, §3.2); the values they
hold are written differently too (`West Europe` / `westeurope`, an upper-cased resourceId,
an `X-Forwarded-For` list with ports), and all of them end up in the same row columns.
"""

from __future__ import annotations

import re

_SERVICE = re.compile(r"/providers/microsoft\.apimanagement/service/([^/]+)", re.IGNORECASE)


def apim_service(resource_id: str | None) -> str | None:
    # Azure Monitor upper-cases resourceId; APIM service names are lower-case DNS labels.
    m = _SERVICE.search(resource_id or "")
    return m.group(1).lower() if m else None


def region_name(value: str | None) -> str | None:
    """`West Europe` (GatewayLogs) and `westeurope` (LLM logs) both become `westeurope`."""
    return value.replace(" ", "").lower() if value else None


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

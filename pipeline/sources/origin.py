"""Where a call ran and who sent it, read the same way from every log source: the APIM
service, the Azure region and the client's IP address.

Each source names these fields its own way (formats.md §1.1, §2.3, §3.2); the values they
hold are written differently too (`West Europe` / `westeurope`, an upper-cased resourceId,
an `X-Forwarded-For` list with ports), and all of them end up in the same row columns.
"""

from __future__ import annotations

import ipaddress
import re

_SERVICE = re.compile(r"/providers/microsoft\.apimanagement/service/([^/]+)", re.IGNORECASE)
# An APIM service name is a DNS label (letters, digits, hyphens; at most 50 characters), so the
# first label of a gateway host (`contoso.azure-api.net`) is the service.
_HOST_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62})")
# Longest textual IP address: IPv6 with an embedded IPv4 and a zone (`%eth0`), kept short.
_MAX_IP_CHARS = 64


def apim_service(resource_id: str | None) -> str | None:
    # Azure Monitor upper-cases resourceId; APIM service names are lower-case DNS labels.
    m = _SERVICE.search(resource_id or "")
    return m.group(1).lower() if m else None


def service_name(value: str | None) -> str | None:
    """The APIM service a policy names: `contoso`, `CONTOSO` and the gateway host
    `contoso.azure-api.net` are one service. The ai-hub-gateway usage record writes
    `context.Deployment.ServiceName`, which its own sample data shows as the host
    (`apim-7pg4fleh6wgj6.azure-api.net`), while GatewayLogs give the name from resourceId:
    both must group as one service in the KPIs."""
    if not value:
        return None
    label = value.strip().lower().split(".", 1)[0]
    return label if _HOST_LABEL.fullmatch(label) else None


def ip_address(value: str | None) -> str | None:
    """`value` when it is an IPv4 or IPv6 address, else None: policies write placeholders
    (`NA`, `X.Y.Z`, `unknown`) where they had no address, and those are no caller."""
    if not value or len(value) > _MAX_IP_CHARS:
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return None
    return value


def region_name(value: str | None) -> str | None:
    """`West Europe` (GatewayLogs) and `westeurope` (LLM logs) both become `westeurope`."""
    return value.replace(" ", "").lower() if value else None


def client_ip(forwarded_for: str | None, caller_ip: str | None) -> str | None:
    """The client: first X-Forwarded-For entry (Application Gateway in front), else the caller;
    only an address counts (a placeholder is no client)."""
    if forwarded_for:
        first = _address(forwarded_for[: _MAX_IP_CHARS * 2].split(",", 1)[0])
        if first:
            return first
    return _address(caller_ip)


def _address(entry: str | None) -> str | None:
    if not entry:
        return None
    entry = entry.strip()
    if entry.startswith("["):  # [2001:db8::1]:443
        entry = entry[1:].split("]", 1)[0]
    elif entry.count(":") == 1:  # 203.0.113.7:53120
        entry = entry.split(":", 1)[0]
    return ip_address(entry)

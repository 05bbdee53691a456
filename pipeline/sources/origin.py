"""Where a call ran and who sent it, read the same way from every log source: the APIM
service, the Azure region and the client's IP address.

Each source names these fields its own way (formats.md §1.1, §2.3, §3.2); the values they
hold are written differently too (`West Europe` / `westeurope`, an upper-cased resourceId,
an `X-Forwarded-For` list with ports), and all of them end up in the same row columns.
"""

from __future__ import annotations

import ipaddress
import re

from pipeline.settings import Proxies

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


# Characters of X-Forwarded-For read, from its end: the hops nearest APIM are written last.
_MAX_FORWARDED = 2048


def client_ip(
    forwarded_for: str | None, caller_ip: str | None, proxies: Proxies = ()
) -> str | None:
    """The client: the address APIM saw (`callerIpAddress`, `context.Request.IpAddress`),
    unless that is one of the `proxies` in front of APIM (TRUSTED_PROXIES). Then
    X-Forwarded-For is read from the right, where each proxy appends the address it saw,
    past the trusted ones: the first other address is the client. A client can write any
    X-Forwarded-For, so nothing left of the first untrusted hop (or of an entry that is not
    an address) is believed. Only an address counts (a placeholder is no client)."""
    peer = _address(caller_ip)
    if peer is None or not forwarded_for or not _among(peer, proxies):
        return peer
    client = peer
    for entry in reversed(forwarded_for[-_MAX_FORWARDED:].split(",")):
        hop = _address(entry)
        if hop is None:
            break
        client = hop
        if not _among(hop, proxies):
            break
    return client


def _among(address: str, proxies: Proxies) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in proxies)


def _address(entry: str | None) -> str | None:
    if not entry:
        return None
    entry = entry.strip()
    if entry.startswith("["):  # [2001:db8::1]:443
        entry = entry[1:].split("]", 1)[0]
    elif entry.count(":") == 1:  # 203.0.113.7:53120
        entry = entry.split(":", 1)[0]
    return ip_address(entry)

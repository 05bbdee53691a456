"""Timestamps as the sources write them (formats.md §0.7).

- Azure Monitor records: ISO 8601 with 7 fractional digits, `2024-07-02T06:31:31.4465902Z`.
- Event Hubs Capture `EnqueuedTimeUtc` and policy-built `DateTime.UtcNow.ToString()`:
  .NET `M/d/yyyy h:mm:ss tt`, e.g. `3/4/2025 10:15:03 AM`, no zone (UTC by convention).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_FRACTION = re.compile(r"\.(\d+)")
_DOTNET = re.compile(
    r"^\s*(\d{1,2})/(\d{1,2})/(\d{4})\s+(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*([AaPp][Mm])?\s*$"
)


def parse_time(value: object) -> datetime | None:
    """Parse a timestamp into an aware UTC datetime, or None if it is not one we know."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # epoch seconds (or milliseconds, as Capture's x-opt-enqueued-time)
        seconds = value / 1000 if value > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or not value:
        return None
    s = value.strip()
    m = _DOTNET.match(s) if "/" in s else None  # ISO 8601 (most times) has no slash
    if m:
        return _from_dotnet(m)
    # Python 3.11 accepts 7 fractional digits but not more; keep microseconds.
    f = _FRACTION.search(s)
    if f is not None and len(f.group(1)) > 6:
        s = s[: f.start(1) + 6] + s[f.end(1) :]
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
        # "0001-01-01T00:00:00+01:00" is a valid time whose UTC is before year 1.
        return dt.astimezone(UTC) if dt.tzinfo else dt.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def _from_dotnet(m: re.Match[str]) -> datetime | None:
    month, day, year, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    ampm = (m.group(8) or "").upper()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "PM" else 0)
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        return None


def iso(dt: datetime) -> str:
    """ISO 8601 UTC with a `Z`, as stored in archive metadata."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Times a record may carry. No APIM or Azure OpenAI log predates 2015; a record cannot be
# logged long after the event carrying it was enqueued (a day covers clock skew and the
# longest calls). There is no lower bound relative to the enqueued time: history re-published
# to a hub (`send`, `replay --to-eventhub`) is legitimately months older than its event.
EARLIEST = datetime(2015, 1, 1, tzinfo=UTC)
FUTURE_SKEW = timedelta(days=1)


def plausible(dt: datetime | None, reference: datetime | None = None) -> bool:
    """True when `dt` may be a real log time: from 2015 up to a day after `reference` (the
    event's enqueued time) or, without one, a day after now."""
    if dt is None:
        return False
    now = datetime.now(UTC)
    # A reference in the future (a damaged Capture file) is no reason to accept one too.
    latest = (reference if reference is not None and reference < now else now) + FUTURE_SKEW
    return EARLIEST <= dt <= latest


def path_hour(dt: datetime) -> str:
    """`yyyy/MM/dd/HH` with a four-digit year, whatever the year (strftime's %Y is not)."""
    dt = dt.astimezone(UTC)
    return f"{dt.year:04d}/{dt.month:02d}/{dt.day:02d}/{dt.hour:02d}"

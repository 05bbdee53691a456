"""Log Analytics rows of APIM's resource-specific tables → the record shape of their
diagnostic-setting twins, so that gateway.py and llmlogs.py read them unchanged.

A workspace that receives APIM's diagnostic setting stores `GatewayLogs` in the table
`ApiManagementGatewayLogs` and `GatewayLlmLogs` in `ApiManagementGatewayLlmLog`, with
PascalCase columns (formats.md §1.2, §2.3; column lists from the Azure Monitor table
reference, learn.microsoft.com/azure/azure-monitor/reference/tables/apimanagementgatewaylogs
and .../apimanagementgatewayllmlog). Lower-cased by `envelope.flatten`, most columns already
have the name the readers use (`responsecode`, `backendresponsebody`, `apiid`, `deploymentname`,
`prompttokens`, ...); what differs is translated here:

- `TimeGenerated` → `time` (the common schema's `time`; both are "request processing start");
- `_ResourceId` → `resourceId`;
- the six `LastError*` columns → the `lastError` object (`elapsed`, `source`, `scope`,
  `section`, `reason`, `message`; formats.md §1.2, old gateway-log schema);
- `Category` (GatewayLogs' table has one; the LLM table has none) set to the diagnostic
  category.

How a row left the workspace changes how its values are written, and is undone here:

- `az monitor log-analytics query` turns every value into `str(value)` (azure-cli-extensions
  `src/log-analytics/azext_loganalytics/custom.py`, `Query._output`; also the older
  `_format.py`) and adds a `TableName` member: numbers arrive as `"200"`, bools as
  `"True"`, a null as `"None"`. `values.integer` / `values.boolean` read the first two; a null
  can only be in a number, bool or dynamic column (KQL strings are never null), where
  `"None"` reads as no value. Dynamic columns (headers, LLM messages) arrive as JSON text,
  which the readers already decode (`values.json_object`, `llmlogs.messages_of`).
- The portal's CSV export writes times in the display format (`2020/10/16 0:00:01.403` and,
  in an en-US browser, `10/16/2020, 12:00:01.403 AM`; azure-docs issue #66181, observed, the
  en-US form inferred from the portal's display) and headers such as `TimeGenerated [UTC]`
  (header suffix inferred; files.py `read_csv` strips it).

A row is recognised by its `Type` column (the table's name, a standard column of every table)
or, when a query projected `Type` away, by `TimeGenerated` without the common schema's `time`
plus a column only one of the two tables has. The legacy `AzureDiagnostics` table is not
read: its APIM column names (type-suffixed, `_s`/`_d`) could not be verified.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pipeline.common.timestamps import parse_time

Table = Literal["gateway", "llm"]

GATEWAY_TABLE = "ApiManagementGatewayLogs"
LLM_TABLE = "ApiManagementGatewayLlmLog"
_TABLES: dict[str, Table] = {GATEWAY_TABLE.lower(): "gateway", LLM_TABLE.lower(): "llm"}

# Columns that only one of the two tables has (lower-cased), for rows without `Type`.
_LLM_COLUMNS = frozenset(
    {"deploymentname", "modelname", "prompttokens", "completiontokens", "totaltokens"}
    | {"requestmessages", "responsemessages", "sequencenumber", "isstreamcompletion"}
)
_GATEWAY_COLUMNS = frozenset(
    {"responsecode", "backendresponsecode", "backendresponsebody", "requestbody", "url"}
    | {"apiid", "operationid", "apimsubscriptionid", "totaltime", "backendtime"}
)
_LAST_ERROR = ("elapsed", "source", "scope", "section", "reason", "message")

# The portal's display form with a year first (`2020/10/16 0:00:01.403`, issue #66181).
_YEAR_FIRST = re.compile(
    r"^\s*(\d{4})/(\d{1,2})/(\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?\s*$"
)


def table_of(flat: dict[str, Any]) -> Table | None:
    """Which Log Analytics table a flattened record is a row of, or None (not a row)."""
    kind = flat.get("type")
    if isinstance(kind, str):
        table = _TABLES.get(kind.lower())
        if table is not None:
            return table
    if "timegenerated" not in flat or "time" in flat:
        return None  # a diagnostic-setting record carries `time`
    if not _LLM_COLUMNS.isdisjoint(flat):
        return "llm"
    if not _GATEWAY_COLUMNS.isdisjoint(flat):
        return "gateway"
    return None


def as_diagnostic(flat: dict[str, Any], table: Table) -> dict[str, Any]:
    """The flattened row in the names its diagnostic-setting twin uses (a new dict)."""
    out = dict(flat)
    generated = out.pop("timegenerated", None)
    if generated is not None or "time" not in out:
        out["time"] = row_time(generated)
    resource = out.pop("_resourceid", None)
    if "resourceid" not in out and resource is not None:
        out["resourceid"] = resource
    if table == "llm":
        out["category"] = "GatewayLlmLogs"
        return out
    out["category"] = "GatewayLogs"
    last_error = {
        name: out.pop(f"lasterror{name}")
        for name in _LAST_ERROR
        if out.get(f"lasterror{name}") not in (None, "")
    }
    if last_error and "lasterror" not in out:
        out["lasterror"] = last_error
    return out


def row_time(value: Any) -> datetime | None:
    """`TimeGenerated` as the ways out of a workspace write it: ISO 8601 (the query API, az
    CLI, data export; `tostring(TimeGenerated)` in a CSV), or the portal's display form."""
    if not isinstance(value, str):
        return parse_time(value)
    t = parse_time(value)
    if t is not None:
        return t
    # `10/16/2020, 12:00:01.403 AM`: the .NET form timestamps.py knows, plus a comma.
    t = parse_time(value.replace(",", " ", 1)) if value.count(",") == 1 else None
    if t is not None:
        return t
    m = _YEAR_FIRST.match(value)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    micro = int((m.group(7) or "0")[:6].ljust(6, "0"))
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)
    except ValueError:
        return None


def is_row(obj: Any) -> bool:
    """An object that is a row of one of the two tables (for readers choosing how to split)."""
    if not isinstance(obj, dict):
        return False
    return table_of({str(k).lower(): v for k, v in obj.items()}) is not None

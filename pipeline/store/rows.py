"""Resolved calls ↔ `AuditLog` table entities.

Keys:
- RowKey = the APIM correlation id (characters Azure forbids in keys are %-escaped).
- PartitionKey = `yyyy-MM-dd_S`: the UTC day of the call and a shard S = crc32(id) mod
  AUDIT_SHARDS. The same call always gets the same key, a day is a key range
  (`PartitionKey ge '2025-03-04' and PartitionKey lt '2025-03-05'`), and a batch's rows fall
  into few partitions, so they go in few entity-group transactions.

Unknown values are left out of the entity: Table storage has no null, and a missing
property reads back as None, never as a made-up 0.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import fields
from datetime import datetime
from typing import Any

import orjson
from azure.data.tables import EdmType, EntityProperty

from pipeline import __version__
from pipeline.call.join import CallState, Resolved, resolve
from pipeline.common.timestamps import parse_time
from pipeline.model import Call, Facts, Fragment, Preview, RawPointer, Usage
from pipeline.store import limits

# Audit-row property ← Facts field. The names are a contract: users query them.
FACT_PROPERTIES: tuple[tuple[str, str], ...] = (
    ("CallTime", "call_time"),
    ("ApimService", "apim_service"),
    ("Region", "region"),
    ("ApiId", "api_id"),
    ("OperationId", "operation_id"),
    ("ProductId", "product_id"),
    ("SubscriptionId", "subscription_id"),
    ("UserId", "user_id"),
    ("CallerIp", "caller_ip"),
    ("CallerAppId", "caller_app_id"),
    ("CallerUserId", "caller_user_id"),
    ("CallerTenantId", "caller_tenant_id"),
    ("Method", "method"),
    ("Url", "url"),
    ("Deployment", "deployment"),
    ("ApiVersion", "api_version"),
    ("Operation", "operation"),
    ("BackendId", "backend_id"),
    ("Status", "status"),
    ("BackendStatus", "backend_status"),
    ("DurationMs", "duration_ms"),
    ("BackendMs", "backend_ms"),
    ("Model", "model"),
    ("ResponseId", "response_id"),
    ("BackendRequestId", "backend_request_id"),
    ("Streamed", "streamed"),
    ("BodyTruncated", "body_truncated"),
    ("FinishReason", "finish_reason"),
    ("ContentFiltered", "content_filtered"),
    ("ErrorCode", "error_code"),
    ("ErrorSource", "error_source"),
    ("ErrorMessage", "error_message"),
    ("JobId", "job_id"),
)
USAGE_PROPERTIES: tuple[tuple[str, str], ...] = (
    ("PromptTokens", "prompt"),
    ("CompletionTokens", "completion"),
    ("TotalTokens", "total"),
    ("CachedTokens", "cached"),
    ("ReasoningTokens", "reasoning"),
)

# `KeyedBy` of a row whose RowKey is the model's response id, not an APIM correlation id (its
# records carried none): it joins the row whose ResponseId it is (store/audit.join_twins).
KEYED_BY_RESPONSE = "ResponseId"

# Characters Azure forbids in PartitionKey and RowKey values.
FORBIDDEN_KEY_CHARS = (
    frozenset("/\\#?%") | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}
)
_FORBIDDEN_KEY_RE = re.compile("[" + re.escape("".join(sorted(FORBIDDEN_KEY_CHARS))) + "]")
MAX_KEY_CHARS = 255


class KeyTooLong(ValueError):
    """A correlation id that cannot be a RowKey even escaped."""


def escape_key(value: str, forbidden: frozenset[str] = FORBIDDEN_KEY_CHARS) -> str:
    """`value` with each `forbidden` character written %XX (reversible while `%` is one)."""
    return "".join(f"%{ord(c):02X}" if c in forbidden else c for c in value)


def row_key(correlation_id: str) -> str:
    if _FORBIDDEN_KEY_RE.search(correlation_id) is None:
        key = correlation_id
    else:
        key = escape_key(correlation_id)
    if not key or len(key) > MAX_KEY_CHARS:
        raise KeyTooLong(f"correlation id of {len(correlation_id)} characters is not a usable key")
    return key


def correlation_id_of(key: str) -> str:
    if "%" not in key:
        return key
    out, i = [], 0
    while i < len(key):
        if key[i] == "%" and _is_hex(key[i + 1 : i + 3]):
            out.append(chr(int(key[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(key[i])
            i += 1
    return "".join(out)


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789ABCDEFabcdef" for c in s)


def shard_of(correlation_id: str, shards: int) -> int:
    return zlib.crc32(correlation_id.encode("utf-8", "surrogatepass")) % shards


def partition_key(call_time: datetime, correlation_id: str, shards: int) -> str:
    # isoformat is several times faster than strftime, and the same text from year 1000 on
    # (strftime's %Y does not pad years below it).
    day = call_time.date().isoformat() if call_time.year >= 1000 else f"{call_time:%Y-%m-%d}"
    return f"{day}_{shard_of(correlation_id, shards)}"


def day_range(day: str) -> str:
    """OData filter for every partition of one day (`yyyy-MM-dd`)."""
    return f"PartitionKey ge '{day}' and PartitionKey lt '{day_range_end(day)}'"


def day_range_end(day: str) -> str:
    """The least string above every PartitionKey of `day`."""
    return day[:-1] + chr(ord(day[-1]) + 1)  # '2025-03-04' → '2025-03-05' lexically


def _value(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**31) <= v < 2**31:
        return EntityProperty(v, EdmType.INT64)
    return v


# The join state is JSON on the row; past this many UTF-16 units (a string property holds
# 32 K) it is stored compressed (binary, 64 KiB).
FRAGMENTS_INLINE_UNITS = 30_000


Row = tuple[CallState, dict[str, Any]]  # a call's join state and the entity built from it


def entities(states: Iterable[CallState], shards: int) -> list[Row]:
    """Each call's row, beside its join state (which the writer needs to merge)."""
    return [(state, to_entity(resolve(state), state, shards)) for state in states]


def to_entity(resolved: Resolved, state: CallState, shards: int) -> dict[str, Any]:
    """A resolved call's audit row, its join state kept on it, within Azure's limits."""
    facts = resolved.facts
    if facts.call_time is None:
        raise ValueError("call has no time")  # callers dead-letter such records first
    entity: dict[str, Any] = {
        "PartitionKey": partition_key(facts.call_time, resolved.correlation_id, shards),
        "RowKey": row_key(resolved.correlation_id),
    }
    for prop, name in FACT_PROPERTIES:
        value = getattr(facts, name)
        if value is not None:
            entity[prop] = _value(value)
    usage = resolved.usage
    for prop, name in USAGE_PROPERTIES:
        value = getattr(usage, name)
        if value is not None:
            entity[prop] = _value(value)
    entity["TokensSource"] = usage.source
    if resolved.prompt_preview is not None:
        entity["PromptPreview"] = resolved.prompt_preview.text
    if resolved.completion_preview is not None:
        entity["CompletionPreview"] = resolved.completion_preview.text
    if resolved.pointer is not None:
        p = resolved.pointer
        entity.update(RawBlob=p.blob, RawOffset=p.offset, RawLength=p.length, RawSha256=p.sha256)
    if resolved.redactions:
        entity["Redactions"] = orjson.dumps(
            resolved.redactions, option=orjson.OPT_SORT_KEYS
        ).decode()
    entity["Sources"] = resolved.sources
    _put_state_columns(entity, state)
    entity["PipelineVersion"] = __version__
    _put_fragments(entity, fragments_json(state))
    return limits.fit(entity, _cut_at_parse(facts.clipped))


def _put_state_columns(entity: dict[str, Any], state: CallState) -> None:
    """What the join state says of the call as a whole."""
    if state.call.keyed_by_response:
        entity["KeyedBy"] = KEYED_BY_RESPONSE
    if state.erased is not None:
        entity["Erased"] = state.erased
    if state.rivals:
        # Other records of one kind for this call (a forgery, or a record changed since):
        # the row shows the winner (larger rid), the others are archived (join.py `others`).
        entity["Conflicts"] = len(state.rivals)


def _put_fragments(entity: dict[str, Any], fragments: str) -> None:
    """The join state on the row: JSON text, or past FRAGMENTS_INLINE_UNITS compressed into
    as many binary properties (64 KiB each) as it needs. Counted as Azure counts: a state of
    20,000 emoji is 40,000 units, too long for one property."""
    if limits.utf16_units(fragments) <= FRAGMENTS_INLINE_UNITS:
        entity["Fragments"] = fragments
        return
    packed = zlib.compress(fragments.encode(), 6)
    step = limits.MAX_BINARY_BYTES
    for i in range(0, len(packed), step):
        name = "FragmentsZ" if i == 0 else f"FragmentsZ{i // step}"
        entity[name] = EntityProperty(packed[i : i + step], EdmType.BINARY)


def _cut_at_parse(clipped: str | None) -> list[str]:
    """The row's columns whose values the parser cut (`Facts.clipped`), for `Clipped`."""
    if not clipped:
        return []  # most calls: nothing cut
    cut = clipped.split(",")
    cut_at_parse = [prop for prop, name in FACT_PROPERTIES if name in cut]
    if "nesting" in cut:
        # A record or body nested deeper than safejson.MAX_DEPTH: kept as JSON text there.
        cut_at_parse.append("Nesting")
    return cut_at_parse


# --- join state kept on the row --------------------------------------------------------------


_FACT_NAMES = tuple(f.name for f in fields(Facts))
_FACT_NAME_SET = frozenset(_FACT_NAMES)
_USAGE_NAMES = tuple(f.name for f in fields(Usage))


def _facts_dict(facts: Facts) -> dict[str, Any]:
    # By hand rather than dataclasses.asdict, which deep-copies: this runs for every fragment.
    out = {}
    for name in _FACT_NAMES:
        value = getattr(facts, name)
        if value is not None:
            if name == "usage":
                value = {k: getattr(value, k) for k in _USAGE_NAMES}
            out[name] = value
    return out


def fragments_json(state: CallState) -> str:
    """Each source's facts (without previews, which live once in the row's columns)."""
    out: dict[str, Any] = {}
    for key, frag in state.call.fragments.items():
        item: dict[str, Any] = {"rid": frag.rid, "facts": _facts_dict(frag.facts)}
        if frag.redactions:
            item["red"] = frag.redactions
        if frag.pointer is not None:
            p = frag.pointer
            item["ptr"] = [p.blob, p.offset, p.length, p.sha256]
        out[key] = item
    previews = {}
    if state.prompt_preview is not None:
        previews["prompt"] = list(state.prompt_preview.rank)
    if state.completion_preview is not None:
        previews["completion"] = list(state.completion_preview.rank)
    out["_previews"] = previews
    if state.rivals:
        out["_rivals"] = sorted(state.rivals)
    if state.others:
        out["_others"] = [
            [rid, p.blob, p.offset, p.length, p.sha256] for rid, p in sorted(state.others.items())
        ]
    # Sorted: the same fragments give the same string whatever order they arrived in.
    return orjson.dumps(out, option=orjson.OPT_SORT_KEYS).decode()


def _facts_from(d: dict[str, Any]) -> Facts:
    kwargs = {k: v for k, v in d.items() if k in _FACT_NAME_SET}
    if "call_time" in kwargs:
        kwargs["call_time"] = parse_time(kwargs["call_time"])
    if isinstance(kwargs.get("usage"), dict):
        u = kwargs["usage"]
        kwargs["usage"] = Usage(
            **{k: u.get(k) for k in ("prompt", "completion", "total", "cached", "reasoning")},
            source=u.get("source", "none"),
        )
    return Facts(**kwargs)


def state_from_entity(entity: dict[str, Any]) -> CallState:
    """Rebuild the join state stored on an existing row."""
    cid = correlation_id_of(entity["RowKey"])
    raw = entity.get("Fragments")
    if entity.get("FragmentsZ") is not None:
        parts, i = [], 0
        while (part := entity.get("FragmentsZ" if i == 0 else f"FragmentsZ{i}")) is not None:
            parts.append(getattr(part, "value", part))
            i += 1
        raw = zlib.decompress(b"".join(parts)).decode()
    doc = orjson.loads(raw) if raw else {}
    call = Call(cid, keyed_by_response=entity.get("KeyedBy") == KEYED_BY_RESPONSE)
    previews = doc.pop("_previews", {}) if isinstance(doc, dict) else {}
    rivals = doc.pop("_rivals", []) if isinstance(doc, dict) else []
    others = doc.pop("_others", []) if isinstance(doc, dict) else []
    for key, item in doc.items():
        kind, _, part = key.partition(":")
        ptr = item.get("ptr")
        call.fragments[key] = Fragment(
            kind=kind,
            correlation_id=cid,
            rid=item["rid"],
            facts=_facts_from(item.get("facts", {})),
            pointer=RawPointer(*ptr) if ptr else None,
            part=int(part) if part else 0,
            redactions=item.get("red") or {},
        )
    state = CallState(
        call,
        # Pairs; a bare rid is not one (written by no released version): skipped.
        rivals={(r[0], r[1]) for r in rivals if isinstance(r, list) and len(r) == 2},
        others={rid: RawPointer(*p) for rid, *p in others},
    )
    erased = entity.get("Erased")
    if erased is not None:
        state.erased = erased if isinstance(erased, datetime) else parse_time(str(erased))
    if "prompt" in previews and entity.get("PromptPreview") is not None:
        state.prompt_preview = Preview(entity["PromptPreview"], tuple(previews["prompt"]))
    if "completion" in previews and entity.get("CompletionPreview") is not None:
        state.completion_preview = Preview(
            entity["CompletionPreview"], tuple(previews["completion"])
        )
    return state

"""Plain data passed between the pure stages: event bytes → records → fragments → audit rows.

Nothing here does I/O. `None` always means "not known", never zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

TokensSource = Literal["reported", "llm-log", "estimated", "none"]

# Which kind of log record a fragment came from. Lower rank wins when sources disagree.
SOURCE_RANK: dict[str, int] = {"gateway": 0, "policy": 1, "llm": 2, "llm-msg": 3}
# Name of each kind in the row's `Sources` property.
SOURCE_LABEL: dict[str, str] = {
    "gateway": "gateway",
    "policy": "policy",
    "llm": "llm",
    "llm-msg": "llm",
}
TOKENS_RANK: dict[str, int] = {"reported": 0, "llm-log": 1, "estimated": 2, "none": 3}


@dataclass(frozen=True, slots=True)
class RawPointer:
    """Where one call's raw record lives: a gzip member inside an archive blob."""

    blob: str
    offset: int
    length: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Archived:
    """An event rebuilt from our own archive: its record is already archived at `pointer`
    (it is not archived again), and `rid` is the identity of the record as first logged."""

    pointer: RawPointer
    rid: str
    # The pointer was checked against the archive (the member exists there, its SHA-256
    # matches and it belongs to `correlation_id`). An unchecked pointer (an event property
    # any sender can set) is never honoured: ingest checks it, or archives the record anew.
    verified: bool = False
    correlation_id: str | None = None
    # Sealed archive: the member's data key (previews of the record are sealed under it).
    key: bytes | None = None
    # Read from a sealed member: `body` is still the member, opened by ingest (which holds
    # the keys: ingest/archived.py); `erased` when its data key was destroyed.
    sealed: bool = False
    erased: bool = False


@dataclass(frozen=True, slots=True)
class EventIn:
    """One Event Hub event as any path (trigger, file, Capture, archive) delivers it."""

    body: bytes
    partition: str | None = None
    sequence: int | None = None
    enqueued: datetime | None = None
    offset: str | None = None
    # Where it came from, for messages and dead letters: "eventhub", "file:PATH:LINE", ...
    origin: str = "eventhub"
    partition_key: str | None = None
    archived: Archived | None = None
    # Read back from our own dead-letter store: the body may be a sealed dead letter, which
    # ingest opens (never set from anything a sender controls).
    sealed: bool = False
    # The index its first record had in the event it came from: a record's dead letter, replayed
    # (its body holds that record alone), keeps its place, and so its dead letter's name.
    first_record: int = 0
    # The indexes its records had, for the dead letter of several records of an event (the
    # bad ones, its good ones being rows).
    record_indexes: tuple[int, ...] = ()


# The most tokens one call can have: past a thousand times the largest context window of any
# model (2 M), a count is not a call's but a forgery's. Bounding each row keeps a day's sums
# within Int64 (a sender writing 2^63-1 tokens made them overflow and stop the KPIs).
MAX_CALL_TOKENS = 10**9

# Longest backend request id believed: Azure's are GUIDs (36 characters). A longer value is
# no request id but a sender's text, which the rollup would hold in memory while it scans a
# day's rows for twins (store/audit.join_twins): ignored where it is read.
MAX_REQUEST_ID_CHARS = 128


@dataclass(slots=True)
class Usage:
    """Token usage of one call, normalised across APIs (formats.md §5.9)."""

    prompt: int | None = None
    completion: int | None = None
    total: int | None = None
    cached: int | None = None
    reasoning: int | None = None
    source: TokensSource = "none"


@dataclass(slots=True)
class Facts:
    """What one log record tells about a call. Field names map to audit-row properties."""

    call_time: datetime | None = None
    apim_service: str | None = None
    region: str | None = None
    api_id: str | None = None
    operation_id: str | None = None
    product_id: str | None = None
    subscription_id: str | None = None
    user_id: str | None = None
    caller_ip: str | None = None
    method: str | None = None
    url: str | None = None
    deployment: str | None = None
    api_version: str | None = None
    operation: str | None = None
    backend_id: str | None = None
    status: int | None = None
    backend_status: int | None = None
    duration_ms: int | None = None
    backend_ms: int | None = None
    model: str | None = None
    response_id: str | None = None
    # The backend's own request id (its `apim-request-id` response header, which AI-Gateway's
    # message-storing sample logs as `apimRequestId`): the one key such a message shares with
    # the call's GatewayLogs record when that record's answer was cut before its `id`.
    backend_request_id: str | None = None
    streamed: bool | None = None
    body_truncated: bool | None = None
    finish_reason: str | None = None
    content_filtered: bool | None = None
    error_code: str | None = None
    error_source: str | None = None
    error_message: str | None = None
    job_id: str | None = None
    caller_app_id: str | None = None
    caller_user_id: str | None = None
    caller_tenant_id: str | None = None
    # True when `deployment` is what the client's request names (its body's `model`, a
    # routing header) rather than APIM's routing (a backend URL, the LLM log's own).
    deployment_claimed: bool | None = None
    # True when `streamed` was read from the answer logged (an SSE or a JSON body), not from
    # the request's `stream` flag (the client's word).
    streamed_seen: bool | None = None
    usage: Usage | None = None
    # Fact fields this record's values were cut in (ingest.clip_facts), comma-separated.
    clipped: str | None = None


@dataclass(frozen=True, slots=True)
class Preview:
    """A preview text and how good its origin is: lower `rank` wins (source rank, chunk order)."""

    text: str
    rank: tuple[int, int]

    @property
    def sealed(self) -> bool:
        """Sealed under its record's data key (protect/encryption.py)."""
        return self.text.startswith(SEALED_TEXT)


# How a sealed preview starts (protect/encryption.py writes them).
SEALED_TEXT = "enc:A256GCM:"


@dataclass(frozen=True, slots=True)
class RawSource:
    """A record's archive member, compressed as soon as the record is read (a batch holds
    thousands of them: a fifth of the memory of the JSON they hold)."""

    packed: bytes  # one gzip member (archive.pack_member)
    sha256: str  # of the uncompressed member: the row's RawSha256
    key: bytes | None = None  # its data key, when the archive is sealed


@dataclass(slots=True)
class Fragment:
    """One log record's contribution to one call."""

    kind: str  # key of SOURCE_RANK
    correlation_id: str
    # Identity of the record (hash of its stored form): duplicates share it.
    rid: str
    facts: Facts
    prompt_preview: Preview | None = None
    completion_preview: Preview | None = None
    # The record as it goes to the archive, and where it went (set when archived).
    raw: RawSource | None = None
    pointer: RawPointer | None = None
    # Sub-key for kinds that contribute several records per call (LLM message chunks).
    part: int = 0
    # What the capture policy masked in what this record stores, by placeholder type.
    redactions: dict[str, int] = field(default_factory=dict)
    # Sealed archive: the data key of the record's member (never stored on the row).
    data_key: bytes | None = None

    @property
    def key(self) -> str:
        return self.kind if not self.part else f"{self.kind}:{self.part}"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An event, or one record of it, that could not become an audit row."""

    body: bytes
    reason: str
    event: EventIn
    record_index: int | None = None
    # The body was redacted before storage (ARCHIVE_CAPTURE is not `full`).
    redacted: bool = False
    # The dead letter of several records of an event (its bad ones): where each was in it.
    record_indexes: tuple[int, ...] = ()
    # Already a dead letter that stays where it is (a sealed one no key of ours opens):
    # reported and not settled, but not written again.
    in_place: bool = False


@dataclass(slots=True)
class Call:
    """Everything known about one call: its fragments and the previews chosen so far."""

    correlation_id: str
    fragments: dict[str, Fragment] = field(default_factory=dict)
    # The id is the model's response id (`chatcmpl-…`): the records carried no APIM
    # correlation id. Such a call joins the call whose ResponseId it is (call/join.twins,
    # store/audit.join_twins) as soon as both are seen.
    keyed_by_response: bool = False

"""Fragments of one call → the call's resolved facts. Pure and order-independent.

Whatever order the log records of a call arrive in, `add_fragment` followed by `resolve`
gives the same result:
- two fragments under the same key (a duplicate, or the same record parsed again) keep
  one: the incoming one if it is the same record (same `rid`: a re-parse replaces the old
  extraction), else the one with the larger `rid` (deterministic, whatever came first).
  Two different records of one kind for one call are a conflict (any sender on the hub can
  write a record for a call it knows the id of, and grind its `rid`): the losers' (key,
  `rid`) are the call's rivals (the row says `Conflicts`);
- a record in no fragment (it lost, or is a message chunk past those kept) is never dropped:
  the batch archives it (`displaced`), and the call remembers where (`others`), so that
  erasure and `show` find it;
- each field comes from the best-ranked fragment that knows it (gateway > policy > LLM log);
- tokens come from the best `TokensSource` (reported > llm-log > estimated > none);
- each preview comes from the best-ranked fragment that has one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter

from pipeline.call.operations import RETRIEVAL
from pipeline.model import (
    MAX_REQUEST_ID_CHARS,
    SOURCE_LABEL,
    SOURCE_RANK,
    TOKENS_RANK,
    Call,
    Facts,
    Fragment,
    Preview,
    RawPointer,
    Usage,
)

_FACT_FIELDS = tuple(f.name for f in fields(Facts) if f.name not in ("usage", "clipped"))
# They are the leading fields of Facts, in order: a call of one source copies its facts as
# `Facts(*_fact_values(facts))`, one constructor call (resolve runs for every row).
assert tuple(f.name for f in fields(Facts))[: len(_FACT_FIELDS)] == _FACT_FIELDS
_fact_values = attrgetter(*_FACT_FIELDS)
# Fields where any source saying True wins (a gateway record without bodies cannot tell).
_ANY_TRUE = frozenset({"streamed", "body_truncated", "content_filtered"})


@dataclass(slots=True)
class CallState:
    """A call's fragments plus the best previews seen (previews are stored once, on the row)."""

    call: Call
    prompt_preview: Preview | None = None
    completion_preview: Preview | None = None
    # When the call's content was erased (compliance/erase.py): it never takes previews again.
    erased: datetime | None = None
    # (fragment key, `rid`) of records that lost to another record of that key: the
    # MAX_RIVALS least, so the same set whatever the order.
    rivals: set[tuple[str, str]] = field(default_factory=set)
    # Archived records of the call in no fragment, by `rid` (the MAX_OTHERS least kept).
    others: dict[str, RawPointer] = field(default_factory=dict)
    # Records of this batch in no fragment, not archived yet, by `rid` (ingest/batch.py
    # archives them and moves them to `others`). Never stored.
    displaced: dict[str, Fragment] = field(default_factory=dict)
    # Where this batch archived every one of them (`others` keeps MAX_OTHERS): what an
    # erased call's new copies are, all of them. Never stored.
    aside: list[RawPointer] = field(default_factory=list)


def rank_of(fragment: Fragment) -> tuple[int, int]:
    return (SOURCE_RANK[fragment.kind], fragment.part)


# Added to a preview's source rank when it was read from a body APIM cut: after every source.
CUT_PREVIEW = len(SOURCE_RANK)


# LLM-log message chunks kept per call: the lowest ones (the previews come from the first).
# Bounded, so a call logged in thousands of chunks cannot grow the row past Azure's limits.
MAX_MESSAGE_FRAGMENTS = 8


# Rival and other records remembered per call: enough to show a call is contested and to
# find its records again, bounded so that a sender cannot grow a row with forgeries (every
# record is archived, and listed under the call's id in the key table, whatever the count).
MAX_RIVALS = 16
MAX_OTHERS = 32


def add_fragment(state: CallState, incoming: Fragment) -> bool:
    """Merge `incoming` into `state`. Returns True when anything changed. A record that ends
    up in no fragment (it lost, or is past the chunks kept) is kept aside (`_displace`)."""
    if state.erased is not None:
        incoming.prompt_preview = incoming.completion_preview = None
    if incoming.kind == "llm-msg":
        parts = sorted(f.part for f in state.call.fragments.values() if f.kind == "llm-msg")
        if incoming.key not in state.call.fragments and len(parts) >= MAX_MESSAGE_FRAGMENTS:
            if incoming.part > parts[-1]:
                # Beyond the chunks we keep, whatever order they come in.
                return _displace(state, incoming)
            _drop_previews_of(state, (SOURCE_RANK["llm-msg"], parts[-1]))
            key = f"llm-msg:{parts[-1]}" if parts[-1] else "llm-msg"
            _displace(state, state.call.fragments.pop(key))
            # Its rivals go with it: in the other order they would never have met.
            state.rivals = {r for r in state.rivals if r[0] != key}
    existing = state.call.fragments.get(incoming.key)
    if existing is not None:
        if existing.rid != incoming.rid:
            loser, winner = sorted((existing, incoming), key=lambda f: f.rid)
            changed = _displace(state, loser)
            if not _same_reading(state, existing, incoming):
                # A record in another form that says the same (a Log Analytics row of a
                # message chunk stored live too) is archived, and no rival.
                changed |= _rival(state, (loser.key, loser.rid))
            if winner is existing:
                return changed  # the other record of this key wins, whichever came first
        if existing.rid == incoming.rid and existing.pointer is not None:
            # Same record archived before: keep pointing at the first copy (and, sealed,
            # at its key and the previews sealed under it: a redelivery rewrites nothing).
            incoming.pointer = existing.pointer
            incoming.data_key = existing.data_key
            _keep_sealed_previews(state, rank_of(existing), incoming)
        if _same(existing, incoming) and not _preview_differs(state, incoming):
            return False
        _drop_previews_of(state, rank_of(existing))
    state.call.fragments[incoming.key] = incoming
    _offer_previews(state, incoming)
    return True


def _displace(state: CallState, frag: Fragment) -> bool:
    """`frag` is in no fragment of the call: remembered where it is archived, or, not
    archived yet, kept for the batch to archive. True when the call's state changed."""
    if frag.pointer is not None:
        return remember(state, frag.rid, frag.pointer)
    if frag.raw is not None:
        state.displaced.setdefault(frag.rid, frag)  # a duplicate in the batch: archived once
    return False


def remember(state: CallState, rid: str, pointer: RawPointer) -> bool:
    """Where a record of the call in no fragment is archived (the first copy, as for a
    fragment; the MAX_OTHERS least `rid`s). True when that changed what is kept."""
    if rid in state.others:
        return False
    state.others[rid] = pointer
    if len(state.others) > MAX_OTHERS:
        dropped = max(state.others)
        del state.others[dropped]
        return dropped != rid
    return True


def archived_pointers(state: CallState) -> list[RawPointer]:
    """Where the call's records are archived: its fragments', and those in none that it knows
    (`others`, as its row remembers them; `aside`, every one this batch archived)."""
    kept = [f.pointer for f in state.call.fragments.values() if f.pointer is not None]
    return kept + list(state.others.values()) + state.aside


def _rival(state: CallState, rival: tuple[str, str]) -> bool:
    if rival in state.rivals:
        return False
    state.rivals.add(rival)
    if len(state.rivals) > MAX_RIVALS:
        dropped = max(state.rivals)
        state.rivals.discard(dropped)
        return dropped != rival
    return True


def absorb(state: CallState, other: CallState) -> bool:
    """Merge `other` (the same call: read from its stored row, or keyed by its response id)
    into `state`: its fragments, rivals and other records. True when anything changed."""
    changed = False
    for rival in sorted(other.rivals):
        changed |= _rival(state, rival)
    for rid, pointer in sorted(other.others.items()):
        changed |= remember(state, rid, pointer)
    for rid, frag in other.displaced.items():
        state.displaced.setdefault(rid, frag)
    state.aside += other.aside
    for frag in other.call.fragments.values():
        changed |= add_fragment(state, frag)
    return changed


def response_ids(state: CallState) -> set[str]:
    """The response ids the call's records name (normally one); none for a call that
    generated nothing (`generates`: a read of a stored response names the original's id)."""
    if not generates(ordered(state.call)):
        return set()
    return {f.facts.response_id for f in state.call.fragments.values() if f.facts.response_id}


def generates(frags: list[Fragment]) -> bool:
    """False for a `retrieval`, as the call's best-ranked record that names an operation says
    (call/exchange.py decides it from the method and the path of the records that log them):
    a read of a stored completion or response generated nothing. Another record of the call
    (an LLM log, which logs no method) may still report the stored answer's usage and its
    id: they are the original call's, not this one's."""
    operation = next((v for f in frags if (v := f.facts.operation) is not None), None)
    return operation != RETRIEVAL


def backend_request_ids(state: CallState) -> set[str]:
    """The backend request ids the call's records name (normally none or one)."""
    # Bounded where they are read (sources/gateway.request_id).
    return {bid for f in state.call.fragments.values() if (bid := f.facts.backend_request_id)}


def unique_backends(named: Iterable[tuple[str, str | None]]) -> dict[str, str]:
    """backend request id → the call keyed by a response id that names it, from (keyed call,
    its backend request id) pairs; an id that two keyed calls name maps to neither (one of
    them is forged: joining both would put the forgery in the call's row)."""
    owner: dict[str, str | None] = {}
    for keyed, bid in named:
        if bid and len(bid) <= MAX_REQUEST_ID_CHARS:
            owner[bid] = keyed if owner.get(bid, keyed) == keyed else None
    return {bid: keyed for bid, keyed in owner.items() if keyed is not None}


def claims(
    rids: Iterable[str],
    bids: Iterable[str],
    keyed: Container[str],
    backends: Mapping[str, str],
) -> set[str]:
    """The calls keyed by a response id (`keyed`, by that id; `backends`: unique_backends)
    that a call naming response ids `rids` and backend request ids `bids` is the twin of.
    Two keys, because GatewayLogs loses the response id of an answer cut before it (Azure
    writes `id` after `choices`) but still logs the backend's headers."""
    found = {rid for rid in rids if rid in keyed}
    found.update(backends[bid] for bid in bids if bid in backends)
    return found


def twins(states: Mapping[str, CallState]) -> list[tuple[str, str]]:
    """(call keyed by a response id, the call whose records name that ResponseId or its
    BackendRequestId) pairs among `states`. A keyed call that two calls claim joins neither:
    which one it belongs to cannot be told, and two rows are better than a wrong one."""
    keyed = {cid: s for cid, s in states.items() if s.call.keyed_by_response}
    if not keyed:
        return []
    backends = unique_backends(
        (cid, bid) for cid, s in keyed.items() for bid in backend_request_ids(s)
    )
    owners: dict[str, set[str]] = defaultdict(set)
    for cid, state in states.items():
        if not state.call.keyed_by_response:
            for twin in claims(response_ids(state), backend_request_ids(state), keyed, backends):
                owners[twin].add(cid)
    return [(twin, next(iter(cids))) for twin, cids in owners.items() if len(cids) == 1]


def _same_reading(state: CallState, a: Fragment, b: Fragment) -> bool:
    """Two records of one key that say the same: facts, what was masked, and previews."""
    return a.facts == b.facts and a.redactions == b.redactions and not _preview_differs(state, b)


def _same(a: Fragment, b: Fragment) -> bool:
    return (
        a.rid == b.rid
        and a.facts == b.facts
        and a.pointer == b.pointer
        and a.redactions == b.redactions
    )


def _from(preview: Preview | None, rank: tuple[int, int]) -> bool:
    """Whether `preview` is the one of the fragment ranked `rank`: at that rank, or after
    every source's (a prompt read from a cut body: ingest/records.py `protect`)."""
    return preview is not None and preview.rank in (rank, (rank[0] + CUT_PREVIEW, rank[1]))


def _preview_differs(state: CallState, frag: Fragment) -> bool:
    rank = rank_of(frag)
    for current, offered in (
        (state.prompt_preview, frag.prompt_preview),
        (state.completion_preview, frag.completion_preview),
    ):
        mine = current if _from(current, rank) else None
        if offered is None:
            # The fragment has no preview now (capture setting changed): ours must go, unless
            # it never came from this fragment.
            if mine is not None:
                return True
        elif mine is None:
            if current is None or offered.rank < current.rank:
                return True
        elif mine.text != offered.text:
            return True
    return False


def _keep_sealed_previews(state: CallState, rank: tuple[int, int], incoming: Fragment) -> None:
    """The previews a record gave before, sealed under its first copy's key, stand for the
    ones its new copy brings (the same text, sealed under another key)."""
    current, offered = state.prompt_preview, incoming.prompt_preview
    if current and offered and _from(current, rank) and current.sealed:
        incoming.prompt_preview = current
    current, offered = state.completion_preview, incoming.completion_preview
    if current and offered and _from(current, rank) and current.sealed:
        incoming.completion_preview = current


def _drop_previews_of(state: CallState, rank: tuple[int, int]) -> None:
    if _from(state.prompt_preview, rank):
        state.prompt_preview = None
    if _from(state.completion_preview, rank):
        state.completion_preview = None


def _offer_previews(state: CallState, frag: Fragment) -> None:
    p, c = frag.prompt_preview, frag.completion_preview
    if p is not None and (state.prompt_preview is None or p.rank <= state.prompt_preview.rank):
        state.prompt_preview = p
    if c is not None and (
        state.completion_preview is None or c.rank <= state.completion_preview.rank
    ):
        state.completion_preview = c


@dataclass(slots=True)
class Resolved:
    correlation_id: str
    facts: Facts
    usage: Usage
    sources: str
    pointer: RawPointer | None
    pointers: list[tuple[str, RawPointer]]
    prompt_preview: Preview | None
    completion_preview: Preview | None
    # Placeholders in what is stored for this call (previews and raw records), by type.
    redactions: dict[str, int]


def ordered(call: Call) -> list[Fragment]:
    return sorted(call.fragments.values(), key=rank_of)


def resolve(state: CallState) -> Resolved:
    frags = ordered(state.call)
    if len(frags) == 1:
        # Most calls have one source: its facts are the call's (copied: rows may change them).
        merged = Facts(*_fact_values(frags[0].facts))
    else:
        merged = Facts()
        _merge_facts(frags, merged)
    generated = generates(frags)
    if not generated:
        # Nothing generated, nothing billed, whatever another log of the call says (an LLM
        # log of a read would report the stored answer's usage, model, and its id as
        # `RequestId`).
        merged.response_id = merged.model = merged.finish_reason = None
    # A value cut at parse stays marked when it is the one the row shows.
    cut = {
        name
        for f in frags
        if f.facts.clipped
        for name in f.facts.clipped.split(",")
        # "nesting" is no field: a record nested too deep marks the call whatever it shows
        if name == "nesting"
        or (
            getattr(merged, name, None) is not None
            and getattr(merged, name) == getattr(f.facts, name)
        )
    }
    merged.clipped = ",".join(sorted(cut)) or None

    usages = [
        (_usage_rank(f.facts.usage), rank_of(f), f.facts.usage)
        for f in frags
        if f.facts.usage is not None
    ]
    usage = min(usages, key=lambda u: (u[0], u[1]))[2] if usages else Usage()
    if merged.status is not None and merged.status >= 400:
        usage = Usage()  # failed calls are not billed, whatever another log says
    if not generated:
        usage = Usage()

    labels: list[str] = []
    for f in frags:
        label = SOURCE_LABEL[f.kind]
        if label not in labels:
            labels.append(label)
    pointers = [(f.key, f.pointer) for f in frags if f.pointer is not None]
    redactions: dict[str, int] = {}
    for f in frags:
        for placeholder, n in f.redactions.items():
            redactions[placeholder] = redactions.get(placeholder, 0) + n
    return Resolved(
        correlation_id=state.call.correlation_id,
        facts=merged,
        usage=usage,
        sources=",".join(labels),
        pointer=pointers[0][1] if pointers else None,
        pointers=pointers,
        prompt_preview=state.prompt_preview,
        completion_preview=state.completion_preview,
        redactions=redactions,
    )


def _usage_rank(usage: Usage) -> tuple[int, int]:
    """Reported counts first, then the LLM log's, then estimates; a report missing its
    prompt or completion count (what a cut body keeps of `usage`: a client can size its
    answer to cut there) after the LLM log's complete counts."""
    partial = usage.source == "reported" and (usage.prompt is None or usage.completion is None)
    return (TOKENS_RANK["llm-log"], 1) if partial else (TOKENS_RANK[usage.source], 0)


def _merge_facts(frags: list[Fragment], merged: Facts) -> None:
    """Each fact from the best-ranked source that has it."""
    for name in _FACT_FIELDS:
        if name == "streamed" and any(f.facts.streamed_seen for f in frags):
            # What an answer logged says, before any request's flag (the client's word).
            value = next(f.facts.streamed for f in frags if f.facts.streamed_seen)
        elif name in _ANY_TRUE:
            values = [getattr(f.facts, name) for f in frags]
            value = (
                True
                if any(v is True for v in values)
                else next((v for v in values if v is not None), None)
            )
        elif name == "deployment":
            value = _deployment(frags)
        else:
            value = next((v for f in frags if (v := getattr(f.facts, name)) is not None), None)
        setattr(merged, name, value)


def _deployment(frags: list[Fragment]) -> str | None:
    """APIM's routing (a backend URL, the LLM log's DeploymentName) before what the client's
    request names, whatever the sources' ranks: a client writes its body and headers."""
    claimed = None
    for f in frags:
        value = f.facts.deployment
        if value is not None and not f.facts.deployment_claimed:
            return value
        claimed = claimed if claimed is not None else value
    return claimed

"""Daily KPIs from audit rows: pure aggregation (the timer and `rollup` do the I/O).

One KPI row per (Deployment, Model, SubscriptionId, ProductId, BackendId) seen on a day, plus
`_total`. Counting rules (README, "Daily KPIs"):
- Succeeded: status < 400; ClientErrors: 4xx except 429; ServerErrors: 5xx; Throttled: 429
  from anyone, ThrottledByGateway: the 429s APIM produced itself (its token-limit policy).
  Calls with no status (seen only in LLM logs) count in Calls only.
- Token sums add every known count, estimates included (EstimatedCalls says how many);
  UnknownTokenCalls: successful calls whose tokens are unknown.
- CostUsd prices each successful call whose model and tokens are known with the price table
  entry valid that day; failed calls cost 0 (not billed); the other successful calls are
  UnpricedCalls, never a guess. A call whose model was not logged (its answer cut before
  `model`) is priced as its deployment's model: the price table's map, else the model Azure
  reported for that deployment that day (`prices.DeploymentModels`; DeploymentPricedCalls
  counts those). As that is known only once the day is read, such calls' tokens wait in
  `Accumulator.pending` until `_resolve`.
- Percentiles from mergeable sketches (1% relative error), kept on the row for the report.
Memory grows with the number of groups, not calls.
"""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from azure.data.tables import EdmType, EntityProperty

from pipeline import __version__
from pipeline.call.operations import RETRIEVAL
from pipeline.kpi import attribution, packed
from pipeline.kpi.attribution import Attribution
from pipeline.kpi.prices import (
    DeploymentModels,
    Learnable,
    Price,
    PriceTable,
    Rates,
    billed,
    cost,
    deployment_key,
    key_of,
    learnable,
)
from pipeline.kpi.sketch import Sketch
from pipeline.model import MAX_CALL_TOKENS
from pipeline.store.rows import FORBIDDEN_KEY_CHARS, escape_key

DIMENSIONS = ("Deployment", "Model", "SubscriptionId", "ProductId", "BackendId")
# The usage rows' (KpiHourly) dimensions beyond those: who (team and cost center from the
# attribution map, app) and where (gateway, region). The user has rows of its own, per day.
USAGE_EXTRA = ("CallerAppId", "ApimService", "Region")
USAGE_DIMENSIONS = ("Team", "CostCenter", *USAGE_EXTRA, *DIMENSIONS)
USER = "CallerUserId"
TOTAL_KEY = "_total"
# Columns the rollup reads from AuditLog (a projection: nothing else crosses the wire).
AUDIT_COLUMNS = [
    *DIMENSIONS,
    *USAGE_EXTRA,
    USER,
    "CallTime",
    "Status",
    "ErrorSource",
    "ContentFiltered",
    "Streamed",
    "PromptTokens",
    "CompletionTokens",
    "TotalTokens",
    "CachedTokens",
    "ReasoningTokens",
    "TokensSource",
    "DurationMs",
    "BackendMs",
    # Whether a deployment is APIM's routing, not a client's claim (`DeploymentModels`).
    "Url",
    # A `retrieval` generated nothing: a call, with no tokens that are unknown, no price.
    "Operation",
]
COUNTS = (
    "Calls",
    "Succeeded",
    "ClientErrors",
    "ServerErrors",
    "Throttled",
    "ThrottledByGateway",
    "ContentFiltered",
    "Streamed",
    "EstimatedCalls",
    "UnknownTokenCalls",
    "UnpricedCalls",
)
# Successful calls with no model logged, priced with the model Azure reported for their
# deployment that day. On the KPI rows beside COUNTS, not among them: COUNTS are the export's
# and the report's columns (a contract), and this one says how a cost was found.
DEPLOYMENT_PRICED = "DeploymentPricedCalls"
STORED_COUNTS = (*COUNTS, DEPLOYMENT_PRICED)
TOKENS = ("PromptTokens", "CompletionTokens", "TotalTokens", "CachedTokens", "ReasoningTokens")
PERCENTILES = (
    ("DurationP50Ms", "duration", 0.50),
    ("DurationP95Ms", "duration", 0.95),
    ("DurationP99Ms", "duration", 0.99),
    ("BackendP95Ms", "backend", 0.95),
)


@dataclass(slots=True)
class Accumulator:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STORED_COUNTS, 0))
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKENS, 0))
    # Priced token sums per model price, so cost is computed once, independent of row order.
    priced: dict[Rates, list[int]] = field(default_factory=dict)
    # Successful calls with no model, by `deployment_key`: [calls, uncached, cached,
    # completion], priced once the day tells their deployment's model (`resolve`). None
    # until one waits: most accumulators never hold one, and a day has many.
    pending: dict[str, list[int]] | None = None
    duration: Sketch = field(default_factory=Sketch)
    backend: Sketch = field(default_factory=Sketch)
    # Merged into OTHER_DIMS while the day was read (`_fold`): rows go elsewhere now.
    folded: bool = False

    def add_usage(self, row: Mapping[str, Any], price_of: Any, pending: str | None = None) -> None:
        """Counts, tokens and cost of a row (what the hourly rows keep). `pending`: the
        deployment key a call with no model waits under for its deployment's model."""
        status = _int(row.get("Status"))
        failed = _failed(status)
        counts = call_tokens(row)
        _count(self.counts, row, status, failed, counts)
        for name, value in zip(TOKENS, counts, strict=True):
            if value is not None:
                self.tokens[name] += value
        if not failed:
            self._price(row, price_of, pending, counts)

    def add_latency(self, row: Mapping[str, Any]) -> None:
        duration = _int(row.get("DurationMs"))
        if duration is not None:
            self.duration.add(duration)
        backend = _int(row.get("BackendMs"))
        if backend is not None:
            self.backend.add(backend)

    def _price(
        self, row: Mapping[str, Any], price_of: Any, pending: str | None, counts: Counts
    ) -> None:
        """A successful call's tokens (`call_tokens`), added to the sums of its price, or
        pending its deployment's model; or UnpricedCalls."""
        if row.get("Operation") == RETRIEVAL:
            return  # a read of a stored generation: nothing billed, so nothing to price
        price = price_of(row.get("Model"), row.get("Deployment"))
        prompt, completion, _, cached_tokens, _ = counts
        if prompt is None or completion is None or (price is None and pending is None):
            self.counts["UnpricedCalls"] += 1
            return
        uncached, cached, completion = billed(prompt, completion, cached_tokens)
        if price is None:
            if self.pending is None:
                self.pending = {}
            waiting = self.pending.get(pending)
            if waiting is None:
                waiting = self.pending[pending] = [0, 0, 0, 0]
            waiting[0] += 1
            waiting[1] += uncached
            waiting[2] += cached
            waiting[3] += completion
            return
        sums = self.priced.setdefault(price.rates, [0, 0, 0])
        sums[0] += uncached
        sums[1] += cached
        sums[2] += completion

    def resolve(self, price_of_deployment: Any) -> None:
        """The day read: pending calls priced with their deployment's model, or unpriced."""
        for key, (calls, uncached, cached, completion) in (self.pending or {}).items():
            price: Price | None = price_of_deployment(key)
            if price is None:
                self.counts["UnpricedCalls"] += calls
                continue
            self.counts[DEPLOYMENT_PRICED] += calls
            sums = self.priced.setdefault(price.rates, [0, 0, 0])
            sums[0] += uncached
            sums[1] += cached
            sums[2] += completion
        self.pending = None

    def merge(self, other: Accumulator) -> None:
        for k, v in other.counts.items():
            self.counts[k] += v
        for k, v in other.tokens.items():
            self.tokens[k] += v
        for key, sums in other.priced.items():
            mine = self.priced.setdefault(key, [0, 0, 0])
            for i in range(3):
                mine[i] += sums[i]
        for key, waiting in (other.pending or {}).items():
            if self.pending is None:
                self.pending = {}
            mine = self.pending.setdefault(key, [0, 0, 0, 0])
            for i in range(4):
                mine[i] += waiting[i]
        self.duration.merge(other.duration)
        self.backend.merge(other.backend)

    def cost(self) -> float:
        return round(self.cost_exact(), 8)

    def cost_exact(self) -> float:
        # Summed in one order (by rates), whatever order the rows came in.
        priced = sorted(self.priced.items(), key=lambda kv: (kv[0][0], kv[0][1] or -1.0, kv[0][2]))
        return cost(priced)


# A row's (PromptTokens, CompletionTokens, TotalTokens, CachedTokens, ReasoningTokens).
Counts = tuple[int | None, int | None, int | None, int | None, int | None]


def call_tokens(row: Mapping[str, Any]) -> Counts:
    """A row's token counts (TOKENS order) as every measure reads them: its token sums, its
    cost, its unknown flag, and so the hourly rows that chargeback and budgets sum. A prompt
    and a completion adding up past what a call can have (each within MAX_CALL_TOKENS, the
    row's total then unknown: call/usage.total_of) are no call's counts: all unknown, so the
    call is an unknown-token and unpriced call, never priced at a forger's count that no
    token sum or budget holds. Otherwise the total is never less than the sum of the known
    parts (the rule of call/usage.total_of, again for rows written before it or by hand: a
    `total_tokens: 0` beside 10^6 + 10^6 made token budgets read 0 while the cost counted)."""
    prompt, completion, total, cached, reasoning = (_tokens(row.get(name)) for name in TOKENS)
    known = (prompt or 0) + (completion or 0)
    if known > MAX_CALL_TOKENS:
        return None, None, None, None, None
    if prompt is not None and completion is not None:
        total = known if total is None or total < known else total
    elif total is not None and total < known:
        total = known
    return prompt, completion, total, cached, reasoning


def _count(
    c: dict[str, int], row: Mapping[str, Any], status: int | None, failed: bool, counts: Counts
) -> None:
    """Add a row to the counts its status, flags and token source say."""
    c["Calls"] += 1
    if status is not None:
        if status < 400:
            c["Succeeded"] += 1
        elif status == 429:
            c["Throttled"] += 1
            if row.get("ErrorSource") == "gateway":
                c["ThrottledByGateway"] += 1
        elif status < 500:
            c["ClientErrors"] += 1
        else:
            c["ServerErrors"] += 1
    if row.get("ContentFiltered") is True:
        c["ContentFiltered"] += 1
    if row.get("Streamed") is True:
        c["Streamed"] += 1
    source = row.get("TokensSource")
    if source == "estimated":
        c["EstimatedCalls"] += 1
    # Unknown is the prompt or the completion missing, whatever the source: an estimate with
    # no answer to count (a stream whose body was not logged, an answer in audio) is one. A
    # `retrieval` (a read or delete of a stored completion or response) generated nothing:
    # its tokens are not unknown, there are none (call/operations.creates_generation).
    if (
        not failed
        and row.get("Operation") != RETRIEVAL
        and (source in (None, "none") or counts[0] is None or counts[1] is None)
    ):
        c["UnknownTokenCalls"] += 1


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, EntityProperty):
        value = value.value
    return value if isinstance(value, int) else None


def _failed(status: int | None) -> bool:
    return status is not None and status >= 400


def _tokens(value: Any) -> int | None:
    """A row's token count, or None past what a call can have (a row written by hand: the
    pipeline writes none), so that a day's sums stay within Int64."""
    n = _int(value)
    return n if n is None or 0 <= n <= MAX_CALL_TOKENS else None


def group_key(row: Mapping[str, Any]) -> tuple[str | None, ...]:
    return tuple(_dim(row.get(d)) for d in DIMENSIONS)


def _dim(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _hour(value: Any) -> int:
    """The UTC hour of a CallTime (every audit row has one; 0 if a row has none)."""
    return value.hour if isinstance(value, datetime) else 0


# An hourly group: (hour, *USAGE_DIMENSIONS values).
HourKey = tuple[Any, ...]


_KEY_COLUMNS = (USER, *USAGE_EXTRA, *DIMENSIONS)
# A raw key's (hourly, daily latency, user) accumulators, pending key and what it may teach.
_Accs = tuple[Accumulator, Accumulator, Accumulator, str | None, Learnable | None]
# Where a raw key (hour, failed, *_KEY_COLUMNS) holds the deployment and the model.
_DEPLOYMENT = 2 + _KEY_COLUMNS.index("Deployment")
_MODEL = 2 + _KEY_COLUMNS.index("Model")
# Raw keys remembered (each maps to its accumulators, so a row is attributed once per new
# combination, not per row); past this many the memo starts afresh, so memory stays bounded
# whatever the number of users.
_MEMO_KEYS = 200_000


# A client names the deployment and model of some routes (the body's `model`): past this many
# distinct values in a day, further new ones count as OTHER, so a flood of made-up names
# cannot make the rollup's memory grow with the calls instead of the groups.
MAX_VALUES_PER_DAY = 2_000
OTHER = "(other)"
# The first dimensions, capped per day (`_rank` reads them by position); the others.
_CAPPED = DIMENSIONS[:2]
_KEPT = DIMENSIONS[2:]
# The caps above bound each column, not their combinations: failing calls naming 2,000
# deployments (URL) by 2,000 models (body) made 4 million groups. Past this many groups
# (a KpiDaily group, its failed and answered calls counted apart) in a day, the groups that
# rank last (see `_rank`) are folded into OTHER_DIMS: which ones does not depend on the order
# the rows are read in, and answered calls' groups always outrank failing ones'.
MAX_GROUPS_PER_DAY = 10_000
OTHER_DIMS: tuple[str, ...] = (OTHER,) * len(DIMENSIONS)


@dataclass(frozen=True, slots=True)
class Named:
    """Deployment and model names the operator wrote down (the price table, the attribution
    map, the budgets): never counted against the cap, so calls forged under 2,000 made-up
    names, read first, cannot turn a real deployment into OTHER (and silence its budget)."""

    pairs: frozenset[tuple[str, str]] = frozenset()  # (column, value as `key_of` has it)
    priced: frozenset[str] = frozenset()  # model names of the price table, normalised
    # Subscriptions, products and backends the map's rules and the budgets name: a group of
    # one of them outranks the others when a day's groups are folded (`_rank`), so that a
    # flood of others cannot fold a budget's subscription into OTHER (its spend read as 0).
    kept: frozenset[tuple[str, str]] = frozenset()

    def keeps(self, dims: tuple[Any, ...]) -> bool:
        return any(
            (column, key_of(column, value)) in self.kept
            for column, value in zip(_KEPT, dims[len(_CAPPED) :], strict=True)
            if isinstance(value, str)
        )

    def name_of(self, column: str, value: str) -> tuple[str, str] | None:
        """The written-down name `value` is a spelling of (case, padding), or None."""
        key = key_of(column, value)
        if (column, key) in self.pairs or (column == "Model" and key in self.priced):
            return column, key
        return None


def named_by(
    prices: PriceTable, teams: Attribution, scopes: Iterable[tuple[str, str]] = ()
) -> Named:
    """The names of `_CAPPED` columns in the price table, the map's rules and budget scopes
    ((column, value as `key_of` has it) pairs)."""
    named = [pair for rule in teams.rules for pair in rule.match] + list(scopes)
    pairs = {(c, key_of(c, v)) for c, v in named if c in _CAPPED}
    pairs |= {("Deployment", d.casefold()) for d in prices.deployments}
    kept = frozenset((c, key_of(c, v)) for c, v in named if c in _KEPT)
    return Named(frozenset(pairs), prices.model_names(), kept)


@dataclass(frozen=True, slots=True)
class _Written:
    """A written-down name while the day is read: its label is chosen once the day is read
    (`_label`), so no call, least of all a failed one naming the model in its body, decides
    by being read first what the rest of the day's calls are grouped under."""

    column: str
    key: str


def _better(spelling: str, key: str) -> tuple[bool, bool, str]:
    # The name as written down (the service's own spelling of a model: `gpt-4o-2024-08-06`)
    # first, then an unpadded one, then the least: the same label whatever the order.
    return spelling != key, spelling != spelling.strip(), spelling


def _capped(folded: Any, values: dict[str, Any], failed: bool) -> None:
    """Names past the day's cap as OTHER. Failed and successful calls have a cap each: a
    client can make up names on failing calls at will (a route whose body names the model),
    and must not push the deployments that answer into OTHER. Names the operator wrote down
    (`folded.named`) are never capped."""
    for column in _CAPPED:
        value = _dim(values[column])
        answered = folded.seen.setdefault((column, False), set())
        seen = folded.seen.setdefault((column, True), set()) if failed else answered
        if value is not None and value not in seen and value not in answered:
            named = folded.named.name_of(column, value)
            if named is not None:
                # Its spellings (`CHAT-PROD`, ` gpt-4o `) are one group: exempt from the
                # cap, they must not be a way around it. Only answered calls, which the
                # service named, may lend the group their spelling.
                if not failed:
                    best = folded.spellings.get(named)
                    if best is None or _better(value, named[1]) < _better(best, named[1]):
                        folded.spellings[named] = value
                value = _Written(*named)
            elif len(seen) >= MAX_VALUES_PER_DAY:
                value = OTHER
            else:
                seen.add(value)
        values[column] = value


def _label(folded: Any, value: Any) -> Any:
    if isinstance(value, _Written):
        return folded.spellings.get((value.column, value.key), value.key)
    return value


def _rank(failed: bool, dims: tuple[Any, ...], named: Named) -> int:
    """Which groups stay when a day has more than MAX_GROUPS_PER_DAY (the lowest): answered
    before failed, those of a subscription, product or backend the operator named (budgets,
    the attribution map) before the others, then those whose deployment and model the
    operator wrote down (or nobody named), then a hash of the names, the same in every run."""
    made_up = any(isinstance(v, str) for v in dims[: len(_CAPPED)])
    parts = [[v.column, v.key] if isinstance(v, _Written) else v for v in dims]
    digest = hashlib.blake2b(orjson.dumps(parts), digest_size=16).digest()
    unnamed = not named.keeps(dims)
    return (failed << 130) | (unnamed << 129) | (made_up << 128) | int.from_bytes(digest, "big")


def _admit(folded: Any, failed: bool, dims: tuple[Any, ...]) -> tuple[Any, ...]:
    """`dims` if its group is among the day's MAX_GROUPS_PER_DAY lowest ranked so far (then
    the highest ranked one is folded into OTHER_DIMS), else OTHER_DIMS. A group folded never
    comes back (every group kept afterwards ranks lower), so the groups kept at the end are
    the lowest ranked of the day, whatever the order."""
    if dims == OTHER_DIMS or (failed, dims) in folded.latency:
        return dims
    rank = _rank(failed, dims, folded.named)
    if len(folded.ranks) < MAX_GROUPS_PER_DAY:
        heapq.heappush(folded.ranks, (-rank, failed, dims))
        return dims
    if rank > -folded.ranks[0][0]:
        return OTHER_DIMS
    _, out_failed, out_dims = heapq.heapreplace(folded.ranks, (-rank, failed, dims))
    _fold(folded, out_failed, out_dims)
    return dims


def _fold(folded: Any, failed: bool, dims: tuple[Any, ...]) -> None:
    """Move a group's accumulators into OTHER_DIMS (hourly ones keep their hour, team, app,
    gateway and region: chargeback by team still counts them)."""
    latency = folded.latency.pop((failed, dims))
    latency.folded = True  # the memo of `aggregate` looks the row's group up again
    _other(folded.latency, (failed, OTHER_DIMS)).merge(latency)
    # The memo still holds it: its sketches (kilobytes) go now, not when the memo does.
    latency.duration, latency.backend = Sketch(), Sketch()
    tail = len(DIMENSIONS)
    for key in folded.members.pop((failed, dims), ()):
        acc = folded.hours.pop(key)
        acc.folded = True
        _other(folded.hours, (*key[:-tail], *OTHER_DIMS)).merge(acc)


def _other(accs: dict[Any, Accumulator], key: Any) -> Accumulator:
    """The (other) group's accumulator, made once: a day past the cap folds a group into it
    for every group it drops (an accumulator and its two sketches made in vain each time)."""
    acc = accs.get(key)
    if acc is None:
        acc = accs[key] = Accumulator()
    return acc


def _into(accs: dict[Any, Accumulator], key: Any, acc: Accumulator) -> None:
    mine = accs.get(key)
    if mine is None:
        accs[key] = acc
    else:
        mine.merge(acc)


def _group(folded: Any, raw: tuple[Any, ...], teams: Attribution) -> Any:
    """The (hourly, daily latency, user) accumulators of a row whose raw key (hour, failed,
    _KEY_COLUMNS values) is new, the key its calls with no model wait under for their
    deployment's model, and what its calls may teach of that (`prices.learnable`). Its team
    is that of its names as logged, before any cap."""
    failed = raw[1]
    values = dict(zip(_KEY_COLUMNS, raw[2:], strict=True))
    team, cost_center = teams.team_of(values)
    _capped(folded, values, failed)
    deployment = _dim(raw[_DEPLOYMENT])
    # A deployment past the day's cap (OTHER) waits for nothing: each name waiting is a sum
    # in every accumulator its calls reach, so only the names the cap admitted may wait.
    pending = (
        deployment_key(deployment)
        if deployment is not None
        and _dim(raw[_MODEL]) is None
        and not failed
        and values["Deployment"] != OTHER
        else None
    )
    # `_capped` left its columns (the first two) as None, a name, OTHER or a `_Written`.
    dims = (values["Deployment"], values["Model"], *map(_dim, map(values.get, DIMENSIONS[2:])))
    dims = _admit(folded, failed, dims)
    # Internal key: failed first (a group's failed and answered calls rank apart), then the
    # HourKey. `_finish` drops it.
    key = (failed, raw[0], team, cost_center, *(_dim(values[c]) for c in USAGE_EXTRA), *dims)
    hourly = folded.hours.get(key)
    if hourly is None:
        hourly = folded.hours[key] = Accumulator()
        if dims != OTHER_DIMS:
            folded.members.setdefault((failed, dims), []).append(key)
    latency = folded.latency.get((failed, dims))
    if latency is None:
        latency = folded.latency[(failed, dims)] = Accumulator()
    user = _dim(raw[2])
    by_user = folded.users.get(user)
    if by_user is None:
        by_user = folded.users[user] = Accumulator()
    return hourly, latency, by_user, pending, learnable(raw[_DEPLOYMENT], raw[_MODEL], failed)


def _finish(folded: DayRollup) -> None:
    """The day read: written-down names get their label, failed and answered calls of a group
    are one group again."""
    cache: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def labelled(dims: tuple[Any, ...]) -> tuple[Any, ...]:
        out = cache.get(dims)
        if out is None:
            out = cache[dims] = tuple(_label(folded, v) for v in dims)
        return out

    tail = len(DIMENSIONS)
    hours: dict[HourKey, Accumulator] = {}
    for key, acc in folded.hours.items():
        _into(hours, (*key[1:-tail], *labelled(key[-tail:])), acc)
    latency: dict[tuple[str | None, ...], Accumulator] = {}
    for (_, dims), acc in folded.latency.items():
        _into(latency, labelled(dims), acc)
    folded.hours, folded.latency = hours, latency
    folded.members.clear()
    folded.ranks.clear()


@dataclass(slots=True)
class DayRollup:
    """A day's rows folded once: usage by hour and every dimension chargeback and budgets
    need but the user (`hours`), usage by user (`users`), latency sketches by daily group
    (`latency`). The daily groups and the total are merges of these, not a second pass over
    the rows. Usage groups keep no sketch (a sketch weighs kilobytes, and with the app among
    the dimensions they are many); percentiles stay daily."""

    hours: dict[HourKey, Accumulator]
    latency: dict[tuple[str | None, ...], Accumulator]
    users: dict[str | None, Accumulator]
    # Distinct values of the capped dimensions seen so far (MAX_VALUES_PER_DAY), by column
    # and whether the calls failed.
    seen: dict[tuple[str, bool], set[str]] = field(default_factory=dict)
    named: Named = field(default_factory=lambda: Named())
    # The label of each written-down name: the best spelling answered calls gave it
    # (`_better`); a name only failed calls gave is labelled as written down.
    spellings: dict[tuple[str, str], str] = field(default_factory=dict)
    # While the day is read: the groups kept (a heap of their negated `_rank`), and the
    # hourly keys of each, to fold them if they stop being kept.
    ranks: list[tuple[int, bool, tuple[Any, ...]]] = field(default_factory=list)
    members: dict[tuple[bool, tuple[Any, ...]], list[tuple[Any, ...]]] = field(default_factory=dict)

    def groups(self) -> dict[tuple[str | None, ...], Accumulator]:
        out: dict[tuple[str | None, ...], Accumulator] = {}
        tail = len(DIMENSIONS)
        for key, acc in self.hours.items():
            dims = key[-tail:]
            mine = out.get(dims)
            if mine is None:
                mine = out[dims] = Accumulator()
                mine.merge(self.latency[dims])
            mine.merge(acc)
        return out


def total_of(groups: Iterable[Accumulator]) -> Accumulator:
    total = Accumulator()
    for acc in groups:
        total.merge(acc)
    return total


def aggregate(
    rows: Iterable[Mapping[str, Any]],
    day: date,
    prices: PriceTable,
    teams: Attribution = attribution.NONE,
    named: Named | None = None,
) -> DayRollup:
    """Stream audit rows of one day into hourly accumulators (memory: groups, not calls)."""
    folded = DayRollup({}, {}, {}, named=named or named_by(prices, teams))
    cache: dict[tuple[Any, Any], Any] = {}

    def price_of(model: Any, deployment: Any) -> Any:
        key = (model, deployment)
        if key not in cache:
            cache[key] = prices.price(_dim(model), _dim(deployment), day)
        return cache[key]

    learned = DeploymentModels()
    # Rows are looked up by their raw values (one C-level `map`); a new combination is
    # normalised (empty = None) and attributed once, so the map is not consulted per row.
    by_raw: dict[tuple[Any, ...], _Accs] = {}
    for row in rows:
        raw = (
            _hour(row.get("CallTime")),
            _failed(_int(row.get("Status"))),
            *map(row.get, _KEY_COLUMNS),
        )
        accs = by_raw.get(raw)
        if accs is None or accs[1].folded:
            if len(by_raw) >= _MEMO_KEYS:
                by_raw.clear()
            accs = by_raw[raw] = _group(folded, raw, teams)
        accs[0].add_usage(row, price_of, accs[3])
        accs[1].add_latency(row)
        accs[2].add_usage(row, price_of, accs[3])
        if accs[4] is not None:
            learned.count(accs[4], row.get("Url"))
    _resolve(folded, prices, day, learned.chosen())
    _finish(folded)
    return folded


def _resolve(folded: DayRollup, prices: PriceTable, day: date, chosen: dict[str, str]) -> None:
    """Price the calls that waited for their deployment's model, in every accumulator that
    holds usage, before any is merged into another (groups, totals): all see one answer."""
    cache: dict[str, Price | None] = {}

    def price_of_deployment(key: str) -> Price | None:
        if key not in cache:
            cache[key] = prices.price(None, key, day, chosen)
        return cache[key]

    for acc in folded.hours.values():
        acc.resolve(price_of_deployment)
    for acc in folded.users.values():
        acc.resolve(price_of_deployment)


# "|" separates the dimensions in a KPI RowKey.
_KEY_FORBIDDEN = FORBIDDEN_KEY_CHARS | {"|"}
_KEY_FORBIDDEN_RE = re.compile("[" + re.escape("".join(sorted(_KEY_FORBIDDEN))) + "]")


def _key_part(value: str | None) -> str:
    if not value:
        return ""
    # Most values need no escaping: checked by one regex search, not character by character.
    return value if _KEY_FORBIDDEN_RE.search(value) is None else escape_key(value, _KEY_FORBIDDEN)


def kpi_row_key(dims: tuple[str | None, ...]) -> str:
    key = "|".join(_key_part(value) for value in dims)
    if len(key) > 250:
        key = "h:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def to_entity(
    day: date, dims: tuple[str | None, ...] | None, acc: Accumulator, prices: PriceTable
) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": f"{day:%Y-%m-%d}",
        "RowKey": TOTAL_KEY if dims is None else kpi_row_key(dims),
        "Day": f"{day:%Y-%m-%d}",
    }
    if dims is not None:
        for name, value in zip(DIMENSIONS, dims, strict=True):
            if value is not None:
                entity[name] = value
    entity.update(acc.counts)
    for name, value in acc.tokens.items():
        # Always Int64: a busy day's sums pass 2^31, and one type per column keeps BI tools sane.
        entity[name] = EntityProperty(value, EdmType.INT64)
    for name, which, q in PERCENTILES:
        value = getattr(acc, which).quantile(q)
        if value is not None:
            entity[name] = round(value, 2)
    entity["CostUsd"] = acc.cost()
    entity["PriceTableVersion"] = prices.version
    entity["DurationSketch"] = orjson.dumps(acc.duration.to_json()).decode()
    entity["BackendSketch"] = orjson.dumps(acc.backend.to_json()).decode()
    entity["PipelineVersion"] = __version__
    return entity


# KpiHourly holds three kinds of row per day (PartitionKey), told apart by their RowKey:
# `HH|dims` an hour; `d:NNNN` the whole day by the same dimensions and `u:NNNN` by user,
# both packed (kpi/packed.py: a month's statement reads a few dozen entities).
LEVEL_RANGES = {"hour": ("00|", "24"), "day": ("d:", "d;"), "user": ("u:", "u;")}


def usage_entity(
    day: date, row_key: str, level: str, acc: Accumulator, prices: PriceTable, version: str | None
) -> dict[str, Any]:
    """A KpiHourly row: the usage measures of one group (no latency: see DayRollup). Its
    cost is not rounded, so a month of rows sums to the daily KPIs' cost to the micro-dollar."""
    entity: dict[str, Any] = {
        "PartitionKey": f"{day:%Y-%m-%d}",
        "RowKey": row_key,
        "Day": f"{day:%Y-%m-%d}",
        "Level": level,
        **acc.counts,
    }
    for name, value in acc.tokens.items():
        entity[name] = EntityProperty(value, EdmType.INT64)
    entity["CostUsd"] = acc.cost_exact()
    entity["PriceTableVersion"] = prices.version
    entity["PipelineVersion"] = __version__
    if version is not None:
        entity["AttributionVersion"] = version
    return entity


def usage_entities(
    day: date, folded: DayRollup, prices: PriceTable, version: str | None, day_cost: float
) -> list[dict[str, Any]]:
    """The day's KpiHourly rows: by hour (a row per group), by day and by user (packed)."""
    out = []
    days: dict[tuple[Any, ...], Accumulator] = {}
    for key, acc in folded.hours.items():
        hour, dims = key[0], key[1:]
        entity = usage_entity(day, f"{hour:02d}|{kpi_row_key(dims)}", "hour", acc, prices, version)
        entity["Hour"] = hour
        out.append(_with_dims(entity, dims))
        merged = days.get(dims)
        if merged is None:
            merged = days[dims] = Accumulator()
        merged.merge(acc)
    # The day's cost exactly as KpiDaily's `_total` row has it: a statement's total is then
    # the `kpi` report's to the last digit (same values, same sum), whatever its groups.
    common: dict[str, Any] = {
        "PriceTableVersion": prices.version,
        "PipelineVersion": __version__,
        "DayCostUsd": day_cost,
    }
    if version is not None:
        common["AttributionVersion"] = version
    label = f"{day:%Y-%m-%d}"
    by_day = [
        _plain(_with_dims(_usage(acc), dims)) for dims, acc in sorted(days.items(), key=_by_key)
    ]
    out += packed.pack(label, "day", by_day, common)
    by_user = [
        _plain({**({USER: user} if user is not None else {}), **_usage(acc)})
        for user, acc in sorted(folded.users.items(), key=lambda kv: kv[0] or "")
    ]
    out += packed.pack(label, "user", by_user, common)
    out.sort(key=lambda e: e["RowKey"])
    return out


def _by_key(item: tuple[tuple[Any, ...], Accumulator]) -> tuple[str, ...]:
    return tuple(v or "" for v in item[0])


def _usage(acc: Accumulator) -> dict[str, Any]:
    return {**acc.counts, **acc.tokens, "CostUsd": acc.cost_exact()}


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in row.items()}


def _with_dims(entity: dict[str, Any], dims: tuple[Any, ...]) -> dict[str, Any]:
    for name, value in zip(USAGE_DIMENSIONS, dims, strict=True):
        if value is not None:
            entity[name] = value
    return entity


@dataclass(slots=True)
class RolledDay:
    """A day's KpiDaily rows (groups sorted by key, then `_total`) and KpiHourly rows."""

    daily: list[dict[str, Any]]
    hourly: list[dict[str, Any]]


def rollup_day(
    rows: Iterable[Mapping[str, Any]],
    day: date,
    prices: PriceTable,
    teams: Attribution = attribution.NONE,
    named: Named | None = None,
) -> RolledDay:
    """KPI entities of one day, daily and hourly, from one pass over its audit rows."""
    folded = aggregate(rows, day, prices, teams, named)
    groups = folded.groups()
    entities = [to_entity(day, dims, acc, prices) for dims, acc in groups.items()]
    entities.sort(key=lambda e: e["RowKey"])
    total = to_entity(day, None, total_of(groups.values()), prices)
    entities.append(total)
    usage = usage_entities(day, folded, prices, teams.version, total["CostUsd"])
    return RolledDay(entities, usage)


def days_to_roll(today: date, reroll: int) -> list[date]:
    """The timer's days: yesterday (UTC) and the `reroll` days before it, oldest first."""
    yesterday = today - timedelta(days=1)
    return [yesterday - timedelta(days=i) for i in range(reroll, -1, -1)]

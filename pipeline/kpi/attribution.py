"""The attribution map (ATTRIBUTION): which team and cost center a call is charged to.

```json
{"version": "2025-11-01",
 "rules": [{"team": "Claims", "costCenter": "CC-4100", "match": {"subscription": "team-claims"}},
           {"team": "HR", "match": {"user": "<entra object id>"}}]}
```

Every key of a rule's `match` must equal the call's value, compared case-insensitively (Azure
ids and names are); the first matching rule in file order wins; no match is team
`Unattributed` without a cost center. Applied when rolling up, like prices: editing the map
and rolling up again re-attributes history. A malformed map raises AttributionError naming
the rule and what is wrong, when it is loaded (at the start of every run that needs it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.kpi.files import DocumentError, ReadBlob, read_document

UNATTRIBUTED = "Unattributed"
# The keys a map rule or a budget scope is written with → the column each one names.
KEY_COLUMNS: dict[str, str] = {
    "team": "Team",
    "costCenter": "CostCenter",
    "subscription": "SubscriptionId",
    "product": "ProductId",
    "app": "CallerAppId",
    "user": "CallerUserId",
    "deployment": "Deployment",
    "model": "Model",
    "service": "ApimService",
}
# Match keys of a rule: what an audit row says (not what the map makes of it).
MATCH_KEYS = {
    k: KEY_COLUMNS[k] for k in ("subscription", "product", "app", "user", "deployment", "service")
}
COLUMNS = tuple(MATCH_KEYS.values())
MAX_RULES = 10_000


class AttributionError(ValueError):
    """The attribution map cannot be used; the message says where."""


@dataclass(frozen=True, slots=True)
class Rule:
    team: str
    cost_center: str | None
    # (column, value casefolded) pairs; all must hold.
    match: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Attribution:
    """Rules in file order, indexed, and a memo of the answers (calls repeat the same values).

    The index: rules grouped by the set of columns they match on; within a group, a dict from
    the values to the first rule of the file with them. A call is looked up once per group
    (a handful), not once per rule, so a map of thousands of user rules costs no more."""

    version: str | None = None
    rules: tuple[Rule, ...] = ()
    _memo: dict[tuple[Any, ...], tuple[str, str | None]] = field(default_factory=dict)
    _index: list[tuple[tuple[str, ...], dict[tuple[str, ...], int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        groups: dict[tuple[str, ...], dict[tuple[str, ...], int]] = {}
        for position, rule in enumerate(self.rules):
            pairs = sorted(rule.match)
            columns = tuple(c for c, _ in pairs)
            groups.setdefault(columns, {}).setdefault(tuple(v for _, v in pairs), position)
        self._index = list(groups.items())

    def team_of(self, row: Mapping[str, Any]) -> tuple[str, str | None]:
        """(team, cost center) of an audit row: the first rule whose keys all match."""
        values = tuple(row.get(c) for c in COLUMNS)
        found = self._memo.get(values)
        if found is None:
            if len(self._memo) >= 200_000:
                self._memo.clear()  # bounded, whatever the number of users
            found = self._memo[values] = self._first_match(values)
        return found

    def _first_match(self, values: tuple[Any, ...]) -> tuple[str, str | None]:
        folded = {
            c: v.casefold() for c, v in zip(COLUMNS, values, strict=True) if isinstance(v, str)
        }
        first: int | None = None
        for columns, by_values in self._index:
            key = tuple(folded.get(c) for c in columns)
            position = by_values.get(key)  # type: ignore[arg-type]
            if position is not None and (first is None or position < first):
                first = position
        if first is None:
            return UNATTRIBUTED, None
        return self.rules[first].team, self.rules[first].cost_center


NONE = Attribution()


def load(source: str, read_blob: ReadBlob | None = None) -> Attribution:
    """The map ATTRIBUTION names: "" (none: every call Unattributed), a file path, or
    blob:CONTAINER/NAME."""
    if not source:
        return Attribution()
    try:
        data = read_document("ATTRIBUTION", source, read_blob)
    except DocumentError as exc:
        raise AttributionError(str(exc)) from None
    return parse(data, source)


def parse(data: bytes, where: str = "ATTRIBUTION") -> Attribution:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise AttributionError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise AttributionError(f'{where}: expected an object with a "rules" list')
    version = doc.get("version")
    if version is not None and not isinstance(version, str):
        raise AttributionError(f'{where}: "version" must be a string')
    if len(doc["rules"]) > MAX_RULES:
        raise AttributionError(f"{where}: more than {MAX_RULES} rules")
    rules = tuple(_rule(r, f"{where}: rule {i + 1}") for i, r in enumerate(doc["rules"]))
    return Attribution(version, rules)


def _rule(raw: Any, where: str) -> Rule:
    if not isinstance(raw, dict):
        raise AttributionError(f"{where}: expected an object")
    team = raw.get("team")
    if not isinstance(team, str) or not team.strip():
        raise AttributionError(f'{where}: "team" must be a non-empty string')
    if team.strip() == UNATTRIBUTED:
        raise AttributionError(f'{where}: "{UNATTRIBUTED}" is the team of calls no rule matches')
    where = f"{where} (team {team!r})"
    cost_center = raw.get("costCenter")
    if cost_center is not None and (not isinstance(cost_center, str) or not cost_center):
        raise AttributionError(f'{where}: "costCenter" must be a non-empty string or absent')
    unknown = set(raw) - {"team", "costCenter", "match"}
    if unknown:
        raise AttributionError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    match = raw.get("match")
    if not isinstance(match, dict) or not match:
        raise AttributionError(f'{where}: "match" must be a non-empty object')
    pairs = column_values(match, MATCH_KEYS, where, "match", AttributionError)
    return Rule(team.strip(), cost_center, pairs)


def column_values(
    raw: dict[str, Any], keys: Mapping[str, str], where: str, what: str, error: type[ValueError]
) -> tuple[tuple[str, str], ...]:
    """`{key: value}` of a map rule or a budget scope → (column, value casefolded) pairs;
    `error` names the key that is unknown or not a non-empty string."""
    pairs = []
    for key, value in raw.items():
        if key not in keys:
            raise error(f"{where}: unknown {what} key {key!r} (expected {', '.join(keys)})")
        if not isinstance(value, str) or not value:
            raise error(f"{where}: {what} {key!r} must be a non-empty string")
        pairs.append((keys[key], value.casefold()))
    return tuple(pairs)

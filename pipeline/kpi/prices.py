"""The price table: what a model's tokens cost on a given day.

A JSON file (`pipeline/kpi/prices.json` by default, or the PRICE_TABLE setting: a path, or
`blob:CONTAINER/NAME` in the audit storage account):

    {"version": "...", "currency": "USD", "unit": "per 1M tokens",
     "prices": [{"models": ["gpt-4o", "gpt-4o-2024-08-06"], "effective": "2024-08-06",
                 "input": 2.5, "cachedInput": 1.25, "output": 10.0}, ...],
     "deployments": {"chat-prod": "gpt-4o-2024-08-06"}}

- `models` lists the model names an entry prices, with or without version, exactly as Azure
  reports them (`gpt-35-turbo`, `gpt-4o-2024-08-06`); OpenAI's `gpt-3.5` spelling is accepted
  for Azure's `gpt-35`. A name the table does not list is unpriced, never guessed.
- Several entries for one name with different `effective` dates: a day is priced with the
  latest entry effective on or before it, so history reprices correctly when rolled up again.
- Reasoning tokens are part of completion tokens and billed as output; cached tokens are part
  of prompt tokens and billed at `cachedInput` (at `input` when the model has none).
- `deployments` maps deployment names to models for calls whose model was not logged, a
  name in any case or padding (`CHAT-PROD`, ` chat-prod`) being the same deployment.
- A call whose model was not logged and whose deployment the map does not name is priced with
  the model Azure reported for that deployment on the same day (`DeploymentModels`), when it
  reported one: the map first, then what the day's answers say, else unpriced.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from pipeline.call.operations import deployment_from_url
from pipeline.kpi.files import DocumentError, read_document

BUNDLED = Path(__file__).resolve().parent / "prices.json"


class PriceTableError(ValueError):
    """The price table cannot be used; the message says where."""


Rates = tuple[float, float | None, float]  # input, cachedInput, output: USD per 1M tokens
Billed = tuple[int, int, int]  # uncached prompt, cached prompt and completion tokens


def billed(prompt: int, completion: int, cached: int | None) -> Billed:
    """A call's tokens as billed: cached tokens are part of the prompt tokens (never more)."""
    cached = min(cached or 0, prompt)
    return prompt - cached, cached, completion


def cost(priced: Iterable[tuple[Rates, Sequence[int]]]) -> float:
    """USD for billed token counts (uncached prompt, cached prompt, completion) at their
    rates: the one cost formula. Summed in the order given and divided by the unit once, so
    that a rollup's groups, summed in one order, give one figure to the last bit."""
    total = 0.0
    for (inp, cached_rate, out), (uncached, cached, completion) in priced:
        rate = inp if cached_rate is None else cached_rate
        total += uncached * inp + cached * rate + completion * out
    return total / 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    input: float
    cached_input: float | None
    output: float
    effective: date

    @property
    def rates(self) -> Rates:
        return self.input, self.cached_input, self.output

    def cost(self, prompt: int, completion: int, cached: int | None) -> float:
        """USD for one call's tokens."""
        return cost([(self.rates, billed(prompt, completion, cached))])


def normalise_model(name: str) -> str:
    n = name.strip().lower()
    return n.replace("gpt-3.5", "gpt-35")


def key_of(column: str, value: str) -> str:
    """What two spellings of one name share: a model's name as the price table compares it
    (so a budget and the rollup agree on what is one model), any other name casefolded."""
    return normalise_model(value.casefold()) if column == "Model" else value.casefold()


def deployment_key(name: str) -> str:
    """What spellings of one deployment share (case, padding): the rollup, the attribution
    map and budgets count `CHAT-PROD` and `chat-prod` as one deployment, so one price too."""
    return name.strip().casefold()


class PriceTable:
    """The parsed table: prices by normalised model name, oldest first, and deployments."""

    def __init__(self, doc: Any, origin: str = "price table") -> None:
        if not isinstance(doc, dict) or not isinstance(doc.get("prices"), list):
            raise PriceTableError(f'{origin}: expected an object with a "prices" list')
        self.currency = str(doc.get("currency") or "USD")
        self._by_name: dict[str, list[Price]] = {}
        for i, entry in enumerate(doc["prices"]):
            where = f"{origin}: prices[{i}]"
            models, price = _entry(entry, where)
            for name in models:
                self._add(name, price, where)
        deployments = doc.get("deployments") or {}
        if not isinstance(deployments, dict):
            raise PriceTableError(f'{origin}: "deployments" must map deployment names to models')
        self.deployments: dict[str, str] = {}
        for k, v in deployments.items():
            key = deployment_key(str(k))
            if self.deployments.setdefault(key, str(v)) != str(v):
                # Two spellings of one deployment mapped apart: which one a call is priced
                # with must not depend on how its client spelled the name.
                raise PriceTableError(
                    f'{origin}: "deployments" maps {k!r} and another spelling of it apart'
                )
        self.version = str(doc.get("version") or "") or _digest(doc)

    def _add(self, name: str, price: Price, where: str) -> None:
        prices = self._by_name.setdefault(normalise_model(name), [])
        if any(p.effective == price.effective for p in prices):
            raise PriceTableError(f"{where}: a second price for {name} effective {price.effective}")
        bisect.insort(prices, price, key=lambda p: p.effective)

    def model_names(self) -> frozenset[str]:
        """The normalised model names the table prices."""
        return frozenset(self._by_name)

    def price(
        self,
        model: str | None,
        deployment: str | None,
        day: date,
        learned: Mapping[str, str] | None = None,
    ) -> Price | None:
        """The price of a call's tokens on `day`, or None when the table has none. The one
        lookup of every cost (KPIs, hourly usage, FOCUS): a call with no model is priced as its
        deployment's model, the table's `deployments` map first (the operator's word), then
        `learned` (`DeploymentModels.chosen`: what Azure reported for it that day)."""
        name = model or (self.model_of(deployment, learned) if deployment else None)
        if not name:
            return None
        prices = self._by_name.get(normalise_model(name))
        if not prices:
            return None
        i = bisect.bisect_right([p.effective for p in prices], day)
        return prices[i - 1] if i else None

    def model_of(self, deployment: str, learned: Mapping[str, str] | None = None) -> str | None:
        """The model a deployment's calls with no model are priced as: the map's, else the
        one Azure reported for it that day (`learned`), else None."""
        key = deployment_key(deployment)
        name = self.deployments.get(key)
        if name is None and learned is not None:
            name = learned.get(key)
        return name

    @classmethod
    def from_bytes(cls, data: bytes, origin: str) -> PriceTable:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise PriceTableError(f"{origin}: not valid JSON ({exc})") from None
        return cls(doc, origin)


# (deployment, model) pairs a day's learning keeps. Azure reports the models of real
# deployments only (a made-up name is a 404, never learned), so a real day has a few dozen:
# past this many, only forged records (a sender on the hub) are at play, and the pairs kept
# are the lowest by a fixed hash, so which ones does not depend on the order rows are read in.
MAX_LEARNED_PAIRS = 10_000


# A call that may teach its deployment's model: its deployment as logged (compared with its
# URL's), and the (deployment key, normalised model) pair it counts for.
Learnable = tuple[str, tuple[str, str]]


def learnable(deployment: Any, model: Any, failed: bool) -> Learnable | None:
    """What a call may teach, or None: a failed call, or one without model or deployment."""
    if failed or not isinstance(model, str) or not isinstance(deployment, str):
        return None
    if not model.strip() or not deployment.strip():
        return None
    return deployment, (deployment_key(deployment), normalise_model(model))


class DeploymentModels:
    """What model each deployment answered with on one day, learned from its answered calls:
    a call's logged answer loses `model` past APIM's 8,192-byte cut (Azure sorts the keys:
    `choices` and an embeddings call's `data` come first), and then its deployment's model as
    Azure reported it on the same day's other calls prices it, rather than nothing.

    Only a deployment APIM routed by is learned: the row's `Deployment` is the one its `Url`
    path names (`/deployments/{name}/`). A deployment a client names (the body's `model` on
    v1, Responses and Foundry routes, a header) never is: a client could otherwise teach a
    deployment a cheaper model and lower everyone's cost on it. The audit row does not say
    whether an LLM log's `DeploymentName` was joined (its message records carry none), so
    routes without the path segment are not learned from either."""

    __slots__ = ("_counts", "_ranks", "_urls")

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._ranks: list[tuple[int, tuple[str, str]]] = []  # negated ranks: a max-heap
        self._urls: dict[str, str | None] = {}  # a day has few distinct URLs; bounded below

    def learn(self, deployment: Any, model: Any, url: Any, failed: bool) -> None:
        """One call of the day: learned when it was answered, its model logged and its
        deployment routed by its URL."""
        what = learnable(deployment, model, failed)
        if what is not None:
            self.count(what, url)

    def count(self, what: Learnable, url: Any) -> None:
        """A call `learnable` said may teach (the rollup asks once per group, not per row),
        learned when its URL routed by its deployment."""
        if not isinstance(url, str):
            return
        routed = self._urls.get(url, "")
        if routed == "":
            if len(self._urls) >= MAX_LEARNED_PAIRS:
                self._urls.clear()
            routed = self._urls[url] = deployment_from_url(url)
        if routed != what[0]:
            return  # the client's claim, or a backend URL APIM rewrote: not a sure routing
        pair = what[1]
        n = self._counts.get(pair)
        if n is not None:
            self._counts[pair] = n + 1
            return
        rank = int.from_bytes(hashlib.blake2b(orjson.dumps(pair), digest_size=8).digest(), "big")
        if len(self._ranks) < MAX_LEARNED_PAIRS:
            heapq.heappush(self._ranks, (-rank, pair))
        elif rank < -self._ranks[0][0]:
            # A pair dropped never comes back (every pair kept since ranks lower), so the
            # pairs kept, and their counts, are the same in any order.
            _, out = heapq.heapreplace(self._ranks, (-rank, pair))
            del self._counts[out]
        else:
            return
        self._counts[pair] = 1

    def chosen(self) -> dict[str, str]:
        """Each deployment's model (by `deployment_key`): the one it answered most calls
        with that day, the least name among equals (a deployment upgraded mid-day answered
        with two versions: one price for the day, the same in every run)."""
        best: dict[str, tuple[int, str]] = {}
        for (deployment, model), n in self._counts.items():
            mine = best.get(deployment)
            if mine is None or (-n, model) < (-mine[0], mine[1]):
                best[deployment] = (n, model)
        return {deployment: model for deployment, (_, model) in best.items()}


def _entry(entry: Any, where: str) -> tuple[list[str], Price]:
    """One entry of "prices": the model names it prices, and its price."""
    if not isinstance(entry, dict):
        raise PriceTableError(f"{where}: expected an object")
    models = entry.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise PriceTableError(f'{where}: "models" must be a non-empty list of names')
    try:
        effective = date.fromisoformat(str(entry.get("effective")))
    except ValueError:
        raise PriceTableError(f'{where}: "effective" must be a date (YYYY-MM-DD)') from None
    rates = []
    for key in ("input", "output"):
        value = entry.get(key)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise PriceTableError(f'{where}: "{key}" must be a price >= 0')
        rates.append(float(value))
    cached = entry.get("cachedInput")
    if cached is not None and (not isinstance(cached, int | float) or cached < 0):
        raise PriceTableError(f'{where}: "cachedInput" must be a price >= 0 or null')
    return models, Price(rates[0], None if cached is None else float(cached), rates[1], effective)


def _digest(doc: Any) -> str:
    """The version of a table that names none: a digest of its content."""
    return (
        "sha256:" + hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]
    )


def load(source: str, read_blob: Any = None) -> PriceTable:
    """The table named by PRICE_TABLE: "" (bundled), a file path, or blob:CONTAINER/NAME."""
    if not source:
        return PriceTable.from_bytes(BUNDLED.read_bytes(), str(BUNDLED.name))
    try:
        data = read_document("PRICE_TABLE", source, read_blob)
    except DocumentError as exc:
        raise PriceTableError(str(exc)) from None
    return PriceTable.from_bytes(data, source)

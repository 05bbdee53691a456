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
- `deployments` maps deployment names to models for calls whose model was not logged.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import orjson

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
        self.deployments = {str(k): str(v) for k, v in deployments.items()}
        self.version = str(doc.get("version") or "") or _digest(doc)

    def _add(self, name: str, price: Price, where: str) -> None:
        prices = self._by_name.setdefault(normalise_model(name), [])
        if any(p.effective == price.effective for p in prices):
            raise PriceTableError(f"{where}: a second price for {name} effective {price.effective}")
        bisect.insort(prices, price, key=lambda p: p.effective)

    def model_names(self) -> frozenset[str]:
        """The normalised model names the table prices."""
        return frozenset(self._by_name)

    def price(self, model: str | None, deployment: str | None, day: date) -> Price | None:
        """The price of a call's tokens on `day`, or None when the table has none."""
        name = model or (self.deployments.get(deployment) if deployment else None)
        if not name:
            return None
        prices = self._by_name.get(normalise_model(name))
        if not prices:
            return None
        i = bisect.bisect_right([p.effective for p in prices], day)
        return prices[i - 1] if i else None

    @classmethod
    def from_bytes(cls, data: bytes, origin: str) -> PriceTable:
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise PriceTableError(f"{origin}: not valid JSON ({exc})") from None
        return cls(doc, origin)


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

"""FOCUS 1.2 cost rows of one day, from its audit rows (pure; fed one row at a time).

One row per day × subscription × product × deployment × model × token type (input, cached
input, output), and × team and cost center when an attribution map exists. Costs use the one
cost formula of the KPIs (kpi/prices.py) at the list prices of the price table, so a day's
`BilledCost` sums to that day's KPI `CostUsd`. Failed calls are not billed (no row); tokens of
successful calls the price table cannot price are rows with cost 0 and `x_Priced` false, so
`ConsumedQuantity` still counts them. A call whose model was not logged is priced as the KPIs
price it: as its deployment's model (the price table's map, else the model Azure reported for
that deployment that day), known once the day is read (`rows`); its `SkuId` is that model.

Facts checked against the FOCUS 1.2 requirements: ChargeCategory `Usage`, ChargeFrequency
`Usage-Based`, ServiceCategory `AI and Machine Learning` with ServiceSubcategory `Generative
AI`, ChargePeriodStart inclusive and ChargePeriodEnd exclusive in UTC, ListCost =
ListUnitPrice × PricingQuantity, unit names in the spec's "1000 Tokens" form (here
`1000000 Tokens`), custom columns prefixed `x_`, null for what does not apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from pipeline.kpi.attribution import Attribution
from pipeline.kpi.prices import DeploymentModels, PriceTable, Rates, billed
from pipeline.kpi.rollup import call_tokens

TOKEN_TYPES = ("input", "cached input", "output")
PRICING_UNIT = "1000000 Tokens"
PER = 1_000_000
# (SubscriptionId, ProductId, Deployment, Model, team, cost center, rates or None)
Key = tuple[Any, ...]


def _s(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _n(value: Any) -> int | None:
    value = getattr(value, "value", value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class FocusDay:
    def __init__(self, day: date, prices: PriceTable, teams: Attribution | None) -> None:
        self.day = day
        self.prices = prices
        self.teams = teams if teams is not None and teams.rules else None
        self.sums: dict[Key, list[int]] = {}
        self._price_cache: dict[tuple[Any, Any], Rates | None] = {}
        self._learned = DeploymentModels()

    def add(self, row: Mapping[str, Any]) -> None:
        status = _n(row.get("Status"))
        if status is not None and status >= 400:
            return  # failed calls are not billed
        model, deployment = _s(row.get("Model")), _s(row.get("Deployment"))
        if model is not None:
            self._learned.learn(deployment, model, row.get("Url"), False)
        # The counts as the KPIs and chargeback read them (a call's parts adding up past what a
        # call can have are unknown there, so not billed here either; a retrieval has none).
        prompt, completion, _, cached, _ = call_tokens(row)
        if prompt is None or completion is None:
            return  # no quantity to report
        cache_key = (model, deployment)
        if cache_key not in self._price_cache:
            price = self.prices.price(model, deployment, self.day)
            self._price_cache[cache_key] = None if price is None else price.rates
        team, center = self.teams.team_of(row) if self.teams else (None, None)
        key = (
            _s(row.get("SubscriptionId")),
            _s(row.get("ProductId")),
            deployment,
            model,
            team,
            center,
            self._price_cache[cache_key],
        )
        sums = self.sums.setdefault(key, [0, 0, 0])
        for i, n in enumerate(billed(prompt, completion, cached)):
            sums[i] += n

    def rows(self) -> list[dict[str, Any]]:
        start = datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC)
        month = start.replace(day=1)
        common = {
            "BillingCurrency": "USD",
            "BillingPeriodStart": month,
            "BillingPeriodEnd": (month + timedelta(days=32)).replace(day=1),
            "ChargePeriodStart": start,
            "ChargePeriodEnd": start + timedelta(days=1),
            "ChargeCategory": "Usage",
            "ChargeFrequency": "Usage-Based",
            "ConsumedUnit": "Tokens",
            "PricingUnit": PRICING_UNIT,
            "PricingCategory": "Standard",
            "ServiceName": "Azure OpenAI",
            "ServiceCategory": "AI and Machine Learning",
            "ServiceSubcategory": "Generative AI",
            "ProviderName": "Microsoft",
            "PublisherName": "Microsoft",
            "InvoiceIssuerName": "Microsoft",
            "ResourceType": "Deployment",
        }
        chosen = self._learned.chosen()
        out = []
        for key in sorted(self.sums, key=_order):
            rates, sku = key[-1], key[3]
            if sku is None and key[2] is not None:
                # No model logged: its deployment's model, known now that the day is read.
                model = self.prices.model_of(key[2], chosen)
                price = self.prices.price(model, None, self.day) if model else None
                if price is not None:
                    rates, sku = price.rates, model
            for token_type, quantity, rate in _by_type(rates, self.sums[key]):
                if quantity:
                    out.append({**common, **self._row(key, token_type, quantity, rate, sku)})
        return out

    def _row(
        self, key: Key, token_type: str, quantity: int, rate: float | None, sku: str | None
    ) -> dict[str, Any]:
        subscription, product, deployment, model, team, center, _ = key
        cost = quantity * rate / PER if rate is not None else 0.0
        tags: dict[str, str] = {}
        if self.teams is not None:
            tags["team"] = team
            if center is not None:
                tags["costCenter"] = center
        for name, value in (
            ("subscription", subscription),
            ("product", product),
            ("model", model),
            ("deployment", deployment),
        ):
            if value is not None:
                tags[name] = value
        tags["tokenType"] = token_type
        return {
            "BilledCost": cost,
            "EffectiveCost": cost,
            "ListCost": cost,
            "ContractedCost": cost,
            "ChargeDescription": f"{model or 'unknown model'} {token_type} tokens"
            + (f" on {deployment}" if deployment else ""),
            "ConsumedQuantity": float(quantity),
            "PricingQuantity": quantity / PER,
            "ListUnitPrice": rate,
            "ContractedUnitPrice": rate,
            "ResourceId": deployment,
            "ResourceName": deployment,
            "SkuId": sku,
            "SkuPriceId": None if rate is None else f"{sku}|{token_type}|{rate}",
            "Tags": orjson.dumps(tags, option=orjson.OPT_SORT_KEYS).decode(),
            "x_TokenType": token_type,
            "x_Priced": rate is not None,
        }


def _by_type(rates: Rates | None, sums: list[int]) -> list[tuple[str, int, float | None]]:
    if rates is None:
        return [(t, n, None) for t, n in zip(TOKEN_TYPES, sums, strict=True)]
    inp, cached, out = rates
    return [
        ("input", sums[0], inp),
        ("cached input", sums[1], inp if cached is None else cached),
        ("output", sums[2], out),
    ]


def _order(key: Key) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in key)

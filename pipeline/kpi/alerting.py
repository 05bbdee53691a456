"""The budget check (the `budgets` timer and `python -m pipeline budgets check`): roll up
what the periods need, evaluate every budget, record each alert once, deliver it.

1. Roll up: today always (its hours so far), and the days of the budgets' periods before
   today that were never rolled up (no KpiDaily `_total`).
2. Read the hourly rows of the periods once; spend per budget up to the last full hour.
3. Decide (kpi/budgets.py) and record each decision create-only (store/alerts.py): a
   decision already recorded is not decided again, whoever checks, however often.
4. Deliver the new alerts, then any earlier one whose delivery failed: a POST to each
   ALERT_WEBHOOK URL (with retries and backoff); the row says which URLs have it.
"""

from __future__ import annotations

import hashlib
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from pipeline import __version__
from pipeline.kpi import budgets, daily, packed
from pipeline.kpi.rollup import LEVEL_RANGES
from pipeline.settings import Config
from pipeline.store.account import Store
from pipeline.store.alerts import AlertStore
from pipeline.store.kpis import KpiStore

log = logging.getLogger("pipeline.kpi.alerting")

POST_ATTEMPTS = 3
POST_TIMEOUT_S = 10.0
POST_BACKOFF_S = 1.0


@dataclass(slots=True)
class CheckResult:
    spends: list[budgets.Spend] = field(default_factory=list)
    decided: list[budgets.Alert] = field(default_factory=list)  # new this check
    delivered: list[str] = field(default_factory=list)  # alert ids delivered this check
    failed: dict[str, str] = field(default_factory=dict)  # alert id → last error


def spends_at(cfg: Config, store: Store, at: datetime, *, roll: bool = True) -> list[budgets.Spend]:
    """Every budget's spend at `at`, after rolling up what its period needs (`roll`)."""
    found = budgets.load(cfg.budgets, read_blob=store.read_blob)
    start = budgets.earliest_start(found, at)
    if start is None:
        return []
    today = at.astimezone(UTC).date()
    if roll:
        daily.roll_up(days_to_roll(store, start.date(), today, at), cfg, store)
    kpis = KpiStore(store)

    def rows() -> Iterator[Any]:
        # Whole days before today, then today's hours: a period's spend in few rows.
        yield from packed.unpack(
            kpis.usage_rows(f"{start:%Y-%m-%d}", f"{today:%Y-%m-%d}", LEVEL_RANGES["day"])
        )
        yield from kpis.usage_rows(
            f"{today:%Y-%m-%d}", f"{today:%Y-%m-%d}", LEVEL_RANGES["hour"], budgets.COLUMNS
        )

    return store.call(lambda: budgets.spend(found, rows(), at))


def days_to_roll(store: Store, first: date, today: date, at: datetime) -> list[date]:
    """Today; the day of the last full hour (yesterday, in the first hour of a day: its last
    hour is over only now); and the days from `first` that were never rolled up."""
    rolled = KpiStore(store).rolled_days(f"{first:%Y-%m-%d}", f"{today:%Y-%m-%d}")
    days = [first + timedelta(days=i) for i in range((today - first).days)]
    last_hour = (budgets.last_full_hour(at) - timedelta(hours=1)).date()
    out = [d for d in days if f"{d:%Y-%m-%d}" not in rolled or d == last_hour]
    return [*out, today]


def check(cfg: Config, store: Store, at: datetime, now: datetime | None = None) -> CheckResult:
    """Evaluate every budget at `at` and deliver what is due (`now`: the wall clock, for
    the delivery leases; `at` may be in the past, to check a moment again)."""
    now = now or datetime.now(UTC)
    result = CheckResult(spends_at(cfg, store, at))
    alerts = AlertStore(store)
    tried: set[tuple[str, str]] = set()  # delivered or tried in this check: not again now
    for s in result.spends:
        for alert in budgets.decide(s, at):
            payload = alert.payload()
            fields = {"Payload": orjson.dumps(payload).decode(), "Metric": alert.metric}
            if alerts.decide(alert.budget, alert.row_key, fields, now):
                result.decided.append(alert)
                # One line per decision, for an Azure Monitor log alert rule (docs/chargeback.md).
                log.warning("budget-alert %s", fields["Payload"])
                _deliver(cfg, alerts, alerts.get(alert.budget, alert.row_key), now, result)
                tried.add((alert.budget, alert.row_key))
    for entity in alerts.undelivered():
        if (entity["PartitionKey"], entity["RowKey"]) in tried:
            continue
        claimed = alerts.claim(entity, now)
        if claimed is not None:
            _deliver(cfg, alerts, claimed, now, result)
    return result


def _deliver(
    cfg: Config, alerts: AlertStore, entity: Any, now: datetime, result: CheckResult
) -> None:
    payload = orjson.loads(entity["Payload"])
    served = [d for d in str(entity.get("DeliveredTo") or "").split(",") if d]
    error = None
    for url in webhook_urls(cfg):
        digest = url_digest(url)
        if digest in served:
            continue
        failure = post_json(url, payload)
        if failure is None:
            served.append(digest)
        else:
            error = failure
    alerts.finish(entity, now, served, error)
    if error is None:
        result.delivered.append(payload["id"])
        log.info("budget alert %s delivered", payload["id"])
    else:
        result.failed[payload["id"]] = error
        log.error("budget alert %s not delivered: %s", payload["id"], error)


def webhook_urls(cfg: Config) -> list[str]:
    return [u.strip() for u in cfg.alert_webhook.split(",") if u.strip()]


def url_digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def post_json(url: str, payload: dict[str, Any]) -> str | None:
    """POST `payload` as JSON; None when a 2xx came back, else why not (the URL, a secret,
    never in it). Retried with backoff on errors and 429/5xx."""
    body = orjson.dumps(payload)
    why = "not tried"
    for attempt in range(POST_ATTEMPTS):
        if attempt:
            time.sleep(POST_BACKOFF_S * 2 ** (attempt - 1))
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"apim-aoai-audit/{__version__}",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=POST_TIMEOUT_S) as response:
                if 200 <= response.status < 300:
                    return None
                why = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                return why  # the receiver refuses it: retrying now will not help
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            why = f"{type(reason).__name__}: {str(reason)[:200]}"
    return why

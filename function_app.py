"""Azure Functions entry points (Python v2 model). Bindings only: the work is in `pipeline`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import List  # noqa: UP035 - the worker rejects list[...] in binding annotations

import azure.functions as func

from pipeline import runtime
from pipeline.compliance.seal import seal_days
from pipeline.export.targets import export_target
from pipeline.ingest.batch import run_trigger_batch
from pipeline.kpi import alerting, daily
from pipeline.kpi.rollup import days_to_roll
from pipeline.sources import eventhub

app = func.FunctionApp()
log = logging.getLogger("pipeline.function")


@app.function_name(name="ingest")
@app.retry(
    strategy="exponential_backoff",
    max_retry_count="5",
    minimum_interval="00:00:05",
    maximum_interval="00:05:00",
)
@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%EVENTHUB_NAME%",
    connection="EventHubConnection",
    consumer_group="%EVENTHUB_CONSUMER_GROUP%",
    cardinality=func.Cardinality.MANY,
    data_type=func.DataType.BINARY,
)
def ingest(events: List[func.EventHubEvent], context: func.Context) -> None:  # noqa: UP006
    cfg, store = runtime.current()
    retry = getattr(context, "retry_context", None)
    run_trigger_batch(
        eventhub.from_trigger(events),
        cfg,
        store,
        attempt=getattr(retry, "retry_count", 0) or 0,
        max_retries=getattr(retry, "max_retry_count", 0) or 0,
    )


@app.function_name(name="rollup")
@app.retry(strategy="fixed_delay", max_retry_count="3", delay_interval="00:05:00")
@app.timer_trigger(
    arg_name="timer", schedule="%KPI_SCHEDULE%", run_on_startup=False, use_monitor=True
)
def rollup(timer: func.TimerRequest) -> None:
    cfg, store = runtime.current()
    days = days_to_roll(datetime.now(UTC).date(), cfg.kpi_reroll_days)
    rolled = daily.roll_up(days, cfg, store)
    for result in rolled:
        log.info("kpi %s: %d calls, %.4f USD", result.day, result.calls, result.cost_usd)
    for sealed in seal_days(days, store):
        if sealed.manifest:
            log.info("archive %s sealed: %d blobs in %s", sealed.day, sealed.blobs, sealed.manifest)
    target = export_target(cfg, store)
    if target is not None:
        # Imported only when exporting: pyarrow stays off the cold start of every function.
        from pipeline.export.days import export_days

        what = ("calls", "kpi", "focus")
        for day in export_days([r.day for r in rolled], cfg, store, target, what):
            log.info("export %s: written %s", day.day, ",".join(day.written) or "nothing")


@app.function_name(name="budgets")
@app.timer_trigger(
    arg_name="timer", schedule="%BUDGET_SCHEDULE%", run_on_startup=False, use_monitor=True
)
def budget_check(timer: func.TimerRequest) -> None:
    cfg, store = runtime.current()
    if not cfg.budgets:
        return
    result = alerting.check(cfg, store, datetime.now(UTC))
    log.info(
        "budgets: %d checked, %d new alerts, %d delivered, %d not delivered",
        len(result.spends),
        len(result.decided),
        len(result.delivered),
        len(result.failed),
    )

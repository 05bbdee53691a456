"""Azure Functions entry points (Python v2 model). Bindings only: the work is in `pipeline`."""

from __future__ import annotations

import logging
from typing import List  # noqa: UP035 - the worker rejects list[...] in binding annotations

import azure.functions as func

from pipeline import eventhub, runtime
from pipeline.ingest import process_batch

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
def ingest(events: List[func.EventHubEvent]) -> None:  # noqa: UP006
    cfg, store = runtime.current()
    result = process_batch(eventhub.from_trigger(events), cfg, store)
    log.info(
        "batch stored: %d events, %d calls, %d created, %d updated, %d unchanged, %d dead letters",
        result.events,
        result.calls,
        result.created,
        result.updated,
        result.unchanged,
        result.dead_letters,
    )

"""Publish events to an Event Hub (`replay --to-eventhub`, `send`): a deployed function then
reprocesses them at scale.

Batches are filled up to the hub's size limit (`EventDataBatch` knows it) and keep each
event's partition key, so events of one key stay in order on one partition. Events rebuilt
from our archive carry the `aoai-audit-archived` property, so the function points at the
existing raw record instead of archiving it again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.model import EventIn
from pipeline.sources.eventhub import ARCHIVED_PROPERTY, archived_property


class Producer(Protocol):
    def create_batch(self, *, partition_key: str | None = None) -> Any: ...

    def send_batch(self, batch: Any) -> None: ...


@dataclass(slots=True)
class PublishStats:
    events: int = 0
    batches: int = 0
    bytes: int = 0


def event_data(event: EventIn) -> Any:
    from azure.eventhub import EventData

    data = EventData(event.body)
    if event.archived is not None:
        data.properties = {ARCHIVED_PROPERTY: archived_property(event.archived)}
    return data


def publish(events: Iterable[EventIn], producer: Producer) -> PublishStats:
    """Send events in full batches, one open batch per partition key (order kept per key)."""
    stats = PublishStats()
    open_batches: dict[str | None, Any] = {}

    def send(key: str | None) -> None:
        batch = open_batches.pop(key)
        producer.send_batch(batch)
        stats.batches += 1
        stats.bytes += batch.size_in_bytes

    for event in events:
        key = event.partition_key
        data = event_data(event)
        batch = open_batches.get(key)
        if batch is None:
            batch = open_batches[key] = producer.create_batch(partition_key=key)
        try:
            batch.add(data)
        except ValueError:  # batch full
            if len(batch) == 0:
                raise ValueError(
                    f"event from {event.origin} ({len(event.body)} bytes) exceeds the hub's "
                    "maximum event size"
                ) from None
            send(key)
            batch = open_batches[key] = producer.create_batch(partition_key=key)
            batch.add(data)
        stats.events += 1
    for key in list(open_batches):
        if len(open_batches[key]):
            send(key)
    return stats


def producer_for(hub: str, connection: str | None, namespace: str | None) -> Any:
    """An EventHubProducerClient from a connection string, or a namespace with
    DefaultAzureCredential (needs the Azure Event Hubs Data Sender role)."""
    from azure.eventhub import EventHubProducerClient

    if connection:
        return EventHubProducerClient.from_connection_string(connection, eventhub_name=hub)
    if namespace:
        from azure.identity import DefaultAzureCredential

        return EventHubProducerClient(namespace, hub, credential=DefaultAzureCredential())
    raise ValueError("--to-eventhub needs --eventhub-connection or --eventhub-namespace")

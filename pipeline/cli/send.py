"""`python -m pipeline send`, and publishing events to an Event Hub (`send`, `replay
--to-eventhub`): a deployed function then reprocesses them at scale.

Batches are filled up to the hub's size limit (`EventDataBatch` knows it) and keep each
event's partition key, so events of one key stay in order on one partition. Events rebuilt
from our archive carry the `aoai-audit-archived` property, so the function points at the
existing raw record instead of archiving it again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol

from pipeline.cli import options
from pipeline.model import EventIn
from pipeline.sources import files
from pipeline.sources.eventhub import ARCHIVED_PROPERTY, archived_property
from pipeline.sources.inputs import Filters, Input, InputProblem


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "send", help="publish recorded APIM events to an Event Hub (e.g. the emulator)"
    )
    p.add_argument("paths", nargs="+", help=".json, .jsonl or Capture .avro files, or folders")
    p.add_argument("--hub", help="Event Hub name (default: EVENTHUB_NAME)")
    p.add_argument("--connection", help="connection string (default: EventHubConnection)")
    p.add_argument("--namespace", help="FQDN, with DefaultAzureCredential instead of a key")
    p.add_argument("--partition-key", help="send every event with this partition key")
    p.add_argument("--settings", metavar="local.settings.json", help="read Values from this file")
    p.set_defaults(func=cmd_send)


def cmd_send(args: argparse.Namespace) -> int:
    env = options.env_with_local_settings(args.settings)
    hub = args.hub or env.get("EVENTHUB_NAME") or "apim-logs"
    connection = args.connection or env.get("EventHubConnection") or None
    namespace = args.namespace or env.get("EventHubConnection__fullyQualifiedNamespace") or None
    items = list(files.local_inputs(args.paths, Filters()))
    problems = [i for i in items if isinstance(i, InputProblem)]
    for p in problems:
        print(f"error: {p.where}: {p.message}", file=sys.stderr)
    inputs = [i for i in items if isinstance(i, Input)]
    producer = producer_for(hub, connection, namespace)
    with producer:
        stats = publish(_keyed(inputs, args.partition_key), producer)
    print(f"sent {stats.events} events in {stats.batches} batches ({stats.bytes:,} bytes) to {hub}")
    return 1 if problems else 0


def _keyed(inputs: list[Input], partition_key: str | None) -> Iterator[EventIn]:
    """The events of `inputs`, each with `partition_key` when given."""
    for item in inputs:
        for event in item.events(item.fetch()):
            yield replace(event, partition_key=partition_key) if partition_key else event


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

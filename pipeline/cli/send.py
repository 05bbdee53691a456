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
from pipeline.cli.runner import MAX_PROBLEMS
from pipeline.model import EventIn
from pipeline.sources import files
from pipeline.sources.eventhub import ARCHIVED_PROPERTY, archived_property
from pipeline.sources.inputs import Filters, Input, InputProblem, Report, fail_fast


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
    report = Problems()
    for p in items:
        if isinstance(p, InputProblem):
            report(f"{p.where}: {p.message}")
    inputs = [i for i in items if isinstance(i, Input)]
    producer = producer_for(hub, connection, namespace)
    with producer:
        stats = publish(_keyed(inputs, args.partition_key, report), producer, report)
    report.close()
    print(f"sent {stats.events} events in {stats.batches} batches ({stats.bytes:,} bytes) to {hub}")
    return 1 if report.count else 0


class Problems:
    """The `Report` of a publishing run: the first MAX_PROBLEMS printed, the rest counted (a
    file of a million bad rows is a hundred lines of them, not a million)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, message: str) -> None:
        self.count += 1
        if self.count <= MAX_PROBLEMS:
            print(f"error: {message}", file=sys.stderr)

    def close(self) -> None:
        if self.count > MAX_PROBLEMS:
            print(f"error: and {self.count - MAX_PROBLEMS} more problems", file=sys.stderr)


def _keyed(inputs: list[Input], partition_key: str | None, report: Report) -> Iterator[EventIn]:
    """The events of `inputs`, each with `partition_key` when given. A bad row or line is
    reported and the rest read (a damaged input no longer stops the run)."""
    for item in inputs:
        for event in item.events(item.fetch(), report=report):
            yield replace(event, partition_key=partition_key) if partition_key else event


class Producer(Protocol):
    def create_batch(self, *, partition_key: str | None = None) -> Any: ...

    def send_batch(self, batch: Any) -> None: ...


@dataclass(slots=True)
class PublishStats:
    events: int = 0
    batches: int = 0
    bytes: int = 0
    too_large: int = 0  # events larger than the hub takes: reported, not sent


# Event Hubs' partition keys: at most 128 characters (a longer key is cut, and reported).
MAX_PARTITION_KEY = 128
# Batches open at once, one per partition key: past it the oldest is sent, so memory follows
# this number, not the keys of the input (a policy keyed by request id gives each its own).
MAX_OPEN_BATCHES = 64


def event_data(event: EventIn) -> Any:
    from azure.eventhub import EventData

    data = EventData(event.body)
    if event.archived is not None:
        data.properties = {ARCHIVED_PROPERTY: archived_property(event.archived)}
    return data


def publish(
    events: Iterable[EventIn], producer: Producer, report: Report = fail_fast
) -> PublishStats:
    """Send events in full batches, one open batch per partition key (order kept per key).
    An event larger than the hub takes is reported and skipped; what is in the open batches
    is sent whatever ends the run."""
    stats = PublishStats()
    open_batches: dict[str | None, Any] = {}

    def send(key: str | None) -> None:
        batch = open_batches.pop(key)
        if len(batch):
            producer.send_batch(batch)
            stats.batches += 1
            stats.bytes += batch.size_in_bytes

    def batch_for(key: str | None) -> Any:
        if key not in open_batches and len(open_batches) >= MAX_OPEN_BATCHES:
            send(next(iter(open_batches)))
        if key not in open_batches:
            open_batches[key] = producer.create_batch(partition_key=key)
        return open_batches[key]

    try:
        for event in events:
            key = event.partition_key
            if key is not None and len(key) > MAX_PARTITION_KEY:
                report(
                    f"{event.origin}: partition key of {len(key):,} characters: "
                    f"cut to {MAX_PARTITION_KEY}"
                )
                key = key[:MAX_PARTITION_KEY]
            data = event_data(event)
            batch = batch_for(key)
            if not _added(batch, data):
                if len(batch):
                    send(key)  # full: the event opens the next one
                    batch = batch_for(key)
                if not _added(batch, data):
                    stats.too_large += 1
                    report(
                        f"{event.origin}: event of {len(event.body):,} bytes is larger than "
                        "the hub takes: not sent"
                    )
                    continue
            stats.events += 1
    finally:
        for key in list(open_batches):
            send(key)
    return stats


def _added(batch: Any, data: Any) -> bool:
    try:
        batch.add(data)
    except ValueError:  # the batch is full, or the event alone is over the hub's limit
        return False
    return True


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

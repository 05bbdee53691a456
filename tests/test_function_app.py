"""The Function App as the host sees it: indexed bindings, and batches shaped like the host's."""

from __future__ import annotations

import gzip
import inspect
import json
import types

import orjson
import pytest
from azure.functions import meta
from azure.functions.eventhub import EventHubTriggerConverter

import function_app
from pipeline import runtime
from tests.conftest import settings_env
from tests.fixtures import apim

_INDEXED: dict[str, object] = {}


def _functions() -> dict[str, object]:
    # get_functions() indexes the app and may only run once per process, as in the worker.
    if not _INDEXED:
        _INDEXED.update({f.get_function_name(): f for f in function_app.app.get_functions()})
    return _INDEXED


def test_eventhub_trigger_binding() -> None:
    fn = _functions()["ingest"]
    doc = json.loads(fn.get_function_json())
    (binding,) = doc["bindings"]
    assert binding["type"] == "eventHubTrigger"
    assert binding["direction"] == "IN"
    # The library writes enum names in upper case; the host reads them case-insensitively.
    assert binding["cardinality"].lower() == "many"
    assert binding["dataType"].lower() == "binary"  # raw bytes: no re-serialised JSON
    assert binding["eventHubName"] == "%EVENTHUB_NAME%"
    assert binding["consumerGroup"] == "%EVENTHUB_CONSUMER_GROUP%"
    # A prefix: the host also reads EventHubConnection__fullyQualifiedNamespace (identity).
    assert binding["connection"] == "EventHubConnection"
    # get_functions() does not check that the binding name is the parameter's name.
    params = inspect.signature(fn.get_user_function()).parameters
    assert list(params) == [binding["name"], "context"]  # context: the retry count
    retry = fn.get_setting("retry_policy")
    assert retry is not None
    assert retry.strategy == "exponential_backoff"
    assert int(retry.max_retry_count) >= 3


def _host_batch(bodies: list[bytes], partition: str, first_seq: int) -> list[object]:
    """Decode a batch through the library's own converter, as the worker does (platform.md)."""
    sys_props = [
        {
            "SequenceNumber": first_seq + i,
            "Offset": str(4096 * (first_seq + i)),
            "PartitionKey": None,
            "EnqueuedTimeUtc": "2025-03-04T10:15:07.123Z",
        }
        for i in range(len(bodies))
    ]
    trigger_metadata = {
        "SystemPropertiesArray": meta.Datum(json.dumps(sys_props), "json"),
        "PartitionContext": meta.Datum(json.dumps({"PartitionId": partition}), "json"),
    }
    return EventHubTriggerConverter.decode(
        meta.Datum(types.SimpleNamespace(bytes=bodies), "collection_bytes"),
        trigger_metadata=trigger_metadata,
    )


@pytest.fixture
def app_env(cfg, store, monkeypatch):
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    runtime.reset()
    yield cfg
    runtime.reset()


def test_user_function_stores_a_host_batch(app_env, store) -> None:
    good = apim.envelope(apim.gateway("11111111-1111-4111-8111-111111111111"))
    garbage = b"\x00\x01 not an event"
    events = _host_batch([good, garbage], partition="3", first_seq=70)
    assert events[1].sequence_number == 71

    _functions()["ingest"].get_user_function()(events, None)

    (row,) = store.find_rows("11111111-1111-4111-8111-111111111111")
    assert row["Status"] == 200 and row["Model"] == "gpt-4o-2024-08-06"
    (dead,) = list(store.deadletters.list_blobs(include=["metadata"]))
    assert dead.metadata["partition"] == "3"
    assert dead.metadata["sequencenumber"] == "71"
    assert dead.metadata["enqueuedtime"] == "2025-03-04T10:15:07.123000Z"
    assert "not valid JSON" in dead.metadata["reason"]
    assert store.deadletters.download_blob(dead.name).readall() == garbage
    # The raw record names where it came from: partition and sequence number.
    member = orjson.loads(
        gzip.decompress(
            store.read_range(store.archive, row["RawBlob"], row["RawOffset"], row["RawLength"])
        )
    )
    assert member["event"]["partition"] == "3" and member["event"]["sequence"] == 70

"""Replay: Event Hubs Capture files and containers, our own archive, resume, dry-run,
progress, and re-publishing to an Event Hub."""

from __future__ import annotations

import io
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.eventhub import EventDataBatch

from pipeline import archive, inputs, publish
from pipeline.cli import main
from pipeline.eventhub import ARCHIVED_PROPERTY, from_trigger
from pipeline.ingest import process_batch
from pipeline.model import EventIn
from pipeline.replay import Progress, ResumeState, replay
from pipeline.settings import Config
from pipeline.store import Store
from tests.conftest import settings_env
from tests.fixtures import apim, capture, sources
from tests.test_ingest import all_rows, blobs, comparable

T0 = datetime(2025, 11, 4, 10, 0, tzinfo=UTC)


def mixed_bodies(tag: str, n: int) -> list[bytes]:
    """Envelopes mixing GatewayLogs, GatewayLlmLogs and another category, and a policy message."""
    out = []
    for i in range(n):
        cid = apim.new_id(f"cap-{tag}-{i}")
        when = f"2025-11-04T10:{i:02d}:00.0000000Z"
        out.append(
            apim.envelope(
                apim.gateway(cid, time=when, response=None),
                sources.llm_header(cid, time=when),
                apim.websocket_record(),
            )
        )
    out.append(
        sources.policy_message(
            apim.new_id(f"cap-{tag}-policy"),
            time="2025-11-04T10:30:00.0000000Z",
            request={"messages": [{"role": "user", "content": "hi"}]},
            response=apim.chat_response("hello"),
        )
    )
    return out


def upload_capture(store: Store, container: str) -> dict[str, int]:
    """Capture blobs for 2 partitions x 3 hours; returns calls per blob."""
    client = store.blobs.get_container_client(container)
    client.create_container()
    calls = {}
    for partition in ("0", "1"):
        for hour in range(3):
            t = T0 + timedelta(hours=hour, minutes=5 * int(partition))
            bodies = mixed_bodies(f"{partition}-{hour}", 4)
            name = capture.capture_path(partition, t)
            codec = "deflate" if hour % 2 == 0 else "null"
            client.upload_blob(
                name,
                capture.capture_bytes(
                    bodies,
                    t,
                    first_sequence=100 * hour,
                    codec=codec,
                    partition_key=f"key-{partition}",
                ),
            )
            calls[name] = 5
    client.upload_blob("contoso-ns/apim-logs/0/2025/11/04/10/59/00.json", b"not a capture file")
    return calls


def test_capture_files_both_codecs_and_corrupt_file(
    cfg: Config, store: Store, tmp_path: Path
) -> None:
    for codec in ("null", "deflate"):
        path = tmp_path / capture.capture_path(
            "3", T0 + timedelta(minutes=1 if codec == "null" else 2)
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(
            capture.capture_bytes(mixed_bodies(codec, 3), T0, first_sequence=70, codec=codec)
        )
    bad = tmp_path / capture.capture_path("3", T0 + timedelta(minutes=9))
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"Obj\x01" + b"\x00" * 40)
    items = list(inputs.local_inputs([tmp_path], inputs.Filters()))
    said: list[str] = []
    summary = replay(items, cfg, store, say=said.append)
    assert summary.totals.calls == 8 and summary.totals.dead_letters == 0
    assert summary.totals.skipped == {"WebSocketConnectionLogs": 6}
    assert len(summary.problems) == 1 and "Capture (Avro)" in summary.problems[0].message
    assert any(str(bad) in line for line in said)
    row = all_rows(store)[apim.new_id("cap-null-0")]
    assert row["Sources"] == "gateway,llm" and row["TokensSource"] == "llm-log"
    member = archive.open_member(
        store.read_range(store.archive, row["RawBlob"], row["RawOffset"], row["RawLength"])
    )
    assert member["event"]["partition"] == "3" and member["event"]["sequence"] == 70
    assert member["event"]["enqueued"] == "2025-11-04T10:00:00Z"


def test_capture_container_filtered_by_time_and_partition_and_idempotent(
    cfg: Config, store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    upload_capture(store, "capture")
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    state = str(tmp_path / "state.json")
    code = main(
        [
            "replay",
            "--from-blob",
            "capture/contoso-ns/apim-logs",
            "--partition",
            "1",
            "--since",
            "2025-11-04T11:00",
            "--until",
            "2025-11-04T13:00",
            "--state",
            state,
            "--quiet",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    # partition 1, hours 11 and 12: 2 blobs x (4 calls + 1 policy call)
    assert "10 calls: 10 rows created" in out
    assert "KPIs rolled up again for 2025-11-04" in out
    assert main(["replay", "--from-blob", "capture", "--state", state, "--quiet"]) == 0
    assert "30 calls: 20 rows created, 0 updated, 10 unchanged" in capsys.readouterr().out
    rows_before = {k: comparable(v) for k, v in all_rows(store).items()}
    blobs_before = blobs(store)
    assert main(["replay", "--from-blob", "capture", "--state", state, "--quiet"]) == 0
    assert "0 rows created, 0 updated, 30 unchanged" in capsys.readouterr().out
    assert {k: comparable(v) for k, v in all_rows(store).items()} == rows_before
    assert blobs(store) == blobs_before


def test_replay_from_our_archive_after_a_capture_policy_change(cfg: Config, store: Store) -> None:
    recs = [
        apim.gateway(
            apim.new_id(f"arch-{i}"),
            request=apim.chat_request(("user", f"Question {i} from bob@contoso.com")),
        )
        for i in range(5)
    ]
    process_batch(
        [EventIn(apim.envelope(*recs[:3])), EventIn(apim.envelope(*recs[3:]))], cfg, store
    )
    before = all_rows(store)
    assert before[recs[0]["correlationId"]]["PromptPreview"] == "Question 0 from [EMAIL]"
    archive_before = blobs(store)

    hashed = replace(cfg, prompt_capture="hashed", prompt_hash_key="k")
    items = list(inputs.blob_inputs(store.archive, "", inputs.Filters(), "archive"))
    assert len(items) == 1  # both events went in one batch, so one archive blob
    summary = replay(items, hashed, Store(hashed))
    assert (
        summary.totals.calls == 5
        and summary.totals.updated == 5
        and summary.totals.new_archive_blobs == 0
    )
    after = all_rows(store)
    for rec in recs:
        row, old = after[rec["correlationId"]], before[rec["correlationId"]]
        assert row["PromptPreview"].startswith("hmac-sha256:")
        assert (row["RawBlob"], row["RawOffset"], row["RawSha256"]) == (
            old["RawBlob"],
            old["RawOffset"],
            old["RawSha256"],
        )
        assert row["PromptTokens"] == old["PromptTokens"] and row["Status"] == old["Status"]
    assert blobs(store) == archive_before  # no second raw blob, nothing overwritten
    again = replay(
        list(inputs.blob_inputs(store.archive, "", inputs.Filters(), "archive")),
        hashed,
        Store(hashed),
    )
    assert again.totals.unchanged == 5 and again.totals.updated == 0


def test_resume_after_an_interruption(cfg: Config, store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    for i in range(4):
        (folder / f"in-{i}.jsonl").write_bytes(
            b"\n".join(apim.envelope(apim.gateway(apim.new_id(f"res-{i}-{j}"))) for j in range(5))
            + b"\n"
        )
    stop = threading.Event()
    state = ResumeState(tmp_path / "state.json", resume=False)
    items = list(inputs.local_inputs([folder], inputs.Filters()))
    original_events = items[1].events

    def stopping(data: Any) -> Any:  # Ctrl-C while the second file is read
        for n, ev in enumerate(original_events(data)):
            if n == 2:
                stop.set()
            yield ev

    items[1] = replace(items[1], events=stopping)
    first = replay(items, cfg, store, batch_size=2, state=state, stop=stop)
    assert first.interrupted and not first.ok
    assert len(state.done) == 1  # only the first file is complete
    stored = len(all_rows(store))
    assert 5 < stored < 20

    resumed = ResumeState(tmp_path / "state.json", resume=True)
    second = replay(
        list(inputs.local_inputs([folder], inputs.Filters())), cfg, store, state=resumed
    )
    assert second.ok and second.skipped_inputs == 1 and second.inputs == 3
    assert len(all_rows(store)) == 20
    assert len(resumed.done) == 4


def test_dry_run_writes_nothing(cfg: Config, store: Store, tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_bytes(
        apim.envelope(apim.gateway(apim.new_id("dry-1")), apim.gateway(apim.new_id("dry-2")))
        + b"\nnot json\n"
    )
    items = list(inputs.local_inputs([f], inputs.Filters()))
    summary = replay(items, cfg, store, dry_run=True)
    assert (
        summary.totals.created,
        summary.totals.dead_letters,
        summary.totals.new_archive_blobs,
    ) == (2, 1, 1)
    assert not all_rows(store) and not blobs(store) and not list(store.deadletters.list_blobs())
    assert "rows would be created" in summary.lines()[0]
    replay(items, cfg, store)
    changed = replay(items, replace(cfg, prompt_capture="none"), store, dry_run=True)
    # previews change; the archived records do not (PROMPT_CAPTURE governs previews here)
    assert (changed.totals.created, changed.totals.updated, changed.totals.new_archive_blobs) == (
        0,
        2,
        0,
    )


def test_progress_line(cfg: Config, store: Store, tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"p{i}.json").write_bytes(apim.envelope(apim.gateway(apim.new_id(f"prog-{i}"))))
    stream = io.StringIO()
    progress = Progress(0, 0, stream=stream)
    replay(list(inputs.local_inputs([tmp_path], inputs.Filters())), cfg, store, progress=progress)
    text = stream.getvalue()
    assert "inputs 3/3 · events 3 · calls 3" in text and "/s)" in text


class Recorder:
    """The producer side of publish(): real EventDataBatch objects, sends recorded."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.sent: list[EventDataBatch] = []

    def create_batch(self, *, partition_key: str | None = None) -> EventDataBatch:
        return EventDataBatch(max_size_in_bytes=self.max_size, partition_key=partition_key)

    def send_batch(self, batch: EventDataBatch) -> None:
        self.sent.append(batch)


def test_republish_fills_batches_and_keeps_partition_keys(tmp_path: Path) -> None:
    bodies = [apim.envelope(apim.gateway(apim.new_id(f"pub-{i}"))) for i in range(12)]
    path = tmp_path / capture.capture_path("0", T0)
    path.parent.mkdir(parents=True)
    path.write_bytes(capture.capture_bytes(bodies[:8], T0, partition_key="team-a"))
    events = [
        e
        for item in inputs.local_inputs([path], inputs.Filters())
        for e in item.events(item.fetch())
    ]
    events += [EventIn(b, partition_key="team-b") for b in bodies[8:]]
    producer = Recorder(max_size=3 * len(bodies[0]) + 400)
    stats = publish.publish(events, producer)
    assert stats.events == 12 and stats.batches == len(producer.sent) >= 4
    assert {b._partition_key for b in producer.sent} == {b"team-a", b"team-b"} or {
        b._partition_key for b in producer.sent
    } == {"team-a", "team-b"}
    assert sum(len(b) for b in producer.sent) == 12
    assert all(b.size_in_bytes <= producer.max_size for b in producer.sent)
    with pytest.raises(ValueError, match="exceeds the hub's maximum event size"):
        publish.publish([EventIn(b"x" * 5000, origin="big")], Recorder(max_size=1000))


def test_events_republished_from_the_archive_are_not_archived_again(
    cfg: Config, store: Store
) -> None:
    import json
    import types

    from azure.functions import meta
    from azure.functions.eventhub import EventHubTriggerConverter

    rec = apim.gateway(apim.new_id("republished"))
    process_batch([EventIn(apim.envelope(rec))], cfg, store)
    (item,) = inputs.blob_inputs(store.archive, "", inputs.Filters(), "archive")
    (event,) = list(item.events(item.fetch()))
    data = publish.event_data(event)
    assert ARCHIVED_PROPERTY in data.properties
    # What the function receives for that event: host-shaped, with the application property.
    tm = {
        "SystemPropertiesArray": meta.Datum(
            json.dumps(
                [
                    {
                        "SequenceNumber": 9,
                        "Offset": "1",
                        "PartitionKey": None,
                        "EnqueuedTimeUtc": "2025-11-04T10:00:00Z",
                    }
                ]
            ),
            "json",
        ),
        "PartitionContext": meta.Datum(json.dumps({"PartitionId": "2"}), "json"),
        "PropertiesArray": meta.Datum(
            json.dumps([{ARCHIVED_PROPERTY: data.properties[ARCHIVED_PROPERTY]}]), "json"
        ),
    }
    host_events = EventHubTriggerConverter.decode(
        meta.Datum(types.SimpleNamespace(bytes=[event.body]), "collection_bytes"),
        trigger_metadata=tm,
    )
    before = blobs(store)
    result = process_batch(from_trigger(host_events), cfg, store)
    assert result.new_archive_blobs == 0 and result.unchanged == 1
    assert blobs(store) == before


def test_member_events_rebuild_the_original_shapes() -> None:
    ptr = archive.RawPointer("b", 0, 1, "s")
    env = archive.member_event(
        {"record": {"a": 1}, "enveloped": True, "rid": "r", "event": {"partition": "4"}}, ptr
    )
    assert orjson.loads(env.body) == {"records": [{"a": 1}]} and env.partition == "4"
    bare = archive.member_event({"record": {"schema": "x"}, "enveloped": False, "rid": "r"}, ptr)
    assert orjson.loads(bare.body) == {"schema": "x"}
    cut = archive.member_event(
        {"record": '{"schema":"aoai-audit/1","correlationId":"c', "rid": "r"}, ptr
    )
    assert cut.body.startswith(b'{"schema"') and cut.archived.rid == "r"

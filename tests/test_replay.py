"""Replay: Event Hubs Capture files and containers, our own archive, resume, dry-run,
progress, and re-publishing to an Event Hub."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import threading
import zlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.eventhub import EventDataBatch

from pipeline.cli import send as publish
from pipeline.cli.main import main
from pipeline.cli.progress import Progress
from pipeline.cli.resume import ResumeState
from pipeline.cli.runner import MAX_PROBLEMS, replay
from pipeline.ingest.batch import process_batch
from pipeline.model import EventIn
from pipeline.protect import archive
from pipeline.settings import Config, SettingsError
from pipeline.sources import archive_blobs, byte_streams, capture_avro, files, inputs
from pipeline.sources.eventhub import ARCHIVED_PROPERTY, from_trigger
from pipeline.store.account import Store
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
    items = list(files.local_inputs([tmp_path], inputs.Filters()))
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
    items = list(archive_blobs.archive_inputs(store.archive, "", inputs.Filters()))
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
        list(archive_blobs.archive_inputs(store.archive, "", inputs.Filters())),
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
    items = list(files.local_inputs([folder], inputs.Filters()))
    original_events = items[1].events

    def stopping(data: Any, report: Any = None) -> Any:  # Ctrl-C while the second file is read
        for n, ev in enumerate(original_events(data, report=report)):
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
    second = replay(list(files.local_inputs([folder], inputs.Filters())), cfg, store, state=resumed)
    assert second.ok and second.skipped_inputs == 1 and second.inputs == 3
    assert len(all_rows(store)) == 20
    assert len(resumed.done) == 4


def test_dry_run_writes_nothing(cfg: Config, store: Store, tmp_path: Path) -> None:
    f = tmp_path / "x.jsonl"
    f.write_bytes(
        apim.envelope(apim.gateway(apim.new_id("dry-1")), apim.gateway(apim.new_id("dry-2")))
        + b"\nnot json\n"
    )
    items = list(files.local_inputs([f], inputs.Filters()))
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
    replay(list(files.local_inputs([tmp_path], inputs.Filters())), cfg, store, progress=progress)
    text = stream.getvalue()
    assert "inputs 3/3 · events 3 · calls 3" in text and "/s)" in text


class Recorder:
    """The producer side of publish(): real EventDataBatch objects, sends recorded."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.sent: list[EventDataBatch] = []
        self.created = 0
        self.most_open = 0  # batches created and not sent, at most

    def create_batch(self, *, partition_key: str | None = None) -> EventDataBatch:
        self.created += 1
        self.most_open = max(self.most_open, self.created - len(self.sent))
        return EventDataBatch(max_size_in_bytes=self.max_size, partition_key=partition_key)

    def send_batch(self, batch: EventDataBatch) -> None:
        self.sent.append(batch)

    def __enter__(self) -> Recorder:  # as the client is used: `with producer:`
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_republish_fills_batches_and_keeps_partition_keys(tmp_path: Path) -> None:
    bodies = [apim.envelope(apim.gateway(apim.new_id(f"pub-{i}"))) for i in range(12)]
    path = tmp_path / capture.capture_path("0", T0)
    path.parent.mkdir(parents=True)
    path.write_bytes(capture.capture_bytes(bodies[:8], T0, partition_key="team-a"))
    events = [
        e
        for item in files.local_inputs([path], inputs.Filters())
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

    # An event larger than the hub takes is reported and skipped: the events before it (in
    # batches not sent yet) and after it are sent. A key longer than 128 characters is cut.
    said: list[str] = []
    producer = Recorder(max_size=3 * len(bodies[0]) + 400)
    mixed = [EventIn(b, partition_key="team-a") for b in bodies[:5]]
    mixed += [EventIn(b"x" * producer.max_size, origin="big", partition_key="team-a")]
    mixed += [EventIn(b, partition_key="k" * 300) for b in bodies[5:]]
    stats = publish.publish(mixed, producer, said.append)
    assert stats.events == 12 and stats.too_large == 1 and sum(map(len, producer.sent)) == 12
    assert len(said) == 8 and sum("cut to 128" in m for m in said) == 7
    assert said[0].startswith(f"big: event of {producer.max_size:,} bytes is larger than the hub")
    keys = {b._partition_key for b in producer.sent}
    assert "k" * 128 in keys or b"k" * 128 in keys


def test_republishing_keeps_few_batches_open_whatever_the_keys() -> None:
    """A policy keyed by request id gives every event its own partition key: one open batch
    per key held the whole input in memory, sent at the very end."""
    producer = Recorder(max_size=100_000)
    events = (EventIn(b'{"records":[]}', partition_key=f"req-{i}") for i in range(1_000))
    stats = publish.publish(events, producer)
    assert stats.events == 1_000 and stats.batches == 1_000
    assert producer.most_open <= publish.MAX_OPEN_BATCHES


def test_events_republished_from_the_archive_are_not_archived_again(
    cfg: Config, store: Store
) -> None:
    import json
    import types

    from azure.functions import meta
    from azure.functions.eventhub import EventHubTriggerConverter

    rec = apim.gateway(apim.new_id("republished"))
    process_batch([EventIn(apim.envelope(rec))], cfg, store)
    (item,) = archive_blobs.archive_inputs(store.archive, "", inputs.Filters())
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


# --- hostile and damaged inputs -------------------------------------------------------------

SECRET = "ssn 078-05-1120 of maria.garcia@contoso.com"


def call_body(tag: str) -> bytes:
    """One event: an envelope with one call whose prompt holds SECRET (it must never be quoted
    in a message)."""
    return apim.envelope(
        apim.gateway(apim.new_id(tag), request=apim.chat_request(("user", f"{tag}: {SECRET}")))
    )


def capture_blocks(
    bodies: list[bytes], t: datetime, codec: str = "null"
) -> tuple[bytes, bytes, list[int]]:
    """A Capture file with one event per Avro block: (data, sync marker, where each block
    starts). Block k is data[starts[k]:starts[k + 1]] (its sync marker is its last 16 bytes)."""
    import fastavro

    records = [
        {
            "SequenceNumber": i,
            "Offset": str(4096 * i),
            "EnqueuedTimeUtc": capture.dotnet_time(t),
            "SystemProperties": {"x-opt-enqueued-time": int(t.timestamp() * 1000)},
            "Properties": {},
            "Body": body,
        }
        for i, body in enumerate(bodies)
    ]
    out = io.BytesIO()
    fastavro.writer(out, capture.SCHEMA, records, codec=codec, sync_interval=1)
    data = out.getvalue()
    _, sync, first = capture_avro._avro_header(byte_streams.Buffer([data]))
    starts = [first]
    while (i := data.find(sync, starts[-1])) >= 0 and i + 16 < len(data):
        starts.append(i + 16)
    assert len(starts) == len(bodies)
    return data, sync, [*starts, len(data)]


def overwrite_block_data(data: bytes, start: int, end: int) -> bytes:
    """Block data replaced by 0xff bytes, its count, size and sync marker kept."""
    buf = byte_streams.Buffer([data])
    _, pos = capture_avro._long(buf, start)
    size, pos = capture_avro._long(buf, pos)
    assert pos + size + 16 == end
    return data[:pos] + b"\xff" * size + data[pos + size :]


def write_capture(folder: Path, partition: str, minute: int, data: bytes) -> Path:
    path = folder / capture.capture_path(partition, T0 + timedelta(minutes=minute))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_replay_keeps_going_past_every_kind_of_bad_input(
    cfg: Config, store: Store, tmp_path: Path
) -> None:
    """Unreadable files, a non-JSON line, an over-long line, an over-large body, a truncated
    Capture file, an Avro block that does not inflate, one that does not decode, a damaged
    sync marker, a file that is not Avro at all: each is reported by name (no content
    quoted), the readable rest of it is replayed, and so is every input after it."""
    limit = 64 * 1024
    folder = tmp_path / "in"
    folder.mkdir()
    expected: set[str] = set()

    def good(tag: str) -> bytes:
        expected.add(apim.new_id(tag))
        return call_body(tag)

    (folder / "a-good.jsonl").write_bytes(
        good("keep-1") + b"\nnot json at all: " + SECRET.encode() + b"\n" + good("keep-2") + b"\n"
    )
    long_line = orjson.dumps({"records": [], "pad": SECRET * (2 * limit // len(SECRET))})
    (folder / "b-long-line.jsonl").write_bytes(
        good("keep-3") + b"\n" + long_line + b"\n" + good("keep-4") + b"\n"
    )
    unreadable = folder / "c-unreadable.json"
    unreadable.write_bytes(good("lost-c"))
    expected.discard(apim.new_id("lost-c"))
    (folder / "d-too-big.json").write_bytes(long_line)

    bodies = {k: [call_body(f"{k}-{i}") for i in range(5)] for k in "efghj"}

    def keep(k: str, *indexes: int) -> None:
        expected.update(apim.new_id(f"{k}-{i}") for i in indexes)

    # e: truncated inside block 3 of 5 (null codec): events 0, 1 kept
    data, _, starts = capture_blocks(bodies["e"], T0)
    avro = {"e": write_capture(folder, "1", 1, data[: starts[2] + 20])}
    keep("e", 0, 1)
    # f: deflate, block 1's data is not deflate at all: 0, 2, 3, 4 kept
    data, _, starts = capture_blocks(bodies["f"], T0, codec="deflate")
    avro["f"] = write_capture(folder, "1", 2, overwrite_block_data(data, starts[1], starts[2]))
    keep("f", 0, 2, 3, 4)
    # g: null codec, block 2's record does not decode: 0, 1, 3, 4 kept
    data, _, starts = capture_blocks(bodies["g"], T0)
    avro["g"] = write_capture(folder, "1", 3, overwrite_block_data(data, starts[2], starts[3]))
    keep("g", 0, 1, 3, 4)
    # h: the sync marker closing block 1 is damaged: reading resumes right after it (block 1
    # is not trusted, block 2 is read)
    data, _, starts = capture_blocks(bodies["h"], T0)
    marker = starts[2] - 16
    avro["h"] = write_capture(folder, "1", 4, data[:marker] + b"\x00" * 16 + data[marker + 16 :])
    keep("h", 0, 2, 3, 4)
    # j: block 1's size is wrong (10 bytes short): its marker is looked for inside its data,
    # reading there fails, and it resumes after block 1's real marker
    data, _, starts = capture_blocks(bodies["j"], T0)
    at = starts[1] + 1  # after the record count (1: one byte)
    size, n = _varint(data, at)
    shorter = _zigzag(size - 10)
    assert len(shorter) == n
    avro["j"] = write_capture(folder, "1", 6, data[:at] + shorter + data[at + n :])
    keep("j", 0, 2, 3, 4)
    # i: not Avro
    avro["i"] = write_capture(folder, "1", 5, b"Obj\x01" + b"\x00" * 40)
    (folder / "z-last.json").write_bytes(good("keep-5"))

    items = list(files.local_inputs([folder], inputs.Filters(), limit=limit))
    # Listed, then made unreadable before it is read (a directory where the file was).
    unreadable.unlink()
    unreadable.mkdir()
    said: list[str] = []
    state = ResumeState(tmp_path / "state.json", resume=False)
    summary = replay(items, cfg, store, say=said.append, state=state)

    assert set(all_rows(store)) == expected
    assert summary.totals.dead_letters == 1  # the non-JSON line, as any bad event
    assert summary.storage_error is None and summary.source_error is None
    by_file = {
        Path(p.where).name if Path(p.where).suffix != ".avro" else Path(p.where): p.message
        for p in summary.problems
    }
    assert set(by_file) == {
        "b-long-line.jsonl",
        "c-unreadable.json",
        "d-too-big.json",
        *avro.values(),
    }, summary.problems
    assert summary.failed_inputs == 9
    assert "9 inputs failed, wholly or in part (9 errors" in "\n".join(summary.lines())
    errors = [line for line in said if line.startswith("error: ")]
    assert len(errors) == 9
    for p in summary.problems:
        assert p.message.startswith(p.where)  # names the input
    text = "\n".join(said)
    assert SECRET not in text and "maria" not in text
    assert "b-long-line.jsonl:2: line longer than 64 KiB: skipped" in by_file["b-long-line.jsonl"]
    assert "cannot read" in by_file["c-unreadable.json"]
    assert "larger than 64 KiB" in by_file["d-too-big.json"]
    assert "ends inside it (truncated)" in by_file[avro["e"]]
    assert "the rest of the file" in by_file[avro["e"]]
    assert "not valid deflate data" in by_file[avro["f"]]
    assert "record 1 of 1 does not decode" in by_file[avro["g"]]
    assert "sync marker is wrong; skipped to the next block" in by_file[avro["h"]]
    assert "sync marker is wrong; skipped to the next block" in by_file[avro["j"]]
    assert "not a readable Event Hubs Capture (Avro) file" in by_file[avro["i"]]
    # Only inputs read to their end without a problem count as done for --resume.
    assert {Path(k.rsplit("#", 1)[0]).name for k in state.done} == {"a-good.jsonl", "z-last.json"}


@pytest.mark.parametrize("short", [1, 10, 15, 16, 17, 20, 32])
def test_a_capture_block_whose_size_is_short_costs_only_that_block(short: int) -> None:
    # Its marker is looked for inside its data: wrong, and then reading resumes after the
    # block's real marker (16 short: the guess lands exactly on that marker).
    bodies = [call_body(f"short-{i}") for i in range(5)]
    data, _, starts = capture_blocks(bodies, T0)
    at = starts[1] + 1  # after the record count (1: one byte)
    size, n = _varint(data, at)
    damaged = data[:at] + _zigzag(size - short) + data[at + n :]
    problems: list[str] = []
    read = list(capture_avro.read_capture([damaged], "f", "1", report=problems.append))
    assert [e.body for e in read] == [bodies[i] for i in (0, 2, 3, 4)]
    assert len(problems) >= 1


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """The Avro long (zig-zag varint) at `at`, and how many bytes it takes."""
    value = shift = n = 0
    while True:
        byte = data[at + n]
        value |= (byte & 0x7F) << shift
        shift += 7
        n += 1
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), n


def _zigzag(value: int) -> bytes:
    z, out = (value << 1) ^ (value >> 63), bytearray()
    while z > 0x7F:
        out.append(z & 0x7F | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def archive_of(cfg: Config, store: Store, tag: str, n: int) -> tuple[bytes, list[str]]:
    """An archive blob of `n` members (one call each), and the calls' correlation ids."""
    ids = [apim.new_id(f"{tag}-{i}") for i in range(n)]
    recs = [
        apim.gateway(cid, request=apim.chat_request(("user", f"{i}: {SECRET}")))
        for i, cid in enumerate(ids)
    ]
    process_batch([EventIn(apim.envelope(*recs))], cfg, store)
    (blob,) = store.archive.list_blobs()
    return store.archive.download_blob(blob.name).readall(), ids


def fresh_table(cfg: Config, suffix: str) -> tuple[Config, Store]:
    other = replace(cfg, audit_table=cfg.audit_table + suffix, kpi_table=cfg.kpi_table + suffix)
    s = Store(other)
    s.ensure()
    return other, s


def test_archive_blob_damaged_in_the_middle_loses_only_the_damaged_members(
    cfg: Config, store: Store
) -> None:
    data, ids = archive_of(cfg, store, "arch-bad", 6)
    members = list(archive.iter_members(data))
    assert len(members) == 6
    pieces = [data[o : o + n] for o, n, _ in members]
    damaged = pieces[2][:10] + b"\xff" * (len(pieces[2]) - 18) + pieces[2][-8:]
    junk = bytes(range(32, 127)) * 60  # no gzip header in it
    blob = b"".join(
        [
            pieces[0],
            pieces[1],
            damaged,
            pieces[3],
            junk,
            pieces[4],
            pieces[5][: len(pieces[5]) // 2],
        ]
    )
    source = store.blobs.get_container_client(f"{cfg.archive_container}-copy")
    source.create_container()
    source.upload_blob("2025/11/04/10/damaged.jsonl.gz", blob)

    other, other_store = fresh_table(cfg, "b")
    items = list(archive_blobs.archive_inputs(source, "", inputs.Filters(), chunk=1024))
    said: list[str] = []
    summary = replay(items, other, other_store, say=said.append)

    assert set(all_rows(other_store)) == {ids[0], ids[1], ids[3], ids[4]}
    assert summary.failed_inputs == 1 and len(summary.problems) == 3
    where = f"{source.container_name}/2025/11/04/10/damaged.jsonl.gz"
    m1, m2, m3 = (p.message for p in summary.problems)
    start2 = len(pieces[0]) + len(pieces[1])
    start3 = start2 + len(damaged)
    assert m1.startswith(where)
    assert f"member at byte {start2} is damaged" in m1
    assert f"reading goes on at byte {start3}" in m1
    start_junk = start3 + len(pieces[3])
    assert f"member at byte {start_junk} is damaged" in m2
    assert f"reading goes on at byte {start_junk + len(junk)}" in m2
    assert "no member follows" in m3 and "the rest of the blob" in m3
    assert SECRET not in "\n".join(said)
    # The rows point at where their members really are in that blob.
    row = all_rows(other_store)[ids[4]]
    assert row["RawOffset"] == start_junk + len(junk)
    member = archive.open_member(
        source.download_blob(
            "2025/11/04/10/damaged.jsonl.gz",
            offset=row["RawOffset"],
            length=row["RawLength"],
        ).readall(),
        row["RawSha256"],
    )
    assert member["correlationId"] == ids[4]


def test_archive_resynchronisation_stays_linear(cfg: Config, store: Store) -> None:
    """Junk full of fake gzip headers, each of which reads 64 KiB before failing: trying them
    all would be quadratic (gigabytes of inflating); the search stops at its work limit and
    says that the rest of the blob is not replayed."""
    import time

    data, _ = archive_of(cfg, store, "arch-linear", 3)
    pieces = [data[o : o + n] for o, n, _ in archive.iter_members(data)]
    # gzip header (no flags) + a stored deflate block claiming 65535 bytes: 15 bytes, and
    # 65550 = 15 x 4370, so each fake member's next block header is a 0x1f: invalid.
    fake = b"\x1f\x8b\x08\x00" + b"\x00" * 4 + b"\x00\xff" + b"\x00\xff\xff\x00\x00"
    blob = pieces[0] + fake * (2 * 1024 * 1024 // len(fake)) + pieces[1] + pieces[2]
    source = store.blobs.get_container_client(f"{cfg.archive_container}-lin")
    source.create_container()
    source.upload_blob("2025/11/04/10/fakes.jsonl.gz", blob)
    problems: list[str] = []
    start = time.perf_counter()
    (item,) = archive_blobs.archive_inputs(source, "", inputs.Filters())
    events = list(item.events(item.fetch(), report=problems.append))
    seconds = time.perf_counter() - start
    assert [e.archived.pointer.offset for e in events if e.archived] == [0]
    assert len(problems) == 1 and "work limit" in problems[0]
    assert f"from byte {len(pieces[0])}) is not replayed" in problems[0]
    assert seconds < 5, seconds


def zip_bomb(size: int = 200 * 1024 * 1024, wbits: int = 31) -> bytes:
    """`size` zero bytes, deflated (gzip member with wbits=31, raw deflate with -15)."""
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(1024 * 1024)
    parts = [c.compress(zeros) for _ in range(size // len(zeros))]
    return b"".join([*parts, c.flush()])


def peak_of(fn: Any) -> tuple[Any, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_zip_bomb_in_an_archive_member_is_an_error_not_a_memory_spike(
    cfg: Config, store: Store
) -> None:
    data, _ = archive_of(cfg, store, "bomb-arch", 2)
    pieces = [data[o : o + n] for o, n, _ in archive.iter_members(data)]
    bomb = zip_bomb()
    assert len(bomb) < 300 * 1024
    source = store.blobs.get_container_client(f"{cfg.archive_container}-bomb")
    source.create_container()
    source.upload_blob("2025/11/04/10/bomb.jsonl.gz", pieces[0] + bomb + pieces[1])
    limit = 1024 * 1024
    problems: list[str] = []
    (item,) = archive_blobs.archive_inputs(source, "", inputs.Filters(), limit=limit)
    events, peak = peak_of(lambda: list(item.events(item.fetch(), report=problems.append)))
    assert len(events) == 2  # the members on both sides of the bomb
    assert len(problems) == 1 and "inflates to more than 1 MiB" in problems[0]
    assert f"member at byte {len(pieces[0])} is damaged" in problems[0]
    assert peak < 8 * 1024 * 1024, peak


def test_zip_bomb_in_an_avro_block_is_an_error_not_a_memory_spike(tmp_path: Path) -> None:
    bodies = [call_body(f"bomb-avro-{i}") for i in range(3)]
    data, sync, starts = capture_blocks(bodies, T0, codec="deflate")
    bomb = zip_bomb(wbits=-15)

    def zigzag(n: int) -> bytes:
        n, out = (n << 1) ^ (n >> 63), bytearray()
        while n >= 0x80:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        return bytes([*out, n])

    block = zigzag(1) + zigzag(len(bomb)) + bomb + sync
    crafted = data[: starts[1]] + block + data[starts[1] :]
    path = write_capture(tmp_path, "0", 0, crafted)
    problems: list[str] = []
    (item,) = files.local_inputs([path], inputs.Filters(), limit=1024 * 1024)
    events, peak = peak_of(lambda: list(item.events(item.fetch(), report=problems.append)))
    assert [e.sequence for e in events] == [0, 1, 2]
    assert len(problems) == 1
    assert f"Avro block at byte {starts[1]}: it inflates to more than 1 MiB" in problems[0]
    assert peak < 8 * 1024 * 1024, peak


def test_files_and_blobs_are_streamed_in_bounded_memory(
    cfg: Config, store: Store, tmp_path: Path, capsys
) -> None:
    import fastavro

    size = 24 * 1024 * 1024
    rng = __import__("random").Random(5)
    body = orjson.dumps({"records": [{"pad": rng.randbytes(3000).hex()}]})
    n = size // len(body) + 1
    path = tmp_path / capture.capture_path("0", T0)
    path.parent.mkdir(parents=True)
    with path.open("wb") as f:
        records = (
            {
                "SequenceNumber": i,
                "Offset": str(i),
                "EnqueuedTimeUtc": capture.dotnet_time(T0),
                "SystemProperties": {},
                "Properties": {},
                "Body": body,
            }
            for i in range(n)
        )
        fastavro.writer(f, capture.SCHEMA, records, codec="null")
    assert path.stat().st_size > size
    (item,) = files.local_inputs([path], inputs.Filters())
    count, file_peak = peak_of(lambda: sum(1 for _ in item.events(item.fetch())))
    assert count == n

    member = gzip.compress(
        orjson.dumps(
            {"v": 1, "kind": "gateway", "rid": "r", "event": {}, "record": {"pad": body.decode()}}
        )
        + b"\n",
        mtime=0,
    )
    blob = member * (size // len(member) + 1)
    source = store.blobs.get_container_client(f"{cfg.archive_container}-big")
    source.create_container()
    source.upload_blob("2025/11/04/10/big.jsonl.gz", blob)
    del blob
    (item,) = archive_blobs.archive_inputs(
        source, "", inputs.Filters(), store.call, chunk=256 * 1024
    )
    count, blob_peak = peak_of(lambda: sum(1 for _ in item.events(item.fetch())))
    assert count == size // len(member) + 1
    with capsys.disabled():
        print(
            f"\nstreaming: {path.stat().st_size / 1e6:.0f} MB Capture file, peak "
            f"{file_peak / 1e6:.1f} MB; {item.size / 1e6:.0f} MB archive blob (256 KiB ranged "
            f"reads), peak {blob_peak / 1e6:.1f} MB"
        )
    # Bounded by the chunk sizes (1 MiB reads of the file; 256 KiB ranged reads, which the
    # SDK inflates about ninefold for a moment, one read ahead), not by the 24 MB read.
    assert file_peak < 4 * 1024 * 1024, file_peak
    assert blob_peak < 8 * 1024 * 1024, blob_peak


def test_resume_is_exact_when_inputs_fill_batches_exactly(
    cfg: Config, store: Store, tmp_path: Path
) -> None:
    folder = tmp_path / "exact"
    folder.mkdir()
    for i in range(4):
        (folder / f"in-{i}.jsonl").write_bytes(
            b"\n".join(apim.envelope(apim.gateway(apim.new_id(f"exact-{i}-{j}"))) for j in range(4))
        )
    (folder / "in-4.jsonl").write_bytes(b"\n\n")  # no events: done as soon as it is read
    state_path = tmp_path / "state.json"
    stop = threading.Event()
    items = list(files.local_inputs([folder], inputs.Filters()))
    original_events = items[1].events

    def stopping(data: Any, report: Any = None) -> Any:  # Ctrl-C while in-1 is read
        for n, ev in enumerate(original_events(data, report=report)):
            if n == 2:
                stop.set()
            yield ev

    items[1] = replace(items[1], events=stopping)
    first = replay(items, cfg, store, batch_size=4, state=ResumeState(state_path, False), stop=stop)
    assert first.interrupted and first.totals.events == 8

    def resumed() -> Any:  # a run with --resume over the same folder
        return replay(
            list(files.local_inputs([folder], inputs.Filters())),
            cfg,
            store,
            batch_size=4,
            state=ResumeState(state_path, True),
        )

    # in-1's last event filled the last batch exactly: in-1 is done too.
    assert {Path(k.rsplit("#", 1)[0]).name for k in ResumeState(state_path, True).done} == {
        "in-0.jsonl",
        "in-1.jsonl",
    }
    second = resumed()
    assert second.ok and second.skipped_inputs == 2 and second.totals.events == 8
    assert first.totals.events + second.totals.events == 16  # every event exactly once
    assert len(all_rows(store)) == 16
    # The run's last input filled its last batch exactly: recorded as done all the same.
    assert len(ResumeState(state_path, True).done) == 5
    third = resumed()
    assert third.totals.events == 0 and third.skipped_inputs == 5
    # A file that grew since it was done (an hourly PT1H.json downloaded again, an export
    # written again) is another input: read again, its new events stored.
    grown = folder / "in-0.jsonl"
    grown.write_bytes(
        grown.read_bytes() + b"\n" + apim.envelope(apim.gateway(apim.new_id("exact-grown")))
    )
    fourth = resumed()
    assert fourth.skipped_inputs == 4 and fourth.totals.events == 5
    assert len(all_rows(store)) == 17


def test_what_is_not_a_regular_file_is_reported_and_suffixes_have_no_case(
    cfg: Config, store: Store, tmp_path: Path
) -> None:
    """A FIFO given by name waited for a writer forever (the run hung, the inputs after it
    never read); in a folder, a FIFO or a link to nothing was passed over in silence, and an
    export saved as EXPORT.CSV too, its rows lost."""
    folder = tmp_path / "odd"
    folder.mkdir()
    os.mkfifo(folder / "pipe.jsonl")
    (folder / "gone.jsonl").symlink_to(tmp_path / "nowhere.jsonl")
    upper = apim.new_id("upper-case-suffix")
    (folder / "EXPORT.JSONL").write_bytes(apim.envelope(apim.gateway(upper)))
    (folder / "a-folder.json").mkdir()  # a folder named like an input: walked, not reported
    found = list(files.local_inputs([folder, folder / "pipe.jsonl"], inputs.Filters()))
    problems = sorted(
        (Path(p.where).name, p.message) for p in found if isinstance(p, inputs.InputProblem)
    )
    assert problems == [
        ("gone.jsonl", "cannot be read (No such file or directory)"),
        ("pipe.jsonl", "not a regular file (a FIFO or a device)"),
        ("pipe.jsonl", "not a regular file (a FIFO or a device)"),
    ]
    result = replay(found, cfg, store, batch_size=4)
    assert result.totals.events == 1 and upper in all_rows(store)


def test_a_resume_state_that_cannot_be_written_is_said_and_never_a_traceback(
    cfg: Config, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    """Before: `--state` in a folder that does not exist (or a read-only one) crashed the run
    once its first input was done, with no summary and no roll-up."""
    f = tmp_path / "x.jsonl"
    f.write_bytes(call_body("state-1") + b"\n" + call_body("state-2") + b"\n")
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    nowhere = tmp_path / "no" / "such" / "state.json"
    code = main(["replay", str(f), "--quiet", "--state", str(nowhere)])
    err = capsys.readouterr().err
    assert code == 2 and "resume state cannot be written" in err, err
    # Checked without touching an earlier run's state: a run that stops at once keeps it.
    kept = tmp_path / "kept.json"
    kept.write_bytes(b'{"done": ["file:/earlier#1:2"]}')
    ResumeState(kept, False)
    assert kept.read_bytes() == b'{"done": ["file:/earlier#1:2"]}' and not list(
        tmp_path.glob("kept.json.tmp")
    )
    # Lost while the run goes on: said once, the rows stored all the same.
    folder = tmp_path / "state"
    folder.mkdir()
    state = ResumeState(folder / "state.json", False)
    shutil.rmtree(folder)
    summary = replay(list(files.local_inputs([f], inputs.Filters())), cfg, store, state=state)
    assert summary.totals.created == 2 and len(summary.problems) == 1
    assert "resume state cannot be written" in summary.problems[0].message


def test_dry_run_creates_nothing_in_an_empty_account(
    cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    f = tmp_path / "x.jsonl"
    f.write_bytes(call_body("dry-empty-1") + b"\nnot json\n" + call_body("dry-empty-2") + b"\n")
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    s = Store(cfg)  # no ensure(): the account has none of this test's tables or containers
    tables_before = {t.name for t in s.tables.list_tables()}
    containers_before = {c.name for c in s.blobs.list_containers()}
    state = tmp_path / "state.json"
    code = main(["replay", str(f), "--dry-run", "--quiet", "--state", str(state)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "2 calls: 2 rows would be created" in out and "1 dead letters (not written)" in out
    assert "1 archive blobs would be created" in out
    assert {t.name for t in s.tables.list_tables()} == tables_before
    assert {c.name for c in s.blobs.list_containers()} == containers_before
    assert cfg.audit_table not in tables_before and cfg.archive_container not in containers_before
    assert not state.exists()
    # The library call too: nothing created, the same answer.
    summary = replay(list(files.local_inputs([f], inputs.Filters())), cfg, s, dry_run=True)
    assert summary.ok and summary.totals.created == 2
    assert {t.name for t in s.tables.list_tables()} == tables_before
    assert {c.name for c in s.blobs.list_containers()} == containers_before


def test_misspelled_containers_are_errors_never_created(
    cfg: Config, store: Store, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    typo = f"{cfg.archive_container}-typo"
    env = settings_env(cfg) | {"ARCHIVE_CONTAINER": typo}
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def containers() -> set[str]:
        return {c.name for c in store.blobs.list_containers()}

    assert main(["replay", "--from-archive", "2025/11/04", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"container '{typo}' (named by ARCHIVE_CONTAINER) does not exist" in err
    assert typo not in containers()
    assert main(["replay", "--from-archive", "--dry-run", "--quiet"]) == 2
    assert typo not in containers()
    monkeypatch.setenv("ARCHIVE_CONTAINER", cfg.archive_container)
    assert main(["replay", "--from-blob", "capturr/contoso-ns", "--quiet"]) == 2
    assert "container 'capturr' (named by --from-blob) does not exist" in capsys.readouterr().err
    assert "capturr" not in containers()

    # The pipeline's own archive target: outside Azurite, ensure() checks, never creates.
    wrong = Store(replace(cfg, archive_container=typo))
    with pytest.raises(SettingsError, match=f"'{typo}' \\(named by ARCHIVE_CONTAINER\\)"):
        wrong.ensure(create_containers=False)
    assert typo not in containers()
    store.ensure(create_containers=False)  # the real ones exist: fine
    # Which accounts count as local (where ensure() creates the containers itself).
    assert store.is_local()
    production = Store(
        Config(
            storage_connection="DefaultEndpointsProtocol=https;AccountName=contosoaudit;"
            "AccountKey=" + "A" * 86 + "==;EndpointSuffix=core.windows.net"
        )
    )
    assert not production.is_local()
    assert Store(Config(storage_connection="UseDevelopmentStorage=true")).is_local()


def test_storage_unavailable_while_reading_stops_the_run(
    azurite: Any, cfg: Config, store: Store, tmp_path: Path
) -> None:
    from pipeline.cli.azurite import connection_string
    from tests.faults import FaultProxy

    source = store.blobs.get_container_client(f"{cfg.archive_container}-down")
    source.create_container()
    for i in range(2):
        path = capture.capture_path("0", T0 + timedelta(minutes=i))
        source.upload_blob(path, capture.capture_bytes([call_body(f"down-{i}")], T0))
    after = tmp_path / "after.json"
    after.write_bytes(call_body("down-after"))
    proxy = FaultProxy(azurite.blob_port)
    try:
        conn = connection_string(proxy.port, azurite.table_port, azurite.queue_port)
        reader = Store(replace(cfg, storage_retries=1), connection=conn, retry_base=0.01)
        items: list[Any] = list(
            capture_avro.capture_inputs(
                reader.blobs.get_container_client(source.container_name),
                "",
                inputs.Filters(),
                reader.call,
            )
        )
        items += files.local_inputs([after], inputs.Filters())
        proxy.policy.down = True  # listed; now the source storage is gone
        said: list[str] = []
        summary = replay(items, cfg, store, say=said.append)
    finally:
        proxy.close()
    assert summary.source_error is not None and not summary.ok
    assert not summary.problems  # not blamed on the inputs' content
    assert any(line.startswith("error: storage failed, stopping") for line in said)
    assert not all_rows(store)  # the run stopped: the local file after it was not replayed


def test_archive_blobs_are_chosen_by_the_hour_their_path_names(cfg: Config, store: Store) -> None:
    """`replay --from-archive --since/--until`: a blob outside the window is not listed."""
    early, late = (
        datetime(2025, 11, 4, 9, 30, tzinfo=UTC),
        datetime(2025, 11, 4, 12, 30, tzinfo=UTC),
    )
    for when, tag in ((early, "early"), (late, "late")):
        rec = apim.gateway(apim.new_id(tag), time=when.isoformat())
        process_batch([EventIn(apim.envelope(rec), enqueued=when)], cfg, store)
    hours = sorted(name[:13] for name in blobs(store))
    assert hours == ["2025/11/04/09", "2025/11/04/12"]

    def listed(**window: datetime) -> list[str]:
        chosen = archive_blobs.archive_inputs(store.archive, "", inputs.Filters(**window))
        return [item.label.split("/", 1)[1][:13] for item in chosen]

    assert listed(since=datetime(2025, 11, 4, 10, tzinfo=UTC)) == ["2025/11/04/12"]
    assert listed(until=datetime(2025, 11, 4, 10, tzinfo=UTC)) == ["2025/11/04/09"]
    assert listed() == hours


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_a_jsonl_line_at_the_limit_is_read_whatever_its_line_ending(newline: bytes) -> None:
    # The limit counts the line, not its CRLF's \r: a line of exactly the limit was skipped
    # in a CRLF file and read in an LF one. Cut into chunks at every position.
    limit = 12
    at, over = b'{"a":"' + b"x" * 4 + b'"}', b'{"a":"' + b"x" * 5 + b'"}'
    assert (len(at), len(over)) == (limit, limit + 1)
    data = at + newline + over + newline + b"{}" + newline + at
    for size in range(1, len(data) + 1):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        problems: list[str] = []
        read = list(files.read_lines(chunks, "f.jsonl", limit, problems.append))
        assert [(e.body, e.origin) for e in read] == [
            (at, "file:f.jsonl:1"),
            (b"{}", "file:f.jsonl:3"),
            (at, "file:f.jsonl:4"),
        ], size
        assert problems == ["f.jsonl:2: line longer than 12 bytes: skipped"], size


def test_a_file_name_that_is_not_utf8_is_replayed_and_resumed(
    cfg: Config, store: Store, tmp_path: Path
) -> None:
    """A folder unpacked from an archive made elsewhere: Python reads a name that is not
    UTF-8 with lone surrogates, which no encoder takes. They reached the origin (the dead
    letter's name failed to encode: taken for a storage failure, the run stopped) and the
    resume state (a traceback)."""
    folder = tmp_path / "in"
    folder.mkdir()
    odd = os.path.join(os.fsencode(folder), b"journal-\xff.jsonl")
    with open(odd, "wb") as f:
        f.write(call_body("odd-name") + b"\nnot json\n" + b"\n" * 64)
    (folder / "z-ordinary.jsonl").write_bytes(call_body("after-odd-name") + b"\n")
    # A name that reads as the odd one's bytes escaped: a file of its own, resumed as such
    # (of the same size and time, so that only its name tells it apart in the state).
    look_alike = folder / "journal-\\xff.jsonl"
    body = call_body("escaped-look-alike") + b"\n"
    look_alike.write_bytes(body + b"\n" * (os.stat(odd).st_size - len(body)))
    os.utime(look_alike, ns=(os.stat(odd).st_atime_ns, os.stat(odd).st_mtime_ns))
    assert look_alike.stat().st_size == os.stat(odd).st_size
    state = ResumeState(tmp_path / "state.json", resume=False)
    summary = replay(list(files.local_inputs([folder], inputs.Filters())), cfg, store, state=state)
    assert summary.ok and summary.totals.dead_letters == 1
    ids = {apim.new_id(n) for n in ("odd-name", "after-odd-name", "escaped-look-alike")}
    assert ids <= set(all_rows(store))
    assert len(ResumeState(tmp_path / "state.json", resume=True).done) == 3


def test_dead_letter_metadata_is_what_azure_keeps_and_names_the_same_blob_again() -> None:
    """Azure trims a metadata value's spaces before checking the request's signature (a
    value ending in one is refused), and a dead letter replayed from its metadata (origin
    and partition made ASCII) must fail again into the same blob, not a second one."""
    from pipeline.model import DeadLetter
    from pipeline.sources.deadletter_blobs import _stored_event
    from pipeline.store.deadletters import dead_letter_blob

    for origin, partition, offset in [
        ("file:journal-été.jsonl:1", "0 ", " 42"),
        ("file:" + "a" * 506 + " bcdef.jsonl:1", " 3", "7\t"),
    ]:
        event = EventIn(b"x", partition=partition, sequence=5, offset=offset, origin=origin)
        blob = dead_letter_blob(DeadLetter(b"x", "not JSON", event, None))
        assert all(v == v.strip() and v.isascii() for v in blob.metadata.values()), blob.metadata
        again = _stored_event(blob.name, blob.metadata)
        assert dead_letter_blob(DeadLetter(b"x", "not JSON", again, None)).name == blob.name
    for forged in ["²", "--5", "9" * 30]:  # metadata anyone who can write the container edits
        assert _stored_event("n", {"sequencenumber": forged}).sequence is None


def test_a_capture_time_at_the_edge_of_the_calendar_costs_nothing_else(tmp_path: Path) -> None:
    """`EnqueuedTimeUtc` is what the file says: a time whose UTC is before year 1 raised
    OverflowError, which ended the reader (every later event of the file lost)."""
    import fastavro

    bodies = [call_body(f"edge-{i}") for i in range(4)]
    times = ["3/4/2025 10:15:03 AM", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
    records = [
        {"SequenceNumber": i, "Offset": str(i), "EnqueuedTimeUtc": times[min(i, 2)],
         "SystemProperties": {}, "Properties": {}, "Body": body}
        for i, body in enumerate(bodies)
    ]  # fmt: skip
    out = io.BytesIO()
    fastavro.writer(out, capture.SCHEMA, records, codec="null", sync_interval=1)
    problems: list[str] = []
    name = "ns/hub/0/2025/03/04/10/15/00.avro"
    events = list(capture_avro.read_capture([out.getvalue()], name, "0", report=problems.append))
    assert [e.sequence for e in events] == [0, 1, 2, 3] and not problems
    assert [e.enqueued is None for e in events] == [False, True, True, True]


def test_send_reports_a_damaged_row_and_sends_every_other_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One row of a CSV export with the wrong cell count stopped `send` with a traceback:
    nothing of the inputs before or after it was sent."""
    (tmp_path / "a.jsonl").write_bytes(b'{"records":[]}\n' * 5)
    (tmp_path / "b.csv").write_bytes(
        b"TimeGenerated [UTC],Type,CorrelationId\n"
        b"2025-11-04T10:00:00Z,ApiManagementGatewayLogs,c1\nonly-one-cell\n"
        b"2025-11-04T10:00:01Z,ApiManagementGatewayLogs,c2\n"
    )
    (tmp_path / "c.jsonl").write_bytes(b'{"records":[]}\n' * 5)
    producer = Recorder(max_size=1_048_576)
    monkeypatch.setattr(publish, "producer_for", lambda *a: producer)
    assert main(["send", str(tmp_path), "--connection", "x"]) == 1
    assert sum(len(b) for b in producer.sent) == 13  # 5, 2 rows and the damaged one's bytes, 5
    assert "b.csv:line 3: 1 cells where the header names 3" in capsys.readouterr().err


def test_a_capture_record_whose_values_cannot_be_read_costs_only_itself() -> None:
    """A record that decodes but whose Body is not bytes (a crafted schema's union) ended its
    whole block: the records after it in the block were skipped too."""
    import fastavro

    body = {"name": "Body", "type": ["null", "bytes", "long"]}
    fields = [f if f["name"] != "Body" else body for f in capture.SCHEMA_DOC["fields"]]
    schema = {**capture.SCHEMA_DOC, "fields": fields}
    bodies: list[Any] = [call_body(f"odd-body-{i}") for i in range(4)]
    bodies[1] = 5
    records = [
        {"SequenceNumber": i, "Offset": str(i), "EnqueuedTimeUtc": "3/4/2025 10:15:03 AM",
         "SystemProperties": {}, "Properties": {}, "Body": body}
        for i, body in enumerate(bodies)
    ]  # fmt: skip
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), records, codec="null")
    said: list[str] = []
    name = "ns/hub/0/2025/03/04/10/15/00.avro"
    events = list(capture_avro.read_capture([out.getvalue()], name, "0", report=said.append))
    assert [e.sequence for e in events] == [0, 2, 3]
    assert said == [f"{name}: 1 of 4 records of a block: a record's Body is not bytes: skipped"]


def test_a_capture_block_of_records_without_a_time_is_not_events() -> None:
    """Six bytes of empty fields made a record: 2.5 KB of deflated zeros decoded into 20,000
    events, each dead-lettered (140 s), each reported on a line of its own."""
    import fastavro

    empty = {"SequenceNumber": 0, "Offset": "", "EnqueuedTimeUtc": "", "SystemProperties": {},
             "Properties": {}, "Body": b""}  # fmt: skip
    real = {**empty, "EnqueuedTimeUtc": "3/4/2025 10:15:03 AM", "Body": call_body("timed")}
    out = io.BytesIO()
    fastavro.writer(out, capture.SCHEMA, [empty] * 20_000 + [real], codec="deflate",
                    sync_interval=1 << 20)  # fmt: skip
    assert len(out.getvalue()) < 4096
    said: list[str] = []
    name = "ns/hub/0/2025/03/04/10/15/00.avro"
    events = list(capture_avro.read_capture([out.getvalue()], name, "0", report=said.append))
    assert [e.body for e in events] == [real["Body"]]
    assert said == [
        f"{name}: 20,000 of 20,001 records of a block: no enqueued time (not an event Capture "
        "wrote): skipped"
    ]


def test_a_file_of_junk_events_names_only_the_first_dead_letters(
    cfg: Config, store: Store, tmp_path: Path
) -> None:
    f = tmp_path / "junk.jsonl"
    f.write_bytes(b"".join(b"junk %d\n" % i for i in range(150)))
    said: list[str] = []
    summary = replay(
        list(files.local_inputs([f], inputs.Filters())), cfg, store, dry_run=True, say=said.append
    )
    assert summary.totals.dead_letters == 150
    named = [line for line in said if ": dead-lettered: " in line]
    assert len(named) == MAX_PROBLEMS == 100
    assert said[-1] == "further dead letters are not named here (the first 100 were)"


def test_an_events_bad_records_replayed_leave_its_rows_as_they_were(
    cfg: Config, store: Store
) -> None:
    """The dead letter of an event's bad records holds them alone: replayed, the event's
    good calls are not read again. Holding the whole event, masked, it replayed them as
    rivals of their rows (Conflicts, an estimate from placeholders, a masked caller address:
    found by an audit)."""
    from pipeline.sources.deadletter_blobs import deadletter_inputs

    good = [
        apim.gateway(apim.new_id(f"dl-bad-pair-{i}"), response=None, callerIpAddress="203.0.113.9")
        for i in range(2)
    ]
    bad = [{"category": "GatewayLogs", "n": 1}, {"category": "GatewayLogs"}]
    body = orjson.dumps({"records": [bad[0], good[0], bad[1], good[1]]})
    process_batch([EventIn(body, partition="0", sequence=9)], cfg, store)
    before = {e["RowKey"]: dict(e) for e in store.audit.list_entities()}
    assert len(before) == 2
    for _ in range(2):
        summary = replay(list(deadletter_inputs(store.deadletters, "")), cfg, store)
        assert summary.totals.events == 1 and summary.totals.dead_letters == 1
        assert {e["RowKey"]: dict(e) for e in store.audit.list_entities()} == before
    (blob,) = store.deadletters.list_blobs(include=["metadata"])
    assert blob.metadata["recordindexes"] == "0,2" and blob.metadata["status"] == "new"


def test_a_records_dead_letter_replayed_and_failing_again_keeps_its_one_blob(
    cfg: Config, store: Store
) -> None:
    """A record's dead letter holds that record alone, replayed as an event of one record:
    read as record 0, it failed again into a second blob (named by its index), and the first
    stayed `new` for ever. It keeps its place in its event, so its one blob."""
    from pipeline.sources.deadletter_blobs import deadletter_inputs

    good = [apim.gateway(apim.new_id(f"dl-index-good-{i}")) for i in range(2)]
    body = orjson.dumps({"records": [*good, "junk-record"]})
    process_batch([EventIn(body, partition="0", sequence=7)], cfg, store)

    def dead() -> dict[str, dict[str, str]]:
        return {b.name: b.metadata for b in store.deadletters.list_blobs(include=["metadata"])}

    before = dead()
    assert [m["recordindex"] for m in before.values()] == ["2"]
    for _ in range(2):
        summary = replay(list(deadletter_inputs(store.deadletters, "")), cfg, store)
        assert summary.totals.events == 1 and summary.totals.dead_letters == 1
        after = dead()
        assert after.keys() == before.keys()
        assert [m["status"] for m in after.values()] == ["new"]
        assert [m["recordindex"] for m in after.values()] == ["2"]

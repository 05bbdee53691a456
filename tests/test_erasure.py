"""Crypto-shredding on Azurite: with ARCHIVE_ENCRYPTION=on and ARCHIVE_CAPTURE=full, no prompt
text is readable in any blob or table; `show` opens what is sealed; after `erase --user`
none of that user's content can be recovered from storage (by anyone holding every key that
is left, through replay from the archive or from the original events), other users' calls
still show; a legal hold blocks erase; redelivery stays idempotent."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import gzip
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.cli.main import main as cli
from pipeline.ingest.batch import park_batch, process_batch
from pipeline.model import EventIn
from pipeline.protect import archive, encryption
from pipeline.settings import Config
from pipeline.store import keys, rows
from pipeline.store.account import Store
from tests.conftest import settings_env
from tests.fixtures import apim, sources

KEK = "local:" + base64.b64encode(bytes(range(32))).decode()
ALICE = "00000000-aaaa-4aaa-8aaa-00000000a11c"  # the subject who asks to be erased
BOB = "00000000-bbbb-4bbb-8bbb-000000000b0b"
APP, TENANT = "8f0e2b1c-1111-4a2b-9c3d-5e6f7a8b9c0d", "72f988bf-86f1-41af-91ab-2d7cd011db47"
DAY = "2025-11-04"
LATER = datetime(2025, 11, 20, tzinfo=UTC)  # when an archive is sent to the hub again


def secret(user: str, i: int) -> str:
    # Words no detector masks (names, free text): only encryption keeps them unreadable.
    who = "Alice Wonderland of Quarry Lane" if user == ALICE else "Bob Builder of Mill Road"
    return f"Draft a letter for {who}, case {i}"


def call_events(
    user: str, i: int, *, day: str = DAY, response_id: str | None = None, prompt: str = ""
) -> list[EventIn]:
    """One call as a policy message (names the user) and its LLM-log records (which do not)."""
    cid = apim.new_id(f"erasure-{user}-{i}")
    time = f"{day}T10:{i:02d}:03.5Z"
    prompt = prompt or secret(user, i)
    request = apim.chat_request(("user", prompt))
    rid = response_id or f"chatcmpl-{cid[:8]}"
    response = apim.chat_response("ok", prompt=21, completion=9, rid=rid)
    response["choices"][0]["message"]["content"] = f"Dear reader, about {prompt}"
    policy = sources.policy_message(
        cid, time=time, request=request, response=response, caller=(APP, user, TENANT)
    )
    llm = apim.envelope(
        sources.llm_header(cid, time=time),
        sources.llm_messages(
            cid,
            [{"role": "user", "content": prompt}],
            [{"role": "assistant", "content": f"Dear reader, about {prompt}"}],
            time=time,
        ),
    )
    return [EventIn(policy, partition="0", sequence=i), EventIn(llm, partition="1", sequence=i)]


def cid_of(user: str, i: int) -> str:
    return apim.new_id(f"erasure-{user}-{i}")


@pytest.fixture
def scfg(cfg: Config) -> Config:
    return dataclasses.replace(
        cfg,
        archive_encryption=True,
        archive_kek=KEK,
        archive_capture="full",
        prompt_capture="full",
        preview_chars=200,
    )


@pytest.fixture
def sstore(scfg: Config) -> Iterator[Store]:
    s = Store(scfg)
    s.ensure()
    yield s
    s.close()


def events() -> list[EventIn]:
    out = []
    for i in range(3):
        out += call_events(ALICE, i) + call_events(BOB, i)
    return out


def everything_stored(store: Store) -> bytes:
    """Every byte in the account's blobs (inflated where gzip) and tables, as one text."""
    out = []
    for container in (store.archive, store.deadletters):
        for b in container.list_blobs():
            data = container.download_blob(b.name).readall()
            out.append(data)
            if b.name.endswith(".gz"):
                out.append(gzip.decompress(data))
    for table in (store.audit, store.archive_keys_table, store.legal_holds):
        for entity in table.list_entities():
            out.append(repr(dict(entity)).encode())
    return b"\n".join(out)


def recoverable(account: Store) -> str:
    """All content anyone can read with every key the key table still holds: each archive
    member opened, each row's sealed preview opened (a process of its own: no key cached)."""
    store = Store(account.cfg)
    out = []
    for b in store.archive.list_blobs():
        if not archive.BLOB_NAME.match(b.name):
            continue
        data = store.archive.download_blob(b.name).readall()
        keys = store.keys.blob_keys(b.name)
        for offset, _length, raw in archive.iter_members(data):
            member = orjson.loads(raw)
            key = keys.get(offset)
            if key is not None:
                out.append(orjson.dumps(archive.open_sealed(member, key)).decode())
    for entity in store.audit.list_entities():
        state = rows.state_from_entity(entity)
        for which, p in (
            ("prompt", state.prompt_preview),
            ("completion", state.completion_preview),
        ):
            if p is None:
                continue
            for frag in state.call.fragments.values():
                if frag.pointer is None:
                    continue
                key = store.keys.blob_keys(frag.pointer.blob).get(frag.pointer.offset)
                if key is None:
                    continue
                with contextlib.suppress(encryption.SealError):
                    out.append(encryption.open_text(key, p.text, which, state.call.correlation_id))
    return "\n".join(out)


def cli_env(monkeypatch: pytest.MonkeyPatch, cfg: Config) -> None:
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)


def test_sealed_archive_keeps_no_prompt_readable_and_show_opens_it(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    result = process_batch(events(), scfg, sstore)
    assert result.calls == 6 and result.dead_letters == 0
    # A record that cannot be parsed is dead-lettered sealed too.
    bad = EventIn(b'{"records": [{"time": "' + secret(ALICE, 9).encode() + b'", "x": [}')
    assert process_batch([bad], scfg, sstore).dead_letters == 1
    stored = everything_stored(sstore)
    for user in (ALICE, BOB):
        for i in (0, 1, 2, 9):
            assert secret(user, i).encode() not in stored
    assert b"Wonderland" not in stored and b"Builder" not in stored
    # ...while the keys open it all: the content is there, sealed.
    text = recoverable(sstore)
    assert all(secret(u, i) in text for u in (ALICE, BOB) for i in range(3))

    cli_env(monkeypatch, scfg)
    assert cli(["show", cid_of(ALICE, 1)]) == 0
    out = capsys.readouterr().out
    assert secret(ALICE, 1) in out  # the record and the opened previews
    assert "PromptPreview" in out and "enc:A256GCM:" not in out.split("Raw record")[0]
    # Replaying the sealed archive opens every member and changes no row.
    assert cli(["replay", "--from-archive", "--no-rollup"]) == 0
    assert "0 rows created, 0 updated, 6 unchanged" in capsys.readouterr().out


def test_redelivery_of_a_sealed_batch_rewrites_no_row(sstore: Store, scfg: Config) -> None:
    batch = events()
    first = process_batch(batch, scfg, sstore)
    again = process_batch(batch, scfg, sstore)
    assert first.created == 6
    assert (again.created, again.updated, again.unchanged) == (0, 0, 6)


def test_erase_user_leaves_nothing_of_theirs_recoverable_even_through_replay(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # A blob's keys in slices of 4 members: the slices of a big batch, on a small one.
    monkeypatch.setattr(keys, "MEMBERS_PER_ENTITY", 4)
    batch = events()
    process_batch(batch, scfg, sstore)
    assert len(list(sstore.archive_keys_table.list_entities())) == 5  # 18 records, 1 blob
    process_batch(batch[:4], scfg, sstore)  # a redelivery: copies no row points at
    cli_env(monkeypatch, scfg)

    assert cli(["erase", "--user", ALICE, "--from", DAY, "--to", DAY, "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert "would erase user" in dry and "3 calls" in dry
    assert secret(ALICE, 0) in recoverable(sstore)  # a dry run changes nothing

    assert cli(["erase", "--user", ALICE, "--from", DAY, "--to", DAY]) == 0
    out = capsys.readouterr().out
    assert "erased user 00000000…: 3 calls" in out and "erasure log:" in out
    assert ALICE not in out  # the subject is not echoed whole

    def check() -> None:
        text = recoverable(sstore)
        for i in range(3):
            assert secret(ALICE, i) not in text
            assert secret(BOB, i) in text
        assert "Wonderland" not in text
        for i in range(3):
            (row,) = sstore.find_rows(cid_of(ALICE, i))
            assert row.get("Erased") is not None
            assert "PromptPreview" not in row and "CompletionPreview" not in row
            (other,) = sstore.find_rows(cid_of(BOB, i))
            assert other.get("Erased") is None and other["PromptPreview"].startswith("enc:")

    check()
    assert cli(["show", cid_of(ALICE, 0)]) == 0
    shown = capsys.readouterr().out
    assert "erased" in shown and secret(ALICE, 0) not in shown
    assert cli(["show", cid_of(BOB, 0)]) == 0
    assert secret(BOB, 0) in capsys.readouterr().out

    # The erasure log: create-only in the WORM container, the subject as a keyed hash only.
    (log,) = [b.name for b in sstore.archive.list_blobs(name_starts_with="_erasures/")]
    entry = orjson.loads(sstore.archive.download_blob(log).readall())
    assert entry["subject"]["kind"] == "user" and ALICE not in orjson.dumps(entry).decode()
    assert entry["calls"] == 3 and entry["recordKeysDestroyed"] >= 6

    # Replay from our archive: erased members are not replayed; nothing comes back.
    assert cli(["replay", "--from-archive", "--no-rollup"]) == 0
    assert "archive member erased" in capsys.readouterr().out
    check()
    # Replay of the original events (Capture): re-archived, and their keys destroyed at once.
    process_batch(batch, scfg, sstore)
    check()


def test_a_legal_hold_blocks_erase_until_released(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    process_batch(events(), scfg, sstore)
    cli_env(monkeypatch, scfg)
    assert cli(["hold", "--case", "Case 2025-17", "--user", BOB, "--from", DAY, "--to", DAY]) == 0
    captured = capsys.readouterr()
    assert "hold 'Case 2025-17'" in captured.out
    # Azurite has no blob legal holds: said, not skipped silently.
    assert "does not support it" in captured.err
    assert cli(["erase", "--user", BOB]) == 2
    err = capsys.readouterr().err
    # The refusal names the held calls: one a sender forged under a held subscription is
    # a call the operator can tell apart, and erase the others by --call.
    assert "Case 2025-17" in err and f"held calls: {cid_of(BOB, 0)}" in err
    assert secret(BOB, 0) in recoverable(sstore)
    # A hold on a user covers their calls only: another user's erasure goes ahead.
    assert cli(["erase", "--user", ALICE]) == 0
    # A case name is never reused.
    assert cli(["hold", "--case", "Case 2025-17", "--user", BOB, "--from", DAY, "--to", DAY]) == 2
    assert cli(["release", "--case", "Case 2025-17"]) == 0
    capsys.readouterr()
    assert cli(["erase", "--user", BOB]) == 0
    assert secret(BOB, 0) not in recoverable(sstore)


def test_erase_refuses_without_a_kek(store: Store, cfg: Config, monkeypatch, capsys) -> None:
    cli_env(monkeypatch, cfg)
    monkeypatch.delenv("ARCHIVE_KEK")
    assert cli(["erase", "--call", "x"]) == 2
    assert "ARCHIVE_KEK" in capsys.readouterr().err


def test_verify_passes_on_a_sealed_archive_before_and_after_erasure(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    process_batch(events(), scfg, sstore)
    cli_env(monkeypatch, scfg)
    assert cli(["rollup", "--day", DAY]) == 0  # seals the day: its manifest
    assert cli(["verify", "--from", DAY, "--to", DAY]) == 0
    # Erasing by call, then by subscription: RawSha256 is the hash of the member as stored,
    # so verify checks erased members too, without any key.
    assert cli(["erase", "--call", cid_of(ALICE, 0)]) == 0
    assert "erased call" in capsys.readouterr().out
    assert secret(ALICE, 0) not in recoverable(sstore)
    assert secret(ALICE, 1) in recoverable(sstore)
    assert cli(["erase", "--subscription", "team-finance", "--from", DAY, "--to", DAY]) == 0
    assert "6 calls" in capsys.readouterr().out
    assert "Draft a letter" not in recoverable(sstore)
    assert cli(["verify", "--from", DAY, "--to", DAY]) == 0
    assert "no problem" in capsys.readouterr().out


def test_sealed_dead_letters_replay_and_a_wrong_kek_loses_nothing(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    batch = call_events(ALICE, 5)
    kek, wraps = sstore.keys.kek, []
    wrap = kek.wrap
    monkeypatch.setattr(kek, "wrap", lambda key: wraps.append(key) or wrap(key))
    assert park_batch(batch, scfg, sstore, "the batch failed (test)") == 2
    # The batch's dead letters share a data key, wrapped once (a Key Vault request per batch).
    assert len(wraps) == 1
    assert secret(ALICE, 5).encode() not in everything_stored(sstore)
    # Another KEK opens nothing: the dead letters stay, sealed as they were.
    other = dataclasses.replace(scfg, archive_kek="local:" + base64.b64encode(bytes(32)).decode())
    cli_env(monkeypatch, other)
    before = sorted(b.name for b in sstore.deadletters.list_blobs())
    assert cli(["replay", "--from-deadletter", "--no-rollup"]) == 0
    assert "no key of ours opens" in capsys.readouterr().err
    assert not sstore.find_rows(cid_of(ALICE, 5))
    # Left where they are, not written again, not marked done.
    assert sorted(b.name for b in sstore.deadletters.list_blobs()) == before
    meta = [b.metadata for b in sstore.deadletters.list_blobs(include=["metadata"])]
    assert [m["status"] for m in meta] == ["new", "new"]
    cli_env(monkeypatch, scfg)
    assert cli(["replay", "--from-deadletter", "--no-rollup"]) == 0
    capsys.readouterr()
    (row,) = sstore.find_rows(cid_of(ALICE, 5))
    assert row["PromptPreview"].startswith("enc:")
    assert cli(["show", cid_of(ALICE, 5)]) == 0
    assert secret(ALICE, 5) in capsys.readouterr().out
    # Under the wrong KEK, show says why it cannot read, and exits 1.
    cli_env(monkeypatch, other)
    assert cli(["show", cid_of(ALICE, 5)]) == 1
    assert "ARCHIVE_KEK is local:" in capsys.readouterr().err


def test_doctor_checks_the_kek_round_trip(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    cli_env(monkeypatch, scfg)
    cli(["doctor"])
    out = capsys.readouterr().out
    assert "PASS  archive encryption key (ARCHIVE_KEK) wraps and unwraps: local:" in out
    assert f"PASS  table {scfg.archive_keys_table} exists" in out


def test_a_response_id_no_row_can_be_keyed_by_stops_neither_erase_nor_hold(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # 300 characters escaped: more than a RowKey holds. Looked up as a twin's key, it
    # raised KeyTooLong, and `erase` and `hold` of the subject failed for good.
    process_batch(call_events(ALICE, 1, response_id="/" * 100), scfg, sstore)
    cli_env(monkeypatch, scfg)
    assert cli(["erase", "--user", ALICE, "--dry-run"]) == 0
    assert cli(["hold", "--case", "Forged", "--user", ALICE, "--from", DAY, "--to", DAY]) == 0
    assert cli(["release", "--case", "Forged"]) == 0
    capsys.readouterr()
    assert cli(["erase", "--user", ALICE]) == 0
    assert "1 call " in capsys.readouterr().out
    assert secret(ALICE, 1) not in recoverable(sstore)


def test_erase_finds_only_the_subjects_calls(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A ResponseId is what a body says: Alice's call naming Bob's correlation id as its
    response id does not make Bob's records hers. The days bound what is erased."""
    bob = call_events(BOB, 0)
    alice = call_events(ALICE, 1, response_id=cid_of(BOB, 0))
    later = call_events(ALICE, 2, day="2025-11-05")
    process_batch(bob + alice + later, scfg, sstore)
    cli_env(monkeypatch, scfg)
    assert cli(["hold", "--case", "Bob", "--user", BOB, "--from", DAY, "--to", DAY]) == 0
    # A hold on other days, or on another subscription, does not cover Alice's calls.
    assert (
        cli(
            ["hold", "--case", "Old", "--user", ALICE, "--from", "2025-01-01", "--to", "2025-01-31"]
        )
        == 0
    )
    assert cli(["erase", "--user", ALICE, "--from", DAY, "--to", DAY]) == 0
    assert "1 call " in capsys.readouterr().out
    text = recoverable(sstore)
    assert secret(ALICE, 1) not in text
    assert secret(BOB, 0) in text  # held, and never hers
    assert secret(ALICE, 2) in text  # another day
    # A hold on the subscription covers every user's calls in it.
    assert (
        cli(
            [
                "hold",
                "--case",
                "Team",
                "--subscription",
                "team-finance",
                "--from",
                "2025-11-05",
                "--to",
                "2025-11-05",
            ]
        )
        == 0
    )
    assert cli(["erase", "--user", ALICE]) == 2
    assert "'Team'" in capsys.readouterr().err
    assert secret(ALICE, 2) in recoverable(sstore)


def test_erase_deletes_the_subjects_dead_letters(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    process_batch(call_events(ALICE, 0) + call_events(BOB, 0), scfg, sstore)
    # The same calls parked once (a batch that failed on its last delivery).
    park_batch(call_events(ALICE, 0) + call_events(BOB, 0), scfg, sstore, "failed (test)")
    assert len(list(sstore.deadletters.list_blobs())) == 4
    # A forged call of hers whose id is one character: the ids are matched as ids, not as
    # any bytes (`{` is in every dead letter: they all went, Bob's too).
    (forged,) = call_events(ALICE, 1)[:1]
    forged_body = forged.body.replace(cid_of(ALICE, 1).encode(), b"{")
    process_batch([replace(forged, body=forged_body)], scfg, sstore)
    cli_env(monkeypatch, scfg)
    assert cli(["erase", "--user", ALICE, "--dry-run"]) == 0
    assert len(list(sstore.deadletters.list_blobs())) == 4
    assert cli(["erase", "--user", ALICE]) == 0
    assert "dead letters naming these calls: 2 deleted" in capsys.readouterr().out
    left = [
        sstore.open_dead_letter(sstore.deadletters.download_blob(b.name).readall(), sealed=True)
        for b in sstore.deadletters.list_blobs()
    ]
    assert len(left) == 2 and all(cid_of(BOB, 0).encode() in d for d in left)


@pytest.mark.parametrize(
    ("fixture", "call"),
    [("policy_shape_a.json", "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b")],
)
def test_erase_deletes_dead_letters_of_calls_keyed_by_a_policy_messages_id(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, fixture: str, call: str
) -> None:
    """A policy message names its call by `apimRequestId` (or `message-id`), not
    `correlationId`: its parked copy holds the prompt, and goes with the call (here without
    the response's `id`, which would name it too)."""
    doc = orjson.loads((Path(__file__).parent / "fixtures" / fixture).read_bytes())
    body = orjson.dumps({k: v for k, v in doc.items() if k != "id"})
    batch = [EventIn(body, partition="0", sequence=1)]
    assert process_batch(batch, scfg, sstore).calls == 1
    park_batch(batch, scfg, sstore, "failed (test)")
    assert len(list(sstore.deadletters.list_blobs())) == 1
    cli_env(monkeypatch, scfg)
    assert cli(["erase", "--call", call]) == 0
    assert not list(sstore.deadletters.list_blobs())


def test_erase_deletes_the_dead_letter_of_a_twin_joined_into_the_row(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A usage record keyed by its response's id, joined into the call's row: its parked
    copy names the call by that id alone, which the row keeps as ResponseId."""
    from tests.fixtures import aihub

    rid = "chatcmpl-9qx6I4RVJeFr2J0XkU8fC2sYYsBQO"
    cid = apim.new_id("twin-joined")
    gateway = apim.gateway(cid, time="2024-07-31T06:27:50Z", response=apim.chat_response(
        "ok", prompt=38, completion=222, rid=rid))  # fmt: skip
    usage = EventIn(aihub.usage_record(), partition="0", sequence=2)
    process_batch([EventIn(apim.envelope(gateway), partition="0", sequence=1), usage], scfg, sstore)
    sstore.join_twins("2024-07-31")
    assert [e["RowKey"] for e in sstore.audit.list_entities()] == [rows.row_key(cid)]
    park_batch([usage], scfg, sstore, "failed (test)")
    cli_env(monkeypatch, scfg)
    assert cli(["erase", "--call", cid]) == 0
    assert not list(sstore.deadletters.list_blobs())


def test_erase_finds_a_message_joined_to_its_call_only_by_the_backend_request_id(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AI-Gateway message of a call whose logged answer was cut before its `id`: not
    joined yet (the rollup has not run), it names the call only by the backend's request id.
    `erase --call` takes it too (its preview holds the prompt), and its parked copy."""
    record = orjson.loads(
        (Path(__file__).parent / "fixtures" / "gatewaylogs_chat.json").read_bytes()
    )["records"][0]
    answer = apim.chat_response("Clause 7. " * 1000, prompt=29, completion=3000)
    record["properties"]["backendResponseBody"] = record["properties"]["responseBody"] = (
        apim.cut_utf8(orjson.dumps(answer, option=orjson.OPT_SORT_KEYS).decode())
    )
    message = EventIn(sources.shape_a(answer["id"]), partition="0", sequence=2)
    gateway = EventIn(apim.envelope(record), partition="0", sequence=1)
    process_batch([gateway], scfg, sstore)
    process_batch([message], scfg, sstore)
    before = list(sstore.audit.list_entities())
    assert len(before) == 2  # apart until the rollup joins them
    assert all(e.get("PromptPreview") for e in before)
    park_batch([message], scfg, sstore, "failed (test)")
    cli_env(monkeypatch, scfg)
    assert cli(["erase", "--call", record["correlationId"]]) == 0
    assert all(e.get("Erased") for e in sstore.audit.list_entities())
    assert not any(e.get("PromptPreview") for e in sstore.audit.list_entities())
    assert not list(sstore.deadletters.list_blobs())


def test_erase_deletes_a_parked_message_naming_its_call_by_the_backend_request_id(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The AI-Gateway message of a call, parked before it became a row: it names the call
    only by the backend's request id (`apimRequestId`), which the call's row keeps."""
    record = orjson.loads(
        (Path(__file__).parent / "fixtures" / "gatewaylogs_chat.json").read_bytes()
    )["records"][0]
    process_batch([EventIn(apim.envelope(record), partition="0", sequence=1)], scfg, sstore)
    (row,) = sstore.audit.list_entities()
    assert row["BackendRequestId"] == orjson.loads(sources.shape_a("x"))["apimRequestId"]
    message = EventIn(sources.shape_a("chatcmpl-parked-never-a-row"), partition="0", sequence=2)
    park_batch([message], scfg, sstore, "failed (test)")
    cli_env(monkeypatch, scfg)
    assert cli(["erase", "--call", record["correlationId"]]) == 0
    assert not list(sstore.deadletters.list_blobs())


def test_a_prompt_that_looks_sealed_is_sealed_too(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    looks = "enc:A256GCM:" + "Carol Lighthouse of Harbour Street"
    process_batch(call_events(ALICE, 7, prompt=looks), scfg, sstore)
    assert b"Lighthouse" not in everything_stored(sstore)
    cli_env(monkeypatch, scfg)
    assert cli(["show", cid_of(ALICE, 7)]) == 0
    assert "Carol Lighthouse" in capsys.readouterr().out


def test_sealed_content_opens_only_where_it_was_sealed() -> None:
    """Associated data and nonces: a member's ciphertext moved to another member, or a
    prompt preview read as the completion, does not open."""
    key = encryption.new_key()
    sealed = encryption.seal_content(key, b'{"record": 1}', "call-a", "rid-a")
    assert encryption.open_content(key, sealed, "call-a", "rid-a") == {"record": 1}
    for cid, rid in (("call-b", "rid-a"), ("call-a", "rid-b")):
        with pytest.raises(encryption.SealError):
            encryption.open_content(key, sealed, cid, rid)
    prompt = encryption.seal_text(key, "hello", "prompt", "call-a")
    completion = encryption.seal_text(key, "hello", "completion", "call-a")
    assert prompt != completion
    assert encryption.open_text(key, prompt, "prompt", "call-a") == "hello"
    with pytest.raises(encryption.SealError):
        encryption.open_text(key, prompt, "completion", "call-a")
    with pytest.raises(encryption.SealError):
        encryption.open_text(key, prompt, "prompt", "call-b")


def test_republishing_a_sealed_archive_sends_records_opened_and_never_erased_ones(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from pipeline.cli import send as publish
    from pipeline.model import Archived, RawPointer
    from tests.test_infra import Recorder

    process_batch(events(), scfg, sstore)
    cli_env(monkeypatch, scfg)
    assert cli(["erase", "--user", ALICE]) == 0
    recorder = Recorder()
    monkeypatch.setattr(publish, "producer_for", lambda *a: recorder)
    conn = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=a"
    assert (
        cli(["replay", "--from-archive", "--to-eventhub", "hub", "--eventhub-connection", conn])
        == 0
    )
    assert "archive member erased: not sent" in capsys.readouterr().err
    sent = [e for b in recorder.sent for e in b._internal_events]
    bodies = b"\n".join(b"".join(e.body) for e in sent)
    assert len(sent) == 9  # Bob's 3 calls, 3 records each; none of Alice's
    assert secret(BOB, 1).encode() in bodies and b"Wonderland" not in bodies
    assert b'"sealed"' not in bodies
    # Ingested again, each points at its member: nothing archived anew, no row changed.
    again = []
    for e in sent:
        claim = orjson.loads(e.properties[publish.ARCHIVED_PROPERTY])
        pointer = RawPointer(claim["blob"], claim["offset"], claim["length"], claim["sha256"])
        # As the trigger makes it (sources/eventhub.py): the claim not yet checked.
        claim_of = Archived(pointer, claim["rid"])
        again.append(EventIn(b"".join(e.body), enqueued=LATER, archived=claim_of))
    result = process_batch(again, scfg, sstore)
    assert (result.new_archive_blobs, result.created, result.updated) == (0, 0, 0)
    assert result.unchanged == 3


# --- records in no fragment of their call (rivals that lost, message chunks past those kept)


def _many_chunks(cid: str, secret: str) -> list[EventIn]:
    t = "2025-03-04T10:15:03Z"
    chunks = [
        sources.llm_messages(cid, [{"role": "user", "content": f"{secret}{i}"}], seq=i, time=t)
        for i in range(45, 0, -1)  # the last first: kept chunks are displaced as lower ones come
    ]
    enqueued = datetime(2025, 3, 4, 10, 16, tzinfo=UTC)
    body = apim.envelope(sources.llm_header(cid, time=t), *chunks)
    return [EventIn(body, partition="0", sequence=1, enqueued=enqueued)]


def test_records_in_no_fragment_are_shown_erased_and_stay_erased_on_replay(
    scfg: Config, sstore: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    # 45 message chunks, a row keeps eight: the others are archived, the row says where
    # (the first 32: `show` prints them), `erase` destroys their keys, and a replay of the
    # original events after the erasure does not bring any back readable (past the 32 the
    # row remembers too).
    from pipeline.cli.show import raw_records
    from pipeline.compliance.erase import Subject, erase

    cid = "erased-many-chunks"
    process_batch(_many_chunks(cid, "SECRETPART"), scfg, sstore)
    (row,) = sstore.find_rows(cid)
    shown = {key for key, member, _ in raw_records(sstore, row) if member is not None}
    assert len(shown) == 8 + 1 + 32 and sum(key.startswith("other ") for key in shown) == 32
    readable = recoverable(sstore)
    assert all(f"SECRETPART{i}" in readable for i in range(1, 46))
    erase(sstore, Subject("call", cid), None, None)
    assert "SECRETPART" not in recoverable(sstore)
    process_batch(_many_chunks(cid, "SECRETPART"), scfg, sstore)  # replayed from Capture
    assert "SECRETPART" not in recoverable(sstore)


def test_a_losing_rival_archived_days_later_is_erased_too(scfg: Config, sstore: Store) -> None:
    # A record forged for a call (a sender on the hub) that loses the join, sent days after:
    # archived in a blob of that later day, which erasure finds only through the row.
    from pipeline.compliance.erase import Subject, erase
    from pipeline.ingest.batch import transform

    cid = "rival-days-later"
    genuine = apim.gateway(cid, time=f"{DAY}T10:00:00Z")
    day = datetime(2025, 11, 4, 10, 1, tzinfo=UTC)
    process_batch([EventIn(apim.envelope(genuine), partition="0", enqueued=day)], scfg, sstore)
    (row,) = sstore.find_rows(cid)
    won = rows.state_from_entity(row).call.fragments["gateway"].rid
    for n in range(200):  # a forgery whose rid is less than the genuine one's: it loses
        forged = orjson.loads(orjson.dumps(genuine))
        forged["properties"]["requestBody"] = orjson.dumps(
            {"messages": [{"role": "user", "content": f"FORGED SECRET {n}"}]}
        ).decode()
        event = EventIn(apim.envelope(forged), partition="0", enqueued=LATER)
        (frag,) = transform([event], scfg).plan.states[cid].call.fragments.values()
        if frag.rid < won:
            break
    process_batch([event], scfg, sstore)
    (row,) = sstore.find_rows(cid)
    assert row["Conflicts"] == 1 and "FORGED SECRET" in recoverable(sstore)
    erase(sstore, Subject("call", cid), None, None)
    assert "FORGED SECRET" not in recoverable(sstore)


def test_a_refused_late_record_of_an_erased_call_stays_unreadable(
    scfg: Config, sstore: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A late record of an erased call whose merged row Azure refuses: its new copy loses its
    # key all the same, and it is not kept as a dead letter either.
    from pipeline.compliance.erase import Subject, erase
    from tests.test_limits import _astral_call

    cid = "erased-then-refused"
    first = apim.envelope(apim.gateway(cid, time="2025-11-04T10:00:00Z"))
    process_batch([EventIn(first, partition="0")], scfg, sstore)
    erase(sstore, Subject("call", cid), None, None)
    monkeypatch.setattr(rows, "FRAGMENTS_INLINE_UNITS", 10**9)
    gateway_and_llm, policy = _astral_call(cid)
    doc = orjson.loads(policy.body)
    doc["requestBody"] = '{"messages":[{"role":"user","content":"SECRET-LATE"}]}'
    late = dataclasses.replace(policy, body=orjson.dumps(doc))
    result = process_batch([gateway_and_llm, late], scfg, sstore)
    assert result.dead_letters == 0 and not list(sstore.deadletters.list_blobs())
    assert "SECRET-LATE" not in recoverable(sstore)
    (row,) = sstore.find_rows(cid)
    assert row["Erased"] is not None


def _gateway_event(cid: str, subscription: str, day: str, prompt: str = "Hello") -> bytes:
    """A call of `subscription`, its ids its own (the fixture's answer and backend ids are
    every call's)."""
    record = apim.gateway(
        cid, time=f"{day}T10:15:02Z", apimSubscriptionId=subscription,
        request=apim.chat_request(("user", prompt)),
        response=apim.chat_response("ok", rid=f"chatcmpl-{cid.replace('-', '')}"),
        backendResponseHeaders={"apim-request-id": f"backend-{cid}"},
    )  # fmt: skip
    return apim.envelope(record)


def test_erase_takes_the_subjects_records_out_of_dead_letters_and_nothing_of_others(
    sstore: Store, scfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """The subject was matched as bytes anywhere: erasing `sales` deleted the dead letters of
    `wholesales-emea` and of a prompt about "sales" figures; a dead letter of an event holding
    other subscriptions' calls too went whole (calls never stored elsewhere, gone); with no
    days given, only dead letters within a day of the subject's rows were read, and those
    over 4 MiB were passed over in silence (black-box audit)."""
    enqueued = datetime(2025, 11, 4, 10, 16, tzinfo=UTC)
    ev = lambda body, seq, when=enqueued: EventIn(body, partition="0", sequence=seq, enqueued=when)  # noqa: E731
    stored = _gateway_event(apim.new_id("erase-sales-0"), "sales", DAY)
    cut = lambda body: body[: len(body) // 2]  # noqa: E731  an event that is not JSON
    other_sub = cut(_gateway_event(apim.new_id("erase-whole"), "wholesales-emea", DAY))
    quoted = cut(_gateway_event(apim.new_id("erase-hr-q"), "team-hr", DAY, 'the "sales" figures'))
    mixed = orjson.dumps(
        {
            "records": [
                *(
                    orjson.loads(
                        _gateway_event(apim.new_id(f"erase-hr-{d}"), "team-hr", f"2025-11-0{d}")
                    )["records"][0]
                    for d in (1, 2, 3)
                ),
                orjson.loads(_gateway_event(apim.new_id("erase-sales-1"), "sales", "2025-11-05"))[
                    "records"
                ][0],
            ]
        }
    )  # fmt: skip  four days: more than an event of APIM logs names, dead-lettered whole
    far = cut(_gateway_event(apim.new_id("erase-sales-far"), "sales", "2025-11-20"))
    process_batch(
        [ev(stored, 0), ev(other_sub, 1), ev(quoted, 2), ev(mixed, 3), ev(far, 4, LATER)],
        scfg, sstore,
    )  # fmt: skip
    assert len(list(sstore.deadletters.list_blobs())) == 4

    def dead() -> dict[str, tuple[bytes, dict[str, str]]]:
        out = {}
        for b in sstore.deadletters.list_blobs(include=["metadata"]):
            data = sstore.deadletters.download_blob(b.name).readall()
            out[b.name] = (sstore.open_dead_letter(data, sealed=True), b.metadata)
        return out

    before = dead()
    cli_env(monkeypatch, scfg)
    assert cli(["erase", "--subscription", "sales"]) == 0
    assert "1 deleted, 1 holding other calls too written again" in capsys.readouterr().out
    after = dead()
    assert set(after) == set(before) - {n for n, (d, _) in before.items() if d == far}
    for name, (data, meta) in after.items():
        if before[name][0] == mixed:
            records = orjson.loads(data)["records"]
            assert [r["properties"]["apimSubscriptionId"] for r in records] == ["team-hr"] * 3
            assert meta["erasedrecords"] == "1" and meta["sealed"]
        else:
            assert data == before[name][0]  # another subscription's, a prompt's word

    # One written meanwhile (a replay marked it done) is left, and said so, not overwritten.
    from azure.core.exceptions import ResourceModifiedError

    sales_2 = _gateway_event(apim.new_id("erase-sales-2"), "sales", "2025-11-05")
    hr = orjson.loads(mixed)["records"][:3]
    again = orjson.dumps({"records": [*hr, orjson.loads(sales_2)["records"][0]]})
    process_batch([ev(again, 9)], scfg, sstore)

    def modified(*_: Any) -> None:
        raise ResourceModifiedError("the blob changed")

    monkeypatch.setattr(Store, "rewrite_dead_letter", modified)
    assert cli(["erase", "--subscription", "sales"]) == 1
    assert "1 dead letters left as they were" in capsys.readouterr().out
    monkeypatch.undo()
    cli_env(monkeypatch, scfg)

    # A dead letter larger than any this pipeline writes is not read, and said so (exit 1).
    from pipeline.compliance import erase as erase_module

    monkeypatch.setattr(erase_module, "MAX_DEAD_LETTER_BYTES", 10)
    assert cli(["erase", "--subscription", "sales", "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "4 dead letters left as they were (larger than any" in out


def test_a_dead_letter_of_several_records_rewritten_keeps_the_places_of_those_left() -> None:
    """The dead letter of an event's bad records says where each was in the event; written
    again without the subject's, it says where those left were (one left: a record's)."""
    from pipeline.compliance.erase import _kept_places

    meta = {"recordindexes": "0,2,5", "status": "new"}
    assert _kept_places(meta, (0, 2)) == {"recordindexes": "0,5", "status": "new"}
    assert _kept_places(meta, (1,)) == {"recordindex": "2", "status": "new"}
    assert _kept_places({"recordindex": "3"}, (0,)) == {"recordindex": "3"}  # as it was

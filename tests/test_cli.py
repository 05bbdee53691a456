"""`python -m pipeline`: replay, show and demo, against real Azurite."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli.azurite import connection_string, free_port
from pipeline.cli.main import main
from pipeline.settings import Config
from pipeline.store.account import Store
from tests.conftest import settings_env
from tests.fixtures import apim
from tests.test_ingest import all_rows, blobs, comparable

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(cfg: Config, monkeypatch: pytest.MonkeyPatch) -> Config:
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    return cfg


def write_inputs(folder: Path) -> list[str]:
    ids = [apim.new_id(f"cli{i}") for i in range(5)]
    (folder / "sub").mkdir()
    lines = [
        apim.envelope(apim.gateway(ids[0]), apim.gateway(ids[1])),
        apim.envelope(apim.gateway(ids[2])),
    ]
    (folder / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n\n")
    (folder / "sub" / "b.json").write_bytes(
        apim.envelope(apim.gateway(ids[3]), apim.gateway(ids[4]))
    )
    (folder / "notes.txt").write_text("not an input")
    return ids


def test_replay_twice_changes_nothing(env: Config, store: Store, tmp_path: Path, capsys) -> None:
    ids = write_inputs(tmp_path)
    assert main(["replay", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 events, 5 records → 5 calls: 5 rows created" in out
    rows = {k: comparable(v) for k, v in all_rows(store).items()}
    assert sorted(rows) == sorted(ids)
    before = blobs(store)

    assert main(["replay", str(tmp_path), "--batch-size", "1"]) == 0
    assert "0 rows created, 0 updated, 5 unchanged" in capsys.readouterr().out
    assert {k: comparable(v) for k, v in all_rows(store).items()} == rows
    after = blobs(store)
    # Cut into other batches, the calls land in new archive blobs (allowed: "any archived
    # copy"), but no existing blob is touched and the rows keep their pointers.
    assert all(after[name] == before[name] for name in before)

    assert main(["replay", str(tmp_path)]) == 0  # the same files the same way: nothing new
    assert blobs(store) == after


def test_bad_lines_are_named_and_dead_lettered(
    env: Config, store: Store, tmp_path: Path, capsys
) -> None:
    good = apim.new_id("good-line")
    f = tmp_path / "mixed.jsonl"
    f.write_bytes(apim.envelope(apim.gateway(good)) + b"\n{oops\n\xff\xfe\n")
    assert main(["replay", str(f)]) == 0  # every line became a row or a dead letter
    captured = capsys.readouterr()
    assert f"{f}:2: dead-lettered: event body is not valid JSON" in captured.err
    assert f"{f}:3: dead-lettered" in captured.err
    assert "2 dead letters" in captured.out
    assert set(all_rows(store)) == {good}
    origins = {b.metadata["origin"] for b in store.deadletters.list_blobs(include=["metadata"])}
    assert origins == {f"file:{f}:2", f"file:{f}:3"}


def test_unreadable_input_fails_with_a_count(
    env: Config, store: Store, tmp_path: Path, capsys
) -> None:
    ok = tmp_path / "ok.json"
    ok.write_bytes(apim.envelope(apim.gateway(apim.new_id("ok"))))
    missing = tmp_path / "missing.jsonl"
    assert main(["replay", str(ok), str(missing)]) == 1
    captured = capsys.readouterr()
    assert f"error: {missing}: no such file or folder" in captured.err
    assert "1 inputs were not stored" in captured.err
    assert len(all_rows(store)) == 1  # the rest was processed


def test_unreachable_storage_is_an_error_not_a_traceback(
    env: Config, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / "x.json"
    f.write_bytes(apim.envelope(apim.gateway()))
    port = free_port()
    monkeypatch.setenv("STORAGE_RETRIES", "1")
    code = main(["replay", str(f), "--storage", connection_string(port, port, port)])
    assert code != 0
    assert "error: storage unreachable" in capsys.readouterr().err


def test_show_prints_the_row_and_its_verified_raw_record(
    env: Config, store: Store, tmp_path: Path, capsys
) -> None:
    cid = apim.new_id("show-me")
    (tmp_path / "one.json").write_bytes(apim.envelope(apim.gateway(cid)))
    assert main(["replay", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["show", cid]) == 0
    out = capsys.readouterr().out
    assert f"RowKey             {cid}" in out
    assert "TotalTokens        42" in out
    assert "Raw record (gateway, verified against RawSha256)" in out
    assert '"backendResponseBody"' in out
    assert main(["show", "no-such-call"]) == 1


def test_show_sends_no_escape_sequence_a_client_wrote(
    env: Config, store: Store, tmp_path: Path, capsys
) -> None:
    # A prompt that would set the terminal's title, clear the screen and fake a line of the
    # row: shown as escapes, on its own line.
    cid = apim.new_id("show-hostile")
    prompt = "\x1b]0;owned\x07\x1b[2Jhello\n  Status             200 \u009b2J\u009d0;x\x7f"
    rec = apim.gateway(cid, request=apim.chat_request(("user", prompt)))
    # A category name reaches replay's summary: with a fake line of it.
    other = {"category": "X\x1b[2J\u009b1A\n0 dead letters", "properties": {}}
    (tmp_path / "one.json").write_bytes(apim.envelope(rec, other))
    assert main(["replay", str(tmp_path)]) == 0
    summary = capsys.readouterr().out
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", summary)
    assert "(other categories: X\\x1b[2J\\x9b1A\\x0a0 dead letters: 1)" in summary
    assert main(["show", cid]) == 0
    out = capsys.readouterr().out
    # The row's columns and the raw record (JSON, still valid) send no control character.
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f]", out)
    (preview,) = [line for line in out.splitlines() if line.lstrip().startswith("PromptPreview")]
    assert "\\x1b[2Jhello\\x0a  Status" in preview


def test_demo_command_prints_rows_and_a_raw_record() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AUDIT_", "ARCHIVE_", "DEADLETTER_"))
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Audit rows in table AuditLog" in proc.stdout
    assert "team-finance" in proc.stdout and "gpt-4o-2024-08-06" in proc.stdout
    assert "Raw record (gateway, verified against RawSha256)" in proc.stdout

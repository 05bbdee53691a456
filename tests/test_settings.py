"""One list of settings feeds local.settings.sample.json (the docs' table: tests/test_docs.py)."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from pipeline.cli import settings as settings_command
from pipeline.cli.main import main
from pipeline.settings import SETTINGS, Config, SettingsError, azure_defaults, sample_values

ROOT = Path(__file__).resolve().parent.parent


def test_local_settings_sample_lists_every_setting() -> None:
    doc = orjson.loads((ROOT / "local.settings.sample.json").read_bytes())
    assert doc["Values"] == sample_values(), "stale: python -m pipeline settings --write"
    assert doc["IsEncrypted"] is False


def test_settings_write_regenerates_the_sample_and_app_settings_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "infra").mkdir()
    monkeypatch.setattr(settings_command, "REPO", tmp_path)
    assert main(["settings", "--write"]) == 0
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["infra/app-settings.json", "local.settings.sample.json"]  # no README
    sample = orjson.loads((tmp_path / "local.settings.sample.json").read_bytes())
    assert sample == {"IsEncrypted": False, "Values": sample_values()}
    assert orjson.loads((tmp_path / "infra" / "app-settings.json").read_bytes()) == (
        azure_defaults()
    )
    assert "README" not in capsys.readouterr().out


def test_settings_markdown_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "--markdown"]) == 0
    table = capsys.readouterr().out
    assert table == settings_command.settings_markdown() + "\n"
    assert main(["settings"]) == 0 and capsys.readouterr().out == table
    for s in SETTINGS:
        assert f"| `{s.name}` |" in table


def test_every_setting_has_a_default_and_a_doc_line() -> None:
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    for s in SETTINGS:
        assert s.doc and s.doc.endswith((".", ")"))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PREVIEW_CHARS": "lots"}, "PREVIEW_CHARS='lots': expected a whole number"),
        ({"PREVIEW_CHARS": "5000"}, "between 0 and 2000"),
        ({"AUDIT_TABLE": "audit-log"}, "AUDIT_TABLE='audit-log'"),
        ({"ARCHIVE_CONTAINER": "Audit_Raw"}, "ARCHIVE_CONTAINER='Audit_Raw'"),
        ({"AUDIT_SHARDS": "0"}, "AUDIT_SHARDS=0"),
    ],
)
def test_bad_settings_get_a_clear_message(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        Config.from_env(env)


def test_defaults() -> None:
    cfg = Config.from_env({})
    assert (cfg.audit_table, cfg.archive_container, cfg.deadletter_container) == (
        "AuditLog",
        "audit-raw",
        "audit-deadletter",
    )
    assert cfg.preview_chars == 100 and cfg.shards == 2

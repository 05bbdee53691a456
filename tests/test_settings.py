"""One list of settings feeds local.settings.sample.json and the README."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from pipeline.cli.main import settings_markdown
from pipeline.settings import SETTINGS, Config, SettingsError, sample_values

ROOT = Path(__file__).resolve().parent.parent


def test_local_settings_sample_lists_every_setting() -> None:
    doc = orjson.loads((ROOT / "local.settings.sample.json").read_bytes())
    assert doc["Values"] == sample_values(), "stale: python -m pipeline settings --write"
    assert doc["IsEncrypted"] is False


def test_readme_settings_table_is_generated_from_the_list() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", readme, re.S)
    assert block, "README lost its settings markers"
    assert block.group(1).strip() == settings_markdown(), (
        "README settings table is stale: python -m pipeline settings --write"
    )
    for s in SETTINGS:
        assert f"`{s.name}`" in readme


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

"""Tamper evidence on Azurite: the daily manifests of the archive (created once, chained) and
`verify`, which passes on an untouched archive and fails naming the blob after one is
overwritten, deleted or an unlisted one is added, and naming the link after a manifest is
changed."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any

import orjson
import pytest

from pipeline.cli.main import main as cli
from pipeline.compliance import manifests
from pipeline.compliance.seal import seal_days
from pipeline.compliance.verify import verify
from pipeline.ingest.batch import process_batch
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.store import archive_index
from pipeline.store.account import Store
from tests.conftest import settings_env
from tests.test_chargeback import DAYS, corpus, message


def load(store: Store, cfg: Config, calls: list[dict[str, Any]]) -> None:
    """One batch per day and 20 calls, so each day has archive blobs of its own."""
    for day in DAYS:
        mine = [c for c in calls if c["time"].startswith(str(day))]
        for i in range(0, len(mine), 20):
            process_batch([EventIn(message(c)) for c in mine[i : i + 20]], cfg, store)


@pytest.fixture
def sealed(store: Store, cfg: Config) -> list[str]:
    load(store, cfg, corpus(seed=21)[:90])
    done = seal_days(DAYS, store)
    assert [s.manifest for s in done] == [archive_index.manifest_name(d, 0) for d in DAYS]
    return [b.name for d in DAYS for b in archive_index.day_blobs(store, d)]


def problems(store: Store) -> list[str]:
    report = verify(store, DAYS[0], DAYS[-1])
    assert report.rows == 90 and report.blobs > 0 and report.manifests == len(DAYS)
    return report.problems


def test_an_untouched_archive_verifies_and_the_chain_links_the_days(
    sealed: list[str], store: Store, cfg: Config, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert problems(store) == []
    # The writer states each blob's SHA-256 as it creates it: sealing lists, never reads.
    for d in DAYS:
        for b in archive_index.day_blobs(store, d):
            data = store.archive.download_blob(b.name).readall()
            assert b.sha256 == hashlib.sha256(data).hexdigest()
    first, second = (archive_index.read(store, archive_index.manifest_name(d, 0)) for d in DAYS[:2])
    assert first is not None and second is not None
    doc = manifests.parse(second)
    assert doc["previous"] == {
        "name": archive_index.manifest_name(DAYS[0], 0),
        "sha256": manifests.digest(first),
    }
    assert {b["name"] for b in doc["blobs"]} == {
        b.name for b in archive_index.day_blobs(store, DAYS[1])
    }
    # Sealing again with nothing new writes nothing; the CLI says the range is sound.
    assert [s.manifest for s in seal_days(DAYS, store)] == [None] * len(DAYS)
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    assert cli(["verify", "--from", str(DAYS[0]), "--to", str(DAYS[-1])]) == 0
    assert "no problem" in capsys.readouterr().out


def test_an_overwritten_blob_is_named(sealed: list[str], store: Store) -> None:
    name = sealed[1]
    data = store.archive.download_blob(name).readall()
    store.archive.upload_blob(name, data[:-1] + bytes([data[-1] ^ 1]), overwrite=True)
    found = problems(store)
    assert any(p.startswith(f"blob {name}: changed") for p in found), found
    assert any(f"raw record in {name}" in p for p in found), found  # a row's member too


def test_a_deleted_blob_is_named(sealed: list[str], store: Store) -> None:
    store.archive.delete_blob(sealed[0])
    found = problems(store)
    assert any(
        p == f"blob {sealed[0]}: listed by the manifest of {DAYS[0]}, missing" for p in found
    )


def test_an_unlisted_blob_in_a_sealed_day_is_named(sealed: list[str], store: Store) -> None:
    name = f"{DAYS[2]:%Y/%m/%d}/13/{'0' * 40}.jsonl.gz"
    store.archive.upload_blob(name, b"forged")
    assert f"blob {name}: in sealed day {DAYS[2]} but in none of its manifests" in problems(store)


def test_a_changed_manifest_breaks_the_chain(sealed: list[str], store: Store) -> None:
    name = archive_index.manifest_name(DAYS[0], 0)
    doc = orjson.loads(archive_index.read(store, name) or b"")
    doc["blobs"] = doc["blobs"][1:]  # hide a blob
    store.archive.upload_blob(name, orjson.dumps(doc, option=orjson.OPT_SORT_KEYS), overwrite=True)
    found = problems(store)
    second = archive_index.manifest_name(DAYS[1], 0)
    assert f"manifest {second}: its previous manifest {name} was changed (SHA-256)" in found


def test_blobs_that_arrive_later_get_a_supplementary_manifest(
    sealed: list[str], store: Store, cfg: Config
) -> None:
    late = [{**c, "cid": c["cid"][:-4] + "late"} for c in corpus(seed=22)[:30]]
    late = [c for c in late if c["time"].startswith(str(DAYS[1]))]
    process_batch([EventIn(message(c)) for c in late], cfg, store)
    assert any("in none of its manifests" in p for p in verify(store, DAYS[0], DAYS[-1]).problems)
    done = {s.day: s for s in seal_days(DAYS, store)}
    supplement = archive_index.manifest_name(DAYS[1], 1)
    assert done[DAYS[1]].manifest == supplement and done[DAYS[0]].manifest is None
    doc = manifests.parse(archive_index.read(store, supplement) or b"")
    assert doc["previous"]["name"] == archive_index.manifest_name(DAYS[1], 0)
    report = verify(store, DAYS[0], DAYS[-1])
    assert report.problems == [] and report.manifests == len(DAYS) + 1


def test_a_blob_added_to_a_sealed_day_without_calls_is_named(store: Store, cfg: Config) -> None:
    """A day sealed with no blob at all is sealed too: a blob that appears there is named."""
    load(store, cfg, [c for c in corpus(seed=25)[:60] if not c["time"].startswith(str(DAYS[2]))])
    seal_days(DAYS, store)
    assert verify(store, DAYS[0], DAYS[-1]).problems == []
    name = f"{DAYS[2]:%Y/%m/%d}/05/{'1' * 40}.jsonl.gz"
    store.archive.upload_blob(name, b"forged")
    found = verify(store, DAYS[0], DAYS[-1]).problems
    assert found == [f"blob {name}: in sealed day {DAYS[2]} but in none of its manifests"]


def test_a_day_with_blobs_and_no_manifest_is_named(store: Store, cfg: Config) -> None:
    load(store, cfg, corpus(seed=23)[:30])
    seal_days(DAYS[:1], store)
    found = verify(store, DAYS[0], DAYS[1]).problems
    assert any(p.startswith(f"day {DAYS[1]}: ") and "no manifest" in p for p in found), found


def test_days_are_sealed_by_the_rollup_command(
    store: Store, cfg: Config, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    load(store, cfg, corpus(seed=24)[:30])
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    assert cli(["rollup", "--day", str(DAYS[-1]), "--days", str(len(DAYS))]) == 0
    assert "archive sealed" in capsys.readouterr().out
    assert list(archive_index.manifests(store)) == [archive_index.manifest_name(d, 0) for d in DAYS]
    assert date.fromisoformat("2025-11-03") == DAYS[0]


def test_verify_checks_that_each_row_points_at_its_own_call_in_the_sealed_archive(
    cfg: Config, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows are not sealed: verify checked only that a row's pointer held a member with its
    hash. A row pointed at another call's member, at a blob added outside the archive's names,
    or at a sealed member whose key entity was deleted (evidence destroyed with no erasure)
    passed (black-box audit). The demo's samples (twins joined by response and backend ids,
    rivals, LLM logs) verify clean; each of those is named."""
    import base64
    import dataclasses
    from pathlib import Path

    from pipeline.cli.runner import replay
    from pipeline.sources import files, inputs

    sealed_cfg = dataclasses.replace(
        cfg, archive_encryption=True, archive_kek="local:" + base64.b64encode(bytes(32)).decode()
    )
    store = Store(sealed_cfg)
    store.ensure()
    try:
        samples = Path(__file__).resolve().parent.parent / "samples"
        replay(list(files.local_inputs([samples], inputs.Filters())), sealed_cfg, store)
        days = sorted(
            {date.fromisoformat(e["PartitionKey"][:10]) for e in store.audit.list_entities()}
        )
        seal_days(days, store)
        assert verify(store, days[0], days[-1]).problems == []

        rows_ = [e for e in store.audit.list_entities() if e.get("RawBlob")]
        victim, other = rows_[0], rows_[1]
        entity = dict(victim)
        for k in ("RawBlob", "RawOffset", "RawLength", "RawSha256"):
            entity[k] = other[k]  # another call's member, hash and all
        store.audit.upsert_entity(entity)
        name = f"row {victim['RowKey']}"
        found = verify(store, days[0], days[-1]).problems
        assert [p for p in found if p.startswith(name)] == [
            f"{name}: its raw record in {other['RawBlob']} is another call's"
        ]
        # A twin's record joined into the row (named by the row's ResponseId) is its own.
        store.audit.upsert_entity({**entity, "ResponseId": other["RowKey"]})
        assert not [p for p in verify(store, days[0], days[-1]).problems if p.startswith(name)]
        entity["RawBlob"] = "zzz/forged.jsonl.gz"
        store.audit.upsert_entity(entity)
        assert (
            f"{name}: its raw record's blob zzz/forged.jsonl.gz is in no manifest"
            in verify(store, days[0], days[-1]).problems
        )
        # A row pointing nowhere, or at a place that is no number (it stopped verify).
        store.audit.upsert_entity({**entity, "RawBlob": other["RawBlob"], "RawOffset": "abc"})
        assert (
            f"{name}: its raw record's place is not a number"
            in verify(store, days[0], days[-1]).problems
        )
        bare = {k: v for k, v in victim.items() if not k.startswith("Raw")}
        store.audit.delete_entity(victim["PartitionKey"], victim["RowKey"])
        store.audit.create_entity(bare)
        assert f"{name}: points at no raw record" in verify(store, days[0], days[-1]).problems
        store.audit.delete_entity(victim["PartitionKey"], victim["RowKey"])
        store.audit.create_entity(victim)
        assert verify(store, days[0], days[-1]).problems == []

        blob = victim["RawBlob"]
        for key_entity in store.archive_keys_table.list_entities():
            if blob.endswith(key_entity["RowKey"].split("-", 1)[-1]):
                store.archive_keys_table.delete_entity(
                    key_entity["PartitionKey"], key_entity["RowKey"]
                )
        found = verify(store, days[0], days[-1]).problems
        assert f"{name}: the key entity of its sealed record is gone" in found
        # Replay from the archive meets members no key opens (not erased): not a whole run.
        for key, value in settings_env(sealed_cfg).items():
            monkeypatch.setenv(key, value)
        assert cli(["replay", "--from-archive", "--no-rollup", "--dry-run"]) == 1
        assert "archive member sealed, and no key of ours opens it" in capsys.readouterr().out
    finally:
        store.close()


def test_a_replay_that_adds_blobs_to_a_sealed_day_seals_it_again(
    store: Store, cfg: Config, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A replay of a sealed day's events writes a new blob there when no row changes (sealed:
    new keys, new bytes), and nothing sealed it again: `verify` named it as a planted blob
    until someone rolled the day up by hand (black-box audit). The replay seals the sealed
    days it added blobs to; a day not sealed yet waits for the daily job."""
    from pipeline.compliance.seal import seal_days as seal

    calls = corpus(seed=5)[:20]
    day = DAYS[0]
    mine = [c for c in calls if c["time"].startswith(str(day))] or calls[:3]
    path = tmp_path / "day.jsonl"
    path.write_bytes(b"\n".join(message(c) for c in mine) + b"\n")
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    assert cli(["replay", str(path), "--no-rollup"]) == 0
    days = sorted(
        {
            date.fromisoformat(b.name[:10].replace("/", "-"))
            for b in store.archive.list_blobs()
            if b.name[:4].isdigit()
        }
    )
    seal(days, store)
    assert verify(store, days[0], days[-1]).problems == []
    # The same events again, in other batches (a cut of one): new blobs in the sealed days.
    assert cli(["replay", str(path), "--no-rollup", "--batch-size", "1"]) == 0
    assert verify(store, days[0], days[-1]).problems == []
    # Sealing only days sealed before: a day with no manifest stays for the daily job.
    later = date(2031, 1, 1)
    assert seal([later], store, sealed_only=True) == []

"""Analytics export on Azurite: a multi-day corpus exported as Parquet, read back with pyarrow
and compared with the audit rows field by field; KPI and FOCUS totals equal the KPI rows; a
second export changes no byte; a changed day is replaced whole; `sql` answers through DuckDB;
the blob target works; no credential or unredacted prompt in any file."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from pipeline.cli.main import main as cli
from pipeline.export.columns import CALLS
from pipeline.ingest.batch import process_batch
from pipeline.kpi import daily
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.store import rows
from pipeline.store.account import Store
from tests.conftest import settings_env
from tests.fixtures import apim, sources
from tests.test_chargeback import DAYS, corpus, message

SECRET_EMAIL = "jane.doe@contoso.com"
SECRET_KEY = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"


def leaky_call() -> bytes:
    """A call whose prompt holds an e-mail address and an API key, and whose request carried
    a bearer token: under the default settings none of them may reach an exported file."""
    prompt = f"Mail {SECRET_EMAIL} the report; my key is {SECRET_KEY}."
    return sources.policy_message(
        apim.new_id("export-leaky"),
        time="2025-11-04T12:00:00.5Z",
        request=apim.chat_request(("user", prompt)),
        response=apim.chat_response(f"Sent to {SECRET_EMAIL}.", rid="chatcmpl-leaky"),
    )


def cached_call() -> bytes:
    """A call with cached prompt tokens (billed at gpt-4o's cached-input price) and a
    correlation id with characters a RowKey escapes (exported unescaped)."""
    return sources.policy_message(
        "batch/2025#7?retry",
        time="2025-11-05T09:30:00.5Z",
        request=apim.chat_request(("user", "Summarise the attached policy.")),
        response=apim.chat_response("Done.", prompt=4000, completion=300, cached=3072),
    )


@pytest.fixture
def loaded(store: Store, cfg: Config) -> list[dict[str, Any]]:
    calls = corpus(seed=11)
    extra = [EventIn(leaky_call()), EventIn(cached_call())]
    events = [EventIn(message(c)) for c in calls] + extra
    for i in range(0, len(events), 60):
        process_batch(events[i : i + 60], cfg, store)
    daily.roll_up(DAYS, cfg, store)
    return calls


def run(cfg: Config, monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    return cli(list(args))


def export(cfg: Config, monkeypatch: pytest.MonkeyPatch, where: list[str]) -> int:
    period = ["--from", str(DAYS[0]), "--to", str(DAYS[-1])]
    return run(cfg, monkeypatch, "export", *period, *where, "--what", "calls,kpi,focus")


def files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read(root: Path, dataset: str) -> list[dict[str, Any]]:
    out = []
    for path in sorted((root / dataset).glob("day=*/part-*.parquet")):
        out += pq.read_table(path).to_pylist()
    return out


def _plain(value: Any) -> Any:
    value = getattr(value, "value", value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(microsecond=value.microsecond)
    return value


def test_every_call_equals_its_audit_row_and_totals_match_the_kpis(
    loaded: list[dict[str, Any]],
    cfg: Config,
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "lake"
    assert export(cfg, monkeypatch, ["--to-dir", str(out)]) == 0
    exported = {r["CorrelationId"]: r for r in read(out, "calls")}
    audit = {rows.correlation_id_of(e["RowKey"]): e for e in store.audit.list_entities()}
    assert set(exported) == set(audit) and len(audit) == len(loaded) + 2
    assert exported["batch/2025#7?retry"]["CachedTokens"] == 3072
    names = [name for name, _ in CALLS if name != "CorrelationId"]
    for cid, entity in audit.items():
        got = exported[cid]
        for name in names:
            want = _plain(entity.get(name))
            assert got[name] == want, (cid, name, got[name], want)
    assert not {"PartitionKey", "RowKey", "Fragments"} & set(next(iter(exported.values())))

    manifest = orjson.loads((out / "_manifests" / f"day={DAYS[1]}.json").read_bytes())
    assert manifest["schemaVersion"] == "1" and set(manifest["datasets"]) == {
        "calls",
        "kpi",
        "focus",
    }
    for entries in manifest["datasets"].values():
        for e in entries:
            data = (out / e["path"]).read_bytes()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (e["bytes"], e["sha256"])
            assert pq.read_metadata(out / e["path"]).num_rows == e["rows"]

    kpi = read(out, "kpi")
    focus = read(out, "focus")
    for day in DAYS:
        (total,) = [
            e
            for e in store.kpi.query_entities("PartitionKey eq @d", parameters={"d": f"{day}"})
            if e["RowKey"] == "_total"
        ]
        (exported_total,) = [r for r in kpi if r["Day"] == day and r["IsTotal"]]
        assert (
            exported_total["CostUsd"] == total["CostUsd"]
            and exported_total["Calls"] == total["Calls"]
        )
        billed = sum(r["BilledCost"] for r in focus if r["ChargePeriodStart"].date() == day)
        assert abs(billed - total["CostUsd"]) <= 1e-6 and billed > 0
    row = focus[0]
    assert (row["ChargeCategory"], row["BillingCurrency"], row["ConsumedUnit"]) == (
        "Usage",
        "USD",
        "Tokens",
    )
    assert row["ServiceName"] == "Azure OpenAI" and row["x_TokenType"] in (
        "input",
        "cached input",
        "output",
    )
    tags = orjson.loads(row["Tags"])
    assert {"subscription", "product", "model", "deployment", "tokenType"} <= set(tags)
    assert (
        abs(row["ListCost"] - row["ListUnitPrice"] * row["PricingQuantity"]) < 1e-12
        or not row["x_Priced"]
    )


def test_no_credential_or_unredacted_prompt_in_any_file(
    loaded: list[dict[str, Any]], cfg: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "lake"
    assert export(cfg, monkeypatch, ["--to-dir", str(out)]) == 0
    text = []
    for dataset in ("calls", "kpi", "focus"):
        text += [orjson.dumps(r, default=str).decode() for r in read(out, dataset)]
    everything = "\n".join(text)
    assert "[EMAIL]" in everything  # the prompt is there, masked
    for secret in (SECRET_EMAIL, SECRET_KEY, "eyJ"):
        assert secret not in everything


def test_a_second_export_changes_no_byte_and_a_changed_day_is_replaced_whole(
    loaded: list[dict[str, Any]],
    cfg: Config,
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "lake"
    assert export(cfg, monkeypatch, ["--to-dir", str(out)]) == 0
    first = files(out)
    capsys.readouterr()
    assert export(cfg, monkeypatch, ["--to-dir", str(out)]) == 0
    assert files(out) == first
    assert capsys.readouterr().out.count("unchanged (nothing rewritten)") == len(DAYS)

    late = {**corpus(seed=11)[0], "cid": apim.new_id("export-late"), "time": f"{DAYS[1]}T08:00:00Z"}
    process_batch([EventIn(message(late))], cfg, store)
    daily.roll_up([DAYS[1]], cfg, store)
    assert export(cfg, monkeypatch, ["--to-dir", str(out)]) == 0
    now = files(out)
    changed = {p for p in set(first) | set(now) if first.get(p) != now.get(p)}
    day = f"day={DAYS[1]}"
    assert changed and all(day in p for p in changed)  # the other days: not a byte
    for dataset in ("calls", "kpi", "focus"):  # the previous version is gone, whole
        assert f"{dataset}/{day}/part-0000.parquet" not in now
        assert f"{dataset}/{day}/part-0001.parquet" in now
    exported = {r["CorrelationId"] for r in read(out, "calls")}
    assert late["cid"] in exported and len(exported) == len(loaded) + 3


def test_sql_answers_through_duckdb_and_the_blob_target_works(
    loaded: list[dict[str, Any]],
    cfg: Config,
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "lake"
    assert export(cfg, monkeypatch, ["--to-dir", str(out)]) == 0
    container = f"lake-{cfg.archive_container}"
    assert export(cfg, monkeypatch, ["--to-blob", f"{container}/exports/aoai"]) == 0
    blobs = [b.name for b in store.blobs.get_container_client(container).list_blobs()]
    assert f"exports/aoai/_manifests/day={DAYS[0]}.json" in blobs
    assert f"exports/aoai/calls/day={DAYS[0]}/part-0000.parquet" in blobs

    query = (
        "SELECT day, count(*) AS calls, sum(TotalTokens) AS tokens FROM calls "
        "GROUP BY day ORDER BY day"
    )
    answers = []
    for source in (["--dir", str(out)], ["--blob", f"{container}/exports/aoai"]):
        capsys.readouterr()
        assert run(cfg, monkeypatch, "sql", query, *source, "--format", "json") == 0
        answers.append(orjson.loads(capsys.readouterr().out))
    assert answers[0] == answers[1]
    want = {}
    for e in store.audit.list_entities():
        day = e["PartitionKey"][:10]
        want[day] = want.get(day, 0) + 1
    assert {a["day"]: a["calls"] for a in answers[0]} == want
    capsys.readouterr()
    assert run(cfg, monkeypatch, "sql", "SELECT sum(BilledCost) FROM focus", "--dir", str(out)) == 0
    # Row values are any sender's: in CSV, one starting like a formula stays text.
    capsys.readouterr()
    forged = "SELECT '=HYPERLINK(\"https://x\")' AS deployment, 3 AS calls FROM calls LIMIT 1"
    assert run(cfg, monkeypatch, "sql", forged, "--dir", str(out), "--format", "csv") == 0
    assert capsys.readouterr().out.splitlines()[1] == '"\'=HYPERLINK(""https://x"")",3'
    assert run(cfg, monkeypatch, "sql", "SELECT nope FROM calls", "--dir", str(out)) == 2
    assert "error:" in capsys.readouterr().err


def test_the_engines_scripts_name_the_exported_columns() -> None:
    """infra/analytics/ cannot run here (no cluster, no workspace): at least their column
    lists are the export's, with matching types."""
    root = Path(__file__).resolve().parent.parent / "infra" / "analytics"
    kql = (root / "adx.kql").read_text()
    table = kql[kql.index(".create-or-alter external table AoaiCalls (") :].split(")", 1)[0]
    kql_types = {"string": "string", "int64": "long", "bool": "bool", "timestamp": "datetime"}
    assert [tuple(c.strip().split(": ")) for c in table.split("(", 1)[1].split(",")] == [
        (name, kql_types[kind]) for name, kind in CALLS
    ]
    sql = (root / "fabric-synapse.sql").read_text()
    with_clause = sql[sql.index(") WITH (") + 8 : sql.index(") AS r;")]
    names = [line.split()[0] for line in with_clause.strip().splitlines()]
    assert names == [name for name, _ in CALLS]


def test_the_daily_timer_exports_what_it_rolled_up(
    loaded: list[dict[str, Any]], cfg: Config, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline import runtime
    from tests.test_function_app import _functions

    container = f"timer-{cfg.archive_container}"
    env = {**settings_env(cfg), "EXPORT_TARGET": f"blob:{container}/aoai", "KPI_REROLL_DAYS": "0"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # The timer rolls up yesterday: pretend today is the day after the corpus's second day.
    import function_app

    monkeypatch.setattr(function_app, "days_to_roll", lambda today, reroll: [DAYS[1]])
    runtime.reset()
    try:
        _functions()["rollup"].get_user_function()(None)
    finally:
        runtime.reset()
    blobs = sorted(b.name for b in store.blobs.get_container_client(container).list_blobs())
    assert blobs == [
        f"aoai/_manifests/day={DAYS[1]}.json",
        f"aoai/calls/day={DAYS[1]}/part-0000.parquet",
        f"aoai/focus/day={DAYS[1]}/part-0000.parquet",
        f"aoai/kpi/day={DAYS[1]}/part-0000.parquet",
    ]
    with pytest.raises(Exception, match="EXPORT_TARGET"):
        Config.from_env({"EXPORT_TARGET": "abfss://lake"})


def test_the_function_app_imports_no_analytics_library() -> None:
    """pyarrow and duckdb cost the cold start of every function: only an export loads them."""
    import subprocess
    import sys

    code = (
        "import sys, function_app; "
        "print(sorted(m for m in ('pyarrow', 'duckdb') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_files_the_manifest_does_not_list_are_ignored_then_removed(
    loaded: list[dict[str, Any]],
    cfg: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An export that stopped between its manifest and its deletes leaves a file the manifest
    does not list: `sql` reads through the manifests (each row once), and the next export
    removes it, so engines that read the folders count each row once too."""
    out = tmp_path / "lake"
    assert export(cfg, monkeypatch, ["--to-dir", str(out)]) == 0
    folder = out / "calls" / f"day={DAYS[0]}"
    stray = folder / "part-0007.parquet"
    stray.write_bytes((folder / "part-0000.parquet").read_bytes())
    capsys.readouterr()
    query = "SELECT count(*) AS n FROM calls"
    assert run(cfg, monkeypatch, "sql", query, "--dir", str(out), "--format", "json") == 0
    assert orjson.loads(capsys.readouterr().out) == [{"n": len(loaded) + 2}]
    assert export(cfg, monkeypatch, ["--to-dir", str(out)]) == 0
    assert not stray.exists() and (folder / "part-0000.parquet").exists()


def test_focus_tags_name_the_team_when_a_map_exists(
    loaded: list[dict[str, Any]],
    cfg: Config,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.test_chargeback import MAP, expected_team

    path = tmp_path / "map.json"
    path.write_bytes(orjson.dumps(MAP))
    monkeypatch.setenv("ATTRIBUTION", str(path))
    out = tmp_path / "lake"
    assert export(cfg, monkeypatch, ["--to-dir", str(out)]) == 0
    teams = {orjson.loads(r["Tags"]).get("team") for r in read(out, "focus")}
    priced_teams = {expected_team(c, MAP["rules"]) for c in loaded if c["status"] == 200}
    assert teams == priced_teams | {"Unattributed"} or teams == priced_teams
    claims = [r for r in read(out, "focus") if orjson.loads(r["Tags"]).get("team") == "Claims"]
    assert claims and all(orjson.loads(r["Tags"])["costCenter"] == "CC-4100" for r in claims)


def _planted(lake: Path, day: str, paths: list[str]) -> None:
    """A manifest written by whoever can write to the export, naming files not ours."""
    entries = [{"path": p, "rows": 1, "bytes": 1, "sha256": "x"} for p in paths]
    doc = {"day": day, "schemaVersion": "1", "datasets": {"calls": entries}}
    (lake / "_manifests").mkdir(parents=True, exist_ok=True)
    (lake / "_manifests" / f"day={day}.json").write_bytes(orjson.dumps(doc))


def test_a_planted_manifest_deletes_nothing_outside_the_days_files(tmp_path: Path) -> None:
    """`export` deleted the files the previous manifest listed, whatever they were: a
    manifest naming `../victim.txt` made it delete a file outside the export."""
    from pipeline.export import days
    from pipeline.store.exports import DirTarget

    lake, day = tmp_path / "lake", DAYS[0]
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    other = lake / "calls" / f"day={DAYS[1]}" / "part-0000.parquet"  # another day's file
    other.parent.mkdir(parents=True)
    other.write_text("kept")
    listed = [
        "../victim.txt",
        f"calls/day={day}/../../victim.txt",
        str(victim),
        f"calls/day={DAYS[1]}/part-0000.parquet",
    ]
    _planted(lake, f"{day}", listed)
    source = tmp_path / "part.parquet"
    source.write_bytes(b"PAR1")
    produced = {"calls": [days.Produced(source, 1).seal()]}
    result = days.publish(day, produced, DirTarget(lake))
    assert victim.read_text() == "precious" and other.read_text() == "kept"
    assert len(result.problems) == len(listed)
    assert result.files == [f"calls/day={day}/part-0000.parquet"]
    manifest = orjson.loads((lake / "_manifests" / f"day={day}.json").read_bytes())
    assert [e["path"] for e in manifest["datasets"]["calls"]] == result.files


def test_a_local_export_never_reads_writes_or_deletes_outside_its_folder(tmp_path: Path) -> None:
    from pipeline.export import sql
    from pipeline.store.exports import DirTarget

    lake, outside = tmp_path / "lake", tmp_path / "outside"
    (lake / "calls").mkdir(parents=True)
    outside.mkdir()
    (outside / "part-0000.parquet").write_text("theirs")
    (lake / "calls" / "day=2025-11-03").symlink_to(outside)  # a folder that leads out
    target = DirTarget(lake)
    for path in ("../outside/part-0000.parquet", "calls/day=2025-11-03/part-0000.parquet"):
        with pytest.raises(ValueError, match="outside"):
            target.delete(path)
        with pytest.raises(ValueError, match="outside"):
            target.read(path)
        with pytest.raises(ValueError, match="outside"):
            target.fetch(path, tmp_path / "copy")
    assert (outside / "part-0000.parquet").read_text() == "theirs"
    # `sql --blob` copies what the manifests list to a temporary folder: never beside it.
    _planted(lake, "2025-11-04", ["../../escaped.parquet"])
    found, problems = sql.manifests(target)
    assert found == [{"day": "2025-11-04", "datasets": {"calls": []}}] and len(problems) == 1

    class Blobs:  # a blob's name may hold `..`: the copy is what must not follow it
        def fetch(self, path: str, to: Path) -> None:
            to.parent.mkdir(parents=True, exist_ok=True)
            to.write_text(path)

    with pytest.raises(ValueError, match="outside"):
        sql.mirror(Blobs(), ["calls/../../escaped.parquet"], tmp_path / "work")  # type: ignore[arg-type]
    assert not (tmp_path / "escaped.parquet").exists()

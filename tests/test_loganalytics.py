"""Log Analytics rows (`ApiManagementGatewayLogs`, `ApiManagementGatewayLlmLog`) as a source:
the same rows as their diagnostic-setting twins, in every form a workspace's rows leave Azure
Monitor (az CLI JSON, the portal's CSV, a data export rule's JSON lines), through replay.

Row shapes: tests/fixtures/loganalytics.py (columns from the Azure Monitor table reference).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.call.join import resolve
from pipeline.cli import runner
from pipeline.cli.runner import replay
from pipeline.ingest.plan import plan_batch
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.sources import files, inputs
from pipeline.sources.loganalytics import row_time, table_of
from pipeline.store import rows
from pipeline.store.account import Store
from tests.fixtures import apim, shapes, sources
from tests.fixtures import loganalytics as la
from tests.test_ingest import all_rows

CASES = shapes.cases()
GATEWAY_CASES = sorted(n for n, (rec, _) in CASES.items() if rec.get("category") == "GatewayLogs")

# Every documented ApiManagementGatewayLogs column (learn.microsoft.com/azure/azure-monitor/
# reference/tables/apimanagementgatewaylogs): a query returns all of them, null or empty
# when the record had no such value.
ALL_GATEWAY_COLUMNS = [
    "ApiId",
    "ApimSubscriptionId",
    "ApiRevision",
    "BackendId",
    "BackendMethod",
    "BackendProtocol",
    "BackendRequestBody",
    "BackendRequestHeaders",
    "BackendResponseBody",
    "BackendResponseCode",
    "BackendResponseHeaders",
    "BackendTime",
    "BackendUrl",
    "Cache",
    "CacheTime",
    "CallerIpAddress",
    "Category",
    "ClientProtocol",
    "ClientTime",
    "ClientTlsVersion",
    "CorrelationId",
    "Errors",
    "IsMasterTrace",
    "IsRequestSuccess",
    "IsTraceAllowed",
    "IsTraceExpired",
    "IsTraceRequested",
    "LastErrorElapsed",
    "LastErrorMessage",
    "LastErrorReason",
    "LastErrorScope",
    "LastErrorSection",
    "LastErrorSource",
    "Method",
    "OperationId",
    "OperationName",
    "ProductId",
    "Region",
    "RequestBody",
    "RequestHeaders",
    "RequestSize",
    "ResponseBody",
    "ResponseCode",
    "ResponseHeaders",
    "ResponseSize",
    "SourceSystem",
    "TenantId",
    "TimeGenerated",
    "TotalTime",
    "TraceRecords",
    "Type",
    "Url",
    "UserId",
    "_ResourceId",
    "_SubscriptionId",
]
STRING_COLUMNS = frozenset(
    [
        "ApiId",
        "ApimSubscriptionId",
        "ApiRevision",
        "BackendId",
        "BackendMethod",
        "BackendProtocol",
        "BackendRequestBody",
        "BackendResponseBody",
        "BackendUrl",
        "Cache",
        "ClientProtocol",
        "ClientTlsVersion",
        "LastErrorMessage",
        "LastErrorReason",
        "LastErrorScope",
        "LastErrorSection",
        "LastErrorSource",
        "Method",
        "OperationId",
        "ProductId",
        "RequestBody",
        "ResponseBody",
        "Url",
        "UserId",
    ]
)


def entity(*bodies: bytes) -> dict[str, Any]:
    plan = plan_batch([EventIn(b) for b in bodies], Config())
    assert not plan.dead, plan.dead[0].reason
    (state,) = plan.states.values()
    row = rows.to_entity(resolve(state), state, 2)
    # The raw record's identity differs (other bytes); every value of the row must not.
    row.pop("Fragments")
    return row


def every_column(row: dict[str, Any]) -> dict[str, Any]:
    """The row as a query returns it: every column, empty strings and nulls included."""
    return {c: row.get(c, "" if c in STRING_COLUMNS else None) for c in ALL_GATEWAY_COLUMNS}


def projected(row: dict[str, Any]) -> dict[str, Any]:
    """A query that projected the standard columns away (no `Type`)."""
    return {k: v for k, v in row.items() if k not in ("Type", "TenantId", "SourceSystem")}


FORMS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "query-api": lambda r: r,
    "az-cli": la.az_cli,
    "az-cli-every-column": lambda r: la.az_cli(every_column(r)),
    "without-type": projected,
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_gateway_rows_give_the_rows_of_their_diagnostic_twins(form: str) -> None:
    for name in GATEWAY_CASES:
        record = CASES[name][0]
        want = entity(apim.envelope(record))
        got = entity(orjson.dumps(FORMS[form](la.gateway_row(record))))
        assert got == want, name


@pytest.mark.parametrize("form", ["query-api", "az-cli", "without-type"])
def test_llm_log_rows_join_their_gateway_row(form: str) -> None:
    cid = apim.new_id("la-llm")
    gateway = apim.gateway(cid, response=None)  # streamed: tokens only in the LLM log
    header = sources.llm_header(cid, prompt=120, completion=45, stream=True)
    messages = sources.llm_messages(
        cid,
        [{"role": "user", "content": "Which receipts do I keep?"}],
        [{"role": "assistant", "content": "All of them, for 30 days."}],
    )
    want = entity(apim.envelope(gateway, header, messages))
    convert = FORMS[form]
    got = entity(
        *(orjson.dumps(convert(la.gateway_row(gateway))),),
        *(orjson.dumps(convert(la.llm_row(r))) for r in (header, messages)),
    )
    assert got == want
    assert got["Sources"] == "gateway,llm" and got["TokensSource"] == "llm-log"
    assert (got["PromptTokens"], got["CompletionTokens"], got["Streamed"]) == (120, 45, True)


def test_a_row_is_recognised_by_its_type_or_its_columns() -> None:
    record = CASES["chat"][0]
    row = {k.lower(): v for k, v in la.gateway_row(record).items()}
    assert table_of(row) == "gateway"
    assert table_of({k: v for k, v in row.items() if k != "type"}) == "gateway"
    llm = {k.lower(): v for k, v in la.llm_row(sources.llm_header("c")).items()}
    assert table_of(llm) == "llm"
    assert table_of({k: v for k, v in llm.items() if k != "type"}) == "llm"
    # A diagnostic-setting record (it has `time`) is not a row, whatever else it carries.
    assert table_of({"time": "2025-03-04T10:15:02Z", "timegenerated": "x", "url": "u"}) is None
    assert table_of({"timegenerated": "2025-03-04T10:15:02Z", "computer": "vm1"}) is None


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        # query API, az CLI, data export, `tostring(TimeGenerated)` in a CSV
        ("2025-03-04T10:15:02.1234567Z", datetime(2025, 3, 4, 10, 15, 2, 123456, tzinfo=UTC)),
        # the portal's display forms (azure-docs issue #66181; the en-US one inferred)
        ("2020/10/16 0:00:01.403", datetime(2020, 10, 16, 0, 0, 1, 403000, tzinfo=UTC)),
        ("10/16/2020, 12:00:01.403 AM", datetime(2020, 10, 16, 0, 0, 1, 403000, tzinfo=UTC)),
        ("3/4/2025, 1:15:02.123 PM", datetime(2025, 3, 4, 13, 15, 2, 123000, tzinfo=UTC)),
        ("2025/13/40 0:00:01", None),
        ("yesterday", None),
    ],
)
def test_row_times_in_every_form_a_workspace_writes_them(
    written: str, expected: datetime | None
) -> None:
    assert row_time(written) == expected


def calls(tag: str, n: int) -> list[dict[str, Any]]:
    return [
        apim.gateway(
            apim.new_id(f"{tag}-{i}"),
            time=f"2025-03-04T10:{10 + i:02d}:02.1234567Z",
            request=apim.chat_request(("user", f"Question {i} of {tag}")),
        )
        for i in range(n)
    ]


def test_replay_reads_az_cli_json_portal_csv_and_data_export_files(
    cfg: Config, store: Store, tmp_path: Path
) -> None:
    """One folder with the three ways rows leave a workspace, each holding a row that cannot
    be read: every good row becomes the row its diagnostic twin gives, every bad one a dead
    letter with its bytes and the reason."""
    az, csv_calls, export = calls("az", 3), calls("csv", 3), calls("export", 3)
    no_time = la.az_cli(la.gateway_row(apim.gateway(apim.new_id("az-no-time"))))
    del no_time["TimeGenerated"]
    (tmp_path / "query.json").write_bytes(
        orjson.dumps(
            [*(la.az_cli(la.gateway_row(r)) for r in az), no_time], option=orjson.OPT_INDENT_2
        )
    )
    csv_bytes = la.portal_csv([la.gateway_row(r) for r in csv_calls])
    header, *lines = csv_bytes.split(b"\r\n")
    broken = b'"only","three","cells"'
    (tmp_path / "export.csv").write_bytes(b"\r\n".join([header, lines[0], broken, *lines[1:]]))
    blob = tmp_path / la.export_path("ApiManagementGatewayLogs", "2025-03-04T10:12:02Z")
    blob.parent.mkdir(parents=True)
    lines_ = la.json_lines([la.gateway_row(r) for r in export])
    blob.write_bytes(lines_ + b'{"TimeGenerated": "2025-03-04T10:13:00Z", "Url": \n')

    items = list(files.local_inputs([tmp_path], inputs.Filters()))
    assert len(items) == 3
    said: list[str] = []
    summary = replay(items, cfg, store, say=said.append)

    got = all_rows(store)
    assert set(got) == {r["correlationId"] for r in az + csv_calls + export}
    for record in az + csv_calls + export:
        want = entity(apim.envelope(record))
        row = got[record["correlationId"]]
        for key in ("CallTime", "Model", "TotalTokens", "ApimService", "SubscriptionId", "Url"):
            value = getattr(row.get(key), "value", row.get(key))
            if key == "CallTime":
                value = value.isoformat()[:23]
                assert value == want[key].isoformat()[:23]
            else:
                assert value == want[key], (record["correlationId"], key)
        assert row["PromptPreview"] == want["PromptPreview"]
    dead = {
        b.metadata["origin"]: (b.metadata["reason"], store.deadletters.download_blob(b.name))
        for b in store.deadletters.list_blobs(include=["metadata"])
    }
    assert summary.totals.dead_letters == 3 == len(dead)
    reasons = {origin.rsplit("/", 1)[-1]: reason for origin, (reason, _) in dead.items()}
    assert reasons["query.json:row 4"] == "ApiManagementGatewayLogs row without a readable time"
    # line 4: the first row spans lines 2-3 (its response body ends with a newline)
    assert "not valid JSON" in reasons["export.csv:line 4"]
    assert "not valid JSON" in reasons["PT05M.json:4"]
    assert any(b'"only","three","cells"' in body.readall() for _, body in dead.values())
    # The damaged CSV row is also named, with why, among the run's problems.
    assert any("3 cells where the header names" in p.message for p in summary.problems)


def test_data_export_folders_are_filtered_by_their_time(tmp_path: Path) -> None:
    for minute in ("05", "10", "15"):
        path = tmp_path / la.export_path("ApiManagementGatewayLlmLog", f"2025-03-04T10:{minute}")
        path.parent.mkdir(parents=True)
        path.write_bytes(la.json_lines([la.llm_row(sources.llm_header(minute))]))
    window = inputs.Filters(
        since=datetime(2025, 3, 4, 10, 10, tzinfo=UTC),
        until=datetime(2025, 3, 4, 10, 15, tzinfo=UTC),
    )
    (item,) = files.local_inputs([tmp_path], window)
    assert "/m=10/PT05M.json" in item.label


def test_csv_in_local_time_is_refused_not_misread(tmp_path: Path) -> None:
    body = la.portal_csv([la.gateway_row(CASES["chat"][0])]).replace(b"[UTC]", b"[Local Time]")
    (tmp_path / "local.csv").write_bytes(body)
    (item,) = files.local_inputs([tmp_path], inputs.Filters())
    said: list[str] = []
    assert list(item.events(item.fetch(), report=said.append)) == []
    assert len(said) == 1 and "not in UTC" in said[0]


def test_a_csv_value_spanning_lines_and_an_unclosed_quote(tmp_path: Path) -> None:
    record = apim.gateway(apim.new_id("csv-multiline"))
    record["properties"]["requestBody"] = '{"messages":[{"role":"user","content":"a\\nb"}],\n"x":1}'
    good = la.portal_csv([la.gateway_row(record)])
    (tmp_path / "a.csv").write_bytes(good + b'"unclosed,' + b"x" * 200 + b"\r\n")
    (item,) = files.local_inputs([tmp_path], inputs.Filters())
    said: list[str] = []
    events = list(item.events(item.fetch(), report=said.append))
    row = orjson.loads(events[0].body)
    assert row["RequestBody"] == record["properties"]["requestBody"]
    assert row["TimeGenerated"] == "3/4/2025, 10:15:02.123 AM"
    assert len(events) == 2 and events[1].body.startswith(b'"unclosed,')
    assert len(said) == 1 and "not CSV" in said[0]


def seed_kql(row: dict[str, Any]) -> dict[str, Any] | None:
    """The seed's KQL (users.md) evaluated on one `ApiManagementGatewayLogs` row, the way Log
    Analytics evaluates it: `where OperationId == 'ChatCompletions_Create'`, then `model` and
    the three token counts from `parse_json(BackendResponseBody)`; parse_json of text that is
    not JSON yields the text itself, so every lookup on it is empty."""
    if row.get("OperationId") != "ChatCompletions_Create":
        return None
    try:
        body = orjson.loads(row.get("BackendResponseBody") or "")
    except orjson.JSONDecodeError:
        body = None
    body = body if isinstance(body, dict) else {}
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    out = {
        "Model": body.get("model") or None,
        "PromptTokens": usage.get("prompt_tokens"),
        "CompletionTokens": usage.get("completion_tokens"),
        "TotalTokens": usage.get("total_tokens"),
    }
    return {k: v for k, v in out.items() if v is not None}


def test_backfilled_rows_against_the_seed_kql_on_the_same_rows(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/backfill.md's comparison: on every GatewayLogs shape, as Log Analytics rows, we
    agree with the KQL wherever it returns a value, and return tokens where it returns none."""
    selected = counted = ours = 0
    for name in GATEWAY_CASES:
        row = la.gateway_row(CASES[name][0])
        got = entity(orjson.dumps(la.az_cli(row)))
        theirs = seed_kql(row)
        selected += theirs is not None
        for key, value in (theirs or {}).items():
            assert got.get(key) == value, f"{name}: {key} {got.get(key)!r} vs KQL {value!r}"
        counted += "TotalTokens" in (theirs or {})
        ours += got.get("TotalTokens") is not None or got.get("PromptTokens") is not None
    with capsys.disabled():
        print(
            f"\nBackfill vs seed KQL: {len(GATEWAY_CASES)} rows; the KQL selects {selected} "
            f"and counts tokens for {counted}; we count tokens for {ours}."
        )
    assert ours > counted


def test_a_call_in_the_backfill_and_from_the_hub_is_one_row_in_either_order() -> None:
    """docs/backfill.md: days the live pipeline already stored can be backfilled again."""
    record = apim.gateway(apim.new_id("la-twice"))
    hub, backfill = apim.envelope(record), orjson.dumps(la.az_cli(la.gateway_row(record)))
    first = plan_batch([EventIn(hub), EventIn(backfill)], Config())
    second = plan_batch([EventIn(backfill), EventIn(hub)], Config())
    assert not first.dead and not second.dead
    ((cid, a),), ((_, b),) = first.states.items(), second.states.items()
    assert cid == record["correlationId"]
    one, other = rows.to_entity(resolve(a), a, 2), rows.to_entity(resolve(b), b, 2)
    assert one["Sources"] == "gateway" and one["TotalTokens"] == 42
    one.pop("Fragments"), other.pop("Fragments")
    assert one == other


def test_a_csv_line_over_the_bound_is_skipped_and_reading_goes_on(tmp_path: Path) -> None:
    """Cut, its first piece could hold the header's cell count and pass for a complete row
    (a prompt cut short, stored as if whole); now it is skipped whole, and reported."""
    records = [apim.gateway(apim.new_id(f"csv-long-{i}")) for i in range(2)]
    header, first, second = la.portal_csv([la.gateway_row(r) for r in records]).split(b"\r\n", 2)
    limit = 64 * 1024
    cells = header.count(b",") + 1
    huge = b",".join([b"2025-03-04T10:15:02Z"] + [b"y"] * (cells - 2) + [b"z" * (3 * limit)])
    (tmp_path / "a.csv").write_bytes(b"\r\n".join([header, first, huge, second]))
    (item,) = files.local_inputs([tmp_path], inputs.Filters(), limit=limit, chunk=4096)
    said: list[str] = []
    events = list(item.events(item.fetch(), report=said.append))
    ids = [orjson.loads(e.body).get("CorrelationId") for e in events]
    assert ids == [records[0]["correlationId"], records[1]["correlationId"]]
    assert said == [f"file:{item.label}:line 4: row longer than 64 KiB: skipped"]


def test_a_csv_saved_in_another_encoding_is_read_and_reported(tmp_path: Path) -> None:
    """A portal export opened and saved by a spreadsheet in Windows-1252: its bytes that are
    not UTF-8 are read as U+FFFD (the row is kept), and said, once per file. A U+FFFD the
    file spells in UTF-8 (APIM writes it where it cut a body), even across a chunk's edge, is
    no such byte."""
    record = apim.gateway(apim.new_id("csv-encoding"))
    record["properties"]["requestBody"] = "Zoë's request"
    good = la.portal_csv([la.gateway_row(record)])
    (tmp_path / "cp1252.csv").write_bytes(good.replace("ë".encode(), "ë".encode("cp1252")))
    cut = apim.gateway(apim.new_id("csv-cut"))
    cut["properties"]["requestBody"] = '{"messages":"ab\ufffd'
    body = la.portal_csv([la.gateway_row(cut)])
    (tmp_path / "utf8.csv").write_bytes(body)
    for name, chunk in [("cp1252.csv", 4096), ("utf8.csv", body.index("\ufffd".encode()) + 1)]:
        (item,) = files.local_inputs([tmp_path / name], inputs.Filters(), chunk=chunk)
        said: list[str] = []
        (event,) = list(item.events(item.fetch(), report=said.append))
        row = orjson.loads(event.body)
        if name == "cp1252.csv":
            assert row["RequestBody"] == "Zo\ufffd's request"
            assert said == [
                f"{item.label}: bytes that are not UTF-8 read as U+FFFD: export it as UTF-8"
            ]
        else:
            assert row["RequestBody"] == '{"messages":"ab\ufffd' and said == []


def test_a_csv_column_named_twice_is_refused(tmp_path: Path) -> None:
    """Read without regard to case, the second `RequestBody` replaced the first's cells: a
    prompt in no row, archive or report."""
    body = b"TimeGenerated [UTC],CorrelationId,RequestBody,requestbody\r\n"
    body += b"2025-03-04T10:15:02Z,c1,secret prompt,benign\r\n"
    (tmp_path / "a.csv").write_bytes(body)
    (item,) = files.local_inputs([tmp_path], inputs.Filters())
    said: list[str] = []
    assert list(item.events(item.fetch(), report=said.append)) == []
    assert said == [f"{item.label}: column 'requestbody' appears twice: not replayed"]


def test_a_run_keeps_the_first_problems_and_counts_the_rest(
    tmp_path: Path, cfg: Config, store: Store
) -> None:
    """A CSV of a million bad rows reports each: the run kept every message (822 MB for 4
    million), to count the inputs that failed."""
    (tmp_path / "a.csv").write_bytes(b"TimeGenerated [UTC],Type\r\n" + b"x\r\n" * 5_000)
    summary = runner.replay(
        list(files.local_inputs([tmp_path], inputs.Filters())), cfg, store, dry_run=True,
        say=lambda line: None,
    )  # fmt: skip
    assert summary.problem_count == 5_000 and len(summary.problems) == runner.MAX_PROBLEMS
    assert summary.failed_inputs == 1 and not summary.ok
    assert "(5000 errors, listed above, the first 100;" in "\n".join(summary.lines())


def test_a_long_cell_is_one_value_and_never_rows_of_its_own(tmp_path: Path) -> None:
    """A prompt that spells a CSV row inside its cell: the csv module's own cell limit (128 Ki
    characters) made the reader give up mid-cell and read the rest of the cell as rows: the
    real call lost, a row of the prompt's making stored. Now the cell is read whole, and a
    row the reader does reject is read to where its quotes close, then reported whole."""
    records = [apim.gateway(apim.new_id(f"csv-cell-{i}")) for i in range(3)]
    forged = la.gateway_row(apim.gateway(apim.new_id("csv-forged")))
    forged_line = la.portal_csv([forged]).split(b"\r\n")[1].decode().replace('"', "")
    rows = [la.gateway_row(r) for r in records]
    rows[1]["RequestBody"] = "A" * 140_000 + "\n" + forged_line + "\ntail"
    (tmp_path / "a.csv").write_bytes(la.portal_csv(rows))

    def read(limit: int, chunk: int = 4096) -> tuple[list[str], list[str]]:
        (item,) = files.local_inputs([tmp_path], inputs.Filters(), limit=limit, chunk=chunk)
        said: list[str] = []
        events = list(item.events(item.fetch(), report=said.append))
        return [orjson.loads(e.body).get("CorrelationId") for e in events], said

    ids, said = read(inputs.MAX_UNIT_BYTES)
    assert ids == [r["correlationId"] for r in records] and said == []
    # Past the unit's length the row is skipped whole, to where its quotes close: no line
    # of its cell is taken for a row (the long line read in pieces, or in one chunk).
    for chunk in (4096, 1024 * 1024):
        ids, said = read(64 * 1024, chunk)
        assert ids == [records[0]["correlationId"], records[2]["correlationId"]], chunk
        assert said == [f"file:{tmp_path / 'a.csv'}:line 4: row longer than 64 KiB: skipped"]


def test_a_quote_inside_an_unquoted_cell_is_a_character_not_a_cell_left_open() -> None:
    """A reader takes `x"y` as three characters: counting quotes instead made that row run on
    to the next quote, swallowing the rows after it (past the unit limit, all of them)."""
    body = b'a,b,c\r\n1,x"y,3\r\n4,5,6\r\n"","p""q","multi\nline ""quoted"", end"\r\n7,"  ",9'
    said: list[str] = []
    events = list(files.read_csv([body], "t.csv", 1 << 20, said.append))
    assert [orjson.loads(e.body) for e in events] == [
        {"a": "1", "b": 'x"y', "c": "3"},
        {"a": "4", "b": "5", "c": "6"},
        {"b": 'p"q', "c": 'multi\nline "quoted", end'},
        {"a": "7", "b": "  ", "c": "9"},  # a cell of spaces is a value
    ]
    assert said == []
    assert [e.origin for e in events] == [f"file:t.csv:line {n}" for n in (2, 3, 4, 6)]
    # One column: a row of spaces is a value; only a line with nothing on it is passed over.
    one = list(files.read_csv([b'h0\r\n"x"\r\n\r\n  '], "t.csv", 1 << 20, said.append))
    assert [orjson.loads(e.body) for e in one] == [{"h0": "x"}, {"h0": "  "}] and said == []


def test_a_backfilled_row_and_its_live_record_are_one_reading_not_rivals() -> None:
    """A day stored live and backfilled holds each record twice, in two forms. Of one kind,
    they were rivals: every row flagged `Conflicts` (the sign of a forgery), and where the
    row's hash won, the call showed the Log Analytics row only, without the columns the
    backfill's query leaves out (the backend's apim-request-id: the call's message-storing
    twin then counted as a call of its own). The row completes its live twin; message
    chunks that say the same are one reading; either order, either batch."""
    cid = apim.new_id("la-and-live")
    record = apim.gateway(cid, backendResponseHeaders={"apim-request-id": "0f1e-backend-1"})
    row = la.gateway_row(record)
    del row["BackendResponseHeaders"]  # docs/backfill.md's KQL does not project it
    header = sources.llm_header(cid)
    chunk = sources.llm_messages(cid, [{"role": "user", "content": "Hi there, assistant."}])
    live = [apim.envelope(record), apim.envelope(header, chunk)]
    backfill = [orjson.dumps(la.az_cli(r)) for r in (row, la.llm_row(header), la.llm_row(chunk))]
    entities = []
    for events in (live + backfill, backfill + live, backfill[::-1] + live[::-1]):
        plan = plan_batch([EventIn(e) for e in events], Config())
        assert not plan.dead
        ((_, state),) = plan.states.items()
        entity = rows.to_entity(resolve(state), state, 2)
        assert not entity.get("Conflicts"), entity.get("Conflicts")
        assert entity["BackendRequestId"] == "0f1e-backend-1"
        assert entity["TotalTokens"] == 42 and entity["PromptPreview"]
        entity.pop("Fragments"), entity.pop("FragmentsZ", None)
        entities.append(entity)
    assert entities[0] == entities[1] == entities[2]
    # Backfilled alone, the row is the call's reading.
    ((_, state),) = plan_batch([EventIn(e) for e in backfill], Config()).states.items()
    alone = rows.to_entity(resolve(state), state, 2)
    assert alone["TotalTokens"] == 42 and "BackendRequestId" not in alone


def test_a_second_header_in_a_csv_starts_its_own_columns(tmp_path: Path) -> None:
    """Two portal exports concatenated: the second header was read as a row (a dead letter)
    and its rows by the first file's columns (subscription and product swapped) and zone
    (local times taken for UTC), exit 0 (black-box audit). A header row starts its own
    columns; one not in UTC stops the file there, as it refuses a file alone."""
    first = la.portal_csv([la.gateway_row(apim.gateway(apim.new_id("csv-h-1")))])
    record = apim.gateway(apim.new_id("csv-h-2"), apimSubscriptionId="team-hr", productId="p")
    columns = la.gateway_row(record)
    second = la.portal_csv([dict(sorted(columns.items()))])  # another column order
    problems: list[str] = []
    events = list(files.read_csv([first + second], "x.csv", inputs.MAX_UNIT_BYTES,
                                 problems.append))  # fmt: skip
    assert not problems and len(events) == 2
    ((_, state),) = plan_batch([events[1]], Config()).states.items()
    row = rows.to_entity(resolve(state), state, 2)
    assert (row["SubscriptionId"], row["ProductId"]) == ("team-hr", "p")
    local = second.replace(b"[UTC]", b"[Local Time]")
    problems = []
    events = list(files.read_csv([first + local], "x.csv", inputs.MAX_UNIT_BYTES,
                                 problems.append))  # fmt: skip
    assert len(events) == 1 and "not in UTC" in problems[0]

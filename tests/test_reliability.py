"""Under faults, load and bad input, nothing is lost: every input call ends as exactly one
audit row or a dead letter, and every raw record stays readable."""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import orjson
import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from pipeline.cli.azurite import Azurite, connection_string
from pipeline.cli.runner import replay
from pipeline.ingest.batch import process_batch, run_trigger_batch
from pipeline.ingest.plan import EMPTY_EVENT, plan_batch
from pipeline.model import EventIn
from pipeline.protect import archive
from pipeline.settings import Config
from pipeline.sources import deadletter_blobs
from pipeline.store.account import Store
from pipeline.store.retry import retry_after
from tests.faults import FaultProxy, Policy
from tests.fixtures import apim
from tests.test_ingest import all_rows, stored_record

DELIVERIES = 6  # the host's first delivery and its 5 retries (function_app.py)


def batches_of_calls(
    tag: str, n_events: int, calls_per_event: int = 5, per_batch: int = 10
) -> tuple[list[list[EventIn]], set[str]]:
    ids: set[str] = set()
    events = []
    for e in range(n_events):
        recs = []
        for c in range(calls_per_event):
            cid = apim.new_id(f"{tag}-{e}-{c}")
            ids.add(cid)
            recs.append(apim.gateway(cid, request=apim.chat_request(("user", f"question {e}.{c}"))))
        events.append(EventIn(apim.envelope(*recs), partition="0", sequence=e, origin=f"test:{e}"))
    return [events[i : i + per_batch] for i in range(0, len(events), per_batch)], ids


def deliver_like_the_host(
    batch: list[EventIn], cfg: Config, store: Store, backoff: float = 0.05
) -> int:
    """Deliveries until the batch is acknowledged (stored, or parked on the last one), with the
    host's exponential backoff between them (function_app.py; scaled down from 5 s)."""
    for attempt in range(DELIVERIES):
        try:
            run_trigger_batch(batch, cfg, store, attempt=attempt, max_retries=DELIVERIES - 1)
            return attempt + 1
        except Exception:
            time.sleep(backoff * 2**attempt)
    raise AssertionError("a batch was neither stored nor parked")


def audit_outcome(store: Store, ids: set[str]) -> tuple[int, int, int]:
    """(calls stored exactly once, calls only in dead letters, calls lost)."""
    rows = [e["RowKey"] for e in store.audit.list_entities(select=["RowKey"])]
    assert len(rows) == len(set(rows)), "a call has two rows"
    stored = ids & set(rows)
    dead_ids: set[str] = set()
    for blob in store.deadletters.list_blobs():
        body = store.deadletters.download_blob(blob.name).readall()
        dead_ids |= {cid for cid in ids if cid.encode() in body}
    in_dead_only = (ids - stored) & dead_ids
    lost = ids - stored - dead_ids
    for e in store.audit.list_entities(
        select=["RawBlob", "RawOffset", "RawLength", "RawSha256", "RowKey"]
    ):
        data = store.read_range(store.archive, e["RawBlob"], e["RawOffset"], e["RawLength"])
        assert archive.open_member(data, e["RawSha256"])["correlationId"] == e["RowKey"]
    return len(stored), len(in_dead_only), len(lost)


def proxied_config(cfg: Config, blob_port: int, table_port: int, retries: int = 3) -> Config:
    return replace(
        cfg,
        storage_connection=connection_string(blob_port, table_port, blob_port),
        storage_retries=retries,
    )


def test_faults_on_every_request_lose_nothing(
    azurite: Azurite, cfg: Config, store: Store, capsys
) -> None:
    policy = Policy(
        http503=0.12, reset=0.06, lost_response=0.06, delay=0.05, delay_seconds=0.05, seed=11
    )
    blob_proxy = FaultProxy(azurite.blob_port, policy)
    table_proxy = FaultProxy(azurite.table_port, policy)
    try:
        faulty_cfg = proxied_config(cfg, blob_proxy.port, table_proxy.port)
        faulty = Store(
            faulty_cfg, retry_base=0.01, retry_cap=0.05, connection_timeout=5, read_timeout=10
        )
        batches, ids = batches_of_calls("fault", 60, per_batch=3)
        deliveries = sum(deliver_like_the_host(b, faulty_cfg, faulty) for b in batches)
    finally:
        blob_proxy.close()
        table_proxy.close()
    stored, dead, lost = audit_outcome(store, ids)
    injected = blob_proxy.injected + table_proxy.injected
    requests = blob_proxy.requests + table_proxy.requests
    with capsys.disabled():
        print(
            f"\nfault injection: {len(ids)} calls sent in {len(batches)} batches "
            f"({deliveries} deliveries); {requests} storage requests, "
            f"faults injected {sum(injected.values())} "
            f"({dict(injected)}), SDK-level retries {faulty.retries}; calls stored {stored}, "
            f"dead letters {dead}, calls lost {lost}"
        )
    # Transient faults are retried until they pass: every call is a row. A call parked as a
    # dead letter would be a failure here (storage never stayed down), not "not lost".
    assert (stored, dead, lost) == (len(ids), 0, 0)
    assert not list(store.deadletters.list_blobs())
    assert sum(injected.values()) >= 0.15 * requests and faulty.retries > 0
    assert {"503", "reset", "lost"} <= set(injected)
    # Writes whose response was lost, of rows and of blobs: their retries found them there.
    assert table_proxy.injected["lost"] and blob_proxy.injected["lost"]


def test_throttled_storage_is_retried_no_sooner_than_it_asks(azurite: Azurite, cfg: Config) -> None:
    # Storage answers "503 Server Busy" with Retry-After when an account is throttled.
    proxy = FaultProxy(azurite.table_port, Policy(http503=1.0, retry_after=1))
    try:
        throttled = Store(
            proxied_config(cfg, azurite.blob_port, proxy.port, retries=2),
            retry_base=0.001,
            retry_cap=5,
        )
        started = time.monotonic()
        with pytest.raises(HttpResponseError) as info:
            throttled.find_rows("anything")
        waited = time.monotonic() - started
    finally:
        proxy.close()
    assert info.value.status_code == 503 and throttled.retries == 2 and proxy.requests == 3
    assert waited >= 2.0  # two waits of the asked second, not the 1-4 ms backoff


class Throttled(Exception):
    """The shape of an azure.core HttpResponseError: only `.response.headers` is read."""

    def __init__(self, headers: dict[str, str] | None) -> None:
        super().__init__("503")
        self.response = type("Response", (), {"headers": headers})()


NOW = 1_762_250_400.0  # 2025-11-04T10:00:00Z


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW + 90, UTC), True)}, 90.0),
        ({"Retry-After": "Tue, 04 Nov 2025 10:01:00 -0000"}, 60.0),  # no zone: UTC
        ({"Retry-After": format_datetime(datetime.fromtimestamp(NOW - 90, UTC), True)}, 0.0),
        ({"x-ms-retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "1", "x-ms-retry-after-ms": "30000"}, 30.0),  # the longest wait wins
        ({"Retry-After": "-5"}, 0.0),
        ({"Retry-After": "soon", "retry-after-ms": "nan"}, 0.0),
        ({}, 0.0),
        (None, 0.0),
    ],
)
def test_retry_after_reads_seconds_http_dates_and_milliseconds(
    headers: dict[str, str] | None, seconds: float
) -> None:
    assert retry_after(Throttled(headers), now=NOW) == pytest.approx(seconds)
    assert retry_after(ValueError("no response at all")) == 0.0


def test_throttled_longer_than_the_cap_raises_at_once_and_the_redelivery_stores(
    azurite: Azurite, cfg: Config, store: Store
) -> None:
    # Each form asks for a minute; the cap is 5 s. Waiting less would be throttled again;
    # waiting a minute inside the function would hold the partition: it raises at once.
    in_a_minute = format_datetime(datetime.fromtimestamp(time.time() + 60, UTC), True)
    asks = [Policy(http503=1.0, retry_after=60), Policy(http503=1.0, retry_after=in_a_minute)]
    asks.append(Policy(http503=1.0, retry_after_ms=60_000))
    (batch,), ids = batches_of_calls("slow-down", 2)
    for n, policy in enumerate(asks):
        proxy = FaultProxy(azurite.table_port, policy)  # tables throttled, blobs fine
        try:
            throttled_cfg = proxied_config(cfg, azurite.blob_port, proxy.port, retries=3)
            throttled = Store(throttled_cfg, retry_base=0.001, retry_cap=5)
            started = time.monotonic()
            with pytest.raises(HttpResponseError) as info:
                run_trigger_batch(batch, throttled_cfg, throttled, attempt=n, max_retries=5)
            waited = time.monotonic() - started
            assert info.value.status_code == 503 and retry_after(info.value) > 5
            # One try per partition written (none retried), and no minute-long sleep.
            assert throttled.retries == 0 and proxy.requests <= cfg.shards and waited < 5
        finally:
            proxy.close()
    assert not all_rows(store)
    # Throttling is over when the trigger delivers the batch again: every call is a row.
    result = run_trigger_batch(batch, cfg, store, attempt=len(asks), max_retries=5)
    assert result.created == len(ids) and set(all_rows(store)) == ids


def test_azurite_stopped_and_restarted_mid_batch(tmp_path: Path, cfg: Config, capsys) -> None:
    az = Azurite.start(location=str(tmp_path / "azurite"))
    restarted: list[Azurite] = []
    threads: list[threading.Thread] = []
    outage = threading.Event()
    try:
        local = replace(cfg, storage_connection=az.connection_string, storage_retries=2)
        store = Store(local, retry_base=0.01, retry_cap=0.05, connection_timeout=3, read_timeout=5)
        store.ensure()
        batches, ids = batches_of_calls("restart", 40)

        def bounce() -> None:  # stop Azurite while the second batch is being written
            outage.wait(10)
            restarted.append(az.restart())

        t = threading.Thread(target=bounce)
        threads.append(t)
        t.start()
        deliveries = 0
        for i, batch in enumerate(batches):
            if i == 1:
                outage.set()
                time.sleep(0.05)
            deliveries += deliver_like_the_host(batch, local, store, backoff=0.4)
        t.join()
        stored, dead, lost = audit_outcome(store, ids)
        with capsys.disabled():
            print(
                f"\nAzurite restart: {len(ids)} calls, {deliveries} deliveries of {len(batches)} "
                f"batches, retries {store.retries}; calls stored {stored}, dead letters {dead}, "
                f"calls lost {lost}"
            )
        # Every call is a row: the outage made the function raise (the batch was delivered
        # again, not acknowledged), never park or drop anything.
        assert (stored, dead, lost) == (len(ids), 0, 0)
        assert not list(store.deadletters.list_blobs())
        assert deliveries > len(batches)
    finally:
        outage.set()
        for t in threads:  # a restart still under way must finish before we stop it
            t.join(60)
        for a in [az, *restarted]:
            a.stop()


def test_a_batch_that_keeps_failing_is_parked_and_replayed_later(
    azurite: Azurite, cfg: Config, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    table_proxy = FaultProxy(azurite.table_port, Policy(down=True))  # tables down, blobs fine
    try:
        down_cfg = proxied_config(cfg, azurite.blob_port, table_proxy.port, retries=1)
        down = Store(down_cfg, retry_base=0.01)
        (batch,), ids = batches_of_calls("parked", 4)
        garbage = EventIn(b"not json at all", partition="0", sequence=99, origin="test:garbage")
        batch = [*batch, garbage]
        with caplog.at_level(logging.INFO, logger="pipeline.ingest.batch"):
            for attempt in range(DELIVERIES - 1):
                with pytest.raises((ServiceRequestError, ServiceResponseError)):  # tables down
                    run_trigger_batch(
                        batch, down_cfg, down, attempt=attempt, max_retries=DELIVERIES - 1
                    )
            result = run_trigger_batch(
                batch, down_cfg, down, attempt=DELIVERIES - 1, max_retries=DELIVERIES - 1
            )
    finally:
        table_proxy.close()
    assert result.dead_letters == len(batch)
    parked = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert parked and '"outcome":"parked"' in parked[-1].getMessage()
    failed = [r for r in caplog.records if '"outcome":"failed"' in r.getMessage()]
    assert len(failed) == DELIVERIES - 1
    assert not all_rows(store)

    # The cause is fixed: replay the dead letters. Rows appear; the garbage stays a dead letter.
    items = list(deadletter_blobs.deadletter_inputs(store.deadletters, ""))
    assert len(items) == len(batch)
    reasons = [b.metadata["reason"] for b in store.deadletters.list_blobs(include=["metadata"])]
    assert len(reasons) == len(batch)
    assert all("batch failed on its last delivery (6)" in r for r in reasons)
    summary = replay(items, cfg, store)
    assert summary.totals.created == len(ids) and summary.totals.dead_letters == 1
    meta = {b.name: b.metadata for b in store.deadletters.list_blobs(include=["metadata"])}
    statuses = sorted(m["status"] for m in meta.values())
    assert statuses == ["done"] * (len(batch) - 1) + ["new"]
    # The garbage keeps its one dead letter, which now says why it failed this time.
    (still,) = [m for m in meta.values() if m["status"] == "new"]
    assert "not valid JSON" in still["reason"] and "last delivery" in still["previousreason"]
    again = replay(list(deadletter_blobs.deadletter_inputs(store.deadletters, "")), cfg, store)
    assert again.totals.created == 0 and again.totals.events == 1  # only the garbage is left


def test_structured_batch_log_without_prompt_text(
    cfg: Config, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "maria.garcia@contoso.com"
    rec = apim.gateway(
        apim.new_id("log"), request=apim.chat_request(("user", f"mail {secret} please"))
    )
    bad = apim.gateway(apim.new_id("log-bad"), time=f"not a time {secret}")
    with caplog.at_level(logging.DEBUG):
        run_trigger_batch([EventIn(apim.envelope(rec, bad), partition="2", sequence=5)], cfg, store)
    lines = [r.getMessage() for r in caplog.records]
    batch_line = next(m for m in lines if m.startswith("audit-batch "))
    doc = orjson.loads(batch_line.removeprefix("audit-batch "))
    assert doc["outcome"] == "stored" and doc["calls"] == 1 and doc["deadLetters"] == 1
    assert doc["partition"] == "2" and doc["firstSequence"] == 5 and "durationMs" in doc
    assert all(secret not in m for m in lines)
    dead = next(iter(store.deadletters.list_blobs(include=["metadata"])))
    assert secret not in dead.metadata["reason"]


def test_a_parser_bug_dead_letters_the_record_and_logs_only_where(
    cfg: Config, store: Store, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.ingest import records as ingest

    secret = "maria.garcia@contoso.com"
    good = apim.gateway(apim.new_id("parser-ok"))
    buggy = apim.gateway(
        apim.new_id("parser-bug"), request=apim.chat_request(("user", f"mail {secret} please"))
    )
    real = ingest.gateway_facts

    def gateway_facts(flat, proxies=()):  # a parser bug that shows on one record only
        if buggy["correlationId"] in repr(flat):
            raise ValueError(f"cannot read {secret}")
        return real(flat, proxies)

    monkeypatch.setattr(ingest, "gateway_facts", gateway_facts)
    with caplog.at_level(logging.DEBUG):
        result = process_batch([EventIn(apim.envelope(good, buggy), sequence=3)], cfg, store)
    # The rest of the batch is stored; the record is a dead letter, replayable once fixed.
    assert result.created == 1 and set(all_rows(store)) == {good["correlationId"]}
    (dead,) = store.deadletters.list_blobs(include=["metadata"])
    reason = dead.metadata["reason"]
    assert reason.startswith("parser error: ValueError") and secret not in reason
    assert re.search(r"\(at [^()]*\b\w+\.py:\d+", reason)  # file and line of the failure
    body = orjson.loads(store.deadletters.download_blob(dead.name).readall())
    assert body["records"][0]["correlationId"] == buggy["correlationId"]
    # The log says where the parser failed, never what the record held.
    lines = [r.getMessage() for r in caplog.records]
    (line,) = [m for m in lines if m.startswith("parser error on")]
    assert "ValueError" in line and re.search(r"\b\w+\.py:\d+", line)
    assert all(secret not in m for m in lines)


# --- hostile input --------------------------------------------------------------------------


ROW, DEAD = "row", "dead letter"


def crafted_records() -> list[tuple[str, bytes, str]]:
    """(case, event body, expected outcome). Whole-event JSON errors dead-letter the event."""
    base = apim.gateway(apim.new_id("crafted"))
    huge = apim.gateway(apim.new_id("huge"), request=apim.chat_request(("user", "x" * 3_000_000)))
    deep = b'{"records": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    dup = (
        b'{"records": [{"category": "GatewayLogs", "correlationId": "dup-1",'
        b' "correlationId": "dup-2", "time": "2025-11-04T10:00:00Z",'
        b' "properties": {"responseCode": 200}}]}'
    )
    nan = (
        b'{"records": [{"category": "GatewayLogs", "correlationId": "nan",'
        b' "time": "2025-11-04T10:00:00Z", "durationMs": NaN}]}'
    )
    # orjson cannot write integers past 64 bits; a producer could (orjson reads them as floats).
    big_numbers = orjson.dumps(
        {"records": [dict(apim.gateway(apim.new_id("bignum")), durationMs=12345)]}
    )
    big_numbers = big_numbers.replace(b'"durationMs":12345', b'"durationMs":1' + b"0" * 30)
    absurd_usage = {"prompt_tokens": 10**15, "completion_tokens": -5, "total_tokens": "lots"}
    usage_big = apim.gateway(
        apim.new_id("bigusage"), response=dict(apim.chat_response("x"), usage=absurd_usage)
    )
    long_path = "/openai/deployments/x/chat/completions?" + "q=1&" * 20000
    surrogate = (
        b'{"records": [{"category": "GatewayLogs", "correlationId": "\\ud800x",'
        b' "time": "2025-11-04T10:00:00Z"}]}'
    )
    return [
        ("valid", apim.envelope(base), ROW),
        ("3 MB prompt", apim.envelope(huge), ROW),
        ("deep nesting", deep, DEAD),
        (
            "invalid UTF-8",
            b'{"records": [{"category": "GatewayLogs", "correlationId": "\xff\xfe"}]}',
            DEAD,
        ),
        ("duplicate keys", dup, ROW),
        ("NaN", nan, DEAD),
        ("huge numbers", big_numbers, ROW),
        ("absurd usage", apim.envelope(usage_big), ROW),
        ("quotes", apim.envelope(apim.gateway("x' or 'a' eq 'a")), ROW),
        ("slashes", apim.envelope(apim.gateway("a/b\\c#d?e")), ROW),
        ("control characters", apim.envelope(apim.gateway("ctl\x00\x1f\x7f")), ROW),
        ("long URL", apim.envelope(apim.gateway(apim.new_id("longurl"), path=long_path)), ROW),
        # Valid JSON orjson refuses: read as U+FFFD (safejson.without_lone_surrogates).
        ("lone surrogate", surrogate, ROW),
    ]


def test_crafted_inputs_become_rows_or_dead_letters(cfg: Config, store: Store) -> None:
    cases = crafted_records()
    events = [
        EventIn(body, partition="1", sequence=i, origin=name)
        for i, (name, body, _) in enumerate(cases)
    ]
    result = process_batch(events, cfg, store)
    dead_origins = set()
    for blob in store.deadletters.list_blobs(include=["metadata"]):
        dead_origins.add(blob.metadata["origin"])
        assert "not valid JSON" in blob.metadata["reason"]
    outcome = {name: DEAD if name in dead_origins else ROW for name, _, _ in cases}
    assert outcome == {name: expected for name, _, expected in cases}
    rows = all_rows(store)
    assert result.created == len(rows) == [e for _, _, e in cases].count(ROW)
    assert len(dead_origins) == [e for _, _, e in cases].count(DEAD)
    # Crafted ids are stored escaped, found exactly, and cannot widen a filter.
    escaped = {"a/b\\c#d?e": "a%2Fb%5Cc%23d%3Fe", "ctl\x00\x1f\x7f": "ctl%00%1F%7F"}
    assert set(escaped.values()) <= set(rows) and not set(escaped) & set(rows)
    for cid in ("x' or 'a' eq 'a", "a/b\\c#d?e", "ctl\x00\x1f\x7f", "dup-2", "\ufffdx"):
        (found,) = store.find_rows(cid)
        assert found["RowKey"] == escaped.get(cid, cid)
    assert store.find_rows("nobody' or RowKey ne 'x") == []
    huge = rows[apim.new_id("huge")]
    assert len(huge["PromptPreview"]) <= 32 * 1024
    raw = store.read_range(store.archive, huge["RawBlob"], huge["RawOffset"], huge["RawLength"])
    assert len(orjson.dumps(archive.open_member(raw, huge["RawSha256"]))) > 3_000_000  # kept whole
    assert (
        len(rows[apim.new_id("longurl")]["Url"]) < 80_000
        and "Url" in rows[apim.new_id("longurl")]["Clipped"]
    )
    assert "DurationMs" not in rows[apim.new_id("bignum")]  # 1e30 ms is not a duration
    absurd = rows[apim.new_id("bigusage")]
    # 10^15 tokens, -5 and "lots": none is a count a call can have (MAX_CALL_TOKENS), so the
    # reported usage is unknown and the tokens are estimated from the bodies.
    assert absurd["TokensSource"] == "estimated" and absurd["PromptTokens"] < 10**6


# --- property-based: the parser never raises, every input is accounted for --------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
record_like = st.fixed_dictionaries(
    {"category": st.sampled_from(["GatewayLogs", "GatewayLlmLogs", "Other", ""])},
    optional={
        "correlationId": st.text(min_size=1, max_size=40),
        "time": st.sampled_from(["2025-11-04T10:00:00Z", "garbage", "3/4/2025 10:15:03 AM"]),
        "properties": st.dictionaries(
            st.sampled_from(
                [
                    "url",
                    "backendUrl",
                    "responseCode",
                    "requestBody",
                    "backendResponseBody",
                    "deploymentName",
                    "promptTokens",
                    "requestMessages",
                    "apimSubscriptionId",
                ]
            ),
            json_values | st.text(max_size=200),
            max_size=6,
        ),
    },
)
FUZZ = settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@FUZZ
@given(
    st.lists(
        st.binary(max_size=300)
        | st.builds(lambda r: orjson.dumps({"records": r}), st.lists(record_like, max_size=4)),
        min_size=1,
        max_size=5,
    )
)
def test_fuzz_batches_never_raise_and_account_for_every_record(bodies: list[bytes]) -> None:
    plan = plan_batch([EventIn(b, sequence=i) for i, b in enumerate(bodies)], Config())
    dead_events = {d.event.sequence for d in plan.dead if d.record_index is None}
    assert plan.events == len(bodies)
    # Every record became a fragment of a call, a counted skip, or is in a dead letter (its
    # own, or its event's) with a reason.
    skipped = sum(n for name, n in plan.skipped.items() if name != EMPTY_EVENT)  # no record
    assert plan.records == plan.accepted + skipped + plan.dead_records
    assert plan.dead_records >= sum(1 for d in plan.dead if d.record_index is not None)
    assert all(d.reason for d in plan.dead)
    # ... and never because the parser itself failed: that would be a bug, not bad input.
    assert not [d.reason for d in plan.dead if d.reason.startswith("parser error")]
    for i, body in enumerate(bodies):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        if not isinstance(doc, dict | list):  # not JSON, or a bare scalar: the event is dead
            assert i in dead_events


@FUZZ
@given(st.text(max_size=3000))
def test_fuzz_bodies_and_streams_never_raise(text: str) -> None:
    from pipeline.call.bodies import parse_body, repair_truncated
    from pipeline.call.stream import parse_sse

    parse_body(text)
    repair_truncated(text)
    parse_sse(text)
    parse_sse("data: " + text)
    parse_body('{"choices":[{"message":{"content":"' + text)


@FUZZ
@given(st.text(max_size=2000))
def test_fuzz_redaction_never_raises_and_is_idempotent(text: str) -> None:
    from collections import Counter

    from pipeline.protect.masking import masker_for

    # Two maskers: the second must not answer from the first one's memo.
    once = masker_for(Config()).redact_string(text, Counter())
    assert masker_for(Config()).redact_string(once, Counter()) == once


def test_caller_ip_hash_and_drop(cfg: Config, store: Store) -> None:
    headers = {"X-Forwarded-For": "198.51.100.23, 10.0.0.4", "Content-Type": "application/json"}
    rec = apim.gateway(apim.new_id("ip"), requestHeaders=headers)
    hashed = replace(cfg, caller_ip_mode="hash", prompt_hash_key="k")
    plan = plan_batch([EventIn(apim.envelope(rec))], hashed)
    frag = plan.states[rec["correlationId"]].call.fragments["gateway"]
    assert (
        frag.facts.caller_ip.startswith("hmac-sha256:")
        and "198.51" not in orjson.dumps(stored_record(frag)).decode()
    )
    dropped = plan_batch([EventIn(apim.envelope(rec))], replace(cfg, caller_ip_mode="drop"))
    frag = dropped.states[rec["correlationId"]].call.fragments["gateway"]
    assert frag.facts.caller_ip is None
    raw = orjson.dumps(stored_record(frag)).decode()
    assert "203.0.113.10" not in raw and "198.51.100.23" not in raw
    # Only the caller's address goes: the other headers are kept as logged.
    kept = stored_record(frag)["properties"]["requestHeaders"]
    assert kept == {"Content-Type": "application/json"}
    hashed_headers = stored_record(plan.states[rec["correlationId"]].call.fragments["gateway"])[
        "properties"
    ]["requestHeaders"]
    assert hashed_headers["Content-Type"] == "application/json"
    assert hashed_headers["X-Forwarded-For"].startswith("hmac-sha256:")
    from pipeline.settings import SettingsError

    with pytest.raises(SettingsError, match="CALLER_IP_MODE=hash needs PROMPT_HASH_KEY"):
        Config.from_env({"CALLER_IP_MODE": "hash"})

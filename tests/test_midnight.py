"""Calls near a UTC midnight: the look-up of the neighbouring day costs a fixed number of
reads per batch and neighbouring partition, whatever the number of such calls, and the join
stays one row per call in any order of arrival and across batches (issue 15, item 5).

Records are the published shapes of tests/fixtures (GatewayLogs, formats.md §1; GatewayLlmLogs
header rows, formats.md §2.4), with `time` written as APIM writes it (7 fractional digits, Z).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.ingest.batch import process_batch
from pipeline.model import EventIn
from pipeline.settings import Config
from pipeline.store import audit, merge
from pipeline.store.account import Store
from pipeline.store.rows import entities
from tests.fixtures import apim, sources
from tests.test_ingest import all_rows, comparable
from tests.test_join import fresh

MIDNIGHT = datetime(2025, 3, 5, tzinfo=UTC)


def stamp(t: datetime) -> str:
    """A time as APIM writes `time`: 7 fractional digits and Z (formats.md §0.7)."""
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}0Z"


class Reads:
    """Counts the table's read requests (GET), from the SDK's own per-request hook."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, request: Any) -> None:
        http = request.http_request
        if http.method == "GET" and "$batch" not in http.url:
            self.counts["read"] += 1

    @property
    def reads(self) -> int:
        return self.counts["read"]


def gateway_at(cid: str, t: datetime) -> dict[str, Any]:
    return apim.gateway(cid, time=stamp(t), request=None, response=None)


def test_edge_windows_one_window_per_neighbouring_partition() -> None:
    ids = [apim.new_id(f"window-{i}") for i in range(40)]
    times = [MIDNIGHT - timedelta(seconds=100) + timedelta(seconds=5 * i) for i in range(40)]
    recs = [gateway_at(cid, t) for cid, t in zip(ids, times, strict=True)]
    cfg = Config()
    process = [EventIn(apim.envelope(*recs))]
    from pipeline.ingest.plan import plan_batch

    items = entities(plan_batch(process, cfg).states.values(), cfg.shards)
    groups, edge = merge.split_at_day_edge(items)
    assert not groups and len(edge) == 40  # all within DAY_EDGE of midnight
    windows = merge.edge_windows(edge)
    # Two days × two shards, minus each call's own: one window per neighbouring partition.
    assert sorted(windows) == ["2025-03-04_0", "2025-03-04_1", "2025-03-05_0", "2025-03-05_1"]
    for pk, window in windows.items():
        own = [e for (_, e), _days in edge if e["PartitionKey"][-1] == pk[-1]]
        assert window.keys == {e["RowKey"] for e in own if e["PartitionKey"][:10] != pk[:10]}
        assert window.start >= min(times) - merge.DAY_EDGE
        assert window.end <= max(times) + merge.DAY_EDGE
        assert window.lowest <= window.highest


def test_many_calls_near_midnight_cost_one_query_per_neighbouring_partition(
    cfg: Config, store: Store
) -> None:
    # 420 calls in the 4 minutes around midnight, one batch: before, ⌈n/14⌉ queries per
    # neighbouring partition (about 30); now one per neighbouring partition.
    rng = random.Random(5)
    ids = [apim.new_id(f"edge-many-{i}") for i in range(420)]
    recs = [gateway_at(cid, MIDNIGHT + timedelta(seconds=rng.uniform(-110, 110))) for cid in ids]
    counter = Reads()
    counted = Store(cfg, raw_request_hook=counter)
    # A first batch so the neighbouring partitions hold rows (of other calls) in the window.
    process_batch([EventIn(apim.envelope(*recs[:5]), sequence=0)], cfg, counted)
    before = counter.reads
    events = [EventIn(apim.envelope(*recs[i : i + 5]), sequence=1 + i) for i in range(5, 420, 5)]
    result = process_batch(events, cfg, counted)
    assert result.calls == 415
    # Two days × AUDIT_SHARDS=2 partitions, each the neighbour of the others' calls.
    assert counter.reads - before <= 4, counter.counts
    assert len(all_rows(store)) == 420


def test_calls_crossing_midnight_join_in_any_order_and_across_batches(
    cfg: Config, store: Store
) -> None:
    """60 calls whose gateway record is before midnight and whose LLM-log header is after it
    (and 60 the other way round), among 200 calls near midnight that do not cross: each
    crossing call ends as one row, identical whatever the order and the cut into batches, and
    the reads of a batch stay a fixed number per neighbouring partition plus the rows found."""
    rng = random.Random(15)
    records: list[dict[str, Any]] = []
    crossing = []
    for i in range(120):
        cid = apim.new_id(f"cross-{i}")
        crossing.append(cid)
        early = MIDNIGHT - timedelta(seconds=rng.uniform(0.1, 50))
        late = MIDNIGHT + timedelta(seconds=rng.uniform(0.1, 50))
        gw_t, llm_t = (early, late) if i % 2 else (late, early)
        records += [gateway_at(cid, gw_t), sources.llm_header(cid, time=stamp(llm_t))]
    for i in range(200):
        cid = apim.new_id(f"near-{i}")
        records.append(gateway_at(cid, MIDNIGHT + timedelta(seconds=rng.uniform(-115, 115))))

    process_batch(
        [EventIn(apim.envelope(r), sequence=i) for i, r in enumerate(records)], cfg, store
    )
    reference = {k: comparable(v, pointers=False) for k, v in all_rows(store).items()}
    assert len(reference) == 320
    for i, cid in enumerate(crossing):
        row = reference[cid]
        assert row["Sources"] == "gateway,llm" and row["TokensSource"] == "llm-log"
        # The gateway's time wins the day, whichever side of midnight it is on.
        assert row["PartitionKey"].startswith("2025-03-04" if i % 2 else "2025-03-05")

    for trial in range(3):
        order = records[:]
        rng.shuffle(order)
        c, s = fresh(cfg, f"mid{trial}")
        counter = Reads()
        counted = Store(c, raw_request_hook=counter)
        for start in range(0, len(order), 80):
            before = counter.reads
            batch = order[start : start + 80]
            process_batch(
                [EventIn(apim.envelope(r), sequence=start + j) for j, r in enumerate(batch)],
                c,
                counted,
            )
            # 4 neighbouring partitions, one query each, and the rows found on the other day
            # (≤ 14 per query, merged without reading them again): a fixed number, where a
            # read per crossing call (up to 30 in a batch here) was needed before.
            assert counter.reads - before <= 12, (trial, start, counter.counts)
        got = {k: comparable(v, pointers=False) for k, v in all_rows(s).items()}
        assert set(got) == set(reference), f"trial {trial}"
        for cid in crossing:
            assert got[cid] == reference[cid], f"trial {trial}, call {cid}"


def test_a_row_outside_the_window_is_not_read(cfg: Config, store: Store) -> None:
    """A row of the neighbouring day whose CallTime is far from midnight is not among the
    rows the window query returns: the query stays a range of the edge, not the day."""
    ids = [apim.new_id(f"far-{i}") for i in range(3)]
    noon = MIDNIGHT + timedelta(hours=12)
    process_batch([EventIn(apim.envelope(*(gateway_at(c, noon) for c in ids)))], cfg, store)
    stored = all_rows(store)
    pk = next(iter(stored.values()))["PartitionKey"]
    window = merge.EdgeWindow(
        frozenset(stored), MIDNIGHT - merge.DAY_EDGE, MIDNIGHT + merge.DAY_EDGE
    )
    assert store.audit_rows.edge_keys(pk, window) == set()
    wide = merge.EdgeWindow(frozenset(stored), MIDNIGHT, noon + merge.DAY_EDGE)
    assert store.audit_rows.edge_keys(pk, wide) == {
        k for k, e in stored.items() if e["PartitionKey"] == pk
    }


def test_many_calls_near_midnight_page_a_crowded_window_rather_than_look_each_up(
    cfg: Config, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender who plants rows a second before midnight, across the whole range of row
    keys, makes the window of the next batch's calls near midnight hold more than EDGE_PAGES
    pages. Looking up 280 calls by key costs 20 queries; the window's 6 pages cost 6: a
    window may read as many pages as the look-ups would cost, so the batch pays the lesser."""
    monkeypatch.setattr(audit, "EDGE_PAGE", 25)  # pages of 25 rows, not 1,000
    planted = [
        gateway_at(apim.new_id(f"planted-{i}"), MIDNIGHT - timedelta(seconds=1)) for i in range(140)
    ]
    process_batch([EventIn(apim.envelope(*planted), sequence=1)], cfg, store)
    calls = [
        gateway_at(apim.new_id(f"after-{i}"), MIDNIGHT + timedelta(seconds=30)) for i in range(280)
    ]
    counter = Reads()
    counted = Store(cfg, raw_request_hook=counter)
    events = [
        EventIn(apim.envelope(*calls[i : i + 70]), sequence=10 + i) for i in range(0, 280, 70)
    ]
    result = process_batch(events, cfg, counted)
    assert result.created == 280
    # The previous day's window: 6 pages of 25 (140 rows, none of them these calls); the
    # next day's own partition is written, not read. By key it was ⌈280/14⌉ = 20 queries.
    assert counter.reads <= 8, counter.counts
    assert len(list(store.audit.list_entities())) == 420


def test_a_call_whose_records_are_years_apart_reads_no_days_traffic(
    cfg: Config, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any sender can write a call whose gateway record is in 2016 and its LLM-log header a
    second before midnight: the neighbouring day's window then spans that whole day, and
    paging through it cost a read per 1,000 of its rows in every batch that carried the call.
    Past EDGE_PAGES pages the batch's calls are looked up by key: a call that really crosses
    midnight still ends as one row."""
    monkeypatch.setattr(audit, "EDGE_PAGE", 25)  # the bound in pages of 25 rows, not 1,000
    day = MIDNIGHT - timedelta(days=1)
    rng = random.Random(7)
    traffic = [
        gateway_at(apim.new_id(f"busy-{i}"), day + timedelta(seconds=rng.uniform(0, 86_000)))
        for i in range(1_200)
    ]
    crossing = apim.new_id("crossing")
    traffic.append(sources.llm_header(crossing, time=stamp(MIDNIGHT - timedelta(seconds=1))))
    events = [EventIn(apim.envelope(*traffic[i : i + 50]), sequence=i) for i in range(0, 1201, 50)]
    assert process_batch(events, cfg, store).calls == 1_201
    counter = Reads()
    counted = Store(cfg, raw_request_hook=counter)
    forged = [
        r
        for cid in ("00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff")
        for r in (
            gateway_at(cid, datetime(2016, 1, 1, 12, tzinfo=UTC)),
            sources.llm_header(cid, time=stamp(MIDNIGHT - timedelta(seconds=1))),
        )
    ]
    late = gateway_at(crossing, MIDNIGHT + timedelta(seconds=1))
    events = [EventIn(apim.envelope(*forged), sequence=9_000), EventIn(apim.envelope(late))]
    process_batch(events, cfg, counted)
    # The busy day's partition: EDGE_PAGES pages, then a key query (paging through it: 24
    # pages); the next day's, empty: a page. The crossing call's row is merged, not re-read.
    assert counter.reads <= 6, counter.counts
    (row,) = store.find_rows(crossing)  # one row of the call, on any day
    assert row["Sources"] == "gateway,llm"
    assert len(list(store.audit.list_entities())) == 1_203  # no second row of any call

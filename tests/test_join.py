"""GatewayLogs, GatewayLlmLogs and log-to-eventhub messages joined into one row per call,
whatever order, batches and partitions the records arrive in."""

from __future__ import annotations

import copy
import gzip
import random
from typing import Any

import orjson
import pytest

from pipeline.ingest.batch import process_batch, transform
from pipeline.model import EventIn
from pipeline.protect.archive import record_id
from pipeline.settings import Config
from pipeline.store.account import Store
from tests.fixtures import apim, sources
from tests.test_ingest import all_rows, comparable

Q = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Summarise our travel policy in one sentence."},
]
A = [{"role": "assistant", "content": "Book economy class and submit receipts within 30 days."}]
LONG_Q = [{"role": "user", "content": "Please review this contract clause by clause. " * 40}]


def scenario() -> tuple[list[tuple[str, dict[str, Any] | bytes]], dict[str, dict[str, Any]]]:
    """(records to deliver, each with a label), and what each call's row must say."""
    ids = {
        n: apim.new_id(f"join-{n}")
        for n in (
            "gw_llm",
            "reported",
            "llm_only",
            "stream",
            "policy",
            "all3",
            "chunks",
            "no_header",
            "gw_only",
        )
    }
    recs: list[tuple[str, dict[str, Any] | bytes]] = []
    # Gateway without bodies + LLM header + LLM messages: the common "LLM logging" setup.
    recs += [
        ("gw_llm/gw", apim.gateway(ids["gw_llm"], request=None, response=None)),
        ("gw_llm/hdr", sources.llm_header(ids["gw_llm"])),
        ("gw_llm/msg", sources.llm_messages(ids["gw_llm"], Q, A)),
    ]
    # Gateway with bodies: the response body's usage beats the LLM log.
    recs += [
        ("reported/gw", apim.gateway(ids["reported"])),
        ("reported/hdr", sources.llm_header(ids["reported"], prompt=29, completion=13)),
    ]
    # Only LLM logs (variant B, flat PascalCase).
    recs += [
        (
            "llm_only/hdr",
            sources.llm_header(
                ids["llm_only"], variant="B", model="gpt-4.1-2025-04-14", deployment="gpt41"
            ),
        ),
        ("llm_only/msg", sources.llm_messages(ids["llm_only"], Q, A, variant="B")),
    ]
    # Streamed, no response body logged: the gateway estimates the prompt, the LLM log knows.
    recs += [
        (
            "stream/gw",
            apim.gateway(
                ids["stream"],
                request=apim.chat_request(("user", "Say hello."), stream=True),
                response=None,
            ),
        ),
        ("stream/hdr", sources.llm_header(ids["stream"], prompt=10, completion=3, stream=True)),
    ]
    # Our policy alone.
    recs += [
        (
            "policy/pol",
            sources.policy_message(
                ids["policy"], request={"messages": Q}, response=apim.chat_response(A[0]["content"])
            ),
        )
    ]
    # All three sources for one call.
    recs += [
        ("all3/gw", apim.gateway(ids["all3"], request=None, response=None)),
        (
            "all3/pol",
            sources.policy_message(
                ids["all3"], request={"messages": Q}, response=apim.chat_response(A[0]["content"])
            ),
        ),
        ("all3/hdr", sources.llm_header(ids["all3"])),
    ]
    # A request message split into three chunks.
    recs += [
        ("chunks/gw", apim.gateway(ids["chunks"], request=None, response=None)),
        ("chunks/hdr", sources.llm_header(ids["chunks"], prompt=412, completion=30)),
    ]
    recs += [
        (f"chunks/c{i}", r) for i, r in enumerate(sources.chunked_request(ids["chunks"], LONG_Q))
    ]
    # The LLM header record never arrives: tokens stay the gateway's estimate.
    recs += [
        (
            "no_header/gw",
            apim.gateway(
                ids["no_header"],
                request=apim.chat_request(("user", "Say hello."), stream=True),
                response=None,
            ),
        ),
        (
            "no_header/msg",
            sources.llm_messages(
                ids["no_header"],
                [{"role": "user", "content": "Say hello."}],
                [{"role": "assistant", "content": "Hello there"}],
            ),
        ),
    ]
    recs += [("gw_only/gw", apim.gateway(ids["gw_only"], response=None))]

    expect = {
        ids["gw_llm"]: dict(
            Sources="gateway,llm",
            TokensSource="llm-log",
            PromptTokens=29,
            CompletionTokens=13,
            TotalTokens=42,
            Model="gpt-4o-2024-08-06",
            SubscriptionId="team-finance",
            Status=200,
            DurationMs=1834,
            PromptPreview="You are a helpful assistant.",
            CompletionPreview=A[0]["content"],
        ),
        ids["reported"]: dict(
            Sources="gateway,llm", TokensSource="reported", PromptTokens=29, CachedTokens=0
        ),
        ids["llm_only"]: dict(
            Sources="llm",
            TokensSource="llm-log",
            Model="gpt-4.1-2025-04-14",
            Deployment="gpt41",
            Status=None,
            SubscriptionId=None,
            PromptPreview="You are a helpful assistant.",
        ),
        ids["stream"]: dict(
            Sources="gateway,llm",
            TokensSource="llm-log",
            PromptTokens=10,
            CompletionTokens=3,
            Streamed=True,
        ),
        ids["policy"]: dict(
            Sources="policy",
            TokensSource="reported",
            PromptTokens=29,
            CallerAppId="8f0e2b1c-1111-4a2b-9c3d-5e6f7a8b9c0d",
            CallerIp="10.0.0.4",  # what APIM saw: no proxy is trusted (TRUSTED_PROXIES)
            BackendId="aoai-weu",
            DurationMs=1840,
            Deployment="chat-prod",
        ),
        ids["all3"]: dict(
            Sources="gateway,policy,llm",
            TokensSource="reported",
            DurationMs=1834,
            CallerAppId="8f0e2b1c-1111-4a2b-9c3d-5e6f7a8b9c0d",
            PromptPreview="You are a helpful assistant.",
        ),
        ids["chunks"]: dict(
            Sources="gateway,llm",
            TokensSource="llm-log",
            PromptTokens=412,
            PromptPreview=LONG_Q[0]["content"][:100],
        ),
        ids["no_header"]: dict(
            Sources="gateway,llm",
            TokensSource="estimated",
            PromptTokens=10,
            CompletionTokens=None,
            CompletionPreview="Hello there",
        ),
        ids["gw_only"]: dict(
            Sources="gateway", TokensSource="estimated", PromptTokens=27, CompletionTokens=None
        ),
    }
    return recs, expect


def body_of(item: dict[str, Any] | bytes) -> bytes:
    return item if isinstance(item, bytes) else apim.envelope(item)


def deliver(store: Store, cfg: Config, batches: list[list[EventIn]]) -> None:
    for batch in batches:
        process_batch(batch, cfg, store)


def fresh(cfg: Config, suffix: str) -> tuple[Config, Store]:
    other = Config(
        storage_connection=cfg.storage_connection,
        audit_table=f"{cfg.audit_table}{suffix}",
        archive_container=f"{cfg.archive_container}-{suffix}",
        deadletter_container=f"{cfg.deadletter_container}-{suffix}",
    )
    store = Store(other)
    store.ensure()
    return other, store


def test_every_delivery_order_and_cut_gives_identical_rows(cfg: Config, store: Store) -> None:
    recs, expect = scenario()
    events = [
        EventIn(body_of(r), partition="0", sequence=i, origin=label)
        for i, (label, r) in enumerate(recs)
    ]

    # Reference: everything in one batch, in log order.
    deliver(store, cfg, [events])
    reference = {k: comparable(v, pointers=False) for k, v in all_rows(store).items()}
    assert set(reference) == set(expect)
    for cid, want in expect.items():
        row = reference[cid]
        for key, value in want.items():
            assert row.get(key) == value, f"{cid} {key}: {row.get(key)!r} != {value!r}"

    rng = random.Random(20251127)
    for trial in range(8):
        order = events[:]
        rng.shuffle(order)
        # Redeliver a few events (at-least-once), on other partitions, cut into random batches.
        order += [
            EventIn(e.body, partition="1", sequence=1000 + i, origin=e.origin)
            for i, e in enumerate(rng.sample(events, 4))
        ]
        rng.shuffle(order)
        batches, i = [], 0
        while i < len(order):
            n = rng.randint(1, 6)
            batches.append(order[i : i + n])
            i += n
        other_cfg, other = fresh(cfg, f"t{trial}")
        deliver(other, other_cfg, batches)
        got = {k: comparable(v, pointers=False) for k, v in all_rows(other).items()}
        assert set(got) == set(reference), f"trial {trial}: other calls"
        for cid, row in got.items():
            diff = {
                k: (row.get(k), reference[cid].get(k))
                for k in set(row) | set(reference[cid])
                if row.get(k) != reference[cid].get(k)
            }
            assert not diff, f"trial {trial}, call {cid}: {diff}"


def test_llm_message_in_three_chunks_in_one_batch_and_across_batches(
    cfg: Config, store: Store
) -> None:
    cid = apim.new_id("chunks-only")
    chunks = sources.chunked_request(cid, LONG_Q)
    for c in chunks:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(c["properties"]["requestMessages"])  # no slice parses alone
    deliver(store, cfg, [[EventIn(apim.envelope(*chunks))]])
    together = all_rows(store)[cid]
    assert together["PromptPreview"] == LONG_Q[0]["content"][:100]
    other_cfg, other = fresh(cfg, "apart")
    deliver(other, other_cfg, [[EventIn(apim.envelope(c))] for c in reversed(chunks)])
    apart = all_rows(other)[cid]
    assert comparable(apart, pointers=False) == comparable(together, pointers=False)
    assert (
        together["Sources"] == "llm" and together.get("PromptTokens") is None
    )  # messages never add tokens


def test_a_chunk_delivered_twice_or_a_rival_chunk_is_joined_once(cfg: Config) -> None:
    # A message short enough that its preview spans all three chunks: a chunk joined twice,
    # or beside a rival of its sequence number, shows in the preview (a sender's duplicate,
    # an at-least-once redelivery inside one batch).
    cid = apim.new_id("dup-chunk")
    text = "Alpha bravo charlie delta echo foxtrot golf hotel india. "
    header = sources.llm_header(cid)
    c1, c2, c3 = sources.chunked_request(cid, [{"role": "user", "content": text * 3}])
    rival = copy.deepcopy(c2)
    rival["properties"]["requestMessages"] = c2["properties"]["requestMessages"].upper()

    def preview(*events: list[dict[str, Any]]) -> str:
        batch = [EventIn(apim.envelope(*records), sequence=i) for i, records in enumerate(events)]
        ((_, row),) = transform(batch, cfg).rows
        return str(row["PromptPreview"])

    once = preview([header, c1, c2, c3])
    assert once == (text * 2)[:100]
    assert preview([header, c1, c1, c2, c3]) == once
    assert preview([header, c3, c2, c1], [header, c1, c2, c3]) == once
    # The record of a sequence number the join keeps (the greatest record id) gives its text.
    kept = max((c2, rival), key=lambda r: record_id(orjson.dumps(r)))
    expect = preview([header, c1, kept, c3])
    assert preview([header, c1, c2, rival, c3]) == expect
    assert preview([header, c1, rival, c2, c3]) == expect


def test_calls_straddling_midnight_keep_one_row(cfg: Config, store: Store) -> None:
    cid = apim.new_id("midnight")
    gw = apim.gateway(cid, time="2025-03-04T23:59:59.9000000Z", request=None, response=None)
    hdr = sources.llm_header(cid, time="2025-03-05T00:00:01.2000000Z")
    results = []
    for n, order in enumerate(((gw, hdr), (hdr, gw))):
        c, s = fresh(cfg, f"m{n}")
        deliver(s, c, [[EventIn(apim.envelope(order[0]))], [EventIn(apim.envelope(order[1]))]])
        rows = list(s.audit.list_entities())
        assert len(rows) == 1, [r["PartitionKey"] for r in rows]
        assert rows[0]["PartitionKey"].startswith("2025-03-04_")  # the gateway's day
        assert rows[0]["Sources"] == "gateway,llm" and rows[0]["TokensSource"] == "llm-log"
        results.append(comparable(rows[0], pointers=False))
    assert results[0] == results[1]


def test_public_policy_shapes(cfg: Config, store: Store) -> None:
    a_id, b_id, c_id = (
        "chatcmpl-C2aRt7PqLm0XzYvWuTsRqPoNmLkJi",
        "chatcmpl-B7xYzQ1aBcDeFgHiJkLmNoPqRsTu",
        apim.new_id("shape-c"),
    )
    req_c, resp_c = sources.shape_c_pair(c_id)
    b_missing = sources.shape_b("chatcmpl-nousage", promptTokens=1, responseTokens=0, totalTokens=1)
    a_missing = sources.shape_a(
        "chatcmpl-nousage-a",
        promptTokens="0",
        responseTokens="0",
        totalTokens="0",
    )
    events = [sources.shape_a(a_id), sources.shape_b(b_id), resp_c, req_c, b_missing, a_missing]
    result = process_batch([EventIn(e) for e in events], cfg, store)
    assert result.dead_letters == 0
    rows = all_rows(store)
    a = rows[a_id]
    assert (a["PromptTokens"], a["CompletionTokens"], a["TotalTokens"], a["TokensSource"]) == (
        29,
        13,
        42,
        "reported",
    )
    assert (
        a["Model"] == "gpt-4o-2024-08-06"
        and a["Region"] == "westeurope"
        and a["CallerIp"] == "203.0.113.10"
    )
    assert a["PromptPreview"] == "Summarise our travel policy in one sentence."
    assert a["CompletionPreview"] == "Book economy class and submit receipts within 30 days."
    assert a["CallTime"].isoformat().startswith("2025-03-04T10:15:03")
    b = rows[b_id]
    assert (
        b["PromptTokens"],
        b["CompletionTokens"],
        b["SubscriptionId"],
        b["CallerAppId"],
    ) == (29, 13, "team-hr", "6a1e3f9b-2c4d-4e5f-8a9b-0c1d2e3f4a5b")
    assert "CallerUserId" not in b  # endUserId is what the client's request says
    c = rows[c_id]
    assert (c["PromptTokens"], c["TotalTokens"], c["BackendMs"], c["Sources"]) == (
        29,
        42,
        812,
        "policy",
    )
    assert c["PromptPreview"] == "Summarise our travel policy in one sentence."
    assert c["CompletionPreview"] == "Book economy class."
    # `?? 1` and "0" defaults are not usage: unknown, never a fabricated count
    assert rows["chatcmpl-nousage"]["TokensSource"] == "none"
    assert "PromptTokens" not in rows["chatcmpl-nousage"]
    assert "PromptTokens" not in rows["chatcmpl-nousage-a"]
    # Keyed by its response id (its `apimRequestId` is the backend's request id).
    assert a["KeyedBy"] == "ResponseId"


def test_policy_message_cut_at_200_kb_is_salvaged(cfg: Config, store: Store) -> None:
    cid = apim.new_id("cut-200k")
    long_answer = "Clause 7 allows termination with 30 days notice. " * 5000  # ~250 KB
    body = sources.policy_message(
        cid, request={"messages": Q}, response=apim.chat_response(long_answer, completion=50000)
    )
    cut = body[: 200 * 1024]
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(cut)
    result = process_batch([EventIn(cut)], cfg, store)
    assert result.dead_letters == 0
    row = all_rows(store)[cid]
    assert row["BodyTruncated"] is True and row["Sources"] == "policy"
    assert row["SubscriptionId"] == "team-finance" and row["Status"] == 200
    assert row["PromptPreview"] == "You are a helpful assistant."
    assert row["CompletionPreview"].startswith("Clause 7 allows")
    assert row["TokensSource"] == "estimated"  # usage came after the cut
    # Cut longer than APIM cuts a message: not one it cut, and not repaired (a replay unit of
    # 64 MiB was, copied a few times over).
    longer_body = sources.policy_message(
        cid, request={"messages": Q}, response=apim.chat_response(long_answer * 2, completion=9)
    )
    longer = transform([EventIn(longer_body[: 300 * 1024])], cfg)
    assert not longer.rows and len(longer.plan.dead) == 1


@pytest.mark.parametrize("between", [b"", b"\n", b"\r\n  "])
def test_two_messages_in_one_event_are_one_dead_letter_not_the_first_call(between: bytes) -> None:
    """Two whole policy messages one after the other (a sender's newline-delimited batch, or
    two writes run together) are not a message cut short: salvaging the first left the
    second call unread and unarchived. The event is a dead letter with its bytes."""
    ids = apim.new_id("two-1"), apim.new_id("two-2")
    first, second = (sources.policy_message(cid, request={"messages": Q}) for cid in ids)
    body = first + between + second
    result = transform([EventIn(body)], Config())
    assert not result.rows
    (dead,) = result.plan.dead
    assert dead.event.body == body and all(cid.encode() in dead.body for cid in ids)
    # Something between them hides nothing.
    (dead,) = transform([EventIn(first + b"x" + second)], Config()).plan.dead
    assert ids[1].encode() in dead.body
    # Padding after a whole message (NULs, a byte order mark): the message, salvaged.
    for padding in (b"\x00" * 16, "\ufeff".encode(), b"\r\n\x00"):
        (row,) = transform([EventIn(first + padding)], Config()).rows
        assert row[1]["RowKey"] == ids[0]


def test_on_error_message_from_the_gateway(cfg: Config, store: Store) -> None:
    cid = apim.new_id("policy-429")
    err = {
        "source": "llm-token-limit",
        "reason": "TokenLimitExceeded",
        "message": "Token limit is exceeded. Try again in 41 seconds.",
        "scope": "api",
        "section": "inbound",
        "policyId": "llm-token-limit",
    }
    body = sources.policy_message(
        cid, section="on-error", status=429, request={"messages": Q}, error=err
    )
    process_batch([EventIn(body)], cfg, store)
    row = all_rows(store)[cid]
    assert (row["Status"], row["ErrorCode"], row["ErrorSource"], row["TokensSource"]) == (
        429,
        "TokenLimitExceeded",
        "gateway",
        "none",
    )
    assert "BackendStatus" not in row


def test_the_policy_message_format_is_what_the_policy_xml_builds() -> None:
    names = sources.policy_property_names()
    built = orjson.loads(
        sources.policy_message(
            "x",
            section="on-error",
            error={
                k: None for k in ("source", "reason", "message", "scope", "section", "policyId")
            },
        )
    )
    top = list(built)
    assert names == [*top[:-1], "error", *list(built["error"])], (
        "the fixture drifted from the policy XML"
    )
    text = sources.fragment_expression()
    assert "preserveContent: true" in text and "set-body" not in text and "set-header" not in text
    assert "Formatting.None" in text


def test_bearer_token_attribution_on_gateway_logs(cfg: Config, store: Store) -> None:
    token = sources.jwt(
        {
            "appid": "app-123",
            "oid": "user-456",
            "tid": "tenant-789",
            "aud": "https://cognitiveservices.azure.com",
        }
    )
    ok = apim.gateway(apim.new_id("jwt-ok"), requestHeaders={"Authorization": f"Bearer {token}"})
    failed = apim.backend_429(
        apim.new_id("jwt-429"), requestHeaders={"Authorization": f"Bearer {token}"}
    )
    process_batch([EventIn(apim.envelope(ok, failed))], cfg, store)
    rows = all_rows(store)
    assert (
        rows[ok["correlationId"]]["CallerAppId"],
        rows[ok["correlationId"]]["CallerUserId"],
        rows[ok["correlationId"]]["CallerTenantId"],
    ) == ("app-123", "user-456", "tenant-789")
    assert (
        "CallerAppId" not in rows[failed["correlationId"]]
    )  # a token of a failed call is not trusted
    blobs = b"".join(
        store.archive.download_blob(b.name).readall() for b in store.archive.list_blobs()
    )
    assert token.encode() not in gzip.decompress(blobs)
    assert token.split(".")[1].encode() not in orjson.dumps(
        [dict(r) for r in rows.values()], default=str
    )


def test_caller_from_bearer_can_be_switched_off(cfg: Config) -> None:
    from dataclasses import replace

    from pipeline.ingest.plan import plan_batch

    token = sources.jwt({"appid": "app-123", "oid": "user-456"})
    rec = apim.gateway(apim.new_id("jwt-off"), requestHeaders={"Authorization": f"Bearer {token}"})
    plan = plan_batch([EventIn(apim.envelope(rec))], replace(cfg, trust_bearer=False))
    (state,) = plan.states.values()
    assert state.call.fragments["gateway"].facts.caller_app_id is None


def test_mixed_categories_in_one_envelope(cfg: Config, store: Store) -> None:
    cid = apim.new_id("mixed")
    body = apim.envelope(
        sources.llm_header(cid),
        apim.websocket_record(),
        apim.gateway(cid, response=None),
        {"category": "GatewayMCPLogs", "time": "2025-03-04T10:15:04Z", "properties": {}},
    )
    result = process_batch([EventIn(body)], cfg, store)
    assert result.skipped == {"WebSocketConnectionLogs": 1, "GatewayMCPLogs": 1}
    assert result.dead_letters == 0 and result.calls == 1
    row = all_rows(store)[cid]
    assert row["Sources"] == "gateway,llm" and row["TokensSource"] == "llm-log"


@pytest.mark.parametrize("deployment", ["", None])
def test_an_llm_header_naming_no_deployment_is_still_the_calls_header(
    deployment: str | None,
) -> None:
    """Message records carry no tokens; a record that reports them without a deployment (a
    route naming none) was read as a message record: its tokens, model and response id went
    nowhere, and the call looked unlogged (TokensSource none)."""
    cid = apim.new_id(f"llm-header-no-deployment-{deployment}")
    header = sources.llm_header(cid, deployment=deployment or "")
    if deployment is None:
        del header["properties"]["deploymentName"]
    ((_, row),) = transform([EventIn(apim.envelope(header))], Config()).rows
    assert (row["TokensSource"], row["PromptTokens"], row["TotalTokens"]) == ("llm-log", 29, 42)
    assert row["Model"] == "gpt-4o-2024-08-06" and row["ResponseId"].startswith("chatcmpl-")

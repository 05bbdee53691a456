"""Regenerate the demo's sample Event Hub events (deterministic).

    .venv/bin/python samples/make_samples.py

Each line of a `.jsonl` file is one Event Hub message body, as APIM's diagnostic setting
(`{"records": [...]}`) sends it. Shapes follow ../shared/reference/formats.md; see
tests/fixtures/apim.py for which fields are documented and which are inferred.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fixtures import apim, shapes, sources  # noqa: E402

DAY = "2025-11-03"


def t(hms: str, day: str = DAY) -> str:
    return f"{day}T{hms}.1234567Z"


def gatewaylogs() -> list[bytes]:
    q = "Summarise our travel policy in one sentence."
    events = [
        apim.envelope(
            apim.gateway(apim.new_id("s1"), time=t("09:02:11"), apimSubscriptionId="team-finance"),
            apim.gateway(
                apim.new_id("s2"),
                time=t("09:05:40"),
                apimSubscriptionId="team-hr",
                productId="ai-premium",
                backendId="aoai-swc",
                deployment="gpt41-prod",
                request=apim.chat_request(
                    ("system", "You answer HR questions briefly."),
                    ("user", "How many vacation days do new hires get?"),
                ),
                response=apim.chat_response(
                    "New hires get 25 vacation days per year.",
                    model="gpt-4.1-2025-04-14",
                    prompt=31,
                    completion=11,
                    cached=0,
                ),
                durationMs=912,
                backendTime=880,
            ),
            apim.websocket_record(),
            # Personal data in the prompt: previews and the archive keep placeholders only.
            apim.gateway(
                apim.new_id("s8"),
                time=t("09:06:15"),
                apimSubscriptionId="team-travel",
                request=apim.chat_request(
                    (
                        "user",
                        "Email the itinerary to maria.garcia@contoso.com and text +34 612 345 678.",
                    ),
                ),
                response=apim.chat_response(
                    "Done: sent to maria.garcia@contoso.com.", prompt=24, completion=9
                ),
                durationMs=1402,
                backendTime=1371,
            ),
        ),
        apim.envelope(
            apim.embeddings_call(
                apim.new_id("s3"),
                ["travel policy", "expense policy"],
                tokens=4,
                time=t("09:07:02"),
                apimSubscriptionId="team-search",
                durationMs=87,
                backendTime=70,
            )
        ),
        apim.envelope(
            apim.backend_429(apim.new_id("s4"), time=t("09:12:45"), apimSubscriptionId="team-hr"),
            apim.gateway_429(apim.new_id("s5"), time=t("09:12:46"), apimSubscriptionId="team-hr"),
        ),
        apim.envelope(
            # Body logging off (the diagnostic default): status and timings only.
            apim.gateway(
                apim.new_id("s6"),
                time=t("09:20:03"),
                request=None,
                response=None,
                apimSubscriptionId="team-finance",
                durationMs=2210,
                backendTime=2170,
            ),
            # Streamed: Microsoft advises not logging bodies of SSE calls; the request says so.
            apim.gateway(
                apim.new_id("s7"),
                time=t("09:21:30"),
                request=apim.chat_request(("user", q), stream=True),
                response=None,
                apimSubscriptionId="team-support",
                durationMs=4120,
                backendTime=4100,
            ),
        ),
        apim.envelope(*_more_shapes()),
        b'{"records": [{"category": "GatewayLogs", "properties": {"responseCode": 200',
    ]
    return events


def _more_shapes() -> list[dict]:
    """Streams, a body cut at 8,192 bytes, the Responses API, a content-filter refusal."""
    cases = shapes.cases()
    out = []
    for i, (name, sub) in enumerate(
        (
            ("stream_without_usage", "team-support"),
            ("stream_with_usage", "team-support"),
            ("cut_inside_choices", "team-legal"),
            ("responses_v1", "team-finance"),
            ("content_filter_400", "team-hr"),
        )
    ):
        rec = cases[name][0]
        rec["time"] = t(f"10:{10 + i:02d}:05")
        rec["properties"]["apimSubscriptionId"] = sub
        out.append(rec)
    return out


def llm_and_policy() -> list[bytes]:
    """Body logging off, built-in LLM logging on: the LLM records arrive first, in their own
    events, and the gateway records later; plus our own log-to-eventhub policy's messages."""
    a, b, c = apim.new_id("llm-a"), apim.new_id("llm-b"), apim.new_id("policy-c")
    q = [{"role": "user", "content": "Draft a polite reminder about the expense deadline."}]
    answer = [
        {"role": "assistant", "content": "Hi all, a friendly reminder: expenses are due Friday."}
    ]
    return [
        apim.envelope(
            sources.llm_header(a, time=t("11:02:00"), prompt=18, completion=14),
            sources.llm_messages(a, q, answer, time=t("11:02:00")),
            sources.llm_header(
                b,
                time=t("11:03:00"),
                prompt=22,
                completion=120,
                stream=True,
                deployment="gpt41-prod",
                model="gpt-4.1-2025-04-14",
            ),
        ),
        apim.envelope(
            apim.gateway(
                a,
                time=t("11:02:00"),
                request=None,
                response=None,
                apimSubscriptionId="team-support",
                durationMs=1210,
                backendTime=1180,
            ),
            apim.gateway(
                b,
                time=t("11:03:00"),
                deployment="gpt41-prod",
                request=None,
                response=None,
                apimSubscriptionId="team-legal",
                durationMs=6020,
                backendTime=5990,
            ),
        ),
        sources.policy_message(
            c,
            time=t("11:04:00"),
            request={"messages": q},
            response=apim.chat_response(answer[0]["content"], prompt=18, completion=14),
            subscription="team-marketing",
        ),
    ]


def week() -> list[bytes]:
    """Five days of ordinary traffic for the KPI report: several teams, models and backends,
    a few throttled and failed calls, events of 8 records each (as diagnostics batch them)."""
    rng = random.Random(2025)
    teams = ["team-finance", "team-hr", "team-support", "team-legal", "team-search"]
    models = [
        ("chat-prod", "gpt-4o-2024-08-06", "aoai-weu"),
        ("gpt41-prod", "gpt-4.1-2025-04-14", "aoai-swc"),
        ("mini-prod", "gpt-4o-mini-2024-07-18", "aoai-weu"),
        ("o3-mini", "o3-mini-2025-01-31", "aoai-swc"),
    ]
    records = []
    for day in range(4, 9):
        for i in range(rng.randint(25, 40)):
            deployment, model, backend = rng.choice(models)
            team = rng.choice(teams)
            clock = f"{rng.randint(7, 19):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
            when = t(clock, f"2025-11-{day:02d}")
            cid = apim.new_id(f"week-{day}-{i}")
            duration = int(rng.lognormvariate(7.0, 0.6))
            roll = rng.random()
            if roll < 0.05:
                rec = apim.backend_429(
                    cid,
                    time=when,
                    deployment=deployment,
                    apimSubscriptionId=team,
                    backendId=backend,
                )
            elif roll < 0.08:
                rec = apim.gateway_429(
                    cid, time=when, deployment=deployment, apimSubscriptionId=team
                )
            else:
                prompt = rng.randint(40, 4000)
                completion = rng.randint(10, 900)
                reasoning = completion // 2 if model.startswith("o3") else 0
                cached = (prompt // 1024) * 1024 if rng.random() < 0.3 else 0
                rec = apim.gateway(
                    cid,
                    time=when,
                    deployment=deployment,
                    request=apim.chat_request(("user", "Summarise the attached notes.")),
                    response=apim.chat_response(
                        "Here is the summary.",
                        model=model,
                        prompt=prompt,
                        completion=completion,
                        cached=cached,
                        reasoning=reasoning,
                    ),
                    apimSubscriptionId=team,
                    backendId=backend,
                    durationMs=duration,
                    backendTime=max(1, duration - rng.randint(5, 40)),
                )
            records.append(rec)
    return [apim.envelope(*records[i : i + 8]) for i in range(0, len(records), 8)]


def main() -> None:
    for name, events in (
        ("gatewaylogs.jsonl", gatewaylogs()),
        ("llm-and-policy.jsonl", llm_and_policy()),
        ("week.jsonl", week()),
    ):
        out = ROOT / "samples" / name
        out.write_bytes(b"\n".join(events) + b"\n")
        print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

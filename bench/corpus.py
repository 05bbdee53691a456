"""A realistic, deterministic corpus for the benchmarks: prompts with some personal data, and
(bench/pipeline.py) APIM diagnostic events built from them.

Prompts mix business prose with the numbers real prompts carry (amounts, dates, versions,
order numbers) and, in about one prompt in four, personal data or a secret.
"""

from __future__ import annotations

import random

PROSE = [
    "Summarise the attached meeting notes and list the action items for each owner.",
    "Draft a polite reply declining the invitation but proposing a call next week.",
    "Explain the difference between our standard and premium support plans in plain language.",
    "Rewrite this paragraph so that it is shorter and easier to read for new employees.",
    "What are the main risks in the migration plan, and how would you mitigate them?",
    "Translate the following customer feedback into English and classify its sentiment.",
    "Give me three options for the subject line of the quarterly newsletter.",
    "The vendor contract renews automatically unless cancelled ninety days in advance.",
    "Our travel policy requires economy class for flights shorter than six hours.",
    "Please check the SQL query below for performance problems and suggest indexes.",
    "The incident started after the deployment and affected the checkout service.",
    "List the open questions from the architecture review in order of priority.",
    "Create a short onboarding checklist for engineers joining the platform team.",
    "Compare the two proposals on cost, delivery time and technical risk.",
]
NUMBERS = [
    "The invoice total is EUR {a},{b:03d}.{c:02d}.",
    "The meeting moved to 2025-0{m}-1{d} at 1{h}:30.",
    "Order #{o}-{p} shipped with version {m}.{d}.{h}.",
    "We processed {a}{b:03d} requests in {h} hours with a p95 of {c}0 ms.",
    "Ticket INC{o}{p} was raised at 0{h}:{c:02d}.",
]
PII = [
    "You can reach me at {first}.{last}@contoso.com if anything is unclear.",
    "Call me on +44 20 7946 0{d}{h}{m} after 5pm.",
    "My phone is (555) 123-4{d}{h}{m} and my backup is 555.987.65{d}{h}.",
    "Please charge the card 4111 1111 1111 1111 for the conference fee.",
    "Transfer the deposit to DE89 3704 0044 0532 0130 00 by Friday.",
    "The server at 10.20.{d}.{h} keeps rejecting the connection.",
    "Here is the connection string: Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=abcDEF123ghiJKL456mno{first}=",
    "Use the key sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5{d}{h} for the test.",
    "My SSN is 123-45-67{d}{h}, please update the HR record.",
]
FIRST = ["alice", "bob", "carol", "dinesh", "eva", "farid", "grace", "hiro"]
LAST = ["martin", "smith", "kumar", "nakamura", "schmidt", "rossi", "dubois", "silva"]


def prompt(rng: random.Random, sentences: int) -> str:
    parts = []
    for _ in range(sentences):
        r = rng.random()
        if r < 0.04:
            template = rng.choice(PII)
        elif r < 0.20:
            template = rng.choice(NUMBERS)
        else:
            template = rng.choice(PROSE)
        parts.append(
            template.format(
                a=rng.randint(1, 99),
                b=rng.randint(0, 999),
                c=rng.randint(0, 99),
                m=rng.randint(1, 9),
                d=rng.randint(0, 9),
                h=rng.randint(0, 9),
                o=rng.randint(1000, 9999),
                p=rng.randint(100, 999),
                first=rng.choice(FIRST),
                last=rng.choice(LAST),
            )
        )
    return " ".join(parts)


def prompts(n: int, seed: int = 7, sentences: tuple[int, int] = (3, 30)) -> list[str]:
    rng = random.Random(seed)
    return [prompt(rng, rng.randint(*sentences)) for _ in range(n)]


# --- APIM events (bench/pipeline.py, bench/replay.py) ---------------------------------------

ANSWER = (
    "Here is a summary of the main points. The migration keeps the existing interfaces and moves "
    "the batch jobs to the new platform in three phases; each phase has a rollback plan. "
)


def _call(rng: random.Random, i: int, day: str, tag: str) -> dict:
    import orjson

    from tests.fixtures import apim, shapes

    cid = apim.new_id(f"bench-{tag}-{i}")
    when = (
        f"{day}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.1234567Z"
    )
    team = f"team-{rng.randint(1, 12)}"
    backend = rng.choice(["aoai-weu", "aoai-swc", "aoai-frc"])
    duration = int(rng.lognormvariate(7, 0.6))
    common = dict(
        time=when,
        apimSubscriptionId=team,
        backendId=backend,
        durationMs=duration,
        backendTime=max(1, duration - 20),
    )
    r = rng.random()
    text = prompt(rng, rng.randint(2, 12))
    if r < 0.60:  # chat
        answer = (ANSWER * rng.randint(1, 30))[: rng.randint(200, 9000)]
        rec = apim.gateway(
            cid,
            request=apim.chat_request(("system", "You are a helpful assistant."), ("user", text)),
            response=apim.chat_response(
                answer, prompt=len(text) // 4 + 20, completion=len(answer) // 4
            ),
            **common,
        )
        body = rec["properties"]["backendResponseBody"]
        if len(body.encode()) > 8192:  # as APIM logs it: the first 8,192 bytes
            rec["properties"]["responseSize"] = len(body.encode()) + 400
            for key in ("backendResponseBody", "responseBody"):
                rec["properties"][key] = apim.cut_utf8(rec["properties"][key], 8192)
    elif r < 0.75:  # streamed
        words = [w + " " for w in (ANSWER * 3).split()[: rng.randint(20, 120)]]
        usage = rng.random() < 0.5
        chunks = (
            [shapes.FIRST_EVENT]
            + [shapes._chunk({"content": w}) for w in words]
            + [shapes._chunk({}, "stop")]
        )
        if usage:
            chunks.append(
                shapes._chunk({}, None)
                | {
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 40,
                        "completion_tokens": len(words),
                        "total_tokens": 40 + len(words),
                    },
                }
            )
        stream = shapes.sse(*chunks)
        rec = apim.gateway(
            cid,
            request=apim.chat_request(("user", text), stream=True),
            response=apim.cut_utf8(stream, 8192),
            **common,
        )
        rec["properties"]["responseSize"] = len(stream.encode()) + 300
    elif r < 0.90:  # embeddings: the vector makes the body long, usage falls past the cut
        doc = apim.load("embeddings_response.json")
        doc["data"][0]["embedding"] = [round(rng.uniform(-0.1, 0.1), 6) for _ in range(512)]
        body = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
        rec = apim.embeddings_call(cid, [text[:300]], **common)
        rec["properties"]["responseSize"] = len(body) + 400
        for key in ("backendResponseBody", "responseBody"):
            rec["properties"][key] = body[:8192]
    elif r < 0.95:  # Responses API
        rec = apim.gateway(
            cid,
            path="/openai/v1/responses",
            request={"model": "nano-prod", "input": text, "instructions": "Answer briefly."},
            response=shapes.RESPONSE_FULL,
            **common,
        )
    else:  # errors
        kind = rng.random()
        if kind < 0.4:
            rec = apim.backend_429(cid, **common)
        elif kind < 0.7:
            rec = apim.gateway_429(cid, time=when, apimSubscriptionId=team)
        else:
            rec = apim.gateway(
                cid,
                request=apim.chat_request(("user", text)),
                status=400,
                backend_status=400,
                response={"error": {"code": "content_filter", "message": "filtered"}},
                **common,
            )
    return rec


def apim_events(
    n_calls: int, calls_per_event: int = 5, seed: int = 11, day: str = "2025-11-04", tag: str = "c"
) -> list[bytes]:
    """Diagnostic-setting event bodies (`{"records": [...]}`) holding `n_calls` calls."""
    from tests.fixtures import apim

    rng = random.Random(seed)
    calls = [_call(rng, i, day, tag) for i in range(n_calls)]
    return [
        apim.envelope(*calls[i : i + calls_per_event]) for i in range(0, n_calls, calls_per_event)
    ]

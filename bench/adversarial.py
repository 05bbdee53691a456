"""Adversarial inputs: the worst we can build for each stage of the data path, at each source's
own size limit, against realistic inputs of the same size.

    .venv/bin/python -m bench.adversarial            # the report (part of `make bench`)
    .venv/bin/python -m bench.adversarial --quick    # fewer repeats
    .venv/bin/python -m bench.adversarial --stage repair --stage sse   # some stages only

Who controls what: a client controls the request body APIM logs (up to 8,192 bytes per
GatewayLogs body, 200 KB per log-to-eventhub message, 32 KB per GatewayLlmLogs message
chunk); any sender on the hub controls a whole event (1 MB on Standard). For every stage
(envelope, repair of cut bodies, SSE reassembly, redaction and previews, token estimates,
archive members, dead letters, the whole transform, replay readers) each crafted input is
timed against a benign input of the same size for the same function (bench/corpus.py and the
tests/fixtures builders), in µs per KB. Goals: worst ≤ 10× benign per byte in every stage,
and a 100-event batch of worst-case events through `ingest.transform` ≤ 30 s on one core.

Every measurement runs in a worker process. A single run longer than CAP_S seconds is stopped
(the worker is killed and restarted) and reported as a timeout; a case whose smaller size
already took so long that the larger one cannot finish within the cap is not run, and says so.
The whole bench keeps within BUDGET_S: on code slow enough to need it, the cap of the cases
left shrinks (those timeouts say so). Fast cases are repeated and the best run kept.

An exception raised by a stage on a crafted input is a finding: its type and where it was
raised are listed (never the input). Parser errors that `ingest` contains (dead-lettered
records) are listed too. The exit status is 0: this is a report.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import random
import re
import selectors
import string
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent

# Each source's own size limit (formats.md §1.4, §2.2, §3.1; Event Hubs quotas).
BODY = 8_192  # GatewayLogs: bytes of a body logged by the diagnostic setting
CHUNK = 32_768  # GatewayLlmLogs: one message chunk
POLICY = 204_800  # log-to-eventhub: one message (longer ones arrive cut)
EVENT = 1_048_576  # one Event Hub event (Standard and Premium tiers)

RATIO_GOAL = 10.0  # worst ≤ 10× benign, per byte
BATCH_GOAL_S = 30.0  # a 100-event batch of worst-case events, one core
BATCH_EVENTS = 100
CAP_S = 20.0  # one run of one case
BATCH_CAP_S = 40.0
BUDGET_S = 170.0  # the whole bench, even on slow code (caps shrink to fit, and say so)
MIN_CAP_S = 3.0
CID = "advx"  # in every crafted correlation id; rewritten per event in the batch

Row = tuple[str, str, str, str]


# --- building blocks ------------------------------------------------------------------------


@functools.cache
def _prose() -> str:
    from bench.corpus import prompts

    text = " ".join(prompts(1200, seed=3))
    while len(text) < 2 * EVENT:
        text += " " + text
    return text


def prose(size: int) -> str:
    """Realistic prompt text (bench/corpus.py), `size` characters (ASCII)."""
    return _prose()[:size]


def fill(unit: str, size: int) -> str:
    """`unit` repeated to `size` bytes of UTF-8 (characters, for ASCII units)."""
    text = (unit * (size // len(unit) + 1))[:size]
    return text if text.isascii() else cut(text, size).rstrip("\ufffd")


def join_to(items: Callable[[int], str], size: int, sep: str = ",") -> str:
    """`items(i)` joined by `sep` while the result stays within `size` characters."""
    out: list[str] = []
    total = 0
    i = 0
    while True:
        item = items(i)
        extra = len(item) + (len(sep) if out else 0)
        if total + extra > size:
            break
        out.append(item)
        total += extra
        i += 1
    return sep.join(out)


def deep_obj(depth: int, leaf: str = '"x"') -> str:
    """`{"a":{"a":...leaf...}}`: `depth` levels of objects."""
    return '{"a":' * depth + leaf + "}" * depth


def deep_arr(depth: int) -> str:
    return "[" * depth + "]" * depth


def random_letters(size: int, alphabet: str = string.ascii_lowercase, seed: int = 5) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(size))


def cut(text: str, size: int) -> str:
    """The first `size` bytes, as APIM logs a body (a cut character becomes U+FFFD)."""
    return text.encode("utf-8")[:size].decode("utf-8", "replace")


def fit(build: Callable[[int], Any], size: int, measure: Callable[[Any], int]) -> Any:
    """`build(n)` with `n` adjusted so that `measure` of the result comes close to `size`
    (escaping and wrappers make the two differ)."""
    n = size
    out = build(n)
    for _ in range(3):
        got = measure(out)
        if got <= size and got > 0.97 * size:
            break
        n = max(1, int(n * size / max(got, 1)) - 16)
        out = build(n)
    return out


@dataclass(frozen=True, slots=True)
class Input:
    value: Any
    nbytes: int


def text_input(s: str) -> Input:
    return Input(s, len(s.encode("utf-8", "surrogatepass")))


def bytes_input(b: bytes) -> Input:
    return Input(b, len(b))


# --- realistic (benign) inputs ------------------------------------------------------------


@functools.cache
def _corpus_records() -> list[dict[str, Any]]:
    """Records of realistic GatewayLogs calls (bench/corpus.py: chat, streams, embeddings,
    Responses API, errors; bodies cut at 8,192 bytes as APIM logs them)."""
    from bench.corpus import apim_events

    return [orjson.loads(b)["records"][0] for b in apim_events(400, 1, seed=17, tag="benign")]


def benign_records(size: int) -> list[dict[str, Any]]:
    records, total, pool = [], 12, _corpus_records()
    while True:
        rec = pool[len(records) % len(pool)]
        n = len(orjson.dumps(rec)) + 1
        if records and total + n > size:
            return records
        records.append(rec)
        total += n


def benign_event(size: int) -> bytes:
    from tests.fixtures import apim

    return apim.envelope(*benign_records(size))


def benign_request(size: int) -> str:
    """A chat request body of about `size` bytes: system prompt, then user prompts and
    assistant answers of realistic text."""
    from tests.fixtures import apim

    rng = random.Random(size)
    messages = [("system", "You are a helpful assistant for the finance team.")]
    text, pos, total = _prose(), 0, 80
    while total < size:
        n = rng.randint(300, 2500)
        role = "user" if len(messages) % 2 else "assistant"
        messages.append((role, text[pos : pos + n]))
        pos += n
        total += n + 35
    body = orjson.dumps(apim.chat_request(*messages, max_tokens=800)).decode()
    over = len(body) - size
    if over > 0:
        last_role, last = messages[-1]
        messages[-1] = (last_role, last[: max(1, len(last) - over)])
        body = orjson.dumps(apim.chat_request(*messages, max_tokens=800)).decode()
    return body


def benign_cut_request(size: int) -> str:
    """A realistic request body longer than `size`, cut at `size` bytes as APIM logs it."""
    return cut(benign_request(size + size // 3), size)


def benign_sse(size: int) -> str:
    """A realistic chat stream (formats.md §5.4: word deltas), cut at `size` bytes."""
    from tests.fixtures import shapes

    words = [w + " " for w in _prose()[: size // 2].split()]
    chunks = [shapes.FIRST_EVENT]
    out = shapes.sse(shapes.FIRST_EVENT, done=False)
    for w in words:
        chunks.append(shapes._chunk({"content": w}))
        out += shapes.sse(chunks[-1], done=False)
        if len(out) >= size:
            break
    return cut(out, size)


def gateway_record(cid: str, request: str | None, response: Any = "keep") -> dict[str, Any]:
    from tests.fixtures import apim

    rec = apim.gateway(cid, time="2025-11-04T10:15:02.1234567Z", request=request, response=response)
    if request is not None:
        rec["properties"]["requestSize"] = len(request.encode()) + 2_000
    return rec


def benign_gateway_event(size: int) -> bytes:
    """One GatewayLogs record with four realistic bodies of `size` / 4 bytes (the request
    bodies cut as APIM logs them)."""
    from tests.fixtures import apim

    part = size // 4
    answer = prose(part + 2_000)
    rec = gateway_record(
        f"{CID}-benign",
        benign_cut_request(part),
        apim.chat_response(answer, prompt=part // 4, completion=part // 4),
    )
    for key in ("backendResponseBody", "responseBody"):
        rec["properties"][key] = cut(rec["properties"][key], part)
    return apim.envelope(rec)


def policy_message(request_body: str, response_body: str | None = None, cid: str = "") -> bytes:
    """Our own policy's message (infra/apim, tests/fixtures/sources.py) with this request body
    (and response body, as logged)."""
    from tests.fixtures import apim, sources

    msg = orjson.loads(
        sources.policy_message(
            cid or f"{CID}-policy", request={"messages": []}, response=apim.chat_response("ok")
        )
    )
    msg["requestBody"] = request_body
    msg["requestSize"] = len(request_body.encode("utf-8", "surrogatepass"))
    if response_body is not None:
        msg["responseBody"] = response_body
        msg["responseSize"] = len(response_body.encode("utf-8", "surrogatepass"))
    return orjson.dumps(msg)


def policy_fit(body: Callable[[int], str], size: int = POLICY, **kw: Any) -> bytes:
    """A policy message of about `size` bytes whose request body is `body(n)`."""
    return fit(lambda n: policy_message(body(n), **kw), size, len)


def benign_policy(size: int) -> bytes:
    return policy_fit(benign_request, size)


def benign_members(size: int) -> Input:
    """A record as `open_envelope` gives it: realistic GatewayLogs (below 64 KB) or a policy
    message with a realistic request body (larger)."""
    from pipeline.sources.envelope import open_envelope

    body = benign_gateway_event(size) if size < 65_536 else benign_policy(size)
    return Input(open_envelope(body).records[0], len(body))


# --- crafted inputs -------------------------------------------------------------------------


def deep_body(depth: int, size: int, leaf: str = '"mail a.person@contoso.com"') -> str:
    """A chat request nested `depth` levels: the message content is an object `depth` - 3
    deep (a personal detail at the bottom, so redaction has to rebuild it), the rest of the
    `size` bytes more subtrees as deep."""
    head = '{"messages":[{"role":"user","content":' + deep_obj(depth - 3, leaf) + '}],"metadata":['
    sub = deep_arr(depth - 2)
    room = size - len(head) - 2
    rest = join_to(lambda i: sub, room) if room > len(sub) else ""
    return head + rest + "]}"


def deep_cut_body(depth: int, size: int) -> str:
    """Subtrees `depth` levels deep, the last one cut at its bottom (inside a string)."""
    head = '{"messages":['
    sub = '{"a":' * (depth - 2) + '"x"' + "}" * (depth - 2)
    last = '{"a":' * (depth - 2) + '"cut here'
    room = size - len(head) - len(last) - 1
    rest = join_to(lambda i: sub, room) + "," if room > len(sub) else ""
    return head + rest + last


def messages_body(size: int, message: Callable[[int], str]) -> str:
    head, tail = '{"messages":[', "]}"
    return head + join_to(message, size - len(head) - len(tail)) + tail


def content_body(content: Callable[[int], str], size: int) -> str:
    """One user message whose content is `content(n)`, the body about `size` bytes."""
    from tests.fixtures import apim

    return fit(
        lambda n: orjson.dumps(apim.chat_request(("user", content(n)))).decode(),
        size,
        lambda s: len(s.encode()),
    )


def sse_events(size: int, event: Callable[[int], str]) -> str:
    return join_to(lambda i: event(i) + "\n\n", size, sep="")


def _chunk(delta: dict[str, Any], index: int = 0, **extra: Any) -> str:
    doc = {"choices": [{"delta": delta, "index": index}], "model": "gpt-4o", **extra}
    return "data: " + orjson.dumps(doc).decode()


# Detector near-misses and dense matches (pipeline/protect/detectors.py): text a client can send.
NEAR_MISSES: dict[str, str] = {
    "eyJ- runs (JWT near-miss)": "eyJ-",
    "eyJ….eyJ… runs (JWT near-miss)": "eyJabcdefgh.eyJab.",
    "1 2 3 4 digit runs": "1 2 3 4 5 6 7 8 9 0 ",
    "4111 1111 1111 1112 (card, Luhn fails)": "4111 1111 1111 1112 ",
    "+1 2 3 phone runs": "+1 2 3 ",
    "999.999.999.999 (IPv4 near-miss)": "999.999.999.999 ",
    "a.a.a@ runs (e-mail near-miss)": "a.a.a@",
    "a@b.co, an e-mail every 7 bytes": "a@b.co ",
    ":::: runs (IPv6 near-miss)": ":",
    "1:a:1:a runs (IPv6 near-miss)": "1:a:",
    "key: 31 hex digits (API key near-miss)": "key: " + "0" * 31 + " ",
    "Bearer + 15 characters": "Bearer abcdefghijklmno ",
    "-----BEGIN runs (private key near-miss)": "-----BEGIN ",
    "Password= runs (secret near-miss)": "Password=",
    "GB00 0000 runs (IBAN near-miss)": "GB00 0000 0000 ",
    "password is runs (secret near-miss, a lookahead per word)": "password is xxxxxxxx ",
    "begin runs (PEM near-miss)": "----begin ",
    "s://u:p runs (URL password near-miss)": "s://u:p",
    "JQQJ9 runs (Azure key near-miss)": "aaaaaaaaJQQJ9",
    "8Q~ runs (Entra secret near-miss)": "abc8Q~",
    "ghp_ runs (GitHub token near-miss)": "ghp_abc ",
    "Jörg.Müller@ runs (e-mail near-miss)": "Jörg.Müller@",
    '"apiKey":"v", a secret member every 13 bytes': '"apiKey":"v",',
    'apikey": runs (secret member near-miss)': 'apikey":',
    '\\"apiKey\\":\\"v\\", escaped secret members': '\\"apiKey\\":\\"v\\",',
    # Read without what no one sees, or with a separator folded (protect/reading.py).
    "a zero-width space after every character": "a\u200b1\u200b@\u200b",
    "a combining mark on every character": "a\u03011\u0301",
    "card digits split by soft hyphens": "4111\u00ad1111\u00ad1111\u00ad1112 ",
    "no-break space between digits": "1\u00a0",
    "en dash between digits": "1\u2013",
    "tag characters spelling e-mails": "".join(chr(0xE0000 + ord(c)) for c in "a@b.co "),
}


CJK = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年"


def gateway_event(request: str, records: int = 8) -> bytes:
    """A diagnostic-setting event: `records` GatewayLogs calls whose client sent `request`."""
    from tests.fixtures import apim

    return apim.envelope(*(gateway_record(f"{CID}-g-{i}", request) for i in range(records)))


def llm_event(cid: str, chunks: list[str]) -> bytes:
    """An LLM-log header record and one message record per chunk (string slices of the
    serialized request messages, formats.md §2.4)."""
    from tests.fixtures import apim, sources

    records = [sources.llm_header(cid)] + [
        sources.llm_messages(cid, chunk, seq=i + 1) for i, chunk in enumerate(chunks)
    ]
    return apim.envelope(*records)


def split_addresses_event(chunks: int = 1_400) -> bytes:
    """An LLM-log header and `chunks` message chunks of one call, each cut in the middle of
    an e-mail address (a sender's: APIM cuts at 32 KB)."""
    unit = "pad " * 12 + "alex.person@contoso.com "
    text = orjson.dumps([{"role": "user", "content": unit * (chunks + 1)}]).decode()
    first = text.index("@") + 1
    return llm_event(
        f"{CID}-l",
        [text[:first]]
        + [text[first + i * len(unit) : first + (i + 1) * len(unit)] for i in range(chunks)],
    )


def split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def minimal_gateway(i: int, pad: str = "") -> str:
    props: dict[str, Any] = {"responseCode": 200}
    if pad:
        props["userId"] = pad
    return orjson.dumps(
        {
            "category": "GatewayLogs",
            "correlationId": f"{CID}-m-{i}",
            "time": "2025-11-04T10:15:02Z",
            "properties": props,
        }
    ).decode()


def cut_bodies_gateway(i: int, pad: str = "") -> str:
    """A minimal GatewayLogs call whose four bodies are JSON cut a few bytes in."""
    record = orjson.loads(minimal_gateway(i, pad))
    record["properties"].update(
        {
            "url": "/openai/deployments/d/chat/completions",
            "requestSize": 9000,
            "responseSize": 9000,
            "requestBody": '{"messages":[{"content":"c',
            "backendRequestBody": '{"messages":[{"content":"d',
            "responseBody": '{"choices":[{"message":{"content":"e',
            "backendResponseBody": '{"choices":[{"message":{"content":"f',
        }
    )
    return orjson.dumps(record).decode()


# Azure OpenAI's answer to a body that is not JSON. [I]: the shape and text are OpenAI's
# (observed in ChatGPTNextWeb/NextChat#4064); Azure's may word it otherwise.
NOT_JSON_ANSWER = orjson.dumps(
    {
        "error": {
            "message": "We could not parse the JSON body of your request.",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
).decode()


def apim_logged_gateway(i: int, body: str) -> str:
    """The GatewayLogs record APIM writes for a client request of `body` (not JSON, so
    Azure OpenAI answers 400): the fields APIM always logs (formats.md §1.1, §1.2), no
    headers, the body logged twice (client and backend) and the answer twice. What a client
    alone, without the hub, can put in an event: APIM packs such records from its calls."""
    url = "/openai/deployments/chat-prod/chat/completions?api-version=2024-10-21"
    return orjson.dumps(
        {
            "time": "2025-11-04T10:15:02.4465902Z",
            "resourceId": "/SUBSCRIPTIONS/00000000-0000-0000-0000-000000000000/RESOURCEGROUPS/"
            "RG-AI/PROVIDERS/MICROSOFT.APIMANAGEMENT/SERVICE/CONTOSO-APIM",
            "operationName": "Microsoft.ApiManagement/GatewayLogs",
            "category": "GatewayLogs",
            "durationMs": 41,
            "callerIpAddress": "203.0.113.7",
            "correlationId": f"{CID}-c-{i:08d}-0000-0000-000000000000",
            "location": "West Europe",
            "isRequestSuccess": False,
            "resultType": "Succeeded",
            "Level": 4,
            "DeploymentVersion": "0.44.18652.0",
            "Sku": "Developer",
            "truncated": 0,
            "properties": {
                "method": "POST",
                "url": "https://contoso-apim.azure-api.net" + url,
                "clientProtocol": "HTTP/1.1",
                "responseCode": 400,
                "responseSize": 402,
                "requestSize": len(body.encode()),
                "cache": "none",
                "clientTime": 0,
                "backendTime": 38,
                "backendMethod": "POST",
                "backendUrl": "https://contoso-aoai-weu.openai.azure.com" + url,
                "backendProtocol": "HTTP/1.1",
                "backendResponseCode": 400,
                "apiId": "azure-openai",
                "apiRevision": "1",
                "operationId": "ChatCompletions_Create",
                "apimSubscriptionId": "team-a",
                "requestBody": body,
                "backendRequestBody": body,
                "backendResponseBody": NOT_JSON_ANSWER,
                "responseBody": NOT_JSON_ANSWER,
            },
        }
    ).decode()


def max_records() -> int:
    """Records an event may hold before ingest stops reading it record by record."""
    return _config().max_records


def records_at_limit(record: Callable[[int, str], str], size: int = EVENT) -> bytes:
    """As many records as ingest still reads one by one (one under its limit), padded so
    the event is about `size` bytes: the most per-record work a sender can ask for."""
    n = max_records() - 1
    pad = prose(max(0, (size - 16) // n - len(record(0, "")) - 1))
    items, total = [], 16
    for i in range(n):
        item = record(i, pad)
        if total + len(item) + 1 > size:
            break
        items.append(item)
        total += len(item) + 1
    return ('{"records":[' + ",".join(items) + "]}").encode()


def deep_gateway(depth: int, i: int, nest: Callable[[int], str] = deep_obj) -> str:
    """A GatewayLogs record nested `depth` levels (properties hold an object, or with
    `nest=deep_arr` a list, that deep)."""
    head = (
        f'{{"category":"GatewayLogs","correlationId":"{CID}-e-{i}",'
        '"time":"2025-11-04T10:15:02Z","properties":{"responseCode":200,"a":'
    )
    return head + nest(depth - 4) + "}}"


def deep_gateway_fill(depth: int, size: int) -> bytes:
    """An event of one GatewayLogs record nested `depth` levels, `size` bytes of subtrees."""
    head = (
        f'{{"records":[{{"category":"GatewayLogs","correlationId":"{CID}-a","time":'
        '"2025-11-04T10:15:02Z","properties":{"responseCode":200,'
    )
    sub = deep_obj(depth - 4)
    props = join_to(lambda i: f'"a{i}":{sub}', size - len(head) - 4)
    return (head + props + "}}]}").encode()


def records_event(size: int, record: Callable[[int], str]) -> bytes:
    head, tail = '{"records":[', "]}"
    return (head + join_to(record, size - len(head) - len(tail)) + tail).encode()


def jsonl(bodies: list[bytes], size: int) -> bytes:
    out, total = [], 0
    i = 0
    while total < size:
        b = bodies[i % len(bodies)]
        out.append(b)
        total += len(b) + 1
        i += 1
    return b"\n".join(out)


def avro(bodies: list[bytes]) -> bytes:
    from datetime import UTC, datetime

    from tests.fixtures.capture import capture_bytes

    # Uncompressed, so the file's bytes are the events' bytes for both inputs compared.
    return capture_bytes(bodies, datetime(2025, 11, 4, 10, 15, tzinfo=UTC), codec="null")


def archive_blob(body: bytes) -> bytes:
    from pipeline.ingest.batch import transform
    from pipeline.model import EventIn

    blob = transform([EventIn(body, partition="0", sequence=1)], _config()).blob
    return blob.data if blob is not None else b""


@functools.cache
def _config() -> Any:
    from pipeline.settings import Config

    return Config()


# --- the cases --------------------------------------------------------------------------------

BENIGN: dict[str, str] = {
    "envelope": "corpus events",
    "repair": "realistic chat requests cut at the same size",
    "sse": "a realistic chat stream of word deltas",
    "redaction": "corpus prompt text, chat requests, streams, records",
    "tokens": "realistic chat requests",
    "archive": "corpus GatewayLogs records, policy messages",
    "deadletter": "corpus events",
    "transform": "corpus events of the same size",
    "replay": "files of corpus events",
}
STAGES: dict[str, str] = {
    "envelope": "envelope.open_envelope + flatten of every record",
    "repair": "bodies.parse_body on bodies cut mid-JSON (repair_truncated)",
    "sse": "stream.parse_sse",
    "redaction": "masking.Masker (default settings): previews.preview, redact_string, "
    "records.archive_record",
    "tokens": "tokens.estimate_prompt (o200k_base) on a parsed request body",
    "archive": "archive.record_bytes + record_id + member_bytes + pack_member",
    "deadletter": "deadletters.dead_letter (the body under the strictest capture, the reason)",
    "transform": "ingest.batch.transform(events, Config()), one event",
    "replay": "sources/ readers (files, capture_avro, archive_blobs), every event read",
}


@dataclass(frozen=True, slots=True)
class Case:
    stage: str
    name: str
    op: str  # key of OPS (the function timed)
    make: Callable[[], Input]
    benign: Callable[[], Input]
    benign_key: str  # cases sharing a benign input share its measurement
    size: int  # nominal bytes (the limit the input is built to)
    # A transform case whose events APIM itself writes from a client's requests (what a
    # client can do without the hub's send rights); the others need a sender on the hub.
    by_client: bool = False

    @property
    def key(self) -> str:
        return f"{self.stage}/{self.name}"


def size_label(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_048_576:.1f} MB"
    if n >= 10_240:
        return f"{n / 1024:.0f} KB"
    return f"{n / 1024:.1f} KB"


GW_RECORD = 4 * BODY + 2_048  # a GatewayLogs record: four bodies, headers and the rest
GW_EVENT = 8 * 24_576  # a diagnostic event of eight such calls
LLM_CHUNKS = 3 * CHUNK + 4_096  # an LLM-log header and three message chunks
LLM_CALLS = 8 * CHUNK + 8_192  # eight LLM-log calls of one 32 KB message each
SOURCE = {
    BODY: "GatewayLogs body",
    CHUNK: "LLM-log chunk",
    POLICY: "policy message",
    EVENT: "event",
    GW_RECORD: "GatewayLogs record",
    GW_EVENT: "GatewayLogs event",
    LLM_CHUNKS: "LLM-log event",
    LLM_CALLS: "LLM-log event",
    4 * EVENT: "file",
}


def cases() -> list[Case]:
    out: list[Case] = []

    def add(
        stage: str,
        name: str,
        op: str,
        size: int,
        make: Callable[[], Input],
        benign: Callable[[int], Input],
        benign_name: str,
        by_client: bool = False,
    ) -> None:
        out.append(
            Case(
                stage,
                f"{name} [{SOURCE.get(size, size_label(size))}]",
                op,
                make,
                functools.partial(benign, size),
                f"{op}:{benign_name}:{size}",
                size,
                by_client,
            )
        )

    def b_text(fn: Callable[[int], str]) -> Callable[[int], Input]:
        return lambda n: text_input(fn(n))

    def b_bytes(fn: Callable[[int], bytes]) -> Callable[[int], Input]:
        return lambda n: bytes_input(fn(n))

    # envelope: one whole event, any sender
    env = b_bytes(benign_event)
    e = EVENT
    for name, make in {
        "1 MB of empty records {}": lambda: records_event(e, lambda i: "{}"),
        "one record with 60,000 keys": lambda: (
            '{"records":[{"category":"GatewayLogs","properties":{'
            + join_to(lambda i: f'"Key{i}":0', e - 80)
            + "}}]}"
        ).encode(),
        "60,000 keys before `records`": lambda: (
            "{" + join_to(lambda i: f'"k{i}":0', e - 40) + ',"records":[{}]}'
        ).encode(),
        "properties as one 1 MB JSON string": lambda: orjson.dumps(
            {
                "records": [
                    {
                        "category": "GatewayLogs",
                        "properties": "{" + join_to(lambda i: f'"k{i}":"v"', e // 2 - 40) + "}",
                    }
                ]
            }
        ),
        "records with properties as JSON strings": lambda: records_event(
            e, lambda i: '{"category":"GatewayLogs","properties":"{\\"a\\":1}"}'
        ),
        "strings of \\u00e9 escapes": lambda: records_event(
            e, lambda i: '{"category":"x","properties":{"a":"' + "\\u00e9" * 2000 + '"}}'
        ),
        **{
            f"records {d} levels deep": (lambda d=d: records_event(e, lambda i: deep_gateway(d, i)))
            for d in (300, 600, 1000)
        },
        # Lists cost two bytes a container: the densest nesting a sender can write.
        **{
            f"records of [[[[ {d} levels deep": (
                lambda d=d: records_event(e, lambda i: deep_gateway(d, i, deep_arr))
            )
            for d in (300, 1000)
        },
        "one record of empty lists [],[],…": lambda: (
            '{"records":[{"category":"GatewayLogs","properties":{"a":['
            + join_to(lambda i: "[]", e - 80)
            + "]}}]}"
        ).encode(),
    }.items():
        add("envelope", name, "envelope", e, lambda make=make: bytes_input(make()), env, "event")

    # repair: bodies cut mid-JSON, at every limit a client's body reaches
    cut_req = b_text(benign_cut_request)
    for size in (BODY, CHUNK, POLICY):
        repair = {
            "deep [[[[ (cut)": lambda n: '{"messages":' + "[" * (n - 12),
            'deep {"a":{"a":… (cut)': lambda n: fill('{"a":', n),
            "deep [[[[ then 1,1,1,… (cut)": lambda n: "[" * (n // 2) + fill("1,", n - n // 2),
            'many keys {"k1":1,… (cut)': lambda n: "{" + fill('"k":1,', n - 1),
            "long string of escapes, cut mid-string": lambda n: (
                '{"messages":[{"content":"' + fill('\\"\\\\\\n\\u00e9\\ud83d\\ude00a', n - 27)
            ),
            "text starting with { (not JSON)": lambda n: "{" + prose(n - 1),
            "many tiny arrays [[],[],… (cut)": lambda n: "[" + fill("[],", n - 1),
            "unterminated strings in arrays": lambda n: "[" + fill('"\\\\",', n - 1),
            **{
                f"{d} levels deep, cut at the bottom": (lambda n, d=d: deep_cut_body(d, n))
                for d in (300, 600, 1000)
            },
        }
        for name, make in repair.items():
            add(
                "repair",
                name,
                "parse_body",
                size,
                lambda make=make, size=size: text_input(make(size)),
                cut_req,
                "cut-request",
            )

    # SSE: a streamed response body (GatewayLogs 8 KB; a policy message up to 200 KB)
    sse = b_text(benign_sse)
    for size in (BODY, POLICY):
        streams = {
            "many tiny chunks": lambda i: _chunk({"content": "a"}),
            "one huge chunk": None,
            "thousands of choice indices": None,
            "tool-call deltas, thousands of indices": lambda i: _chunk(
                {"tool_calls": [{"index": i, "function": {"name": "f", "arguments": "a"}}]}
            ),
            "tool-call arguments, 1 byte per chunk": lambda i: _chunk(
                {"tool_calls": [{"index": 0, "function": {"arguments": "a"}}]}
            ),
            "garbage lines (no colon, comments, cut JSON)": lambda i: "x\n:\ndata\ndata: {",
            "Responses API, tiny deltas": lambda i: (
                "event: response.output_text.delta\n"
                + 'data: {"type":"response.output_text.delta","delta":"a"}'
            ),
            "Responses API, thousands of output indices": lambda i: (
                f'data: {{"type":"response.output_item.added","output_index":{i},'
                '"item":{"type":"function_call","name":"f"}}'
            ),
        }
        for name, event in streams.items():
            if name == "one huge chunk":

                def make(size: int = size) -> Input:
                    body = content_body(prose, size - 10)
                    doc = {"choices": [{"index": 0, "delta": orjson.loads(body)["messages"][0]}]}
                    return text_input("data: " + orjson.dumps(doc).decode() + "\n\n")

            elif name == "thousands of choice indices":

                def make(size: int = size) -> Input:
                    choices = join_to(
                        lambda i: f'{{"index":{i + 1},"delta":{{"content":"a"}}}}', size - 40
                    )
                    return text_input('data: {"choices":[' + choices + "]}\n\n")

            else:

                def make(size: int = size, event: Any = event) -> Input:
                    return text_input(sse_events(size, event))

            add("sse", name, "parse_sse", size, make, sse, "stream")
        if size == BODY:
            data_lines = "data: {\n" + fill("data: a\n", size - 20) + "\n"
            add("sse", "one event of 1,000 data: lines", "parse_sse", size,
                lambda d=data_lines: text_input(d), sse, "stream")  # fmt: skip
            for name, chunk in {
                "malformed: choices is a number": 'data: {"choices":5}',
                "malformed: tool-call index is text": _chunk(
                    {"tool_calls": [{"index": "x", "function": {"arguments": "a"}}]}
                ),
                "malformed: tool-call index of 5,000 digits": _chunk(
                    {"tool_calls": [{"index": "9" * 5000, "function": {"arguments": "a"}}]}
                ),
                "malformed: function is a string": _chunk(
                    {"tool_calls": [{"index": 0, "function": "f"}]}
                ),
                "malformed: output_index is text": 'data: {"type":"response.output_item.added",'
                '"output_index":"x","item":{"type":"function_call","name":"f"}}',
                "malformed: delta is a list": 'data: {"choices":[{"index":0,"delta":[1]}]}',
            }.items():
                add("sse", name, "parse_sse", size,
                    lambda c=chunk, s=size: text_input(sse_events(s, lambda i: c)),
                    sse, "stream")  # fmt: skip

    # redaction: previews of a client's text, strings of a record, whole records
    for size in (BODY, POLICY):
        for name, unit in NEAR_MISSES.items():
            add("redaction", f"preview: {name}", "preview", size,
                lambda u=unit, s=size: text_input(fill(u, s)),
                b_text(prose), "prose")  # fmt: skip
        strings = {
            "JSON of 6-character strings": lambda n: (
                '{"input":[' + join_to(lambda i: '"abc123"', n - 12) + "]}"
            ),
            "JSON, an e-mail in every string": lambda n: (
                '{"input":[' + join_to(lambda i: '"a@b.co"', n - 12) + "]}"
            ),
            "JSON, a digit run in every string": lambda n: (
                '{"input":[' + join_to(lambda i: '"1 2 3 4 5 6 7 8 9"', n - 12) + "]}"
            ),
            # A match in every string, each a distinct one (scanned apart, masked apart).
            "JSON, a distinct e-mail in every string": lambda n: (
                '{"input":[' + join_to(lambda i: f'"a{i}@b.co"', n - 12) + "]}"
            ),
            # Member names and numbers are read too (an address as a `metadata` key, a card
            # sent as a number): every one a match.
            "JSON, an e-mail as every member's name": lambda n: (
                "{" + join_to(lambda i: f'"a{i}@b.co":1', n - 2) + "}"
            ),
            "JSON, a card number as every number": lambda n: (
                '{"input":[' + join_to(lambda i: "4111111111111111", n - 12) + "]}"
            ),
            **{
                f"JSON {d} levels deep, an e-mail at the bottom": (lambda n, d=d: deep_body(d, n))
                for d in (300, 600, 1000)
            },
        }
        for name, make in strings.items():
            add("redaction", f"redact_string: {name}", "redact_string", size,
                lambda m=make, s=size: text_input(m(s)),
                b_text(benign_request), "request")  # fmt: skip
        add("redaction", "redact_string: cut JSON, escapes everywhere", "redact_string", size,
            lambda s=size: text_input('{"input":"' + fill("\\u0040\\\"\\n1 ", s - 10)),
            b_text(benign_cut_request), "cut-request")  # fmt: skip
        for name, delta in {
            "SSE, an e-mail in every delta": "a@b.co ",
            "SSE, digits in every delta": "1 2 ",
        }.items():
            add("redaction", f"redact_string: {name}", "redact_string", size,
                lambda d=delta, s=size: text_input(
                    sse_events(s, lambda i: _chunk({"content": d}))
                ),
                sse, "stream")  # fmt: skip
    gw_bodies = {
        "a@b.co in every string": '{"input":[' + join_to(lambda i: '"a@b.co"', BODY - 12) + "]}",
        "digit runs": content_body(lambda n: fill("1 2 3 4 5 6 7 8 9 0 ", n), BODY),
        "eyJ- runs": content_body(lambda n: fill("eyJ-", n), BODY),
        **{f"{d} levels deep": deep_body(d, BODY) for d in (300, 600, 1000)},
    }
    for name, body in gw_bodies.items():
        add("redaction", f"archive_record: GatewayLogs, request bodies of {name}",
            "archive_record", GW_RECORD,
            lambda b=body: record_input(gateway_event(b, records=1)),
            lambda n: benign_members(n), "gateway-record")  # fmt: skip
    for name, body in {
        "digit runs": lambda n: content_body(lambda m: fill("1 2 3 4 5 6 7 8 9 0 ", m), n),
        "eyJ- runs": lambda n: content_body(lambda m: fill("eyJ-", m), n),
        "a@b.co in every string": lambda n: (
            '{"input":[' + join_to(lambda i: '"a@b.co"', n - 12) + "]}"
        ),
        **{f"{d} levels deep": (lambda n, d=d: deep_body(d, n)) for d in (300, 600, 1000)},
    }.items():
        add("redaction", f"archive_record: policy message, request body of {name}",
            "archive_record", POLICY,
            lambda b=body: record_input(policy_fit(b)),
            lambda n: benign_members(n), "policy-record")  # fmt: skip

    # tokens: estimates of a request body as parsed from the log
    req = b_request(benign_request)
    for size in (BODY, POLICY):
        tok = {
            "many tiny messages": lambda n: messages_body(
                n, lambda i: '{"role":"user","content":"a"}'
            ),
            "many string keys per message": lambda n: messages_body(
                n,
                lambda i: (
                    '{"role":"user","content":"a",'
                    + ",".join(f'"k{j}":"b"' for j in range(20))
                    + "}"
                ),
            ),
            "tool schema, thousands of properties": lambda n: (
                '{"messages":[],"tools":[{"type":'
                '"function","function":{"name":"f","description":"d","parameters":{"type":"object",'
                '"properties":{'
                + join_to(lambda i: f'"p{i}":{{"type":"string","description":"x"}}', n - 150)
                + "}}}}]}"
            ),
            "tool enum, thousands of items": lambda n: (
                '{"messages":[],"tools":[{"type":'
                '"function","function":{"name":"f","parameters":{"type":"object","properties":'
                '{"p":{"type":"string","enum":[' + join_to(lambda i: '"a"', n - 150) + "]}}}}}]}"
            ),
            "content array, thousands of parts": lambda n: (
                '{"messages":[{"role":"user",'
                '"content":[' + join_to(lambda i: '{"type":"text","text":"a"}', n - 60) + "]}]}"
            ),
            "tool_calls, thousands of calls": lambda n: (
                '{"messages":[{"role":"assistant",'
                '"tool_calls":['
                + join_to(lambda i: '{"function":{"name":"f","arguments":"a"}}', n - 70)
                + "]}]}"
            ),
            "one word, no spaces (aaaa…)": lambda n: content_body(lambda m: "a" * m, n),
            "random lower-case letters, no spaces": lambda n: content_body(random_letters, n),
            "punctuation run (!!!!…)": lambda n: content_body(lambda m: "!" * m, n),
            "CJK text, no spaces": lambda n: content_body(
                lambda m: random_letters(m // 3, CJK, 7), n
            ),
            "digits, no spaces": lambda n: content_body(
                lambda m: random_letters(m, string.digits), n
            ),
            **{
                f"content {d} levels deep": (lambda n, d=d: deep_body(d, n, leaf='"x"'))
                for d in (300, 600, 1000)
            },
        }
        for name, make in tok.items():
            add("tokens", name, "tokens", size,
                lambda m=make, s=size: request_input(m(s)), req, "request")  # fmt: skip
        add("tokens", "Responses input, thousands of items", "tokens", size,
            lambda s=size: request_input(
                '{"input":[' + join_to(lambda i: '{"role":"user","content":"a"}', s - 12) + "]}",
                "responses",
            ),
            req, "request")  # fmt: skip
        add("tokens", "embeddings input, thousands of strings", "tokens", size,
            lambda s=size: request_input(
                '{"input":[' + join_to(lambda i: '"a"', s - 12) + "]}", "embeddings"
            ),
            req, "request")  # fmt: skip

    # archive members: a record serialised, hashed and compressed on its own
    for size in (GW_RECORD, EVENT):
        members = {
            "random base64 text (incompressible)": lambda n: one_record(
                random_letters(n, string.ascii_letters + string.digits + "+/")
            ),
            "one repeated byte": lambda n: one_record("a" * n),
            "period-3 pattern": lambda n: one_record(fill("ab ", n)),
            "many tiny keys": lambda n: (
                '{"records":[{"category":"GatewayLogs","properties":{'
                + join_to(lambda i: f'"k{i}":1', n - 80)
                + "}}]}"
            ).encode(),
            **{
                f"record {d} levels deep": (lambda n, d=d: deep_gateway_fill(d, n))
                for d in (300, 600, 1000)
            },
        }
        for name, make in members.items():
            add("archive", name, "member", size,
                lambda m=make, s=size: record_input(m(s)),
                lambda n: benign_members(n), "record")  # fmt: skip

    # dead letters: an event (or a cut policy message) that cannot become a row
    dead = b_bytes(benign_event)
    for size in (POLICY, EVENT):
        dl = {
            "not JSON, escapes everywhere": lambda n: (
                '{"a":"' + fill('\\u0040\\"\\\\x1 ', n - 6)
            ).encode(),
            # An escape every third character and an address at the end: the view is read
            # in C, and where its characters are written is walked escape by escape.
            "not JSON, an escape every third character, an address at the end": lambda n: (
                '{"a":"' + fill("a\\n", n - 40) + " alice@contoso.com"
            ).encode(),
            "not JSON, eyJ- runs": lambda n: ("{" + fill("eyJ-", n - 1)).encode(),
            "not JSON, digit runs": lambda n: ("{" + fill("1 2 3 4 5 6 7 8 9 0 ", n - 1)).encode(),
            "invalid UTF-8": lambda n: b"{" + bytes(range(128, 256)) * (n // 128),
            "JSON of 6-character strings": lambda n: records_event(n, lambda i: '"abc123"'),
            "JSON, an e-mail in every string": lambda n: records_event(n, lambda i: '"a@b.co"'),
            **{
                f"JSON {d} levels deep": (
                    lambda n, d=d: records_event(n, lambda i: deep_arr(d - 2))
                )
                for d in (300, 600, 1000)
            },
        }
        for name, make in dl.items():
            add("deadletter", name, "dead_letter", size,
                lambda m=make, s=size: bytes_input(m(s)), dead, "event")  # fmt: skip

    # transform: whole events, by who controls them
    tr = b_events(benign_event)
    gw = {
        **{f"request bodies {d} levels deep": deep_body(d, BODY) for d in (300, 600, 1000)},
        'request bodies cut in deep {"a":{"a":…': fill('{"a":', BODY),
        "request bodies cut in deep [[[[": '{"messages":' + "[" * (BODY - 12),
        "request bodies of digit runs": content_body(
            lambda n: fill("1 2 3 4 5 6 7 8 9 0 ", n), BODY
        ),
        "request bodies of eyJ- runs": content_body(lambda n: fill("eyJ-", n), BODY),
        "request bodies, an e-mail in every string": gw_bodies["a@b.co in every string"],
        "request bodies of many tiny messages": messages_body(
            BODY, lambda i: '{"role":"user","content":"a"}'
        ),
        "request bodies of one long word": content_body(random_letters, BODY),
    }
    for name, body in gw.items():
        add("transform", f"GatewayLogs, 8 calls: {name}", "transform", GW_EVENT,
            lambda b=body: events_input(gateway_event(b)), tr, "event", True)  # fmt: skip
    pol = {
        **{
            f"request body {d} levels deep": (lambda d=d: policy_fit(lambda n: deep_body(d, n)))
            for d in (300, 600, 1000)
        },
        'cut at 200 KB inside a deep {"a":… body': lambda: policy_message(fill('{"a":', POLICY))[
            :POLICY
        ],
        "cut at 200 KB inside a deep [[[[ body": lambda: policy_message("[" * POLICY)[:POLICY],
        "request body of digit runs": lambda: policy_fit(
            lambda n: content_body(lambda m: fill("1 2 3 4 5 6 7 8 9 0 ", m), n)
        ),
        "request body of eyJ- runs": lambda: policy_fit(
            lambda n: content_body(lambda m: fill("eyJ-", m), n)
        ),
        "request body of many tiny messages": lambda: policy_fit(
            lambda n: messages_body(n, lambda i: '{"role":"user","content":"a"}')
        ),
        "request body of one long word": lambda: policy_fit(
            lambda n: content_body(random_letters, n)
        ),
        "streamed response, an e-mail in every delta": lambda: fit(
            lambda n: policy_message("{}", sse_events(n, lambda i: _chunk({"content": "a@b.co "}))),
            POLICY,
            len,
        ),
    }
    for name, make in pol.items():
        add("transform", f"policy message: {name}", "transform", POLICY,
            lambda m=make: events_input(m()), tr, "event", True)  # fmt: skip
    llm = {
        "3 chunks of deep [[[[": (
            LLM_CHUNKS,
            lambda: llm_event(
                f"{CID}-l", split('[{"role":"user","content":' + "[" * (3 * CHUNK - 26), CHUNK)
            ),
        ),
        "3 chunks of eyJ- runs": (
            LLM_CHUNKS,
            lambda: llm_event(
                f"{CID}-l",
                split(
                    orjson.dumps([{"role": "user", "content": fill("eyJ-", 3 * CHUNK)}]).decode(),
                    CHUNK,
                ),
            ),
        ),
        **{
            f"8 calls, messages {d} levels deep": (LLM_CALLS, lambda d=d: llm_messages_event(d))
            for d in (300, 600, 1000)
        },
        "1 MB of message records for one call": (
            EVENT,
            lambda: llm_event(f"{CID}-l", ['["a"]'] * (EVENT // 300)),
        ),
        # Every cut between two chunks splits an address: each cut is read across and both
        # chunks archived again (plan._mask_split_values), 1,400 times.
        # A sender's: APIM cuts at 32 KB (a client chooses where, not how small).
        "1,400 message records of one call, an address across every cut": (
            EVENT,
            split_addresses_event,
        ),
    }
    for name, (size, make) in llm.items():
        # APIM cuts a message into chunks of 32 KB: 1 MB of tiny chunks is a sender's.
        add("transform", f"LLM log: {name}", "transform", size,
            lambda m=make: events_input(m()), tr, "event", "records" not in name)  # fmt: skip
    whole = {
        **{
            f"records {d} levels deep": (
                lambda d=d: records_event(EVENT, lambda i: deep_gateway(d, i))
            )
            for d in (300, 600, 1000)
        },
        '{"schema":"aoai-audit/1",…,"x":[[[[… (not JSON)': lambda: (
            f'{{"schema":"aoai-audit/1","correlationId":"{CID}-w","x":' + "[" * EVENT
        ).encode()[:EVENT],
        "1 MB of {} records (a dead letter each)": lambda: records_event(EVENT, lambda i: "{}"),
        "GatewayLogs records up to the per-event limit (a row each)": lambda: records_at_limit(
            minimal_gateway
        ),
        # Four bodies cut short in each (a body a client sends cut is one; the other three a
        # sender writes): each is repaired, redacted as text, its tokens estimated.
        "GatewayLogs records up to the per-event limit, four cut bodies each": lambda: (
            records_at_limit(cut_bodies_gateway)
        ),
        "bad records up to the per-event limit": lambda: records_at_limit(
            lambda i, pad: orjson.dumps({"unknown": pad}).decode()
        ),
        "1 MB of records of an unknown category": lambda: records_event(
            EVENT, lambda i: '{"category":"Other","properties":{}}'
        ),
    }
    for name, make in whole.items():
        add("transform", f"event: {name}", "transform", EVENT,
            lambda m=make: events_input(m()), tr, "event")  # fmt: skip
    # What a client alone can make APIM write to a whole event: records of its smallest
    # requests, each a body that is not JSON (repaired, redacted, its tokens estimated).
    client = {
        "a body cut a few bytes in": '{"messages":[{"role":"user","content":"c',
        "a body cut after five e-mail addresses": '{"messages":[{"role":"user","content":"'
        + "a@b.co " * 5,
        "a body of 40 [": "[" * 40,
    }
    for name, body in client.items():
        add("transform", f"event: GatewayLogs records of a client's requests, {name}",
            "transform", EVENT,
            lambda b=body: events_input(records_event(EVENT, lambda i: apim_logged_gateway(i, b))),
            tr, "event", True)  # fmt: skip

    # replay: files of events
    add("replay", "jsonl of the worst-case events above", "read_lines", 4 * EVENT,
        lambda: bytes_input(jsonl(worst_event_bodies(), 4 * EVENT)),
        lambda n: bytes_input(jsonl(benign_records_bodies(), n)), "jsonl")  # fmt: skip
    add("replay", "Capture Avro of the worst-case events above", "read_capture", 4 * EVENT,
        lambda: bytes_input(avro(worst_event_bodies())),
        lambda n: bytes_input(avro(benign_bodies_to(n))), "avro")  # fmt: skip
    add("replay", "jsonl: 1 MB of one-byte lines", "read_lines", EVENT,
        lambda: bytes_input(b"x\n" * (EVENT // 2)),
        lambda n: bytes_input(jsonl(benign_records_bodies(), n)), "jsonl")  # fmt: skip
    add("replay", "jsonl: one 1 MB line of [[[[", "read_lines", EVENT,
        lambda: bytes_input(b"[" * EVENT),
        lambda n: bytes_input(jsonl(benign_records_bodies(), n)), "jsonl")  # fmt: skip
    add("replay", "Capture Avro: 1 MB of one-byte events", "read_capture", EVENT,
        lambda: bytes_input(avro([b"x"] * (EVENT // 64))),
        lambda n: bytes_input(avro(benign_bodies_to(n))), "avro")  # fmt: skip
    add("replay", "archive blob of the records-up-to-the-limit event", "read_archive", EVENT,
        lambda: bytes_input(archive_blob(records_at_limit(minimal_gateway, EVENT // 2))),
        lambda n: bytes_input(archive_blob(benign_event(5 * n))), "archive")  # fmt: skip
    return out


def worst_event_bodies() -> list[bytes]:
    """A few of the transform stage's crafted events, one of each source (about 4 MB)."""
    return [
        gateway_event(deep_body(1000, BODY)),
        gateway_event(content_body(lambda n: fill("eyJ-", n), BODY)),
        policy_fit(lambda n: content_body(lambda m: fill("1 2 3 4 5 6 7 8 9 0 ", m), n)),
        policy_message("[" * POLICY)[:POLICY],
        llm_messages_event(600),
        records_event(EVENT, lambda i: deep_gateway(1000, i)),
        records_at_limit(minimal_gateway),
        records_event(EVENT // 2, lambda i: "{}"),
    ]


def b_request(fn: Callable[[int], str]) -> Callable[[int], Input]:
    return lambda n: request_input(fn(n))


def b_events(fn: Callable[[int], bytes]) -> Callable[[int], Input]:
    return lambda n: events_input(fn(n))


def request_input(body: str, operation: str = "chat.completions") -> Input:
    """A request body as the pipeline parses it (bodies.parse_body), for an estimate."""
    from pipeline.call.bodies import parse_body

    return Input((parse_body(body).doc, operation), len(body.encode("utf-8", "surrogatepass")))


def record_input(event: bytes) -> Input:
    """The first record of an event as the pipeline reads it (open_envelope, then the
    credential scrub)."""
    from pipeline.protect.credentials import scrub_credentials
    from pipeline.sources.envelope import open_envelope

    record = open_envelope(event).records[0]
    return Input(scrub_credentials(record) if isinstance(record, dict) else record, len(event))


def events_input(*bodies: bytes) -> Input:
    from pipeline.model import EventIn

    return Input(
        [EventIn(b, partition="0", sequence=i) for i, b in enumerate(bodies)],
        sum(map(len, bodies)),
    )


def one_record(text: str) -> bytes:
    return orjson.dumps(
        {"records": [{"category": "GatewayLogs", "properties": {"requestBody": text}}]}
    )


def llm_messages_event(depth: int) -> bytes:
    """Eight LLM-log calls whose request messages (a list) nest `depth` levels: 32 KB each."""
    from tests.fixtures import sources

    message = '{"role":"user","content":' + deep_obj(depth - 6) + "}"
    text = "[" + join_to(lambda j: message, CHUNK - 2) + "]"
    records = []
    for i in range(8):
        cid = f"{CID}-ld-{i}"
        holder = orjson.dumps(sources.llm_messages(cid, "MESSAGES")).decode()
        records += [
            orjson.dumps(sources.llm_header(cid)).decode(),
            holder.replace('"MESSAGES"', text, 1),
        ]
    return ('{"records":[' + ",".join(records) + "]}").encode()


@functools.cache
def benign_records_bodies() -> list[bytes]:
    from bench.corpus import apim_events

    return apim_events(100, 5, seed=23, tag="replay")


def benign_bodies_to(size: int) -> list[bytes]:
    out, total, pool = [], 0, benign_records_bodies()
    while total < size:
        out.append(pool[len(out) % len(pool)])
        total += len(out[-1])
    return out


# --- the worker: runs one measurement at a time -----------------------------------------------


def _ops() -> dict[str, Callable[[Any], Any]]:
    from pipeline.call import tokens
    from pipeline.call.bodies import parse_body
    from pipeline.call.stream import parse_sse
    from pipeline.ingest import batch as ingest
    from pipeline.model import EventIn
    from pipeline.protect import archive, deadletters, previews
    from pipeline.protect import records as protect_records
    from pipeline.protect.masking import Masker
    from pipeline.protect.policy import policy_for
    from pipeline.sources import inputs
    from pipeline.sources.archive_blobs import read_archive as read_archive_blob
    from pipeline.sources.envelope import flatten, open_envelope
    from pipeline.sources.files import local_inputs

    cfg = _config()
    policy = policy_for(cfg)
    redactions: Counter[str] = Counter()

    def envelope(body: bytes) -> None:
        records = open_envelope(body, cfg.max_records).records
        if len(records) > cfg.max_records:
            return  # as ingest: such an event is one dead letter, its records not read
        for record in records:
            if isinstance(record, dict):
                flatten(record)

    # The redaction memo spans one record (its Masker): each run is a new record, so each
    # makes a fresh Masker, as the record boundary does (ingest/plan.py).

    def redact_string(s: str) -> None:
        Masker(policy).redact_string(s, redactions)

    def preview(s: str) -> None:
        previews.preview(Masker(policy), s, policy.default)

    def archive_record(record: Any) -> None:
        protect_records.archive_record(Masker(policy), record, policy.default)

    def estimate(value: tuple[Any, str]) -> None:
        request, operation = value
        tokens.estimate_prompt(request, operation, "o200k_base")

    def member(record: Any) -> None:
        raw = archive.record_bytes(record)
        rid = archive.record_id(raw)
        packed = archive.member_bytes("gateway", "cid", rid, EventIn(b""), 0, True, raw)
        archive.pack_member(packed)

    def dead_letter(body: bytes) -> None:
        event = EventIn(body, partition="0", sequence=1)
        reason = "unknown record shape: no category and not a known log-to-eventhub message"
        deadletters.dead_letter(Masker(policy), policy.strictest, body, reason, event, None)

    def transform(events: list[Any]) -> Any:
        return ingest.transform(events, cfg)

    problems: list[str] = []

    def read_file(path: str) -> None:
        """A local .jsonl or Capture file, as `replay` reads it (files.local_inputs)."""
        for item in local_inputs([path], inputs.Filters()):
            if not isinstance(item, inputs.Input):
                problems.append(item.message)
                continue
            for _ in item.events(item.fetch(), report=problems.append):
                pass

    def read_archive(data: bytes) -> None:
        """An archive blob (as replay reads one from the container)."""
        name = "2025/11/04/10/adversarial.jsonl.gz"
        events = read_archive_blob(
            [data], blob=name, label=name, filters=inputs.Filters(), report=problems.append
        )
        for _ in events:
            pass

    return {
        "envelope": envelope,
        "parse_body": parse_body,
        "parse_sse": parse_sse,
        "redact_string": redact_string,
        "preview": preview,
        "archive_record": archive_record,
        "tokens": estimate,
        "member": member,
        "dead_letter": dead_letter,
        "transform": transform,
        "read_lines": read_file,
        "read_capture": read_file,
        "read_archive": read_archive,
    }


_PARSER_ERROR = re.compile(r"parser error: (\w+)(?::.*?)? \(at (.+)\)")


def transform_notes(result: Any) -> tuple[str, list[str]]:
    """Rows and dead letters of a transform, and the parser errors it contained."""
    plan = result.plan
    contained = []
    for dead in plan.dead:
        m = _PARSER_ERROR.search(dead.reason or "")
        if m:
            contained.append(f"{m.group(1)} at {m.group(2)} (contained: dead-lettered)")
    note = f"{len(result.rows):,} rows, {len(plan.dead):,} dead letters"
    return note, sorted(set(contained))


def where(exc: BaseException) -> str:
    """Where an exception was raised: the innermost frames in our code (no input quoted)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/pipeline/" in f.filename or "/bench/" in f.filename]
    pick = (ours or frames)[-3:]
    return " < ".join(f"{Path(f.filename).name}:{f.lineno} ({f.name})" for f in reversed(pick))


def problem(exc: BaseException) -> str:
    # The type and where; the message only when short and generic (it may quote the input).
    msg = str(exc).splitlines()[0] if str(exc) else ""
    quoted = any(q in msg for q in ("'", '"', "{", "["))
    detail = f": {msg}" if msg and len(msg) <= 80 and not quoted else ""
    return f"{type(exc).__name__}{detail} at {where(exc)}"


def bench_side(exc: BaseException) -> bool:
    """The bench itself could not call a stage (its signature or name changed)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return (
        bool(frames)
        and Path(frames[-1].filename).name == "adversarial.py"
        and isinstance(exc, TypeError | AttributeError | ImportError | NameError | KeyError)
    )


def failure(exc: BaseException, elapsed: float) -> dict[str, Any]:
    out: dict[str, Any] = {"s": elapsed, "error": problem(exc), "runs": 1}
    if bench_side(exc):
        out["bench"] = True
    return out


def timed(fn: Callable[[Any], Any], value: Any, quick: bool, first: Callable[[], None]) -> dict:
    """Best of several runs (one when a run is long); the first run is announced, so the
    parent can time it out."""
    budget, most = (0.1, 3) if quick else (0.25, 5)
    times: list[float] = []
    result = None
    first()
    while True:
        gc.collect()
        start = time.perf_counter()
        try:
            result = fn(value)
        except Exception as exc:  # noqa: BLE001 - a crafted input broke a stage: a finding
            return failure(exc, time.perf_counter() - start)
        times.append(time.perf_counter() - start)
        if len(times) >= most or sum(times) >= budget or times[0] > 1.0:
            break
    out: dict[str, Any] = {"s": min(times), "runs": len(times)}
    if result is not None and hasattr(result, "plan") and hasattr(result, "rows"):
        out["note"], out["contained"] = transform_notes(result)
    return out


def to_file(op: str, inp: Input, folder: str, n: int) -> Input:
    """Replay reads files: the bytes of a .jsonl or Capture input are written once."""
    suffix = {"read_lines": ".jsonl", "read_capture": ".avro"}.get(op)
    if suffix is None:
        return inp
    path = Path(folder) / f"0/2025/11/04/10/15/{n:02d}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(inp.value)
    return Input(str(path), inp.nbytes)


def worker(quick: bool, folder: str) -> None:
    import logging

    logging.disable(logging.CRITICAL)  # contained parser errors are logged: counted instead
    all_cases = cases()
    ops = _ops()
    # Warm up: vocabularies, compiled patterns, caches (what a long-running host has).
    from pipeline.call import tokens

    tokens.encoding("o200k_base")
    tokens.encoding("cl100k_base")
    ops["transform"](events_input(benign_event(60_000)).value)
    ops["preview"](prose(2_000) + " a@b.co 4111 1111 1111 1111")
    out = sys.stdout
    out.write(orjson.dumps({"ready": True}).decode() + "\n")
    out.flush()
    built: dict[str, Input] = {}

    def send(doc: dict[str, Any]) -> None:
        out.write(orjson.dumps(doc).decode() + "\n")
        out.flush()

    for line in sys.stdin:
        req = orjson.loads(line)
        try:
            if req["kind"] == "batch":
                value = batch_events([all_cases[i] for i in req["cases"]], built)
                inp = Input(value, sum(len(e.body) for e in value))
                fn = ops["transform"]
                send({"started": True})
                start = time.perf_counter()
                result = fn(inp.value)
                note, contained = transform_notes(result)
                send(
                    {
                        "s": time.perf_counter() - start,
                        "bytes": inp.nbytes,
                        "note": note,
                        "contained": contained,
                    }
                )
                continue
            case = all_cases[req["case"]]
            fn = ops[case.op]
            if req["kind"] == "benign":
                inp = built.get(case.benign_key) or to_file(
                    case.op, case.benign(), folder, len(built)
                )
                built[case.benign_key] = inp
            else:
                inp = built.get(case.key) or to_file(case.op, case.make(), folder, len(built))
                if case.op == "transform":
                    built[case.key] = inp  # kept for the batch
        except Exception as exc:  # noqa: BLE001 - building the input already failed
            send({"started": True})
            res = failure(exc, 0.0)
            res["error"] = "while preparing the input: " + res["error"]
            send(res)
            continue
        res = timed(fn, inp.value, quick, lambda: send({"started": True}))
        res["bytes"] = inp.nbytes
        send(res)


def batch_events(picked: list[Case], built: dict[str, Input]) -> list[Any]:
    """BATCH_EVENTS events cycling through `picked`, each with its own correlation ids."""
    from dataclasses import replace

    events = []
    for i in range(BATCH_EVENTS):
        case = picked[i % len(picked)]
        inp = built.get(case.key) or case.make()
        built[case.key] = inp
        for ev in inp.value:
            body = ev.body.replace(CID.encode(), f"a{i:03d}".encode())
            events.append(replace(ev, body=body, sequence=len(events)))
    return events[:BATCH_EVENTS] if len(events) > BATCH_EVENTS else events


# --- the parent: drives the worker, applies the caps, prints the report -----------------------


class WorkerDied(RuntimeError):
    pass


class Worker:
    def __init__(self, quick: bool, folder: str) -> None:
        self.quick = quick
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None
        self.buf = b""

    def start(self) -> None:
        args = [sys.executable, "-m", "bench.adversarial", "--worker", self.folder]
        if self.quick:
            args.append("--quick")
        self.stderr = Path(self.folder) / "worker-stderr.txt"
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        self.buf = b""
        self.sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        if self.read(120.0) is None:
            self.stop()
            raise WorkerDied("the worker did not start within 120 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # the worker this object started, by its handle
            self.proc.wait()
            self.sel.close()
            self.proc = None

    def read(self, timeout: float) -> dict[str, Any] | None:
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                return None
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                code = self.proc.wait()
                self.sel.close()
                self.proc = None
                raise WorkerDied(f"the worker exited (status {code}){self.last_words()}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return orjson.loads(line)

    def last_words(self) -> str:
        """The last line the worker wrote on stderr (a traceback's exception line)."""
        try:
            lines = self.stderr.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f": {lines[-1][:200]}" if lines else ""

    def ask(self, request: dict[str, Any], cap: float) -> dict[str, Any]:
        """One measurement; {"timeout": True} when its first run outlasts `cap`."""
        try:
            if self.proc is None:
                self.start()
        except WorkerDied as exc:  # the pipeline does not even import (mid-edit?)
            return {"error": f"the worker cannot start: {exc}", "s": 0.0, "bench": True}
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(orjson.dumps(request) + b"\n")
            self.proc.stdin.flush()
            if self.read(120.0) is None:  # building the input
                self.stop()
                return {"error": "building the input took over 120 s", "s": 0.0}
            # The first run within `cap`; the repeats of a fast case add at most a second.
            res = self.read(cap + 2.0)
        except (WorkerDied, BrokenPipeError) as exc:
            self.stop()
            # The process died on this input (killed for memory, a crash in native code).
            return {"error": f"the worker process died: {exc}", "s": 0.0}
        if res is None:
            self.stop()
            return {"timeout": True, "s": cap}
        return res


@dataclass(slots=True)
class Outcome:
    case: Case
    worst: dict[str, Any]
    benign: dict[str, Any]
    skipped: str = ""

    def per_kb(self, res: dict[str, Any]) -> float | None:
        if res.get("timeout") or "error" in res or not res.get("bytes"):
            return None
        return 1e6 * res["s"] / (res["bytes"] / 1024)

    @property
    def ratio(self) -> float | None:
        w, b = self.per_kb(self.worst), self.per_kb(self.benign)
        return w / b if w is not None and b else None

    @property
    def status(self) -> str:
        if self.worst.get("bench"):
            return "BENCH ERROR"
        if "error" in self.worst:
            return "RAISES"
        if self.worst.get("timeout"):
            return "MISS: timeout"
        r = self.ratio
        if r is None:
            return "?"
        return "ok" if r <= RATIO_GOAL else "MISS"


@dataclass(slots=True)
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    batch: dict[str, Any] = field(default_factory=dict)
    batch_cases: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    # 100 × the slowest single transform event: its text and its seconds (estimated).
    slowest: tuple[str, float] | None = None
    # The same over the events APIM writes from a client's requests alone (no hub sender).
    slowest_client: tuple[str, float] | None = None
    # The bench could not call a stage (an API it uses changed): not a finding about inputs.
    bench_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cap: float = CAP_S

    def text(self) -> str:
        return render(self)

    def summary_rows(self) -> list[Row]:
        """One row per stage, the batch and the findings: for bench/run.py's table."""
        rows: list[Row] = []
        for stage in STAGES:
            mine = [o for o in self.outcomes if o.case.stage == stage]
            if not mine:
                continue
            ratios = [(o.ratio, o) for o in mine if o.ratio is not None]
            worst = max(ratios, key=lambda x: x[0], default=None)
            miss = sum(1 for o in mine if o.status == "MISS")
            timeouts = sum(1 for o in mine if o.status.startswith("MISS: timeout"))
            raises = sum(1 for o in mine if o.status == "RAISES")
            parts = []
            if worst is not None:
                name = worst[1].case.name
                name = name if len(name) <= 60 else name[:57] + "…"
                parts.append(f"worst {worst[0]:,.1f}× ({name})")
            counts = [
                f"{n} {label}"
                for n, label in ((miss, "over 10×"), (timeouts, "timed out"), (raises, "raise"))
                if n
            ]
            parts.append(", ".join(counts) if counts else "all within 10×")
            ok = miss == 0 and timeouts == 0 and raises == 0
            rows.append(
                (
                    f"Adversarial inputs: {stage} ({len(mine)} cases), per byte vs benign",
                    "; ".join(parts),
                    f"≤ {RATIO_GOAL:.0f}× benign",
                    "met" if ok else "NOT met",
                )
            )
        if self.batch:
            rows.append(
                (
                    f"Adversarial: {BATCH_EVENTS} worst-case events through transform, 1 core",
                    batch_text(self.batch)
                    + "".join(f"; {x[0]}" for x in (self.slowest, self.slowest_client) if x),
                    f"≤ {BATCH_GOAL_S:.0f} s",
                    "met" if batch_ok(self.batch, self.slowest) else "NOT met",
                )
            )
        rows.append(
            (
                "Adversarial: exceptions and contained parser errors",
                f"{len(self.findings)} (listed below the table)" if self.findings else "none",
                "none",
                "met" if not self.findings else "NOT met",
            )
        )
        return rows


def batch_ok(batch: dict[str, Any], slowest: tuple[str, float] | None) -> bool:
    """The mixed batch and 100 of the slowest single event both within the goal: a sender
    who found the slowest event would send only that."""
    return (
        "s" in batch
        and not batch.get("timeout")
        and "error" not in batch
        and (batch["s"] <= BATCH_GOAL_S)
        and (slowest is None or slowest[1] <= BATCH_GOAL_S)
    )


def batch_text(batch: dict[str, Any]) -> str:
    if batch.get("estimate") is not None and batch.get("not_run"):
        return (
            f"≥ {batch['estimate']:,.0f} s (not run: the sum of its {BATCH_EVENTS} events "
            "timed one by one)"
        )
    if batch.get("timeout"):
        return f"> {BATCH_CAP_S:.0f} s (timeout)"
    if "error" in batch:
        return f"raised: {batch['error']}"
    mb = batch.get("bytes", 0) / 1_048_576
    return f"{batch['s']:.1f} s ({mb:.1f} MB; {batch.get('note', '')})"


def measure(
    selected: list[str] | None = None,
    quick: bool = False,
    cap: float = CAP_S,
    progress: Callable[[str], None] | None = None,
    budget: float = BUDGET_S,
) -> Report:
    started = time.monotonic()
    batch = not selected or "transform" in selected
    # The cases must end by `deadline` (the batch's own cap after it). The cap of one run
    # only shrinks when the cases left would not fit otherwise (slow code): then a timeout
    # says so.
    deadline = started + budget - (BATCH_CAP_S + 5 if batch else 0)
    all_cases = cases()
    index = {c.key: i for i, c in enumerate(all_cases)}
    todo = [c for c in all_cases if not selected or c.stage in selected]
    report = Report(cap=cap)
    scratch = tempfile.TemporaryDirectory(prefix="adversarial-")
    w = Worker(quick, scratch.name)
    benign: dict[str, dict[str, Any]] = {}
    # Smaller sizes run first: when one is already too slow for the cap at the next size,
    # even with linear growth, the larger one is not run.
    previous: dict[str, tuple[int, float, bool]] = {}
    stage = None
    try:
        for case in todo:
            if progress and case.stage != stage:
                stage = case.stage
                n = sum(1 for c in todo if c.stage == stage)
                progress(f"adversarial: {stage} ({n} cases)")
            i = index[case.key]
            left = len(todo) - len(report.outcomes)
            room = deadline - time.monotonic() - 0.5 * left
            run_cap = max(MIN_CAP_S, min(cap, room))
            family = case.stage + "/" + case.name.rsplit(" [", 1)[0] + "/" + case.op
            skipped = ""
            prior = previous.get(family)
            worst: dict[str, Any]
            # Linear growth from the smaller size (the least it can be) already passes the cap.
            least = prior[1] * case.size / prior[0] if prior else 0.0
            if least >= run_cap:
                worst = {"timeout": True, "s": run_cap, "least": least}
                skipped = (
                    f"not run: {size_label(prior[0])} already timed out"
                    if prior[2]
                    else f"not run: {prior[1]:.1f} s at {size_label(prior[0])}, so ≥ {least:.0f} s"
                )
            else:
                worst = w.ask({"kind": "worst", "case": i}, run_cap)
                if "bytes" in worst or worst.get("timeout"):
                    previous[family] = (case.size, worst["s"], bool(worst.get("timeout")))
            if worst.get("timeout") and run_cap < cap:
                worst["budget"] = True
                skipped = skipped or f"cap cut to {run_cap:.0f} s by the bench's time budget"
            if case.benign_key not in benign:
                benign[case.benign_key] = w.ask({"kind": "benign", "case": i}, cap)
            out = Outcome(case, worst, benign[case.benign_key], skipped)
            report.outcomes.append(out)
            if worst.get("bench") or benign[case.benign_key].get("bench"):
                res = worst if worst.get("bench") else benign[case.benign_key]
                report.bench_problems.append(f"{case.stage} / {case.name}: {res['error']}")
            elif "error" in worst:
                report.findings.append(f"{case.stage} / {case.name}: {worst['error']}")
            for c in worst.get("contained", ()):
                report.findings.append(f"{case.stage} / {case.name}: {c}")
        if batch:
            if progress:
                progress(f"adversarial: batch of {BATCH_EVENTS} worst-case events")
            report.batch, report.batch_cases = run_batch(report, w, index)
            report.slowest = slowest_event(report)
            report.slowest_client = slowest_event(report, by_client=True)
    finally:
        w.stop()
        scratch.cleanup()
    report.seconds = time.monotonic() - started
    return report


def slowest_event(report: Report, by_client: bool = False) -> tuple[str, float] | None:
    """100 × the slowest single event (what a sender repeating it costs): text, seconds.
    `by_client`: among the events APIM writes from a client's requests only."""
    mine = [
        o
        for o in report.outcomes
        if o.case.stage == "transform" and (o.case.by_client or not by_client)
    ]
    who = "a client alone: " if by_client else ""
    timed_out = [o for o in mine if o.worst.get("timeout")]
    if timed_out:
        o = timed_out[0]
        s = BATCH_EVENTS * o.worst["s"]
        return (
            f"{who}{BATCH_EVENTS} × {o.case.name}: > {s:,.0f} s "
            f"(one event took over {o.worst['s']:.0f} s)",
            s,
        )
    done = [o for o in mine if "bytes" in o.worst and "error" not in o.worst]
    if not done:
        return None
    o = max(done, key=lambda o: o.worst["s"])
    s = BATCH_EVENTS * o.worst["s"]
    note = f", {o.worst['note']}" if o.worst.get("note") else ""
    return (
        f"{who}{BATCH_EVENTS} × the slowest ({o.case.name}{note}): about {s:,.0f} s",
        s,
    )


def run_batch(report: Report, w: Worker, index: dict[str, int]) -> tuple[dict, list[str]]:
    """The transform cases that finished (no timeout, no exception), cycled to 100 events.
    Not run when the single events already add up to more than the batch's cap."""
    done = [
        o
        for o in report.outcomes
        if o.case.stage == "transform" and "bytes" in o.worst and "error" not in o.worst
    ]
    if not done:
        return {}, []
    per_event = [o.worst["s"] for o in done]
    estimate = sum(per_event[i % len(done)] for i in range(BATCH_EVENTS))
    names = [o.case.name for o in done]
    if estimate > BATCH_CAP_S:
        # The batch costs at least what its events cost one by one: already over the goal.
        return {"estimate": estimate, "not_run": True}, names
    res = w.ask({"kind": "batch", "cases": [index[o.case.key] for o in done]}, BATCH_CAP_S)
    if res.get("timeout"):
        res["s"] = BATCH_CAP_S
    res["estimate"] = estimate
    if "error" in res:
        report.findings.append(f"transform / {BATCH_EVENTS}-event batch: {res['error']}")
    for c in res.get("contained", ()):
        report.findings.append(f"transform / {BATCH_EVENTS}-event batch: {c}")
    return res, names


# --- rendering ----------------------------------------------------------------------------------


def fmt_us(res: dict[str, Any], cap: float) -> str:
    if res.get("least"):
        return f"> {res['s']:.0f} s (skipped)"
    if res.get("timeout"):
        return f"> {res['s']:.0f} s (timeout)"
    if "error" in res:
        return "raised"
    if not res.get("bytes"):
        return "?"
    return f"{1e6 * res['s'] / (res['bytes'] / 1024):,.1f}"


def render(report: Report) -> str:
    lines = [
        f"Adversarial inputs (bench/adversarial.py): goals: worst ≤ {RATIO_GOAL:.0f}× benign per "
        f"byte in every stage; a {BATCH_EVENTS}-event batch of worst-case events ≤ "
        f"{BATCH_GOAL_S:.0f} s on one core.",
        f"Benign: realistic inputs of the same size (bench/corpus.py, tests/fixtures). A run "
        f"over {report.cap:.0f} s is stopped. Sizes are each source's limit: "
        "GatewayLogs body 8 KB, LLM-log chunk 32 KB, policy message 200 KB, event 1 MB.",
        "Times are the best of several runs on a shared machine: ratios near 10× can move "
        "by 20% between runs.",
    ]
    header = ("Case", "Size", "Worst µs/KB", "Benign µs/KB", "Ratio", "Status", "Note")
    for stage, what in STAGES.items():
        mine = [o for o in report.outcomes if o.case.stage == stage]
        if not mine:
            continue
        rows = []
        for o in mine:
            r = o.ratio
            ratio = f"{r:,.1f}×" if r is not None else "-"
            status = o.status if o.status == "ok" else f"<< {o.status}"
            note = o.skipped or o.worst.get("note", "")
            if "error" in o.worst:
                note = "see findings"
            rows.append(
                (
                    o.case.name,
                    size_label(o.worst.get("bytes") or o.case.size),
                    fmt_us(o.worst, report.cap),
                    fmt_us(o.benign, report.cap),
                    ratio,
                    status,
                    note,
                )
            )
        widths = [max(len(r[i]) for r in [*rows, header]) for i in range(len(header))]
        lines += ["", f"{stage}: {what} (benign: {BENIGN[stage]})"]
        for row in [header, tuple("-" * w for w in widths), *rows]:
            cells = [
                c.rjust(wd) if 1 <= i <= 4 else c.ljust(wd)
                for i, (c, wd) in enumerate(zip(row, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
    if report.batch:
        ok = "met" if batch_ok(report.batch, report.slowest) else "<< MISS"
        lines += [
            "",
            f"Batch: {BATCH_EVENTS} worst-case events through ingest.transform, one core: "
            f"{batch_text(report.batch)}   goal ≤ {BATCH_GOAL_S:.0f} s: {ok}",
            f"  (events cycle through the {len(report.batch_cases)} transform cases that "
            "finished without a timeout or an exception; sum of their single-event times: "
            f"{report.batch.get('estimate', 0):,.1f} s)",
        ]
        if report.slowest:
            lines.append(f"  Slowest single event, repeated (in the goal): {report.slowest[0]}")
        if report.slowest_client:
            lines.append(
                "  The same among the events APIM writes from a client's requests: "
                + report.slowest_client[0]
            )
    misses = [o for o in report.outcomes if o.status != "ok"]
    lines += ["", f"Cases missing a goal or raising: {len(misses)} of {len(report.outcomes)}"]
    for o in misses:
        lines.append(f"  - {o.case.stage} / {o.case.name}: {o.status}")
    lines += ["", f"Findings (exceptions on crafted inputs): {len(report.findings)}"]
    lines += [f"  - {f}" for f in report.findings] or ["  none"]
    if report.bench_problems:
        lines += ["", "The bench could not call these stages (their API changed?):"]
        lines += [f"  - {f}" for f in report.bench_problems]
    lines.append(f"\n(adversarial bench: {report.seconds:.0f} s)")
    return "\n".join(lines)


def report(quick: bool = False) -> tuple[list[Row], str]:
    """For bench/run.py: summary rows for the table, and the full report to print."""
    try:
        rep = measure(quick=quick, progress=lambda s: print(s, file=sys.stderr, flush=True))
    except Exception as exc:  # noqa: BLE001 - a report: the rest of `make bench` goes on
        why = f"{type(exc).__name__} at {where(exc)}"
        return [("Adversarial inputs", f"the bench failed: {why}", "", "NOT met")], why
    return rep.summary_rows(), rep.text()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats of fast cases")
    parser.add_argument("--stage", action="append", choices=list(STAGES), help="only these")
    parser.add_argument("--cap", type=float, default=CAP_S, help="seconds per run (default 20)")
    parser.add_argument(
        "--budget", type=float, default=BUDGET_S, help="seconds for the whole bench (default 175)"
    )
    parser.add_argument("--worker", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.quick, args.worker)
        return
    try:
        rep = measure(
            args.stage,
            args.quick,
            args.cap,
            progress=lambda s: print(s, file=sys.stderr, flush=True),
            budget=args.budget,
        )
    except Exception as exc:  # noqa: BLE001 - a report: exit 0 whatever happens
        print(f"the adversarial bench failed: {type(exc).__name__} at {where(exc)}")
        return
    print(rep.text())


if __name__ == "__main__":
    main(sys.argv[1:])

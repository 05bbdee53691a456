"""Redaction against records and bodies built to slip past it: duplicate `properties`, the
`metadata` capture, text in every field a stream carries, log probabilities and values under
machine-data keys, numbers in other digits, percent-encoded URL keys, and caches a sender
fills. Pure: the pipeline's plan (no storage), a Masker, scrubbing functions.

Every value planted here is a positive of the detectors (an e-mail, a card, a phone number):
a test passes when none of them is stored readable, in any form (raw, JSON-escaped).
"""

from __future__ import annotations

import copy
import gc
import json
import tracemalloc
from collections import Counter
from typing import Any

import orjson
import pytest

from pipeline.ingest.plan import plan_batch
from pipeline.model import EventIn
from pipeline.protect.credentials import scrub_credentials
from pipeline.protect.fields import key_kind
from pipeline.protect.masking import LOGPROBS_MARKER, Masker
from pipeline.protect.policy import policy_for
from pipeline.protect.redactor import Redactor
from pipeline.settings import Config
from tests.fixtures import apim, pii_corpus, sources
from tests.fixtures.shapes import FIRST_EVENT, RESPONSE_FULL, sse
from tests.test_ingest import stored_record

EMAIL, CARD, PHONE = "victim@example.com", "4111 1111 1111 1111", "+44 20 7946 0958"
PLANTED = (EMAIL, CARD, PHONE, "7946 0958", "4111 1111")


def _leaks(stored: Any, values: tuple[str, ...] = PLANTED) -> list[str]:
    """Planted values readable in what is stored (raw or JSON-escaped)."""
    data = stored if isinstance(stored, str) else orjson.dumps(stored).decode()
    return [v for v in values if v in data or orjson.dumps(v).decode()[1:-1] in data]


def _archived(*records: dict[str, Any], cfg: Config | None = None) -> list[dict[str, Any]]:
    """The records as the archive would store them, through the pipeline's plan."""
    plan = plan_batch(
        [EventIn(apim.envelope(*records), partition="0", sequence=1)], cfg or Config()
    )
    assert not plan.dead, [d.reason for d in plan.dead]
    return [
        stored_record(plan.states[r["correlationId"]].call.fragments["gateway"]) for r in records
    ]


def _masker(cfg: Config | None = None) -> Masker:
    return Masker(policy_for(cfg or Config()))


# --- 1. every `properties` member, whatever its case ----------------------------------------------


@pytest.mark.parametrize("capture", ["redacted", "metadata"])
def test_every_properties_member_is_protected_whatever_its_case(capture: str) -> None:
    """The parser reads the last `properties` member whatever its case (envelope.flatten);
    the archive used to protect only the first, so a second one was stored as logged."""
    rec = apim.gateway(apim.new_id(f"dup-props-{capture}"))
    secret = {
        "requestBody": orjson.dumps(
            {"messages": [{"role": "user", "content": f"my email is {EMAIL}, card {CARD}"}]}
        ).decode(),
        "url": rec["properties"]["url"] + f"&user={EMAIL}",
        "lastError": {"message": f"call {PHONE}", "reason": "x"},
    }
    rec["Properties"] = {**copy.deepcopy(rec["properties"]), **secret}
    rec["PROPERTIES"] = f"free text member: {EMAIL}"  # not an object: no level, free text
    (stored,) = _archived(rec, cfg=Config(archive_capture=capture))
    assert _leaks(stored) == []
    assert stored["PROPERTIES"] == "free text member: [EMAIL]"
    if capture == "metadata":  # no member keeps a body
        for key in ("properties", "Properties"):
            assert not [k for k in stored[key] if k.lower().endswith("body")]
    else:
        assert "[EMAIL]" in stored["Properties"]["requestBody"]


def test_a_properties_member_inside_properties_is_free_text() -> None:
    rec = apim.gateway(apim.new_id("nested-props"))
    rec["properties"]["properties"] = {"note": f"reach me at {EMAIL} or {PHONE}"}
    (stored,) = _archived(rec)
    assert _leaks(stored) == []
    assert stored["properties"]["properties"] == {"note": "reach me at [EMAIL] or [PHONE]"}


# --- 2. `metadata` is at least as strict as `redacted` --------------------------------------------


def test_metadata_archive_keeps_nothing_that_redacted_masks() -> None:
    """Every value the `metadata` archive keeps is what the `redacted` archive keeps: it only
    drops bodies and messages on top. Free text of formats.md §1.2 (URL with a query, the
    request headers of §1.3 with `x-end-user-id`, lastError, errors, traceRecords)."""
    rec = apim.gateway(
        apim.new_id("metadata-free-text"),
        url=apim.APIM + f"/openai/deployments/chat-prod/chat/completions?api-version=2024-10-21"
        f"&q={EMAIL}",
        lastError={
            "elapsed": 4,
            "source": "llm-token-limit",
            "reason": "TokenLimitExceeded",
            "message": f"bad content for {EMAIL} {CARD}",
        },
        errors=[{"message": f"callback {PHONE}"}],
        traceRecords=[{"message": f"prompt was: call me at {PHONE}, {EMAIL}"}],
        backendResponseHeaders={"x-ms-region": "West Europe", "x-debug": f"user {EMAIL}"},
    )
    (meta,) = _archived(rec, cfg=Config(archive_capture="metadata"))
    (red,) = _archived(rec, cfg=Config(archive_capture="redacted"))
    assert _leaks(meta) == [] and _leaks(red) == []
    assert rec["properties"]["requestHeaders"]["x-end-user-id"] == "alice@contoso.com"
    assert "alice@contoso.com" not in orjson.dumps(meta).decode()
    for level_meta, level_red in ((meta, red), (meta["properties"], red["properties"])):
        for key, value in level_meta.items():
            if key.lower() != "properties":
                assert value == level_red[key], key
    assert not [k for k in meta["properties"] if k.lower().endswith("body")]


# --- 3. every text field a stream carries ---------------------------------------------------------


def _chat_chunk(choice: dict[str, Any], obj: str = "chat.completion.chunk") -> dict[str, Any]:
    return {
        "choices": [{"content_filter_results": {}, "finish_reason": None, "index": 0, **choice}],
        "created": 1741083500,
        "id": "chatcmpl-D9zY8xW7vU6tS5rQ4pO3nM2lK1jI",
        "model": "gpt-4o-2024-08-06",
        "object": obj,
        "system_fingerprint": "fp_ee1d74bde0",
    }


def _pieces(text: str) -> list[str]:
    """`text` in three pieces, cutting the card number (if any) in two: deltas are joined
    before matching."""
    cut = text.index(CARD) + 7 if CARD in text else len(text) // 2
    return [text[:12], text[12:cut], text[cut:]]


ANSWER = f"Contact {EMAIL} or pay with {CARD} or call {PHONE} today"
_MID = RESPONSE_FULL["output"][0]["id"]


def _responses_events() -> list[dict[str, Any]]:
    """A Responses API stream (formats.md §5.7) whose text sits in each kind of event."""
    done = copy.deepcopy(RESPONSE_FULL)
    done["output"][0]["content"][0]["text"] = ANSWER
    item = copy.deepcopy(done["output"][0])
    part = item["content"][0]
    base = {"item_id": _MID, "output_index": 0, "content_index": 0}
    return [
        {"type": "response.created", "sequence_number": 0, "response": {**done, "output": []}},
        *(
            {"type": "response.output_text.delta", "sequence_number": 1 + i, **base, "delta": d}
            for i, d in enumerate(_pieces(ANSWER))
        ),
        {"type": "response.output_text.done", "sequence_number": 4, **base, "text": ANSWER},
        {"type": "response.content_part.done", "sequence_number": 5, **base, "part": part},
        {
            "type": "response.output_item.done",
            "sequence_number": 6,
            "output_index": 0,
            "item": item,
        },
        {"type": "response.completed", "sequence_number": 7, "response": done},
    ]


def _events_of(kind: str, field: str, answer: str = ANSWER) -> list[dict[str, Any]]:
    base = {"item_id": _MID, "output_index": 0, "content_index": 0}
    pieces = _pieces(answer)
    return [
        *(
            {"type": f"{kind}.delta", "sequence_number": i, **base, "delta": d}
            for i, d in enumerate(pieces)
        ),
        {"type": f"{kind}.done", "sequence_number": 3, **base, field: answer},
    ]


STREAMS: dict[str, str] = {
    # formats.md §5.5 legacy Completions, streamed: the text is the choice's `text`
    "completions choices[].text": sse(
        *(_chat_chunk({"text": p, "logprobs": None}, "text_completion") for p in _pieces(ANSWER))
    ),
    # §5.4 chat chunks: a refusal, reasoning, a legacy function call, an audio transcript
    "chat delta.refusal": sse(
        FIRST_EVENT,
        *(_chat_chunk({"delta": {"refusal": p}, "logprobs": None}) for p in _pieces(ANSWER)),
    ),
    "chat delta.reasoning_content": sse(
        *(_chat_chunk({"delta": {"reasoning_content": p}}) for p in _pieces(ANSWER))
    ),
    "chat delta.function_call.arguments": sse(
        *(
            _chat_chunk({"delta": {"function_call": {"arguments": p}}})
            for p in _pieces(orjson.dumps({"note": ANSWER}).decode())
        )
    ),
    "chat delta.audio.transcript": sse(
        *(
            _chat_chunk({"delta": {"audio": {"id": "audio_1", "transcript": p}}})
            for p in _pieces(ANSWER)
        )
    ),
    "chat tool call name": sse(
        _chat_chunk(
            {
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": f"notify {EMAIL}", "arguments": ""},
                        }
                    ]
                }
            }
        )
    ),
    # §5.7 Responses API streams: deltas, done events, parts, items, the final response
    "responses output_text": sse(*_responses_events(), event_names=True, done=False),
    "responses refusal": sse(
        *_events_of("response.refusal", "refusal"), event_names=True, done=False
    ),
    "responses reasoning summary": sse(
        *_events_of("response.reasoning_summary_text", "text"), event_names=True, done=False
    ),
    "responses audio transcript": sse(
        *_events_of("response.audio.transcript", "transcript"), event_names=True, done=False
    ),
    "responses function arguments": sse(
        *_events_of("response.function_call_arguments", "arguments"), event_names=True, done=False
    ),
    "responses error event": sse(
        {"type": "error", "sequence_number": 0, "code": "server_error", "message": ANSWER},
        event_names=True,
        done=False,
    ),
    # an `event:` line is kept with its chunk: a sender can write anything there
    "event line": f"event: {EMAIL}\ndata: " + orjson.dumps(_chat_chunk({"delta": {}})).decode(),
}


# Where the pieces of a stream's text are: joined in order, a value split across chunks is
# readable again (the test must see it whole, as a reader of the archive would).
_TEXT_FIELDS = frozenset(
    {"content", "refusal", "reasoning_content", "text", "arguments", "transcript", "delta"}
)


def _assembled(stream: str) -> str:
    """The text pieces of every chunk, in order, joined."""
    pieces: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k in _TEXT_FIELDS and isinstance(v, str):
                    pieces.append(v)
                else:
                    visit(v)
        elif isinstance(value, list):
            for v in value:
                visit(v)

    for block in stream.split("\n\n"):
        data = block.partition("data: ")[2]
        if data.startswith("{"):
            visit(orjson.loads(data))
    return "".join(pieces)


@pytest.mark.parametrize("name", list(STREAMS))
def test_every_text_field_of_a_stream_is_redacted(name: str) -> None:
    stream = STREAMS[name]
    assert _leaks(stream) != []  # the stream does carry them
    counts: Counter[str] = Counter()
    out = _masker().redact_string(stream, counts)
    assert _leaks(out) == [], out
    assert _leaks(_assembled(out)) == [], _assembled(out)
    assert counts["EMAIL"] >= 1
    # still a stream of the same events, each chunk still JSON
    blocks = [b for b in out.split("\n\n") if b.strip()]
    assert len(blocks) == len([b for b in stream.split("\n\n") if b.strip()])
    for block in blocks:
        data = block.split("data: ", 1)[1] if "data: " in block else "[DONE]"
        if data != "[DONE]":
            orjson.loads(data)


def test_a_stream_value_split_across_refusal_chunks_is_found_once() -> None:
    out = _masker().redact_string(STREAMS["chat delta.refusal"], Counter())
    text = "".join(
        orjson.loads(b[6:])["choices"][0]["delta"].get("refusal") or ""
        for b in out.split("\n\n")
        if b.startswith("data: {") and orjson.loads(b[6:])["choices"]
    )
    assert text == "Contact [EMAIL] or pay with [CARD] or call [PHONE] today"


def test_a_streams_id_and_comment_lines_are_redacted_and_kept() -> None:
    # SSE lets a block carry `id:`, `retry:` and `: comment` lines besides `event:` and
    # `data:`: a sender can write anything there. They were neither redacted nor, when
    # something else in the stream was, written back.
    clean = _chat_chunk({"index": 0, "delta": {"content": "hello there"}, "finish_reason": None})
    stream = (
        f"id: {CARD}\n: call {EMAIL}\ndata: {orjson.dumps(clean).decode()}\n\n"
        "id: 2\ndata: [DONE]\n\n"
    )
    counts: Counter[str] = Counter()
    out = _masker().redact_string(stream, counts)
    assert CARD not in out and EMAIL not in out and counts["EMAIL"] == 1
    assert "id: [CARD]" in out and ": call [EMAIL]" in out and "hello there" in out


def test_a_clean_stream_is_kept_exactly_as_logged() -> None:
    clean = "Receipts are due within 30 days of the trip, in the portal."
    for stream in (
        apim.text("chat_stream_usage.sse"),  # formats.md §5.4 verbatim
        sse(*_events_of("response.output_text", "text", clean), event_names=True, done=False),
    ):
        counts: Counter[str] = Counter()
        assert _masker().redact_string(stream, counts) == stream and not counts


# --- 4. log probabilities, and values under machine-data keys -------------------------------------

TOKENS = ["Call", " victim", " at", f" {PHONE}", " or", f" {EMAIL}", ", card", f" {CARD}"]


def _logprobs_content() -> list[dict[str, Any]]:
    return [
        {
            "token": t,
            "logprob": -0.1,
            "bytes": list(t.encode()),
            "top_logprobs": [{"token": t, "logprob": -0.1, "bytes": list(t.encode())}],
        }
        for t in TOKENS
    ]


def _bytes_leak(stored: Any) -> bool:
    """A planted value readable from the `bytes` arrays of log probabilities."""
    data = orjson.dumps(stored).decode()
    return any(str(list(v.encode()))[1:-1].replace(" ", "") in data for v in (EMAIL, "4111"))


def test_log_probabilities_are_not_kept_under_redaction() -> None:
    """formats.md §5.3: a choice's `logprobs` repeats the answer token by token (tokens too
    short to match alone, and UTF-8 `bytes`): under redaction it is replaced by a marker."""
    response = apim.chat_response("".join(TOKENS))
    response["choices"][0]["logprobs"] = {"content": _logprobs_content(), "refusal": None}
    legacy = {  # §5.5 legacy Completions logprobs
        "id": "cmpl-8Xy7Wv6Ut5Sr4Qp3On2Ml1Kj",
        "object": "text_completion",
        "model": "gpt-35-turbo-instruct",
        "choices": [
            {
                "text": "".join(TOKENS),
                "index": 0,
                "finish_reason": "stop",
                "logprobs": {
                    "tokens": TOKENS,
                    "token_logprobs": [-0.1] * len(TOKENS),
                    "top_logprobs": [{t: -0.1} for t in TOKENS],
                    "text_offset": list(range(len(TOKENS))),
                },
            }
        ],
    }
    request = apim.chat_request(("user", "hello there"), logprobs=True, top_logprobs=2)
    for body in (response, legacy):
        counts: Counter[str] = Counter()
        out = orjson.loads(_masker().redact_string(orjson.dumps(body).decode(), counts))
        assert _leaks(out) == [] and not _bytes_leak(out), out
        assert out["choices"][0]["logprobs"] == LOGPROBS_MARKER and counts["LOGPROBS"] == 1
    counts = Counter()
    raw = orjson.dumps(request).decode()
    assert _masker().redact_string(raw, counts) == raw and not counts  # `logprobs: true` kept
    # streamed chunks carry them per chunk too (§5.4 `logprobs` of each choice)
    stream = sse(
        *(
            _chat_chunk(
                {"delta": {"content": t}, "logprobs": {"content": _logprobs_content()[i : i + 1]}}
            )
            for i, t in enumerate(TOKENS)
        )
    )
    out = _masker().redact_string(stream, Counter())
    assert _leaks(out) == [] and not _bytes_leak(out)
    assert out.count(LOGPROBS_MARKER) == len(TOKENS)


def test_log_probabilities_are_kept_in_a_full_archive() -> None:
    response = apim.chat_response("hello")
    response["choices"][0]["logprobs"] = {"content": _logprobs_content(), "refusal": None}
    rec = apim.gateway(apim.new_id("logprobs-full"), response=response)
    (stored,) = _archived(rec, cfg=Config(archive_capture="full", prompt_capture="full"))
    body = orjson.loads(stored["properties"]["backendResponseBody"])
    assert body["choices"][0]["logprobs"]["content"][0]["token"] == "Call"


@pytest.mark.parametrize(
    "key", ["role", "type", "id", "model", "object", "status", "finish_reason", "call_id",
            "item_id", "tool_call_id", "system_fingerprint", "created", "index", "usage",
            "content_filter_results", "prompt_filter_results", "embedding"],
)  # fmt: skip
def test_values_under_machine_data_keys_are_redacted_unless_they_are_machine_data(
    key: str,
) -> None:
    """A client writes the request: `role`, a content part's `type`, a tool call's `id`, the
    `model` are whatever it sends. Values of the usual shape stay; others are text."""
    hostile: Any = f"user {EMAIL} card {CARD}"
    if key in ("usage", "content_filter_results"):
        hostile = {"hate": {"filtered": False, "severity": hostile}}
    elif key in ("prompt_filter_results", "embedding"):
        hostile = [0.1, {"note": hostile}]
    request = apim.chat_request(("user", "hello there"))
    request["messages"][0][key] = hostile
    request["messages"].append({"role": "user", "content": [{"type": "text", "text": "hi"}]})
    counts: Counter[str] = Counter()
    out = orjson.loads(_masker().redact_string(orjson.dumps(request).decode(), counts))
    assert _leaks(out) == [], out
    assert out["messages"][1] == request["messages"][1]  # the usual shapes, unchanged


def test_a_response_of_the_usual_shapes_is_walked_unchanged() -> None:
    """formats.md §1.3, §5.3, §5.6, §5.7: ids, models, verdicts, usage and embeddings are
    kept as they are, and nothing is counted (so a body is stored exactly as logged)."""
    masker = _masker()
    for doc in (
        orjson.loads(apim.base_chat_record()["properties"]["backendResponseBody"]),
        apim.load("chat_response_tools.json"),
        apim.load("embeddings_response.json"),
        apim.load("responses_response.json"),
    ):
        counts: Counter[str] = Counter()
        assert masker.walk(doc, counts) == doc and not counts


# --- 5. numbers in any Unicode digits -------------------------------------------------------------

_DIGITS = {
    "full-width": "０１２３４５６７８９",
    "Arabic-Indic": "٠١٢٣٤٥٦٧٨٩",
    "Persian": "۰۱۲۳۴۵۶۷۸۹",
    "Devanagari": "०१२३४५६७८९",
    "Bengali": "০১২৩৪৫৬৭৮৯",
    "Thai": "๐๑๒๓๔๕๖๗๘๙",
    "mathematical bold": "".join(chr(0x1D7CE + i) for i in range(10)),
}


@pytest.mark.parametrize("script", list(_DIGITS))
def test_numbers_in_any_unicode_digits_are_found_as_in_ascii(script: str) -> None:
    """Every positive of the labelled corpus with its digits written in another script is
    found where its ASCII twin is, with the same type (spans: one character for one)."""
    table = str.maketrans("0123456789", _DIGITS[script])
    r = Redactor()
    masker = _masker()
    checked = 0
    for sentence, value, label in pii_corpus.positives():
        if not any(c.isdigit() for c in value):
            continue
        written = sentence.translate(table)
        assert r.find(written) == r.find(sentence), (label, written)
        counts: Counter[str] = Counter()
        masked = masker.redact_text(written, counts)  # the prefilter lets it through
        assert f"[{label}]" in masked and value.translate(table) not in masked, masked
        checked += 1
    assert checked >= 60


@pytest.mark.parametrize(
    "text",
    [
        "電話 ０９０-１２３４-５６７８ まで",
        "電話 ０９０－１２３４－５６７８ まで",  # full-width hyphens
        "اتصل على ٠٩٠-١٢٣٤-٥٦٧٨ أو ٠٢٠ ٧٩٤٦ ٠٩٥٨",
        "カード ４１１１ １１１１ １１１１ １１１１ で",
        "メール ｖｉｃｔｉｍ＠ｅｘａｍｐｌｅ．ｃｏｍ まで",
        "tel +44\u201120\u20117946\u20110958 (non-breaking hyphens)",
        "電話 ０９０ー１２３４ー５６７８ まで",  # long vowel marks typed for hyphens
    ],
)
def test_numbers_and_addresses_written_in_other_forms_are_masked_in_what_is_stored(
    text: str,
) -> None:
    rec = apim.gateway(
        apim.new_id(f"wide-{text}"), request=apim.chat_request(("user", f"{text} ok"))
    )
    plan = plan_batch([EventIn(apim.envelope(rec))], Config())
    state = plan.states[rec["correlationId"]]
    assert state.prompt_preview is not None and "[" in state.prompt_preview.text
    stored = orjson.dumps(stored_record(state.call.fragments["gateway"])).decode()
    digits = [w for w in text.split() if sum(c.isdigit() for c in w) >= 4 or "＠" in w]
    assert digits and not [
        w for w in digits if w in stored or orjson.dumps(w).decode()[1:-1] in stored
    ]


# --- 5a. members named for secrets, in JSON that is text ------------------------------------

# JSON a model writes as its answer (JSON mode), a prompt that is JSON text, a log line pasted
# with its quotes escaped (`{\"apiKey\":\"...\"}`): no decoder reads these members as
# members, yet a value under "apiKey" is a credential wherever it is written.
_SECRET_MEMBERS = {
    "apiKey": "Hunter2ZzSecretValue",
    "accessToken": "Zq7-secret-access",
    "connectionString": "Server=db;User Id=sa;Pwd=Zq9",
    "client_secret": "k3y~Zq8",
}


def _previews_and_archive(name: str, prompt: str, answer: str) -> tuple[str, str, str]:
    """A call's prompt and completion previews, and its archived record as JSON text."""
    rec = apim.gateway(
        apim.new_id(name),
        request=apim.chat_request(("user", prompt)),
        response=apim.chat_response(answer),
    )
    state = plan_batch([EventIn(apim.envelope(rec))], Config()).states[rec["correlationId"]]
    assert state.prompt_preview is not None and state.completion_preview is not None
    stored = orjson.dumps(stored_record(state.call.fragments["gateway"])).decode()
    return state.prompt_preview.text, state.completion_preview.text, stored


@pytest.mark.parametrize("escaped", [0, 1, 2])
def test_a_secret_named_member_of_json_written_as_text_is_masked_in_previews_and_archive(
    escaped: int,
) -> None:
    """Found by an audit: previews masked such text as prose (no secret there), and the
    archive took the preview's reading from the memo instead of decoding the answer."""
    text = orjson.dumps({"service": "billing", **_SECRET_MEMBERS}).decode()
    for _ in range(escaped):
        text = orjson.dumps(text).decode()[1:-1]
    for where in _previews_and_archive(f"json-text-{escaped}", f"store this: {text}", text):
        assert "billing" in where  # the JSON is kept, not masked whole
        leaked = [v for v in _SECRET_MEMBERS.values() if v.split("=")[-1] in where]
        assert not leaked, (leaked, where)


def test_a_long_json_answers_preview_reads_only_its_start_but_whole_values() -> None:
    """A JSON answer's preview is matched on the start it shows, and on as much more as the
    longest value a detector masks whole: a JWT that starts in the preview is masked."""
    answer = orjson.dumps({"note": f"token {_LONG_JWT}", "more": "word " * 20_000}).decode()
    _, completion_preview, _ = _previews_and_archive("json-long", "hi", answer)
    assert completion_preview.startswith('{"note":"token [JWT]'), completion_preview


def test_a_token_or_connection_string_member_alone_passes_the_prefilter() -> None:
    """The prefilter lets through only text a detector could match: one whose only secret
    is an accessToken or a connectionString member (no digit, no key word) must pass."""
    masker = Masker(policy_for(Config()))
    for name in ("accessToken", "connectionString"):
        counts: Counter[str] = Counter()
        out = masker.redact_text(
            f'The value: {{"service": "billing", "{name}": "ZqValue"}}', counts
        )
        assert "ZqValue" not in out and counts == {"SECRET": 1}, out


def test_an_address_escaped_in_json_text_is_masked_in_previews_and_archive() -> None:
    """A JSON answer's content is text to a preview: an `@` written `\\u0040` in it is one,
    as in the JSON text of a cut body."""
    text = '{"to": "alice\\u0040contoso.com", "card": "4111\\u00201111 1111 1111"}'
    texts = _previews_and_archive("json-text-escaped", text, text)
    for where in texts:
        assert "alice" not in where and "1111" not in where, where
    assert texts[1] == '{"to": "[EMAIL]", "card": "[CARD]"}'


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ('{"key": "abc123", "type": "string", "max_tokens": 50}', "abc123"),  # names no secret
        ('{"tokens": "abc123", "keys": ["k1"]}', "abc123"),
        ('{"password": "[SECRET]", "apiKey": ""}', "[SECRET]"),  # masked already; empty
    ],
)
def test_members_that_name_no_secret_are_kept(text: str, kept: str) -> None:
    out = Redactor().redact(text)
    assert kept in out.text and out.counts.get("SECRET", 0) == 0, out.text


def test_a_secret_named_member_is_masked_to_its_closing_quote_or_the_end_of_cut_text() -> None:
    """The value ends at the quote that closes it at its own level of escaping (an escaped
    quote inside it does not end it); a cut value is masked to the end; each of thousands."""
    for value in ('ab\\"cd\\\\', 'ab\\", cd'):  # escaped quotes, one followed by a comma
        out = Redactor().redact('{"apiKey": "' + value + '", "next": "kept"}')
        assert out.text == '{"apiKey": "[SECRET]", "next": "kept"}', out.text
    # Read on its unescaped view (a JSON answer's preview), a quote inside the value is bare:
    # only a quote followed by what follows a value ends it.
    masker = Masker(policy_for(Config()))
    for quote in ('\\"', "\\u0022"):
        answer = '{"user": "svc", "password": "Xy7' + quote + 'kLqZebraTail", "n": 1}'
        out_text = masker.redact_text(answer, Counter())
        assert out_text == '{"user": "svc", "password": "[SECRET]", "n": 1}', out_text
    # A value that only starts like a placeholder is masked whole.
    assert Redactor().redact('{"apiKey": "[SECRET]tail"}').text == '{"apiKey": "[SECRET]"}'
    assert Redactor().redact('{"x": 1, "apiKey": "abcdef').text == '{"x": 1, "apiKey": "[SECRET]'
    assert Redactor().redact('{"pin_password": 123456, "n": 7}').text == (
        '{"pin_password": [SECRET], "n": 7}'
    )
    many = "{" + ",".join(f'"user{i}_apiKey": "v{i}", "token": "t"' for i in range(20_000)) + "}"
    assert Redactor().redact(many).counts["SECRET"] == 20_000


# --- 5a'. values split by the cut between two LLM-log chunks ------------------------------


_LONG_JWT = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."
    + "eyJ"
    + "".join(f"zAw{i:05d}LWFhYWFh" for i in range(400))
    + ".c2lnbmF0dXJlLXNpZ25hdHVyZQ"
)


@pytest.mark.parametrize(
    ("value", "cut_after"),
    [
        ("password: Hunter2ZzQxyz", "password: "),  # the name ends one chunk, the value the next
        ("AccountKey=" + "A1b2C3d4" * 11, "AccountKey=A1b2"),
        ("sk-proj-A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0", "s"),  # a key but one character
        ("mail zed.victim@example.org", "zed.vi"),
        ("card 4111 1111 1111 1111", "card 4111 11"),
        # Longer than 4 KB: an RSA-8192 key's PEM is about 6.5 KB, a JWT a few KB.
        (f"token {_LONG_JWT}", "token " + _LONG_JWT[:5_000]),
    ],
)
def test_a_value_the_cut_between_two_llm_log_chunks_splits_is_archived_masked(
    value: str, cut_after: str
) -> None:
    """APIM cuts a message into 32 KB chunks, each its own record, masked alone: a client
    padding its prompt puts the cut where it wants, and a value split there (or whose name
    ended the chunk before) was archived in clear (found by an audit)."""
    cid = apim.new_id(f"split-{cut_after}")
    text = orjson.dumps([{"role": "user", "content": "x " * 16_000 + value + " thanks"}]).decode()
    at = text.index(value) + len(cut_after)
    records = [
        sources.llm_header(cid),
        sources.llm_messages(cid, text[:at], seq=1),
        sources.llm_messages(cid, text[at:], seq=2),
    ]
    plan = plan_batch([EventIn(apim.envelope(*records))], Config())
    state = plan.states[cid]
    stored = "".join(
        orjson.dumps(stored_record(f)).decode()
        for key, f in state.call.fragments.items()
        if key.startswith("llm-msg")
    )
    secret = value.split()[-1].split(":")[-1].split("=")[-1]
    rest = secret[max(0, len(cut_after) - (len(value) - len(secret))) :]
    for piece in (secret, rest, secret[1:]):
        assert piece[:40] not in stored, (piece[:40], stored[-300:])


def test_a_records_request_and_response_chunks_are_both_masked_across_their_cuts() -> None:
    """One LLM-log record can hold a chunk of the request and one of the response: each was
    archived again alone, from the record as received, the second putting the first's chunk
    back in clear (found by an audit)."""
    cid = apim.new_id("split-both")
    request = orjson.dumps([{"role": "user", "content": "x " * 16_000 + "password: Hunter2Zq"}])
    response = orjson.dumps([{"role": "assistant", "content": "y " * 16_000 + "pwd= Tiger9Qz"}])
    req, resp = request.decode(), response.decode()
    at, at2 = req.index("Hunter2"), resp.index("Tiger9")
    records = [
        sources.llm_header(cid),
        sources.llm_messages(cid, req[:at], resp[:at2], seq=1),
        sources.llm_messages(cid, req[at:], resp[at2:], seq=2),
    ]
    state = plan_batch([EventIn(apim.envelope(*records))], Config()).states[cid]
    stored = "".join(
        orjson.dumps(stored_record(f)).decode()
        for key, f in state.call.fragments.items()
        if key.startswith("llm-msg")
    )
    assert "Hunter2" not in stored and "Tiger9" not in stored, stored[-400:]


# --- 5b. characters a reader does not see, separators pasted from documents ---------------------

# Default-ignorable characters (zero-width space, word joiner, byte order mark, soft hyphen,
# grapheme joiner, variation selector, language tag) and combining marks (an acute, a keycap):
# a person and a model read the value through them, a regex does not.
_HIDDEN = {
    "zero-width space": "\u200b",
    "zero-width joiner": "\u200d",
    "word joiner": "\u2060",
    "byte order mark": "\ufeff",
    "soft hyphen": "\u00ad",
    "grapheme joiner": "\u034f",
    "variation selector and keycap": "\ufe0f\u20e3",
    "combining acute": "\u0301",
    "language tag": "\U000e0001",
}


def _rewritten(rewrite: Any) -> list[tuple[str, str, str]]:
    """The labelled positives whose value `rewrite` changes: (sentence, rewritten, label)."""
    out = []
    for sentence, value, label in pii_corpus.positives():
        written = rewrite(value)
        if written != value:
            out.append((sentence, sentence.replace(value, written), label))
    return out


@pytest.mark.parametrize("name", list(_HIDDEN))
def test_values_with_characters_no_one_sees_are_masked_as_without_them(name: str) -> None:
    """A hidden character after every other character of each positive: the value is masked
    whole (the hidden characters inside go with it) and the rest of the sentence is unchanged:
    the stored text is what the same sentence without them gives."""
    hidden = _HIDDEN[name]
    cases = _rewritten(
        lambda v: "".join(c + hidden if i % 2 == 0 else c for i, c in enumerate(v[:-1])) + v[-1]
    )
    masker = _masker()
    assert len(cases) >= 80
    for sentence, written, label in cases:
        counts: Counter[str] = Counter()
        masked = masker.redact_text(written, counts)  # through the prefilter
        # A hidden character left outside the match (o'brien@ is masked from "b") is harmless.
        assert masked.replace(hidden, "") == masker.redact_text(sentence, Counter()), written
        assert counts[label] >= 1, (label, written)
    # In place of the spaces around a value, glued to the words beside it ("card\u200b4111
    # ..."): taken out, they would make it part of those words; it is found all the same.
    edges = 0
    for sentence, value, label in pii_corpus.positives():
        # (not a secret or a token: their value follows a name and a space, which it replaces)
        if f" {value} " in sentence and label not in ("SECRET", "TOKEN"):
            written = sentence.replace(f" {value} ", f"{hidden}{value}{hidden}")
            counts = Counter()
            masked = masker.redact_text(written, counts)
            assert counts[label] >= 1 and value not in masked, (label, written, masked)
            edges += 1
    assert edges >= 60
    # A hidden character before a value it also splits stays outside the mask.
    assert masker.redact_text(f"card {hidden}4111{hidden}1111{hidden}1111{hidden}1111 ok",
                              Counter()) == f"card {hidden}[CARD] ok"  # fmt: skip
    # Secrets with no digit or "@" are looked for after a word ("password", "bearer"): the
    # hidden character inside that word must not let the text skip the detectors.
    for text, label in (
        (f"pass{hidden}word=correcthorsebatterystaple", "SECRET"),
        (f"Authorization: Bear{hidden}er abcdefghijklmnopqrstuvwxyzABCDEF", "TOKEN"),
    ):
        assert f"[{label}]" in masker.redact_text(text, Counter()), text


def test_values_spelled_in_tag_characters_are_masked() -> None:
    """Tag characters (U+E0020-E007E) spell ASCII that no one sees and a model reads ("ASCII
    smuggling"): the value is masked where its ASCII twin is."""
    cases = _rewritten(
        lambda v: "".join(chr(0xE0000 + ord(c)) if " " <= c <= "~" else c for c in v)
    )
    r = Redactor()
    assert len(cases) >= 80
    for sentence, written, label in cases:
        assert r.find(written) == r.find(sentence), (label, written)
        counts: Counter[str] = Counter()
        masked = _masker().redact_text(written, counts)
        assert f"[{label}]" in masked and counts[label] >= 1, (label, written)


_SEPARATORS = {
    "no-break space": ("\u00a0", " "),
    "narrow no-break space": ("\u202f", " "),
    "thin space": ("\u2009", " "),
    "figure space": ("\u2007", " "),
    "ideographic space": ("\u3000", " "),
    "en dash": ("\u2013", "-"),
    "em dash": ("\u2014", "-"),
}


@pytest.mark.parametrize("name", list(_SEPARATORS))
def test_numbers_pasted_with_the_separators_of_a_document_are_found(name: str) -> None:
    """Word processors and PDFs put no-break or thin spaces between digit groups and turn
    hyphens into dashes: a number pasted from them is found where its ASCII twin is, and
    look-alikes written so stay look-alikes."""
    sep, ascii_ = _SEPARATORS[name]

    def rewrite(v: str) -> str:
        return "".join(
            sep if c == ascii_ and v[i - 1 : i].isdigit() and v[i + 1 : i + 2].isdigit() else c
            for i, c in enumerate(v)
        )

    cases = _rewritten(rewrite)
    r = Redactor()
    assert len(cases) >= (8 if ascii_ == "-" else 25)
    for sentence, written, label in cases:
        assert r.find(written) == r.find(sentence), (label, written)
    for negative in pii_corpus.NEGATIVES:
        written = "".join(
            sep
            if c == ascii_ and negative[i - 1 : i].isdigit() and negative[i + 1 : i + 2].isdigit()
            else c
            for i, c in enumerate(negative)
        )
        assert r.find(written) == r.find(negative) == [], written


def test_prose_with_no_break_and_ideographic_spaces_is_read_as_it_is() -> None:
    """French and Japanese prose keep their spaces away from digits: nothing is masked, and
    the text is not copied to be read (the separators are folded only next to a digit)."""
    from pipeline.protect.reading import fold, unhide

    for text in (
        "Bonjour\u00a0: voici le résumé\u00a0; merci\u202f!",
        "会議は午後に始まります。\u3000資料を準備してください。",
    ):
        assert fold(text) is text and unhide(text) is None
        assert Redactor().redact(text).text == text


def test_hidden_values_in_a_logged_request_are_masked_in_what_is_stored() -> None:
    """End to end, in a request body as a client sends it (JSON escapes for the hidden
    characters, tag characters as UTF-8): neither the preview nor the archived record keeps
    the value readable once the hidden characters are taken out."""
    card = "4111\\u200b1111\\u00ad1111\\u20601111"  # JSON escapes in the body text
    mail = "".join(chr(0xE0000 + ord(c)) for c in EMAIL)
    body = '{"messages":[{"role":"user","content":"card ' + card + " mail " + mail + ' ok"}]}'
    rec = apim.gateway(apim.new_id("hidden-values"), request=body)
    plan = plan_batch([EventIn(apim.envelope(rec))], Config())
    state = plan.states[rec["correlationId"]]
    assert state.prompt_preview is not None
    assert "[CARD]" in state.prompt_preview.text and "[EMAIL]" in state.prompt_preview.text
    stored = orjson.loads(orjson.dumps(stored_record(state.call.fragments["gateway"])))
    for body_key in ("requestBody", "backendRequestBody"):
        doc = orjson.loads(stored["properties"][body_key])
        content = doc["messages"][0]["content"]
        visible = "".join(c for c in content if c.isascii())
        assert "1111" not in visible and "victim" not in visible, content
        assert "".join(chr(ord(c) - 0xE0000) for c in content if ord(c) > 0xE0000) == "", content


# --- 5c. secrets and addresses as people write and paste them ----------------------------------

_CASK_KEY = (  # SYNTHETIC, in the shape of security-utilities SEC101/200 (84 characters)
    "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4Y5z6JQQJ99BC1234567890abcdefAAAbCdEf"
)
_WRITTEN = [
    # (text, value that must not stay, placeholder)
    ("my password is Hunter2!x, keep it safe", "Hunter2!x", "SECRET"),
    ('{"user": "admin", "password": "correcthorsebattery"}', "correcthorsebattery", "SECRET"),
    ("password='correcthorsebattery'", "correcthorsebattery", "SECRET"),
    ("DB_PASSWORD=correcthorsebattery", "correcthorsebattery", "SECRET"),
    ("passwd: correcthorsebattery", "correcthorsebattery", "SECRET"),
    ("Passwort: korrektespferd", "korrektespferd", "SECRET"),
    ("mot de passe : chevalcorrect", "chevalcorrect", "SECRET"),
    ("password\uff1acorrecthorsebattery", "correcthorsebattery", "SECRET"),
    ("AZURE_CLIENT_SECRET=appsecretvalue", "appsecretvalue", "SECRET"),
    ('"clientSecret": "appsecretvalue"', "appsecretvalue", "SECRET"),
    ("{'clientSecret': 'appsecretvalue'}", "appsecretvalue", "SECRET"),  # a Python dict
    ("DATABASE_URL=postgres://admin:correcthorse@db.internal/app", "correcthorse", "SECRET"),
    ("DSN=postgres://pwd:s3cr3t;xy@db:5432/app", ";xy", "SECRET"),  # "pwd:" is a name too
    (
        "why does https://acct.blob.core.windows.net/c/b.txt?sv=2022-11-02&sig=AbC%2BdEf%3D fail",
        "AbC%2BdEf",
        "SECRET",
    ),
    (f"AZURE_OPENAI_API_KEY={_CASK_KEY}", _CASK_KEY, "API_KEY"),
    ("app secret Ab18Q~A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7 here", "A1b2C3d4E5f6G7h8I9j0", "API_KEY"),
    ("push with ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "A1b2C3d4E5f6G7h8I9j0", "API_KEY"),
    ("charge with sk_live_A1b2C3d4E5f6G7h8I9j0K1l2", "A1b2C3d4E5f6G7h8I9j0", "API_KEY"),
    (
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBF1a\n-----END PGP PRIVATE KEY BLOCK-----",
        "lQOYBF1a",
        "PRIVATE_KEY",
    ),
    (
        "----BEGIN OPENSSH PRIVATE KEY----\nb3BlbnNz\n----END OPENSSH PRIVATE KEY----",
        "b3BlbnNz",
        "PRIVATE_KEY",
    ),
    (
        "\u2014\u2013BEGIN PRIVATE KEY\u2014\u2013 MIIEvQIB"
        " \u2014\u2013END PRIVATE KEY\u2014\u2013",
        "MIIEvQIB",
        "PRIVATE_KEY",
    ),
    ("Bitte an jörg.müller@contoso.de schreiben", "müller", "EMAIL"),
    ("Bestellung an info@bäckerei-müller.de", "bäckerei", "EMAIL"),
    ("Пишите на иван@пример.рф", "иван", "EMAIL"),
]
_PROSE = [
    "The password is required, and your password is too short.",
    "The secret of a good API is consistency; client secrets expire.",
    "Let's begin with the basics of private keys.",
    "Docs at https://learn.microsoft.com/azure and http://localhost:7071/api/health.",
    "Names like ghost_writer, ghp_short and sk_live_mode are not keys.",
]


@pytest.mark.parametrize(("text", "value", "label"), _WRITTEN, ids=[t[:40] for t, *_ in _WRITTEN])
def test_secrets_and_addresses_as_people_write_them_are_masked(
    text: str, value: str, label: str
) -> None:
    """Each form a person writes or pastes (a password in a sentence, a config line or JSON, a
    URL's password, an identifiable key, armour a word processor changed, an address in
    accented or Cyrillic letters) is masked through the masker, prefilter
    included; the prose beside them is not."""
    counts: Counter[str] = Counter()
    masked = _masker().redact_text(text, counts)
    assert value not in masked and counts[label] >= 1, masked
    for prose in _PROSE:
        assert _masker().redact_text(prose, Counter()) == prose


def test_values_of_keys_that_name_a_secret_are_masked_in_json() -> None:
    """Tool-call arguments and JSON answers are decoded and walked, which leaves each key
    behind: a value under a key that names a secret ("password", "client_secret", "apiKey",
    "DB-PASSWORD") is masked whole, whatever it looks like; a log probability's "token" and
    other keys are not."""
    args = orjson.dumps(
        {
            "user": "admin",
            "password": "correcthorse",
            "client_secret": "abc",
            "apiKey": "k3y-v4lue-x",
            "DB-PASSWORD": "tr0ub4dor",
            "note": "kept as written",
        }
    ).decode()
    body = orjson.dumps(
        {
            "messages": [{"role": "user", "content": args}],
            "metadata": {"sessionToken": "s3ss10n-t0k3n", "tokenizer": "o200k_base"},
            "logprobs": {"content": [{"token": "Hello", "logprob": -0.1}]},
        }
    ).decode()
    counts: Counter[str] = Counter()
    masked = _masker().redact_string(body, counts)
    for secret in ("correcthorse", '"abc"', "k3y-v4lue-x", "tr0ub4dor", "s3ss10n-t0k3n"):
        assert secret not in masked, masked
    assert counts["SECRET"] == 5 and "kept as written" in masked and "admin" in masked
    assert "o200k_base" in masked
    assert _masker().redact_string('{"token": "Hello", "max_tokens": 5}', Counter()) == (
        '{"token": "Hello", "max_tokens": 5}'
    )
    # Decided by the key, not by the text: a value equal to a secret's elsewhere stays, and a
    # number under a secret's key goes.
    counts = Counter()
    tool = '{"new_password": "Paris", "city": "Paris", "pin_password": 12345678, "n": 12345678}'
    assert orjson.loads(_masker().redact_string(tool, counts)) == {
        "new_password": "[SECRET]",
        "city": "Paris",
        "pin_password": "[SECRET]",
        "n": 12345678,
    }
    assert counts == {"SECRET": 2}


def test_a_cut_body_is_prefiltered_on_what_its_escapes_spell() -> None:
    """A cut body is matched as text on its view with escapes undone, and not scanned at all
    when the prefilter finds nothing a detector needs in that view (most cut bodies: prose);
    an address written in escapes of full-width characters, or in an escaped pair of tag
    characters, is still found."""
    masker = _masker()
    scans: list[str] = []
    find = masker.redactor.find
    masker.redactor.find = lambda text: scans.append(text) or find(text)  # type: ignore[method-assign]
    prose = '{"messages":[{"role":"user","content":"tell me a story about the sea and'
    assert masker.redact_string(prose, Counter()) == prose and scans == []
    cut = '{"messages":[{"role":"user","content":"write to john\\uff20contoso\\uff0ecom and'
    assert masker.redact_string(cut, Counter()).endswith('"write to [EMAIL] and')
    # json.dumps writes characters past U+FFFF as escaped surrogate pairs (as httpx sends).
    escaped = json.dumps("".join(chr(0xE0000 + ord(c)) for c in EMAIL))[1:-1]
    body = '{"messages":[{"role":"user","content":"mail ' + escaped + " and"
    assert masker.redact_string(body, Counter()).endswith('"mail [EMAIL] and')
    assert len(scans) == 2


# --- 6. caches a sender fills ---------------------------------------------------------------------


def _retained_bytes(make_records: Any) -> int:
    """Memory still held once `scrub_credentials` has seen the records and they are gone."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for record in make_records():
            scrub_credentials(record)
            del record
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_records_with_many_keys_do_not_grow_the_process_memory() -> None:
    """A sender controls the keys: 300 records of 3,000 fresh keys each (a 1 MB event holds
    75,000) were all kept in the credential plans for the life of the process (59 MB)."""

    def records() -> Any:
        for i in range(300):
            yield {f"k{i}_{j}": 0 for j in range(3_000)}

    retained = _retained_bytes(records)
    assert retained < 4_000_000, retained


def test_records_with_long_keys_do_not_grow_the_process_memory() -> None:
    """300 records each with a key of 100,000 characters: the key classification kept every
    key it saw (30 MB here, 800 MB at its 4,096 entries)."""

    def records() -> Any:
        for i in range(300):
            rec = apim.base_chat_record()
            rec[f"x{i}" + "a" * 100_000] = 1
            yield rec

    retained = _retained_bytes(records)
    assert retained < 4_000_000, retained
    assert key_kind("x" * 100_000 + "Headers") == key_kind("requestHeaders")  # still classified


# --- 7. percent-encoded URL keys ------------------------------------------------------------------


def test_percent_encoded_url_keys_are_removed_before_anything_is_stored() -> None:
    """`?subscription%2Dkey=` is `?subscription-key=` to the gateway (names are decoded
    before they are read): its value is never stored, in the row or the archive."""
    keys = {
        "subscription%2Dkey": "0123456789abcdef0123456789abcdef",
        "api%2dkey": "fedcba9876543210fedcba9876543210",
        "%73ig": "abc%2Bdef%3D",
        "%61ccess_token": "eyJhbGciOi.eyJzdWIiOi.c2ln",
    }
    query = "&".join(f"{k}={v}" for k, v in keys.items())
    rec = apim.gateway(apim.new_id("pct-keys"))
    for field in ("url", "backendUrl"):
        rec["properties"][field] += "&" + query
    # Credentials go under every capture, `full` included.
    cfg = Config(archive_capture="full", prompt_capture="full")
    state = plan_batch([EventIn(apim.envelope(rec))], cfg).states[rec["correlationId"]]
    gateway = state.call.fragments["gateway"]
    stored = orjson.dumps(stored_record(gateway)).decode()
    assert gateway.facts.url is not None and "api-version=2024-10-21" in gateway.facts.url
    for name, value in keys.items():
        assert value not in stored and f"{name}=[REMOVED]" in stored
        assert value not in gateway.facts.url and f"{name}=[REMOVED]" in gateway.facts.url


@pytest.mark.parametrize(
    "text",
    [
        "mail a@b.com-c@d.com today",  # a "-" ends one address and starts the next
        "x.y@contoso.com+z@fabrikam.org, then p@q.co.uk.r@s.io",
        "first.last@contoso.com" + "-n@m.org" * 50,
    ],
)
def test_addresses_glued_together_are_each_masked(text: str) -> None:
    """An address right after another, with no space between (a "-", "+" or "." ends the
    first and belongs to the second's local part): each is masked, none left in clear."""
    out = Redactor().redact(text)
    assert "@" not in out.text, out.text
    assert out.counts["EMAIL"] == text.count("@")


def test_numbers_and_addresses_glued_to_words_of_scripts_without_spaces_are_masked() -> None:
    # Chinese, Japanese, Korean and Thai write words together: their letters are word
    # characters, and a boundary on every word character never let a match start or end
    # there. Glued to Latin letters a number stays a word's part, as before.
    masker = _masker()
    for text, kind in (
        (f"電話番号は{PHONE}です", "PHONE"),
        (f"カード{CARD}で払います", "CARD"),
        (f"连络人{EMAIL}谢谢", "EMAIL"),
        (f"전화{PHONE}입니다", "PHONE"),
        (f"โทร{PHONE}ครับ", "PHONE"),
    ):
        counts: Counter[str] = Counter()
        out = masker.redact_string(text, counts)
        assert _leaks(out) == [] and counts[kind] == 1, out
    assert masker.redact_string("ref4111111111111111x", Counter()) == "ref4111111111111111x"


# --- member names and numbers --------------------------------------------------------------------

CARD_NUMBER = 4111111111111111  # a card number sent as a JSON number
NAMED_KEY = "sk-proj-KEYLEAKabcdefghijklmnopqrstuvwxyz0123456789"


def test_member_names_and_long_numbers_are_masked_like_values() -> None:
    """A request that parses whole can carry personal data where no string value is: as a
    member's name (`metadata` keys, a tool's property names) or as a number. They are masked
    wherever values are: the body (stored again as JSON), a stream's chunks, a record."""
    request = {
        "messages": [{"role": "user", "content": "hello there"}],
        "metadata": {EMAIL: "x", "also." + EMAIL: "y"},
        "user_ref": CARD_NUMBER,
        "user_ref_f": float(CARD_NUMBER),
        "refs": [5500000000000004, 12, 1.5],  # another card: each number is read
        "aws": {"AKIAABCDEFGHIJKLMNOP": "key id of letters only, as long as any"},
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {NAMED_KEY: {"type": "string"}}}}}],
    }  # fmt: skip
    planted = (EMAIL, str(CARD_NUMBER), "5500000000000004", NAMED_KEY, "AKIAABCDEFGHIJKLMNOP")
    body = orjson.dumps(request).decode()
    counts: Counter[str] = Counter()
    out = _masker().redact_string(body, counts)
    assert _leaks(out, planted) == [], out
    doc = orjson.loads(out)  # still JSON, every member kept (two names masked alike too)
    assert len(doc["metadata"]) == 2 and sorted(doc["metadata"].values()) == ["x", "y"]
    assert doc["user_ref"] == doc["user_ref_f"] == "[CARD]" and doc["refs"] == ["[CARD]", 12, 1.5]
    assert doc["messages"] == request["messages"]
    assert (counts["EMAIL"], counts["CARD"], counts["API_KEY"]) == (2, 3, 2)
    # A number of any size is read without raising (`str` of a 5,000-digit int does).
    walked = _masker().walk({"n": 10**5000, "card": CARD_NUMBER, "f": float("nan")}, Counter())
    assert walked["card"] == "[CARD]" and walked["n"] == 10**5000
    # A body holding nothing to mask (short numbers, plain names) is kept exactly as logged.
    clean = orjson.dumps({"max_tokens": 200, "metadata": {"team_name": "x"}}).decode()
    assert _masker().redact_string(clean, Counter()) is clean

    # A stream's chunks (walked in place) and a record (the archive's walk).
    chunk = _chat_chunk({"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {
        "arguments": ""}}]}, "finish_reason": None})  # fmt: skip
    chunk["x_extra"] = {EMAIL: CARD_NUMBER}
    stream = f"data: {orjson.dumps(chunk).decode()}\n\ndata: [DONE]\n\n"
    streamed = _masker().redact_string(stream, Counter())
    assert _leaks(streamed, planted) == [], streamed
    assert '"x_extra":{"[EMAIL]":"[CARD]"}' in streamed
    record = apim.gateway(apim.new_id("keys-numbers"), request=request)
    assert _leaks(_archived(record), planted) == []


def test_member_names_masked_alike_cost_what_other_matches_cost() -> None:
    """200 KB of members whose names all mask to `[EMAIL]`: each takes the next free number
    in one step (a search from 2 for each took 90 ms a KB, a thousand times the yardstick:
    a body as long of an e-mail in every string value)."""
    from tests.timing import best_of

    size = 200_000
    names = "{" + ",".join(f'"a{i}@b.co":1' for i in range(size // 12)) + "}"
    values = '{"input":[' + ",".join(f'"a{i}@b.co"' for i in range(size // 10)) + "]}"
    doc = orjson.loads(_masker().redact_string(names, Counter()))
    assert len(doc) == size // 12 and f"[EMAIL] ({size // 12})" in doc
    worst = best_of(lambda: _masker().redact_string(names, Counter()))
    base = best_of(lambda: _masker().redact_string(values, Counter()))
    assert worst <= 5 * base + 0.005, (worst, base)


def test_a_card_number_in_a_cut_body_is_masked_as_a_string_and_read_again_alike() -> None:
    """A request over 8 KB is logged cut, and matched as text: a card number written as a
    number became a bare `[CARD]`, which no JSON reader reads. The archive then held a body
    that a replay from it could not repair: prompt tokens, stream flag and preview gone. In
    JSON text the placeholder of a number is a string; inside a string it stays as it was."""
    from pipeline.call.bodies import parse_body
    from pipeline.ingest.batch import transform

    text = '{"user_card":4111111111111111,"note":"card 4111 1111 1111 1111 in a string","m'
    assert _masker().redact_string(text, Counter()) == (
        '{"user_card":"[CARD]","note":"card [CARD] in a string","m'
    )
    request = {"user_card": CARD_NUMBER, "stream": True, "messages": [
        {"role": "user", "content": "Summarise the travel policy please. " * 300}]}  # fmt: skip
    body = apim.cut_utf8(orjson.dumps(request).decode())
    masked = _masker().redact_string(body, Counter())
    assert str(CARD_NUMBER) not in masked
    read = parse_body(masked)
    assert read.kind == "json" and read.truncated and read.doc["stream"] is True

    # As replay from the archive reads it: the row it makes is the row ingest made.
    cid = apim.new_id("cut-card-number")
    record = apim.gateway(cid, request=body, response=None, requestSize=len(body) * 2)
    ((_, row),) = transform([EventIn(apim.envelope(record))], Config()).rows
    (archived,) = _archived(record)
    ((_, replayed),) = transform([EventIn(apim.envelope(archived))], Config()).rows
    for key in ("TokensSource", "BodyTruncated", "Streamed", "PromptPreview"):
        assert replayed.get(key) == row.get(key) is not None, key
    # Estimated from what the archive holds: the placeholder is not the number's tokens.
    assert abs(replayed["PromptTokens"] - row["PromptTokens"]) <= row["PromptTokens"] // 100


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"])
def test_an_event_in_utf16_or_utf32_is_dead_lettered_masked_in_its_encoding(codec: str) -> None:
    """JSON that a sender wrote in UTF-16 or UTF-32 (RFC 8259 wants UTF-8: refused) was
    dead-lettered as received, its personal data readable: the masker reads UTF-8. It is
    read as the text it is, masked, and written back in its encoding (its mark kept)."""
    record = apim.gateway(
        apim.new_id(f"wide-{codec}"),
        request=apim.chat_request(("user", f"mail {EMAIL} card {CARD} key {NAMED_KEY}")),
    )
    body = apim.envelope(record).decode().encode(codec)
    plan = plan_batch([EventIn(body, partition="0", sequence=1)], Config())
    (dead,) = plan.dead
    assert f"JSON in {codec.upper().replace('-LE', '').replace('-BE', '')}" in dead.reason
    stored = dead.body.decode(codec)
    assert _leaks(stored, (EMAIL, CARD, NAMED_KEY)) == [] and "[EMAIL]" in stored
    assert dead.body[:4] == body[:4]  # its byte order mark, or its first character


def test_the_callers_identity_and_structures_under_unknown_fields_are_free_text() -> None:
    """Fields the audit keeps as logged are identifiers, names and numbers: the common
    schema's `identity` (the caller's claims) and an object or list under a field nobody
    documented were kept as logged too, addresses and cards readable (black-box audit)."""
    record = apim.gateway(apim.new_id("identity-claims"))
    record["identity"] = {"claims": {"upn": EMAIL, "name": "Bob"}}
    record["x_note"] = {"card": CARD}
    record["properties"]["clientNotes"] = [f"call {PHONE}"]
    record["properties"]["usage"] = {"prompt_tokens": 29}
    # Some exporters write the claims as a JSON string.
    as_text = apim.gateway(apim.new_id("identity-as-text"))
    as_text["identity"] = orjson.dumps({"claims": {"upn": EMAIL}}).decode()
    archived, archived_text = _archived(record, as_text)
    assert _leaks(archived) == [] and _leaks(archived_text) == [], (archived, archived_text)
    assert archived["identity"]["claims"]["upn"] == "[EMAIL]"
    assert archived["properties"]["usage"] == {"prompt_tokens": 29}  # nothing to mask: as is
    assert archived["properties"]["apiId"] == record["properties"]["apiId"]

"""Pure parsing pieces: envelopes, field lookup, cut bodies, URLs, timestamps, keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from pipeline.call import operations
from pipeline.call.attribution import authorization_of
from pipeline.call.bodies import parse_body, repair_truncated
from pipeline.call.exchange import interpret
from pipeline.common.timestamps import parse_time
from pipeline.settings import Config, SettingsError
from pipeline.sources.envelope import EnvelopeError, category_of, flatten, open_envelope
from pipeline.sources.origin import apim_service, client_ip, region_name, service_name
from pipeline.store import rows
from tests.fixtures import apim


def test_envelope_shapes() -> None:
    assert open_envelope(b'{"records":[{"a":1},{"b":2}]}').records == [{"a": 1}, {"b": 2}]
    assert open_envelope(b'{"Records":[]}').enveloped
    bare = open_envelope(b'\xef\xbb\xbf{"id":"x"}')  # BOM, as some .NET writers add
    assert bare.records == [{"id": "x"}] and not bare.enveloped
    assert open_envelope(b'[{"a":1}]').records == [{"a": 1}]
    # Newtonsoft JObject.ToString() output: indented, CRLF (formats.md §3.1)
    assert open_envelope(b'{\r\n  "id": "x"\r\n}').records == [{"id": "x"}]
    for body, why in ((b"", "empty"), (b"  ", "empty"), (b"{", "not valid JSON"), (b'"s"', "str")):
        with pytest.raises(EnvelopeError, match=why):
            open_envelope(body)


def test_flatten_prefers_top_level_and_decodes_string_properties() -> None:
    rec = {
        "CorrelationId": "top",
        "Category": "GatewayLogs",
        "properties": '{"correlationId": "inner", "ResponseCode": 200}',
    }
    flat = flatten(rec)
    assert flat["correlationid"] == "top"
    assert flat["responsecode"] == 200
    assert category_of(flat) == "GatewayLogs"
    assert (
        category_of({"operationname": "Microsoft.ApiManagement/GatewayLlmLogs"}) == "GatewayLlmLogs"
    )
    assert flatten({"properties": "{not json"}) == {}


def test_the_authorization_header_is_found_in_the_record_or_its_properties() -> None:
    """Wherever GatewayLogs puts the request headers, and whether they come as an object or
    as a JSON string, the Authorization header is the one attribution reads."""
    bearer = "Bearer a.b.c"
    assert authorization_of({"requestHeaders": {"authorization": bearer}}) == bearer
    assert authorization_of({"properties": {"RequestHeaders": {"Authorization": bearer}}}) == bearer
    as_text = orjson.dumps({"requestHeaders": orjson.dumps({"AUTHORIZATION": bearer}).decode()})
    assert authorization_of({"properties": as_text.decode()}) == bearer
    assert authorization_of({"properties": "{not json", "requestHeaders": "{"}) is None
    assert authorization_of({"requestHeaders": {"x-other": "v"}}) is None


# An Application Gateway's subnets.
GATEWAY = Config(trusted_proxies="10.0.0.0/24, 2001:db8:f::/48").proxies


@pytest.mark.parametrize(
    ("forwarded", "caller", "proxies", "client"),
    [
        # No proxy trusted (the default): what APIM saw, whatever a client writes.
        ("198.51.100.23, 10.0.0.4", "10.0.0.4", (), "10.0.0.4"),
        ("203.0.113.66", "192.0.2.1", (), "192.0.2.1"),
        ("203.0.113.7:53120", None, (), None),
        (None, "192.0.2.1", (), "192.0.2.1"),
        # Behind the gateway: the address it appended, ports and brackets read.
        ("198.51.100.23, 10.0.0.4", "10.0.0.4", GATEWAY, "198.51.100.23"),
        ("203.0.113.7:53120", "10.0.0.4", GATEWAY, "203.0.113.7"),
        ("[2001:db8::1]:443", "2001:db8:f::9", GATEWAY, "2001:db8::1"),
        ("2001:db8::2", "::ffff:10.0.0.9", GATEWAY, "2001:db8::2"),
        # A client's own X-Forwarded-For comes first: never read past the gateway's entry.
        ("10.9.9.9, 198.51.100.23", "10.0.0.4", GATEWAY, "198.51.100.23"),
        ("10.0.0.7, 198.51.100.23", "10.0.0.4", GATEWAY, "198.51.100.23"),
        # Proxies behind proxies are passed; an entry that is not an address stops the walk.
        ("198.51.100.23, 10.0.0.5", "10.0.0.4", GATEWAY, "198.51.100.23"),
        ("unknown, 10.0.0.5", "10.0.0.4", GATEWAY, "10.0.0.5"),
        (" , 10.0.0.4", "192.0.2.1", GATEWAY, "192.0.2.1"),
        # Not from a trusted proxy: the header is the client's word.
        ("198.51.100.23", "192.0.2.1", GATEWAY, "192.0.2.1"),
        ("198.51.100.23", "NA", GATEWAY, None),
    ],
)
def test_the_client_is_what_apim_saw_or_what_a_trusted_proxy_appended(
    forwarded: str | None, caller: str | None, proxies: Any, client: str | None
) -> None:
    assert client_ip(forwarded, caller, proxies) == client


def test_trusted_proxies_are_addresses_or_ranges() -> None:
    networks = Config(trusted_proxies="10.0.0.0/24,2001:db8::1").proxies
    assert [str(n) for n in networks] == ["10.0.0.0/24", "2001:db8::1/128"]
    with pytest.raises(SettingsError, match="TRUSTED_PROXIES: item 2"):
        Config(trusted_proxies="10.0.0.0/24, appgw-subnet")


def test_service_and_region_read_the_same_from_every_source() -> None:
    rid = "/SUBSCRIPTIONS/X/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.APIMANAGEMENT/SERVICE/APIM-1"
    assert apim_service(rid) == "apim-1"
    assert apim_service("not a resource id") is None
    assert region_name("West Europe") == region_name("westeurope") == "westeurope"


@pytest.mark.parametrize(
    ("value", "service"),
    [
        ("contoso-apim", "contoso-apim"),
        ("CONTOSO-APIM", "contoso-apim"),
        ("contoso-apim.azure-api.net", "contoso-apim"),  # ai-hub gatewayName, its sample data
        ("apim-7pg4fleh6wgj6.azure-api.net", "apim-7pg4fleh6wgj6"),
        ("", None),
        ("-not a name", None),
    ],
)
def test_a_gateway_host_and_a_service_name_are_one_service(value: str, service: str) -> None:
    assert service_name(value) == service


@pytest.mark.parametrize(
    ("forwarded", "caller"),
    [(None, "X.Y.Z"), (None, "NA"), ("unknown", "X.Y.Z"), (None, "1.2.3.4.5"), ("x" * 5000, None)],
)
def test_a_placeholder_is_no_client_address(forwarded: str | None, caller: str | None) -> None:
    assert client_ip(forwarded, caller) is None


def test_a_placeholder_forwarded_entry_falls_back_to_the_caller() -> None:
    assert client_ip("unknown, 10.0.0.4", "192.0.2.1") == "192.0.2.1"


@pytest.mark.parametrize(
    ("operation_id", "operation"),
    [
        ("getChatCompletions", "chat.completions"),  # Azure AI Model Inference API via APIM
        ("getEmbeddings", "embeddings"),
        ("getImageEmbeddings", "embeddings"),
        ("createChatCompletion", "chat.completions"),  # OpenAI spec ids (v1 APIs)
        ("createResponse", "responses"),
        ("createEmbedding", "embeddings"),
    ],
)
def test_operation_ids_of_the_current_inference_apis(
    operation_id: str, operation: str | None
) -> None:
    assert operations.operation_from_id(operation_id) == operation


@pytest.mark.parametrize(
    "url",
    [
        "https://r.services.ai.azure.com/models/chat/completions?api-version=2024-05-01-preview",
        "https://apim.azure-api.net/foundry/models/chat/completions?api-version=2025-04-01",
        "https://r.services.ai.azure.com/models/images/embeddings?api-version=2024-05-01-preview",
        "https://phi-4-x.eastus2.models.ai.azure.com/chat/completions",
    ],
)
def test_routes_without_a_deployment_segment_name_it_in_the_body(url: str) -> None:
    body = parse_body('{"model": "dep-1", "messages": [{"role": "user", "content": "hi"}]}')
    assert operations.is_body_model_deployment(url)
    assert interpret(url=url, request=body).facts.deployment == "dep-1"
    assert not operations.is_body_model_deployment(None)


def test_a_stream_that_ends_in_an_error_event_is_a_failed_backend_call() -> None:
    """The status (200) went out before the error: the error event decides, and nothing is
    estimated for the tokens."""
    stream = (
        'data: {"id":"c1","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\n'
        'data: {"error":{"code":"server_error","message":"The server had an error"}}\n\n'
    )
    facts = interpret(status=200, response=parse_body(stream)).facts
    assert (facts.error_code, facts.error_source) == ("server_error", "backend")
    assert facts.error_message == "The server had an error"
    assert facts.usage is not None and facts.usage.source == "none"
    nameless = interpret(status=200, response=parse_body('data: {"error":{}}\n\n')).facts
    assert nameless.error_code == "stream_error" and nameless.error_message is None


def _is_salvage_of(part: Any, whole: Any, path: str = "$") -> None:
    """Every value in `part` is the original's; only the last string may be a prefix."""
    if isinstance(part, dict):
        assert isinstance(whole, dict), path
        for key, value in part.items():
            assert key in whole, f"{path}.{key} invented"
            _is_salvage_of(value, whole[key], f"{path}.{key}")
    elif isinstance(part, list):
        assert isinstance(whole, list) and len(part) <= len(whole), path
        for i, value in enumerate(part):
            _is_salvage_of(value, whole[i], f"{path}[{i}]")
    elif isinstance(part, str):
        assert isinstance(whole, str) and whole.startswith(part), path
    else:
        assert part == whole, path


def test_a_body_cut_anywhere_salvages_only_true_values() -> None:
    body = apim.base_chat_record()["properties"]["backendResponseBody"]
    whole = orjson.loads(body)
    raw = body.encode()
    for n in range(1, len(raw)):
        parsed = parse_body(raw[:n].decode("utf-8", "replace"))
        assert parsed.kind in ("json", "text")
        if parsed.kind == "json":
            assert parsed.truncated or n >= len(raw.rstrip())
            _is_salvage_of(parsed.doc, whole)


def test_whole_bodies_with_blanks_around_them_are_not_taken_for_cut_ones() -> None:
    # A body that opens a container and does not close one skips the decoder; a whole one,
    # however it is padded, must not (it would be flagged truncated).
    for body in ('\n {"a": [1]}\r\n', "\t[1, {}]  ", '"text"', "42", "{} \n"):
        parsed = parse_body(body)
        assert parsed.kind == "json" and not parsed.truncated, body
    for body in ('{"a": [1]', '[{"a": 1}', '{"a": "}"  ', "[1, 2"):
        assert parse_body(body).truncated, body


def test_a_byte_order_mark_before_a_body_hides_nothing() -> None:
    """A client's request body starting with U+FEFF (served: decoders skip it) is read as the
    JSON it is: on a v1 route its `model` names the deployment, and a streamed call without
    usage has its prompt estimated and previewed."""
    from pipeline.ingest.batch import transform
    from pipeline.model import EventIn

    sse = "\n\n".join(
        p for p in apim.text("chat_stream_usage.sse").split("\n\n") if '"usage":{' not in p
    )
    request = orjson.dumps(
        {"model": "gpt4-exp", "stream": True, "messages": [{"role": "user", "content": "Hi " * 40}]}
    ).decode()
    rows_of: dict[str, Any] = {}
    for label, body in (
        ("plain", request),
        ("bom", "\ufeff" + request),
        ("bom2", " \ufeff" + request),
    ):
        record = apim.gateway(
            apim.new_id(f"bom-{label}"), path="/openai/v1/chat/completions", request=body,
            response=sse,
        )  # fmt: skip
        record["properties"]["requestSize"] = len(body.encode())
        ((_, rows_of[label]),) = transform([EventIn(apim.envelope(record))], Config()).rows
    for label in ("bom", "bom2"):
        for key in ("Deployment", "PromptTokens", "PromptPreview"):
            assert rows_of[label].get(key) == rows_of["plain"].get(key) is not None, (label, key)
    assert parse_body("\ufeff" + request).kind == "json"
    assert parse_body("\ufeff" + request[:40]).truncated


def test_truncated_body_keeps_fields_before_the_cut() -> None:
    doc = repair_truncated(
        '{"id":"chatcmpl-1","model":"gpt-4o","usage":{"prompt_tokens":29,"completion_tok'
    )
    assert doc == {"id": "chatcmpl-1", "model": "gpt-4o", "usage": {"prompt_tokens": 29}}
    # a number at the very end may be cut (`4` of `42`): dropped, never guessed
    assert repair_truncated('{"a":1,"total_tokens":4') == {"a": 1}
    # a cut string value is kept as far as it goes (previews want it), cut escapes dropped
    assert repair_truncated('{"choices":[{"message":{"content":"Book econ') == {
        "choices": [{"message": {"content": "Book econ"}}]
    }
    assert repair_truncated('{"c":"a\\u00') == {"c": "a"}
    assert repair_truncated('{"c":"caf\ufffd') == {"c": "caf"}
    assert repair_truncated("not json") is None
    assert repair_truncated('{"a":1}}') == {"a": 1}


def test_sse_and_text_bodies_are_told_apart() -> None:
    assert parse_body(apim.text("chat_stream_usage.sse")).kind == "sse"
    assert parse_body("Internal Server Error").kind == "text"
    assert parse_body(None).kind == "absent" and parse_body("  ").kind == "absent"
    assert parse_body({"already": "decoded"}).doc == {"already": "decoded"}


@pytest.mark.parametrize(
    ("url", "operation", "deployment", "version"),
    [
        (
            "https://x.openai.azure.com/openai/deployments/chat-prod/chat/completions?api-version=2024-10-21",
            "chat.completions",
            "chat-prod",
            "2024-10-21",
        ),
        (
            "https://apim.azure-api.net/deployments/gpt-chat-pilot/chat/completions?api-version=2024-02-01",
            "chat.completions",
            "gpt-chat-pilot",
            "2024-02-01",
        ),
        (
            "https://x/openai/deployments/embeddings/embeddings?api-version=1",
            "embeddings",
            "embeddings",
            "1",
        ),
        ("https://x/openai/deployments/chat/completions?api-version=1", "completions", "chat", "1"),
        (
            "https://x/openai/responses?api-version=2025-03-01-preview",
            "responses",
            None,
            "2025-03-01-preview",
        ),
        ("https://x/openai/v1/responses", "responses", None, None),
        ("https://x/openai/v1/chat/completions", "chat.completions", None, None),
        (
            "https://x/openai/deployments/dalle3/images/generations?api-version=1",
            "images",
            "dalle3",
            "1",
        ),
        (
            "https://x/openai/deployments/whisper/audio/transcriptions?api-version=1",
            "audio",
            "whisper",
            "1",
        ),
        ("https://x/openai/fine_tuning/jobs?api-version=1", "fine_tuning", None, "1"),
        ("https://x/openai/files/file-abc?api-version=1", "files", None, "1"),
        ("https://x/openai/batches", "batches", None, None),
        ("https://x/openai/models", None, None, None),
    ],
)
def test_operation_deployment_and_version_from_url(url, operation, deployment, version) -> None:
    assert operations.operation_from_url(url) == operation
    assert operations.deployment_from_url(url) == deployment
    assert operations.api_version_from_url(url) == version


def test_timestamps_in_every_form_the_sources_use() -> None:
    assert parse_time("2024-07-02T06:31:31.4465902Z") == datetime(
        2024, 7, 2, 6, 31, 31, 446590, UTC
    )
    assert parse_time("3/4/2025 10:15:03 AM") == datetime(2025, 3, 4, 10, 15, 3, tzinfo=UTC)
    assert parse_time("12/2/2021 2:58:24 PM") == datetime(2021, 12, 2, 14, 58, 24, tzinfo=UTC)
    assert parse_time("12/2/2021 12:05:00 AM") == datetime(2021, 12, 2, 0, 5, tzinfo=UTC)
    assert parse_time("2025-03-04T10:15:02+01:00") == datetime(2025, 3, 4, 9, 15, 2, tzinfo=UTC)
    assert parse_time(1741083300) == datetime(2025, 3, 4, 10, 15, tzinfo=UTC)
    assert parse_time(1741083300123) == datetime(2025, 3, 4, 10, 15, 0, 123000, UTC)
    for bad in ("yesterday", "", None, "13/45/2025 1:00:00 PM", True):
        assert parse_time(bad) is None


def test_row_keys_escape_what_azure_forbids_and_round_trip() -> None:
    for cid in (
        "5b1f3c2e-7a4d-4e2b-9f00-3c1a2b3c4d5e",
        "a/b\\c#d?e%f",
        "x' or 'a' eq 'a",
        "t\x01\x7f",
    ):
        key = rows.row_key(cid)
        assert not any(c in key for c in "/\\#?") and all(ord(c) >= 0x20 for c in key)
        assert rows.correlation_id_of(key) == cid
    with pytest.raises(rows.KeyTooLong):
        rows.row_key("x" * 300)


def test_partition_key_is_day_and_shard_and_day_range_covers_it() -> None:
    t = datetime(2025, 3, 4, 23, 59, 59, tzinfo=UTC)
    pk = rows.partition_key(t, "5b1f3c2e-7a4d-4e2b-9f00-3c1a2b3c4d5e", 4)
    assert pk.startswith("2025-03-04_") and pk == rows.partition_key(
        t, "5b1f3c2e-7a4d-4e2b-9f00-3c1a2b3c4d5e", 4
    )
    assert (
        rows.day_range("2025-03-04")
        == "PartitionKey ge '2025-03-04' and PartitionKey lt '2025-03-05'"
    )
    assert (
        rows.day_range("2025-03-09")
        == "PartitionKey ge '2025-03-09' and PartitionKey lt '2025-03-0:'"
    )
    assert "2025-03-09_3" < "2025-03-0:"


def test_a_body_cut_after_keys_holding_braces_keeps_every_field_before_the_cut() -> None:
    """Runs of `{"key":` (nested objects) are read as one token; a key may hold `{`, and the
    cut may land right after it: the repair cuts after the last opener, not inside the key."""
    whole = {"model": "gpt-4o", "a{": {"b{": {"{c": {"d": "x", "{": {"}{": 1}}}}, "n": 2}
    text = orjson.dumps(whole).decode()
    first = text.index(',"a{"')
    for n in range(first, len(text)):
        doc = repair_truncated(text[:n])
        assert doc is not None and doc["model"] == "gpt-4o", text[:n]
        _is_salvage_of(doc, whole)
    assert repair_truncated('{"a":{"b{":{ "{c" :') == {"a": {"b{": {}}}


def test_a_streamed_legacy_completion_without_usage_estimates_its_output() -> None:
    """Legacy Completions stream their text on the choice (`choices[].text`, formats.md §5.5
    shape, `object: text_completion`), with no delta: unread, such a stream counted no output
    tokens and had no completion preview. A chat refusal streams as `delta.refusal`."""
    from tests.fixtures.shapes import sse

    def chunk(choice: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "cmpl-8Xy7Wv6Ut5Sr4Qp3On2Ml1Kj",
            "object": "text_completion",
            "created": 1741083600,
            "model": "gpt-35-turbo-instruct",
            "choices": [{"index": 0, "finish_reason": None, "logprobs": None, **choice}],
        }

    words = [" The", " capital", " of", " France", " is", " Paris."] * 20
    stream = sse(*(chunk({"text": w}) for w in words), chunk({"text": "", "finish_reason": "stop"}))
    url = (
        "https://apim.azure-api.net/openai/deployments/instruct/completions?api-version=2024-10-21"
    )
    request = parse_body('{"prompt": "What is the capital of France?", "stream": true}')
    facts = interpret(url=url, status=200, request=request, response=parse_body(stream)).facts
    assert facts.usage is not None and facts.usage.source == "estimated"
    assert facts.usage.completion is not None and facts.usage.completion >= 100
    refusal = sse({"choices": [{"index": 0, "delta": {"refusal": "I can't help with that."}}]})
    chat = url.replace("instruct/completions", "chat-prod/chat/completions")
    ask = parse_body('{"messages": [{"role": "user", "content": "Help me."}], "stream": true}')
    facts = interpret(url=chat, status=200, request=ask, response=parse_body(refusal)).facts
    assert facts.usage is not None and facts.usage.completion


def test_of_a_calls_two_bodies_a_whole_one_is_read_and_else_the_backends() -> None:
    """GatewayLogs logs a body twice (client and backend side). The one read is the first that
    is a whole document, else the backend's (what the model saw), repaired: the client's cut
    copy neither replaces a whole backend body nor is read when both are cut."""
    from pipeline.sources.gateway import gateway_facts

    record = apim.base_chat_record()
    p = record["properties"]
    answer = p["backendResponseBody"]
    usage = orjson.loads(answer)["usage"]
    ask = orjson.loads(p["requestBody"])

    # The backend's answer whole, the client's cut (a policy appended to it): the whole one.
    p["responseBody"] = answer[: len(answer) // 2]
    facts, _, _ = gateway_facts(flatten(record))
    assert facts.usage is not None and facts.usage.source == "reported"
    assert (facts.usage.prompt, facts.usage.completion) == (
        usage["prompt_tokens"],
        usage["completion_tokens"],
    )
    # The other way round: the client's copy is whole, the backend's cut before `usage`.
    p["responseBody"], p["backendResponseBody"] = answer, answer[: len(answer) // 2]
    facts, _, _ = gateway_facts(flatten(record))
    assert facts.usage is not None and facts.usage.completion == usage["completion_tokens"]
    assert not facts.body_truncated

    # Both request bodies cut, each with its own words: the backend's is the prompt read.
    def cut_request(words: str) -> str:
        doc = dict(ask, messages=[{"role": "user", "content": words + " " * 40}])
        return orjson.dumps(doc).decode()[:-30]

    p["backendRequestBody"], p["requestBody"] = cut_request("backend"), cut_request("client")
    facts, prompt, _ = gateway_facts(flatten(record))
    assert prompt is not None and "backend" in prompt and "client" not in prompt
    assert facts.body_truncated

"""Redaction and capture policy: detectors, every place they apply, every mode, overrides."""

from __future__ import annotations

import collections
import gzip
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.cli.main import main
from pipeline.ingest.batch import process_batch
from pipeline.ingest.plan import plan_batch
from pipeline.model import EventIn
from pipeline.protect import escapes
from pipeline.protect.escapes import unescaped_view
from pipeline.protect.masking import (
    LOGPROBS_MARKER,
    NOT_TEXT,
    Masker,
    dropped,
    skipped,
)
from pipeline.protect.policy import policy_for
from pipeline.protect.redactor import Redactor, clip_text
from pipeline.settings import Config, SettingsError
from pipeline.store.account import Store
from tests.conftest import settings_env
from tests.fixtures import apim, pii_corpus, sources
from tests.fixtures.shapes import FIRST_EVENT, sse
from tests.test_ingest import all_rows, stored_record

SECRETS = pii_corpus.SAMPLE_SECRETS


def test_detectors_recall_and_precision_on_the_labelled_corpus(capsys) -> None:
    r = Redactor()
    tp = fn = fp = 0
    misses = []
    for sentence, value, label in pii_corpus.positives():
        out = r.redact(sentence)
        if value not in out.text and f"[{label}]" in out.text:
            tp += 1
        else:
            fn += 1
            misses.append((label, sentence, out.text))
        # anything else masked in a positive sentence is a false positive
        fp += max(0, sum(out.counts.values()) - 1)
    negatives_masked = []
    for sentence in pii_corpus.NEGATIVES:
        spans = r.find(sentence)
        fp += len(spans)
        negatives_masked += [(sentence[a:b], label) for a, b, label in spans]
    recall = tp / (tp + fn)
    precision = tp / (tp + fp)
    with capsys.disabled():
        print(
            f"\nredaction corpus: {tp + fn} positives, {len(pii_corpus.NEGATIVES)} look-alike "
            f"negatives: recall {recall:.3f}, precision {precision:.3f}"
        )
    assert recall >= 0.98, misses
    assert precision >= 0.95, negatives_masked


def test_placeholders_are_typed_and_counted() -> None:
    out = Redactor().redact("Mail alice@contoso.com, bob@fabrikam.com; card 4111111111111111.")
    assert out.text == "Mail [EMAIL], [EMAIL]; card [CARD]."
    assert out.counts == {"EMAIL": 2, "CARD": 1}


def test_each_value_of_a_json_body_is_counted_once_whether_a_member_or_its_name() -> None:
    """A string holding one value and one holding two, a value as a member's name: each
    placeholder counted once (the row's Redactions and the KPIs add these counts up)."""
    counts: collections.Counter[str] = collections.Counter()
    note = "4111 1111 1111 1111 and 5500 0000 0000 0004"
    body = '{"to":"alice@contoso.com","bob@fabrikam.com":{"note":"' + note + '"}}'
    out = Masker(policy_for(Config())).redact_string(body, counts)
    assert orjson.loads(out) == {"to": "[EMAIL]", "[EMAIL]": {"note": "[CARD] and [CARD]"}}
    assert counts == {"EMAIL": 2, "CARD": 2}


def test_truncation_never_cuts_a_placeholder_or_a_character() -> None:
    text = "Reach me at [EMAIL] tomorrow"
    for limit in range(12, 20):
        clipped = clip_text(text, limit)
        assert clipped in (
            "Reach me at ",
            "Reach me at [EMAIL]"[: len(clipped)],
        ) or clipped.endswith("]")
        assert "[EMAI" not in clipped or "[EMAIL]" in clipped
    assert clip_text("😀" * 10, 3) == "😀😀😀"


def test_a_value_split_across_stream_pieces_is_found() -> None:
    pieces, counts = Redactor().redact_pieces(["My card is 4111 11", "11 1111 1111", " thanks"])
    assert "".join(pieces) == "My card is [CARD] thanks"
    assert pieces == ["My card is [CARD]", "", " thanks"]
    assert counts == {"CARD": 1}


def test_escaped_json_text_is_matched_on_its_decoded_view() -> None:
    s = '{"messages":[{"content":"write to alice\\u0040contoso.com\\nthanks'  # cut, unparseable
    view, offsets = unescaped_view(s)
    assert "alice@contoso.com\nthanks" in view and offsets is not None
    at = view.index("@")  # every character of the view maps to where it is written
    assert s[offsets(at) : offsets(at + 1)] == "\\u0040" and offsets(len(view)) == len(s)
    assert [s[offsets(i)] for i in range(len(view)) if s[offsets(i)] != "\\"] == [
        c for c in view if c not in "@\n"
    ]
    masker = Masker(policy_for(Config()))
    counts: Any = __import__("collections").Counter()
    out = masker.redact_string(s, counts)
    assert "contoso" not in out and "[EMAIL]\\nthanks" in out and counts == {"EMAIL": 1}


def test_every_character_of_an_unescaped_view_maps_to_where_it_is_written() -> None:
    """The view is made by replacing in C and its offsets by a walk over the escapes, and a
    text holding every stand-in character is read by the walk alone: all three must agree,
    on text mixing escapes of every kind with their look-alikes."""
    pieces = [
        "a", "é", "語", "\U0001f600", '"', "\\\\", "\\n", '\\"', "\\/", "\\t", "\\u0040",
        "\\u00e9", "\\ud83d\\ude00", "\\udb40\\udc41", "\\ud800", "\\udc00x", "\\u12", "\\x",
        "\\uZZZZ", "\\\\n", "\\\\\\n", "u0040", "\x00", "\x03", "\\u0000", "\\u0003",
    ]  # fmt: skip
    rng = random.Random(7)
    for trial in range(400):
        s = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
        if trial % 4 == 0:
            s += "".join(map(chr, range(8)))  # no stand-in left: the walk reads it
        view, at = unescaped_view(s)
        if at is None:
            assert view == s and "\\" not in s
            continue
        assert view == escapes.walk(s)[0], s  # the two readings agree
        assert at(0) == 0 and at(len(view)) == len(s), s
        for k, char in enumerate(view):
            written = s[at(k) : at(k + 1)]
            assert written == char or json.loads(f'"{written}"') == char, (s, k)
    # An escaped backslash is one character, whatever follows it.
    assert unescaped_view("\\\\n\\\\\\n\\\\u0040")[0] == "\\n\\\n\\u0040"


# --- where it applies, end to end on Azurite ----------------------------------------------


def _all_stored(store: Store) -> bytes:
    """Everything the pipeline stored: table rows, archive (decompressed), dead letters."""
    rows = [dict(e) for e in store.audit.list_entities()]
    data = orjson.dumps(rows, default=str)
    for b in store.archive.list_blobs():
        data += gzip.decompress(store.archive.download_blob(b.name).readall())
    for b in store.deadletters.list_blobs():
        data += store.deadletters.download_blob(b.name).readall()
    return data


def _forms(value: str) -> list[bytes]:
    """A value as it could appear in stored bytes: raw, JSON-escaped, ASCII-escaped."""
    return [value.encode(), orjson.dumps(value)[1:-1], value.encode("ascii", "backslashreplace")]


def _leaks(stored: bytes, values: list[str]) -> list[str]:
    return [v for v in values if any(form in stored for form in _forms(v))]


def pii_events(values: dict[str, str]) -> list[bytes]:
    """Every place a value can sit: request body (escaped @), response body, stream deltas
    (split across chunks), LLM-log messages, our policy message, URL, and a garbage event."""
    email, card, phone = values["EMAIL"], values["CARD"], values["PHONE"]
    text = " ".join(values.values())
    escaped_email = email.replace("@", "\\u0040")
    c1, c2 = apim.new_id("pii-1"), apim.new_id("pii-2")
    gw = apim.gateway(
        c1,
        # hand-written JSON: the @ is escaped as \u0040 inside the body's string
        request='{"messages":[{"role":"user","content":"Contact '
        + f'{escaped_email}, card {card}. {text}"}}]}}',
        response=apim.chat_response(f"Noted: {text}"),
    )
    gw["properties"]["url"] += f"&user={email}"
    half = len(card) // 2
    stream = sse(
        FIRST_EVENT,
        *[_delta(p) for p in (f"Your card {card[:half]}", f"{card[half:]} and {phone}", " ok")],
    )
    st = apim.gateway(c2, request=apim.chat_request(("user", text), stream=True), response=stream)
    llm = sources.llm_messages(
        c1, [{"role": "user", "content": text}], [{"role": "assistant", "content": text}]
    )
    pol = sources.policy_message(
        apim.new_id("pii-3"),
        request={"messages": [{"role": "user", "content": text}]},
        response=apim.chat_response(text),
    )
    garbage = f"not json at all: {text}".encode()
    return [apim.envelope(gw, st, llm), pol, garbage]


def _delta(content: str) -> dict[str, Any]:
    return {
        "choices": [{"delta": {"content": content}, "finish_reason": None, "index": 0}],
        "created": 1741083500,
        "id": "chatcmpl-D9zY8x",
        "model": "gpt-4o-2024-08-06",
        "object": "chat.completion.chunk",
    }


def test_default_settings_store_no_positive_anywhere(
    cfg: Config, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Done-when of issue 5: replay fixtures holding every corpus positive with default
    settings; none appears in the audit table, the raw archive or the dead-letter store."""
    for key, value in settings_env(cfg).items():
        monkeypatch.setenv(key, value)
    positives = pii_corpus.positives()
    values = [v for _, v, _ in positives]
    lines = []
    for i in range(0, len(positives), 7):  # whole sentences: keys need their context
        group = {f"V{j}": sentence for j, (sentence, _, _) in enumerate(positives[i : i + 7])}
        group.update(SECRETS)
        lines += pii_events(group)
    for i, body in enumerate(lines):  # .json: one body per file (bodies may hold newlines)
        (tmp_path / f"event-{i:03d}.json").write_bytes(body)
    assert main(["replay", str(tmp_path)]) == 0
    stored = _all_stored(store)
    assert len(stored) > 10_000
    leaks = _leaks(stored, values + list(SECRETS.values()))
    where = {
        v: stored[max(0, stored.find(v.encode()) - 80) : stored.find(v.encode()) + 40]
        for v in leaks[:5]
    }
    assert leaks == [], where
    rows = all_rows(store)
    assert rows and all("Redactions" in r for r in rows.values() if r["Sources"] != "llm")
    sample = next(iter(rows.values()))
    assert orjson.loads(sample["Redactions"])["EMAIL"] >= 1


def test_stream_deltas_and_previews_are_redacted(cfg: Config, store: Store) -> None:
    events = pii_events(SECRETS)
    process_batch([EventIn(e) for e in events], cfg, store)
    rows = all_rows(store)
    stream_row = rows[apim.new_id("pii-2")]
    assert stream_row["CompletionPreview"].startswith("Your card [CARD] and [PHONE]")
    gw_row = rows[apim.new_id("pii-1")]
    assert gw_row["PromptPreview"].startswith("Contact [EMAIL], card [CARD].")
    assert "[EMAIL]" in gw_row["Url"] and "subscription" not in gw_row["Url"].lower()
    assert _leaks(_all_stored(store), list(SECRETS.values())) == []


def _cfg(base: Config, **kw: Any) -> Config:
    return replace(base, **kw)


@pytest.mark.parametrize("mode", ["redacted", "truncated", "hashed", "none", "full"])
def test_prompt_capture_modes(cfg: Config, store: Store, mode: str) -> None:
    c = _cfg(
        cfg,
        prompt_capture=mode,
        prompt_hash_key="k3y" if mode == "hashed" else "",
        preview_chars=40,
    )
    long_prompt = (
        f"Please email {SECRETS['EMAIL']} about card {SECRETS['CARD']} " + "and more " * 20
    )
    recs = [
        apim.gateway(
            apim.new_id(f"mode-{mode}-{i}"), request=apim.chat_request(("user", long_prompt))
        )
        for i in range(2)
    ]
    process_batch([EventIn(apim.envelope(*recs))], c, store)
    previews = [all_rows(store)[r["correlationId"]].get("PromptPreview") for r in recs]
    if mode == "redacted":
        assert previews[0] == "Please email [EMAIL] about card [CARD] a"
    elif mode == "truncated":
        assert previews[0] == long_prompt[:40]
    elif mode == "hashed":
        assert previews[0].startswith("hmac-sha256:") and previews[0] == previews[1]
        assert SECRETS["EMAIL"] not in previews[0]
    elif mode == "none":
        assert previews[0] is None
    else:
        assert previews[0] == long_prompt


def test_hashed_needs_a_key_and_bad_settings_are_named() -> None:
    with pytest.raises(SettingsError, match="PROMPT_HASH_KEY"):
        Config.from_env({"PROMPT_CAPTURE": "hashed"})
    with pytest.raises(SettingsError, match="PROMPT_CAPTURE='secret'"):
        Config.from_env({"PROMPT_CAPTURE": "secret"})
    with pytest.raises(SettingsError, match="ARCHIVE_CAPTURE"):
        Config.from_env({"ARCHIVE_CAPTURE": "everything"})
    with pytest.raises(SettingsError, match=r"REDACT_PATTERNS.*'BROKEN'.*invalid regex"):
        Config.from_env({"REDACT_PATTERNS": '{"BROKEN": "([a-z"}'})
    with pytest.raises(SettingsError, match=r"CAPTURE_OVERRIDES\.subscriptions\.team-hr\.prompt"):
        Config.from_env({"CAPTURE_OVERRIDES": '{"subscriptions": {"team-hr": {"prompt": "nope"}}}'})
    with pytest.raises(SettingsError, match="CAPTURE_OVERRIDES is not valid JSON"):
        Config.from_env({"CAPTURE_OVERRIDES": "{team-hr: none}"})


def test_custom_patterns(cfg: Config, store: Store) -> None:
    c = _cfg(cfg, redact_patterns='{"EMPLOYEE_ID": "\\\\bEMP-\\\\d{6}\\\\b"}')
    rec = apim.gateway(
        apim.new_id("emp"), request=apim.chat_request(("user", "Badge EMP-123456 is lost"))
    )
    process_batch([EventIn(apim.envelope(rec))], c, store)
    row = all_rows(store)[rec["correlationId"]]
    assert row["PromptPreview"] == "Badge [EMPLOYEE_ID] is lost"
    assert b"EMP-123456" not in _all_stored(store)


def _member_records(store: Store) -> dict[str, dict[str, Any]]:
    out = {}
    for b in store.archive.list_blobs():
        for line in gzip.decompress(store.archive.download_blob(b.name).readall()).splitlines():
            m = orjson.loads(line)
            out[f"{m['correlationId']}/{m['kind']}"] = m["record"]
    return out


@pytest.mark.parametrize("mode", ["redacted", "full", "metadata"])
def test_archive_capture_modes(cfg: Config, store: Store, mode: str) -> None:
    c = _cfg(cfg, archive_capture=mode)
    token = sources.jwt({"appid": "a", "oid": "b"})
    rec = apim.gateway(
        apim.new_id(f"arch-{mode}"),
        request=apim.chat_request(("user", f"I am {SECRETS['EMAIL']}")),
        requestHeaders={
            "Authorization": f"Bearer {token}",
            "api-key": "sk-should-never-be-stored-0000000000",
        },
    )
    llm = sources.llm_messages(
        rec["correlationId"], [{"role": "user", "content": f"I am {SECRETS['EMAIL']}"}]
    )
    process_batch([EventIn(apim.envelope(rec, llm))], c, store)
    members = _member_records(store)
    gw = members[f"{rec['correlationId']}/gateway"]["properties"]
    stored = _all_stored(store)
    assert token.encode() not in stored and b"sk-should-never-be-stored" not in stored  # every mode
    if mode == "metadata":
        assert not any(k.lower().endswith("body") for k in gw)
        assert "requestMessages" not in members[f"{rec['correlationId']}/llm-msg"]["properties"]
        assert gw["responseCode"] == 200
    elif mode == "full":
        assert SECRETS["EMAIL"] in gw["requestBody"]
    else:
        assert "[EMAIL]" in gw["requestBody"] and SECRETS["EMAIL"].encode() not in stored


def test_dead_letters_follow_the_archive_capture(cfg: Config, store: Store) -> None:
    body = f"garbage with {SECRETS['CARD']} and {SECRETS['EMAIL']}".encode()
    process_batch([EventIn(body, partition="0", sequence=9)], cfg, store)
    (blob,) = list(store.deadletters.list_blobs(include=["metadata"]))
    assert (
        store.deadletters.download_blob(blob.name).readall() == b"garbage with [CARD] and [EMAIL]"
    )
    c = _cfg(cfg, archive_capture="full", deadletter_container=cfg.deadletter_container + "-full")
    other = Store(c)
    other.ensure()
    process_batch([EventIn(body, partition="0", sequence=9)], c, other)
    (blob,) = list(other.deadletters.list_blobs())
    assert other.deadletters.download_blob(blob.name).readall() == body  # explicit opt-in


def test_overrides_per_subscription_and_product_and_llm_logs_take_the_strictest(
    cfg: Config,
) -> None:
    overrides = {
        "subscriptions": {"team-hr": {"prompt": "none", "archive": "metadata"}},
        "products": {"research": {"prompt": "full", "archive": "full", "previewChars": 500}},
    }
    c = _cfg(cfg, capture_overrides=orjson.dumps(overrides).decode())
    text = f"Question from {SECRETS['EMAIL']}"
    hr = apim.gateway(
        apim.new_id("ov-hr"),
        apimSubscriptionId="team-hr",
        request=apim.chat_request(("user", text)),
    )
    research = apim.gateway(
        apim.new_id("ov-rs"), productId="research", request=apim.chat_request(("user", text))
    )
    default = apim.gateway(apim.new_id("ov-def"), request=apim.chat_request(("user", text)))
    llm = sources.llm_messages(apim.new_id("ov-llm"), [{"role": "user", "content": text}])
    plan = plan_batch([EventIn(apim.envelope(hr, research, default, llm))], c)

    def preview(cid: str) -> str | None:
        p = plan.states[cid].prompt_preview
        return p.text if p else None

    assert preview(hr["correlationId"]) is None
    assert preview(research["correlationId"]) == text
    assert preview(default["correlationId"]) == "Question from [EMAIL]"
    assert preview(llm["correlationId"]) is None  # an LLM log cannot say whose it is: strictest
    hr_raw = stored_record(plan.states[hr["correlationId"]].call.fragments["gateway"])
    assert not any(k.lower().endswith("body") for k in hr_raw["properties"])
    rs_raw = stored_record(plan.states[research["correlationId"]].call.fragments["gateway"])
    assert SECRETS["EMAIL"] in rs_raw["properties"]["requestBody"]


# --- the one-scan walk gives what redacting each string alone gives ----------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_SENTENCES = [s for s, _, _ in pii_corpus.positives()] + pii_corpus.NEGATIVES
_pieces = (
    st.sampled_from(_SENTENCES)
    | st.sampled_from(list(pii_corpus.SAMPLE_SECRETS.values()))
    | st.sampled_from(["EMP-123456 joined", "the secret", "word follows", "api key", "0" * 32])
)
# Custom patterns, one of which matches across a newline (so across strings when joined).
_CUSTOM = '{"EMPLOYEE_ID": "\\\\bEMP-\\\\d{6}\\\\b", "CODE_WORD": "secret\\\\s+\\\\w+"}'
# Strings cut anywhere and glued: matches that would cross a string boundary if joined.
_texts = st.builds(
    lambda a, b, i, j: a[: i % (len(a) + 1)] + b[j % (len(b) + 1) :],
    _pieces,
    _pieces,
    st.integers(0, 200),
    st.integers(0, 200),
) | st.text(alphabet="0123456789 .-+@()abc:", max_size=30)
# Member names and long numbers are read too: names of any text, card numbers as numbers.
_numbers = st.integers() | st.sampled_from([4111111111111111, 5500000000000004, 10**12 + 1])
_docs = st.recursive(
    _texts | _numbers | st.floats(allow_nan=True) | st.none(),
    lambda kids: (
        st.lists(kids, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                ["content", "text", "input", "id", "role", "x", "logprobs", "embedding"]
            )
            | _texts,
            kids,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def _reference_walk(masker: Masker, value: Any, counts) -> Any:
    """Each string redacted on its own: what the one-scan walk must equal."""
    from pipeline.protect.masking import _number_text, _secret_value

    if isinstance(value, str):
        return masker.redact_string(value, counts)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in NOT_TEXT and skipped(k, v):
                out[k] = v
            elif k in NOT_TEXT and dropped(k, v):
                out[k] = LOGPROBS_MARKER
                counts["LOGPROBS"] += 1
            elif _secret_value(k, v):
                out[k] = "[SECRET]"
                counts["SECRET"] += 1
            else:
                out[k] = _reference_walk(masker, v, counts)
        renamed = {}
        for k, v in out.items():  # each name redacted alone; two masked alike stay two
            name = masker.redact_string(k, counts)
            n = 1
            while name != k and (name in renamed or name in value):
                n += 1
                name = f"{masker.redact_string(k, collections.Counter())} ({n})"
            renamed[name] = v
        return renamed
    if isinstance(value, list):
        return [_reference_walk(masker, v, counts) for v in value]
    number = _number_text(value)
    if number is not None:
        masked = masker.redact_string(number, counts)
        return masked if masked != number else value
    return value


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_docs, st.booleans())
def test_one_scan_walk_equals_redacting_each_string_alone(doc: Any, custom: bool) -> None:
    from collections import Counter

    policy = policy_for(Config(redact_patterns=_CUSTOM if custom else ""))
    fast_counts: Counter[str] = Counter()
    fast = Masker(policy).walk(doc, fast_counts)
    ref_counts: Counter[str] = Counter()
    ref = _reference_walk(Masker(policy), doc, ref_counts)
    assert fast == ref and fast_counts == ref_counts


def test_custom_patterns_anchored_on_string_edges_still_match_inside_documents() -> None:
    cfg = Config(redact_patterns='{"TICKET": "^TCK-\\\\d{4}$"}')
    masker = Masker(policy_for(cfg))
    from collections import Counter

    counts: Counter[str] = Counter()
    out = masker.walk({"messages": ["hello there", "TCK-1234", "TCK-1234 not alone"]}, counts)
    assert out == {"messages": ["hello there", "[TICKET]", "TCK-1234 not alone"]}
    assert counts == {"TICKET": 1}


def test_a_local_part_past_64_characters_is_masked_alike_alone_and_among_others() -> None:
    """Where such a match started depended on its window: alone, 64 characters before the
    `@`; beside another address (windows merged), further back. Found by the walk's property
    test once member names joined the strings it generates."""
    from collections import Counter

    long_local = "AZURE_OPENAI_API_KEY=A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v2W3x4Y5z6J"
    text = long_local + "alice.martin@contoso.com"
    alone = Masker(policy_for(Config())).redact_string(text, Counter())
    beside = Masker(policy_for(Config())).walk(
        {"content": "Please reply to john.doe@example.com by Friday.", "x": text}, Counter()
    )
    assert beside["x"] == alone == text[: text.index("@") - 64] + "[EMAIL]"

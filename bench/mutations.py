"""Mutation check of the Guarantees table (docs/guarantees.md): break each guarantee on purpose
and see the tests named as its proof fail.

    .venv/bin/python -m bench.mutations            # every mutation (a few minutes)
    .venv/bin/python -m bench.mutations retry      # only mutations whose name contains "retry"
    .venv/bin/python -m bench.mutations --list     # the mutations, without running anything

Run by hand, not by `make test` (each mutation runs its tests against a fresh Azurite).

Each mutation is (file, exact old snippet, new snippet, tests that must fail). The working tree
is never touched: the repository is copied to a scratch directory (without .git, .venv and
node_modules, which is linked), each mutation is applied there alone, its tests are run, and the
file is restored in a `finally` before the next one (so on an exception or Ctrl-C too); the
scratch copy is removed at the end. First the named tests run unmutated (the baseline): they
must pass, or a failure under a mutation would prove nothing.

A snippet that is no longer in its file (the code changed) is reported as "snippet not found":
update the mutation. Exit status 0 only if the baseline passes and every named test fails under
every mutation.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TIMEOUT = 900  # seconds per pytest run

# The proofs named in docs/guarantees.md, section Guarantees.
GARBAGE = "tests/test_ingest.py::test_garbage_events_are_dead_lettered_and_the_rest_is_stored"
CRAFTED = "tests/test_reliability.py::test_crafted_inputs_become_rows_or_dead_letters"
PARSER_BUG = (
    "tests/test_reliability.py::test_a_parser_bug_dead_letters_the_record_and_logs_only_where"
)
FUZZ = "tests/test_reliability.py::test_fuzz_batches_never_raise_and_account_for_every_record"
DUPLICATE = "tests/test_ingest.py::test_duplicate_delivery_leaves_one_row_and_no_new_blob"
ORDER = "tests/test_join.py::test_every_delivery_order_and_cut_gives_identical_rows"
FAULTS = "tests/test_reliability.py::test_faults_on_every_request_lose_nothing"
THROTTLED = "tests/test_reliability.py::test_throttled_storage_is_retried_no_sooner_than_it_asks"
OVER_CAP = (
    "tests/test_reliability.py::"
    "test_throttled_longer_than_the_cap_raises_at_once_and_the_redelivery_stores"
)
RETRY_AFTER = (
    "tests/test_reliability.py::test_retry_after_reads_seconds_http_dates_and_milliseconds"
)
RESTART = "tests/test_reliability.py::test_azurite_stopped_and_restarted_mid_batch"
DOWN = "tests/test_ingest.py::test_storage_down_raises_so_the_trigger_retries"
ERASURE = "tests/test_erasure.py::"
PT = "tests/test_parsing.py::"
PARKED = "tests/test_reliability.py::test_a_batch_that_keeps_failing_is_parked_and_replayed_later"
LIMITS = "tests/test_limits.py"

# The proofs of "A client sends a request built to break or stall the audit" and of
# docs/guarantees.md, "Hostile input" (tests/test_hostile.py, and the detectors' and replay's
# own tests).
H = "tests/test_hostile.py::"
EV = "tests/test_estimate_evasion.py::"
PF = "tests/test_pricing_fallback.py::"
RH = "tests/test_redaction_hostile.py::"
DUP_PROPERTIES = RH + "test_every_properties_member_is_protected_whatever_its_case"
NESTED_PROPERTIES = RH + "test_a_properties_member_inside_properties_is_free_text"
METADATA_FREE_TEXT = RH + "test_metadata_archive_keeps_nothing_that_redacted_masks"
STREAM_FIELDS = RH + "test_every_text_field_of_a_stream_is_redacted"
STREAM_REFUSAL = RH + "test_a_stream_value_split_across_refusal_chunks_is_found_once"
LOGPROBS = RH + "test_log_probabilities_are_not_kept_under_redaction"
MACHINE_KEYS = RH + "test_values_under_machine_data_keys_are_redacted_unless_they_are_machine_data"
UNICODE_CORPUS = RH + "test_numbers_in_any_unicode_digits_are_found_as_in_ascii"
UNICODE_STORED = (
    RH + "test_numbers_and_addresses_written_in_other_forms_are_masked_in_what_is_stored"
)
PLANS_MEMORY = RH + "test_records_with_many_keys_do_not_grow_the_process_memory"
KINDS_MEMORY = RH + "test_records_with_long_keys_do_not_grow_the_process_memory"
PCT_NAMES = (
    "tests/test_detectors_adversarial.py::"
    "test_url_secret_parameters_are_removed_when_their_names_are_percent_encoded"
)
PCT_STORED = RH + "test_percent_encoded_url_keys_are_removed_before_anything_is_stored"
DEEP_BODY = H + "test_a_deep_request_body_does_not_fail_the_batch"
DEEP_RECORD = H + "test_a_record_nested_deeper_than_the_limit_is_a_row_marked_nesting"
DEAD_LETTER_FAILS = H + "test_a_parser_failure_whose_dead_letter_also_fails_keeps_the_event_bytes"
NO_ROW = H + "test_a_row_that_cannot_be_built_dead_letters_its_records_not_the_batch"
UNICODE_DIGITS = H + "test_unicode_digits_in_a_status_do_not_turn_a_call_into_a_dead_letter"
PARKING = H + "test_parking_does_not_parse_the_events"
MANY_BAD = H + "test_an_event_of_many_bad_records_is_one_dead_letter"
REPAIR_LINEAR = H + "test_repairing_a_cut_body_is_linear"
REPAIR_BUDGET = H + "test_a_token_dense_cut_body_is_read_to_the_budget_and_cut_there"
TOOL_SLOTS = H + "test_a_crafted_stream_cannot_grow_tool_call_slots"
IMPLAUSIBLE = H + "test_an_implausible_time_never_names_a_partition_or_a_blob"
IMPLAUSIBLE_UNDATED = H + "test_an_implausible_time_without_an_enqueued_time_is_a_dead_letter"
BLOB_NAME = H + "test_the_batch_blob_is_named_by_the_batch_not_by_a_record"
FORGED = H + "test_a_forged_archived_property_is_not_honoured"
OWN_MEMBER = H + "test_a_pointer_at_this_calls_own_member_is_checked_too"
ZIP_BOMB = H + "test_a_pointer_at_a_zip_bomb_is_refused_in_bounded_memory"
UNVERIFIED = H + "test_an_unverified_archived_pointer_is_ignored_by_the_pure_path"
VERIFIED_ELSEWHERE = H + "test_a_verified_pointer_at_another_calls_member_is_ignored"
CLAIMS = H + "test_policy_claims_follow_the_gateway_rule"
OWNER = H + "test_dead_letters_follow_the_owners_capture_override"
OWNER_LESS = H + "test_an_owner_less_dead_letter_follows_the_strictest_capture"
HUGE_NUMBERS = H + "test_numbers_past_int64_are_unknown_not_a_dead_letter"
TWINS = "tests/test_twins.py::"
BUDGETS = "tests/test_budgets.py::"
CHARGEBACK = "tests/test_chargeback.py::"
EXPORT = "tests/test_export.py::"
COMPLIANCE = "tests/test_compliance.py::"
TWINS_MIDNIGHT = TWINS + "test_across_midnight_the_row_leaves_the_other_day"
TWINS_LONG = TWINS + "test_a_long_answer_and_its_message_are_one_call"
DETECTOR_COST = "tests/test_detectors_adversarial.py::test_worst_input_costs_about_what_prose_costs"
URL_NAMES = (
    "tests/test_detectors_adversarial.py::test_url_secret_parameters_are_removed_in_any_case"
)
URL_SAS = (
    "tests/test_detectors_adversarial.py::"
    "test_url_scrubbing_keeps_other_parameters_and_covers_sas_and_fragments"
)


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation(
        "rows never written (write_rows returns without writing)",
        "pipeline/store/audit.py",
        "        groups, edge = merge.split_at_day_edge(items)\n",
        "        return WriteStats(created=len(items))\n"
        "        groups, edge = merge.split_at_day_edge(items)\n",
        (GARBAGE, CRAFTED, FAULTS, RESTART, DOWN),
    ),
    Mutation(
        "transform raises (not a storage error)",
        "pipeline/ingest/batch.py",
        "        plan = plan_batch(events, cfg, until)\n        blob = archive_plan(plan)",
        "        plan = plan_batch(events, cfg, until)\n        1 / 0  # noqa\n"
        "        blob = archive_plan(plan)",
        (DOWN, RESTART),
    ),
    Mutation(
        "a failed delivery is acknowledged (exception swallowed)",
        "pipeline/ingest/batch.py",
        "            raise  # not acknowledged: the trigger's retry policy delivers it again\n",
        "            return BatchResult()\n",
        (DOWN, RESTART),
    ),
    Mutation(
        # With storage wholly down the parking fails too and raises: only DOWN can tell.
        "a failed delivery is parked at once (not raised)",
        "pipeline/ingest/batch.py",
        "        if attempt < max_retries:\n",
        "        if False:\n",
        (DOWN,),
    ),
    Mutation(
        "dead letters dropped (put_dead_letter does nothing)",
        "pipeline/store/blobs.py",
        "    data, metadata = b.data, b.metadata\n",
        "    return True\n    data, metadata = b.data, b.metadata\n",
        (GARBAGE, CRAFTED, PARKED, PARSER_BUG),
    ),
    Mutation(
        "hostile: a batch's dead letters written one after the other",
        "pipeline/store/threads.py",
        "    if len(items) <= 1:\n",
        "    if True:\n",
        (H + "test_a_batch_of_junk_events_is_written_side_by_side_and_logged_in_bounded_lines",),
    ),
    Mutation(
        "hostile: a log line for every dead letter of a batch",
        "pipeline/store/blobs.py",
        "LOGGED_DEAD_LETTERS = 20\n",
        "LOGGED_DEAD_LETTERS = 10**9\n",
        (H + "test_a_batch_of_junk_events_is_written_side_by_side_and_logged_in_bounded_lines",),
    ),
    Mutation(
        "sealed dead letters: a data key wrapped for each one",
        "pipeline/store/account.py",
        "                lambda b: blobs.put_dead_letter(self.retry, self.deadletters, b, seal), "
        "made\n",
        "                lambda b: blobs.put_dead_letter(\n"
        "                    self.retry, self.deadletters, b, seal and self._dead_letter_seal()\n"
        "                ),\n"
        "                made,\n",
        (ERASURE + "test_sealed_dead_letters_replay_and_a_wrong_kek_loses_nothing",),
    ),
    Mutation(
        "hostile: the midnight look-up pages through a neighbouring day's whole window",
        "pipeline/store/audit.py",
        "EDGE_PAGES = 2\n",
        "EDGE_PAGES = 10**9\n",
        (
            "tests/test_midnight.py::test_a_call_whose_records_are_years_apart_reads_no_days_traffi"
            "c",
        ),
    ),
    Mutation(
        "hostile: a window past its pages falls back to nothing (calls across midnight not found)",
        "pipeline/store/audit.py",
        "                return pk, self.fetch(pk, sorted(window.keys))\n",
        "                return pk, {}\n",
        (
            "tests/test_midnight.py::test_a_call_whose_records_are_years_apart_reads_no_days_traffi"
            "c",
        ),
    ),
    Mutation(
        "hostile: an event's records read whatever the number of days they name",
        "pipeline/ingest/plan.py",
        "    if len(days) > cfg.max_days:\n",
        "    if False:\n",
        (H + "test_an_event_whose_records_span_many_days_is_one_dead_letter",),
    ),
    Mutation(
        "hostile: a refused call's records dead-lettered as a copy of their event each",
        "pipeline/ingest/batch.py",
        "            first.setdefault(id(event), (event, index, code))\n",
        "            first.setdefault(id(event) + index, (event, index, code))\n",
        (LIMITS + "::test_a_row_table_storage_refuses_is_dead_lettered_and_the_rest_stored",),
    ),
    Mutation(
        "hostile: a call whose row cannot be built dead-letters its event once per record",
        "pipeline/ingest/batch.py",
        "                if id(event) not in seen:\n                    seen.add(id(event))\n",
        "                if True:\n",
        (H + "test_a_row_that_cannot_be_built_dead_letters_its_records_not_the_batch",),
    ),
    Mutation(
        "hostile: a batch's archive claims read one after the other",
        "pipeline/ingest/archived.py",
        "    return list(threads.each(lambda e: _checked(e, store), events))\n",
        "    return [_checked(e, store) for e in events]\n",
        (H + "test_forged_claims_on_every_event_are_checked_side_by_side",),
    ),
    Mutation(
        "trust: X-Forwarded-For believed whoever sent it (no TRUSTED_PROXIES check)",
        "pipeline/sources/origin.py",
        "    if peer is None or not forwarded_for or not _among(peer, proxies):\n",
        "    if peer is None or not forwarded_for:\n",
        (
            H + "test_a_clients_forwarded_for_names_no_caller_unless_a_trusted_proxy_wrote_it",
            "tests/test_parsing.py::"
            "test_the_client_is_what_apim_saw_or_what_a_trusted_proxy_appended",
        ),
    ),
    Mutation(
        "trust: X-Forwarded-For read from the left (the client's own entries first)",
        "pipeline/sources/origin.py",
        '    for entry in reversed(forwarded_for[-_MAX_FORWARDED:].split(",")):\n',
        '    for entry in forwarded_for[-_MAX_FORWARDED:].split(","):\n',
        (
            H + "test_a_clients_forwarded_for_names_no_caller_unless_a_trusted_proxy_wrote_it",
            "tests/test_parsing.py::"
            "test_the_client_is_what_apim_saw_or_what_a_trusted_proxy_appended",
        ),
    ),
    Mutation(
        "hostile: a batch's chunks of one message joined whatever their size",
        "pipeline/sources/llmlogs.py",
        "        ordered.append(chunk[: MAX_MESSAGE_CHARS - size])\n"
        "        size += len(ordered[-1])\n"
        "        if size >= MAX_MESSAGE_CHARS:\n"
        "            break\n",
        "        ordered.append(chunk)\n",
        (H + "test_chunks_of_one_message_are_joined_only_to_the_size_apim_logs",),
    ),
    Mutation(
        "replay: bytes of a CSV that are not UTF-8 replaced without a word",
        "pipeline/sources/files.py",
        "        if not said and text.count(",
        "        if False and text.count(",
        ("tests/test_loganalytics.py::test_a_csv_saved_in_another_encoding_is_read_and_reported",),
    ),
    Mutation(
        "replay: a U+FFFD the CSV spells in UTF-8 taken for a byte that is not",
        "pipeline/sources/files.py",
        "        tail = chunk[-2:]\n",
        "        tail = b''\n",
        ("tests/test_loganalytics.py::test_a_csv_saved_in_another_encoding_is_read_and_reported",),
    ),
    Mutation(
        "trust: the deployment header read beside a body cut before its model",
        "pipeline/sources/gateway.py",
        "    elif facts.deployment is None and (not request.truncated or _header_routed(backend_url"
        ")):\n",
        "    elif facts.deployment is None:\n",
        (H + "test_a_deployment_a_client_names_loses_to_apims_own",),
    ),
    Mutation(
        "trust: a deployment the client names outranks APIM's (the source rank decides)",
        "pipeline/call/join.py",
        "        if value is not None and not f.facts.deployment_claimed:\n",
        "        if value is not None:\n",
        (H + "test_a_deployment_a_client_names_loses_to_apims_own",),
    ),
    Mutation(
        "tokens: a stream's other choices not counted",
        "pipeline/call/stream.py",
        "            _other_choice(s, choice)  # estimates count every choice (a request's `n`)\n",
        "            pass\n",
        (H + "test_a_stream_of_n_choices_counts_them_all",),
    ),
    Mutation(
        "tokens: a JSON answer's other choices not counted",
        "pipeline/call/content.py",
        'list_of(response.get("choices")) if isinstance(c, dict)\n',
        'list_of(response.get("choices"))[:1] if isinstance(c, dict)\n',
        (H + "test_a_stream_of_n_choices_counts_them_all",),
    ),
    Mutation(
        "tokens: the output cap is one choice's, whatever `n`",
        "pipeline/call/exchange.py",
        "            return value * choices\n",
        "            return value\n",
        (H + "test_a_stream_of_n_choices_counts_them_all",),
    ),
    Mutation(
        "tokens: a response cut before its answer counted as generating nothing",
        "pipeline/call/exchange.py",
        "        if response.truncated and not text:\n",
        "        if False:\n",
        (H + "test_a_client_cannot_make_its_tokens_zero_or_unknown_by_shaping_what_apim_logs",),
    ),
    Mutation(
        "tokens: a request cut before anything countable leaves the prompt unknown",
        "pipeline/call/exchange.py",
        "    elif prompt is None and request.truncated and request_size and not "
        "image_embeddings:\n",
        "    elif False:\n",
        (H + "test_a_client_cannot_make_its_tokens_zero_or_unknown_by_shaping_what_apim_logs",),
    ),
    Mutation(
        "tokens: a usage cut in half outranks the LLM log's",
        "pipeline/call/join.py",
        '    return (TOKENS_RANK["llm-log"], 1) if partial else (TOKENS_RANK[usage.source], 0)\n',
        "    return (TOKENS_RANK[usage.source], 0)\n",
        (H + "test_a_usage_cut_in_half_yields_to_the_llm_logs_counts",),
    ),
    Mutation(
        "trust: the accelerator's endUserId stored as the caller's user id",
        "pipeline/sources/policy.py",
        '        caller_app_id=_clean(text(flat, "appid")),\n',
        '        caller_app_id=_clean(text(flat, "appid")),\n'
        '        caller_user_id=_clean(text(flat, "enduserid")),\n',
        (H + "test_the_accelerators_end_user_id_names_no_caller",),
    ),
    Mutation(
        "trust: a prompt read from a cut body outranks the LLM log's messages",
        "pipeline/ingest/records.py",
        '    cut = facts.body_truncated and read.kind in ("gateway", "policy")\n',
        "    cut = False\n",
        (H + "test_a_prompt_read_from_a_cut_body_yields_to_the_llm_logs",),
    ),
    Mutation(
        "trust: a call is Streamed when the client asked, whatever the answer",
        "pipeline/call/exchange.py",
        '    if response.kind == "json":\n        return False\n'
        '    if req is not None and (not request.truncated or "stream" in req):\n',
        '    if req is not None and (not request.truncated or "stream" in req):\n',
        (H + "test_a_stream_is_what_the_answer_was_not_what_the_request_asked",),
    ),
    Mutation(
        "previews: a cut body's preview no longer its record's (kept after its capture changed)",
        "pipeline/call/join.py",
        "    return preview is not None and preview.rank in (rank, (rank[0] + CUT_PREVIEW, rank[1]"
        "))\n",
        "    return preview is not None and preview.rank == rank\n",
        (H + "test_a_preview_read_from_a_cut_body_still_goes_with_its_record",),
    ),
    Mutation(
        "trust: a request's stream flag beats the answer another source logged",
        "pipeline/call/join.py",
        '        if name == "streamed" and any(f.facts.streamed_seen for f in frags):\n',
        "        if False:\n",
        (H + "test_a_stream_is_what_the_answer_was_not_what_the_request_asked",),
    ),
    Mutation(
        "tokens: a usage cut in half kept as reported (no LLM log: the call unpriced)",
        "pipeline/call/exchange.py",
        "    if usage is None or (partial and response.truncated):\n",
        "    if usage is None:\n",
        (H + "test_a_usage_cut_in_half_yields_to_the_llm_logs_counts",),
    ),
    Mutation(
        "tokens: an image embeddings request priced by its bytes",
        "pipeline/call/exchange.py",
        " and not image_embeddings:\n",
        ":\n",
        (H + "test_an_image_embeddings_request_cut_is_not_priced_by_its_bytes",),
    ),
    Mutation(
        "deployment: a managed-compute endpoint's routing header ignored beside a cut body",
        "pipeline/sources/gateway.py",
        "    return bool(backend_url and _HEADER_ROUTED.match(backend_url))\n",
        "    return False\n",
        (H + "test_a_deployment_a_client_names_loses_to_apims_own",),
    ),
    Mutation(
        "redaction: characters no one sees read as written (not taken out)",
        "pipeline/protect/reading.py",
        "    return (view, Offsets(text, _HIDDEN, 0)) if taken else None\n",
        "    return None\n",
        # (a card split by one invisible character between digits is found by the first
        # reading too, which takes it as a space: the end-to-end test passes without this)
        (RH + "test_values_with_characters_no_one_sees_are_masked_as_without_them",),
    ),
    Mutation(
        "redaction: a span found without the hidden characters replaced at its view offsets",
        "pipeline/protect/redactor.py",
        "                    found[i] = (at[start], rank, -at[-end], label)\n",
        "                    found[i] = (start, rank, end, label)\n",
        (RH + "test_values_with_characters_no_one_sees_are_masked_as_without_them",),
    ),
    Mutation(
        "redaction: tag characters not read as the ASCII they spell",
        "pipeline/protect/reading.py",
        "    return text.translate(_TAG_ASCII) if _TAGS.search(text) is not None else text\n",
        "    return text\n",
        (
            RH + "test_values_spelled_in_tag_characters_are_masked",
            RH + "test_hidden_values_in_a_logged_request_are_masked_in_what_is_stored",
        ),
    ),
    Mutation(
        "redaction: no-break spaces and dashes between digit groups read as written",
        "pipeline/protect/reading.py",
        "    if _SEPARATOR_BY_DIGIT.search(text) is not None:\n        #",
        "    if False:\n        #",
        (RH + "test_numbers_pasted_with_the_separators_of_a_document_are_found",),
    ),
    Mutation(
        "redaction: document separators folded everywhere (prose copied for them)",
        "pipeline/protect/reading.py",
        "    if _SEPARATOR_BY_DIGIT.search(text) is not None:\n        #",
        "    if _SEPARATOR.search(text) is not None:\n        #",
        (RH + "test_prose_with_no_break_and_ideographic_spaces_is_read_as_it_is",),
    ),
    Mutation(
        "redaction: the prefilter reads a credential word split by a hidden character as absent",
        "pipeline/protect/policy.py",
        "    text = visible(text)",
        "    pass",
        (RH + "test_values_with_characters_no_one_sees_are_masked_as_without_them",),
    ),
    Mutation(
        'detectors: "password is ..." not read as a secret',
        "pipeline/protect/detectors.py",
        "|\\s++is\\s++(?=",
        "|\\s++isnt\\s++(?=",
        (RH + "test_secrets_and_addresses_as_people_write_them_are_masked",),
    ),
    Mutation(
        "detectors: a quote after a secret's name (JSON) ends the match",
        "pipeline/protect/detectors.py",
        "(?<=[?&;])Sig(?==))[\\\"']?(?:",
        "(?<=[?&;])Sig(?==))(?:",
        (RH + "test_secrets_and_addresses_as_people_write_them_are_masked",),
    ),
    Mutation(
        "detectors: a URL's password kept",
        "pipeline/protect/detectors.py",
        "            spans.append(m.span(1))\n",
        "            pass\n",
        (RH + "test_secrets_and_addresses_as_people_write_them_are_masked",),
    ),
    Mutation(
        "detectors: Microsoft's identifiable keys not found",
        "pipeline/protect/detectors.py",
        "                spans.append(m.span())\n",
        "                pass\n",
        (RH + "test_secrets_and_addresses_as_people_write_them_are_masked",),
    ),
    Mutation(
        "detectors: GitHub and Stripe keys not found",
        "pipeline/protect/detectors.py",
        'KEY_PREFIXES = ("_",)',
        'KEY_PREFIXES = ("\\x00",)',
        (RH + "test_secrets_and_addresses_as_people_write_them_are_masked",),
    ),
    Mutation(
        "detectors: PEM armour read with five ASCII dashes only",
        "pipeline/protect/detectors.py",
        '_DASHES = "(?:-{4,5}+|[\\u2013\\u2014][-\\u2013\\u2014]{1,4}+)"',
        '_DASHES = "-----"',
        (RH + "test_secrets_and_addresses_as_people_write_them_are_masked",),
    ),
    Mutation(
        "detectors: an e-mail address in ASCII letters only",
        "pipeline/protect/detectors.py",
        '_LETTER = "A-Za-z\\u00c0',
        '_LETTER = "A-Za-z" or "A-Za-z\\u00c0',
        (RH + "test_secrets_and_addresses_as_people_write_them_are_masked",),
    ),
    Mutation(
        "redaction: the prefilter without the secret words (a digitless password skipped)",
        "pipeline/protect/policy.py",
        '_WORDS = ("bearer", "key", *SECRET_WORDS)',
        '_WORDS = ("bearer", "key")',
        (RH + "test_secrets_and_addresses_as_people_write_them_are_masked",),
    ),
    Mutation(
        "redaction: a value under a key that names a secret read like any value",
        "pipeline/protect/masking.py",
        "    if not secret_key(key):\n        return False\n",
        "    if True:\n        return False\n",
        (RH + "test_values_of_keys_that_name_a_secret_are_masked_in_json",),
    ),
    Mutation(
        "redaction: every key ending in token names a secret (log probabilities masked)",
        "pipeline/protect/fields.py",
        '    "accesstoken",\n',
        '    "token",\n',
        (RH + "test_values_of_keys_that_name_a_secret_are_masked_in_json",),
    ),
    Mutation(
        "detectors: a shared access signature's sig= kept in text",
        "pipeline/protect/detectors.py",
        "|Client[ _-]?Secret|(?<=[?&;])Sig(?==))",
        "|Client[ _-]?Secret)",
        (RH + "test_secrets_and_addresses_as_people_write_them_are_masked",),
    ),
    Mutation(
        "hostile: a slice ends by its bytes only (250,000 tiny calls in one slice: 1.5 GB)",
        "pipeline/ingest/plan.py",
        " or plan.records >= self.records)",
        ")",
        ("tests/test_ingest.py::test_a_batch_of_tiny_records_is_sliced_by_its_records",),
    ),
    Mutation(
        "hostile: a crowded midnight window falls back to a look-up per 14 calls past 2 pages",
        "pipeline/store/audit.py",
        "        most = max(EDGE_PAGES, -(-len(window.keys) // KEYS_PER_QUERY))\n",
        "        most = EDGE_PAGES\n",
        (
            "tests/test_midnight.py::test_many_calls_near_midnight_page_a_crowded_window_rather_than_look_each_u"
            "p",
        ),
    ),
    Mutation(
        "redaction: a cut body scanned whatever the prefilter says",
        "pipeline/protect/masking.py",
        "    if prefilter is not None and not prefilter(view):\n",
        "    if False:\n",
        (RH + "test_a_cut_body_is_prefiltered_on_what_its_escapes_spell",),
    ),
    Mutation(
        "redaction: an escaped surrogate pair read as two halves (a tag-spelled address kept)",
        "pipeline/protect/escapes.py",
        '    r"\\\\u([dD][89abAB]',
        '    r"(?!)\\\\u([dD][89abAB]',
        (RH + "test_a_cut_body_is_prefiltered_on_what_its_escapes_spell",),
    ),
    Mutation(
        "redaction: only the view without hidden characters read (a bordered value joins a word)",
        "pipeline/protect/redactor.py",
        "        self._find_builtin(as_written(text), found)\n        second",
        "        second",
        (RH + "test_values_with_characters_no_one_sees_are_masked_as_without_them",),
    ),
    Mutation(
        "detectors: a URL's password after a secret's name cut at its ';'",
        "pipeline/protect/detectors.py",
        "((?!\\[[A-Z])[^\\s/@",
        "((?!\\[[A-Z])[^;\\s/@",
        (RH + "test_secrets_and_addresses_as_people_write_them_are_masked",),
    ),
    Mutation(
        "join: every chunk of an LLM-log message joined, a duplicate or a rival's too",
        "pipeline/ingest/plan.py",
        "        if other is None or a.frag.rid > other[0]:",
        "        if True:",
        ("tests/test_join.py::test_a_chunk_delivered_twice_or_a_rival_chunk_is_joined_once",),
    ),
    Mutation(
        "join: a rival chunk's text joined, not the text of the record the join keeps",
        "pipeline/ingest/plan.py",
        "        if other is None or a.frag.rid > other[0]:",
        "        if other is None or a.frag.rid < other[0]:",
        ("tests/test_join.py::test_a_chunk_delivered_twice_or_a_rival_chunk_is_joined_once",),
    ),
    Mutation(
        "bodies: a whole body taken for a cut one when blanks follow it",
        "pipeline/common/safejson.py",
        "    return closer is not None and text.rstrip()[-1:] != closer",
        "    return closer is not None and text[-1:] != closer",
        (
            "tests/test_parsing.py::"
            "test_whole_bodies_with_blanks_around_them_are_not_taken_for_cut_ones",
        ),
    ),
    Mutation(
        "replay: the csv module's own cell limit kept (a long prompt's cell read as rows)",
        "pipeline/sources/files.py",
        "    csv.field_size_limit(limit)\n",
        "",
        ("tests/test_loganalytics.py::test_a_long_cell_is_one_value_and_never_rows_of_its_own",),
    ),
    Mutation(
        "replay: a CSV row ends at every line, not where its quotes close",
        "pipeline/sources/files.py",
        "        if not inside:",
        "        if True:",
        ("tests/test_loganalytics.py::test_a_long_cell_is_one_value_and_never_rows_of_its_own",),
    ),
    Mutation(
        "replay: a skipped CSV line's quotes not counted (the rest of its cell read as rows)",
        "pipeline/sources/files.py",
        '            yield line.count(\'"\') if len(line) > limit else line + "\\n"',
        '            yield 0 if len(line) > limit else line + "\\n"',
        ("tests/test_loganalytics.py::test_a_long_cell_is_one_value_and_never_rows_of_its_own",),
    ),
    Mutation(
        "replay: a CSV line skipped in pieces loses its quotes (the rest of its cell as rows)",
        "pipeline/sources/files.py",
        "                skipped = sum(p.count('\"') for p in parts)",
        "                skipped = 0",
        ("tests/test_loganalytics.py::test_a_long_cell_is_one_value_and_never_rows_of_its_own",),
    ),
    Mutation(
        "regex: a completion's leading blank lines matched with a step back kept for each",
        "pipeline/call/exchange.py",
        'r"\\A(?:[ \\t]*\\r?\\n)++"',
        'r"\\A(?:[ \\t]*\\r?\\n)+"',
        (
            H + "test_client_text_is_tokenised_in_memory_that_does_not_grow_with_it",
            H + "test_no_regex_repeats_a_group_over_text_without_bound",
        ),
    ),
    Mutation(
        "regex: a cut body's strings tokenised with a step back kept for each escape",
        "pipeline/call/bodies.py",
        """    r'|"[^"\\\\]*+(?:\\\\.[^"\\\\]*+)*+\\\\?\\Z'""",
        """    r'|"[^"\\\\]*(?:\\\\.[^"\\\\]*)*\\\\?\\Z'""",
        (H + "test_client_text_is_tokenised_in_memory_that_does_not_grow_with_it",),
    ),
    Mutation(
        'regex: runs of {"key": tokenised without a bound',
        "pipeline/call/bodies.py",
        "){2,1024}+'",
        "){2,}'",
        (H + "test_client_text_is_tokenised_in_memory_that_does_not_grow_with_it",),
    ),
    Mutation(
        "salvage: a body longer than APIM cuts a message to repaired as one",
        "pipeline/ingest/records.py",
        "    if len(body) > CUT_MESSAGE_BYTES:\n        return None\n",
        "",
        ("tests/test_join.py::test_policy_message_cut_at_200_kb_is_salvaged",),
    ),
    Mutation(
        "escapes: an escaped backslash read as the start of another escape",
        "pipeline/protect/escapes.py",
        '    view = s.replace("\\\\\\\\", stand_in)',
        "    view = s",
        (
            "tests/test_redaction.py::"
            "test_every_character_of_an_unescaped_view_maps_to_where_it_is_written",
        ),
    ),
    Mutation(
        "escapes: an escape's character mapped past the escape",
        "pipeline/protect/offsets.py",
        "(start := m.start()) - delta <= k - kept:",
        "(start := m.start()) - delta <= k:",
        (
            "tests/test_redaction.py::"
            "test_every_character_of_an_unescaped_view_maps_to_where_it_is_written",
        ),
    ),
    Mutation(
        "resume: a local file recorded by its path alone (one that grew is skipped)",
        "pipeline/sources/files.py",
        '    key += f"#{size}:{st.st_mtime_ns}"\n',
        "",
        ("tests/test_replay.py::test_resume_is_exact_when_inputs_fill_batches_exactly",),
    ),
    Mutation(
        "replay: a FIFO or a device opened like a file (the run waits forever)",
        "pipeline/sources/files.py",
        "    if not stat.S_ISREG(st.st_mode):",
        "    if False:",
        (
            "tests/test_replay.py::"
            "test_what_is_not_a_regular_file_is_reported_and_suffixes_have_no_case",
        ),
    ),
    Mutation(
        "replay: suffixes read with their case (EXPORT.JSONL passed over)",
        "pipeline/sources/files.py",
        "    return path.suffix.lower()",
        "    return path.suffix",
        (
            "tests/test_replay.py::"
            "test_what_is_not_a_regular_file_is_reported_and_suffixes_have_no_case",
        ),
    ),
    Mutation(
        "resume: a state that cannot be written found out once the first input is done",
        "pipeline/cli/resume.py",
        '            tmp.write_bytes(b"")\n            tmp.unlink()\n',
        "            pass\n",
        (
            "tests/test_replay.py::"
            "test_a_resume_state_that_cannot_be_written_is_said_and_never_a_traceback",
        ),
    ),
    Mutation(
        "resume: a state lost during the run ends it with a traceback",
        "pipeline/cli/runner.py",
        "            except InputError as exc:\n                # The rows are stored",
        "            except ZeroDivisionError as exc:\n                # The rows are stored",
        (
            "tests/test_replay.py::"
            "test_a_resume_state_that_cannot_be_written_is_said_and_never_a_traceback",
        ),
    ),
    Mutation(
        "capture: a record without an enqueued time taken for an event",
        "pipeline/sources/capture_avro.py",
        "    if not written and stamped is None:",
        "    if False:",
        ("tests/test_replay.py::test_a_capture_block_of_records_without_a_time_is_not_events",),
    ),
    Mutation(
        "capture: records skipped said one line each",
        "pipeline/sources/capture_avro.py",
        "                skipped[why] += 1",
        '                report(f"{label}: record {i + 1} of {count} of a block: {why}: skipped")',
        ("tests/test_replay.py::test_a_capture_block_of_records_without_a_time_is_not_events",),
    ),
    Mutation(
        "replay: every dead letter named on a line of its own",
        "pipeline/cli/runner.py",
        "            if self.dead_named <= MAX_PROBLEMS:",
        "            if True:",
        ("tests/test_replay.py::test_a_file_of_junk_events_names_only_the_first_dead_letters",),
    ),
    Mutation(
        "rollup: each spelling of a written-down name its own uncapped group",
        "pipeline/kpi/rollup.py",
        "                value = _Written(*named)\n",
        "                pass\n",
        ("tests/test_chargeback.py::test_names_in_budgets_and_the_price_table_are_never_capped",),
    ),
    Mutation(
        "rollup: a written-down name labelled by the first spelling read (a failed call's body)",
        "pipeline/kpi/rollup.py",
        "                value = _Written(*named)\n",
        "                value = folded.spellings.setdefault(named, value)\n",
        (
            "tests/test_budgets.py::test_a_failed_call_cannot_relabel_a_models_spend_and_silence_its_budge"
            "t",
            "tests/test_budgets.py::test_a_models_label_is_the_services_spelling_and_its_budget_finds_i"
            "t",
        ),
    ),
    Mutation(
        "budgets: a model scope compared casefolded, not as the price table compares models",
        "pipeline/kpi/budgets.py",
        "            if key_of(column, got) != value:\n",
        "            if got.casefold() != value:\n",
        (
            "tests/test_budgets.py::test_a_models_label_is_the_services_spelling_and_its_budget_finds_i"
            "t",
        ),
    ),
    Mutation(
        "rollup: no bound on a day's groups (pairs of capped names)",
        "pipeline/kpi/rollup.py",
        "    if dims == OTHER_DIMS or (failed, dims) in folded.latency:\n        return dims\n",
        "    if True:\n        return dims\n",
        (
            "tests/test_chargeback.py::test_made_up_pairs_of_names_cannot_grow_the_rollup_and_the_same_groups_stay_in_any_orde"
            "r",
        ),
    ),
    Mutation(
        "rollup: the groups kept are the first read, not the lowest ranked",
        "pipeline/kpi/rollup.py",
        "    if rank > -folded.ranks[0][0]:\n",
        "    if True:\n",
        (
            "tests/test_chargeback.py::test_made_up_pairs_of_names_cannot_grow_the_rollup_and_the_same_groups_stay_in_any_orde"
            "r",
        ),
    ),
    Mutation(
        "rollup: failing calls' groups rank with answered ones",
        "pipeline/kpi/rollup.py",
        "    return (failed << 130) | (unnamed << 129)",
        "    return (unnamed << 129)",
        (
            "tests/test_chargeback.py::test_made_up_pairs_of_names_cannot_grow_the_rollup_and_the_same_groups_stay_in_any_orde"
            "r",
        ),
    ),
    Mutation(
        "export: any manifest entry is acted on (deleted, read, copied)",
        "pipeline/export/days.py",
        '    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):\n'
        "        return False\n",
        "    if isinstance(entry, dict):\n        return True\n",
        (
            "tests/test_export.py::test_a_planted_manifest_deletes_nothing_outside_the_days_files",
            "tests/test_export.py::test_a_local_export_never_reads_writes_or_deletes_outside_its_folde"
            "r",
        ),
    ),
    Mutation(
        "export: a local target deletes and reads outside its folder",
        "pipeline/store/exports.py",
        '        if local.name in ("", ".", "..") or not where.is_relative_to(root)'
        " or where == root:\n",
        "        if False:\n",
        (
            "tests/test_export.py::test_a_local_export_never_reads_writes_or_deletes_outside_its_folde"
            "r",
        ),
    ),
    Mutation(
        "sql --blob: a listed name copied outside the temporary folder",
        "pipeline/export/sql.py",
        "        if not local.is_relative_to(root):\n",
        "        if False:\n",
        (
            "tests/test_export.py::test_a_local_export_never_reads_writes_or_deletes_outside_its_folde"
            "r",
        ),
    ),
    Mutation(
        "render: invisible characters (bidi, zero-width) sent to the terminal and CSV",
        "pipeline/common/render.py",
        '_CONTROL = re.compile(f"[\\\\x00-\\\\x1f\\\\x7f-\\\\x9f{INVISIBLE}]")',
        '_CONTROL = re.compile("[\\\\x00-\\\\x1f\\\\x7f-\\\\x9f]")',
        ("tests/test_chargeback.py::test_invisible_characters_in_names_are_shown_not_sent",),
    ),
    Mutation(
        "render: invisible characters left raw in JSON",
        "pipeline/common/render.py",
        '_C1 = re.compile(f"[\\\\x7f-\\\\x9f{INVISIBLE}]")',
        '_C1 = re.compile("[\\\\x7f-\\\\x9f]")',
        ("tests/test_chargeback.py::test_invisible_characters_in_names_are_shown_not_sent",),
    ),
    Mutation(
        "statement: invisible characters in names left raw in the HTML",
        "pipeline/kpi/statement.py",
        'return escape(terminal_text("" if value is None else str(value)), quote=True)',
        'return escape("" if value is None else str(value), quote=True)',
        ("tests/test_statement_html.py::test_invisible_characters_in_names_are_shown",),
    ),
    Mutation(
        "reading: the view without hidden characters split into an object each",
        "pipeline/protect/reading.py",
        '    view, taken = _HIDDEN.subn("", text)\n',
        '    pieces = re.split(f"({_HIDDEN.pattern})", text)\n'
        '    view, taken = "".join(pieces[::2]), len(pieces) > 1\n',
        (H + "test_text_full_of_hidden_characters_is_read_without_an_object_for_each",),
    ),
    Mutation(
        "reading: a span found without hidden characters mapped back before the runs at its start",
        "pipeline/protect/offsets.py",
        "(start := m.start()) - delta <= k - kept:",
        "(start := m.start()) - delta < k - kept:",
        (RH + "test_values_with_characters_no_one_sees_are_masked_as_without_them",),
    ),
    Mutation(
        "replay: the lines of an open CSV row kept one string each",
        "pipeline/sources/files.py",
        "            if len(parts) >= _JOIN_EVERY:",
        "            if False:",
        (H + "test_a_csv_cell_of_short_lines_is_held_by_its_characters",),
    ),
    Mutation(
        "replay: a CSV row ends where its quote count is even (a stray quote swallows rows)",
        "pipeline/sources/files.py",
        "            inside = _open_after(line, inside)",
        "            inside ^= line.count('\"') % 2 == 1",
        (
            "tests/test_loganalytics.py::"
            "test_a_quote_inside_an_unquoted_cell_is_a_character_not_a_cell_left_open",
        ),
    ),
    Mutation(
        "replay: a CSV row of spaces taken for a blank line",
        "pipeline/sources/files.py",
        '        if not text.strip("\\r\\n"):',
        "        if not text.strip():",
        (
            "tests/test_loganalytics.py::"
            "test_a_quote_inside_an_unquoted_cell_is_a_character_not_a_cell_left_open",
        ),
    ),
    Mutation(
        "replay: a folder named like an input reported as a file that is not regular",
        "pipeline/sources/files.py",
        "EVENT_SUFFIXES and not p.is_dir()",
        "EVENT_SUFFIXES",
        (
            "tests/test_replay.py::"
            "test_what_is_not_a_regular_file_is_reported_and_suffixes_have_no_case",
        ),
    ),
    Mutation(
        "resume: an earlier run's state replaced when a run starts",
        "pipeline/cli/resume.py",
        "            tmp.unlink()\n",
        "            os.replace(tmp, self.path)\n",
        (
            "tests/test_replay.py::"
            "test_a_resume_state_that_cannot_be_written_is_said_and_never_a_traceback",
        ),
    ),
    Mutation(
        "escapes: a stand-in the text spells as an escape (\\u0000 read as a backslash)",
        "pipeline/protect/escapes.py",
        ' and f"\\\\u{ord(c):04x}" not in s), None',
        "), None",
        (
            "tests/test_redaction.py::"
            "test_every_character_of_an_unescaped_view_maps_to_where_it_is_written",
        ),
    ),
    Mutation(
        "policy: an AI-Gateway message keyed by its apimRequestId (the backend's id: a second "
        "row of the call)",
        "pipeline/sources/policy.py",
        '    cid = rid or _clean(text(flat, "apimrequestid"))\n',
        '    cid = _clean(text(flat, "apimrequestid")) or rid\n',
        ("tests/test_twins.py::test_the_message_storing_sample_and_gatewaylogs_are_one_call",),
    ),
    Mutation(
        "bodies: a byte order mark before a body makes it text (its prompt and model unread)",
        "pipeline/call/bodies.py",
        '    if raw[:1] == "\\ufeff":\n',
        '    if raw[:1] == "\\ufeffX":\n',
        ("tests/test_parsing.py::test_a_byte_order_mark_before_a_body_hides_nothing",),
    ),
    Mutation(
        "salvage: a whole policy message followed by another is salvaged as cut (the second "
        "call unread)",
        "pipeline/ingest/records.py",
        "    doc, in_string = repair(text_, cut_only=True)\n",
        "    doc, in_string = repair(text_)\n",
        (
            "tests/test_join.py::test_two_messages_in_one_event_are_one_dead_letter_not_the_first_cal"
            "l",
        ),
    ),
    Mutation(
        "repair: cut_only ignored (a whole document followed by more is repaired as cut)",
        "pipeline/call/bodies.py",
        "    if cut_only and state is None and not stack and _may_hold_more(text, cut_end):\n",
        "    if False:\n",
        (
            "tests/test_join.py::test_two_messages_in_one_event_are_one_dead_letter_not_the_first_cal"
            "l",
        ),
    ),
    Mutation(
        "ids: a correlation id nobody can see (blanks, invisible characters) names a call",
        "pipeline/ingest/records.py",
        "    if read.correlation_id is None or _NO_ID.fullmatch(read.correlation_id):\n",
        "    if read.correlation_id is None:\n",
        (H + "test_an_id_nobody_can_see_names_no_call",),
    ),
    Mutation(
        "envelope: the same records key twice is read as one list (the decoder keeps the last)",
        "pipeline/sources/envelope.py",
        "    if len(found) > 1 or (found and _repeats_key(data, found[0][0])):\n",
        "    if len(found) > 1:\n",
        (H + "test_an_event_of_two_record_lists_is_kept_whole",),
    ),
    Mutation(
        "envelope: records and Records, the first list read and the other left",
        "pipeline/sources/envelope.py",
        "    if len(found) > 1 or (found and _repeats_key(data, found[0][0])):\n",
        "    if found and _repeats_key(data, found[0][0]):\n",
        (H + "test_an_event_of_two_record_lists_is_kept_whole",),
    ),
    Mutation(
        "envelope: an event of two record lists dead-lettered decoded again (one list only)",
        "pipeline/ingest/plan.py",
        "        plan.dead.append(deadletters.raw_dead_letter(policy, event, None, str(exc)))\n"
        "        return\n    except EnvelopeError as exc:\n",
        "        _plan_unreadable(plan, event, cfg, policy, str(exc))\n"
        "        return\n    except EnvelopeError as exc:\n",
        (H + "test_an_event_of_two_record_lists_is_kept_whole",),
    ),
    Mutation(
        "tokens: a text embeddings request padded before its input is not estimated by size",
        "pipeline/call/exchange.py",
        "request_size and not image_embeddings:",
        'request_size and operation != "embeddings":',
        (
            EV
            + "test_text_embeddings_padded_before_their_input_are_estimated_from_the_request_size",
        ),
    ),
    Mutation(
        "tokens: image embeddings named only by APIM's operation are estimated by size",
        "pipeline/call/operations.py",
        '    return (operation_id or "").lower() == "getimageembeddings"\n',
        "    return False\n",
        (
            EV
            + "test_text_embeddings_padded_before_their_input_are_estimated_from_the_request_size",
        ),
    ),
    Mutation(
        "tokens: a chat response_format schema not counted",
        "pipeline/call/tokens.py",
        '            + format_tokens(request.get("response_format"), enc)\n',
        "            + 0\n",
        (EV + "test_a_prompt_moved_into_a_response_format_schema_is_counted",),
    ),
    Mutation(
        "tokens: a Responses text.format schema not counted",
        "pipeline/call/tokens.py",
        '+ format_tokens(text.get("format") if isinstance(text, dict) else None, enc)',
        "+ 0",
        (EV + "test_a_responses_text_format_schema_is_counted",),
    ),
    Mutation(
        "tokens: nested schemas of a tool's properties not counted",
        "pipeline/call/tokens.py",
        "                _rest(spec, _PROPERTY_COUNTED, rests)\n",
        "                pass\n",
        (
            EV + "test_a_prompt_moved_into_nested_tool_parameters_is_counted",
            EV + "test_a_schema_nested_past_the_depth_bound_is_counted_in_linear_time",
        ),
    ),
    Mutation(
        "tokens: a tool's $defs not counted",
        "pipeline/call/tokens.py",
        "        _rest(params, _PARAMS_COUNTED, rests)\n",
        "        pass\n",
        (EV + "test_a_prompt_moved_into_nested_tool_parameters_is_counted",),
    ),
    Mutation(
        "tokens: reasoning_content not counted as output",
        "pipeline/call/content.py",
        '        parts.append(message["reasoning_content"])\n',
        "        pass\n",
        (
            EV + "test_streamed_reasoning_content_counts_as_output",
            EV + "test_a_json_answers_refusal_and_reasoning_count_as_output",
        ),
    ),
    Mutation(
        "tokens: a JSON answer's refusal not counted as output",
        "pipeline/call/content.py",
        '    if refusal and isinstance(message.get("refusal"), str):\n',
        "    if False:\n",
        (EV + "test_a_json_answers_refusal_and_reasoning_count_as_output",),
    ),
    Mutation(
        "tokens: a stream's reasoning deltas not counted",
        "pipeline/call/stream.py",
        "    s.others += generated_extra(delta, refusal)\n",
        "    pass\n",
        (EV + "test_streamed_reasoning_content_counts_as_output",),
    ),
    Mutation(
        "tokens: an audio answer's completion estimated from its text",
        "pipeline/call/exchange.py",
        "    if (stream is not None and stream.audio) or (stream is None and "
        "answered_in_audio(resp)):\n",
        "    if False:\n",
        (EV + "test_an_audio_answer_leaves_the_completion_unknown_not_low",),
    ),
    Mutation(
        "tokens: audio deltas not noticed",
        "pipeline/call/stream.py",
        '    if isinstance(delta.get("audio"), dict):\n        s.audio = True\n',
        "    pass\n",
        (EV + "test_an_audio_answer_leaves_the_completion_unknown_not_low",),
    ),
    Mutation(
        "repair: padding after a whole policy message taken for another (a false dead letter)",
        "pipeline/call/bodies.py",
        '    return text.find("{", end) >= 0 or text.find("[", end) >= 0\n',
        "    return bool(text[end:].strip())\n",
        (
            "tests/test_join.py::test_two_messages_in_one_event_are_one_dead_letter_not_the_first_cal"
            "l",
        ),
    ),
    Mutation(
        "envelope: a duplicate records key beside a lone surrogate escape goes unseen",
        "pipeline/sources/envelope.py",
        "        doc = _without_lone_surrogates(marked)\n        if not isinstance(doc, dict):\n"
        "            return True\n",
        "        return False\n",
        (H + "test_an_event_of_two_record_lists_is_kept_whole",),
    ),
    Mutation(
        "tokens: tool properties that are no object not counted",
        "pipeline/call/tokens.py",
        "            rests.append(props)  # not an object of properties: its text\n",
        "            pass\n",
        (EV + "test_tool_properties_that_are_no_object_are_counted_as_their_text",),
    ),
    Mutation(
        "cost: a call with no model is not priced as its deployment's model in the KPIs",
        "pipeline/kpi/rollup.py",
        "            cache[key] = prices.price(None, key, day, chosen)\n",
        "            cache[key] = prices.price(None, key, day)\n",
        (
            PF + "test_a_long_answer_is_priced_as_the_model_its_deployment_answered_with_that_day",
            PF + "test_an_embeddings_deployment_learns_its_model_from_a_call_the_llm_log_joined",
            PF + "test_a_deployment_a_client_names_teaches_no_model",
            PF + "test_a_deployment_that_answered_with_two_models_is_priced_as_the_more_frequent",
        ),
    ),
    Mutation(
        "cost: a call with no model is not priced as its deployment's model in FOCUS",
        "pipeline/export/focus.py",
        "                model = self.prices.model_of(key[2], chosen)\n",
        "                model = self.prices.model_of(key[2])\n",
        (
            PF + "test_a_long_answer_is_priced_as_the_model_its_deployment_answered_with_that_day",
            PF + "test_a_deployment_a_client_names_teaches_no_model",
        ),
    ),
    Mutation(
        "cost: the calls priced as their deployment's model are not counted",
        "pipeline/kpi/rollup.py",
        "            self.counts[DEPLOYMENT_PRICED] += calls\n",
        "            pass\n",
        (
            PF + "test_a_long_answer_is_priced_as_the_model_its_deployment_answered_with_that_day",
            PF + "test_an_embeddings_deployment_learns_its_model_from_a_call_the_llm_log_joined",
        ),
    ),
    Mutation(
        "trust: a deployment a client names teaches its deployment a model",
        "pipeline/kpi/prices.py",
        "        if routed != what[0]:\n",
        "        if False:\n",
        (PF + "test_a_deployment_a_client_names_teaches_no_model",),
    ),
    Mutation(
        "cost: a deployment's model that day is its least frequent",
        "pipeline/kpi/prices.py",
        "if mine is None or (-n, model) < (-mine[0], mine[1]):",
        "if mine is None or (n, model) < (mine[0], mine[1]):",
        (
            PF + "test_a_deployment_that_answered_with_two_models_is_priced_as_the_more_frequent",
            PF + "test_the_learned_choice_is_the_same_in_any_order_and_ties_go_to_the_least_name",
        ),
    ),
    Mutation(
        "cost: what the day learned comes before the price table's deployments map",
        "pipeline/kpi/prices.py",
        "        name = self.deployments.get(key)\n"
        "        if name is None and learned is not None:\n"
        "            name = learned.get(key)\n",
        "        name = learned.get(key) if learned is not None else None\n"
        "        if name is None:\n"
        "            name = self.deployments.get(key)\n",
        (PF + "test_the_deployments_map_comes_before_what_the_day_learned",),
    ),
    Mutation(
        "cost: the deployments map is looked up in the spelling of the call (F6)",
        "pipeline/kpi/prices.py",
        "        name = self.deployments.get(key)\n",
        "        name = self.deployments.get(deployment)\n",
        (
            PF + "test_the_deployments_map_names_a_deployment_in_any_case_or_padding",
            PF + "test_two_spellings_of_a_deployment_mapped_apart_are_refused",
        ),
    ),
    Mutation(
        "bounds: the deployment models learned in a day are not capped",
        "pipeline/kpi/prices.py",
        "        if len(self._ranks) < MAX_LEARNED_PAIRS:\n",
        "        if True:\n",
        (PF + "test_the_learning_keeps_a_bounded_set_of_pairs_whatever_the_order",),
    ),
    Mutation(
        "bounds: deployments past the day's cap wait for their model in every accumulator",
        "pipeline/kpi/rollup.py",
        '        and values["Deployment"] != OTHER\n',
        "",
        (PF + "test_deployments_waiting_for_their_model_are_bounded_by_the_days_cap",),
    ),
    Mutation(
        "rollup: an estimate with no completion is not a call of unknown tokens",
        "pipeline/kpi/rollup.py",
        '        and (source in (None, "none") or counts[0] is None or counts[1] is None)',
        '        and source in (None, "none")',
        (PF + "test_an_estimate_with_no_answer_to_count_is_a_call_of_unknown_tokens",),
    ),
    Mutation(
        "twins: GatewayLogs' backend apim-request-id not recorded",
        "pipeline/sources/gateway.py",
        "    facts.backend_request_id = request_id(\n",
        "    facts.backend_request_id = None and request_id(\n",
        (
            TWINS_LONG,
            TWINS + "test_the_backend_request_id_header_is_read_in_any_case",
        ),
    ),
    Mutation(
        "twins: the backend request id header read in one case only",
        "pipeline/sources/gateway.py",
        "        if key.lower() == name:\n",
        "        if key == name:\n",
        (TWINS + "test_the_backend_request_id_header_is_read_in_any_case",),
    ),
    Mutation(
        "twins: message-storing's apimRequestId not recorded",
        "pipeline/sources/policy.py",
        '    f.backend_request_id = request_id(_clean(text(flat, "apimrequestid")))\n',
        "    f.backend_request_id = None\n",
        (TWINS_LONG,),
    ),
    Mutation(
        "twins: a backend request id of any length is a key",
        "pipeline/sources/gateway.py",
        "    return value if value and len(value) <= MAX_REQUEST_ID_CHARS else None\n",
        "    return value or None\n",
        (TWINS + "test_a_request_id_longer_than_any_is_no_key",),
    ),
    Mutation(
        "twins: a call naming the backend request id claims no twin",
        "pipeline/call/join.py",
        "    found.update(backends[bid] for bid in bids if bid in backends)\n",
        "",
        (TWINS_LONG,),
    ),
    Mutation(
        "twins: a backend request id two messages name joins one of them",
        "pipeline/call/join.py",
        "            owner[bid] = keyed if owner.get(bid, keyed) == keyed else None\n",
        "            owner[bid] = keyed\n",
        (TWINS + "test_a_backend_request_id_two_messages_name_joins_neither",),
    ),
    Mutation(
        "twins: a response id or backend request id two calls name joins one (one batch)",
        "pipeline/call/join.py",
        "    return [(twin, next(iter(cids))) for twin, cids in owners.items() if len(cids) == 1]"
        "\n",
        "    return [(twin, next(iter(cids))) for twin, cids in owners.items()]\n",
        (
            TWINS + "test_a_backend_request_id_two_calls_name_joins_neither",
            TWINS + "test_a_response_id_two_calls_name_joins_neither",
        ),
    ),
    Mutation(
        "twins: a response id or backend request id two rows name joins one (rollup)",
        "pipeline/store/audit.py",
        "            if len(places) > 1:\n",
        "            if False:\n",
        (
            TWINS + "test_a_backend_request_id_two_calls_name_joins_neither",
            TWINS + "test_a_response_id_two_calls_name_joins_neither",
        ),
    ),
    Mutation(
        "twins: the rollup does not read the keyed rows' BackendRequestId",
        "pipeline/store/audit.py",
        '        names = ["PartitionKey", "RowKey", "BackendRequestId"]\n',
        '        names = ["PartitionKey", "RowKey"]\n',
        (TWINS_LONG,),
    ),
    Mutation(
        "twins: the rollup's scan of the day ignores BackendRequestId",
        "pipeline/store/audit.py",
        "                bids = (bid,) if isinstance(bid, str) else ()\n",
        "                bids = ()\n",
        (TWINS_LONG,),
    ),
    Mutation(
        "erase: a message joined to its call only by the backend request id is not erased",
        "pipeline/compliance/erase.py",
        '            owner = owners.get(entity["RowKey"]) or (\n',
        '            owner = owners.get(entity["RowKey"]) or None and (\n',
        (ERASURE + "test_erase_finds_a_message_joined_to_its_call_only_by_the_backend_request_id",),
    ),
    Mutation(
        "erase: a parked message naming its call by the backend request id is kept",
        "pipeline/compliance/erase.py",
        "            calls.add(bid.encode())\n",
        "            pass\n",
        (
            ERASURE
            + "test_erase_deletes_a_parked_message_naming_its_call_by_the_backend_request_id",
        ),
    ),
    Mutation(
        "cut: a value the cut fell inside is a fact (whole() keeps everything)",
        "pipeline/call/bodies.py",
        "        return None if value is not None and value == self.cut_tail else value\n",
        "        return value\n",
        (H + "test_a_value_the_cut_fell_inside_is_no_fact",),
    ),
    Mutation(
        "cut: a model the cut fell inside is the row's model",
        "pipeline/call/exchange.py",
        "    model = string(stream.model if stream else None) or response.whole(\n"
        '        string(resp.get("model") if resp else None)\n    )\n',
        "    model = string(stream.model if stream else None) or string(\n"
        '        resp.get("model") if resp else None\n    )\n',
        (H + "test_a_value_the_cut_fell_inside_is_no_fact",),
    ),
    Mutation(
        "cut: a response id the cut fell inside is the row's ResponseId",
        "pipeline/call/exchange.py",
        '            or response.whole(string(resp.get("id") if resp else None))\n',
        '            or string(resp.get("id") if resp else None)\n',
        (H + "test_a_value_the_cut_fell_inside_is_no_fact",),
    ),
    Mutation(
        "cut: a v1 body's deployment the cut fell inside is the row's deployment",
        "pipeline/call/exchange.py",
        '        model = request.whole(string(req.get("model")))\n',
        '        model = string(req.get("model"))\n',
        (H + "test_a_value_the_cut_fell_inside_is_no_fact",),
    ),
    Mutation(
        "salvage: a count the 200 KB cut fell inside is the message's count",
        "pipeline/ingest/records.py",
        "    if in_string:\n        _drop_cut_value(doc)\n",
        "",
        (H + "test_a_count_the_message_cut_fell_inside_is_no_count",),
    ),
    Mutation(
        "salvage: a body the 200 KB cut fell inside is dropped (no preview)",
        "pipeline/ingest/records.py",
        "    if key_kind(next(reversed(doc))) not in _TEXT_KINDS:\n",
        "    if True:\n",
        (H + "test_a_count_the_message_cut_fell_inside_is_no_count",),
    ),
    Mutation(
        "cut: an error code the cut fell inside is the row's ErrorCode",
        "pipeline/call/errors.py",
        "        return None if code is not None and code == cut else code\n",
        "        return code\n",
        (H + "test_a_cut_never_makes_a_piece_of_a_code_reason_or_flag",),
    ),
    Mutation(
        "salvage: a nested value the 200 KB cut fell inside is kept (an on-error reason)",
        "pipeline/ingest/records.py",
        "    if key_kind(next(reversed(doc))) not in _TEXT_KINDS:\n",
        "    if where[0] is doc and key_kind(next(reversed(doc))) not in _TEXT_KINDS:\n",
        (H + "test_a_cut_never_makes_a_piece_of_a_code_reason_or_flag",),
    ),
    Mutation(
        "cut: a request cut before its stream flag says the call was not streamed",
        "pipeline/call/exchange.py",
        '    if req is not None and (not request.truncated or "stream" in req):\n',
        "    if req is not None:\n",
        (H + "test_a_cut_never_makes_a_piece_of_a_code_reason_or_flag",),
    ),
    Mutation(
        "cut: a policy message's rebuilt answer forgets its cut (finish reason sto)",
        "pipeline/sources/policy.py",
        '    return Body("json", doc, choices.truncated, None, choices.logged_bytes, '
        "choices.cut_tail)\n",
        '    return Body("json", doc)\n',
        (H + "test_a_cut_never_makes_a_piece_of_a_code_reason_or_flag",),
    ),
    Mutation(
        "cut: a Responses answer cut before incomplete_details says incomplete",
        "pipeline/call/exchange.py",
        '        if reason is None and "incomplete_details" not in resp and cut:\n',
        "        if False:\n",
        (H + "test_a_cut_never_makes_a_piece_of_a_code_reason_or_flag",),
    ),
    Mutation(
        "llm: a header that names no deployment is read as a message record (tokens lost)",
        "pipeline/sources/llmlogs.py",
        "    header = deployment is not None or any(counts)\n",
        "    header = deployment is not None\n",
        ("tests/test_join.py::test_an_llm_header_naming_no_deployment_is_still_the_calls_header",),
    ),
    Mutation(
        "gateway: a call's cut body read when its other copy is whole",
        "pipeline/sources/gateway.py",
        '        if isinstance(body, Body) and body.kind == "json":\n',
        "        if False:\n",
        (PT + "test_of_a_calls_two_bodies_a_whole_one_is_read_and_else_the_backends",),
    ),
    Mutation(
        "gateway: of two cut bodies, the client's read instead of the backend's",
        "pipeline/sources/gateway.py",
        "        if first is None and body is not ABSENT:\n",
        "        if body is not ABSENT:\n",
        (PT + "test_of_a_calls_two_bodies_a_whole_one_is_read_and_else_the_backends",),
    ),
    Mutation(
        "redaction: member names not read (an address as a metadata key archived)",
        "pipeline/protect/masking.py",
        "            out.append(k)  # a member's name is text (an address, a key)\n",
        "            pass\n",
        (RH + "test_member_names_and_long_numbers_are_masked_like_values",),
    ),
    Mutation(
        "redaction: a card sent as a number not read (archived as logged)",
        "pipeline/protect/masking.py",
        "            if type(v) in _NUMBER_TYPES and (number := _number_text(v)) is not None:\n"
        "                out.append(number)\n",
        "            pass\n",
        (RH + "test_member_names_and_long_numbers_are_masked_like_values",),
    ),
    Mutation(
        "redaction: numbers in lists not read",
        "pipeline/protect/masking.py",
        "        elif type(v) in _NUMBER_TYPES and (number := _number_text(v)) is not None:\n"
        "            out.append(number)\n"
        "    return drop\n",
        "    return drop\n",
        (RH + "test_member_names_and_long_numbers_are_masked_like_values",),
    ),
    Mutation(
        "redaction: a card sent as a float not read",
        "pipeline/protect/masking.py",
        "    if kind is not int and kind is not float:\n",
        "    if kind is not int:\n",
        (RH + "test_member_names_and_long_numbers_are_masked_like_values",),
    ),
    Mutation(
        "redaction: two member names masked alike merge (a member lost)",
        "pipeline/protect/masking.py",
        "                while k in out or k in value:\n",
        "                while False:\n",
        (RH + "test_member_names_and_long_numbers_are_masked_like_values",),
    ),
    Mutation(
        "redaction: member names masked alike numbered by a search from 2 each (quadratic)",
        "pipeline/protect/masking.py",
        "                    last[masked] = n = last.get(masked, 1) + 1\n",
        "                    n = 2 if k == masked else n + 1\n",
        (RH + "test_member_names_masked_alike_cost_what_other_matches_cost",),
    ),
    Mutation(
        "redaction: a stream chunk's member names not renamed",
        "pipeline/protect/masking.py",
        "        if isinstance(value, dict) and not todo.keys().isdisjoint(value):\n",
        "        if False:\n",
        (RH + "test_member_names_and_long_numbers_are_masked_like_values",),
    ),
    Mutation(
        "redaction: a number's placeholder in cut JSON left bare (the archive no longer JSON)",
        "pipeline/protect/masking.py",
        '    bare = _outside_strings(s) if s.lstrip()[:1] in ("{", "[") else None\n',
        "    bare = None\n",
        (RH + "test_a_card_number_in_a_cut_body_is_masked_as_a_string_and_read_again_alike",),
    ),
    Mutation(
        "deadletters: a replayed record's dead letter named by index 0 (a second blob)",
        "pipeline/sources/deadletter_blobs.py",
        "        first_record=int(index) if index and _INDEX.fullmatch(index) else 0,\n",
        "        first_record=0,\n",
        (
            "tests/test_replay.py::test_a_records_dead_letter_replayed_and_failing_again_keeps_its_one_blo"
            "b",
        ),
    ),
    Mutation(
        "deadletters: a record's place in its event ignored by the plan",
        "pipeline/ingest/plan.py",
        "else event.first_record + i\n",
        "else i\n",
        (
            "tests/test_replay.py::test_a_records_dead_letter_replayed_and_failing_again_keeps_its_one_blo"
            "b",
        ),
    ),
    Mutation(
        "estimate: unknown chat members not counted (prediction, data_sources)",
        "pipeline/call/tokens.py",
        "            + _other_members(request, _CHAT_READ, enc)\n",
        "",
        (EV + "test_a_prompt_moved_into_any_member_of_the_request_is_counted",),
    ),
    Mutation(
        "estimate: a message's objects not counted (legacy function_call)",
        "pipeline/call/tokens.py",
        "            elif isinstance(value, dict | list):\n",
        "            elif False:\n",
        (EV + "test_a_prompt_moved_into_any_member_of_the_request_is_counted",),
    ),
    Mutation(
        "estimate: a custom tool's call not counted",
        "pipeline/call/tokens.py",
        "                    elif call is not None:\n",
        "                    elif False:\n",
        (EV + "test_a_prompt_moved_into_any_member_of_the_request_is_counted",),
    ),
    Mutation(
        "estimate: custom tools not counted",
        "pipeline/call/tokens.py",
        "            rests.append(tool)  # a custom or built-in tool: its text\n",
        "            pass\n",
        (EV + "test_a_prompt_moved_into_any_member_of_the_request_is_counted",),
    ),
    Mutation(
        "estimate: a function tool's other members not counted",
        "pipeline/call/tokens.py",
        "        _rest(tool, _TOOL_COUNTED, rests)\n"
        "        if fn is not tool:\n"
        "            _rest(fn, _TOOL_COUNTED, rests)\n",
        "",
        (EV + "test_a_prompt_moved_into_any_member_of_the_request_is_counted",),
    ),
    Mutation(
        "estimate: Responses input items of other types not counted",
        "pipeline/call/tokens.py",
        '                messages.append({"role": "user", "content": None, "item": item})\n',
        "                pass\n",
        (EV + "test_a_prompt_moved_into_any_member_of_the_request_is_counted",),
    ),
    Mutation(
        "estimate: unknown Responses members not counted (prompt variables)",
        "pipeline/call/tokens.py",
        "        + _other_members(request, _RESPONSES_READ, enc)\n",
        "",
        (EV + "test_a_prompt_moved_into_any_member_of_the_request_is_counted",),
    ),
    Mutation(
        "estimate: unknown completions members not counted (suffix)",
        "pipeline/call/tokens.py",
        '        return _text_or_tokens(request["prompt"], enc) + _other_members(\n'
        "            request, _COMPLETIONS_READ, enc\n"
        "        )\n",
        '        return _text_or_tokens(request["prompt"], enc)\n',
        (EV + "test_a_prompt_moved_into_any_member_of_the_request_is_counted",),
    ),
    Mutation(
        "deadletters: an event in UTF-16 or UTF-32 stored unmasked (read as UTF-8)",
        "pipeline/protect/deadletters.py",
        '    mark, codec = safejson.wide_encoding(body) or (0, "utf-8")\n',
        '    mark, codec = 0, "utf-8"\n',
        (RH + "test_an_event_in_utf16_or_utf32_is_dead_lettered_masked_in_its_encoding",),
    ),
    Mutation(
        "deadletters: UTF-16 or UTF-32 without a byte order mark not told",
        "pipeline/common/safejson.py",
        "    return (0, codec) if codec else None\n",
        "    return None\n",
        (RH + "test_an_event_in_utf16_or_utf32_is_dead_lettered_masked_in_its_encoding",),
    ),
    Mutation(
        "detectors: an address's start depends on its window (local part past 64)",
        "pipeline/protect/detectors.py",
        "                spans.append((lo + max(start, m.start(1) - _LOCAL_MAX), lo + pos))",
        "                spans.append((lo + start, lo + pos))",
        (
            "tests/test_redaction.py::test_a_local_part_past_64_characters_is_masked_alike_alone_and_among_other"
            "s",
        ),
    ),
    Mutation(
        "envelope: JSON in UTF-16 refused as 'not valid JSON' (the reason hides why)",
        "pipeline/sources/envelope.py",
        "                codec = _wide_json(data)\n",
        "                codec = None\n",
        (RH + "test_an_event_in_utf16_or_utf32_is_dead_lettered_masked_in_its_encoding",),
    ),
    Mutation(
        "archive: the common schema's identity kept as logged",
        "pipeline/protect/fields.py",
        'FREE_TEXT = BODY_FIELDS | {"lasterror", "errors", "error", "tracerecords", "identity"}\n',
        'FREE_TEXT = BODY_FIELDS | {"lasterror", "errors", "error", "tracerecords"}\n',
        (RH + "test_the_callers_identity_and_structures_under_unknown_fields_are_free_text",),
    ),
    Mutation(
        "archive: a structure under an unknown field kept as logged",
        "pipeline/protect/records.py",
        "        elif kind == OTHER and isinstance(value, _STRUCTURES):\n",
        "        elif False:\n",
        (RH + "test_the_callers_identity_and_structures_under_unknown_fields_are_free_text",),
    ),
    Mutation(
        "redaction: member names as long as an AWS key id taken for an API's own",
        "pipeline/protect/masking.py",
        '    plain = len(key) < 20 and key.isascii() and key.replace("_", "").isalpha()\n',
        '    plain = len(key) <= 20 and key.isascii() and key.replace("_", "").isalpha()\n',
        (RH + "test_member_names_and_long_numbers_are_masked_like_values",),
    ),
    Mutation(
        "backfill: a Log Analytics row takes its live twin's place (rivals, columns lost)",
        "pipeline/ingest/records.py",
        "    part = LA_PART if table else 0\n",
        "    part = 0\n",
        (
            "tests/test_loganalytics.py::test_a_backfilled_row_and_its_live_record_are_one_reading_not_rival"
            "s",
        ),
    ),
    Mutation(
        "join: records of one key that say the same counted as rivals",
        "pipeline/call/join.py",
        "            if not _same_reading(state, existing, incoming):\n",
        "            if True:\n",
        (
            "tests/test_loganalytics.py::test_a_backfilled_row_and_its_live_record_are_one_reading_not_rival"
            "s",
        ),
    ),
    Mutation(
        "erase: the subject matched as bytes anywhere (wholesales-emea's dead letter deleted)",
        "pipeline/compliance/erase.py",
        "    if keys is None:\n        return None\n",
        "    if True:\n        return re.compile(re.escape(subject.value.encode()))\n",
        (
            ERASURE
            + "test_erase_takes_the_subjects_records_out_of_dead_letters_and_nothing_of_others",
        ),
    ),
    Mutation(
        "erase: a dead letter holding others' calls deleted whole",
        "pipeline/compliance/erase.py",
        "    if not kept or len(kept) == len(records):\n",
        "    if True:\n",
        (
            ERASURE
            + "test_erase_takes_the_subjects_records_out_of_dead_letters_and_nothing_of_others",
        ),
    ),
    Mutation(
        "erase: all days reads only the dead letters near the subject's rows",
        "pipeline/compliance/erase.py",
        "    if erasure.start is None and erasure.end is None:\n",
        "    if False:\n",
        (
            ERASURE
            + "test_erase_takes_the_subjects_records_out_of_dead_letters_and_nothing_of_others",
        ),
    ),
    Mutation(
        "erase: dead letters too large to read passed over in silence",
        "pipeline/compliance/erase.py",
        "            erasure.dead_letters_unchecked.append(blob.name)\n",
        "            pass\n",
        (
            ERASURE
            + "test_erase_takes_the_subjects_records_out_of_dead_letters_and_nothing_of_others",
        ),
    ),
    Mutation(
        "erase: exit 0 with dead letters left unread",
        "pipeline/cli/compliance.py",
        "    return 1 if done.dead_letters_unchecked else 0  # not done until those are looked"
        " at\n",
        "    return 0\n",
        (
            ERASURE
            + "test_erase_takes_the_subjects_records_out_of_dead_letters_and_nothing_of_others",
        ),
    ),
    Mutation(
        "backfill: a second CSV header read as a row (the rows after it by the first's columns)",
        "pipeline/sources/files.py",
        "        if header is None or (cells is not None and _TIME_HINT.search(text) and _is_header"
        "(cells)):\n",
        "        if header is None:\n",
        ("tests/test_loganalytics.py::test_a_second_header_in_a_csv_starts_its_own_columns",),
    ),
    Mutation(
        "backfill: a second CSV export's byte order mark hides its header",
        "pipeline/sources/files.py",
        '    names = [c.strip().lstrip("\\ufeff") for c in cells]'
        "  # a second file's byte order mark\n",
        "    names = [c.strip() for c in cells]\n",
        ("tests/test_loganalytics.py::test_a_second_header_in_a_csv_starts_its_own_columns",),
    ),
    Mutation(
        "deployment: a serverless endpoint's deployment taken from the body's model",
        "pipeline/sources/gateway.py",
        "    if serverless:\n",
        "    if False:\n",
        (H + "test_a_serverless_endpoints_deployment_is_its_name_not_the_bodys_model",),
    ),
    Mutation(
        "verify: a row pointing at another call's record passes",
        "pipeline/compliance/verify.py",
        '            if head.get("correlationId") not in names:\n',
        "            if False:\n",
        (
            "tests/test_compliance.py::test_verify_checks_that_each_row_points_at_its_own_call_in_the_sealed_archive",
        ),
    ),
    Mutation(
        "verify: a row pointing into a blob no manifest lists passes",
        "pipeline/compliance/verify.py",
        "        if not BLOB_NAME.fullmatch(blob) or (blob_day in sealed and blob not in"
        " sealed[blob_day]):\n",
        "        if False:\n",
        (
            "tests/test_compliance.py::test_verify_checks_that_each_row_points_at_its_own_call_in_the_sealed_archive",
        ),
    ),
    Mutation(
        "verify: a sealed record whose key entity is gone passes",
        "pipeline/compliance/verify.py",
        "            if (blob, offset) not in listed:\n",
        "            if False:\n",
        (
            "tests/test_compliance.py::test_verify_checks_that_each_row_points_at_its_own_call_in_the_sealed_archive",
        ),
    ),
    Mutation(
        "verify: twins' records joined into a row taken for another call's",
        "pipeline/compliance/verify.py",
        "        names = {rows.correlation_id_of(key), *(str(row[n]) for n in NAMES if"
        " row.get(n))}\n",
        "        names = {rows.correlation_id_of(key)}\n",
        (
            "tests/test_compliance.py::test_verify_checks_that_each_row_points_at_its_own_call_in_the_sealed_archive",
        ),
    ),
    Mutation(
        "replay: archive members no key opens leave the run ok (exit 0)",
        "pipeline/cli/runner.py",
        "            and not self.totals.skipped.get(UNOPENED_SKIP)\n",
        "",
        (
            "tests/test_compliance.py::test_verify_checks_that_each_row_points_at_its_own_call_in_the_sealed_archive",
        ),
    ),
    Mutation(
        "rollup: a budget's subscription folded into (other) by the hash",
        "pipeline/kpi/rollup.py",
        "    unnamed = not named.keeps(dims)\n",
        "    unnamed = True\n",
        ("tests/test_chargeback.py::test_a_budgets_subscription_is_never_folded_into_other",),
    ),
    Mutation(
        "replay: a sealed day it added blobs to is not sealed again (verify names them)",
        "pipeline/cli/replay.py",
        "    if not args.dry_run and summary.totals.archive_days:\n",
        "    if False:\n",
        ("tests/test_compliance.py::test_a_replay_that_adds_blobs_to_a_sealed_day_seals_it_again",),
    ),
    Mutation(
        "seal: sealed_only seals days no manifest has yet",
        "pipeline/compliance/seal.py",
        "        days = [d for d in days if d in manifested]\n",
        "        pass\n",
        ("tests/test_compliance.py::test_a_replay_that_adds_blobs_to_a_sealed_day_seals_it_again",),
    ),
    Mutation(
        "rollup: the timer rolls up fewer days than the hub holds (a backlog never counted)",
        "pipeline/settings.py",
        "    kpi_reroll_days: int = 6\n",
        "    kpi_reroll_days: int = 2\n",
        ("tests/test_infra.py::test_the_timer_rolls_up_every_day_the_hub_still_holds",),
    ),
    Mutation(
        "verify: a row pointing at no raw record passes",
        "pipeline/compliance/verify.py",
        '            report.add(f"row {key}: points at no raw record")\n',
        "            pass\n",
        (
            "tests/test_compliance.py::test_verify_checks_that_each_row_points_at_its_own_call_in_the_sealed_archive",
        ),
    ),
    Mutation(
        "verify: a row's place that is no number stops verify (a traceback, no report)",
        "pipeline/compliance/verify.py",
        "        if not isinstance(offset, int) or not isinstance(length, int):\n",
        "        if False:\n",
        (
            "tests/test_compliance.py::test_verify_checks_that_each_row_points_at_its_own_call_in_the_sealed_archive",
        ),
    ),
    Mutation(
        "budgets: check exits 0 with an alert not delivered",
        "pipeline/cli/budgets.py",
        "    return 1 if result.failed else 0  # a scheduler sees an alert nobody received\n",
        "    return 0\n",
        ("tests/test_budgets.py::test_budgets_check_exits_1_while_an_alert_is_not_delivered",),
    ),
    Mutation(
        "redaction: the secret-name fast path misses a last letter (password keys kept)",
        "pipeline/protect/fields.py",
        '_SECRET_LAST = frozenset(name[-1] for name in (*_SECRET_KEY_ENDINGS, "pwd"))\n',
        '_SECRET_LAST = frozenset("etnyg")\n',
        (RH + "test_values_of_keys_that_name_a_secret_are_masked_in_json",),
    ),
    Mutation(
        "redaction: a number of any size turned into text (a 5,000-digit int raises)",
        "pipeline/protect/masking.py",
        "    if not _LONG_NUMBER <= abs(value) < _NO_CARD:  # NaN compares false: None too\n",
        "    if not _LONG_NUMBER <= abs(value):\n",
        (RH + "test_member_names_and_long_numbers_are_masked_like_values",),
    ),
    Mutation(
        "erase: a dead letter written meanwhile stops the erasure (its log never written)",
        "pipeline/compliance/erase.py",
        "            except ResourceModifiedError:\n",
        "            except ZeroDivisionError:\n",
        (
            ERASURE
            + "test_erase_takes_the_subjects_records_out_of_dead_letters_and_nothing_of_others",
        ),
    ),
    Mutation(
        "safejson: a large node holding a deep container passed over (its check inverted)",
        "pipeline/common/safejson.py",
        "        if len(values) > 8 and _CONTAINERS.isdisjoint(",
        "        if len(values) > 8 and not _CONTAINERS.isdisjoint(",
        (H + "test_a_record_nested_deeper_than_the_limit_is_a_row_marked_nesting",),
    ),
    Mutation(
        "detectors: an address glued to the end of another left (no second try there)",
        "pipeline/protect/detectors.py",
        "                m = glued(window, pos)",
        "                m = None",
        (RH + "test_addresses_glued_together_are_each_masked",),
    ),
    Mutation(
        "masking: a string of one value left uncounted (the one-span path)",
        "pipeline/protect/masking.py",
        "                start, end, label = spans[0]\n                counts[label] += 1\n",
        "                start, end, label = spans[0]\n",
        (
            "tests/test_redaction.py::"
            "test_each_value_of_a_json_body_is_counted_once_whether_a_member_or_its_name",
        ),
    ),
    Mutation(
        "detectors: a member named for a secret in JSON text left (its name never checked)",
        "pipeline/protect/detectors.py",
        """        if "\\\\" in name or '"' in name or not secret_key(name):""",
        "        if True:",
        (
            RH + "test_a_secret_named_member_of_json_written_as_text_is_masked_in_previews_and"
            "_archive",
        ),
    ),
    Mutation(
        "detectors: a secret member's value ends at an escaped quote inside it",
        "pipeline/protect/detectors.py",
        "        if n % 2 == 0 and (level or _AFTER_VALUE.match(text, q + 1)):",
        "        if level or _AFTER_VALUE.match(text, q + 1):",
        (RH + "test_a_secret_named_member_is_masked_to_its_closing_quote_or_the_end_of_cut_text",),
    ),
    Mutation(
        "masking: a JSON answer's preview matched as prose (an escaped address left)",
        "pipeline/protect/masking.py",
        "            return self.redact_escaped(s if shown is None else s[: shown + _VALUE_MAX],"
        " counts)",
        "            pass",
        (RH + "test_an_address_escaped_in_json_text_is_masked_in_previews_and_archive",),
    ),
    Mutation(
        "policy: the prefilter skips text whose only secret is an accessToken member",
        "pipeline/protect/policy.py",
        '    return any(c in text for c in MEMBER_COLONS) and ("token" in low or "string" in low)',
        "    return False",
        (RH + "test_a_token_or_connection_string_member_alone_passes_the_prefilter",),
    ),
    Mutation(
        "protect: a deployment the client named stored in clear (the archive masks it)",
        "pipeline/ingest/records.py",
        '        names = ("url", "error_message", "deployment") if facts.deployment_claimed'
        " else _FREE",
        "        names = _FREE",
        (H + "test_a_deployment_a_client_names_is_masked_as_its_archive_is",),
    ),
    Mutation(
        "hostile: an event's bad records a dead letter each up to 16 (16 blobs an event)",
        "pipeline/ingest/plan.py",
        "MAX_DEAD_PER_EVENT = 1\n",
        "MAX_DEAD_PER_EVENT = 16\n",
        (MANY_BAD,),
    ),
    Mutation(
        "hostile: records on 3 days per event read one by one (a transaction per day and shard)",
        "pipeline/settings.py",
        "    max_days: int = 2\n",
        "    max_days: int = 3\n",
        (H + "test_an_event_whose_records_span_many_days_is_one_dead_letter",),
    ),
    Mutation(
        "plan: a bad record in no count (the batch's accounting of its records)",
        "pipeline/ingest/plan.py",
        "    plan.event_dead += 1\n    plan.dead_records += 1\n",
        "    plan.event_dead += 1\n",
        ("tests/test_reliability.py::test_fuzz_batches_never_raise_and_account_for_every_record",),
    ),
    Mutation(
        "plan: an event holding no record leaves no trace",
        "pipeline/ingest/plan.py",
        "        count_skipped(plan.skipped, EMPTY_EVENT)\n",
        "",
        (H + "test_an_event_holding_no_record_is_counted",),
    ),
    Mutation(
        "retrieval: a read of a stored completion or response is a generation again",
        "pipeline/call/exchange.py",
        "    generates = operations.creates_generation(method, backend_url, url, operation) is not"
        " False",
        "    generates = True",
        (
            "tests/test_retrievals.py::"
            "test_addressing_a_stored_generation_is_a_retrieval_with_no_tokens_price_or_response_id",
            "tests/test_retrievals.py::test_a_read_on_the_day_leaves_the_original_counted_once",
        ),
    ),
    Mutation(
        "retrieval: a POST to a stored item (metadata update, cancel) is a generation",
        "pipeline/call/operations.py",
        "            return _STORED_ITEM.search(path) is None",
        "            return True",
        (
            "tests/test_retrievals.py::"
            "test_addressing_a_stored_generation_is_a_retrieval_with_no_tokens_price_or_response_id",
        ),
    ),
    Mutation(
        "retrieval: another record of a read (its LLM log) gives it the original's tokens",
        "pipeline/call/join.py",
        "    generated = generates(frags)",
        "    generated = True",
        ("tests/test_retrievals.py::test_a_read_its_llm_log_reports_tokens_for_still_has_none",),
    ),
    Mutation(
        "retrieval: a read counts as an unknown-token, unpriced call in the KPIs",
        "pipeline/kpi/rollup.py",
        "            return  # a read of a stored generation: nothing billed, so nothing to price",
        "            pass",
        (
            "tests/test_retrievals.py::test_a_retrieval_row_is_a_call_not_an_unknown_or_unpriced_one",
        ),
    ),
    Mutation(
        "usage: a reported total stands apart from its parts (0 beside 10^6 + 10^6)",
        "pipeline/call/usage.py",
        "        total = max(reported, known)",
        "        total = reported",
        ("tests/test_token_totals.py::test_a_total_is_never_less_than_its_known_parts",),
    ),
    Mutation(
        "rollup: parts adding up past what a call can have are priced and counted nowhere",
        "pipeline/kpi/rollup.py",
        "    if known > MAX_CALL_TOKENS:\n        return None, None, None, None, None",
        "    if False:\n        return None, None, None, None, None",
        (
            "tests/test_token_totals.py::"
            "test_parts_past_what_a_call_can_have_make_an_unknown_unpriced_call",
        ),
    ),
    Mutation(
        "rollup: a row's TotalTokens summed apart from its parts (budgets read 0)",
        "pipeline/kpi/rollup.py",
        "        total = known if total is None or total < known else total",
        "        pass",
        ("tests/test_token_totals.py::test_the_rollup_counts_a_rows_tokens_by_the_same_rule",),
    ),
    Mutation(
        "focus: the export bills parts the KPIs leave unpriced (10^9 + 10^9)",
        "pipeline/export/focus.py",
        "        prompt, completion, _, cached, _ = call_tokens(row)",
        '        prompt, completion = _n(row.get("PromptTokens")), _n(row.get("CompletionTokens"))'
        '\n        cached = _n(row.get("CachedTokens"))',
        ("tests/test_token_totals.py::test_the_focus_export_bills_the_counts_the_kpis_price",),
    ),
    Mutation(
        "chunks: a value the cut between two LLM-log chunks splits archived in two halves",
        "pipeline/ingest/plan.py",
        "                _mask_split_values(policy, held, split)\n",
        "                pass\n",
        (RH + "test_a_value_the_cut_between_two_llm_log_chunks_splits_is_archived_masked",),
    ),
    Mutation(
        "chunks: the rest of a value split by the cut kept in the second chunk",
        "pipeline/ingest/plan.py",
        "                edits.setdefault(s + 1, []).append((0, b - cut, None))",
        "                pass",
        (RH + "test_a_value_the_cut_between_two_llm_log_chunks_splits_is_archived_masked",),
    ),
    Mutation(
        "chunks: a value whose name ended the chunk before left in the next",
        "pipeline/ingest/plan.py",
        "                edits.setdefault(s + 1, []).append((a - cut, b - cut, label))",
        "                pass",
        (RH + "test_a_value_the_cut_between_two_llm_log_chunks_splits_is_archived_masked",),
    ),
    Mutation(
        "detectors: a bare quote inside a secret's value ends it (an unescaped view)",
        "pipeline/protect/detectors.py",
        "        if n % 2 == 0 and (level or _AFTER_VALUE.match(text, q + 1)):",
        "        if n % 2 == 0:",
        (RH + "test_a_secret_named_member_is_masked_to_its_closing_quote_or_the_end_of_cut_text",),
    ),
    Mutation(
        "detectors: a value that starts like a placeholder skipped whole",
        "pipeline/protect/detectors.py",
        "        if start < end and PLACEHOLDER.fullmatch(text, start, end) is None:",
        "        if start < end and PLACEHOLDER.match(text, start) is None:",
        (RH + "test_a_secret_named_member_is_masked_to_its_closing_quote_or_the_end_of_cut_text",),
    ),
    Mutation(
        "retrieval: any segment after the endpoint taken for a stored item (/responses/compact)",
        "pipeline/call/operations.py",
        '_STORED_ITEM = re.compile(r"/(?:chat/completions/chatcmpl-|responses/resp_)'
        '[^/]*(?:/[a-z_]+)?/?$")',
        '_STORED_ITEM = re.compile(r"/(?:chat/completions|responses)/[^/]")',
        ("tests/test_retrievals.py::test_a_post_that_names_no_stored_item_is_a_generation",),
    ),
    Mutation(
        "chunks: a record's second chunk archived from the record as received (the first back)",
        "pipeline/ingest/records.py",
        "        record = _with_chunk(record, chunk, text_) if record is not None else None",
        "        record = _with_chunk(parsed.record, chunk, text_)",
        (RH + "test_a_records_request_and_response_chunks_are_both_masked_across_their_cuts",),
    ),
    Mutation(
        "chunks: 4 KB read across a cut (a longer value's rest kept)",
        "pipeline/ingest/plan.py",
        "_ACROSS = 16_384\n",
        "_ACROSS = 4096\n",
        (RH + "test_a_value_the_cut_between_two_llm_log_chunks_splits_is_archived_masked",),
    ),
    Mutation(
        "masking: a JSON answer's preview matched on the characters it shows only",
        "pipeline/protect/masking.py",
        "s if shown is None else s[: shown + _VALUE_MAX]",
        "s if shown is None else s[:shown]",
        (RH + "test_a_long_json_answers_preview_reads_only_its_start_but_whole_values",),
    ),
    Mutation(
        "dead letters: an event's bad records kept with its good ones (replayed as rivals)",
        "pipeline/ingest/plan.py",
        "        if plan.event_dead <= MAX_BAD_TOGETHER:\n            del plan.dead[first_dead:]",
        "        if False:\n            del plan.dead[first_dead:]",
        (
            MANY_BAD,
            "tests/test_replay.py::test_an_events_bad_records_replayed_leave_its_rows_as_they_were",
        ),
    ),
    Mutation(
        "dead letters: the places of an event's bad records lost on replay (a second blob)",
        "pipeline/ingest/plan.py",
        "if i < len(event.record_indexes) else event.first_record + i",
        "if False else event.first_record + i",
        ("tests/test_replay.py::test_an_events_bad_records_replayed_leave_its_rows_as_they_were",),
    ),
    Mutation(
        "erase: a dead letter of several records rewritten keeps the places of all",
        "pipeline/compliance/erase.py",
        "    left = [places[i] for i in kept]",
        "    left = places",
        (
            "tests/test_erasure.py::"
            "test_a_dead_letter_of_several_records_rewritten_keeps_the_places_of_those_left",
        ),
    ),
    Mutation(
        "plan: an event's count of bad records starts where the event's records do (lost letter)",
        "pipeline/ingest/plan.py",
        "    first_dead, plan.event_dead = len(plan.dead), 0\n    plan.event_bad.clear()\n    try:",
        "    first_dead = len(plan.dead)\n    try:",
        (H + "test_each_event_counts_its_own_bad_records",),
    ),
    Mutation(
        "a parser failure drops the record (no dead letter)",
        "pipeline/ingest/plan.py",
        "    plan.parser_errors += 1\n",
        "    plan.parser_errors += 1\n    return\n",
        (PARSER_BUG,),
    ),
    Mutation(
        "a parser failure logs the exception's message (record content)",
        "pipeline/ingest/plan.py",
        '"parser error on %s record %s: %s at %s", event.origin, index, type(exc).__name__, where',
        '"parser error on %s record %s: %s at %s", event.origin, index, exc, where',
        (PARSER_BUG,),
    ),
    Mutation(
        "a parser bug (on records with time and properties)",
        "pipeline/ingest/records.py",
        "    authorization = attribution.authorization_of(record)\n",
        "    authorization = attribution.authorization_of(record)\n"
        '    if "time" in record and "properties" in record:\n'
        '        raise KeyError("a parser bug")\n',
        (FUZZ,),
    ),
    Mutation(
        "archive blob not written",
        "pipeline/store/account.py",
        "        return blobs.create(\n"
        "            self.retry,\n"
        "            self.archive,\n"
        "            blob.name,\n"
        "            blob.data,\n"
        '            metadata={"sha256": blob.sha256},\n'
        '            content_type="application/gzip",\n'
        "        )\n",
        "        return True\n",
        (DUPLICATE, FAULTS),
    ),
    Mutation(
        "archive blob overwritten (not create-only)",
        "pipeline/store/blobs.py",
        "            overwrite=False,\n",
        "            overwrite=True,\n",
        (DUPLICATE,),
    ),
    Mutation(
        "duplicates not deduplicated (rid random)",
        "pipeline/ingest/records.py",
        "    rid = archived.rid if archived else archive.record_id(protected.original)\n",
        "    rid = archived.rid if archived else "
        'archive.record_id(protected.original + __import__("os").urandom(8))\n',
        (DUPLICATE, ORDER),
    ),
    Mutation(
        "unchanged rows rewritten",
        "pipeline/store/merge.py",
        "        merged = merge_into(current, state, shards)\n",
        "        merged = merge_into(current, state, shards) or dict(current)\n",
        (DUPLICATE,),
    ),
    Mutation(
        "join depends on arrival order (the last preview offered wins)",
        "pipeline/call/join.py",
        "    if p is not None and (state.prompt_preview is None or "
        "p.rank <= state.prompt_preview.rank):\n",
        "    if p is not None:\n",
        (ORDER,),
    ),
    Mutation(
        "retry disabled (attempts=1)",
        "pipeline/store/account.py",
        "            cfg.storage_retries + 1, retry_base=retry_base, retry_cap=retry_cap\n",
        "            1, retry_base=retry_base, retry_cap=retry_cap\n",
        (FAULTS, THROTTLED),
    ),
    Mutation(
        "Retry-After ignored",
        "pipeline/store/retry.py",
        "                asked = retry_after(exc)\n",
        "                asked = 0.0\n",
        (THROTTLED, OVER_CAP),
    ),
    Mutation(
        "Retry-After over the cap slept for the cap (the old behaviour)",
        "pipeline/store/retry.py",
        "                if asked > self.retry_cap:\n",
        "                asked = min(asked, self.retry_cap)\n"
        "                if asked > self.retry_cap:\n",
        (OVER_CAP,),
    ),
    Mutation(
        "Retry-After as an HTTP date not read",
        "pipeline/store/retry.py",
        "            waits.append(when.timestamp() - (time.time() if now is None else now))\n",
        "            pass\n",
        (RETRY_AFTER, OVER_CAP),
    ),
    Mutation(
        "x-ms-retry-after-ms not read",
        "pipeline/store/retry.py",
        '    for name, unit in (("x-ms-retry-after-ms", 0.001), ("retry-after-ms", 0.001)):\n',
        '    for name, unit in (("retry-after-ms", 0.001),):\n',
        (RETRY_AFTER, OVER_CAP),
    ),
    Mutation(
        "lost response: a blob already there is an error",
        "pipeline/store/blobs.py",
        "    except ResourceExistsError:\n        return False\n",
        "    except ResourceExistsError:\n        raise\n",
        (FAULTS, DUPLICATE),
    ),
    Mutation(
        "lost response: a row already there is an error",
        "pipeline/store/audit.py",
        "                if not (_is_conflict(exc) or _refused(exc)):\n                    raise\n"
        "        return self._merge_chunk(pk, chunk, dry_run)\n",
        "                raise\n        return self._merge_chunk(pk, chunk, dry_run)\n",
        (FAULTS, DUPLICATE),
    ),
    Mutation(
        "parking disabled (last delivery claims to park, writes nothing)",
        "pipeline/ingest/batch.py",
        "        parked = park_batch(events, cfg, store, reason)\n",
        "        parked = len(events)\n",
        (PARKED,),
    ),
    Mutation(
        "last delivery raises like the others (never parked)",
        "pipeline/ingest/batch.py",
        "        if attempt < max_retries:\n",
        "        if attempt <= max_retries:\n",
        (PARKED,),
    ),
    Mutation(
        "clipping disabled (limits.fit returns the entity as is)",
        "pipeline/store/limits.py",
        "    clipped: list[str] = list(clipped_before or [])\n",
        "    return entity\n    clipped: list[str] = list(clipped_before or [])\n",
        (LIMITS,),
    ),
    Mutation(
        "RowKey escaping disabled",
        "pipeline/store/rows.py",
        "    if _FORBIDDEN_KEY_RE.search(correlation_id) is None:\n",
        "    if True:\n",
        (CRAFTED,),
    ),
    # --- hostile input (docs/guarantees.md: Guarantees, "A client sends a request built to
    # break or stall the audit", and "Hostile input") ---
    Mutation(
        "hostile: record boundary removed (the event boundary takes the whole event)",
        "pipeline/ingest/plan.py",
        "    except Exception as exc:  # noqa: BLE001 - the record boundary (see contain)\n"
        "        contain(plan, policy, received.event, exc, received, masker)\n",
        "    except Exception:  # noqa: BLE001 - the record boundary (see contain)\n"
        "        raise\n",
        (DEAD_LETTER_FAILS,),
    ),
    Mutation(
        "hostile: a contained failure propagates (contain re-raises)",
        "pipeline/ingest/plan.py",
        '    plan.parser_errors += 1\n    reason = f"parser error: ',
        '    raise exc\n    plan.parser_errors += 1\n    reason = f"parser error: ',
        (DEAD_LETTER_FAILS, NO_ROW),
    ),
    Mutation(
        "hostile: call boundary removed (a row that cannot be built fails the batch)",
        "pipeline/ingest/batch.py",
        "        except Exception as exc:  # noqa: BLE001 - the call boundary\n",
        "        except ZeroDivisionError as exc:  # noqa: BLE001 - the call boundary\n",
        (NO_ROW,),
    ),
    Mutation(
        "hostile: no raw fallback when a record's dead letter fails",
        "pipeline/ingest/plan.py",
        "        return deadletters.raw_dead_letter(masker.policy, event, index, reason)\n",
        "        raise\n",
        (DEAD_LETTER_FAILS,),
    ),
    Mutation(
        "hostile: a dead letter's reason quotes the exception's message",
        "pipeline/ingest/plan.py",
        '    reason = f"parser error: {type(exc).__name__} (at {where})"\n',
        '    reason = f"parser error: {type(exc).__name__}: {exc} (at {where})"\n',
        (DEAD_LETTER_FAILS,),
    ),
    Mutation(
        "hostile: depth bound disabled (safejson.bound returns 0)",
        "pipeline/common/safejson.py",
        "    replaced = 0\n    stack: list[tuple[Any, int]] = [(doc, 1)]\n",
        "    return 0\n    replaced = 0\n    stack: list[tuple[Any, int]] = [(doc, 1)]\n",
        (DEEP_BODY, DEEP_RECORD),
    ),
    Mutation(
        "hostile: an event's records not bounded (open_envelope skips safejson.bound)",
        "pipeline/sources/envelope.py",
        "frozenset(i for i, r in enumerate(records) if safejson.bound(r))",
        "frozenset()",
        (DEEP_RECORD,),
    ),
    Mutation(
        "hostile: redaction walks a body too deep to walk (depth_ok check removed)",
        "pipeline/protect/masking.py",
        "        if depth > _COLLECT_DEPTH:\n            raise _TooDeep\n",
        "        if False:\n            raise _TooDeep\n",
        (DEEP_BODY,),
    ),
    Mutation(
        "hostile: repair quadratic again (closing brackets worked out at every token)",
        "pipeline/call/bodies.py",
        "            break  # token-dense text past the budget: keep what is complete so far\n",
        "            break  # token-dense text past the budget: keep what is complete so far\n"
        "        _closing(stack)  # the closing brackets worked out at every token\n",
        (REPAIR_LINEAR,),
    ),
    Mutation(
        "hostile: repair budget removed",
        "pipeline/call/bodies.py",
        "    budget = repair_budget(len(text))\n",
        "    budget = len(text) + 1\n",
        (REPAIR_BUDGET,),
    ),
    Mutation(
        "hostile: unicode digits accepted (isascii dropped)",
        "pipeline/common/values.py",
        "s.isascii() and s.isdigit()",
        "s.isdigit()",
        (UNICODE_DIGITS,),
    ),
    Mutation(
        "hostile: stream tool-call slots unbounded",
        "pipeline/call/stream.py",
        "        if len(s.tool_calls) >= MAX_TOOL_CALLS:\n",
        "        if False:\n",
        (TOOL_SLOTS,),
    ),
    Mutation(
        "hostile: stream indexes taken as written (not only whole numbers)",
        "pipeline/call/stream.py",
        "    return as_int(value)\n",
        "    return value  # type: ignore[return-value]\n",
        (TOOL_SLOTS,),
    ),
    Mutation(
        "hostile: caller claims trusted on failed calls",
        "pipeline/ingest/records.py",
        "    trusted = cfg.trust_bearer and facts.status is not None and facts.status < 400\n",
        "    trusted = cfg.trust_bearer\n",
        (CLAIMS,),
    ),
    Mutation(
        "hostile: CALLER_FROM_BEARER ignored",
        "pipeline/ingest/records.py",
        "    trusted = cfg.trust_bearer and facts.status is not None and facts.status < 400\n",
        "    trusted = facts.status is not None and facts.status < 400\n",
        (CLAIMS,),
    ),
    Mutation(
        "hostile: implausible record time accepted",
        "pipeline/ingest/records.py",
        "    if plausible(facts.call_time, enqueued):\n        return\n",
        "    return\n",
        (IMPLAUSIBLE, IMPLAUSIBLE_UNDATED),
    ),
    Mutation(
        "hostile: times before 2015 plausible",
        "pipeline/common/timestamps.py",
        "    return EARLIEST <= dt <= latest\n",
        "    return dt <= latest\n",
        (IMPLAUSIBLE, IMPLAUSIBLE_UNDATED),
    ),
    Mutation(
        "hostile: times far in the future plausible",
        "pipeline/common/timestamps.py",
        "    return EARLIEST <= dt <= latest\n",
        "    return EARLIEST <= dt\n",
        (IMPLAUSIBLE,),
    ),
    Mutation(
        "hostile: archive blob named by the earliest call time, not the batch's",
        "pipeline/ingest/batch.py",
        "    when = plan.enqueued or earliest\n",
        "    when = earliest or plan.enqueued\n",
        (BLOB_NAME,),
    ),
    Mutation(
        "hostile: blob paths with strftime's %Y (year 999 is '999')",
        "pipeline/common/timestamps.py",
        '    return f"{dt.year:04d}/{dt.month:02d}/{dt.day:02d}/{dt.hour:02d}"\n',
        '    return dt.strftime("%Y/%m/%d/%H")\n',
        (BLOB_NAME,),
    ),
    Mutation(
        "hostile: archived pointer trusted without verification",
        "pipeline/ingest/records.py",
        "        archived.verified and archived.correlation_id == correlation_id\n",
        "        True\n",
        (UNVERIFIED, VERIFIED_ELSEWHERE),
    ),
    Mutation(
        "hostile: archived pointer honoured for another call's member",
        "pipeline/ingest/records.py",
        "        archived.verified and archived.correlation_id == correlation_id\n",
        "        archived.verified\n",
        (VERIFIED_ELSEWHERE,),
    ),
    Mutation(
        "hostile: archived pointer's SHA-256 not checked",
        "pipeline/ingest/archived.py",
        "        member = archive.open_member(data, p.sha256)\n",
        "        member = archive.open_member(data)\n",
        (OWN_MEMBER,),
    ),
    Mutation(
        "hostile: archived pointer may name any blob (BLOB_NAME check dropped)",
        "pipeline/ingest/archived.py",
        "        not archive.BLOB_NAME.match(p.blob)\n        or p.offset < 0\n",
        "        p.offset < 0\n",
        (OWN_MEMBER,),
    ),
    Mutation(
        "hostile: archive member inflated without a bound (zip bomb)",
        "pipeline/protect/archive.py",
        "        raw = d.decompress(data, limit + 1)\n",
        "        raw = d.decompress(data)\n",
        (ZIP_BOMB,),
    ),
    Mutation(
        "hostile: a record's dead letter under the default capture, not its owner's",
        "pipeline/ingest/plan.py",
        "        owner = _owner_capture(masker.policy, received.record)\n",
        "        owner = masker.policy.default\n",
        (OWNER,),
    ),
    Mutation(
        "hostile: an unreadable event's dead letter under the default capture",
        "pipeline/ingest/plan.py",
        "Masker(policy), policy.strictest, event.body, reason, event, None",
        "Masker(policy), policy.default, event.body, reason, event, None",
        (OWNER_LESS,),
    ),
    Mutation(
        "hostile: an owner-less record's dead letter under the default capture",
        "pipeline/ingest/plan.py",
        "            return policy.for_call(subscription, product, named=True)\n"
        "    return policy.strictest\n",
        "            return policy.for_call(subscription, product, named=True)\n"
        "    return policy.default\n",
        (OWNER_LESS,),
    ),
    Mutation(
        "hostile: raw dead letters (parked, contained) under the default capture",
        "pipeline/protect/deadletters.py",
        "        stored, _ = stored_text(policy, event.body, policy.strictest)\n",
        "        stored, _ = stored_text(policy, event.body, policy.default)\n",
        (OWNER_LESS,),
    ),
    Mutation(
        "hostile: parking parses the events (deadletters.dead_letter)",
        "pipeline/ingest/batch.py",
        "    store.put_dead_letters([deadletters.raw_dead_letter(policy, e, None, reason) for e in "
        "events])\n",
        "    store.put_dead_letters(\n"
        "        [\n"
        "            deadletters.dead_letter(\n"
        "                deadletters.Masker(policy), policy.strictest, e.body, reason, e, None\n"
        "            )\n"
        "            for e in events\n"
        "        ]\n"
        "    )\n",
        (PARKING,),
    ),
    Mutation(
        "hostile: bad records not collapsed into one dead letter",
        "pipeline/ingest/plan.py",
        "        if plan.event_dead <= MAX_DEAD_PER_EVENT:\n",
        "        if True:\n",
        (MANY_BAD,),
    ),
    Mutation(
        "hostile: records per event not capped",
        "pipeline/ingest/plan.py",
        "    if len(env.records) > cfg.max_records:\n",
        "    if False:\n",
        (MANY_BAD,),
    ),
    Mutation(
        "decoding: the collector runs while a document of containers is decoded",
        "pipeline/common/heap.py",
        "    if not gc.isenabled():\n",
        "    if True:\n",
        (H + "test_a_document_of_containers_is_decoded_without_the_collector_running",),
    ),
    Mutation(
        "trigger: the archived-event claim's blob converted with str()",
        "pipeline/sources/eventhub.py",
        "    if not (_is_text(blob) and _is_text(sha256) and _is_text(rid)):\n",
        "    if not (_is_text(str(blob)) and _is_text(sha256) and _is_text(rid)):\n",
        (H + "test_an_archived_property_of_any_shape_neither_fails_the_batch_nor_is_honoured",),
    ),
    Mutation(
        "trigger: an archived-event claim's offset of another type taken",
        "pipeline/sources/eventhub.py",
        "    return type(value) is int and 0 <= value < 2**63\n",
        "    return isinstance(value, int | float)\n",
        (H + "test_an_archived_property_of_any_shape_neither_fails_the_batch_nor_is_honoured",),
    ),
    Mutation(
        "replay: a file name's lone surrogates kept in labels and origins",
        "pipeline/sources/inputs.py",
        '_UNPRINTABLE = re.compile(r"[\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff]")\n',
        '_UNPRINTABLE = re.compile(r"[\\x00-\\x1f\\x7f-\\x9f]")\n',
        ("tests/test_replay.py::test_a_file_name_that_is_not_utf8_is_replayed_and_resumed",),
    ),
    Mutation(
        "replay: a file's resume key keeps a name's lone surrogates",
        "pipeline/sources/files.py",
        '        key = "file-bytes:" + raw.hex()\n',
        '        key = f"file:{path.resolve()}"\n',
        ("tests/test_replay.py::test_a_file_name_that_is_not_utf8_is_replayed_and_resumed",),
    ),
    Mutation(
        "replay: a name that is not UTF-8 keyed by its bytes escaped in place (collides)",
        "pipeline/sources/files.py",
        '        key = "file-bytes:" + raw.hex()\n',
        '        key = "file:" + raw.decode("utf-8", "backslashreplace")\n',
        ("tests/test_replay.py::test_a_file_name_that_is_not_utf8_is_replayed_and_resumed",),
    ),
    Mutation(
        "dead letters: metadata values keep their surrounding spaces",
        "pipeline/store/deadletters.py",
        '    return _NOT_METADATA.sub("?", value)[:limit].strip() or "?"\n',
        '    return _NOT_METADATA.sub("?", value)[:limit]\n',
        (
            "tests/test_replay.py::"
            "test_dead_letter_metadata_is_what_azure_keeps_and_names_the_same_blob_again",
        ),
    ),
    Mutation(
        "dead letters: named from the origin before it is made ASCII",
        "pipeline/store/deadletters.py",
        '    where = (meta.get("partition"), ev.sequence, dead.record_index, meta["origin"])\n',
        "    where = (ev.partition, ev.sequence, dead.record_index, ev.origin)\n",
        (
            "tests/test_replay.py::"
            "test_dead_letter_metadata_is_what_azure_keeps_and_names_the_same_blob_again",
        ),
    ),
    Mutation(
        "dead letters: a sequence number in metadata read with str.isdigit",
        "pipeline/sources/deadletter_blobs.py",
        "        sequence=int(seq) if seq and _SEQUENCE.fullmatch(seq) else None,\n",
        "        sequence=int(seq)"
        ' if seq and seq.lstrip("-").isdigit() and len(seq) < 20 else None,\n',
        (
            "tests/test_replay.py::"
            "test_dead_letter_metadata_is_what_azure_keeps_and_names_the_same_blob_again",
        ),
    ),
    Mutation(
        "replay: skipped category names printed as a sender wrote them",
        "pipeline/cli/runner.py",
        '    names = ", ".join(f"{terminal_text(k)}: {v}" for k, v in sorted(top))\n',
        '    names = ", ".join(f"{k}: {v}" for k, v in sorted(top))\n',
        ("tests/test_cli.py::test_show_sends_no_escape_sequence_a_client_wrote",),
    ),
    Mutation(
        "render: JSON for the terminal keeps DEL and C1 characters (show, kpi, chargeback)",
        "pipeline/common/render.py",
        "    return _C1.sub(lambda m: _json_escape(ord(m.group())), text)\n",
        "    return text\n",
        (
            "tests/test_cli.py::test_show_sends_no_escape_sequence_a_client_wrote",
            "tests/test_kpi.py::test_names_clients_write_are_inert_in_kpi_csv_tables_and_charts",
            "tests/test_chargeback.py::test_hostile_group_names_are_inert_in_csv_and_on_the_termina"
            "l",
            "tests/test_chargeback.py::test_invisible_characters_in_names_are_shown_not_sent",
        ),
    ),
    Mutation(
        "erase: a dead letter names a call when its id is anywhere in its bytes",
        "pipeline/compliance/erase.py",
        "        return bool(subject and subject.search(data))"
        " or _names_a_call(data, calls, responses)\n",
        "        return bool(subject and subject.search(data))"
        " or any(n in data for n in calls | responses)\n",
        (ERASURE + "test_erase_deletes_the_subjects_dead_letters",),
    ),
    Mutation(
        "export: sql --format csv writes cells starting like a formula as they are",
        "pipeline/cli/export.py",
        "        writer.writerows([spreadsheet_text(v) for v in row] for row in rows)\n",
        "        writer.writerows(rows)\n",
        ("tests/test_export.py::test_sql_answers_through_duckdb_and_the_blob_target_works",),
    ),
    Mutation(
        "erase: a response id no row can be keyed by looked up as a twin's key",
        "pipeline/compliance/erase.py",
        "            except rows.KeyTooLong:\n",
        "            except ZeroDivisionError:\n",
        (ERASURE + "test_a_response_id_no_row_can_be_keyed_by_stops_neither_erase_nor_hold",),
    ),
    Mutation(
        "rollup: names in budgets and the map counted against the cap",
        "pipeline/kpi/rollup.py",
        "            named = folded.named.name_of(column, value)\n",
        "            named = None\n",
        ("tests/test_chargeback.py::test_names_in_budgets_and_the_price_table_are_never_capped",),
    ),
    Mutation(
        "rollup: models of the price table counted against the cap",
        "pipeline/kpi/rollup.py",
        '        if (column, key) in self.pairs or (column == "Model" and key in self.priced):\n',
        "        if (column, key) in self.pairs:\n",
        ("tests/test_chargeback.py::test_names_in_budgets_and_the_price_table_are_never_capped",),
    ),
    Mutation(
        "erase: a refusal under a legal hold names no held call",
        "pipeline/compliance/erase.py",
        '        calls = [rows.correlation_id_of(e["RowKey"]) for e in held[:_HELD_NAMED]]\n',
        "        calls: list[str] = []\n",
        (ERASURE + "test_a_legal_hold_blocks_erase_until_released",),
    ),
    Mutation(
        "transform: the collector runs while a batch is transformed",
        "pipeline/ingest/batch.py",
        "    with heap.collector_paused():  # a batch makes no cycles (pipeline/common/heap.py)\n",
        "    if True:\n",
        (H + "test_a_batch_is_transformed_without_the_collector_running",),
    ),
    Mutation(
        "timestamps: a time whose UTC is outside the calendar raises OverflowError",
        "pipeline/common/timestamps.py",
        "    except (ValueError, OverflowError):\n        return None\n\n\ndef _from_dotnet",
        "    except ValueError:\n        return None\n\n\ndef _from_dotnet",
        (
            "tests/test_replay.py::test_a_capture_time_at_the_edge_of_the_calendar_costs_nothing_els"
            "e",
            H + "test_an_implausible_time_never_names_a_partition_or_a_blob",
        ),
    ),
    Mutation(
        "archive: an event's partition key and offset copied whole into each member",
        "pipeline/protect/archive.py",
        "        if isinstance(value, str) and len(value) > most:\n",
        "        if False:\n",
        (H + "test_event_metadata_is_not_copied_whole_into_each_records_member",),
    ),
    Mutation(
        "ingest: skipped categories counted under every name a sender gives",
        "pipeline/ingest/plan.py",
        "    if name not in counts and len(counts) >= MAX_SKIPPED_NAMES:\n",
        "    if False:\n",
        (H + "test_skipped_categories_any_sender_names_grow_nothing",),
    ),
    Mutation(
        "rollup: the timer's rollup does not read the budgets' names",
        "pipeline/kpi/daily.py",
        "    named = named_by(table, teams, _budget_scopes(cfg, store))\n",
        "    named = named_by(table, teams)\n",
        ("tests/test_chargeback.py::test_the_rollup_never_caps_a_deployment_a_budget_names",),
    ),
    Mutation(
        "rollup: budgets that cannot be read stop the rollup",
        "pipeline/kpi/daily.py",
        "    except (budgets.BudgetsError, AzureError) as exc:\n",
        "    except budgets.BudgetsError as exc:\n",
        ("tests/test_chargeback.py::test_the_rollup_never_caps_a_deployment_a_budget_names",),
    ),
    Mutation(
        "erase: a policy message's apimRequestId does not name its call",
        "pipeline/compliance/erase.py",
        "(correlationid|apimrequestid|message-id|id)",
        "(correlationid|id)",
        (ERASURE + "test_erase_deletes_dead_letters_of_calls_keyed_by_a_policy_messages_id",),
    ),
    Mutation(
        "erase: a row's ResponseId does not name its joined twin's dead letter",
        "pipeline/compliance/erase.py",
        "            responses.add(rid.encode())\n",
        "            pass\n",
        (ERASURE + "test_erase_deletes_the_dead_letter_of_a_twin_joined_into_the_row",),
    ),
    Mutation(
        "send: an event larger than the hub takes stops the run",
        "pipeline/cli/send.py",
        "                    stats.too_large += 1\n",
        '                    raise ValueError("too large")\n',
        ("tests/test_replay.py::test_republish_fills_batches_and_keeps_partition_keys",),
    ),
    Mutation(
        "send: one batch open per partition key, however many",
        "pipeline/cli/send.py",
        "        if key not in open_batches and len(open_batches) >= MAX_OPEN_BATCHES:\n",
        "        if False:\n",
        ("tests/test_replay.py::test_republishing_keeps_few_batches_open_whatever_the_keys",),
    ),
    Mutation(
        "send: a damaged row stops the run",
        "pipeline/cli/send.py",
        "        for event in item.events(item.fetch(), report=report):\n",
        "        for event in item.events(item.fetch()):\n",
        ("tests/test_replay.py::test_send_reports_a_damaged_row_and_sends_every_other_event",),
    ),
    Mutation(
        "csv: a line over the bound read on past its cut",
        "pipeline/sources/files.py",
        "                skipped = sum(p.count('\"') for p in parts)\n",
        "",
        (
            "tests/test_loganalytics.py::test_a_csv_line_over_the_bound_is_skipped_and_reading_goes_o"
            "n",
        ),
    ),
    Mutation(
        "csv: a column named twice read (the second's cells replace the first's)",
        "pipeline/sources/files.py",
        "        if name and name.lower() in seen:\n",
        "        if False:\n",
        ("tests/test_loganalytics.py::test_a_csv_column_named_twice_is_refused",),
    ),
    Mutation(
        "replay: every problem of the run kept",
        "pipeline/cli/runner.py",
        "        if len(s.problems) < MAX_PROBLEMS:\n",
        "        if True:\n",
        ("tests/test_loganalytics.py::test_a_run_keeps_the_first_problems_and_counts_the_rest",),
    ),
    Mutation(
        "render: CSV cells keep control characters (kpi, chargeback, sql)",
        "pipeline/common/render.py",
        "        return terminal_text(value)\n    return value\n\n\n# JSON escapes",
        "        return value\n    return value\n\n\n# JSON escapes",
        (
            "tests/test_kpi.py::test_names_clients_write_are_inert_in_kpi_csv_tables_and_charts",
            "tests/test_chargeback.py::test_hostile_group_names_are_inert_in_csv_and_on_the_termina"
            "l",
        ),
    ),
    Mutation(
        "capture: a record whose values cannot be read ends its block",
        "pipeline/sources/capture_avro.py",
        "                skipped[why] += 1\n                continue\n",
        "                raise Damaged(why)\n",
        (
            "tests/test_replay.py::"
            "test_a_capture_record_whose_values_cannot_be_read_costs_only_itself",
        ),
    ),
    Mutation(
        "hostile: numbers past 2^63-1 kept",
        "pipeline/common/values.py",
        "    if isinstance(value, int) and 0 <= value <= _MAX_INT64:\n",
        "    if isinstance(value, int) and 0 <= value:\n",
        (HUGE_NUMBERS,),
    ),
    Mutation(
        "hostile: JWT detector without its left boundary (eyJ-eyJ-... quadratic)",
        "pipeline/protect/detectors.py",
        'r"(?<![A-Za-z0-9_-])(?<![A-Z]\\])(?=[A-Za-z0-9_-]*+\\.eyJ',
        'r"(?<![A-Z]\\])(?=[A-Za-z0-9_-]*+\\.eyJ',
        (DETECTOR_COST,),
    ),
    Mutation(
        "hostile: URL secret names reduced (SAS sig)",
        "pipeline/protect/credentials.py",
        "|key|sig|signature|",
        "|key|signature|",
        (URL_NAMES, URL_SAS),
    ),
    Mutation(
        "hostile: URL secrets in a fragment kept",
        "pipeline/protect/credentials.py",
        'r"([?&#](?:"',
        'r"([?&](?:"',
        (URL_SAS,),
    ),
    Mutation(
        "twins: a batch's response-keyed call not joined to its call",
        "pipeline/ingest/plan.py",
        "    _join_twins(plan)\n    return plan",
        "    return plan",
        (TWINS + "test_one_batch_one_call_whatever_the_order",),
    ),
    Mutation(
        "twins: the rollup does not join rows across batches",
        "pipeline/kpi/daily.py",
        "in store.join_twins(label)",
        "in set()",
        (TWINS + "test_across_batches_the_rollup_joins_them", TWINS_MIDNIGHT),
    ),
    Mutation(
        "twins: the day a row left across midnight is not rolled up again",
        "pipeline/kpi/daily.py",
        "                queue.append(other)",
        "                pass",
        (TWINS_MIDNIGHT,),
    ),
    Mutation(
        "twins: the response-keyed row deleted although written meanwhile",
        "pipeline/store/audit.py",
        "            if exc.status_code != 412:\n                raise\n            return False\n"
        "        return True\n\n    def _write_partition",
        "            return True\n        return True\n\n    def _write_partition",
        (TWINS + "test_a_twin_written_again_during_the_join_is_merged_anew",),
    ),
    Mutation(
        "twins: a response id two calls name is joined anyway",
        "pipeline/call/join.py",
        "if len(cids) == 1]",
        "]",
        (TWINS + "test_a_response_id_two_calls_name_joins_neither",),
    ),
    Mutation(
        "budgets: an alert decided again when its row exists",
        "pipeline/store/alerts.py",
        "        except ResourceExistsError:\n            return False\n        return True",
        "        except ResourceExistsError:\n            return True\n        return True",
        (BUDGETS + "test_each_threshold_alerts_once_across_checks_replays_and_re_rolls",),
    ),
    Mutation(
        "budgets: a period's last hour never evaluated",
        "pipeline/kpi/budgets.py",
        "    if cut == current.start:",
        "    if False:",
        (BUDGETS + "test_spend_in_the_last_hour_of_a_period_alerts_in_the_first_hour_of_the_next",),
    ),
    Mutation(
        "chargeback: cents apportioned to the wrong lines",
        "pipeline/kpi/chargeback.py",
        "    for (group, sums), micro in zip(groups, micros, strict=True):",
        "    for (group, sums), micro in zip(groups, micros[::-1], strict=True):",
        (CHARGEBACK + "test_each_subscriptions_cost_is_the_kpi_reports",),
    ),
    Mutation(
        "attribution: the last matching rule wins",
        "pipeline/kpi/attribution.py",
        "            if position is not None and (first is None or position < first):",
        "            if position is not None and (first is None or position > first):",
        (CHARGEBACK + "test_each_team_gets_the_calls_its_first_matching_rule_gives_it",),
    ),
    Mutation(
        "export: an unchanged day written again",
        "pipeline/export/days.py",
        "        if _content(before) == [(f.rows, f.size, f.sha256) for f in files]:",
        "        if False:",
        (EXPORT + "test_a_second_export_changes_no_byte_and_a_changed_day_is_replaced_whole",),
    ),
    Mutation(
        "export: files the manifest does not list are kept",
        "pipeline/export/days.py",
        "            if path not in listed and _PART.search(path):",
        "            if False:",
        (EXPORT + "test_files_the_manifest_does_not_list_are_ignored_then_removed",),
    ),
    Mutation(
        "verify: a changed manifest's digest not checked",
        "pipeline/compliance/verify.py",
        '    elif manifests.digest(raw) != previous.get("sha256"):',
        "    elif False:",
        (COMPLIANCE + "test_a_changed_manifest_breaks_the_chain",),
    ),
    Mutation(
        "verify: blobs checked for size only",
        "pipeline/compliance/verify.py",
        "        elif len(data) != size or hashlib.sha256(data).hexdigest() != sha:",
        "        elif len(data) != size:",
        (COMPLIANCE + "test_an_overwritten_blob_is_named",),
    ),
    # --- erasure (issue #18): tests/test_erasure.py -----------------------------------------
    Mutation(
        "erase: keys never destroyed",
        "pipeline/compliance/erase.py",
        "    erasure.destroyed = store.keys.shred([*erasure.pointers, *erasure.copies], when)",
        "    erasure.destroyed = 0",
        (ERASURE + "test_erase_user_leaves_nothing_of_theirs_recoverable_even_through_replay",),
    ),
    Mutation(
        "erase: copies no row points at are left",
        "pipeline/compliance/erase.py",
        "    erasure.copies = [m for m in store.keys.scan(days, calls) if (m.blob, m.offset) not "
        "in pointed]",
        "    erasure.copies = []",
        (ERASURE + "test_erase_user_leaves_nothing_of_theirs_recoverable_even_through_replay",),
    ),
    Mutation(
        "erase: a ResponseId picks records too",
        "pipeline/compliance/erase.py",
        '        calls.add(rows.correlation_id_of(entity["RowKey"]))\n',
        '        calls.add(rows.correlation_id_of(entity["RowKey"]))\n'
        '        calls.add(str(entity.get("ResponseId")))\n',
        (ERASURE + "test_erase_finds_only_the_subjects_calls",),
    ),
    Mutation(
        "erase: dead letters kept",
        "pipeline/compliance/erase.py",
        "                store.call(store.deadletters.delete_blob, found.name)",
        "                pass",
        (ERASURE + "test_erase_deletes_the_subjects_dead_letters",),
    ),
    Mutation(
        "erase: holds ignored",
        "pipeline/compliance/erase.py",
        "    if held:\n        cases = sorted(",
        "    if False:\n        cases = sorted(",
        (ERASURE + "test_a_legal_hold_blocks_erase_until_released",),
    ),
    Mutation(
        "ingest: new copies of an erased call keep their keys",
        "pipeline/store/merge.py",
        '    if current.get("Erased") is None:\n        return []',
        "    return []",
        (ERASURE + "test_erase_user_leaves_nothing_of_theirs_recoverable_even_through_replay",),
    ),
    Mutation(
        "ingest: previews not sealed",
        "pipeline/ingest/batch.py",
        "            if cfg.archive_encryption:\n                seal_previews(state)",
        "            if False:\n                seal_previews(state)",
        (ERASURE + "test_sealed_archive_keeps_no_prompt_readable_and_show_opens_it",),
    ),
    Mutation(
        "ingest: a prompt that looks sealed is stored as it is",
        "pipeline/ingest/batch.py",
        "            if p is None:\n",
        "            if p is None or p.sealed:\n",
        (ERASURE + "test_a_prompt_that_looks_sealed_is_sealed_too",),
    ),
    Mutation(
        "ingest: a redelivery reseals the row's previews",
        "pipeline/call/join.py",
        "            _keep_sealed_previews(state, rank_of(existing), incoming)\n",
        "",
        (ERASURE + "test_redelivery_of_a_sealed_batch_rewrites_no_row",),
    ),
    Mutation(
        "ingest: an archived claim honoured for any body",
        "pipeline/ingest/archived.py",
        "        if archive.member_event(opened, p).body != event.body:",
        "        if False:",
        ("tests/test_hostile.py::test_a_genuine_archived_property_is_honoured",),
    ),
    Mutation(
        "replay --to-eventhub: sealed members sent sealed, erased ones too",
        "pipeline/cli/replay.py",
        "                    if (ev := opened(ev)) is not None:",
        "                    if True:",
        (
            ERASURE
            + "test_republishing_a_sealed_archive_sends_records_opened_and_never_erased_ones",
        ),
    ),
    Mutation(
        "encryption: one nonce for record and previews",
        "pipeline/protect/encryption.py",
        'NONCE_COMPLETION = bytes(NONCE_BYTES - 1) + b"\\x02"',
        "NONCE_COMPLETION = NONCE_PROMPT",
        (ERASURE + "test_sealed_content_opens_only_where_it_was_sealed",),
    ),
    Mutation(
        "store: transactions sized by Azure's entity size, not by the bytes sent",
        "pipeline/store/limits.py",
        "        n = max(wire_size(item[1]), entity_size(item[1])) + TRANSACTION_OP_OVERHEAD",
        "        n = entity_size(item[1]) + TRANSACTION_OP_OVERHEAD",
        (LIMITS + "::test_rows_of_non_ascii_text_are_written_in_transactions_azure_accepts",),
    ),
    Mutation(
        "store: the join state kept inline by its characters, not UTF-16 units",
        "pipeline/store/rows.py",
        "    if limits.utf16_units(fragments) <= FRAGMENTS_INLINE_UNITS:",
        "    if len(fragments) <= FRAGMENTS_INLINE_UNITS:",
        (LIMITS + "::test_a_join_state_of_astral_characters_is_compressed_and_its_batch_stored",),
    ),
    Mutation(
        "join: a record that loses to a rival is not archived",
        "pipeline/call/join.py",
        "        state.displaced.setdefault(frag.rid, frag)",
        "        pass",
        (
            H + "test_a_forged_rival_record_is_archived_and_the_row_says_it_is_contested",
            H + "test_message_chunks_past_those_kept_are_archived",
        ),
    ),
    Mutation(
        "join: a kept chunk displaced by a lower one is dropped",
        "pipeline/call/join.py",
        "            _displace(state, state.call.fragments.pop(key))\n",
        "            state.call.fragments.pop(key)\n",
        (ERASURE + "test_records_in_no_fragment_are_shown_erased_and_stay_erased_on_replay",),
    ),
    Mutation(
        "join: rivals not counted",
        "pipeline/call/join.py",
        "    state.rivals.add(rival)\n",
        "    return False\n",
        (H + "test_a_forged_rival_record_is_archived_and_the_row_says_it_is_contested",),
    ),
    Mutation(
        "join: the rivals of a batch not merged into the stored row",
        "pipeline/call/join.py",
        "    for rival in sorted(other.rivals):\n        changed |= _rival(state, rival)\n",
        "",
        (H + "test_rivals_in_a_batch_merged_into_a_stored_row_are_counted",),
    ),
    Mutation(
        "join: a chunk past those kept keeps its rivals",
        "pipeline/call/join.py",
        "            state.rivals = {r for r in state.rivals if r[0] != key}\n",
        "",
        (H + "test_rivals_of_a_chunk_past_those_kept_do_not_count_whatever_the_order",),
    ),
    Mutation(
        "erase: other records a row knows are not erased",
        "pipeline/call/join.py",
        "    return kept + list(state.others.values()) + state.aside",
        "    return kept + state.aside",
        (ERASURE + "test_a_losing_rival_archived_days_later_is_erased_too",),
    ),
    Mutation(
        "show: other records not shown",
        "pipeline/cli/show.py",
        '    pointed += [(f"other {rid}", p) for rid, p in sorted(state.others.items())]\n',
        "",
        (ERASURE + "test_records_in_no_fragment_are_shown_erased_and_stay_erased_on_replay",),
    ),
    Mutation(
        "store: a refused merged row fails the batch",
        "pipeline/store/audit.py",
        "                if _refused(exc):\n                    out = _split(",
        "                if False:\n                    out = _split(",
        (LIMITS + "::test_a_refused_merge_dead_letters_the_new_records_and_keeps_the_row",),
    ),
    Mutation(
        "store: a refused row across midnight deletes the call's row",
        "pipeline/store/audit.py",
        "        if stats.refused:\n            return stats",
        "        if False:\n            return stats",
        (LIMITS + "::test_a_refused_row_across_midnight_leaves_the_calls_row_under_the_other_day",),
    ),
    Mutation(
        "store: a refused merge of an erased call keeps the new copy's keys",
        "pipeline/store/audit.py",
        "                    out.shred += stats.shred",
        "                    pass",
        (ERASURE + "test_a_refused_late_record_of_an_erased_call_stays_unreadable",),
    ),
    Mutation(
        "ingest: a refused erased call's records kept as dead letters",
        "pipeline/ingest/batch.py",
        "        if any((p.blob, p.offset) in shredded for p in archived_pointers(state)):",
        "        if False:",
        (ERASURE + "test_a_refused_late_record_of_an_erased_call_stays_unreadable",),
    ),
    Mutation(
        "stream: a legacy Completion's streamed text not read",
        "pipeline/call/stream.py",
        '    elif isinstance(choice.get("text"), str):\n        # A streamed legacy Completion',
        "    elif False:\n        # A streamed legacy Completion",
        (
            "tests/test_parsing.py::test_a_streamed_legacy_completion_without_usage_estimates_its_outpu"
            "t",
        ),
    ),
    Mutation(
        "bodies: a lone surrogate escape leaves a body unread",
        "pipeline/call/bodies.py",
        "    fixed = safejson.without_lone_surrogates(raw)\n",
        "    fixed = None\n",
        (H + "test_a_lone_surrogate_escape_neither_hides_a_body_nor_dead_letters_an_event",),
    ),
    Mutation(
        "envelope: a lone surrogate escape dead-letters the whole event",
        "pipeline/sources/envelope.py",
        "        doc = _without_lone_surrogates(data)\n",
        "        doc = None\n",
        (H + "test_a_lone_surrogate_escape_neither_hides_a_body_nor_dead_letters_an_event",),
    ),
    Mutation(
        "capture: a damaged sync marker costs the next block too",
        "pipeline/sources/capture_avro.py",
        "    if isinstance(bad, BadMarker) and not _marker_before(buf, sync, start, bad.after):",
        "    if False:",
        ("tests/test_replay.py::test_replay_keeps_going_past_every_kind_of_bad_input",),
    ),
    Mutation(
        "capture: a block's own size trusted after a damaged marker",
        "pipeline/sources/capture_avro.py",
        "    if isinstance(bad, BadMarker) and not _marker_before(buf, sync, start, bad.after):",
        "    if isinstance(bad, BadMarker):",
        ("tests/test_replay.py::test_replay_keeps_going_past_every_kind_of_bad_input",),
    ),
    Mutation(
        "store: a row Table storage refuses fails the batch",
        "pipeline/store/audit.py",
        "    return exc.status_code == 413 or",
        "    return False and",
        (LIMITS + "::test_a_row_table_storage_refuses_is_dead_lettered_and_the_rest_stored",),
    ),
    Mutation(
        "redaction: only the lower-case `properties` member protected",
        "pipeline/protect/records.py",
        "        if key_kind(key) == PROPERTIES:\n",
        '        if key == "properties":\n',
        (DUP_PROPERTIES,),
    ),
    Mutation(
        "redaction: a `properties` member inside `properties` archived as logged",
        "pipeline/protect/records.py",
        "            kind = FREE  # a `properties` inside `properties`: no level the parser",
        "            pass  # a `properties` inside `properties`: no level the parser",
        (NESTED_PROPERTIES,),
    ),
    Mutation(
        "redaction: ARCHIVE_CAPTURE=metadata keeps the free text that redacted masks",
        "pipeline/protect/records.py",
        '    redacted = capture.archive != "full"\n',
        '    redacted = capture.archive == "redacted"\n',
        (METADATA_FREE_TEXT, DUP_PROPERTIES),
    ),
    Mutation(
        "redaction: a stream's refusal and reasoning deltas not joined",
        "pipeline/protect/streams.py",
        '_DELTA_TEXT = ("content", "refusal", "reasoning_content")\n',
        '_DELTA_TEXT = ("content",)\n',
        (STREAM_FIELDS, STREAM_REFUSAL),
    ),
    Mutation(
        "redaction: legacy Completions stream text (choices[].text) not joined",
        "pipeline/protect/streams.py",
        '        if isinstance(choice.get("text"), str):\n',
        "        if False:\n",
        (STREAM_FIELDS,),
    ),
    Mutation(
        "redaction: Responses API deltas other than output text not joined",
        "pipeline/protect/streams.py",
        '    if isinstance(doc.get("delta"), str):\n',
        '    if doc.get("type") == "response.output_text.delta" and isinstance(\n'
        '        doc.get("delta"), str\n    ):\n',
        (STREAM_FIELDS,),
    ),
    Mutation(
        "redaction: stream chunks' values outside the deltas not walked",
        "pipeline/protect/masking.py",
        "        docs = [doc for _, doc, _ in blocks if doc is not None]\n",
        "        docs: list[Any] = []\n",
        (STREAM_FIELDS,),
    ),
    Mutation(
        "redaction: a stream's event: lines kept as logged",
        "pipeline/protect/masking.py",
        "                    event_line = names[event_line]\n",
        "                    pass\n",
        (STREAM_FIELDS,),
    ),
    Mutation(
        "redaction: log probabilities walked as text (their tokens' bytes arrays kept)",
        "pipeline/protect/masking.py",
        '    return key == "logprobs" and isinstance(value, dict | list) and len(value) > 0\n',
        "    return False\n",
        (LOGPROBS,),
    ),
    Mutation(
        "redaction: client-written role/type/id/model values skipped again",
        "pipeline/protect/masking.py",
        "            out.append(k)  # a member's name is text (an address, a key)\n"
        "        if isinstance(v, str):\n",
        "            out.append(k)  # a member's name is text (an address, a key)\n"
        '        if isinstance(v, str) and k not in ("role", "type", "id", "model"):\n',
        (MACHINE_KEYS,),
    ),
    Mutation(
        "redaction: digits other than ASCII not read as ASCII (a full-width phone kept)",
        "pipeline/protect/reading.py",
        "        text = text.translate(_fold_table())\n",
        "        pass\n",
        (UNICODE_CORPUS, UNICODE_STORED),
    ),
    Mutation(
        "redaction: the prefilter skips text whose only digits are not ASCII",
        "pipeline/protect/policy.py",
        "        if needs_fold(text):\n            return True\n",
        "        if False:\n            return True\n",
        (UNICODE_CORPUS, UNICODE_STORED),
    ),
    Mutation(
        "hostile: credential plans cached for key sets of any size",
        "pipeline/protect/credentials.py",
        "    cacheable = len(keys) <= _PLAN_KEYS and sum(map(len, keys)) <= _PLAN_KEY_CHARS\n",
        "    cacheable = True\n",
        (PLANS_MEMORY,),
    ),
    Mutation(
        "hostile: key classifications cached for keys of any length",
        "pipeline/protect/fields.py",
        "        kind = _classify(key)\n        if len(key) <= _KIND_KEY_CHARS:\n",
        "        kind = _classify(key)\n        if True:\n",
        (KINDS_MEMORY,),
    ),
    Mutation(
        "hostile: percent-encoded URL secret names kept (subscription%2Dkey=)",
        "pipeline/protect/credentials.py",
        '    return _ENCODED_PARAM.sub(_encoded_secret, url) if "%" in url else url\n',
        "    return url\n",
        (PCT_NAMES, PCT_STORED),
    ),
    Mutation(
        "usage: token counts no call can have kept",
        "pipeline/call/usage.py",
        "    return n if n is None or n <= MAX_CALL_TOKENS else None",
        "    return n",
        (
            "tests/test_kpi.py::test_token_counts_no_call_can_have_neither_fail_ingest_nor_stop_the_kpi"
            "s",
        ),
    ),
    Mutation(
        "rollup: a tampered row's token counts summed",
        "pipeline/kpi/rollup.py",
        "    return n if n is None or 0 <= n <= MAX_CALL_TOKENS else None",
        "    return n",
        (
            "tests/test_kpi.py::test_token_counts_no_call_can_have_neither_fail_ingest_nor_stop_the_kpi"
            "s",
        ),
    ),
    Mutation(
        "rollup: names made up on failing calls count against the answered ones' cap",
        "pipeline/kpi/rollup.py",
        "        seen = folded.seen.setdefault((column, True), set()) if failed else answered",
        "        seen = answered",
        (
            "tests/test_chargeback.py::"
            "test_made_up_names_on_failing_calls_push_no_answered_deployment_out_of_its_team",
        ),
    ),
    Mutation(
        "kpi: CSV cells written as logged (formulas)",
        "pipeline/kpi/report.py",
        "    writer.writerows({k: spreadsheet_text(v) for k, v in ln.items()} for ln in lines)",
        "    writer.writerows(lines)",
        ("tests/test_kpi.py::test_names_clients_write_are_inert_in_kpi_csv_tables_and_charts",),
    ),
    Mutation(
        "render: control characters sent to the terminal",
        "pipeline/common/render.py",
        "    return terminal_text(str(value))",
        "    return str(value)",
        ("tests/test_kpi.py::test_names_clients_write_are_inert_in_kpi_csv_tables_and_charts",),
    ),
    Mutation(
        "kpi --chart: a name's $ read as math text",
        "pipeline/kpi/report.py",
        '    text = str(terminal_text(name)).replace("$", r"\\$")',
        "    text = str(terminal_text(name))",
        ("tests/test_kpi.py::test_names_clients_write_are_inert_in_kpi_csv_tables_and_charts",),
    ),
    Mutation(
        "ingest: an erased call's new copies past the 32 a row remembers keep their keys",
        "pipeline/call/join.py",
        "    return kept + list(state.others.values()) + state.aside",
        "    return kept + list(state.others.values())",
        (ERASURE + "test_records_in_no_fragment_are_shown_erased_and_stay_erased_on_replay",),
    ),
    Mutation(
        "join: the records a row remembers unbounded",
        "pipeline/call/join.py",
        "    if len(state.others) > MAX_OTHERS:",
        "    if False:",
        (ERASURE + "test_records_in_no_fragment_are_shown_erased_and_stay_erased_on_replay",),
    ),
    Mutation(
        "usage: a total past what a call can have kept",
        "pipeline/call/usage.py",
        "    return _plausible(total)\n",
        "    return total\n",
        (
            "tests/test_kpi.py::test_token_counts_no_call_can_have_neither_fail_ingest_nor_stop_the_kpi"
            "s",
        ),
    ),
    Mutation(
        "rollup: negative token counts of a tampered row summed",
        "pipeline/kpi/rollup.py",
        "    return n if n is None or 0 <= n <= MAX_CALL_TOKENS else None",
        "    return n if n is None or n <= MAX_CALL_TOKENS else None",
        (
            "tests/test_kpi.py::test_token_counts_no_call_can_have_neither_fail_ingest_nor_stop_the_kpi"
            "s",
        ),
    ),
    Mutation(
        "show: a preview's escape sequences sent to the terminal",
        "pipeline/cli/show.py",
        '        print(f"  {key.ljust(width)}  {terminal_text(str(value))}")',
        '        print(f"  {key.ljust(width)}  {value}")',
        ("tests/test_cli.py::test_show_sends_no_escape_sequence_a_client_wrote",),
    ),
    Mutation(
        "credentials: a percent-encoded name may run past a `?` (quadratic)",
        "pipeline/protect/credentials.py",
        '_ENCODED_PARAM = re.compile(r"([?&#]([^=&#?\\s\\"%]*+%[^=&#?\\s\\"]*+)=)[^&#\\s\\"]*")',
        '_ENCODED_PARAM = re.compile(r"([?&#]([^=&#\\s\\"%]*+%[^=&#\\s\\"]*+)=)[^&#\\s\\"]*")',
        ("tests/test_detectors_adversarial.py::test_scrubbing_percent_encoded_names_is_linear",),
    ),
    Mutation(
        "redaction: a stream's id: and comment lines neither redacted nor kept",
        "pipeline/protect/streams.py",
        "            elif line:\n                head.append(line)",
        '            elif line.startswith("event:"):\n                head.append(line)',
        (RH + "test_a_streams_id_and_comment_lines_are_redacted_and_kept",),
    ),
    Mutation(
        "redaction: CJK and Thai letters are word characters at a match's edges",
        "pipeline/protect/boundaries.py",
        '    r"[^\\W\\u0e00-\\u0e7f\\u3040-\\u30ff\\u3400-\\u4dbf\\u4e00-\\u9fff"',
        '    r"[^\\W"',
        (RH + "test_numbers_and_addresses_glued_to_words_of_scripts_without_spaces_are_masked",),
    ),
    Mutation(
        "redaction: an e-mail domain ends at a Unicode word boundary",
        "pipeline/protect/detectors.py",
        '[{_LETTER}]{{2,}}(?![{_LETTER}0-9_])"',
        '[{_LETTER}]{{2,}}\\b"',
        (RH + "test_numbers_and_addresses_glued_to_words_of_scripts_without_spaces_are_masked",),
    ),
]


# --- running --------------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    pass


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted  # unwinds through the `finally` blocks that restore files


@contextmanager
def scratch_copy() -> Iterator[Path]:
    """The repository without .git and caches, with node_modules linked (Azurite)."""
    top = Path(tempfile.mkdtemp(prefix="mutations-"))
    try:
        root = top / "repo"
        shutil.copytree(
            REPO,
            root,
            ignore=shutil.ignore_patterns(
                ".git",
                ".venv",
                ".venv-*",
                "node_modules",
                "__pycache__",
                ".pytest_cache",
                ".ruff_cache",
                ".hypothesis",
                "out",
            ),
            symlinks=True,
        )
        if (REPO / "node_modules").exists():
            (root / "node_modules").symlink_to(REPO / "node_modules")
        yield root
    finally:
        shutil.rmtree(top, ignore_errors=True)


@contextmanager
def mutated(root: Path, m: Mutation) -> Iterator[str | None]:
    """Apply `m` in the copy; yields None when applied, else why it could not be. The file is
    restored on the way out, whatever happened."""
    path = root / m.file
    if not path.exists():
        yield f"file {m.file} not found"
        return
    original = path.read_text()
    count = original.count(m.old)
    if count != 1:
        yield "snippet not found" if count == 0 else f"snippet found {count} times"
        return
    source = original.replace(m.old, m.new, 1)
    try:
        compile(source, str(path), "exec")
    except SyntaxError as exc:
        yield f"mutation does not compile: {exc}"
        return
    try:
        path.write_text(source)
        yield None
    finally:
        path.write_text(original)


def run_tests(root: Path, tests: tuple[str, ...], cache: Path) -> dict[str, str]:
    """pytest on `tests` in `root`: outcome per named test or file (FAILED, ERROR, passed,
    skipped, not run), from the JUnit report."""
    report = cache / "report.xml"
    report.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(cache / "pyc"), PYTHONDONTWRITEBYTECODE="1")
    cmd = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    cmd += ["-o", "addopts=", *tests]
    with open(cache / "pytest.log", "w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=TIMEOUT)
        except BaseException:
            # Ctrl-C reached pytest too (same process group); SIGTERM did not: pass it on.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
    cases: list[tuple[str, str]] = []
    if report.exists():
        for case in ET.parse(report).getroot().iter("testcase"):
            module = case.get("classname", "").replace(".", "/") + ".py"
            name = case.get("name", "").split("[", 1)[0]
            outcome = "passed"
            for child in case:
                if child.tag == "failure":
                    outcome = "FAILED"
                elif child.tag == "error" and outcome != "FAILED":
                    outcome = "ERROR"
                elif child.tag == "skipped" and outcome == "passed":
                    outcome = "skipped"
            cases.append((f"{module}::{name}", outcome))
    if not cases:
        tail = (cache / "pytest.log").read_text(errors="replace").splitlines()[-15:]
        print("  pytest ran no test:\n    " + "\n    ".join(tail), flush=True)
    results = {}
    for test in tests:
        mine = [o for nodeid, o in cases if nodeid == test or nodeid.startswith(test + "::")]
        for outcome in ("FAILED", "ERROR", "passed", "skipped"):
            if outcome in mine:
                results[test] = outcome
                break
        else:
            results[test] = "not run"
    return results


def short(test: str) -> str:
    return test.removeprefix("tests/")


def main(argv: list[str]) -> int:
    names = [a.lower() for a in argv if not a.startswith("-")]
    selected = [m for m in MUTATIONS if not names or any(n in m.name.lower() for n in names)]
    if "--list" in argv:
        for m in MUTATIONS:
            print(f"{m.name}  [{m.file}]  → {', '.join(short(t) for t in m.tests)}")
        return 0
    signal.signal(signal.SIGTERM, _on_sigterm)
    problems = 0
    rows: list[tuple[str, str, str]] = []
    started = time.monotonic()
    with scratch_copy() as root, tempfile.TemporaryDirectory(prefix="mutations-run-") as tmp:
        cache = Path(tmp)
        named = tuple(dict.fromkeys(t for m in selected for t in m.tests))
        print(f"baseline: {len(named)} tests unmutated ...", flush=True)
        base = run_tests(root, named, cache)
        for test, outcome in base.items():
            if outcome != "passed":
                problems += 1
                rows.append(("(baseline, no mutation)", short(test), f"{outcome} (should pass)"))
        for i, m in enumerate(selected, 1):
            print(f"[{i}/{len(selected)}] {m.name} ...", flush=True)
            with mutated(root, m) as trouble:
                if trouble is not None:
                    problems += 1
                    rows.append((m.name, f"{m.file}: {trouble}", "NOT RUN"))
                    continue
                results = run_tests(root, m.tests, cache)
            for test in m.tests:
                outcome = results[test]
                if outcome in ("FAILED", "ERROR"):
                    verdict = outcome
                else:
                    problems += 1
                    verdict = f"{outcome} (should fail)"
                rows.append((m.name, short(test), verdict))
    widths = [max(len(r[i]) for r in [("Mutation", "Test", "Result"), *rows]) for i in range(3)]
    print()
    for r in [("Mutation", "Test", "Result"), tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    minutes = (time.monotonic() - started) / 60
    print(f"\n{len(selected)} mutations, {problems} problem(s), {minutes:.1f} min")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Credentials removed from every record before it is archived, dead-lettered or turned into
a row, under every capture setting: credential headers dropped, secrets in URLs (query and
fragment) replaced by `[REMOVED]`. The live request is never touched: we only see logs of it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from pipeline.common.values import json_object
from pipeline.protect.fields import CREDENTIAL, CREDENTIAL_HEADERS, HEADERS, URL, key_kind

# Query (and fragment: OAuth implicit flow) parameters that carry keys, tokens, passwords or
# signatures: APIM subscription and AOAI keys, OAuth tokens and codes, storage SAS `sig`,
# S3 and GCS presigned-URL signatures, session ids. Names match whole, in any case. A list of
# literals then one character class: no nested quantifier, linear time.
_SECRET_NAMES = (
    r"(?:access|id|refresh|auth|session|x-amz-security)[-_]?token|token"
    r"|client[-_]?secret|secret|password|passwd|pwd"
    r"|(?:api|subscription)[-_]?key|key|sig|signature|x-amz-signature|x-goog-signature"
    r"|code|auth|session(?:[-_]?id)?"
)
_URL_SECRET = re.compile(r"([?&#](?:" + _SECRET_NAMES + r")=)[^&#\s\"]*", re.IGNORECASE)
# A parameter whose name is percent-encoded (`subscription%2Dkey=`, `%73ig=`): servers decode
# names before reading them, so the name is compared once decoded. The name cannot run past
# the next `=`, `&`, `#` or `?` (each of which may start a name: a name running past one was
# scanned again from it, quadratic on `?%?%?%…`): linear time, and Python work only for
# names holding a `%`.
_ENCODED_PARAM = re.compile(r"([?&#]([^=&#?\s\"%]*+%[^=&#?\s\"]*+)=)[^&#\s\"]*")
_SECRET_NAME = re.compile(_SECRET_NAMES, re.IGNORECASE)
# Longest name that can decode to a secret name: "x-amz-security-token", each byte as %XX.
_ENCODED_NAME_MAX = 3 * 24
REMOVED = "[REMOVED]"


def scrub_url(url: str) -> str:
    if "=" not in url:
        return url
    url = _URL_SECRET.sub(lambda m: m.group(1) + REMOVED, url)
    return _ENCODED_PARAM.sub(_encoded_secret, url) if "%" in url else url


def _encoded_secret(m: re.Match[str]) -> str:
    name = m.group(2)
    if len(name) <= _ENCODED_NAME_MAX and _SECRET_NAME.fullmatch(unquote(name)):
        return m.group(1) + REMOVED
    return m.group()


def _scrub_headers(headers: Any) -> Any:
    decoded = json_object(headers) if isinstance(headers, str) else headers
    if not isinstance(decoded, dict):
        return headers
    if not any(k.lower() in CREDENTIAL_HEADERS for k in decoded):
        return decoded
    return {k: v for k, v in decoded.items() if k.lower() not in CREDENTIAL_HEADERS}


# What credential scrubbing reads (fields.key_kind): the rest of a record is left alone.
_SCRUBBED = frozenset({CREDENTIAL, HEADERS, URL})


# Records of one source share their set of keys: which of them need a look is worked out
# once per key set. The cache lives as long as the process and its keys are the senders': it
# keeps only key sets of the size real records have (APIM records hold a few dozen keys) and
# starts again when full, so it holds at most _PLANS_MAX x _PLAN_KEY_CHARS characters of
# names (a few MB at the very worst) whatever senders do; a larger key set is planned on each
# record, in time linear in it.
_PLANS: dict[tuple[str, ...], tuple[tuple[str, int], ...]] = {}
_PLANS_MAX = 256
_PLAN_KEYS = 128
_PLAN_KEY_CHARS = 4_096  # all the names of a key set together


def _scrub_level(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` without credentials: the same dict when it holds none (most records)."""
    keys = tuple(obj)
    cacheable = len(keys) <= _PLAN_KEYS and sum(map(len, keys)) <= _PLAN_KEY_CHARS
    plan = _PLANS.get(keys) if cacheable else None
    if plan is None:
        plan = tuple((k, kind) for k in keys if (kind := key_kind(k)) in _SCRUBBED)
        if cacheable:
            if len(_PLANS) >= _PLANS_MAX:
                _PLANS.clear()  # the key sets in use come back at once
            _PLANS[keys] = plan
    changes: dict[str, Any] = {}
    for key, kind in plan:
        value = obj[key]
        if kind == CREDENTIAL:
            changes[key] = _DROPPED
        elif kind == HEADERS:
            new = _scrub_headers(value)
            if new is not value:
                changes[key] = new
        elif isinstance(value, str):
            new = scrub_url(value)
            if new != value:
                changes[key] = new
    if not changes:
        return obj
    return {k: changes.get(k, v) for k, v in obj.items() if changes.get(k) is not _DROPPED}


_DROPPED = object()


def scrub_credentials(record: dict[str, Any]) -> dict[str, Any]:
    """`record` without credential headers or URL keys (top level and properties); the record
    itself is never changed (a copy is made where something goes)."""
    out = _scrub_level(record)
    for key, value in list(out.items()):
        if key.lower() == "properties":
            if isinstance(value, str):
                value = json_object(value)
            if isinstance(value, dict):
                scrubbed = _scrub_level(value)
                if scrubbed is not out[key]:
                    if out is record:
                        out = dict(record)
                    out[key] = scrubbed
    return out

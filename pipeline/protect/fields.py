"""Which record fields hold what: credentials, the caller's address, messages, bodies, text.

Credential scrubbing (credentials.py) and the archive record (records.py) both read a record's
keys through `key_kind`: one classification, so the two cannot disagree about a field.
"""

from __future__ import annotations

# Headers (and fields of a policy's own message) that carry a credential: never stored.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "ocp-apim-subscription-key",
        "ocp-apim-trace-key",
        "cookie",
        "set-cookie",
        "x-functions-key",
    }
)
# Fields holding request/response bodies or messages, in any of the sources (lower-case).
BODY_FIELDS = frozenset(
    {
        "requestbody", "responsebody", "backendrequestbody", "backendresponsebody",
        "request", "response", "messages", "prompt", "choices",
    }
)  # fmt: skip
MESSAGE_FIELDS = frozenset({"requestmessages", "responsemessages"})
# Who called, kept as logged under `redacted`: the audit needs them, and the row's CallerIp is
# derived from them (CALLER_IP_MODE governs both).
CALLER_IP_FIELDS = frozenset(
    {"calleripaddress", "callerip", "forwardedfor", "clientip", "requestip", "x-forwarded-for"}
)
# Record fields that can hold free text (bodies, URLs, headers, errors, traces, the common
# schema's `identity`: the caller's claims, names and addresses among them); the others are
# identifiers, numbers and names the audit keeps as logged (an object or list under one of
# them is free text all the same: protect/records.py).
FREE_TEXT = BODY_FIELDS | {"lasterror", "errors", "error", "tracerecords", "identity"}

# What a key holds. URL is free text that credential scrubbing also reads (secrets in the query).
OTHER, CREDENTIAL, PROPERTIES, CALLER_IP, MESSAGES, HEADERS, BODY, URL, FREE = range(9)


# Record keys repeat in every record: each is classified once. A sender chooses the keys, and
# the cache lives as long as the process: only short ones are kept (real keys are names like
# "backendResponseBody"), at most _KINDS_MAX of them, so it holds at most 256 K characters
# whatever senders do (an lru_cache of any key kept 4,096 keys of 200 KB: 800 MB).
_KINDS: dict[str, int] = {}
_KINDS_MAX = 4_096
_KIND_KEY_CHARS = 64


def key_kind(key: str) -> int:
    kind = _KINDS.get(key)
    if kind is None:
        kind = _classify(key)
        if len(key) <= _KIND_KEY_CHARS:
            if len(_KINDS) >= _KINDS_MAX:
                _KINDS.clear()  # the keys in use come back at once
            _KINDS[key] = kind
    return kind


def _classify(key: str) -> int:
    lk = key.lower()
    if lk in CREDENTIAL_HEADERS:
        return CREDENTIAL  # a policy that logged a credential as a field of its own
    if lk == "properties":
        return PROPERTIES
    if lk in CALLER_IP_FIELDS:
        return CALLER_IP
    if lk in MESSAGE_FIELDS:
        return MESSAGES
    if lk.endswith("headers"):
        return HEADERS
    if lk in BODY_FIELDS:
        return BODY
    if lk.endswith("url") or lk == "uri":
        return URL
    if lk in FREE_TEXT or lk.endswith(("uri", "message")):
        return FREE
    return OTHER


# Keys of a body's JSON (tool-call arguments, a JSON answer, `metadata`) whose string value is
# a secret whatever it looks like: "password": "correcthorse" holds nothing a detector finds
# once the walk has left the key behind. Compared without case and separators
# ("client_secret", "clientSecret", "DB-PASSWORD"); not "token" alone (log probabilities
# name each token so).
_SECRET_KEY_ENDINGS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "accesskey",
    "secretkey",
    "accountkey",
    "privatekey",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "sessiontoken",
    "bearertoken",
    "apitoken",
    "sastoken",
    "connectionstring",
    "subscriptionkey",
)
_SECRET_KEYS: dict[str, bool] = {}  # bounded like _KINDS, for the same reason
# Where a search for secret members in JSON text stops (detectors._SECRET_MEMBER, on the text
# lower-cased): the end of each name above, its last word with the three letters before it
# ("api_key" and "Access-Token" write their words apart), and "pwd". Not "key" or "token"
# alone: JSON text is full of them. `secret_key` then reads the whole name.
_LAST_WORDS = ("key", "token", "string")
SECRET_KEY_WORDS = tuple(
    dict.fromkeys(
        next(
            (
                f"{e[-len(w) - 3 : -len(w)]}[_\\-. ]{{0,3}}{w}"
                for w in _LAST_WORDS
                if e.endswith(w) and e != w
            ),
            e,
        )
        for e in (*_SECRET_KEY_ENDINGS, "pwd")
    )
)


# The last letter of every name above: a key ending otherwise names no secret, decided
# without the table (a body of thousands of distinct member names would thrash it).
_SECRET_LAST = frozenset(name[-1] for name in (*_SECRET_KEY_ENDINGS, "pwd"))


def secret_key(key: str) -> bool:
    """Whether a JSON key names a secret (`_SECRET_KEY_ENDINGS`, or "pwd")."""
    if key.rstrip("_- .")[-1:].lower() not in _SECRET_LAST:
        return False
    hit = _SECRET_KEYS.get(key)
    if hit is None:
        lk = key.lower().replace("_", "").replace("-", "").replace(" ", "").replace(".", "")
        hit = lk == "pwd" or lk.endswith(_SECRET_KEY_ENDINGS)
        if len(key) <= _KIND_KEY_CHARS:
            if len(_SECRET_KEYS) >= _KINDS_MAX:
                _SECRET_KEYS.clear()
            _SECRET_KEYS[key] = hit
    return hit

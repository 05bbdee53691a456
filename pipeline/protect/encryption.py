"""Encryption of what may hold personal data, so that erasing is destroying a key
(crypto-shredding): the WORM archive cannot delete a record, but it can lose the means to
read it. Pure: keys in, bytes out; where keys live is store/keys.py.

Key hierarchy (ARCHIVE_ENCRYPTION=on):
- a **data key** per archived record (32 random bytes, AES-256-GCM). It encrypts that record's
  content and the previews taken from it, nothing else: erasing a subject destroys exactly
  the data keys of that subject's records (a call's LLM-log chunks included: they are records
  of the call), and no other record loses anything;
- a **blob key** per archive blob (random), under which the data keys of the blob's records are
  kept, encrypted, in the blob's entity of ARCHIVE_KEYS_TABLE;
- the **key-encryption key** (ARCHIVE_KEK: Key Vault, or a local key for tests), which wraps
  each blob key: one wrap per archive blob, not per record.

Each data key encrypts at most three messages, each under its own fixed nonce (the record,
the prompt preview, the completion preview): a key never meets a nonce twice. The record's
correlation id and identity are bound in as associated data, so a ciphertext moved to another
member does not open there.
"""

from __future__ import annotations

import base64
import os
import zlib
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipeline.model import SEALED_TEXT

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
ALGORITHM = "A256GCM"
NONCE_RECORD = bytes(NONCE_BYTES)
NONCE_PROMPT = bytes(NONCE_BYTES - 1) + b"\x01"
NONCE_COMPLETION = bytes(NONCE_BYTES - 1) + b"\x02"
# What a sealed payload may inflate to: a member holds one record (an event is at most 1 MB).
MAX_PLAIN_BYTES = 16 * 1024 * 1024


class SealError(ValueError):
    """A ciphertext that does not open under the key given (wrong key, changed bytes)."""


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def seal(key: bytes, nonce: bytes, plain: bytes, aad: bytes) -> bytes:
    return AESGCM(key).encrypt(nonce, plain, aad)


def unseal(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce, sealed, aad)
    except (InvalidTag, ValueError):
        raise SealError("does not decrypt under its data key (changed, or another key)") from None


def _inflate(data: bytes) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MAX_PLAIN_BYTES + 1)
    except zlib.error:
        raise SealError("sealed content is not compressed as written") from None
    if len(out) > MAX_PLAIN_BYTES or not d.eof:
        raise SealError("sealed content inflates past its limit, or is cut short")
    return out


# --- archive members ----------------------------------------------------------------------------


def member_aad(correlation_id: str, rid: str) -> bytes:
    return f"{correlation_id}\n{rid}".encode("utf-8", "surrogatepass")


def seal_content(key: bytes, content: bytes, correlation_id: str, rid: str) -> str:
    """A member's secret part (record, partition key, origin), compressed then encrypted:
    ciphertext does not compress, so the compression has to come first."""
    sealed = seal(key, NONCE_RECORD, zlib.compress(content, 3), member_aad(correlation_id, rid))
    return base64.b64encode(sealed).decode()


def open_content(key: bytes, sealed_b64: Any, correlation_id: str, rid: str) -> dict[str, Any]:
    if not isinstance(sealed_b64, str):
        raise SealError("sealed member has no ciphertext")
    try:
        sealed = base64.b64decode(sealed_b64, validate=True)
    except ValueError:
        raise SealError("sealed member's ciphertext is not base64") from None
    plain = _inflate(unseal(key, NONCE_RECORD, sealed, member_aad(correlation_id, rid)))
    try:
        doc = orjson.loads(plain)
    except orjson.JSONDecodeError:
        raise SealError("sealed member's content is not JSON") from None
    if not isinstance(doc, dict):
        raise SealError("sealed member's content is not a JSON object")
    return doc


# --- previews ---------------------------------------------------------------------------------


def is_sealed(text: str | None) -> bool:
    return text is not None and text.startswith(SEALED_TEXT)


def _preview_nonce(which: str) -> bytes:
    return NONCE_PROMPT if which == "prompt" else NONCE_COMPLETION


def seal_text(key: bytes, text: str, which: str, correlation_id: str) -> str:
    """A preview, sealed under the data key of the record it was taken from."""
    sealed = seal(
        key,
        _preview_nonce(which),
        text.encode("utf-8", "surrogatepass"),
        correlation_id.encode("utf-8", "surrogatepass"),
    )
    return SEALED_TEXT + base64.b64encode(sealed).decode()


def open_text(key: bytes, text: str, which: str, correlation_id: str) -> str:
    try:
        sealed = base64.b64decode(text[len(SEALED_TEXT) :], validate=True)
    except ValueError:
        raise SealError("sealed preview is not base64") from None
    plain = unseal(
        key, _preview_nonce(which), sealed, correlation_id.encode("utf-8", "surrogatepass")
    )
    return plain.decode("utf-8", "replace")


# --- a blob's data keys, kept together under its blob key ----------------------------------------

ERASED_KEY = bytes(KEY_BYTES)  # where a destroyed data key was


def seal_keys(blob_key: bytes, keys: list[bytes], aad: bytes) -> bytes:
    """The data keys of a blob's members (in member order), encrypted under its blob key. A
    fresh nonce each time: the list is sealed again, under the same blob key, on erasure."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + seal(blob_key, nonce, b"".join(keys), aad)


def open_keys(blob_key: bytes, sealed: bytes, aad: bytes) -> list[bytes]:
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise SealError("sealed key list is cut short")
    plain = unseal(blob_key, sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], aad)
    if len(plain) % KEY_BYTES:
        raise SealError("sealed key list has a partial key")
    return [plain[i : i + KEY_BYTES] for i in range(0, len(plain), KEY_BYTES)]


# --- dead letters -------------------------------------------------------------------------------

# A sealed dead letter's content starts with this line; only our own dead-letter reader ever
# opens one (EventIn.sealed), so a sender writing these bytes gains nothing.
DEAD_LETTER_MAGIC = b"aoai-audit sealed dead letter v1\n"


def seal_dead_letter(key: bytes, wrapped: bytes, kek_id: str, body: bytes) -> bytes:
    """A dead letter's body under a data key (one per batch's dead letters), that key wrapped
    by the KEK and kept beside it (dead letters are not on the WORM archive: erasing one
    deletes its blob, not its key)."""
    nonce = os.urandom(NONCE_BYTES)
    header = orjson.dumps(
        {"alg": ALGORITHM, "kek": kek_id, "key": base64.b64encode(wrapped).decode()}
    )
    sealed = seal(key, nonce, zlib.compress(body, 3), DEAD_LETTER_MAGIC)
    return DEAD_LETTER_MAGIC + header + b"\n" + nonce + sealed


def dead_letter_header(data: bytes) -> tuple[str, bytes, bytes] | None:
    """(KEK id, wrapped key, the rest) of a sealed dead letter; None when it is not one."""
    if not data.startswith(DEAD_LETTER_MAGIC):
        return None
    head, sep, rest = data[len(DEAD_LETTER_MAGIC) :].partition(b"\n")
    try:
        doc = orjson.loads(head) if sep else None
        wrapped = base64.b64decode(doc["key"], validate=True)  # type: ignore[index]
        kek_id = str(doc["kek"])  # type: ignore[index]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise SealError("sealed dead letter has a damaged header") from None
    return kek_id, wrapped, rest


def open_dead_letter(key: bytes, rest: bytes) -> bytes:
    if len(rest) < NONCE_BYTES + TAG_BYTES:
        raise SealError("sealed dead letter is cut short")
    return _inflate(unseal(key, rest[:NONCE_BYTES], rest[NONCE_BYTES:], DEAD_LETTER_MAGIC))

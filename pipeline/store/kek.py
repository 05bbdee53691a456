"""The key-encryption key (ARCHIVE_KEK): wraps and unwraps blob keys (protect/encryption.py).

- `keyvault:https://<vault>.vault.azure.net/keys/<name>`: an RSA key in Azure Key Vault,
  used with RSA-OAEP-256 through the app's identity; the key never leaves the vault. Each
  wrap records the key version that made it, so rotating the key (a new version) leaves
  older blob keys readable for as long as their version is enabled.
- `local:<base64 of 32 bytes>`: AES key wrap (RFC 3394) in process, for local runs and tests.

One wrap per archive blob; unwraps are remembered per process (a replay or `show` of many
calls of one blob unwraps its key once).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections import OrderedDict
from typing import Any, Protocol

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from pipeline.settings import SettingsError


class KekError(ValueError):
    """A wrapped key that this KEK cannot unwrap (another key, a disabled version)."""


class Kek(Protocol):
    def wrap(self, key: bytes) -> tuple[str, bytes]:
        """(id of the key that wrapped it, the wrapped key)."""
        ...

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes: ...


class LocalKek:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        # Names the key without revealing it: a wrong ARCHIVE_KEK is told apart from damage.
        self.id = "local:" + hashlib.sha256(b"aoai-audit kek id\n" + secret).hexdigest()[:16]

    def wrap(self, key: bytes) -> tuple[str, bytes]:
        return self.id, aes_key_wrap(self._secret, key)

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        if kek_id != self.id:
            raise KekError(f"wrapped by {kek_id}, and ARCHIVE_KEK is {self.id}")
        try:
            return aes_key_unwrap(self._secret, wrapped)
        except (InvalidUnwrap, ValueError):
            raise KekError(f"does not unwrap under {self.id} (changed bytes)") from None


class KeyVaultKek:
    """Key Vault wrapKey/unwrapKey (azure-keyvault-keys, imported only when configured)."""

    def __init__(self, key_url: str) -> None:
        self.url = key_url
        self._clients: dict[str, Any] = {}

    def _client(self, key_id: str) -> Any:
        if key_id not in self._clients:
            from azure.identity import DefaultAzureCredential
            from azure.keyvault.keys.crypto import CryptographyClient

            self._clients[key_id] = CryptographyClient(key_id, DefaultAzureCredential())
        return self._clients[key_id]

    def wrap(self, key: bytes) -> tuple[str, bytes]:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        result = self._client(self.url).wrap_key(KeyWrapAlgorithm.rsa_oaep_256, key)
        return "keyvault:" + str(result.key_id), bytes(result.encrypted_key)

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        from azure.core.exceptions import HttpResponseError
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        # Only versions of the configured key: a wrapped key names its KEK, and a name read
        # from storage must not make us call a vault somebody else chose.
        own = "keyvault:" + self.url.rstrip("/")
        if kek_id != own and not kek_id.startswith(own + "/"):
            raise KekError(f"wrapped by {kek_id}, and ARCHIVE_KEK is {own}")
        try:
            result = self._client(kek_id[9:]).unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, wrapped)
        except HttpResponseError as exc:
            raise KekError(f"Key Vault refused to unwrap ({exc.status_code})") from None
        return bytes(result.key)


class Unwrapped:
    """A KEK with its unwraps remembered (bounded: a replay of a year unwraps many keys)."""

    LIMIT = 4096

    def __init__(self, kek: Kek) -> None:
        self.kek = kek
        self._seen: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def wrap(self, key: bytes) -> tuple[str, bytes]:
        return self.kek.wrap(key)

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        seen = (kek_id, wrapped)
        with self._lock:
            hit = self._seen.get(seen)
            if hit is not None:
                self._seen.move_to_end(seen)
                return hit
        key = self.kek.unwrap(kek_id, wrapped)
        with self._lock:
            self._seen[seen] = key
            while len(self._seen) > self.LIMIT:
                self._seen.popitem(last=False)
        return key


def kek_from(setting: str) -> Unwrapped:
    """The KEK an ARCHIVE_KEK value names (checked by settings; raises if it is empty)."""
    if setting.startswith("local:"):
        return Unwrapped(LocalKek(base64.b64decode(setting[6:])))
    if setting.startswith("keyvault:"):
        return Unwrapped(KeyVaultKek(setting[9:]))
    raise SettingsError(
        "ARCHIVE_KEK is not set: sealed archive members and dead letters cannot be written or "
        "read without it"
    )

"""Blob requests: create-if-absent writes (never an overwrite) and ranged reads, each through
the account's retry policy.

Create-only is what makes a redelivered batch harmless: the archive blob or dead letter it
would write is already there, and the write says so instead of replacing it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from pipeline.protect import encryption
from pipeline.store.deadletters import DeadLetterBlob, restated
from pipeline.store.retry import RetryPolicy

log = logging.getLogger("pipeline.store.blobs")


def create(
    retry: RetryPolicy,
    container: ContainerClient,
    name: str,
    data: bytes,
    *,
    metadata: dict[str, str] | None = None,
    content_type: str = "application/octet-stream",
) -> bool:
    """Create a blob; never overwrite. False when it already existed (a redelivery)."""
    try:
        retry.call(
            container.upload_blob,
            name,
            data,
            overwrite=False,
            metadata=metadata,
            content_settings=ContentSettings(content_type=content_type),
        )
        return True
    except ResourceExistsError:
        return False


def put_dead_letter(
    retry: RetryPolicy,
    container: ContainerClient,
    b: DeadLetterBlob,
    seal: Callable[[bytes], bytes] | None = None,
) -> bool:
    """Create the dead letter's blob (its content sealed by `seal`, when given); False when it
    already existed, and then its metadata says why it failed this time."""
    data, metadata = b.data, b.metadata
    if seal is not None:
        data, metadata = seal(b.data), {**b.metadata, "sealed": encryption.ALGORITHM}
    created = create(retry, container, b.name, data, metadata=metadata)
    if not created:
        client = container.get_blob_client(b.name)
        old = retry.call(lambda: client.get_blob_properties().metadata) or {}
        meta = restated(old, b.metadata)
        if meta is not None:
            retry.call(lambda: client.set_blob_metadata(meta))
    return created


# Dead letters of a batch logged one by one; the others in one line, by reason: a flood of
# junk events must not become a flood of log lines (each one ingested and billed).
LOGGED_DEAD_LETTERS = 20


def log_dead_letters(made: Sequence[DeadLetterBlob]) -> None:
    for b in made[:LOGGED_DEAD_LETTERS]:
        log.warning("dead letter %s: %s (%s)", b.name, b.metadata["reason"], b.metadata["origin"])
    rest = made[LOGGED_DEAD_LETTERS:]
    if rest:
        reasons = Counter(b.metadata["reason"] for b in rest).most_common(5)
        log.warning(
            "%d more dead letters in this batch, most for: %s",
            len(rest),
            "; ".join(f"{reason[:200]} ({n})" for reason, n in reasons),
        )


def read_range(
    retry: RetryPolicy, container: ContainerClient, name: str, offset: int, length: int
) -> bytes:
    return retry.call(lambda: container.download_blob(name, offset=offset, length=length).readall())


def read_member(
    retry: RetryPolicy, container: ContainerClient, name: str, offset: int, length: int
) -> bytes | None:
    """`length` bytes at `offset` of a blob; None when the blob or the range is not there
    (a pointer that an event property claims, checked before it is honoured)."""
    try:
        data = read_range(retry, container, name, offset, length)
    except ResourceNotFoundError:
        return None
    except HttpResponseError as exc:
        if exc.status_code in (400, 416):  # a range past the end of the blob
            return None
        raise
    return data if len(data) == length else None


def read_all(retry: RetryPolicy, container: ContainerClient, name: str) -> bytes:
    return retry.call(lambda: container.download_blob(name).readall())


def exists(retry: RetryPolicy, container: ContainerClient, name: str) -> bool:
    return bool(retry.call(container.get_blob_client(name).exists))

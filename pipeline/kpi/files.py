"""A document named by a setting (PRICE_TABLE, ATTRIBUTION, BUDGETS): a file path, or
`blob:CONTAINER/NAME` in the audit storage account. Read once per run, by whoever needs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

ReadBlob = Callable[[str, str], bytes]


class DocumentError(ValueError):
    """A setting names a document that cannot be read; the message names the setting."""


def read_document(setting: str, source: str, read_blob: ReadBlob | None) -> bytes:
    """The bytes of the document `source` names (never empty: callers handle "" themselves)."""
    if source.startswith("blob:"):
        container, _, name = source[5:].partition("/")
        if not container or not name or read_blob is None:
            raise DocumentError(f"{setting}={source!r}: expected blob:CONTAINER/NAME")
        return read_blob(container, name)
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise DocumentError(f"{setting}={source!r}: cannot read ({exc.strerror})") from None

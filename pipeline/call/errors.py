"""Why a call failed, and who said so (formats.md §5.8).

- ErrorSource `backend`: Azure OpenAI answered with an error (its 429 is the model's rate
  limit; body `{"error": {"code": "429", ...}}`).
- ErrorSource `gateway`: APIM answered itself, e.g. its token-limit policy's 429/403, a 401
  for a missing key (`lastError` says which policy; body `{"statusCode": 429, ...}`), or a
  policy error after the backend succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.common.values import string

MAX_MESSAGE = 500


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    code: str | None
    source: str
    message: str | None
    content_filtered: bool


def _str(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(int(value)) if float(value).is_integer() else str(value)
    return value if isinstance(value, str) and value else None


def aoai_error(doc: Any) -> dict[str, Any] | None:
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        return doc["error"]
    return None


def is_content_filter(error: dict[str, Any] | None) -> bool:
    if not error:
        return False
    inner = error.get("innererror")
    return error.get("code") == "content_filter" or (
        isinstance(inner, dict) and inner.get("code") == "ResponsibleAIPolicyViolation"
    )


def classify(
    status: int | None,
    backend_status: int | None,
    response: Any,
    last_error: dict[str, Any] | None,
    cut: str | None = None,
) -> ErrorInfo | None:
    """Error details of a failed call (status ≥ 400), else None. `cut`: the string of
    `response` the logging cut fell inside (bodies.Body.cut_tail), which names no code
    (`content_fil` of `content_filter`, `4` of `429`)."""
    if status is None or status < 400:
        return None
    error = aoai_error(response)

    def _code(value: Any) -> str | None:
        code = _str(value)
        return None if code is not None and code == cut else code

    if backend_status is not None and backend_status >= 400:
        code = (_code(error.get("code")) or _code(error.get("type"))) if error else None
        message = _str(error.get("message")) if error else None
        return ErrorInfo(
            code or str(backend_status),
            "backend",
            _clip(message),
            is_content_filter(error),
        )
    code = _str(last_error.get("reason")) if last_error else None
    message = _str(last_error.get("message")) if last_error else None
    if isinstance(response, dict):
        if error is not None:
            code = code or _code(error.get("code"))
            message = message or _str(error.get("message"))
        else:
            code = code or _code(response.get("statusCode"))
            message = message or _str(response.get("message"))
    return ErrorInfo(code or str(status), "gateway", _clip(message), is_content_filter(error))


def stream_error(error: dict[str, Any]) -> ErrorInfo:
    """The error event a stream ended in: the status (200) was sent before it, so the call
    failed at the backend after all."""
    return ErrorInfo(
        _str(error.get("code")) or "stream_error", "backend", string(error.get("message")), False
    )


def _clip(message: str | None) -> str | None:
    if message is None:
        return None
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"

"""Which Azure OpenAI operation a URL addresses, its deployment and api-version (formats.md §5.1).

Works on backend URLs (`https://x.openai.azure.com/openai/deployments/d/chat/completions`),
APIM frontend URLs with any API suffix, and the routes where the deployment is the request
body's `model` (any path without `/deployments/{name}`):
- Azure OpenAI v1 (`/openai/v1/chat/completions`, `/openai/v1/responses`, ...) and the
  Responses preview path (`/openai/responses?api-version=2025-04-01-preview`);
- the Azure AI Model Inference API of Foundry resources,
  `https://{resource}.services.ai.azure.com/models/chat/completions?api-version=2024-05-01-preview`
  (also `/models/embeddings` and `/models/images/embeddings`; `GET /models/info` is `other`),
  which routes "by matching the `model` parameter in the request to the name of the
  deployment" (learn.microsoft.com azure/ai-foundry/foundry-models/concepts/endpoints).
  APIM imports it as a `/models` API ("the request body includes the deployment name",
  learn.microsoft.com azure/api-management/azure-ai-foundry-api) whose operations are the
  REST spec's `GetChatCompletions`, `GetEmbeddings`, `GetImageEmbeddings`, `GetModelInfo`;
- Foundry project routes (`/api/projects/{project}/openai/responses`), serverless endpoints
  (`https://{name}.{region}.models.ai.azure.com/chat/completions`).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

OPERATIONS = (
    "chat.completions",
    "completions",
    "embeddings",
    "responses",
    "images",
    "audio",
    "fine_tuning",
    "files",
    "batches",
    "retrieval",
    "other",
)

_DEPLOYMENT = re.compile(r"/deployments/([^/?#]+)", re.IGNORECASE)
# Checked in order against the path with any `/deployments/{name}` removed.
_PATH_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"/chat/completions(?:/|$)"), "chat.completions"),
    (re.compile(r"/extensions/chat/completions(?:/|$)"), "chat.completions"),
    (re.compile(r"/completions(?:/|$)"), "completions"),
    (re.compile(r"/embeddings(?:/|$)"), "embeddings"),
    (re.compile(r"/responses(?:/|$)"), "responses"),
    (re.compile(r"/images(?:/|$)"), "images"),
    (re.compile(r"/audio(?:/|$)"), "audio"),
    (re.compile(r"/fine[_-]tun(?:ing|es)(?:/|$)"), "fine_tuning"),
    (re.compile(r"/files(?:/|$)"), "files"),
    (re.compile(r"/batches(?:/|$)"), "batches"),
)
# operationId values of the Azure OpenAI OpenAPI import in APIM (formats.md §1.2), lower-cased.
_OPERATION_IDS = {
    "chatcompletions_create": "chat.completions",
    "extensionschatcompletions_create": "chat.completions",
    "completions_create": "completions",
    "embeddings_create": "embeddings",
    "imagegenerations_create": "images",
    "images_generate": "images",
    "transcriptions_create": "audio",
    "translations_create": "audio",
    "speech_create": "audio",
    # Azure AI Model Inference API (stable 2025-04-01, preview 2024-05-01), as APIM imports it.
    "getchatcompletions": "chat.completions",
    "getembeddings": "embeddings",
    "getimageembeddings": "embeddings",
    # The OpenAI spec's operation ids (an `/openai/v1` API imported from it).
    "createchatcompletion": "chat.completions",
    "createcompletion": "completions",
    "createembedding": "embeddings",
    "createresponse": "responses",
    "responses_create": "responses",
    "createimage": "images",
    "createtranscription": "audio",
    "createtranslation": "audio",
    "createspeech": "audio",
}


def _path(url: str | None) -> str:
    if not url:
        return ""
    try:
        path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    except ValueError:
        path = url.split("?", 1)[0]
    return unquote(path)


def deployment_from_url(url: str | None) -> str | None:
    if not url:
        return None
    m = _DEPLOYMENT.search(_path(url))
    return m.group(1) if m else None


def api_version_from_url(url: str | None) -> str | None:
    if not url or "?" not in url:
        return None
    try:
        values = parse_qs(urlsplit(url).query).get("api-version")
    except ValueError:
        return None
    return values[0] if values else None


def operation_from_url(url: str | None) -> str | None:
    """The operation a URL addresses, or None when the path names none we know."""
    if not url:
        return None
    path = _path(url).lower()
    if not path:
        return None
    path = _DEPLOYMENT.sub("", path)
    for pattern, op in _PATH_RULES:
        if pattern.search(path):
            return op
    return None


# Image embeddings (`/models/images/embeddings`, APIM operation `getImageEmbeddings`): the
# `embeddings` operation, but an image's bytes are no text tokens.
_IMAGE_EMBEDDINGS = re.compile(r"/images/embeddings(?:/|$)")


def is_image_embeddings(backend_url: str | None, url: str | None, operation_id: str | None) -> bool:
    """True when the call is image embeddings, read from what named the operation (as
    `operation_from_url` then `operation_from_id` are tried): a client cannot make a text
    embeddings call pass for one by what its body holds."""
    for candidate in (backend_url, url):
        if operation_from_url(candidate) is not None:
            path = _DEPLOYMENT.sub("", _path(candidate).lower())
            return _IMAGE_EMBEDDINGS.search(path) is not None
    return (operation_id or "").lower() == "getimageembeddings"


def operation_from_id(operation_id: str | None) -> str | None:
    if not operation_id:
        return None
    return _OPERATION_IDS.get(operation_id.lower())


# What a call of a generating operation is when it creates no generation: a read, list, update,
# delete or cancel of something generated before. Azure OpenAI keeps chat completions created
# with `store: true` and Responses, and lets a client address them. Azure OpenAI REST reference
# (Foundry, v1), under https://learn.microsoft.com/en-us/azure/foundry/reference/rest/ :
#   GET    /openai/v1/chat/completions                        list stored completions
#   GET    /openai/v1/chat/completions/{completion_id}        retrieve one
#   GET    /openai/v1/chat/completions/{completion_id}/messages
#          (chat-generated-get-chat-completion-messages)
#   POST   /openai/v1/chat/completions/{completion_id}        update its metadata
#          (chat-generated-update-chat-completion: answers the stored completion, usage too)
#   DELETE /openai/v1/chat/completions/{completion_id}      (chat-generated-delete-chat-completion)
#   GET    /openai/v1/responses/{response_id}                 retrieve one, also `/input_items`
#   DELETE /openai/v1/responses/{response_id}                 (delete-response)
#   POST   /openai/v1/responses/{response_id}/cancel
# Responses retrieve: https://developers.openai.com/api/reference/resources/responses/methods/retrieve
# (GET /responses/{response_id}, which Azure's v1 API serves under /openai/v1), and the same
# under the preview paths (`/openai/chat/completions/...`, `/openai/responses/...`). A read's
# or an update's answer is the stored object itself, with the original's `id` and `usage`:
# taken for a generation, each read was billed the original's tokens and claimed its response
# id. One name for all of them, as each other operation names a family of endpoints:
# `retrieval` (the row's Method and Url say which endpoint).
RETRIEVAL = "retrieval"
# The operations whose creating request generates (and bills) tokens.
GENERATING = frozenset(
    {"chat.completions", "completions", "embeddings", "responses", "images", "audio"}
)
# A stored item of the two stored families, by its id (`chatcmpl-…`, `resp_…`: what the
# service names them), then `/messages`, `/input_items`, `/cancel` or nothing: a POST there
# creates nothing (an update, a cancel). By the id, not by any segment after the endpoint:
# `POST /responses/compact` generates (OpenAI's reference), and a path's other segments (a
# Foundry project named `responses`, `..`) are no stored item.
_STORED_ITEM = re.compile(r"/(?:chat/completions/chatcmpl-|responses/resp_)[^/]*(?:/[a-z_]+)?/?$")


def creates_generation(
    method: str | None, backend_url: str | None, url: str | None, operation: str
) -> bool | None:
    """Whether the request creates a generation, the only kind of call that has usage, a
    price and a response id of its own: a POST to a generating endpoint. False for every
    other method (a GET or DELETE generates nothing, whatever its answer reports: a stored
    completion, a batch or an Assistants run repeat the `usage` of work billed once), and
    for a POST to a stored item or to the jobs, files and batches endpoints. None when it
    cannot be told: the method is unknown (a record that does not log it), or a POST to a
    route this code does not know (`other`: a newer generating endpoint keeps its usage)."""
    method = method.strip().upper() if method else ""
    if not method:
        return None
    if method != "POST":
        return False
    if operation == "other":
        return None
    if operation not in GENERATING:
        return False
    # The path that named the operation (as `_operation` tries them) decides.
    for candidate in (backend_url, url):
        if operation_from_url(candidate) is not None:
            path = _DEPLOYMENT.sub("", _path(candidate).lower())
            return _STORED_ITEM.search(path) is None
    return True  # named by APIM's operation id: the creating operations only (_OPERATION_IDS)


def is_body_model_deployment(url: str | None) -> bool:
    """True for paths where the deployment is named by the body's `model`: every documented
    inference route without a `/deployments/{name}` segment (v1, Responses, `/models/...`)."""
    path = _path(url).lower()
    return bool(path) and "/deployments/" not in path

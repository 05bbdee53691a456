"""Every setting the project reads, in one list.

The same list feeds `local.settings.sample.json`, the Bicep app settings and the README's
settings table (`python -m pipeline settings --check` and a test keep them in sync).
Settings with ``scope="host"`` are read by the Functions host (trigger bindings), not by our
code; they are listed so that deployments and local runs set them too.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

# Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_CONNECTION = "UseDevelopmentStorage=true"


@dataclass(frozen=True, slots=True)
class Setting:
    name: str
    default: str
    doc: str
    scope: Literal["app", "host"] = "app"
    # Value written to local.settings.sample.json when it differs from the default.
    sample: str | None = None
    # Its name in Azure when it differs (identity-based connections use suffixed names); ""
    # when Azure does not take it; its own name when infra/ sets it from the resources it
    # deploys (function.bicep). infra/ sets every other setting from these defaults
    # (infra/app-settings.json).
    azure: str | None = None


SETTINGS: tuple[Setting, ...] = (
    # --- read by the Functions host -------------------------------------------------------
    Setting(
        "FUNCTIONS_WORKER_RUNTIME",
        "python",
        "Functions language worker (local runs only; Flex Consumption sets it in "
        "functionAppConfig).",
        scope="host",
        azure="",
    ),
    Setting(
        "AzureWebJobsStorage",
        "",
        "Host storage (leases, checkpoints, timer state). Azure: identity-based "
        "`AzureWebJobsStorage__accountName`.",
        scope="host",
        sample=AZURITE_CONNECTION,
        azure="AzureWebJobsStorage__accountName",
    ),
    Setting(
        "EventHubConnection",
        "",
        "Event Hubs connection for the trigger: a connection string, or (Azure) identity-based "
        "`EventHubConnection__fullyQualifiedNamespace`.",
        scope="host",
        sample="Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
        azure="EventHubConnection__fullyQualifiedNamespace",
    ),
    Setting(
        "EVENTHUB_NAME",
        "apim-logs",
        "Event Hub that APIM diagnostics and log-to-eventhub policies write to.",
        scope="host",
    ),
    Setting(
        "EVENTHUB_CONSUMER_GROUP",
        "audit-pipeline",
        "Consumer group the audit function reads with (its own, so other readers are unaffected).",
        scope="host",
    ),
    # --- read by the pipeline -------------------------------------------------------------
    Setting(
        "AUDIT_STORAGE_CONNECTION",
        "",
        "Connection string of the audit storage account (tables, raw archive, dead letters). "
        "Empty: use AUDIT_STORAGE_ACCOUNT with a managed identity, else Azurite.",
        sample=AZURITE_CONNECTION,
    ),
    Setting(
        "AUDIT_STORAGE_ACCOUNT",
        "",
        "Audit storage account name for identity-based access (DefaultAzureCredential; "
        "AZURE_CLIENT_ID selects a user-assigned identity).",
    ),
    Setting("AUDIT_TABLE", "AuditLog", "Table holding one audit row per model call."),
    Setting(
        "ARCHIVE_CONTAINER",
        "audit-raw",
        "Blob container of the raw archive (immutable in production; the code only creates).",
    ),
    Setting(
        "DEADLETTER_CONTAINER",
        "audit-deadletter",
        "Blob container for events and records that could not become an audit row.",
    ),
    Setting("KPI_TABLE", "KpiDaily", "Table holding the daily KPI rows (PartitionKey = day)."),
    Setting(
        "KPI_SCHEDULE",
        "0 15 0 * * *",
        "NCRONTAB (6 fields, UTC) of the timer that rolls up the previous day's KPIs.",
    ),
    Setting(
        "KPI_REROLL_DAYS",
        "6",
        "Days before yesterday that each timer run rolls up again (and seals again), to count "
        "late events: those the hub still holds (Event Hubs keeps them 7 days, infra/).",
    ),
    Setting(
        "PRICE_TABLE",
        "",
        "Price table: empty for the bundled pipeline/kpi/prices.json, a file path, or "
        "blob:CONTAINER/NAME in the audit storage account.",
    ),
    Setting(
        "ATTRIBUTION",
        "",
        "Attribution map (team and cost center by subscription, product, app, user, deployment "
        "or service; first matching rule wins): empty for none, a file path, or "
        "blob:CONTAINER/NAME in the audit storage account.",
    ),
    Setting(
        "KPI_HOURLY_TABLE",
        "KpiHourly",
        "Table holding the hourly usage rows by team, cost center, app, user, service, region "
        "and the daily dimensions (PartitionKey = day): chargeback and budgets read it.",
    ),
    Setting(
        "BUDGETS",
        "",
        "Budgets file (limits in USD and/or tokens per day, week or month, with alert "
        "thresholds): empty for none, a file path, or blob:CONTAINER/NAME.",
    ),
    Setting(
        "BUDGET_SCHEDULE",
        "0 5 * * * *",
        "NCRONTAB (6 fields, UTC) of the timer that rolls up today and checks the budgets.",
    ),
    Setting(
        "BUDGET_ALERTS_TABLE",
        "BudgetAlerts",
        "Table recording each budget alert once (decision and delivery state).",
    ),
    Setting(
        "ALERT_WEBHOOK",
        "",
        "Comma-separated URLs that receive each budget alert as a JSON POST (Slack or Teams "
        "incoming webhooks, an Azure Monitor action group, ...); empty: alerts are only recorded.",
    ),
    Setting(
        "EXPORT_TARGET",
        "",
        "Where the daily timer exports the days it rolled up as Parquet (calls, kpi, focus): "
        "blob:CONTAINER[/PREFIX] in the audit storage account; empty: no export.",
    ),
    Setting(
        "AUDIT_SHARDS",
        "2",
        "Table partitions per day for audit rows (PartitionKey `yyyy-MM-dd_N`). Set once: "
        "changing it moves new rows of a call to another partition.",
    ),
    Setting(
        "CALLER_FROM_BEARER",
        "true",
        "Fill CallerAppId/CallerUserId/CallerTenantId from the bearer token of successful calls "
        "(set false when APIs pass unvalidated tokens through).",
    ),
    Setting(
        "CALLER_IP_MODE",
        "keep",
        "CallerIp and the caller addresses in raw records: keep, hash (HMAC with "
        "PROMPT_HASH_KEY) or drop.",
    ),
    Setting(
        "TRUSTED_PROXIES",
        "",
        "Comma-separated addresses or CIDR ranges of the proxies in front of APIM "
        "(Application Gateway's subnet, Front Door's ranges): when APIM's caller is one of "
        "them, CallerIp is read from X-Forwarded-For, from the right, past them. Empty: "
        "CallerIp is the address APIM saw (a client can write any X-Forwarded-For).",
    ),
    Setting(
        "STORAGE_RETRIES",
        "6",
        "Retries of a storage request that failed transiently (throttling, 5xx, timeouts, "
        "resets), with exponential backoff and jitter, before the batch fails.",
    ),
    Setting(
        "MAX_RECORDS_PER_EVENT",
        "2500",
        "Records an event may hold and still be read record by record (APIM writes at most "
        "about 1,700 to a 1 MB event); a fuller one is dead-lettered whole (raise it, then "
        "`replay --from-deadletter`).",
    ),
    Setting(
        "MAX_DAYS_PER_EVENT",
        "2",
        "Distinct days an event's records may name and still be read record by record (APIM "
        "writes an event's records minutes apart: 2 across a midnight); a wider one is "
        "dead-lettered whole (raise it, then `replay --from-deadletter`).",
    ),
    Setting(
        "PREVIEW_CHARS",
        "100",
        "Characters kept in PromptPreview and CompletionPreview (0-2000).",
    ),
    Setting(
        "PROMPT_CAPTURE",
        "redacted",
        "Previews and LLM-log messages: redacted (masked, then truncated), truncated, hashed, "
        "none or full.",
    ),
    Setting(
        "ARCHIVE_CAPTURE",
        "redacted",
        "Raw archive and dead letters: redacted, full (as logged, explicit opt-in) or metadata "
        "(no bodies).",
    ),
    Setting(
        "ARCHIVE_ENCRYPTION",
        "off",
        "on: archived records, dead letters and previews are encrypted (AES-256-GCM, a data key "
        "per record, so that `erase` can destroy one subject's content on the WORM archive); "
        "infra/ deploys with on.",
        azure="ARCHIVE_ENCRYPTION",
    ),
    Setting(
        "ARCHIVE_KEK",
        "",
        "Key-encryption key of ARCHIVE_ENCRYPTION: keyvault:https://<vault>.vault.azure.net/"
        "keys/<name> (wrapped and unwrapped by the app's identity) or local:<base64 of 32 bytes> "
        "(local runs and tests only).",
        azure="ARCHIVE_KEK",
    ),
    Setting(
        "ARCHIVE_KEYS_TABLE",
        "ArchiveKeys",
        "Table holding the archive's wrapped data keys (one entity per archive blob); `erase` "
        "destroys keys there.",
    ),
    Setting(
        "LEGAL_HOLDS_TABLE",
        "LegalHolds",
        "Table holding legal holds (`hold`, `release`); `erase` refuses data a hold covers.",
    ),
    Setting(
        "PROMPT_HASH_KEY",
        "",
        "Secret key of the HMAC used by PROMPT_CAPTURE=hashed (use a Key Vault reference).",
    ),
    Setting(
        "CAPTURE_OVERRIDES",
        "",
        'Per subscription or product: {"subscriptions": {"team-hr": {"prompt": "none", '
        '"archive": "metadata"}}, "products": {"research": {"prompt": "full", '
        '"previewChars": 500}}}.',
    ),
    Setting(
        "REDACT_PATTERNS",
        "",
        r'Extra redaction patterns as JSON: {"EMPLOYEE_ID": "\\bEMP-\\d{6}\\b"} '
        "(the name becomes the placeholder, [EMPLOYEE_ID]).",
    ),
)

SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot use; the message names it."""


def _int(env: Mapping[str, str], name: str, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip() or SETTINGS_BY_NAME[name].default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value}: must be between {lo} and {hi}")
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str:
    raw = (env.get(name, "").strip() or SETTINGS_BY_NAME[name].default).lower()
    if raw not in allowed:
        raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(allowed)}")
    return raw


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name, "").strip() or SETTINGS_BY_NAME[name].default).lower()
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise SettingsError(f"{name}={raw!r}: expected true or false")


def _str(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if value is None or not value.strip():
        return SETTINGS_BY_NAME[name].default
    return value.strip()


PromptMode = Literal["redacted", "truncated", "hashed", "none", "full"]
ArchiveMode = Literal["redacted", "full", "metadata"]
PROMPT_MODES: tuple[str, ...] = ("redacted", "truncated", "hashed", "none", "full")
ARCHIVE_MODES: tuple[str, ...] = ("redacted", "full", "metadata")


@dataclass(frozen=True, slots=True)
class Capture:
    """What of a call is stored (PROMPT_CAPTURE, ARCHIVE_CAPTURE, PREVIEW_CHARS), by default
    or for one subscription or product (CAPTURE_OVERRIDES)."""

    prompt: PromptMode
    archive: ArchiveMode
    preview_chars: int


# A custom redaction pattern: its placeholder label and the compiled regex.
Pattern = tuple[str, re.Pattern[str]]
# Overrides by name, in the order the setting lists them (tuples: a Config stays hashable).
Overrides = tuple[tuple[str, Capture], ...]
# The proxies in front of APIM (TRUSTED_PROXIES).
Proxies = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


@dataclass(frozen=True, slots=True)
class Config:
    """Validated settings of one process. Build with `Config.from_env()`.

    The capture settings are given as text (as in the environment) and read once, when the
    Config is made (`replace()` included), into the typed values below them."""

    storage_connection: str = ""
    storage_account: str = ""
    audit_table: str = "AuditLog"
    kpi_table: str = "KpiDaily"
    kpi_schedule: str = "0 15 0 * * *"
    kpi_reroll_days: int = 6
    price_table: str = ""
    attribution: str = ""
    kpi_hourly_table: str = "KpiHourly"
    budgets: str = ""
    budget_schedule: str = "0 5 * * * *"
    budget_alerts_table: str = "BudgetAlerts"
    alert_webhook: str = ""
    export_target: str = ""
    archive_container: str = "audit-raw"
    deadletter_container: str = "audit-deadletter"
    shards: int = 2
    preview_chars: int = 100
    trust_bearer: bool = True
    caller_ip_mode: str = "keep"
    trusted_proxies: str = ""
    storage_retries: int = 6
    max_records: int = 2_500
    max_days: int = 2
    prompt_capture: str = "redacted"
    archive_capture: str = "redacted"
    prompt_hash_key: str = ""
    archive_encryption: bool = False
    archive_kek: str = field(default="", repr=False)
    archive_keys_table: str = "ArchiveKeys"
    legal_holds_table: str = "LegalHolds"
    capture_overrides: str = ""
    redact_patterns: str = ""
    # Read from the texts above by __post_init__.
    capture: Capture = field(init=False, compare=False, repr=False)
    capture_by_subscription: Overrides = field(init=False, compare=False, repr=False)
    capture_by_product: Overrides = field(init=False, compare=False, repr=False)
    custom_patterns: tuple[Pattern, ...] = field(init=False, compare=False, repr=False)
    proxies: Proxies = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        default = Capture(
            _mode(self.prompt_capture, PROMPT_MODES, "PROMPT_CAPTURE"),
            _mode(self.archive_capture, ARCHIVE_MODES, "ARCHIVE_CAPTURE"),
            self.preview_chars,
        )
        by_subscription, by_product = _overrides(self.capture_overrides, default)
        patterns = _patterns(self.redact_patterns)
        everything = [default, *(c for _, c in by_subscription), *(c for _, c in by_product)]
        if any(c.prompt == "hashed" for c in everything) and not self.prompt_hash_key:
            raise SettingsError("PROMPT_CAPTURE=hashed needs PROMPT_HASH_KEY (a secret)")
        if self.caller_ip_mode == "hash" and not self.prompt_hash_key:
            # An unkeyed hash of an IPv4 address is reversed by trying all 2^32 of them.
            raise SettingsError("CALLER_IP_MODE=hash needs PROMPT_HASH_KEY (a secret)")
        if self.archive_encryption and not self.archive_kek:
            raise SettingsError(
                "ARCHIVE_ENCRYPTION=on needs ARCHIVE_KEK (keyvault:https://<vault>.vault.azure.net"
                "/keys/<name>, or local:<base64 of 32 bytes> for local runs)"
            )
        object.__setattr__(self, "capture", default)
        object.__setattr__(self, "capture_by_subscription", by_subscription)
        object.__setattr__(self, "capture_by_product", by_product)
        object.__setattr__(self, "custom_patterns", patterns)
        object.__setattr__(self, "proxies", _proxies(self.trusted_proxies))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        return cls(
            storage_connection=_str(env, "AUDIT_STORAGE_CONNECTION"),
            storage_account=_str(env, "AUDIT_STORAGE_ACCOUNT"),
            audit_table=_table_name(_str(env, "AUDIT_TABLE"), "AUDIT_TABLE"),
            kpi_table=_table_name(_str(env, "KPI_TABLE"), "KPI_TABLE"),
            kpi_schedule=_ncrontab(_str(env, "KPI_SCHEDULE"), "KPI_SCHEDULE"),
            kpi_reroll_days=_int(env, "KPI_REROLL_DAYS", 0, 60),
            price_table=_str(env, "PRICE_TABLE"),
            attribution=_str(env, "ATTRIBUTION"),
            kpi_hourly_table=_table_name(_str(env, "KPI_HOURLY_TABLE"), "KPI_HOURLY_TABLE"),
            budgets=_str(env, "BUDGETS"),
            budget_schedule=_ncrontab(_str(env, "BUDGET_SCHEDULE"), "BUDGET_SCHEDULE"),
            budget_alerts_table=_table_name(
                _str(env, "BUDGET_ALERTS_TABLE"), "BUDGET_ALERTS_TABLE"
            ),
            alert_webhook=_webhooks(_str(env, "ALERT_WEBHOOK")),
            export_target=_export_target(_str(env, "EXPORT_TARGET")),
            archive_container=_container_name(_str(env, "ARCHIVE_CONTAINER"), "ARCHIVE_CONTAINER"),
            deadletter_container=_container_name(
                _str(env, "DEADLETTER_CONTAINER"), "DEADLETTER_CONTAINER"
            ),
            shards=_int(env, "AUDIT_SHARDS", 1, 64),
            preview_chars=_int(env, "PREVIEW_CHARS", 0, 2000),
            trust_bearer=_bool(env, "CALLER_FROM_BEARER"),
            caller_ip_mode=_choice(env, "CALLER_IP_MODE", ("keep", "hash", "drop")),
            trusted_proxies=_str(env, "TRUSTED_PROXIES"),
            storage_retries=_int(env, "STORAGE_RETRIES", 0, 20),
            max_records=_int(env, "MAX_RECORDS_PER_EVENT", 1, 1_000_000),
            max_days=_int(env, "MAX_DAYS_PER_EVENT", 1, 100_000),
            prompt_capture=_str(env, "PROMPT_CAPTURE").lower(),
            archive_capture=_str(env, "ARCHIVE_CAPTURE").lower(),
            prompt_hash_key=env.get("PROMPT_HASH_KEY", ""),
            archive_encryption=_choice(env, "ARCHIVE_ENCRYPTION", ("off", "on")) == "on",
            archive_kek=_kek(_str(env, "ARCHIVE_KEK")),
            archive_keys_table=_table_name(_str(env, "ARCHIVE_KEYS_TABLE"), "ARCHIVE_KEYS_TABLE"),
            legal_holds_table=_table_name(_str(env, "LEGAL_HOLDS_TABLE"), "LEGAL_HOLDS_TABLE"),
            capture_overrides=_str(env, "CAPTURE_OVERRIDES"),
            redact_patterns=_str(env, "REDACT_PATTERNS"),
        )


KEYVAULT_KEY = re.compile(
    r"keyvault:https://[a-z0-9-]{3,24}\.vault\.(?:azure\.net|azure\.cn|usgovcloudapi\.net)"
    r"/keys/[A-Za-z0-9-]{1,127}(?:/[0-9a-f]{32})?"
)


def _kek(raw: str) -> str:
    """ARCHIVE_KEK checked (never echoed: a local key is a secret)."""
    if not raw or KEYVAULT_KEY.fullmatch(raw):
        return raw
    if raw.startswith("local:"):
        try:
            key = base64.b64decode(raw[6:], validate=True)
        except ValueError:
            key = b""
        if len(key) == 32:
            return raw
        raise SettingsError("ARCHIVE_KEK=local:...: expected the base64 of 32 bytes")
    raise SettingsError(
        "ARCHIVE_KEK: expected keyvault:https://<vault>.vault.azure.net/keys/<name> or "
        "local:<base64 of 32 bytes>"
    )


def _export_target(raw: str) -> str:
    if raw and not re.fullmatch(r"blob:[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])?(/\S*)?", raw):
        raise SettingsError(
            f"EXPORT_TARGET={raw!r}: expected blob:CONTAINER[/PREFIX] (a container name is "
            "3-63 lower-case letters, digits and hyphens)"
        )
    return raw


def _proxies(raw: str) -> Proxies:
    """TRUSTED_PROXIES read: each comma-separated item an IPv4 or IPv6 address or range."""
    out = []
    for i, item in enumerate(x.strip() for x in raw.split(",") if x.strip()):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(
                f"TRUSTED_PROXIES: item {i + 1} ({item[:60]!r}) is not an address or a CIDR range"
            ) from None
    return tuple(out)


def _webhooks(raw: str) -> str:
    """ALERT_WEBHOOK checked: every comma-separated item an http(s) URL (never echoed: it is
    a secret, as Slack and Teams webhook URLs are)."""
    for i, url in enumerate(u.strip() for u in raw.split(",") if u.strip()):
        if not re.match(r"https?://[^\s/]+", url):
            raise SettingsError(f"ALERT_WEBHOOK: item {i + 1} is not an http(s) URL")
    return raw


def _mode(value: str, allowed: tuple[str, ...], setting: str) -> Any:
    v = value.strip().lower()
    if v not in allowed:
        raise SettingsError(f"{setting}={value!r}: expected one of {', '.join(allowed)}")
    return v


def _overrides(raw: str, default: Capture) -> tuple[Overrides, Overrides]:
    if not raw.strip():
        return (), ()
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SettingsError(f"CAPTURE_OVERRIDES is not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or set(doc) - {"subscriptions", "products"}:
        raise SettingsError(
            'CAPTURE_OVERRIDES: expected {"subscriptions": {...}, "products": {...}}'
        )
    subscriptions = _override_scope(doc, "subscriptions", default)
    return subscriptions, _override_scope(doc, "products", default)


def _override_scope(doc: dict[str, Any], scope: str, default: Capture) -> Overrides:
    entries = doc.get(scope) or {}
    if not isinstance(entries, dict):
        raise SettingsError(f"CAPTURE_OVERRIDES.{scope}: expected an object of names")
    parsed: dict[str, Capture] = {}
    for name, spec in entries.items():
        where = f"CAPTURE_OVERRIDES.{scope}.{name}"
        if not isinstance(spec, dict) or set(spec) - {"prompt", "archive", "previewChars"}:
            raise SettingsError(f"{where}: allowed keys are prompt, archive, previewChars")
        chars = spec.get("previewChars", default.preview_chars)
        if not isinstance(chars, int) or not 0 <= chars <= 2000:
            raise SettingsError(f"{where}.previewChars: a whole number from 0 to 2000")
        parsed[name] = Capture(
            _mode(str(spec.get("prompt", default.prompt)), PROMPT_MODES, f"{where}.prompt"),
            _mode(str(spec.get("archive", default.archive)), ARCHIVE_MODES, f"{where}.archive"),
            chars,
        )
    return tuple(parsed.items())


def _patterns(raw: str) -> tuple[Pattern, ...]:
    if not raw.strip():
        return ()
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SettingsError(f"REDACT_PATTERNS is not valid JSON ({exc})") from None
    if isinstance(doc, dict):
        items = list(doc.items())
    elif isinstance(doc, list) and all(isinstance(d, dict) for d in doc):
        items = [(d.get("name"), d.get("pattern")) for d in doc]
    else:
        raise SettingsError('REDACT_PATTERNS: expected {"NAME": "regex", ...}')
    for name, pattern in items:
        if not isinstance(name, str) or not isinstance(pattern, str):
            raise SettingsError("REDACT_PATTERNS: every entry needs a name and a regex string")
    return tuple(_pattern(name, pattern) for name, pattern in items)


_NOT_LABEL = re.compile(r"[^A-Z0-9_]")


def _pattern(name: str, pattern: str) -> Pattern:
    """A custom pattern compiled, under the label its placeholder shows ([EMPLOYEE_ID])."""
    label = _NOT_LABEL.sub("_", name.upper())
    if not label or not label[0].isalpha():
        raise SettingsError(
            f"REDACT_PATTERNS: redaction pattern name {name!r}: must start with a letter"
        )
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise SettingsError(
            f"REDACT_PATTERNS: redaction pattern {name!r}: invalid regex ({exc})"
        ) from None
    if compiled.search(""):
        raise SettingsError(
            f"REDACT_PATTERNS: redaction pattern {name!r}: matches the empty string"
        )
    return label, compiled


# NCRONTAB fields: {second} {minute} {hour} {day} {month} {day-of-week}.
_CRON_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_CRON_NAMES = (
    {},
    {},
    {},
    {},
    {
        m: i + 1
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        )
    },
    {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
)


def _ncrontab(value: str, setting: str) -> str:
    """Validate a 6-field NCRONTAB expression (the Functions timer's format)."""
    fields = value.split()
    if len(fields) != 6:
        raise SettingsError(
            f"{setting}={value!r}: NCRONTAB needs 6 fields (second minute hour day month "
            "day-of-week), e.g. '0 15 0 * * *'"
        )
    for text_, (lo, hi), names in zip(fields, _CRON_RANGES, _CRON_NAMES, strict=True):
        for part in text_.split(","):
            base, _, step = part.partition("/")
            if step and not (step.isdigit() and int(step) > 0):
                raise SettingsError(f"{setting}={value!r}: bad step in {part!r}")
            if base == "*":
                continue
            for bound in base.split("-", 1):
                number = names.get(bound.lower(), bound)
                if not str(number).isdigit() or not lo <= int(number) <= hi:
                    raise SettingsError(
                        f"{setting}={value!r}: {bound!r} is outside {lo}-{hi} in {text_!r}"
                    )
    return value


def _table_name(value: str, setting: str) -> str:
    # Azure: 3-63 alphanumeric characters, starting with a letter.
    if not (3 <= len(value) <= 63 and value.isascii() and value.isalnum() and value[0].isalpha()):
        raise SettingsError(f"{setting}={value!r}: a table name is 3-63 letters and digits")
    return value


def _container_name(value: str, setting: str) -> str:
    # Azure: 3-63 lowercase letters, digits and single hyphens, starting/ending alphanumeric.
    ok = (
        3 <= len(value) <= 63
        and value.isascii()
        and all(c.islower() or c.isdigit() or c == "-" for c in value)
        and value[0] != "-"
        and value[-1] != "-"
        and "--" not in value
    )
    if not ok:
        raise SettingsError(
            f"{setting}={value!r}: a container name is 3-63 lowercase letters, digits and hyphens"
        )
    return value


def sample_values() -> dict[str, str]:
    """The `Values` block of local.settings.sample.json."""
    return {s.name: s.sample if s.sample is not None else s.default for s in SETTINGS}


def azure_defaults() -> dict[str, str]:
    """infra/app-settings.json: the app settings Bicep sets from these defaults (the deployed
    resource names it adds itself, under their Azure names)."""
    return {s.name: s.default for s in SETTINGS if s.scope == "app" and s.azure is None}

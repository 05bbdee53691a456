"""`python -m pipeline doctor`: check a deployment from the outside, with clear pass/fail lines.

Settings present and valid, tables and containers there, the archive container immutable,
a canary row written, read and removed, a canary blob likewise (in the dead-letter container:
the archive is immutable, nothing may be written there to test it).
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from azure.core.exceptions import AzureError, ResourceNotFoundError

from pipeline.cli import options
from pipeline.kpi import attribution, budgets, prices
from pipeline.settings import Config, SettingsError
from pipeline.store.account import Store

Status = Literal["pass", "fail", "warn"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="check a deployment: settings, storage, immutability, canary")
    p.add_argument("--settings", metavar="local.settings.json", help="read Values from this file")
    options.add_storage(p)
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    env = options.env_with_local_settings(args.settings)
    if args.storage:
        env["AUDIT_STORAGE_CONNECTION"] = args.storage
    checks = run(env)
    for check in checks:
        print(check.line())
    failed = sum(c.status == "fail" for c in checks)
    print(
        f"\n{len(checks)} checks: {failed} failed"
        + ("" if failed else ", deployment looks healthy")
    )
    return 1 if failed else 0


@dataclass(frozen=True, slots=True)
class Check:
    status: Status
    what: str
    detail: str = ""

    def line(self) -> str:
        mark = {"pass": "PASS", "fail": "FAIL", "warn": "WARN"}[self.status]
        return f"{mark}  {self.what}" + (f": {self.detail}" if self.detail else "")


def _either(env: Mapping[str, str], *names: str) -> str | None:
    return next((n for n in names if env.get(n, "").strip()), None)


def is_azurite(store: Store) -> bool:
    url = store.blobs.url
    return "127.0.0.1" in url or "localhost" in url or "devstoreaccount1" in url


def run(env: Mapping[str, str], make_store: Callable[[Config], Store] = Store) -> list[Check]:
    checks: list[Check] = []
    try:
        cfg = Config.from_env(env)
        checks.append(Check("pass", "settings are valid"))
    except SettingsError as exc:
        return [Check("fail", "settings are valid", str(exc))]

    host = _either(env, "AzureWebJobsStorage", "AzureWebJobsStorage__accountName")
    checks.append(
        Check("pass", "host storage setting", host)
        if host
        else Check("fail", "host storage setting", "set AzureWebJobsStorage or __accountName")
    )
    hub = _either(env, "EventHubConnection", "EventHubConnection__fullyQualifiedNamespace")
    checks.append(
        Check("pass", "Event Hub connection setting", hub)
        if hub
        else Check(
            "fail",
            "Event Hub connection setting",
            "set EventHubConnection or EventHubConnection__fullyQualifiedNamespace",
        )
    )
    storage = _either(env, "AUDIT_STORAGE_CONNECTION", "AUDIT_STORAGE_ACCOUNT")
    checks.append(
        Check("pass", "audit storage setting", storage)
        if storage
        else Check("warn", "audit storage setting", "none set: Azurite's development storage")
    )

    store = make_store(cfg)
    try:
        checks += _storage_checks(cfg, store)
        try:
            table = prices.load(cfg.price_table, read_blob=store.read_blob)
            checks.append(Check("pass", "price table", f"version {table.version}"))
        except (prices.PriceTableError, AzureError) as exc:
            checks.append(Check("fail", "price table", str(exc)))
        checks += _document_checks(cfg, store)
    finally:
        store.close()
    return checks


def _document_checks(cfg: Config, store: Store) -> list[Check]:
    """The attribution map and the budgets file load (each names what is wrong)."""
    out: list[Check] = []
    try:
        teams = attribution.load(cfg.attribution, read_blob=store.read_blob)
        detail = f"{len(teams.rules)} rules, version {teams.version}" if cfg.attribution else "none"
        out.append(Check("pass", "attribution map", detail))
    except (attribution.AttributionError, AzureError) as exc:
        out.append(Check("fail", "attribution map", str(exc)))
    try:
        found = budgets.load(cfg.budgets, read_blob=store.read_blob)
        out.append(Check("pass", "budgets", f"{len(found)} budgets" if cfg.budgets else "none"))
    except (budgets.BudgetsError, AzureError) as exc:
        out.append(Check("fail", "budgets", str(exc)))
    return out


def _storage_checks(cfg: Config, store: Store) -> list[Check]:
    out: list[Check] = []
    try:
        names = {t.name for t in store.tables.list_tables()}
    except AzureError as exc:
        return [Check("fail", "audit storage reachable", f"{type(exc).__name__}: {str(exc)[:200]}")]
    out.append(Check("pass", "audit storage reachable", store.tables.url))
    for table in (
        cfg.audit_table,
        cfg.kpi_table,
        cfg.kpi_hourly_table,
        cfg.budget_alerts_table,
        cfg.archive_keys_table,
        cfg.legal_holds_table,
    ):
        out.append(
            Check("pass", f"table {table} exists")
            if table in names
            else Check("fail", f"table {table} exists", "missing (infra/ creates it)")
        )
    for container in (store.archive, store.deadletters):
        try:
            container.get_container_properties()
            out.append(Check("pass", f"container {container.container_name} exists"))
        except ResourceNotFoundError:
            out.append(Check("fail", f"container {container.container_name} exists", "missing"))
    out.append(_immutability(store))
    out.append(_retention(store))
    out.append(_kek(cfg, store))
    out.append(_canary_row(store))
    out.append(_canary_blob(store))
    return out


def _immutability(store: Store) -> Check:
    what = f"container {store.archive.container_name} is immutable (WORM)"
    if is_azurite(store):
        return Check("warn", what, "not verifiable: Azurite does not implement immutability")
    try:
        props = store.archive.get_container_properties()
    except AzureError as exc:
        return Check("fail", what, str(exc)[:200])
    versioned = bool(getattr(props, "immutable_storage_with_versioning_enabled", False))
    policy = bool(getattr(props, "has_immutability_policy", False))
    if versioned and policy:
        return Check(
            "pass",
            what,
            "version-level immutability with a time-based retention policy (whether it is "
            "locked is visible in the portal or `az storage container immutability-policy show`)",
        )
    if versioned:
        return Check("warn", what, "version-level immutability on, but no retention policy")
    return Check("fail", what, "version-level immutability is off")


# The EU AI Act asks deployers of high-risk systems to keep logs for at least six months.
MIN_RETENTION_DAYS = 180


def _retention(store: Store) -> Check:
    """The archive's retention, read from an archive blob's immutability policy (the data
    plane shows no container policy; the archive takes no test writes)."""
    what = f"archive retention is at least {MIN_RETENTION_DAYS} days"
    if is_azurite(store):
        return Check("warn", what, "not verifiable: Azurite does not implement immutability")
    try:
        blob = next(iter(store.archive.list_blobs(results_per_page=1)), None)
        if blob is None:
            return Check("warn", what, "not verifiable yet: the archive holds no blob")
        props = store.archive.get_blob_client(blob.name).get_blob_properties()
    except AzureError as exc:
        return Check("fail", what, str(exc)[:200])
    policy = getattr(props, "immutability_policy", None)
    expiry = getattr(policy, "expiry_time", None)
    if expiry is None or props.creation_time is None:
        return Check("warn", what, f"{blob.name} has no immutability policy")
    days = (expiry - props.creation_time).days
    if days < MIN_RETENTION_DAYS:
        return Check(
            "warn",
            what,
            f"{days} days: under the six months the EU AI Act asks deployers to keep logs "
            "(infra/: archiveRetentionDays)",
        )
    return Check("pass", what, f"{days} days")


def _kek(cfg: Config, store: Store) -> Check:
    """The KEK wraps and unwraps (with Key Vault: the identity may use the key)."""
    what = "archive encryption key (ARCHIVE_KEK) wraps and unwraps"
    if not cfg.archive_encryption:
        return Check("pass", "archive encryption", "off (ARCHIVE_ENCRYPTION): nothing is sealed")
    secret = os.urandom(32)
    try:
        kek_id, wrapped = store.keys.kek.wrap(secret)
        ok = store.keys.kek.kek.unwrap(kek_id, wrapped) == secret
    except Exception as exc:  # noqa: BLE001 - any failure of the KEK is this check's finding
        return Check("fail", what, f"{type(exc).__name__}: {str(exc)[:200]}")
    return Check("pass" if ok else "fail", what, kek_id)


def _canary_row(store: Store) -> Check:
    # PartitionKey "doctor" sorts after every day ('2...'), so no rollup ever reads it.
    entity = {"PartitionKey": "doctor", "RowKey": uuid.uuid4().hex, "Canary": True}
    try:
        store.audit.create_entity(entity)
        read = store.audit.get_entity(entity["PartitionKey"], entity["RowKey"])
        store.audit.delete_entity(entity["PartitionKey"], entity["RowKey"])
    except AzureError as exc:
        return Check(
            "fail", "write and read a canary row", f"{type(exc).__name__}: {str(exc)[:200]}"
        )
    ok = read.get("Canary") is True
    return Check(
        "pass" if ok else "fail", "write and read a canary row", "written, read back, removed"
    )


def _canary_blob(store: Store) -> Check:
    name = f"doctor/{uuid.uuid4().hex}.txt"
    try:
        store.deadletters.upload_blob(name, b"canary", overwrite=False)
        data = store.deadletters.download_blob(name).readall()
        store.deadletters.delete_blob(name)
    except AzureError as exc:
        return Check(
            "fail", "write and read a canary blob", f"{type(exc).__name__}: {str(exc)[:200]}"
        )
    return Check(
        "pass" if data == b"canary" else "fail",
        "write and read a canary blob",
        f"in {store.deadletters.container_name} (the archive takes no test writes)",
    )

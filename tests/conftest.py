"""Shared test fixtures: one private Azurite per test session, fresh names per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from pipeline.cli.azurite import Azurite
from pipeline.settings import Config
from pipeline.store.account import Store

_names = itertools.count(1)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite.start() as az:
        yield az


@pytest.fixture
def cfg(azurite: Azurite) -> Config:
    """Settings pointing at this session's Azurite, with a table and containers of our own."""
    n = f"{os.getpid()}x{next(_names)}"
    return Config(
        storage_connection=azurite.connection_string,
        audit_table=f"Audit{n}".replace("x", "t"),
        kpi_table=f"Kpi{n}".replace("x", "t"),
        kpi_hourly_table=f"Hourly{n}".replace("x", "t"),
        budget_alerts_table=f"Alerts{n}".replace("x", "t"),
        archive_keys_table=f"Keys{n}".replace("x", "t"),
        legal_holds_table=f"Holds{n}".replace("x", "t"),
        archive_container=f"raw-{n}",
        deadletter_container=f"dead-{n}",
    )


@pytest.fixture
def store(cfg: Config) -> Iterator[Store]:
    s = Store(cfg)
    s.ensure()
    yield s
    s.close()


def settings_env(cfg: Config) -> dict[str, str]:
    """The app settings that make Config.from_env() return `cfg`."""
    return {
        "AUDIT_STORAGE_CONNECTION": cfg.storage_connection,
        "AUDIT_TABLE": cfg.audit_table,
        "KPI_TABLE": cfg.kpi_table,
        "KPI_HOURLY_TABLE": cfg.kpi_hourly_table,
        "BUDGET_ALERTS_TABLE": cfg.budget_alerts_table,
        "ARCHIVE_KEYS_TABLE": cfg.archive_keys_table,
        "LEGAL_HOLDS_TABLE": cfg.legal_holds_table,
        "ARCHIVE_ENCRYPTION": "on" if cfg.archive_encryption else "off",
        "ARCHIVE_KEK": cfg.archive_kek,
        "ARCHIVE_CAPTURE": cfg.archive_capture,
        "PROMPT_CAPTURE": cfg.prompt_capture,
        "ARCHIVE_CONTAINER": cfg.archive_container,
        "DEADLETTER_CONTAINER": cfg.deadletter_container,
        "AUDIT_SHARDS": str(cfg.shards),
        "PREVIEW_CHARS": str(cfg.preview_chars),
    }

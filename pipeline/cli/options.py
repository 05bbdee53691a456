"""What several commands share: the `--storage` option and the configuration and store it
gives, a day argument, and the Values of a local.settings.json."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date
from pathlib import Path

import orjson

from pipeline.settings import Config
from pipeline.store.account import Store


def add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        metavar="CONNECTION_STRING",
        help="audit storage connection string (default: AUDIT_STORAGE_CONNECTION, "
        "else Azurite's development storage)",
    )


def config(args: argparse.Namespace) -> Config:
    """The settings from the environment, with `--storage` when given."""
    env = dict(os.environ)
    if getattr(args, "storage", None):
        env["AUDIT_STORAGE_CONNECTION"] = args.storage
    return Config.from_env(env)


def ensured_store(cfg: Config) -> Store:
    """The audit store, its tables and containers created when missing."""
    store = Store(cfg)
    store.ensure()
    return store


def reversed_range(args: argparse.Namespace) -> bool:
    """True, having said so on stderr, when --to is before --from (either may be absent)."""
    first, last = getattr(args, "from_day", None), getattr(args, "to_day", None)
    if first is not None and last is not None and last < first:
        print("error: --to is before --from", file=sys.stderr)
        return True
    return False


def day(value: str) -> date:
    """An argparse type: a day, YYYY-MM-DD."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a day (YYYY-MM-DD)") from None


def env_with_local_settings(path: str | None) -> dict[str, str]:
    """The environment, plus the Values of a local.settings.json when given."""
    env = dict(os.environ)
    if path:
        doc = orjson.loads(Path(path).read_bytes())
        env.update({k: str(v) for k, v in (doc.get("Values") or {}).items()})
    return env

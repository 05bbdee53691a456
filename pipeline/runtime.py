"""Per-process state of the Function App: settings and storage clients, built once."""

from __future__ import annotations

import threading

from pipeline.settings import Config
from pipeline.store.account import Store

_lock = threading.Lock()
_current: tuple[Config, Store] | None = None


def current() -> tuple[Config, Store]:
    """Settings and a ready store, created on first use (the first invocation, not import)."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                cfg = Config.from_env()
                store = Store(cfg)
                store.ensure()
                _current = (cfg, store)
    return _current


def reset() -> None:
    """Forget the cached settings and clients (the next call reads the environment again)."""
    global _current
    with _lock:
        if _current is not None:
            _current[1].close()
        _current = None

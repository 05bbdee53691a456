"""`replay --resume`: the inputs completed by earlier runs, in a small JSON file written
atomically. An input is recorded once it was read to its end without a problem and all of its
events are stored."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from pipeline.sources.inputs import InputError


class ResumeState:
    """Inputs completed by earlier runs, in a small JSON file written atomically."""

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        self.done: set[str] = set()
        if resume and path.exists():
            try:
                self.done = set(orjson.loads(path.read_bytes()).get("done", []))
            except (orjson.JSONDecodeError, AttributeError):
                raise InputError(
                    f"{path}: resume state is unreadable; delete it to start over"
                ) from None

        # Written after each input: a path that cannot be written is said now, before any
        # input is read, not as a traceback once the first one is done (the state itself is
        # left as it is until an input is done).
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        try:
            tmp.write_bytes(b"")
            tmp.unlink()
        except OSError as exc:
            raise self._unwritable(exc) from None

    def mark(self, key: str) -> None:
        """Record `key` as done. Raises InputError when the file cannot be written."""
        self.done.add(key)
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        try:
            tmp.write_bytes(orjson.dumps({"done": sorted(self.done)}))
            os.replace(tmp, self.path)
        except OSError as exc:
            raise self._unwritable(exc) from None

    def _unwritable(self, exc: OSError) -> InputError:
        return InputError(
            f"{self.path}: resume state cannot be written ({exc.strerror or exc}): "
            "give --state a path that can be"
        )

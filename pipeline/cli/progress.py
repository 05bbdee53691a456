"""The progress line of a long replay, on stderr: rewritten in place on a terminal, a line
every 10 s otherwise, with the calls per second and an ETA from the bytes read."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """One line on stderr: rewritten in place on a terminal, a line every 10 s otherwise."""

    def __init__(self, total_inputs: int, total_bytes: int, stream: TextIO | None = None) -> None:
        self.total_inputs, self.total_bytes = total_inputs, total_bytes
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        self.inputs = self.bytes = self.events = self.calls = 0

    def update(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < (0.5 if self.tty else 10.0):
            return
        self.last = now
        elapsed = max(now - self.start, 1e-6)
        rate = self.calls / elapsed
        eta = ""
        if self.total_bytes and self.bytes:
            left = elapsed * (self.total_bytes - self.bytes) / self.bytes
            eta = f" · ETA {_duration(left)}"
        line = (
            f"inputs {self.inputs}/{self.total_inputs} · events {self.events:,} · "
            f"calls {self.calls:,} ({rate:,.0f}/s){eta}"
        )
        if self.tty:
            self.stream.write("\r" + line.ljust(100))
            if force:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"

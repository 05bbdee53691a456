"""Start and stop a private Azurite (storage emulator) for the demo and the tests.

Azurite comes from npm (`azurite@3.35.0`, the newest for Node 20). Each run gets its own
in-memory instance on free loopback ports, so nothing leaks between runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import AZURITE_ACCOUNT, AZURITE_KEY

REPO = Path(__file__).resolve().parents[2]


class AzuriteError(RuntimeError):
    pass


def find_binary() -> str:
    explicit = os.environ.get("AZURITE_BIN")
    if explicit:
        return explicit
    local = REPO / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if found:
        return found
    raise AzuriteError(
        "Azurite not found: run `npm ci` in the repository (or `make demo`), "
        "or set AZURITE_BIN to the azurite executable"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connection_string(blob_port: int, table_port: int, queue_port: int) -> str:
    host = "http://127.0.0.1"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={host}:{blob_port}/{AZURITE_ACCOUNT};"
        f"TableEndpoint={host}:{table_port}/{AZURITE_ACCOUNT};"
        f"QueueEndpoint={host}:{queue_port}/{AZURITE_ACCOUNT};"
    )


@dataclass
class Azurite:
    """A running Azurite process. Use as a context manager, or call `stop()`."""

    process: subprocess.Popen[bytes]
    blob_port: int
    table_port: int
    queue_port: int
    log: tempfile._TemporaryFileWrapper[bytes]
    location: str | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_port, self.table_port, self.queue_port)

    @classmethod
    def start(
        cls,
        timeout: float = 30.0,
        *,
        location: str | None = None,
        ports: tuple[int, int, int] | None = None,
    ) -> Azurite:
        """A new Azurite: in memory, or persisted in `location` (so it survives a restart on
        the same `ports`: the fault-injection tests stop and restart it mid-batch)."""
        binary = find_binary()
        ports = ports or (free_port(), free_port(), free_port())
        persistence = ["--location", location] if location else ["--inMemoryPersistence"]
        # fmt: off
        cmd = [
            binary, *persistence, "--skipApiVersionCheck", "--loose",
            "--disableTelemetry",
            "--blobHost", "127.0.0.1", "--blobPort", str(ports[0]),
            "--tableHost", "127.0.0.1", "--tablePort", str(ports[1]),
            "--queueHost", "127.0.0.1", "--queuePort", str(ports[2]),
        ]
        # fmt: on
        # A file, not a pipe: nobody reads Azurite's output while it runs, and a full pipe
        # would block it.
        log = tempfile.NamedTemporaryFile(prefix="azurite-", suffix=".log")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() ends node and children
        )
        azurite = cls(proc, *ports, log, location)
        azurite.wait_ready(timeout)
        return azurite

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = [self.blob_port, self.table_port]
        while pending:
            if self.process.poll() is not None:
                self.log.seek(0)
                err = self.log.read().decode(errors="replace")
                raise AzuriteError(f"Azurite exited with {self.process.returncode}: {err[-2000:]}")
            port = pending[0]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    pending.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise AzuriteError(f"Azurite did not listen on port {port} within {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()

    def restart(self, timeout: float = 30.0) -> Azurite:
        """Stop, then start again on the same ports and data (persisted instances only)."""
        if self.location is None:
            raise AzuriteError("restart needs a persisted Azurite (start(location=...))")
        self.stop()
        return Azurite.start(
            timeout,
            location=self.location,
            ports=(self.blob_port, self.table_port, self.queue_port),
        )

    def __enter__(self) -> Azurite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""A fault-injecting TCP proxy for HTTP, on loopback, in front of Azurite.

Each request is read whole, then, by the current policy: passed through, delayed, answered
with a 503, cut by a connection reset before it reaches Azurite, or forwarded and its response
lost (the nasty case: the write happened, the client never hears of it). Upstream requests
carry `Connection: close`, so each request is one upstream connection.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Policy:
    """Probabilities of each fault per request; the rest pass."""

    http503: float = 0.0
    reset: float = 0.0
    lost_response: float = 0.0
    delay: float = 0.0
    delay_seconds: float = 0.2
    down: bool = False  # refuse everything (connections closed at once)
    # What the 503s ask the client to wait (throttling): `Retry-After` as given (seconds, or
    # an HTTP date), and `x-ms-retry-after-ms`.
    retry_after: int | str | None = None
    retry_after_ms: int | None = None
    seed: int = 7
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def choose(self) -> str:
        if self.down:
            return "down"
        r = self.rng.random()
        for name, p in (
            ("503", self.http503),
            ("reset", self.reset),
            ("lost", self.lost_response),
            ("delay", self.delay),
        ):
            if r < p:
                return name
            r -= p
        return "pass"


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join(lines) + b"\r\nConnection: close\r\n\r\n" + body


def _reset(conn: socket.socket) -> None:
    # SO_LINGER 0: close with RST, as a crashed peer or a middlebox would.
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class FaultProxy:
    def __init__(self, upstream_port: int, policy: Policy | None = None) -> None:
        self.upstream_port = upstream_port
        self.policy = policy or Policy()
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(64)
        self.port = self._server.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while True:
                request = _read_request(conn)
                if request is None:
                    conn.close()
                    return
                with self._lock:
                    self.requests += 1
                    fault = self.policy.choose()
                    if fault != "pass":
                        self.injected[fault] += 1
                if fault in ("reset", "down"):
                    _reset(conn)
                    return
                if fault == "503":
                    conn.sendall(
                        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                        + self._throttle_headers()
                        + b"Connection: close\r\n\r\n"
                    )
                    conn.close()
                    return
                if fault == "delay":
                    time.sleep(self.policy.delay_seconds)
                response = self._forward(request)
                if response is None or fault == "lost":
                    _reset(conn)
                    return
                conn.sendall(response)
                conn.close()  # the upstream closed too (Connection: close)
                return
        except OSError:
            conn.close()

    def _throttle_headers(self) -> bytes:
        out = b""
        if self.policy.retry_after is not None:
            out += f"Retry-After: {self.policy.retry_after}\r\n".encode()
        if self.policy.retry_after_ms is not None:
            out += f"x-ms-retry-after-ms: {self.policy.retry_after_ms}\r\n".encode()
        return out

    def _forward(self, request: bytes) -> bytes | None:
        try:
            with socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30) as up:
                up.sendall(request)
                chunks = []
                while True:
                    chunk = up.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                return b"".join(chunks) or None
        except OSError:
            return None

    def close(self) -> None:
        self._stop = True
        self._server.close()

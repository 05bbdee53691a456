"""A local webhook receiver: what the demo (and the tests) point ALERT_WEBHOOK at, to see the
alerts exactly as a Slack, Teams or Logic App endpoint would get them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class Receiver:
    """An HTTP server on 127.0.0.1 (a free port) that keeps every JSON body POSTed to it.
    `status` is what it answers (set 503 to play a webhook that is down)."""

    def __init__(self, on_alert: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self.status = 200
        self._on_alert = on_alert
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 20))
                receiver._record(self.headers.get("Content-Type", ""), body, self)

            def log_message(self, *args: Any) -> None:
                pass  # quiet: the demo prints what it got

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/alerts"

    def _record(self, content_type: str, body: bytes, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            status = self.status
            if status < 300 and content_type.startswith("application/json"):
                alert = orjson.loads(body)
                self.received.append(alert)
                if self._on_alert is not None:
                    self._on_alert(alert)
            else:
                self.refused += 1
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

"""Fixtures for jobs and webhooks: a real webhook receiver on loopback, tasks run inline."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes  # raw, as signed
    at: float  # time.monotonic() on arrival

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every POST (raw body, headers, arrival time); answers the scripted statuses, then 200.

    Also serves `files` on GET (for input image URLs).
    """

    statuses: list[int] = field(default_factory=list)
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    port: int = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 20) -> list[Hit]:
        deadline = time.monotonic() + timeout
        while len(self.hits) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.hits


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _answer(self, status: int, data: bytes = b"", content_type: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            data, content_type = state.files.get(self.path, (b"", ""))
            self._answer(200 if data else 404, data, content_type or "text/plain")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.hits.append(Hit(self.path, dict(self.headers), body, time.monotonic()))
            self._answer(state.statuses.pop(0) if state.statuses else 200, b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state, server


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    # Only loopback is reachable here; production refuses it (safe_fetch), and wants https.
    settings.NANOCLONE_FETCH_ALLOW_LOOPBACK = True
    settings.NANOCLONE_CALLBACK_ALLOW_HTTP = True
    state, server = start_receiver()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def fast_retries(settings: Any) -> None:
    settings.WEBHOOK_RETRY_DELAYS = [0.01, 0.01, 0.01]

"""Fixtures for the compatible dialects: a loopback web server (reference images in, callbacks out)
and django-q2 running its tasks inline."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class LoopbackWeb:
    """Serves files on GET and records POSTed JSON, on 127.0.0.1 and a free port."""

    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    # Statuses answered to successive POSTs; 200 once they run out.
    post_statuses: list[int] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    port: int = 0

    def serve(self, path: str, data: bytes, content_type: str = "image/png") -> str:
        self.files[path] = (data, content_type)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for_posts(self, count: int, timeout: float = 10) -> list[Received]:
        while len(self.received) < count:
            self.arrived.clear()
            if len(self.received) < count and not self.arrived.wait(timeout):
                break
        return self.received


@pytest.fixture
def web(settings: Any) -> Iterator[LoopbackWeb]:
    # Only a loopback server is reachable in tests; production refuses it (safe_fetch).
    settings.NANOCLONE_FETCH_ALLOW_LOOPBACK = True
    settings.NANOCLONE_CALLBACK_ALLOW_HTTP = True
    state = LoopbackWeb()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            found = state.files.get(self.path)
            if found is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, content_type = found
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            state.received.append(Received(self.path, dict(self.headers), json.loads(raw or b"null")))
            status = state.post_statuses.pop(0) if state.post_statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            state.arrived.set()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()

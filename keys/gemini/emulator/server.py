"""The emulator's HTTP server: a real socket the real google-genai SDK talks to, dispatching each
path to the API surface that answers it, and a log of the requests it received."""

from __future__ import annotations

import bisect
import contextlib
import json
import re
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from keys.catalogue import ALIASES, MODELS
from keys.gemini.emulator import vertex, wild
from keys.gemini.emulator.batches import Batches
from keys.gemini.emulator.errors import (
    JSON,
    Body,
    GeminiError,
    invalid_argument,
)
from keys.gemini.emulator.files import Files
from keys.gemini.emulator.generate import either, generate, inline_images, last_user_text
from keys.gemini.emulator.models_api import extra_model_resource, model_resource
from keys.gemini.emulator.quotas import Quotas

_GENERATE_PATH = re.compile(r"^/(v1|v1beta)/models/([^/:]+):generateContent$")
_MODELS_PATH = re.compile(r"^/(v1|v1beta)/models(?:/([^/:]+))?$")
_SLOW_KEY = re.compile(r"^emu-slow(\d+)-")

# How often the serve loop checks for stop(): tests start and stop many emulators.
_POLL_SECONDS = 0.05


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a sleeping (latency) handler must not keep the process alive
    emulator: GeminiEmulator

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def close_connections(self) -> None:
        """Hang up kept-alive connections, or their threads would go on answering after stop()."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out hangs up mid-answer: normal for a latency emulator, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients reuse connections like with Google
    server_version = "GeminiEmulator"
    sys_version = ""

    @property
    def emulator(self) -> GeminiEmulator:
        return cast(_Server, self.server).emulator

    def log_message(self, format: str, *args: Any) -> None:
        if self.emulator.verbose:
            super().log_message(format, *args)

    def _send_json(self, status: int, body: Body | None, headers: dict[str, str] | None = None) -> None:
        """JSON, or the raw bytes a proxy in front of Gemini would send (an HTML page, nothing), or those
        of a file (`headers` then name its Content-Type)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
        headers = headers or {}
        self.send_response(status)
        if body and "Content-Type" not in headers:
            kind = "text/html; charset=UTF-8" if isinstance(body, bytes) else "application/json; charset=UTF-8"
            self.send_header("Content-Type", kind)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _api_key(self) -> str | None:
        keys = parse_qs(urlsplit(self.path).query).get("key", [])
        return self.headers.get("x-goog-api-key") or (keys[0] if keys else None)

    def _not_found(self) -> None:
        path = urlsplit(self.path).path
        self._send_json(404, GeminiError(404, "NOT_FOUND", f"Method not found: {self.command} {path}").body)

    def _vertex_caller(self, project: str | None) -> str | None:
        """Who calls a Vertex AI path: an express-mode key, or (under projects/) a service account's
        name, whose access token must be valid for that project (raises GeminiError)."""
        if project is None:
            return self._api_key()
        return self.emulator.vertex.caller(self.headers.get("Authorization"), project).name

    def _batch_or_file(self, body: bytes = b"") -> bool:
        """Answer a Batch API or Files API request (True), or leave the path to the others (False)."""
        emulator, key = self.emulator, self._api_key()
        reply = emulator.files.answer(self.command, self.path, self.headers, body, key)
        if reply is None:
            reply = emulator.batches.answer(self.command, self.path, body, key, emulator.batch_seconds)
        if reply is not None:
            self._send_json(*reply)
        return reply is not None

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/emulator/requests":
            self._send_json(200, {"requests": self.emulator.requests})
            return
        if self._batch_or_file():
            return
        if (on_vertex := vertex.PATH.match(path)) and not on_vertex.group(5):
            self._vertex_model(*on_vertex.group(1, 2, 4))
            return
        match = _MODELS_PATH.match(path)
        if not match:
            self._not_found()
            return
        version, model_id = match.groups()
        # A key check lets clients (re)test a key without spending generation quota.
        # A quota's 429 is generation's: models.list and .get don't spend it.
        if (error := wild.key_error(self._api_key(), model_id or "")) and error.code != 429:
            self._send_json(error.code, error.body)
        elif model_id is None:
            listed = [model_resource(m) for m in MODELS.values() if m.id not in self.emulator.hidden_models]
            listed += [extra_model_resource(name) for name in self.emulator.extra_models]
            self._send_json(200, {"models": listed})
        elif (model := MODELS.get(ALIASES.get(model_id, model_id))) is not None:
            self._send_json(200, model_resource(model))
        else:
            message = (
                f"models/{model_id} is not found for API version {version}, or is not supported for generateContent."
            )
            self._send_json(404, GeminiError(404, "NOT_FOUND", message).body)

    def _vertex_model(self, version: str, project: str | None, model_id: str) -> None:
        """Vertex AI's models.get, as a credential's Test asks it."""
        try:
            key = self._vertex_caller(project)
            if (error := wild.key_error(key, model_id)) and error.code != 429:
                raise error
        except GeminiError as error:
            self._send_json(error.code, error.body)
            return
        if (model := MODELS.get(ALIASES.get(model_id, model_id))) is not None:
            self._send_json(200, {**model_resource(model), "name": f"publishers/google/models/{model.id}"})
        else:
            message = (
                f"Publisher Model `projects/{project}/locations/global/publishers/google/models/{model_id}` not found."
            )
            self._send_json(404, GeminiError(404, "NOT_FOUND", message).body)

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path == "/emulator/requests":
            self.emulator.clear()
            self._send_json(204, None)
        elif not self._batch_or_file():
            self._not_found()

    def do_POST(self) -> None:
        body = self._read_body()  # always drained, or the kept-alive connection desyncs
        path = urlsplit(self.path).path
        if path == "/token":
            self._send_json(*self.emulator.vertex.token(parse_qs(body.decode(errors="replace"))))
            return
        if self._batch_or_file(body):
            return
        project: str | None = None
        refused: GeminiError | None = None  # a Vertex AI caller without a valid token
        if (on_vertex := vertex.PATH.match(path)) and on_vertex.group(5):
            version, project, _location, model_name = on_vertex.group(1, 2, 3, 4)
            try:
                key = self._vertex_caller(project)
            except GeminiError as error:
                key, refused = None, error
        elif match := _GENERATE_PATH.match(path):
            version, model_name = match.groups()
            key = self._api_key()
        else:
            self._not_found()
            return
        record: JSON = {
            "time": datetime.now(UTC).isoformat(),
            "key_suffix": (key or "")[-4:],
            "model": model_name,
            "api_version": version,
            "turns": 0,
            "inline_images": 0,
            "thought_signatures": 0,
            "generation_config": {},
            "prompt": "",
            "status": 500,
            # Which API answered: the Gemini API, Vertex AI with an express-mode key, or with a service
            # account of a project.
            "api": "vertex" if on_vertex else "gemini",
            "project": project or "",
        }
        # Should generation itself crash, the client still gets a 500 and the log shows it.
        status, answer = 500, GeminiError(500, "INTERNAL", "The emulator failed; see its stderr.").body
        try:
            status, answer = (
                (refused.code, refused.body)
                if refused
                else self._generate(model_name, key, body, record, bool(on_vertex), project)
            )
        finally:
            record["status"] = status
            self.emulator._record(record)
            self._send_json(status, answer)

    def _generate(
        self, model_name: str, key: str | None, body: bytes, record: JSON, on_vertex: bool, project: str | None
    ) -> tuple[int, Body]:
        slow = _SLOW_KEY.match(key or "")
        latency_ms = self.emulator.latency_ms + (int(slow.group(1)) if slow else 0)
        if latency_ms > 0:
            time.sleep(latency_ms / 1000)  # only this request's thread waits
        request = _parse_json(body)
        if request is not None:
            _describe(request, record)
        try:
            if error := wild.key_error(key, model_name):
                raise error
            if request is None:
                raise invalid_argument("Invalid JSON payload received. Expected a JSON object.")
            if error := self.emulator.quotas.spend(key or "", model_name, project):
                raise vertex.BUSY if on_vertex and error.code == 429 else error
            return 200, wild.reshape(generate(model_name, request), str(record["prompt"]))
        except GeminiError as error:
            return error.code, error.body


def _parse_json(body: bytes) -> JSON | None:
    try:
        request = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return request if isinstance(request, dict) else None


def _describe(request: JSON, record: JSON) -> None:
    """Fill the request log entry with what the request asked for."""
    contents = request.get("contents")
    contents = [c for c in contents if isinstance(c, dict)] if isinstance(contents, list) else []
    record["turns"] = len(contents)
    record["inline_images"] = len(inline_images(contents))
    # Gemini 3 wants earlier turns' thought signatures back; this shows whether a client kept them.
    record["thought_signatures"] = sum(
        1
        for content in contents
        for part in content.get("parts") or []
        if isinstance(part, dict) and (part.get("thoughtSignature") or part.get("thought_signature"))
    )
    record["generation_config"] = either(request, "generationConfig") or {}
    record["prompt"] = last_user_text(contents)


class GeminiEmulator:
    """A Gemini API look-alike on a real socket; `port=0` picks a free port.

    Tests: `with GeminiEmulator() as emu: genai.Client(..., http_options=HttpOptions(base_url=emu.url))`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: int = 0,
        verbose: bool = False,
        minute_seconds: float = 60.0,
        batch_seconds: float = 2.0,
    ) -> None:
        self.latency_ms = latency_ms  # read per request, so it may be changed while serving
        self.batch_seconds = batch_seconds  # how long a batch takes (read per request too)
        self.verbose = verbose
        self.quotas = Quotas(minute_seconds)  # `minute_seconds`: tests shorten Gemini's minute
        # What models.list shows besides/without the catalogue (for sync_models' tests).
        self.extra_models: list[str] = []
        self.hidden_models: set[str] = set()
        self._lock = threading.Lock()
        self._requests: list[JSON] = []
        self._cleared_at = ""  # requests that arrived before the last clear() are not logged
        self._thread: threading.Thread | None = None
        self._serving = False
        # Bound now, so `url` is known (and the port taken) before serving starts.
        self._server = _Server((host, port))
        self._server.emulator = self
        self.vertex = vertex.Vertex(self.url)  # Vertex AI's service accounts and their tokens
        self.files = Files(self.url)
        self.batches = Batches(self.files, self._record)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def requests(self) -> list[JSON]:
        """The generateContent requests and batch creates received, oldest first (a copy)."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def clear(self) -> None:
        """Forget the request log, and the requests still being answered (quota counters live on:
        quotas are per server lifetime)."""
        with self._lock:
            self._requests.clear()
            self._cleared_at = datetime.now(UTC).isoformat()

    def start(self) -> GeminiEmulator:
        """Serve in a background daemon thread."""
        self._serving = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL_SECONDS,), name="gemini-emulator", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the management command)."""
        self._serving = True
        self._server.serve_forever(_POLL_SECONDS)

    def stop(self) -> None:
        # shutdown() waits for a serve loop to acknowledge; without one it would hang.
        if self._serving:
            self._server.shutdown()
            self._serving = False
        self._server.server_close()
        self._server.close_connections()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> GeminiEmulator:
        return self if self._serving else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _record(self, entry: JSON) -> None:
        # Logged once answered, but ordered by arrival: concurrent requests finish out of order.
        with self._lock:
            if str(entry["time"]) >= self._cleared_at:
                bisect.insort(self._requests, entry, key=lambda r: str(r["time"]))

"""Shared fixtures: a real Gemini emulator on loopback, users, tokens, key pools, a loopback HTTP
peer and the ASGI app on a real socket."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import PIL.Image
import pytest
import requests
import uvicorn
from django.contrib.auth import get_user_model
from django.db import connections
from django.db.backends.signals import connection_created
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations import pipeline
from conversations.models import Job
from conversations.pipeline import batches
from keys.gemini.emulator import GeminiEmulator
from keys.models import ApiKey


@pytest.fixture(autouse=True)
def _media_in_tmp(settings: Any, tmp_path: Any) -> None:
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.UPSTREAM_BACKOFF_SECONDS = 0.01
    # PBKDF2's deliberate slowness (~0.25 s a password) would dominate the run; tests need no strength.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cached_tables() -> None:
    """Prices and budgets (keys.cached) and API tokens (the default cache) are cached per process;
    each test starts from its own rows."""
    from django.core.cache import cache, caches

    from keys.cached import CachedTable

    CachedTable.forget_all()
    cache.clear()
    caches["shared"].clear()  # the rate limit's counts


def replay_migrations(*names: str) -> None:
    """Write again the rows these data migrations write (each is idempotent: update_or_create).

    A transactional test's flush empties every table, and pytest-xdist does not keep pytest-django's
    order of running the plain django_db tests first, so a test that reads migration data asks for it.
    """
    import importlib

    from django.apps import apps
    from django.db.migrations import RunPython

    for name in names:
        for operation in importlib.import_module(name).Migration.operations:
            if isinstance(operation, RunPython):
                operation.code(apps, None)  # type: ignore[arg-type]  # the code takes any registry


@pytest.fixture
def default_prices() -> None:
    """The price table (and the usage pruning schedule) as migration keys.0005 seeds it."""
    replay_migrations("keys.migrations.0005_default_prices_and_usage_pruning")


@pytest.fixture
def shared_memory_db_reads(request: pytest.FixtureRequest) -> Iterator[None]:
    """Let threads (a page's requests, a job's thread, the test itself) share the in-memory test database.

    pytest-django's test database is SQLite in memory with a shared cache, where a reader makes a
    writer fail at once ("database table is locked"; no busy wait as with a file database in WAL
    mode, which is what NanoClone runs on). Reading uncommitted rows removes those reader locks;
    the tests avoid two writers at once by letting a job's thread finish (jobs_settled()) before
    the browser sends the next prompt.
    """

    def dirty_reads(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA read_uncommitted = 1")

    mine = connections["default"]
    if mine.vendor != "sqlite":
        yield
        return
    # The live server's request threads use the connection that was this thread's when the
    # (session-wide) server started; an earlier test may have left this thread a newer one.
    server = request.getfixturevalue("live_server") if "live_server" in request.fixturenames else None
    override = server.thread.connections_override.values() if server else ()
    shared = list({id(each): each for each in (mine, *override)}.values())
    connection_created.connect(dirty_reads)
    for each in shared:
        each.ensure_connection()
        dirty_reads(None, each)
    try:
        yield
    finally:
        connection_created.disconnect(dirty_reads)
        for each in shared:
            if each.connection is not None:
                with each.cursor() as cursor:
                    cursor.execute("PRAGMA read_uncommitted = 0")


JOB_THREAD_SECONDS = 30


def jobs_settled() -> None:
    """Wait for the job threads (NANOCLONE_CHAT_EXECUTION=thread) to finish writing."""
    for thread in threading.enumerate():
        if thread.name.startswith(pipeline.JOB_THREAD_PREFIX):
            thread.join(timeout=JOB_THREAD_SECONDS)


@pytest.fixture(autouse=True)
def _job_threads_finish() -> Iterator[None]:
    """No job thread outlives its test, to write into the next test's database or emulator log, and
    no generation dispatcher (a cluster's) goes on claiming the next tests' jobs."""
    yield
    jobs_settled()
    dispatchers = [thread for thread in threading.enumerate() if thread.name == "generation-dispatcher"]
    assert not dispatchers, "a test left a generation dispatcher running: stop the cluster it started"


@pytest.fixture
def inline_tasks(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """django-q2 runs each task in the calling process as soon as it is queued (sync mode).

    django-q2 reads Conf.SYNC from Q_CLUSTER once, at import, so the setting alone is too late.
    """
    from django_q.conf import Conf

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture(scope="session")
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator() as running:
        yield running


@pytest.fixture
def emu(emulator: GeminiEmulator) -> GeminiEmulator:
    """The session's emulator, with its request log cleared, no added latency and batches that take
    two seconds."""
    emulator.clear()
    emulator.latency_ms = 0
    emulator.batch_seconds = 2.0
    return emulator


def emulator_requests(emulator: GeminiEmulator) -> list[dict[str, Any]]:
    """What the emulator received, read over HTTP as any client would."""
    return requests.get(f"{emulator.url}/emulator/requests", timeout=5).json()["requests"]


@pytest.fixture
def add_key(emu: GeminiEmulator) -> Callable[..., ApiKey]:
    def add(secret: str = "emu-ok-0001", **fields: Any) -> ApiKey:
        fields.setdefault("base_url", emu.url)
        return ApiKey.create(secret, **fields)

    return add


@pytest.fixture
def user(db: Any) -> Any:
    return get_user_model().objects.create_user("alice", password="pw-alice-123", is_staff=True)


@pytest.fixture
def other_user(db: Any) -> Any:
    return get_user_model().objects.create_user("bob", password="pw-bob-123")


@pytest.fixture
def api(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=user).key}")
    return client


def png_bytes(
    size: tuple[int, int] = (64, 48), colour: tuple[int, int, int] = (200, 30, 30), fmt: str = "PNG"
) -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", size, colour).save(out, fmt)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- a real HTTP peer on loopback: webhook/callback receiver and image server ---------------


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

    def serve(self, path: str, data: bytes, content_type: str = "image/png") -> str:
        """Serve `data` on GET `path` (e.g. a reference image); returns its URL."""
        self.files[path] = (data, content_type)
        return self.url(path)

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


# --- the app as `serve` runs it, on a real socket ------------------------------------------------


@pytest.fixture
def live_app(transactional_db: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """nanoclone.asgi served by uvicorn in a thread, lifespan included, like `serve` runs it."""
    from nanoclone.asgi import application

    # Django's request threads (a2wsgi) would otherwise keep their connections (CONN_MAX_AGE on
    # PostgreSQL) past the server's life, and the test database could not be dropped.
    monkeypatch.setitem(connections["default"].settings_dict, "CONN_MAX_AGE", 0)

    with uvicorn_in_a_thread(application, lifespan="on") as port:
        yield f"http://127.0.0.1:{port}"


@contextmanager
def uvicorn_in_a_thread(app: Any, lifespan: Literal["on", "off"]) -> Iterator[int]:
    """An ASGI app served by uvicorn in a thread on a free loopback port, until the block ends."""
    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan=lifespan, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not running.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield running.servers[0].sockets[0].getsockname()[1]
    finally:
        running.should_exit = True
        thread.join(timeout=15)


# --- processes the tests start ---------------------------------------------------------------


def stop_group(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """Stop a process started with start_new_session=True, and its children: SIGTERM to its process
    group, SIGKILL if it hasn't ended within `timeout`."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_serve(args: list[str], env: dict[str, str], cwd: Any) -> tuple[subprocess.Popen[bytes], list[str]]:
    """`manage.py serve <args>` in a session of its own (the caller stops its group), and the lines
    it prints, collected as they come."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "serve", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.decode(errors="replace"))

    threading.Thread(target=read, daemon=True).start()
    return process, output


@pytest.fixture
def quick_batches(settings: Any, emu: GeminiEmulator) -> GeminiEmulator:
    """Batches sent at once and polled every tenth of a second; the emulator's take half a second."""
    settings.BATCH_GATHER_SECONDS = 0
    settings.BATCH_POLL_SECONDS = 0.1
    settings.BATCH_POLL_MAX_SECONDS = 0.2
    settings.BATCH_STEP_SECONDS = 30
    emu.batch_seconds = 0.5
    return emu


def batches_finished(*jobs: Job | str, within: float = 20) -> list[Job]:
    """Play each cluster process's batch thread (pipeline.batches.tick) until every job has finished;
    the jobs as they ended."""
    ids = [job.pk if isinstance(job, Job) else job for job in jobs]
    deadline = time.monotonic() + within
    while True:
        batches.tick()
        fresh = [Job.objects.get(pk=pk) for pk in ids]
        if all(job.finished for job in fresh):
            return fresh
        if time.monotonic() > deadline:
            raise AssertionError(f"not finished: {[(job.state, job.phase) for job in fresh]}")
        time.sleep(0.1)


def batch_finished(job: Job | str, within: float = 20) -> Job:
    return batches_finished(job, within=within)[0]

"""`manage.py serve` as a process manager runs it: real processes, real signals, a real socket.

SIGTERM (docker stop, systemd, Kubernetes), sent to serve alone or to its whole process group,
with one web process or several, lets a request in flight finish, stops the django-q2 cluster,
exits 0 and leaves no process behind: that is checked by walking /proc for every process that
descended from serve or shares a process group or session with one that did. serve runs in
--demo mode (its own emulator, its slowness set by --emulator-latency-ms) on a throwaway data
directory and a free port.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet
from django.conf import settings

from tests.conftest import free_port, wait_until

pytestmark = pytest.mark.cluster


# --- processes, from /proc ------------------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    sid: int
    started: int  # clock ticks after boot: with the pid, one process even if pids are reused
    state: str
    command: str


def processes() -> dict[int, Proc]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(entry.name)
        found[pid] = Proc(pid, int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19]), fields[0], command)
    return found


def family(root: int) -> set[Proc]:
    """root and every process descended from it, now."""
    table = processes()
    members = set()
    for proc in table.values():
        ancestor: Proc | None = proc
        while ancestor is not None and ancestor.pid > 1:
            if ancestor.pid == root:
                members.add(proc)
                break
            ancestor = table.get(ancestor.ppid)
    return members


def survivors(known: set[Proc]) -> list[Proc]:
    """Live processes that are one of `known`, or share a process group or session with one of them."""
    groups = {proc.pgid for proc in known} | {proc.sid for proc in known}
    identities = {(proc.pid, proc.started) for proc in known}
    return [
        proc
        for proc in processes().values()
        if proc.state != "Z" and ((proc.pid, proc.started) in identities or proc.pgid in groups or proc.sid in groups)
    ]


# --- serve ----------------------------------------------------------------------------------------


@dataclass
class Serve:
    process: subprocess.Popen[bytes]
    url: str
    output: list[str] = field(default_factory=list)
    seen: set[Proc] = field(default_factory=set)  # every process of serve's family seen so far

    @property
    def text(self) -> str:
        return "".join(self.output)

    def token(self) -> str:
        return str(re.search(r"API token: (\w+)", self.text).group(1))  # type: ignore[union-attr]

    def look(self) -> set[Proc]:
        self.seen |= family(self.process.pid)
        return self.seen

    def generate(self, prompt: str) -> requests.Response:
        return requests.post(
            f"{self.url}/api/generate",
            json={"prompt": prompt},
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=60,
        )

    def refuses_connections(self) -> bool:
        host, port = self.url.removeprefix("http://").split(":")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return True
        return False


@contextlib.contextmanager
def serve(
    data_dir: Path,
    *arguments: str,
    grace: int = 8,
    latency_ms: int = 0,
    cluster: str = "threads",
    environment: dict[str, str] | None = None,
) -> Iterator[Serve]:
    """`manage.py serve --demo` in a session of its own (with more `environment`); afterwards nothing
    of it may be left running."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NANOCLONE_REDIS_URL")}
    env.update(
        NANOCLONE_DATA_DIR=str(data_dir),
        NANOCLONE_Q_WORKERS="2",
        NANOCLONE_CLUSTER=cluster,
        NANOCLONE_SHUTDOWN_GRACE_SECONDS=str(grace),
        NANOCLONE_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        NANOCLONE_PORT=str(port),  # serve's port when --port isn't given, as in the container image
    )
    env.update(environment or {})
    command = [sys.executable, "manage.py", "serve", "--demo"]
    command += ["--emulator-latency-ms", str(latency_ms), *arguments]
    process = subprocess.Popen(
        command,
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    running = Serve(process, f"http://127.0.0.1:{port}")

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            running.output.append(line.decode(errors="replace"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: answers(f"{running.url}/health"), 60, "serve to answer /health")
        running.look()
        yield running
    finally:
        if process.poll() is None:  # only while serve lives: afterwards its pid may be someone else's
            running.look()
        for proc in survivors(running.seen):  # whatever the test found, nothing outlives it
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        reader.join(timeout=5)
        print(running.text)  # shown when the test fails


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def cluster_up(running: Serve, workers: int = 2) -> None:
    wait_until(
        lambda: requests.get(f"{running.url}/health", timeout=5).json()["checks"]["queue"]["workers"] == workers,
        60,
        "the cluster's workers to show up in /health",
    )


def stopped(running: Serve, timeout: float) -> int:
    try:
        return running.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"serve still running {timeout} s after the signal:\n{running.text}") from None


def assert_nothing_left(running: Serve) -> None:
    # serve has reaped its children when it exits; a moment for the kernel to finish tearing down.
    deadline = time.monotonic() + 3
    while (left := survivors(running.seen)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []


# --- the tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cluster", "workers", "target"),
    # "every process": what systemd's default KillMode=control-group does.
    [
        ("threads", 1, "serve"),
        ("threads", 1, "process group"),
        ("threads", 1, "every process"),
        ("threads", 2, "serve"),
        ("threads", 2, "process group"),
        ("processes", 1, "serve"),
        ("processes", 1, "every process"),
        ("processes", 2, "process group"),
    ],
)
def test_sigterm_lets_the_request_in_flight_finish_then_stops_everything(
    tmp_path: Path, cluster: str, workers: int, target: str
) -> None:
    # 6 s with the emulator: time enough to see serve refuse new connections meanwhile, even on a busy machine.
    with serve(tmp_path, "--workers", str(workers), latency_ms=6000, cluster=cluster) as running:
        cluster_up(running)
        family_before = running.look()
        # The cluster is serve's own threads, or processes of its own (main, sentinel, pusher, monitor, workers).
        cluster_processes = [proc for proc in family_before if "manage.py qcluster" in proc.command]
        if cluster == "threads":
            assert cluster_processes == []
        else:
            assert len(cluster_processes) >= 4 + 2
        with ThreadPoolExecutor(1) as pool:
            slow: Future[requests.Response] = pool.submit(running.generate, "a lighthouse at dusk")
            time.sleep(1.5)  # the request is with the (slow) emulator now
            if target == "serve":
                os.kill(running.process.pid, signal.SIGTERM)
            elif target == "process group":
                os.killpg(running.process.pid, signal.SIGTERM)
            else:
                for proc in family_before:
                    os.kill(proc.pid, signal.SIGTERM)
            wait_until(running.refuses_connections, 5, "serve to stop taking connections")
            assert not slow.done()
            answer = slow.result(timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"]["message"]["images"]
        assert stopped(running, 30) == 0
        assert "NanoClone stopped." in running.text
        assert_nothing_left(running)


def test_a_request_still_running_after_the_grace_does_not_hold_serve(tmp_path: Path) -> None:
    with serve(tmp_path, grace=2, latency_ms=30_000) as running:
        cluster_up(running)
        running.look()
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(running.generate, "a very slow lighthouse")
            time.sleep(1.5)
            signalled = time.monotonic()
            os.kill(running.process.pid, signal.SIGTERM)
            assert stopped(running, 20) == 0
            assert time.monotonic() - signalled < 15  # the grace (2 s), not the emulator's 30 s
            with contextlib.suppress(requests.RequestException):
                assert slow.result(timeout=10).status_code != 200
        assert "1 request(s) still running were cut off." in running.text
        assert_nothing_left(running)


def open_connections(pid: int, port: int) -> int:
    """How many established TCP connections to `port` the process `pid` holds (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            if (target := str(fd.readlink())).startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port, state, inode = int(fields[1].rsplit(":", 1)[1], 16), fields[3], fields[9]
            count += local_port == port and state == "01" and inode in inodes
    return count


def serving(worker: Proc) -> bool:
    """The worker is on the web workers' board of connection counts: it serves (eventloop.py)."""
    with contextlib.suppress(OSError):
        return any("/nanoclone-web-" in str(fd.readlink()) for fd in Path(f"/proc/{worker.pid}/fd").iterdir())
    return False


def test_several_web_workers_share_out_a_burst_of_connections(tmp_path: Path) -> None:
    # asyncio accepts every waiting connection at once: the first worker to wake took the burst,
    # and its clients waited longest (nanoclone/eventloop.py).
    with serve(tmp_path, "--workers", "2", "--no-cluster") as running:
        port = int(running.url.rsplit(":", 1)[1])
        serve_pid = running.process.pid
        # family(), not look(): look() keeps each state a process was seen in, as an entry of its own.
        workers = [p for p in family(serve_pid) if p.ppid == serve_pid and "spawn_main" in p.command]
        assert len(workers) == 2, workers
        wait_until(lambda: all(map(serving, workers)), 60, "both workers to serve")
        for worker in workers:  # the burst waits in the listening socket's queue meanwhile
            os.kill(worker.pid, signal.SIGSTOP)
        try:
            clients = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(40)]
            # The first worker to wake finds all 40 waiting; the other wakes a moment later.
            os.kill(workers[0].pid, signal.SIGCONT)
            time.sleep(0.2)
        finally:
            for worker in workers:
                os.kill(worker.pid, signal.SIGCONT)
        for client in clients:
            client.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        for client in clients:
            assert client.recv(64).startswith(b"HTTP/1.1 200")
        counts = sorted(open_connections(worker.pid, port) for worker in workers)
        for client in clients:
            client.close()
        assert sum(counts) == 40
        assert counts[0] >= 12, counts  # shared out, if not always evenly: a worker may wake late


def test_mcp_over_http_keeps_no_session_when_the_flag_alone_asks_for_several_workers(tmp_path: Path) -> None:
    # A session lives in one process's memory, and the next request may reach another: with several
    # web processes MCP answers each request on its own, whether --workers or the variable asked.
    from tests.nanoclone.test_mcp import INITIALIZE, MCP_HEADERS

    with serve(tmp_path, "--workers", "2", "--no-cluster") as running:
        headers = {**MCP_HEADERS, "Authorization": f"Bearer {running.token()}"}
        opened = requests.post(f"{running.url}/mcp", json=INITIALIZE, headers=headers, timeout=30)
        assert opened.status_code == 200, opened.text
        assert "mcp-session-id" not in opened.headers


def submit_job(running: Serve, data_dir: Path, prompt: str) -> str:
    answer = requests.post(
        f"{running.url}/api/images/generate",
        json={"prompt": prompt},
        headers={"Authorization": f"Bearer {running.token()}"},
        timeout=30,
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    wait_until(lambda: job_row(data_dir, job_id)[0] == "running", 30, "the cluster to start the job")
    return str(job_id)


def job_row(data_dir: Path, job_id: str) -> tuple[str, int]:
    """The job's state and its number of images, read from serve's SQLite file (serve may be gone)."""
    with contextlib.closing(sqlite3.connect(data_dir / "nanoclone.sqlite3")) as database:
        return database.execute(
            "SELECT job.state, (SELECT count(*) FROM gallery_image AS image WHERE image.job_id = job.id)"
            " FROM conversations_job AS job WHERE job.id = ?",
            (job_id.removeprefix("img_"),),
        ).fetchone()


def test_a_task_of_the_in_process_cluster_finishes_before_serve_stops(tmp_path: Path) -> None:
    with serve(tmp_path, latency_ms=4000) as running:
        cluster_up(running)
        job_id = submit_job(running, tmp_path, "a lighthouse in the fog")
        os.kill(running.process.pid, signal.SIGTERM)
        assert stopped(running, 30) == 0
        assert job_row(tmp_path, job_id) == ("succeeded", 1)
        assert "cut off" not in running.text
        assert_nothing_left(running)


def test_an_in_process_task_still_running_after_the_grace_does_not_hold_serve(tmp_path: Path) -> None:
    with serve(tmp_path, grace=2, latency_ms=30_000) as running:
        cluster_up(running)
        job_id = submit_job(running, tmp_path, "a very slow lighthouse")
        signalled = time.monotonic()
        os.kill(running.process.pid, signal.SIGTERM)
        assert stopped(running, 20) == 0
        assert time.monotonic() - signalled < 15  # the grace (2 s), not the emulator's 30 s
        # Left as an interrupted job: its lease runs out and the recovery sweep runs it again.
        assert job_row(tmp_path, job_id) == ("running", 0)
        assert "Background tasks still running were cut off." in running.text
        assert_nothing_left(running)


def test_an_unknown_cluster_mode_is_refused_before_anything_starts(tmp_path: Path) -> None:
    env = {**os.environ, "NANOCLONE_DATA_DIR": str(tmp_path), "NANOCLONE_CLUSTER": "forks"}
    ran = subprocess.run(
        [sys.executable, "manage.py", "serve", "--port", str(free_port())],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode != 0
    assert "NANOCLONE_CLUSTER must be 'threads' or 'processes', not 'forks'." in ran.stderr


def test_it_prints_the_password_and_token_on_first_start_only(tmp_path: Path) -> None:
    with serve(tmp_path, "--no-cluster") as first:
        token = first.token()
        password = (tmp_path / "admin_password").read_text().strip()
        os.kill(first.process.pid, signal.SIGTERM)
        assert stopped(first, 30) == 0
    assert f"login:     admin / {password}" in first.text and f"API token: {token}" in first.text
    with serve(tmp_path, "--no-cluster") as again:
        # The token printed the first time still works; neither secret is printed again.
        assert requests.get(
            f"{again.url}/api/conversations", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ).ok
        os.kill(again.process.pid, signal.SIGTERM)
        assert stopped(again, 30) == 0
    assert password not in again.text and token not in again.text
    assert f"password in {tmp_path.resolve() / 'admin_password'}" in again.text
    assert "python manage.py api_token admin" in again.text


def test_a_host_whose_encryption_key_cant_read_the_stored_keys_refuses_to_start(tmp_path: Path) -> None:
    # A second host started without the first one's NANOCLONE_KEY_ENCRYPTION_KEY would run a pool it
    # can't use: it says so and stops.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NANOCLONE_REDIS_URL")}
    env.update(NANOCLONE_DATA_DIR=str(tmp_path), NANOCLONE_KEY_ENCRYPTION_KEY=Fernet.generate_key().decode())
    make_key = "from keys.models import ApiKey; ApiKey.create('AIzaFirstHostKey0001')"
    for command in (["migrate", "-v0"], ["shell", "-c", make_key]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=settings.BASE_DIR, env=env, check=True, timeout=120)
    env["NANOCLONE_KEY_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
    done = subprocess.run(
        [sys.executable, "manage.py", "serve", "--no-cluster", "--port", str(free_port())],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "NANOCLONE_KEY_ENCRYPTION_KEY can't decrypt the Gemini keys already stored" in done.stdout + done.stderr
    assert "NanoClone is running at" not in done.stdout

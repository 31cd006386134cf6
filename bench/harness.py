"""Shared set-up for the benchmarks: an emulator process, a `serve` process, a key and a token.

Everything runs on loopback in a throwaway data directory; nothing here reaches Google.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {seconds} s")


@dataclass
class Stack:
    emulator_url: str
    app_url: str
    token: str
    env: dict[str, str]
    emulator_pid: int
    app_pid: int
    # Every serve's URL (the first is app_url): several hosts on one database.
    app_urls: tuple[str, ...] = ()


def reference_loop_ms() -> float:
    """CPU milliseconds of one fixed piece of pure Python: how fast a core of this machine is now."""
    started = time.thread_time()
    sum(i * i for i in range(50_000))
    return (time.thread_time() - started) * 1000


@contextmanager
def core_speed() -> Iterator[list[float]]:
    """The reference loop's time, every half second while the block runs (median: how fast the cores
    were meanwhile). This 2-core virtual machine changes speed under us, up to twice the CPU time for
    the same work minutes apart, so CPU figures are only comparable with this beside them. Thread
    CPU time, so waiting for this process's GIL does not count; the loop costs about 1% of a core."""
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            samples.append(reference_loop_ms())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def cpu_seconds(root_pid: int) -> float:
    """CPU time (user + system) used so far by a process and all its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / ticks
    total = 0.0
    for pid in times:
        ancestor = pid
        while ancestor not in (root_pid, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root_pid:
            total += times[pid]
    return total


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


@contextmanager
def stack(
    emulator_latency_ms: int = 0,
    keys: int = 1,
    web_threads: int = 64,
    web_workers: int = 1,
    secrets: dict[str, str] | None = None,
    emulator_args: tuple[str, ...] = (),
    cluster: bool = False,
    serve_env: dict[str, str] | None = None,
    hosts: int = 1,
) -> Iterator[Stack]:
    """An emulator and a NanoClone server wired together: web only, or with its django-q2 cluster
    (`cluster`) as a user runs it; `serve_env` is more environment for serve alone. `hosts` serves
    on one database (and data directory), as several hosts do.

    The pool has `keys` plain keys, or `secrets` ({emulator key: Google Cloud project or ""}).
    """
    secrets = secrets if secrets is not None else {f"emu-bench-{n:04d}": "" for n in range(keys)}
    with tempfile.TemporaryDirectory(prefix="nanoclone-bench-") as data_dir:
        env = {
            **os.environ,
            "NANOCLONE_DATA_DIR": data_dir,
            "NANOCLONE_WEB_THREADS": str(web_threads),
            "NANOCLONE_WEB_WORKERS": str(web_workers),
            "NANOCLONE_LOG_LEVEL": "WARNING",
            "NANOCLONE_KEY_DAILY_LIMIT": "1000000",
        }
        emulator_port, app_ports = free_port(), [free_port() for _ in range(hosts)]
        processes = [
            subprocess.Popen(
                [
                    PYTHON,
                    "manage.py",
                    "gemini_emulator",
                    "--port",
                    str(emulator_port),
                    "--latency-ms",
                    str(emulator_latency_ms),
                    *emulator_args,
                ],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
            )
        ]
        try:
            manage(env, "migrate", "--verbosity", "0")
            emulator_url = f"http://127.0.0.1:{emulator_port}"
            setup = (
                "from django.contrib.auth import get_user_model; from keys.models import ApiKey;"
                "get_user_model().objects.create_superuser('bench', password='bench-password');"
                + "".join(
                    f"ApiKey.create('{secret}', base_url='{emulator_url}', project='{project}');"
                    for secret, project in secrets.items()
                )
            )
            manage(env, "shell", "-c", setup)
            token = manage(env, "api_token", "bench").strip().splitlines()[-1]
            for port in app_ports:
                processes.append(
                    subprocess.Popen(
                        [PYTHON, "manage.py", "serve", *([] if cluster else ["--no-cluster"]), "--port", str(port)],
                        cwd=ROOT,
                        env={**env, **(serve_env or {})},
                        stdout=subprocess.DEVNULL,
                    )
                )
            app_urls = tuple(f"http://127.0.0.1:{port}" for port in app_ports)
            wait_for(f"{emulator_url}/emulator/requests")
            for app_url in app_urls:
                wait_for(f"{app_url}/health")
            yield Stack(emulator_url, app_urls[0], token, env, processes[0].pid, processes[1].pid, app_urls)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=20)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f} ms   p95 {percentile(values, 0.95):7.1f} ms"


def generate(session: requests.Session, app: Stack, prompt: str, **fields: Any) -> float:
    """One POST /api/generate; returns its latency in ms (raises on a non-200)."""
    started = time.perf_counter()
    response = session.post(
        f"{app.app_url}/api/generate",
        json={"prompt": prompt, **fields},
        headers={"Authorization": f"Bearer {app.token}"},
        timeout=120,
    )
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
    return elapsed


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)

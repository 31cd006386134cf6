"""Several hosts: images per second and server CPU per image with one `serve` and with two, on one
PostgreSQL, one Redis and an S3-compatible bucket (moto's server), and with the local disk as the store.

Needs DATABASE_URL (a PostgreSQL server); starts Redis, moto's S3 server and the emulator (1000 ms a
call, 8 keys) itself. Each setup gets a fresh database of its own on that server. --clients clients
send POST /api/generate back to back for --seconds (after a warm-up), spread over the hosts; setups run
interleaved, --rounds times, since a core's speed drifts here. CPU is the serve processes' own (user +
system, their clusters included), not moto's, Redis's or PostgreSQL's.

    pg_virtualenv sh -c 'DATABASE_URL="postgres://$PGUSER:$PGPASSWORD@$PGHOST:$PGPORT/$PGDATABASE" \
        .venv/bin/python bench/scaleout.py [--clients 32] [--seconds 20] [--rounds 3]'
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import boto3
import psycopg
import requests
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import PYTHON, ROOT, core_speed, cpu_seconds, free_port, manage, wait_for

BUCKET = "bench-media"
SETUPS = {"one host, local disk": (1, "local"), "one host, bucket": (1, "s3"), "two hosts, bucket": (2, "s3")}


@contextmanager
def process(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        running = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield running
    finally:
        os.killpg(running.pid, signal.SIGTERM)
        try:
            running.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(running.pid, signal.SIGKILL)
            running.wait()


@contextmanager
def database(server: str) -> Iterator[str]:
    name = f"bench_scaleout_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def services(workdir: Path) -> Iterator[dict[str, str]]:
    """Redis, moto's S3 server with the bucket, and the emulator: what every setup shares."""
    redis_port, s3_port, emulator_port = free_port(), free_port(), free_port()
    with ExitStack() as stack:
        redis = ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        stack.enter_context(process(redis, workdir / "redis.log"))
        stack.enter_context(
            process(
                [str(Path(PYTHON).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], workdir / "moto.log"
            )
        )
        emulator = [PYTHON, "manage.py", "gemini_emulator", "--port", str(emulator_port), "--latency-ms", "1000"]
        stack.enter_context(process(emulator, workdir / "emulator.log"))
        s3_url, emulator_url = f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{emulator_port}"
        wait_for(f"{emulator_url}/emulator/requests")
        wait_for(s3_url)
        credentials = {"aws_access_key_id": "x", "aws_secret_access_key": "y"}
        boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", **credentials).create_bucket(Bucket=BUCKET)
        yield {"redis": f"redis://127.0.0.1:{redis_port}/0", "s3": s3_url, "emulator": emulator_url}


@contextmanager
def setup(hosts: int, store: str, shared: dict[str, str], workdir: Path) -> Iterator[tuple[list[str], list[int], str]]:
    """`hosts` serve processes on a fresh database: their URLs, their pids and an API token."""
    with ExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NANOCLONE_")}
        env.update(
            DATABASE_URL=stack.enter_context(database(os.environ["DATABASE_URL"])),
            NANOCLONE_REDIS_URL=shared["redis"],
            NANOCLONE_MEDIA_STORE=store,
            NANOCLONE_S3_BUCKET=BUCKET,
            NANOCLONE_S3_ENDPOINT_URL=shared["s3"],
            NANOCLONE_S3_REGION="us-east-1",
            NANOCLONE_S3_ACCESS_KEY_ID="x",
            NANOCLONE_S3_SECRET_ACCESS_KEY="y",
            NANOCLONE_S3_ADDRESSING_STYLE="path",
            NANOCLONE_SECRET_KEY=secrets.token_urlsafe(50),
            NANOCLONE_KEY_ENCRYPTION_KEY=Fernet.generate_key().decode(),
            NANOCLONE_KEY_DAILY_LIMIT="1000000",
            NANOCLONE_LOG_LEVEL="WARNING",
        )
        first = str(workdir / f"host-{uuid.uuid4().hex[:6]}")
        env["NANOCLONE_DATA_DIR"] = first
        Path(first).mkdir()
        manage(env, "migrate", "--verbosity", "0")
        keys = "".join(f"ApiKey.create('emu-bench-{n:04d}', base_url='{shared['emulator']}');" for n in range(8))
        manage(
            env,
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; from keys.models import ApiKey;"
            "get_user_model().objects.create_superuser('bench', password='bench-password');" + keys,
        )
        token = manage(env, "api_token", "bench").strip().splitlines()[-1]
        urls, pids = [], []
        for number in range(hosts):
            data_dir = first if number == 0 else str(workdir / f"host-{uuid.uuid4().hex[:6]}")
            Path(data_dir).mkdir(exist_ok=True)
            port = free_port()
            command = [PYTHON, "manage.py", "serve", "--port", str(port)]
            running = stack.enter_context(
                process(command, Path(data_dir) / "serve.log", {**env, "NANOCLONE_DATA_DIR": data_dir})
            )
            urls.append(f"http://127.0.0.1:{port}")
            pids.append(running.pid)
        for url in urls:
            wait_for(f"{url}/health", 120)
        yield urls, pids, token


def load(urls: list[str], token: str, clients: int, seconds: float) -> int:
    """Clients spread over the hosts, back to back until the deadline: the images made."""
    made = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        nonlocal made
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        url = urls[number % len(urls)]
        count = 0
        while time.monotonic() < deadline:
            answer = session.post(f"{url}/api/generate", json={"prompt": f"client {number} image {count}"}, timeout=120)
            count += 1
            if answer.status_code == 200:
                with lock:
                    made += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("Set DATABASE_URL to a PostgreSQL server (pg_virtualenv gives one).")
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is needed (apt-get install redis-server).")
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in SETUPS}
    with tempfile.TemporaryDirectory(prefix="nanoclone-scaleout-") as work, services(Path(work)) as shared:
        for round_number in range(args.rounds):
            for name, (hosts, store) in SETUPS.items():
                with setup(hosts, store, shared, Path(work)) as (urls, pids, token):
                    time.sleep(5)  # the clusters' workers start after the web servers
                    load(urls, token, args.clients, args.warmup)
                    before = sum(cpu_seconds(pid) for pid in pids)
                    started = time.monotonic()
                    with core_speed() as speed:
                        made = load(urls, token, args.clients, args.seconds)
                    elapsed = time.monotonic() - started
                    cpu = sum(cpu_seconds(pid) for pid in pids) - before
                    figures = (made / elapsed, cpu / max(1, made) * 1000, statistics.median(speed or [0.0]))
                    results[name].append(figures)
                    print(
                        f"  round {round_number + 1}, {name}: {figures[0]:5.1f} images/s, "
                        f"{figures[1]:5.1f} ms CPU per image (reference loop {figures[2]:.1f} ms)",
                        flush=True,
                    )
    print(f"{args.clients} clients, emulator latency 1000 ms, medians of {args.rounds} interleaved rounds:")
    for name, runs in results.items():
        rate, cpu, loop = (statistics.median(values) for values in zip(*runs, strict=True))
        print(f"  {name:22s} {rate:5.1f} images/s   {cpu:5.1f} ms CPU per image   (reference loop {loop:.1f} ms)")


if __name__ == "__main__":
    main()

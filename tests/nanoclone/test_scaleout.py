"""Two hosts on one PostgreSQL, one Redis and one S3-compatible bucket (moto's server), each `serve`
with a data directory of its own, started together: what one host makes, the other shows and serves;
a job submitted on one is run by the other's cluster; keys, rests, daily counts and the rate limit are
the pool's, whichever host asks.

Needs PostgreSQL: it runs in CI's PostgreSQL pass (DATABASE_URL set), or locally with
`make test-scaleout`. Redis and the bucket are started here, on loopback.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import signal
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import requests
from cryptography.fernet import Fernet
from django.conf import settings
from django.db import connection

from keys.gemini.emulator import GeminiEmulator
from tests.conftest import free_port, start_serve, stop_group, wait_until
from tests.conversations.test_cluster import redis_server

pytestmark = [
    pytest.mark.scaleout,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="several hosts share a PostgreSQL: make test-scaleout"
    ),
]

BUCKET = "nanoclone-shared"
PASSWORD = "scaleout-password-1"


@dataclass
class Host:
    url: str
    process: subprocess.Popen[bytes]
    output: list[str]

    def get(self, path: str, token: str) -> requests.Response:
        return requests.get(self.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=60)

    def post(self, path: str, token: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(self.url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60)


@contextmanager
def database() -> Iterator[str]:
    """A database of its own on the test run's PostgreSQL server, dropped afterwards."""
    name = f"nanoclone_scaleout_{uuid.uuid4().hex[:8]}"
    params = connection.get_connection_params()
    server = {key: params[key] for key in ("host", "port", "user", "password") if params.get(key)}
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        user, password = server.get("user", ""), server.get("password", "")
        yield f"postgres://{user}:{password}@{server.get('host', '')}:{server.get('port', 5432)}/{name}"
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def bucket_server(data_dir: Path) -> Iterator[str]:
    """moto's S3 server in a process of its own, with the bucket made."""
    port = free_port()
    with (data_dir / "moto.log").open("ab") as log:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), 30, "moto's S3 server")
        credentials = {"aws_access_key_id": "x", "aws_secret_access_key": "y"}
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", **credentials).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.ConnectionError:
        return False


@contextmanager
def host(env: dict[str, str], data_dir: Path, *arguments: str) -> Iterator[Host]:
    port = free_port()
    data_dir.mkdir(exist_ok=True)
    process, output = start_serve(
        ["--host", "127.0.0.1", "--port", str(port), *arguments],
        {**env, "NANOCLONE_DATA_DIR": str(data_dir)},
        settings.BASE_DIR,
    )
    running = Host(f"http://127.0.0.1:{port}", process, output)
    try:
        yield running
    finally:
        stop_group(process)


def healthy(running: Host) -> bool:
    try:
        return requests.get(running.url + "/health", timeout=5).json()["checks"].get("store", {}).get("status") == "ok"
    except (requests.ConnectionError, ValueError):
        return False


@pytest.fixture(scope="module")
def shared(emulator: GeminiEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """What two hosts share: the database, the broker, the bucket, the two secrets."""
    data_dir = tmp_path_factory.mktemp("scaleout")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (CI installs it)")
    with ExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if not k.startswith("NANOCLONE_")}
        env.update(
            DATABASE_URL=stack.enter_context(database()),
            NANOCLONE_REDIS_URL=stack.enter_context(redis_server(data_dir)),
            NANOCLONE_MEDIA_STORE="s3",
            NANOCLONE_S3_BUCKET=BUCKET,
            NANOCLONE_S3_ENDPOINT_URL=stack.enter_context(bucket_server(data_dir)),
            NANOCLONE_S3_REGION="us-east-1",
            NANOCLONE_S3_ACCESS_KEY_ID="x",
            NANOCLONE_S3_SECRET_ACCESS_KEY="y",
            NANOCLONE_S3_ADDRESSING_STYLE="path",
            NANOCLONE_SECRET_KEY=secrets.token_urlsafe(50),
            NANOCLONE_KEY_ENCRYPTION_KEY=Fernet.generate_key().decode(),
            NANOCLONE_ADMIN_PASSWORD=PASSWORD,
            NANOCLONE_Q_WORKERS="2",
            NANOCLONE_DIALECT_RATE_LIMIT="3/min",
            NANOCLONE_LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
            DATA_ROOT=str(data_dir),
        )
        env["EMULATOR"] = emulator.url
        yield env


def token_of(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", "api_token", "admin"],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_two_hosts_serve_one_pool_one_gallery_and_one_queue(shared: dict[str, str], emulator: GeminiEmulator) -> None:
    root = Path(shared["DATA_ROOT"])
    # Started together on an empty database: one migrates, the other waits for it (an advisory lock).
    with host(shared, root / "a") as a, host(shared, root / "b", "--no-cluster") as b:
        wait_until(lambda: healthy(a) and healthy(b), 120, "both hosts to answer /health")
        token = token_of({**shared, "NANOCLONE_DATA_DIR": str(root / "a")})
        # A key added on A serves B.
        added = a.post(
            "/api/keys", token, {"key": "emu-ok-shared-0001", "baseUrl": shared["EMULATOR"], "dailyLimit": 50}
        )
        assert added.status_code == 201, added.text
        made_on_b = b.post("/api/generate", token, {"prompt": "made on host B"})
        assert made_on_b.status_code == 200, made_on_b.text
        # An image made on A shows on B: its file, thumbnail, display rendition, share link and zip.
        made = a.post("/api/generate", token, {"prompt": "made on host A"}).json()["data"]
        image = made["message"]["images"][0]
        original = a.get(f"/files/{image['id']}.png", token).content
        assert b.get(f"/files/{image['id']}.png", token).content == original
        for variant in ("thumbnail", "display"):
            assert b.get(f"/files/{image['id']}/{variant}", token).status_code == 200, variant
        listed = b.get("/api/images", token).json()["data"]["results"]
        assert {row["id"] for row in listed} >= {image["id"]}
        session = requests.Session()
        session.get(f"{b.url}/accounts/login/", timeout=30)
        login = {"username": "admin", "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]}
        session.post(
            f"{b.url}/accounts/login/", data=login, headers={"Referer": f"{b.url}/accounts/login/"}, timeout=30
        )
        csrf = {"X-CSRFToken": session.cookies["csrftoken"] or "", "Referer": f"{b.url}/gallery"}
        zipped = session.post(f"{b.url}/gallery/selection.zip", data={"ids": [image["id"]]}, headers=csrf, timeout=60)
        archive = zipfile.ZipFile(io.BytesIO(zipped.content))
        assert archive.read(archive.namelist()[0]) == original
        # A job submitted on B (no cluster there) is run by A's cluster; its result URLs work on both.
        job_id = b.post("/api/images/generate", token, {"prompt": "un phare", "quality": "standard"}).json()["job_id"]
        wait_until(lambda: b.get(f"/api/images/status/{job_id}", token).json()["status"] == "COMPLETED", 60, "the job")
        result = b.get(f"/api/images/result/{job_id}", token).json()["images"][0]["url"]
        path = "/" + result.split("/", 3)[3]
        assert requests.get(a.url + path, timeout=30).status_code == 200  # a signed URL, no token
        assert requests.get(b.url + path, timeout=30).status_code == 200
        # The pool's state is shared: the key's daily count (B's call, A's, and A's cluster's run of
        # B's job), and a rest that a call through B set is what A sees.
        (key,) = a.get("/api/keys", token).json()["data"]
        assert key["usedToday"] == 3
        requests.delete(f"{a.url}/api/keys?id={key['id']}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        a.post("/api/keys", token, {"key": "emu-429-shared-0002", "baseUrl": shared["EMULATOR"]})
        assert b.post("/api/generate", token, {"prompt": "quota spent"}).status_code == 503
        rests = requests.get(f"{a.url}/health", timeout=30).json()["checks"]["keys"]["rests"]
        assert [rest["why"] for rest in rests] == ["GenerateRequestsPerDayPerProjectPerModel-FreeTier"]
        # The rate limit holds across hosts (Redis counts it): 3 a minute in all.
        statuses = [
            host.post("/v1/images/generations", token, {"model": "nano-banana", "prompt": f"count {n}"}).status_code
            for n, host in enumerate((a, b, a, b))
        ]
        assert 429 not in statuses[:3] and statuses[3] == 429, statuses

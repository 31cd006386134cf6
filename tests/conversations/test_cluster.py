"""The jobs API against a real deployment: `manage.py serve` (web) and `manage.py qcluster` as
subprocesses on a SQLite file in a temporary data directory, the emulator over loopback.

The cluster is killed (SIGKILL, whole process group) while a job is GENERATING; a new cluster
picks the task up again after Q_CLUSTER retry, re-claims the job once its lease expired, and
the job completes exactly once: its images stored once, one completed webhook. With the default
settings (a 45 s lease, the sweep every minute, django-q2's retry of 660 s) the sweep takes the
job over and it completes within 2 minutes of the kill.

The same deployment also runs on the Redis broker (NANOCLONE_REDIS_URL) against a real
`redis-server` started for the test on a free loopback port.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL.Image
import pytest
import redis
import requests
from django.conf import settings
from google import genai
from google.genai import types

from keys.gemini.emulator import GeminiEmulator
from tests.conftest import Receiver, free_port, start_receiver, start_serve, wait_until

pytestmark = pytest.mark.cluster

SECRET = "cluster-webhook-secret"


@dataclass
class Deployment:
    url: str
    token: str
    data_dir: Path
    env: dict[str, str]
    receiver: Receiver
    cluster: subprocess.Popen[bytes] | None = None

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(method, self.url + path, headers=headers, timeout=15, **kwargs)

    def start_cluster(self) -> None:
        log = (self.data_dir / "qcluster.log").open("ab")
        # A session of its own: SIGKILL to the group takes the sentinel and every worker at once.
        self.cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=settings.BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill_cluster(self) -> None:
        if self.cluster and self.cluster.poll() is None:
            os.killpg(self.cluster.pid, signal.SIGKILL)
            self.cluster.wait(timeout=10)
        self.cluster = None

    def status(self, job_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/api/images/status/{job_id}").json())

    def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.data_dir / "nanoclone.sqlite3", timeout=20) as db:
            return db.execute(sql, params).fetchall()


@contextmanager
def redis_server(data_dir: Path) -> Iterator[str]:
    """A throwaway `redis-server` on a free loopback port, nothing persisted; yields its URL."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; CI installs it)")
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    with (data_dir / "redis.log").open("ab") as log:
        server = subprocess.Popen([*command, "--dir", str(data_dir)], stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        wait_until(lambda: _pings(url), 15, "redis-server to answer")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _pings(url: str) -> bool:
    try:
        with redis.Redis.from_url(url) as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="module")
def deployment(
    emulator: GeminiEmulator, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Deployment]:
    """The ORM broker by default; `@pytest.mark.parametrize("deployment", ["redis"], indirect=True)`
    runs the same deployment on the Redis broker, `["defaults"]` on the ORM broker with the default
    timeout, retry, lease and sweep."""
    variant = getattr(request, "param", "orm")
    data_dir = tmp_path_factory.mktemp(f"deployment-{variant}")
    with ExitStack() as stack:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "NANOCLONE_REDIS_URL")}
        env = {k: v for k, v in env.items() if not k.startswith(("NANOCLONE_Q_", "NANOCLONE_JOB_", "NANOCLONE_RECOV"))}
        if variant == "redis":
            env["NANOCLONE_REDIS_URL"] = stack.enter_context(redis_server(data_dir))
        if variant != "defaults":
            # Short enough for a test: a task is killed after 8 s, handed out again after 10 s, when
            # the dead run's 6 s lease has run out.
            env.update(NANOCLONE_Q_TIMEOUT="8", NANOCLONE_Q_RETRY="10", NANOCLONE_JOB_LEASE_SECONDS="6")
        yield from _deploy(emulator, data_dir, env)


def _deploy(emulator: GeminiEmulator, data_dir: Path, env: dict[str, str]) -> Iterator[Deployment]:
    receiver, receiver_server = start_receiver()
    env.update(
        NANOCLONE_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
        NANOCLONE_Q_WORKERS="2",
        NANOCLONE_FETCH_ALLOW_LOOPBACK="1",
        NANOCLONE_CALLBACK_ALLOW_HTTP="1",
        WEBHOOK_URL=receiver.url("/api/webhooks/image-completion"),
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_ENABLED="true",
        # Batch jobs sent at once, looked at often: a test's batch takes seconds.
        NANOCLONE_BATCH_GATHER_SECONDS="0",
        NANOCLONE_BATCH_LOOK_SECONDS="0.3",
        NANOCLONE_BATCH_POLL_SECONDS="0.5",
        NANOCLONE_BATCH_POLL_MAX_SECONDS="1",
        NANOCLONE_BATCH_STEP_SECONDS="5",
    )
    port = free_port()
    web, output = start_serve(["--no-cluster", "--host", "127.0.0.1", "--port", str(port)], env, settings.BASE_DIR)
    deployment = None
    try:
        token_line = wait_until(
            lambda: next((line for line in output if "API token:" in line), None), 60, "serve to start"
        )
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(url + "/health"), 30, "the web server")
        deployment = Deployment(url, token_line.split("API token:")[1].strip(), data_dir, env, receiver)
        added = deployment.api("POST", "/api/keys", json={"key": "emu-slow1500-cluster", "baseUrl": emulator.url})
        assert added.status_code == 201, added.text
        yield deployment
    finally:
        if deployment:
            deployment.kill_cluster()
        os.killpg(web.pid, signal.SIGTERM)
        try:
            web.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(web.pid, signal.SIGKILL)
        receiver_server.shutdown()
        receiver_server.server_close()
        if deployment is None:
            print("".join(output))  # why serve did not come up


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def verify(hit: Any) -> bool:
    signed = f"{hit.headers['X-Webhook-Timestamp']}.".encode() + hit.body
    expected = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, hit.headers["X-Webhook-Signature"])


def test_a_cluster_runs_a_job_and_delivers_the_signed_webhook(deployment: Deployment) -> None:
    deployment.start_cluster()
    health = wait_until(
        lambda: (body := deployment.api("GET", "/health").json())["checks"]["queue"]["alive"] and body,
        30,
        "the cluster to show up in /health",
    )
    assert health["status"] == "healthy" and health["checks"]["keys"]["usable"] == 1
    job_id = deployment.api(
        "POST", "/api/images/generate", json={"prompt": "un phare", "size": "512x512", "quality": "standard"}
    ).json()["job_id"]
    wait_until(lambda: deployment.status(job_id)["status"] == "COMPLETED", 30, "the job to complete")
    image = deployment.api("GET", f"/api/images/result/{job_id}").json()["images"][0]
    picture = PIL.Image.open(io.BytesIO(requests.get(image["url"], timeout=10).content))
    assert picture.size == (512, 512)
    completed = wait_until(
        lambda: [h for h in deployment.receiver.hits if h.json["job_id"] == job_id and h.json["status"] == "completed"],
        20,
        "the completed webhook",
    )
    assert len(completed) == 1 and verify(completed[0])
    sent = completed[0].json["data"]["images"][0]["url"]  # signed again: only the query differs
    assert sent.split("?")[0] == image["url"].split("?")[0]
    assert requests.get(sent, timeout=10).status_code == 200


def test_a_job_survives_its_cluster_being_killed_and_completes_exactly_once(deployment: Deployment) -> None:
    kill_mid_generation_and_restart(deployment, "un volcan", within=45)


@pytest.mark.parametrize("deployment", ["defaults"], indirect=True)
def test_with_default_settings_a_killed_job_completes_within_two_minutes(deployment: Deployment) -> None:
    """django-q2 would hand the task out again only after 660 s: the sweep, every minute, finds
    the job's 45 s lease expired and requeues it."""
    kill_mid_generation_and_restart(deployment, "un glacier", within=120)
    assert deployment.rows("SELECT minutes FROM django_q_schedule WHERE name = 'Recover stale jobs'") == [(1,)]


def kill_mid_generation_and_restart(deployment: Deployment, prompt: str, within: float) -> None:
    """Kill the cluster -9 while the job is GENERATING, start a new one: the job completes
    `within` seconds of the kill, exactly once."""
    if deployment.cluster is None:
        deployment.start_cluster()
    job_id = deployment.api(
        "POST",
        "/api/images/generate",
        json={"prompt": prompt, "num_images": 2, "size": "512x512", "quality": "standard"},
    ).json()["job_id"]
    wait_until(lambda: deployment.status(job_id)["status"] == "GENERATING", 30, "GENERATING")
    deployment.kill_cluster()
    killed = time.monotonic()
    time.sleep(2)  # the emulator's answers would have arrived by now: nobody is there to take them
    stuck = deployment.status(job_id)
    assert stuck["status"] == "GENERATING"
    deployment.start_cluster()
    wait_until(
        lambda: deployment.status(job_id)["status"] == "COMPLETED",
        within - (time.monotonic() - killed),
        "the job to complete after restart",
    )
    result = deployment.api("GET", f"/api/images/result/{job_id}").json()
    assert len(result["images"]) == 2
    pk = job_id.removeprefix("img_")
    assert deployment.rows("SELECT count(*) FROM gallery_image WHERE job_id = ? AND role = 'output'", pk) == [(2,)]
    assert deployment.rows("SELECT state, attempts FROM conversations_job WHERE id = ?", pk) == [("succeeded", 2)]
    assert deployment.rows(
        "SELECT count(*) FROM conversations_message m JOIN conversations_job j ON j.conversation_id = m.conversation_id"
        " WHERE j.id = ? AND m.role = 'assistant'",
        pk,
    ) == [(1,)]
    time.sleep(1)  # give a (wrong) second completion the chance to show up
    completed = [h for h in deployment.receiver.hits if h.json["job_id"] == job_id and h.json["status"] == "completed"]
    assert len(completed) == 1 and verify(completed[0])


LEDGER_OF = "SELECT tier, cost, saved FROM keys_usagerecord WHERE replace(job_id, '-', '') = ?"
BATCH_DOORS: dict[
    str, tuple[str, dict[str, Any]]
] = {  # each door's request at the batch price, the prompt marked to find its job
    "jobs": ("/api/images/generate", {"prompt": "un moulin (jobs)", "size": "512x512", "quality": "standard"}),
    "evolink": ("/v1/images/generations", {"model": "gemini-2.5-flash-image", "prompt": "un moulin (evolink)"}),
    "runbase": ("/api/v1/runs", {"model": "google/nano-banana-pro", "input": {"prompt": "un moulin (runbase)"}}),
    "acedata": ("/nano-banana/images", {"action": "generate", "prompt": "un moulin (acedata)", "model": "nano-banana"}),
}


def test_batch_jobs_from_every_door_survive_their_cluster_being_killed_and_complete_exactly_once(
    deployment: Deployment, emulator: GeminiEmulator
) -> None:
    """Batch jobs from the jobs API, evolink, Runbase, AceData and Gemini's own batches; the cluster
    killed -9 once their batches are at Google; the batches end while no cluster runs; a new cluster
    polls and collects them: each job completes once, with one image, one ledger row at the batch
    tier, one batch sent per model, and the jobs API's webhook once."""
    emulator.batch_seconds = 4
    try:
        if deployment.cluster is None:
            deployment.start_cluster()
        for door, (path, body) in BATCH_DOORS.items():
            answer = deployment.api("POST", path, json={**body, "priority": "batch"})
            assert answer.status_code < 300, (door, answer.text)
        # Gemini's own API, as google-genai's batches speak it.
        gemini = genai.Client(api_key=deployment.token, http_options=types.HttpOptions(base_url=deployment.url))
        asked = gemini.batches.create(
            model="gemini-3.1-flash-image", src=[types.InlinedRequest(contents="un moulin (gemini)")]
        )
        jobs = (
            "SELECT j.id, b.name, j.state FROM conversations_job j"
            " JOIN conversations_message m ON m.id = j.user_message_id"
            " LEFT JOIN conversations_batch b ON b.id = j.batch_id WHERE m.text LIKE '%un moulin (%'"
        )
        wait_until(
            lambda: len(rows := deployment.rows(jobs)) == len(BATCH_DOORS) + 1 and all(name for _, name, _ in rows),
            30,
            "every door's job in a batch at Google",
        )
        job_id = "img_" + next(pk for pk, *_ in deployment.rows(jobs + " AND m.text LIKE '%(jobs)%'"))
        assert deployment.status(job_id)["status"] == "PENDING"  # waiting in a batch
        deployment.kill_cluster()
        time.sleep(4.5)  # the batches end at Google while no cluster runs
        deployment.start_cluster()
        wait_until(
            lambda: all(state == "succeeded" for *_, state in deployment.rows(jobs)), 60, "every batch job to complete"
        )
    finally:
        emulator.batch_seconds = 2.0
    answered = gemini.batches.get(name=str(asked.name))
    assert answered.state == types.JobState.JOB_STATE_SUCCEEDED and answered.dest and answered.dest.inlined_responses
    (item,) = answered.dest.inlined_responses
    assert item.response and item.response.parts and item.response.parts[-1].inline_data
    for pk, *_ in deployment.rows(jobs):
        assert deployment.rows("SELECT count(*) FROM gallery_image WHERE job_id = ? AND role = 'output'", pk) == [(1,)]
        ledger = deployment.rows(LEDGER_OF, pk)
        assert len(ledger) == 1 and ledger[0][0] == "batch" and ledger[0][1] > 0 and ledger[0][2] > 0
    sent = [r for r in emulator.requests if r.get("api") == "batch" and "un moulin (" in str(r.get("prompt"))]
    models = {model for (model,) in deployment.rows("SELECT DISTINCT j.model " + jobs[jobs.index("FROM") :])}
    assert len(sent) == len(models)  # one batch per model, sent once
    time.sleep(1)  # give a (wrong) second completion the chance to show up
    completed = [h for h in deployment.receiver.hits if h.json["job_id"] == job_id and h.json["status"] == "completed"]
    assert len(completed) == 1 and verify(completed[0])


def health_command(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    """`manage.py health`, the check a worker container runs, on this deployment's settings."""
    return subprocess.run(
        [sys.executable, "manage.py", "health", *args],
        cwd=settings.BASE_DIR,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("deployment", ["redis"], indirect=True)
def test_a_job_goes_through_a_real_redis_broker(deployment: Deployment) -> None:
    no_cluster = health_command(deployment, "--cluster")
    assert no_cluster.returncode == 1 and "no cluster alive on this host" in no_cluster.stderr
    assert json.loads(no_cluster.stdout)["status"] == "degraded"
    deployment.start_cluster()
    # The sentinel's first heartbeat can come before its workers have registered: wait for both.
    health = wait_until(
        lambda: (body := deployment.api("GET", "/health").json())["checks"]["queue"]["workers"] == 2 and body,
        30,
        "the cluster and its workers to show up in /health",
    )
    assert health["status"] == "healthy"
    assert health["checks"]["queue"] == {"broker": "redis", "alive": True, "clusters": 1, "workers": 2}
    # The heartbeat /health read lives in Redis, not in the file cache of the ORM broker.
    with redis.Redis.from_url(deployment.env["NANOCLONE_REDIS_URL"]) as client:
        assert client.keys("django_q:*:cluster:*")
    assert not list((deployment.data_dir / "cluster-cache").glob("*.djcache"))
    alive = health_command(deployment, "--cluster")
    assert alive.returncode == 0, alive.stderr
    assert json.loads(alive.stdout)["checks"]["queue"]["alive"] is True
    job_id = deployment.api(
        "POST",
        "/api/images/generate",
        json={"prompt": "un moulin", "num_images": 2, "size": "512x512", "quality": "standard"},
    ).json()["job_id"]
    wait_until(lambda: deployment.status(job_id)["status"] == "COMPLETED", 30, "the job to complete")
    images = deployment.api("GET", f"/api/images/result/{job_id}").json()["images"]
    assert len(images) == 2
    for image in images:
        picture = PIL.Image.open(io.BytesIO(requests.get(image["url"], timeout=10).content))
        assert picture.size == (512, 512)

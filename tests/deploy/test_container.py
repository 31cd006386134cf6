"""The container image and compose.yaml, run as an operator runs them (`make test-container`).

Root podman builds the image from the Dockerfile, on a stand-in of its public Python base made
from Debian's packages (.ci/containers/base.sh: registries can't be reached here), and brings
compose.yaml's stack up with the CI override (.ci/containers/compose.ci.yaml: Debian-based
stand-ins for PostgreSQL, Redis and the store, host networking, free ports). An image is then
generated through the web container and the worker's cluster against the Gemini emulator running
here, and found in the store's bucket. The stack is brought down and its volumes removed.

Needs root, podman, buildah, debootstrap and runc (`apt-get install`), so it runs only with
`-m container`: CI runs it as its own step.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from django.conf import settings

import nanoclone
from keys.gemini.emulator import GeminiEmulator
from tests.conftest import free_port, wait_until

pytestmark = pytest.mark.container

ROOT = Path(settings.BASE_DIR)
CONTAINERS = ROOT / ".ci" / "containers"
BASE_IMAGE = "docker.io/library/python:3.11-slim-bookworm"  # the Dockerfile's FROM
IMAGE = "localhost/nanoclone:latest"  # compose.yaml's image
STANDINS = "localhost/nanoclone-standins"
PROJECT = "nanoclone-ci"  # not the operator's "nanoclone", should one run on this machine
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS / "containers.conf")}


def podman(*args: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], env=PODMAN_ENV, capture_output=True, text=True, timeout=timeout, check=check
    )


def build(tag: str, context: Path, containerfile: Path) -> float:
    """Seconds to build: Docker's format keeps HEALTHCHECK; the base is the local stand-in."""
    started = time.monotonic()
    args = ["build", "--format", "docker", "--pull=never", "--network=host", "-t", tag, "-f", str(containerfile)]
    podman(*args, str(context))
    return time.monotonic() - started


@pytest.fixture(scope="module")
def images(request: pytest.FixtureRequest) -> dict[str, Any]:
    if "container" not in (request.config.option.markexpr or ""):
        pytest.skip("builds container images as root: pytest -m container (make test-container)")
    if not shutil.which("podman"):
        pytest.fail("podman isn't installed: apt-get install podman buildah debootstrap runc")
    figures: dict[str, Any] = {}
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        started = time.monotonic()
        subprocess.run([str(CONTAINERS / "base.sh"), BASE_IMAGE], env=PODMAN_ENV, check=True, timeout=900)
        figures["base image (debootstrap)"] = f"{time.monotonic() - started:.0f} s"
    figures["NanoClone image build"] = f"{build(IMAGE, ROOT, ROOT / 'Dockerfile'):.0f} s"
    figures["stand-ins build"] = f"{build(STANDINS, CONTAINERS, CONTAINERS / 'standins.Containerfile'):.0f} s"
    inspected = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    base_size = json.loads(podman("image", "inspect", BASE_IMAGE).stdout)[0]["Size"]
    figures["NanoClone image size"] = (
        f"{inspected['Size'] / 1e6:.0f} MB ({(inspected['Size'] - base_size) / 1e6:.0f} MB over its base)"
    )
    print("\n" + "\n".join(f"  {what}: {figure}" for what, figure in figures.items()))
    return dict(inspected)


@dataclass
class Stack:
    env: dict[str, str]
    url: str
    store_url: str
    token: str = ""

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        files = ["-f", str(ROOT / "compose.yaml"), "-f", str(CONTAINERS / "compose.ci.yaml")]
        command = [str(Path(sys.executable).parent / "podman-compose"), "-p", PROJECT, *files, *args]
        return subprocess.run(
            command, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=True
        )

    def up(self, service: str) -> None:
        # One service at a time, in compose.yaml's order: podman before 4.6 can't wait on health
        # conditions, and podman-compose's --requires of every dependency trips podman 4.3 up.
        self.compose("up", "-d", "--no-build", "--no-deps", service)

    def healthy(self, service: str, timeout: float) -> None:
        """Run the service's health check until it passes, as podman's systemd timer would (there
        is no systemd here), then see that podman reports the container healthy."""
        container = f"{PROJECT}_{service}_1"
        wait_until(
            lambda: podman("healthcheck", "run", container, check=False).returncode == 0, timeout, f"{service} healthy"
        )
        assert podman("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip() == "healthy"

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def stack(images: dict[str, Any]) -> Iterator[Stack]:
    web_port, postgres_port, redis_port, store_port = (free_port() for _ in range(4))
    env = {
        **PODMAN_ENV,
        # What an operator puts in .env (docs/deploy.md).
        "POSTGRES_PASSWORD": "postgres-secret",
        "STORE_PASSWORD": "store-secret",
        "NANOCLONE_SECRET_KEY": "a-secret-key-for-the-container-test",
        "NANOCLONE_KEY_ENCRYPTION_KEY": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
        "NANOCLONE_ADMIN_PASSWORD": "admin-secret",
        # The CI override's ports.
        "CI_WEB_PORT": str(web_port),
        "CI_POSTGRES_PORT": str(postgres_port),
        "CI_REDIS_PORT": str(redis_port),
        "CI_STORE_PORT": str(store_port),
    }
    stack = Stack(env, f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{store_port}")
    started = time.monotonic()
    try:
        for service in ("postgres", "redis", "store"):
            stack.up(service)
        for service in ("postgres", "redis", "store"):
            stack.healthy(service, 60)
        stack.up("bucket")
        assert podman("wait", f"{PROJECT}_bucket_1", timeout=60).stdout.strip() == "0"
        stack.up("web")
        stack.healthy("web", 180)  # it migrates PostgreSQL first
        stack.up("worker")
        stack.healthy("worker", 120)
        print(f"  the stack up and healthy: {time.monotonic() - started:.0f} s")
        made = podman("exec", f"{PROJECT}_web_1", "python", "manage.py", "api_token", "admin")
        stack.token = made.stdout.strip().splitlines()[-1]
        yield stack
    finally:
        for service in ("web", "worker"):
            logs = podman("logs", f"{PROJECT}_{service}_1", check=False)
            print(f"--- {service} ---\n{(logs.stdout + logs.stderr)[-3000:]}")
        for service in ("worker", "web"):  # as `compose down` would, timed: SIGTERM, then their grace
            started = time.monotonic()
            podman("stop", "--time", "40", f"{PROJECT}_{service}_1", check=False)
            print(f"  {service} stopped in {time.monotonic() - started:.1f} s")
        stack.compose("down", "--volumes")
        left = podman("ps", "--all", "--quiet", "--filter", f"label=io.podman.compose.project={PROJECT}").stdout
        volumes = podman("volume", "ls", "--quiet", "--filter", f"label=io.podman.compose.project={PROJECT}").stdout
        assert not left.strip() and not volumes.strip(), "the stack left containers or volumes behind"


def test_the_image_runs_as_a_non_root_user_with_a_health_check_and_its_version(
    images: dict[str, Any], stack: Stack
) -> None:
    config = images["Config"]
    assert config["User"] == "nanoclone"
    assert config["Labels"]["org.opencontainers.image.version"] == nanoclone.__version__
    assert "/data" in config["Volumes"]
    # Kept: built in Docker's format (an OCI image has no HEALTHCHECK).
    assert "docker" in images["ManifestType"] and images["Healthcheck"]["Test"][0] == "CMD"
    for service in ("web", "worker"):
        user = podman("exec", f"{PROJECT}_{service}_1", "id", "-u").stdout.strip()
        assert user == "10001", f"{service} runs as uid {user}"
    # The code is root's: the user that runs it can't change it.
    tampered = podman("exec", f"{PROJECT}_web_1", "touch", "/app/manage.py", check=False)
    assert tampered.returncode != 0


def test_an_image_generated_through_the_containers_lands_in_the_store(stack: Stack, emulator: GeminiEmulator) -> None:
    health = stack.api("GET", "/health").json()
    assert health["checks"]["store"] == {"kind": "s3", "status": "ok"}
    assert health["checks"]["queue"]["broker"] == "redis" and health["checks"]["queue"]["alive"]
    added = stack.api("POST", "/api/keys", json={"key": "emu-container-key", "baseUrl": emulator.url})
    assert added.status_code == 201, added.text
    # The jobs API's door: the web container records the job, the worker's cluster runs it.
    submitted = stack.api(
        "POST", "/api/images/generate", json={"prompt": "un phare", "size": "512x512", "quality": "standard"}
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    status = wait_until(
        lambda: (
            (body := stack.api("GET", f"/api/images/status/{job_id}").json())["status"] in ("COMPLETED", "FAILED")
            and body
        ),
        60,
        "the job to finish",
    )
    assert status["status"] == "COMPLETED", status
    image = stack.api("GET", f"/api/images/result/{job_id}").json()["images"][0]
    served = requests.get(image["url"], timeout=30)
    assert served.status_code == 200 and served.content.startswith(b"\x89PNG")
    bucket = boto3.client(
        "s3",
        endpoint_url=stack.store_url,
        region_name="us-east-1",
        aws_access_key_id="nanoclone",
        aws_secret_access_key="store-secret",
    )
    stored = {
        hashlib.sha256(bucket.get_object(Bucket="nanoclone", Key=item["Key"])["Body"].read()).hexdigest()
        for item in bucket.list_objects_v2(Bucket="nanoclone").get("Contents", [])
    }
    assert hashlib.sha256(served.content).hexdigest() in stored

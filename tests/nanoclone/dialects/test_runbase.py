"""Runbase's dialect end to end: the document's curl example over HTTP, runs, and every documented error."""

from __future__ import annotations

import io
import time
from typing import Any

import PIL.Image
import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.models import Job
from conversations.pipeline import batches
from keys.models import UsageRecord
from tests.conftest import batch_finished, emulator_requests, png_bytes

pytestmark = pytest.mark.django_db

EXAMPLE = {"model": "google/nano-banana-pro", "input": {"prompt": "A cinematic product photo of a ceramic lamp"}}


def create(api: APIClient, model: str = "google/nano-banana-pro", **given: Any) -> Any:
    body = {"model": model, "input": {"prompt": "A cinematic product photo of a ceramic lamp", **given}}
    return api.post("/api/v1/runs", body, format="json")


def run_now(api: APIClient, capture: Any, **given: Any) -> dict[str, Any]:
    """Create a run, let the (inline) cluster run it, and read it back."""
    with capture(execute=True):
        run = create(api, **given).json()
    return api.get(f"/api/v1/runs/{run['id']}").json()


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(response.json()) == {"error"}
    assert error["status"] == status and error["code"] == code and error["message"]
    return error


@pytest.mark.django_db(transaction=True)
def test_it_serves_the_documented_curl_example_over_http(
    live_server: Any, user: Any, add_key: Any, inline_tasks: None
) -> None:
    add_key()
    headers = {"Authorization": f"Bearer {Token.objects.create(user=user).key}", "Content-Type": "application/json"}
    created = requests.post(
        f"{live_server.url}/api/v1/runs",
        headers=headers,
        data="""{
    "model": "google/nano-banana-pro",
    "input": { "prompt": "A cinematic product photo of a ceramic lamp" }
  }""",
        timeout=30,
    )
    assert created.status_code == 201, created.text
    run = created.json()
    assert run["status"] == "queued" and run["model"] == "google/nano-banana-pro" and run["output"] is None

    deadline = time.monotonic() + 20
    while True:
        polled = requests.get(f"{live_server.url}/api/v1/runs/{run['id']}", headers=headers, timeout=10).json()
        if polled["status"] in ("succeeded", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert polled["status"] == "succeeded", polled
    image = requests.get(polled["output"]["urls"][0], timeout=10)  # no token needed
    assert image.status_code == 200
    assert PIL.Image.open(io.BytesIO(image.content)).size == (1024, 1024)


def test_it_honours_aspect_ratio_and_resolution(
    api: APIClient, add_key: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    run = run_now(api, django_capture_on_commit_callbacks, aspect_ratio="21:9", resolution="2K")
    assert run["status"] == "succeeded" and run["input"]["aspect_ratio"] == "21:9"
    response = APIClient().get(run["output"]["urls"][0])
    assert PIL.Image.open(io.BytesIO(response.getvalue())).size == (3168, 1344)


def test_it_sends_the_images_of_image_urls_to_gemini(
    api: APIClient, add_key: Any, emu: Any, receiver: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    url = receiver.serve("/lamp.png", png_bytes((400, 300)))
    run = run_now(api, django_capture_on_commit_callbacks, image_urls=[url])
    assert run["status"] == "succeeded"
    assert emulator_requests(emu)[0]["inline_images"] == 1


def test_it_ends_a_refused_run_as_failed_with_the_reason(
    api: APIClient, add_key: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    run = run_now(api, django_capture_on_commit_callbacks, prompt="a lamp [imagesafety]")
    assert run["status"] == "failed" and run["output"] is None
    assert run["error"]["code"] == "image_safety" and run["error"]["message"]


def test_it_shows_a_cancelled_run_as_canceled(api: APIClient, add_key: Any) -> None:
    from conversations import pipeline

    add_key()
    run = create(api).json()
    pipeline.cancel(Job.objects.get(pk=run["id"]))
    assert api.get(f"/api/v1/runs/{run['id']}").json()["status"] == "canceled"


def test_it_shows_the_runs_images_in_the_owners_gallery(
    api: APIClient, add_key: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    run_now(api, django_capture_on_commit_callbacks, prompt="a gallery lamp")
    images = api.get("/api/images").json()["data"]["results"]
    assert [image["prompt"] for image in images] == ["a gallery lamp"]


# --- the Batch API's price: priority "batch" beside model and input (not in Runbase's document) ----------------


@pytest.mark.django_db(transaction=True)
def test_a_run_at_the_batch_price_reads_queued_in_its_batch_then_succeeds(
    api: APIClient, add_key: Any, quick_batches: Any, inline_tasks: None
) -> None:
    add_key()
    body = {**EXAMPLE, "priority": "batch", "batch_fallback": True}
    created = api.post("/api/v1/runs", body, format="json")
    assert created.status_code == 201, created.content
    run = created.json()
    job = Job.objects.get(pk=run["id"])
    assert (job.priority, job.options["batch_fallback"]) == (Job.Priority.BATCH, True)
    assert run["status"] == "queued"
    batches.pack()
    job.refresh_from_db()
    assert (job.state, job.phase) == (Job.State.RUNNING, Job.Phase.BATCHED)
    assert api.get(f"/api/v1/runs/{run['id']}").json()["status"] == "queued"  # queued at Google, not running

    assert batch_finished(job).state == Job.State.SUCCEEDED
    done = api.get(f"/api/v1/runs/{run['id']}").json()
    assert done["status"] == "succeeded" and done["error"] is None
    response = APIClient().get(done["output"]["urls"][0])  # no token: the signed URL is enough
    assert response.status_code == 200 and PIL.Image.open(io.BytesIO(response.getvalue())).size == (1024, 1024)
    rows = UsageRecord.objects.filter(job_id=str(job.pk))
    assert rows.exists() and set(rows.values_list("tier", flat=True)) == {"batch"}


def test_a_run_without_priority_is_not_batch_priced(api: APIClient, add_key: Any) -> None:
    add_key()
    create(api)
    assert Job.objects.get().priority == Job.Priority.BACKGROUND


# --- the document's status codes, in one shape: {"error": {"status", "code", "message"[, "param"]}} -----------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": {"prompt": "a lamp"}}, "model"),
        ({"model": "google/nano-banana-pro"}, "input"),
        ({"model": "google/nano-banana-pro", "input": {}}, "input.prompt"),
        ({"model": "google/nano-banana-pro", "input": {"prompt": "a", "aspect_ratio": "7:3"}}, "input.aspect_ratio"),
        ({"model": "google/nano-banana-pro", "input": {"prompt": "a", "resolution": "8K"}}, "input.resolution"),
        ({"model": "stable-diffusion", "input": {"prompt": "a lamp"}}, "model"),
        ({"model": "google/nano-banana-pro", "input": {"prompt": "a", "image_urls": ["ftp://x/y.png"]}}, None),
        ({**EXAMPLE, "priority": "urgent"}, "priority"),
        ({**EXAMPLE, "batch_fallback": "sometimes"}, "batch_fallback"),
    ],
)
def test_it_answers_400_for_bad_or_missing_parameters(
    api: APIClient, add_key: Any, body: dict[str, Any], param: str | None
) -> None:
    add_key()
    error = assert_error(api.post("/api/v1/runs", body, format="json"), 400, "bad_request")
    if param:
        assert error["param"] == param
    assert not Job.objects.exists()


def test_it_answers_400_for_malformed_json(api: APIClient) -> None:
    response = api.post("/api/v1/runs", '{"model": ', content_type="application/json")
    assert "not valid JSON" in assert_error(response, 400, "bad_request")["message"]


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Bearer"])
def test_it_answers_401_for_a_missing_or_wrong_token(user: Any, authorization: str | None) -> None:
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.post("/api/v1/runs", EXAMPLE, format="json")
    assert_error(response, 401, "unauthorized")
    assert response["WWW-Authenticate"] == "Bearer"


def test_it_names_the_supported_priorities(api: APIClient, add_key: Any) -> None:
    add_key()
    response = api.post("/api/v1/runs", {**EXAMPLE, "priority": "urgent"}, format="json")
    error = assert_error(response, 400, "bad_request")
    assert "'urgent' is not a supported priority; use one of standard, batch." in error["message"]


def test_it_answers_402_when_no_key_has_quota_left(api: APIClient, add_key: Any) -> None:
    add_key(daily_limit=0)
    error = assert_error(create(api), 402, "insufficient_credits")
    assert "No usable Gemini key" in error["message"]
    assert not Job.objects.exists()


def test_it_answers_403_for_the_token_of_a_disabled_account(db: Any) -> None:
    disabled = get_user_model().objects.create_user("carol", password="pw-carol-123", is_active=False)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=disabled).key}")
    assert_error(client.post("/api/v1/runs", EXAMPLE, format="json"), 403, "forbidden")


def test_it_answers_404_for_an_unknown_run_or_another_users_run(api: APIClient, other_user: Any, add_key: Any) -> None:
    add_key()
    run = create(api).json()
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=other_user).key}")
    assert_error(other.get(f"/api/v1/runs/{run['id']}"), 404, "not_found")
    assert_error(api.get("/api/v1/runs/RUN_ID"), 404, "not_found")


def test_it_answers_429_over_the_rate_limit(api: APIClient, add_key: Any, settings: Any) -> None:
    add_key()
    settings.DIALECT_RATE_LIMIT = "1/min"
    cache.clear()
    assert create(api).status_code == 201
    response = create(api)
    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) > 0


def test_it_answers_503_in_its_own_shape_when_the_store_fails(
    api: APIClient, add_key: Any, receiver: Any, settings: Any, tmp_path: Any
) -> None:
    add_key()
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.MEDIA_ROOT = blocker  # storing the reference image fails: the store can't be written
    response = create(api, image_urls=[receiver.serve("/lamp.png", png_bytes())])
    assert "image store is out of reach" in assert_error(response, 503, "store_unavailable")["message"]
    assert response["Retry-After"] == "5"


def test_it_answers_500_in_the_same_shape_when_the_server_fails(
    api: APIClient, add_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_key()
    from conversations import references

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")  # what no caller could have caused

    monkeypatch.setattr(references, "resolve", broken)
    response = create(api)
    assert "internal error" in assert_error(response, 500, "internal_error")["message"]

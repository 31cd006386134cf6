"""evolink's dialect end to end: the document's curl example over HTTP, the task lifecycle, callbacks, errors."""

from __future__ import annotations

import io
import re
import time
from typing import Any

import PIL.Image
import pytest
import requests
from django.core.cache import cache
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.models import Job
from conversations.pipeline import batches
from keys.models import UsageRecord
from tests.conftest import batch_finished, emulator_requests, png_bytes

pytestmark = pytest.mark.django_db

EXAMPLE = {"model": "gemini-2.5-flash-image", "prompt": "A cat playing on the grass"}
DOCUMENTED_KEYS = {"created", "id", "model", "object", "progress", "status", "task_info", "type", "usage"}


def create(api: APIClient, **body: Any) -> Any:
    return api.post("/v1/images/generations", {**EXAMPLE, **body}, format="json")


def download(url: str) -> PIL.Image.Image:
    response = APIClient().get(url)  # no token: the signed URL is enough
    assert response.status_code == 200
    return PIL.Image.open(io.BytesIO(response.getvalue()))


@pytest.mark.django_db(transaction=True)
def test_it_serves_the_documented_curl_example_over_http(
    live_server: Any, user: Any, add_key: Any, inline_tasks: None
) -> None:
    add_key()
    token = Token.objects.create(user=user).key
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    created = requests.post(
        f"{live_server.url}/v1/images/generations",
        headers=headers,
        data='{\n  "model": "gemini-2.5-flash-image",\n  "prompt": "A cat playing on the grass"\n}',
        timeout=30,
    )
    assert created.status_code == 200, created.text
    task = created.json()
    assert set(task) == DOCUMENTED_KEYS
    assert re.fullmatch(r"task-unified-\d{10}-[0-9a-f]{32}", task["id"])
    assert (task["object"], task["type"], task["status"], task["progress"]) == (
        "image.generation.task",
        "image",
        "pending",
        0,
    )
    assert task["task_info"] == {"can_cancel": True, "estimated_time": 45}
    assert set(task["usage"]) == {"billing_rule", "credits_reserved", "user_group"}

    deadline = time.monotonic() + 20
    while True:
        polled = requests.get(f"{live_server.url}/v1/tasks/{task['id']}", headers=headers, timeout=10).json()
        if polled["status"] in ("completed", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert polled["status"] == "completed", polled
    assert polled["progress"] == 100 and polled["task_info"] == {"can_cancel": False}
    image = requests.get(polled["results"][0], timeout=10)  # no token needed
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert PIL.Image.open(io.BytesIO(image.content)).size == (1024, 1024)


def test_it_completes_a_task_with_downloadable_results(
    api: APIClient, add_key: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    with django_capture_on_commit_callbacks(execute=True):
        task = create(api).json()
    done = api.get(f"/v1/tasks/{task['id']}").json()
    assert (
        done["status"] == "completed" and done["model"] == "gemini-nano-banana-2.1"
    )  # gemini-2.5-flash-image is shut down
    assert done["results"][0].startswith("http://testserver/files/")
    assert download(done["results"][0]).size == (1024, 1024)


def test_it_maps_size_to_the_aspect_ratio(
    api: APIClient, add_key: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    with django_capture_on_commit_callbacks(execute=True):
        task = create(api, size="16:9").json()
    results = api.get(f"/v1/tasks/{task['id']}").json()["results"]
    assert download(results[0]).size == (1376, 768)


def test_it_sends_the_images_of_image_urls_to_gemini(
    api: APIClient, add_key: Any, emu: Any, receiver: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    urls = [
        receiver.serve("/a.png", png_bytes((300, 200))),
        receiver.serve("/b.jpg", png_bytes(fmt="JPEG"), "image/jpeg"),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        task = create(api, prompt="put them together", image_urls=urls).json()
    assert api.get(f"/v1/tasks/{task['id']}").json()["status"] == "completed"
    assert emulator_requests(emu)[0]["inline_images"] == 2


def test_it_shows_the_tasks_images_in_the_owners_gallery(
    api: APIClient, add_key: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    with django_capture_on_commit_callbacks(execute=True):
        create(api, prompt="a gallery cat")
    images = api.get("/api/images").json()["data"]["results"]
    assert [image["prompt"] for image in images] == ["a gallery cat"]


def test_it_posts_the_task_query_body_to_the_callback_url_when_done(
    api: APIClient, add_key: Any, receiver: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    with django_capture_on_commit_callbacks(execute=True):
        task = create(api, callback_url=receiver.url("/hooks/done")).json()
    [received] = receiver.wait_for(1)
    queried = api.get(f"/v1/tasks/{task['id']}").json()
    assert received.path == "/hooks/done"
    assert set(received.json) == set(queried) and received.json["status"] == "completed"
    assert received.json["id"] == task["id"]
    assert download(received.json["results"][0]).size == (1024, 1024)


def test_it_posts_the_failure_to_the_callback_url(
    api: APIClient, add_key: Any, receiver: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    with django_capture_on_commit_callbacks(execute=True):
        create(api, prompt="a cat [block]", callback_url=receiver.url("/hooks/done"))
    [received] = receiver.wait_for(1)
    assert received.json["status"] == "failed"
    assert received.json["error"]["code"] == "blocked" and received.json["error"]["message"]


def test_it_cancels_a_pending_task_says_so_and_calls_back(
    api: APIClient, add_key: Any, receiver: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    task = create(api, callback_url=receiver.url("/hooks/done")).json()  # not run: its commit never happens here
    with django_capture_on_commit_callbacks(execute=True):
        cancelled = api.post(f"/v1/tasks/{task['id']}/cancel")
    assert cancelled.status_code == 200
    body = cancelled.json()
    assert body["status"] == "failed" and body["task_info"]["can_cancel"] is False
    assert body["error"]["code"] == "task_cancelled"
    assert api.get(f"/v1/tasks/{task['id']}").json()["error"]["code"] == "task_cancelled"
    [received] = receiver.wait_for(1)
    assert received.json["error"]["code"] == "task_cancelled"
    assert Job.objects.get().state == Job.State.CANCELLED


def test_it_refuses_to_cancel_a_finished_task(
    api: APIClient, add_key: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    with django_capture_on_commit_callbacks(execute=True):
        task = create(api).json()
    response = api.post(f"/v1/tasks/{task['id']}/cancel")
    assert response.status_code == 409
    assert "completed and can no longer be cancelled" in response.json()["error"]["message"]


# --- the Batch API's price: priority "batch" (not in evolink's document) -------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_task_at_the_batch_price_reads_pending_in_its_batch_then_completes_and_calls_back_once(
    api: APIClient, add_key: Any, receiver: Any, quick_batches: Any, inline_tasks: None
) -> None:
    add_key()
    task = create(api, priority="batch", batch_fallback=True, callback_url=receiver.url("/hooks/done")).json()
    job = Job.objects.get()
    assert (job.priority, job.options["batch_fallback"]) == (Job.Priority.BATCH, True)
    assert task["status"] == "pending"
    batches.pack()
    job.refresh_from_db()
    assert (job.state, job.phase) == (Job.State.RUNNING, Job.Phase.BATCHED)
    waiting = api.get(f"/v1/tasks/{task['id']}").json()
    assert waiting["status"] == "pending" and waiting["task_info"]["can_cancel"] is True  # queued at Google

    assert batch_finished(job).state == Job.State.SUCCEEDED
    done = api.get(f"/v1/tasks/{task['id']}").json()
    assert done["status"] == "completed" and download(done["results"][0]).size == (1024, 1024)
    [received] = receiver.wait_for(1)
    time.sleep(0.3)  # a second callback would have come by now
    assert len(receiver.hits) == 1 and received.json["status"] == "completed" and received.json["id"] == task["id"]
    rows = UsageRecord.objects.filter(job_id=str(job.pk))
    assert rows.exists() and set(rows.values_list("tier", flat=True)) == {"batch"}


@pytest.mark.django_db(transaction=True)
def test_a_task_waiting_in_its_batch_can_be_cancelled(
    api: APIClient, add_key: Any, quick_batches: Any, inline_tasks: None
) -> None:
    add_key()
    task = create(api, priority="batch").json()
    batches.tick()  # packed and submitted: it waits at Google
    assert Job.objects.get().phase == Job.Phase.BATCHED
    cancelled = api.post(f"/v1/tasks/{task['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["status"] == "failed" and cancelled.json()["error"]["code"] == "task_cancelled"
    assert Job.objects.get().state == Job.State.CANCELLED


def test_it_refuses_an_unknown_priority(api: APIClient, add_key: Any) -> None:
    add_key()
    response = create(api, priority="urgent")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["type"], error["param"]) == (400, "invalid_request_error", "priority")
    assert "'urgent' is not a supported priority; use one of standard, batch." in error["message"]
    assert not Job.objects.exists()


def test_a_task_without_priority_is_not_batch_priced(api: APIClient, add_key: Any) -> None:
    add_key()
    create(api)
    assert Job.objects.get().priority == Job.Priority.BACKGROUND


# --- errors, in evolink's shape: {"error": {"code": <HTTP status>, "message", "type"[, "param"]}} --------------


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token"])
def test_it_answers_401_without_a_valid_token(user: Any, authorization: str | None) -> None:
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    response = client.post("/v1/images/generations", EXAMPLE, format="json")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == 401 and error["type"] == "authentication_error" and error["message"]


@pytest.mark.parametrize(
    ("callback_url", "reason"),
    [
        ("http://example.com/hook", "must use https"),
        ("https://10.0.0.7/hook", "private address"),
        ("https://127.0.0.1/hook", "loopback address"),
        ("https://example.com/" + "a" * 2048, "longer than 2048"),
    ],
)
def test_it_refuses_an_unsafe_callback_url_at_once(
    api: APIClient, add_key: Any, callback_url: str, reason: str
) -> None:
    add_key()
    response = create(api, callback_url=callback_url)
    assert response.status_code == 400
    error = response.json()["error"]
    assert reason in error["message"] and error["param"] == "callback_url"
    assert error["type"] == "invalid_request_error"
    assert not Job.objects.exists()


def test_it_refuses_more_than_five_image_urls(api: APIClient, add_key: Any) -> None:
    add_key()
    response = create(api, image_urls=[f"https://example.com/{n}.png" for n in range(6)])
    assert response.status_code == 400
    assert "At most 5 images" in response.json()["error"]["message"]


def test_it_refuses_an_image_over_10_mb(api: APIClient, add_key: Any, receiver: Any) -> None:
    add_key()
    url = receiver.serve("/huge.png", b"\x89PNG" + bytes(11 * 1024 * 1024))
    response = create(api, image_urls=[url])
    assert response.status_code == 400
    assert "image_urls[0]" in response.json()["error"]["message"]
    assert "MB" in response.json()["error"]["message"]


def test_it_refuses_an_image_url_that_is_not_a_supported_image(api: APIClient, add_key: Any, receiver: Any) -> None:
    add_key()
    url = receiver.serve("/cat.gif", b"GIF89a not really", "image/gif")
    response = create(api, image_urls=[url])
    assert response.status_code == 400
    assert "not a JPEG, PNG or WEBP image" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [({"size": "5:4"}, "size"), ({"prompt": "x" * 9000}, "prompt"), ({"prompt": ""}, "prompt")],
)
def test_it_refuses_bad_parameters(api: APIClient, add_key: Any, body: dict[str, Any], param: str) -> None:
    add_key()
    response = create(api, **body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_it_refuses_malformed_json_with_a_400(api: APIClient) -> None:
    response = api.post("/v1/images/generations", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


def test_it_answers_404_for_another_users_task(api: APIClient, other_user: Any, add_key: Any) -> None:
    add_key()
    task = create(api).json()
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=other_user).key}")
    response = other.get(f"/v1/tasks/{task['id']}")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"
    assert api.get("/v1/tasks/task-unified-1757165031-uyujaw3d").status_code == 404


def test_it_answers_503_with_the_reason_when_no_key_can_serve(api: APIClient) -> None:
    response = create(api)
    assert response.status_code == 503
    assert "No Gemini API key is configured" in response.json()["error"]["message"]
    assert not Job.objects.exists()


def test_it_answers_429_over_the_rate_limit(api: APIClient, add_key: Any, settings: Any) -> None:
    add_key()
    settings.DIALECT_RATE_LIMIT = "2/min"
    cache.clear()
    statuses = [create(api).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    response = create(api)
    assert response.json()["error"]["type"] == "rate_limit_error" and int(response["Retry-After"]) > 0

"""AceData's dialect end to end: the document's curl example over HTTP, sync and callback answers, tasks, errors."""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

import PIL.Image
import pytest
import requests
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.models import Job
from conversations.pipeline import batches
from keys.models import UsageRecord
from tests.conftest import b64, batch_finished, emulator_requests, png_bytes

pytestmark = pytest.mark.django_db

EXAMPLE = {"action": "generate", "prompt": "a white siamese cat", "model": "nano-banana", "aspect_ratio": "1:1"}


def images(api: APIClient, **body: Any) -> Any:
    return api.post("/nano-banana/images", {**EXAMPLE, **body}, format="json")


def size_of(url: str) -> tuple[int, int]:
    response = APIClient().get(url)  # no token: the signed URL is enough
    assert response.status_code == 200
    return PIL.Image.open(io.BytesIO(response.getvalue())).size


def assert_error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code
    uuid.UUID(body["trace_id"])
    return str(body["error"]["message"])


@pytest.mark.django_db(transaction=True)
def test_it_serves_the_documented_curl_example_over_http(
    live_server: Any, user: Any, add_key: Any, receiver: Any, inline_tasks: None
) -> None:
    add_key()
    # The document's example, its two "<string>" placeholders filled with a reference image and a receiver.
    example = """{
  "action": "generate",
  "prompt": "a white siamese cat",
  "model": "nano-banana",
  "image_urls": [
    "<string>"
  ],
  "aspect_ratio": "1:1",
  "resolution": "1K",
  "callback_url": "<string>"
}"""
    body = json.loads(example)
    body["image_urls"] = [receiver.serve("/cat.png", png_bytes((256, 256)))]
    body["callback_url"] = receiver.url("/callback")
    headers = {"Authorization": f"Bearer {Token.objects.create(user=user).key}", "Content-Type": "application/json"}
    response = requests.post(f"{live_server.url}/nano-banana/images", headers=headers, json=body, timeout=30)
    assert response.status_code == 200, response.text
    accepted = response.json()
    assert set(accepted) == {"success", "task_id", "trace_id"} and accepted["success"] is True

    [callback] = receiver.wait_for(1)
    assert callback.json["success"] is True and callback.json["task_id"] == accepted["task_id"]
    assert callback.json["trace_id"] == accepted["trace_id"]
    [item] = callback.json["data"]
    assert item["prompt"] == "a white siamese cat"
    image = requests.get(item["image_url"], timeout=10)  # no token needed
    assert image.status_code == 200
    assert PIL.Image.open(io.BytesIO(image.content)).size == (1024, 1024)


def test_it_answers_with_the_images_when_there_is_no_callback_url(api: APIClient, add_key: Any) -> None:
    add_key()
    response = images(api, resolution="1K")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"success", "task_id", "trace_id", "data"} and body["success"] is True
    assert body["data"][0]["prompt"] == "a white siamese cat"
    assert size_of(body["data"][0]["image_url"]) == (1024, 1024)


def test_it_honours_resolution_for_nano_banana_pro_only(api: APIClient, add_key: Any) -> None:
    add_key()
    pro = images(api, model="nano-banana-pro", aspect_ratio="16:9", resolution="2K").json()
    flash = images(api, model="nano-banana-2", aspect_ratio="16:9", resolution="2K").json()
    assert size_of(pro["data"][0]["image_url"]) == (2752, 1536)
    assert size_of(flash["data"][0]["image_url"]) == (1376, 768)


def test_it_edits_the_images_of_image_urls_given_as_urls_or_data_uris(
    api: APIClient, add_key: Any, emu: Any, receiver: Any
) -> None:
    add_key()
    urls = [receiver.serve("/shirt.png", png_bytes((300, 200))), "data:image/png;base64," + b64(png_bytes((200, 300)))]
    response = images(api, action="edit", prompt="let this man wear this T-shirt", image_urls=urls)
    assert response.status_code == 200, response.json()
    assert emulator_requests(emu)[0]["inline_images"] == 2


def test_it_answers_a_refused_generation_in_its_error_shape(api: APIClient, add_key: Any) -> None:
    add_key()
    response = images(api, prompt="a cat [block]")
    assert assert_error(response, 422, "blocked")  # with Gemini's reason in words
    assert response.json()["task_id"] == str(Job.objects.get().id)


def test_it_posts_a_failure_to_the_callback_url(
    api: APIClient, add_key: Any, receiver: Any, inline_tasks: None, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    with django_capture_on_commit_callbacks(execute=True):
        accepted = images(api, prompt="a cat [noimage]", callback_url=receiver.url("/callback")).json()
    [callback] = receiver.wait_for(1)
    assert callback.json["success"] is False and callback.json["task_id"] == accepted["task_id"]
    assert callback.json["error"]["code"] == "no_image"


def test_it_retrieves_a_task_with_its_request_and_response(api: APIClient, add_key: Any) -> None:
    add_key()
    reference = "data:image/png;base64," + b64(png_bytes())
    answer = images(api, action="edit", prompt="make it blue", image_urls=[reference]).json()
    task = api.post("/nano-banana/tasks", {"action": "retrieve", "id": answer["task_id"]}, format="json").json()
    assert task["id"] == answer["task_id"]
    assert task["request"]["prompt"] == "make it blue" and task["request"]["action"] == "edit"
    assert task["request"]["image_urls"][0].startswith("data:image/png;base64,")  # kept short, not the image
    assert len(task["request"]["image_urls"][0]) < 100
    assert task["response"]["success"] is True and task["response"]["trace_id"] == answer["trace_id"]
    # An edit keeps the reference's 4:3 shape (64x48), whatever aspect_ratio says.
    assert size_of(task["response"]["data"][0]["image_url"]) == (1200, 896)


def test_it_retrieves_a_pending_task_with_its_immediate_answer(api: APIClient, add_key: Any, receiver: Any) -> None:
    add_key()
    accepted = images(api, callback_url=receiver.url("/callback")).json()  # not run: its commit never happens here
    task = api.post("/nano-banana/tasks", {"action": "retrieve", "id": accepted["task_id"]}, format="json").json()
    assert task["response"] == accepted


# --- the Batch API's price: priority "batch" (not in AceData's document) ------------------------------------


def retrieve(api: APIClient, task_id: str) -> dict[str, Any]:
    return api.post("/nano-banana/tasks", {"action": "retrieve", "id": task_id}, format="json").json()


@pytest.mark.django_db(transaction=True)
def test_a_task_at_the_batch_price_waits_in_its_batch_then_calls_back_once(
    api: APIClient, add_key: Any, receiver: Any, quick_batches: Any, inline_tasks: None
) -> None:
    add_key()
    accepted = images(api, priority="batch", batch_fallback=True, callback_url=receiver.url("/callback")).json()
    assert set(accepted) == {"success", "task_id", "trace_id"} and accepted["success"] is True
    job = Job.objects.get(pk=accepted["task_id"])
    assert (job.priority, job.options["batch_fallback"]) == (Job.Priority.BATCH, True)
    batches.pack()
    job.refresh_from_db()
    assert (job.state, job.phase) == (Job.State.RUNNING, Job.Phase.BATCHED)
    assert retrieve(api, accepted["task_id"])["response"] == accepted  # AceData has no status: the immediate answer

    assert batch_finished(job).state == Job.State.SUCCEEDED
    [callback] = receiver.wait_for(1)
    time.sleep(0.3)  # a second callback would have come by now
    assert len(receiver.hits) == 1
    assert callback.json["success"] is True and callback.json["task_id"] == accepted["task_id"]
    assert size_of(callback.json["data"][0]["image_url"]) == (1024, 1024)
    [item] = retrieve(api, accepted["task_id"])["response"]["data"]
    assert item["image_url"].split("?")[0] == callback.json["data"][0]["image_url"].split("?")[0]  # signed anew
    rows = UsageRecord.objects.filter(job_id=str(job.pk))
    assert rows.exists() and set(rows.values_list("tier", flat=True)) == {"batch"}


def test_a_task_at_the_batch_price_answers_at_once_without_a_callback_url(
    api: APIClient, add_key: Any, emu: Any
) -> None:
    add_key()
    accepted = images(api, priority="batch").json()
    assert set(accepted) == {"success", "task_id", "trace_id"} and accepted["success"] is True
    job = Job.objects.get(pk=accepted["task_id"])
    assert (job.priority, job.state) == (Job.Priority.BATCH, Job.State.PENDING)  # waits for a batch, not run inline
    assert not emulator_requests(emu)


def test_it_retrieves_tasks_in_a_batch_skipping_unknown_ids(api: APIClient, add_key: Any) -> None:
    add_key()
    first = images(api, prompt="one").json()["task_id"]
    second = images(api, prompt="two").json()["task_id"]
    ids = [first, second, str(uuid.uuid4()), "nonsense"]
    batch = api.post("/nano-banana/tasks", {"action": "retrieve_batch", "ids": ids}, format="json").json()
    assert batch["count"] == 2
    assert [item["request"]["prompt"] for item in batch["items"]] == ["one", "two"]


def test_it_shows_the_images_in_the_owners_gallery(api: APIClient, add_key: Any) -> None:
    add_key()
    images(api, prompt="a gallery cat")
    assert [image["prompt"] for image in api.get("/api/images").json()["data"]["results"]] == ["a gallery cat"]


# --- errors, in AceData's shape: {"success": false, "error": {"code", "message"}, "trace_id"} -----------------


def test_it_refuses_edit_without_image_urls(api: APIClient, add_key: Any) -> None:
    add_key()
    message = assert_error(images(api, action="edit"), 400, "bad_request")
    assert "image_urls is required when action is edit" in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"action": "imagine"}, "Unknown action 'imagine'; use one of generate, edit."),
        ({"model": "dall-e-3"}, "Unknown model 'dall-e-3'; use one of nano-banana, nano-banana-2, nano-banana-pro."),
        ({"aspect_ratio": "21:9"}, "Unknown aspect_ratio '21:9'"),
        ({"prompt": ""}, "Prompt is required"),
        ({"image_urls": ["file:///etc/passwd"]}, "only http and https URLs are allowed"),
        ({"callback_url": "https://192.168.1.10/cb"}, "private address"),
        ({"priority": "urgent"}, "Unknown priority 'urgent'; use one of standard, batch."),
    ],
)
def test_it_refuses_bad_requests_with_a_clear_message(
    api: APIClient, add_key: Any, body: dict[str, Any], expected: str
) -> None:
    add_key()
    assert expected in assert_error(images(api, **body), 400, "bad_request")
    assert not Job.objects.exists()


def test_it_refuses_malformed_json(api: APIClient) -> None:
    response = api.post("/nano-banana/images", "[1, 2", content_type="application/json")
    assert "not valid JSON" in assert_error(response, 400, "bad_request")


@pytest.mark.parametrize(
    ("authorization", "code"), [(None, "no_token"), ("Bearer 0000", "invalid_token"), ("Token 0000", "invalid_token")]
)
def test_it_answers_401_without_a_valid_token(user: Any, authorization: str | None, code: str) -> None:
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)
    assert_error(client.post("/nano-banana/images", EXAMPLE, format="json"), 401, code)
    assert_error(client.post("/nano-banana/tasks", {"action": "retrieve", "id": "x"}, format="json"), 401, code)


def test_it_answers_503_with_the_reason_when_no_key_can_serve(api: APIClient) -> None:
    assert "No Gemini API key is configured" in assert_error(images(api), 503, "no_usable_key")
    assert not Job.objects.exists()


def test_it_refuses_unknown_task_actions_and_missing_ids(api: APIClient) -> None:
    assert "Unknown action 'delete'" in assert_error(
        api.post("/nano-banana/tasks", {"action": "delete", "id": "x"}, format="json"), 400, "bad_request"
    )
    assert "ids is required" in assert_error(
        api.post("/nano-banana/tasks", {"action": "retrieve_batch"}, format="json"), 400, "bad_request"
    )


def test_it_hides_tasks_from_other_users(api: APIClient, other_user: Any, add_key: Any) -> None:
    add_key()
    task_id = images(api).json()["task_id"]
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=other_user).key}")
    assert_error(
        other.post("/nano-banana/tasks", {"action": "retrieve", "id": task_id}, format="json"), 404, "not_found"
    )
    batch = other.post("/nano-banana/tasks", {"action": "retrieve_batch", "ids": [task_id]}, format="json").json()
    assert batch == {"items": [], "count": 0}

"""The async jobs dialect (reference-apis/gemini-jobs-api.md) end to end with tasks run inline:
DRF, the pipeline, the key pool, google-genai, the emulator, the global webhook."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
from typing import Any

import PIL.Image
import pytest
from rest_framework.test import APIClient

from conversations.models import Job
from gallery.models import Image
from keys.catalogue import resolve_model
from keys.models import ApiKey
from nanoclone.dialects import jobs as jobs_api
from tests.conftest import Receiver, b64, emulator_requests, png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(api: APIClient, inline_tasks: None, django_capture_on_commit_callbacks: Any) -> Any:
    """POST a job and let it run (inline, as the cluster would); return the POST's response."""

    def post(**body: Any) -> Any:
        body.setdefault("prompt", "Un chat astronaute flottant dans l'espace")
        with django_capture_on_commit_callbacks(execute=True):
            return api.post("/api/images/generate", body, format="json")

    return post


def download(api: APIClient, url: str) -> bytes:
    response = APIClient().get(url)  # signed: no credentials needed, like the document's clients
    assert response.status_code == 200, url
    return b"".join(getattr(response, "streaming_content", [])) if response.streaming else response.content


def test_it_answers_202_pending_with_a_job_id_at_once(api: APIClient, add_key: Any) -> None:
    add_key()
    response = api.post("/api/images/generate", {"prompt": "Un coucher de soleil"}, format="json")
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "PENDING" and body["job_id"].startswith("img_")
    assert body["message"] == "Tâche de génération d'images créée avec succès"
    status = api.get(f"/api/images/status/{body['job_id']}").json()
    assert status["status"] == "PENDING" and status["progress"] == 0
    assert status["created_at"].endswith("Z") and status["updated_at"]


def test_it_runs_the_job_to_completed_with_images_that_download(api: APIClient, add_key: Any, run: Any) -> None:
    add_key()
    job_id = run(num_images=2).json()["job_id"]
    status = api.get(f"/api/images/status/{job_id}").json()
    assert (status["status"], status["progress"]) == ("COMPLETED", 100)
    result = api.get(f"/api/images/result/{job_id}")
    assert result.status_code == 200
    body = result.json()
    assert body["message"] == "2 image(s) générée(s) avec succès"
    assert len(body["images"]) == 2
    for image in body["images"]:
        data = download(api, image["url"])
        assert image["size_bytes"] == len(data)
        assert image["description"] == "Un chat astronaute flottant dans l'espace"
        picture = PIL.Image.open(io.BytesIO(data))
        assert (
            (picture.format, f"{picture.width}x{picture.height}")
            == ("PNG", image["dimensions"])
            == (
                "PNG",
                "1024x1024",
            )
        )
    metadata = body["metadata"]
    assert metadata["model_name"] == "gemini-nano-banana-2.1"
    assert metadata["generation_time_seconds"] >= 0 and metadata["input_tokens"] > 0
    assert metadata["output_size_bytes"] == sum(image["size_bytes"] for image in body["images"])
    assert metadata["timestamp"].endswith("Z")


@pytest.mark.parametrize(
    ("size", "fmt", "ratio"),
    [("1792x1024", "JPEG", "16:9"), ("512x512", "WEBP", "1:1"), ("1024x1024", "png", "1:1")],
)
def test_it_delivers_exactly_the_requested_pixels_and_format(
    api: APIClient, add_key: Any, run: Any, emu: Any, size: str, fmt: str, ratio: str
) -> None:
    add_key()
    job_id = run(size=size, format=fmt).json()["job_id"]
    image = api.get(f"/api/images/result/{job_id}").json()["images"][0]
    picture = PIL.Image.open(io.BytesIO(download(api, image["url"])))
    assert f"{picture.width}x{picture.height}" == image["dimensions"] == size
    assert picture.format == image["format"] == fmt.upper()
    assert emulator_requests(emu)[0]["generation_config"]["imageConfig"]["aspectRatio"] == ratio


@pytest.mark.parametrize(
    ("size", "quality", "expected"),
    [
        ("512x512", "standard", ("1:1", "512")),
        ("1024x1024", "standard", ("1:1", "1K")),
        ("1024x1024", "high", ("1:1", "2K")),
        ("1024x1024", "ultra", ("1:1", "4K")),
        ("1792x1024", "standard", ("16:9", "2K")),
        ("1792x1024", "ultra", ("16:9", "4K")),
    ],
)
def test_it_plans_ratio_and_resolution_from_size_and_quality(size: str, quality: str, expected: Any) -> None:
    model = resolve_model("gemini-3.1-flash-image")
    assert model is not None
    assert jobs_api.generation_plan(model, size, quality) == expected


def test_it_asks_gemini_for_the_quality_resolution_and_the_style(
    api: APIClient, add_key: Any, run: Any, emu: Any
) -> None:
    add_key()
    job_id = run(style="3d-render", quality="ultra").json()["job_id"]
    assert emulator_requests(emu)[0]["generation_config"]["imageConfig"]["imageSize"] == "4K"
    job = Job.objects.get(pk=job_id.removeprefix("img_"))
    assert "3D render" in job.prompt and "Ultra-detailed" in job.prompt


def test_it_generates_the_images_concurrently_each_through_the_pool(
    api: APIClient, add_key: Any, run: Any, emu: Any
) -> None:
    first, second = add_key("emu-ok-0001"), add_key("emu-ok-0002")
    emu.latency_ms = 600
    job_id = run(num_images=4).json()["job_id"]
    assert api.get(f"/api/images/status/{job_id}").json()["status"] == "COMPLETED"
    arrivals = sorted(dt.datetime.fromisoformat(request["time"]).timestamp() for request in emulator_requests(emu))
    assert len(arrivals) == 4 and arrivals[-1] - arrivals[0] < 0.5  # all four in flight together
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.used_today, second.used_today) == (2, 2)


def test_it_uses_the_input_image_url(api: APIClient, add_key: Any, run: Any, emu: Any, receiver: Receiver) -> None:
    add_key()
    receiver.files["/photo.jpg"] = (png_bytes((300, 200), fmt="JPEG"), "image/jpeg")
    job_id = run(input_image_url=receiver.url("/photo.jpg")).json()["job_id"]
    assert api.get(f"/api/images/status/{job_id}").json()["status"] == "COMPLETED"
    assert emulator_requests(emu)[0]["inline_images"] == 1


def test_it_accepts_a_data_uri_as_input_image(api: APIClient, add_key: Any, run: Any, emu: Any) -> None:
    add_key()
    assert run(input_image_url=f"data:image/png;base64,{b64(png_bytes())}").status_code == 202
    assert emulator_requests(emu)[0]["inline_images"] == 1


@pytest.mark.parametrize("url", ["http://192.168.1.10/photo.jpg", "http://127.0.0.1/photo.jpg", "file:///etc/passwd"])
def test_it_refuses_an_input_image_url_into_our_network(api: APIClient, add_key: Any, url: str) -> None:
    add_key()
    response = api.post("/api/images/generate", {"prompt": "x", "input_image_url": url}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("input_image_url invalide")
    assert not Job.objects.exists()


def test_a_failed_job_carries_the_reason_in_errors(api: APIClient, add_key: Any, run: Any) -> None:
    add_key()
    job_id = run(prompt="[block] quelque chose").json()["job_id"]
    status = api.get(f"/api/images/status/{job_id}").json()
    assert status["status"] == "FAILED" and status["errors"]
    result = api.get(f"/api/images/result/{job_id}").json()
    assert result["status"] == "FAILED" and result["message"] == "Échec de la génération"
    assert "images" not in result and result["errors"][0] == Job.objects.get().error


def test_the_result_of_an_unfinished_job_says_so(api: APIClient, add_key: Any) -> None:
    add_key()
    job_id = api.post("/api/images/generate", {"prompt": "x"}, format="json").json()["job_id"]
    response = api.get(f"/api/images/result/{job_id}")
    assert response.status_code == 202 and response.json()["status"] == "PENDING"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Prompt requis"),
        ({"prompt": "   "}, "Prompt requis"),
        ({"prompt": "x", "num_images": 0}, "num_images doit être entre 1 et 4"),
        ({"prompt": "x", "num_images": 5}, "num_images doit être entre 1 et 4"),
        ({"prompt": "x", "num_images": "many"}, "num_images doit être entre 1 et 4"),
        ({"prompt": "x", "size": "800x600"}, "size invalide"),
        ({"prompt": "x", "format": "GIF"}, "format invalide"),
        ({"prompt": "x", "style": "anime"}, "style invalide"),
        ({"prompt": "x", "quality": "max"}, "quality invalide"),
        ({"prompt": "x", "priority": "urgent"}, "priority invalide"),
    ],
)
def test_it_answers_400_with_the_documents_messages(api: APIClient, add_key: Any, body: Any, message: str) -> None:
    add_key()
    response = api.post("/api/images/generate", body, format="json")
    assert response.status_code == 400
    assert response.json()["detail"].startswith(message) and response.json()["message"].startswith(message)
    assert not Job.objects.exists()


def test_it_answers_404_for_an_unknown_job(api: APIClient) -> None:
    for job_id in ("img_0123456789abcdef0123456789abcdef", "img_nope", "nope"):
        for endpoint in ("status", "result"):
            response = api.get(f"/api/images/{endpoint}/{job_id}")
            assert response.status_code == 404 and response.json()["detail"] == "Tâche introuvable"


def test_it_answers_404_for_another_users_job(api: APIClient, add_key: Any, other_user: Any) -> None:
    add_key()
    job_id = api.post("/api/images/generate", {"prompt": "x"}, format="json").json()["job_id"]
    stranger = APIClient()
    stranger.force_authenticate(other_user)
    assert stranger.get(f"/api/images/status/{job_id}").status_code == 404


def test_it_answers_503_when_no_key_can_serve(api: APIClient, add_key: Any) -> None:
    add_key("emu-invalid-0001", invalid=True, invalid_reason="API_KEY_INVALID")
    response = api.post("/api/images/generate", {"prompt": "x"}, format="json")
    assert response.status_code == 503 and "invalid" in response.json()["detail"]
    assert not Job.objects.exists()


def test_a_job_may_wait_for_the_batch_price(api: APIClient, add_key: Any, run: Any) -> None:
    add_key()
    body = run(prompt="Un phare", priority="batch", batch_fallback=True).json()
    job = Job.objects.get()
    assert (job.priority, job.options["batch_fallback"], job.state) == (Job.Priority.BATCH, True, Job.State.PENDING)
    assert api.get(f"/api/images/status/{body['job_id']}").json()["status"] == "PENDING"  # not run online


def test_the_batch_price_needs_an_ai_studio_key(api: APIClient, add_key: Any) -> None:
    add_key(kind=ApiKey.Kind.VERTEX_EXPRESS)
    response = api.post("/api/images/generate", {"prompt": "x", "priority": "batch"}, format="json")
    assert response.status_code == 503 and "AI Studio" in response.json()["detail"]
    assert not Job.objects.exists()


def test_it_requires_a_token(db: Any) -> None:
    assert APIClient().post("/api/images/generate", {"prompt": "x"}, format="json").status_code == 401


def test_jobs_show_up_in_conversations_and_the_gallery(api: APIClient, add_key: Any, run: Any) -> None:
    add_key()
    job_id = run(num_images=2).json()["job_id"]
    job = Job.objects.get(pk=job_id.removeprefix("img_"))
    conversations = api.get("/api/conversations").json()["data"]
    listed = [c for c in conversations["results"] if c["id"] == str(job.conversation_id)]
    assert listed and listed[0]["title"].startswith("Un chat astronaute")
    gallery = {image["id"] for image in api.get("/api/images").json()["data"]["results"]}
    assert {str(pk) for pk in Image.objects.filter(job=job).values_list("pk", flat=True)} <= gallery


def test_it_sends_the_documents_webhooks_signed(
    api: APIClient, add_key: Any, run: Any, receiver: Receiver, settings: Any
) -> None:
    settings.WEBHOOK_URL = receiver.url("/api/webhooks/image-completion")
    settings.WEBHOOK_ENABLED = True
    settings.WEBHOOK_SECRET = "sorami-webhook-secret-key-2025"
    settings.WEBHOOK_ENVIRONMENT = "development"
    add_key()
    job_id = run(num_images=2).json()["job_id"]
    events = [hit.json for hit in receiver.hits]
    progress = [event for event in events if event["status"] not in ("completed", "failed")]
    assert [event["status"] for event in progress][:2] == ["initializing", "generating"]
    assert [event["progress"] for event in progress] == sorted(event["progress"] for event in progress)
    assert len(progress) <= 3 + 2  # one per phase change and per image: no flood
    completed = events[-1]
    assert completed["status"] == "completed" and completed["job_id"] == job_id
    assert completed["environment"] == "development"
    assert completed["data"]["status"] == "COMPLETED" and len(completed["data"]["images"]) == 2
    assert completed["data"]["images"][0]["url"].startswith("http://testserver/files/")
    hit = receiver.hits[-1]
    assert hit.headers["X-Webhook-Secret"] == "sorami-webhook-secret-key-2025"
    signed = f"{hit.headers['X-Webhook-Timestamp']}.".encode() + hit.body
    digest = hmac.new(b"sorami-webhook-secret-key-2025", signed, hashlib.sha256).hexdigest()
    assert hit.headers["X-Webhook-Signature"] == f"sha256={digest}"


def test_it_sends_the_failed_webhook(add_key: Any, run: Any, receiver: Receiver, settings: Any) -> None:
    settings.WEBHOOK_URL = receiver.url()
    settings.WEBHOOK_ENABLED = True
    add_key()
    run(prompt="[block] non")
    failed = receiver.hits[-1].json
    assert failed["status"] == "failed" and failed["message"] == "Échec de la génération d'images"
    assert failed["error_message"] == Job.objects.get().error


def test_it_sends_no_webhook_when_disabled(add_key: Any, run: Any, receiver: Receiver, settings: Any) -> None:
    settings.WEBHOOK_URL = receiver.url()
    settings.WEBHOOK_ENABLED = False
    add_key()
    run()
    assert receiver.hits == []


def test_health_reports_database_queue_and_keys_without_auth(
    client: Any, add_key: Any, settings: Any, tmp_path: Any
) -> None:
    # A cache of our own: clusters other test runs may have alive must not show up here.
    settings.CACHES = {**settings.CACHES, "cluster": {**settings.CACHES["cluster"], "LOCATION": tmp_path / "q"}}
    add_key()
    add_key("emu-invalid-0002", invalid=True)
    body = client.get("/health").json()
    assert body["features"]["image_generation"] is True
    assert body["checks"]["database"] == "ok"
    keys = body["checks"]["keys"]
    assert (keys["usable"], keys["total"], keys["rests"]) == (1, 2, [])
    assert keys["usable_by_model"]["gemini-3-pro-image"] == 1
    assert body["checks"]["queue"]["alive"] is False and body["status"] == "degraded"
    assert ApiKey.objects.count() == 2

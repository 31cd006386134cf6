"""What each of Gemini's answers in the wild does to the pool and to the request (docs/gemini-answers.md):
rests that stay visible, a wait that ends with Retry-After, no quota, a retired model, a refused
location, unreadable answers retried, refusals billed, several images kept, signatures passed on."""

from __future__ import annotations

import base64
import io
import uuid
from decimal import Decimal
from typing import Any

import PIL.Image
import pytest
import requests
from django.utils import timezone

from conversations import pipeline
from conversations.models import Job
from gallery.models import Image
from keys.models import ApiKey, KeyRest, ModelNotice, UsageRecord
from tests.conftest import emulator_requests

pytestmark = pytest.mark.django_db

FLASH = "gemini-nano-banana-2.1"


def unique(prefix: str) -> str:
    # The emulator counts per key for its whole lifetime: fresh keys every test.
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def generate(api: Any, prompt: str = "a lighthouse at dusk", **body: Any) -> Any:
    return api.post("/api/generate", {"prompt": prompt, **body}, format="json")


def statuses(emu: Any) -> list[int]:
    return [request["status"] for request in emulator_requests(emu)]


def test_a_per_minute_429_that_comes_again_after_its_delay_ends_the_wait_with_retry_after_and_a_visible_rest(
    api: Any, add_key: Any, emu: Any, settings: Any
) -> None:
    settings.MAX_QUEUE_WAIT = 5  # more than the 1 s retry delay, less than a minute
    key = add_key(unique("emu-rpmstuck-"))
    refused = generate(api)
    assert refused.status_code == 503
    assert 50 <= int(refused.headers["Retry-After"]) <= 61  # the minute the refusal proved it needs
    assert statuses(emu) == [429, 429]  # waited out the 1 s, was refused again, and stopped
    rest = KeyRest.objects.get(key=key)
    assert rest.kind == KeyRest.Kind.MINUTE and rest.until > timezone.now()  # the keys page shows it


def test_a_limit_of_0_is_no_quota_for_the_model_and_no_wait(api: Any, add_key: Any, emu: Any) -> None:
    key = add_key(unique("emu-limit0-"))
    refused = generate(api)
    assert refused.status_code == 503 and "Retry-After" not in refused
    assert "with no quota for gemini-nano-banana-2.1 (limit 0" in refused.json()["error"]["message"]
    assert KeyRest.objects.get(key=key).kind == KeyRest.Kind.NO_QUOTA
    assert generate(api).status_code == 503 and statuses(emu) == [429]  # the next one makes no call


def test_a_refused_location_moves_to_a_key_calling_from_elsewhere_and_says_how_when_none_does(
    api: Any, add_key: Any, emu: Any
) -> None:
    refused_here = add_key(unique("emu-location-"))
    elsewhere = add_key(unique("emu-ok-"), base_url=emu.url.replace("127.0.0.1", "localhost"))
    assert generate(api).status_code == 200
    refused_here.refresh_from_db()
    assert not refused_here.invalid and "location refused" in refused_here.last_error  # not the key's fault
    assert [r["key_suffix"] for r in emulator_requests(emu)] == [refused_here.masked[-4:], elsewhere.masked[-4:]]
    elsewhere.delete()
    refused = generate(api)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "location_refused"
    assert "User location is not supported" in refused.json()["error"]["message"]
    assert "base URL" in refused.json()["error"]["message"]


def test_a_retired_model_rests_on_that_project_shows_to_operators_and_names_its_replacement(
    api: Any, add_key: Any, emu: Any, user: Any, client: Any
) -> None:
    retired = add_key(unique("emu-retired-"))
    add_key(unique("emu-ok-"))
    assert generate(api, model="gemini-3.1-flash-image").status_code == 200  # an older project still has it
    assert KeyRest.objects.get(key=retired).kind == KeyRest.Kind.RETIRED
    notice = ModelNotice.objects.get(model="gemini-3.1-flash-image")
    assert "no longer available to new users" in notice.notice
    ApiKey.objects.exclude(pk=retired.pk).delete()
    refused = generate(api, model="gemini-3.1-flash-image", prompt="another")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "request_rejected"
    message = refused.json()["error"]["message"]
    assert "no longer available" in message and "Use gemini-nano-banana-2.1 (Nano Banana 2.1) instead" in message
    client.force_login(user)  # staff
    keys_page = client.get("/keys").content.decode()
    assert "gemini-3.1-flash-image" in keys_page and "no longer available to new users" in keys_page


def test_an_unreadable_answer_is_retried_then_a_502_and_never_held_against_the_key(
    api: Any, add_key: Any, emu: Any
) -> None:
    key = add_key()
    failed = generate(api, prompt="a fox [cutoff]")
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "upstream_error"
    assert "Gemini's image could not be read" in failed.json()["error"]["message"]
    assert statuses(emu) == [200, 200, 200]  # UPSTREAM_RETRIES (2) more after the first
    key.refresh_from_db()
    assert key.consecutive_failures == 0 and key.status == ApiKey.Status.ACTIVE
    assert set(UsageRecord.objects.values_list("outcome", flat=True)) == {UsageRecord.Outcome.UNREADABLE}


def test_a_refusal_keeps_googles_reason_and_bills_its_thinking(api: Any, add_key: Any, default_prices: None) -> None:
    add_key()
    refused = generate(api, prompt="a fox [finish:IMAGE_OTHER]")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "no_image"
    assert refused.json()["error"]["details"]["geminiReason"] == "IMAGE_OTHER"
    assert "Unable to show the generated image" in refused.json()["error"]["message"]
    record = UsageRecord.objects.get()
    assert (record.outcome, record.thinking_tokens, record.images) == (UsageRecord.Outcome.REFUSED, 120, 0)
    assert record.cost > Decimal(0)  # Gemini bills the thinking of an image it withholds


def test_every_image_of_an_answer_is_kept_after_the_jobs_slots(user: Any, add_key: Any) -> None:
    add_key()
    request = pipeline.GenerationRequest(user=user, prompt="a fox [two-images]", num_images=2)
    job = pipeline.start(request, pipeline.RunMode.INLINE)
    assert job.state == Job.State.SUCCEEDED
    assert [image.index for image in pipeline.output_images(job)] == [0, 1, 2, 3]  # two calls, two images each
    assert list(Image.objects.filter(job=job).order_by("index").values_list("index", flat=True)) == [0, 1, 2, 3]


def test_signatures_of_an_odd_answer_go_back_with_the_next_turn(api: Any, add_key: Any, emu: Any) -> None:
    add_key()
    first = generate(api, prompt="a fox [odd-fields]")
    assert first.status_code == 200
    follow = generate(api, prompt="make it red", conversationId=first.json()["data"]["conversationId"])
    assert follow.status_code == 200
    assert emulator_requests(emu)[-1]["thought_signatures"] == 1  # the image's, its empty text one dropped


@pytest.mark.parametrize(
    ("config", "field"), [("generationConfig", "imageConfig"), ("generation_config", "image_config")]
)
def test_the_emulator_honours_either_spelling_of_a_request(emu: Any, config: str, field: str) -> None:
    ratio = "aspectRatio" if field == "imageConfig" else "aspect_ratio"
    body: dict[str, Any] = {"contents": [{"parts": [{"text": "a fox"}]}], config: {field: {ratio: "16:9"}}}
    answer = requests.post(f"{emu.url}/v1beta/models/{FLASH}:generateContent?key=emu-ok", json=body, timeout=30)
    part = next(part for part in answer.json()["candidates"][0]["content"]["parts"] if "inlineData" in part)
    assert PIL.Image.open(io.BytesIO(base64.b64decode(part["inlineData"]["data"]))).size == (1376, 768)

"""POST /api/generate end to end: DRF, the pipeline, the key pool, google-genai, the emulator."""

from __future__ import annotations

import base64
import io
from typing import Any

import PIL.Image
import pytest

from conversations.models import Conversation, Job, Message
from gallery.models import Image
from tests.conftest import b64, emulator_requests, png_bytes

pytestmark = pytest.mark.django_db


def test_it_generates_an_image_and_answers_in_the_envelope(api: Any, add_key: Any, emu: Any) -> None:
    add_key()
    response = api.post("/api/generate", {"prompt": "A cute cat in space"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["success"] is True and body["error"] is None
    data = body["data"]
    message = data["message"]
    assert message["role"] == "assistant"
    picture = PIL.Image.open(io.BytesIO(base64.b64decode(message["imageBase64"])))
    assert picture.size == (1024, 1024)
    assert message["images"][0]["width"] == 1024 and message["images"][0]["mimeType"] == "image/png"
    assert data["model"] == "gemini-nano-banana-2.1"
    assert Conversation.objects.filter(pk=data["conversationId"]).exists()
    assert Image.objects.get(pk=message["images"][0]["id"]).file.startswith("images/")


def test_it_honours_aspect_ratio_and_resolution(api: Any, add_key: Any) -> None:
    add_key()
    response = api.post(
        "/api/generate",
        {"prompt": "wide", "model": "nano-banana-pro", "aspectRatio": "16:9", "resolution": "2K"},
        format="json",
    )
    image = response.json()["data"]["message"]["images"][0]
    assert (image["width"], image["height"]) == (2752, 1536)


def test_it_sends_the_first_image_back_when_the_conversation_continues(api: Any, add_key: Any, emu: Any) -> None:
    add_key()
    first = api.post("/api/generate", {"prompt": "a red bicycle"}, format="json").json()["data"]
    second = api.post(
        "/api/generate",
        {"prompt": "now make it blue", "conversationId": first["conversationId"]},
        format="json",
    ).json()["data"]
    assert second["conversationId"] == first["conversationId"]
    sent = emulator_requests(emu)
    assert [r["turns"] for r in sent] == [1, 3]
    assert sent[1]["inline_images"] == 1


def test_it_sends_reference_images(api: Any, add_key: Any, emu: Any) -> None:
    add_key()
    reference = png_bytes((300, 200))
    response = api.post(
        "/api/generate",
        {"prompt": "edit this", "images": [b64(reference), "data:image/png;base64," + b64(reference)]},
        format="json",
    )
    assert response.status_code == 200
    assert emulator_requests(emu)[0]["inline_images"] == 2


@pytest.mark.parametrize(
    ("prompt", "code"),
    [("a cat [block]", "blocked"), ("a cat [imagesafety]", "image_safety"), ("a cat [noimage]", "no_image")],
)
def test_it_ends_refused_turns_with_a_clear_message_and_nothing_half_saved(
    api: Any, add_key: Any, prompt: str, code: str
) -> None:
    add_key()
    response = api.post("/api/generate", {"prompt": prompt}, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == code and len(error["message"]) > 20
    assert not Image.objects.exists()
    job = Job.objects.get()
    assert job.state == Job.State.FAILED
    assert Message.objects.get(role="assistant").status == Message.Status.FAILED


def test_it_asks_for_a_thinking_level_and_google_search_grounding(api: Any, add_key: Any, emu: Any) -> None:
    add_key()
    body = {"prompt": "the tallest tower in Paris", "thinkingLevel": "medium", "grounding": True}
    response = api.post("/api/generate", body, format="json")
    assert response.status_code == 200, response.json()
    sent = emulator_requests(emu)[-1]["generation_config"]
    assert list(sent["thinkingConfig"].values()) == ["MEDIUM"]  # google-genai spells it thinking_level
    grounding = response.json()["data"]["message"]["grounding"]
    assert grounding["queries"] == ["the tallest tower in Paris"]
    assert [source["uri"].split("/")[2] for source in grounding["sources"]] == ["example.org", "example.com"]
    conversation = api.get(f"/api/conversations/{response.json()['data']['conversationId']}").json()["data"]
    assert conversation["messages"][-1]["grounding"] == grounding  # stored with the answer


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "nano-banana-2-lite", "thinkingLevel": "high"}, "thinkingLevel"),
        ({"model": "nano-banana-pro", "thinkingLevel": "minimal"}, "thinkingLevel"),
        ({"model": "nano-banana-2-lite", "grounding": True}, "grounding"),
    ],
)
def test_it_refuses_options_the_model_does_not_offer(api: Any, body: dict[str, Any], field: str) -> None:
    response = api.post("/api/generate", {"prompt": "a cat", **body}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == field
    assert not Job.objects.exists()

"""POST /api/generate refuses bad input with a 4xx in the envelope, a clear message, and nothing recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conversations.models import Conversation, Job, Message
from gallery.models import Image
from tests.conftest import b64, png_bytes

pytestmark = pytest.mark.django_db

UNKNOWN = "3f0c1a9e-5b7d-4c2e-9a8f-0123456789ab"
PNG = b64(png_bytes())


def assert_refused(response: Any, status: int, *fragments: str) -> dict[str, Any]:
    """A 4xx in the envelope whose message says what is wrong, and no trace in the database."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"success", "data", "error"}
    assert body["success"] is False and body["data"] is None
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    for fragment in fragments:
        assert fragment.lower() in error["message"].lower(), error["message"]
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()
    assert not Job.objects.exists()
    assert not Image.objects.exists()
    return error


def post_json(api: Any, body: Any) -> Any:
    return api.post("/api/generate", json.dumps(body), content_type="application/json")


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        pytest.param({}, ["prompt", "required"], id="missing prompt"),
        pytest.param({"prompt": ""}, ["prompt", "empty"], id="empty prompt"),
        pytest.param({"prompt": "   \n "}, ["prompt", "empty"], id="blank prompt"),
        pytest.param({"prompt": None}, ["prompt", "null"], id="null prompt"),
        pytest.param({"prompt": "x" * 8001}, ["too long", "2000 tokens"], id="prompt too long"),
        pytest.param({"prompt": 42}, ["prompt", "string", "int"], id="prompt as number"),
        pytest.param({"prompt": ["a cat"]}, ["prompt", "string", "list"], id="prompt as list"),
        pytest.param({"prompt": "a cat", "conversationId": "not-a-uuid"}, ["conversationId", "uuid"], id="bad uuid"),
        pytest.param({"prompt": "a cat", "conversationId": 5}, ["conversationId", "int"], id="uuid as number"),
        pytest.param({"prompt": "a cat", "model": "dall-e-3"}, ["unknown model", "dall-e-3"], id="unknown model"),
        pytest.param({"prompt": "a cat", "model": 3}, ["model", "string"], id="model as number"),
        pytest.param({"prompt": "a cat", "aspectRatio": "7:3"}, ["aspect ratio", "7:3", "16:9"], id="bad ratio"),
        pytest.param(
            {"prompt": "a cat", "model": "nano-banana-pro", "aspectRatio": "1:8"},
            ["1:8", "gemini-3-pro-image"],
            id="ratio of another model",
        ),
        pytest.param({"prompt": "a cat", "resolution": "8K"}, ["resolution", "8K", "4K"], id="bad resolution"),
        pytest.param(
            {"prompt": "a cat", "model": "gemini-3-pro-image", "resolution": "512"},
            ["512", "gemini-3-pro-image"],
            id="resolution of another model",
        ),
        pytest.param({"prompt": "a cat", "images": PNG}, ["images", "list"], id="images not a list"),
        pytest.param({"prompt": "a cat", "images": [7]}, ["images", "string"], id="image item not a string"),
        pytest.param({"prompt": "a cat", "images": [{"url": "x"}]}, ["images", "string"], id="image item an object"),
        pytest.param({"prompt": "a cat", "images": [PNG] * 6}, ["at most 5"], id="too many images"),
        pytest.param({"prompt": "a cat", "images": ["%%%not base64%%%"]}, ["image 1", "base64"], id="not base64"),
        pytest.param(
            {"prompt": "a cat", "images": ["data:image/png;base64,@@@"]}, ["image 1", "base64"], id="bad data uri"
        ),
        pytest.param(
            {"prompt": "a cat", "images": [b64(png_bytes(fmt="GIF"))]}, ["image 1", "GIF", "PNG"], id="gif image"
        ),
        pytest.param(
            {"prompt": "a cat", "images": [PNG, b64(png_bytes((400, 300))[:120])]},
            ["image 2", "could not be decoded"],
            id="truncated png",
        ),
        pytest.param({"prompt": "a cat", "images": [b64(b"just some text")]}, ["could not be decoded"], id="not image"),
    ],
)
def test_it_refuses_bad_input_with_a_clear_400(api: Any, body: Any, fragments: list[str]) -> None:
    error = assert_refused(post_json(api, body), 400, *fragments)
    assert error["code"] == "invalid_request"


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param('["a cat"]', id="list body"),
        pytest.param('"a cat"', id="string body"),
        pytest.param("42", id="number body"),
    ],
)
def test_it_refuses_a_json_body_that_is_not_an_object(api: Any, raw: str) -> None:
    assert_refused(api.post("/api/generate", raw, content_type="application/json"), 400, "expected a dictionary")


def test_it_refuses_malformed_json(api: Any) -> None:
    response = api.post("/api/generate", '{"prompt": "a cat",', content_type="application/json")
    assert assert_refused(response, 400, "JSON parse error")["code"] == "parse_error"


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [("text/plain", "a cat"), ("application/x-www-form-urlencoded", "prompt=a+cat")],
)
def test_it_refuses_a_body_that_is_not_json(api: Any, content_type: str, raw: str) -> None:
    response = api.post("/api/generate", raw, content_type=content_type)
    assert assert_refused(response, 415, content_type)["code"] == "unsupported_media_type"


def test_it_names_the_offending_field_as_the_client_sent_it(api: Any) -> None:
    response = post_json(api, {"prompt": "a cat", "aspectRatio": "7:3"})
    assert assert_refused(response, 400)["details"] == {"field": "aspectRatio"}


def test_it_answers_404_for_an_unknown_conversation(api: Any) -> None:
    response = post_json(api, {"prompt": "now make it blue", "conversationId": UNKNOWN})
    assert assert_refused(response, 404, UNKNOWN, "not found")["code"] == "not_found"


def test_it_answers_404_for_another_users_conversation(api: Any, other_user: Any) -> None:
    theirs = Conversation.objects.create(user=other_user, title="bob's")
    response = post_json(api, {"prompt": "now make it blue", "conversationId": str(theirs.pk)})
    assert response.status_code == 404
    assert not Job.objects.exists() and not Message.objects.exists()


def test_it_refuses_an_image_over_10_mb_before_decoding_it(api: Any) -> None:
    oversized = "A" * (14 * 1024 * 1024)  # about 10.5 MB once decoded
    assert_refused(post_json(api, {"prompt": "a cat", "images": [oversized]}), 400, "image 1", "larger than 10 MB")


def test_it_refuses_an_image_with_too_many_pixels(api: Any, settings: Any) -> None:
    settings.MAX_IMAGE_PIXELS = 100
    assert_refused(post_json(api, {"prompt": "a cat", "images": [PNG]}), 400, "too many pixels")


def test_it_answers_413_when_the_body_is_over_the_request_cap(api: Any, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post_json(api, {"prompt": "a cat " * 300})
    assert assert_refused(response, 413, "too large")["code"] == "too_large"


def test_it_answers_an_unknown_api_path_with_a_404_envelope(api: Any) -> None:
    response = api.get("/api/generate/nothing-here")
    assert assert_refused(response, 404, "/api/generate/nothing-here")["code"] == "not_found"


def test_it_answers_a_wrong_method_with_a_405_envelope(api: Any) -> None:
    response = api.get("/api/generate")
    assert assert_refused(response, 405, "GET")["code"] == "method_not_allowed"
    assert "POST" in response["Allow"]

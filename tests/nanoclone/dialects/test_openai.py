"""OpenAI's Images API end to end: the real openai SDK, pointed at a live NanoClone's /openai/v1."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import openai
import PIL.Image
import pytest
import requests
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.models import Job
from gallery.models import Image
from keys.models import ApiKey
from tests.conftest import emulator_requests, png_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(user: Any) -> str:
    return str(Token.objects.create(user=user).key)


@pytest.fixture
def client_for(live_server: Any, token: str) -> Callable[..., openai.OpenAI]:
    def make(api_key: str = token) -> openai.OpenAI:
        # No SDK retries: each test sees the first answer. Connection: close as in test_gemini.py.
        return openai.OpenAI(
            api_key=api_key,
            base_url=f"{live_server.url}/openai/v1",
            max_retries=0,
            default_headers={"Connection": "close"},
        )

    return make


def decoded(b64_json: str | None) -> PIL.Image.Image:
    assert b64_json
    return PIL.Image.open(io.BytesIO(base64.b64decode(b64_json)))


@pytest.mark.django_db(transaction=True)
def test_it_generates_two_images_as_b64_json(client_for: Callable[..., openai.OpenAI], add_key: Any, emu: Any) -> None:
    add_key()
    result = client_for().images.generate(
        model="gpt-image-1", prompt="a lighthouse at dusk", n=2, size="1024x1024", response_format="b64_json"
    )
    assert result.data is not None and len(result.data) == 2
    for image in result.data:
        shown = decoded(image.b64_json)
        assert (shown.format, shown.size) == ("PNG", (1024, 1024))
        assert image.revised_prompt == "a lighthouse at dusk"
    assert result.created > 0 and result.usage is not None and result.usage.total_tokens > 0
    # Recorded like every generation; OpenAI's model name is served by the default model.
    job = Job.objects.get()
    assert (job.source, job.model, job.num_images) == ("openai", "gemini-nano-banana-2.1", 2)
    assert Image.objects.filter(job=job, role=Image.Role.OUTPUT).count() == 2
    assert ApiKey.objects.get().count_today == 2 and len(emulator_requests(emu)) == 2


@pytest.mark.django_db(transaction=True)
def test_it_answers_a_signed_url_at_exactly_the_asked_size_and_format(
    client_for: Callable[..., openai.OpenAI], add_key: Any, emu: Any
) -> None:
    add_key()
    result = client_for().images.generate(
        prompt="a wide valley", size="1536x1024", response_format="url", output_format="webp", quality="high"
    )
    assert result.data and result.data[0].url and "sig=" in result.data[0].url
    downloaded = requests.get(result.data[0].url, timeout=10)  # no token: the signed link is enough
    assert downloaded.status_code == 200
    shown = PIL.Image.open(io.BytesIO(downloaded.content))
    assert (shown.format, shown.size) == ("WEBP", (1536, 1024))
    assert (result.size, result.output_format) == ("1536x1024", "webp")
    # 3:2 is the nearest ratio; 2K covers 1536 px and quality high asks one step more.
    assert emulator_requests(emu)[0]["generation_config"]["imageConfig"] == {"aspectRatio": "3:2", "imageSize": "4K"}


@pytest.mark.django_db(transaction=True)
def test_it_edits_uploaded_pngs(client_for: Callable[..., openai.OpenAI], add_key: Any, emu: Any) -> None:
    add_key()
    client = client_for()
    photo = png_bytes((400, 300), (10, 120, 60))
    one = client.images.edit(image=("photo.png", photo, "image/png"), prompt="add a rainbow")
    assert one.data and decoded(one.data[0].b64_json).size == (1200, 896)  # auto: the photo's own 4:3
    two = client.images.edit(
        image=[("a.png", photo, "image/png"), ("b.png", png_bytes(), "image/png")], prompt="merge them", size="512x512"
    )
    assert two.data and decoded(two.data[0].b64_json).size == (512, 512)
    assert [sent["inline_images"] for sent in emulator_requests(emu)] == [1, 2]
    assert Image.objects.filter(role=Image.Role.INPUT).count() == 3


@pytest.mark.django_db(transaction=True)
def test_it_lists_the_catalogues_models(client_for: Callable[..., openai.OpenAI]) -> None:
    client = client_for()
    ids = [model.id for model in client.models.list()]
    assert "gemini-nano-banana-2.1" in ids and "gemini-3-pro-image" in ids
    assert client.models.retrieve("nano-banana-pro").id == "gemini-3-pro-image"


@pytest.mark.django_db(transaction=True)
def test_a_bad_key_is_401_in_openais_shape(client_for: Callable[..., openai.OpenAI]) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        client_for(api_key="sk-not-a-token").images.generate(prompt="a cat")
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    assert refused.value.body == {
        "message": "Invalid API token.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }


@pytest.mark.django_db(transaction=True)
def test_a_spent_pool_is_429_with_retry_after(client_for: Callable[..., openai.OpenAI], add_key: Any) -> None:
    add_key("emu-429-0001")
    with pytest.raises(openai.RateLimitError) as spent:
        client_for().images.generate(prompt="a cat")
    assert int(spent.value.response.headers["Retry-After"]) > 0


# --- the wire format's corners, through Django's test client -----------------------------------


def test_it_refuses_a_mask_with_a_clear_message(api: APIClient, add_key: Any) -> None:
    add_key()
    files = {"image": io.BytesIO(png_bytes()), "mask": io.BytesIO(png_bytes()), "prompt": "fill it"}
    response = api.post("/openai/v1/images/edits", files, format="multipart")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["type"]) == ("mask", "invalid_request_error") and "mask" in error["message"]
    assert not Job.objects.exists()


def test_it_edits_images_given_by_url_in_json(api: APIClient, add_key: Any, emu: Any) -> None:
    add_key()
    data_uri = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    body = {"prompt": "sharpen", "images": [{"image_url": data_uri}]}
    response = api.post("/openai/v1/images/edits", body, format="json")
    assert response.status_code == 200, response.content
    assert emulator_requests(emu)[0]["inline_images"] == 1


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"prompt": "a cat", "n": 5}, "n", "less than or equal to 4"),
        ({"prompt": "a cat", "size": "huge"}, "size", "WIDTHxHEIGHT"),
        ({"prompt": "a cat", "size": "9000x10"}, "size", "from 16 to 8192"),
        ({"prompt": "a cat", "quality": "ultra"}, "quality", "Supported values"),
        ({"prompt": "a cat", "output_format": "gif"}, "output_format", "png"),
        ({"prompt": "a cat", "background": "transparent"}, "background", "opaque"),
        ({"prompt": "a cat", "stream": True}, "stream", "Streaming"),
        ({"prompt": "a cat", "model": "stable-diffusion"}, "model", "Unknown model"),
        ({"prompt": "  "}, "prompt", "Prompt is required"),
        ({"n": 1}, "prompt", "required"),
    ],
)
def test_it_refuses_bad_input_in_openais_shape(
    api: APIClient, add_key: Any, body: dict[str, Any], param: str, words: str
) -> None:
    add_key()
    response = api.post("/openai/v1/images/generations", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["param"], error["type"]) == (param, "invalid_request_error") and words in error["message"], error
    assert not Job.objects.exists()


def test_an_edit_without_images_is_refused(api: APIClient) -> None:
    response = api.post("/openai/v1/images/edits", {"prompt": "fix it"}, format="multipart")
    assert response.status_code == 400 and response.json()["error"]["param"] == "image"


def test_a_moderated_prompt_is_400_moderation_blocked(api: APIClient, add_key: Any) -> None:
    add_key()
    response = api.post("/openai/v1/images/generations", {"prompt": "a cat [block]"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "moderation_blocked"


def test_unknown_paths_answer_openais_json_404(api: APIClient) -> None:
    response = api.post("/openai/v1/chat/completions", {}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "Invalid URL (POST /openai/v1/chat/completions)"
    assert api.get("/openai/v1/models/dall-e-9").status_code == 404

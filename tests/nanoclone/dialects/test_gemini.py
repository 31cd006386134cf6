"""Gemini's own API end to end: the real google-genai SDK pointed at a live NanoClone, only its base URL changed."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import Any

import PIL.Image
import pytest
import requests
from django.test import Client
from google import genai
from google.genai import errors, types
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations import pipeline
from conversations.models import Job, Message
from gallery.models import Image
from keys.models import ApiKey
from tests.conftest import b64, emulator_requests, png_bytes

pytestmark = pytest.mark.django_db

IMAGE = types.GenerateContentConfig(response_modalities=["TEXT", "IMAGE"])


@pytest.fixture
def token(user: Any) -> str:
    return str(Token.objects.create(user=user).key)


@pytest.fixture
def client_for(live_server: Any, token: str) -> Callable[..., genai.Client]:
    def make(api_key: str = token, **http_options: Any) -> genai.Client:
        # Connection: close, so live_server's request threads end with each answer: one still serving a
        # kept-alive connection when the session's server stops would close the test database's
        # shared connection from the wrong thread.
        options = types.HttpOptions(base_url=live_server.url, headers={"Connection": "close"}, **http_options)
        return genai.Client(api_key=api_key, http_options=options)

    return make


def picture(part: types.Part) -> PIL.Image.Image:
    assert part.inline_data is not None and part.inline_data.data
    return PIL.Image.open(io.BytesIO(part.inline_data.data))


def image_parts(response: types.GenerateContentResponse) -> list[types.Part]:
    return [part for part in response.parts or [] if part.inline_data]


@pytest.mark.django_db(transaction=True)
def test_it_generates_through_google_genai_with_only_the_base_url_changed(
    client_for: Callable[..., genai.Client], add_key: Any, emu: Any
) -> None:
    add_key()
    client = client_for()  # held: a collected Client closes its connections
    response = client.models.generate_content(
        model="gemini-nano-banana-2.1",
        contents="a red fox in the snow",
        config=types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"], image_config=types.ImageConfig(aspect_ratio="16:9", image_size="2K")
        ),
    )
    [image] = image_parts(response)
    assert picture(image).size == (2752, 1536) and image.thought_signature
    assert "red fox" in (response.text or "")
    assert response.model_version == "gemini-nano-banana-2.1"
    assert response.usage_metadata is not None and response.usage_metadata.total_token_count
    # Recorded like every generation: job, conversation, gallery image, usage on the key.
    job = Job.objects.get()
    assert (job.source, job.state, response.response_id) == ("gemini", Job.State.SUCCEEDED, job.id.hex)
    assert Image.objects.get(role=Image.Role.OUTPUT).job == job
    assert ApiKey.objects.get().count_today == 1
    [sent] = emulator_requests(emu)
    assert sent["generation_config"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}


@pytest.mark.django_db(transaction=True)
def test_it_serves_v1_and_old_model_names_and_says_which_model_served(
    client_for: Callable[..., genai.Client], add_key: Any, emu: Any
) -> None:
    add_key()
    client = client_for(api_version="v1")
    response = client.models.generate_content(model="gemini-2.5-flash-image", contents="a lighthouse", config=IMAGE)
    assert response.model_version == "gemini-nano-banana-2.1" and image_parts(response)


@pytest.mark.django_db(transaction=True)
def test_it_streams_the_answer_as_server_sent_events(client_for: Callable[..., genai.Client], add_key: Any) -> None:
    add_key()
    client = client_for()
    chunks = list(client.models.generate_content_stream(model="nano-banana", contents="a paper boat", config=IMAGE))
    parts = [part for chunk in chunks for part in chunk.parts or []]
    assert [bool(part.inline_data) for part in parts] == [False, True]
    assert "paper boat" in (parts[0].text or "") and picture(parts[1]).size == (1024, 1024)
    assert chunks[-1].candidates and chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


@pytest.mark.django_db(transaction=True)
def test_a_chat_passes_its_history_on_with_images_and_signatures(
    client_for: Callable[..., genai.Client], add_key: Any, emu: Any
) -> None:
    add_key()
    client = client_for()
    chat = client.chats.create(
        model="gemini-nano-banana-2.1",
        config=types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"], image_config=types.ImageConfig(aspect_ratio="3:2")
        ),
    )
    photo = png_bytes((300, 200), (20, 90, 200))
    first = chat.send_message([types.Part.from_bytes(data=photo, mime_type="image/png"), "put a hat on it"])
    second = chat.send_message("now make the hat red")
    assert image_parts(first) and image_parts(second)
    # Gemini saw the whole chat: the upload, the first answer's image and its signature.
    edit = emulator_requests(emu)[1]
    assert (edit["turns"], edit["inline_images"], edit["thought_signatures"]) == (3, 2, 1)
    assert edit["prompt"] == "now make the hat red"
    # The earlier turns are the new conversation's first messages: the job runs again from its id alone.
    job = Job.objects.order_by("created_at").last()
    assert job is not None
    roles = list(Message.objects.filter(conversation=job.conversation).values_list("role", flat=True))
    assert roles == ["user", "assistant", "user", "assistant"]
    user_turn, model_turn, prompt = pipeline.history(job)
    assert (user_turn.role, model_turn.role, prompt.text) == ("user", "model", "now make the hat red")
    assert user_turn.images[0][0] == photo and model_turn.images[0][2]
    assert model_turn.images[0][0] == first.parts[-1].inline_data.data  # type: ignore[index, union-attr]


@pytest.mark.django_db(transaction=True)
def test_it_lists_and_describes_the_catalogues_models(client_for: Callable[..., genai.Client]) -> None:
    client = client_for()
    names = [model.name for model in client.models.list()]
    assert "models/gemini-nano-banana-2.1" in names and "models/gemini-3-pro-image" in names
    described = client.models.get(model="nano-banana-pro")
    assert described.name == "models/gemini-3-pro-image" and described.display_name == "Nano Banana Pro"
    assert described.supported_actions and "generateContent" in described.supported_actions


@pytest.mark.django_db(transaction=True)
def test_a_bad_token_is_401_unauthenticated(client_for: Callable[..., genai.Client], live_server: Any) -> None:
    client = client_for(api_key="not-a-token")
    with pytest.raises(errors.ClientError) as refused:
        client.models.generate_content(model="nano-banana", contents="a cat")
    assert (refused.value.code, refused.value.status) == (401, "UNAUTHENTICATED")
    missing = requests.get(f"{live_server.url}/v1beta/models", timeout=10)
    assert missing.status_code == 401 and "x-goog-api-key" in missing.json()["error"]["message"]


@pytest.mark.django_db(transaction=True)
def test_a_spent_pool_is_429_resource_exhausted_with_retry_after(
    client_for: Callable[..., genai.Client], add_key: Any, live_server: Any, token: str
) -> None:
    add_key("emu-429-0001")
    client = client_for()
    with pytest.raises(errors.ClientError) as spent:
        client.models.generate_content(model="nano-banana", contents="a cat", config=IMAGE)
    assert (spent.value.code, spent.value.status) == (429, "RESOURCE_EXHAUSTED")
    again = requests.post(
        f"{live_server.url}/v1beta/models/nano-banana:generateContent",
        params={"key": token},
        json={"contents": [{"parts": [{"text": "a cat"}]}]},
        timeout=10,
    )
    assert again.status_code == 429 and int(again.headers["Retry-After"]) > 0
    [retry] = [d for d in again.json()["error"]["details"] if d["@type"].endswith("RetryInfo")]
    assert retry["retryDelay"] == f"{again.headers['Retry-After']}s"


@pytest.mark.django_db(transaction=True)
def test_an_unknown_or_text_model_is_404_not_found(client_for: Callable[..., genai.Client]) -> None:
    client = client_for()
    for name in ("gemini-2.5-flash", "no-such-model"):
        with pytest.raises(errors.ClientError) as unknown:
            client.models.generate_content(model=name, contents="a cat")
        assert (unknown.value.code, unknown.value.status) == (404, "NOT_FOUND")
        assert f"models/{name} is not found" in (unknown.value.message or "")


@pytest.mark.django_db(transaction=True)
def test_bad_input_is_400_invalid_argument(client_for: Callable[..., genai.Client], add_key: Any) -> None:
    add_key()
    client = client_for()
    with pytest.raises(errors.ClientError) as bad:
        client.models.generate_content(
            model="nano-banana",
            contents="a cat",
            config=types.GenerateContentConfig(image_config=types.ImageConfig(aspect_ratio="7:3")),
        )
    assert (bad.value.code, bad.value.status) == (400, "INVALID_ARGUMENT")
    assert "7:3" in (bad.value.message or "") and not Job.objects.exists()


# --- the same door through Django's test client: the wire format's corners ----------------------


@pytest.fixture
def gemini(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_GOOG_API_KEY=Token.objects.create(user=user).key)
    return client


def post(client: APIClient, body: Any, model: str = "nano-banana", method: str = "generateContent") -> Any:
    return client.post(f"/v1beta/models/{model}:{method}", body, format="json")


def test_it_takes_images_in_either_base64_alphabet_and_both_spellings(
    gemini: APIClient, add_key: Any, emu: Any
) -> None:
    add_key()
    photo = png_bytes((120, 80))
    url_safe = base64.urlsafe_b64encode(photo).decode()
    body = {
        "contents": [
            {"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": url_safe}}, {"text": "edit"}]}
        ],
        "generation_config": {"response_modalities": ["IMAGE"]},
    }
    answer = post(gemini, body).json()
    parts = answer["candidates"][0]["content"]["parts"]
    assert [list(part) for part in parts] == [["inlineData", "thoughtSignature"]]  # IMAGE only: no text part
    assert Image.objects.get(role=Image.Role.INPUT).sha256 and emulator_requests(emu)[0]["inline_images"] == 1


def test_it_keeps_the_signatures_of_earlier_text_and_images(gemini: APIClient, add_key: Any) -> None:
    add_key()
    text_signature, image_signature = b64(b"text-thought"), base64.urlsafe_b64encode(b"\xfb\xff-image").decode()
    earlier = [
        {"role": "user", "parts": [{"text": "a kite"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Here it is", "thoughtSignature": text_signature},
                {
                    "inlineData": {"mimeType": "image/png", "data": b64(png_bytes())},
                    "thought_signature": image_signature,
                },
            ],
        },
    ]
    assert post(gemini, {"contents": [*earlier, {"parts": [{"text": "a red kite"}]}]}).status_code == 200
    _, model_turn, _ = pipeline.history(Job.objects.get())
    assert model_turn.text_signature == text_signature
    assert base64.b64decode(model_turn.images[0][2]) == b"\xfb\xff-image"


def test_it_passes_thinking_and_grounding_on_and_answers_the_sources(gemini: APIClient, add_key: Any, emu: Any) -> None:
    add_key()
    body = {
        "contents": [{"parts": [{"text": "today's weather in Paris as a poster"}]}],
        "generationConfig": {"thinkingConfig": {"thinkingLevel": "HIGH"}},
        "tools": [{"googleSearch": {}}],
    }
    candidate = post(gemini, body).json()["candidates"][0]
    assert candidate["groundingMetadata"]["groundingChunks"][0]["web"]["uri"].startswith("https://example.org/")
    assert candidate["groundingMetadata"]["webSearchQueries"]
    thinking = emulator_requests(emu)[0]["generation_config"]["thinkingConfig"]
    assert thinking == {"thinking_level": "HIGH"}  # as google-genai spells it
    assert Job.objects.get().grounding


def test_it_answers_refusals_as_gemini_does_with_geminis_own_reason(gemini: APIClient, add_key: Any) -> None:
    add_key()
    blocked = post(gemini, {"contents": [{"parts": [{"text": "a cat [block]"}]}]})
    assert blocked.status_code == 200 and blocked.json()["promptFeedback"]["blockReason"] == "PROHIBITED_CONTENT"
    withheld = post(gemini, {"contents": [{"parts": [{"text": "a cat [imagesafety]"}]}]})
    assert withheld.status_code == 200 and withheld.json()["candidates"][0]["finishReason"] == "IMAGE_SAFETY"
    assert "Unable to show the generated image" in withheld.json()["candidates"][0]["finishMessage"]
    other = post(gemini, {"contents": [{"parts": [{"text": "a cat [finish:IMAGE_OTHER]"}]}]})
    assert other.status_code == 200 and other.json()["candidates"][0]["finishReason"] == "IMAGE_OTHER"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("not json", "JSON"),
        ([1, 2], "body must be an object"),
        ({}, "contents is required"),
        ({"contents": [{"role": "model", "parts": [{"text": "hi"}]}]}, "user's turn"),
        ({"contents": [{"role": "system", "parts": [{"text": "hi"}]}]}, "role must be user or model"),
        ({"contents": [{"parts": [{"fileData": {"fileUri": "gs://x"}}]}]}, "fileData"),
        ({"contents": [{"parts": [{"text": "a"}]}], "tools": [{"codeExecution": {}}]}, "googleSearch only"),
        ({"contents": [{"parts": [{"text": "a"}]}], "generationConfig": {"responseModalities": ["TEXT"]}}, "IMAGE"),
        ({"contents": [{"parts": [{"text": "a"}]}], "generationConfig": {"candidateCount": 2}}, "candidateCount"),
        ({"contents": [{"parts": [{"text": "a"}]}], "systemInstruction": {"parts": [{"text": "x"}]}}, "systemInst"),
        ({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": b64(b"nope")}}]}]}, "Prompt"),
        ({"contents": [{"parts": [{"text": "a"}, {"inlineData": {"data": b64(b"nope")}}]}]}, "contents"),
    ],
)
def test_it_refuses_bad_input_with_400_invalid_argument(gemini: APIClient, add_key: Any, body: Any, words: str) -> None:
    add_key()
    if isinstance(body, str):
        response = gemini.post("/v1beta/models/nano-banana:generateContent", body, content_type="application/json")
    else:
        response = post(gemini, body)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and words in error["message"], error
    assert not Job.objects.exists()


def test_it_takes_the_token_as_a_key_query_or_bearer(user: Any) -> None:
    token = Token.objects.create(user=user).key
    assert APIClient().get(f"/v1beta/models?key={token}").status_code == 200
    assert APIClient().get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_unknown_paths_answer_geminis_json_404(gemini: APIClient) -> None:
    paths = ("/v1beta/files", "/v1beta/models/nano-banana:countTokens", "/v1/models/a/b", "/v2/models", "/v9/models/x")
    for path in (*paths, "/v1alpha/models/gemini-3-pro-image:generateContent"):  # an API version Gemini lacks
        response = gemini.get(path)
        assert response.status_code == 404 and response.json()["error"]["status"] == "NOT_FOUND", path
    assert gemini.get("/v1beta/models/nano-banana:generateContent").json()["error"]["code"] == 405
    # A POST there, with no CSRF token (API clients have none): still the JSON 404, not Django's HTML 403.
    for path in ("/v9/models/x:generateContent", "/openai/v1/nothing", "/api/nothing"):
        answer = Client(enforce_csrf_checks=True).post(path, {}, content_type="application/json")
        assert (answer.status_code, answer["Content-Type"]) == (404, "application/json"), path

"""The Gemini emulator, exercised through the real google-genai SDK over a real socket."""

from __future__ import annotations

import datetime as dt
import io
import json
import struct
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from google import genai
from google.genai import errors, types
from PIL import Image, ImageStat

from keys.gemini.emulator import GeminiEmulator


@pytest.fixture(scope="module")
def server() -> Iterator[GeminiEmulator]:
    # This module's own emulator (not the session one): its logs and quota counters see only these tests.
    with GeminiEmulator() as emu:
        yield emu


@pytest.fixture
def emu(server: GeminiEmulator) -> GeminiEmulator:
    server.clear()
    server.latency_ms = 0
    return server


def client(
    emu: GeminiEmulator, key: str = "test-key-abcd", api_version: str = "v1beta", timeout_ms: int = 10000
) -> genai.Client:
    options = types.HttpOptions(base_url=emu.url, api_version=api_version, timeout=timeout_ms)
    return genai.Client(api_key=key, http_options=options)


def generate(
    emu: GeminiEmulator,
    contents: Any = "a lighthouse at dusk",
    *,
    key: str = "test-key-abcd",
    model: str = "gemini-3.1-flash-image",
    aspect_ratio: str | None = None,
    image_size: str | None = None,
    api_version: str = "v1beta",
) -> types.GenerateContentResponse:
    config = types.GenerateContentConfig(
        response_modalities=["TEXT", "IMAGE"],
        image_config=types.ImageConfig(aspect_ratio=aspect_ratio, image_size=image_size),
    )
    # Keep the Client referenced: once collected it closes the HTTP client its `.models` uses.
    sdk = client(emu, key, api_version)
    return sdk.models.generate_content(model=model, contents=contents, config=config)


def image_of(response: types.GenerateContentResponse) -> Image.Image:
    blobs = [p.inline_data.data for p in response.parts or [] if p.inline_data and p.inline_data.data]
    assert len(blobs) == 1
    image = Image.open(io.BytesIO(blobs[0]))
    image.load()
    return image


def png_part(colour: tuple[int, int, int], size: tuple[int, int]) -> types.Part:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return types.Part.from_bytes(data=buffer.getvalue(), mime_type="image/png")


def http(emu: GeminiEmulator, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(emu.url + path, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize(
    ("model", "aspect_ratio", "image_size", "pixels"),
    [
        ("gemini-3.1-flash-image", None, None, (1024, 1024)),
        ("gemini-3-pro-image", "16:9", "2K", (2752, 1536)),
        ("gemini-3.1-flash-image", "9:16", "512", (384, 688)),
        ("gemini-3.1-flash-image", "8:1", "1K", (3072, 384)),
        ("nano-banana-pro", "3:4", "1K", (896, 1200)),
    ],
)
def test_it_sizes_images_by_model_aspect_ratio_and_size(
    emu: GeminiEmulator, model: str, aspect_ratio: str | None, image_size: str | None, pixels: tuple[int, int]
) -> None:
    response = generate(emu, model=model, aspect_ratio=aspect_ratio, image_size=image_size)
    image = image_of(response)
    assert image.format == "PNG"
    assert image.size == pixels


def test_it_answers_like_gemini(emu: GeminiEmulator) -> None:
    response = generate(emu, "a red fox", model="gemini-3-pro-image", aspect_ratio="16:9", image_size="2K")
    text, picture = response.parts or []
    assert text.text and "a red fox" in text.text
    assert picture.inline_data and picture.inline_data.mime_type == "image/png"
    assert picture.thought_signature
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage and usage.prompt_token_count and usage.candidates_token_count
    assert usage.candidates_token_count >= 1120  # an output image's token cost
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert response.model_version == "gemini-3-pro-image"
    assert response.response_id


def test_it_counts_input_images_as_prompt_tokens(emu: GeminiEmulator) -> None:
    plain = generate(emu, "edit this").usage_metadata
    edit = generate(emu, [png_part((9, 9, 9), (64, 64)), "edit this"]).usage_metadata
    assert plain and edit and plain.prompt_token_count is not None
    assert edit.prompt_token_count == plain.prompt_token_count + 258


def test_it_rejects_an_aspect_ratio_the_model_lacks(emu: GeminiEmulator) -> None:
    with pytest.raises(errors.ClientError) as caught:
        generate(emu, model="gemini-3-pro-image", aspect_ratio="8:1")
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")


def test_it_is_deterministic_for_the_same_request(emu: GeminiEmulator) -> None:
    first = image_of(generate(emu, "a blue whale", aspect_ratio="4:3")).tobytes()
    again = image_of(generate(emu, "a blue whale", aspect_ratio="4:3")).tobytes()
    other = image_of(generate(emu, "a grey whale", aspect_ratio="4:3")).tobytes()
    assert first == again
    assert first != other


def test_it_derives_an_edit_from_the_last_input_image_at_its_aspect_ratio(emu: GeminiEmulator) -> None:
    colour = (200, 60, 40)
    contents = [png_part((0, 0, 255), (100, 100)), png_part(colour, (1200, 900)), "make it glow"]
    image = image_of(generate(emu, contents)).convert("RGB")
    assert image.size == (1200, 896)  # 4:3, the nearest ratio to the 1200x900 input
    # The upper half is free of the caption band: it should still be the input's colour.
    mean = ImageStat.Stat(image.crop((0, 0, image.width, image.height // 2))).mean
    assert all(abs(m - c) < 40 for m, c in zip(mean, colour, strict=True)), mean


def test_it_honours_an_explicit_aspect_ratio_for_edits(emu: GeminiEmulator) -> None:
    image = image_of(generate(emu, [png_part((1, 2, 3), (1200, 900)), "crop it"], aspect_ratio="1:1"))
    assert image.size == (1024, 1024)


def test_it_edits_the_image_of_the_previous_chat_turn(emu: GeminiEmulator) -> None:
    sdk = client(emu)
    chat = sdk.chats.create(model="gemini-3.1-flash-image")
    first = image_of(chat.send_message("a red bicycle"))
    second = image_of(chat.send_message("now make it green"))
    assert second.size == first.size
    assert first.tobytes() != second.tobytes()
    assert [(r["turns"], r["inline_images"]) for r in emu.requests] == [(1, 0), (3, 1)]


def test_it_accepts_the_key_as_query_parameter(emu: GeminiEmulator) -> None:
    body = json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}).encode()
    status, answer = http(emu, "POST", "/v1beta/models/gemini-3-pro-image:generateContent?key=q-key-wxyz", body)
    assert status == 200
    assert answer["candidates"][0]["content"]["parts"][1]["inlineData"]["mimeType"] == "image/png"
    assert emu.requests[-1]["key_suffix"] == "wxyz"


def test_it_denies_a_request_without_key(emu: GeminiEmulator) -> None:
    body = json.dumps({"contents": [{"parts": [{"text": "hi"}]}]}).encode()
    status, answer = http(emu, "POST", "/v1beta/models/gemini-3-pro-image:generateContent", body)
    assert status == 403
    assert answer["error"]["status"] == "PERMISSION_DENIED"


def test_it_always_answers_429_to_an_emu_429_key(emu: GeminiEmulator) -> None:
    with pytest.raises(errors.ClientError) as caught:
        generate(emu, key="emu-429-a")
    error = caught.value
    assert (error.code, error.status) == (429, "RESOURCE_EXHAUSTED")
    details = error.details["error"]["details"]
    quota = next(d for d in details if d["@type"] == "type.googleapis.com/google.rpc.QuotaFailure")
    assert quota["violations"][0]["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    retry = next(d for d in details if d["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
    assert retry["retryDelay"] == "38s"


def test_it_exhausts_an_emu_quota_key_after_n_successes(emu: GeminiEmulator) -> None:
    for _ in range(2):
        generate(emu, key="emu-quota2-first")
    generate(emu, key="emu-quota2-other")  # counted per key
    for _ in range(2):
        with pytest.raises(errors.ClientError) as caught:
            generate(emu, key="emu-quota2-first")
        assert caught.value.code == 429
    assert [r["status"] for r in emu.requests] == [200, 200, 200, 429, 429]


def test_it_rejects_an_emu_invalid_key_like_google(emu: GeminiEmulator) -> None:
    with pytest.raises(errors.ClientError) as caught:
        generate(emu, key="emu-invalid-a")
    error = caught.value
    assert (error.code, error.status) == (400, "INVALID_ARGUMENT")
    assert error.message == "API key not valid. Please pass a valid API key."
    assert error.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"


def test_it_denies_an_emu_denied_key(emu: GeminiEmulator) -> None:
    with pytest.raises(errors.ClientError) as caught:
        generate(emu, key="emu-denied-a")
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")


def test_it_fails_an_emu_500_key_with_a_server_error(emu: GeminiEmulator) -> None:
    with pytest.raises(errors.ServerError) as caught:
        generate(emu, key="emu-500-a")
    assert (caught.value.code, caught.value.status) == (500, "INTERNAL")


def test_it_slows_an_emu_slow_key(emu: GeminiEmulator) -> None:
    started = time.monotonic()
    generate(emu, key="emu-slow300-a")
    assert time.monotonic() - started >= 0.3


def test_it_lets_the_client_time_out() -> None:
    # Its own emulator: the slow answer lands after the test, in no other test's request log.
    with GeminiEmulator() as emu:
        sdk = client(emu, key="emu-slow600-a", timeout_ms=200)
        with pytest.raises(httpx2.TimeoutException):
            sdk.models.generate_content(model="gemini-3-pro-image", contents="too slow")


def test_it_refuses_connections_once_stopped() -> None:
    emu = GeminiEmulator().start()
    sdk = client(emu)
    sdk.models.generate_content(model="gemini-3-pro-image", contents="while up")  # a kept-alive connection
    emu.stop()
    with pytest.raises(httpx2.ConnectError):
        sdk.models.generate_content(model="gemini-3-pro-image", contents="after stop")


def test_it_blocks_a_block_prompt(emu: GeminiEmulator) -> None:
    response = generate(emu, "a [block] thing")
    assert response.prompt_feedback and response.prompt_feedback.block_reason == "PROHIBITED_CONTENT"
    assert not response.candidates


def test_it_stops_an_imagesafety_prompt_as_a_relay_showed_it(emu: GeminiEmulator) -> None:
    response = generate(emu, "an [imagesafety] thing")
    assert response.candidates and response.candidates[0].finish_reason == types.FinishReason.IMAGE_SAFETY
    assert response.candidates[0].content is not None and response.candidates[0].content.parts is None
    assert response.usage_metadata and response.usage_metadata.thoughts_token_count == 291
    body = json.dumps({"contents": [{"parts": [{"text": "an [imagesafety] thing"}]}]}).encode()
    status, raw = http(emu, "POST", "/v1beta/models/gemini-3-pro-image:generateContent?key=emu-ok", body)
    assert status == 200 and raw["promptFeedback"] == {"safetyRatings": None}  # google-genai hides both
    assert "Unable to show the generated image" in raw["candidates"][0]["finishMessage"]


def test_it_answers_a_noimage_prompt_with_text_only(emu: GeminiEmulator) -> None:
    response = generate(emu, "a [noimage] thing")
    parts = response.parts or []
    assert len(parts) == 1 and parts[0].text and parts[0].inline_data is None


def test_it_reads_the_prompt_from_the_last_user_turn(emu: GeminiEmulator) -> None:
    contents = [
        types.Content(role="user", parts=[types.Part(text="first [block]")]),
        types.Content(role="model", parts=[types.Part(text="done")]),
        types.Content(role="user", parts=[types.Part(text="second")]),
    ]
    assert generate(emu, contents).candidates


def test_it_logs_requests_oldest_first_and_clears_them(emu: GeminiEmulator) -> None:
    generate(emu, "one", key="log-key-1234", model="gemini-3-pro-image", aspect_ratio="16:9", image_size="2K")
    with pytest.raises(errors.ClientError):
        generate(emu, [png_part((1, 1, 1), (8, 8)), "two"], key="emu-invalid-9876", api_version="v1")
    status, body = http(emu, "GET", "/emulator/requests")
    assert status == 200
    first, second = body["requests"]
    assert first["time"] < second["time"]
    assert first["key_suffix"] == "1234"
    assert first["model"] == "gemini-3-pro-image"
    assert first["api_version"] == "v1beta"
    assert (first["turns"], first["inline_images"], first["status"]) == (1, 0, 200)
    assert first["generation_config"]["imageConfig"] == {"aspectRatio": "16:9", "imageSize": "2K"}
    assert (second["key_suffix"], second["api_version"]) == ("9876", "v1")
    assert (second["inline_images"], second["status"]) == (1, 400)

    assert http(emu, "DELETE", "/emulator/requests")[0] in (200, 204)
    assert http(emu, "GET", "/emulator/requests") == (200, {"requests": []})


def test_it_forgets_a_request_still_being_answered_when_cleared(emu: GeminiEmulator) -> None:
    # A previous test's slow request must not land in the next test's log.
    in_flight = threading.Thread(target=generate, args=(emu, "slow"), kwargs={"key": "emu-slow3000-a"})
    in_flight.start()
    time.sleep(1)  # it has arrived, and waits
    emu.clear()
    generate(emu, "after the clear")
    in_flight.join()
    assert [request["prompt"] for request in emu.requests] == ["after the clear"]


def test_it_delays_answers_without_blocking_other_requests(emu: GeminiEmulator) -> None:
    emu.latency_ms = 3000
    durations: list[float] = []

    def timed() -> None:
        started = time.monotonic()
        generate(emu)
        durations.append(time.monotonic() - started)

    threads = [threading.Thread(target=timed) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(durations) == 3 and min(durations) >= 3.0
    # Served side by side: each began before the first was answered (one after another, the
    # arrivals would be 3 s apart). Arrival times, not wall-clock totals, so load can't fail it.
    arrivals = sorted(dt.datetime.fromisoformat(str(request["time"])) for request in emu.requests)
    assert len(arrivals) == 3 and (arrivals[-1] - arrivals[0]).total_seconds() < 3.0


def test_it_serves_v1_as_well_as_v1beta(emu: GeminiEmulator) -> None:
    assert image_of(generate(emu, api_version="v1")).size == (1024, 1024)
    assert image_of(generate(emu, api_version="v1beta")).size == (1024, 1024)
    assert [r["api_version"] for r in emu.requests] == ["v1", "v1beta"]


def test_it_lists_and_gets_models(emu: GeminiEmulator) -> None:
    sdk = client(emu)
    assert {m.name for m in sdk.models.list()} >= {
        "models/gemini-3-pro-image",
        "models/gemini-3.1-flash-image",
    }
    assert sdk.models.get(model="gemini-3-pro-image").display_name == "Nano Banana Pro"
    invalid = client(emu, key="emu-invalid-a")
    with pytest.raises(errors.ClientError) as caught:
        invalid.models.list()
    assert caught.value.code == 400


def test_it_rejects_malformed_json(emu: GeminiEmulator) -> None:
    status, body = http(emu, "POST", "/v1beta/models/x:generateContent?key=abcd", b"{not json")
    assert (status, body["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert emu.requests[-1]["status"] == 400


def test_it_answers_unknown_paths_with_a_google_404(emu: GeminiEmulator) -> None:
    status, body = http(emu, "GET", "/v2/nothing")
    assert (status, body["error"]["code"], body["error"]["status"]) == (404, 404, "NOT_FOUND")


def idat(png: bytes) -> bytes:
    """The concatenated IDAT data of a PNG, every chunk's CRC checked."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    data, offset = b"", 8
    while offset < len(png):
        (length,) = struct.unpack(">I", png[offset : offset + 4])
        kind, body = png[offset + 4 : offset + 8], png[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", png[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        data += body if kind == b"IDAT" else b""
        offset += 12 + length
    return data


@pytest.mark.parametrize(("ratio", "size"), [("1:1", "1K"), ("16:9", "2K"), ("9:16", "512")])
def test_it_answers_complete_pngs_whose_every_line_shows_the_prompt(emu: GeminiEmulator, ratio: str, size: str) -> None:
    # Two prompts that wrap alike but differ only in their last words: the image must differ
    # down where those words are drawn, not just in the first line.
    words = "a lighthouse at dusk with waves crashing on the rocks and gulls overhead while a storm"
    images = []
    for ending in ("comes in", "goes out"):
        response = generate(emu, f"{words} {ending}", aspect_ratio=ratio, image_size=size)
        png = next(p.inline_data.data for p in response.parts or [] if p.inline_data and p.inline_data.data)
        width, height = image_of(response).size
        # zlib checks the stream's Adler-32; every row is there, each with its filter byte.
        assert len(zlib.decompress(idat(png))) == height * (width * 3 + 1)
        images.append(image_of(response).convert("RGB"))
    first, second = images
    differing_rows = [
        y
        for y in range(first.height)
        if first.crop((0, y, first.width, y + 1)).tobytes() != second.crop((0, y, second.width, y + 1)).tobytes()
    ]
    assert differing_rows and differing_rows[-1] > first.height // 8, differing_rows[-1:]

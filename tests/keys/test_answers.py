"""The one reader of Gemini's answers (keys.gemini.answers): bodies Google's servers really sent
(tests/keys/gemini_wire/, with SOURCES.md), and every shape the emulator can answer, read through
the real google-genai SDK over a real socket."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest
from google.genai import errors
from PIL import Image

from keys import pool
from keys.gemini import answers
from keys.gemini import client as gemini
from keys.gemini.emulator import GeminiEmulator
from keys.pool import Lease

WIRE = Path(__file__).parent / "gemini_wire"


def wire(name: str) -> Any:
    return json.loads((WIRE / name).read_text())


def sorted_wire(name: str) -> pool.GeminiError:
    return answers.sorted_error(errors.APIError(int(name[:3]), wire(name)))


# --- bodies Google sent -------------------------------------------------------------------------------


def test_a_png_labelled_jpeg_is_a_png_and_a_placeholder_signature_is_dropped() -> None:
    answer = answers.read((WIRE / "200-image-31flash-512-1.json").read_bytes())
    (image,) = answer.images
    assert (image.mime_type, image.width, image.height) == ("image/png", 1, 1)  # the bytes, not the label
    assert image.thought_signature == ""  # "<large string>" sent back would fail the next turn
    assert (answer.prompt_tokens, answer.output_tokens, answer.model_version) == (
        11,
        1135,
        "gemini-3.1-flash-image-preview",
    )


def test_image_safety_through_a_relay_is_a_refusal_with_googles_words_and_its_thinking_billed() -> None:
    with pytest.raises(pool.Refused) as refused:
        answers.read((WIRE / "200-imagesafety-3pro-1.json").read_bytes())
    assert refused.value.code == "image_safety"
    assert refused.value.refusal["finishReason"] == "IMAGE_SAFETY"
    assert refused.value.refusal["message"].startswith("Unable to show the generated image.")
    assert "Unable to show the generated image." in refused.value.message
    assert refused.value.usage == pool.CallUsage(0, 464, 0, 291)


@pytest.mark.parametrize(
    ("name", "kind", "words"),
    [
        ("400-apikey-invalid-1.json", pool.KeyRejected, "400 INVALID_ARGUMENT: API key not valid"),
        ("403-leaked-1.json", pool.KeyRejected, "Google reports this key as leaked: create a new key"),
        ("403-service-disabled-1.json", pool.KeyRejected, "not enabled in project 445009168042: enable it at https"),
        ("400-location-unsupported-1.json", pool.LocationRefused, "User location is not supported"),
        ("400-invalid-json-unknown-field-1.json", pool.RequestRejected, 'Unknown name "systemInstruction"'),
        ("400-thoughtsig-missing-image-1.json", pool.RequestRejected, "missing a thought_signature"),
        ("404-model-not-found-1.json", pool.RequestRejected, "models/gemini-pro is not found"),
        ("500-internal-1.json", pool.UpstreamUnavailable, "500 INTERNAL: An internal error"),
        ("503-overloaded-1.json", pool.UpstreamUnavailable, "The model is overloaded"),
        ("429-bare-resource-exhausted-1.json", pool.KeyExhausted, "Resource has been exhausted"),
    ],
)
def test_an_error_google_sent_means_what_it_says_for_the_key(name: str, kind: type, words: str) -> None:
    error = sorted_wire(name)
    assert type(error) is kind and words in str(error)


def test_a_429_with_a_limit_of_0_said_only_in_its_message_is_no_quota_for_the_model() -> None:
    error = sorted_wire("429-freetier-limit0-flashimage-1.json")
    assert isinstance(error, pool.KeyExhausted)
    assert (error.quota_id, error.limit) == ("GenerateRequestsPerDayPerProjectPerModel-FreeTier", 0)
    assert error.retry_after == dt.timedelta(seconds=35)
    assert pool.rest_for(error, dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC))[0] == "no_quota"


def test_a_per_minute_429_with_its_details_in_another_order_and_its_value_a_string() -> None:
    error = sorted_wire("429-paid-inputtokens-perminute-1.json")
    assert isinstance(error, pool.KeyExhausted)
    assert (error.quota_id, error.limit) == ("GenerateContentPaidTierInputTokensPerModelPerMinute", 2_000_000)
    assert error.retry_after == dt.timedelta(seconds=43)


def test_a_bare_429_rests_for_the_cooldown_and_an_error_list_reads_like_its_object() -> None:
    body = wire("429-paid-inputtokens-perminute-1.json")
    listed = answers.sorted_error(errors.APIError(429, [body, body]))  # google-genai unwraps only a list of one
    assert isinstance(listed, pool.KeyExhausted) and listed.quota_id.endswith("PerMinute")
    bare = sorted_wire("429-bare-resource-exhausted-1.json")
    assert isinstance(bare, pool.KeyExhausted) and pool.rest_for(bare, dt.datetime.now(dt.UTC))[0] == "unknown"


# --- every shape the emulator answers, through google-genai --------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Any:
    with GeminiEmulator() as running:
        yield running


def call(emulator: GeminiEmulator, prompt: str = "a fox", key: str = "emu-ok-0001") -> gemini.GeminiAnswer:
    gemini._connect.cache_clear()
    lease = Lease(key_id=1, masked="emu-…", base_url=emulator.url, secret=key)
    return gemini.generate(lease, "gemini-3.1-flash-image", [gemini.Turn("user", prompt)], gemini.Options())


@pytest.mark.parametrize("marker", ["[cutoff]", "[cutoff-odd]", "[garbage]", "[html]", "[empty]"])
def test_an_answer_that_cant_be_read_is_unreadable_not_a_crash(emulator: GeminiEmulator, marker: str) -> None:
    with pytest.raises(pool.UnreadableAnswer, match=r"could not be read|not JSON"):
        call(emulator, f"a fox {marker}")


@pytest.mark.parametrize("marker", ["[mime-wrong]", "[mime-missing]", "[list]", "[odd-fields]", "[chunks]"])
def test_an_image_in_an_odd_wrapping_is_still_the_image(emulator: GeminiEmulator, marker: str) -> None:
    answer = call(emulator, f"a fox {marker}")
    (image,) = answer.images
    assert image.mime_type == "image/png"
    assert Image.open(io.BytesIO(image.data)).size == (1024, 1024)
    assert base64.b64decode(image.base64) == image.data


def test_an_image_sent_as_a_data_uri_in_a_text_part_is_an_image_and_not_quoted_back(emulator: GeminiEmulator) -> None:
    answer = call(emulator, "a fox [datauri]")
    assert len(answer.images) == 1 and "base64" not in answer.text


def test_two_images_in_one_answer_are_both_kept_with_their_signatures(emulator: GeminiEmulator) -> None:
    answer = call(emulator, "a fox [two-images]")
    assert len(answer.images) == 2 and all(image.thought_signature for image in answer.images)
    assert answer.usage.images == 2


def test_a_signature_that_is_no_base64_is_dropped_and_one_on_the_image_is_kept(emulator: GeminiEmulator) -> None:
    assert call(emulator, "a fox [bad-signature]").images[0].thought_signature == ""
    kept = call(emulator, "a fox").images[0].thought_signature
    assert base64.b64decode(kept)  # the same bytes go back with the next turn


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("IMAGE_SAFETY", "image_safety"),
        ("IMAGE_PROHIBITED_CONTENT", "image_safety"),
        ("IMAGE_OTHER", "no_image"),
        ("NO_IMAGE", "no_image"),
        ("IMAGE_RECITATION", "no_image"),
        ("RECITATION", "no_image"),
        ("PROHIBITED_CONTENT", "blocked"),
        ("SPII", "blocked"),
        ("BLOCKLIST", "blocked"),
        ("SAFETY", "blocked"),
        ("MALFORMED_FUNCTION_CALL", "no_image"),
        ("OTHER", "no_image"),
    ],
)
def test_each_finish_reason_is_a_refusal_with_googles_reason_message_and_billed_thinking(
    emulator: GeminiEmulator, reason: str, code: str
) -> None:
    with pytest.raises(pool.Refused) as refused:
        call(emulator, f"a fox [finish:{reason}]")
    assert (refused.value.code, refused.value.refusal["finishReason"]) == (code, reason)
    assert refused.value.refusal["message"] and refused.value.refusal["message"] in refused.value.message
    assert refused.value.usage is not None and refused.value.usage.thinking_tokens == 120


def test_a_block_reason_is_a_blocked_prompt_with_googles_reason(emulator: GeminiEmulator) -> None:
    with pytest.raises(pool.Refused) as refused:
        call(emulator, "a fox [block:BLOCKLIST]")
    assert refused.value.code == "blocked" and refused.value.refusal["blockReason"] == "BLOCKLIST"
    assert "(BLOCKLIST)" in refused.value.message


@pytest.mark.parametrize(
    ("key", "kind", "words"),
    [
        ("emu-leaked-0001", pool.KeyRejected, "leaked"),
        ("emu-denied-0001", pool.KeyRejected, "CONSUMER_SUSPENDED"),
        ("emu-disabled-0001", pool.KeyRejected, "not enabled in project"),
        ("emu-location-0001", pool.LocationRefused, "User location is not supported"),
        ("emu-retired-0001", pool.ModelUnavailable, "no longer available to new users"),
        ("emu-503-0001", pool.UpstreamUnavailable, "overloaded"),
        ("emu-502html-0001", pool.UpstreamUnavailable, '"502 Bad Gateway" (not Gemini\'s answer'),
        ("emu-403html-0001", pool.UpstreamUnavailable, "Forbidden"),  # a proxy's 403 says nothing of the key
        ("emu-500empty-0001", pool.UpstreamUnavailable, "an empty body"),
        ("emu-429html-0001", pool.KeyExhausted, "429 from in front of Gemini"),
        ("emu-429list-0001", pool.KeyExhausted, "GenerateRequestsPerMinutePerProjectPerModel"),
        ("emu-429day-0001", pool.KeyExhausted, "GenerateRequestsPerDayPerProjectPerModel"),
        ("emu-limit0-0001", pool.KeyExhausted, "(limit 0)"),
    ],
)
def test_each_error_shape_is_sorted_for_the_pool(emulator: GeminiEmulator, key: str, kind: type, words: str) -> None:
    with pytest.raises(pool.GeminiError) as raised:
        call(emulator, key=key)
    assert type(raised.value) is kind and words in str(raised.value)


def test_a_quota_family_in_the_429_rests_the_model_that_was_asked_for(emulator: GeminiEmulator) -> None:
    with pytest.raises(pool.KeyExhausted) as raised:
        call(emulator, key="emu-429family-0001")  # Google names "gemini-3-pro" for a Flash call
    assert (raised.value.quota_id, raised.value.limit) == ("GenerateRequestsPerMinutePerProjectPerModel", 20)
    assert "gemini-3-pro" not in str(raised.value)  # nothing of the family reaches the rest

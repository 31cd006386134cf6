"""The chat page through Django's test client: sending, the pending turn, results, errors, ownership.

The page hands jobs to the cluster ("queue" mode); here the test plays the worker by running the
job with the real pipeline against the emulator, then looks at what the page shows.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client

from conversations import pipeline
from conversations.models import Conversation, Job
from gallery import storage
from gallery.models import Image
from tests.conftest import emulator_requests, jobs_settled, png_bytes

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def browser(client: Client, user: Any, settings: Any) -> Client:
    settings.CHAT_EXECUTION = "queue"
    client.force_login(user)
    return client


def send(browser: Client, prompt: str, **fields: Any) -> Any:
    return browser.post("/c/send", {"prompt": prompt, **fields}, headers=HTMX)


def test_it_requires_login_for_every_page(client: Client) -> None:
    for path in ("/", "/gallery", "/keys"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), path


def test_it_shows_the_prompt_box_with_only_the_pickers_values_the_model_supports(browser: Client, add_key: Any) -> None:
    add_key()
    page = browser.get("/").content.decode()
    assert 'id="prompt"' in page and 'name="aspect_ratio"' in page
    assert "Nano Banana Pro" in page and "Nano Banana 2" in page
    # The pickers are filled from this per-model table (Pro has no 512 and no 1:8).
    assert '"id": "gemini-3-pro-image"' in page and '"resolutions": ["1K", "2K", "4K"]' in page


def test_it_says_when_no_key_is_configured_and_links_to_the_keys_page(browser: Client) -> None:
    page = browser.get("/").content.decode()
    assert "No Gemini API key is configured." in page
    assert 'href="/keys"' in page


def test_it_shows_the_demo_banner_in_demo_mode(browser: Client, settings: Any) -> None:
    settings.DEMO_MODE = True
    assert "Images come from NanoClone's offline Gemini emulator" in browser.get("/").content.decode()


def test_it_answers_a_send_at_once_with_the_pending_turn(browser: Client, add_key: Any) -> None:
    add_key()
    response = send(browser, "a lighthouse at dusk")
    assert response.status_code == 200
    body = response.content.decode()
    job = Job.objects.get()
    assert job.source == "chat" and job.state == Job.State.PENDING
    # It asks for itself again with what it shows (long polling, not a poll every second).
    assert "a lighthouse at dusk" in body and f"/c/turns/{job.id}?after=pending.queued.0.1" in body
    assert "every 1s" not in body
    assert response["HX-Push-Url"] == f"/c/{job.conversation_id}"
    assert f'value="{job.conversation_id}"' in body  # the prompt box now continues this conversation


def test_it_shows_the_image_when_the_job_is_done(browser: Client, add_key: Any) -> None:
    add_key()
    send(browser, "a lighthouse at dusk", aspect_ratio="16:9")
    job = Job.objects.get()
    pipeline.run(job.id)
    fragment = browser.get(f"/c/turns/{job.id}").content.decode()
    image = Image.objects.get(job=job)
    assert "?after=" not in fragment  # asking again stops
    assert image.get_absolute_url() in fragment and 'alt="a lighthouse at dusk"' in fragment
    assert "Download" in fragment and "Use as reference" in fragment and "Reuse settings" in fragment
    assert (image.width, image.height) == (1376, 768)
    # The page shows the display rendition, made with the image: its first view waits for nothing.
    assert f'src="/files/{image.id}/display"' in fragment
    assert storage.exists(storage.display_of(image.file))


def test_it_continues_the_thread_by_editing_the_last_image(browser: Client, add_key: Any, emu: Any) -> None:
    add_key()
    send(browser, "a red bicycle")
    pipeline.run(Job.objects.get().id)
    conversation = Conversation.objects.get()
    send(browser, "make it blue", conversation_id=str(conversation.pk))
    pipeline.run(Job.objects.filter(state=Job.State.PENDING).get().id)
    sent = emulator_requests(emu)
    assert [r["inline_images"] for r in sent] == [0, 1]
    page = browser.get(f"/c/{conversation.pk}").content.decode()
    assert page.index("a red bicycle") < page.index("make it blue")
    assert Image.objects.filter(conversation=conversation, role="output").count() == 2


def test_it_sends_uploaded_and_gallery_reference_images(browser: Client, add_key: Any, emu: Any) -> None:
    add_key()
    send(browser, "first")
    pipeline.run(Job.objects.get().id)
    earlier = Image.objects.get(role="output")
    upload = _upload(png_bytes((80, 60)))
    send(browser, "combine these", images=[upload], reference_image_ids=[str(earlier.pk)])
    job = Job.objects.filter(state=Job.State.PENDING).get()
    assert Image.objects.filter(message=job.user_message, role="input").count() == 2
    pipeline.run(job.id)
    assert emulator_requests(emu)[-1]["inline_images"] == 2


def test_it_refuses_an_oversized_reference_with_a_clear_message(browser: Client, settings: Any) -> None:
    settings.MAX_IMAGE_BYTES = 1000
    response = send(browser, "x", images=[_upload(png_bytes((400, 400), fmt="BMP"))])
    assert response.status_code == 422
    assert "larger than" in response.content.decode()
    assert response["HX-Retarget"] == "#composer-error"
    assert not Job.objects.exists()


def test_it_refuses_an_empty_prompt(browser: Client) -> None:
    response = send(browser, "   ")
    assert response.status_code == 422 and "Prompt is required" in response.content.decode()


@pytest.mark.parametrize(
    ("prompt", "secret", "title", "action"),
    [
        # A prompt Gemini refused goes back in the box to be rephrased; sending it again would be refused again.
        ("a cat [block]", "emu-ok-0001", "Gemini refused this prompt", "data-rephrase"),
        ("a cat [imagesafety]", "emu-ok-0001", "Gemini withheld the image for safety", "data-rephrase"),
        ("a cat", "emu-invalid-0001", "No Gemini key can take this prompt", "/retry"),
    ],
)
def test_it_shows_failures_in_the_thread_with_retry_or_rephrase(
    browser: Client, add_key: Any, prompt: str, secret: str, title: str, action: str
) -> None:
    add_key(secret)
    send(browser, prompt)
    job = Job.objects.get()
    pipeline.run(job.id)
    fragment = browser.get(f"/c/turns/{job.id}").content.decode()
    assert title in fragment and 'role="alert"' in fragment
    assert action in fragment
    assert ("/retry" in fragment) == (action == "/retry")


def test_it_retries_a_failed_turn_in_the_same_conversation(browser: Client, add_key: Any) -> None:
    key = add_key("emu-invalid-0001")
    send(browser, "a fox")
    first = Job.objects.get()
    pipeline.run(first.id)
    key.delete()
    add_key("emu-ok-0002")
    response = browser.post(f"/c/turns/{first.id}/retry", headers=HTMX)
    assert response.status_code == 200
    retried = Job.objects.exclude(pk=first.pk).get()
    assert retried.conversation_id == first.conversation_id and retried.user_message.text == "a fox"
    finished = pipeline.run(retried.id)
    assert finished is not None and finished.state == Job.State.SUCCEEDED


def test_it_renames_and_deletes_a_conversation(
    browser: Client, add_key: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    add_key()
    send(browser, "a castle")
    job = Job.objects.get()
    pipeline.run(job.id)
    conversation = job.conversation
    browser.post(f"/c/{conversation.pk}/rename", {"title": "Castles"})
    assert "Castles" in browser.get("/").content.decode()
    image_file = Image.objects.get(role="output").file
    with django_capture_on_commit_callbacks(execute=True):  # the files go once the deletion commits
        assert browser.post(f"/c/{conversation.pk}/delete").status_code == 302
    assert not Conversation.objects.exists() and not Image.objects.exists()
    assert not (settings.MEDIA_ROOT / image_file).exists()


def test_it_shows_only_the_users_own_conversations(
    browser: Client, add_key: Any, other_user: Any, client: Client
) -> None:
    add_key()
    send(browser, "alice's secret garden")
    conversation = Conversation.objects.get()
    job = Job.objects.get()
    other = Client()
    other.force_login(other_user)
    assert "secret garden" not in other.get("/").content.decode()
    assert other.get(f"/c/{conversation.pk}").status_code == 404
    assert other.get(f"/c/turns/{job.id}").status_code == 404
    assert other.post(f"/c/{conversation.pk}/delete").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_it_runs_the_job_in_a_background_thread_in_thread_mode(
    client: Client, user: Any, add_key: Any, settings: Any, shared_memory_db_reads: None
) -> None:
    settings.CHAT_EXECUTION = "thread"
    add_key()
    client.force_login(user)
    assert send(client, "a quiet harbour").status_code == 200
    job = Job.objects.get()
    deadline = time.monotonic() + 20
    while Job.objects.get(pk=job.pk).state not in Job.FINISHED and time.monotonic() < deadline:
        time.sleep(0.1)
    assert Job.objects.get(pk=job.pk).state == Job.State.SUCCEEDED
    jobs_settled()


def _upload(data: bytes) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("reference.png", data, content_type="image/png")


def test_it_lists_conversations_from_api_clients_and_agents_apart_from_the_chats(browser: Client, user: Any) -> None:
    send(browser, "a castle from the chat")
    for source in ("gemini", "mcp"):
        pipeline.submit(pipeline.GenerationRequest(user=user, prompt=f"a lighthouse from {source}", source=source))
    chats = browser.get("/").content.decode()
    assert "a castle from the chat" in chats and "a lighthouse from" not in chats
    assert "From API clients and agents (2)" in chats
    others = browser.get("/?conversations=others").content.decode()
    assert "a lighthouse from gemini" in others and "a lighthouse from mcp" in others
    assert "a castle from the chat" not in others and "Back to your chats" in others


def test_it_sends_a_thinking_level_and_grounding_and_shows_the_sources(browser: Client, add_key: Any, emu: Any) -> None:
    add_key()
    page = browser.get("/").content.decode()
    assert 'id="thinking-picker"' in page and 'id="grounding"' in page
    choices = {
        m["id"]: m for m in json.loads(page.split('id="model-choices"')[1].split(">", 1)[1].split("</script>")[0])
    }
    assert choices["gemini-nano-banana-2.1"]["thinking_levels"] == ["minimal", "medium", "high"]
    assert choices["gemini-3.1-flash-lite-image"]["grounding"] is False  # the picker hides it there
    send(browser, "the tallest tower in Paris", thinking_level="high", grounding="1")
    job = Job.objects.get()
    assert (job.thinking_level, job.grounding) == ("high", True)
    pipeline.run(job.id)
    assert list(emulator_requests(emu)[-1]["generation_config"]["thinkingConfig"].values()) == ["HIGH"]
    answer = browser.get(f"/c/turns/{job.id}").content.decode()
    assert "Sources from Google Search" in answer and "https://example.org/the-tallest-tower-in-paris" in answer
    again = browser.get(f"/c/{job.conversation_id}").content.decode()
    assert 'name="thinking_level" value="high" checked' in again  # the next turn keeps the settings


def test_it_sends_a_count_of_images_and_refuses_one_out_of_range(browser: Client, add_key: Any, emu: Any) -> None:
    add_key()
    assert send(browser, "four foxes", num_images="4").status_code == 200
    job = Job.objects.get()
    assert job.num_images == 4
    pipeline.run(job.id)
    assert len(emulator_requests(emu)) == 4
    fragment = browser.get(f"/c/turns/{job.id}").content.decode()
    assert 'class="results count-4"' in fragment and fragment.count('class="result"') == 4
    for count, message in (("5", "between 1 and 4"), ("0", "between 1 and 4"), ("two", "whole number")):
        refused = send(browser, "too many foxes", num_images=count)
        assert refused.status_code == 422 and message in refused.content.decode()
    assert Job.objects.count() == 1
    page = browser.get(f"/c/{job.conversation_id}").content.decode()
    assert 'name="num_images" value="4" checked' in page  # the next send keeps the count


def test_a_pending_turn_is_answered_at_once_when_it_has_moved_and_held_while_it_has_not(
    browser: Client, add_key: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nanoclone.pages import chat as chat_page

    monkeypatch.setattr(chat_page, "LONG_POLL_SECONDS", 0.5)
    add_key()
    send(browser, "a lighthouse")
    job = Job.objects.get()
    started = time.monotonic()
    held = browser.get(f"/c/turns/{job.id}?after=pending.queued.0.1").content.decode()
    assert time.monotonic() - started >= 0.5  # nothing moved: held for the whole wait
    assert "?after=pending.queued.0.1" in held
    pipeline.run(job.id)
    started = time.monotonic()
    news = browser.get(f"/c/turns/{job.id}?after=pending.queued.0.1").content.decode()
    assert time.monotonic() - started < 0.5 and "?after=" not in news
    assert Image.objects.get(job=job).get_absolute_url() in news


def test_it_regenerates_a_turn_as_a_new_one_with_the_same_settings(browser: Client, add_key: Any, emu: Any) -> None:
    add_key()
    send(browser, "a red bicycle", aspect_ratio="16:9", num_images="2")
    first = Job.objects.get()
    pipeline.run(first.id)
    answer = browser.get(f"/c/turns/{first.id}").content.decode()
    assert f"/c/turns/{first.id}/retry" in answer and "Regenerate" in answer
    response = browser.post(f"/c/turns/{first.id}/retry", headers=HTMX)
    assert response.status_code == 200 and "empty-state" not in response.content.decode()
    again = Job.objects.exclude(pk=first.pk).get()
    assert (again.conversation_id, again.user_message.text) == (first.conversation_id, "a red bicycle")
    assert (again.aspect_ratio, again.num_images) == ("16:9", 2)
    pipeline.run(again.id)
    # New images for the prompt, not an edit of the first turn's: Gemini gets no earlier image.
    assert [(r["turns"], r["inline_images"]) for r in emulator_requests(emu)] == [(1, 0)] * 4


def test_it_cancels_a_pending_turn(browser: Client, add_key: Any) -> None:
    add_key()
    send(browser, "a slow castle")
    job = Job.objects.get()
    assert browser.post(f"/c/turns/{job.id}/cancel", headers=HTMX).status_code == 204
    assert Job.objects.get().state == Job.State.CANCELLED
    news = browser.get(f"/c/turns/{job.id}?after=pending.queued.0.1").content.decode()
    assert "Cancelled before it started." in news and "?after=" not in news
    assert pipeline.run(job.id).state == Job.State.CANCELLED  # type: ignore[union-attr]  # a worker leaves it


def test_the_first_send_retitles_the_tab_and_only_it_removes_the_empty_state(browser: Client, add_key: Any) -> None:
    add_key()
    first = send(browser, "a harbour at night").content.decode()
    assert "<title>a harbour at night · NanoClone</title>" in first and 'id="empty-state"' in first
    conversation = Conversation.objects.get()
    later = send(browser, "with fireworks", conversation_id=str(conversation.pk)).content.decode()
    assert "<title>a harbour at night · NanoClone</title>" in later
    assert 'id="empty-state"' not in later  # there is none any more: htmx would log oobErrorNoTarget

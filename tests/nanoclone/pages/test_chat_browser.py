"""The chat in a real browser, at desktop and phone sizes, with no console error: what a person who
makes images every day relies on (issue 13: refused sends, the tab title, the pickers, Rephrase,
counts and Regenerate, Cancel, display renditions, live progress)."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from typing import Any

import PIL.Image
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from conversations.models import Job
from gallery.models import Image
from tests.conftest import emulator_requests, jobs_settled, png_bytes
from tests.nanoclone.pages.test_browser import DESKTOP, PHONE, TIMEOUT_MS, chromium, pick, picked, site  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": DESKTOP},
    "phone": {"viewport": PHONE, "device_scale_factor": 2, "is_mobile": True, "has_touch": True},
}


@pytest.fixture(params=list(SIZES))
def tab(request: Any, chromium: Any, site: str, user: Any, add_key: Any) -> Iterator[Any]:  # noqa: F811
    """A signed-in chat page at desktop or phone size (a key in the pool); its console errors in
    tab.console_errors."""
    add_key()
    context = chromium.new_context(base_url=site, **SIZES[request.param])
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pw-alice-123")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/$"))
    yield page
    context.close()


REFUSED = "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"


def send(tab: Any, prompt: str) -> None:
    tab.get_by_label("Prompt").fill(prompt)
    tab.get_by_label("Prompt").press("Enter")


def shown(tab: Any, count: int) -> None:
    """Wait until `count` result images are in the thread and decoded."""
    try:
        tab.wait_for_function(
            "n => { const all = document.querySelectorAll('.result img');"
            " return all.length === n && Array.from(all).every(i => i.complete && i.naturalWidth > 0); }",
            arg=count,
        )
    except PlaywrightTimeout:  # say what the page showed instead
        seen = tab.evaluate(
            "Array.from(document.querySelectorAll('.result img'), i =>"
            " [i.currentSrc || i.src, i.complete, i.naturalWidth, Math.round(i.getBoundingClientRect().top)])"
        )
        turns = tab.evaluate(
            "Array.from(document.querySelectorAll('.msg-model'), m => [m.dataset.state, m.innerText.slice(0, 200)])"
        )
        raise AssertionError(
            f"{count} images not shown; images {seen}; turns {turns}; console {getattr(tab, 'console_errors', None)}"
        ) from None


def gif_bytes() -> bytes:
    out = io.BytesIO()
    PIL.Image.new("RGB", (120, 80), (20, 120, 200)).save(out, "GIF")
    return out.getvalue()


def test_a_refused_send_keeps_the_prompt_and_the_references(tab: Any) -> None:
    # A GIF named .png: the browser shows it, the server takes only PNG, JPEG and WEBP.
    tab.locator("#images").set_input_files(files=[{"name": "old.png", "mimeType": "image/png", "buffer": gif_bytes()}])
    tab.locator("#ref-preview li").wait_for()
    send(tab, "A postcard of this")
    error = tab.locator("#composer-error")
    error.get_by_text("Unsupported image format GIF").wait_for()
    assert "old.png" in error.inner_text() and "images[0]" not in error.inner_text()  # the file, in the user's words
    assert tab.get_by_label("Prompt").input_value() == "A postcard of this"
    assert tab.locator("#ref-preview li").count() == 1
    assert tab.evaluate("document.getElementById('images').files.length") == 1
    assert tab.get_by_label("Prompt").get_attribute("placeholder") == "Describe an image…"  # still a new chat
    assert not Job.objects.exists()
    tab.get_by_role("button", name="Remove old.png").click()
    tab.get_by_label("Prompt").press("Enter")
    shown(tab, 1)
    assert tab.get_by_label("Prompt").input_value() == ""
    # The one line is Chromium's own note of the 422 (the right status for a refused send).
    assert tab.console_errors == [REFUSED], tab.console_errors


def test_the_tab_title_follows_the_conversation_from_the_first_send(tab: Any) -> None:
    assert tab.title() == "New chat · NanoClone"
    send(tab, "A lighthouse at dusk")
    tab.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}$"))
    shown(tab, 1)
    assert tab.title() == "A lighthouse at dusk · NanoClone"
    jobs_settled()
    send(tab, "Now add a full moon")  # no empty state left to remove: htmx logs no oobErrorNoTarget
    shown(tab, 2)
    assert tab.title() == "A lighthouse at dusk · NanoClone"
    assert tab.console_errors == [], tab.console_errors


def test_the_model_picker_names_each_model_and_says_what_a_switch_reset(tab: Any) -> None:
    tab.locator("#model-chip").click()
    # Every model's whole name shows (cut short, they all read "Nano Banana").
    labels = tab.locator("#model-picker label")
    assert [label.strip() for label in labels.all_inner_texts()] == [
        "Nano Banana 2.1",
        "Nano Banana 2",
        "Nano Banana Pro",
        "Nano Banana 2 Lite",
    ]
    assert labels.evaluate_all("els => els.every(e => e.scrollWidth <= e.clientWidth)")
    tab.keyboard.press("Escape")
    pick(tab, "Model", "Nano Banana 2")
    pick(tab, "Aspect ratio", "1:8")
    pick(tab, "Resolution", "512")
    note = tab.locator("#picker-note")
    assert note.is_hidden()
    assert tab.locator("#format-summary").inner_text() == "1:8 · 512"  # the chip says what is chosen
    pick(tab, "Model", "Nano Banana Pro")
    assert note.inner_text() == "Nano Banana Pro has no aspect ratio 1:8, size 512: reset to the default."
    assert picked(tab, "aspect_ratio") == "" and picked(tab, "resolution") == ""
    pick(tab, "Model", "Nano Banana 2.1")
    assert note.is_hidden()  # nothing was reset this time
    assert tab.console_errors == [], tab.console_errors


def test_rephrase_puts_a_blocked_prompt_back_in_the_box_instead_of_resending_it(tab: Any, emu: Any) -> None:
    tab.locator("#images").set_input_files(files=[{"name": "ref.png", "mimeType": "image/png", "buffer": png_bytes()}])
    pick(tab, "Aspect ratio", "16:9")
    send(tab, "something forbidden [block]")
    tab.locator(".turn-error-title", has_text="Gemini refused this prompt").wait_for()
    jobs_settled()
    assert tab.locator(".turn-error").get_by_role("button", name="Retry").count() == 0
    tab.get_by_role("button", name="Rephrase").click()
    assert tab.get_by_label("Prompt").input_value() == "something forbidden [block]"
    assert picked(tab, "aspect_ratio") == "16:9"
    expect(tab.locator("#ref-preview li")).to_have_count(1)  # the reference came back too
    tab.wait_for_timeout(300)
    assert Job.objects.count() == 1 and len(emulator_requests(emu)) == 1  # nothing was sent again
    tab.get_by_label("Prompt").fill("something allowed")
    tab.get_by_label("Prompt").press("Enter")
    shown(tab, 1)
    assert emulator_requests(emu)[-1]["inline_images"] == 1
    assert tab.console_errors == [], tab.console_errors


def test_four_images_a_send_show_as_a_grid_and_regenerate_makes_four_new_ones(tab: Any, emu: Any) -> None:
    pick(tab, "Count", "4 images")
    pick(tab, "Aspect ratio", "1:1")
    send(tab, "A red fox in snow")
    shown(tab, 4)
    boxes = [image.bounding_box() for image in tab.locator(".result img").all()]
    assert len({round(box["x"]) for box in boxes}) == 2 and len({round(box["y"]) for box in boxes}) == 2  # 2 x 2
    jobs_settled()
    # Each image's actions fold into a menu that opens within the page, even in the right column.
    tab.get_by_label("Actions for image 2").click()
    download = tab.locator(".result-menu:popover-open").get_by_role("link", name="Download")
    box, width = download.bounding_box(), tab.viewport_size["width"]
    assert download.is_visible() and box["x"] >= 0 and box["x"] + box["width"] <= width
    tab.keyboard.press("Escape")
    tab.get_by_role("button", name="Regenerate").click()
    shown(tab, 8)
    assert tab.locator(".turn").count() == 2
    assert tab.locator(".turn").nth(1).locator(".prompt-text").inner_text() == "A red fox in snow"
    # Eight new images of the prompt: no call edits an earlier image.
    assert [(r["turns"], r["inline_images"]) for r in emulator_requests(emu)] == [(1, 0)] * 8
    assert picked(tab, "num_images") == "4"
    assert tab.console_errors == [], tab.console_errors


def test_cancel_stops_a_generation_that_has_not_finished(tab: Any, emu: Any) -> None:
    emu.latency_ms = 4000
    send(tab, "A slow castle")
    tab.locator(".pending").wait_for()
    tab.get_by_role("button", name="Cancel").click()
    tab.locator(".turn-cancelled").wait_for()
    assert "Cancelled" in tab.locator(".turn-cancelled").inner_text()
    assert Job.objects.get().state == Job.State.CANCELLED
    jobs_settled()  # the run hears of it when Gemini answers, and stops
    assert tab.locator(".result img").count() == 0 and not Image.objects.exists()
    assert Job.objects.get().state == Job.State.CANCELLED
    assert tab.locator(".turn-cancelled").get_by_role("button", name="Retry").is_visible()
    assert tab.console_errors == [], tab.console_errors


def test_the_chat_shows_a_display_rendition_and_opens_the_original(tab: Any) -> None:
    pick(tab, "Aspect ratio", "1:1")
    pick(tab, "Resolution", "2K")
    send(tab, "A harbour at dawn")
    shown(tab, 1)
    image = Image.objects.get(role="output")
    assert (image.width, image.height) == (2048, 2048)
    shown_image = tab.locator(".result img")
    assert shown_image.get_attribute("src") == f"/files/{image.id}/display"
    assert tab.evaluate("i => [i.naturalWidth, i.naturalHeight]", shown_image.element_handle()) == [1536, 1536]
    link = tab.locator(".result-open")
    assert link.get_attribute("href") == image.get_absolute_url()
    assert (link.get_attribute("data-image-id"), link.get_attribute("data-conversation-id")) == (
        str(image.id),
        str(image.conversation_id),
    )
    jobs_settled()
    if tab.locator(".result-actions").get_by_role("link", name="Download").is_visible():
        with tab.expect_download() as download:
            tab.locator(".result-actions").get_by_role("link", name="Download").click()
        assert download.value.suggested_filename == f"nanoclone-{image.id}.png"
    assert tab.console_errors == [], tab.console_errors


def test_a_pending_turn_waits_on_the_server_instead_of_polling_every_second(tab: Any, emu: Any) -> None:
    emu.latency_ms = 3000
    asked: list[tuple[float, float]] = []
    started: dict[Any, float] = {}

    def begun(request: Any) -> None:
        if "/c/turns/" in request.url:
            started[request] = time.monotonic()

    def ended(request: Any) -> None:
        if request in started:
            asked.append((started[request], time.monotonic()))

    tab.on("request", begun)
    tab.on("requestfinished", ended)
    send(tab, "A lighthouse, slowly")
    shown(tab, 1)
    tab.wait_for_load_state("networkidle")
    # While Gemini works (3 s), one request is held open by the server; a poll a second would
    # have sent three or more short ones.
    assert max(end - begin for begin, end in asked) > 2, asked
    assert len(asked) <= 5, asked
    assert tab.console_errors == [], tab.console_errors

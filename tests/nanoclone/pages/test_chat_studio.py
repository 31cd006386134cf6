"""The chat as a studio, at desktop and phone sizes (issue 34): a live clock on a pending image, images
that fit the pane, a compact prompt box, ••• menus that close, remembered choices, edit-or-new, the
prompt's length, damaged attachments refused, and failure cards that say it once."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from conversations.models import Job
from tests.conftest import emulator_requests, jobs_settled, png_bytes
from tests.nanoclone.pages.test_browser import chromium, pick, picked, site  # noqa: F401
from tests.nanoclone.pages.test_chat_browser import send, shown, tab  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def box(page: Any, selector: str) -> dict[str, float]:
    return dict(page.locator(selector).last.bounding_box())


def test_a_pending_image_shows_its_phase_a_running_clock_and_a_moving_bar(tab: Any, emu: Any) -> None:  # noqa: F811
    emu.latency_ms = 6000
    send(tab, "A slow lighthouse")
    pending = tab.locator(".pending")
    pending.wait_for()
    label = pending.locator(".pending-label")
    label.get_by_text("Generating").wait_for()
    start = float(pending.locator("progress").get_attribute("value") or 0)
    tab.wait_for_function("() => /^[3-9] s$/.test(document.querySelector('.pending .elapsed').textContent)")
    assert float(pending.locator("progress").evaluate("p => p.value")) > start  # moved during the one call
    shown(tab, 1)
    assert tab.console_errors == [], tab.console_errors


def test_an_image_fits_the_thread_pane_and_the_end_shows_it_whole(tab: Any) -> None:  # noqa: F811
    pick(tab, "Aspect ratio", "9:16")
    send(tab, "A tall tower")
    shown(tab, 1)
    tab.locator(".turn-footer").wait_for()
    tab.wait_for_function(
        "() => { const t = document.getElementById('thread');"
        " return t.scrollHeight - t.scrollTop - t.clientHeight < 2; }"
    )
    pane, image, footer = box(tab, "#thread"), box(tab, ".result img"), box(tab, ".turn-footer")
    assert image["height"] < pane["height"]
    assert pane["y"] <= image["y"] and footer["y"] + footer["height"] <= pane["y"] + pane["height"] + 1
    assert tab.console_errors == [], tab.console_errors


def test_the_prompt_box_is_compact_and_its_choices_open_in_popovers(tab: Any) -> None:  # noqa: F811
    height = box(tab, "#composer")["height"]
    room = tab.viewport_size["height"]
    assert height <= (130 if tab.viewport_size["width"] > 760 else room * 0.2), height
    pick(tab, "Aspect ratio", "16:9")
    assert tab.locator("#format-summary").inner_text().startswith("16:9")
    tab.locator("#format-chip").click()
    assert tab.locator("#format-pop").is_visible()
    tab.mouse.click(5, room // 2)  # outside it
    assert tab.locator("#format-pop").is_hidden()
    assert tab.console_errors == [], tab.console_errors


def test_one_image_menu_at_a_time_closing_on_a_click_outside_or_escape(tab: Any) -> None:  # noqa: F811
    pick(tab, "Count", "2 images")
    send(tab, "Two foxes")
    shown(tab, 2)
    # Images show as they are stored; the finished answer swaps in after them (and would close a menu).
    tab.locator('.msg-model[data-state="succeeded"]').wait_for()
    opened = tab.locator(".result-menu:popover-open")
    # expect() looks again until it holds (up to 5 s): a loaded machine may take a moment to paint.
    tab.get_by_label("Actions for image 1").click()
    expect(opened).to_have_count(1)
    tab.get_by_label("Actions for image 2").click()
    expect(opened).to_have_count(1)
    expect(opened.get_by_role("link", name="Download")).to_be_visible()
    tab.locator(".prompt-text").click()  # outside the menu
    expect(opened).to_have_count(0)
    tab.get_by_label("Actions for image 1").click()
    tab.keyboard.press("Escape")
    expect(opened).to_have_count(0)
    assert tab.console_errors == [], tab.console_errors


def test_a_new_chat_starts_with_the_last_choices_or_the_settings_pages(tab: Any) -> None:  # noqa: F811
    pick(tab, "Model", "Nano Banana Pro")
    pick(tab, "Aspect ratio", "4:3")
    pick(tab, "Resolution", "2K")
    send(tab, "A castle")
    shown(tab, 1)
    jobs_settled()
    if tab.locator(".sidebar-toggle").is_visible():  # a phone: the conversations are in a drawer
        tab.locator(".sidebar-toggle").click()
    tab.get_by_role("link", name="New chat").click()
    tab.wait_for_url("**/")
    assert (picked(tab, "model"), picked(tab, "aspect_ratio"), picked(tab, "resolution")) == (
        "gemini-3-pro-image",
        "4:3",
        "2K",
    )
    assert "Pro" in tab.locator("#model-summary").inner_text()
    # The settings page can hold defaults of its own instead.
    tab.goto("/settings")
    tab.get_by_label("these settings:").check()
    tab.get_by_label("Model").select_option(label="Nano Banana 2")
    tab.get_by_label("Aspect ratio").select_option("16:9")
    tab.get_by_label("Resolution").select_option("512")
    tab.get_by_role("button", name="Save").click()
    tab.get_by_text("Saved: new chats start with these settings.").wait_for()
    tab.goto("/")
    assert (picked(tab, "model"), picked(tab, "aspect_ratio"), picked(tab, "resolution")) == (
        "gemini-3.1-flash-image",
        "16:9",
        "512",
    )
    # A choice the model lacks is refused, in words.
    tab.goto("/settings")
    tab.get_by_label("Model").select_option(label="Nano Banana Pro")
    tab.get_by_role("button", name="Save").click()
    tab.get_by_text("Nano Banana Pro has no size 512").wait_for()
    assert tab.get_by_label("Resolution").input_value() == "512"  # the form as it was sent
    assert [error for error in tab.console_errors if "422" not in error] == [], tab.console_errors


def test_a_prompt_edits_the_last_image_or_makes_a_new_one_as_chosen(tab: Any, emu: Any) -> None:  # noqa: F811
    prompt = tab.get_by_label("Prompt")
    assert prompt.get_attribute("placeholder") == "Describe an image…"
    assert tab.locator("#mode").is_hidden()  # nothing to edit yet
    send(tab, "A red apple")
    shown(tab, 1)
    edit = tab.get_by_role("radio", name="Edit last image")
    tab.locator("#mode").wait_for()
    assert edit.is_checked() and prompt.get_attribute("placeholder") == "Describe a change to the last image…"
    tab.locator("label[for=mode-new]").click()
    assert prompt.get_attribute("placeholder") == "Describe a new image…"
    send(tab, "A blue boat")
    shown(tab, 2)
    assert "new image" in tab.locator(".turn-settings").last.inner_text()
    tab.locator("label[for=mode-edit]").click()
    send(tab, "Make it night")
    shown(tab, 3)
    jobs_settled()
    # The new image's call carried no earlier turn or image; the edit's carried the conversation.
    calls = emulator_requests(emu)
    assert [(call["turns"], call["inline_images"]) for call in calls][:2] == [(1, 0), (1, 0)]
    assert calls[2]["turns"] > 1 and calls[2]["inline_images"] >= 1
    assert tab.console_errors == [], tab.console_errors


def test_a_prompt_over_the_limit_shows_a_counter_and_is_not_cut(tab: Any, settings: Any) -> None:  # noqa: F811
    limit = settings.MAX_PROMPT_CHARS
    counter = tab.locator("#prompt-count")
    assert counter.is_hidden()
    long = "a fox in the snow " * (limit // 18 + 10)
    tab.get_by_label("Prompt").fill(long)
    assert counter.is_visible() and counter.inner_text() == f"{len(long.strip()):,} / {limit:,}"
    tab.get_by_label("Prompt").press("Enter")
    tab.locator("#composer-error").get_by_text(f"the limit is {limit:,}").wait_for()
    assert tab.get_by_label("Prompt").input_value() == long  # nothing cut
    assert not Job.objects.exists()
    assert tab.console_errors == [], tab.console_errors


def test_a_damaged_image_is_refused_when_attached_in_the_users_words(tab: Any) -> None:  # noqa: F811
    broken = png_bytes((120, 80))[:60]  # a PNG's first bytes
    tab.locator("#images").set_input_files(files=[{"name": "holiday.png", "mimeType": "image/png", "buffer": broken}])
    error = tab.locator("#composer-error")
    error.get_by_text("holiday.png can't be opened as an image").wait_for()
    assert tab.locator("#ref-preview li").count() == 0
    assert tab.evaluate("document.getElementById('images').files.length") == 0
    assert tab.console_errors == [], tab.console_errors


def test_a_failure_card_says_it_once_without_codes(tab: Any) -> None:  # noqa: F811
    send(tab, "A cat [imagesafety]")
    card = tab.locator(".turn-error")
    card.wait_for()
    text = card.inner_text()
    assert "Gemini withheld the image for safety" in text
    assert "IMAGE_SAFETY" not in text and text.lower().count("safety") == 1, text
    assert tab.console_errors == [], tab.console_errors


def test_every_choice_shows_whole_in_its_popover(tab: Any) -> None:  # noqa: F811
    width = tab.viewport_size["width"]
    for chip, pop in (("#model-chip", "#model-pop"), ("#format-chip", "#format-pop")):
        tab.locator(chip).click()
        options = tab.locator(pop).locator(".option").locator("visible=true")
        assert options.count() > 3
        assert options.evaluate_all("els => els.every(e => e.scrollWidth <= e.clientWidth)")
        for box in [option.bounding_box() for option in options.all()]:
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
        tab.keyboard.press("Escape")
    tab.locator("#model-chip").click()
    assert tab.get_by_role("radio", name="Default").first.is_visible()  # "Default" thinking, whole
    assert tab.console_errors == [], tab.console_errors

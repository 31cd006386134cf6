"""The shared viewer in a real browser: the chat's images open in the gallery's viewer (step, zoom,
compare), lineage in it, Continue editing and Share from the gallery."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from gallery.models import Image
from tests.nanoclone.pages.test_browser import PHONE, chromium, generate, page, phone_twin, site  # noqa: F401
from tests.nanoclone.pages.test_chat_browser import tab  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def thread(user: Any, *prompts: str) -> list[Any]:
    """A chat conversation with one turn (and image) per prompt; each edits the one before."""
    jobs = [generate(user, prompts[0], aspect_ratio="1:1")]
    for prompt in prompts[1:]:
        jobs.append(generate(user, prompt, conversation_id=str(jobs[0].conversation_id)))
    return jobs


def wait_prompt(window: Any, prompt: str) -> None:
    window.locator("#lightbox .lightbox-prompt", has_text=re.compile(f"^{re.escape(prompt)}$")).wait_for()


def test_chat_images_open_in_the_viewer_which_steps_zooms_and_compares(page: Any, add_key: Any, user: Any) -> None:  # noqa: F811
    add_key()
    jobs = thread(user, "a lighthouse", "at night", "with a moon")
    page.goto(f"/c/{jobs[0].conversation_id}")
    page.locator(".result-open").nth(1).click()
    wait_prompt(page, "at night")
    assert page.url.endswith(str(jobs[0].conversation_id))  # the viewer, not a new tab or page
    page.keyboard.press("ArrowRight")
    wait_prompt(page, "with a moon")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    wait_prompt(page, "a lighthouse")

    page.keyboard.press("z")
    zoomed(page)
    assert page.get_by_role("button", name="Zoom (Z)").get_attribute("aria-pressed") == "true"
    image = page.locator("#lightbox .lightbox-image img")
    assert image.bounding_box()["width"] == 1024  # the original's pixels, scrollable
    page.keyboard.press("z")
    assert image.bounding_box()["width"] < 1024

    page.get_by_role("button", name="Compare").click()  # pins "a lighthouse"
    page.keyboard.press("ArrowRight")
    wait_prompt(page, "at night")
    pinned = page.locator("#viewer-pinned img")
    pinned.wait_for()  # drawn once the details have settled
    assert pinned.get_attribute("alt") == "Pinned: a lighthouse"
    assert pinned.bounding_box()["x"] + pinned.bounding_box()["width"] <= image.bounding_box()["x"]  # side by side
    page.get_by_role("button", name="Stop comparing").click()
    assert page.locator("#viewer-pinned").is_hidden()
    page.keyboard.press("Escape")
    assert page.locator("#lightbox").is_hidden()


def test_on_a_phone_the_viewer_fills_the_screen_and_stacks_a_comparison(page: Any, add_key: Any, user: Any) -> None:  # noqa: F811
    add_key()
    jobs = thread(user, "a fox", "in the snow")
    page.goto(f"/c/{jobs[0].conversation_id}")
    small = phone_twin(page)
    try:
        small.locator(".result-open").first.click()
        wait_prompt(small, "a fox")
        box = small.locator("#lightbox").bounding_box()
        assert box["width"] == PHONE["width"]
        small.get_by_role("button", name="Compare").click()
        small.get_by_role("button", name="Next image").click()
        wait_prompt(small, "in the snow")
        small.wait_for_function(  # both decoded (the next image may still be loading)
            "Array.from(document.querySelectorAll('#viewer-pinned img, #lightbox .lightbox-image img'))"
            ".filter(i => i.complete && i.naturalWidth > 0).length === 2"
        )
        pinned = small.locator("#viewer-pinned img").bounding_box()
        current = small.locator("#lightbox .lightbox-image img").bounding_box()
        assert pinned["y"] + pinned["height"] <= current["y"]  # one above the other
    finally:
        small.context.close()


def test_the_viewer_shows_lineage_both_ways(page: Any, add_key: Any, user: Any) -> None:  # noqa: F811
    add_key()
    jobs = thread(user, "a lighthouse", "at night", "with a moon")
    page.goto("/gallery")
    page.locator(".tile-link").nth(1).click()  # newest first: "at night"
    wait_prompt(page, "at night")
    lineage = page.locator("#lightbox .lineage")
    assert lineage.get_by_role("heading", name="Edited from").is_visible()
    assert lineage.get_by_role("img", name="a lighthouse").is_visible()
    assert lineage.get_by_role("img", name="with a moon").is_visible()  # under "Edits"
    lineage.get_by_role("link", name="a lighthouse").click()
    wait_prompt(page, "a lighthouse")
    assert page.locator("#lightbox .lineage").get_by_role("heading", name="Edits").is_visible()
    assert jobs


def test_continue_editing_opens_the_conversation_or_starts_one_from_the_image(
    page: Any,  # noqa: F811
    add_key: Any,
    user: Any,
) -> None:
    add_key()
    jobs = thread(user, "a lighthouse", "at night")
    older = Image.objects.get(job=jobs[0])
    page.goto("/gallery")
    page.locator(".tile-link").first.click()  # the newest: its conversation continues it
    wait_prompt(page, "at night")
    page.get_by_role("link", name="Continue editing").click()
    page.wait_for_url(re.compile(f"/c/{jobs[0].conversation_id}$"))

    page.goto("/gallery")
    page.locator(".tile-link").nth(1).click()  # an older one: a new chat from it
    wait_prompt(page, "a lighthouse")
    page.get_by_role("link", name="Continue editing").click()
    page.wait_for_url(re.compile(r"/\?reference="))
    expect(page.locator("#ref-preview li")).to_have_count(1)
    page.get_by_label("Prompt").fill("the lighthouse in spring")
    page.get_by_label("Prompt").press("Enter")
    page.locator(".result img").first.wait_for()
    made = Image.objects.get(prompt="the lighthouse in spring", role="output")
    assert made.edited_from == older and made.conversation_id != older.conversation_id


def test_share_copies_a_signed_link_that_works_without_login(page: Any, add_key: Any, user: Any) -> None:  # noqa: F811
    add_key()
    generate(user, "a shared fox")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto("/gallery")
    page.locator(".tile-link").first.click()
    wait_prompt(page, "a shared fox")
    page.get_by_role("button", name="Share").click()
    page.get_by_role("button", name="Link copied ✓").wait_for()
    link = page.evaluate("navigator.clipboard.readText()")
    answer = requests.get(link, timeout=10)  # no session, no token
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "image/png"
    assert requests.get(link.replace("sig=", "sig=x"), timeout=10).status_code in (401, 403, 404)
    page.goto(f"/gallery/{Image.objects.get(prompt='a shared fox', role='output').pk}")  # its own page
    page.get_by_role("button", name="Share").click()
    page.get_by_role("button", name="Link copied ✓").wait_for()
    assert page.get_by_role("button", name="Compare").is_hidden()  # no viewer to compare in


# --- issue 34: the original's pixels, wheel, drag and pinch; a comparison at one size; the phone ---


def opened(window: Any, user: Any, **fields: Any) -> Any:
    """The viewer open on a new image made with `fields` (from the gallery); the image's locator."""
    generate(user, "a harbour", **fields)
    window.goto("/gallery")
    window.locator(".tile-link").first.click()
    wait_prompt(window, "a harbour")
    image = window.locator("#lightbox .lightbox-image img")
    window.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=image.element_handle())
    return image


def centre(box: dict[str, float]) -> tuple[float, float]:
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def zoomed(window: Any) -> None:
    window.wait_for_function("document.getElementById('lightbox').classList.contains('zoomed')")


def test_zoom_shows_the_originals_pixels_and_the_wheel_and_a_drag_move_it(tab: Any, user: Any) -> None:  # noqa: F811
    image = opened(tab, user, aspect_ratio="1:1", resolution="2K")
    original = Image.objects.get(role="output")
    fitted = image.bounding_box()
    tab.get_by_role("button", name="Zoom (Z)").click()
    zoomed(tab)
    assert image.get_attribute("src") == original.get_absolute_url()  # the original, not the display copy
    assert image.evaluate("i => i.naturalWidth") == 2048
    assert round(image.bounding_box()["width"]) == 2048  # one pixel of it per CSS pixel
    tab.get_by_role("button", name="Zoom (Z)").click()
    assert round(image.bounding_box()["width"]) == round(fitted["width"])
    if tab.viewport_size["width"] > 760:
        tab.mouse.move(*centre(fitted))
        tab.mouse.wheel(0, -200)  # zooms in around the pointer
        zoomed(tab)
        tab.mouse.wheel(0, -200)
        tab.wait_for_function(
            "([i, w]) => i.getBoundingClientRect().width > w * 1.2", arg=[image.element_handle(), fitted["width"]]
        )
        before = image.bounding_box()
        x, y = centre(fitted)
        tab.mouse.move(x, y)
        tab.mouse.down()
        tab.mouse.move(x - 120, y - 60, steps=6)
        tab.mouse.up()
        after = image.bounding_box()
        assert (round(after["x"] - before["x"]), round(after["y"] - before["y"])) == (-120, -60)
        assert (
            tab.get_by_role("button", name="Zoom (Z)").get_attribute("aria-pressed") == "true"
        )  # a drag isn't a click
    else:
        # Two fingers spread apart: a pinch zooms in.
        cdp = tab.context.new_cdp_session(tab)
        x, y = centre(fitted)

        def touch(kind: str, spread: float) -> None:
            points = (
                [] if kind == "touchEnd" else [{"x": x - spread, "y": y, "id": 0}, {"x": x + spread, "y": y, "id": 1}]
            )
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        touch("touchStart", 30)
        zoomed(tab)
        for spread in range(40, 140, 10):
            touch("touchMove", spread)
        touch("touchEnd", 0)
        assert image.bounding_box()["width"] > fitted["width"] * 2
    assert tab.console_errors == [], tab.console_errors


def test_compare_shows_both_images_at_about_one_size(tab: Any, user: Any) -> None:  # noqa: F811
    generate(user, "a field", aspect_ratio="16:9")
    opened(tab, user, aspect_ratio="16:9")
    tab.get_by_role("button", name="Compare").click()
    tab.get_by_role("button", name="Next image").click()
    wait_prompt(tab, "a field")
    pinned, current = tab.locator("#viewer-pinned img"), tab.locator("#lightbox .lightbox-image img")
    pinned.wait_for()
    tab.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=current.element_handle())
    sizes = sorted([pinned.bounding_box()["width"], current.bounding_box()["width"]])
    assert sizes[0] >= sizes[1] * 0.85, sizes
    assert sizes[0] >= tab.viewport_size["width"] * (0.3 if tab.viewport_size["width"] > 760 else 0.6), sizes
    assert tab.get_by_role("button", name="Stop comparing").is_visible()
    assert tab.console_errors == [], tab.console_errors


def test_on_a_phone_the_viewers_image_takes_the_screens_width(tab: Any, user: Any) -> None:  # noqa: F811
    image = opened(tab, user, aspect_ratio="1:1")
    assert image.bounding_box()["width"] >= tab.viewport_size["width"] * (
        0.9 if tab.viewport_size["width"] < 760 else 0.4
    )
    assert tab.console_errors == [], tab.console_errors

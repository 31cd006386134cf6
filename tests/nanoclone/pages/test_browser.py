"""The pages in a real browser: Playwright drives Debian's chromium against a live server and the emulator.

Each test saves screenshots of the pages it visits, at desktop and phone widths, under
test-artifacts/screenshots/ (README: "Browser pages").
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from playwright.sync_api import expect

from conversations import pipeline
from gallery.models import Image
from tests.conftest import emulator_requests, jobs_settled, png_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots"
DESKTOP = {"width": 1366, "height": 860}
PHONE = {"width": 390, "height": 844}
# Generous: under a full parallel run a first image has been seen to take over 20 s to show.
TIMEOUT_MS = 45_000


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # between browser steps are still plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def site(live_server: Any, settings: Any, emu: Any, shared_memory_db_reads: None) -> str:
    settings.CHAT_EXECUTION = "thread"  # no cluster in tests: the page runs jobs in a thread
    emu.latency_ms = 400  # long enough to see the pending turn
    return str(live_server.url)


@pytest.fixture
def page(chromium: Any, site: str, user: Any) -> Iterator[Any]:
    context = chromium.new_context(viewport=DESKTOP, base_url=site)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    tab.goto("/accounts/login/")
    tab.get_by_label("Username").fill("alice")
    tab.get_by_label("Password").fill("pw-alice-123")
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_url(re.compile(r"/$"))
    yield tab
    context.close()


def settle(page: Any) -> None:
    """Wait until the page's requests are done and its visible images are decoded."""
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "Array.from(document.images).every(i => (i.complete && i.naturalWidth > 0)"
        " || (i.loading === 'lazy' && i.getBoundingClientRect().top > innerHeight))"
    )


def phone_twin(page: Any, color_scheme: str | None = None) -> Any:
    """A page at phone width, signed in as `page` is, on the same URL (in `color_scheme` from the start)."""
    phone = page.context.browser.new_context(
        viewport=PHONE,
        color_scheme=color_scheme,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        storage_state=page.context.storage_state(),
    )
    phone.set_default_timeout(TIMEOUT_MS)
    small = phone.new_page()
    small.goto(page.url)
    settle(small)
    return small


def shoot(page: Any, name: str) -> None:
    """Save the page as seen now at desktop width, and the same URL at phone width."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    settle(page)
    page.screenshot(path=SCREENSHOTS / f"{name}-desktop.png")
    small = phone_twin(page)
    try:
        small.screenshot(path=SCREENSHOTS / f"{name}-phone.png")
    finally:
        small.context.close()


# The prompt box's choices sit in two popovers, each opened by its chip.
POPOVER_OF = {"Model": "#model-chip", "Thinking": "#model-chip", "Google Search": "#model-chip"}


def pick(tab: Any, group: str, option: str) -> None:
    """Choose `option` in the prompt box's `group` (Model, Thinking, Aspect ratio, Resolution, Count)
    as a person does: open the chip's popover, click the choice, close it with Esc."""
    tab.locator(POPOVER_OF.get(group, "#format-chip")).click()
    tab.get_by_role("group", name=group, exact=True).get_by_role("radio", name=option, exact=True).check()
    tab.keyboard.press("Escape")


def picked(tab: Any, name: str) -> str:
    """The prompt box's value for the form field `name` (model, aspect_ratio, resolution, num_images...)."""
    return str(tab.evaluate("n => document.getElementById('composer').elements[n].value", name))


def generate(user: Any, prompt: str, **fields: Any) -> Any:
    return pipeline.start(
        pipeline.GenerationRequest(user=user, prompt=prompt, source="chat", **fields), pipeline.RunMode.INLINE
    )


def test_it_shows_the_login_page(chromium: Any, site: str) -> None:
    context = chromium.new_context(viewport=DESKTOP, base_url=site)
    tab = context.new_page()
    tab.goto("/gallery")
    assert "/accounts/login/" in tab.url
    assert tab.get_by_role("heading", name="Log in to NanoClone").is_visible()
    shoot(tab, "login")
    context.close()


def test_it_generates_an_image_and_continues_the_thread(page: Any, add_key: Any) -> None:
    add_key()
    page.reload()
    prompt = page.get_by_label("Prompt")
    prompt.fill("A lighthouse at dusk, oil painting")
    pick(page, "Aspect ratio", "16:9")
    prompt.press("Enter")
    # The turn shows at once, pending, and the address becomes the conversation's.
    page.locator(".pending").first.wait_for()
    page.wait_for_url(re.compile(r"/c/[0-9a-f-]{36}$"))
    image = page.locator(".result img").first
    image.wait_for()
    assert image.get_attribute("alt") == "A lighthouse at dusk, oil painting"
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert page.evaluate("img => img.naturalWidth", image.element_handle()) == 1376

    jobs_settled()
    prompt.fill("Now add a full moon")
    page.get_by_role("button", name="Send").click()
    page.locator(".result img").nth(1).wait_for()
    assert page.locator(".turn").count() == 2
    assert page.locator("#conversation-list").get_by_text("A lighthouse at dusk, oil painting").is_visible()
    conversation_url = page.url
    page.reload()
    assert page.locator(".result img").count() == 2 and page.url == conversation_url
    shoot(page, "chat")


def test_the_pickers_offer_thinking_and_grounding_only_where_the_model_has_them(page: Any, add_key: Any) -> None:
    add_key()
    page.reload()
    page.locator("#model-chip").click()
    thinking, grounding = page.locator("#thinking-picker"), page.locator("#grounding-picker")
    assert thinking.is_visible() and grounding.is_visible()  # Nano Banana 2.1, the default
    values = "els => els.map(e => e.value)"
    assert thinking.get_by_role("radio").evaluate_all(values) == ["", "minimal", "medium", "high"]
    page.get_by_label("Google Search").check()
    page.get_by_role("radio", name="Nano Banana 2 Lite").check()
    assert thinking.is_hidden() and grounding.is_hidden()
    assert not page.get_by_label("Google Search").is_checked()  # nothing the model can't do is sent
    page.get_by_role("radio", name="Nano Banana Pro").check()
    assert thinking.get_by_role("radio").evaluate_all(values) == ["", "high"]


def test_it_sends_reference_images_picked_or_taken_from_an_earlier_image(page: Any, add_key: Any, emu: Any) -> None:
    add_key()
    page.reload()
    picker = page.locator("#images")
    picker.set_input_files(files=[{"name": "huge.png", "mimeType": "image/png", "buffer": b"0" * (11 * 1024 * 1024)}])
    assert "larger than 10 MB" in page.locator("#composer-error").inner_text()  # refused before any upload
    picker.set_input_files(files=[{"name": "ref.png", "mimeType": "image/png", "buffer": png_bytes((120, 80))}])
    preview = page.locator("#ref-preview li")
    expect(preview).to_have_count(1)
    preview.get_by_role("button", name="Remove ref.png").click()
    expect(preview).to_have_count(0)
    picker.set_input_files(files=[{"name": "ref.png", "mimeType": "image/png", "buffer": png_bytes((120, 80))}])
    page.get_by_label("Prompt").fill("Make this a postcard")
    page.get_by_label("Prompt").press("Enter")
    page.locator(".result img").first.wait_for()
    expect(page.locator(".turn-refs img")).to_have_count(1)
    expect(preview).to_have_count(0)  # the prompt box is cleared for the next prompt

    jobs_settled()
    page.get_by_role("button", name="Use as reference").first.click()
    expect(preview).to_have_count(1)
    page.get_by_label("Prompt").fill("Start again from this one")
    page.get_by_label("Prompt").press("Enter")
    page.locator(".result img").nth(1).wait_for()
    # Gemini got the uploaded reference first, then the history image plus the chosen one.
    assert [r["inline_images"] for r in emulator_requests(emu)] == [1, 3]


def test_it_shows_a_failure_as_an_error_with_retry(page: Any, add_key: Any) -> None:
    broken = add_key("emu-invalid-0001")
    page.reload()
    page.get_by_label("Prompt").fill("a quiet harbour")
    page.get_by_label("Prompt").press("Enter")
    alert = page.locator(".turn-error")
    alert.wait_for()
    assert "No Gemini key can take this prompt" in alert.inner_text()
    jobs_settled()
    broken.delete()
    add_key("emu-ok-0002")
    page.get_by_role("button", name="Retry").click()  # the same prompt again, now that a key works
    page.locator(".result img").first.wait_for()
    assert page.locator(".turn").count() == 2


def test_it_searches_the_gallery_opens_the_lightbox_and_deletes_an_image(page: Any, add_key: Any, user: Any) -> None:
    add_key()
    for prompt in ("a red fox in snow", "a blue whale", "a red panda", "a green parrot"):
        generate(user, prompt, aspect_ratio="1:1")
    page.goto("/gallery")
    assert page.locator(".tile").count() == 4
    shoot(page, "gallery")

    page.get_by_label("Search prompts").fill("red")
    page.get_by_label("Search prompts").press("Enter")
    page.wait_for_url(re.compile(r"q=red"))
    assert sorted(page.locator(".tile img").evaluate_all("els => els.map(e => e.alt)")) == [
        "a red fox in snow",
        "a red panda",
    ]
    page.locator("#gallery-count", has_text="2 images match the filters").wait_for()  # it follows the tiles

    page.locator(".tile-link").first.click()
    lightbox = page.locator("#lightbox")
    lightbox.get_by_text("Dimensions").wait_for()
    assert "1024 \u00d7 1024 px" in lightbox.inner_text()
    assert "Nano Banana 2" in lightbox.inner_text()
    settle(page)
    page.screenshot(path=SCREENSHOTS / "lightbox-desktop.png")
    small = phone_twin(page)
    small.locator(".tile-link").first.click()
    small.locator("#lightbox").get_by_text("Dimensions").wait_for()
    settle(small)
    small.screenshot(path=SCREENSHOTS / "lightbox-phone.png")
    small.context.close()

    page.keyboard.press("ArrowRight")  # the keyboard moves to the next image
    lightbox.locator(".lightbox-prompt", has_text="a red fox in snow").wait_for()

    page.once("dialog", lambda dialog: dialog.accept())
    lightbox.get_by_role("button", name="Delete").click()
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 1")
    assert not Image.objects.filter(prompt="a red fox in snow").exists()
    assert Image.objects.filter(role="output").count() == 3
    page.keyboard.press("Escape")
    assert not lightbox.is_visible()


def test_the_gallery_loads_more_as_you_scroll_and_keeps_its_place_on_reload(
    page: Any, add_key: Any, user: Any, settings: Any
) -> None:
    settings.GALLERY_PAGE_SIZE = 12
    add_key()
    for number in range(30):
        generate(user, f"picture {number}", model="nano-banana-2", resolution="512")
    page.set_viewport_size({"width": 800, "height": 600})
    page.goto("/gallery")
    tiles = page.locator("#grid .tile")
    assert tiles.count() == 12
    page.mouse.wheel(0, 20_000)
    page.wait_for_function("document.querySelectorAll('#grid .tile').length >= 24")
    page.mouse.wheel(0, 20_000)
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 30")
    page.evaluate("window.scrollTo(0, 900)")
    page.wait_for_timeout(400)  # the position is remembered 200 ms after scrolling stops
    page.reload()
    page.wait_for_function("document.querySelectorAll('#grid .tile').length >= 24")
    page.wait_for_function("window.scrollY > 800")
    assert page.locator("#grid .tile img").nth(0).get_attribute("alt") == "picture 29"


def test_it_shows_usage_on_the_keys_page(page: Any, add_key: Any, user: Any) -> None:
    add_key(label="Main key")
    add_key("emu-invalid-0002", label="Broken key")
    for prompt in ("one", "two", "three"):
        generate(user, prompt)
    page.goto("/keys")
    rows = page.locator(".key-row")
    assert rows.count() == 2
    main = rows.filter(has_text="Main key")
    broken = rows.filter(has_text="Broken key")
    assert main.locator(".used-today").inner_text() == "3"
    assert "active" in main.locator(".badge").inner_text()
    assert "invalid" in broken.locator(".badge").inner_text()
    assert page.locator(".chart rect").count() >= 1
    shoot(page, "keys")

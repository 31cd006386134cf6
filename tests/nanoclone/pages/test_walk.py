"""A day's walk through the pages in one browser, desktop then phone, with no console error:
generate, edit, the viewer, the gallery's selection, zip and board, settings."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import jobs_settled
from tests.nanoclone.pages.test_browser import PHONE, chromium, page, site  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def listen(tab: Any) -> list[str]:
    problems: list[str] = []
    tab.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    return problems


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_walk_through_every_page_logs_no_console_error(page: Any, add_key: Any, user: Any, size: str) -> None:  # noqa: F811
    add_key()
    problems = listen(page)
    if size == "phone":
        page.set_viewport_size(PHONE)
    page.goto("/")
    page.get_by_label("Prompt").fill("A lighthouse at dusk")
    page.get_by_label("Prompt").press("Enter")
    page.locator(".result img").first.wait_for()
    jobs_settled()
    page.get_by_label("Prompt").fill("Now at night")
    page.get_by_label("Prompt").press("Enter")
    page.locator(".result img").nth(1).wait_for()
    jobs_settled()

    page.locator(".result-open").first.click()
    page.locator("#lightbox .lightbox-prompt", has_text="A lighthouse at dusk").wait_for()
    page.keyboard.press("ArrowRight")
    page.locator("#lightbox .lightbox-prompt", has_text="Now at night").wait_for()
    page.keyboard.press("Escape")
    if size == "phone":
        page.locator(".sidebar-toggle").click()
        page.get_by_role("button", name="Close conversations").click()

    page.goto("/gallery")
    if size == "phone":  # the boxes show once Select is tapped
        page.get_by_role("button", name="Select").click()
    page.locator(".tile-select").first.check()
    page.locator(".tile-link").nth(1).click(modifiers=["Shift"])
    with page.expect_download():
        page.get_by_role("button", name="Download zip").click()
    page.get_by_label("New board").fill("Lighthouses")
    page.get_by_role("button", name="Add to board").click()
    page.get_by_text("Added 2 images to Lighthouses.").wait_for()
    if size == "phone":
        page.get_by_text("More filters").click()  # folded on a phone
    page.get_by_label("Board", exact=True).select_option(label="Lighthouses")
    page.wait_for_url(re.compile(r"board="))

    page.goto("/settings")
    page.get_by_role("button", name="Create token").click()
    page.get_by_label("New API token").wait_for()
    page.wait_for_load_state("networkidle")
    assert problems == []

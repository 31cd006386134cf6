"""Gallery power in a real browser: select several (click, shift-click, keyboard), download them as
one zip, favourite, board or delete them at once, and filter by board."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import pytest
from playwright.sync_api import expect

from gallery.models import Board, Image
from tests.nanoclone.pages.test_browser import PHONE, chromium, generate, page, phone_twin, site  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def pictures(user: Any, count: int) -> None:
    for number in range(count):
        generate(user, f"picture {number}", model="nano-banana-2", resolution="512")


def test_click_and_shift_click_select_and_the_zip_holds_them(page: Any, add_key: Any, user: Any) -> None:  # noqa: F811
    add_key()
    pictures(user, 5)
    page.goto("/gallery")
    boxes = page.locator(".tile-select")
    boxes.nth(0).click()
    page.locator(".tile-link").nth(3).click(modifiers=["Shift"])  # a range, not the viewer
    assert page.locator("#lightbox").is_hidden()
    assert page.locator("#selection-count").inner_text() == "4"
    page.locator(".tile-link").nth(2).click()  # while selecting, a click takes one out
    assert page.locator("#selection-count").inner_text() == "3"
    with page.expect_download() as download:
        page.get_by_role("button", name="Download zip").click()
    archive = zipfile.ZipFile(io.BytesIO(download.value.path().read_bytes()))
    assert sorted(name.split("-")[1] for name in archive.namelist()) == ["1", "3", "4"]  # picture-4-…: newest first
    page.get_by_role("button", name="★ Favourite").click()
    page.get_by_text("Added 3 favourites.").wait_for()
    assert sorted(Image.objects.filter(favorite=True).values_list("prompt", flat=True)) == [
        "picture 1",
        "picture 3",
        "picture 4",
    ]


def test_the_keyboard_selects_and_escape_clears(page: Any, add_key: Any, user: Any) -> None:  # noqa: F811
    add_key()
    pictures(user, 2)
    page.goto("/gallery")
    page.locator(".tile-select").nth(1).focus()
    page.keyboard.press("Space")
    assert page.locator("#selection-count").inner_text() == "1"
    assert page.get_by_role("form", name="Selected images").is_visible()
    page.keyboard.press("Escape")
    assert page.get_by_role("form", name="Selected images").is_hidden()


def test_boards_collect_images_and_filter_the_gallery_and_delete_works_at_once(
    page: Any,  # noqa: F811
    add_key: Any,
    user: Any,
) -> None:
    add_key()
    pictures(user, 4)
    page.goto("/gallery")
    page.locator(".tile-select").nth(0).check()
    page.locator(".tile-select").nth(1).check()
    page.get_by_label("New board").fill("Trips")
    page.get_by_role("button", name="Add to board").click()
    page.get_by_text("Added 2 images to Trips.").wait_for()
    board = Board.objects.get(user=user, name="Trips")
    assert sorted(board.images.values_list("prompt", flat=True)) == ["picture 2", "picture 3"]

    page.get_by_label("Board", exact=True).select_option(label="Trips")
    page.wait_for_url(f"**board={board.pk}**")
    expect(page.locator("#grid .tile")).to_have_count(2)
    page.locator(".tile-select").nth(0).check()
    page.get_by_role("button", name="Take off Trips").click()
    page.get_by_text("Took 1 image off Trips.").wait_for()
    expect(page.locator("#grid .tile")).to_have_count(1)

    page.goto("/gallery")
    page.locator(".tile-select").nth(0).check()
    page.get_by_role("button", name="Select all").click()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete", exact=True).click()
    page.get_by_text("Deleted 4 images.").wait_for()
    assert not Image.objects.filter(role="output").exists()


def test_on_a_phone_select_shows_the_boxes_and_the_bar_fits(page: Any, add_key: Any, user: Any) -> None:  # noqa: F811
    add_key()
    pictures(user, 3)
    page.goto("/gallery")
    small = phone_twin(page)
    try:
        box = small.locator(".tile-select").first
        assert box.is_hidden()  # off the images until asked for
        small.get_by_role("button", name="Select").tap()
        assert box.is_visible()
        box.tap()
        bar = small.get_by_role("form", name="Selected images")
        assert bar.is_visible() and small.locator("#selection-count").inner_text() == "1"
        assert small.evaluate("document.scrollingElement.scrollWidth <= innerWidth")
        small.locator(".tile-link").nth(1).tap()  # selecting: a tap adds it
        assert small.locator("#selection-count").inner_text() == "2"
        assert small.locator("#lightbox").is_hidden()
    finally:
        small.context.close()

"""The gallery as a studio, at desktop and phone sizes (issue 34): rows that keep each image's shape,
captions under the pointer, boxes off the images on a phone until Select, boards renamed, shared and
deleted, and the address with a trailing slash."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from gallery.models import Board, Image
from tests.nanoclone.pages.test_browser import chromium, generate, site  # noqa: F401
from tests.nanoclone.pages.test_chat_browser import tab  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RATIOS = ["16:9", "9:16", "1:1", "4:3", "21:9", "3:4"]


def pictures(user: Any, ratios: list[str]) -> list[Image]:
    for number, ratio in enumerate(ratios):
        generate(user, f"picture {number} at {ratio}", model="nano-banana-2", resolution="512", aspect_ratio=ratio)
    return list(Image.objects.filter(role="output").order_by("-created_at"))


def is_phone(page: Any) -> bool:
    return bool(page.viewport_size["width"] < 760)


def test_the_pages_answer_with_a_trailing_slash_too(tab: Any) -> None:  # noqa: F811
    tab.goto("/gallery/?favorites=1")
    assert tab.url.endswith("/gallery?favorites=1")
    assert tab.get_by_role("heading", name="Gallery").is_visible()
    tab.goto("/settings/")
    assert tab.url.endswith("/settings")
    assert tab.console_errors == [], tab.console_errors


def test_the_gallery_keeps_each_images_shape_in_rows_of_one_height(tab: Any, user: Any) -> None:  # noqa: F811
    images = pictures(user, RATIOS)
    tab.goto("/gallery")
    tab.wait_for_function("Array.from(document.querySelectorAll('.tile img')).every(i => i.complete)")
    tiles = tab.locator(".tile")
    rows: dict[int, set[int]] = {}
    for index, image in enumerate(images):
        box = tiles.nth(index).bounding_box()
        assert abs(box["width"] / box["height"] - image.width / image.height) < 0.03, (image.width, image.height, box)
        rows.setdefault(round(box["y"]), set()).add(round(box["height"]))
    assert all(len(heights) == 1 for heights in rows.values()), rows  # a row's images are one height
    assert len(rows) < len(images)  # several images a row
    assert tab.evaluate("document.scrollingElement.scrollWidth <= innerWidth")
    caption = tiles.first.locator(".tile-caption")
    box = tiles.first.locator(".tile-select")
    if is_phone(tab):
        # No pointer: the boxes stay off the images until Select; then a tap selects.
        assert box.is_hidden() and caption.is_hidden()
        tab.get_by_role("button", name="Select").tap()
        assert box.is_visible()
        tiles.nth(1).locator(".tile-link").tap()
        assert tab.locator("#selection-count").inner_text() == "1" and tab.locator("#lightbox").is_hidden()
    else:
        assert caption.evaluate("c => getComputedStyle(c).opacity") == "0"
        tiles.first.hover()
        tab.wait_for_function("c => getComputedStyle(c).opacity === '1'", arg=caption.element_handle())
        assert caption.inner_text().startswith("picture 5 at 3:4")
    assert tab.console_errors == [], tab.console_errors


def test_a_board_is_renamed_shared_and_deleted_from_the_gallery(tab: Any, user: Any, chromium: Any, site: str) -> None:  # noqa: F811
    images = pictures(user, ["16:9", "1:1", "9:16"])
    board = Board.objects.create(user=user, name="Trips")
    board.images.add(*images[:2])
    tab.goto(f"/gallery?board={board.pk}")
    bar = tab.get_by_role("region", name="Board Trips")
    bar.get_by_label("Name of the board").fill("Holidays")
    bar.get_by_role("button", name="Rename").click()
    tab.get_by_text("Renamed the board to Holidays.").wait_for()
    assert Board.objects.get(pk=board.pk).name == "Holidays"
    expect(tab.locator("#grid .tile")).to_have_count(2)

    # Share: a link that shows the board's images to someone not logged in.
    link = tab.get_by_role("button", name="Share").get_attribute("data-copy")
    stranger = chromium.new_context(base_url=site, viewport=tab.viewport_size)
    try:
        shared = stranger.new_page()
        shared.goto(link)
        assert shared.get_by_role("heading", name="Holidays").is_visible()
        shared.wait_for_function(
            "Array.from(document.querySelectorAll('.tile img')).every(i => i.complete && i.naturalWidth > 0)"
        )
        assert shared.locator(".tile img").count() == 2
        assert shared.get_by_role("button", name=re.compile("^Log out")).count() == 0  # nobody is logged in
        assert shared.goto(link[:-3] + "xyz").status == 404  # a link not signed by the server
    finally:
        stranger.close()

    tab.once("dialog", lambda dialog: dialog.accept())
    tab.get_by_role("button", name="Delete board").click()
    tab.get_by_text("Deleted the board Holidays; its images stay in the gallery.").wait_for()
    assert not Board.objects.exists() and Image.objects.filter(role="output").count() == 3
    assert tab.console_errors == [], tab.console_errors

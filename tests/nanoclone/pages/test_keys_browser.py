"""The keys page in a real browser: the actions column, the chart on a phone, /favicon.ico, axe."""

from __future__ import annotations

import io
from typing import Any

import PIL.Image
import pytest
import requests

from keys import pool
from tests.nanoclone.pages.axe import serious_violations_at_both_widths
from tests.nanoclone.pages.test_browser import PHONE, chromium, generate, page, phone_twin, site  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def staff(user: Any) -> Any:
    user.is_staff = True
    user.save()
    return user


def test_the_actions_column_lines_up_and_delete_stays_on_one_line_at_1400_px(
    page: Any,  # noqa: F811
    staff: Any,
    add_key: Any,
) -> None:
    add_key(label="Main key")
    add_key("emu-invalid-0002", label="A key with a rather long label")
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto("/keys")
    head = page.locator(".keys-table thead th").last.bounding_box()
    for row in page.locator(".key-row").all():
        cell = row.locator("td.key-actions").bounding_box()
        assert abs(cell["x"] - head["x"]) < 1 and abs(cell["width"] - head["width"]) < 1  # one column
        delete, test = row.get_by_role("button", name="Delete"), row.get_by_role("button", name="Test")
        assert delete.bounding_box()["y"] == test.bounding_box()["y"]  # on the line of the other buttons
        assert page.evaluate("b => b.getClientRects().length", delete.element_handle()) == 1
        assert delete.bounding_box()["height"] < 34  # one line of text
    wrap = page.locator(".table-wrap")
    assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth")  # nothing hidden sideways


def test_on_a_phone_the_chart_shows_today_and_the_keyboard_can_scroll_it(
    page: Any,  # noqa: F811
    staff: Any,
    add_key: Any,
) -> None:
    add_key()
    generate(staff, "one")
    page.goto("/keys")
    small = phone_twin(page)
    try:
        wrap = small.locator(".chart-wrap")
        assert wrap.evaluate("w => w.scrollWidth > w.clientWidth")  # it does scroll on a phone
        today = small.locator(".chart rect").last.bounding_box()  # the bars run oldest to today
        shown = wrap.bounding_box()
        assert shown["x"] <= today["x"] and today["x"] + today["width"] <= shown["x"] + shown["width"]
        assert wrap.get_attribute("tabindex") == "0"
        start = wrap.evaluate("w => w.scrollLeft")
        wrap.focus()
        small.keyboard.press("ArrowLeft")  # the keyboard scrolls it back towards the first days
        small.wait_for_function(f"document.querySelector('.chart-wrap').scrollLeft < {start}")
        # The logo link keeps its name when the phone hides the word "NanoClone".
        assert small.get_by_role("link", name="NanoClone").is_visible()
    finally:
        small.context.close()


def test_favicon_ico_is_an_icon(site: str) -> None:  # noqa: F811
    answer = requests.get(f"{site}/favicon.ico", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] in {"image/x-icon", "image/vnd.microsoft.icon"}
    assert PIL.Image.open(io.BytesIO(answer.content)).format == "ICO"


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_on_the_keys_page(
    page: Any,  # noqa: F811
    staff: Any,
    add_key: Any,
    scheme: str,
) -> None:
    add_key(label="Main key")
    add_key("emu-invalid-0002", label="Broken key")
    key = add_key("emu-ok-0003", label="Parked")
    key.enabled = False
    key.save()
    generate(staff, "one")
    page.emulate_media(color_scheme=scheme)
    page.goto("/keys")
    assert serious_violations_at_both_widths(page, scheme) == {}


def test_the_charts_ticks_are_round_steps_at_desktop_and_phone_widths(
    page: Any,  # noqa: F811
    staff: Any,
    add_key: Any,
) -> None:
    key = add_key()
    for _ in range(19):  # a busiest day of 19 requests: 0/5/10/15/20, not 0/5/10/14/19
        lease = pool.acquire(caller=pool.Caller())
        pool.report(lease, None, pool.CallUsage(images=1))
    assert key.usage.count() == 19
    page.goto("/keys")
    small = phone_twin(page)
    try:
        for shown in (page, small):
            ticks = shown.locator(".chart text.axis[text-anchor='end']").all_text_contents()
            assert ticks == ["0", "5", "10", "15", "20"]
            tops = [
                box["y"]
                for box in (t.bounding_box() for t in shown.locator(".chart text.axis[text-anchor='end']").all())
            ]
            assert tops == sorted(tops, reverse=True)  # 0 at the bottom, evenly up
    finally:
        small.context.close()

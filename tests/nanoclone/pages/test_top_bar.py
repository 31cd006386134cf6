"""The top bar at desktop and phone widths (issue 34): every page and Log out in reach, none cut."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.nanoclone.pages.test_browser import chromium, site  # noqa: F401
from tests.nanoclone.pages.test_chat_browser import tab  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def whole(window: Any, locator: Any) -> bool:
    """Shown and inside the screen's width."""
    box = locator.bounding_box()
    return bool(box and box["x"] >= 0 and box["x"] + box["width"] <= window.viewport_size["width"])


def test_every_page_and_log_out_are_in_reach_and_none_is_cut(tab: Any) -> None:  # noqa: F811
    nav = tab.get_by_role("navigation", name="Main")
    phone = tab.viewport_size["width"] < 760
    assert whole(tab, nav.get_by_role("link", name="Chat")) and whole(tab, nav.get_by_role("link", name="Gallery"))
    if phone:
        assert nav.get_by_role("link", name="Keys").is_hidden()
        nav.get_by_role("button", name="More").click()
    for name in ("Settings", "Keys", "Admin"):
        assert whole(tab, nav.get_by_role("link", name=name)), name
    log_out = tab.get_by_role("button", name=re.compile("^Log out")).locator("visible=true")
    assert log_out.count() == 1 and whole(tab, log_out)
    assert tab.evaluate("document.scrollingElement.scrollWidth <= innerWidth")
    if phone:
        tab.keyboard.press("Escape")
        assert nav.get_by_role("link", name="Keys").is_hidden()
        nav.get_by_role("button", name="More").click()
    nav.get_by_role("link", name="Keys").click()
    tab.wait_for_url("**/keys")
    assert tab.console_errors == [], tab.console_errors

"""The chat's conversation sidebar in a real browser: the phone drawer, search, pages, the open one in view."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conversations.models import Conversation, Job, Message
from tests.nanoclone.pages.test_browser import PHONE, chromium, page, site  # noqa: F401 (fixtures)

ITEMS = "#conversation-list li:not(.conversation-more) a"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def listed(tab: Any, count: int) -> None:
    tab.wait_for_function(f"document.querySelectorAll('{ITEMS}').length === {count}")


def chats(user: Any, count: int, source: str = "chat") -> list[Conversation]:
    """`count` conversations with one turn each, the first the most recently active."""
    made = []
    now = timezone.now()
    for number in range(count):
        when = now - dt.timedelta(minutes=number)
        conversation = Conversation.objects.create(user=user, title=f"chat number {number}", updated_at=when)
        message = Message.objects.create(conversation=conversation, role="user", text=f"prompt {number} of {source}")
        Job.objects.create(
            user=user, conversation=conversation, user_message=message, source=source, model="m", state="succeeded"
        )
        made.append(conversation)
    return made


def test_the_phone_drawer_closes_with_its_button_escape_and_a_tap_beside_it(page: Any, user: Any) -> None:  # noqa: F811
    chats(user, 2)
    page.set_viewport_size(PHONE)
    page.reload()
    drawer, toggle = page.locator("#sidebar"), page.locator(".sidebar-toggle")
    assert not drawer.get_by_role("link", name="chat number 0").is_visible()

    toggle.click()
    drawer.get_by_role("link", name="chat number 0").wait_for()
    # The open drawer leaves ☰ visible and on top: a tap on it lands on it.
    box = toggle.bounding_box()
    assert page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y).closest('.sidebar-toggle') !== null",
        [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2],
    )
    page.get_by_role("button", name="Close conversations").click()
    page.wait_for_function("!document.getElementById('sidebar').classList.contains('open')")
    assert toggle.get_attribute("aria-expanded") == "false"

    toggle.click()
    page.wait_for_function("document.getElementById('sidebar').classList.contains('open')")
    page.keyboard.press("Escape")
    page.wait_for_function("!document.getElementById('sidebar').classList.contains('open')")

    toggle.click()
    page.wait_for_function("document.getElementById('sidebar').classList.contains('open')")
    page.mouse.click(370, 500)  # beside the drawer (85 % of 390 px wide)
    page.wait_for_function("!document.getElementById('sidebar').classList.contains('open')")
    assert page.url.endswith("/")  # the tap closed the drawer and did nothing else


def test_the_desktop_sidebar_has_no_close_button(page: Any, user: Any) -> None:  # noqa: F811
    chats(user, 1)
    page.reload()
    assert page.locator("#sidebar").get_by_role("link", name="chat number 0").is_visible()
    assert not page.get_by_role("button", name="Close conversations").is_visible()


def test_the_sidebar_loads_in_pages_and_scrolls_to_the_open_conversation(page: Any, user: Any) -> None:  # noqa: F811
    made = chats(user, 75)
    page.goto("/")
    links = page.locator(ITEMS)
    assert links.count() == 30  # one page, not all 75
    page.locator("#conversation-list").evaluate("list => list.scrollTo(0, list.scrollHeight)")
    listed(page, 60)

    page.goto(f"/c/{made[64].id}")  # on the third page: the list reaches it and shows it
    current = page.locator("#conversation-list [aria-current=page]")
    assert current.inner_text().startswith("chat number 64")
    assert current.is_visible()
    assert page.evaluate(
        "() => { const l = document.getElementById('conversation-list').getBoundingClientRect();"
        " const c = document.querySelector('#conversation-list [aria-current=page]').getBoundingClientRect();"
        " return c.top >= l.top && c.bottom <= l.bottom; }"
    )


def test_the_sidebar_search_finds_titles_and_prompts_and_keeps_api_conversations_apart(
    page: Any,  # noqa: F811
    user: Any,
) -> None:
    chats(user, 3)
    chats(user, 2, source="mcp")
    Conversation.objects.filter(title="chat number 1").update(title="A lighthouse")
    page.reload()
    search = page.get_by_label("Search conversations")
    search.fill("lighthouse")
    listed(page, 1)
    assert page.locator("#conversation-list").inner_text().startswith("A lighthouse")
    search.fill("prompt 2")  # a prompt's words find its conversation too
    page.wait_for_function(
        "document.querySelector('#conversation-list').innerText.includes('chat number 2')"
        ' && document.querySelectorAll("#conversation-list li:not(.conversation-more) a").length === 1'
    )
    search.fill("of mcp")  # API and agent conversations stay out of the chats
    page.get_by_text("No conversation matches").wait_for()

    page.get_by_role("link", name="From API clients and agents (2)").click()
    expect(page.locator(ITEMS)).to_have_count(2)
    page.get_by_label("Search conversations").fill("prompt 1")
    listed(page, 1)
    assert "mcp" in page.locator("#conversation-list").inner_text()

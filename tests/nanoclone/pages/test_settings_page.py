"""The settings page in a real browser: the API token (create, shown once, rotate) and the snippets."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from rest_framework.authtoken.models import Token

from tests.nanoclone.pages.axe import serious_violations_at_both_widths
from tests.nanoclone.pages.test_browser import PHONE, chromium, page, phone_twin, site  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def works(site: str, token: str) -> bool:  # noqa: F811
    return requests.get(f"{site}/api/models", headers={"Authorization": f"Bearer {token}"}, timeout=10).ok


def test_it_creates_a_token_shows_it_once_and_rotates_it(page: Any, site: str, user: Any) -> None:  # noqa: F811
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("link", name="Settings").click()
    page.get_by_text("You have no API token yet.").wait_for()
    page.get_by_role("button", name="Create token").click()
    shown = page.get_by_label("New API token").input_value()
    assert shown == Token.objects.get(user=user).key and works(site, shown)
    page.get_by_role("button", name="Copy").first.click()
    assert page.evaluate("navigator.clipboard.readText()") == shown
    # The snippets carry this server's addresses and, right now, the token.
    claude_code = page.locator("#snippet-claude-code").inner_text()
    assert f"{site}/mcp" in claude_code and f"Bearer {shown}" in claude_code
    assert f'"NANOCLONE_PUBLIC_URL": "{site}"' in page.locator("#snippet-claude-desktop").inner_text()
    assert f"{site}/openai/v1" in page.locator("#snippet-python-openai").inner_text()

    page.goto("/settings")  # shown once: never again
    assert shown not in page.content()
    page.get_by_text("You have a token, created").wait_for()
    assert "<your token>" in page.locator("#snippet-curl").inner_text()

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Rotate token").click()
    rotated = page.get_by_label("New API token").input_value()
    assert rotated != shown and works(site, rotated) and not works(site, shown)


def test_on_a_phone_the_snippets_fit_and_copy(page: Any, user: Any) -> None:  # noqa: F811
    page.goto("/settings")
    small = phone_twin(page)
    try:
        small.context.grant_permissions(["clipboard-read", "clipboard-write"])
        small.get_by_role("button", name="Create token").click()
        assert small.evaluate("document.scrollingElement.scrollWidth <= innerWidth")  # nothing off the side
        small.locator(".snippet").filter(has_text="curl").get_by_role("button", name="Copy").click()
        assert small.evaluate("navigator.clipboard.readText()").startswith("curl -X POST")
    finally:
        small.context.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_nothing_serious_on_the_settings_page(page: Any, user: Any, scheme: str) -> None:  # noqa: F811
    Token.objects.create(user=user)
    page.emulate_media(color_scheme=scheme)
    page.goto("/settings")
    assert serious_violations_at_both_widths(page, scheme) == {}

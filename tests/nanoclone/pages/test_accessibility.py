"""axe-core finds no serious or critical violation on the main pages, light and dark, desktop and
phone (the keys and settings pages are checked in their own files too)."""

from __future__ import annotations

from typing import Any

import pytest

from gallery.models import Board, Image
from tests.nanoclone.pages.axe import serious_violations
from tests.nanoclone.pages.test_browser import DESKTOP, PHONE, chromium, generate, page, site  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": DESKTOP},
    "phone": {"viewport": PHONE, "is_mobile": True, "has_touch": True},
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_login_page(chromium: Any, site: str, scheme: str, size: str) -> None:  # noqa: F811
    context = chromium.new_context(base_url=site, color_scheme=scheme, **SIZES[size])
    tab = context.new_page()
    tab.goto("/accounts/login/")
    assert serious_violations(tab) == []
    context.close()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_chat_gallery_viewer_keys_and_settings(
    page: Any,  # noqa: F811
    add_key: Any,
    user: Any,
    scheme: str,
    size: str,
) -> None:
    user.is_staff = True
    user.save()
    add_key()
    job = generate(user, "a lighthouse at dusk")
    generate(user, "now at night", conversation_id=str(job.conversation_id))
    page.set_viewport_size(SIZES[size]["viewport"])
    page.emulate_media(color_scheme=scheme)
    found = {}
    image = Image.objects.filter(role="output").earliest("created_at")
    for path in ("/", f"/c/{job.conversation_id}", "/gallery", f"/gallery/{image.pk}", "/keys", "/settings"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        found[path] = serious_violations(page)
    page.goto("/gallery")
    page.locator(".tile-link").first.click()
    page.locator("#lightbox .lightbox-prompt").wait_for()
    page.wait_for_load_state("networkidle")
    found["viewer"] = serious_violations(page)
    page.keyboard.press("Escape")
    if size == "phone":  # the boxes show once Select is tapped
        page.get_by_role("button", name="Select").click()
    page.locator(".tile-select").first.check()
    found["selection"] = serious_violations(page)
    # Popovers open: the prompt box's choices, and the top bar's More on a phone.
    page.goto(f"/c/{job.conversation_id}")
    page.locator("#format-chip").click()
    found["choices"] = serious_violations(page)
    page.keyboard.press("Escape")
    if size == "phone":
        page.get_by_role("button", name="More").click()
        found["more"] = serious_violations(page)
        page.keyboard.press("Escape")
    # A board, and the page its share link opens.
    board = Board.objects.create(user=user, name="Lighthouses")
    board.images.add(*Image.objects.filter(role="output"))
    page.goto(f"/gallery?board={board.pk}")
    found["board"] = serious_violations(page)
    page.goto(f"/boards/{board.share_token()}")
    page.wait_for_load_state("networkidle")
    found["shared board"] = serious_violations(page)
    if size == "phone":
        page.goto(f"/c/{job.conversation_id}")
        page.locator(".sidebar-toggle").click()
        page.wait_for_timeout(300)
        found["drawer"] = serious_violations(page)
    assert {path: problems for path, problems in found.items() if problems} == {}

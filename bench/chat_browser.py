"""What the chat benchmarks share: Debian's chromium through Playwright, signed in to a bench stack."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.harness import Stack

CHROMIUM = "/usr/bin/chromium"

# The bench stack runs `serve --no-cluster`: the chat runs its jobs in a thread of the web process.
os.environ["NANOCLONE_CHAT_EXECUTION"] = "thread"


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


def signed_in(browser: Any, app: Stack, **context: Any) -> Any:
    """A new page in a fresh context (empty cache), signed in as the bench user."""
    page = browser.new_context(base_url=app.app_url, **context).new_page()
    page.set_default_timeout(60_000)
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("bench")
    page.get_by_label("Password").fill("bench-password")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{app.app_url}/")
    return page

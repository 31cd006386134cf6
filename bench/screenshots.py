"""Screenshots of the main pages for the README (docs/screenshots/<page>-<desktop|phone>.png).

    .venv/bin/python bench/screenshots.py

Starts the emulator and a server in a throwaway data directory (bench/harness.py), makes a few
images through the chat and the API, then lets Debian's chromium (Playwright) visit each page at
1366 px and at 390 px, in the light theme. Prints each file it wrote.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import ROOT, stack

OUT = ROOT / "docs" / "screenshots"
DESKTOP: Any = {"width": 1366, "height": 860}
PHONE: Any = {"width": 390, "height": 844}
PROMPTS = [
    ("A red fox asleep in fresh snow, soft morning light", "3:2"),
    ("A lighthouse on a cliff at dusk, oil painting", "4:5"),
    ("A bowl of ramen, studio photo, top view", "1:1"),
    ("A cyberpunk street market in the rain", "16:9"),
    ("Watercolour map of an imaginary island", "4:3"),
    ("A tiny robot watering a bonsai", "1:1"),
]


def settle(tab: Any) -> None:
    tab.wait_for_load_state("networkidle")
    tab.wait_for_function("Array.from(document.images).every(i => i.complete)")


def shoot(tab: Any, name: str) -> None:
    settle(tab)
    path = OUT / f"{name}.png"
    tab.screenshot(path=path)
    print(path.relative_to(ROOT))


def visit(browser: Any, url: str, viewport: dict[str, int], suffix: str, conversation: str) -> None:
    phone = viewport is PHONE
    context = browser.new_context(
        viewport=viewport, base_url=url, color_scheme="light", is_mobile=phone, has_touch=phone
    )
    tab = context.new_page()
    tab.goto("/accounts/login/")
    shoot(tab, f"login-{suffix}")
    tab.get_by_label("Username").fill("bench")
    tab.get_by_label("Password").fill("bench-password")
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_url("**/")
    tab.goto(f"/c/{conversation}")
    shoot(tab, f"chat-{suffix}")
    tab.locator("#format-chip").click()
    shoot(tab, f"chat-choices-{suffix}")
    tab.keyboard.press("Escape")
    tab.locator(".result-open").last.click()
    tab.locator("#lightbox .lightbox-prompt").wait_for()
    shoot(tab, f"viewer-{suffix}")
    tab.get_by_role("button", name="Compare").click()
    tab.get_by_role("button", name="Previous image").click()
    tab.locator("#viewer-pinned img").wait_for()
    shoot(tab, f"viewer-compare-{suffix}")
    tab.keyboard.press("Escape")
    tab.goto("/gallery")
    shoot(tab, f"gallery-{suffix}")
    if tab.get_by_role("button", name="Select").is_visible():  # a phone: the boxes show once asked for
        tab.get_by_role("button", name="Select").click()
    tab.locator(".tile-select").nth(0).check()
    tab.locator(".tile-select").nth(2).check()
    shoot(tab, f"gallery-selection-{suffix}")
    tab.goto("/keys")
    shoot(tab, f"keys-{suffix}")
    tab.goto("/settings")
    shoot(tab, f"settings-{suffix}")
    context.close()


def main() -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    os.environ["NANOCLONE_CHAT_EXECUTION"] = "thread"  # the harness runs no cluster
    with stack(keys=2) as app, sync_playwright() as playwright:
        headers = {"Authorization": f"Bearer {app.token}"}
        for prompt, ratio in PROMPTS:
            answer = requests.post(
                f"{app.app_url}/api/generate",
                json={"prompt": prompt, "aspectRatio": ratio},
                headers=headers,
                timeout=60,
            )
            answer.raise_for_status()
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        # One conversation made in the chat itself, so the sidebar lists it: a prompt and an edit.
        context = browser.new_context(viewport=DESKTOP, base_url=app.app_url)
        tab = context.new_page()
        tab.goto("/accounts/login/")
        tab.get_by_label("Username").fill("bench")
        tab.get_by_label("Password").fill("bench-password")
        tab.get_by_role("button", name="Log in").click()
        tab.wait_for_url("**/")
        for number, prompt in enumerate(("A lighthouse at dusk, oil painting", "Now add a full moon and stars")):
            tab.get_by_label("Prompt").fill(prompt)
            tab.get_by_label("Prompt").press("Enter")
            tab.locator(".result img").nth(number).wait_for(timeout=60_000)
            tab.wait_for_load_state("networkidle")
        conversation = tab.url.rsplit("/", 1)[1]
        context.close()
        visit(browser, app.app_url, DESKTOP, "desktop", conversation)
        visit(browser, app.app_url, PHONE, "phone", conversation)
        browser.close()


if __name__ == "__main__":
    main()

"""Bytes a browser downloads to show a chat with three 4K images (4096x4096 PNGs from the emulator).

Makes the conversation through POST /api/generate, then opens /c/<id> in a fresh browser context
(empty cache), scrolls the thread so every image loads, and adds up the response bodies by kind.

    .venv/bin/python bench/chat_bytes.py
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.chat_browser import chromium, signed_in
from bench.harness import stack

IMAGES = 3


def main() -> None:
    with stack() as app, chromium() as browser:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {app.token}"
        conversation = None
        originals = 0
        for number in range(IMAGES):
            fields = {"prompt": f"A harbour at dawn, plate {number}", "resolution": "4K", "aspectRatio": "1:1"}
            if conversation:
                fields["conversationId"] = conversation
            answer = session.post(f"{app.app_url}/api/generate", json=fields, timeout=300)
            answer.raise_for_status()
            conversation = answer.json()["data"]["conversationId"]
        for image in session.get(f"{app.app_url}/api/images", timeout=30).json()["data"]["results"]:
            originals += image["sizeBytes"]

        page = signed_in(browser, app, viewport={"width": 1366, "height": 860})
        received: Counter[str] = Counter()
        counted: Counter[str] = Counter()

        def record(request: Any) -> None:
            kind = request.resource_type
            response = request.response()
            # body() lets other events' handlers run meanwhile: read it before touching the counters.
            size = len(response.body()) if response else 0
            received[kind] += size
            counted[kind] += 1

        page.on("requestfinished", record)
        page.goto(f"/c/{conversation}")
        # Every image of the thread, whatever lazy loading put off.
        for image in page.locator(".thread img").all():
            image.scroll_into_view_if_needed()
        page.wait_for_load_state("networkidle")
        page.wait_for_function("Array.from(document.querySelectorAll('.thread img')).every(i => i.complete)")
        shown = page.evaluate(
            "Array.from(document.querySelectorAll('.result img')).map(i => i.naturalWidth + 'x' + i.naturalHeight)"
        )
        print(f"chat with {IMAGES} images of 4096x4096 (originals {originals / 1e6:.2f} MB in all)")
        print(f"images shown at {', '.join(shown)}")
        for kind, size in received.most_common():
            print(f"  {kind:<12} {counted[kind]:>3} responses  {size / 1e6:8.3f} MB")
        print(f"total downloaded: {sum(received.values()) / 1e6:.3f} MB")


if __name__ == "__main__":
    main()

"""Enter-to-image in the chat: from the key press that sends a prompt to the image loaded in the thread.

A browser (Debian's chromium) signed in to a bench stack (emulator latency --latency-ms, default 0;
the chat runs its jobs in a thread of the web process) sends --runs prompts, each in a new chat,
1K 1:1 images. The times are taken in the page (performance.now() at the Enter keydown and at the
image's load event). Prints median, p95, min and max, and the part of it from the image being stored
(its createdAt, from the images API) to its load in the page (same machine, same clock).

    .venv/bin/python bench/chat_latency.py [--runs 20] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.chat_browser import chromium, signed_in
from bench.harness import percentile, stack

STOPWATCH = """
window.enterAt = null;
window.imageAt = null;
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.target.id === "prompt") window.enterAt = performance.now();
}, true);
document.addEventListener("load", (event) => {
  if (window.imageAt === null && event.target.matches && event.target.matches(".result img")) {
    window.imageAt = performance.now();
    window.imageWallClock = Date.now();
  }
}, true);
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args()
    with stack(emulator_latency_ms=args.latency_ms) as app, chromium() as browser:
        page = signed_in(browser, app, viewport={"width": 1366, "height": 860})
        page.add_init_script(STOPWATCH)
        times, stored_to_shown = [], []
        api = requests.Session()
        api.headers["Authorization"] = f"Bearer {app.token}"
        for run in range(args.runs + 1):
            page.goto("/")
            page.locator("#format-chip").click()  # the prompt box's format popover
            page.get_by_role("group", name="Aspect ratio").get_by_role("radio", name="1:1", exact=True).check()
            page.keyboard.press("Escape")
            prompt = page.get_by_label("Prompt")
            prompt.fill(f"A lighthouse at dusk, take {run}")
            prompt.press("Enter")
            page.wait_for_function("window.imageAt !== null")
            elapsed = page.evaluate("window.imageAt - window.enterAt")
            shown_at = page.evaluate("window.imageWallClock") / 1000
            newest = api.get(f"{app.app_url}/api/images", timeout=30).json()["data"]["results"][0]
            stored_at = dt.datetime.fromisoformat(newest["createdAt"].replace("Z", "+00:00")).timestamp()
            if run:  # the first one warms the server up
                times.append(elapsed)
                stored_to_shown.append((shown_at - stored_at) * 1000)
        print(f"Enter-to-image, {args.runs} sends, emulator latency {args.latency_ms} ms:")
        print(
            f"  median {statistics.median(times):.0f} ms   p95 {percentile(times, 0.95):.0f} ms   "
            f"min {min(times):.0f} ms   max {max(times):.0f} ms"
        )
        print(
            f"  of which stored-to-shown: median {statistics.median(stored_to_shown):.0f} ms   "
            f"p95 {percentile(stored_to_shown, 0.95):.0f} ms   max {max(stored_to_shown):.0f} ms"
        )


if __name__ == "__main__":
    main()

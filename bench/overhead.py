"""What NanoClone adds to a Gemini call: each door vs a direct google-genai call to the emulator.

Same emulator, same image size (1K, 1:1), sequential requests. The doors: POST /api/generate,
google-genai pointed at NanoClone (the Gemini-native door) and the openai SDK's images.generate
(the OpenAI-compatible door, b64_json). Prints median and p95 of each, its ratio to the direct
call and the milliseconds NanoClone adds (key pool, database, file storage, base64 answer).

    .venv/bin/python bench/overhead.py [--requests 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import openai
import requests
from google import genai
from google.genai import types

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import generate as api_generate
from bench.harness import percentile, stack, summary

MODEL = "gemini-3.1-flash-image"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with stack() as app:
        client = genai.Client(
            api_key="emu-bench-direct",
            http_options=types.HttpOptions(base_url=app.emulator_url, api_version="v1beta", timeout=60_000),
        )
        gemini_door = genai.Client(
            api_key=app.token, http_options=types.HttpOptions(base_url=app.app_url, timeout=60_000)
        )
        openai_door = openai.OpenAI(api_key=app.token, base_url=f"{app.app_url}/openai/v1", max_retries=0)
        config = types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"], image_config=types.ImageConfig(aspect_ratio="1:1", image_size="1K")
        )
        session = requests.Session()

        def timed(call: Callable[[], object]) -> float:
            started = time.perf_counter()
            call()
            return (time.perf_counter() - started) * 1000

        def calls(n: int, warm: str = "") -> dict[str, Callable[[], object]]:
            # Distinct prompts per side, so none benefits from content-addressed deduplication.
            prompt = f"{warm}a lighthouse {n}"
            return {
                "direct google-genai": lambda: client.models.generate_content(
                    model=MODEL, contents=prompt, config=config
                ),
                "POST /api/generate": lambda: api_generate(
                    session, app, f"{prompt} api", model=MODEL, aspectRatio="1:1", resolution="1K"
                ),
                "google-genai -> /v1beta": lambda: gemini_door.models.generate_content(
                    model=MODEL, contents=f"{prompt} gemini", config=config
                ),
                "openai -> /openai/v1": lambda: openai_door.images.generate(
                    model=MODEL, prompt=f"{prompt} openai", size="1024x1024", response_format="b64_json"
                ),
            }

        for warmup in range(3):
            for call in calls(warmup, "warm ").values():
                call()
        # Interleaved, so drift on the machine affects every side alike.
        figures: dict[str, list[float]] = {name: [] for name in calls(0)}
        for n in range(args.requests):
            for name, call in calls(n).items():
                figures[name].append(timed(call))
    direct = figures.pop("direct google-genai")
    print(f"overhead benchmark: {args.requests} sequential requests each way, 1024x1024 PNG, emulator latency 0 ms")
    print(f"  {'direct google-genai':24}: {summary(direct)}")
    for name, through in figures.items():
        added_median = statistics.median(through) - statistics.median(direct)
        added_p95 = percentile(through, 0.95) - percentile(direct, 0.95)
        ratio = statistics.median(through) / statistics.median(direct)
        print(
            f"  {name:24}: {summary(through)}   {ratio:.2f}x, adds {added_median:.1f} ms (median) / "
            f"{added_p95:.1f} ms (p95)"
        )


if __name__ == "__main__":
    main()

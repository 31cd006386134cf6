"""What NanoClone adds to a Gemini call: POST /api/generate vs a direct google-genai call.

Same emulator, same image size (1K, 1:1), sequential requests. Prints median and p95 of both,
their ratio and the milliseconds NanoClone adds (key pool, database, file storage, thumbnail,
base64 answer).

    .venv/bin/python bench/overhead.py [--requests 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import requests
from google import genai
from google.genai import types

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import generate as api_generate
from bench.harness import percentile, stack, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    with stack() as app:
        client = genai.Client(
            api_key="emu-bench-direct",
            http_options=types.HttpOptions(base_url=app.emulator_url, api_version="v1beta", timeout=60_000),
        )
        config = types.GenerateContentConfig(
            response_modalities=["TEXT", "IMAGE"], image_config=types.ImageConfig(aspect_ratio="1:1", image_size="1K")
        )
        session = requests.Session()
        direct: list[float] = []
        through: list[float] = []
        for warmup in range(3):
            client.models.generate_content(model="gemini-3.1-flash-image", contents=f"warm {warmup}", config=config)
            api_generate(session, app, f"warm {warmup}", aspectRatio="1:1", resolution="1K")
        # Interleave, so drift on the machine affects both sides alike; distinct prompts, so
        # neither side benefits from content-addressed deduplication.
        for n in range(args.requests):
            started = time.perf_counter()
            client.models.generate_content(model="gemini-3.1-flash-image", contents=f"a lighthouse {n}", config=config)
            direct.append((time.perf_counter() - started) * 1000)
            through.append(api_generate(session, app, f"a lighthouse {n} ", aspectRatio="1:1", resolution="1K"))
    print(f"overhead benchmark: {args.requests} sequential requests each way, 1024x1024 PNG, emulator latency 0 ms")
    print(f"  direct google-genai : {summary(direct)}")
    print(f"  POST /api/generate  : {summary(through)}")
    added_median = statistics.median(through) - statistics.median(direct)
    added_p95 = percentile(through, 0.95) - percentile(direct, 0.95)
    print(f"  ratio (median)      : {statistics.median(through) / statistics.median(direct):.2f}x")
    print(f"  added by NanoClone  : {added_median:.1f} ms at the median, {added_p95:.1f} ms at p95")


if __name__ == "__main__":
    main()

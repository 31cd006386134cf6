"""CPU the Gemini emulator spends per image, so benchmarks know how much of the machine it takes.

Renders images in this process (no HTTP): `render_png` alone and the whole generateContent answer
(`generate`: the PNG, its base64, the response), for the benchmarks' short prompts and a long one.
Prints the median and p95 of CPU time (time.process_time) per image and the PNG's size.

    .venv/bin/python bench/emulator_render.py [--images 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import percentile
from keys.gemini.emulator import generate, render_png

LONG = "A lighthouse at dusk, waves crashing on the rocks below, gulls overhead and a storm coming in from the sea"


def cpu_ms(call: Callable[[int], object], count: int) -> list[float]:
    for n in range(20):  # warm: fonts, glyphs and backgrounds are made once
        call(-1 - n)
    timings = []
    for n in range(count):
        started = time.process_time()
        call(n)
        timings.append((time.process_time() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    caption = "Gemini emulator image · gemini-3.1-flash-image · 1:1 1K · 1024x1024"
    sizes: dict[str, int] = {}

    def render(prompt: Callable[[int], str], size: tuple[int, int]) -> Callable[[int], object]:
        def call(n: int) -> object:
            png = render_png(prompt(n), size, f"seed {n} {size}".encode(), None, caption)
            sizes[f"{size}"] = len(png)
            return png

        return call

    def answer(n: int) -> object:
        body = {
            "contents": [{"role": "user", "parts": [{"text": f"client {n} image {n}"}]}],
            "generationConfig": {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": {"imageSize": "1K"}},
        }
        return generate("gemini-3.1-flash-image", body)

    cases = {
        "1K, short prompt": render(lambda n: f"client {n} image {n}", (1024, 1024)),
        "1K, 105-char prompt": render(lambda n: f"{LONG} {n}", (1024, 1024)),
        "2K 16:9, short prompt": render(lambda n: f"client {n} image {n}", (2752, 1536)),
        "generateContent 1K": answer,
    }
    print(f"emulator render benchmark: {args.images} images per case, CPU time per image")
    for name, call in cases.items():
        timings = cpu_ms(call, args.images)
        print(f"  {name:24} median {statistics.median(timings):6.1f} ms   p95 {percentile(timings, 0.95):6.1f} ms")
    print(f"  PNG sizes (last image): {', '.join(f'{size} {count:,} bytes' for size, count in sizes.items())}")


if __name__ == "__main__":
    main()

"""Throughput under concurrency: N clients against `serve`, emulator latency 1000 ms.

Each client sends POST /api/generate back to back. The ideal is clients / latency images per
second (every request waiting only on Gemini); the ratio to it shows what queueing, the GIL,
the database and image storage cost. The clients start together on a cold server, so the first
seconds (--warmup) are run but not counted; their figures are printed apart.

    .venv/bin/python bench/concurrency.py [--clients 32 128] [--seconds 30] [--warmup 5] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import Stack, core_speed, cpu_seconds, generate, percentile, stack, summary

LATENCY_MS = 1000


def ratio(latencies: list[float]) -> float:
    return percentile(latencies, 0.95) / statistics.median(latencies)


@dataclass
class Run:
    latencies: list[float]  # ms, of the requests begun after the warm-up
    warmup: list[float]  # ms, of those begun during it (not counted)
    failures: int
    elapsed: float  # s, from the warm-up's end until the last request came back
    cpu_at_start: tuple[float, float]  # serve's and the emulator's CPU seconds at the warm-up's end
    reference_loop_ms: float  # how fast a core was meanwhile (harness.core_speed)


def run(app: Stack, clients: int, warmup: float, seconds: float, resolution: str) -> Run:
    """`clients` clients start together (a cold server, a synchronized burst), so the first
    `warmup` seconds are run but not counted: the figures are those of the load held."""
    latencies: list[float] = []
    warmup_latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    measuring = time.monotonic() + warmup
    deadline = measuring + seconds

    def client(number: int) -> None:
        nonlocal failures
        session = requests.Session()
        count = 0
        while (began := time.monotonic()) < deadline:
            try:
                elapsed = generate(session, app, f"client {number} image {count}", resolution=resolution)
            except (RuntimeError, requests.RequestException):
                with lock:
                    failures += 1
                continue
            finally:
                count += 1
            with lock:
                (latencies if began >= measuring else warmup_latencies).append(elapsed)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(max(0.0, measuring - time.monotonic()))
    cpu_at_start = cpu_seconds(app.app_pid), cpu_seconds(app.emulator_pid)
    with core_speed() as speed:
        for thread in threads:
            thread.join()
    elapsed = time.monotonic() - measuring
    return Run(latencies, warmup_latencies, failures, elapsed, cpu_at_start, statistics.median(speed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--seconds", type=float, default=30, help="measured, after the warm-up")
    parser.add_argument("--warmup", type=float, default=5, help="seconds run first and not counted")
    parser.add_argument("--resolution", default="1K", help="1K (1024x1024) or 512 (512x512, lighter on the emulator)")
    parser.add_argument("--workers", type=int, default=1, help="web server processes (NANOCLONE_WEB_WORKERS)")
    args = parser.parse_args()
    size = {"512": "512x512"}.get(args.resolution, "1024x1024")
    print(
        f"concurrency benchmark: emulator latency {LATENCY_MS} ms, {size} PNGs, {args.workers} web process(es), "
        f"{args.warmup:.0f} s warm-up then {args.seconds:.0f} s measured per run"
    )
    for clients in args.clients:
        with stack(
            emulator_latency_ms=LATENCY_MS, keys=8, web_threads=max(64, clients), web_workers=args.workers
        ) as app:
            result = run(app, clients, args.warmup, args.seconds, args.resolution)
            done = len(result.latencies)
            app_cpu, emulator_cpu = (
                (cpu_seconds(pid) - before) * 1000 / max(done, 1)
                for pid, before in zip((app.app_pid, app.emulator_pid), result.cpu_at_start, strict=True)
            )
        rate = done / result.elapsed
        ideal = clients / (LATENCY_MS / 1000)
        print(
            f"  {clients:4d} clients: {rate:6.1f} images/s (ideal {ideal:.0f}/s, ratio {rate / ideal:.2f})   "
            f"{summary(result.latencies)}   p95/median {ratio(result.latencies):.2f}   failures {result.failures}"
        )
        if result.warmup:
            print(f"        warm-up, not counted: {len(result.warmup)} images, {summary(result.warmup)}")
            everything = result.warmup + result.latencies
            print(f"        warm-up and measured together: {summary(everything)}   p95/median {ratio(everything):.2f}")
        print(
            f"        CPU per image: NanoClone server {app_cpu:.1f} ms, emulator {emulator_cpu:.1f} ms "
            f"(the machine has {os.cpu_count()} cores for server, emulator and these clients together)"
        )
        print(f"        a core's speed meanwhile: reference loop {result.reference_loop_ms:.1f} ms (median)")


if __name__ == "__main__":
    main()

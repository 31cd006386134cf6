"""Throughput under concurrency: N clients against `serve`, emulator latency 1000 ms.

Each client sends POST /api/generate back to back. The ideal is clients / latency images per
second (every request waiting only on Gemini); the ratio to it shows what queueing, the GIL,
the database and image storage cost.

    .venv/bin/python bench/concurrency.py [--clients 32 128] [--seconds 15]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import cpu_seconds, generate, stack, summary

LATENCY_MS = 1000


def run(app: object, clients: int, seconds: float, resolution: str) -> tuple[int, float, list[float], int]:
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client(number: int) -> None:
        nonlocal failures
        session = requests.Session()
        count = 0
        while time.monotonic() < deadline:
            try:
                elapsed = generate(session, app, f"client {number} image {count}", resolution=resolution)  # type: ignore[arg-type]
            except (RuntimeError, requests.RequestException):
                with lock:
                    failures += 1
                continue
            finally:
                count += 1
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies), time.monotonic() - started, latencies, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--resolution", default="1K", help="1K (1024x1024) or 512 (512x512, lighter on the emulator)")
    parser.add_argument("--workers", type=int, default=1, help="web server processes (NANOCLONE_WEB_WORKERS)")
    args = parser.parse_args()
    size = {"512": "512x512"}.get(args.resolution, "1024x1024")
    print(
        f"concurrency benchmark: emulator latency {LATENCY_MS} ms, {size} PNGs, {args.workers} web process(es), "
        f"{args.seconds:.0f} s per run"
    )
    for clients in args.clients:
        with stack(
            emulator_latency_ms=LATENCY_MS, keys=8, web_threads=max(64, clients), web_workers=args.workers
        ) as app:
            cpu_before = cpu_seconds(app.app_pid), cpu_seconds(app.emulator_pid)
            done, elapsed, latencies, failures = run(app, clients, args.seconds, args.resolution)
            app_cpu, emulator_cpu = (
                (cpu_seconds(pid) - before) * 1000 / max(done, 1)
                for pid, before in zip((app.app_pid, app.emulator_pid), cpu_before, strict=True)
            )
        rate = done / elapsed
        ideal = clients / (LATENCY_MS / 1000)
        print(
            f"  {clients:4d} clients: {rate:6.1f} images/s (ideal {ideal:.0f}/s, ratio {rate / ideal:.2f})   "
            f"{summary(latencies)}   failures {failures}"
        )
        print(
            f"        CPU per image: NanoClone server {app_cpu:.1f} ms, emulator {emulator_cpu:.1f} ms "
            f"(the machine has {os.cpu_count()} cores for server, emulator and these clients together)"
        )


if __name__ == "__main__":
    main()

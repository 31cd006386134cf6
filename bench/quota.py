"""How much of a pool's real capacity NanoClone serves when Gemini's quotas bite (per day, per
minute, per model, per project), against the emulator through `serve`.

For each scenario it prints the images served / the pool's real capacity, the requests that failed
while a key was usable, and the upstream calls wasted on spent quota (429s).

    .venv/bin/python bench/quota.py [--window 6] [--windows 6] [--latency-ms 3000] [--only minute]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import Stack, stack


def post(app: Stack, prompt: str, **fields: Any) -> int:
    response = requests.post(
        f"{app.app_url}/api/generate",
        json={"prompt": prompt, **fields},
        headers={"Authorization": f"Bearer {app.token}"},
        timeout=180,
    )
    return response.status_code


def wasted(app: Stack) -> int:
    log = requests.get(f"{app.emulator_url}/emulator/requests", timeout=10).json()["requests"]
    return sum(1 for entry in log if entry["status"] == 429)


def report(name: str, served: int, capacity: int, failed_usable: int, wasted_calls: int, goal: str) -> None:
    print(
        f"  {name:<38} served {served:>3} / capacity {capacity:>3} = {served / capacity:5.2f}   "
        f"failed while a key was usable: {failed_usable}   wasted calls: {wasted_calls}   ({goal})"
    )


def daily_pool() -> None:
    tag = uuid.uuid4().hex[:6]
    with stack(secrets={f"emu-quota5-{tag}-{n}": "" for n in range(3)}) as app:
        statuses = [post(app, f"daily {n}") for n in range(20)]
        served = statuses.count(200)
        # Every 503 came after the pool's 15 were served: none while a key had quota left.
        failed_usable = sum(1 for n, status in enumerate(statuses) if status != 200 and n < 15)
        report("daily pool (3 keys x 5/day)", served, 15, failed_usable, wasted(app), "goal: = capacity, <= 3 wasted")


def per_minute(name: str, secrets: dict[str, str], per_window: int, args: argparse.Namespace, hosts: int = 1) -> None:
    """One request a slot of the pool's per-minute capacity, for `args.windows` windows (one a second
    for 36 s by default), spread over `hosts` serve processes on one database; each Gemini call takes
    `args.latency_ms`."""
    window, windows = args.window, args.windows
    rate = per_window / window
    total = int(windows * per_window)
    statuses: list[int] = []
    lock = threading.Lock()

    with stack(
        secrets=secrets,
        emulator_args=("--minute-seconds", str(window)),
        hosts=hosts,
        emulator_latency_ms=args.latency_ms,
        serve_env={"NANOCLONE_QUOTA_MINUTE_SECONDS": str(window)},  # the pool's minute is Gemini's
    ) as app:
        urls = app.app_urls or (app.app_url,)

        def one(n: int) -> None:
            status = post(replace(app, app_url=urls[n % len(urls)]), f"minute {n}")
            with lock:
                statuses.append(status)

        threads = []
        started = time.monotonic()
        for n in range(total):
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
            thread = threading.Thread(target=one, args=(n,))
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        windows_touched = int((time.monotonic() - started) // window) + 1
        capacity = min(total, windows_touched * per_window)
        served = statuses.count(200)
        report(name, served, capacity, statuses.count(503), wasted(app), "goal: >= 0.95, 0 failed")
        log = requests.get(f"{app.emulator_url}/emulator/requests", timeout=10).json()["requests"]
        refused: dict[tuple[str, int], int] = {}
        for entry in log:
            if entry["status"] == 429:
                at = dt.datetime.fromisoformat(entry["time"]).timestamp()
                scope = secrets.get(next(s for s in secrets if s.endswith(entry["key_suffix"]))) or entry["key_suffix"]
                refused[(scope, int(at // window))] = refused.get((scope, int(at // window)), 0) + 1
        scopes = len(set(secrets.values()) - {""}) or len(secrets)
        print(
            f"  {'':<38} refused upstream calls {sum(refused.values())} in {len(refused)} (scope, window) pairs,"
            f" at most {max(refused.values(), default=0)} in one; one per scope and window would be"
            f" {scopes * windows_touched}"
        )


def per_minute_pool(args: argparse.Namespace) -> None:
    tag = uuid.uuid4().hex[:6]
    secrets = {f"emu-rpm2-{tag}-{n}": "" for n in range(3)}
    per_minute(f"per-minute pool (3 keys x 2/{args.window:g} s)", secrets, 3 * 2, args)


def per_minute_projects(args: argparse.Namespace, hosts: int = 1) -> None:
    """Two projects of three keys each; the per-minute quota (2 a window) is the project's."""
    secrets = {
        f"emu-rpm2-p{name}{tag}-{n}": f"project-{name}"
        for name in "AB"
        for tag in [uuid.uuid4().hex[:4]]
        for n in range(3)
    }
    where = f", {hosts} hosts" if hosts > 1 else ""
    per_minute(f"2 projects x 3 keys (2/{args.window:g} s each{where})", secrets, 2 * 2, args, hosts)


def free_tier_meets_pro() -> None:
    tag = uuid.uuid4().hex[:6]
    with stack(secrets={f"emu-free-{tag}-{n}": "" for n in range(2)}) as app:
        post(app, "a portrait", model="nano-banana-pro")  # no free tier for Pro: 429, limit 0
        statuses = [post(app, f"flash {n}") for n in range(10)]
        report(
            "free tier meeting Pro, then 10 Flash",
            statuses.count(200),
            10,
            10 - statuses.count(200),
            wasted(app),
            "goal: every Flash request served",
        )


def two_projects() -> None:
    secrets = {
        f"emu-quota2-p{name}{tag}-{n}": f"project-{name}"
        for name in "AB"
        for tag in [uuid.uuid4().hex[:4]]
        for n in range(3)
    }
    with stack(secrets=secrets) as app:
        statuses = [post(app, f"project {n}") for n in range(8)]
        served = statuses.count(200)
        failed_usable = sum(1 for n, status in enumerate(statuses) if status != 200 and n < 4)
        report("two projects of 3 keys (2/day each)", served, 4, failed_usable, wasted(app), "goal: <= 2 wasted")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=6.0, help="the emulator's per-minute window, seconds")
    parser.add_argument("--windows", type=int, default=6, help="how many windows the per-minute run spans")
    parser.add_argument("--latency-ms", type=int, default=0, help="the emulator's time per call (per-minute runs)")
    parser.add_argument("--only", choices=["minute"], help="only the per-minute scenarios")
    args = parser.parse_args()
    print("quota benchmark: the pool's real capacity vs what NanoClone served")
    if not args.only:
        daily_pool()
    per_minute_pool(args)
    per_minute_projects(args)
    per_minute_projects(args, hosts=2)
    if not args.only:
        free_tier_meets_pro()
        two_projects()


if __name__ == "__main__":
    main()

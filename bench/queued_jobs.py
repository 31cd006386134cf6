"""Queued jobs through `serve`'s own django-q2 cluster: throughput and server CPU per job.

Starts an emulator (--latency-ms, default 0) and `serve` with its cluster as a user runs it,
submits --jobs jobs at once through the jobs API (POST /api/images/generate, 1024x1024 PNG) and watches
the database until every one has succeeded. Prints jobs/s from the first POST to the last
completion, and the CPU that serve's whole process tree (web and cluster) used per job.
Extra environment for serve comes from the command line, to compare cluster settings:

    .venv/bin/python bench/queued_jobs.py [--jobs 200] [--latency-ms 0] [--quality standard] \
        [NANOCLONE_CLUSTER=processes ...]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import cpu_seconds, stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=0)
    # standard: Gemini's 1K image is what the door delivers; high renders 2K and scales it down.
    parser.add_argument("--quality", default="standard", choices=["standard", "high", "ultra"])
    parser.add_argument("env", nargs="*", help="NAME=value settings for serve")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    with stack(emulator_latency_ms=args.latency_ms, keys=8, cluster=True, serve_env=extra) as app:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {app.token}"
        time.sleep(8)  # the cluster's workers start after the web server
        cpu_before, started = cpu_seconds(app.app_pid), time.monotonic()

        def submit(n: int) -> None:
            answer = session.post(
                f"{app.app_url}/api/images/generate",
                json={"prompt": f"queued {n}", "quality": args.quality},
                timeout=60,
            )
            answer.raise_for_status()

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(submit, range(args.jobs)))
        # Watched in serve's SQLite file, so that polling costs serve nothing.
        database = sqlite3.connect(Path(app.env["NANOCLONE_DATA_DIR"]) / "nanoclone.sqlite3")
        while True:
            states = dict(database.execute("SELECT state, count(*) FROM conversations_job GROUP BY state").fetchall())
            if states.get("failed"):
                raise RuntimeError(f"{states['failed']} job(s) failed")
            if states.get("succeeded", 0) == args.jobs:
                break
            time.sleep(0.05)
        elapsed, cpu = time.monotonic() - started, cpu_seconds(app.app_pid) - cpu_before
        setup = " ".join(args.env) or "(defaults)"
        print(
            f"serve {setup}: {args.jobs} jobs, emulator latency {args.latency_ms} ms: "
            f"{args.jobs / elapsed:5.1f} jobs/s, server CPU {cpu / args.jobs * 1000:5.1f} ms per job"
        )


if __name__ == "__main__":
    main()

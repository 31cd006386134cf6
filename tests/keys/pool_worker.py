"""A tiny Django program for the key-pool concurrency tests, run as a subprocess.

It migrates the configured database (a SQLite file in WAL mode under NANOCLONE_DATA_DIR, or
PostgreSQL when DATABASE_URL is set), fills the pool with keys of the given daily limits, then
forks worker processes whose threads all call pool.acquire() at once until the pool says no,
as `serve`'s web threads and django-q2's worker processes do. Prints one JSON line: what each
worker took, any error, and each key's counters afterwards.

    pool_worker.py --limits 40 25 15 --processes 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "nanoclone.settings")

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402

from keys import pool  # noqa: E402
from keys.models import ApiKey  # noqa: E402


def seed(limits: list[int]) -> None:
    call_command("migrate", verbosity=0)  # a fresh SQLite file; a no-op on the already migrated test database
    ApiKey.objects.all().delete()
    for n, limit in enumerate(limits):
        ApiKey.create(f"emu-ok-hammer-{n:04d}", daily_limit=limit)


def hammer(threads: int, start: Any, results: Any) -> None:
    """One worker process: `threads` threads acquiring until the pool is empty."""
    taken: Counter[int] = Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            connection.ensure_connection()  # connect before the start line, not in the race
            start.wait()
            while True:
                try:
                    lease = pool.acquire()
                except pool.NoUsableKey as none:
                    if "too busy" in none.message:  # gave up under contention: the test must see it
                        with lock:
                            errors.append(none.message)
                    return
                with lock:
                    taken[lease.key_id] += 1
        except Exception as error:  # a database error must fail the test, not vanish with the thread
            with lock:
                errors.append(f"{type(error).__name__}: {error}")
        finally:
            connection.close()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put({"taken": {str(key_id): n for key_id, n in taken.items()}, "errors": errors})


def state() -> dict[str, Any]:
    return {
        str(key.pk): {
            "limit": key.daily_limit,
            "used_today": key.used_today,
            "total": key.total_count,
        }
        for key in ApiKey.objects.all()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limits", type=int, nargs="+", required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    seed(args.limits)
    # Forked after setup, so the workers skip Django's start-up; no connection may cross the fork.
    connections.close_all()
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(args.processes * args.threads), context.Queue()
    workers = [context.Process(target=hammer, args=(args.threads, start, results)) for _ in range(args.processes)]
    for worker in workers:
        worker.start()
    taken = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join()
    print(json.dumps({"workers": taken, "keys": state()}))


if __name__ == "__main__":
    main()

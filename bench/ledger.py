"""What the usage ledger adds per image: pool.report() of a generation's call (one INSERT of its
ledger row, its price from the cached table, its Prometheus counters) against the same report
without a ledger row, on a real SQLite database in a throwaway data directory (WAL, as served).
Also the budget check submit() makes for a user with a budget (one SELECT over the ledger).

    .venv/bin/python bench/ledger.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="nanoclone-bench-ledger-")
    os.environ.update(NANOCLONE_DATA_DIR=data_dir, DJANGO_SETTINGS_MODULE="nanoclone.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from keys import budgets, pool
    from keys.models import ApiKey, Budget, UsageRecord

    call_command("migrate", interactive=False, verbosity=0)
    key = ApiKey.create("emu-bench-ledger", label="bench")
    user = get_user_model().objects.create_user("bench")
    plain = pool.Lease(key.pk, key.masked, "", "", model="gemini-nano-banana-2.1")
    caller = pool.Caller(user.pk, "api", "00000000-0000-0000-0000-000000000000", "1K")
    ledgered = pool.Lease(key.pk, key.masked, "", "", model="gemini-nano-banana-2.1", caller=caller)
    used = pool.CallUsage(images=1, prompt_tokens=12, output_tokens=1130, latency_ms=4200)

    def per_call_ms(call: Callable[[], object], n: int) -> list[float]:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            call()
            times.append((time.perf_counter() - started) * 1000)
        return times

    for _ in range(200):  # warm up: connection, price cache, statement caches
        pool.report(ledgered, None, used)
        pool.report(plain)
    # Interleaved rounds, so drift on the machine affects both sides alike.
    with_ledger: list[float] = []
    without: list[float] = []
    for _ in range(10):
        with_ledger += per_call_ms(lambda: pool.report(ledgered, None, used), args.calls // 10)
        without += per_call_ms(lambda: pool.report(plain), args.calls // 10)
    Budget.objects.create(user=user, images_per_day=1_000_000)
    budget_check = per_call_ms(lambda: budgets.allowance(user.pk), 500)
    no_budget = per_call_ms(lambda: budgets.allowance(user.pk + 1), 500)

    def show(values: list[float]) -> str:
        ordered = sorted(values)
        return f"median {statistics.median(values):.3f} ms, p95 {ordered[int(len(ordered) * 0.95)]:.3f} ms"

    added = statistics.median(with_ledger) - statistics.median(without)
    rows = UsageRecord.objects.count()
    print(f"ledger benchmark: {args.calls} reports each way, SQLite (WAL) in {data_dir}, {rows} ledger rows at the end")
    print(f"  pool.report without a ledger row : {show(without)}")
    print(f"  pool.report with its ledger row  : {show(with_ledger)}")
    print(f"  the ledger adds per image        : {added:.3f} ms (median)")
    print(f"  budget check, user with a budget : {show(budget_check)}  ({rows} rows in the ledger)")
    print(f"  budget check, user without one   : {show(no_budget)}")
    shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

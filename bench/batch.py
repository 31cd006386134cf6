"""Jobs at the Batch API's price, 1,000 of them: what NanoClone's own work costs per job (CPU seconds
and database queries of this process, the emulator running in another), and how long from Google's
batch ending to every job finished (images stored, ledger rows written, jobs succeeded).

The jobs are submitted as the doors submit them (pipeline.start, queued), packed and sent by the
batch thread's tick(), then collected once the emulator's batches end. SQLite in WAL mode in a
throwaway data directory, as served.

    .venv/bin/python bench/batch.py [--jobs 1000] [--batch-seconds 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.harness import free_port, wait_for  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--batch-seconds", type=float, default=20.0, help="the emulator's batch turnaround")
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="nanoclone-bench-batch-")
    port = free_port()
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from keys.gemini.emulator import GeminiEmulator;"
            f"GeminiEmulator(port={port}, batch_seconds={args.batch_seconds}).serve_forever()",
        ],
        cwd=ROOT,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/emulator/requests")
        run(args, data_dir, f"http://127.0.0.1:{port}")
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


def run(args: argparse.Namespace, data_dir: str, emulator_url: str) -> None:
    os.environ.update(
        NANOCLONE_DATA_DIR=data_dir,
        DJANGO_SETTINGS_MODULE="nanoclone.settings",
        NANOCLONE_BATCH_GATHER_SECONDS="0",
        NANOCLONE_BATCH_POLL_SECONDS="0.5",
        NANOCLONE_BATCH_POLL_MAX_SECONDS="0.5",
    )
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from conversations import pipeline
    from conversations.models import Batch, Job
    from conversations.pipeline import batches
    from keys.models import ApiKey, UsageRecord

    call_command("migrate", interactive=False, verbosity=0)
    ApiKey.create("emu-bench-batch-1", base_url=emulator_url)
    ApiKey.create("emu-bench-batch-2", base_url=emulator_url)
    user = get_user_model().objects.create_user("bench")

    def measured(step: str, work: Callable[[], object]) -> None:
        queries = 0

        def counted(execute: Callable[..., object], *rest: object) -> object:
            nonlocal queries
            queries += 1
            return execute(*rest)

        cpu, wall = time.process_time(), time.perf_counter()
        with connection.execute_wrapper(counted):
            work()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"  {step:<30}: {cpu / args.jobs * 1000:6.2f} ms CPU and {queries / args.jobs:5.1f} queries per job"
            f" ({wall:.1f} s in all)"
        )

    print(f"batch benchmark: {args.jobs} jobs of 1 image, 2 AI Studio keys, SQLite (WAL) in {data_dir}")

    def submit() -> None:
        for number in range(args.jobs):
            request = pipeline.GenerationRequest(
                user=user, prompt=f"catalogue item {number}", source="jobs", priority=Job.Priority.BATCH
            )
            pipeline.start(request, pipeline.RunMode.QUEUE)

    measured("submitted (pipeline.start)", submit)
    measured("packed and sent (tick)", batches.tick)
    sent = list(Batch.objects.values_list("items", flat=True))
    print(f"  {len(sent)} batches at Google, of {sorted(sent)} requests")

    def collect() -> None:
        while Job.objects.filter(state=Job.State.RUNNING).exists():
            batches.tick()

    time.sleep(args.batch_seconds)  # Google's batches end; the next ticks poll and collect them
    first_poll = time.perf_counter()
    measured("polled and collected (tick)", collect)
    finished = time.perf_counter()
    succeeded = Job.objects.filter(state=Job.State.SUCCEEDED).count()
    rows = UsageRecord.objects.filter(tier="batch").count()
    print(f"  from the batches' end to every job finished: {finished - first_poll:.1f} s")
    print(f"  {succeeded} jobs succeeded, {rows} ledger rows at the batch tier")


if __name__ == "__main__":
    main()

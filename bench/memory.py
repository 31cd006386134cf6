"""Memory of `serve` (web process and django-q2 cluster): idle, and with 128 requests in flight.

Starts an emulator (latency 1000 ms) and `serve` with its cluster, as a user runs it, in a throwaway
data directory; measures every process of serve's tree from /proc: RSS summed (what `ps` adds up)
and PSS (shared pages divided among the processes that share them: what the machine really gives).
Extra environment for serve comes from the command line, to measure what a setting buys:

    .venv/bin/python bench/memory.py [--clients 128] [NANOCLONE_Q_WORKERS=2 ...]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import generate, stack


def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def breakdown(root: int) -> list[str]:
    """One line per process: RSS and PSS in MiB, and what it runs (django-q2 names its processes)."""
    lines = []
    for pid in tree(root):
        try:
            rollup = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[-60:]
        except OSError:
            continue
        rss, pss = (int(rollup[name].split()[0]) / 1024 for name in ("Rss", "Pss"))
        lines.append(f"      {rss:6.0f} {pss:6.0f}  {command}")
    return lines


def memory(root: int) -> tuple[float, float, int]:
    """MiB of RSS summed, MiB of PSS summed, and the number of processes."""
    rss = pss = 0
    pids = tree(root)
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue
    return rss / 1024, pss / 1024, len(pids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("env", nargs="*", help="NAME=value settings for serve")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    with stack(
        emulator_latency_ms=1000, keys=8, web_threads=max(64, args.clients), cluster=True, serve_env=extra
    ) as app:
        time.sleep(8)  # the cluster's workers start after the web server
        serve = app.app_pid
        rss, pss, count = memory(serve)
        setup = " ".join(args.env) or "(defaults)"
        print(f"serve {setup}: idle {rss:6.0f} MiB RSS summed, {pss:6.0f} MiB PSS, {count} processes")
        print("\n".join(breakdown(serve)))
        deadline = time.monotonic() + args.seconds
        peak = [0.0, 0.0]

        def client(n: int) -> None:
            session = requests.Session()
            while time.monotonic() < deadline:
                with contextlib.suppress(RuntimeError, requests.RequestException):
                    generate(session, app, f"memory {n} {time.monotonic()}")

        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            rss, pss, count = memory(serve)
            peak = [max(peak[0], rss), max(peak[1], pss)]
            time.sleep(0.5)
        print(f"    {args.clients} clients in flight: peak {peak[0]:6.0f} MiB RSS summed, {peak[1]:6.0f} MiB PSS")


if __name__ == "__main__":
    main()

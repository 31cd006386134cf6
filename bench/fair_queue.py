"""The queue: background generations against synchronous ones, fairness between users, memory.

Starts an emulator (--latency-ms, default 2000: a Gemini call's seconds) and `serve` with its cluster
as a user runs it (4 keys), then:

1. burst: N jobs submitted at once through the jobs API (POST /api/images/generate, 1024x1024 PNG at
   quality standard: the same 1K image as POST /api/generate makes), timed from the
   first POST until every job has succeeded, against the same N through POST /api/generate from N
   clients at once; for each --burst N. Prints both times, their ratio and the peak RSS of serve's
   process tree (web and cluster) while the jobs ran.
2. two users: user A submits --a-jobs jobs at once; meanwhile user B, signed in to the chat (its
   default queue mode), sends --turns prompts a few seconds apart. Prints how long each of B's turns
   waited to be claimed (its job's started_at - created_at, read from serve's database) and how long
   A's jobs took to drain.

    .venv/bin/python bench/fair_queue.py [--burst 64 256] [--a-jobs 500] [--turns 5] [--latency-ms 2000] \
        [NANOCLONE_GENERATIONS=64 ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sqlite3
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import Stack, manage, stack
from bench.memory import memory


class Database:
    """serve's database, read directly so that watching costs serve nothing: its SQLite file, or the
    PostgreSQL server of DATABASE_URL. Queries use `?` for parameters."""

    def __init__(self, app: Stack) -> None:
        url = app.env.get("DATABASE_URL", "")
        if url:
            import psycopg

            self.connection: Any = psycopg.connect(url, autocommit=True)
            self.marker = "%s"
        else:
            path = Path(app.env["NANOCLONE_DATA_DIR"]) / "nanoclone.sqlite3"
            self.connection = sqlite3.connect(path, timeout=30)
            self.marker = "?"

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        return list(self.connection.execute(sql.replace("?", self.marker), params).fetchall())


def seconds(later: Any, earlier: Any) -> float:
    """later - earlier, in seconds: datetimes from PostgreSQL, ISO text from SQLite."""
    if isinstance(later, str):
        later, earlier = dt.datetime.fromisoformat(later), dt.datetime.fromisoformat(earlier)
    return float((later - earlier).total_seconds())


def database(app: Stack) -> Database:
    return Database(app)


def finished(db: Database, user: str) -> tuple[int, int]:
    """(succeeded, failed) jobs of a user."""
    rows = db.rows(
        "SELECT j.state, count(*) FROM conversations_job j JOIN auth_user u ON u.id = j.user_id"
        " WHERE u.username = ? GROUP BY j.state",
        user,
    )
    states: dict[str, int] = dict(rows)
    return states.get("succeeded", 0), states.get("failed", 0)


class PeakMemory:
    """The largest RSS of serve's process tree, sampled every 0.2 s while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.running = pid, 0.0, True
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, memory(self.pid)[0])
            time.sleep(0.2)

    def __enter__(self) -> PeakMemory:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.running = False
        self.thread.join()


def submit(session: requests.Session, app: Stack, prompts: list[str]) -> None:
    def one(prompt: str) -> None:
        # standard: Gemini's 1K image is what the door delivers, the same work as POST /api/generate's.
        body = {"prompt": prompt, "quality": "standard"}
        answer = session.post(f"{app.app_url}/api/images/generate", json=body, timeout=120)
        if answer.status_code != 202:
            raise RuntimeError(f"{answer.status_code}: {answer.text[:300]}")

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, prompts))


def drain(db: Database, user: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (done := finished(db, user)) != (count, 0):
        if done[1]:
            raise RuntimeError(f"{done[1]} job(s) failed")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done[0]} of {count} jobs done after {timeout} s")
        time.sleep(0.05)


def burst(app: Stack, n: int, round_number: int) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {app.token}"
    db = database(app)
    before = finished(db, "bench")[0]
    with PeakMemory(app.app_pid) as peak:
        started = time.monotonic()
        submit(session, app, [f"burst {round_number} job {k}" for k in range(n)])
        submitted = time.monotonic() - started
        drain(db, "bench", before + n, timeout=n * 10)
        queued = time.monotonic() - started
    newest = db.rows("SELECT started_at, created_at FROM conversations_job ORDER BY created_at DESC LIMIT ?", n)
    claimed = seconds(max(row[0] for row in newest), min(row[1] for row in newest))
    # The same N through the synchronous door, N clients at once.
    started = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        answers = list(
            pool.map(
                lambda k: session.post(
                    f"{app.app_url}/api/generate", json={"prompt": f"burst {round_number} sync {k}"}, timeout=600
                ),
                range(n),
            )
        )
    synchronous = time.monotonic() - started
    failed = [answer.status_code for answer in answers if answer.status_code != 200]
    print(
        f"  burst of {n:4d}: jobs API {queued:6.1f} s (all sent {submitted:4.1f} s, all claimed {claimed:4.1f} s "
        f"after the first was sent), POST /api/generate {synchronous:6.1f} s "
        f"(ratio {queued / synchronous:4.2f}); peak RSS {peak.peak:5.0f} MiB"
        + (f"; {len(failed)} sync requests failed: {failed[:3]}" if failed else "")
    )


def chat_session(app: Stack, username: str, password: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{app.app_url}/accounts/login/", timeout=30)
    session.post(
        f"{app.app_url}/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        headers={"Referer": f"{app.app_url}/accounts/login/"},
        timeout=30,
    )
    session.get(f"{app.app_url}/", timeout=30)  # a fresh CSRF cookie for the signed-in session
    return session


def two_users(app: Stack, a_jobs: int, turns: int, latency_s: float) -> None:
    manage(
        app.env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model;"
        "get_user_model().objects.create_user('watcher', password='watcher-password')",
    )
    watcher = chat_session(app, "watcher", "watcher-password")
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {app.token}"
    db = database(app)
    before = finished(db, "bench")[0]
    started = time.monotonic()
    submit(session, app, [f"backlog job {k}" for k in range(a_jobs)])
    waits = []
    for turn in range(turns):
        headers = {
            "X-CSRFToken": watcher.cookies["csrftoken"] or "",
            "HX-Request": "true",
            "Referer": f"{app.app_url}/",
        }
        sent = watcher.post(
            f"{app.app_url}/c/send", data={"prompt": f"watched turn {turn}"}, headers=headers, timeout=60
        )
        job_id = re.search(r'id="answer-([0-9a-f-]{36})"', sent.text)
        if job_id is None:
            raise RuntimeError(f"the chat did not start a turn: {sent.status_code} {sent.text[:300]}")
        hex_id = job_id.group(1).replace("-", "")
        deadline = time.monotonic() + 600
        while True:
            found = db.rows(
                "SELECT started_at, created_at FROM conversations_job WHERE id = ? AND started_at IS NOT NULL",
                job_id.group(1) if db.marker == "%s" else hex_id,
            )
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        waits.append(seconds(*found[0]) if found else float("inf"))
        time.sleep(latency_s * 1.5)
    drain(db, "bench", before + a_jobs, timeout=a_jobs * 10)
    print(
        f"  user A's {a_jobs} jobs drained in {time.monotonic() - started:6.1f} s; user B's {turns} chat turns "
        f"waited {', '.join(f'{wait:.2f}' for wait in waits)} s to be claimed "
        f"(median {statistics.median(waits):.2f} s, worst {max(waits):.2f} s; one upstream call: {latency_s:g} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, nargs="*", default=[64, 256])
    parser.add_argument("--a-jobs", type=int, default=500)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--latency-ms", type=int, default=2000)
    parser.add_argument("env", nargs="*", help="NAME=value settings for serve")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    with stack(emulator_latency_ms=args.latency_ms, keys=4, cluster=True, serve_env=extra) as app:
        time.sleep(8)  # the cluster's workers start after the web server
        print(f"serve {' '.join(args.env) or '(defaults)'}, upstream {args.latency_ms} ms, 4 keys:")
        for number, n in enumerate(args.burst):
            burst(app, n, number)
        if args.a_jobs:
            two_users(app, args.a_jobs, args.turns, args.latency_ms / 1000)


if __name__ == "__main__":
    main()

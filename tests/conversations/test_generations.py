"""Background generations on a real `serve` and its in-process cluster: many wait on Gemini at once in
one process (far more than the cluster's two workers), and a burst cut off by kill -9 of every
process completes after a restart, each job once."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sqlite3
from pathlib import Path

import pytest
import requests

from tests.conftest import wait_until
from tests.nanoclone.test_serve import Serve, cluster_up, serve, stopped

pytestmark = pytest.mark.cluster


def submit(running: Serve, count: int, prefix: str) -> list[str]:
    headers = {"Authorization": f"Bearer {running.token()}"}
    jobs = []
    for n in range(count):
        body = {"prompt": f"{prefix} {n}", "size": "512x512", "quality": "standard"}
        answer = requests.post(f"{running.url}/api/images/generate", json=body, headers=headers, timeout=30)
        assert answer.status_code == 202, answer.text
        jobs.append(answer.json()["job_id"].removeprefix("img_"))
    return jobs


def rows(data_dir: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(data_dir / "nanoclone.sqlite3", timeout=20) as db:
        return db.execute(sql, params).fetchall()


def states(data_dir: Path, jobs: list[str]) -> dict[str, int]:
    marks = ", ".join("?" * len(jobs))
    found = rows(data_dir, f"SELECT state, count(*) FROM conversations_job WHERE id IN ({marks}) GROUP BY state", *jobs)
    return {str(state): int(str(count)) for state, count in found}


def emulator_log(running: Serve) -> list[dict[str, object]]:
    url = re.search(r"offline Gemini emulator at (http://\S+)", running.text).group(1)  # type: ignore[union-attr]
    return list(requests.get(f"{url}/emulator/requests", timeout=10).json()["requests"])


def test_many_background_generations_wait_on_gemini_at_once_in_one_process(tmp_path: Path) -> None:
    # Two cluster workers, each call 3 s: sixteen jobs run side by side, not two at a time.
    with serve(tmp_path, latency_ms=3000, environment={"NANOCLONE_GENERATIONS": "16"}) as running:
        cluster_up(running)
        jobs = submit(running, 16, "side by side")
        wait_until(lambda: states(tmp_path, jobs).get("succeeded") == 16, 60, "every job to succeed")
        arrivals = sorted(dt.datetime.fromisoformat(str(call["time"])) for call in emulator_log(running))
        assert len(arrivals) == 16
        # Every call arrived before the first one was answered: all sixteen were in flight together.
        assert (arrivals[-1] - arrivals[0]).total_seconds() < 3.0
        assert rows(tmp_path, "SELECT DISTINCT attempts FROM conversations_job") == [(1,)]  # each ran once


def test_a_burst_cut_off_by_kill_9_completes_after_a_restart_each_job_once(tmp_path: Path) -> None:
    lease = {"NANOCLONE_JOB_LEASE_SECONDS": "4", "NANOCLONE_GENERATIONS": "8"}
    with serve(tmp_path, latency_ms=2500, environment=lease) as running:
        cluster_up(running)
        jobs = submit(running, 20, "cut off")
        wait_until(lambda: states(tmp_path, jobs).get("running") == 8, 30, "eight jobs to be running")
        for proc in running.look():  # every process of serve, at once: nothing finishes its work
            os.kill(proc.pid, signal.SIGKILL)
        stopped(running, 10)
    assert states(tmp_path, jobs).get("succeeded", 0) < 20
    with serve(tmp_path, latency_ms=500, environment=lease) as again:
        cluster_up(again)
        wait_until(lambda: states(tmp_path, jobs).get("succeeded") == 20, 90, "every job to succeed after the restart")
        os.kill(again.process.pid, signal.SIGTERM)
        assert stopped(again, 30) == 0
    marks = ", ".join("?" * len(jobs))
    outputs = rows(
        tmp_path,
        f"SELECT job_id, count(*) FROM gallery_image WHERE role = 'output' AND job_id IN ({marks}) GROUP BY job_id",
        *jobs,
    )
    assert len(outputs) == 20 and {count for _, count in outputs} == {1}  # one image each, none twice
    answers = rows(
        tmp_path,
        f"SELECT count(*) FROM conversations_message m JOIN conversations_job j ON j.assistant_message_id = m.id"
        f" WHERE j.id IN ({marks})",
        *jobs,
    )
    assert answers == [(20,)]
    tries = rows(tmp_path, f"SELECT DISTINCT attempts FROM conversations_job WHERE id IN ({marks})", *jobs)
    assert {attempts for (attempts,) in tries} <= {1, 2}  # the cut-off ones taken over once

"""A database that separate processes can share, for the key pool's concurrency and secrecy tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("pool_worker.py")


@dataclass
class SharedDatabase:
    env: dict[str, str]
    data_dir: Path

    def drain_pool(self, limits: list[int], processes: int, threads: int) -> Any:
        """Fill the pool with keys of these limits, then acquire from processes x threads until empty."""
        args = ["--limits", *map(str, limits), "--processes", str(processes), "--threads", str(threads)]
        run = subprocess.run(
            [sys.executable, str(WORKER), *args], env=self.env, cwd=ROOT, stdout=subprocess.PIPE, text=True, timeout=90
        )
        assert run.returncode == 0, f"worker exited with {run.returncode}"
        return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> SharedDatabase:
    """The configured database backend, reachable from subprocesses.

    SQLite: a fresh file-based database in WAL mode (the test database lives in memory,
    which other processes can't see). PostgreSQL (DATABASE_URL): the test database itself,
    with committed transactions so the subprocesses see the same rows.
    """
    data_dir = tmp_path / "data"
    env = {**os.environ, "NANOCLONE_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    if connection.vendor == "sqlite":
        env.pop("DATABASE_URL", None)  # the worker migrates the new file
    else:
        request.getfixturevalue("transactional_db")
        url = urlsplit(os.environ["DATABASE_URL"])
        env["DATABASE_URL"] = url._replace(path="/" + str(connection.settings_dict["NAME"])).geturl()
    return SharedDatabase(env, data_dir)

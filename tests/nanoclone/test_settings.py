"""Settings read from the environment, as a new process reads them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings


def database_settings(tmp_path: Path, **env: str) -> dict[str, Any]:
    code = (
        "import json, django; django.setup(); from django.conf import settings;"
        " print(json.dumps(settings.DATABASES['default']))"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "nanoclone.settings", "NANOCLONE_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(ran.stdout))


@pytest.mark.parametrize(
    ("pool_size", "pool", "conn_max_age"),
    [
        ("", {"min_size": 2, "max_size": 20, "timeout": 30}, 0),
        ("50", {"min_size": 2, "max_size": 50, "timeout": 30}, 0),
        ("0", None, 60),
    ],
)
def test_postgresql_connections_come_from_a_pool_of_each_process(
    tmp_path: Path, pool_size: str, pool: dict[str, int] | None, conn_max_age: int
) -> None:
    database = database_settings(
        tmp_path, DATABASE_URL="postgres://nanoclone:secret@db:5432/nanoclone", NANOCLONE_DB_POOL_SIZE=pool_size
    )
    assert database["ENGINE"] == "nanoclone.postgresql"  # Django's, its pool safe across fork()
    assert database["OPTIONS"].get("pool") == pool
    assert database["CONN_MAX_AGE"] == conn_max_age


def test_sqlite_keeps_a_connection_per_thread(tmp_path: Path) -> None:
    database = database_settings(tmp_path, DATABASE_URL="")
    assert database["ENGINE"] == "nanoclone.sqlite"
    assert "pool" not in database["OPTIONS"] and database["CONN_MAX_AGE"] == 60


@pytest.mark.parametrize(("metrics", "expected"), [("false", None), ("true", "metrics")])
def test_an_empty_prometheus_multiproc_dir_counts_as_unset(tmp_path: Path, metrics: str, expected: str | None) -> None:
    # A .env copied from .env.example sets it empty: prometheus_client would then write its files
    # into the current directory, metrics on or off.
    code = (
        "import json, os, django; django.setup(); from django.conf import settings;"
        " print(json.dumps([os.environ.get('PROMETHEUS_MULTIPROC_DIR'), settings.METRICS_MULTIPROC_DIR]))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "nanoclone.settings", "NANOCLONE_DATA_DIR": str(tmp_path)}
    env.update(PROMETHEUS_MULTIPROC_DIR="", NANOCLONE_METRICS=metrics)
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, check=True
    )
    in_environment, multiproc_dir = json.loads(ran.stdout)
    if expected is None:
        assert (in_environment, multiproc_dir) == (None, "")
    else:
        assert in_environment == multiproc_dir == str(tmp_path / expected)

"""The SQLite backend leaves the planner its statistics: PRAGMA optimize when a connection closes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from nanoclone.sqlite.base import DatabaseWrapper


def test_it_analyzes_the_tables_a_connection_queried_when_it_closes(tmp_path: Path, django_db_blocker: Any) -> None:
    path = tmp_path / "stats.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE image (id INTEGER PRIMARY KEY, conversation TEXT, created TEXT)")
        setup.execute("CREATE INDEX image_conversation ON image (conversation, created)")
        setup.executemany(
            "INSERT INTO image (conversation, created) VALUES (?, ?)", [(f"c{n % 50}", n) for n in range(2000)]
        )
    wrapper = DatabaseWrapper(
        {
            "NAME": str(path),
            "OPTIONS": {},
            "TIME_ZONE": None,
            "CONN_MAX_AGE": 0,
            "CONN_HEALTH_CHECKS": False,
            "AUTOCOMMIT": True,
            "ATOMIC_REQUESTS": False,
            "TEST": {},
        },
        "stats",
    )
    with django_db_blocker.unblock():
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT id FROM image WHERE conversation = %s ORDER BY created DESC LIMIT 5", ["c7"])
            cursor.fetchall()
        wrapper.close()
    with sqlite3.connect(path) as check:
        stats = dict(check.execute("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'image'").fetchall())
    rows, per_conversation = (int(n) for n in stats["image_conversation"].split()[:2])
    assert rows > 0 and per_conversation < rows  # the planner now knows a conversation is selective

"""The SQLite backend leaves the planner its statistics (PRAGMA optimize when a connection closes),
and queues one process's writers on a lock rather than in SQLite's busy handler."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from nanoclone.sqlite.base import DatabaseWrapper


def connect(path: Path, alias: str, **options: Any) -> DatabaseWrapper:
    settings = {
        "NAME": str(path),
        "OPTIONS": options,
        "TIME_ZONE": None,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
        "AUTOCOMMIT": True,
        "ATOMIC_REQUESTS": False,
        "TEST": {},
    }
    return DatabaseWrapper(settings, alias)


def test_it_analyzes_the_tables_a_connection_queried_when_it_closes(tmp_path: Path, django_db_blocker: Any) -> None:
    path = tmp_path / "stats.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE image (id INTEGER PRIMARY KEY, conversation TEXT, created TEXT)")
        setup.execute("CREATE INDEX image_conversation ON image (conversation, created)")
        setup.executemany(
            "INSERT INTO image (conversation, created) VALUES (?, ?)", [(f"c{n % 50}", n) for n in range(2000)]
        )
    wrapper = connect(path, "stats")
    with django_db_blocker.unblock():
        with wrapper.cursor() as cursor:
            cursor.execute("SELECT id FROM image WHERE conversation = %s ORDER BY created DESC LIMIT 5", ["c7"])
            cursor.fetchall()
        wrapper.close()
    with sqlite3.connect(path) as check:
        stats = dict(check.execute("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'image'").fetchall())
    rows, per_conversation = (int(n) for n in stats["image_conversation"].split()[:2])
    assert rows > 0 and per_conversation < rows  # the planner now knows a conversation is selective


def test_writers_of_one_process_wait_for_each_other_in_turn(tmp_path: Path, django_db_blocker: Any) -> None:
    """GIVEN a transaction writing WHEN another thread starts one, with no busy timeout at all THEN
    it waits for the first to commit (on the process's lock) instead of failing with 'locked'."""
    path = tmp_path / "writers.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE turn (id INTEGER PRIMARY KEY, who TEXT)")
    events: list[str] = []
    failures: list[BaseException] = []

    def second_writer() -> None:
        wrapper = connect(path, "second", timeout=0, transaction_mode="IMMEDIATE")
        try:
            wrapper.ensure_connection()  # as Atomic has, before it begins
            wrapper._start_transaction_under_autocommit()
            events.append("second began")
            wrapper.cursor().execute("INSERT INTO turn (who) VALUES (%s)", ["second"])
            wrapper.commit()
        except BaseException as error:  # "database is locked" without the lock
            failures.append(error)
        finally:
            wrapper.close()

    with django_db_blocker.unblock():
        first = connect(path, "first", timeout=0, transaction_mode="IMMEDIATE")
        first.ensure_connection()
        first._start_transaction_under_autocommit()
        first.cursor().execute("INSERT INTO turn (who) VALUES (%s)", ["first"])
        thread = threading.Thread(target=second_writer)
        thread.start()
        time.sleep(0.3)
        events.append("first commits")
        first.commit()
        thread.join(timeout=10)
        first.close()
    assert not failures and events == ["first commits", "second began"]
    with sqlite3.connect(path) as check:
        assert [who for (who,) in check.execute("SELECT who FROM turn ORDER BY id")] == ["first", "second"]

"""Django's SQLite backend, plus `PRAGMA optimize` as each connection closes, and one writer at a
time per process.

SQLite's planner only knows how selective an index is from the statistics ANALYZE gathers; without
them it never takes the conversation index for the gallery's conversation filter. SQLite advises
running `PRAGMA optimize` before closing a connection: it analyzes only the tables this connection
queried whose statistics are missing or stale (analysis_limit bounds the rows it reads), and is a
no-op otherwise (tens of microseconds).

Threads of one process that want SQLite's write lock at once would wait for it in SQLite's busy
handler, which sleeps in growing steps (up to 100 ms) and lets later writers overtake: under load
the unlucky ones wait seconds. So a transaction first queues on a process-wide lock, released as
it commits or rolls back; SQLite's lock is then free but for other processes (for several web
processes, PostgreSQL is the database to use).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading

from django.db.backends.sqlite3 import base

_WRITER = threading.Lock()
# Beyond this a writer goes on without the lock, to SQLite's busy timeout: a wait stays bounded.
WRITER_WAIT_SECONDS = 20.0


class DatabaseWrapper(base.DatabaseWrapper):
    _holds_writer = False

    def _start_transaction_under_autocommit(self) -> None:
        # Not for an in-memory database (the tests'): a test's own transaction stays open while
        # the threads it starts write.
        if not self.is_in_memory_db():
            self._holds_writer = _WRITER.acquire(timeout=WRITER_WAIT_SECONDS)
        try:
            super()._start_transaction_under_autocommit()  # type: ignore[misc]  # not in django-stubs
        except BaseException:
            self._release_writer()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]
        finally:
            self._release_writer()

    def _rollback(self) -> None:
        try:
            super()._rollback()  # type: ignore[misc]
        finally:
            self._release_writer()

    def _release_writer(self) -> None:
        if self._holds_writer:
            self._holds_writer = False
            _WRITER.release()

    def close(self) -> None:
        # An in-memory database (the tests') is never really closed, so it is left alone.
        if self.connection is not None and not self.is_in_memory_db():
            with contextlib.suppress(sqlite3.Error):  # never fail a close (a locked database, ...)
                # No waiting: when another connection is writing, the statistics can wait for a
                # later close, rather than this one queueing for the write lock ANALYZE takes.
                self.connection.execute("PRAGMA busy_timeout=0")
                self.connection.execute("PRAGMA analysis_limit=1000")
                self.connection.execute("PRAGMA optimize")
        try:
            super().close()
        finally:
            self._release_writer()  # a transaction closed unfinished is rolled back by SQLite

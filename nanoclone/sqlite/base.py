"""Django's SQLite backend, plus `PRAGMA optimize` as each connection closes.

SQLite's planner only knows how selective an index is from the statistics ANALYZE gathers; without
them it never takes the conversation index for the gallery's conversation filter. SQLite advises
running `PRAGMA optimize` before closing a connection: it analyzes only the tables this connection
queried whose statistics are missing or stale (analysis_limit bounds the rows it reads), and is a
no-op otherwise (tens of microseconds).
"""

from __future__ import annotations

import contextlib
import sqlite3

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def close(self) -> None:
        # An in-memory database (the tests') is never really closed, so it is left alone.
        if self.connection is not None and not self.is_in_memory_db():
            with contextlib.suppress(sqlite3.Error):  # never fail a close (a locked database, ...)
                # No waiting: when another connection is writing, the statistics can wait for a
                # later close, rather than this one queueing for the write lock ANALYZE takes.
                self.connection.execute("PRAGMA busy_timeout=0")
                self.connection.execute("PRAGMA analysis_limit=1000")
                self.connection.execute("PRAGMA optimize")
        super().close()

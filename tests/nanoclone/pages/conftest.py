"""Shared by the page tests that run chat jobs in threads (NANOCLONE_CHAT_EXECUTION=thread), as the
browser tests do: they share the in-memory test database with the live server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db.backends.signals import connection_created


@pytest.fixture
def shared_memory_db_reads() -> Iterator[None]:
    """Let the page's requests and the job's thread share the in-memory test database.

    pytest-django's test database is SQLite in memory with a shared cache, where a reader makes a
    writer fail at once ("database table is locked"; no busy wait as with a file database in WAL
    mode, which is what NanoClone runs on). Reading uncommitted rows removes those reader locks;
    the tests avoid two writers at once by letting a job's thread finish (jobs_settled()) before
    the browser sends the next prompt.
    """

    def dirty_reads(sender: Any, connection: Any, **kwargs: Any) -> None:
        if connection.vendor == "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("PRAGMA read_uncommitted = 1")

    if db_connection.vendor != "sqlite":
        yield
        return
    connection_created.connect(dirty_reads)
    db_connection.ensure_connection()
    dirty_reads(None, db_connection)  # the live server's threads share this connection
    try:
        yield
    finally:
        connection_created.disconnect(dirty_reads)
        if db_connection.connection is not None:
            with db_connection.cursor() as cursor:
                cursor.execute("PRAGMA read_uncommitted = 0")

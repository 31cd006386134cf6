"""Shared by the page tests that run chat jobs in threads (NANOCLONE_CHAT_EXECUTION=thread), as the
browser tests do: they share the in-memory test database with the live server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.db.backends.signals import connection_created


@pytest.fixture
def shared_memory_db_reads(request: pytest.FixtureRequest) -> Iterator[None]:
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

    mine = connections["default"]
    if mine.vendor != "sqlite":
        yield
        return
    # The live server's request threads use the connection that was this thread's when the
    # (session-wide) server started; an earlier test may have left this thread a newer one.
    server = request.getfixturevalue("live_server") if "live_server" in request.fixturenames else None
    override = server.thread.connections_override.values() if server else ()
    shared = list({id(each): each for each in (mine, *override)}.values())
    connection_created.connect(dirty_reads)
    for each in shared:
        each.ensure_connection()
        dirty_reads(None, each)
    try:
        yield
    finally:
        connection_created.disconnect(dirty_reads)
        for each in shared:
            if each.connection is not None:
                with each.cursor() as cursor:
                    cursor.execute("PRAGMA read_uncommitted = 0")

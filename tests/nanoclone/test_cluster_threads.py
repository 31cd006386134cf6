"""The in-process cluster's threads (nanoclone/cluster.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connections

from nanoclone.cluster import closing_connections


@pytest.mark.django_db(transaction=True)
def test_a_cluster_thread_closes_its_database_connection_as_it_ends() -> None:
    """GIVEN a worker thread that used the database WHEN it ends (django-q2 recycles workers)
    THEN its connection is closed: a pooled one goes back to its pool instead of being lost."""
    closed: list[Any] = []

    def task(label: str) -> None:
        wrapper = connections["default"]  # this thread's own
        wrapper.ensure_connection()
        close = wrapper.close

        def recorded_close() -> None:
            close()
            # Gone, but for SQLite's in-memory test database, which ignores close().
            closed.append((label, wrapper.connection is None or wrapper.vendor == "sqlite"))

        wrapper.close = recorded_close  # type: ignore[method-assign]

    thread = threading.Thread(target=closing_connections(task), args=("recycled",))
    thread.start()
    thread.join(10)
    assert closed == [("recycled", True)]

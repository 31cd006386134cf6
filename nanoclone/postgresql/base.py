"""Django's PostgreSQL backend, with its connection pool (NANOCLONE_DB_POOL_SIZE) safe across fork().

psycopg's pool keeps the connections it has opened and runs threads that open more. A process
forked from one whose pool is open (django-q2's `qcluster` forks its workers) inherits the pool
without its threads and with its parent's connections: its first query would wait for a
connection forever, or share a socket with the parent. So a forked child forgets every inherited
pool and the connection the forking thread held (pooled or not), and opens its own when it first
needs one.
"""

from __future__ import annotations

import os

from django.db import connections
from django.db.backends.postgresql import base

# Never closed or collected in the child: closing them would end the parent's sessions.
_inherited: list[object] = []


def _forget_inherited_pools() -> None:
    pools: dict[str, object] = base.DatabaseWrapper._connection_pools  # type: ignore[attr-defined]  # one per alias
    _inherited.extend(pools.values())
    pools.clear()
    for wrapper in connections.all(initialized_only=True):
        if isinstance(wrapper, DatabaseWrapper) and wrapper.connection is not None:
            _inherited.append(wrapper.connection)
            wrapper.connection = None


os.register_at_fork(after_in_child=_forget_inherited_pools)


class DatabaseWrapper(base.DatabaseWrapper):
    pass

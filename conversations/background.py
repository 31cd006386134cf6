"""Queueing work on the django-q2 cluster, the cluster's schedule of the stale-job sweep, and the
database connection work lets go of while it waits."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import connection, transaction

RECOVERY_SCHEDULE = "Recover stale jobs"


def enqueue_on_commit(func: str, *args: str, task_name: str) -> None:
    """Queue `func(*args)` on the cluster once the surrounding transaction commits, so the task
    never looks for rows that aren't visible yet."""
    from django_q.tasks import async_task

    transaction.on_commit(lambda: async_task(func, *args, task_name=task_name))


def schedule_recovery(**_: Any) -> None:
    """Schedule the stale-job sweep every NANOCLONE_RECOVERY_INTERVAL_MINUTES, as settings say now.

    Run by a migration and again as each worker of a cluster starts (django-q2's post_spawn), so a
    changed setting applies at the next start without a migration."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=RECOVERY_SCHEDULE,
        defaults={
            "func": "conversations.pipeline.recover_stale_jobs",
            "schedule_type": Schedule.MINUTES,
            "minutes": settings.RECOVERY_INTERVAL_MINUTES,
            "repeats": -1,
        },
    )


def release_connection() -> None:
    """Give this thread's database connection back to the pool before a wait of seconds (Gemini, a
    webhook receiver, a long poll): PostgreSQL's connections then count the threads at work, not
    those waiting, and the next query takes one again. Without a pool (SQLite, or
    NANOCLONE_DB_POOL_SIZE=0) the connection stays: reopening costs more than keeping it. Never
    inside a transaction, whose work is not done."""
    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()

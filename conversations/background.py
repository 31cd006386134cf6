"""Queueing work on the django-q2 cluster, and the cluster's schedule of the stale-job sweep."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

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

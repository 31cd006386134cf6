"""Queueing work on the django-q2 cluster."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction


def enqueue_on_commit(func: str, *args: str, task_name: str) -> None:
    """Queue `func(*args)` on the cluster once the surrounding transaction commits.

    Q_CLUSTER["sync"] is read here, at call time, because django-q2 reads it once at import:
    tests switch it with the `settings` fixture to run tasks inline.
    """
    from django_q.tasks import async_task

    sync = bool(settings.Q_CLUSTER.get("sync", False))
    transaction.on_commit(lambda: async_task(func, *args, task_name=task_name, sync=sync))
